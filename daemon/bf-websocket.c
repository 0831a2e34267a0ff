/* bf-websocket.c: the server side of one worker's WebSocket (RFC 6455)
 *
 * Workers speak msgpack in binary WebSocket messages after an HTTP/1.1
 * upgrade with Basic credentials.  No main-loop source per connection
 * (GLib walks its list of all polled descriptors whenever one is added or
 * removed) and no per-worker buffers kept at their high-water mark: a
 * plain connection is a socket in the daemon's epoll set (bf-poller.c) and
 * a small struct (why libsoup's server was replaced, with its figures:
 * tests/bench/README.md):
 *
 *  - input is read into one buffer shared by every connection; only a
 *    frame split across reads is copied to a per-connection buffer, and
 *    only until it is whole;
 *  - output is written at once; only what the kernel does not take is
 *    kept, and the socket watched for writability until it is gone;
 *  - nothing is allocated per connection for pings, close or timers
 *    beyond the shared timer queue.
 *
 * TLS connections (TlsCertificate=) go through a GTlsServerConnection and
 * its pollable streams instead of the epoll set; the framing is the same
 * code.  What a TLS peer can cost before it has authenticated is bounded:
 *
 *  - until its whole first record (the ClientHello) is there, a TLS
 *    connection is a plain socket in the epoll set (SO_RCVLOWAT makes the
 *    kernel wake us only once the record is complete), so idle or trickling
 *    peers cost what plain ones do;
 *  - glib-networking runs every handshake as a blocking job in GIO's shared
 *    GTask thread pool (ten threads, growing slowly), which also serves file
 *    writes and other asynchronous work.  At most MAX_TLS_HANDSHAKES run at
 *    once, at most MAX_TLS_HANDSHAKES_PER_HOST of them for one address, just
 *    below default priority; the rest wait in a queue holding nothing but their
 *    socket, so one address stalling hundreds of handshakes neither starves
 *    that pool nor keeps a worker from another address waiting.  A turn
 *    lasts at most TLS_TURN_USEC (a real client answers within a few round
 *    trips), and the newest queued connection goes first: under a flood
 *    the ones that waited longest are the likeliest to be the flood's, and
 *    they run into their deadline anyway;
 *  - the connection is created without a certificate database: the server
 *    never verifies client certificates, and with the default database
 *    glib-networking loads the whole system CA store into every connection
 *    (megabytes each; tests/bench/README.md);
 *  - the handshake deadline (bf_websocket_handshake()) covers the wait for
 *    the ClientHello, the queue and the TLS handshake.
 *
 * Bad input: a request that is not a WebSocket upgrade gets 400, missing
 * or wrong credentials 401 (429 while the listener throttles the peer's
 * address after repeated failures), a request head over 16 KB 431, and the socket
 * is closed.  On an open connection unmasked or reserved-bit frames,
 * unknown opcodes, fragmented or long control frames and broken
 * fragmentation close with 1002, and a message over the limit with 1009
 * as soon as its header says so (nothing is buffered for it).  Each says
 * what was wrong in the close frame and in the reason given to the
 * handler.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <libsoup/soup.h>

#include "bf-poller.h"
#include "bf-timer-queue.h"
#include "bf-util.h"
#include "bf-websocket.h"

#define READ_CHUNK (64 * 1024)
#define MAX_REQUEST_HEAD (16 * 1024)
#define MAX_PENDING_OUTPUT (8 * 1024 * 1024)
#define CLOSE_TIMEOUT_USEC (2 * G_USEC_PER_SEC)
#define MAX_TLS_RECORD (16384 + 2048)
#define MAX_TLS_HANDSHAKES 6
#define MAX_TLS_HANDSHAKES_PER_HOST 2
#define TLS_TURN_USEC (4 * G_USEC_PER_SEC)
/* One socket's frames are handled for at most about this long per wakeup;
 * whole frames left over wait in inbuf, in order, and the poller comes back
 * for them in its next dispatch (bf_poller_watch_set_pending()), after the
 * other sockets and whatever else the main loop has to do. */
#define SLICE_USEC 1000
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef enum {
  STATE_HANDSHAKE,
  STATE_OPEN,
  STATE_CLOSING,      /* our close frame (or HTTP error) is out; waiting for the peer */
  STATE_CLOSED,
} State;

struct _BfWebsocket
{
  GObject parent_instance;

  State state;
  char *peer;
  gsize max_message_size;

  /* plain: our socket in the epoll set */
  int fd;
  BfPollerWatch *watch;
  /* TLS */
  GTlsCertificate *certificate; /* until the handshake starts: waiting for the ClientHello or a turn */
  char *host;                   /* the peer's address without the port */
  gboolean tls_queued;          /* in tls_queue */
  gboolean tls_running;         /* counted in tls_running */
  GIOStream *stream;
  GSource *in_source;
  GSource *out_source;
  GCancellable *cancellable;

  GByteArray *inbuf;        /* an incomplete request head or frame; NULL when none */
  gsize head_scanned;       /* bytes of the request head already searched for its end */
  gboolean sliced;          /* inbuf starts with whole frames the last slice had no time for */
  GByteArray *message;      /* a fragmented message being joined; NULL when none */
  gboolean message_binary;
  GByteArray *outbuf;       /* what the kernel did not take yet; NULL when none */
  gboolean corked;          /* output only queued, see cork() */
  gboolean discard_input;   /* after a refused request or a protocol error */
  gboolean abort_pending;   /* output failed: report it from the timer */
  char *abort_reason;

  BfTimer *timer;           /* handshake deadline, close deadline, deferred abort */
  gboolean silent_timeout;  /* the handshake timed out before any byte of a request */
  gint64 deadline;          /* monotonic end of the handshake */

  BfWebsocketAuthFunc auth;
  gpointer auth_data;
  BfWebsocketHandshakeFunc handshake_done;
  gpointer handshake_data;

  const BfWebsocketHandler *handler;
  gpointer handler_data;
};

G_DEFINE_FINAL_TYPE (BfWebsocket, bf_websocket, G_TYPE_OBJECT)

/* Connections in STATE_CLOSING keep themselves alive here until the peer
 * answers or CLOSE_TIMEOUT_USEC passes, so whoever closed them can let go
 * at once. */
static GHashTable *lingering;
static guint8 read_buffer[READ_CHUNK];

/* TLS handshakes: those whose ClientHello is complete wait here (holding a
 * reference) for one of MAX_TLS_HANDSHAKES turns. */
