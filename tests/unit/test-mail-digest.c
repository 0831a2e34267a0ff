/* test-mail-digest.c: alert mails that never storm
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-mail-digest.h"

#define S ((gint64) G_USEC_PER_SEC)

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

/* Held for one set of recipients after another: the next digest is the
 * one whose interval began first, whatever the order of the sets, and it
 * moves on as each digest goes. */
static void
test_next_due_many_sets (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();
  const gint64 starts[] = { 40 * S, 10 * S, 30 * S, 20 * S };
  const guint n = G_N_ELEMENTS (starts);

  bf_mail_digest_set_interval (d, 60 * S);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *to = g_strdup_printf ("team%u@example.com", i);

      /* a burst opens the interval at starts[i], the next one is held */
      for (guint k = 0; k < BF_MAIL_DIGEST_BURST; k++)
        g_assert_cmpuint (bf_mail_digest_offer (d, to, "w", "s", "b", starts[i]), ==, 0);
      g_assert_cmpuint (bf_mail_digest_offer (d, to, "w", "s", "b", starts[i] + 1 * S), ==, 1);
      /* more held alerts later in the interval do not move it */
      g_assert_cmpuint (bf_mail_digest_offer (d, to, "w", "s", "b", starts[i] + 50 * S), ==, 2);
    }
  /* a set with nothing held counts for nothing */
  g_assert_cmpuint (bf_mail_digest_offer (d, "quiet@example.com", "w", "s", "b", 0), ==, 0);
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, 70 * S);

  /* the interval is the same for all: a reload moves them together */
  bf_mail_digest_set_interval (d, 120 * S);
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, 130 * S);
  bf_mail_digest_set_interval (d, 60 * S);

  for (guint i = 1; i <= n; i++)
    {
      g_autoptr(GPtrArray) due = bf_mail_digest_take_due (d, (i * 10 + 60) * S);

      g_assert_cmpuint (due->len, ==, 1);
      g_assert_cmpuint (((BfMailDigestMail *) g_ptr_array_index (due, 0))->n_alerts, ==, 2);
      g_assert_cmpint (bf_mail_digest_next_due (d), ==, i < n ? ((i + 1) * 10 + 60) * S : G_MAXINT64);
    }

  /* a digest starts a new interval: what is held after it is due an interval later */
  g_assert_cmpuint (bf_mail_digest_offer (d, "team2@example.com", "w", "s", "b", 95 * S), ==, 1);
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, 90 * S + 60 * S);
}

static GPtrArray *
mails_new (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) bf_mail_digest_mail_free);
}

/* What is held survives a restart: the monotonic clock starts afresh, the
 * file keeps wall-clock times; an interval that ended while the daemon did
 * not run is due at once. */
