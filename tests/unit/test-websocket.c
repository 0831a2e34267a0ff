/* test-websocket.c: the daemon's WebSocket server side, over a socket pair
 *
 * One end is a BfWebsocket run by the default main context, the other is
 * this test playing the client byte by byte where it matters.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib.h>
#include <glib-unix.h>

#include "bf-poller.h"
#include "bf-timer-queue.h"
#include "bf-util.h"
#include "bf-websocket.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
/* RFC 6455 section 1.3's example answer for KEY */
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define AUTH "d29ya2VyLTE6c2VjcmV0"   /* worker-1:secret */

typedef struct {
  int client;                   /* the test's end */
  BfWebsocket *ws;
  char *username;               /* from the handshake */
  gboolean handshake_done;
  GPtrArray *messages;          /* GBytes, text ones prefixed with "T:" */
  guint pongs;
  char *closed;
  gsize max_message_size;
} Fixture;

static BfWebsocketAuthResult
auth_cb (const char *username,
         const char *password,
         const char *peer,
         guint      *retry_after,
         gpointer    user_data)
{
  return g_str_equal (username, "worker-1") && g_str_equal (password, "secret")
         ? BF_WEBSOCKET_AUTH_ACCEPT : BF_WEBSOCKET_AUTH_REFUSE;
}

static void
message_cb (gpointer      user_data,
            gboolean      binary,
            const guint8 *data,
            gsize         len)
{
  Fixture *f = user_data;
  GByteArray *copy = g_byte_array_new ();

  if (!binary)
    g_byte_array_append (copy, (const guint8 *) "T:", 2);
  g_byte_array_append (copy, data, len);
  g_ptr_array_add (f->messages, g_byte_array_free_to_bytes (copy));
}

static void
pong_cb (gpointer user_data)
{
  Fixture *f = user_data;
  f->pongs++;
}

static void
closed_cb (gpointer    user_data,
           const char *reason)
{
  Fixture *f = user_data;
  g_assert_null (f->closed);
  f->closed = g_strdup (reason);
}

static const BfWebsocketHandler handler = {
  .message = message_cb,
  .pong = pong_cb,
  .closed = closed_cb,
};

static void
handshake_cb (BfWebsocket *ws,
              const char  *username,
              gpointer     user_data)
{
  Fixture *f = user_data;

  f->handshake_done = TRUE;
  f->username = g_strdup (username);
  if (username != NULL)
    bf_websocket_set_handler (ws, &handler, f, f->max_message_size);
}

static void
setup (Fixture       *f,
       gconstpointer  data)
{
  int sv[2];

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
  f->client = sv[0];
  g_assert_no_errno (fcntl (f->client, F_SETFL, 0));   /* the test's end blocks */
  f->messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  f->max_message_size = 1024;
  f->ws = bf_websocket_new_for_fd (sv[1], "test-peer");
  bf_websocket_handshake (f->ws, 5 * G_USEC_PER_SEC, auth_cb, NULL, handshake_cb, f);
}

static void
teardown (Fixture       *f,
          gconstpointer  data)
{
  g_clear_object (&f->ws);
  bf_websocket_close_all ();
  close (f->client);
  g_ptr_array_unref (f->messages);
  g_free (f->username);
  g_free (f->closed);
}

static void
iterate (void)
{
  /* Everything here is local: a few iterations move it along. */
  for (int i = 0; i < 20; i++)
    g_main_context_iteration (NULL, FALSE);
}

static void
send_raw (Fixture    *f,
          const void *data,
          gsize       len)
{
  g_assert_cmpint (send (f->client, data, len, MSG_NOSIGNAL), ==, (gssize) len);
}

static gboolean
flag_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static gboolean
fd_flag_cb (int          fd,
            GIOCondition condition,
            gpointer     data)
{
  return flag_cb (data);
}

/* What the server sent: at least @min bytes and whatever else is there by
 * then, or everything until it shut its side (*@eof, if not NULL, says
 * which).  The server writes from this main context, so the wait runs it
 * until the socket is readable; neither within 10 s fails the test. */
