/* bf-listener.c: the worker endpoints (WebSocket over HTTP or HTTPS)
 *
 * Every Listen= endpoint is a listening socket of ours; each accepted
 * connection becomes a BfWebsocket, which serves the upgrade request.
 * Workers authenticate with HTTP Basic credentials in that request, as
 * Buildbot's master expects: no or wrong credentials get 401, and nothing
 * else happens.  Password guessing is throttled per address (per /64 for
 * IPv6): after FREE_FAILURES failures in a row an address is refused with
 * 429 without its credentials being looked at, for 1 s, then 2, 4, ... up
 * to MAX_BLOCK_USEC, until a login from it succeeds or it has been quiet
 * for FORGET_USEC.  Other addresses are not affected.  The first
 * FREE_FAILURES failures of an episode are logged as they happen (they name
 * the worker: usually a misconfigured one); the rest are summed up every
 * SUMMARY_INTERVAL_SEC
 * ("N failed logins from ADDR in the last S s").  At most MAX_GUESSERS
 * addresses are remembered; the least recently failing one makes room.  With TlsCertificate= the
 * endpoints speak TLS (glib-networking), which is what
 * `buildbot-worker --use-tls` expects.
 *
 * Out of descriptors, accept() fails (EMFILE) while the listening socket
 * stays readable: polling it then would spin.  The endpoints stop being
 * polled instead and are retried every RESUME_INTERVAL_MSEC; connections
 * meanwhile wait in the kernel's backlog.  A reserve of descriptors is kept
 * for the daemon's own files (state, configuration, mail): a connection
 * accepted into it is closed at once and counts as the same shortage.  One
 * line is logged when an episode starts and one when it ends.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE 1   /* accept4 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bf-listener.h"
#include "bf-log.h"
#include "bf-websocket.h"

#define LISTEN_BACKLOG 4096
#define ACCEPT_BATCH 256
#define HANDSHAKE_TIMEOUT_USEC (10 * G_USEC_PER_SEC)
#define RESUME_INTERVAL_MSEC 500
#define FD_RESERVE 64
#define FREE_FAILURES 5
#define MAX_BLOCK_USEC (60 * G_USEC_PER_SEC)
#define FORGET_USEC (10 * 60 * G_USEC_PER_SEC)
#define SUMMARY_INTERVAL_SEC 10
#define MAX_GUESSERS 4096

/* An address that failed to log in lately. */
typedef struct {
  char *address;
  gint64 since;           /* monotonic: start of what the next summary covers */
  gint64 last_failure;
  gint64 blocked_until;
  guint failures;         /* in a row: drives the backoff */
  guint unreported;       /* failed logins not logged yet */
  guint throttled;        /* refused with 429 since the last summary */
  char *worker;           /* the name last tried */
} Guesser;

typedef struct {
  BfListener *listener;     /* unowned */
  GSocket *socket;
  GSource *source;
} Endpoint;

struct _BfListener
{
  GObject parent_instance;

  gboolean started;
  GTlsCertificate *certificate;
  GPtrArray *endpoints;     /* Endpoint */
  GHashTable *handshaking;  /* BfWebsocket* (owned) whose upgrade is not done */
  BfListenerAuthFunc auth;
  gpointer auth_data;
  BfConnectionLimits limits;

  /* descriptor exhaustion: endpoints not polled until resume_id fires */
  guint resume_id;
  gint64 exhausted_since;   /* monotonic; 0 when accepting */
  guint exhausted_retries;
  int fd_ceiling;           /* accepted descriptors from here on eat the reserve */

  GHashTable *guessers;     /* address -> Guesser */
  guint summary_id;
};

G_DEFINE_FINAL_TYPE (BfListener, bf_listener, G_TYPE_OBJECT)

