/* bf-latent.h: a latent worker's instance, published as org.buildfleet.Fleet1.LatentWorker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-authority.h"
#include "bf-config.h"
#include "bf-mailer.h"
#include "bf-state.h"

G_BEGIN_DECLS

#define BF_TYPE_LATENT (bf_latent_get_type ())
G_DECLARE_FINAL_TYPE (BfLatent, bf_latent, BF, LATENT, BfDBusLatentWorkerSkeleton)

typedef struct _BfLatentDriver BfLatentDriver;

/**
 * BfLatentHost:
 * @active_builds: how many builds run on the worker now
 * @is_quarantined: whether builds are kept away from the worker (a
 *   Substantiate call is then refused while no instance runs)
 * @start_failed: a start failed (driver error, the instance exited, or no
 *   connection in time); @message says why.  The host decides what that
 *   costs the worker (bf-worker.c quarantines it).
 * @release: the instance is being stopped: ask the attached worker
 *   process, if any, to exit and drop its connection with @reason.  The
 *   host must not call the latent back for a connection it drops here:
 *   bf_latent_detached() is for connections that end by themselves.
 *
 * What a latent needs from the worker that owns it.  The latent knows
 * nothing else of the worker: the worker tells it what happens through
 * bf_latent_attached() and friends, and it answers through these
 * callbacks, none of which calls the latent back, so neither can call
 * itself back through the other.
 */
typedef struct {
  guint    (*active_builds)  (gpointer    user_data);
  gboolean (*is_quarantined) (gpointer    user_data);
  void     (*start_failed)   (gpointer    user_data,
                              const char *message);
  void     (*release)        (gpointer    user_data,
                              const char *reason);
} BfLatentHost;

/**
 * BfLatentStartGate:
 *
 * Returns: whether a new instance may start now
 */
typedef gboolean (*BfLatentStartGate) (gpointer user_data);

BfLatent   *bf_latent_new                 (BfWorkerConfig     *config,
                                           const BfLatentHost *host,
                                           gpointer            host_data,
                                           BfState            *state,
                                           BfMailer           *mailer,
                                           BfAuthority        *authority);
BfLatent   *bf_latent_new_with_driver     (BfWorkerConfig     *config,
                                           BfLatentDriver     *driver,
                                           const BfLatentHost *host,
                                           gpointer            host_data,
                                           BfState            *state,
                                           BfMailer           *mailer,
                                           BfAuthority        *authority);
void        bf_latent_forget_host         (BfLatent       *self);
void        bf_latent_set_spare           (BfLatent       *self,
                                           gboolean        spare);
void        bf_latent_set_start_gate      (BfLatent       *self,
                                           BfLatentStartGate gate,
                                           gpointer        gate_data);
gboolean    bf_latent_may_start           (BfLatent       *self);
guint       bf_latent_get_builds          (BfLatent       *self);
void        bf_latent_set_config          (BfLatent       *self,
                                           BfWorkerConfig *config);
void        bf_latent_set_master          (BfLatent       *self,
                                           const char     *master,
                                           const char     *tls_certificate);
void        bf_latent_set_pb_master       (BfLatent       *self,
                                           const char     *pb_master);
const char *bf_latent_get_password        (BfLatent       *self);

void        bf_latent_substantiate        (BfLatent       *self);
void        bf_latent_insubstantiate      (BfLatent       *self,
                                           gboolean        fast,
                                           const char     *reason);
void        bf_latent_reconcile           (BfLatent       *self,
                                           const char     *instance_id,
                                           const char     *password);
BfLatentDriver *bf_latent_get_driver     (BfLatent       *self);
gboolean    bf_latent_owns_instance       (BfLatent       *self,
                                           const char     *instance_id);
void        bf_latent_freeze              (BfLatent       *self);
void        bf_latent_shutdown_async      (BfLatent       *self,
                                           GCancellable   *cancellable,
                                           GAsyncReadyCallback callback,
                                           gpointer        user_data);
gboolean    bf_latent_shutdown_finish     (BfLatent       *self,
                                           GAsyncResult   *result,
                                           GError        **error);

gboolean    bf_latent_accepts_connection  (BfLatent       *self);
gboolean    bf_latent_can_take_build      (BfLatent       *self);
gboolean    bf_latent_can_substantiate    (BfLatent       *self);
gboolean    bf_latent_is_substantiating   (BfLatent       *self);
void        bf_latent_attached            (BfLatent       *self);
void        bf_latent_detached            (BfLatent       *self,
                                           const char     *reason);
void        bf_latent_build_started       (BfLatent       *self);
void        bf_latent_builds_idle         (BfLatent       *self,
                                           gboolean        graceful);

G_END_DECLS
