/* bf-pb-link.c: a worker speaking Perspective Broker, as a BfWorkerLink
 *
 * Buildbot's default worker protocol, master side, over a TCP or TLS
 * stream.  The broker (bf-pb-broker.c) does the wire; this file does the
 * session as Buildbot's master does it:
 *
 * - We speak first: the banana dialect offer, then ["version", 6].
 * - Login as Twisted's _PortalRoot: the worker calls login(name) on the
 *   "root" object and gets (challenge, challenger); it calls
 *   respond(md5 (md5 (password) + challenge), mind) on the challenger and
 *   gets our perspective.  The check goes through the listener's callback
 *   (constant time, throttled per address); an unknown name and a wrong
 *   password give the same UnauthorizedLogin to the peer.  Nothing else is
 *   accepted before that (the link then emits "logged-in").
 * - The master calls the worker's mind (its Bot): print, getWorkerInfo,
 *   setBuilderList, shutdown; and the WorkerForBuilder references
 *   setBuilderList returned: startCommand (with a reference to one of our
 *   command objects), interruptCommand.  The worker calls our perspective
 *   (keepalive, shutdown) and our command objects (update, complete).
 *
 * Builders: a PB worker runs a command on a WorkerForBuilder, and runs one
 * command per builder at a time (a second startCommand kills the first,
 * "leftover command, dropping it").  The set of builders told to the worker
 * grows on demand (setBuilderList with the union, builddir = the builder's
 * name) and a second concurrent command of one builder is refused with
 * Busy in prepare_command.
 *
 * Liveness, deadlines and floods as bf-connection.c does them for msgpack:
 * anything received is a sign of life; quiet for a keepalive interval, the
 * worker gets print("keepalive") (one at a time, two intervals to answer);
 * quiet for two intervals is "keepalive timeout".  Every call of ours has a
 * deadline; at most BF_PB_BROKER_MAX_OUTSTANDING are unanswered.  All on
 * the monotonic clock.
 *
 * Memory: one shared read buffer for every link (the main thread reads
 * one link at a time); output waits in a per-link buffer only while the
 * socket is full, bounded by MAX_OUTPUT_BYTES.  A plain TCP link is a bare
 * descriptor in the shared epoll set, written and read with send() and
 * recv(): a GSocket, its GSocketConnection, their two streams and a
 * GCancellable were a kilobyte of every attached PB worker (issue 20).
 * Only TLS (and a caller handing over a stream) goes through GIO.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "bf-error.h"
#include "bf-limits.h"
#include "bf-log.h"
#include "bf-pb-auth.h"
#include "bf-pb-broker.h"
#include "bf-pb-link.h"
#include "bf-poller.h"
#include "bf-timer-queue.h"
#include "bf-worker-link.h"
#include "bf-util.h"

#define ACTIVITY_MIN_PERIOD_USEC G_USEC_PER_SEC
#define ATTACH_TIMEOUT_USEC (30 * G_USEC_PER_SEC)
#define DEFAULT_CALL_TIMEOUT_USEC (60 * G_USEC_PER_SEC)
#define INTERRUPT_TIMEOUT_USEC (10 * G_USEC_PER_SEC)
#define FLOOD_RATE 5000.0          /* calls per second, sustained */
#define FLOOD_BURST 20000.0
#define MAX_OUTPUT_BYTES (64 * 1024 * 1024)
#define MAX_LOGIN_ATTEMPTS 3
#define MAX_BUILDERS 1024
#define READ_BUFFER_SIZE (16 * 1024)
#define READ_BUDGET_USEC 1000
/* Read bytes go to the broker this many at a time, the clock checked in
 * between: a 16 KiB read can hold five hundred small calls, 256 bytes a
 * handful (a sanitizer build overran its slice by a millisecond with 1 KiB). */
#define FEED_CHUNK 256

#define UNAUTHORIZED "twisted.cred.error.UnauthorizedLogin"
#define NO_SUCH_METHOD "twisted.spread.flavors.NoSuchMethod"
#define PB_ERROR "twisted.spread.pb.Error"

enum {
  KIND_CHALLENGER = 1,
  KIND_PERSPECTIVE,
  KIND_COMMAND,
  KIND_TRANSFER,       /* a transfer's writer or reader (FileWriter / FileReader) */
};

typedef enum {
  LOGIN_WAIT,          /* nothing or login() so far */
  LOGIN_CHALLENGED,    /* challenge sent, waiting for respond() */
  LOGIN_DONE,
} LoginState;

typedef struct _Call Call;
typedef void (*CallDone) (BfPbLink     *self,
                          BfJellyValue *result,
                          BfJellyValue *failure,
                          const GError *error,
                          gpointer      data);

struct _Call {
  BfPbLink *self;         /* unowned: calls end before the link */
  gint64 request_id;
  char *method;
  BfTimer *timer;
  CallDone done;
  gpointer data;
};

typedef struct {
  char *name;
  gint64 ref_id;          /* the worker's WorkerForBuilder; 0 until told */
  gboolean asked;         /* in the setBuilderList in flight */
} Builder;

typedef struct {
  BfPbLink *self;
  char *id;
  char *name;
  char *builder;
  GVariant *args;         /* prepared; NULL once sent */
  const BfCommandSink *sink;
  gpointer user_data;
  gint64 object_id;       /* our command object; 0 once gone from the broker */
  gint64 transfer_id;     /* our writer / reader for a transfer; 0 if none or gone */
  gboolean started;       /* startCommand sent */
  gboolean finished;      /* the sink got complete, or was forgotten */
  char *late_failure;     /* completes with this from late_id */
  gboolean late_lost;
  guint late_id;
} Cmd;

struct _BfPbLink
{
  GObject parent_instance;

  int fd;                       /* plain TCP from bf_pb_link_new_for_fd(); -1 with a stream */
  gboolean out_watched;        /* fd: G_IO_OUT in the epoll set while output waits */
  GIOStream *stream;           /* TLS, or a stream handed to bf_pb_link_new(); NULL with fd */
  GPollableInputStream *in;
  GPollableOutputStream *out;
  GSource *in_source;          /* TLS: the stream may hold decrypted bytes */
  BfPollerWatch *in_watch;     /* plain TCP: the socket in the shared epoll set (fd: output too) */
  GSource *out_source;
  GByteArray *outbuf;            /* waiting for the socket; NULL when empty */
  GByteArray *unfed;             /* read, not yet decoded: the last read's slice ran out; NULL when none */
  gboolean tls;
  gboolean tls_ready;
  GCancellable *cancellable;   /* with a stream only */

  char *peer;
  char *worker_name;              /* NULL until logged in */
  BfPbBroker *broker;
  BfPbLinkAuthFunc auth;
  gpointer auth_data;
  guint msgpack_port;

  /* the first bytes, to recognise peers that are not PB */
  guint8 head[4];
  guint head_len;
  gboolean head_checked;

  LoginState login;
  guint login_attempts;
  guint8 challenge[BF_PB_AUTH_CHALLENGE_SIZE];
  char *login_name;
  gint64 challenger_id;
  gint64 perspective_id;
  gint64 mind_id;
  BfTimer *login_timer;

  gboolean closed;
  char *close_reason;
  BfWorkerInfo *info;

  GHashTable *calls;              /* request id -> Call* */
  GHashTable *commands;           /* command id -> Cmd*; NULL until the first */
  GHashTable *busy;               /* builder -> Cmd* running; NULL until the first */
  GHashTable *builders;           /* name -> Builder*; NULL until the first */
  gboolean builder_list_in_flight;

  guint64 keepalive_interval_usec;
  guint64 last_rx_usec;
  gint64 last_rx_mono;
  gint64 last_activity_emit_mono;
  BfTimer *keepalive_timer;
  gboolean keepalive_pending;

  BfTokenBucket flood;
};

static void bf_pb_link_iface_init (BfWorkerLinkInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfPbLink, bf_pb_link, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (BF_TYPE_WORKER_LINK, bf_pb_link_iface_init))

