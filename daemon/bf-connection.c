/* bf-connection.c: one worker's WebSocket and Buildbot's msgpack protocol
 *
 * The only file that knows the wire format.  Every message is one binary
 * WebSocket frame holding a msgpack map with `op` and `seq_number`; each
 * side numbers its requests from 0 and answers every request with one
 * `response`.  See reference/buildbot-msgpack-protocol.md.
 *
 * Bad input never reaches the rest of the daemon: broken or oversized
 * frames are refused by bf-websocket.c, text frames, undecodable
 * messages, messages without op/seq_number, responses to requests never
 * sent and floods close this connection with a reason; unknown ops get an
 * error response, as Buildbot's own peers do.
 *
 * Liveness: see keepalive_cb().  Anything received (a message or a pong)
 * counts as a sign of life; nothing for two keepalive intervals closes the
 * connection with "keepalive timeout", and a keepalive request unanswered
 * for two intervals closes it too.  Every interval and deadline here runs on
 * the monotonic clock: a wall clock stepped by NTP or a resumed VM neither
 * drops healthy workers nor keeps dead ones.  The wall clock only stamps
 * what is published (bf_worker_link_get_last_rx_usec()).
 *
 * Every request we send has a deadline (DEFAULT_REQUEST_TIMEOUT_USEC unless
 * the caller gives one) and at most MAX_PENDING_REQUESTS may be unanswered
 * at once: a worker that stops answering cannot make us pile them up.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-connection.h"
#include "bf-error.h"
#include "bf-log.h"
#include "bf-msgpack.h"
#include "bf-timer-queue.h"
#include "bf-util.h"
#include "bf-variant-util.h"

#define ATTACH_TIMEOUT_USEC (30 * G_USEC_PER_SEC)
#define ACTIVITY_MIN_PERIOD_USEC G_USEC_PER_SEC
#define FLOOD_RATE 5000.0          /* messages per second, sustained */
#define FLOOD_BURST 20000.0
/* Messages of this size and more are decoded on a thread (see
 * decode_big_message()); a worker may have at most BACKLOG_MAX_BYTES of
 * messages waiting behind such a decode. */
#define BIG_MESSAGE_BYTES (256 * 1024)
#define BACKLOG_MAX_BYTES (64 * 1024 * 1024)
/* The messages that waited behind a big one are handled for at most this
 * long per main-loop iteration (they can be a flood's worth). */
#define BACKLOG_SLICE_USEC 1000
#define DEFAULT_REQUEST_TIMEOUT_USEC (60 * G_USEC_PER_SEC)
#define MAX_PENDING_REQUESTS 256
/* get_worker_info's environment is never kept (bf_worker_info_new_from_vardict()
 * drops it): it is not even decoded, only checked to be well-formed.  It was
 * the bulk of an attach's decoding. */
#define DROPPED_KEY "environ"

struct _BfConnection
{
  GObject parent_instance;

  BfWebsocket *ws;
  char *worker_name;
  char *peer;
  BfConnectionLimits limits;

  gboolean closed;
  gint64 next_seq;
  GHashTable *pending;            /* seq (gint64*) -> Pending*; NULL while none is */
  GHashTable *commands;           /* command_id -> CommandSink*: ours, running; NULL until the first */
  BfWorkerInfo *info;             /* NULL until attached */

  guint64 last_rx_usec;            /* wall clock, published */
  gint64 last_rx_mono;             /* monotonic, for liveness */
  gint64 last_activity_emit_mono;
  BfTimer *keepalive_timer;
  gboolean keepalive_pending;      /* one keepalive request at a time */

  BfTokenBucket flood;

  /* While a big message is decoded on a thread, the messages that follow
   * wait here, in order; NULL otherwise (most connections never need it). */
  struct Backlog *backlog;
};

static void bf_connection_link_init (BfWorkerLinkInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfConnection, bf_connection, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (BF_TYPE_WORKER_LINK, bf_connection_link_init))

typedef struct {
  const BfCommandSink *sink;
  gpointer user_data;
} CommandSink;

typedef struct Backlog {
  GQueue messages;                /* GBytes, in arrival order */
  gsize bytes;
} Backlog;

static void
backlog_free (Backlog *backlog)
{
  g_queue_clear_full (&backlog->messages, (GDestroyNotify) g_bytes_unref);
  g_free (backlog);
}

/* The table of running commands exists only once a command was started:
 * most connections of a big fleet are idle, and an empty GHashTable is a
 * quarter of a kilobyte. */
static CommandSink *
lookup_command (BfConnection *self,
                const char   *command_id)
{
  return self->commands != NULL ? g_hash_table_lookup (self->commands, command_id) : NULL;
}

typedef struct {
  BfConnection *self;     /* unowned: the table is cleared before we go */
  GTask *task;
  gint64 seq;
  char *op;
  BfTimer *timer;
} Pending;

static void
pending_free (Pending *p)
{
  bf_timer_stop (&p->timer);
  g_clear_object (&p->task);
  g_free (p->op);
  g_free (p);
}

/* Like the table of commands, the table of requests in flight exists only
 * while one is: an attached worker is asked something once a keepalive
 * interval, and 10,000 idle connections would each keep an empty table. */
static guint
n_pending (BfConnection *self)
{
  return self->pending != NULL ? g_hash_table_size (self->pending) : 0;
}

static void
forget_pending (BfConnection *self,
                gint64        seq)
{
  g_hash_table_steal (self->pending, &seq);
  if (g_hash_table_size (self->pending) == 0)
    g_clear_pointer (&self->pending, g_hash_table_unref);
}

static void
fail_all_pending (BfConnection *self,
                  const char   *reason)
{
  g_autoptr(GList) values = NULL;

  if (n_pending (self) == 0)
    return;

  /* Steal the whole table first: a callback may issue new requests. */
  values = g_hash_table_get_values (self->pending);
  g_hash_table_steal_all (self->pending);
  g_clear_pointer (&self->pending, g_hash_table_unref);
  for (GList *l = values; l; l = l->next)
    {
      Pending *p = l->data;
      g_task_return_new_error (p->task, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                               "the connection closed (%s) before %s was answered", reason, p->op);
      pending_free (p);
    }
}

