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
#include "bf-pb-auth.h"
#include "bf-pb-link.h"
#include "bf-websocket.h"

#define LISTEN_BACKLOG 4096
#define ACCEPT_BATCH 256
#define ACCEPT_BUDGET_USEC 2000
#define HANDSHAKE_TIMEOUT_USEC (10 * G_USEC_PER_SEC)
/* PB: the dialect, the version, login and respond, two round trips */
#define PB_LOGIN_TIMEOUT_USEC (30 * G_USEC_PER_SEC)
/* A PB TLS handshake holds a thread of GLib's pool until it completes or
 * the login deadline cancels it: so few may be under way at once, and
 * fewer from one address.  More are closed at once. */
#define MAX_PB_TLS_LOGINS 64
#define MAX_PB_TLS_LOGINS_PER_HOST 8
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
  gboolean pb;              /* a ListenPB= endpoint */
} Endpoint;

struct _BfListener
{
  GObject parent_instance;

  gboolean started;
  GTlsCertificate *certificate;
  GPtrArray *endpoints;     /* Endpoint */
  GHashTable *handshaking;  /* BfWebsocket* (owned) whose upgrade is not done */
  GHashTable *pb_login;     /* BfPbLink* (owned) not logged in yet */
  GHashTable *pb_tls_hosts; /* host -> TLS links in pb_login (GUINT_TO_POINTER) */
  guint pb_tls_logins;      /* TLS links in pb_login */
  BfListenerAuthFunc auth;
  gpointer auth_data;
  BfListenerPbAuthFunc pb_auth;
  gpointer pb_auth_data;
  guint16 msgpack_port;     /* the first Listen= endpoint's port, for hints */
  guint16 pb_port;          /* the first ListenPB= endpoint's port; 0 when none */
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

typedef enum {
  GUARD_ACCEPT,
  GUARD_REFUSE,
  GUARD_THROTTLE,
} GuardResult;

typedef gboolean (*CheckFunc) (BfListener  *self,
                               const char  *username,
                               const char **why,
                               gpointer     data);

/* Password guessing, the same for every endpoint: @check runs unless the
 * peer's address is throttled; failures are counted, logged and throttled
 * as the top of this file says. */
static GuardResult
guard_login (BfListener *self,
             const char *username,
             const char *peer,
             CheckFunc   check,
             gpointer    check_data,
             guint      *retry_after)
{
  g_autofree char *key = throttle_key (peer);
  Guesser *g = g_hash_table_lookup (self->guessers, key);
  gint64 now = g_get_monotonic_time ();
  const char *why = NULL;

  if (g != NULL && now < g->blocked_until)
    {
      g->throttled++;
      *retry_after = (g->blocked_until - now + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC;
      return GUARD_THROTTLE;
    }

  if (check (self, username, &why, check_data))
    {
      if (g != NULL)
        {
          guesser_report (g, now);
          g_hash_table_remove (self->guessers, key);
        }
      return GUARD_ACCEPT;
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
  return GUARD_REFUSE;
}

static gboolean
ws_check (BfListener  *self,
          const char  *username,
          const char **why,
          gpointer     data)
{
  return self->auth (username, data, why, self->auth_data);
}

static BfWebsocketAuthResult
ws_auth_cb (const char *username,
            const char *password,
            const char *peer,
            guint      *retry_after,
            gpointer    user_data)
{
  switch (guard_login (user_data, username, peer, ws_check, (gpointer) password, retry_after))
    {
    case GUARD_ACCEPT:
      return BF_WEBSOCKET_AUTH_ACCEPT;
    case GUARD_THROTTLE:
      return BF_WEBSOCKET_AUTH_THROTTLE;
    case GUARD_REFUSE:
    default:
      return BF_WEBSOCKET_AUTH_REFUSE;
    }
}

typedef struct {
  const guint8 *challenge;
  gsize challenge_len;
  const guint8 *response;
  gsize response_len;
} PbCredentials;

static gboolean
pb_check (BfListener  *self,
          const char  *username,
          const char **why,
          gpointer     data)
{
  PbCredentials *c = data;

  if (self->pb_auth == NULL)
    {
      *why = "PB logins are not served";
      return FALSE;
    }
  return self->pb_auth (username, c->challenge, c->challenge_len, c->response, c->response_len,
                        why, self->pb_auth_data);
}

static BfPbAuthResult
pb_auth_cb (const char   *name,
            const guint8 *challenge,
            gsize         challenge_len,
            const guint8 *response,
            gsize         response_len,
            const char   *peer,
            gpointer      user_data)
{
  PbCredentials c = { challenge, challenge_len, response, response_len };
  guint retry_after = 0;

  switch (guard_login (user_data, name, peer, pb_check, &c, &retry_after))
    {
    case GUARD_ACCEPT:
      return BF_PB_AUTH_ACCEPT;
    case GUARD_THROTTLE:
      return BF_PB_AUTH_THROTTLE;
    case GUARD_REFUSE:
    default:
      return BF_PB_AUTH_REFUSE;
    }
}

static void
pb_login_done (BfListener *self,
               BfPbLink   *link)
{
  const char *tls_host = g_object_get_data (G_OBJECT (link), "bf-tls-host");

  g_signal_handlers_disconnect_by_data (link, self);
  if (tls_host != NULL && g_hash_table_contains (self->pb_login, link))
    {
      guint n = GPOINTER_TO_UINT (g_hash_table_lookup (self->pb_tls_hosts, tls_host));

      self->pb_tls_logins--;
      if (n <= 1)
        g_hash_table_remove (self->pb_tls_hosts, tls_host);
      else
        g_hash_table_insert (self->pb_tls_hosts, g_strdup (tls_host), GUINT_TO_POINTER (n - 1));
    }
  g_hash_table_remove (self->pb_login, link);
}

static void
pb_logged_in_cb (BfPbLink   *link,
                 BfListener *self)
{
  g_autoptr(BfPbLink) hold = g_object_ref (link);

  pb_login_done (self, link);
  g_signal_emit (self, signals[SIGNAL_CONNECTION], 0, link);
}

static void
pb_closed_cb (BfPbLink   *link,
              const char *reason,
              BfListener *self)
{
  g_autoptr(BfPbLink) hold = g_object_ref (link);

  pb_login_done (self, link);
}

/* @host: (transfer full) (nullable): a TLS link's address, counted */
static void
start_pb (BfListener *self,
          BfPbLink   *link,
          char       *host)
{
  g_hash_table_add (self->pb_login, g_object_ref (link));
  if (host != NULL)
    {
      self->pb_tls_logins++;
      g_hash_table_insert (self->pb_tls_hosts, g_strdup (host),
                           GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (self->pb_tls_hosts, host)) + 1));
      g_object_set_data_full (G_OBJECT (link), "bf-tls-host", host, g_free);
    }
  g_signal_connect (link, "logged-in", G_CALLBACK (pb_logged_in_cb), self);
  g_signal_connect (link, "closed", G_CALLBACK (pb_closed_cb), self);
  bf_pb_link_start (link, PB_LOGIN_TIMEOUT_USEC, self->msgpack_port);
}

/* A PB endpoint's connection: the link serves the login; a logged-in link
 * goes to the "connection" signal as a WebSocket one does. */
static void
accept_pb (BfListener *self,
           int         fd,
           const char *peer)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GIOStream) stream = NULL;
  g_autoptr(BfPbLink) link = NULL;
  g_autofree char *host = NULL;

  if (self->certificate == NULL)
    {
      /* plain TCP: the bare descriptor, no GSocket and streams (issue 20) */
      link = bf_pb_link_new_for_fd (fd, peer, self->limits.keepalive_interval_usec, pb_auth_cb, self);
      start_pb (self, link, NULL);
      return;
    }
  socket = g_socket_new_from_fd (fd, &error);
  if (socket == NULL)
    {
      g_message ("Cannot use the PB connection from %s: %s", peer, error->message);
      close (fd);
      return;
    }
  if (self->certificate != NULL)
    {
      host = throttle_key (peer);
      if (self->pb_tls_logins >= MAX_PB_TLS_LOGINS ||
          GPOINTER_TO_UINT (g_hash_table_lookup (self->pb_tls_hosts, host)) >= MAX_PB_TLS_LOGINS_PER_HOST)
        {
          g_debug ("PB connection from %s closed: %u TLS logins under way (%u from its address)", peer,
                   self->pb_tls_logins, GPOINTER_TO_UINT (g_hash_table_lookup (self->pb_tls_hosts, host)));
          return;   /* the socket closes with its last reference */
        }
    }
  connection = g_socket_connection_factory_create_connection (socket);
  if (self->certificate != NULL)
    {
      stream = (GIOStream *) g_tls_server_connection_new (G_IO_STREAM (connection), self->certificate, &error);
      if (stream == NULL)
        {
          g_message ("Cannot start TLS for the PB connection from %s: %s", peer, error->message);
          return;
        }
    }
  else
    stream = G_IO_STREAM (g_object_ref (connection));
  link = bf_pb_link_new (stream, peer, self->certificate != NULL, self->limits.keepalive_interval_usec,
                         pb_auth_cb, self);
  start_pb (self, link, g_steal_pointer (&host));
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
  if (username == NULL && bf_websocket_handshake_was_silent (ws))
    {
      /* A PB worker waits for the master to speak first: it is silent here. */
      if (self->pb_port != 0)
        g_message ("Connection from %s to the WebSocket endpoint sent nothing before the %.0f s "
                   "handshake timeout: this looks like a PB worker (PB workers wait for the master "
                   "to speak first): point it at the ListenPB= port %u",
                   peer, HANDSHAKE_TIMEOUT_USEC / (double) G_USEC_PER_SEC, self->pb_port);
      else
        g_message ("Connection from %s to the WebSocket endpoint sent nothing before the %.0f s "
                   "handshake timeout: this looks like a PB worker (PB workers wait for the master "
                   "to speak first), and no ListenPB= endpoint is open: set ListenPB=",
                   peer, HANDSHAKE_TIMEOUT_USEC / (double) G_USEC_PER_SEC);
    }
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
  /* Bounded in time as well (bf-poller.c): the rest waits in the backlog
   * while the main loop answers D-Bus. */
  gint64 until = g_get_monotonic_time () + ACCEPT_BUDGET_USEC;

  for (guint i = 0; i < ACCEPT_BATCH && g_get_monotonic_time () < until; i++)
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
      if (e->pb)
        {
          accept_pb (self, fd, peer);
          continue;
        }
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
           gboolean         pb,
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
  e->pb = pb;
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
  g_clear_pointer (&self->pb_login, g_hash_table_unref);
  g_clear_pointer (&self->pb_tls_hosts, g_hash_table_unref);
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
  self->pb_login = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
  self->pb_tls_hosts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
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

