/* bf-monitor-application.h: the desktop monitor application
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <adwaita.h>

#include "bf-fleet-model.h"

G_BEGIN_DECLS

#define BF_TYPE_MONITOR_APPLICATION (bf_monitor_application_get_type ())
G_DECLARE_FINAL_TYPE (BfMonitorApplication, bf_monitor_application, BF, MONITOR_APPLICATION, AdwApplication)

BfMonitorApplication *bf_monitor_application_new       (void);
BfFleetModel         *bf_monitor_application_get_model (BfMonitorApplication *self);

G_END_DECLS