enum {
  SIGNAL_CONNECTION,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static char *
format_sockaddr (const struct sockaddr_storage *ss)
{
  char ip[INET6_ADDRSTRLEN] = "";

  if (ss->ss_family == AF_INET)
    {
      const struct sockaddr_in *in = (const struct sockaddr_in *) ss;
      inet_ntop (AF_INET, &in->sin_addr, ip, sizeof ip);
      return g_strdup_printf ("%s:%u", ip, ntohs (in->sin_port));
    }
  if (ss->ss_family == AF_INET6)
    {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) ss;
      inet_ntop (AF_INET6, &in6->sin6_addr, ip, sizeof ip);
      return g_strdup_printf ("[%s]:%u", ip, ntohs (in6->sin6_port));
    }
  return g_strdup ("(unknown)");
}

static char *
format_address (GSocketAddress *address)
{
  struct sockaddr_storage ss = { 0 };

  if (!g_socket_address_to_native (address, &ss, sizeof ss, NULL))
    return g_strdup ("(unknown)");
  return format_sockaddr (&ss);
}

/* Password guessing ------------------------------------------------------------ */

static void
guesser_free (Guesser *g)
{
  g_free (g->address);
  g_free (g->worker);
  g_free (g);
}

/* The address a peer ("host:port", "[v6]:port") is throttled by: IPv6
 * hosts get a /64 each, so one host cannot dodge by switching addresses. */
static char *
throttle_key (const char *peer)
{
  g_autofree char *host = NULL;
  g_autoptr(GInetAddress) address = NULL;

  if (peer[0] == '[' && strchr (peer, ']') != NULL)
    host = g_strndup (peer + 1, strchr (peer, ']') - peer - 1);
  else
    host = g_strndup (peer, strrchr (peer, ':') ? (gsize) (strrchr (peer, ':') - peer) : strlen (peer));
  address = g_inet_address_new_from_string (host);
  if (address != NULL && g_inet_address_get_family (address) == G_SOCKET_FAMILY_IPV6 &&
      !g_inet_address_get_is_loopback (address))
    {
      guint8 bytes[16] = { 0 };
      g_autoptr(GInetAddress) prefix = NULL;
      g_autofree char *text = NULL;

      memcpy (bytes, g_inet_address_to_bytes (address), 8);
      prefix = g_inet_address_new_from_bytes (bytes, G_SOCKET_FAMILY_IPV6);
      text = g_inet_address_to_string (prefix);
      return g_strdup_printf ("%s/64", text);
    }
  return g_steal_pointer (&host);
}

static void
guesser_report (Guesser *g,
                gint64   now)
{
  if (g->unreported > 0 || g->throttled > 0)
    g_message ("%u failed logins from %s in the last %.0f s: %u refused (wrong name or "
               "password), %u refused unchecked while throttled; last worker name tried: “%s”",
               g->unreported + g->throttled, g->address,
               (now - g->since) / (double) G_USEC_PER_SEC,
               g->unreported, g->throttled, g->worker ? g->worker : "");
  g->unreported = 0;
  g->throttled = 0;
  g->since = now;
}

static gboolean
summary_cb (gpointer user_data)
{
  BfListener *self = user_data;
  gint64 now = g_get_monotonic_time ();
  GHashTableIter iter;
  Guesser *g;

  g_hash_table_iter_init (&iter, self->guessers);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &g))
    {
      guesser_report (g, now);
      if (now - g->last_failure > FORGET_USEC && now > g->blocked_until)
        g_hash_table_iter_remove (&iter);
    }
  if (g_hash_table_size (self->guessers) > 0)
    return G_SOURCE_CONTINUE;
  self->summary_id = 0;
  return G_SOURCE_REMOVE;
}

