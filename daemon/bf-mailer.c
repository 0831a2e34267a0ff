/* bf-mailer.c: alert mails through the configured MailCommand
 *
 * The command (sendmail -t -oi by default) gets an RFC 5322 message on its
 * standard input and finds the recipients in the To: header.  It runs as
 * an async GSubprocess: the main loop never waits for it, and one that hangs
 * is killed after MAIL_TIMEOUT_SECONDS.  Failures are logged; an alert mail
 * is never worth stopping the daemon for.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-mailer.h"
#include "bf-util.h"

#define MAIL_TIMEOUT_SECONDS 60

struct _BfMailer
{
  GObject parent_instance;

  char *command;
  char *from;
  GCancellable *cancellable;
  guint in_flight;
  GQueue queue;             /* Outgoing, not started yet */
  guint queue_source_id;
};

typedef struct {
  GStrv argv;
  GBytes *input;
  char *worker;
  char *recipients;
} Outgoing;

static void
outgoing_free (Outgoing *o)
{
  g_strfreev (o->argv);
  g_bytes_unref (o->input);
  g_free (o->worker);
  g_free (o->recipients);
  g_free (o);
}

G_DEFINE_FINAL_TYPE (BfMailer, bf_mailer, G_TYPE_OBJECT)

typedef struct {
  BfMailer *mailer;
  GSubprocess *process;
  char *worker;
  char *recipients;
  guint timeout_id;
} Delivery;

static void
delivery_free (Delivery *d)
{
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  d->mailer->in_flight--;
  g_clear_object (&d->mailer);
  g_clear_object (&d->process);
  g_free (d->worker);
  g_free (d->recipients);
  g_free (d);
}

static void
bf_mailer_dispose (GObject *object)
{
  BfMailer *self = BF_MAILER (object);

  g_clear_handle_id (&self->queue_source_id, g_source_remove);
  g_queue_clear_full (&self->queue, (GDestroyNotify) outgoing_free);
  g_cancellable_cancel (self->cancellable);
  G_OBJECT_CLASS (bf_mailer_parent_class)->dispose (object);
}

static void
bf_mailer_finalize (GObject *object)
{
  BfMailer *self = BF_MAILER (object);

  g_clear_object (&self->cancellable);
  g_free (self->command);
  g_free (self->from);
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
  self->cancellable = g_cancellable_new ();
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

guint
bf_mailer_get_in_flight (BfMailer *self)
{
  return self->in_flight + self->queue.length;
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

static gboolean start_next_cb (gpointer data);

static gboolean
delivery_timeout_cb (gpointer data)
{
  Delivery *d = data;

  d->timeout_id = 0;
  g_warning ("Mail command for worker %s did not finish within %d s; killing it",
             d->worker, MAIL_TIMEOUT_SECONDS);
  g_subprocess_force_exit (d->process);
  return G_SOURCE_REMOVE;
}

static void
communicate_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  Delivery *d = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) err_bytes = NULL;

  if (!g_subprocess_communicate_finish (G_SUBPROCESS (object), result, NULL, &err_bytes, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_warning ("Mail about worker %s to %s failed: %s", d->worker, d->recipients, error->message);
    }
  else if (!g_subprocess_get_successful (d->process))
    {
      g_autofree char *tail = NULL;
      if (err_bytes && g_bytes_get_size (err_bytes) > 0)
        {
          gsize len = MIN (g_bytes_get_size (err_bytes), 512);
          tail = g_utf8_make_valid (g_bytes_get_data (err_bytes, NULL), len);
          g_strstrip (tail);
        }
      g_warning ("Mail about worker %s to %s failed: the mail command exited with status %d%s%s",
                 d->worker, d->recipients,
                 g_subprocess_get_if_exited (d->process) ? g_subprocess_get_exit_status (d->process) : -1,
                 tail ? ": " : "", tail ? tail : "");
    }
  else
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO,
                      "BUILDFLEET_WORKER", d->worker,
                      "MESSAGE", "Mailed %s about worker %s", d->recipients, d->worker);
  delivery_free (d);
}

