/* bf-worker-history.h: what happened to one worker, from Worker.GetHistory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define BF_TYPE_WORKER_HISTORY (bf_worker_history_get_type ())
G_DECLARE_FINAL_TYPE (BfWorkerHistory, bf_worker_history, BF, WORKER_HISTORY, GtkWidget)

GtkWidget  *bf_worker_history_new           (void);
void        bf_worker_history_set_worker    (BfWorkerHistory *self,
                                             GDBusConnection *connection,
                                             const char      *name_owner,
                                             const char      *object_path,
                                             gboolean         connected);
void        bf_worker_history_queue_refresh (BfWorkerHistory *self,
                                             gboolean         connected);
const char *bf_worker_history_get_latest    (BfWorkerHistory *self,
                                             const char      *event);
void        bf_worker_history_dump          (BfWorkerHistory *self,
                                             GKeyFile        *key_file,
                                             const char      *group);
char       *bf_worker_history_describe      (const char      *event,
                                             const char      *detail,
                                             const char      *actor);

G_END_DECLS