static GQueue tls_queue = G_QUEUE_INIT;
static guint tls_running;
static GHashTable *tls_running_by_host;   /* host -> count (GUINT_TO_POINTER) */

static void tls_start_queued (void);

static void start_io (BfWebsocket *self);
static void teardown (BfWebsocket *self);
static void update_watch (BfWebsocket *self);

/* Transport ----------------------------------------------------------------- */

static gssize
transport_read (BfWebsocket  *self,
                guint8       *buf,
                gsize         len,
                GError      **error)
{
  if (self->stream != NULL)
    {
      GInputStream *in = g_io_stream_get_input_stream (self->stream);

      return g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (in), buf, len,
                                                       NULL, error);
    }
  return bf_fd_io (self->fd, FALSE, buf, len, error);
}

/* Returns how much was written; 0 when the kernel takes nothing now. */
static gssize
transport_writev (BfWebsocket    *self,
                  GOutputVector  *vectors,
                  guint           n_vectors,
                  GError        **error)
{
  if (self->stream != NULL)
    {
      GOutputStream *out = g_io_stream_get_output_stream (self->stream);
      gsize written = 0;
      GPollableReturn r;

      r = g_pollable_output_stream_writev_nonblocking (G_POLLABLE_OUTPUT_STREAM (out), vectors,
                                                       n_vectors, &written, NULL, error);
      if (r == G_POLLABLE_RETURN_FAILED)
        return -1;
      return r == G_POLLABLE_RETURN_OK ? (gssize) written : 0;
    }
  for (;;)
    {
      struct iovec iov[3];
      struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n_vectors };
      gssize n;
      int saved;

      g_assert (n_vectors <= G_N_ELEMENTS (iov));
      for (guint i = 0; i < n_vectors; i++)
        {
          iov[i].iov_base = (void *) vectors[i].buffer;
          iov[i].iov_len = vectors[i].size;
        }
      n = sendmsg (self->fd, &mh, MSG_NOSIGNAL);
      saved = errno;
      if (n >= 0)
        return n;
      if (saved == EINTR)
        continue;
      if (saved == EAGAIN || saved == EWOULDBLOCK)
        return 0;
      g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved), g_strerror (saved));
      return -1;
    }
}

/* Output ---------------------------------------------------------------------- */

static void
deferred_abort (BfWebsocket *self,
                const char  *reason);

/* Writes @vectors now if nothing is waiting, keeps the rest. */
static void
write_out (BfWebsocket   *self,
           GOutputVector *vectors,
           guint          n_vectors)
{
  g_autoptr(GError) error = NULL;
  gsize total = 0, done = 0;
  gssize n = 0;

  if (self->state == STATE_CLOSED || self->abort_pending)
    return;
  for (guint i = 0; i < n_vectors; i++)
    total += vectors[i].size;
  if (self->outbuf == NULL && self->corked)
    self->outbuf = g_byte_array_sized_new (total);
  else if (self->outbuf == NULL)
    {
      n = transport_writev (self, vectors, n_vectors, &error);
      if (n < 0)
        {
          g_autofree char *reason = g_strdup_printf ("connection error: %s", error->message);
          deferred_abort (self, reason);
          return;
        }
      done = n;
      if (done == total)
        return;
      self->outbuf = g_byte_array_sized_new (total - done);
      update_watch (self);
    }
  for (guint i = 0; i < n_vectors; i++)
    {
      gsize skip = MIN (done, vectors[i].size);

      done -= skip;
      g_byte_array_append (self->outbuf, (const guint8 *) vectors[i].buffer + skip, vectors[i].size - skip);
    }
  if (self->outbuf->len > MAX_PENDING_OUTPUT)
    deferred_abort (self, "the worker does not read what it is sent");
}

static void finish_close (BfWebsocket *self);

static void
flush (BfWebsocket *self)
{
  g_autoptr(GError) error = NULL;
  GOutputVector v;
  gssize n;

  if (self->outbuf == NULL)
    return;
  v.buffer = self->outbuf->data;
  v.size = self->outbuf->len;
  n = transport_writev (self, &v, 1, &error);
  if (n < 0)
    {
      g_autofree char *reason = g_strdup_printf ("connection error: %s", error->message);
      g_clear_pointer (&self->outbuf, g_byte_array_unref);
      deferred_abort (self, reason);
      return;
    }
  g_byte_array_remove_range (self->outbuf, 0, n);
  if (self->outbuf->len == 0)
    {
      g_clear_pointer (&self->outbuf, g_byte_array_unref);
      update_watch (self);
    }
}

/* Between cork() and uncork(), what is sent is only queued, then written
 * with one system call: the 101 response and the master's pipelined
 * attach requests (print, get_worker_info, set_worker_settings) leave in
 * one segment instead of four.  Plain TCP only; TLS buffers itself. */
static void
cork (BfWebsocket *self)
{
  self->corked = self->stream == NULL;
}

static void
uncork (BfWebsocket *self)
{
  if (!self->corked)
    return;
  self->corked = FALSE;
  if (self->outbuf == NULL || self->state == STATE_CLOSED || self->abort_pending)
    return;
  flush (self);
  if (self->state == STATE_CLOSING && self->outbuf == NULL)
    shutdown (self->fd, SHUT_WR);
  update_watch (self);
}

static void
send_frame (BfWebsocket  *self,
            guint8        opcode,
            const guint8 *payload,
            gsize         len)
{
  guint8 header[10];
  GOutputVector v[2];
  gsize hlen;

  header[0] = 0x80 | opcode;
  if (len < 126)
    {
      header[1] = len;
      hlen = 2;
    }
  else if (len <= G_MAXUINT16)
    {
      header[1] = 126;
      header[2] = len >> 8;
      header[3] = len & 0xff;
      hlen = 4;
    }
  else
    {
      header[1] = 127;
      for (int i = 0; i < 8; i++)
        header[2 + i] = ((guint64) len >> (56 - 8 * i)) & 0xff;
      hlen = 10;
    }
  v[0].buffer = header;
  v[0].size = hlen;
  v[1].buffer = payload;
  v[1].size = len;
  write_out (self, v, len ? 2 : 1);
}

static void
send_close_frame (BfWebsocket *self,
                  guint16      code,
                  const char  *reason)
{
  guint8 payload[125];
  gsize len = 0;
  g_autofree char *valid = reason ? g_utf8_make_valid (reason, -1) : NULL;

  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  if (valid != NULL)
    {
      /* A close frame's payload is at most 125 bytes: cut the reason on a
       * character boundary. */
      const char *end = valid;
      reason = valid;

      while (*end && end - reason < 123)
        {
          const char *next = g_utf8_next_char (end);
          if (next - reason > 123)
            break;
          end = next;
        }
      len = end - reason;
      memcpy (payload + 2, reason, len);
    }
  send_frame (self, 0x8, payload, len + 2);
}

