/* bf-listener.h: the worker endpoints (WebSocket over HTTP or HTTPS)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-config.h"
#include "bf-connection.h"

G_BEGIN_DECLS

/**
 * BfListenerAuthFunc:
 * @name: the user name of the HTTP Basic credentials
 * @password: the password
 * @why: (out): set to a static explanation when refusing
 *
 * Returns: whether @name is a configured worker with this password.
 */
typedef gboolean (*BfListenerAuthFunc) (const char  *name,
                                        const char  *password,
                                        const char **why,
                                        gpointer     user_data);

/**
 * BfListenerPbAuthFunc:
 * @name: the worker name a PB worker logs in as
 * @challenge: the challenge it was sent
 * @response: its answer, md5 (md5 (password) + challenge)
 * @why: (out): set to a static explanation when refusing
 *
 * Returns: whether @name is a configured worker and @response was made
 *   with its password (checked with bf_pb_auth_check(), constant time)
 */
typedef gboolean (*BfListenerPbAuthFunc) (const char    *name,
                                          const guint8  *challenge,
                                          gsize          challenge_len,
                                          const guint8  *response,
                                          gsize          response_len,
                                          const char   **why,
                                          gpointer       user_data);

#define BF_TYPE_LISTENER (bf_listener_get_type ())
G_DECLARE_FINAL_TYPE (BfListener, bf_listener, BF, LISTENER, GObject)

BfListener *bf_listener_new        (BfListenerAuthFunc        auth,
                                    gpointer                  auth_data);
gboolean    bf_listener_start      (BfListener               *self,
                                    BfConfig                 *config,
                                    GError                  **error);
void        bf_listener_stop       (BfListener               *self);
void        bf_listener_set_limits (BfListener               *self,
                                    const BfConnectionLimits *limits);
GStrv       bf_listener_get_endpoints (BfListener            *self);
GStrv       bf_listener_get_pb_endpoints (BfListener         *self);
void        bf_listener_set_pb_auth (BfListener              *self,
                                     BfListenerPbAuthFunc     auth,
                                     gpointer                 auth_data);

G_END_DECLS
