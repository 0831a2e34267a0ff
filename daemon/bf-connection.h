/* bf-connection.h: the msgpack worker link (a BfWorkerLink over one WebSocket)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

#include "bf-websocket.h"
#include "bf-worker-link.h"

G_BEGIN_DECLS

/**
 * BfConnectionLimits:
 * @max_message_size: bytes of one incoming message
 * @keepalive_interval_usec: WebSocket ping period; 0 = no pings
 */
typedef struct {
  gsize max_message_size;
  guint64 keepalive_interval_usec;
} BfConnectionLimits;

#define BF_TYPE_CONNECTION (bf_connection_get_type ())
G_DECLARE_FINAL_TYPE (BfConnection, bf_connection, BF, CONNECTION, GObject)

BfConnection *bf_connection_new                (BfWebsocket              *ws,
                                                const char               *worker_name,
                                                const char               *peer,
                                                const BfConnectionLimits *limits);
void          bf_connection_set_keepalive      (BfConnection             *self,
                                                guint64                   interval_usec);

void          bf_connection_attach_async       (BfConnection             *self,
                                                GCancellable             *cancellable,
                                                GAsyncReadyCallback       callback,
                                                gpointer                  user_data);
gboolean      bf_connection_attach_finish      (BfConnection             *self,
                                                GAsyncResult             *result,
                                                GError                  **error);

void          bf_connection_request_async      (BfConnection             *self,
                                                const char               *op,
                                                GVariant                 *fields,
                                                guint64                   timeout_usec,
                                                GCancellable             *cancellable,
                                                GAsyncReadyCallback       callback,
                                                gpointer                  user_data);
GVariant     *bf_connection_request_finish     (BfConnection             *self,
                                                GAsyncResult             *result,
                                                GError                  **error);

void          bf_connection_close              (BfConnection             *self,
                                                const char               *reason);

G_END_DECLS