enum {
  SIGNAL_LOGGED_IN,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void link_close (BfPbLink *self, const char *reason);
static void start_io (BfPbLink *self);
static void flush_output (BfPbLink *self);

/* Logging ------------------------------------------------------------------------ */

static void
protocol_error (BfPbLink   *self,
                const char *format,
                ...) G_GNUC_PRINTF (2, 3);

static void
protocol_error (BfPbLink   *self,
                const char *format,
                ...)
{
  g_autofree char *what = NULL;
  va_list args;

  if (self->closed)
    return;
  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  if (self->worker_name != NULL)
    bf_worker_message (self->worker_name, "Closing the PB connection of worker %s from %s: %s",
                       self->worker_name, self->peer, what);
  else
    g_message ("Closing the PB connection from %s: %s", self->peer, what);
  link_close (self, what);
}

/* Transport ---------------------------------------------------------------------- */

/* As g_pollable_input_stream_read_nonblocking(): G_IO_ERROR_WOULD_BLOCK
 * when nothing is there. */
static gssize
transport_read (BfPbLink  *self,
                guint8    *buf,
                gsize      len,
                GError   **error)
{
  if (self->fd >= 0)
    return bf_fd_io (self->fd, FALSE, buf, len, error);
  return g_pollable_input_stream_read_nonblocking (self->in, buf, len, self->cancellable, error);
}

/* Returns how much was written: 0 when the socket takes nothing now. */
static gssize
transport_write (BfPbLink      *self,
                 const guint8  *data,
                 gsize          len,
                 GError       **error)
{
  g_autoptr(GError) local_error = NULL;
  gssize n = self->fd >= 0
    ? bf_fd_io (self->fd, TRUE, (void *) data, len, &local_error)
    : g_pollable_output_stream_write_nonblocking (self->out, data, len, self->cancellable, &local_error);

  if (n < 0 && g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return 0;
  if (n < 0)
    g_propagate_error (error, g_steal_pointer (&local_error));
  return n;
}

/* Output ------------------------------------------------------------------------- */

static gboolean
out_ready_cb (GObject  *stream,
              gpointer  user_data)
{
  BfPbLink *self = user_data;
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);

  g_clear_pointer (&self->out_source, g_source_unref);
  flush_output (self);
  return G_SOURCE_REMOVE;
}

/* The socket is full: flush_output() again once it is writable. */
static void
wait_writable (BfPbLink *self)
{
  if (self->fd >= 0)
    {
      /* before start_io(), which watches for output if some waits */
      if (self->in_watch != NULL && !self->out_watched)
        {
          bf_poller_watch_update (self->in_watch, G_IO_IN | G_IO_OUT);
          self->out_watched = TRUE;
        }
      return;
    }
  if (self->out_source == NULL)
    {
      self->out_source = g_pollable_output_stream_create_source (self->out, NULL);
      g_source_set_callback (self->out_source, G_SOURCE_FUNC (out_ready_cb), self, NULL);
      g_source_set_static_name (self->out_source, "[buildfleetd] PB output");
      g_source_attach (self->out_source, NULL);
    }
}

static void
flush_output (BfPbLink *self)
{
  while (!self->closed && self->outbuf != NULL && self->outbuf->len > 0)
    {
      g_autoptr(GError) error = NULL;
      gssize n;

      if (!self->tls_ready)
        return;
      n = transport_write (self, self->outbuf->data, self->outbuf->len, &error);
      if (n == 0)
        {
          wait_writable (self);
          return;
        }
      if (n < 0)
        {
          g_autofree char *reason = g_strdup_printf ("write error: %s", error->message);
          bf_log_worker (G_LOG_LEVEL_DEBUG, self->worker_name ? self->worker_name : "",
                         "PB connection from %s: %s", self->peer, reason);
          link_close (self, reason);
          return;
        }
      g_byte_array_remove_range (self->outbuf, 0, n);
    }
  if (self->outbuf != NULL && self->outbuf->len == 0)
    g_clear_pointer (&self->outbuf, g_byte_array_unref);
  if (self->out_watched && self->outbuf == NULL && !self->closed)
    {
      bf_poller_watch_update (self->in_watch, G_IO_IN);
      self->out_watched = FALSE;
    }
}

static void
broker_send_cb (gpointer      user_data,
                const guint8 *data,
                gsize         len)
{
  BfPbLink *self = user_data;

  if (self->closed)
    return;
  if (self->outbuf == NULL)
    self->outbuf = g_byte_array_sized_new (len);
  if (self->outbuf->len + len > MAX_OUTPUT_BYTES)
    {
      protocol_error (self, "more than %d MB waiting to be sent: the worker does not read",
                      MAX_OUTPUT_BYTES / (1024 * 1024));
      return;
    }
  g_byte_array_append (self->outbuf, data, len);
  /* already waiting for the socket: it is full */
  if (self->out_source == NULL && !self->out_watched)
    flush_output (self);
}

/* Calls of ours --------------------------------------------------------------------- */

static void
call_free (Call *call)
{
  bf_timer_stop (&call->timer);
  g_free (call->method);
  g_free (call);
}

/* The table of calls in flight goes when it is empty: an attached, idle
 * link keeps nothing for calls. */
static void
forget_call (BfPbLink *self,
             Call     *call)
{
  if (self->calls == NULL)
    return;
  g_hash_table_steal (self->calls, &call->request_id);
  if (g_hash_table_size (self->calls) == 0)
    g_clear_pointer (&self->calls, g_hash_table_unref);
}

static gboolean
call_timeout_cb (gpointer data)
{
  Call *call = data;
  BfPbLink *self = call->self;
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);
  g_autoptr(GError) error = g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                         "worker %s did not answer %s in time",
                                         self->worker_name ? self->worker_name : self->peer, call->method);

  bf_pb_broker_forget_call (self->broker, call->request_id);
  forget_call (self, call);
  call->done (self, NULL, NULL, error, call->data);
  call_free (call);
  return G_SOURCE_REMOVE;
}

/* Calls @method on the worker's object @remote_id; @done runs exactly once
 * (answer, error, timeout or close); at once when the call cannot be sent. */
static void
call_remote (BfPbLink     *self,
             gint64        remote_id,
             const char   *method,
             BfJellyValue *args,
             guint64       timeout_usec,
             CallDone      done,
             gpointer      data)
{
  g_autoptr(GError) error = NULL;
  Call *call = g_new0 (Call, 1);

  call->self = self;
  call->method = g_strdup (method);
  call->done = done;
  call->data = data;
  if (self->closed)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "worker %s is not connected",
                         self->worker_name ? self->worker_name : self->peer);
  else if (!bf_pb_broker_call (self->broker, remote_id, method, args, NULL, call, &call->request_id, &error))
    {
      if (g_error_matches (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_LIMIT))
        protocol_error (self, "%s", error->message);
    }
  if (error != NULL)
    {
      G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);
      CallDone d = call->done;
      gpointer dd = call->data;

      call_free (call);
      d (self, NULL, NULL, error, dd);
      return;
    }
  /* Created on the first call: most links of a big fleet are idle. */
  if (self->calls == NULL)
    self->calls = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_hash_table_insert (self->calls, &call->request_id, call);
  bf_timer_start (&call->timer, timeout_usec ? timeout_usec : DEFAULT_CALL_TIMEOUT_USEC, call_timeout_cb, call);
}

static void
fail_all_calls (BfPbLink   *self,
                const char *reason)
{
  g_autoptr(GList) values = NULL;
  g_autoptr(GError) error = NULL;

  if (self->calls == NULL || g_hash_table_size (self->calls) == 0)
    return;
  values = g_hash_table_get_values (self->calls);
  g_hash_table_steal_all (self->calls);
  for (GList *l = values; l; l = l->next)
    {
      Call *call = l->data;

      g_clear_error (&error);
      error = g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                           "the connection closed (%s) before %s was answered", reason, call->method);
      call->done (self, NULL, NULL, error, call->data);
      call_free (call);
    }
}

static void
broker_answer_cb (gpointer      user_data,
                  gpointer      tag,
                  BfJellyValue *result,
                  BfJellyValue *failure)
{
  BfPbLink *self = user_data;
  Call *call = tag;

  forget_call (self, call);
  call->done (self, result, failure, NULL, call->data);
  call_free (call);
}

static BfJellyValue *
tuple_of (BfJellyValue *first,
          ...)
{
  BfJellyValue *t = bf_jelly_tuple ();
  va_list args;

  va_start (args, first);
  for (BfJellyValue *v = first; v != NULL; v = va_arg (args, BfJellyValue *))
    bf_jelly_append (t, v);
  va_end (args);
  return t;
}

/* Liveness ---------------------------------------------------------------------- */

static void
note_rx (BfPbLink *self)
{
  gint64 now = g_get_monotonic_time ();

  self->last_rx_mono = now;
  self->last_rx_usec = (guint64) g_get_real_time ();
  if (self->login == LOGIN_DONE && now - self->last_activity_emit_mono >= ACTIVITY_MIN_PERIOD_USEC)
    {
      self->last_activity_emit_mono = now;
      g_signal_emit_by_name (self, "activity");
    }
}

static gboolean
flood_check (BfPbLink *self)
{
  return bf_token_bucket_take (&self->flood, FLOOD_RATE, FLOOD_BURST);
}

/* See bf_fd_has_unread(); bytes read but left for the next slice count. */
static gboolean
answer_waiting (BfPbLink *self)
{
  g_autoptr(GIOStream) base = NULL;

  if (self->unfed != NULL)
    return TRUE;
  if (self->fd >= 0)
    return bf_fd_has_unread (self->fd);
  if (G_IS_TLS_CONNECTION (self->stream))
    g_object_get (self->stream, "base-io-stream", &base, NULL);
  else
    base = g_object_ref (self->stream);
  return G_IS_SOCKET_CONNECTION (base) &&
         bf_fd_has_unread (g_socket_get_fd (g_socket_connection_get_socket (G_SOCKET_CONNECTION (base))));
}

static void
keepalive_done (BfPbLink     *self,
                BfJellyValue *result,
                BfJellyValue *failure,
                const GError *error,
                gpointer      data)
{
  self->keepalive_pending = FALSE;
  /* An error answer is an answer too: the worker's reactor runs.  One that
   * waits unread is too (a late answer is accepted and dropped). */
  if (error == NULL || !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) || self->closed ||
      answer_waiting (self))
    return;
  bf_worker_message (self->worker_name,
                     "Worker %s from %s did not answer a keepalive request within %.1f s: dropping it",
                     self->worker_name, self->peer,
                     2 * self->keepalive_interval_usec / (double) G_USEC_PER_SEC);
  link_close (self, "keepalive request not answered");
}