static void
fail_all_commands (BfConnection *self,
                   const char   *reason)
{
  g_autoptr(GHashTable) commands = NULL;
  g_autofree char *failure = g_strdup_printf ("the worker was lost: %s", reason);
  GHashTableIter iter;
  gpointer value;

  if (self->commands == NULL)
    return;
  commands = g_steal_pointer (&self->commands);
  g_hash_table_iter_init (&iter, commands);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      CommandSink *cs = value;
      cs->sink->complete (cs->user_data, failure, TRUE);
    }
}

static void
mark_closed (BfConnection *self,
             const char   *reason)
{
  g_autoptr(BfConnection) hold = g_object_ref (self);

  if (self->closed)
    return;
  self->closed = TRUE;
  bf_timer_stop (&self->keepalive_timer);
  fail_all_pending (self, reason);
  fail_all_commands (self, reason);
  g_signal_emit_by_name (self, "closed", reason);
}

/**
 * bf_connection_close:
 * @reason: said in the WebSocket close frame and in the "closed" signal
 *
 * Closes the connection; "closed" is emitted at once, whatever the peer
 * does with the closing handshake.
 */
void
bf_connection_close (BfConnection *self,
                     const char   *reason)
{
  g_return_if_fail (BF_IS_CONNECTION (self));

  if (self->closed)
    return;
  /* bf_websocket_close() cuts the reason to fit a close frame. */
  bf_websocket_close (self->ws, BF_WEBSOCKET_CLOSE_POLICY_VIOLATION, reason);
  mark_closed (self, reason);
}

static void
protocol_error (BfConnection *self,
                const char   *format,
                ...) G_GNUC_PRINTF (2, 3);

static void
protocol_error (BfConnection *self,
                const char   *format,
                ...)
{
  g_autofree char *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  bf_worker_message (self->worker_name, "Closing the connection of worker %s from %s: %s",
                     self->worker_name, self->peer, what);
  bf_connection_close (self, what);
}

static void
send_map (BfConnection *self,
          GVariant     *map)
{
  g_autoptr(GVariant) sunk = g_variant_ref_sink (map);
  g_autoptr(GBytes) bytes = NULL;

  if (self->closed)
    return;
  bytes = bf_msgpack_encode (sunk);
  bf_websocket_send_binary (self->ws, g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
}

static void
send_response (BfConnection *self,
               gint64        seq,
               GVariant     *result,
               gboolean      is_exception)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "op", g_variant_new_string ("response"));
  g_variant_builder_add (&b, "{sv}", "seq_number", g_variant_new_int64 (seq));
  g_variant_builder_add (&b, "{sv}", "result",
                         result ? result : g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL));
  if (is_exception)
    g_variant_builder_add (&b, "{sv}", "is_exception", g_variant_new_boolean (TRUE));
  send_map (self, g_variant_builder_end (&b));
}

static gboolean
request_timeout_cb (gpointer data)
{
  Pending *p = data;
  BfConnection *self = p->self;

  forget_pending (self, p->seq);
  g_task_return_new_error (p->task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                           "worker %s did not answer %s in time", self->worker_name, p->op);
  pending_free (p);
  return G_SOURCE_REMOVE;
}

static void
add_field (GVariantBuilder *b,
           const char      *key,
           GVariant        *value)
{
  g_variant_builder_add_value (b, g_variant_new_dict_entry (g_variant_new_string (key),
                                                            g_variant_new_variant (value)));
}

/**
 * bf_connection_request_async:
 * @op: the request, e.g. "print", "get_worker_info"
 * @fields: (nullable) (transfer floating): a{sv} of further fields
 * @timeout_usec: how long the worker has to answer (monotonic); 0 for
 *   the default of a minute
 *
 * Sends a request; the result is the response's `result` (nil as `mv`
 * nothing), or an error for an exception response, a timeout or a closed
 * connection.  A worker with %MAX_PENDING_REQUESTS requests unanswered is
 * not keeping up with the protocol: the connection is closed.
 */
void
bf_connection_request_async (BfConnection        *self,
                             const char          *op,
                             GVariant            *fields,
                             guint64              timeout_usec,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(GVariant) sunk = fields ? g_variant_ref_sink (fields) : NULL;
  GVariantBuilder b;
  Pending *p;

  g_task_set_source_tag (task, bf_connection_request_async);
  g_task_set_check_cancellable (task, TRUE);

  if (self->closed)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                               "worker %s is not connected", self->worker_name);
      return;
    }

  if (n_pending (self) >= MAX_PENDING_REQUESTS)
    {
      protocol_error (self, "%u requests left unanswered; the worker does not keep up",
                      n_pending (self));
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                               "worker %s is not connected", self->worker_name);
      return;
    }

  p = g_new0 (Pending, 1);
  p->self = self;
  p->task = g_steal_pointer (&task);
  p->seq = self->next_seq++;
  p->op = g_strdup (op);
  bf_timer_start (&p->timer, timeout_usec > 0 ? timeout_usec : DEFAULT_REQUEST_TIMEOUT_USEC,
                  request_timeout_cb, p);
  if (self->pending == NULL)
    self->pending = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, (GDestroyNotify) pending_free);
  g_hash_table_insert (self->pending, &p->seq, p);

  /* By index and by value, not with format strings: parsing them for
   * every field showed in an attach storm's profile. */
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  add_field (&b, "op", g_variant_new_string (op));
  add_field (&b, "seq_number", g_variant_new_int64 (p->seq));
  if (sunk != NULL)
    {
      gsize n = g_variant_n_children (sunk);

      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) entry = g_variant_get_child_value (sunk, i);

          g_variant_builder_add_value (&b, entry);
        }
    }
  send_map (self, g_variant_builder_end (&b));
}

