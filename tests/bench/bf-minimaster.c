/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bf-minimaster: the smallest master that speaks Buildbot's msgpack protocol,
 * to measure bf-loadgen itself (how many workers one bf-loadgen process can
 * hold, how fast it attaches them, whether its silent and kill modes look
 * like they should) without Buildbot's ceiling in the way.  It is a test
 * double, not a reference: buildbot-peer is the reference.
 *
 * Listens on 127.0.0.1:PORT with a deep backlog, accepts any name/password,
 * runs Buildbot's attach sequence per connection (print "attached",
 * get_worker_info, set_worker_settings, one request at a time) and then
 * optionally: an application keepalive every --keepalive seconds that drops
 * workers which left the previous one unanswered (to detect silent workers),
 * one shell command per worker (--shell) whose output it counts, and a
 * `shutdown` request to every worker (--shutdown).
 *
 * One JSON line per event on stdout: "peer-attached" when --expect workers
 * are attached, "peer-detached" when the last one left after that,
 * "peer-summary" at exit.  Runs at most --duration seconds.
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <glib.h>
#include <glib-unix.h>
#include <gio/gio.h>
#include <libsoup/soup.h>
#include <msgpack.h>

typedef struct _Master Master;

typedef enum {
  REQ_PRINT,
  REQ_INFO,
  REQ_SETTINGS,
  REQ_KEEPALIVE,
  REQ_COMMAND,
  REQ_SHUTDOWN,
} RequestKind;

typedef struct {
  Master *master;
  SoupWebsocketConnection *ws;
  char *name;
  guint32 next_seq;
  GHashTable *pending;      /* seq + 1 -> RequestKind + 1 */
  gboolean attached;
  gboolean keepalive_pending;
  gboolean dropped;
} Conn;

struct _Master {
  int port;
  int expect;
  gdouble duration;
  gdouble keepalive;
  gboolean shell;
  gboolean shutdown;
  gint64 shell_lines;

  GMainLoop *loop;
  SoupServer *server;
  GHashTable *conns;        /* Conn* set */
  msgpack_sbuffer sbuf;
  msgpack_packer pk;
  guint keepalive_id;

  gint64 t_first;
  gboolean reported_attached;
  guint n_attached;
  guint64 attached_total;
  guint64 detached_total;
  guint64 dropped_silent;
  guint64 commands_started;
  guint64 commands_completed;
  guint64 updates;
  guint64 output_bytes;
  guint64 errors;
};

static void
pk_str (msgpack_packer *pk, const char *s)
{
  size_t n = strlen (s);

  msgpack_pack_str (pk, n);
  msgpack_pack_str_body (pk, s, n);
}

static const msgpack_object *
mp_get (const msgpack_object *map, const char *key)
{
  size_t n = strlen (key);

  if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
    return NULL;
  for (uint32_t i = 0; i < map->via.map.size; i++)
    {
      const msgpack_object *k = &map->via.map.ptr[i].key;

      if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
          memcmp (k->via.str.ptr, key, n) == 0)
        return &map->via.map.ptr[i].val;
    }
  return NULL;
}

static gboolean
mp_is (const msgpack_object *o, const char *s)
{
  return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen (s) &&
         memcmp (o->via.str.ptr, s, o->via.str.size) == 0;
}

static void
json_line (Master *m, const char *phase, const char *extra)
{
  gdouble seconds = m->t_first ? (g_get_monotonic_time () - m->t_first) / (gdouble) G_USEC_PER_SEC : 0;
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  printf ("{\"phase\":\"%s\",\"attached\":%u,\"seconds\":%s,\"attached_total\":%" G_GUINT64_FORMAT
          ",\"detached_total\":%" G_GUINT64_FORMAT ",\"dropped_silent\":%" G_GUINT64_FORMAT
          ",\"commands_completed\":%" G_GUINT64_FORMAT ",\"updates\":%" G_GUINT64_FORMAT
          ",\"output_bytes\":%" G_GUINT64_FORMAT ",\"errors\":%" G_GUINT64_FORMAT
          ",\"realtime_usec\":%" G_GINT64_FORMAT "%s}\n",
          phase, m->n_attached, g_ascii_formatd (buf, sizeof buf, "%.3f", seconds),
          m->attached_total, m->detached_total, m->dropped_silent, m->commands_completed,
          m->updates, m->output_bytes, m->errors, g_get_real_time (), extra ? extra : "");
  fflush (stdout);
}

