/* bf-listener.c: the worker endpoints (WebSocket over HTTP or HTTPS)
 *
 * A SoupServer on every Listen= endpoint.  Workers authenticate with HTTP
 * Basic credentials before the WebSocket upgrade, as Buildbot's master
 * expects: no or wrong credentials get 401 and a log line naming the peer,
 * and nothing else happens.  With TlsCertificate= the endpoints speak TLS
 * (glib-networking), which is what `buildbot-worker --use-tls` expects.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-listener.h"
#include "bf-log.h"

#define WORKER_NAME_KEY "bf-worker-name"

struct _BfListener
{
  GObject parent_instance;

  SoupServer *server;
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
bf_listener_dispose (GObject *object)
{
  BfListener *self = BF_LISTENER (object);

  bf_listener_stop (self);
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
  SoupServerListenOptions options = 0;

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
      g_object_set (server, "tls-certificate", cert, NULL);
      options |= SOUP_SERVER_LISTEN_HTTPS;
    }

  domain = soup_auth_domain_basic_new ("realm", "buildfleet", NULL);
  soup_auth_domain_add_path (domain, "/");
  soup_auth_domain_basic_set_auth_callback (domain, basic_auth_cb, self, NULL);
  soup_server_add_auth_domain (server, domain);
  soup_server_add_websocket_handler (server, NULL, NULL, NULL, websocket_cb, self, NULL);

  for (guint i = 0; config->listen[i]; i++)
    {
      g_autofree char *host = NULL;
      guint16 port = 0;
      g_autoptr(GError) local_error = NULL;
      gboolean ok;

      if (!bf_config_parse_endpoint (config->listen[i], &host, &port, error))
        return FALSE;
      if (g_str_equal (host, "*"))
        ok = soup_server_listen_all (server, port, options, &local_error);
      else
        {
          g_autoptr(GInetAddress) addr = g_inet_address_new_from_string (host);
          g_autoptr(GSocketAddress) sa = g_inet_socket_address_new (addr, port);
          ok = soup_server_listen (server, sa, options, &local_error);
        }
      if (!ok)
        {
          g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                      "Cannot listen on %s: ", config->listen[i]);
          soup_server_disconnect (server);
          return FALSE;
        }
    }

  self->server = g_steal_pointer (&server);
  return TRUE;
}

void
bf_listener_stop (BfListener *self)
{
  if (self->server == NULL)
    return;
  soup_server_disconnect (self->server);
  g_clear_object (&self->server);
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

  if (self->server != NULL)
    {
      GSList *listeners = soup_server_get_listeners (self->server);

      for (GSList *l = listeners; l; l = l->next)
        {
          GSocket *socket = l->data;
          g_autoptr(GSocketAddress) address = g_socket_get_local_address (socket, NULL);
          g_autofree char *text = address ? format_address (address) : NULL;

          if (text)
            g_strv_builder_add (b, text);
        }
      g_slist_free (listeners);
    }
  return g_strv_builder_end (b);
}