static GByteArray *
recv_all_full (Fixture  *f,
               gsize     min,
               gboolean *eof)
{
  GByteArray *out = g_byte_array_new ();
  guint8 buf[65536];
  gboolean timed_out = FALSE;
  guint timeout_id = g_timeout_add_seconds (10, flag_cb, &timed_out);

  if (eof != NULL)
    *eof = FALSE;
  for (;;)
    {
      gboolean readable = FALSE;
      guint watch_id;
      gssize n;

      iterate ();
      n = recv (f->client, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0)
        {
          g_byte_array_append (out, buf, n);
          continue;
        }
      if (n == 0)
        {
          if (eof != NULL)
            *eof = TRUE;
          break;
        }
      g_assert_true (errno == EAGAIN || errno == EWOULDBLOCK);
      if (out->len >= min)
        break;
      if (timed_out)
        g_error ("the server sent %u bytes in 10 s, %" G_GSIZE_FORMAT " expected", out->len, min);
      watch_id = g_unix_fd_add (f->client, G_IO_IN | G_IO_HUP, fd_flag_cb, &readable);
      while (!readable && !timed_out)
        g_main_context_iteration (NULL, TRUE);
      g_clear_handle_id (&watch_id, g_source_remove);
    }
  g_clear_handle_id (&timeout_id, g_source_remove);
  return out;
}

static GByteArray *
recv_all (Fixture *f,
          gsize    min)
{
  return recv_all_full (f, min, NULL);
}

static void
send_frame_full (Fixture      *f,
                 guint8        first,
                 gboolean      masked,
                 const guint8 *payload,
                 gsize         len)
{
  g_autoptr(GByteArray) frame = g_byte_array_new ();
  guint8 h[2] = { first, (masked ? 0x80 : 0) };
  const guint8 mask[4] = { 0x12, 0x34, 0x56, 0x78 };

  if (len < 126)
    {
      h[1] |= len;
      g_byte_array_append (frame, h, 2);
    }
  else if (len < 65536)
    {
      guint8 ext[2] = { len >> 8, len & 0xff };
      h[1] |= 126;
      g_byte_array_append (frame, h, 2);
      g_byte_array_append (frame, ext, 2);
    }
  else
    {
      guint8 ext[8];
      for (int i = 0; i < 8; i++)
        ext[i] = ((guint64) len >> (56 - 8 * i)) & 0xff;
      h[1] |= 127;
      g_byte_array_append (frame, h, 2);
      g_byte_array_append (frame, ext, 8);
    }
  if (masked)
    g_byte_array_append (frame, mask, 4);
  for (gsize i = 0; i < len; i++)
    {
      guint8 b = payload[i] ^ (masked ? mask[i % 4] : 0);
      g_byte_array_append (frame, &b, 1);
    }
  send_raw (f, frame->data, frame->len);
}

static void
send_frame (Fixture    *f,
            guint8      first,
            const char *payload)
{
  send_frame_full (f, first, TRUE, (const guint8 *) payload, strlen (payload));
}

static void
upgrade (Fixture *f)
{
  const char *req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n"
                    "Authorization: Basic " AUTH "\r\n\r\n";
  g_autoptr(GByteArray) reply = NULL;
  g_autofree char *text = NULL;

  send_raw (f, req, strlen (req));
  reply = recv_all (f, 20);
  text = g_strndup ((const char *) reply->data, reply->len);
  g_assert_true (g_str_has_prefix (text, "HTTP/1.1 101 "));
  g_assert_nonnull (strstr (text, "Sec-WebSocket-Accept: " ACCEPT "\r\n"));
  g_assert_true (g_str_has_suffix (text, "\r\n\r\n"));
  g_assert_true (f->handshake_done);
  g_assert_cmpstr (f->username, ==, "worker-1");
}

/* Reads one server frame: opcode, payload. */
static guint8
read_frame (GByteArray  *in,
            gsize       *offset,
            GBytes     **payload)
{
  const guint8 *d = in->data + *offset;
  guint64 len;
  gsize h = 2;

  g_assert_cmpuint (in->len - *offset, >=, 2);
  g_assert_false (d[1] & 0x80);     /* servers do not mask */
  len = d[1] & 0x7f;
  if (len == 126)
    {
      len = (d[2] << 8) | d[3];
      h = 4;
    }
  else if (len == 127)
    {
      len = 0;
      for (int i = 0; i < 8; i++)
        len = (len << 8) | d[2 + i];
      h = 10;
    }
  g_assert_cmpuint (in->len - *offset, >=, h + len);
  *payload = g_bytes_new (d + h, len);
  *offset += h + len;
  return d[0] & 0x0f;
}