/* Readiness ------------------------------------------------------------------- */

static void on_readable (BfWebsocket *self);

static void
fd_ready_cb (int           fd,
             GIOCondition  condition,
             gpointer      user_data)
{
  BfWebsocket *self = user_data;
  g_autoptr(BfWebsocket) hold = g_object_ref (self);

  if (condition & G_IO_OUT)
    {
      flush (self);
      if (self->state == STATE_CLOSING && self->outbuf == NULL)
        shutdown (self->fd, SHUT_WR);
    }
  if ((condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && self->state != STATE_CLOSED)
    on_readable (self);
}

static gboolean
stream_readable_cb (GObject  *stream,
                    gpointer  user_data)
{
  BfWebsocket *self = user_data;
  g_autoptr(BfWebsocket) hold = g_object_ref (self);

  /* set by on_readable() when it left whole frames for later */
  g_source_set_ready_time (self->in_source, -1);
  on_readable (self);
  return G_SOURCE_CONTINUE;
}

static gboolean
stream_writable_cb (GObject  *stream,
                    gpointer  user_data)
{
  BfWebsocket *self = user_data;
  g_autoptr(BfWebsocket) hold = g_object_ref (self);

  flush (self);
  return G_SOURCE_CONTINUE;
}

/* Watches for output only while some is waiting. */
static void
update_watch (BfWebsocket *self)
{
  if (self->state == STATE_CLOSED)
    return;
  if (self->stream == NULL)
    {
      if (self->watch != NULL)
        bf_poller_watch_update (self->watch, G_IO_IN | (self->outbuf ? G_IO_OUT : 0));
      return;
    }
  if (self->outbuf != NULL && self->out_source == NULL)
    {
      GOutputStream *out = g_io_stream_get_output_stream (self->stream);

      self->out_source = g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (out), NULL);
      g_source_set_callback (self->out_source, G_SOURCE_FUNC (stream_writable_cb), self, NULL);
      g_source_set_static_name (self->out_source, "[buildfleetd] worker TLS output");
      g_source_attach (self->out_source, NULL);
    }
  else if (self->outbuf == NULL && self->out_source != NULL)
    {
      g_source_destroy (self->out_source);
      g_clear_pointer (&self->out_source, g_source_unref);
    }
}

static void
start_io (BfWebsocket *self)
{
  if (self->stream == NULL)
    {
      self->watch = bf_poller_watch (self->fd, G_IO_IN | (self->outbuf ? G_IO_OUT : 0),
                                     fd_ready_cb, self);
      return;
    }
  self->in_source = g_pollable_input_stream_create_source (
    G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (self->stream)), NULL);
  g_source_set_callback (self->in_source, G_SOURCE_FUNC (stream_readable_cb), self, NULL);
  g_source_set_static_name (self->in_source, "[buildfleetd] worker TLS input");
  g_source_attach (self->in_source, NULL);
  update_watch (self);
}

/* Ending ------------------------------------------------------------------------ */

static void
stream_closed_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_io_stream_close_finish (G_IO_STREAM (source), result, NULL);
}

/* Releases the socket and everything but the object itself. */
static void
teardown (BfWebsocket *self)
{
  if (self->state == STATE_CLOSED)
    return;
  self->state = STATE_CLOSED;
  bf_timer_stop (&self->timer);
  bf_poller_unwatch (&self->watch);
  g_clear_object (&self->certificate);
  if (self->tls_queued)
    {
      self->tls_queued = FALSE;
      g_queue_remove (&tls_queue, self);
      g_object_unref (self);   /* the queue's; the caller holds another */
    }
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
  if (self->cancellable)
    g_cancellable_cancel (self->cancellable);
  if (self->stream != NULL)
    {
      /* close_notify if the peer still listens; nobody waits for it */
      g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL, stream_closed_cb, NULL);
      g_clear_object (&self->stream);
    }
  if (self->fd >= 0)
    {
      close (self->fd);
      self->fd = -1;
    }
  g_clear_pointer (&self->inbuf, g_byte_array_unref);
  self->sliced = FALSE;
  g_clear_pointer (&self->message, g_byte_array_unref);
  g_clear_pointer (&self->outbuf, g_byte_array_unref);
}

static void
finish_close (BfWebsocket *self)
{
  g_autoptr(BfWebsocket) hold = g_object_ref (self);

  teardown (self);
  if (lingering != NULL)
    g_hash_table_remove (lingering, self);
}

static gboolean
close_timeout_cb (gpointer data)
{
  finish_close (data);
  return G_SOURCE_REMOVE;
}

/* Our last words are out (or queued): wait for the peer to hang up, so
 * that closing does not reset the connection before it has read them. */
static void
start_closing (BfWebsocket *self)
{
  if (self->state != STATE_OPEN && self->state != STATE_HANDSHAKE)
    return;
  self->state = STATE_CLOSING;
  g_clear_pointer (&self->message, g_byte_array_unref);
  if (lingering == NULL)
    lingering = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
  g_hash_table_add (lingering, g_object_ref (self));
  if (self->stream == NULL && self->outbuf == NULL && self->fd >= 0)
    shutdown (self->fd, SHUT_WR);
  bf_timer_start (&self->timer, CLOSE_TIMEOUT_USEC, close_timeout_cb, self);
}

/* The connection is over for a reason the handler has not caused. */
static void
report_closed (BfWebsocket *self,
               const char  *reason)
{
  const BfWebsocketHandler *handler = g_steal_pointer (&self->handler);

  if (handler != NULL && handler->closed != NULL)
    handler->closed (self->handler_data, reason);
}

static void
handshake_failed (BfWebsocket *self)
{
  BfWebsocketHandshakeFunc done = g_steal_pointer (&self->handshake_done);

  if (done != NULL)
    done (self, NULL, self->handshake_data);
}

/* Lost without a closing handshake: EOF, a reset, an I/O error. */
static void
lost (BfWebsocket *self,
      const char  *reason)
{
  gboolean handshaking = self->state == STATE_HANDSHAKE;

  finish_close (self);
  if (handshaking)
    handshake_failed (self);
  else
    report_closed (self, reason);
}

