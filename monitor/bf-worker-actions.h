/* bf-worker-actions.h: the worker.* actions of the window, as one table
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gtk/gtk.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

/*
 * What the actions need of the widget they are installed on: the worker
 * they act on (the selection), the cancellable of its calls, and where a
 * failure is shown.  Called on the main thread only.
 */
typedef struct
{
  BfDBusWorker *(*get_worker)      (GtkWidget  *widget);
  GCancellable *(*get_cancellable) (GtkWidget  *widget);
  void          (*show_error)      (GtkWidget  *widget,
                                    const char *failure,
                                    GError     *error);
} BfWorkerActionHost;

void bf_worker_actions_install (GtkWidgetClass           *widget_class,
                                const BfWorkerActionHost *host);
void bf_worker_actions_update  (GtkWidget                *widget,
                                BfDBusWorker             *worker);

G_END_DECLS
