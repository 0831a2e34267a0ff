/* bf-build.h: a lease of one worker, published as org.buildfleet.Fleet1.Build
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-authority.h"
#include "bf-worker.h"

G_BEGIN_DECLS

#define BF_TYPE_BUILD (bf_build_get_type ())
G_DECLARE_FINAL_TYPE (BfBuild, bf_build, BF, BUILD, BfDBusBuildSkeleton)

typedef enum {
  BF_BUILD_PENDING,
  BF_BUILD_PREPARING,
  BF_BUILD_RUNNING,
  BF_BUILD_FINISHED,
} BfBuildPhase;

BfBuild      *bf_build_new           (guint64                   id,
                                      const char               *builder,
                                      const char               *owner,
                                      gboolean                  detached,
                                      const char               *only_worker,
                                      guint64                   timeout_usec,
                                      GDBusConnection          *bus,
                                      GDBusObjectManagerServer *object_manager,
                                      BfAuthority              *authority);
const char   *bf_build_get_path      (BfBuild                  *self);
guint64       bf_build_get_id        (BfBuild                  *self);
const char   *bf_build_get_builder   (BfBuild                  *self);
const char   *bf_build_get_only_worker (BfBuild                *self);
BfWorker     *bf_build_get_worker    (BfBuild                  *self);
void          bf_build_set_labels    (BfBuild                  *self,
                                      const char * const       *labels);
const char * const *bf_build_get_labels (BfBuild               *self);
void          bf_build_set_waiting_for (BfBuild                *self,
                                        const char             *why);
void          bf_build_assign        (BfBuild                  *self,
                                      BfWorker                 *worker,
                                      const char               *worker_path);
void          bf_build_finish        (BfBuild                  *self,
                                      const char               *result);

G_END_DECLS