static void
assert_close_frame (Fixture    *f,
                    guint16     code,
                    const char *words)
{
  g_autoptr(GByteArray) in = recv_all (f, 2);
  g_autoptr(GBytes) payload = NULL;
  gsize off = 0;
  const guint8 *p;
  gsize len;

  g_assert_cmpuint (read_frame (in, &off, &payload), ==, 0x8);
  p = g_bytes_get_data (payload, &len);
  g_assert_cmpuint (len, >=, 2);
  g_assert_cmpuint ((p[0] << 8) | p[1], ==, code);
  if (words)
    {
      g_autofree char *reason = g_strndup ((const char *) p + 2, len - 2);
      g_assert_nonnull (strstr (reason, words));
    }
}

/* Tests -------------------------------------------------------------------------- */

static void
test_parse_frame (void)
{
  BfWsFrame fr;
  guint16 code = 0;
  const char *error = NULL;
  const guint8 small[] = { 0x82, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o' };
  const guint8 big16[] = { 0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4 };
  const guint8 big64[] = { 0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4 };
  const guint8 unmasked[] = { 0x82, 0x05 };
  const guint8 rsv[] = { 0xc2, 0x80 };
  const guint8 ctl_long[] = { 0x89, 0xfe };
  const guint8 ctl_frag[] = { 0x09, 0x80 };
  const guint8 bad_op[] = { 0x83, 0x80 };
  const guint8 bad_ctl[] = { 0x8b, 0x80 };

  g_assert_cmpint (bf_websocket_parse_frame (small, 1, 100, &fr, &code, &error), ==, BF_WS_FRAME_INCOMPLETE);
  g_assert_cmpint (bf_websocket_parse_frame (small, 5, 100, &fr, &code, &error), ==, BF_WS_FRAME_INCOMPLETE);
  g_assert_cmpint (bf_websocket_parse_frame (small, 6, 100, &fr, &code, &error), ==, BF_WS_FRAME_OK);
  g_assert_true (fr.fin);
  g_assert_cmpuint (fr.opcode, ==, 2);
  g_assert_cmpuint (fr.header_len, ==, 6);
  g_assert_cmpuint (fr.payload_len, ==, 5);

  g_assert_cmpint (bf_websocket_parse_frame (big16, sizeof big16, 1000, &fr, &code, &error), ==, BF_WS_FRAME_OK);
  g_assert_cmpuint (fr.payload_len, ==, 256);
  g_assert_cmpuint (fr.header_len, ==, 8);
  g_assert_cmpint (bf_websocket_parse_frame (big16, sizeof big16, 255, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpuint (code, ==, 1009);

  /* a 4 GiB declaration is refused from its header alone */
  g_assert_cmpint (bf_websocket_parse_frame (big64, sizeof big64, 1 << 20, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpuint (code, ==, 1009);
  g_assert_cmpuint (fr.payload_len, ==, G_GUINT64_CONSTANT (1) << 32);

  /* protocol errors are seen in the first two bytes */
  g_assert_cmpint (bf_websocket_parse_frame (unmasked, 2, 100, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpuint (code, ==, 1002);
  g_assert_nonnull (strstr (error, "unmasked"));
  g_assert_cmpint (bf_websocket_parse_frame (rsv, 2, 100, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_nonnull (strstr (error, "reserved"));
  g_assert_cmpint (bf_websocket_parse_frame (ctl_long, 2, 100, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpint (bf_websocket_parse_frame (ctl_frag, 2, 100, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpint (bf_websocket_parse_frame (bad_op, 2, 100, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpint (bf_websocket_parse_frame (bad_ctl, 2, 100, &fr, &code, &error), ==, BF_WS_FRAME_ERROR);
  g_assert_cmpuint (code, ==, 1002);
}

static void
test_upgrade_and_messages (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(GByteArray) in = NULL;
  g_autoptr(GBytes) payload = NULL;
  gsize off = 0;

  upgrade (f);

  send_frame (f, 0x82, "hello");
  send_frame (f, 0x81, "text");
  /* fragmented: "abc" + "def" + "ghi", a ping in between */
  send_frame (f, 0x02, "abc");
  send_frame (f, 0x00, "def");
  send_frame (f, 0x89, "p1");
  send_frame (f, 0x80, "ghi");
  send_frame (f, 0x8a, "");
  in = recv_all (f, 4);

  g_assert_cmpuint (f->messages->len, ==, 3);
  g_assert_cmpmem (g_bytes_get_data (f->messages->pdata[0], NULL), g_bytes_get_size (f->messages->pdata[0]), "hello", 5);
  g_assert_cmpmem (g_bytes_get_data (f->messages->pdata[1], NULL), g_bytes_get_size (f->messages->pdata[1]), "T:text", 6);
  g_assert_cmpmem (g_bytes_get_data (f->messages->pdata[2], NULL), g_bytes_get_size (f->messages->pdata[2]), "abcdefghi", 9);
  g_assert_cmpuint (f->pongs, ==, 1);
  /* the ping was answered with its payload */
  g_assert_cmpuint (read_frame (in, &off, &payload), ==, 0xA);
  g_assert_cmpmem (g_bytes_get_data (payload, NULL), g_bytes_get_size (payload), "p1", 2);

  /* server to client: small, 16-bit and 64-bit lengths */
  for (gsize len = 100; len <= 70000; len *= 26)
    {
      g_autofree guint8 *big = g_malloc (len);
      g_autoptr(GByteArray) got = NULL;
      g_autoptr(GBytes) p = NULL;
      gsize o = 0;

      memset (big, 'x', len);
      bf_websocket_send_binary (f->ws, big, len);
      got = recv_all (f, len + 2);
      g_assert_cmpuint (read_frame (got, &o, &p), ==, 0x2);
      g_assert_cmpmem (g_bytes_get_data (p, NULL), g_bytes_get_size (p), big, len);
    }
  g_assert_null (f->closed);
}

/* The keepalive verdict's guard (bf_fd_has_unread(), FIONREAD): a peer
 * whose frame waits in the socket, not read yet because the main loop did
 * not run, has spoken; once it is read, nothing waits.  The daemon-level
 * proof is tests/integration/test_unread_answer.py. */
static void
test_has_unread (Fixture       *f,
                 gconstpointer  data)
{
  upgrade (f);
  g_assert_false (bf_websocket_has_unread (f->ws));
  send_frame (f, 0x8a, "late");
  /* no iteration: the pong sits in the kernel's buffer */
  g_assert_true (bf_websocket_has_unread (f->ws));
  g_assert_cmpuint (f->pongs, ==, 0);
  while (f->pongs == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (bf_websocket_has_unread (f->ws));
  g_assert_false (bf_fd_has_unread (-1));
  g_assert_false (bf_websocket_has_unread (NULL));
}

static void
test_split_reads (Fixture       *f,
                  gconstpointer  data)
{
  const guint8 frame[] = { 0x82, 0x83, 9, 8, 7, 6, 'a' ^ 9, 'b' ^ 8, 'c' ^ 7 };

  upgrade (f);
  /* one byte per read, twice over */
  for (int round = 0; round < 2; round++)
    for (gsize i = 0; i < sizeof frame; i++)
      {
        send_raw (f, frame + i, 1);
        iterate ();
      }
  g_assert_cmpuint (f->messages->len, ==, 2);
  g_assert_cmpmem (g_bytes_get_data (f->messages->pdata[1], NULL), 3, "abc", 3);
}

static void
test_handshake_split (Fixture       *f,
                      gconstpointer  data)
{
  const char *req = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n"
                    "Authorization: Basic " AUTH "\r\n\r\n";
  g_autoptr(GByteArray) reply = NULL;

  /* The head a byte per read, its end split across reads too. */
  for (gsize i = 0; req[i]; i++)
    {
      send_raw (f, req + i, 1);
      iterate ();
      g_assert_true (f->handshake_done == (req[i + 1] == '\0'));
    }
  reply = recv_all (f, 20);
  g_assert_true (g_str_has_prefix ((const char *) reply->data, "HTTP/1.1 101 "));
  g_assert_cmpstr (f->username, ==, "worker-1");
}

static void
test_protocol_errors (Fixture       *f,
                      gconstpointer  data)
{
  const guint8 unmasked[] = { 0x82, 0x01, 'x' };

  upgrade (f);
  send_raw (f, unmasked, sizeof unmasked);
  assert_close_frame (f, 1002, "unmasked");
  g_assert_nonnull (strstr (f->closed, "unmasked"));
  g_assert_false (bf_websocket_is_open (f->ws));
}

static void
test_too_big (Fixture       *f,
              gconstpointer  data)
{
  /* Only the header is sent: the refusal must not wait for the payload. */
  const guint8 header[] = { 0x82, 0xfe, 0x10, 0x00, 1, 2, 3, 4 };

  upgrade (f);
  send_raw (f, header, sizeof header);
  assert_close_frame (f, 1009, "MaxMessageSize");
  g_assert_nonnull (strstr (f->closed, "4096 bytes"));
}

static void
test_fragments_too_big (Fixture       *f,
                        gconstpointer  data)
{
  g_autofree char *part = g_strnfill (600, 'y');

  upgrade (f);
  send_frame (f, 0x02, part);
  send_frame (f, 0x80, part);
  assert_close_frame (f, 1009, NULL);
  g_assert_cmpuint (f->messages->len, ==, 0);
}

static void
test_bad_fragmentation (Fixture       *f,
                        gconstpointer  data)
{
  upgrade (f);
  send_frame (f, 0x80, "lonely continuation");
  assert_close_frame (f, 1002, "continuation");
}

static void
test_peer_close (Fixture       *f,
                 gconstpointer  data)
{
  const char payload[] = "\x03\xe9going";
  g_autoptr(GByteArray) in = NULL;
  g_autoptr(GBytes) echo = NULL;
  gsize off = 0;

  upgrade (f);
  send_frame_full (f, 0x88, TRUE, (const guint8 *) payload, sizeof payload - 1);
  in = recv_all (f, 4);
  g_assert_cmpuint (read_frame (in, &off, &echo), ==, 0x8);
  g_assert_cmpuint (g_bytes_get_size (echo), ==, 2);
  g_assert_cmpstr (f->closed, ==, "connection closed by the worker (1001: going)");
}

static void
test_lost (Fixture       *f,
           gconstpointer  data)
{
  upgrade (f);
  shutdown (f->client, SHUT_WR);
  iterate ();
  g_assert_cmpstr (f->closed, ==, "connection lost");
}

static void
test_close_lingers (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GByteArray) in = NULL;
  gboolean eof;

  upgrade (f);
  bf_websocket_close (f->ws, 1008, "keepalive timeout");
  g_clear_object (&f->ws);            /* the caller lets go at once */
  assert_close_frame (f, 1008, "keepalive timeout");
  /* the server half-closed its side and waits for ours */
  in = recv_all_full (f, 1, &eof);
  g_assert_true (eof);
  g_assert_cmpuint (in->len, ==, 0);
  g_assert_null (f->closed);          /* no callback after our own close */
}

static void
test_backpressure (Fixture       *f,
                   gconstpointer  data)
{
  g_autofree guint8 *chunk = g_malloc0 (100000);
  gsize total = 0;
  guint8 buf[65536];

  upgrade (f);
  /* The client reads nothing: the kernel's buffers fill, the rest waits
   * in the connection, and all of it arrives once the client reads. */
  for (int i = 0; i < 40; i++)
    bf_websocket_send_binary (f->ws, chunk, 8);
  for (int i = 0; i < 20; i++)
    bf_websocket_send_binary (f->ws, chunk, 100000);
  iterate ();
  while (total < 40 * (2 + 8) + 20 * (10 + 100000))
    {
      gssize n = recv (f->client, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0)
        total += n;
      else
        {
          g_assert_true (n < 0 && errno == EAGAIN);
          g_main_context_iteration (NULL, TRUE);
        }
    }
  g_assert_cmpuint (total, ==, 40 * (2 + 8) + 20 * (10 + 100000));
  g_assert_null (f->closed);
}

static void
test_output_bound (Fixture       *f,
                   gconstpointer  data)
{
  g_autofree guint8 *chunk = g_malloc0 (1024 * 1024);
  gint64 deadline;

  upgrade (f);
  /* A worker that reads nothing is dropped once 8 MB wait for it, from the
   * main loop rather than from under the sender. */
  for (int i = 0; i < 10; i++)
    bf_websocket_send_binary (f->ws, chunk, 1024 * 1024);
  g_assert_null (f->closed);
  deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (f->closed == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpstr (f->closed, ==, "the worker does not read what it is sent");
  g_assert_false (bf_websocket_is_open (f->ws));
}

static void
assert_refused (Fixture    *f,
                const char *request,
                const char *status_line)
{
  g_autoptr(GByteArray) reply = NULL;
  g_autofree char *text = NULL;

  send_raw (f, request, strlen (request));
  reply = recv_all (f, 12);
  text = g_strndup ((const char *) reply->data, reply->len);
  g_assert_true (g_str_has_prefix (text, status_line));
  g_assert_true (f->handshake_done);
  g_assert_null (f->username);
}

static void
test_refused_no_auth (Fixture       *f,
                      gconstpointer  data)
{
  assert_refused (f, "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                  "HTTP/1.1 401 ");
}

static void
test_refused_wrong_password (Fixture       *f,
                             gconstpointer  data)
{
  /* worker-1:wrong */
  assert_refused (f, "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n"
                     "Authorization: Basic d29ya2VyLTE6d3Jvbmc=\r\n\r\n",
                  "HTTP/1.1 401 ");
}

static void
test_refused_not_websocket (Fixture       *f,
                            gconstpointer  data)
{
  assert_refused (f, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
}

static void
test_refused_version (Fixture       *f,
                      gconstpointer  data)
{
  assert_refused (f, "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n"
                     "Authorization: Basic " AUTH "\r\n\r\n",
                  "HTTP/1.1 400 ");
}

static void
test_refused_garbage (Fixture       *f,
                      gconstpointer  data)
{
  assert_refused (f, "\x16\x03\x01 this is not HTTP\r\n\r\n", "HTTP/1.1 400 ");
}

static void
test_refused_huge_head (Fixture       *f,
                        gconstpointer  data)
{
  g_autofree char *huge = g_strnfill (20000, 'h');
  g_autofree char *req = g_strdup_printf ("GET / HTTP/1.1\r\nX-Big: %s", huge);

  assert_refused (f, req, "HTTP/1.1 431 ");
}

static void
test_handshake_timeout (void)
{
  int sv[2];
  Fixture f = { 0 };
  gint64 deadline;

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
  f.ws = bf_websocket_new_for_fd (sv[1], "slow-peer");
  bf_websocket_handshake (f.ws, 100 * 1000, auth_cb, NULL, handshake_cb, &f);
  send (sv[0], "GET / HT", 8, 0);
  deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (!f.handshake_done && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (f.handshake_done);
  g_assert_null (f.username);
  g_clear_object (&f.ws);
  close (sv[0]);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/websocket/parse-frame", test_parse_frame);
#define ADD(path, fn) g_test_add ("/websocket/" path, Fixture, NULL, setup, fn, teardown)
  ADD ("upgrade-and-messages", test_upgrade_and_messages);
  ADD ("split-reads", test_split_reads);
  ADD ("has-unread", test_has_unread);
  ADD ("handshake-split", test_handshake_split);
  ADD ("protocol-errors", test_protocol_errors);
  ADD ("too-big", test_too_big);
  ADD ("fragments-too-big", test_fragments_too_big);
  ADD ("bad-fragmentation", test_bad_fragmentation);
  ADD ("peer-close", test_peer_close);
  ADD ("lost", test_lost);
  ADD ("close-lingers", test_close_lingers);
  ADD ("backpressure", test_backpressure);
  ADD ("output-bound", test_output_bound);
  ADD ("refused/no-auth", test_refused_no_auth);
  ADD ("refused/wrong-password", test_refused_wrong_password);
  ADD ("refused/not-websocket", test_refused_not_websocket);
  ADD ("refused/version", test_refused_version);
  ADD ("refused/garbage", test_refused_garbage);
  ADD ("refused/huge-head", test_refused_huge_head);
#undef ADD
  g_test_add_func ("/websocket/handshake-timeout", test_handshake_timeout);

  return g_test_run ();
}