static gboolean
keepalive_cb (gpointer data)
{
  BfPbLink *self = data;
  gint64 interval = (gint64) self->keepalive_interval_usec;
  gint64 idle = MAX (g_get_monotonic_time () - self->last_rx_mono, 0);

  if (idle >= 2 * interval && !answer_waiting (self))
    {
      bf_worker_message (self->worker_name, "Worker %s from %s answered nothing for %.1f s: dropping it",
                         self->worker_name, self->peer, idle / (double) G_USEC_PER_SEC);
      link_close (self, "keepalive timeout");
      return G_SOURCE_REMOVE;
    }
  if (idle >= interval && !self->keepalive_pending)
    {
      g_autoptr(BfJellyValue) args = tuple_of (bf_jelly_unicode ("keepalive", -1), NULL);

      self->keepalive_pending = TRUE;
      call_remote (self, self->mind_id, "print", args, (guint64) (2 * interval), keepalive_done, NULL);
    }
  return self->closed ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void
link_set_keepalive (BfWorkerLink *link,
                    guint64       interval_usec)
{
  BfPbLink *self = BF_PB_LINK (link);

  bf_timer_stop (&self->keepalive_timer);
  self->keepalive_interval_usec = interval_usec;
  if (interval_usec == 0 || self->closed || self->login != LOGIN_DONE)
    return;
  bf_timer_start (&self->keepalive_timer, interval_usec / 2, keepalive_cb, self);
}

/* Commands ----------------------------------------------------------------------- */

static void
cmd_free (Cmd *cmd)
{
  g_clear_handle_id (&cmd->late_id, g_source_remove);
  g_free (cmd->late_failure);
  g_free (cmd->id);
  g_free (cmd->name);
  g_free (cmd->builder);
  g_clear_pointer (&cmd->args, g_variant_unref);
  g_free (cmd);
}

/* The command is over for its receiver; it leaves our tables once the
 * worker also let go of our command object. */
static void
cmd_finish (BfPbLink   *self,
            Cmd        *cmd,
            const char *failure,
            gboolean    lost)
{
  gboolean notify = !cmd->finished;

  cmd->finished = TRUE;
  g_clear_handle_id (&cmd->late_id, g_source_remove);
  if (self->busy != NULL && g_hash_table_lookup (self->busy, cmd->builder) == cmd)
    g_hash_table_remove (self->busy, cmd->builder);
  if (cmd->object_id != 0 && !self->closed && bf_pb_broker_unexport (self->broker, cmd->object_id))
    cmd->object_id = 0;
  if (cmd->transfer_id != 0 && !self->closed && bf_pb_broker_unexport (self->broker, cmd->transfer_id))
    cmd->transfer_id = 0;
  {
    /* held while the sink runs: it may start the next command */
    const BfCommandSink *sink = cmd->sink;
    gpointer user_data = cmd->user_data;

    cmd->sink = NULL;
    if (cmd->object_id == 0 && cmd->transfer_id == 0 && self->commands != NULL)
      g_hash_table_remove (self->commands, cmd->id);   /* frees cmd */
    if (notify && sink != NULL)
      sink->complete (user_data, failure, lost);
  }
}

static Cmd *
lookup_cmd (BfPbLink   *self,
            const char *command_id)
{
  return self->commands != NULL ? g_hash_table_lookup (self->commands, command_id) : NULL;
}

static void
fail_all_commands (BfPbLink   *self,
                   const char *reason)
{
  g_autofree char *failure = g_strdup_printf ("the worker was lost: %s", reason);
  g_autoptr(GHashTable) commands = NULL;
  GHashTableIter iter;
  gpointer value;

  if (self->commands == NULL)
    return;
  commands = g_steal_pointer (&self->commands);
  g_clear_pointer (&self->busy, g_hash_table_unref);
  g_hash_table_iter_init (&iter, commands);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Cmd *cmd = value;

      if (!cmd->finished && cmd->sink != NULL)
        {
          cmd->finished = TRUE;
          cmd->sink->complete (cmd->user_data, failure, TRUE);
        }
    }
}

static GVariant *
jelly_to_variant_or_null (BfJellyValue *v)
{
  g_autoptr(GError) error = NULL;

  return bf_jelly_value_to_variant (v, &error);
}

static const char *
jelly_string (const BfJellyValue *v,
              gsize              *len)
{
  if (v == NULL || (v->type != BF_JELLY_UNICODE && v->type != BF_JELLY_BYTES))
    return NULL;
  if (len)
    *len = v->string.len;
  return v->string.data;
}

/* update(updates): updates = [[{key: value}, 0], ...] */
static gboolean
handle_update (BfPbLink     *self,
               Cmd          *cmd,
               BfJellyValue *updates,
               const char  **why)
{
  if (updates == NULL || (updates->type != BF_JELLY_LIST && updates->type != BF_JELLY_TUPLE))
    {
      *why = "update takes a list of [{key: value}, number] pairs";
      return FALSE;
    }
  for (guint i = 0; i < updates->seq.len; i++)
    {
      BfJellyValue *pair = updates->seq.items[i];
      BfJellyValue *dict;

      if ((pair->type != BF_JELLY_LIST && pair->type != BF_JELLY_TUPLE) || pair->seq.len < 1 ||
          pair->seq.items[0]->type != BF_JELLY_DICT)
        {
          *why = "update takes a list of [{key: value}, number] pairs";
          return FALSE;
        }
      dict = pair->seq.items[0];
      for (guint j = 0; j + 1 < dict->seq.len; j += 2)
        {
          gsize key_len;
          const char *key = jelly_string (dict->seq.items[j], &key_len);
          g_autoptr(GVariant) value = NULL;
          g_autofree char *key_z = NULL;

          if (key == NULL || key_len == 0 || key_len > BF_LIMIT_KEY_BYTES ||
              memchr (key, '\0', key_len) != NULL || !g_utf8_validate (key, key_len, NULL))
            {
              *why = "an update key must be a short text";
              return FALSE;
            }
          value = jelly_to_variant_or_null (dict->seq.items[j + 1]);
          if (value == NULL)
            {
              *why = "an update value must be plain data";
              return FALSE;
            }
          key_z = g_strndup (key, key_len);
          /* forgotten or finished: acknowledged, dropped */
          if (cmd->finished || cmd->sink == NULL)
            continue;
          bf_command_sink_update (cmd->sink, cmd->user_data, key_z, value);
          if (self->closed)
            return TRUE;
        }
    }
  return TRUE;
}

static void
handle_command_call (BfPbLink     *self,
                     gint64        request_id,
                     Cmd          *cmd,
                     const char   *method,
                     BfJellyValue *args)
{
  BfJellyValue *first = args->seq.len > 0 ? args->seq.items[0] : NULL;

  if (g_str_equal (method, "update"))
    {
      const char *why = NULL;

      if (!handle_update (self, cmd, first, &why))
        {
          bf_pb_broker_error (self->broker, request_id, PB_ERROR, why);
          return;
        }
      bf_pb_broker_answer (self->broker, request_id, NULL);
    }
  else if (g_str_equal (method, "complete"))
    {
      g_autofree char *failure = NULL;

      if (first != NULL && first->type != BF_JELLY_NONE)
        failure = bf_pb_failure_text (first, BF_LIMIT_FAILURE_BYTES);
      bf_pb_broker_answer (self->broker, request_id, NULL);
      if (!cmd->finished)
        cmd_finish (self, cmd, failure, FALSE);
    }
  else
    {
      /* uploads and downloads (write, close, unpack, read, utime):
       * not offered by our RunCommand yet */
      g_autofree char *text = g_strdup_printf ("%s is not supported by buildfleetd", method);
      bf_pb_broker_error (self->broker, request_id, NO_SUCH_METHOD, text);
    }
}

/* File transfers: the worker calls our writer (write, close, utime, unpack)
 * or reader (read, close), as Buildbot's FileWriter / FileReader.  Each
 * call is answered when the command says so: a block once written to the
 * caller's descriptor, a read with the bytes read from it. */

typedef struct {
  BfPbLink *self;
  gint64 request_id;
  char *command_id;
  BfTransferOp op;
} TransferReply;

static void interrupt_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
                            const GError *error, gpointer data);

/* A transfer that must stop.  Answering the worker's call with an error
 * would be natural, but a worker handed a remote failure passes it on to
 * complete(), which Twisted cannot serialise (a copied failure's type is
 * bytes): the command would never complete.  So the worker is stopped the
 * way a step is: interruptCommand first (it arrives first), then a plain
 * answer — nothing for a block, no bytes (the end) for a read; the worker
 * then completes with exit code 1, and the command's Failure says why. */
static void
stop_worker_transfer (BfPbLink     *self,
                      const char   *command_id,
                      const char   *why,
                      gint64        request_id,
                      BfTransferOp  op)
{
  Cmd *cmd = lookup_cmd (self, command_id);
  Builder *b = cmd && self->builders ? g_hash_table_lookup (self->builders, cmd->builder) : NULL;

  if (b != NULL && b->ref_id != 0)
    {
      g_autoptr(BfJellyValue) args = tuple_of (bf_jelly_unicode (command_id, -1), bf_jelly_unicode (why, -1), NULL);
      call_remote (self, b->ref_id, "interruptCommand", args, INTERRUPT_TIMEOUT_USEC, interrupt_done, NULL);
    }
  if (request_id == 0)
    return;
  if (op == BF_TRANSFER_READ)
    {
      g_autoptr(BfJellyValue) none = bf_jelly_bytes ("", 0);
      bf_pb_broker_answer (self->broker, request_id, none);
    }
  else
    bf_pb_broker_answer (self->broker, request_id, NULL);
}

static void
transfer_reply (gpointer    reply_data,
                GBytes     *data,
                const char *failure)
{
  TransferReply *r = reply_data;
  BfPbLink *self = r->self;

  if (!self->closed)
    {
      if (failure != NULL)
        stop_worker_transfer (self, r->command_id, failure, r->request_id, r->op);
      else if (r->request_id == 0)
        ;
      else if (data != NULL)
        {
          g_autoptr(BfJellyValue) bytes = bf_jelly_bytes (g_bytes_get_data (data, NULL), g_bytes_get_size (data));
          bf_pb_broker_answer (self->broker, r->request_id, bytes);
        }
      else
        bf_pb_broker_answer (self->broker, r->request_id, NULL);
    }
  g_object_unref (self);
  g_free (r->command_id);
  g_free (r);
}

static gboolean
jelly_number (const BfJellyValue *v,
              double             *out)
{
  if (v != NULL && v->type == BF_JELLY_INT)
    *out = (double) v->integer;
  else if (v != NULL && v->type == BF_JELLY_FLOAT)
    *out = v->number;
  else
    return FALSE;
  return TRUE;
}

