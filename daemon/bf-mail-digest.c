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
  gint64 first_held;      /* the earliest window_start of an Entry that
                           * holds alerts (it does not move while they are
                           * held), G_MAXINT64 when none does */
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
  self->first_held = G_MAXINT64;
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
hold (BfMailDigest *self,
      Entry        *e,
      const char   *worker,
      const char   *subject,
      const char   *body)
{
  if (e->n_held++ == 0)
    {
      self->first_held = MIN (self->first_held, e->window_start);
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
  hold (self, e, worker, subject, body);
  return e->n_held;
}

/**
 * bf_mail_digest_next_due:
 *
 * O(1): every set of recipients has the same interval, so the earliest
 * digest is the one whose interval began first.
 *
 * Returns: when the next digest is due (the clock of the offers), or
 *   G_MAXINT64 when nothing is held
 */
gint64
bf_mail_digest_next_due (BfMailDigest *self)
{
  if (self->first_held == G_MAXINT64)
    return G_MAXINT64;
  return self->first_held + self->interval_usec;
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

  self->first_held = G_MAXINT64;
  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Entry *e = value;

      if (now_usec - e->window_start < self->interval_usec)
        {
          if (e->n_held > 0)
            self->first_held = MIN (self->first_held, e->window_start);
          continue;
        }
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

/* Persistence ---------------------------------------------------------------- */

#define KEY_RECIPIENTS "Recipients"

static GBytes *
key_file_to_bytes (GKeyFile *kf)
{
  gsize len = 0;
  char *data = g_key_file_to_data (kf, &len, NULL);

  return g_bytes_new_take (data, len);
}

/**
 * bf_mail_digest_save:
 * @unsent: (element-type BfMailDigestMail) (nullable): digests that are due
 *   and not handed to the MailCommand yet
 * @now_usec: the clock of the offers (monotonic)
 * @real_now_usec: the wall clock at the same moment, which the file keeps
 *   (the monotonic clock starts afresh at boot)
 *
 * Returns: (transfer full): the key file of what is held and @unsent; one
 *   with no groups when there is none
 */
GBytes *
bf_mail_digest_save (BfMailDigest *self,
                     GPtrArray    *unsent,
                     gint64        now_usec,
                     gint64        real_now_usec)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  GHashTableIter iter;
  gpointer key, value;
  guint n = 0;

  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Entry *e = value;
      g_autofree char *group = NULL;

      if (e->n_held == 0)
        continue;       /* a burst counter is not worth a write */
      group = g_strdup_printf ("Held %u", n++);
      g_key_file_set_string (kf, group, KEY_RECIPIENTS, key);
      g_key_file_set_int64 (kf, group, "WindowStartUSec", e->window_start - now_usec + real_now_usec);
      g_key_file_set_uint64 (kf, group, "Sent", e->sent);
      g_key_file_set_uint64 (kf, group, "Held", e->n_held);
      g_key_file_set_uint64 (kf, group, "Listed", e->n_listed);
      g_key_file_set_string (kf, group, "FirstSubject", e->first_subject);
      g_key_file_set_string (kf, group, "Text", e->text->str);
      g_key_file_set_string (kf, group, "Names", e->names->str);
      g_key_file_set_boolean (kf, group, "NamesCut", e->names_cut);
    }
  for (guint i = 0; unsent && i < unsent->len; i++)
    {
      BfMailDigestMail *mail = g_ptr_array_index (unsent, i);
      g_autofree char *group = g_strdup_printf ("Unsent %u", i);

      g_key_file_set_string (kf, group, KEY_RECIPIENTS, mail->recipients);
      g_key_file_set_string (kf, group, "Subject", mail->subject);
      g_key_file_set_string (kf, group, "Body", mail->body);
      g_key_file_set_uint64 (kf, group, "Alerts", mail->n_alerts);
    }
  return key_file_to_bytes (kf);
}

/* A string value of at most @max bytes, valid UTF-8 (GKeyFile checks). */
static char *
load_string (GKeyFile    *kf,
             const char  *group,
             const char  *key,
             gsize        max,
             GError     **error)
{
  g_autofree char *value = g_key_file_get_string (kf, group, key, error);

  if (value == NULL)
    return NULL;
  if (strlen (value) > max)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "key %s is longer than %" G_GSIZE_FORMAT " bytes", key, max);
      return NULL;
    }
  return g_steal_pointer (&value);
}

/* The To: line: one line of it. */
static char *
load_recipients (GKeyFile    *kf,
                 const char  *group,
                 GError     **error)
{
  g_autofree char *value = load_string (kf, group, KEY_RECIPIENTS, BF_MAIL_DIGEST_MAX_NAMES, error);

  if (value != NULL && (*value == '\0' || strpbrk (value, "\r\n") != NULL))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "key %s is not one line", KEY_RECIPIENTS);
      return NULL;
    }
  return g_steal_pointer (&value);
}

static gboolean
load_uint (GKeyFile    *kf,
           const char  *group,
           const char  *key,
           guint64      max,
           guint       *out,
           GError     **error)
{
  GError *local = NULL;
  guint64 value = g_key_file_get_uint64 (kf, group, key, &local);

  if (local != NULL)
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  if (value > max)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "key %s is %" G_GUINT64_FORMAT ", more than %" G_GUINT64_FORMAT, key, value, max);
      return FALSE;
    }
  *out = (guint) value;
  return TRUE;
}