GVariant *
bf_connection_request_finish (BfConnection  *self,
                              GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static GVariant *
lookup (GVariant           *map,
        const char         *key,
        const GVariantType *type)
{
  return g_variant_lookup_value (map, key, type);
}

static gboolean
is_nil (GVariant *v)
{
  return v == NULL ||
         (g_variant_is_of_type (v, G_VARIANT_TYPE ("mv")) && g_variant_n_children (v) == 0);
}

static void
handle_response (BfConnection *self,
                 GVariant     *msg,
                 gint64        seq)
{
  g_autoptr(GVariant) result = lookup (msg, "result", NULL);
  g_autoptr(GVariant) exc = lookup (msg, "is_exception", G_VARIANT_TYPE_BOOLEAN);
  Pending *p;

  if (seq < 0 || seq >= self->next_seq)
    {
      protocol_error (self, "response to request %" G_GINT64_FORMAT ", which was never sent", seq);
      return;
    }
  p = self->pending != NULL ? g_hash_table_lookup (self->pending, &seq) : NULL;
  if (p == NULL)
    {
      /* Answered after its timeout: nobody is waiting any more. */
      bf_worker_debug (self->worker_name, "Late response %" G_GINT64_FORMAT " from worker %s",
                       seq, self->worker_name);
      return;
    }
  forget_pending (self, seq);

  if (exc != NULL && g_variant_get_boolean (exc))
    {
      /* Quoted in logs, close frames and a command's Failure. */
      g_autofree char *text = NULL;
      if (result && g_variant_is_of_type (result, G_VARIANT_TYPE_STRING))
        text = bf_utf8_truncate (g_variant_get_string (result, NULL), -1, BF_LIMIT_MESSAGE_BYTES);
      else
        text = result ? bf_variant_print_bounded (result, BF_LIMIT_MESSAGE_BYTES) : g_strdup ("(no message)");
      g_task_return_new_error (p->task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "worker %s refused %s: %s", self->worker_name, p->op, text);
    }
  else
    g_task_return_pointer (p->task,
                           result ? g_variant_ref (result) : g_variant_ref_sink (g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL)),
                           (GDestroyNotify) g_variant_unref);
  pending_free (p);
}

/* `update` args: a list of [key, value] pairs. */
static void
deliver_update (CommandSink *cs,
                GVariant    *args)
{
  gsize n = g_variant_n_children (args);

  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) boxed = g_variant_get_child_value (args, i);
      g_autoptr(GVariant) pair = g_variant_get_variant (boxed);
      g_autoptr(GVariant) key_b = NULL;
      g_autoptr(GVariant) key = NULL;
      g_autoptr(GVariant) value_b = NULL;
      g_autoptr(GVariant) value = NULL;

      if (!g_variant_is_of_type (pair, G_VARIANT_TYPE ("av")) || g_variant_n_children (pair) != 2)
        continue;
      key_b = g_variant_get_child_value (pair, 0);
      key = g_variant_get_variant (key_b);
      value_b = g_variant_get_child_value (pair, 1);
      value = g_variant_get_variant (value_b);
      if (g_variant_is_of_type (key, G_VARIANT_TYPE_STRING))
        bf_command_sink_update (cs->sink, cs->user_data, g_variant_get_string (key, NULL), value);
    }
}

/* A transfer step's answer goes back as the response to its message. */
typedef struct {
  BfConnection *self;
  gint64 seq;
} TransferReply;

static void
transfer_reply (gpointer    reply_data,
                GBytes     *data,
                const char *failure)
{
  TransferReply *r = reply_data;

  if (failure != NULL)
    send_response (r->self, r->seq, g_variant_new_string (failure), TRUE);
  else if (data != NULL)
    send_response (r->self, r->seq, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, data, TRUE), FALSE);
  else
    send_response (r->self, r->seq, NULL, FALSE);
  g_object_unref (r->self);
  g_free (r);
}

static gboolean
number_of (GVariant *v,
           double   *out)
{
  if (v == NULL)
    return FALSE;
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_DOUBLE))
    *out = g_variant_get_double (v);
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT64))
    *out = (double) g_variant_get_int64 (v);
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT64))
    *out = (double) g_variant_get_uint64 (v);
  else
    return FALSE;
  return TRUE;
}

/* update_upload_file_write / _close / _utime, update_upload_directory_write
 * / _unpack, update_read_file / _close: a step for the command's transfer.
 * Returns FALSE (with @problem) for a message that is not one. */
static gboolean
transfer_step (BfConnection *self,
               CommandSink  *cs,
               GVariant     *msg,
               const char   *op,
               gint64        seq,
               const char  **problem)
{
  g_autoptr(GVariant) args = lookup (msg, "args", NULL);
  BfTransferStep step = { 0 };
  g_autoptr(GBytes) data = NULL;
  TransferReply *r;

  if (g_str_equal (op, "update_upload_file_write") || g_str_equal (op, "update_upload_directory_write"))
    {
      if (args == NULL || !g_variant_is_of_type (args, G_VARIANT_TYPE_BYTESTRING))
        {
          *problem = "args must be the block's bytes (bin)";
          return FALSE;
        }
      step.op = BF_TRANSFER_WRITE;
      step.data = data = g_variant_get_data_as_bytes (args);
    }
  else if (g_str_equal (op, "update_upload_file_close") || g_str_equal (op, "update_read_file_close"))
    step.op = BF_TRANSFER_CLOSE;
  else if (g_str_equal (op, "update_upload_file_utime"))
    {
      g_autoptr(GVariant) at = lookup (msg, "access_time", NULL);
      g_autoptr(GVariant) mt = lookup (msg, "modified_time", NULL);

      if (!number_of (at, &step.atime) || !number_of (mt, &step.mtime))
        {
          *problem = "access_time and modified_time must be numbers";
          return FALSE;
        }
      step.op = BF_TRANSFER_UTIME;
    }
  else if (g_str_equal (op, "update_upload_directory_unpack"))
    step.op = BF_TRANSFER_UNPACK;
  else if (g_str_equal (op, "update_read_file"))
    {
      g_autoptr(GVariant) length = lookup (msg, "length", NULL);
      double n;

      if (!number_of (length, &n) || !(n >= 0))
        {
          *problem = "length must be a number of bytes";
          return FALSE;
        }
      step.op = BF_TRANSFER_READ;
      step.length = n > G_MAXSIZE ? G_MAXSIZE : (gsize) n;
    }
  else
    {
      *problem = NULL;
      return FALSE;
    }

  if (cs->sink->transfer == NULL)
    {
      *problem = "this command transfers no file";
      return FALSE;
    }
  r = g_new0 (TransferReply, 1);
  r->self = g_object_ref (self);
  r->seq = seq;
  cs->sink->transfer (cs->user_data, &step, transfer_reply, r);
  return TRUE;
}