static void
conn_send (Conn *c)
{
  Master *m = c->master;

  if (soup_websocket_connection_get_state (c->ws) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_send_binary (c->ws, m->sbuf.data, m->sbuf.size);
  msgpack_sbuffer_clear (&m->sbuf);
}

/* {op, <fields>, seq_number}: the caller packs `n_fields` key/value pairs
 * between head and tail. */
static void
request_head (Conn *c, const char *op, guint n_fields)
{
  msgpack_sbuffer_clear (&c->master->sbuf);
  msgpack_pack_map (&c->master->pk, n_fields + 2);
  pk_str (&c->master->pk, "op");
  pk_str (&c->master->pk, op);
}

static void
request_tail (Conn *c, RequestKind kind)
{
  guint32 seq = c->next_seq++;

  pk_str (&c->master->pk, "seq_number");
  msgpack_pack_uint32 (&c->master->pk, seq);
  g_hash_table_insert (c->pending, GUINT_TO_POINTER (seq + 1), GUINT_TO_POINTER (kind + 1));
  conn_send (c);
}

static void
respond_nil (Conn *c, const msgpack_object *seq)
{
  msgpack_packer *pk = &c->master->pk;

  msgpack_sbuffer_clear (&c->master->sbuf);
  msgpack_pack_map (pk, 3);
  pk_str (pk, "op");
  pk_str (pk, "response");
  pk_str (pk, "seq_number");
  msgpack_pack_object (pk, *seq);
  pk_str (pk, "result");
  msgpack_pack_nil (pk);
  conn_send (c);
}

static void
conn_start_shell (Conn *c)
{
  msgpack_packer *pk = &c->master->pk;
  g_autofree char *id = g_strdup_printf ("%s-1", c->name);

  request_head (c, "start_command", 4);
  pk_str (pk, "builder_name");
  pk_str (pk, "bench");
  pk_str (pk, "command_id");
  pk_str (pk, id);
  pk_str (pk, "command_name");
  pk_str (pk, "shell");
  pk_str (pk, "args");
  msgpack_pack_map (pk, 4);
  pk_str (pk, "workdir");
  pk_str (pk, "/tmp/bench");
  pk_str (pk, "command");
  msgpack_pack_array (pk, 1);
  pk_str (pk, "true");
  pk_str (pk, "timeout");
  msgpack_pack_int (pk, 1200);
  pk_str (pk, "logEnviron");
  msgpack_pack_false (pk);
  request_tail (c, REQ_COMMAND);
  c->master->commands_started++;
}

static void
conn_on_response (Conn *c, const msgpack_object *msg)
{
  Master *m = c->master;
  const msgpack_object *seq = mp_get (msg, "seq_number");
  gpointer kind_p;
  RequestKind kind;

  if (seq == NULL || seq->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      !g_hash_table_steal_extended (c->pending, GUINT_TO_POINTER ((guint32) seq->via.u64 + 1),
                                    NULL, &kind_p))
    {
      m->errors++;
      return;
    }
  if (mp_get (msg, "is_exception") != NULL)
    m->errors++;
  kind = GPOINTER_TO_UINT (kind_p) - 1;
  switch (kind)
    {
    case REQ_PRINT:
      request_head (c, "get_worker_info", 0);
      request_tail (c, REQ_INFO);
      break;

    case REQ_INFO:
      request_head (c, "set_worker_settings", 1);
      pk_str (&m->pk, "args");
      msgpack_pack_map (&m->pk, 4);
      pk_str (&m->pk, "newline_re");
      pk_str (&m->pk, "(\\r\\n|\\r(?=.)|\\n)");
      pk_str (&m->pk, "max_line_length");
      msgpack_pack_int (&m->pk, 4096);
      pk_str (&m->pk, "buffer_timeout");
      msgpack_pack_int (&m->pk, 5);
      pk_str (&m->pk, "buffer_size");
      msgpack_pack_int (&m->pk, 65536);
      request_tail (c, REQ_SETTINGS);
      break;

    case REQ_SETTINGS:
      c->attached = TRUE;
      m->n_attached++;
      m->attached_total++;
      if (!m->reported_attached && m->expect > 0 && m->n_attached >= (guint) m->expect)
        {
          m->reported_attached = TRUE;
          json_line (m, "peer-attached", NULL);
        }
      if (m->shell)
        conn_start_shell (c);
      if (m->shutdown)
        {
          request_head (c, "shutdown", 0);
          request_tail (c, REQ_SHUTDOWN);
        }
      break;

    case REQ_KEEPALIVE:
      c->keepalive_pending = FALSE;
      break;

    case REQ_COMMAND:
    case REQ_SHUTDOWN:
      break;
    }
}

static void
on_message (SoupWebsocketConnection *ws, gint type, GBytes *message, gpointer user_data)
{
  Conn *c = user_data;
  Master *m = c->master;
  gsize len;
  const char *data = g_bytes_get_data (message, &len);
  msgpack_unpacked u;
  size_t off = 0;
  const msgpack_object *op, *seq;

  msgpack_unpacked_init (&u);
  if (type != SOUP_WEBSOCKET_DATA_BINARY ||
      msgpack_unpack_next (&u, data, len, &off) != MSGPACK_UNPACK_SUCCESS)
    {
      m->errors++;
      msgpack_unpacked_destroy (&u);
      return;
    }
  op = mp_get (&u.data, "op");
  seq = mp_get (&u.data, "seq_number");
  if (mp_is (op, "response"))
    conn_on_response (c, &u.data);
  else if (seq != NULL && (mp_is (op, "update") || mp_is (op, "complete")))
    {
      const msgpack_object *args = mp_get (&u.data, "args");

      if (mp_is (op, "complete"))
        m->commands_completed++;
      else
        {
          m->updates++;
          for (uint32_t i = 0; args != NULL && args->type == MSGPACK_OBJECT_ARRAY && i < args->via.array.size; i++)
            {
              const msgpack_object *kv = &args->via.array.ptr[i];

              if (kv->type == MSGPACK_OBJECT_ARRAY && kv->via.array.size == 2 &&
                  mp_is (&kv->via.array.ptr[0], "stdout") &&
                  kv->via.array.ptr[1].type == MSGPACK_OBJECT_ARRAY &&
                  kv->via.array.ptr[1].via.array.size == 3 &&
                  kv->via.array.ptr[1].via.array.ptr[0].type == MSGPACK_OBJECT_STR)
                m->output_bytes += kv->via.array.ptr[1].via.array.ptr[0].via.str.size;
            }
        }
      respond_nil (c, seq);
    }
  else
    m->errors++;
  msgpack_unpacked_destroy (&u);
}

static void
conn_free (Conn *c)
{
  g_signal_handlers_disconnect_by_data (c->ws, c);
  g_object_unref (c->ws);
  g_hash_table_unref (c->pending);
  g_free (c->name);
  g_free (c);
}

static void
on_closed (SoupWebsocketConnection *ws, gpointer user_data)
{
  Conn *c = user_data;
  Master *m = c->master;

  if (c->attached)
    {
      m->n_attached--;
      m->detached_total++;
    }
  g_hash_table_remove (m->conns, c);
  conn_free (c);
  if (m->reported_attached && m->n_attached == 0 && g_hash_table_size (m->conns) == 0)
    json_line (m, "peer-detached", NULL);
}

static char *
basic_auth_user (SoupServerMessage *msg)
{
  const char *value = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                    "Authorization");
  g_autofree guchar *decoded = NULL;
  gsize len = 0;
  const char *colon;

  if (value == NULL || !g_str_has_prefix (value, "Basic "))
    return NULL;
  decoded = g_base64_decode (value + 6, &len);
  colon = memchr (decoded, ':', len);
  if (colon == NULL)
    return NULL;
  return g_strndup ((const char *) decoded, colon - (const char *) decoded);
}