static Guesser *
guesser_add (BfListener *self,
             char       *key,    /* (transfer full) */
             gint64      now)
{
  Guesser *g;

  if (g_hash_table_size (self->guessers) >= MAX_GUESSERS)
    {
      GHashTableIter iter;
      Guesser *oldest = NULL;

      g_hash_table_iter_init (&iter, self->guessers);
      while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &g))
        if (oldest == NULL || g->last_failure < oldest->last_failure)
          oldest = g;
      guesser_report (oldest, now);
      g_hash_table_remove (self->guessers, oldest->address);
    }
  g = g_new0 (Guesser, 1);
  g->address = key;
  g->since = now;
  g_hash_table_insert (self->guessers, g->address, g);
  if (self->summary_id == 0)
    {
      self->summary_id = g_timeout_add_seconds (SUMMARY_INTERVAL_SEC, summary_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->summary_id),
                                "[buildfleetd] failed login summary");
    }
  return g;
}

static BfWebsocketAuthResult
ws_auth_cb (const char *username,
            const char *password,
            const char *peer,
            guint      *retry_after,
            gpointer    user_data)
{
  BfListener *self = user_data;
  g_autofree char *key = throttle_key (peer);
  Guesser *g = g_hash_table_lookup (self->guessers, key);
  gint64 now = g_get_monotonic_time ();
  const char *why = NULL;

  if (g != NULL && now < g->blocked_until)
    {
      g->throttled++;
      *retry_after = (g->blocked_until - now + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC;
      return BF_WEBSOCKET_AUTH_THROTTLE;
    }

  if (self->auth (username, password, &why, self->auth_data))
    {
      if (g != NULL)
        {
          guesser_report (g, now);
          g_hash_table_remove (self->guessers, key);
        }
      return BF_WEBSOCKET_AUTH_ACCEPT;
    }

  if (g == NULL)
    g = guesser_add (self, g_steal_pointer (&key), now);
  if (g->failures < FREE_FAILURES)
    {
      /* The first few of an episode: said at once, with the reason. */
      if (bf_worker_name_is_valid (username))
        bf_worker_message (username, "Authentication failed for worker “%s” from %s: %s",
                           username, peer, why ? why : "refused");
      else
        g_message ("Authentication failed from %s: %s", peer, why ? why : "refused");
    }
  else
    g->unreported++;
  g->last_failure = now;
  g->failures++;
  if (bf_worker_name_is_valid (username) && g_strcmp0 (g->worker, username) != 0)
    {
      g_free (g->worker);
      g->worker = g_strdup (username);
    }
  if (g->failures >= FREE_FAILURES)
    {
      guint shift = MIN (g->failures - FREE_FAILURES, 6);

      g->blocked_until = now + MIN ((gint64) G_USEC_PER_SEC << shift, MAX_BLOCK_USEC);
    }
  return BF_WEBSOCKET_AUTH_REFUSE;
}

static void
handshake_done_cb (BfWebsocket *ws,
                   const char  *username,
                   gpointer     user_data)
{
  BfListener *self = user_data;
  g_autoptr(BfWebsocket) hold = g_object_ref (ws);
  g_autoptr(BfConnection) connection = NULL;
  const char *peer = bf_websocket_get_peer (ws);

  g_hash_table_remove (self->handshaking, ws);
  if (username == NULL)
    return;
  connection = bf_connection_new (ws, username, peer, &self->limits);
  bf_worker_debug (username, "WebSocket for worker %s from %s", username, peer);
  g_signal_emit (self, signals[SIGNAL_CONNECTION], 0, connection);
}

static void
endpoint_free (Endpoint *e)
{
  if (e->source)
    {
      g_source_destroy (e->source);
      g_source_unref (e->source);
    }
  if (e->socket)
    g_socket_close (e->socket, NULL);
  g_clear_object (&e->socket);
  g_free (e);
}

static void
watch_endpoint (Endpoint *e);

static gboolean
resume_accepting_cb (gpointer user_data)
{
  BfListener *self = user_data;

  self->resume_id = 0;
  self->exhausted_retries++;
  for (guint i = 0; i < self->endpoints->len; i++)
    watch_endpoint (g_ptr_array_index (self->endpoints, i));
  return G_SOURCE_REMOVE;
}

/* accept() failed for want of descriptors (or memory): stop polling the
 * endpoints for a while, instead of being woken for the same pending
 * connection again and again. */
static void
pause_accepting (BfListener *self,
                 int         error_code)
{
  for (guint i = 0; i < self->endpoints->len; i++)
    {
      Endpoint *e = g_ptr_array_index (self->endpoints, i);

      if (e->source != NULL)
        {
          g_source_destroy (e->source);
          g_clear_pointer (&e->source, g_source_unref);
        }
    }
  if (self->exhausted_since == 0)
    {
      struct rlimit rl = { 0 };

      getrlimit (RLIMIT_NOFILE, &rl);
      self->exhausted_since = g_get_monotonic_time ();
      self->exhausted_retries = 0;
      g_warning ("Cannot accept worker connections: %s (limit %llu descriptors, %d kept for the "
                 "daemon's own files); new connections wait until descriptors are free again",
                 error_code ? g_strerror (error_code) : "out of file descriptors",
                 (unsigned long long) rl.rlim_cur,
                 (int) MIN ((rlim_t) FD_RESERVE, rl.rlim_cur / 4));
    }
  if (self->resume_id == 0)
    {
      self->resume_id = g_timeout_add (RESUME_INTERVAL_MSEC, resume_accepting_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->resume_id),
                                "[buildfleetd] resume accepting");
    }
}