/* `complete` args: nil on success, else (usually) a string; bounded. */
static char *
failure_text (GVariant *args)
{
  if (is_nil (args))
    return NULL;
  if (g_variant_is_of_type (args, G_VARIANT_TYPE_STRING))
    return bf_utf8_truncate (g_variant_get_string (args, NULL), -1, BF_LIMIT_FAILURE_BYTES);
  return bf_variant_print_bounded (args, BF_LIMIT_FAILURE_BYTES);
}

static void
handle_command_message (BfConnection *self,
                        GVariant     *msg,
                        const char   *op,
                        gint64        seq)
{
  g_autoptr(GVariant) id = lookup (msg, "command_id", G_VARIANT_TYPE_STRING);
  g_autoptr(GVariant) args = lookup (msg, "args", NULL);
  const char *command_id;
  CommandSink *cs;

  if (id == NULL)
    {
      send_response (self, seq, g_variant_new_string ("message did not contain obligatory \"command_id\" key"), TRUE);
      return;
    }
  command_id = g_variant_get_string (id, NULL);
  cs = lookup_command (self, command_id);
  if (cs == NULL)
    {
      g_autofree char *shown = bf_utf8_truncate (command_id, -1, BF_LIMIT_MESSAGE_BYTES);
      g_autofree char *text = g_strdup_printf ("no command %s is running", shown);
      send_response (self, seq, g_variant_new_string (text), TRUE);
      return;
    }

  if (g_str_equal (op, "update"))
    {
      if (args == NULL || !g_variant_is_of_type (args, G_VARIANT_TYPE ("av")))
        {
          send_response (self, seq, g_variant_new_string ("update args must be a list of [key, value] pairs"), TRUE);
          return;
        }
      send_response (self, seq, NULL, FALSE);
      deliver_update (cs, args);
    }
  else if (g_str_equal (op, "complete"))
    {
      g_autofree char *failure = failure_text (args);
      CommandSink done = *cs;

      send_response (self, seq, NULL, FALSE);
      if (self->commands != NULL)
        g_hash_table_remove (self->commands, command_id);
      done.sink->complete (done.user_data, failure, FALSE);
    }
  else
    {
      const char *problem = NULL;

      if (!transfer_step (self, cs, msg, op, seq, &problem))
        {
          g_autofree char *shown = bf_utf8_truncate (op, -1, BF_LIMIT_MESSAGE_BYTES);
          g_autofree char *text = problem ? g_strdup_printf ("%s: %s", shown, problem)
                                          : g_strdup_printf ("%s is not supported by buildfleetd", shown);
          send_response (self, seq, g_variant_new_string (text), TRUE);
        }
    }
}

static gboolean
flood_check (BfConnection *self)
{
  return bf_token_bucket_take (&self->flood, FLOOD_RATE, FLOOD_BURST);
}

static void
note_rx (BfConnection *self)
{
  gint64 now = g_get_monotonic_time ();

  self->last_rx_mono = now;
  self->last_rx_usec = (guint64) g_get_real_time ();
  if (now - self->last_activity_emit_mono >= ACTIVITY_MIN_PERIOD_USEC)
    {
      self->last_activity_emit_mono = now;
      g_signal_emit_by_name (self, "activity");
    }
}

/* Handles one decoded message (or the error that decoding it gave). */
static void
dispatch_message (BfConnection *self,
                  GVariant     *msg,
                  const GError *decode_error)
{
  g_autoptr(BfConnection) hold = g_object_ref (self);
  g_autoptr(GVariant) op_v = NULL;
  g_autoptr(GVariant) seq_v = NULL;
  const char *op;
  gint64 seq;

  if (self->closed)
    return;
  if (msg == NULL)
    {
      protocol_error (self, "undecodable message: %s", decode_error->message);
      return;
    }
  if (!g_variant_is_of_type (msg, G_VARIANT_TYPE_VARDICT))
    {
      protocol_error (self, "message is not a map with string keys");
      return;
    }
  op_v = lookup (msg, "op", G_VARIANT_TYPE_STRING);
  seq_v = lookup (msg, "seq_number", NULL);
  if (op_v == NULL)
    {
      protocol_error (self, "message has no \"op\" string");
      return;
    }
  if (seq_v == NULL || !(g_variant_is_of_type (seq_v, G_VARIANT_TYPE_INT64) ||
                         g_variant_is_of_type (seq_v, G_VARIANT_TYPE_UINT64)))
    {
      protocol_error (self, "message has no integer \"seq_number\"");
      return;
    }
  op = g_variant_get_string (op_v, NULL);
  seq = g_variant_is_of_type (seq_v, G_VARIANT_TYPE_INT64) ? g_variant_get_int64 (seq_v) : -1;

  if (g_str_equal (op, "response"))
    handle_response (self, msg, seq);
  else if (g_str_equal (op, "update") || g_str_equal (op, "complete") ||
           g_str_has_prefix (op, "update_"))
    handle_command_message (self, msg, op, seq);
  else
    {
      g_autofree char *shown = bf_utf8_truncate (op, -1, BF_LIMIT_MESSAGE_BYTES);
      g_autofree char *text = g_strdup_printf ("Command %s does not exist.", shown);
      send_response (self, seq, g_variant_new_string (text), TRUE);
    }
}

static void decode_big_message (BfConnection *self,
                                GBytes       *raw);