static void
test_save_load (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();
  g_autoptr(BfMailDigest) again = bf_mail_digest_new ();
  g_autoptr(BfMailDigest) late = bf_mail_digest_new ();
  g_autoptr(GPtrArray) unsent = mails_new ();
  g_autoptr(GPtrArray) loaded = mails_new ();
  g_autoptr(GPtrArray) dropped = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) due = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  BfMailDigestMail *queued = g_new0 (BfMailDigestMail, 1);
  BfMailDigestMail *mail;
  const gint64 real = 1700000000 * S;   /* the wall clock when saved */
  const char *data;
  gsize len;

  bf_mail_digest_set_interval (d, 60 * S);
  for (guint i = 0; i < BF_MAIL_DIGEST_BURST; i++)
    bf_mail_digest_offer (d, "ops@example.com", "w", "s", "b", 100 * S);
  bf_mail_digest_offer (d, "ops@example.com", "rack01", "Worker rack01 is missing", "line 1\n  line 2\n", 110 * S);
  bf_mail_digest_offer (d, "ops@example.com", "rack02", "Worker rack02 is missing", "b", 111 * S);
  /* a burst counter alone is not kept */
  bf_mail_digest_offer (d, "dev@example.com", "w", "s", "b", 100 * S);
  queued->recipients = g_strdup ("qa@example.com");
  queued->subject = g_strdup ("Worker x is missing, and 3 more alerts");
  queued->body = g_strdup ("4 alerts\n");
  queued->n_alerts = 4;
  g_ptr_array_add (unsent, queued);
  bytes = bf_mail_digest_save (d, unsent, 120 * S, real);
  data = g_bytes_get_data (bytes, &len);
  g_assert_null (strstr (data, "dev@example.com"));

  /* 20 s later, after a reboot: the monotonic clock is at 5 s */
  bf_mail_digest_set_interval (again, 60 * S);
  g_assert_true (bf_mail_digest_load (again, data, len, 5 * S, real + 20 * S, loaded, dropped, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (dropped->len, ==, 0);
  g_assert_cmpuint (loaded->len, ==, 1);
  mail = g_ptr_array_index (loaded, 0);
  g_assert_cmpstr (mail->recipients, ==, "qa@example.com");
  g_assert_cmpstr (mail->body, ==, "4 alerts\n");
  g_assert_cmpuint (mail->n_alerts, ==, 4);
  /* the interval began 20 + 20 s before: 20 s to go */
  g_assert_cmpint (bf_mail_digest_next_due (again), ==, 5 * S + 20 * S);
  /* it is still the same interval: the next alert is held too */
  g_assert_cmpuint (bf_mail_digest_offer (again, "ops@example.com", "rack03", "Worker rack03 is missing", "b", 6 * S),
                    ==, 3);
  due = bf_mail_digest_take_due (again, 25 * S);
  g_assert_cmpuint (due->len, ==, 1);
  mail = g_ptr_array_index (due, 0);
  g_assert_cmpuint (mail->n_alerts, ==, 3);
  g_assert_cmpstr (mail->subject, ==, "Worker rack01 is missing, and 2 more alerts");
  g_assert_nonnull (strstr (mail->body, "--- Worker rack01 is missing ---\nline 1\n  line 2\n\n"));
  g_assert_nonnull (strstr (mail->body, "--- Worker rack03 is missing ---"));

  /* an hour later: overdue, so due at once */
  g_ptr_array_set_size (loaded, 0);
  bf_mail_digest_set_interval (late, 60 * S);
  g_assert_true (bf_mail_digest_load (late, data, len, 7 * S, real + 3600 * S, loaded, dropped, &error));
  g_assert_cmpint (bf_mail_digest_next_due (late), <=, 7 * S);
  g_clear_pointer (&due, g_ptr_array_unref);
  due = bf_mail_digest_take_due (late, 7 * S);
  g_assert_cmpuint (due->len, ==, 1);
  /* sent: nothing is left to save */
  g_clear_pointer (&bytes, g_bytes_unref);
  bytes = bf_mail_digest_save (late, NULL, 8 * S, real + 3601 * S);
  g_assert_cmpuint (g_bytes_get_size (bytes), ==, 0);
}

/* A damaged file: what can be read is kept, the rest is named; values past
 * the digest's own bounds are not taken. */
static void
test_load_damaged (void)
{
  g_autoptr(BfMailDigest) d = bf_mail_digest_new ();
  g_autoptr(GPtrArray) unsent = mails_new ();
  g_autoptr(GPtrArray) dropped = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) due = NULL;
  g_autofree char *huge = g_strnfill (BF_MAIL_DIGEST_MAX_BODY + 2048, 'x');
  g_autofree char *text = g_strdup_printf (
    "[Held 0]\nRecipients=ops@example.com\nWindowStartUSec=100\nSent=10\nHeld=1\nListed=1\n"
    "FirstSubject=s\nText=t\nNames=\nNamesCut=false\n"
    "[Held 1]\nRecipients=dev@example.com\nWindowStartUSec=soon\n"
    "[Held 2]\nRecipients=big@example.com\nWindowStartUSec=100\nSent=10\nHeld=1\nListed=1\n"
    "FirstSubject=s\nText=%s\nNames=\n"
    "[Held 3]\nRecipients=ops@example.com\nWindowStartUSec=100\nSent=10\nHeld=1\nListed=1\n"
    "FirstSubject=s\nText=t\nNames=\n"
    "[Unsent 0]\nRecipients=a@example.com\\nBcc: evil@example.com\nSubject=s\nBody=b\nAlerts=1\n"
    "[Something]\nKey=1\n"
    "[Held 4]\nRecipients=ancient@example.com\nWindowStartUSec=-9223372036854775808\nSent=10\nHeld=1\n"
    "Listed=1\nFirstSubject=s\nText=t\nNames=\n", huge);

  bf_mail_digest_set_interval (d, 60 * S);
  g_assert_false (bf_mail_digest_load (d, "\x01\x02 not a key file", -1, 0, 0, unsent, dropped, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);

  g_assert_true (bf_mail_digest_load (d, text, strlen (text), 200, 200, unsent, dropped, &error));
  g_assert_cmpuint (dropped->len, ==, 5);
  g_assert_cmpuint (unsent->len, ==, 0);
  /* the readable entries: one of them from before any sensible time, due at once */
  g_assert_cmpint (bf_mail_digest_next_due (d), <=, 200);
  due = bf_mail_digest_take_due (d, 200);
  g_assert_cmpuint (due->len, ==, 1);
  g_assert_cmpstr (((BfMailDigestMail *) g_ptr_array_index (due, 0))->recipients, ==, "ancient@example.com");
  g_assert_cmpint (bf_mail_digest_next_due (d), ==, 100 + 60 * S);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mail-digest/off", test_off);
  g_test_add_func ("/mail-digest/burst-then-digest", test_burst_then_digest);
  g_test_add_func ("/mail-digest/bounded", test_bounded);
  g_test_add_func ("/mail-digest/interval-to-zero", test_interval_to_zero);
  g_test_add_func ("/mail-digest/next-due-many-sets", test_next_due_many_sets);
  g_test_add_func ("/mail-digest/save-load", test_save_load);
  g_test_add_func ("/mail-digest/load-damaged", test_load_damaged);
  return g_test_run ();
}