static void
handle_transfer_call (BfPbLink     *self,
                      gint64        request_id,
                      Cmd          *cmd,
                      const char   *method,
                      BfJellyValue *args)
{
  BfJellyValue *first = args->seq.len > 0 ? args->seq.items[0] : NULL;
  BfTransferStep step = { 0 };
  g_autoptr(GBytes) data = NULL;
  const char *why = NULL;
  TransferReply *r;

  if (g_str_equal (method, "write"))
    {
      gsize len = 0;
      const char *bytes = jelly_string (first, &len);

      if (bytes == NULL)
        why = "write takes the block's bytes";
      step.op = BF_TRANSFER_WRITE;
      if (bytes != NULL)
        step.data = data = g_bytes_new (bytes, len);
    }
  else if (g_str_equal (method, "close"))
    step.op = BF_TRANSFER_CLOSE;
  else if (g_str_equal (method, "unpack"))
    step.op = BF_TRANSFER_UNPACK;
  else if (g_str_equal (method, "utime"))
    {
      step.op = BF_TRANSFER_UTIME;
      if (first == NULL || (first->type != BF_JELLY_TUPLE && first->type != BF_JELLY_LIST) ||
          first->seq.len != 2 || !jelly_number (first->seq.items[0], &step.atime) ||
          !jelly_number (first->seq.items[1], &step.mtime))
        why = "utime takes (access time, modification time)";
    }
  else if (g_str_equal (method, "read"))
    {
      double n = -1;

      step.op = BF_TRANSFER_READ;
      if (!jelly_number (first, &n) || !(n >= 0))
        why = "read takes a number of bytes";
      else
        step.length = n > G_MAXSIZE ? G_MAXSIZE : (gsize) n;
    }
  else
    {
      g_autofree char *text = g_strdup_printf ("buildfleetd's file writer and reader offer no method %s", method);
      bf_pb_broker_error (self->broker, request_id, NO_SUCH_METHOD, text);
      return;
    }
  if (why != NULL)
    {
      bf_pb_broker_error (self->broker, request_id, PB_ERROR, why);
      return;
    }
  if (cmd->finished || cmd->sink == NULL || cmd->sink->transfer == NULL)
    {
      stop_worker_transfer (self, cmd->id, "the command ended", request_id, step.op);
      return;
    }
  r = g_new0 (TransferReply, 1);
  r->self = g_object_ref (self);
  r->request_id = request_id;
  r->command_id = g_strdup (cmd->id);
  r->op = step.op;
  cmd->sink->transfer (cmd->user_data, &step, transfer_reply, r);
}

/* Login -------------------------------------------------------------------------- */

static gboolean
login_timeout_cb (gpointer data)
{
  BfPbLink *self = data;
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);

  if (self->head_len == 0 && !self->tls)
    g_message ("PB connection from %s: nothing received before the login deadline", self->peer);
  else
    g_message ("PB connection from %s: no login before the deadline%s", self->peer,
               self->login == LOGIN_CHALLENGED ? " (the challenge was not answered)" : "");
  link_close (self, "login timeout");
  return G_SOURCE_REMOVE;
}

static void
handle_login (BfPbLink     *self,
              gint64        request_id,
              BfJellyValue *args)
{
  gsize len = 0;
  const char *name = args->seq.len == 1 ? jelly_string (args->seq.items[0], &len) : NULL;
  g_autoptr(BfJellyValue) answer = NULL;

  if (name == NULL || len == 0 || len > BF_LIMIT_KEY_BYTES || memchr (name, '\0', len) != NULL ||
      !g_utf8_validate (name, len, NULL))
    {
      protocol_error (self, "login takes one worker name of 1 to %d bytes of UTF-8", BF_LIMIT_KEY_BYTES);
      return;
    }
  if (++self->login_attempts > MAX_LOGIN_ATTEMPTS)
    {
      protocol_error (self, "more than %d login attempts on one connection", MAX_LOGIN_ATTEMPTS);
      return;
    }
  if (self->challenger_id == 0)
    {
      self->challenger_id = bf_pb_broker_export (self->broker, KIND_CHALLENGER, NULL);
      if (self->challenger_id == 0)
        {
          protocol_error (self, "too many objects");
          return;
        }
    }
  g_free (self->login_name);
  self->login_name = g_strndup (name, len);
  bf_pb_auth_challenge (self->challenge);
  self->login = LOGIN_CHALLENGED;
  answer = tuple_of (bf_jelly_bytes (self->challenge, sizeof self->challenge),
                     bf_pb_broker_reference (self->broker, self->challenger_id), NULL);
  bf_pb_broker_answer (self->broker, request_id, answer);
}

static void
handle_respond (BfPbLink     *self,
                gint64        request_id,
                BfJellyValue *args)
{
  gsize len = 0;
  const char *response = args->seq.len == 2 ? jelly_string (args->seq.items[0], &len) : NULL;
  BfJellyValue *mind = args->seq.len == 2 ? args->seq.items[1] : NULL;
  g_autoptr(BfJellyValue) answer = NULL;
  BfPbAuthResult result;

  if (self->login != LOGIN_CHALLENGED)
    {
      protocol_error (self, "respond without a login before");
      return;
    }
  if (response == NULL || mind == NULL || mind->type != BF_JELLY_REMOTE)
    {
      protocol_error (self, "respond takes a response and the worker's object (is this a Buildbot worker?)");
      return;
    }
  self->login = LOGIN_WAIT;
  result = self->auth (self->login_name, self->challenge, sizeof self->challenge,
                       (const guint8 *) response, len, self->peer, self->auth_data);
  /* one response per challenge */
  bf_pb_auth_challenge (self->challenge);
  if (result == BF_PB_AUTH_THROTTLE)
    {
      bf_pb_broker_error (self->broker, request_id, UNAUTHORIZED,
                          "too many failed logins from this address: retry later");
      return;
    }
  if (result != BF_PB_AUTH_ACCEPT)
    {
      bf_pb_broker_error (self->broker, request_id, UNAUTHORIZED, "unauthorized login");
      return;
    }

  self->perspective_id = bf_pb_broker_export (self->broker, KIND_PERSPECTIVE, NULL);
  if (self->perspective_id == 0)
    {
      protocol_error (self, "too many objects");
      return;
    }
  self->mind_id = mind->integer;
  self->worker_name = g_steal_pointer (&self->login_name);
  self->login = LOGIN_DONE;
  bf_timer_stop (&self->login_timer);
  answer = bf_pb_broker_reference (self->broker, self->perspective_id);
  bf_pb_broker_answer (self->broker, request_id, answer);
  bf_worker_debug (self->worker_name, "PB login of worker %s from %s", self->worker_name, self->peer);
  g_signal_emit (self, signals[SIGNAL_LOGGED_IN], 0);
}

/* Incoming calls ------------------------------------------------------------------ */

static void
broker_message_cb (gpointer      user_data,
                   gint64        request_id,
                   guint         kind,
                   gpointer      object_data,
                   gint64        object_id,
                   const char   *method,
                   BfJellyValue *args,
                   BfJellyValue *kw)
{
  BfPbLink *self = user_data;

  if (!flood_check (self))
    {
      protocol_error (self, "more than %.0f calls per second", FLOOD_RATE);
      return;
    }
  if (kw->seq.len != 0)
    {
      protocol_error (self, "%s: keyword arguments are not used by Buildbot workers", method);
      return;
    }

  switch (kind)
    {
    case 0:   /* root */
      if (g_str_equal (method, "login") && self->login != LOGIN_DONE)
        handle_login (self, request_id, args);
      else
        protocol_error (self, "%s called on the root object; only login is offered%s", method,
                        self->login == LOGIN_DONE ? ", once" : "");
      return;

    case KIND_CHALLENGER:
      if (g_str_equal (method, "respond") && self->login != LOGIN_DONE)
        handle_respond (self, request_id, args);
      else
        protocol_error (self, "%s called on the login challenger", method);
      return;

    case KIND_PERSPECTIVE:
      if (g_str_equal (method, "keepalive"))
        bf_pb_broker_answer (self->broker, request_id, NULL);
      else if (g_str_equal (method, "shutdown"))
        {
          bf_pb_broker_answer (self->broker, request_id, NULL);
          bf_worker_info (self->worker_name, "Worker %s asked to shut down gracefully", self->worker_name);
          g_signal_emit_by_name (self, "shutdown-requested");
        }
      else
        {
          g_autofree char *text = g_strdup_printf ("buildfleetd offers no method %s", method);
          bf_pb_broker_error (self->broker, request_id, NO_SUCH_METHOD, text);
        }
      return;

    case KIND_COMMAND:
      handle_command_call (self, request_id, object_data, method, args);
      return;

    case KIND_TRANSFER:
      handle_transfer_call (self, request_id, object_data, method, args);
      return;

    default:
      g_assert_not_reached ();
    }
}

static void
broker_released_cb (gpointer  user_data,
                    guint     kind,
                    gpointer  object_data,
                    gint64    object_id)
{
  BfPbLink *self = user_data;

  if (kind == KIND_CHALLENGER && object_id == self->challenger_id)
    self->challenger_id = 0;
  else if (kind == KIND_COMMAND || kind == KIND_TRANSFER)
    {
      Cmd *cmd = object_data;

      if (kind == KIND_COMMAND)
        cmd->object_id = 0;
      else
        cmd->transfer_id = 0;
      if (cmd->finished && cmd->object_id == 0 && cmd->transfer_id == 0 && self->commands != NULL)
        g_hash_table_remove (self->commands, cmd->id);
    }
}

static void
broker_ready_cb (gpointer user_data)
{
}

static const BfPbBrokerHandler broker_handler = {
  .send = broker_send_cb,
  .ready = broker_ready_cb,
  .message = broker_message_cb,
  .answer = broker_answer_cb,
  .released = broker_released_cb,
};

/* Input --------------------------------------------------------------------------- */

static gboolean
check_head (BfPbLink *self)
{
  if (self->head_len >= 4 && memcmp (self->head, "GET ", 4) == 0)
    {
      if (self->msgpack_port != 0)
        g_message ("PB connection from %s: this looks like a WebSocket (msgpack) worker "
                   "(it sent an HTTP request): point it at the Listen= port %u", self->peer, self->msgpack_port);
      else
        g_message ("PB connection from %s: this looks like a WebSocket (msgpack) worker "
                   "(it sent an HTTP request), and no Listen= endpoint is open", self->peer);
      link_close (self, "an HTTP request on the PB endpoint");
      return FALSE;
    }
  if (!self->tls && self->head_len >= 2 && self->head[0] == 0x16 && self->head[1] == 0x03)
    {
      g_message ("PB connection from %s: this looks like a TLS ClientHello (a worker created with "
                 "--use-tls?), but this PB endpoint has no TlsCertificate=: configure one or "
                 "create the worker without --use-tls", self->peer);
      link_close (self, "TLS on a PB endpoint without a certificate");
      return FALSE;
    }
  return TRUE;
}

