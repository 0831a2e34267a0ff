/* bf-mailer.c: alert mails through the configured MailCommand
 *
 * The command (sendmail -t -oi by default) gets an RFC 5322 message on its
 * standard input and finds the recipients in the To: header.  It runs as
 * an async GSubprocess: the main loop never waits for it.  An alarm storm
 * (a rack going missing at once) must not become a process storm, and a
 * hanging command must not leak processes or descriptors:
 *
 *   - at most MAIL_MAX_RUNNING commands run at once; the other mails wait
 *     in a queue of at most MAIL_QUEUE_MAX, in order; when it is full the
 *     oldest waiting mail is dropped, logged once per overflow episode
 *     with a count when the queue has drained;
 *   - each command leads a process group of its own (bf-process-group.h);
 *   - a delivery ends once the command has exited and its stderr pipe is
 *     closed by every process holding it; one that has not ended after
 *     MailTimeout has its whole group stopped (SIGTERM, SIGKILL after
 *     MAIL_KILL_GRACE_MS), and only then gives up its slot;
 *   - stderr is drained as it comes, keeping MAIL_STDERR_KEEP bytes to
 *     explain a failure; both pipes are closed when the delivery ends.
 *
 * And an alarm storm must not become a mail storm: past the first few
 * alerts to the same recipients within MailDigestInterval, the others go
 * out together as one digest when the interval ends (bf-mail-digest.h).
 *
 * Nothing held is lost when the daemon stops: what is held, and the
 * digests that are due and still wait in the queue, are kept in
 * StateDirectory/mail-digest.state (written in a thread, temporary file,
 * fsync, rename: bf_state_write_file()) at most HELD_SAVE_DELAY_MS after
 * an alert is held, at once when a digest is handed to its MailCommand
 * (that digest is sent: the file no longer has it), and at shutdown.  The
 * next daemon takes it back and sends each digest when it is due, at once
 * if that time has passed.  After a crash (SIGKILL) the alerts held in the
 * last HELD_SAVE_DELAY_MS are lost, and a digest handed over in the last
 * moment before may go out again.
 *
 * Each mail ends in exactly one log line: mailed, or failed and why.  An
 * alert mail is never worth stopping the daemon for.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-log.h"
#include "bf-mail-digest.h"
#include "bf-mailer.h"
#include "bf-process-group.h"
#include "bf-state.h"
#include "bf-util.h"

#define MAIL_TIMEOUT_DEFAULT_USEC (60 * G_USEC_PER_SEC)
#define MAIL_MAX_RUNNING 4
#define MAIL_QUEUE_MAX 64
#define MAIL_KILL_GRACE_MS 5000
#define MAIL_STDERR_KEEP 512
#define MAIL_DIGEST_INTERVAL_DEFAULT_USEC (60 * G_USEC_PER_SEC)
#define HELD_FILE "mail-digest.state"
#define HELD_SAVE_DELAY_MS 250
/* Far above what the digests' own bounds let it hold for any sensible
 * number of recipient sets. */
#define HELD_MAX_FILE (64 * 1024 * 1024)
#define HELD_MAX_DROPPED_LOGGED 20

struct _BfMailer
{
  GObject parent_instance;

  char *command;
  char *from;
  guint64 timeout_usec;
  guint running;            /* deliveries started and not ended */
  GQueue queue;             /* Outgoing, not started yet */
  guint queue_source_id;
  guint dropped;            /* in the current overflow episode */
  BfMailDigest *digest;     /* alerts held for a digest */
  guint digest_source_id;   /* the next digest due */
  gint64 digest_due;        /* when digest_source_id fires (monotonic) */
  char *held_directory;     /* StateDirectory; NULL: nothing is kept */
  char *held_path;          /* its mail-digest.state */
  guint held_save_id;
  gboolean held_dirty;      /* changed since the last save started */
  gboolean held_writing;    /* a save runs in a thread */
  gboolean held_warned;     /* a save failed; not repeated */
  gboolean stopped;         /* bf_mailer_flush(): no digest goes out any more */
};

typedef struct {
  GStrv argv;
  GBytes *input;
  char *worker;             /* NULL for a digest */
  char *about;              /* "worker NAME", "N alerts (a digest)" */
  char *recipients;
  BfMailDigestMail *digest; /* for a digest: what it says, to keep it */
} Outgoing;