static void
end_exhaustion (BfListener *self)
{
  if (self->exhausted_since == 0)
    return;
  g_message ("Accepting connections again: descriptors were exhausted for %.1f s (%u retries)",
             (g_get_monotonic_time () - self->exhausted_since) / (double) G_USEC_PER_SEC,
             self->exhausted_retries);
  self->exhausted_since = 0;
}

/* Accepts every pending connection at once (one per main-loop iteration
 * would throttle an attach storm of thousands of workers). */
static gboolean
accept_cb (GSocket      *socket,
           GIOCondition  condition,
           gpointer      user_data)
{
  Endpoint *e = user_data;
  BfListener *self = e->listener;
  int lfd = g_socket_get_fd (socket);

  for (guint i = 0; i < ACCEPT_BATCH; i++)
    {
      struct sockaddr_storage ss;
      socklen_t sslen = sizeof ss;
      g_autofree char *peer = NULL;
      g_autoptr(BfWebsocket) ws = NULL;
      int one = 1;
      int fd;

      fd = accept4 (lfd, (struct sockaddr *) &ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        {
          int saved = errno;

          if (saved == EINTR || saved == ECONNABORTED)
            continue;
          if (saved == EMFILE || saved == ENFILE || saved == ENOBUFS || saved == ENOMEM)
            {
              pause_accepting (self, saved);
              return G_SOURCE_CONTINUE;   /* its source is already destroyed */
            }
          if (saved == EAGAIN || saved == EWOULDBLOCK)
            end_exhaustion (self);   /* the backlog is drained */
          else
            g_message ("Cannot accept a connection: %s", g_strerror (saved));
          break;
        }
      /* Descriptors are handed out lowest first: this one's number says
       * that at most the reserve is left. */
      if (fd >= self->fd_ceiling)
        {
          close (fd);
          pause_accepting (self, 0);
          return G_SOURCE_CONTINUE;
        }
      /* Requests and their answers are small messages: without this every
       * command waits out the peer's delayed acknowledgement (40 ms). */
      setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      peer = format_sockaddr (&ss);
      if (self->certificate != NULL)
        ws = bf_websocket_new_for_tls (fd, peer, self->certificate);
      else
        ws = bf_websocket_new_for_fd (fd, peer);
      if (ws == NULL)
        continue;
      g_hash_table_add (self->handshaking, g_object_ref (ws));
      bf_websocket_handshake (ws, HANDSHAKE_TIMEOUT_USEC, ws_auth_cb, self, handshake_done_cb, self);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
listen_on (BfListener      *self,
           GSocketAddress  *address,
           gboolean         v6only,
           GError         **error)
{
  g_autoptr(GSocket) socket = NULL;
  Endpoint *e;

  socket = g_socket_new (g_socket_address_get_family (address), G_SOCKET_TYPE_STREAM,
                         G_SOCKET_PROTOCOL_TCP, error);
  if (socket == NULL)
    return FALSE;
  if (v6only && !g_socket_set_option (socket, IPPROTO_IPV6, IPV6_V6ONLY, 1, error))
    return FALSE;
  g_socket_set_blocking (socket, FALSE);
  g_socket_set_listen_backlog (socket, LISTEN_BACKLOG);
  if (!g_socket_bind (socket, address, TRUE, error) || !g_socket_listen (socket, error))
    return FALSE;

  e = g_new0 (Endpoint, 1);
  e->listener = self;
  e->socket = g_steal_pointer (&socket);
  if (self->resume_id == 0)
    watch_endpoint (e);
  g_ptr_array_add (self->endpoints, e);
  return TRUE;
}

static void
watch_endpoint (Endpoint *e)
{
  if (e->source != NULL)
    return;
  e->source = g_socket_create_source (e->socket, G_IO_IN, NULL);
  g_source_set_callback (e->source, G_SOURCE_FUNC (accept_cb), e, NULL);
  g_source_set_static_name (e->source, "[buildfleetd] worker endpoint");
  g_source_attach (e->source, NULL);
}

static void
bf_listener_dispose (GObject *object)
{
  BfListener *self = BF_LISTENER (object);

  if (self->endpoints)
    bf_listener_stop (self);
  g_clear_pointer (&self->endpoints, g_ptr_array_unref);
  g_clear_pointer (&self->handshaking, g_hash_table_unref);
  g_clear_handle_id (&self->summary_id, g_source_remove);
  g_clear_pointer (&self->guessers, g_hash_table_unref);
  G_OBJECT_CLASS (bf_listener_parent_class)->dispose (object);
}

static void
bf_listener_class_init (BfListenerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_listener_dispose;

  signals[SIGNAL_CONNECTION] =
    g_signal_new ("connection", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, BF_TYPE_WORKER_LINK);
}

static void
bf_listener_init (BfListener *self)
{
  self->endpoints = g_ptr_array_new_with_free_func ((GDestroyNotify) endpoint_free);
  self->handshaking = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
  self->guessers = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) guesser_free);
  self->limits.max_message_size = 16 * 1024 * 1024;
  self->limits.keepalive_interval_usec = 60 * G_USEC_PER_SEC;
}

BfListener *
bf_listener_new (BfListenerAuthFunc auth,
                 gpointer           auth_data)
{
  BfListener *self = g_object_new (BF_TYPE_LISTENER, NULL);

  self->auth = auth;
  self->auth_data = auth_data;
  return self;
}

void
bf_listener_set_limits (BfListener               *self,
                        const BfConnectionLimits *limits)
{
  self->limits = *limits;
}

/**
 * bf_listener_start:
 *
 * Listens on every endpoint of @config.  On error nothing listens.
 */
gboolean
bf_listener_start (BfListener  *self,
                   BfConfig    *config,
                   GError     **error)
{
  g_return_val_if_fail (!self->started, FALSE);

  {
    struct rlimit rl;
    rlim_t ceiling = G_MAXINT;

    if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      ceiling = rl.rlim_cur - MIN ((rlim_t) FD_RESERVE, rl.rlim_cur / 4);
    self->fd_ceiling = MIN (ceiling, (rlim_t) G_MAXINT);
  }

  if (config->tls_certificate != NULL)
    {
      g_autoptr(GTlsCertificate) cert = NULL;
      g_autoptr(GError) local_error = NULL;

      if (!g_tls_backend_supports_tls (g_tls_backend_get_default ()))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                       "TlsCertificate is set but GLib has no TLS support (install glib-networking)");
          return FALSE;
        }
      cert = g_tls_certificate_new_from_files (config->tls_certificate, config->tls_private_key, &local_error);
      if (cert == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "%s: [Daemon] TlsCertificate/TlsPrivateKey: cannot load %s and %s: %s",
                       config->path, config->tls_certificate, config->tls_private_key, local_error->message);
          return FALSE;
        }
      g_set_object (&self->certificate, cert);
    }

  self->started = TRUE;
  for (guint i = 0; config->listen[i]; i++)
    {
      g_autofree char *host = NULL;
      guint16 port = 0;
      g_autoptr(GError) local_error = NULL;
      gboolean ok;

      if (!bf_config_parse_endpoint (config->listen[i], &host, &port, error))
        {
          bf_listener_stop (self);
          return FALSE;
        }
      if (g_str_equal (host, "*"))
        {
          /* Every address: IPv4 and IPv6 on the same port (the first
           * socket picks it when the port is 0). */
          g_autoptr(GInetAddress) any4 = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
          g_autoptr(GSocketAddress) sa4 = g_inet_socket_address_new (any4, port);
          ok = listen_on (self, sa4, FALSE, &local_error);
          if (ok)
            {
              Endpoint *first = g_ptr_array_index (self->endpoints, self->endpoints->len - 1);
              g_autoptr(GSocketAddress) bound = g_socket_get_local_address (first->socket, NULL);
              g_autoptr(GInetAddress) any6 = g_inet_address_new_any (G_SOCKET_FAMILY_IPV6);
              g_autoptr(GSocketAddress) sa6 = g_inet_socket_address_new (any6,
                g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
              g_autoptr(GError) v6_error = NULL;
              if (!listen_on (self, sa6, TRUE, &v6_error))
                g_debug ("No IPv6 endpoint: %s", v6_error->message);
            }
        }
      else
        {
          g_autoptr(GInetAddress) addr = g_inet_address_new_from_string (host);
          g_autoptr(GSocketAddress) sa = g_inet_socket_address_new (addr, port);
          ok = listen_on (self, sa, FALSE, &local_error);
        }
      if (!ok)
        {
          g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                      "Cannot listen on %s: ", config->listen[i]);
          bf_listener_stop (self);
          return FALSE;
        }
    }
  return TRUE;
}

