/* bf-worker-status.h: a worker's state pill and its admin badges
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gtk/gtk.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

#define BF_TYPE_WORKER_STATUS (bf_worker_status_get_type ())
G_DECLARE_FINAL_TYPE (BfWorkerStatus, bf_worker_status, BF, WORKER_STATUS, GtkWidget)

GtkWidget    *bf_worker_status_new        (void);
BfDBusWorker *bf_worker_status_get_worker (BfWorkerStatus *self);
void          bf_worker_status_set_worker (BfWorkerStatus *self,
                                           BfDBusWorker   *worker);

void          bf_worker_status_set_compact (BfWorkerStatus *self,
                                            gboolean        compact);

char         *bf_worker_status_describe   (BfDBusWorker   *worker,
                                           char          **tooltip);

G_END_DECLS