static void
outgoing_free (Outgoing *o)
{
  g_clear_pointer (&o->digest, bf_mail_digest_mail_free);
  g_strfreev (o->argv);
  g_bytes_unref (o->input);
  g_free (o->worker);
  g_free (o->about);
  g_free (o->recipients);
  g_free (o);
}

G_DEFINE_FINAL_TYPE (BfMailer, bf_mailer, G_TYPE_OBJECT)

typedef struct {
  BfMailer *mailer;
  GSubprocess *process;
  GPid pgid;
  char *worker;                 /* NULL for a digest */
  char *about;
  char *recipients;
  GBytes *input;
  GCancellable *cancellable;    /* the pipes' I/O */
  GByteArray *err;              /* the start of stderr */
  guint8 buffer[4096];
  guint timeout_id;
  guint pending;                /* write, read, wait and group stop in flight */
  gboolean exited_in_time;
  gboolean timed_out;
  gboolean killed;              /* SIGKILL was needed */
} Delivery;

static void
delivery_free (Delivery *d)
{
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  g_clear_object (&d->mailer);
  g_clear_object (&d->process);
  g_clear_object (&d->cancellable);
  g_clear_pointer (&d->input, g_bytes_unref);
  g_clear_pointer (&d->err, g_byte_array_unref);
  g_free (d->worker);
  g_free (d->about);
  g_free (d->recipients);
  g_free (d);
}

static void
bf_mailer_dispose (GObject *object)
{
  BfMailer *self = BF_MAILER (object);

  /* Deliveries hold a reference: none runs any more. */
  g_clear_handle_id (&self->queue_source_id, g_source_remove);
  g_clear_handle_id (&self->digest_source_id, g_source_remove);
  g_clear_handle_id (&self->held_save_id, g_source_remove);
  g_queue_clear_full (&self->queue, (GDestroyNotify) outgoing_free);
  G_OBJECT_CLASS (bf_mailer_parent_class)->dispose (object);
}

static void
bf_mailer_finalize (GObject *object)
{
  BfMailer *self = BF_MAILER (object);

  g_free (self->command);
  g_free (self->from);
  g_free (self->held_directory);
  g_free (self->held_path);
  g_clear_pointer (&self->digest, bf_mail_digest_free);
  G_OBJECT_CLASS (bf_mailer_parent_class)->finalize (object);
}

static void
bf_mailer_class_init (BfMailerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_mailer_dispose;
  object_class->finalize = bf_mailer_finalize;
}

static void
bf_mailer_init (BfMailer *self)
{
  g_queue_init (&self->queue);
  self->timeout_usec = MAIL_TIMEOUT_DEFAULT_USEC;
  self->digest = bf_mail_digest_new ();
  bf_mail_digest_set_interval (self->digest, MAIL_DIGEST_INTERVAL_DEFAULT_USEC);
}

BfMailer *
bf_mailer_new (const char *command,
               const char *from)
{
  BfMailer *self = g_object_new (BF_TYPE_MAILER, NULL);

  bf_mailer_set_config (self, command, from);
  return self;
}

void
bf_mailer_set_config (BfMailer   *self,
                      const char *command,
                      const char *from)
{
  g_free (self->command);
  self->command = g_strdup (command);
  g_free (self->from);
  self->from = g_strdup (from);
}

/**
 * bf_mailer_set_timeout:
 * @timeout_usec: how long one MailCommand may run; 0 for the default
 *
 * Applies to deliveries started from now on.
 */
void
bf_mailer_set_timeout (BfMailer *self,
                       guint64   timeout_usec)
{
  self->timeout_usec = timeout_usec ? timeout_usec : MAIL_TIMEOUT_DEFAULT_USEC;
}

guint
bf_mailer_get_in_flight (BfMailer *self)
{
  return self->running + self->queue.length;
}

/* Header values must stay on one line. */
static char *
header_safe (const char *text)
{
  char *copy = g_strdup (text);

  for (char *c = copy; *c; c++)
    if (*c == '\r' || *c == '\n')
      *c = ' ';
  return copy;
}


static void held_changed (BfMailer *self,
                          guint     delay_ms);

/* Queue ---------------------------------------------------------------------- */

