/* bf-websocket.h: the server side of one worker's WebSocket
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/**
 * BfWebsocketAuthResult:
 * @BF_WEBSOCKET_AUTH_ACCEPT: upgrade
 * @BF_WEBSOCKET_AUTH_REFUSE: 401, wrong or unknown credentials
 * @BF_WEBSOCKET_AUTH_THROTTLE: 429, too many failures from this peer's
 *   address lately; the credentials were not looked at
 */
typedef enum {
  BF_WEBSOCKET_AUTH_ACCEPT,
  BF_WEBSOCKET_AUTH_REFUSE,
  BF_WEBSOCKET_AUTH_THROTTLE,
} BfWebsocketAuthResult;

/**
 * BfWebsocketAuthFunc:
 * @username: from the request's Basic credentials
 * @password: from the request's Basic credentials
 * @retry_after: (out): with %BF_WEBSOCKET_AUTH_THROTTLE, seconds until
 *   the address may try again
 *
 * Returns: whether to accept the upgrade.
 */
typedef BfWebsocketAuthResult (*BfWebsocketAuthFunc) (const char *username,
                                                      const char *password,
                                                      const char *peer,
                                                      guint      *retry_after,
                                                      gpointer    user_data);

/**
 * BfWebsocketHandshakeFunc:
 * @username: (nullable): the authenticated worker, or %NULL when the
 *   handshake failed (the socket is already closed then)
 */
typedef struct _BfWebsocket BfWebsocket;
typedef void (*BfWebsocketHandshakeFunc) (BfWebsocket *ws,
                                          const char  *username,
                                          gpointer     user_data);

/**
 * BfWebsocketHandler:
 * @message: a whole message (fragments already joined); @binary is %FALSE
 *   for text messages; @data is only valid during the call
 * @pong: a pong arrived
 * @closed: the connection ended for @reason (the peer closed it, it was
 *   lost, or it broke the protocol); called once, and never after
 *   bf_websocket_close()
 */
typedef struct {
  void (*message) (gpointer      user_data,
                   gboolean      binary,
                   const guint8 *data,
                   gsize         len);
  void (*pong)    (gpointer      user_data);
  void (*closed)  (gpointer      user_data,
                   const char   *reason);
} BfWebsocketHandler;

#define BF_WEBSOCKET_CLOSE_GOING_AWAY       1001
#define BF_WEBSOCKET_CLOSE_PROTOCOL_ERROR   1002
#define BF_WEBSOCKET_CLOSE_POLICY_VIOLATION 1008
#define BF_WEBSOCKET_CLOSE_TOO_BIG          1009

#define BF_TYPE_WEBSOCKET (bf_websocket_get_type ())
G_DECLARE_FINAL_TYPE (BfWebsocket, bf_websocket, BF, WEBSOCKET, GObject)

BfWebsocket *bf_websocket_new_for_fd      (int                        fd,
                                           const char                *peer);
BfWebsocket *bf_websocket_new_for_stream  (GIOStream                 *stream,
                                           const char                *peer);
BfWebsocket *bf_websocket_new_for_tls     (int                        fd,
                                           const char                *peer,
                                           GTlsCertificate           *certificate);
void         bf_websocket_handshake       (BfWebsocket               *self,
                                           guint64                    timeout_usec,
                                           BfWebsocketAuthFunc        auth,
                                           gpointer                   auth_data,
                                           BfWebsocketHandshakeFunc   done,
                                           gpointer                   done_data);
void         bf_websocket_set_handler     (BfWebsocket               *self,
                                           const BfWebsocketHandler  *handler,
                                           gpointer                   user_data,
                                           gsize                      max_message_size);
gboolean     bf_websocket_is_open         (BfWebsocket               *self);
const char  *bf_websocket_get_peer        (BfWebsocket               *self);
gboolean     bf_websocket_handshake_was_silent (BfWebsocket          *self);
void         bf_websocket_send_binary     (BfWebsocket               *self,
                                           const guint8              *data,
                                           gsize                      len);
void         bf_websocket_ping            (BfWebsocket               *self);
gboolean     bf_websocket_has_unread      (BfWebsocket               *self);
void         bf_websocket_close           (BfWebsocket               *self,
                                           guint16                    code,
                                           const char                *reason);
void         bf_websocket_close_all       (void);

/* The frame parser, on its own for the unit and fuzz tests. */
typedef enum {
  BF_WS_FRAME_INCOMPLETE,
  BF_WS_FRAME_OK,
  BF_WS_FRAME_ERROR,
} BfWsFrameStatus;

typedef struct {
  gboolean fin;
  guint8 opcode;
  guint64 header_len;
  guint64 payload_len;
} BfWsFrame;

BfWsFrameStatus bf_websocket_parse_frame  (const guint8              *data,
                                           gsize                      len,
                                           guint64                    max_payload,
                                           BfWsFrame                 *frame,
                                           guint16                   *close_code,
                                           const char               **error);

G_END_DECLS