static void
feed (BfPbLink     *self,
      const guint8 *data,
      gsize         len)
{
  g_autoptr(GError) error = NULL;

  if (!self->head_checked)
    {
      gsize take = MIN (len, sizeof self->head - self->head_len);

      memcpy (self->head + self->head_len, data, take);
      self->head_len += take;
      data += take;
      len -= take;
      if (self->head_len < sizeof self->head)
        return;
      self->head_checked = TRUE;
      if (!check_head (self))
        return;
      if (!bf_pb_broker_feed (self->broker, self->head, self->head_len, &error))
        {
          protocol_error (self, "%s", error->message);
          return;
        }
    }
  if (len > 0 && !self->closed && !bf_pb_broker_feed (self->broker, data, len, &error))
    protocol_error (self, "%s", error->message);
}

/* Feeds @data to the broker a chunk at a time until @until; what is left
 * is kept in unfed for the next call, and the poller (or the TLS source)
 * told to come back for it.  Returns FALSE when the budget ran out. */
static gboolean
feed_until (BfPbLink     *self,
            const guint8 *data,
            gsize         len,
            gint64        until)
{
  gsize off = 0;

  while (off < len && !self->closed)
    {
      gsize chunk = MIN (len - off, FEED_CHUNK);

      feed (self, data + off, chunk);
      off += chunk;
      if (off < len && g_get_monotonic_time () >= until)
        break;
    }
  if (off == len || self->closed)
    return TRUE;
  if (self->unfed == NULL)
    self->unfed = g_byte_array_sized_new (len - off);
  g_byte_array_append (self->unfed, data + off, len - off);
  if (self->in_watch != NULL)
    bf_poller_watch_set_pending (self->in_watch);
  else if (self->in_source != NULL)
    g_source_set_ready_time (self->in_source, 0);
  return FALSE;
}

static gboolean
in_ready_cb (GObject  *stream,
             gpointer  user_data)
{
  static guint8 buffer[READ_BUFFER_SIZE];
  BfPbLink *self = user_data;
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);

  /* A few reads per wakeup, for about a millisecond, so that one busy
   * worker (or a flood: a 16 KiB read can be a thousand calls) cannot
   * starve the rest. */
  gint64 until = g_get_monotonic_time () + READ_BUDGET_USEC;

  if (self->in_source != NULL)
    g_source_set_ready_time (self->in_source, -1);
  if (self->unfed != NULL)
    {
      /* what the last slice left, before reading anything new */
      g_autoptr(GByteArray) left = g_steal_pointer (&self->unfed);

      if (!feed_until (self, left->data, left->len, until))
        return G_SOURCE_CONTINUE;
    }

  for (guint i = 0; i < 4 && !self->closed && (i == 0 || g_get_monotonic_time () < until); i++)
    {
      g_autoptr(GError) error = NULL;
      gssize n = transport_read (self, buffer, sizeof buffer, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      if (n <= 0)
        {
          /* PB has no closing handshake: an end of stream reads as the
           * WebSocket link's end without a close frame. */
          g_autofree char *reason = n == 0 ? g_strdup ("connection lost")
                                           : g_strdup_printf ("read error: %s", error->message);

          if (self->login != LOGIN_DONE && !self->head_checked && self->head_len >= 1 &&
              !check_head (self))
            return G_SOURCE_REMOVE;
          bf_log_worker (G_LOG_LEVEL_DEBUG, self->worker_name ? self->worker_name : "",
                         "PB connection from %s: %s", self->peer, reason);
          link_close (self, reason);
          return G_SOURCE_REMOVE;
        }
      note_rx (self);
      if (!feed_until (self, buffer, n, until))
        break;
    }
  return self->closed ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void
tls_handshake_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(BfPbLink) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error))
    {
      if (!self->closed)
        {
          g_message ("PB connection from %s: TLS handshake failed: %s", self->peer, error->message);
          link_close (self, "TLS handshake failed");
        }
      return;
    }
  if (self->closed)
    return;
  self->tls_ready = TRUE;
  start_io (self);
  flush_output (self);
}

static void
in_poll_cb (int           fd,
            GIOCondition  condition,
            gpointer      user_data)
{
  BfPbLink *self = user_data;
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);

  if (condition & G_IO_OUT)
    flush_output (self);
  if (self->closed || !(condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)))
    return;
  if (in_ready_cb (NULL, self) == G_SOURCE_REMOVE)
    bf_poller_unwatch (&self->in_watch);
}

/* Plain sockets join the one epoll set all worker sockets share
 * (bf-poller.c): a GSource each made every main-loop iteration walk all of
 * them, a tenth of the daemon's time at 3,000 PB workers.  A TLS stream can
 * hold bytes already read from the socket, so it keeps a pollable source. */
static void
start_io (BfPbLink *self)
{
  if (self->fd >= 0)
    {
      self->out_watched = self->outbuf != NULL;
      self->in_watch = bf_poller_watch (self->fd, G_IO_IN | (self->out_watched ? G_IO_OUT : 0),
                                        in_poll_cb, self);
      return;
    }
  if (!self->tls && G_IS_SOCKET_CONNECTION (self->stream))
    {
      GSocket *socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (self->stream));

      self->in_watch = bf_poller_watch (g_socket_get_fd (socket), G_IO_IN, in_poll_cb, self);
      return;
    }
  self->in_source = g_pollable_input_stream_create_source (self->in, NULL);
  g_source_set_callback (self->in_source, G_SOURCE_FUNC (in_ready_cb), self, NULL);
  g_source_set_static_name (self->in_source, "[buildfleetd] PB input");
  g_source_attach (self->in_source, NULL);
}

/**
 * bf_pb_link_start:
 * @login_timeout_usec: the worker must have logged in by then
 * @msgpack_port: the Listen= port, named when an HTTP client knocks; 0 for none
 *
 * Sends the dialect offer and serves the login; "logged-in" is emitted
 * when it succeeded, "closed" when the connection ends.
 */
void
bf_pb_link_start (BfPbLink *self,
                  guint64   login_timeout_usec,
                  guint     msgpack_port)
{
  self->msgpack_port = msgpack_port;
  bf_timer_start (&self->login_timer, login_timeout_usec, login_timeout_cb, self);
  bf_pb_broker_start (self->broker);
  if (self->tls)
    g_tls_connection_handshake_async (G_TLS_CONNECTION (self->stream), G_PRIORITY_DEFAULT,
                                      self->cancellable, tls_handshake_cb, g_object_ref (self));
  else
    {
      start_io (self);
      flush_output (self);
    }
}

void
bf_pb_link_close (BfPbLink   *self,
                  const char *reason)
{
  link_close (self, reason);
}

/* Closing ------------------------------------------------------------------------- */

static void
stream_closed_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_io_stream_close_finish (G_IO_STREAM (source), result, NULL);
}

static void
link_close (BfPbLink   *self,
            const char *reason)
{
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);

  if (self->closed)
    return;
  self->closed = TRUE;
  self->close_reason = g_strdup (reason);
  bf_pb_broker_abort (self->broker, reason);
  bf_timer_stop (&self->keepalive_timer);
  bf_timer_stop (&self->login_timer);
  bf_poller_unwatch (&self->in_watch);
  if (self->in_source)
    {
      g_source_destroy (self->in_source);
      g_clear_pointer (&self->in_source, g_source_unref);
    }
  if (self->out_source)
    {
      g_source_destroy (self->out_source);
      g_clear_pointer (&self->out_source, g_source_unref);
    }
  g_clear_pointer (&self->outbuf, g_byte_array_unref);
  g_clear_pointer (&self->unfed, g_byte_array_unref);
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  if (self->stream != NULL)
    g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL, stream_closed_cb, NULL);
  if (self->fd >= 0)
    {
      close (self->fd);
      self->fd = -1;
    }
  fail_all_calls (self, reason);
  fail_all_commands (self, reason);
  g_signal_emit_by_name (self, "closed", reason);
}

/* BfWorkerLink --------------------------------------------------------------------- */

static const char *
link_get_worker_name (BfWorkerLink *link)
{
  return BF_PB_LINK (link)->worker_name;
}

static const char *
link_get_peer (BfWorkerLink *link)
{
  return BF_PB_LINK (link)->peer;
}

static const char *
link_get_protocol (BfWorkerLink *link)
{
  return "pb";
}

static guint64
link_get_last_rx_usec (BfWorkerLink *link)
{
  return BF_PB_LINK (link)->last_rx_usec;
}

static const BfWorkerInfo *
link_get_info (BfWorkerLink *link)
{
  return BF_PB_LINK (link)->info;
}

/* Attach: print and getWorkerInfo, pipelined. */
typedef struct {
  GTask *task;
  guint remaining;
  GError *error;
} Attach;

static void
attach_step (BfPbLink     *self,
             BfJellyValue *result,
             BfJellyValue *failure,
             const GError *error,
             gpointer      data,
             gboolean      is_info)
{
  Attach *a = data;

  if (a->error == NULL)
    {
      if (error != NULL)
        a->error = g_error_copy (error);
      else if (failure != NULL)
        {
          g_autofree char *text = bf_pb_failure_text (failure, BF_LIMIT_MESSAGE_BYTES);
          a->error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "%s failed on the worker: %s",
                                  is_info ? "getWorkerInfo" : "print", text);
        }
      else if (is_info)
        {
          g_autoptr(GError) conv_error = NULL;
          g_autoptr(GVariant) reported = result->type == BF_JELLY_DICT
            ? bf_jelly_value_to_variant_dropping (result, "environ", &conv_error) : NULL;

          if (reported == NULL || !g_variant_is_of_type (reported, G_VARIANT_TYPE_VARDICT))
            a->error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "getWorkerInfo answered with something other than a dictionary "
                                    "of plain data%s%s", conv_error ? ": " : "",
                                    conv_error ? conv_error->message : "");
          else
            {
              g_clear_pointer (&self->info, bf_worker_info_free);
              self->info = bf_worker_info_new_from_vardict (reported, self->worker_name, self->peer);
            }
        }
    }
  if (--a->remaining > 0)
    return;
  {
    g_autoptr(GTask) task = g_steal_pointer (&a->task);
    GError *e = g_steal_pointer (&a->error);

    g_free (a);
    if (e != NULL)
      g_task_return_error (task, e);
    else if (self->info == NULL)
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "no worker info");
    else
      {
        link_set_keepalive (BF_WORKER_LINK (self), self->keepalive_interval_usec);
        g_task_return_boolean (task, TRUE);
      }
  }
}