/* Decodes and handles a message on the main thread, or hands it to
 * decode_big_message() if it is big. */
static void
process_message (BfConnection *self,
                 const guint8 *data,
                 gsize         len)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) msg = NULL;

  if (len >= BIG_MESSAGE_BYTES)
    {
      decode_big_message (self, g_bytes_new (data, len));
      return;
    }
  msg = bf_msgpack_decode_dropping (data, len, DROPPED_KEY, &error);
  dispatch_message (self, msg, error);
}

/* Big messages
 * ------------
 *
 * Decoding takes time linear in the message (bounded by MaxMessageSize and
 * the codec's memory budget), up to a few hundred milliseconds for the
 * largest.  So that one worker's big message never stalls the main loop
 * (D-Bus, timers, every other worker), it is decoded on a thread of a small
 * pool shared by all connections, one message of a connection at a time;
 * what the worker sends meanwhile waits in its backlog, in order, and a
 * worker that piles up more than BACKLOG_MAX_BYTES is dropped. */

typedef struct {
  BfConnection *self;             /* owned */
  GMainContext *context;          /* owned: where the result is handled */
  GBytes *raw;
  GVariant *msg;
  GError *error;
  gboolean dispatched;            /* msg handled; the backlog is being worked off */
} DecodeJob;

static void
decode_job_free (DecodeJob *job)
{
  g_clear_object (&job->self);
  g_clear_pointer (&job->context, g_main_context_unref);
  g_clear_pointer (&job->raw, g_bytes_unref);
  g_clear_pointer (&job->msg, g_variant_unref);
  g_clear_error (&job->error);
  g_free (job);
}

static gboolean
decode_done_cb (gpointer data)
{
  DecodeJob *job = data;
  BfConnection *self = job->self;
  gint64 until = g_get_monotonic_time () + BACKLOG_SLICE_USEC;

  if (self->closed)
    return G_SOURCE_REMOVE;

  if (!job->dispatched)
    {
      job->dispatched = TRUE;
      dispatch_message (self, job->msg, job->error);
      /* Freed before the next big message is decoded, so that no two are
       * in memory at once. */
      g_clear_pointer (&job->msg, g_variant_unref);
    }

  /* Then what arrived meanwhile, until the next big one, a slice per
   * iteration; what arrives meanwhile still joins the backlog, in order. */
  while (!self->closed && self->backlog != NULL)
    {
      g_autoptr(GBytes) raw = NULL;
      gsize len;
      const guint8 *bytes;

      if (g_get_monotonic_time () >= until)
        return G_SOURCE_CONTINUE;
      raw = g_queue_pop_head (&self->backlog->messages);

      if (raw == NULL)
        {
          g_clear_pointer (&self->backlog, backlog_free);
          break;
        }
      bytes = g_bytes_get_data (raw, &len);
      self->backlog->bytes -= len;
      if (len >= BIG_MESSAGE_BYTES)
        {
          decode_big_message (self, g_steal_pointer (&raw));
          break;
        }
      process_message (self, bytes, len);
    }
  return G_SOURCE_REMOVE;
}

static void
decode_thread (gpointer data,
               gpointer pool_data)
{
  DecodeJob *job = data;
  GSource *source;
  gsize len;
  const guint8 *bytes = g_bytes_get_data (job->raw, &len);

  job->msg = bf_msgpack_decode_dropping (bytes, len, DROPPED_KEY, &job->error);
  g_clear_pointer (&job->raw, g_bytes_unref);

  source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_static_name (source, "[buildfleetd] decoded message");
  g_source_set_callback (source, decode_done_cb, job, (GDestroyNotify) decode_job_free);
  g_source_attach (source, job->context);
  g_source_unref (source);
}

static void
decode_big_message (BfConnection *self,
                    GBytes       *raw)
{
  static GThreadPool *pool;
  DecodeJob *job = g_new0 (DecodeJob, 1);

  /* Two threads: big messages of two workers decode side by side, and
   * memory in flight stays bounded whatever the size of the fleet. */
  if (g_once_init_enter (&pool))
    g_once_init_leave (&pool, g_thread_pool_new (decode_thread, NULL, 2, FALSE, NULL));

  if (self->backlog == NULL)
    self->backlog = g_new0 (Backlog, 1);
  job->self = g_object_ref (self);
  job->context = g_main_context_ref_thread_default ();
  job->raw = raw;
  g_thread_pool_push (pool, job, NULL);
}

static void
ws_message_cb (gpointer      user_data,
               gboolean      binary,
               const guint8 *data,
               gsize         len)
{
  BfConnection *self = user_data;

  if (self->closed)
    return;
  note_rx (self);

  if (!flood_check (self))
    {
      protocol_error (self, "more than %.0f messages per second", FLOOD_RATE);
      return;
    }
  if (!binary)
    {
      protocol_error (self, "text frame received; the protocol uses binary msgpack frames");
      return;
    }

  /* Behind a big message being decoded: wait for it, in order. */
  if (self->backlog != NULL)
    {
      if (self->backlog->bytes + len > BACKLOG_MAX_BYTES)
        {
          protocol_error (self, "more than %d MB of messages waiting to be decoded",
                          BACKLOG_MAX_BYTES / (1024 * 1024));
          return;
        }
      g_queue_push_tail (&self->backlog->messages, g_bytes_new (data, len));
      self->backlog->bytes += len;
      return;
    }

  process_message (self, data, len);
}

static void
ws_pong_cb (gpointer user_data)
{
  note_rx (user_data);
}

static void
ws_closed_cb (gpointer    user_data,
              const char *reason)
{
  BfConnection *self = user_data;

  bf_worker_debug (self->worker_name, "Worker %s from %s: %s", self->worker_name, self->peer, reason);
  mark_closed (self, reason);
}

static const BfWebsocketHandler ws_handler = {
  .message = ws_message_cb,
  .pong = ws_pong_cb,
  .closed = ws_closed_cb,
};