static gboolean start_next_cb (gpointer data);

/* Started from an idle callback, one per main-loop iteration: forking the
 * daemon is not cheap, and timers due at the same moment (a rack going
 * missing at once) must all fire before any mail process starts. */
static void
schedule_queue (BfMailer *self)
{
  if (self->queue_source_id != 0 || self->queue.length == 0 || self->running >= MAIL_MAX_RUNNING)
    return;
  self->queue_source_id = g_idle_add (start_next_cb, self);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->queue_source_id),
                            "[buildfleetd] mail queue");
}

static void
drop_oldest (BfMailer *self)
{
  Outgoing *o = g_queue_pop_head (&self->queue);

  if (self->dropped++ == 0)
    g_warning ("Too many alert mails at once: %u wait while %u MailCommands run; "
               "dropping the oldest waiting mails until the queue drains, "
               "starting with the one about %s to %s",
               MAIL_QUEUE_MAX, self->running, o->about, o->recipients);
  if (o->digest != NULL)
    held_changed (self, HELD_SAVE_DELAY_MS);
  outgoing_free (o);
}

static void
end_overflow (BfMailer *self)
{
  if (self->dropped == 0)
    return;
  g_warning ("The mail queue has drained: %u alert mail%s dropped because it was full",
             self->dropped, self->dropped == 1 ? " was" : "s were");
  self->dropped = 0;
}

/* Delivery ------------------------------------------------------------------- */

static void delivery_log (Delivery       *d,
                          GLogLevelFlags  level,
                          const char     *format,
                          ...) G_GNUC_PRINTF (3, 4);

/* A mail about one worker is logged with its BUILDFLEET_WORKER field. */
static void
delivery_log (Delivery       *d,
              GLogLevelFlags  level,
              const char     *format,
              ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  if (d->worker != NULL)
    bf_log_worker (level, d->worker, "%s", message);
  else
    g_log_structured (G_LOG_DOMAIN, level, "MESSAGE", "%s", message);
}

static void
delivery_log_outcome (Delivery *d)
{
  g_autofree char *tail = NULL;
  g_autofree char *timeout = g_strdup_printf ("%.1f s", d->mailer->timeout_usec / (double) G_USEC_PER_SEC);

  if (d->err->len > 0)
    {
      tail = g_utf8_make_valid ((const char *) d->err->data, d->err->len);
      g_strstrip (tail);
    }
  if (d->exited_in_time && g_subprocess_get_successful (d->process))
    {
      if (d->timed_out)
        delivery_log (d, G_LOG_LEVEL_WARNING,
                      "Mailed %s about %s, but the MailCommand left processes holding "
                      "its output open; they were stopped after %s",
                      d->recipients, d->about, timeout);
      else
        delivery_log (d, G_LOG_LEVEL_INFO, "Mailed %s about %s", d->recipients, d->about);
    }
  else if (!d->exited_in_time)
    delivery_log (d, G_LOG_LEVEL_WARNING,
                  "Mail about %s to %s failed: the MailCommand did not finish within %s; "
                  "its processes were stopped%s%s%s",
                  d->about, d->recipients, timeout,
                  d->killed ? " (SIGKILL was needed)" : "",
                  tail && *tail ? ": " : "", tail && *tail ? tail : "");
  else if (g_subprocess_get_if_exited (d->process))
    delivery_log (d, G_LOG_LEVEL_WARNING,
                  "Mail about %s to %s failed: the MailCommand exited with status %d%s%s",
                  d->about, d->recipients, g_subprocess_get_exit_status (d->process),
                  tail && *tail ? ": " : "", tail && *tail ? tail : "");
  else
    delivery_log (d, G_LOG_LEVEL_WARNING,
                  "Mail about %s to %s failed: the MailCommand was killed by signal %d%s%s",
                  d->about, d->recipients, g_subprocess_get_term_sig (d->process),
                  tail && *tail ? ": " : "", tail && *tail ? tail : "");
}

/* Each of the delivery's operations in flight holds it; the last one to
 * finish ends it. */
static void
delivery_unref (Delivery *d)
{
  BfMailer *self = d->mailer;

  g_assert (d->pending > 0);
  if (--d->pending > 0)
    return;
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  delivery_log_outcome (d);
  self->running--;
  schedule_queue (self);
  delivery_free (d);
}

