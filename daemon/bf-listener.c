/* bf-listener.c: the worker endpoints (WebSocket over HTTP or HTTPS)
 *
 * A SoupServer serves every Listen= endpoint; the sockets are ours.  Workers authenticate with HTTP
 * Basic credentials before the WebSocket upgrade, as Buildbot's master
 * expects: no or wrong credentials get 401 and a log line naming the peer,
 * and nothing else happens.  With TlsCertificate= the endpoints speak TLS
 * (glib-networking), which is what `buildbot-worker --use-tls` expects.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "bf-listener.h"
#include "bf-log.h"

#define WORKER_NAME_KEY "bf-worker-name"

#define LISTEN_BACKLOG 4096
#define ACCEPT_BATCH 256

typedef struct {
  BfListener *listener;     /* unowned */
  GSocket *socket;
  GSource *source;
} Endpoint;

struct _BfListener
{
  GObject parent_instance;

  SoupServer *server;
  GTlsCertificate *certificate;
  GPtrArray *endpoints;     /* Endpoint */
  BfListenerAuthFunc auth;
  gpointer auth_data;
  BfConnectionLimits limits;
};

G_DEFINE_FINAL_TYPE (BfListener, bf_listener, G_TYPE_OBJECT)

enum {
  SIGNAL_CONNECTION,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static char *
format_address (GSocketAddress *address)
{
  GInetSocketAddress *inet;
  g_autofree char *ip = NULL;

  if (!G_IS_INET_SOCKET_ADDRESS (address))
    return g_strdup ("(unknown)");
  inet = G_INET_SOCKET_ADDRESS (address);
  ip = g_inet_address_to_string (g_inet_socket_address_get_address (inet));
  if (g_inet_address_get_family (g_inet_socket_address_get_address (inet)) == G_SOCKET_FAMILY_IPV6)
    return g_strdup_printf ("[%s]:%u", ip, g_inet_socket_address_get_port (inet));
  return g_strdup_printf ("%s:%u", ip, g_inet_socket_address_get_port (inet));
}

static char *
message_peer (SoupServerMessage *msg)
{
  return format_address (soup_server_message_get_remote_address (msg));
}

static gboolean
basic_auth_cb (SoupAuthDomain    *domain,
               SoupServerMessage *msg,
               const char        *username,
               const char        *password,
               gpointer           user_data)
{
  BfListener *self = user_data;
  const char *why = NULL;
  g_autofree char *peer = NULL;

  if (self->auth (username, password, &why, self->auth_data))
    {
      g_object_set_data_full (G_OBJECT (msg), WORKER_NAME_KEY, g_strdup (username), g_free);
      return TRUE;
    }

  peer = message_peer (msg);
  if (bf_worker_name_is_valid (username))
    bf_worker_message (username, "Authentication failed for worker “%s” from %s: %s",
                       username, peer, why ? why : "refused");
  else
    g_message ("Authentication failed from %s: %s", peer, why ? why : "refused");
  return FALSE;
}

static void
websocket_cb (SoupServer              *server,
              SoupServerMessage       *msg,
              const char              *path,
              SoupWebsocketConnection *ws,
              gpointer                 user_data)
{
  BfListener *self = user_data;
  const char *name = g_object_get_data (G_OBJECT (msg), WORKER_NAME_KEY);
  g_autofree char *peer = message_peer (msg);
  g_autoptr(BfConnection) connection = NULL;

  if (name == NULL)
    {
      /* Cannot happen: the auth domain covers every path. */
      soup_websocket_connection_close (ws, SOUP_WEBSOCKET_CLOSE_POLICY_VIOLATION, "not authenticated");
      return;
    }
  connection = bf_connection_new (ws, name, peer, &self->limits);
  bf_worker_debug (name, "WebSocket for worker %s from %s", name, peer);
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

/* Accepts every pending connection at once (SoupServer's own listener
 * takes one per main-loop iteration, which throttles an attach storm of
 * thousands of workers) and hands each to the SoupServer. */
static gboolean
accept_cb (GSocket      *socket,
           GIOCondition  condition,
           gpointer      user_data)
{
  Endpoint *e = user_data;
  BfListener *self = e->listener;

  for (guint i = 0; i < ACCEPT_BATCH; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GSocket) client = g_socket_accept (socket, NULL, &error);
      g_autoptr(GSocketConnection) connection = NULL;
      g_autoptr(GSocketAddress) local = NULL;
      g_autoptr(GSocketAddress) remote = NULL;
      g_autoptr(GIOStream) stream = NULL;

      if (client == NULL)
        {
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            g_message ("Cannot accept a connection: %s", error->message);
          break;
        }
      g_socket_set_blocking (client, FALSE);
      /* Requests and their answers are small messages: without this every
       * command waits out the peer's delayed acknowledgement (40 ms). */
      g_socket_set_option (client, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
      connection = g_socket_connection_factory_create_connection (client);
      local = g_socket_get_local_address (client, NULL);
      remote = g_socket_get_remote_address (client, NULL);
      if (self->certificate != NULL)
        {
          stream = g_tls_server_connection_new (G_IO_STREAM (connection), self->certificate, &error);
          if (stream == NULL)
            {
              g_message ("Cannot start TLS: %s", error->message);
              continue;
            }
        }
      else
        stream = G_IO_STREAM (g_steal_pointer (&connection));
      if (!soup_server_accept_iostream (self->server, stream, local, remote, &error))
        g_message ("Cannot serve a connection: %s", error->message);
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
  e->source = g_socket_create_source (e->socket, G_IO_IN, NULL);
  g_source_set_callback (e->source, G_SOURCE_FUNC (accept_cb), e, NULL);
  g_source_set_static_name (e->source, "[buildfleetd] worker endpoint");
  g_source_attach (e->source, NULL);
  g_ptr_array_add (self->endpoints, e);
  return TRUE;
}

static void
bf_listener_dispose (GObject *object)
{
  BfListener *self = BF_LISTENER (object);

  if (self->endpoints)
    bf_listener_stop (self);
  g_clear_pointer (&self->endpoints, g_ptr_array_unref);
  G_OBJECT_CLASS (bf_listener_parent_class)->dispose (object);
}

static void
bf_listener_class_init (BfListenerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_listener_dispose;

  signals[SIGNAL_CONNECTION] =
    g_signal_new ("connection", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, BF_TYPE_CONNECTION);
}

static void
bf_listener_init (BfListener *self)
{
  self->endpoints = g_ptr_array_new_with_free_func ((GDestroyNotify) endpoint_free);
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
  g_autoptr(SoupServer) server = NULL;
  g_autoptr(SoupAuthDomain) domain = NULL;

  g_return_val_if_fail (self->server == NULL, FALSE);

  server = soup_server_new ("server-header", "buildfleetd/" PACKAGE_VERSION " ", NULL);

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

  domain = soup_auth_domain_basic_new ("realm", "buildfleet", NULL);
  soup_auth_domain_add_path (domain, "/");
  soup_auth_domain_basic_set_auth_callback (domain, basic_auth_cb, self, NULL);
  soup_server_add_auth_domain (server, domain);
  soup_server_add_websocket_handler (server, NULL, NULL, NULL, websocket_cb, self, NULL);

  self->server = g_steal_pointer (&server);
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
  if (self->server == NULL)
    return;
  soup_server_disconnect (self->server);
  g_clear_object (&self->server);
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