static void
fail (BfWebsocket *self,
      guint16      code,
      const char  *reason)
{
  if (self->state != STATE_OPEN)
    return;
  send_close_frame (self, code, reason);
  start_closing (self);
  /* Nothing after a broken frame can be trusted to be framed. */
  self->discard_input = TRUE;
  report_closed (self, reason);
}

static gboolean
abort_cb (gpointer data)
{
  BfWebsocket *self = data;
  g_autoptr(BfWebsocket) hold = g_object_ref (self);
  g_autofree char *reason = g_steal_pointer (&self->abort_reason);

  lost (self, reason ? reason : "connection error");
  return G_SOURCE_REMOVE;
}

/* Output failed from inside a send: report it from the main loop, not
 * from under the caller's feet. */
static void
deferred_abort (BfWebsocket *self,
                const char  *reason)
{
  if (self->abort_pending)
    return;
  self->abort_pending = TRUE;
  g_clear_pointer (&self->outbuf, g_byte_array_unref);
  self->abort_reason = g_strdup (reason);
  bf_timer_start (&self->timer, 0, abort_cb, self);
}

/* Frames ------------------------------------------------------------------------ */

/**
 * bf_websocket_parse_frame:
 * @max_payload: the largest payload acceptable for a data frame
 *
 * Parses and checks the header of a client frame at @data.
 *
 * Returns: %BF_WS_FRAME_OK with @frame filled in (the payload may not all
 *   be there yet), %BF_WS_FRAME_INCOMPLETE when the header is not whole,
 *   or %BF_WS_FRAME_ERROR with the close code and a static explanation.
 */
BfWsFrameStatus
bf_websocket_parse_frame (const guint8  *data,
                          gsize          len,
                          guint64        max_payload,
                          BfWsFrame     *frame,
                          guint16       *close_code,
                          const char   **error)
{
  guint64 plen;
  gsize hlen = 2;

  if (len < 2)
    return BF_WS_FRAME_INCOMPLETE;
  frame->fin = (data[0] & 0x80) != 0;
  frame->opcode = data[0] & 0x0f;
  frame->header_len = 0;
  frame->payload_len = 0;
  plen = data[1] & 0x7f;

  /* What the first two bytes say is checked before waiting for more. */
  *close_code = BF_WEBSOCKET_CLOSE_PROTOCOL_ERROR;
  if (data[0] & 0x70)
    {
      *error = "WebSocket frame with reserved bits set (no extension was negotiated)";
      return BF_WS_FRAME_ERROR;
    }
  if (!(data[1] & 0x80))
    {
      *error = "unmasked WebSocket frame from the client";
      return BF_WS_FRAME_ERROR;
    }
  if (frame->opcode & 0x8)
    {
      if (frame->opcode > 0xA)
        {
          *error = "WebSocket frame with an unknown control opcode";
          return BF_WS_FRAME_ERROR;
        }
      if (!frame->fin || plen > 125)
        {
          *error = "fragmented or over-long WebSocket control frame";
          return BF_WS_FRAME_ERROR;
        }
    }
  else if (frame->opcode > 0x2)
    {
      *error = "WebSocket frame with an unknown data opcode";
      return BF_WS_FRAME_ERROR;
    }

  if (plen == 126)
    hlen = 4;
  else if (plen == 127)
    hlen = 10;
  if (len < hlen + 4)
    return BF_WS_FRAME_INCOMPLETE;
  if (plen == 126)
    plen = ((guint64) data[2] << 8) | data[3];
  else if (plen == 127)
    {
      plen = 0;
      for (int i = 0; i < 8; i++)
        plen = (plen << 8) | data[2 + i];
    }
  frame->header_len = hlen + 4;
  frame->payload_len = plen;
  if (!(frame->opcode & 0x8) && plen > max_payload)
    {
      *close_code = BF_WEBSOCKET_CLOSE_TOO_BIG;
      *error = "message larger than MaxMessageSize";
      return BF_WS_FRAME_ERROR;
    }
  return BF_WS_FRAME_OK;
}

static void
unmask (guint8       *payload,
        gsize         len,
        const guint8 *key)
{
  gsize i = 0;
  guint64 key8;

  /* eight bytes at a time: output throughput goes through here */
  for (int k = 0; k < 8; k++)
    ((guint8 *) &key8)[k] = key[k % 4];
  for (; i + 8 <= len; i += 8)
    {
      guint64 w;
      memcpy (&w, payload + i, 8);
      w ^= key8;
      memcpy (payload + i, &w, 8);
    }
  for (; i < len; i++)
    payload[i] ^= key[i % 4];
}

static void
deliver (BfWebsocket  *self,
         gboolean      binary,
         const guint8 *data,
         gsize         len)
{
  if (self->state == STATE_OPEN && self->handler != NULL && self->handler->message != NULL)
    self->handler->message (self->handler_data, binary, data, len);
}

static void
peer_closed (BfWebsocket  *self,
             const guint8 *payload,
             gsize         len)
{
  g_autofree char *reason = NULL;
  guint16 code = len >= 2 ? (payload[0] << 8) | payload[1] : 1005;
  g_autofree char *text = len > 2 ? g_utf8_make_valid ((const char *) payload + 2, len - 2) : NULL;

  if (self->state == STATE_CLOSING)
    {
      finish_close (self);
      return;
    }
  if (code == 1005 || code == 1006)
    reason = g_strdup ("connection lost");
  else if (text != NULL && *text)
    reason = g_strdup_printf ("connection closed by the worker (%u: %s)", code, text);
  else
    reason = g_strdup_printf ("connection closed by the worker (%u)", code);
  /* Echo the code, as RFC 6455 asks, then hang up: the handshake is done. */
  send_close_frame (self, len >= 2 && code != 1005 && code != 1006 ? code : 1000, NULL);
  start_closing (self);
  report_closed (self, reason);
}