static void
group_stopped_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  Delivery *d = user_data;

  bf_process_group_stop_finish (result, &d->killed, NULL);
  /* Whatever still holds a pipe left the group on purpose: stop waiting. */
  g_cancellable_cancel (d->cancellable);
  delivery_unref (d);
}

static gboolean
delivery_timeout_cb (gpointer data)
{
  Delivery *d = data;

  d->timeout_id = 0;
  d->timed_out = TRUE;
  d->pending++;
  bf_process_group_stop_async (d->pgid, MAIL_KILL_GRACE_MS, group_stopped_cb, d);
  return G_SOURCE_REMOVE;
}

static void
write_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Delivery *d = user_data;

  /* A command that does not read its input fails or times out on its own. */
  g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, NULL);
  g_output_stream_close (G_OUTPUT_STREAM (source), NULL, NULL);
  delivery_unref (d);
}

static void
read_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Delivery *d = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, NULL);

  if (n > 0)
    {
      if (d->err->len < MAIL_STDERR_KEEP)
        g_byte_array_append (d->err, d->buffer, MIN ((gsize) n, MAIL_STDERR_KEEP - d->err->len));
      g_input_stream_read_async (G_INPUT_STREAM (source), d->buffer, sizeof d->buffer,
                                 G_PRIORITY_DEFAULT, d->cancellable, read_cb, d);
      return;
    }
  g_input_stream_close (G_INPUT_STREAM (source), NULL, NULL);
  delivery_unref (d);
}

static void
wait_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Delivery *d = user_data;

  g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  d->exited_in_time = !d->timed_out;
  delivery_unref (d);
}

static void
start_delivery (BfMailer *self,
                Outgoing *o)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GError) error = NULL;
  Delivery *d;

  launcher = bf_process_group_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                            G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                            G_SUBPROCESS_FLAGS_STDERR_PIPE);
  if (o->worker != NULL)
    g_subprocess_launcher_setenv (launcher, "BUILDFLEET_WORKER_NAME", o->worker, TRUE);

  d = g_new0 (Delivery, 1);
  d->process = g_subprocess_launcher_spawnv (launcher, (const char * const *) o->argv, &error);
  if (d->process == NULL)
    {
      d->worker = g_strdup (o->worker);
      delivery_log (d, G_LOG_LEVEL_WARNING, "Mail about %s to %s failed: cannot run the MailCommand: %s",
                    o->about, o->recipients, error->message);
      delivery_free (d);
      return;
    }
  d->mailer = g_object_ref (self);
  d->pgid = bf_process_group_get_id (d->process);
  d->worker = g_strdup (o->worker);
  d->about = g_strdup (o->about);
  d->recipients = g_strdup (o->recipients);
  d->input = g_bytes_ref (o->input);
  d->cancellable = g_cancellable_new ();
  d->err = g_byte_array_new ();
  self->running++;

  d->pending = 3;
  g_output_stream_write_all_async (g_subprocess_get_stdin_pipe (d->process),
                                   g_bytes_get_data (d->input, NULL), g_bytes_get_size (d->input),
                                   G_PRIORITY_DEFAULT, d->cancellable, write_cb, d);
  g_input_stream_read_async (g_subprocess_get_stderr_pipe (d->process), d->buffer, sizeof d->buffer,
                             G_PRIORITY_DEFAULT, d->cancellable, read_cb, d);
  g_subprocess_wait_async (d->process, NULL, wait_cb, d);
  d->timeout_id = bf_timeout_add (bf_usec_to_ms (self->timeout_usec), delivery_timeout_cb, d,
                                  "[buildfleetd] mail timeout");
}

static gboolean
start_next_cb (gpointer data)
{
  BfMailer *self = data;
  Outgoing *o;

  if (self->running >= MAIL_MAX_RUNNING || self->queue.length == 0)
    {
      self->queue_source_id = 0;
      return G_SOURCE_REMOVE;
    }
  o = g_queue_pop_head (&self->queue);
  start_delivery (self, o);
  /* Handed to the MailCommand: sent, as far as the file goes. */
  if (o->digest != NULL)
    held_changed (self, 0);
  outgoing_free (o);
  if (self->queue.length == 0)
    end_overflow (self);
  return G_SOURCE_CONTINUE;
}