/**
 * bf_listener_set_pb_auth:
 *
 * How PB logins are checked: @auth gets the worker name, the challenge
 * sent and the response received.
 */
void
bf_listener_set_pb_auth (BfListener           *self,
                         BfListenerPbAuthFunc  auth,
                         gpointer              auth_data)
{
  self->pb_auth = auth;
  self->pb_auth_data = auth_data;
}

void
bf_listener_set_limits (BfListener               *self,
                        const BfConnectionLimits *limits)
{
  self->limits = *limits;
}

/* The port of the first endpoint of a kind, as bound (0 picks one). */
static guint16
first_port (BfListener *self,
            gboolean    pb)
{
  for (guint i = 0; i < self->endpoints->len; i++)
    {
      Endpoint *e = g_ptr_array_index (self->endpoints, i);
      g_autoptr(GSocketAddress) address = NULL;

      if (e->pb != pb)
        continue;
      address = g_socket_get_local_address (e->socket, NULL);
      if (address != NULL && G_IS_INET_SOCKET_ADDRESS (address))
        return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (address));
    }
  return 0;
}

static gboolean
listen_endpoints (BfListener  *self,
                  GStrv        list,
                  gboolean     pb,
                  gboolean     optional,
                  GError     **error)
{
  for (guint i = 0; list[i]; i++)
    {
      g_autofree char *host = NULL;
      guint16 port = 0;
      g_autoptr(GError) local_error = NULL;
      gboolean ok;

      if (!bf_config_parse_endpoint (list[i], &host, &port, error))
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
          ok = listen_on (self, sa4, FALSE, pb, &local_error);
          if (ok)
            {
              Endpoint *first = g_ptr_array_index (self->endpoints, self->endpoints->len - 1);
              g_autoptr(GSocketAddress) bound = g_socket_get_local_address (first->socket, NULL);
              g_autoptr(GInetAddress) any6 = g_inet_address_new_any (G_SOCKET_FAMILY_IPV6);
              g_autoptr(GSocketAddress) sa6 = g_inet_socket_address_new (any6,
                g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
              g_autoptr(GError) v6_error = NULL;
              if (!listen_on (self, sa6, TRUE, pb, &v6_error))
                g_debug ("No IPv6 endpoint: %s", v6_error->message);
            }
        }
      else
        {
          g_autoptr(GInetAddress) addr = g_inet_address_new_from_string (host);
          g_autoptr(GSocketAddress) sa = g_inet_socket_address_new (addr, port);
          ok = listen_on (self, sa, FALSE, pb, &local_error);
        }
      if (!ok && optional)
        {
          /* The default PB endpoint: a Buildbot master still running on
           * this host must not keep the daemon from starting. */
          g_warning ("No PB endpoint: cannot listen on %s, the default of ListenPB=: %s; existing "
                     "Buildbot workers (PB) cannot attach until it is free. Set ListenPB= to another "
                     "endpoint (or empty for none) to silence this",
                     list[i], local_error->message);
          continue;
        }
      if (!ok)
        {
          g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                      "Cannot listen on %s (%s=): ", list[i], pb ? "ListenPB" : "Listen");
          bf_listener_stop (self);
          return FALSE;
        }
    }
  return TRUE;
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
  if (!listen_endpoints (self, config->listen, FALSE, FALSE, error))
    return FALSE;
  self->msgpack_port = first_port (self, FALSE);
  if (!listen_endpoints (self, config->listen_pb, TRUE, config->listen_pb_default, error))
    return FALSE;
  self->pb_port = first_port (self, TRUE);
  if (config->listen_pb_skipped != NULL)
    g_warning ("No PB endpoint: Listen=%s already takes port %d, Buildbot's customary PB port, which "
               "ListenPB= would use by default; existing Buildbot workers (PB, the default protocol) "
               "cannot attach. Move Listen= to another port (the default is now *:9990) or set "
               "ListenPB= (empty for no PB endpoint) to silence this",
               config->listen_pb_skipped, BF_DEFAULT_PORT);
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
  if (self->pb_login != NULL)
    {
      g_autoptr(GList) links = g_hash_table_get_keys (self->pb_login);

      for (GList *l = links; l; l = l->next)
        {
          g_signal_handlers_disconnect_by_data (l->data, self);
          bf_pb_link_close (l->data, "the endpoint is closing");
        }
      g_hash_table_remove_all (self->pb_login);
      g_hash_table_remove_all (self->pb_tls_hosts);
      self->pb_tls_logins = 0;
    }
  self->started = FALSE;
  g_clear_object (&self->certificate);
}

static GStrv
endpoints_of_kind (BfListener *self,
                   gboolean    pb)
{
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

  for (guint i = 0; i < self->endpoints->len; i++)
    {
      Endpoint *e = g_ptr_array_index (self->endpoints, i);
      g_autoptr(GSocketAddress) address = NULL;
      g_autofree char *text = NULL;

      if (e->pb != pb)
        continue;
      address = g_socket_get_local_address (e->socket, NULL);
      text = address ? format_address (address) : NULL;
      if (text)
        g_strv_builder_add (b, text);
    }
  return g_strv_builder_end (b);
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
  return endpoints_of_kind (self, FALSE);
}

/**
 * bf_listener_get_pb_endpoints:
 *
 * Returns: (transfer full): the bound ListenPB= endpoints as "host:port",
 *   with the real port where the configuration asked for port 0.
 */
GStrv
bf_listener_get_pb_endpoints (BfListener *self)
{
  return endpoints_of_kind (self, TRUE);
}
