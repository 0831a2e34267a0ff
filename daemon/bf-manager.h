/* bf-manager.h: the fleet, published as org.buildfleet.Fleet1.Manager
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-config.h"
#include "bf-worker.h"

G_BEGIN_DECLS

#define BF_TYPE_MANAGER (bf_manager_get_type ())
G_DECLARE_FINAL_TYPE (BfManager, bf_manager, BF, MANAGER, BfDBusManagerSkeleton)

BfManager *bf_manager_new           (BfConfig         *config,
                                     gboolean          session_bus);
gboolean   bf_manager_export        (BfManager        *self,
                                     GDBusConnection  *bus,
                                     GError          **error);
gboolean   bf_manager_start_listening (BfManager      *self,
                                     GError          **error);
void       bf_manager_shutdown      (BfManager        *self);
void       bf_manager_keep_instances (BfManager       *self);
void       bf_manager_shutdown_async (BfManager       *self,
                                     GAsyncReadyCallback callback,
                                     gpointer          user_data);
gboolean   bf_manager_shutdown_finish (BfManager      *self,
                                     GAsyncResult     *result,
                                     GError          **error);
void       bf_manager_reload_async  (BfManager        *self,
                                     GAsyncReadyCallback callback,
                                     gpointer          user_data);
gboolean   bf_manager_reload_finish (BfManager        *self,
                                     GAsyncResult     *result,
                                     GError          **error);
char      *bf_manager_dup_status    (BfManager        *self);

G_END_DECLS
