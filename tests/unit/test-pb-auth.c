/* test-pb-auth.c: unit tests for the PB login check
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <glib.h>

#include "bf-pb-auth.h"

static void
unhex (const gchar *text,
       guint8      *out)
{
  for (gsize i = 0; text[2 * i] != '\0'; i++)
    out[i] = (guint8) (g_ascii_xdigit_value (text[2 * i]) << 4 |
                       g_ascii_xdigit_value (text[2 * i + 1]));
}

static void
test_twisted_vectors (void)
{
  /* from Debian's python3-twisted 22.4: pb.respond(challenge, password) */
  const struct
  {
    const gchar *challenge;
    gsize        challenge_len;
    const gchar *password;
    const gchar *response;
  } vectors[] = {
    { "0123456789abcdef", 16, "secret", "fb654aad50303a26b539858afb969f27" },
    { "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f", 16, "p\xc3\xa4ss",
      "c946583d7a93bd902f6c2ceb80260ccc" },
    { "xxxxxxxxxxxxxxxx", 16, "", "d04bd350ab7dc573f9f504d33a0cf6ab" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (vectors); i++)
    {
      guint8 expected[BF_PB_AUTH_RESPONSE_SIZE], got[BF_PB_AUTH_RESPONSE_SIZE];
      const guint8 *challenge = (const guint8 *) vectors[i].challenge;
      gsize plen = strlen (vectors[i].password);

      unhex (vectors[i].response, expected);
      bf_pb_auth_respond (challenge, vectors[i].challenge_len, vectors[i].password, plen, got);
      g_assert_cmpmem (got, sizeof got, expected, sizeof expected);
      g_assert_true (bf_pb_auth_check (challenge, vectors[i].challenge_len,
                                       vectors[i].password, plen, expected, sizeof expected));

      /* any one bit wrong, a short or a long answer, the wrong password */
      for (guint bit = 0; bit < 8 * sizeof expected; bit++)
        {
          guint8 wrong[BF_PB_AUTH_RESPONSE_SIZE];

          memcpy (wrong, expected, sizeof wrong);
          wrong[bit / 8] ^= 1 << (bit % 8);
          g_assert_false (bf_pb_auth_check (challenge, vectors[i].challenge_len,
                                            vectors[i].password, plen, wrong, sizeof wrong));
        }
      g_assert_false (bf_pb_auth_check (challenge, vectors[i].challenge_len,
                                        vectors[i].password, plen, expected, sizeof expected - 1));
      {
        guint8 longer[BF_PB_AUTH_RESPONSE_SIZE + 1] = { 0 };
        memcpy (longer, expected, sizeof expected);
        g_assert_false (bf_pb_auth_check (challenge, vectors[i].challenge_len,
                                          vectors[i].password, plen, longer, sizeof longer));
      }
      g_assert_false (bf_pb_auth_check (challenge, vectors[i].challenge_len,
                                        "other", 5, expected, sizeof expected));
      g_assert_false (bf_pb_auth_check (challenge, vectors[i].challenge_len,
                                        vectors[i].password, plen, NULL, 0));
    }
}

static void
test_challenge (void)
{
  guint8 a[BF_PB_AUTH_CHALLENGE_SIZE], b[BF_PB_AUTH_CHALLENGE_SIZE];
  guint8 response[BF_PB_AUTH_RESPONSE_SIZE];

  bf_pb_auth_challenge (a);
  bf_pb_auth_challenge (b);
  g_assert_true (memcmp (a, b, sizeof a) != 0);

  /* a response to one challenge does not answer another */
  bf_pb_auth_respond (a, sizeof a, "pw", 2, response);
  g_assert_true (bf_pb_auth_check (a, sizeof a, "pw", 2, response, sizeof response));
  g_assert_false (bf_pb_auth_check (b, sizeof b, "pw", 2, response, sizeof response));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/pb-auth/twisted-vectors", test_twisted_vectors);
  g_test_add_func ("/pb-auth/challenge", test_challenge);

  return g_test_run ();
}
