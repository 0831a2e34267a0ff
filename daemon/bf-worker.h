/* bf-worker.h: one worker's lifecycle, published as org.buildfleet.Fleet1.Worker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-authority.h"
#include "bf-cache-warmer.h"
#include "bf-config.h"
#include "bf-worker-link.h"
#include "bf-latent.h"
#include "bf-mailer.h"
#include "bf-state.h"

G_BEGIN_DECLS

#define BF_TYPE_WORKER (bf_worker_get_type ())
G_DECLARE_FINAL_TYPE (BfWorker, bf_worker, BF, WORKER, BfDBusWorkerSkeleton)

/* What the manager hears from each of its workers, as direct calls:
 * four signal handlers per worker (a closure and a handler each) were
 * 40 MB and a quarter of the start-up's CPU with 50,000 workers.  Called
 * before the signal of the same name (connected-changed, …), which stays
 * for the others (pools, builds). */
typedef struct {
  void (*connected_changed)     (BfWorker *worker, gboolean connected, gpointer data);
  void (*missing_changed)       (BfWorker *worker, gboolean missing, gpointer data);
  void (*active_builds_changed) (BfWorker *worker, int delta, gpointer data);
  void (*availability_changed)  (BfWorker *worker, gpointer data);
} BfWorkerObserver;

BfWorker       *bf_worker_new                (BfWorkerConfig *config,
                                              BfState        *state,
                                              BfMailer       *mailer,
                                              BfAuthority    *authority);
const char     *bf_worker_get_name           (BfWorker       *self);
BfWorkerConfig *bf_worker_get_config         (BfWorker       *self);
void            bf_worker_set_config         (BfWorker       *self,
                                              BfWorkerConfig *config);
void            bf_worker_set_observer       (BfWorker       *self,
                                              const BfWorkerObserver *observer,
                                              gpointer        data);
void            bf_worker_set_duplicate_ping_timeout (BfWorker *self,
                                              guint64         timeout_usec);
BfWorkerLink   *bf_worker_get_link           (BfWorker       *self);
BfLatent       *bf_worker_get_latent         (BfWorker       *self);
gboolean        bf_worker_check_password     (BfWorker       *self,
                                              const char     *password);
gboolean        bf_worker_check_pb_response  (BfWorker       *self,
                                              const guint8   *challenge,
                                              gsize           challenge_len,
                                              const guint8   *response,
                                              gsize           response_len);

void            bf_worker_offer_connection   (BfWorker       *self,
                                              BfWorkerLink   *connection);
void            bf_worker_disconnect         (BfWorker       *self,
                                              const char     *reason);
void            bf_worker_request_shutdown   (BfWorker       *self);

gboolean        bf_worker_is_missing         (BfWorker       *self);
gboolean        bf_worker_is_connected       (BfWorker       *self);
const char     *bf_worker_why_not            (BfWorker       *self,
                                              const char     *builder,
                                              const char * const *labels);
gboolean        bf_worker_has_labels         (BfWorker       *self,
                                              const char * const *labels);
gboolean        bf_worker_could_have_labels  (BfWorker       *self,
                                              const char * const *labels);
gboolean        bf_worker_runs_builder       (BfWorker       *self,
                                              const char     *builder);
gboolean        bf_worker_can_take_build     (BfWorker       *self,
                                              const char     *builder);
gboolean        bf_worker_can_substantiate_for (BfWorker     *self,
                                              const char     *builder);
void            bf_worker_build_started      (BfWorker       *self,
                                              const char     *builder);
void            bf_worker_build_ended        (BfWorker       *self,
                                              const char     *builder,
                                              const char     *result,
                                              const char     *detail);
guint           bf_worker_get_active_builds  (BfWorker       *self);
void            bf_worker_set_quarantine_limits (BfWorker    *self,
                                              guint64         initial_usec,
                                              guint64         max_usec);

BfCacheWarmer  *bf_worker_new_cache_warmer   (void);
void            bf_worker_set_cache_warmer   (BfWorker       *self,
                                              BfCacheWarmer  *warmer);
void            bf_worker_flush_attach_announcements (void);

G_END_DECLS
