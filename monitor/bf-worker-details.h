/* bf-worker-details.h: every property of one worker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gtk/gtk.h>

#include "bf-builds-model.h"

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

#define BF_TYPE_WORKER_DETAILS (bf_worker_details_get_type ())
G_DECLARE_FINAL_TYPE (BfWorkerDetails, bf_worker_details, BF, WORKER_DETAILS, GtkWidget)

BfDBusWorker *bf_worker_details_get_worker (BfWorkerDetails *self);
void          bf_worker_details_set_worker (BfWorkerDetails *self,
                                            BfDBusWorker    *worker);

void             bf_worker_details_set_builds_model (BfWorkerDetails *self,
                                                     BfBuildsModel   *builds);
void             bf_worker_details_dump             (BfWorkerDetails *self,
                                                     GKeyFile        *key_file);

G_END_DECLS
