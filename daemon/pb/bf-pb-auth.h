/* bf-pb-auth.h: the PB login challenge and its check
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * SECTION:bf-pb-auth
 * @title: BfPbAuth
 * @short_description: PB's md5 challenge/response login, master side
 *
 * A PB worker logs in with `login(username)`; the master answers with a
 * random challenge, and the worker calls `respond(response, mind)` where
 * response = md5 (md5 (password) + challenge), as Twisted's
 * twisted.spread.pb.respond() computes it. The password itself never
 * crosses the wire. These functions are pure apart from the random bytes of
 * bf_pb_auth_challenge(); the check takes the same time whatever the
 * response (no early exit on the first differing byte).
 *
 * md5 is what every Buildbot worker speaks; it is no stronger than that:
 * use TLS where the network is not trusted.
 */

/** BF_PB_AUTH_CHALLENGE_SIZE: bytes in a challenge (Twisted sends an md5 digest, 16). */
#define BF_PB_AUTH_CHALLENGE_SIZE 16
/** BF_PB_AUTH_RESPONSE_SIZE: bytes in a response (an md5 digest). */
#define BF_PB_AUTH_RESPONSE_SIZE 16

void     bf_pb_auth_challenge (guint8        challenge[BF_PB_AUTH_CHALLENGE_SIZE]);
void     bf_pb_auth_respond   (const guint8 *challenge,
                               gsize         challenge_len,
                               const gchar  *password,
                               gsize         password_len,
                               guint8        response[BF_PB_AUTH_RESPONSE_SIZE]);
gboolean bf_pb_auth_check     (const guint8 *challenge,
                               gsize         challenge_len,
                               const gchar  *password,
                               gsize         password_len,
                               const guint8 *response,
                               gsize         response_len);

G_END_DECLS
