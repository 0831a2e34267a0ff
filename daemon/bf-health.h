/* bf-health.h: health checks run on an idle worker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-config.h"
#include "bf-worker-link.h"

G_BEGIN_DECLS

/**
 * BfHealthHost:
 * @idle: whether the worker runs no build now (checks run only then)
 * @response_time: a ping's round trip, measured at each check
 * @result: the outcome of a round of checks: @healthy, else @reason
 *   (bounded text saying which check failed and why)
 *
 * What the checker needs of the worker that owns it.  None of these calls
 * back into the checker.
 */
typedef struct {
  gboolean (*idle)          (gpointer    data);
  void     (*response_time) (gpointer    data,
                             guint64     usec);
  void     (*result)        (gpointer    data,
                             gboolean    healthy,
                             const char *reason);
} BfHealthHost;

/* The builder health commands run under: a PB worker needs one, and it
 * must not be a real builder's, whose one command slot a build may use. */
#define BF_HEALTH_BUILDER "_buildfleet_health"

typedef struct _BfHealth BfHealth;

BfHealth *bf_health_new        (const BfHealthHost *host,
                                gpointer            host_data);
void      bf_health_free       (BfHealth           *self);
void      bf_health_set_config (BfHealth           *self,
                                BfWorkerConfig     *config);
void      bf_health_attached   (BfHealth           *self,
                                BfWorkerLink       *link);
void      bf_health_detached   (BfHealth           *self);

G_END_DECLS