/* Composes the message and queues it.  @worker is NULL for a digest of
 * @n_alerts alerts.  Returns: (transfer none) (nullable): the queued mail */
static Outgoing *
queue_mail (BfMailer   *self,
            const char *recipients,
            const char *worker,
            guint       n_alerts,
            const char *subject,
            const char *body)
{
  g_auto(GStrv) argv = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) msg = g_string_new (NULL);
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *date = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S %z");
  g_autofree char *safe_subject = header_safe (subject);
  g_autofree char *safe_from = header_safe (self->from);
  Outgoing *o;

  if (self->command == NULL || *self->command == '\0')
    {
      g_message ("No MailCommand configured; not mailing %s about %s%s", recipients,
                 worker ? "worker " : "", worker ? worker : "a digest of alerts");
      return NULL;
    }
  if (!g_shell_parse_argv (self->command, NULL, &argv, &error))
    {
      g_warning ("MailCommand “%s” cannot be parsed: %s", self->command, error->message);
      return NULL;
    }

  g_string_append_printf (msg,
                          "From: %s\r\n"
                          "To: %s\r\n"
                          "Subject: %s\r\n"
                          "Date: %s\r\n"
                          "MIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: 8bit\r\n",
                          safe_from, recipients, safe_subject, date);
  if (worker != NULL)
    g_string_append_printf (msg, "X-Buildfleet-Worker: %s\r\n", worker);
  else
    g_string_append_printf (msg, "X-Buildfleet-Digest: %u\r\n", n_alerts);
  g_string_append (msg, "\r\n");
  g_string_append (msg, body);
  if (!g_str_has_suffix (body, "\n"))
    g_string_append_c (msg, '\n');

  o = g_new0 (Outgoing, 1);
  o->argv = g_steal_pointer (&argv);
  o->input = g_string_free_to_bytes (g_steal_pointer (&msg));
  o->worker = g_strdup (worker);
  o->about = worker ? g_strdup_printf ("worker %s", worker)
                    : g_strdup_printf ("%u alert%s (a digest)", n_alerts, n_alerts == 1 ? "" : "s");
  o->recipients = g_strdup (recipients);
  g_queue_push_tail (&self->queue, o);
  while (self->queue.length > MAIL_QUEUE_MAX)
    drop_oldest (self);
  schedule_queue (self);
  return o;
}

/* Queues the digest @mail (taken), keeping it in the file until it goes. */
static void
queue_digest (BfMailer         *self,
              BfMailDigestMail *mail)
{
  Outgoing *o = queue_mail (self, mail->recipients, NULL, mail->n_alerts, mail->subject, mail->body);

  if (o != NULL)
    o->digest = g_steal_pointer (&mail);
  g_clear_pointer (&mail, bf_mail_digest_mail_free);
  held_changed (self, HELD_SAVE_DELAY_MS);
}

static void schedule_digest (BfMailer *self);

