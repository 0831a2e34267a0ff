/* bf-authority.h: polkit authorisation of mutating D-Bus methods
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BF_ACTION_MANAGE_WORKERS "org.buildfleet.Fleet1.manage-workers"
#define BF_ACTION_RUN_BUILDS     "org.buildfleet.Fleet1.run-builds"
#define BF_ACTION_RELOAD         "org.buildfleet.Fleet1.reload"

/**
 * BfAuthorizedFunc:
 * @object: the object whose method was called
 * @invocation: (transfer none): the call, still to be answered
 *
 * Called once the caller is authorised; it must answer @invocation.
 */
typedef void (*BfAuthorizedFunc) (GObject               *object,
                                  GDBusMethodInvocation *invocation);

#define BF_TYPE_AUTHORITY (bf_authority_get_type ())
G_DECLARE_FINAL_TYPE (BfAuthority, bf_authority, BF, AUTHORITY, GObject)

BfAuthority *bf_authority_new   (gboolean               session_bus);
void         bf_authority_check (BfAuthority           *self,
                                 GObject               *object,
                                 GDBusMethodInvocation *invocation,
                                 const char            *action_id,
                                 BfAuthorizedFunc       func);
const char  *bf_authority_get_caller (GDBusMethodInvocation *invocation,
                                      guint32               *uid);

G_END_DECLS
