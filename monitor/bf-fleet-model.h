/* bf-fleet-model.h: the daemon's workers as a GListModel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

typedef enum
{
  BF_FLEET_STATUS_CONNECTING,
  BF_FLEET_STATUS_NO_DAEMON,
  BF_FLEET_STATUS_LOADING,
  BF_FLEET_STATUS_READY,
  BF_FLEET_STATUS_ERROR,
} BfFleetStatus;

#define BF_TYPE_FLEET_STATUS (bf_fleet_status_get_type ())
GType bf_fleet_status_get_type (void) G_GNUC_CONST;

#define BF_TYPE_FLEET_MODEL (bf_fleet_model_get_type ())
G_DECLARE_FINAL_TYPE (BfFleetModel, bf_fleet_model, BF, FLEET_MODEL, GObject)

BfFleetModel  *bf_fleet_model_new               (GBusType      bus_type);
BfFleetStatus  bf_fleet_model_get_status        (BfFleetModel *self);
const char    *bf_fleet_model_get_error_message (BfFleetModel *self);
guint          bf_fleet_model_get_n_connected   (BfFleetModel *self);
guint          bf_fleet_model_get_n_missing     (BfFleetModel *self);
guint          bf_fleet_model_get_n_paused      (BfFleetModel *self);
guint          bf_fleet_model_get_n_builds      (BfFleetModel *self);
BfDBusWorker  *bf_fleet_model_lookup            (BfFleetModel *self,
                                                 const char   *name);

GDBusConnection *bf_fleet_model_get_connection  (BfFleetModel *self);
const char    *bf_fleet_model_get_name_owner    (BfFleetModel *self);
BfDBusWorker  *bf_fleet_model_lookup_path       (BfFleetModel *self,
                                                 const char   *object_path);

G_END_DECLS