/* Returns whether to go on with the next frame. */
static gboolean
handle_frame (BfWebsocket *self,
              BfWsFrame   *f,
              guint8      *payload)
{
  switch (f->opcode)
    {
    case 0x1:
    case 0x2:
      if (self->message != NULL)
        {
          fail (self, BF_WEBSOCKET_CLOSE_PROTOCOL_ERROR,
                "a WebSocket message began before the previous one was finished");
          return FALSE;
        }
      if (f->fin)
        deliver (self, f->opcode == 0x2, payload, f->payload_len);
      else
        {
          self->message = g_byte_array_sized_new (f->payload_len);
          self->message_binary = f->opcode == 0x2;
          g_byte_array_append (self->message, payload, f->payload_len);
        }
      break;

    case 0x0:
      if (self->message == NULL)
        {
          fail (self, BF_WEBSOCKET_CLOSE_PROTOCOL_ERROR,
                "WebSocket continuation frame without a message to continue");
          return FALSE;
        }
      g_byte_array_append (self->message, payload, f->payload_len);
      if (f->fin)
        {
          g_autoptr(GByteArray) whole = g_steal_pointer (&self->message);
          deliver (self, self->message_binary, whole->data, whole->len);
        }
      break;

    case 0x8:
      peer_closed (self, payload, f->payload_len);
      return FALSE;

    case 0x9:
      if (self->state == STATE_OPEN)
        send_frame (self, 0xA, payload, f->payload_len);
      break;

    case 0xA:
      if (self->state == STATE_OPEN && self->handler && self->handler->pong)
        self->handler->pong (self->handler_data);
      break;

    default:
      break;
    }
  return self->state == STATE_OPEN || self->state == STATE_CLOSING;
}

/* Returns how many bytes of @data were used.  Once @until has passed it
 * stops before the next whole frame and sets sliced. */
static gsize
process_frames (BfWebsocket *self,
                guint8      *data,
                gsize        len,
                gint64       until)
{
  gsize off = 0;

  while (off < len && (self->state == STATE_OPEN || self->state == STATE_CLOSING))
    {
      BfWsFrame f;
      guint16 code;
      const char *error = NULL;
      guint64 room = self->max_message_size - (self->message ? self->message->len : 0);
      BfWsFrameStatus st;

      st = bf_websocket_parse_frame (data + off, len - off, room, &f, &code, &error);
      if (st == BF_WS_FRAME_INCOMPLETE)
        break;
      if (st == BF_WS_FRAME_ERROR)
        {
          if (code == BF_WEBSOCKET_CLOSE_TOO_BIG)
            {
              g_autofree char *reason =
                g_strdup_printf ("message of %" G_GUINT64_FORMAT " bytes is over the limit of %"
                                 G_GSIZE_FORMAT " bytes (MaxMessageSize)",
                                 f.payload_len + (self->message ? self->message->len : 0),
                                 self->max_message_size);
              fail (self, code, reason);
            }
          else
            fail (self, code, error);
          return len;
        }
      if (len - off < f.header_len + f.payload_len)
        break;
      if (off > 0 && g_get_monotonic_time () >= until)
        {
          self->sliced = TRUE;
          break;
        }
      unmask (data + off + f.header_len, f.payload_len, data + off + f.header_len - 4);
      off += f.header_len + f.payload_len;
      if (!handle_frame (self, &f, data + off - f.payload_len))
        break;
    }
  return off;
}

/* The upgrade ------------------------------------------------------------------- */

static void
reject (BfWebsocket *self,
        guint        status,
        const char  *extra_headers,
        const char  *body)
{
  const char *phrase = status == 431 ? "Request Header Fields Too Large"
                     : status == 429 ? "Too Many Requests" : soup_status_get_phrase (status);
  g_autofree char *response =
    g_strdup_printf ("HTTP/1.1 %u %s\r\n"
                     "Server: buildfleetd/" PACKAGE_VERSION "\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "\r\n"
                     "%s\n",
                     status, phrase, strlen (body) + 1,
                     extra_headers ? extra_headers : "", body);
  GOutputVector v = { response, strlen (response) };

  g_debug ("WebSocket upgrade from %s refused (%u): %s", self->peer, status, body);
  write_out (self, &v, 1);
  start_closing (self);
  self->discard_input = TRUE;
  handshake_failed (self);
}

static gboolean
parse_basic (const char  *header,
             char       **username,
             char       **password)
{
  g_autofree guchar *decoded = NULL;
  gsize len = 0;
  const char *colon;

  if (header == NULL || g_ascii_strncasecmp (header, "Basic ", 6) != 0)
    return FALSE;
  header += 6;
  while (*header == ' ')
    header++;
  if (*header == '\0' || strlen (header) > 2048)
    return FALSE;
  decoded = g_base64_decode (header, &len);
  if (decoded == NULL || memchr (decoded, '\0', len) != NULL)
    return FALSE;
  colon = memchr (decoded, ':', len);
  if (colon == NULL)
    return FALSE;
  *username = g_strndup ((const char *) decoded, colon - (const char *) decoded);
  *password = g_strndup (colon + 1, len - (colon + 1 - (const char *) decoded));
  return TRUE;
}

static char *
accept_key (const char *key)
{
  g_autoptr(GChecksum) sha1 = g_checksum_new (G_CHECKSUM_SHA1);
  guint8 digest[20];
  gsize len = sizeof digest;

  g_checksum_update (sha1, (const guchar *) key, -1);
  g_checksum_update (sha1, (const guchar *) WS_GUID, -1);
  g_checksum_get_digest (sha1, digest, &len);
  return g_base64_encode (digest, len);
}

static gboolean
valid_key (const char *key)
{
  g_autofree guchar *raw = NULL;
  gsize len = 0;

  if (key == NULL || strlen (key) != 24)
    return FALSE;
  raw = g_base64_decode (key, &len);
  return len == 16;
}

