/* test-mail-digest.c: alert mails that never storm
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-mail-digest.h"

#define S G_USEC_PER_SEC

static void
test_off (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();

  bf_mail_digest_set_interval (d, 0);
  for (int i = 0; i < 100; i++)
    g_assert_cmpuint (bf_mail_digest_offer (d, "ops@example.com", "w", "s", "b", i), ==, 0);
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, G_MAXINT64);
}

static void
test_burst_then_digest (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();
  g_autoptr(GPtrArray) due = NULL;
  BfMailDigestMail *mail;
  gint64 t0 = 1000 * S;

  bf_mail_digest_set_interval (d, 60 * S);
  for (guint i = 0; i < BF_MAIL_DIGEST_BURST; i++)
    g_assert_cmpuint (bf_mail_digest_offer (d, "ops@example.com", "w", "s", "b", t0 + i), ==, 0);
  /* other recipients have their own count */
  g_assert_cmpuint (bf_mail_digest_offer (d, "dev@example.com", "x", "s", "b", t0), ==, 0);
  for (guint i = 0; i < 7; i++)
    {
      g_autofree char *worker = g_strdup_printf ("storm%02u", i);
      g_autofree char *subject = g_strdup_printf ("Worker %s is missing", worker);

      g_assert_cmpuint (bf_mail_digest_offer (d, "ops@example.com", worker, subject,
                                              "Not seen since then.\n\n-- \nbuildfleetd on host\n",
                                              t0 + 10 * S), ==, i + 1);
    }
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, t0 + 60 * S);

  due = bf_mail_digest_take_due (d, t0 + 59 * S);
  g_assert_cmpuint (due->len, ==, 0);
  g_clear_pointer (&due, g_ptr_array_unref);

  due = bf_mail_digest_take_due (d, t0 + 60 * S);
  g_assert_cmpuint (due->len, ==, 1);
  mail = g_ptr_array_index (due, 0);
  g_assert_cmpstr (mail->recipients, ==, "ops@example.com");
  g_assert_cmpuint (mail->n_alerts, ==, 7);
  g_assert_cmpstr (mail->subject, ==, "Worker storm00 is missing, and 6 more alerts");
  for (guint i = 0; i < 7; i++)
    {
      g_autofree char *line = g_strdup_printf ("--- Worker storm%02u is missing ---\nNot seen since then.\n\n", i);
      g_assert_nonnull (strstr (mail->body, line));
    }
  g_assert_null (strstr (mail->body, "buildfleetd on host"));
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, G_MAXINT64);

  /* The storm goes on: the digest was this interval's mail, so the next
   * alert waits for the next digest. */
  g_assert_cmpuint (bf_mail_digest_offer (d, "ops@example.com", "late", "s", "b", t0 + 61 * S), ==, 1);
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, t0 + 120 * S);
  g_clear_pointer (&due, g_ptr_array_unref);
  due = bf_mail_digest_take_due (d, t0 + 120 * S);
  g_assert_cmpuint (due->len, ==, 1);
  g_assert_cmpuint (((BfMailDigestMail *) g_ptr_array_index (due, 0))->n_alerts, ==, 1);

  /* A quiet interval later, alerts go out one by one again. */
  g_clear_pointer (&due, g_ptr_array_unref);
  due = bf_mail_digest_take_due (d, t0 + 200 * S);
  g_assert_cmpuint (due->len, ==, 0);
  g_assert_cmpuint (bf_mail_digest_offer (d, "ops@example.com", "w", "s", "b", t0 + 200 * S), ==, 0);
}

static void
test_bounded (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();
  g_autoptr(GPtrArray) due = NULL;
  g_autofree char *big = g_strnfill (10000, 'x');
  BfMailDigestMail *mail;
  const guint n = 20000;

  bf_mail_digest_set_interval (d, 1 * S);
  for (guint i = 0; i < BF_MAIL_DIGEST_BURST; i++)
    bf_mail_digest_offer (d, "ops", "w", "s", "b", 0);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *worker = g_strdup_printf ("worker-%05u", i);
      bf_mail_digest_offer (d, "ops", worker, "Worker is missing", big, 0);
    }
  due = bf_mail_digest_take_due (d, 1 * S);
  g_assert_cmpuint (due->len, ==, 1);
  mail = g_ptr_array_index (due, 0);
  g_assert_cmpuint (mail->n_alerts, ==, n);
  g_assert_true (g_utf8_validate (mail->body, -1, NULL));
  g_assert_cmpuint (strlen (mail->body), <=, BF_MAIL_DIGEST_MAX_BODY + BF_MAIL_DIGEST_MAX_NAMES + 1024);
  g_assert_nonnull (strstr (mail->body, "[cut: the digest's text is limited]"));
  g_assert_nonnull (strstr (mail->body, "more alerts, not listed here, about: worker-"));
  g_assert_true (g_str_has_suffix (mail->body, ", ...\n"));
}

static void
test_interval_to_zero (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();
  g_autoptr(GPtrArray) due = NULL;

  bf_mail_digest_set_interval (d, 60 * S);
  for (guint i = 0; i < BF_MAIL_DIGEST_BURST + 2; i++)
    bf_mail_digest_offer (d, "ops", "w", "s", "b", 5 * S);
  /* a reload turns digests off: what is held is due at once */
  bf_mail_digest_set_interval (d, 0);
  g_assert_cmpint (bf_mail_digest_next_due (d), <=, 5 * S);
  due = bf_mail_digest_take_due (d, 5 * S);
  g_assert_cmpuint (due->len, ==, 1);
  g_assert_cmpuint (((BfMailDigestMail *) g_ptr_array_index (due, 0))->n_alerts, ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mail-digest/off", test_off);
  g_test_add_func ("/mail-digest/burst-then-digest", test_burst_then_digest);
  g_test_add_func ("/mail-digest/bounded", test_bounded);
  g_test_add_func ("/mail-digest/interval-to-zero", test_interval_to_zero);
  return g_test_run ();
}