static void
attach_print_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
                   const GError *error, gpointer data)
{
  attach_step (self, result, failure, error, data, FALSE);
}

static void
attach_info_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
                  const GError *error, gpointer data)
{
  attach_step (self, result, failure, error, data, TRUE);
}

static void
link_attach_async (BfWorkerLink        *link,
                   GCancellable        *cancellable,
                   GAsyncReadyCallback  callback,
                   gpointer             user_data)
{
  BfPbLink *self = BF_PB_LINK (link);
  Attach *a = g_new0 (Attach, 1);
  g_autofree char *hello = g_strdup_printf ("attached to buildfleetd %s as %s", PACKAGE_VERSION,
                                            self->worker_name ? self->worker_name : "");
  g_autoptr(BfJellyValue) print_args = tuple_of (bf_jelly_unicode (hello, -1), NULL);
  g_autoptr(BfJellyValue) info_args = bf_jelly_tuple ();

  a->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (a->task, link_attach_async);
  a->remaining = 2;
  call_remote (self, self->mind_id, "print", print_args, ATTACH_TIMEOUT_USEC, attach_print_done, a);
  call_remote (self, self->mind_id, "getWorkerInfo", info_args, ATTACH_TIMEOUT_USEC, attach_info_done, a);
}

static gboolean
link_attach_finish (BfWorkerLink  *link,
                    GAsyncResult  *result,
                    GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ping = print */
static void
ping_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
           const GError *error, gpointer data)
{
  g_autoptr(GTask) task = data;

  /* an error answer is an answer: the worker is alive and reading */
  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else
    g_task_return_boolean (task, TRUE);
}

static void
link_ping_async (BfWorkerLink        *link,
                 const char          *message,
                 guint64              timeout_usec,
                 GCancellable        *cancellable,
                 GAsyncReadyCallback  callback,
                 gpointer             user_data)
{
  BfPbLink *self = BF_PB_LINK (link);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(BfJellyValue) args = tuple_of (bf_jelly_unicode (message, -1), NULL);

  g_task_set_source_tag (task, link_ping_async);
  call_remote (self, self->mind_id, "print", args, timeout_usec, ping_done, task);
}

static gboolean
link_ping_finish (BfWorkerLink  *link,
                  GAsyncResult  *result,
                  GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* shutdown: the worker stops its reactor 0.2 s after answering; a
 * connection lost before the answer counts as done, as Buildbot's master
 * takes it. */
static void
shutdown_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
               const GError *error, gpointer data)
{
  g_autoptr(GTask) task = data;

  if (error != NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
    g_task_return_error (task, g_error_copy (error));
  else if (failure != NULL)
    {
      g_autofree char *text = bf_pb_failure_text (failure, BF_LIMIT_MESSAGE_BYTES);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "the worker refused to shut down: %s", text);
    }
  else
    g_task_return_boolean (task, TRUE);
}

static void
link_shutdown_async (BfWorkerLink        *link,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  BfPbLink *self = BF_PB_LINK (link);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(BfJellyValue) args = bf_jelly_tuple ();

  g_task_set_source_tag (task, link_shutdown_async);
  call_remote (self, self->mind_id, "shutdown", args, 0, shutdown_done, task);
}

static gboolean
link_shutdown_finish (BfWorkerLink  *link,
                      GAsyncResult  *result,
                      GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Command arguments -------------------------------------------------------------- */

/* The D-Bus API's names -> the old-style names buildbot_worker/pb.py
 * ProtocolCommandPb.protocol_args_setup() expects.  Paths stay as given:
 * relative ones are relative to the builder directory on the worker, which
 * is what the worker joins them to; absolute ones stay absolute. */
static gboolean
single_path (GVariant    *v,
             const char  *command,
             const char **out,
             GError     **error)
{
  if (v == NULL)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS, "Argument “paths” is required for the %s command", command);
      return FALSE;
    }
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
    {
      *out = g_variant_get_string (v, NULL);
      return TRUE;
    }
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING_ARRAY) && g_variant_n_children (v) == 1)
    {
      g_variant_get_child (v, 0, "&s", out);
      return TRUE;
    }
  g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
               "A PB worker's %s takes one path: run the command once per path", command);
  return FALSE;
}

/* A builder name a PB worker can make a directory of, with no command
 * running in it, and room for it among the worker's builders. */
static gboolean
builder_can_run (BfPbLink    *self,
                 const char  *builder,
                 GError     **error)
{
  if (builder == NULL || *builder == '\0' || strchr (builder, '/') != NULL ||
      g_str_equal (builder, ".") || g_str_equal (builder, ".."))
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "A PB worker runs commands in a builder directory: “%s” cannot name one",
                   builder ? builder : "");
      return FALSE;
    }
  if (self->busy != NULL && g_hash_table_contains (self->busy, builder))
    {
      g_set_error (error, BF_ERROR, BF_ERROR_BUSY,
                   "Builder %s already runs a command on worker %s, which speaks PB: a PB worker runs "
                   "one command per builder at a time (wait for it to complete)",
                   builder, self->worker_name);
      return FALSE;
    }
  if ((self->builders == NULL || !g_hash_table_contains (self->builders, builder)) &&
      self->builders != NULL && g_hash_table_size (self->builders) >= MAX_BUILDERS)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_BUSY,
                   "Worker %s already serves %d builders over PB", self->worker_name, MAX_BUILDERS);
      return FALSE;
    }
  return TRUE;
}

/* uploadFile / uploadDirectory / downloadFile: the worker joins workdir and
 * the path to the builder directory (an absolute path stays absolute); the
 * writer or reader is added by send_start(). */
static gboolean
add_transfer_args (GVariantBuilder  *b,
                   const char       *name,
                   GVariant         *args,
                   GError          **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;
  const char *path = NULL;

  if (!g_variant_lookup (args, "path", "&s", &path))
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS, "Argument “path” is required for the %s command", name);
      return FALSE;
    }
  g_variant_builder_add (b, "{sv}", "workdir", g_variant_new_string (""));
  g_variant_builder_add (b, "{sv}", g_str_equal (name, "download_file") ? "workerdest" : "workersrc",
                         g_variant_new_string (path));
  g_variant_iter_init (&iter, args);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      g_autoptr(GVariant) owned = value;

      if (g_str_equal (key, "path"))
        continue;
      if (g_str_equal (key, "maxsize") && g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64))
        /* one byte more reaches us: a bigger file shows as bigger */
        g_variant_builder_add (b, "{sv}", key, g_variant_new_int64 ((gint64) g_variant_get_uint64 (value) + 1));
      else if ((g_str_equal (key, "compress") && g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) &&
                g_str_equal (g_variant_get_string (value, NULL), "none")) ||
               (g_str_equal (key, "mode") && g_variant_is_of_type (value, G_VARIANT_TYPE_INT32) &&
                g_variant_get_int32 (value) < 0))
        g_variant_builder_add (b, "{sv}", key, g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL));
      else
        g_variant_builder_add (b, "{sv}", key, value);
    }
  return TRUE;
}

static GVariant *
link_prepare_command (BfWorkerLink  *link,
                      const char    *name,
                      GVariant      *args,
                      const char    *builder,
                      GError       **error)
{
  BfPbLink *self = BF_PB_LINK (link);
  GVariantBuilder b;
  GVariantIter iter;
  const char *key;
  GVariant *value;

  if (!builder_can_run (self, builder, error))
    return NULL;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  if (g_str_equal (name, "mkdir") || g_str_equal (name, "rmdir"))
    {
      g_autoptr(GVariant) paths = g_variant_lookup_value (args, "paths", NULL);
      const char *path = NULL;

      if (g_str_equal (name, "rmdir") && paths != NULL &&
          g_variant_is_of_type (paths, G_VARIANT_TYPE_STRING_ARRAY) && g_variant_n_children (paths) > 1)
        g_variant_builder_add (&b, "{sv}", "dir", paths);
      else if (!single_path (paths, name, &path, error))
        {
          g_variant_builder_clear (&b);
          return NULL;
        }
      else
        g_variant_builder_add (&b, "{sv}", "dir", g_variant_new_string (path));
    }
  else if (g_str_equal (name, "stat") || g_str_equal (name, "listdir") ||
           g_str_equal (name, "rmfile") || g_str_equal (name, "glob"))
    {
      const char *path = NULL;
      const char *wire = g_str_equal (name, "stat") ? "file" : g_str_equal (name, "listdir") ? "dir" : "path";

      if (!g_variant_lookup (args, "path", "&s", &path))
        {
          g_variant_builder_clear (&b);
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS, "Argument “path” is required for the %s command", name);
          return NULL;
        }
      g_variant_builder_add (&b, "{sv}", wire, g_variant_new_string (path));
    }
  else if (g_str_equal (name, "cpdir"))
    {
      const char *from = NULL, *to = NULL;

      if (!g_variant_lookup (args, "from_path", "&s", &from) || !g_variant_lookup (args, "to_path", "&s", &to))
        {
          g_variant_builder_clear (&b);
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS, "cpdir needs “from_path” and “to_path”");
          return NULL;
        }
      g_variant_builder_add (&b, "{sv}", "fromdir", g_variant_new_string (from));
      g_variant_builder_add (&b, "{sv}", "todir", g_variant_new_string (to));
    }
  else if (g_str_equal (name, "shell"))
    {
      g_variant_iter_init (&iter, args);
      while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
        {
          g_variant_builder_add (&b, "{sv}", key, value);
          g_variant_unref (value);
        }
      /* the worker needs a workdir; Buildbot's default */
      if (!g_variant_lookup (args, "workdir", "&s", NULL))
        g_variant_builder_add (&b, "{sv}", "workdir", g_variant_new_string ("build"));
    }
  else if (g_str_equal (name, "upload_file") || g_str_equal (name, "upload_directory") ||
           g_str_equal (name, "download_file"))
    {
      if (!add_transfer_args (&b, name, args, error))
        {
          g_variant_builder_clear (&b);
          return NULL;
        }
    }
  else
    {
      g_variant_builder_clear (&b);
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "Command “%s” is not supported (use shell, mkdir, rmdir, stat, listdir, rmfile, glob, cpdir, "
                   "upload_file, upload_directory or download_file)",
                   name);
      return NULL;
    }
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