/* @head is the request up to and including its blank line. */
static void
handle_request (BfWebsocket *self,
                const char  *head,
                gsize        len)
{
  g_autoptr(SoupMessageHeaders) headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_REQUEST);
  g_autofree char *method = NULL;
  g_autofree char *path = NULL;
  g_autofree char *username = NULL;
  g_autofree char *password = NULL;
  g_autofree char *accept = NULL;
  g_autofree char *response = NULL;
  g_autoptr(BfWebsocket) hold = NULL;
  SoupHTTPVersion version;
  const char *key;
  BfWebsocketAuthResult auth;
  guint retry_after = 0;
  BfWebsocketHandshakeFunc done;
  GOutputVector v;
  guint status;

  status = soup_headers_parse_request (head, len, headers, &method, &path, &version);
  if (status != SOUP_STATUS_OK)
    {
      reject (self, SOUP_STATUS_BAD_REQUEST, NULL, "Malformed HTTP request.");
      return;
    }
  if (!g_str_equal (method, "GET") ||
      !soup_message_headers_header_contains (headers, "Upgrade", "websocket") ||
      !soup_message_headers_header_contains (headers, "Connection", "upgrade"))
    {
      reject (self, SOUP_STATUS_BAD_REQUEST, NULL,
              "This is a buildfleet worker endpoint: it serves WebSocket upgrades from buildbot-worker.");
      return;
    }
  if (g_strcmp0 (soup_message_headers_get_one (headers, "Sec-WebSocket-Version"), "13") != 0)
    {
      reject (self, SOUP_STATUS_BAD_REQUEST, "Sec-WebSocket-Version: 13\r\n",
              "Unsupported WebSocket version: 13 is spoken here.");
      return;
    }
  key = soup_message_headers_get_one (headers, "Sec-WebSocket-Key");
  if (!valid_key (key))
    {
      reject (self, SOUP_STATUS_BAD_REQUEST, NULL, "Missing or malformed Sec-WebSocket-Key.");
      return;
    }
  if (!parse_basic (soup_message_headers_get_one (headers, "Authorization"), &username, &password))
    auth = BF_WEBSOCKET_AUTH_REFUSE;
  else
    auth = self->auth (username, password, self->peer, &retry_after, self->auth_data);
  if (password != NULL)
    explicit_bzero (password, strlen (password));
  if (auth == BF_WEBSOCKET_AUTH_THROTTLE)
    {
      g_autofree char *retry = g_strdup_printf ("Retry-After: %u\r\n", MAX (retry_after, 1));

      reject (self, 429, retry,
              "Too many failed logins from this address: try again later.");
      return;
    }
  if (auth != BF_WEBSOCKET_AUTH_ACCEPT)
    {
      reject (self, SOUP_STATUS_UNAUTHORIZED, "WWW-Authenticate: Basic realm=\"buildfleet\"\r\n",
              "Unauthorized: a configured worker name and its password are needed.");
      return;
    }

  accept = accept_key (key);
  response = g_strdup_printf ("HTTP/1.1 101 Switching Protocols\r\n"
                              "Server: buildfleetd/" PACKAGE_VERSION "\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: %s\r\n"
                              "\r\n", accept);
  v.buffer = response;
  v.size = strlen (response);
  hold = g_object_ref (self);
  cork (self);
  write_out (self, &v, 1);
  self->state = STATE_OPEN;
  bf_timer_stop (&self->timer);
  done = g_steal_pointer (&self->handshake_done);
  done (self, username, self->handshake_data);
  uncork (self);
}

/* Returns how many bytes of @data the request head used (0: not whole yet). */
static gsize
process_handshake (BfWebsocket *self,
                   guint8      *data,
                   gsize        len)
{
  const guint8 *end = NULL;

  /* Only what arrived since the last look: a head trickling in a byte at
   * a time must not cost a rescan per byte. */
  for (gsize i = MAX (3, self->head_scanned); i < len && end == NULL; i++)
    if (data[i] == '\n' && data[i - 1] == '\r' && data[i - 2] == '\n' && data[i - 3] == '\r')
      end = data + i + 1;
  self->head_scanned = len;
  if (end == NULL)
    {
      if (len > MAX_REQUEST_HEAD)
        reject (self, 431, NULL, "Request head over 16 KB.");
      return 0;
    }
  if (end - data > MAX_REQUEST_HEAD)
    {
      reject (self, 431, NULL, "Request head over 16 KB.");
      return len;
    }
  handle_request (self, (const char *) data, end - data);
  return end - data;
}

/* TLS before the handshake ------------------------------------------------------ */

static void
tls_release_turn (BfWebsocket *self)
{
  guint count;

  if (!self->tls_running)
    return;
  self->tls_running = FALSE;
  tls_running--;
  count = GPOINTER_TO_UINT (g_hash_table_lookup (tls_running_by_host, self->host));
  if (count <= 1)
    g_hash_table_remove (tls_running_by_host, self->host);
  else
    g_hash_table_insert (tls_running_by_host, g_strdup (self->host), GUINT_TO_POINTER (count - 1));
}

static gboolean handshake_timeout_cb (gpointer data);
static void tls_handshake_cb (GObject      *source,
                              GAsyncResult *result,
                              gpointer      user_data);

/* The ClientHello is complete and a turn is free: hand the socket to
 * glib-networking. */
static void
tls_start (BfWebsocket *self)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GTlsCertificate) certificate = g_steal_pointer (&self->certificate);
  GTlsBackend *backend = g_tls_backend_get_default ();
  guint count;

  socket = g_socket_new_from_fd (self->fd, &error);
  if (socket == NULL)
    {
      g_message ("Cannot serve a connection from %s: %s", self->peer, error->message);
      lost (self, "cannot serve the connection");
      return;
    }
  self->fd = -1;   /* the GSocket's now */
  connection = g_socket_connection_factory_create_connection (socket);
  /* No database: client certificates are never asked for, and the default
   * one loads the system's CA store into each connection. */
  self->stream = g_initable_new (g_tls_backend_get_server_connection_type (backend), NULL, &error,
                                 "base-io-stream", connection,
                                 "certificate", certificate,
                                 "database", NULL,
                                 "authentication-mode", G_TLS_AUTHENTICATION_NONE,
                                 NULL);
  if (self->stream == NULL)
    {
      g_message ("Cannot start TLS with %s: %s", self->peer, error->message);
      g_socket_close (socket, NULL);
      lost (self, "cannot start TLS");
      return;
    }
  self->tls_running = TRUE;
  tls_running++;
  if (tls_running_by_host == NULL)
    tls_running_by_host = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  count = GPOINTER_TO_UINT (g_hash_table_lookup (tls_running_by_host, self->host));
  g_hash_table_insert (tls_running_by_host, g_strdup (self->host), GUINT_TO_POINTER (count + 1));
  bf_timer_start (&self->timer,
                  CLAMP (self->deadline - g_get_monotonic_time (), 0, (gint64) TLS_TURN_USEC),
                  handshake_timeout_cb, self);
  /* Just below the default: whatever else waits for the shared pool (state
   * writes) goes first, yet the completion is not starved in a busy loop as
   * G_PRIORITY_LOW would be. */
  g_tls_connection_handshake_async (G_TLS_CONNECTION (self->stream), G_PRIORITY_DEFAULT + 1,
                                    self->cancellable, tls_handshake_cb, g_object_ref (self));
}

/* Starts queued handshakes while turns are free, newest first, skipping
 * addresses that already use their share. */
static void
tls_start_queued (void)
{
  GList *l = tls_queue.tail;

  while (l != NULL && tls_running < MAX_TLS_HANDSHAKES)
    {
      BfWebsocket *ws = l->data;
      GList *next = l->prev;

      if (tls_running_by_host == NULL ||
          GPOINTER_TO_UINT (g_hash_table_lookup (tls_running_by_host, ws->host)) < MAX_TLS_HANDSHAKES_PER_HOST)
        {
          g_queue_delete_link (&tls_queue, l);
          ws->tls_queued = FALSE;
          tls_start (ws);
          g_object_unref (ws);   /* the queue's */
          /* Starting can fail and close connections: look again. */
          next = tls_queue.tail;
        }
      l = next;
    }
}