static void
keepalive_reply_cb (GObject      *object,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  BfConnection *self = BF_CONNECTION (object);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = bf_connection_request_finish (self, result, &error);

  self->keepalive_pending = FALSE;
  /* An exception response is an answer too: the worker's reactor runs.
   * One that waits unread is too (a late response is dropped). */
  if (reply != NULL || !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) || self->closed ||
      bf_websocket_has_unread (self->ws))
    return;
  bf_worker_message (self->worker_name,
                     "Worker %s from %s did not answer a keepalive request within %.1f s: dropping it",
                     self->worker_name, self->peer,
                     2 * self->limits.keepalive_interval_usec / (double) G_USEC_PER_SEC);
  bf_connection_close (self, "keepalive request not answered");
}

/* Liveness costs nothing while a worker talks.  Once it has been quiet for
 * a keepalive interval it gets a msgpack keepalive request (answered by the
 * worker's reactor, so it proves more than TCP; one at a time, with two
 * intervals to answer) and a WebSocket ping at every check while it stays
 * quiet.  Quiet for two intervals is dead, and so is a worker whose pongs
 * come back but whose keepalive answer does not.  All on the monotonic
 * clock. */
static gboolean
keepalive_cb (gpointer data)
{
  BfConnection *self = data;
  gint64 interval = (gint64) self->limits.keepalive_interval_usec;
  gint64 idle = MAX (g_get_monotonic_time () - self->last_rx_mono, 0);

  if (idle >= 2 * interval && !bf_websocket_has_unread (self->ws))
    {
      bf_worker_message (self->worker_name, "Worker %s from %s answered nothing for %.1f s: dropping it",
                         self->worker_name, self->peer, idle / (double) G_USEC_PER_SEC);
      bf_connection_close (self, "keepalive timeout");
      return G_SOURCE_REMOVE;
    }
  if (idle >= interval)
    {
      if (!self->keepalive_pending)
        {
          self->keepalive_pending = TRUE;
          bf_connection_request_async (self, "keepalive", NULL, (guint64) (2 * interval), NULL,
                                       keepalive_reply_cb, NULL);
        }
      if (!self->closed)
        bf_websocket_ping (self->ws);
    }
  /* Closing stopped this timer, but a callback that continues re-arms it. */
  return self->closed ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

void
bf_connection_set_keepalive (BfConnection *self,
                             guint64       interval_usec)
{
  bf_timer_stop (&self->keepalive_timer);
  self->limits.keepalive_interval_usec = interval_usec;
  if (interval_usec == 0 || self->closed)
    return;
  /* Checked twice per interval, so a dead peer is dropped between 2 and
   * 2.5 intervals after its last sign of life. */
  bf_timer_start (&self->keepalive_timer, interval_usec / 2, keepalive_cb, self);
}

/* Attach -------------------------------------------------------------------- */

typedef struct {
  guint remaining;
  GError *error;
} AttachData;

static void
attach_data_free (AttachData *d)
{
  g_clear_error (&d->error);
  g_free (d);
}

typedef struct {
  GTask *task;
  const char *op;
} AttachStep;

static void
attach_step_cb (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  BfConnection *self = BF_CONNECTION (object);
  AttachStep *step = user_data;
  g_autoptr(GTask) task = step->task;
  const char *op = step->op;
  AttachData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = bf_connection_request_finish (self, result, &error);

  g_free (step);
  if (reply == NULL && d->error == NULL)
    d->error = g_steal_pointer (&error);
  else if (reply != NULL && g_str_equal (op, "get_worker_info"))
    {
      if (!g_variant_is_of_type (reply, G_VARIANT_TYPE_VARDICT))
        {
          if (d->error == NULL)
            d->error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                    "get_worker_info answered with something other than a map");
        }
      else
        {
          g_clear_pointer (&self->info, bf_worker_info_free);
          self->info = bf_worker_info_new_from_vardict (reply, self->worker_name, self->peer);
        }
    }

  if (--d->remaining > 0)
    return;
  if (g_task_return_error_if_cancelled (task))
    return;
  if (d->error != NULL)
    g_task_return_error (task, g_steal_pointer (&d->error));
  else if (self->info == NULL)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "no worker info");
  else
    {
      bf_connection_set_keepalive (self, self->limits.keepalive_interval_usec);
      g_task_return_boolean (task, TRUE);
    }
}

static void
attach_request (BfConnection *self,
                GTask        *task,
                const char   *op,
                GVariant     *fields)
{
  AttachStep *step = g_new0 (AttachStep, 1);

  step->task = g_object_ref (task);
  step->op = op;
  bf_connection_request_async (self, op, fields, ATTACH_TIMEOUT_USEC,
                               g_task_get_cancellable (task), attach_step_cb, step);
}

/**
 * bf_connection_attach_async:
 *
 * Runs Buildbot's attach sequence: print, get_worker_info and
 * set_worker_settings, pipelined.  Completes once all three are answered;
 * bf_worker_link_get_info() then holds what the worker reported.
 */
void
bf_connection_attach_async (BfConnection        *self,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  /* The same for every worker: made once. */
  static GVariant *settings_fields;
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  AttachData *d = g_new0 (AttachData, 1);
  g_autofree char *hello = g_strdup_printf ("attached to buildfleetd %s as %s", PACKAGE_VERSION, self->worker_name);
  GVariantBuilder message;

  g_task_set_source_tag (task, bf_connection_attach_async);
  g_task_set_task_data (task, d, (GDestroyNotify) attach_data_free);
  d->remaining = 3;

  if (settings_fields == NULL)
    {
      GVariantBuilder settings;
      GVariantBuilder fields;

      g_variant_builder_init (&settings, G_VARIANT_TYPE_VARDICT);
      add_field (&settings, "newline_re", g_variant_new_string ("(\r\n|\r|\n)"));
      add_field (&settings, "max_line_length", g_variant_new_int64 (4096));
      add_field (&settings, "buffer_timeout", g_variant_new_int64 (5));
      add_field (&settings, "buffer_size", g_variant_new_int64 (64 * 1024));
      g_variant_builder_init (&fields, G_VARIANT_TYPE_VARDICT);
      add_field (&fields, "args", g_variant_builder_end (&settings));
      settings_fields = g_variant_ref_sink (g_variant_builder_end (&fields));
    }
  g_variant_builder_init (&message, G_VARIANT_TYPE_VARDICT);
  add_field (&message, "message", g_variant_new_string (hello));

  attach_request (self, task, "print", g_variant_builder_end (&message));
  attach_request (self, task, "get_worker_info", NULL);
  attach_request (self, task, "set_worker_settings", settings_fields);
}