static gboolean
digest_due_cb (gpointer data)
{
  BfMailer *self = data;
  g_autoptr(GPtrArray) due = NULL;

  self->digest_source_id = 0;
  due = bf_mail_digest_take_due (self->digest, g_get_monotonic_time ());
  while (due->len > 0)
    queue_digest (self, g_ptr_array_steal_index (due, 0));
  schedule_digest (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_digest (BfMailer *self)
{
  gint64 due = bf_mail_digest_next_due (self->digest);
  gint64 wait;

  /* Every alert held in a storm: the timer is already right. */
  if ((self->digest_source_id != 0 && due == self->digest_due) || self->stopped)
    return;
  g_clear_handle_id (&self->digest_source_id, g_source_remove);
  self->digest_due = due;
  if (due == G_MAXINT64)
    return;
  wait = MAX (due - g_get_monotonic_time (), 0);
  self->digest_source_id = bf_timeout_add ((guint) MIN ((wait + 999) / 1000, G_MAXUINT),
                                           digest_due_cb, self, "[buildfleetd] mail digest");
}

/**
 * bf_mailer_set_digest_interval:
 * @interval_usec: MailDigestInterval; 0 mails every alert on its own
 *
 * What is held waits for the new interval (or goes at once for 0).
 */
void
bf_mailer_set_digest_interval (BfMailer *self,
                               guint64   interval_usec)
{
  bf_mail_digest_set_interval (self->digest, (gint64) MIN (interval_usec, (guint64) G_MAXINT64));
  schedule_digest (self);
}

/**
 * bf_mailer_send:
 * @to: recipients; nothing is sent when empty
 * @worker: the worker the mail is about (for logs)
 *
 * Sends a plain text mail, asynchronously: at once, or in the next digest
 * to the same recipients when more than BF_MAIL_DIGEST_BURST came within
 * MailDigestInterval.
 */
void
bf_mailer_send (BfMailer           *self,
                const char * const *to,
                const char         *worker,
                const char         *subject,
                const char         *body)
{
  g_autofree char *recipients = NULL;
  guint held;

  if (to == NULL || to[0] == NULL)
    return;
  if (self->command == NULL || *self->command == '\0')
    {
      g_message ("No MailCommand configured; not mailing about worker %s", worker);
      return;
    }
  recipients = g_strjoinv (", ", (char **) to);
  held = bf_mail_digest_offer (self->digest, recipients, worker, subject, body, g_get_monotonic_time ());
  if (held == 0)
    {
      queue_mail (self, recipients, worker, 1, subject, body);
      return;
    }
  if (held == 1)
    bf_worker_message (worker, "More than %u alerts for %s within MailDigestInterval: "
                       "this one about worker %s and the next ones go out together in one digest",
                       BF_MAIL_DIGEST_BURST, recipients, worker);
  else
    bf_worker_debug (worker, "The alert about worker %s to %s waits for the digest", worker, recipients);
  schedule_digest (self);
  held_changed (self, HELD_SAVE_DELAY_MS);
}

/* What is held, kept across restarts ---------------------------------------- */

static GBytes *
held_snapshot (BfMailer *self)
{
  g_autoptr(GPtrArray) unsent = g_ptr_array_new ();

  for (GList *l = self->queue.head; l != NULL; l = l->next)
    {
      Outgoing *o = l->data;

      if (o->digest != NULL)
        g_ptr_array_add (unsent, o->digest);
    }
  return bf_mail_digest_save (self->digest, unsent, g_get_monotonic_time (), g_get_real_time ());
}

typedef struct {
  char *directory;
  char *path;
  GBytes *bytes;
} HeldSave;

static void
held_save_free (HeldSave *job)
{
  g_free (job->directory);
  g_free (job->path);
  g_bytes_unref (job->bytes);
  g_free (job);
}

static void
held_save_thread (GTask        *task,
                  gpointer      source_object,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  HeldSave *job = task_data;
  GError *error = NULL;

  if (bf_state_write_file (job->directory, job->path, job->bytes, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
held_save_warn (BfMailer     *self,
                const GError *error)
{
  if (error == NULL)
    {
      self->held_warned = FALSE;
      return;
    }
  if (!self->held_warned)
    g_warning ("Alerts held for a mail digest: %s; they are lost if the daemon stops "
               "before the digest goes", error->message);
  self->held_warned = TRUE;
}

static void
held_save_done (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  BfMailer *self = BF_MAILER (object);
  g_autoptr(GError) error = NULL;

  self->held_writing = FALSE;
  g_task_propagate_boolean (G_TASK (result), &error);
  held_save_warn (self, error);
  if (self->held_dirty)
    held_changed (self, 0);
}

static gboolean
held_save_cb (gpointer data)
{
  BfMailer *self = data;
  g_autoptr(GTask) task = g_task_new (self, NULL, held_save_done, NULL);
  HeldSave *job = g_new0 (HeldSave, 1);

  self->held_save_id = 0;
  self->held_dirty = FALSE;
  self->held_writing = TRUE;
  job->directory = g_strdup (self->held_directory);
  job->path = g_strdup (self->held_path);
  job->bytes = held_snapshot (self);
  g_task_set_source_tag (task, held_save_cb);
  g_task_set_name (task, "[buildfleetd] mail digest save");
  g_task_set_task_data (task, job, (GDestroyNotify) held_save_free);
  g_task_run_in_thread (task, held_save_thread);
  return G_SOURCE_REMOVE;
}

/* What is held changed: saved within @delay_ms, one save at a time (the
 * next one starts when the running one ends). */
static void
held_changed (BfMailer *self,
              guint     delay_ms)
{
  if (self->held_path == NULL)
    return;
  self->held_dirty = TRUE;
  /* once stopped, bf_mailer_flush() saves */
  if (self->held_writing || self->stopped)
    return;
  if (self->held_save_id != 0 && delay_ms > 0)
    return;
  g_clear_handle_id (&self->held_save_id, g_source_remove);
  self->held_save_id = bf_timeout_add (delay_ms, held_save_cb, self, "[buildfleetd] mail digest save");
}

static void
held_set_aside (BfMailer   *self,
                const char *why)
{
  bf_state_set_aside (self->held_path, "Mail digest file", why);
  /* the clean version replaces it */
  held_changed (self, 0);
}

/**
 * bf_mailer_load_held:
 * @state_directory: StateDirectory
 *
 * Takes back what an earlier daemon held for digests (see the top of this
 * file) and keeps what is held from now on there.  Never fails: a file
 * that cannot be read whole is set aside with a warning, and what could be
 * read of it is kept.  For start-up, before the main loop runs.
 */
void
bf_mailer_load_held (BfMailer   *self,
                     const char *state_directory)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) unsent = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_mail_digest_mail_free);
  g_autoptr(GPtrArray) dropped = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GMappedFile) file = NULL;
  guint n_unsent;

  g_free (self->held_directory);
  self->held_directory = g_strdup (state_directory);
  g_free (self->held_path);
  self->held_path = g_build_filename (state_directory, HELD_FILE, NULL);

  file = g_mapped_file_new (self->held_path, FALSE, &error);
  if (file == NULL)
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_warning ("Cannot read the alerts held for mail digests: %s", error->message);
      return;
    }
  if (g_mapped_file_get_length (file) > HELD_MAX_FILE)
    {
      held_set_aside (self, "larger than any digest could make it");
      return;
    }
  if (!bf_mail_digest_load (self->digest, g_mapped_file_get_contents (file), g_mapped_file_get_length (file),
                            g_get_monotonic_time (), g_get_real_time (), unsent, dropped, &error))
    {
      held_set_aside (self, error->message);
      return;
    }
  n_unsent = unsent->len;
  while (unsent->len > 0)
    queue_digest (self, g_ptr_array_steal_index (unsent, 0));
  if (dropped->len > 0)
    {
      g_autofree char *why = g_strdup_printf ("%u unreadable %s left out, the rest kept", dropped->len,
                                              dropped->len == 1 ? "entry" : "entries");

      for (guint i = 0; i < dropped->len && i < HELD_MAX_DROPPED_LOGGED; i++)
        g_warning ("Mail digest file %s: left out %s", self->held_path, (char *) g_ptr_array_index (dropped, i));
      held_set_aside (self, why);
    }
  if (bf_mail_digest_next_due (self->digest) != G_MAXINT64 || n_unsent > 0)
    g_message ("Took back the alerts held for mail digests before the restart from %s%s",
               self->held_path, n_unsent > 0 ? "; digests that were due go out now" : "");
  schedule_digest (self);
}

/**
 * bf_mailer_flush:
 *
 * For shutdown: saves what is held and the digests still queued,
 * synchronously, and sends no digest any more (the next daemon does).
 * Called again later (the loop ran on), it saves what was held since.
 */
void
bf_mailer_flush (BfMailer *self)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  GList *l;

  if (self->held_path == NULL)
    return;
  /* A save in a thread holds a reference to us; let it finish first. */
  while (self->held_writing)
    g_main_context_iteration (NULL, TRUE);
  g_clear_handle_id (&self->digest_source_id, g_source_remove);
  g_clear_handle_id (&self->held_save_id, g_source_remove);
  if (self->held_dirty)
    {
      self->held_dirty = FALSE;
      bytes = held_snapshot (self);
      if (!bf_state_write_file (self->held_directory, self->held_path, bytes, &error))
        held_save_warn (self, error);
    }
  self->stopped = TRUE;
  /* The queued digests are in the file now: none may go out as well. */
  for (l = self->queue.head; l != NULL;)
    {
      GList *next = l->next;
      Outgoing *o = l->data;

      if (o->digest != NULL)
        {
          g_queue_delete_link (&self->queue, l);
          outgoing_free (o);
        }
      l = next;
    }
}