/* Waits, in the epoll set, for the whole first TLS record. */
static void
tls_check_client_hello (BfWebsocket *self)
{
  gssize n;
  gsize need;
  int lowat;

  n = recv (self->fd, read_buffer, MAX_TLS_RECORD + 5, MSG_PEEK);
  if (n < 0)
    {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;
      lost (self, "connection lost");
      return;
    }
  if (n == 0)
    {
      lost (self, "connection lost");
      return;
    }
  if (read_buffer[0] != 0x16)
    {
      g_debug ("Connection from %s to a TLS endpoint does not start a TLS handshake", self->peer);
      lost (self, "not a TLS handshake");
      return;
    }
  need = 5;
  if (n >= 5)
    need += ((gsize) read_buffer[3] << 8) | read_buffer[4];
  if (need > MAX_TLS_RECORD + 5)
    {
      g_debug ("TLS handshake from %s: first record too long", self->peer);
      lost (self, "TLS record too long");
      return;
    }
  if ((gsize) n < need || n < 5)
    {
      /* Level-triggered epoll would wake us for every byte already there:
       * have the kernel wait until the record is whole. */
      lowat = MAX (need, (gsize) n + 1);
      setsockopt (self->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
      return;
    }
  lowat = 1;
  setsockopt (self->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  bf_poller_unwatch (&self->watch);
  self->tls_queued = TRUE;
  g_queue_push_tail (&tls_queue, g_object_ref (self));
  tls_start_queued ();
}

/* After the frames: keeps what they did not use of @data (the shared
 * read buffer or inbuf), and asks for the next slice if one ran out. */
static void
keep_rest (BfWebsocket *self,
           guint8      *data,
           gsize        len,
           gsize        used)
{
  if (self->discard_input)
    {
      g_clear_pointer (&self->inbuf, g_byte_array_unref);
      self->sliced = FALSE;
      return;
    }
  if (data == read_buffer)
    {
      if (used < len)
        {
          self->inbuf = g_byte_array_sized_new (len - used);
          g_byte_array_append (self->inbuf, data + used, len - used);
        }
    }
  else if (self->inbuf != NULL)
    {
      g_byte_array_remove_range (self->inbuf, 0, used);
      if (self->inbuf->len == 0)
        g_clear_pointer (&self->inbuf, g_byte_array_unref);
    }
  if (self->sliced)
    {
      if (self->watch != NULL)
        bf_poller_watch_set_pending (self->watch);
      else if (self->in_source != NULL)
        g_source_set_ready_time (self->in_source, 0);
    }
}

static void
on_readable (BfWebsocket *self)
{
  g_autoptr(GError) error = NULL;
  gint64 until = g_get_monotonic_time () + SLICE_USEC;
  guint8 *data;
  gsize len, used = 0;
  gssize n;

  if (self->state == STATE_CLOSED)
    return;
  if (self->certificate != NULL)
    {
      tls_check_client_hello (self);
      return;
    }
  if (self->sliced)
    {
      /* What the last slice left first, and nothing new until it is
       * handled: the peer waits in its TCP window, not in our memory. */
      self->sliced = FALSE;
      data = self->inbuf->data;
      len = self->inbuf->len;
      used = process_frames (self, data, len, until);
      if (self->state != STATE_CLOSED)
        keep_rest (self, data, len, used);
      return;
    }
  n = transport_read (self, read_buffer, sizeof read_buffer, &error);
  if (n < 0)
    {
      g_autofree char *reason = NULL;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return;
      if (self->state == STATE_CLOSING)
        {
          finish_close (self);
          return;
        }
      reason = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED) ||
               g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE)
               ? g_strdup ("connection lost")
               : g_strdup_printf ("connection error: %s", error->message);
      lost (self, reason);
      return;
    }
  if (n == 0)
    {
      if (self->state == STATE_CLOSING)
        finish_close (self);
      else
        lost (self, "connection lost");
      return;
    }

  if (self->discard_input)
    return;
  if (self->inbuf != NULL)
    {
      g_byte_array_append (self->inbuf, read_buffer, n);
      data = self->inbuf->data;
      len = self->inbuf->len;
    }
  else
    {
      data = read_buffer;
      len = n;
    }

  if (self->state == STATE_HANDSHAKE)
    used = process_handshake (self, data, len);
  if ((used > 0 || self->state != STATE_HANDSHAKE) && !self->discard_input)
    used += process_frames (self, data + used, len - used, until);

  if (self->state != STATE_CLOSED)
    keep_rest (self, data, len, used);
}

static gboolean
handshake_timeout_cb (gpointer data)
{
  BfWebsocket *self = data;
  g_autoptr(BfWebsocket) hold = g_object_ref (self);

  g_debug ("WebSocket upgrade from %s: no complete request in time", self->peer);
  self->silent_timeout = self->inbuf == NULL || self->inbuf->len == 0;
  lost (self, "handshake timeout");
  return G_SOURCE_REMOVE;
}

static void
tls_handshake_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(BfWebsocket) self = user_data;
  g_autoptr(GError) error = NULL;
  gboolean ok = g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error);

  /* The pool's thread is free again: let the next one in. */
  tls_release_turn (self);
  tls_start_queued ();
  if (!ok)
    {
      if (self->state != STATE_CLOSED)
        {
          g_debug ("TLS handshake with %s failed: %s", self->peer, error->message);
          lost (self, "TLS handshake failed");
        }
      return;
    }
  if (self->state == STATE_HANDSHAKE)
    start_io (self);
}

/* Object ------------------------------------------------------------------------ */

static void
bf_websocket_dispose (GObject *object)
{
  BfWebsocket *self = BF_WEBSOCKET (object);

  self->handler = NULL;
  self->handshake_done = NULL;
  teardown (self);
  G_OBJECT_CLASS (bf_websocket_parent_class)->dispose (object);
}

static void
bf_websocket_finalize (GObject *object)
{
  BfWebsocket *self = BF_WEBSOCKET (object);

  g_clear_object (&self->cancellable);
  g_clear_object (&self->certificate);
  g_free (self->host);
  g_free (self->abort_reason);
  g_free (self->peer);
  G_OBJECT_CLASS (bf_websocket_parent_class)->finalize (object);
}