gboolean
bf_connection_attach_finish (BfConnection  *self,
                             GAsyncResult  *result,
                             GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Object ---------------------------------------------------------------------- */

static void
bf_connection_dispose (GObject *object)
{
  BfConnection *self = BF_CONNECTION (object);

  bf_timer_stop (&self->keepalive_timer);
  if (self->ws != NULL)
    bf_websocket_close (self->ws, BF_WEBSOCKET_CLOSE_GOING_AWAY, NULL);
  if (self->pending)
    fail_all_pending (self, "connection disposed");
  g_clear_object (&self->ws);

  G_OBJECT_CLASS (bf_connection_parent_class)->dispose (object);
}

static void
bf_connection_finalize (GObject *object)
{
  BfConnection *self = BF_CONNECTION (object);

  g_clear_pointer (&self->pending, g_hash_table_unref);
  g_clear_pointer (&self->commands, g_hash_table_unref);
  g_clear_pointer (&self->info, bf_worker_info_free);
  g_clear_pointer (&self->backlog, backlog_free);
  g_free (self->worker_name);
  g_free (self->peer);

  G_OBJECT_CLASS (bf_connection_parent_class)->finalize (object);
}

static void
bf_connection_class_init (BfConnectionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_connection_dispose;
  object_class->finalize = bf_connection_finalize;
}

static void
bf_connection_init (BfConnection *self)
{
  bf_token_bucket_init (&self->flood, FLOOD_BURST);
  self->last_rx_mono = self->flood.stamp;
}

BfConnection *
bf_connection_new (BfWebsocket              *ws,
                   const char               *worker_name,
                   const char               *peer,
                   const BfConnectionLimits *limits)
{
  BfConnection *self = g_object_new (BF_TYPE_CONNECTION, NULL);

  self->ws = g_object_ref (ws);
  self->worker_name = g_strdup (worker_name);
  self->peer = g_strdup (peer);
  self->limits = *limits;
  self->last_rx_usec = (guint64) g_get_real_time ();

  bf_websocket_set_handler (ws, &ws_handler, self, limits->max_message_size);
  return self;
}

static const char *
link_get_worker_name (BfWorkerLink *link)
{
  return BF_CONNECTION (link)->worker_name;
}

static const char *
link_get_peer (BfWorkerLink *link)
{
  return BF_CONNECTION (link)->peer;
}

static const char *
link_get_protocol (BfWorkerLink *link)
{
  return "msgpack";
}

static guint64
link_get_last_rx_usec (BfWorkerLink *link)
{
  return BF_CONNECTION (link)->last_rx_usec;
}

static const BfWorkerInfo *
link_get_info (BfWorkerLink *link)
{
  return BF_CONNECTION (link)->info;
}

static void
link_set_keepalive (BfWorkerLink *link,
                    guint64       interval_usec)
{
  bf_connection_set_keepalive (BF_CONNECTION (link), interval_usec);
}

static void
link_attach_async (BfWorkerLink        *link,
                   GCancellable        *cancellable,
                   GAsyncReadyCallback  callback,
                   gpointer             user_data)
{
  bf_connection_attach_async (BF_CONNECTION (link), cancellable, callback, user_data);
}

static gboolean
link_attach_finish (BfWorkerLink  *link,
                    GAsyncResult  *result,
                    GError       **error)
{
  return bf_connection_attach_finish (BF_CONNECTION (link), result, error);
}

/* ping and shutdown: a request whose answer only says the worker read it. */
static void
answered_cb (GObject      *object,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;
  g_autoptr(GVariant) reply = bf_connection_request_finish (BF_CONNECTION (object), result, &error);

  if (reply == NULL)
    g_task_return_error (task, error);
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
  GTask *task = g_task_new (link, cancellable, callback, user_data);

  g_task_set_source_tag (task, link_ping_async);
  bf_connection_request_async (BF_CONNECTION (link), "print",
                               g_variant_new_parsed ("{'message': <%s>}", message),
                               timeout_usec, cancellable, answered_cb, task);
}

static void
link_shutdown_async (BfWorkerLink        *link,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  GTask *task = g_task_new (link, cancellable, callback, user_data);

  g_task_set_source_tag (task, link_shutdown_async);
  bf_connection_request_async (BF_CONNECTION (link), "shutdown", NULL, 10 * G_USEC_PER_SEC,
                               cancellable, answered_cb, task);
}

static gboolean
link_task_finish (BfWorkerLink  *link,
                  GAsyncResult  *result,
                  GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
link_close (BfWorkerLink *link,
            const char   *reason)
{
  bf_connection_close (BF_CONNECTION (link), reason);
}

/* Command arguments ------------------------------------------------------------ */

static char *
resolve_path (const char  *path,
              const char  *basedir,
              const char  *builder,
              const char  *argname,
              GError     **error)
{
  if (g_path_is_absolute (path))
    return g_strdup (path);
  if (basedir == NULL || *basedir == '\0')
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "Argument “%s”: “%s” is relative and the worker did not report its base directory",
                   argname, path);
      return NULL;
    }
  return g_build_filename (basedir, builder, path, NULL);
}

/* msgpack workers take absolute paths: the neutral arguments' relative
 * ones are relative to BASEDIR/BUILDER. */
