/* bf-mail-digest.c: alert mails that never storm
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-mail-digest.h"

typedef struct {
  gint64 window_start;  /* when the current interval began */
  guint sent;           /* mails sent one by one in it */
  guint n_held;         /* alerts waiting for the digest */
  guint n_listed;       /* of which in full in @text */
  char *first_subject;
  GString *text;        /* the listed alerts */
  GString *names;       /* the workers of the others */
  gboolean names_cut;
} Entry;

struct _BfMailDigest
{
  gint64 interval_usec;   /* 0: every mail on its own */
  GHashTable *entries;    /* recipients -> Entry */
};

static void
entry_free (Entry *e)
{
  g_free (e->first_subject);
  if (e->text)
    g_string_free (e->text, TRUE);
  if (e->names)
    g_string_free (e->names, TRUE);
  g_free (e);
}

void
bf_mail_digest_mail_free (BfMailDigestMail *mail)
{
  g_free (mail->recipients);
  g_free (mail->subject);
  g_free (mail->body);
  g_free (mail);
}

BfMailDigest *
bf_mail_digest_new (void)
{
  BfMailDigest *self = g_new0 (BfMailDigest, 1);

  self->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) entry_free);
  return self;
}

void
bf_mail_digest_free (BfMailDigest *self)
{
  g_hash_table_unref (self->entries);
  g_free (self);
}

/**
 * bf_mail_digest_set_interval:
 * @interval_usec: MailDigestInterval; 0 sends every mail on its own (what
 *   is held becomes due at once)
 */
void
bf_mail_digest_set_interval (BfMailDigest *self,
                             gint64        interval_usec)
{
  self->interval_usec = MAX (interval_usec, 0);
}

static void
hold (Entry      *e,
      const char *worker,
      const char *subject,
      const char *body)
{
  if (e->n_held++ == 0)
    {
      e->first_subject = g_strdup (subject);
      e->text = g_string_new (NULL);
      e->names = g_string_new (NULL);
      e->names_cut = FALSE;
      e->n_listed = 0;
    }
  if (e->n_listed < BF_MAIL_DIGEST_MAX_LISTED && e->text->len < BF_MAIL_DIGEST_MAX_BODY)
    {
      /* without each alert's signature ("-- " line and what follows) */
      const char *signature = strstr (body, "\n-- \n");
      gsize len = signature ? (gsize) (signature - body) : strlen (body);

      while (len > 0 && body[len - 1] == '\n')
        len--;
      g_string_append_printf (e->text, "--- %s ---\n", subject);
      g_string_append_len (e->text, body, len);
      g_string_append (e->text, "\n\n");
      if (e->text->len > BF_MAIL_DIGEST_MAX_BODY)
        {
          /* cut at a character boundary */
          const char *end = e->text->str + BF_MAIL_DIGEST_MAX_BODY;
          g_string_truncate (e->text, g_utf8_find_prev_char (e->text->str, end + 1) - e->text->str);
          g_string_append (e->text, "\n[cut: the digest's text is limited]\n\n");
        }
      e->n_listed++;
      return;
    }
  if (e->names->len + strlen (worker) + 2 > BF_MAIL_DIGEST_MAX_NAMES)
    {
      e->names_cut = TRUE;
      return;
    }
  if (e->names->len > 0)
    g_string_append (e->names, ", ");
  g_string_append (e->names, worker);
}

/**
 * bf_mail_digest_offer:
 * @recipients: the To: line
 * @worker: the worker the alert is about
 *
 * Returns: 0 when the mail goes out now; else how many alerts (this one
 *   included) are held for the next digest of @recipients (see
 *   bf_mail_digest_next_due())
 */
guint
bf_mail_digest_offer (BfMailDigest *self,
                      const char   *recipients,
                      const char   *worker,
                      const char   *subject,
                      const char   *body,
                      gint64        now_usec)
{
  Entry *e;

  if (self->interval_usec == 0)
    return 0;
  e = g_hash_table_lookup (self->entries, recipients);
  if (e == NULL)
    {
      e = g_new0 (Entry, 1);
      e->window_start = now_usec;
      g_hash_table_insert (self->entries, g_strdup (recipients), e);
    }
  else if (e->n_held == 0 && now_usec - e->window_start >= self->interval_usec)
    {
      e->window_start = now_usec;
      e->sent = 0;
    }
  if (e->n_held == 0 && e->sent < BF_MAIL_DIGEST_BURST)
    {
      e->sent++;
      return 0;
    }
  hold (e, worker, subject, body);
  return e->n_held;
}

/**
 * bf_mail_digest_next_due:
 *
 * Returns: when the next digest is due (the clock of the offers), or
 *   G_MAXINT64 when nothing is held
 */
gint64
bf_mail_digest_next_due (BfMailDigest *self)
{
  GHashTableIter iter;
  gpointer value;
  gint64 due = G_MAXINT64;

  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Entry *e = value;

      if (e->n_held > 0)
        due = MIN (due, e->window_start + self->interval_usec);
    }
  return due;
}

static BfMailDigestMail *
make_mail (BfMailDigest *self,
           const char   *recipients,
           Entry        *e)
{
  BfMailDigestMail *mail = g_new0 (BfMailDigestMail, 1);
  GString *body = g_string_new (NULL);
  guint others = e->n_held - 1;
  guint unlisted = e->n_held - e->n_listed;

  mail->recipients = g_strdup (recipients);
  mail->n_alerts = e->n_held;
  if (others == 0)
    mail->subject = g_strdup (e->first_subject);
  else
    mail->subject = g_strdup_printf ("%s, and %u more alert%s", e->first_subject,
                                     others, others == 1 ? "" : "s");
  g_string_append_printf (body,
                          "%u alert%s held back: more than %u alerts for you within "
                          "MailDigestInterval (%.1f s) go out together, in one mail.\n\n",
                          e->n_held, e->n_held == 1 ? "" : "s", BF_MAIL_DIGEST_BURST,
                          self->interval_usec / (double) G_USEC_PER_SEC);
  g_string_append_len (body, e->text->str, e->text->len);
  if (unlisted > 0)
    g_string_append_printf (body, "%u more alert%s, not listed here, about: %s%s\n",
                            unlisted, unlisted == 1 ? "" : "s", e->names->str,
                            e->names_cut ? ", ..." : "");
  mail->body = g_string_free (body, FALSE);
  return mail;
}

/**
 * bf_mail_digest_take_due:
 *
 * Returns: (transfer full) (element-type BfMailDigestMail): the digests
 *   due at @now_usec, each starting a new interval for its recipients
 */
GPtrArray *
bf_mail_digest_take_due (BfMailDigest *self,
                         gint64        now_usec)
{
  GPtrArray *due = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_mail_digest_mail_free);
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Entry *e = value;

      if (now_usec - e->window_start < self->interval_usec)
        continue;
      if (e->n_held == 0)
        {
          /* a quiet interval: forget them */
          g_hash_table_iter_remove (&iter);
          continue;
        }
      g_ptr_array_add (due, make_mail (self, key, e));
      /* The digest is this interval's mail: a storm that goes on is one
       * mail per interval. */
      e->window_start = now_usec;
      e->sent = BF_MAIL_DIGEST_BURST;
      e->n_held = 0;
      g_clear_pointer (&e->first_subject, g_free);
      g_string_free (e->text, TRUE);
      e->text = NULL;
      g_string_free (e->names, TRUE);
      e->names = NULL;
    }
  return due;
}