static gboolean
load_held (BfMailDigest *self,
           GKeyFile     *kf,
           const char   *group,
           gint64        now_usec,
           gint64        real_now_usec,
           GError      **error)
{
  g_autofree char *recipients = NULL;
  g_autofree char *text = NULL;
  g_autofree char *names = NULL;
  g_autoptr(GError) local = NULL;
  Entry *e;
  gint64 start;

  recipients = load_recipients (kf, group, error);
  if (recipients == NULL)
    return FALSE;
  if (g_hash_table_contains (self->entries, recipients))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "recipients %s are held twice", recipients);
      return FALSE;
    }
  start = g_key_file_get_int64 (kf, group, "WindowStartUSec", &local);
  if (local != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  e = g_new0 (Entry, 1);
  if (!load_uint (kf, group, "Sent", G_MAXUINT, &e->sent, error) ||
      !load_uint (kf, group, "Held", G_MAXUINT, &e->n_held, error) ||
      !load_uint (kf, group, "Listed", BF_MAIL_DIGEST_MAX_LISTED, &e->n_listed, error) ||
      (e->first_subject = load_string (kf, group, "FirstSubject", BF_MAIL_DIGEST_MAX_BODY, error)) == NULL ||
      (text = load_string (kf, group, "Text", BF_MAIL_DIGEST_MAX_BODY + 1024, error)) == NULL ||
      (names = load_string (kf, group, "Names", BF_MAIL_DIGEST_MAX_NAMES, error)) == NULL)
    {
      entry_free (e);
      return FALSE;
    }
  if (e->n_held == 0 || e->n_listed > e->n_held)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "%u alerts held, %u of them listed", e->n_held, e->n_listed);
      entry_free (e);
      return FALSE;
    }
  e->names_cut = g_key_file_get_boolean (kf, group, "NamesCut", NULL);
  e->text = g_string_new (text);
  e->names = g_string_new (names);
  /* Back on the monotonic clock; never in the future (a clock set back):
   * then it is due an interval from now at the latest.  An interval is at
   * most a day: one that began two days ago is overdue as much as any. */
  start = CLAMP (start, real_now_usec - 2 * BF_MAIL_DIGEST_MAX_INTERVAL, real_now_usec);
  e->window_start = start - real_now_usec + now_usec;
  self->first_held = MIN (self->first_held, e->window_start);
  g_hash_table_insert (self->entries, g_steal_pointer (&recipients), e);
  return TRUE;
}

static BfMailDigestMail *
load_unsent (GKeyFile    *kf,
             const char  *group,
             GError     **error)
{
  g_autoptr(BfMailDigestMail) mail = g_new0 (BfMailDigestMail, 1);

  if ((mail->recipients = load_recipients (kf, group, error)) == NULL ||
      (mail->subject = load_string (kf, group, "Subject", BF_MAIL_DIGEST_MAX_BODY, error)) == NULL ||
      (mail->body = load_string (kf, group, "Body", 2 * (BF_MAIL_DIGEST_MAX_BODY + BF_MAIL_DIGEST_MAX_NAMES),
                                 error)) == NULL ||
      !load_uint (kf, group, "Alerts", G_MAXUINT, &mail->n_alerts, error))
    return NULL;
  return g_steal_pointer (&mail);
}

/**
 * bf_mail_digest_load:
 * @data: what bf_mail_digest_save() gave, from an earlier run
 * @unsent: (element-type BfMailDigestMail): gets the digests that were due
 *   and not sent, to be sent now
 * @dropped: (element-type utf8): gets what could not be read, one line each
 *
 * Takes back what was held, each set of recipients due when its interval
 * ends (at once when it ended while the daemon did not run).  For the
 * empty set only: what is held already stays as it is.
 *
 * Returns: FALSE when @data is not a key file at all (@error says why);
 *   else what could be read is taken and the rest is in @dropped
 */
gboolean
bf_mail_digest_load (BfMailDigest *self,
                     const char   *data,
                     gsize         len,
                     gint64        now_usec,
                     gint64        real_now_usec,
                     GPtrArray    *unsent,
                     GPtrArray    *dropped,
                     GError      **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_auto(GStrv) groups = NULL;

  if (!g_key_file_load_from_data (kf, data, len, G_KEY_FILE_NONE, error))
    return FALSE;
  groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    {
      g_autoptr(GError) local = NULL;

      if (g_str_has_prefix (groups[i], "Held "))
        load_held (self, kf, groups[i], now_usec, real_now_usec, &local);
      else if (g_str_has_prefix (groups[i], "Unsent "))
        {
          BfMailDigestMail *mail = load_unsent (kf, groups[i], &local);
          if (mail)
            g_ptr_array_add (unsent, mail);
        }
      else
        g_set_error (&local, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND, "unknown group");
      if (local != NULL)
        g_ptr_array_add (dropped, g_strdup_printf ("[%s]: %s", groups[i], local->message));
    }
  return TRUE;
}
