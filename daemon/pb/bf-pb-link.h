/* bf-pb-link.h: a worker speaking Perspective Broker, as a BfWorkerLink
 *
 * BfPbLink implements BfWorkerLink (bf-worker-link.h); this header only
 * has what the listener needs before the login.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>


G_BEGIN_DECLS

typedef enum {
  BF_PB_AUTH_ACCEPT,
  BF_PB_AUTH_REFUSE,
  BF_PB_AUTH_THROTTLE,
} BfPbAuthResult;

/**
 * BfPbLinkAuthFunc:
 * @name: the worker name the peer logs in as (any bytes, NUL-terminated)
 * @challenge: what we sent
 * @response: what the peer answered: md5 (md5 (password) + challenge)
 * @peer: "host:port", for throttling and the log
 *
 * Checks the response against the configured password (with
 * bf_pb_auth_check(): constant time), and throttles guessing.
 */
typedef BfPbAuthResult (*BfPbLinkAuthFunc) (const char   *name,
                                            const guint8 *challenge,
                                            gsize         challenge_len,
                                            const guint8 *response,
                                            gsize         response_len,
                                            const char   *peer,
                                            gpointer      user_data);

#define BF_TYPE_PB_LINK (bf_pb_link_get_type ())
G_DECLARE_FINAL_TYPE (BfPbLink, bf_pb_link, BF, PB_LINK, GObject)

BfPbLink *bf_pb_link_new   (GIOStream        *stream,
                            const char       *peer,
                            gboolean          tls,
                            guint64           keepalive_interval_usec,
                            BfPbLinkAuthFunc  auth,
                            gpointer          auth_data);
BfPbLink *bf_pb_link_new_for_fd (int               fd,
                                  const char       *peer,
                                  guint64           keepalive_interval_usec,
                                  BfPbLinkAuthFunc  auth,
                                  gpointer          auth_data);
void      bf_pb_link_start (BfPbLink         *self,
                            guint64           login_timeout_usec,
                            guint             msgpack_port);
void      bf_pb_link_close (BfPbLink         *self,
                            const char       *reason);

G_END_DECLS