/**
 * bf_mailer_send:
 * @to: recipients; nothing is sent when empty
 * @worker: the worker the mail is about (for logs)
 *
 * Sends a plain text mail, asynchronously.
 */
void
bf_mailer_send (BfMailer           *self,
                const char * const *to,
                const char         *worker,
                const char         *subject,
                const char         *body)
{
  g_auto(GStrv) argv = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) msg = g_string_new (NULL);
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *date = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S %z");
  g_autofree char *recipients = NULL;
  g_autofree char *safe_subject = header_safe (subject);
  g_autofree char *safe_from = header_safe (self->from);
  g_autoptr(GBytes) input = NULL;

  if (to == NULL || to[0] == NULL)
    return;
  if (self->command == NULL || *self->command == '\0')
    {
      g_message ("No MailCommand configured; not mailing about worker %s", worker);
      return;
    }
  if (!g_shell_parse_argv (self->command, NULL, &argv, &error))
    {
      g_warning ("MailCommand “%s” cannot be parsed: %s", self->command, error->message);
      return;
    }

  recipients = g_strjoinv (", ", (char **) to);
  g_string_append_printf (msg,
                          "From: %s\r\n"
                          "To: %s\r\n"
                          "Subject: %s\r\n"
                          "Date: %s\r\n"
                          "MIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: 8bit\r\n"
                          "X-Buildfleet-Worker: %s\r\n"
                          "\r\n",
                          safe_from, recipients, safe_subject, date, worker);
  g_string_append (msg, body);
  if (!g_str_has_suffix (body, "\n"))
    g_string_append_c (msg, '\n');
  input = g_string_free_to_bytes (g_steal_pointer (&msg));

  {
    Outgoing *o = g_new0 (Outgoing, 1);

    o->argv = g_steal_pointer (&argv);
    o->input = g_steal_pointer (&input);
    o->worker = g_strdup (worker);
    o->recipients = g_steal_pointer (&recipients);
    g_queue_push_tail (&self->queue, o);
  }
  /* Started from an idle callback, one per main-loop iteration: forking
   * the daemon is not cheap, and timers due at the same moment (a rack
   * going missing at once) must all fire before any mail process starts. */
  if (self->queue_source_id == 0)
    {
      self->queue_source_id = g_idle_add (start_next_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->queue_source_id),
                                "[buildfleetd] mail queue");
    }
}

static gboolean
start_next_cb (gpointer data)
{
  BfMailer *self = data;
  Outgoing *o = g_queue_pop_head (&self->queue);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  Delivery *d;

  if (o == NULL)
    {
      self->queue_source_id = 0;
      return G_SOURCE_REMOVE;
    }
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                        G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                        G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_setenv (launcher, "BUILDFLEET_WORKER_NAME", o->worker, TRUE);

  d = g_new0 (Delivery, 1);
  d->mailer = g_object_ref (self);
  d->worker = g_strdup (o->worker);
  d->recipients = g_strdup (o->recipients);
  self->in_flight++;
  d->process = g_subprocess_launcher_spawnv (launcher, (const char * const *) o->argv, &error);
  if (d->process == NULL)
    {
      g_warning ("Cannot run MailCommand for worker %s: %s", o->worker, error->message);
      delivery_free (d);
      outgoing_free (o);
      return G_SOURCE_CONTINUE;
    }
  d->timeout_id = bf_timeout_add_seconds (MAIL_TIMEOUT_SECONDS, delivery_timeout_cb, d,
                                          "[buildfleetd] mail timeout");
  g_subprocess_communicate_async (d->process, o->input, self->cancellable, communicate_cb, d);
  outgoing_free (o);
  return G_SOURCE_CONTINUE;
}