static void
on_websocket (SoupServer              *server,
              SoupServerMessage       *msg,
              const char              *path,
              SoupWebsocketConnection *ws,
              gpointer                 user_data)
{
  Master *m = user_data;
  Conn *c = g_new0 (Conn, 1);

  if (m->t_first == 0)
    m->t_first = g_get_monotonic_time ();
  c->master = m;
  c->ws = g_object_ref (ws);
  c->name = basic_auth_user (msg);
  if (c->name == NULL)
    c->name = g_strdup ("?");
  c->pending = g_hash_table_new (NULL, NULL);
  soup_websocket_connection_set_max_incoming_payload_size (ws, 0);
  g_signal_connect (ws, "message", G_CALLBACK (on_message), c);
  g_signal_connect (ws, "closed", G_CALLBACK (on_closed), c);
  g_hash_table_add (m->conns, c);

  request_head (c, "print", 1);
  pk_str (&m->pk, "message");
  pk_str (&m->pk, "attached");
  request_tail (c, REQ_PRINT);
}

static gboolean
on_keepalive (gpointer data)
{
  Master *m = data;
  g_autoptr(GPtrArray) drop = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, m->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      Conn *c = key;

      if (!c->attached || c->dropped)
        continue;
      if (c->keepalive_pending)
        {
          g_ptr_array_add (drop, c);
          continue;
        }
      c->keepalive_pending = TRUE;
      request_head (c, "keepalive", 0);
      request_tail (c, REQ_KEEPALIVE);
    }
  for (guint i = 0; i < drop->len; i++)
    {
      Conn *c = g_ptr_array_index (drop, i);
      GIOStream *stream = soup_websocket_connection_get_io_stream (c->ws);

      /* no answer for a whole interval: drop it without a close handshake */
      c->dropped = TRUE;
      m->dropped_silent++;
      g_io_stream_close_async (stream, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
    }
  if (drop->len > 0)
    {
      g_autofree char *extra = g_strdup_printf (",\"dropped_now\":%u", drop->len);
      json_line (m, "peer-dropped-silent", extra);
    }
  return G_SOURCE_CONTINUE;
}