/* GVariant (the prepared arguments) -> jelly */
static BfJellyValue *
variant_to_jelly (GVariant *v)
{
  const GVariantType *t = g_variant_get_type (v);

  if (g_variant_type_equal (t, G_VARIANT_TYPE_STRING) || g_variant_type_equal (t, G_VARIANT_TYPE_OBJECT_PATH))
    {
      gsize len;
      const char *s = g_variant_get_string (v, &len);
      return bf_jelly_unicode (s, len);
    }
  if (g_variant_type_equal (t, G_VARIANT_TYPE_BOOLEAN))
    return bf_jelly_boolean (g_variant_get_boolean (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_INT64))
    return bf_jelly_int (g_variant_get_int64 (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_INT32))
    return bf_jelly_int (g_variant_get_int32 (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_UINT32))
    return bf_jelly_int (g_variant_get_uint32 (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_UINT64))
    return bf_jelly_int ((gint64) MIN (g_variant_get_uint64 (v), (guint64) G_MAXINT64));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_INT16))
    return bf_jelly_int (g_variant_get_int16 (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_UINT16))
    return bf_jelly_int (g_variant_get_uint16 (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_BYTE))
    return bf_jelly_int (g_variant_get_byte (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_DOUBLE))
    return bf_jelly_float (g_variant_get_double (v));
  if (g_variant_type_equal (t, G_VARIANT_TYPE_VARIANT))
    {
      g_autoptr(GVariant) inner = g_variant_get_variant (v);
      return variant_to_jelly (inner);
    }
  if (g_variant_type_is_maybe (t))
    {
      g_autoptr(GVariant) inner = g_variant_get_maybe (v);
      return inner ? variant_to_jelly (inner) : bf_jelly_none ();
    }
  if (g_variant_type_equal (t, G_VARIANT_TYPE_BYTESTRING))
    {
      gsize len;
      const guint8 *data = g_variant_get_fixed_array (v, &len, 1);
      return bf_jelly_bytes (data, len);
    }
  if (g_variant_type_is_array (t) && g_variant_type_is_dict_entry (g_variant_type_element (t)))
    {
      BfJellyValue *dict = bf_jelly_dict ();
      gsize n = g_variant_n_children (v);

      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) entry = g_variant_get_child_value (v, i);
          g_autoptr(GVariant) k = g_variant_get_child_value (entry, 0);
          g_autoptr(GVariant) val = g_variant_get_child_value (entry, 1);
          g_autoptr(BfJellyValue) jk = variant_to_jelly (k);

          if (jk->type == BF_JELLY_UNICODE && bf_jelly_dict_lookup (dict, jk->string.data) != NULL)
            continue;
          bf_jelly_dict_set (dict, g_steal_pointer (&jk), variant_to_jelly (val));
        }
      return dict;
    }
  if (g_variant_type_is_array (t) || g_variant_type_is_tuple (t))
    {
      BfJellyValue *list = bf_jelly_list ();
      gsize n = g_variant_n_children (v);

      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) child = g_variant_get_child_value (v, i);
          bf_jelly_append (list, variant_to_jelly (child));
        }
      return list;
    }
  {
    g_autofree char *printed = g_variant_print (v, FALSE);
    return bf_jelly_unicode (printed, -1);
  }
}

/* Starting commands ------------------------------------------------------------- */

static void
start_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
            const GError *error, gpointer data)
{
  char *command_id = data;
  Cmd *cmd = lookup_cmd (self, command_id);

  g_free (command_id);
  if (cmd == NULL || cmd->finished)
    return;
  if (error != NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
    return;   /* the close completes it */
  if (failure != NULL)
    {
      g_autofree char *text = bf_pb_failure_text (failure, BF_LIMIT_FAILURE_BYTES);
      cmd_finish (self, cmd, text, FALSE);
    }
  else if (error != NULL)
    cmd_finish (self, cmd, error->message, FALSE);
}

static void
send_start (BfPbLink *self,
            Cmd      *cmd,
            Builder  *builder)
{
  g_autoptr(GVariant) args = g_steal_pointer (&cmd->args);
  g_autoptr(BfJellyValue) jargs = NULL;
  BfJellyValue *command_args = variant_to_jelly (args);
  const char *wire_name = cmd->name;
  gboolean download = g_str_equal (cmd->name, "download_file");

  if (download || g_str_equal (cmd->name, "upload_file") || g_str_equal (cmd->name, "upload_directory"))
    {
      /* Buildbot's master names, which the worker's PB side maps */
      wire_name = download ? "downloadFile" : g_str_equal (cmd->name, "upload_file") ? "uploadFile" : "uploadDirectory";
      bf_jelly_dict_set (command_args, bf_jelly_unicode (download ? "reader" : "writer", -1),
                         bf_pb_broker_reference (self->broker, cmd->transfer_id));
    }
  cmd->started = TRUE;
  jargs = tuple_of (bf_pb_broker_reference (self->broker, cmd->object_id),
                    bf_jelly_unicode (cmd->id, -1),
                    bf_jelly_unicode (wire_name, -1),
                    command_args,
                    NULL);
  call_remote (self, builder->ref_id, "startCommand", jargs, 0, start_done, g_strdup (cmd->id));
}

static void request_builder_list (BfPbLink *self);

static void
builder_list_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
                   const GError *error, gpointer data)
{
  g_autoptr(GPtrArray) waiting = g_ptr_array_new ();
  g_autofree char *problem = NULL;
  gboolean again = FALSE;
  GHashTableIter iter;
  gpointer value;

  self->builder_list_in_flight = FALSE;
  if (self->closed || self->builders == NULL)
    return;
  if (error != NULL)
    problem = g_strdup_printf ("setBuilderList: %s", error->message);
  else if (failure != NULL)
    {
      g_autofree char *text = bf_pb_failure_text (failure, BF_LIMIT_MESSAGE_BYTES);
      problem = g_strdup_printf ("the worker refused setBuilderList: %s", text);
    }
  else if (result->type != BF_JELLY_DICT)
    problem = g_strdup ("setBuilderList answered with something other than a dictionary");
  else
    for (guint i = 0; i + 1 < result->seq.len; i += 2)
      {
        gsize len;
        const char *name = jelly_string (result->seq.items[i], &len);
        BfJellyValue *ref = result->seq.items[i + 1];
        g_autofree char *name_z = name ? g_strndup (name, len) : NULL;
        Builder *b = name_z ? g_hash_table_lookup (self->builders, name_z) : NULL;

        if (ref->type != BF_JELLY_REMOTE)
          continue;
        if (b == NULL)
          {
            /* not ours: give it back */
            bf_pb_broker_release_remote (self->broker, ref->integer, 0);
            continue;
          }
        if (b->ref_id != 0 && b->ref_id != ref->integer)
          bf_pb_broker_release_remote (self->broker, b->ref_id, 0);
        b->ref_id = ref->integer;
        /* one reference each is enough */
        bf_pb_broker_release_remote (self->broker, ref->integer, 1);
      }

  /* Commands waiting for their builder. */
  if (self->commands != NULL)
    {
      g_hash_table_iter_init (&iter, self->commands);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          Cmd *cmd = value;
          if (!cmd->started && !cmd->finished)
            g_ptr_array_add (waiting, cmd);
        }
    }
  for (guint i = 0; i < waiting->len && !self->closed; i++)
    {
      Cmd *cmd = g_ptr_array_index (waiting, i);
      Builder *b = g_hash_table_lookup (self->builders, cmd->builder);

      if (b != NULL && b->ref_id != 0)
        send_start (self, cmd, b);
      else if (b != NULL && !b->asked)
        again = TRUE;
      else
        {
          g_autofree char *text = g_strdup_printf ("worker %s could not set up builder %s: %s",
                                                   self->worker_name, cmd->builder,
                                                   problem ? problem : "it did not return it");
          cmd_finish (self, cmd, text, FALSE);
        }
    }
  g_hash_table_iter_init (&iter, self->builders);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    ((Builder *) value)->asked = FALSE;
  if (again && !self->closed)
    request_builder_list (self);
}

static void
request_builder_list (BfPbLink *self)
{
  g_autoptr(BfJellyValue) args = NULL;
  BfJellyValue *list = bf_jelly_list ();
  GHashTableIter iter;
  gpointer value;

  if (self->builder_list_in_flight)
    return;
  self->builder_list_in_flight = TRUE;
  g_hash_table_iter_init (&iter, self->builders);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Builder *b = value;

      b->asked = TRUE;
      bf_jelly_append (list, tuple_of (bf_jelly_unicode (b->name, -1), bf_jelly_unicode (b->name, -1), NULL));
    }
  args = tuple_of (list, NULL);
  call_remote (self, self->mind_id, "setBuilderList", args, 0, builder_list_done, NULL);
}

static void
builder_free (Builder *b)
{
  g_free (b->name);
  g_free (b);
}

static gboolean
late_failure_cb (gpointer data)
{
  Cmd *cmd = data;
  BfPbLink *self = cmd->self;
  G_GNUC_UNUSED g_autoptr(BfPbLink) hold = g_object_ref (self);
  g_autofree char *failure = g_steal_pointer (&cmd->late_failure);

  cmd->late_id = 0;
  cmd_finish (self, cmd, failure, cmd->late_lost);
  return G_SOURCE_REMOVE;
}