static void
bf_websocket_class_init (BfWebsocketClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_websocket_dispose;
  object_class->finalize = bf_websocket_finalize;
}

static void
bf_websocket_init (BfWebsocket *self)
{
  self->fd = -1;
  self->max_message_size = 16 * 1024 * 1024;
}

/**
 * bf_websocket_new_for_fd:
 * @fd: (transfer full): a connected, non-blocking TCP socket
 * @peer: the peer's address, for messages
 */
BfWebsocket *
bf_websocket_new_for_fd (int         fd,
                         const char *peer)
{
  BfWebsocket *self = g_object_new (BF_TYPE_WEBSOCKET, NULL);

  self->fd = fd;
  self->peer = g_strdup (peer);
  return self;
}

/**
 * bf_websocket_new_for_stream:
 * @stream: a #GTlsServerConnection (or any stream with pollable halves)
 */
BfWebsocket *
bf_websocket_new_for_stream (GIOStream  *stream,
                             const char *peer)
{
  BfWebsocket *self = g_object_new (BF_TYPE_WEBSOCKET, NULL);

  self->stream = g_object_ref (stream);
  self->peer = g_strdup (peer);
  self->cancellable = g_cancellable_new ();
  return self;
}

static char *
host_of_peer (const char *peer)
{
  const char *colon;

  if (peer[0] == '[' && strchr (peer, ']') != NULL)
    return g_strndup (peer + 1, strchr (peer, ']') - peer - 1);
  colon = strrchr (peer, ':');
  return colon ? g_strndup (peer, colon - peer) : g_strdup (peer);
}

/**
 * bf_websocket_new_for_tls:
 * @fd: (transfer full): a connected, non-blocking TCP socket
 * @certificate: the server's certificate and key
 *
 * A TLS connection: the TLS handshake starts only once the ClientHello is
 * complete and a turn is free (see the top of this file).
 */
BfWebsocket *
bf_websocket_new_for_tls (int              fd,
                          const char      *peer,
                          GTlsCertificate *certificate)
{
  BfWebsocket *self = g_object_new (BF_TYPE_WEBSOCKET, NULL);

  self->fd = fd;
  self->peer = g_strdup (peer);
  self->host = host_of_peer (peer);
  self->certificate = g_object_ref (certificate);
  self->cancellable = g_cancellable_new ();
  return self;
}

/**
 * bf_websocket_handshake:
 * @timeout_usec: the whole upgrade (and TLS handshake) must be done by then
 * @auth: decides on the request's credentials
 * @done: called once: with the worker's name when the upgrade succeeded
 *   (set a handler then), with %NULL when it failed
 *
 * Serves the HTTP upgrade request.
 */
void
bf_websocket_handshake (BfWebsocket              *self,
                        guint64                   timeout_usec,
                        BfWebsocketAuthFunc       auth,
                        gpointer                  auth_data,
                        BfWebsocketHandshakeFunc  done,
                        gpointer                  done_data)
{
  g_return_if_fail (self->state == STATE_HANDSHAKE && self->auth == NULL);

  self->auth = auth;
  self->auth_data = auth_data;
  self->handshake_done = done;
  self->handshake_data = done_data;
  self->deadline = g_get_monotonic_time () + timeout_usec;
  bf_timer_start (&self->timer, timeout_usec, handshake_timeout_cb, self);
  if (self->stream != NULL && G_IS_TLS_CONNECTION (self->stream))
    g_tls_connection_handshake_async (G_TLS_CONNECTION (self->stream), G_PRIORITY_DEFAULT,
                                      self->cancellable, tls_handshake_cb, g_object_ref (self));
  else
    start_io (self);
}

/**
 * bf_websocket_set_handler:
 * @handler: (not nullable): static; called until the connection ends
 * @max_message_size: larger messages close the connection with 1009
 */
void
bf_websocket_set_handler (BfWebsocket              *self,
                          const BfWebsocketHandler *handler,
                          gpointer                  user_data,
                          gsize                     max_message_size)
{
  self->handler = handler;
  self->handler_data = user_data;
  self->max_message_size = max_message_size;
}

gboolean
bf_websocket_is_open (BfWebsocket *self)
{
  return self->state == STATE_OPEN;
}

/**
 * bf_websocket_handshake_was_silent:
 *
 * Returns: %TRUE when the upgrade timed out and the peer had sent no byte
 *   of a request (after TLS, if any): what a PB worker does, waiting for
 *   the master to speak first
 */
gboolean
bf_websocket_handshake_was_silent (BfWebsocket *self)
{
  return self->silent_timeout;
}

const char *
bf_websocket_get_peer (BfWebsocket *self)
{
  return self->peer;
}

void
bf_websocket_send_binary (BfWebsocket  *self,
                          const guint8 *data,
                          gsize         len)
{
  if (self->state == STATE_OPEN)
    send_frame (self, 0x2, data, len);
}

/**
 * bf_websocket_has_unread:
 *
 * Returns: %TRUE when the peer sent bytes the daemon has not read yet
 *   (see bf_fd_has_unread()), or whole frames wait for their slice
 */
gboolean
bf_websocket_has_unread (BfWebsocket *self)
{
  return self != NULL && (self->sliced || bf_fd_has_unread (self->fd));
}

void
bf_websocket_ping (BfWebsocket *self)
{
  if (self->state == STATE_OPEN)
    send_frame (self, 0x9, (const guint8 *) "bf", 2);
}

/**
 * bf_websocket_close:
 *
 * Sends a close frame with @code and @reason and ends the connection; the
 * handler (or during the handshake, the handshake callback) hears nothing
 * more.  The socket lingers (without the caller's
 * reference) until the peer answers, for at most two seconds.
 */
void
bf_websocket_close (BfWebsocket *self,
                    guint16      code,
                    const char  *reason)
{
  g_autoptr(BfWebsocket) hold = g_object_ref (self);

  self->handler = NULL;
  if (self->state == STATE_OPEN)
    {
      send_close_frame (self, code, reason);
      start_closing (self);
    }
  else if (self->state == STATE_HANDSHAKE)
    {
      /* Whoever closes it needs no word that the handshake failed. */
      self->handshake_done = NULL;
      lost (self, reason);
    }
}

/* At exit: let go of every lingering connection now. */
void
bf_websocket_close_all (void)
{
  g_autoptr(GHashTable) table = g_steal_pointer (&lingering);
  GHashTableIter iter;
  gpointer key;

  if (table == NULL)
    return;
  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    teardown (key);
}