/* SoupServer's own listener accepts one connection per main loop iteration;
 * with thousands of sockets in the loop an iteration costs milliseconds, so
 * accept everything pending each time the listening socket is readable. */
static gboolean
on_listen_ready (GSocket *listener, GIOCondition condition, gpointer data)
{
  Master *m = data;

  for (guint i = 0; i < 1024; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GSocket) sock = g_socket_accept (listener, NULL, &error);
      g_autoptr(GSocketConnection) conn = NULL;
      g_autoptr(GSocketAddress) local = NULL;
      g_autoptr(GSocketAddress) remote = NULL;

      if (sock == NULL)
        {
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            m->errors++;
          break;
        }
      conn = g_socket_connection_factory_create_connection (sock);
      local = g_socket_get_local_address (sock, NULL);
      remote = g_socket_get_remote_address (sock, NULL);
      if (local == NULL || remote == NULL ||
          !soup_server_accept_iostream (m->server, G_IO_STREAM (conn), local, remote, &error))
        m->errors++;
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_quit (gpointer data)
{
  g_main_loop_quit (((Master *) data)->loop);
  return G_SOURCE_REMOVE;
}

static void
count_warning (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  ((Master *) data)->errors++;
}

static gboolean
on_signal (gpointer data)
{
  g_main_loop_quit (((Master *) data)->loop);
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  Master m = { .port = 19990, .duration = 300, .shell_lines = 0 };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) sock = NULL;
  g_autoptr(GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) addr = NULL;
  g_autoptr(GSource) listen_source = NULL;
  struct rlimit rl;
  const GOptionEntry entries[] = {
    { "port", 'p', 0, G_OPTION_ARG_INT, &m.port, "Port on 127.0.0.1 (default 19990)", "PORT" },
    { "expect", 'n', 0, G_OPTION_ARG_INT, &m.expect, "Report when this many workers are attached", "N" },
    { "duration", 0, 0, G_OPTION_ARG_DOUBLE, &m.duration, "Exit after this many seconds (default 300)", "SECONDS" },
    { "keepalive", 0, 0, G_OPTION_ARG_DOUBLE, &m.keepalive, "Keepalive interval; workers that miss one are dropped (default 0: off)", "SECONDS" },
    { "shell", 0, 0, G_OPTION_ARG_NONE, &m.shell, "Start one shell command on every attached worker", NULL },
    { "shutdown", 0, 0, G_OPTION_ARG_NONE, &m.shutdown, "Ask every attached worker to shut down", NULL },
    { NULL }
  };

  signal (SIGPIPE, SIG_IGN);
  /* "could not get remote address" for peers that left mid-handshake */
  g_log_set_handler ("libsoup", G_LOG_LEVEL_WARNING, count_warning, &m);
  context = g_option_context_new ("- minimal msgpack master to test bf-loadgen");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bf-minimaster: %s\n", error->message);
      return 2;
    }
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }

  msgpack_sbuffer_init (&m.sbuf);
  msgpack_packer_init (&m.pk, &m.sbuf, msgpack_sbuffer_write);
  m.loop = g_main_loop_new (NULL, FALSE);
  m.conns = g_hash_table_new (NULL, NULL);

  /* our own socket: GSocket's default backlog of 10 would drop SYNs */
  sock = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  addr = g_inet_socket_address_new (lo, m.port);
  if (sock != NULL)
    g_socket_set_listen_backlog (sock, 4096);
  if (sock == NULL || !g_socket_bind (sock, addr, TRUE, &error) || !g_socket_listen (sock, &error))
    {
      g_printerr ("bf-minimaster: 127.0.0.1:%d: %s\n", m.port, error->message);
      return 1;
    }
  m.server = soup_server_new ("server-header", "bf-minimaster", NULL);
  soup_server_add_websocket_handler (m.server, NULL, NULL, NULL, on_websocket, &m, NULL);
  g_socket_set_blocking (sock, FALSE);
  listen_source = g_socket_create_source (sock, G_IO_IN, NULL);
  g_source_set_callback (listen_source, G_SOURCE_FUNC (on_listen_ready), &m, NULL);
  g_source_set_static_name (listen_source, "bf-minimaster accept");
  g_source_attach (listen_source, NULL);
  if (m.keepalive > 0)
    m.keepalive_id = g_timeout_add ((guint) (m.keepalive * 1000), on_keepalive, &m);
  g_timeout_add ((guint) (m.duration * 1000), on_quit, &m);
  g_unix_signal_add (SIGINT, on_signal, &m);
  g_unix_signal_add (SIGTERM, on_signal, &m);

  printf ("{\"phase\":\"peer-listening\",\"port\":%d,\"pid\":%d}\n", m.port, (int) getpid ());
  fflush (stdout);
  g_main_loop_run (m.loop);
  json_line (&m, "peer-summary", NULL);

  g_source_destroy (listen_source);
  soup_server_disconnect (m.server);
  g_object_unref (m.server);
  g_hash_table_unref (m.conns);   /* connections still open are left to exit() */
  g_main_loop_unref (m.loop);
  msgpack_sbuffer_destroy (&m.sbuf);
  return 0;
}