/* Completes @cmd with @failure from the main loop, never from inside the
 * caller (the source belongs to the command, which belongs to the link). */
static void
fail_later (Cmd        *cmd,
            const char *failure,
            gboolean    lost)
{
  if (cmd->late_id != 0)
    return;
  cmd->late_failure = g_strdup (failure);
  cmd->late_lost = lost;
  cmd->late_id = bf_timeout_add (0, late_failure_cb, cmd, "[buildfleetd] PB command failure");
}

static void
link_start_command (BfWorkerLink        *link,
                    const char          *command_id,
                    const char          *name,
                    GVariant            *prepared,
                    const char          *builder,
                    const BfCommandSink *sink,
                    gpointer             user_data)
{
  BfPbLink *self = BF_PB_LINK (link);
  /* (transfer full): a floating one is sunk, a full reference taken over */
  g_autoptr(GVariant) args = g_variant_take_ref (prepared);
  const char *problem = NULL;
  Builder *b;
  Cmd *cmd;

  g_return_if_fail (lookup_cmd (self, command_id) == NULL);

  if (self->closed || self->login != LOGIN_DONE)
    problem = "the worker is not connected";
  else if (self->busy != NULL && g_hash_table_contains (self->busy, builder))
    problem = "the builder already runs a command on this PB worker";

  cmd = g_new0 (Cmd, 1);
  cmd->self = self;
  cmd->id = g_strdup (command_id);
  cmd->name = g_strdup (name);
  cmd->builder = g_strdup (builder);
  cmd->args = g_steal_pointer (&args);
  cmd->sink = sink;
  cmd->user_data = user_data;
  if (problem == NULL)
    {
      cmd->object_id = bf_pb_broker_export (self->broker, KIND_COMMAND, cmd);
      if (cmd->object_id == 0)
        problem = "too many commands on this PB worker";
    }
  if (problem == NULL && (g_str_equal (name, "upload_file") || g_str_equal (name, "upload_directory") ||
                          g_str_equal (name, "download_file")))
    {
      /* the writer or reader send_start() hands the worker */
      cmd->transfer_id = bf_pb_broker_export (self->broker, KIND_TRANSFER, cmd);
      if (cmd->transfer_id == 0)
        {
          bf_pb_broker_unexport (self->broker, cmd->object_id);
          problem = "too many objects on this PB worker";
        }
    }
  if (self->commands == NULL)
    self->commands = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) cmd_free);
  g_hash_table_insert (self->commands, cmd->id, cmd);
  if (problem != NULL)
    {
      fail_later (cmd, problem, self->closed || self->login != LOGIN_DONE);
      return;
    }
  if (self->busy == NULL)
    self->busy = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (self->busy, cmd->builder, cmd);

  if (self->builders == NULL)
    self->builders = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) builder_free);
  b = g_hash_table_lookup (self->builders, builder);
  if (b == NULL)
    {
      b = g_new0 (Builder, 1);
      b->name = g_strdup (builder);
      g_hash_table_insert (self->builders, b->name, b);
    }
  if (b->ref_id != 0)
    send_start (self, cmd, b);
  else
    request_builder_list (self);
}

static void
link_forget_command (BfWorkerLink *link,
                     const char   *command_id)
{
  BfPbLink *self = BF_PB_LINK (link);
  Cmd *cmd = lookup_cmd (self, command_id);

  if (cmd == NULL)
    return;
  cmd->sink = NULL;
  if (!cmd->finished)
    cmd_finish (self, cmd, NULL, FALSE);
}

static void
interrupt_done (BfPbLink *self, BfJellyValue *result, BfJellyValue *failure,
                const GError *error, gpointer data)
{
}

static void
link_interrupt_command (BfWorkerLink *link,
                        const char   *command_id,
                        const char   *builder,
                        const char   *why)
{
  BfPbLink *self = BF_PB_LINK (link);
  Cmd *cmd = lookup_cmd (self, command_id);
  Builder *b;
  g_autoptr(BfJellyValue) args = NULL;

  if (cmd == NULL || cmd->finished || self->closed)
    return;
  if (!cmd->started)
    {
      /* never sent: nothing to interrupt on the worker */
      g_autofree char *text = g_strdup_printf ("interrupted before it started: %s", why);
      fail_later (cmd, text, FALSE);
      return;
    }
  b = self->builders ? g_hash_table_lookup (self->builders, cmd->builder) : NULL;
  if (b == NULL || b->ref_id == 0)
    return;
  args = tuple_of (bf_jelly_unicode (command_id, -1), bf_jelly_unicode (why, -1), NULL);
  call_remote (self, b->ref_id, "interruptCommand", args, INTERRUPT_TIMEOUT_USEC, interrupt_done, NULL);
}

static void
link_close_iface (BfWorkerLink *link,
                  const char   *reason)
{
  link_close (BF_PB_LINK (link), reason);
}

static void
bf_pb_link_iface_init (BfWorkerLinkInterface *iface)
{
  iface->get_worker_name = link_get_worker_name;
  iface->get_peer = link_get_peer;
  iface->get_protocol = link_get_protocol;
  iface->get_last_rx_usec = link_get_last_rx_usec;
  iface->get_info = link_get_info;
  iface->set_keepalive = link_set_keepalive;
  iface->attach_async = link_attach_async;
  iface->attach_finish = link_attach_finish;
  iface->ping_async = link_ping_async;
  iface->ping_finish = link_ping_finish;
  iface->shutdown_async = link_shutdown_async;
  iface->shutdown_finish = link_shutdown_finish;
  iface->prepare_command = link_prepare_command;
  iface->start_command = link_start_command;
  iface->forget_command = link_forget_command;
  iface->interrupt_command = link_interrupt_command;
  iface->close = link_close_iface;
}

/* Object -------------------------------------------------------------------------- */

static void
bf_pb_link_dispose (GObject *object)
{
  BfPbLink *self = BF_PB_LINK (object);

  if (!self->closed && (self->stream != NULL || self->fd >= 0))
    link_close (self, "link disposed");
  bf_timer_stop (&self->keepalive_timer);
  bf_timer_stop (&self->login_timer);
  G_OBJECT_CLASS (bf_pb_link_parent_class)->dispose (object);
}

static void
bf_pb_link_finalize (GObject *object)
{
  BfPbLink *self = BF_PB_LINK (object);

  g_clear_pointer (&self->calls, g_hash_table_unref);
  g_clear_pointer (&self->commands, g_hash_table_unref);
  g_clear_pointer (&self->busy, g_hash_table_unref);
  g_clear_pointer (&self->builders, g_hash_table_unref);
  g_clear_pointer (&self->broker, bf_pb_broker_free);
  g_clear_pointer (&self->outbuf, g_byte_array_unref);
  g_clear_pointer (&self->unfed, g_byte_array_unref);
  g_clear_pointer (&self->info, bf_worker_info_free);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->stream);
  if (self->fd >= 0)
    close (self->fd);
  g_free (self->peer);
  g_free (self->worker_name);
  g_free (self->login_name);
  g_free (self->close_reason);
  G_OBJECT_CLASS (bf_pb_link_parent_class)->finalize (object);
}

static void
bf_pb_link_class_init (BfPbLinkClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_pb_link_dispose;
  object_class->finalize = bf_pb_link_finalize;

  /**
   * BfPbLink::logged-in:
   *
   * The worker logged in: bf_worker_link_get_worker_name() names it.
   */
  signals[SIGNAL_LOGGED_IN] =
    g_signal_new ("logged-in", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
bf_pb_link_init (BfPbLink *self)
{
  bf_token_bucket_init (&self->flood, FLOOD_BURST);
  self->last_rx_mono = self->flood.stamp;
  self->last_rx_usec = (guint64) g_get_real_time ();
  self->fd = -1;
}

static BfPbLink *
link_new (const char       *peer,
          guint64           keepalive_interval_usec,
          BfPbLinkAuthFunc  auth,
          gpointer          auth_data)
{
  BfPbLink *self = g_object_new (BF_TYPE_PB_LINK, NULL);

  self->peer = g_strdup (peer);
  self->keepalive_interval_usec = keepalive_interval_usec;
  self->auth = auth;
  self->auth_data = auth_data;
  self->broker = bf_pb_broker_new (&broker_handler, self);
  return self;
}

/**
 * bf_pb_link_new:
 * @stream: a connected TCP stream, or a #GTlsServerConnection when @tls
 * @peer: "host:port"
 * @keepalive_interval_usec: once attached; 0 = none
 * @auth: checks the login
 */
BfPbLink *
bf_pb_link_new (GIOStream        *stream,
                const char       *peer,
                gboolean          tls,
                guint64           keepalive_interval_usec,
                BfPbLinkAuthFunc  auth,
                gpointer          auth_data)
{
  BfPbLink *self = link_new (peer, keepalive_interval_usec, auth, auth_data);

  self->stream = g_object_ref (stream);
  self->in = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (stream));
  self->out = G_POLLABLE_OUTPUT_STREAM (g_io_stream_get_output_stream (stream));
  self->cancellable = g_cancellable_new ();
  self->tls = tls;
  self->tls_ready = !tls;
  return self;
}

/**
 * bf_pb_link_new_for_fd:
 * @fd: (transfer full): a connected, non-blocking TCP socket
 * @peer: "host:port"
 * @keepalive_interval_usec: once attached; 0 = none
 * @auth: checks the login
 *
 * A plain TCP link on a bare descriptor: what the listener makes of every
 * PB connection without TLS (the lightest kind).
 */
BfPbLink *
bf_pb_link_new_for_fd (int               fd,
                       const char       *peer,
                       guint64           keepalive_interval_usec,
                       BfPbLinkAuthFunc  auth,
                       gpointer          auth_data)
{
  BfPbLink *self = link_new (peer, keepalive_interval_usec, auth, auth_data);

  self->fd = fd;
  self->tls_ready = TRUE;
  return self;
}