void
bf_listener_stop (BfListener *self)
{
  g_ptr_array_set_size (self->endpoints, 0);
  g_clear_handle_id (&self->resume_id, g_source_remove);
  self->exhausted_since = 0;
  if (self->handshaking != NULL)
    {
      GHashTableIter iter;
      gpointer ws;

      /* Some are held elsewhere too (a TLS handshake in a thread, the queue
       * for one): make sure none calls back into us later. */
      g_hash_table_iter_init (&iter, self->handshaking);
      while (g_hash_table_iter_next (&iter, &ws, NULL))
        bf_websocket_close (ws, BF_WEBSOCKET_CLOSE_GOING_AWAY, "the endpoint is closing");
      g_hash_table_remove_all (self->handshaking);
    }
  self->started = FALSE;
  g_clear_object (&self->certificate);
}

/**
 * bf_listener_get_endpoints:
 *
 * Returns: (transfer full): the bound endpoints as "host:port", with the
 *   real port where the configuration asked for port 0.
 */
GStrv
bf_listener_get_endpoints (BfListener *self)
{
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

  for (guint i = 0; i < self->endpoints->len; i++)
    {
      Endpoint *e = g_ptr_array_index (self->endpoints, i);
      g_autoptr(GSocketAddress) address = g_socket_get_local_address (e->socket, NULL);
      g_autofree char *text = address ? format_address (address) : NULL;

      if (text)
        g_strv_builder_add (b, text);
    }
  return g_strv_builder_end (b);
}

/**
 * bf_listener_get_pb_endpoints:
 *
 * Returns: (transfer full): the bound PB endpoints as "host:port", like
 *   bf_listener_get_endpoints().  None yet: the PB endpoints (ListenPB=)
 *   come with the PB link, which replaces this.
 */
GStrv
bf_listener_get_pb_endpoints (BfListener *self)
{
  return g_new0 (char *, 1);
}
