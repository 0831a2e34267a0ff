/* bf-worker-watch.h: follow one worker's and its latent interface's changes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib-object.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

/*
 * A worker shown by a widget is followed through two signal groups, one for
 * its BfDBusWorker and one for its BfDBusLatentWorker interface (which a
 * worker may gain or lose).  A BfWorkerWatch is that pair: it calls @func
 * with the object that notified (the worker or its latent interface) for
 * every "notify" of either, and follows the worker to its current latent
 * interface before each call.  Setting another worker, or NULL, disconnects
 * from the previous one; so does freeing the watch.
 */
typedef struct _BfWorkerWatch BfWorkerWatch;

typedef void (*BfWorkerWatchFunc) (gpointer    user_data,
                                   GObject    *object,
                                   GParamSpec *pspec);

BfWorkerWatch *bf_worker_watch_new        (BfWorkerWatchFunc  func,
                                           gpointer           user_data);
void           bf_worker_watch_set_worker (BfWorkerWatch     *watch,
                                           BfDBusWorker      *worker);
void           bf_worker_watch_free       (BfWorkerWatch     *watch);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfWorkerWatch, bf_worker_watch_free)

G_END_DECLS