static GVariant *
link_prepare_command (BfWorkerLink  *link,
                      const char    *name,
                      GVariant      *args,
                      const char    *builder,
                      GError       **error)
{
  BfConnection *self = BF_CONNECTION (link);
  const char *basedir = self->info ? self->info->basedir : NULL;
  GVariantBuilder b;
  gsize n = g_variant_n_children (args);

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (args, i);
      g_autoptr(GVariant) key_v = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) value = g_variant_get_variant (boxed);
      const char *key = g_variant_get_string (key_v, NULL);

      if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) &&
          (g_str_equal (key, "workdir") || g_str_equal (key, "path") ||
           g_str_equal (key, "from_path") || g_str_equal (key, "to_path")))
        {
          g_autofree char *p = resolve_path (g_variant_get_string (value, NULL), basedir, builder, key, error);

          if (p == NULL)
            {
              g_variant_builder_clear (&b);
              return NULL;
            }
          g_variant_builder_add (&b, "{sv}", key, g_variant_new_string (p));
        }
      else if (g_str_equal (key, "paths") && g_variant_is_of_type (value, G_VARIANT_TYPE_STRING_ARRAY))
        {
          g_autoptr(GStrvBuilder) sb = g_strv_builder_new ();
          g_auto(GStrv) out = NULL;
          g_autofree const char **in = g_variant_get_strv (value, NULL);

          for (guint j = 0; in[j]; j++)
            {
              g_autofree char *p = resolve_path (in[j], basedir, builder, key, error);

              if (p == NULL)
                {
                  g_variant_builder_clear (&b);
                  return NULL;
                }
              g_strv_builder_add (sb, p);
            }
          out = g_strv_builder_end (sb);
          g_variant_builder_add (&b, "{sv}", key, g_variant_new_strv ((const char * const *) out, -1));
        }
      else if (g_str_equal (key, "maxsize") && g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64))
        /* One byte more than the caller's limit reaches us, so that a file
         * bigger than the limit shows as such instead of being cut. */
        g_variant_builder_add (&b, "{sv}", key, g_variant_new_int64 ((gint64) g_variant_get_uint64 (value) + 1));
      else if (g_str_equal (key, "blocksize") && g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64))
        g_variant_builder_add (&b, "{sv}", key, g_variant_new_int64 ((gint64) g_variant_get_uint64 (value)));
      else if ((g_str_equal (key, "compress") && g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) &&
                g_str_equal (g_variant_get_string (value, NULL), "none")) ||
               (g_str_equal (key, "mode") && g_variant_is_of_type (value, G_VARIANT_TYPE_INT32) &&
                g_variant_get_int32 (value) < 0))
        g_variant_builder_add (&b, "{sv}", key, g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL));
      else
        g_variant_builder_add_value (&b, entry);
    }
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

/* Remote commands ------------------------------------------------------------ */

static void
start_command_cb (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  BfConnection *self = BF_CONNECTION (object);
  g_autofree char *command_id = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = bf_connection_request_finish (self, result, &error);
  CommandSink *cs;

  if (reply != NULL || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
    return;   /* started, or the close already completed it */
  cs = lookup_command (self, command_id);
  if (cs != NULL)
    {
      CommandSink done = *cs;
      g_autofree char *failure = bf_utf8_truncate (error->message, -1, BF_LIMIT_FAILURE_BYTES);

      if (self->commands != NULL)
        g_hash_table_remove (self->commands, command_id);
      done.sink->complete (done.user_data, failure, FALSE);
    }
}

/* Sends start_command.  The worker's refusal (unknown command, missing
 * argument) arrives as a completion with its message as the failure. */
static void
link_start_command (BfWorkerLink        *link,
                    const char          *command_id,
                    const char          *name,
                    GVariant            *args,
                    const char          *builder,
                    const BfCommandSink *sink,
                    gpointer             user_data)
{
  BfConnection *self = BF_CONNECTION (link);
  GVariantBuilder b;
  CommandSink *cs;

  g_return_if_fail (lookup_command (self, command_id) == NULL);

  if (self->closed)
    {
      g_variant_unref (g_variant_ref_sink (args));
      sink->complete (user_data, "the worker is not connected", TRUE);
      return;
    }

  cs = g_new0 (CommandSink, 1);
  cs->sink = sink;
  cs->user_data = user_data;
  if (self->commands == NULL)
    self->commands = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_hash_table_insert (self->commands, g_strdup (command_id), cs);

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "command_id", g_variant_new_string (command_id));
  g_variant_builder_add (&b, "{sv}", "command_name", g_variant_new_string (name));
  g_variant_builder_add (&b, "{sv}", "args", args);
  if (builder != NULL)
    g_variant_builder_add (&b, "{sv}", "builder_name", g_variant_new_string (builder));
  bf_connection_request_async (self, "start_command", g_variant_builder_end (&b), 0, NULL,
                               start_command_cb, g_strdup (command_id));
}

/* Later messages for a forgotten command get an error response. */
static void
link_forget_command (BfWorkerLink *link,
                     const char   *command_id)
{
  BfConnection *self = BF_CONNECTION (link);

  if (self->commands != NULL)
    g_hash_table_remove (self->commands, command_id);
}

static void
link_interrupt_command (BfWorkerLink *link,
                        const char   *command_id,
                        const char   *builder,
                        const char   *why)
{
  BfConnection *self = BF_CONNECTION (link);
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "command_id", g_variant_new_string (command_id));
  g_variant_builder_add (&b, "{sv}", "builder_name", g_variant_new_string (builder ? builder : ""));
  g_variant_builder_add (&b, "{sv}", "why", g_variant_new_string (why));
  bf_connection_request_async (self, "interrupt_command", g_variant_builder_end (&b),
                               10 * G_USEC_PER_SEC, NULL, NULL, NULL);
}

static void
bf_connection_link_init (BfWorkerLinkInterface *iface)
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
  iface->ping_finish = link_task_finish;
  iface->shutdown_async = link_shutdown_async;
  iface->shutdown_finish = link_task_finish;
  iface->prepare_command = link_prepare_command;
  iface->start_command = link_start_command;
  iface->forget_command = link_forget_command;
  iface->interrupt_command = link_interrupt_command;
  iface->close = link_close;
}
