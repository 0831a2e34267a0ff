/* bf-scheduler.h: the pending-build queue and the choice of a worker
 *
 * The scheduler keeps the builds that wait for a worker, in request order,
 * and on each dispatch (coalesced, from the main loop) gives every build
 * the best worker that can take it now; for a build that none can take it
 * asks a latent worker to start ("demand").  It reads the workers from the
 * manager's name -> worker table, which it borrows and never changes.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-build.h"
#include "bf-worker.h"

G_BEGIN_DECLS

typedef struct _BfScheduler BfScheduler;

/**
 * BfSchedulerHost:
 * @pending_changed: the number of waiting builds changed to @n_pending
 *
 * What the scheduler tells the object that owns it.  The callback may not
 * call the scheduler back.
 */
typedef struct {
  void     (*pending_changed)  (guint     n_pending,
                                gpointer  user_data);
} BfSchedulerHost;

BfScheduler *bf_scheduler_new        (GHashTable            *workers,
                                      const BfSchedulerHost *host,
                                      gpointer               host_data);
void         bf_scheduler_free       (BfScheduler           *self);
void         bf_scheduler_add        (BfScheduler           *self,
                                      BfBuild               *build);
void         bf_scheduler_requeue    (BfScheduler           *self,
                                      BfBuild               *build);
gboolean     bf_scheduler_remove     (BfScheduler           *self,
                                      BfBuild               *build);
void         bf_scheduler_kick       (BfScheduler           *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfScheduler, bf_scheduler_free)

G_END_DECLS
