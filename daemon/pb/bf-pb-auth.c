/* bf-pb-auth.c: the PB login challenge and its check
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "bf-pb-auth.h"

#include <errno.h>
#include <sys/random.h>

/**
 * bf_pb_auth_challenge:
 * @challenge: (out caller-allocates): where to store the challenge
 *
 * Fills @challenge with bytes from the kernel's random number generator
 * (getrandom(2)), so no two connections get the same challenge.
 */
void
bf_pb_auth_challenge (guint8 challenge[BF_PB_AUTH_CHALLENGE_SIZE])
{
  gsize have = 0;

  while (have < BF_PB_AUTH_CHALLENGE_SIZE)
    {
      gssize n = getrandom (challenge + have, BF_PB_AUTH_CHALLENGE_SIZE - have, 0);

      if (n < 0 && errno == EINTR)
        continue;
      /* getrandom() of 16 bytes cannot fail on Linux >= 3.17 once the pool
       * is initialised; a daemon without random numbers must not hand out
       * guessable challenges */
      if (n < 0)
        g_error ("getrandom: %s", g_strerror (errno));
      have += n;
    }
}

/**
 * bf_pb_auth_respond:
 * @challenge: (array length=challenge_len): the challenge
 * @challenge_len: its length
 * @password: (array length=password_len): the password's bytes (UTF-8)
 * @password_len: its length
 * @response: (out caller-allocates): md5 (md5 (password) + challenge)
 *
 * Computes what a worker answers, as twisted.spread.pb.respond() does.
 */
void
bf_pb_auth_respond (const guint8 *challenge,
                    gsize         challenge_len,
                    const gchar  *password,
                    gsize         password_len,
                    guint8        response[BF_PB_AUTH_RESPONSE_SIZE])
{
  g_autoptr(GChecksum) inner = g_checksum_new (G_CHECKSUM_MD5);
  g_autoptr(GChecksum) outer = g_checksum_new (G_CHECKSUM_MD5);
  guint8 hashed[BF_PB_AUTH_RESPONSE_SIZE];
  gsize len = sizeof hashed;

  g_checksum_update (inner, (const guchar *) password, password_len);
  g_checksum_get_digest (inner, hashed, &len);
  g_checksum_update (outer, hashed, sizeof hashed);
  g_checksum_update (outer, challenge, challenge_len);
  len = BF_PB_AUTH_RESPONSE_SIZE;
  g_checksum_get_digest (outer, response, &len);
  explicit_bzero (hashed, sizeof hashed);
}

/**
 * bf_pb_auth_check:
 * @challenge: (array length=challenge_len): the challenge we sent
 * @challenge_len: its length
 * @password: (array length=password_len): the configured password
 * @password_len: its length
 * @response: (array length=response_len): what the worker answered
 * @response_len: its length
 *
 * Returns: %TRUE if @response is the right answer to @challenge for
 *   @password. The comparison looks at every byte whatever the answer, so
 *   its time tells nothing about how much of a guess was right.
 */
gboolean
bf_pb_auth_check (const guint8 *challenge,
                  gsize         challenge_len,
                  const gchar  *password,
                  gsize         password_len,
                  const guint8 *response,
                  gsize         response_len)
{
  guint8 expected[BF_PB_AUTH_RESPONSE_SIZE];
  volatile guint8 diff = response_len != BF_PB_AUTH_RESPONSE_SIZE;

  bf_pb_auth_respond (challenge, challenge_len, password, password_len, expected);
  for (gsize i = 0; i < BF_PB_AUTH_RESPONSE_SIZE; i++)
    diff |= expected[i] ^ (i < response_len ? response[i] : 0);
  explicit_bzero (expected, sizeof expected);
  return diff == 0;
}
