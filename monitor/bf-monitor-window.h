/* bf-monitor-window.h: the fleet at a glance
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <adwaita.h>

#include "bf-fleet-model.h"

G_BEGIN_DECLS

#define BF_TYPE_MONITOR_WINDOW (bf_monitor_window_get_type ())
G_DECLARE_FINAL_TYPE (BfMonitorWindow, bf_monitor_window, BF, MONITOR_WINDOW, AdwApplicationWindow)

BfMonitorWindow *bf_monitor_window_new           (GtkApplication  *application,
                                                  BfFleetModel    *model);
BfFleetModel    *bf_monitor_window_get_model     (BfMonitorWindow *self);
void             bf_monitor_window_select_worker (BfMonitorWindow *self,
                                                  const char      *name);
void             bf_monitor_window_dump_state    (BfMonitorWindow *self,
                                                  GKeyFile        *key_file);

G_END_DECLS
