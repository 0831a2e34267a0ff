/* bf-latent-driver.h: the engine that starts and stops latent worker instances
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

#include "bf-config.h"

G_BEGIN_DECLS

/**
 * BfLatentStartInfo:
 * @name: the worker name (%n)
 * @password: the password the instance must use (%p); never logged
 * @master: "HOST:PORT" of a daemon endpoint of @protocol, as create-worker wants it
 * @master_url: "ws://HOST:PORT" or "wss://HOST:PORT" for msgpack,
 *   "pb://HOST:PORT" or "pbs://HOST:PORT" (TLS) for PB (%u)
 * @tls_certificate: (nullable): the daemon's certificate, for instances to trust
 * @protocol: "pb" or "msgpack": what the instance is to speak (%r), from
 *   the worker's Protocol= (see bf_worker_protocol_to_string())
 * @daemon_id: (nullable): the daemon's persistent id
 *   (bf_state_get_daemon_id()); drivers label the instance with it
 *   (BF_LATENT_LABEL_DAEMON) so a restarted daemon can find it
 */
typedef struct {
  const char *name;
  const char *password;
  const char *master;
  const char *master_url;
  const char *tls_certificate;
  const char *protocol;
  const char *daemon_id;
} BfLatentStartInfo;

/* What every instance a driver starts carries (container labels, unit
 * properties, BUILDFLEET_DAEMON_ID / BUILDFLEET_WORKER_NAME for commands). */
#define BF_LATENT_LABEL_DAEMON "org.buildfleet.daemon"
#define BF_LATENT_LABEL_WORKER "org.buildfleet.worker"

/**
 * BfLatentInstance:
 * @id: the engine's id of the instance (as bf_latent_driver_get_instance_id())
 * @worker: the worker name it is labelled with
 *
 * One instance found by bf_latent_driver_list_instances_async().
 */
typedef struct {
  char *id;
  char *worker;
} BfLatentInstance;

void bf_latent_instance_free (BfLatentInstance *instance);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfLatentInstance, bf_latent_instance_free)

#define BF_TYPE_LATENT_DRIVER (bf_latent_driver_get_type ())
G_DECLARE_DERIVABLE_TYPE (BfLatentDriver, bf_latent_driver, BF, LATENT_DRIVER, GObject)

/**
 * BfLatentDriverClass:
 * @start_async: start an instance; completes once the engine says it is
 *   started (the daemon then waits for the worker to connect).  Must honour
 *   the cancellable: a cancelled start leaves nothing running.
 * @start_finish: finish @start_async
 * @stop_async: stop the instance started last, or the one named by
 *   bf_latent_driver_set_instance_id(); @fast skips waiting for a clean exit
 * @stop_finish: finish @stop_async
 * @engine_key: (nullable): for drivers that can list their engine's
 *   instances: a key naming the engine (driver and endpoint, e.g.
 *   "docker unix:///run/docker.sock"); drivers with the same key list the
 *   same instances, so the manager asks one of them.  %NULL (the default)
 *   when the driver cannot list.
 * @list_instances_async: list the engine's instances labelled with
 *   @daemon_id, whatever worker they belong to, running or not.  Only
 *   called when @engine_key returns a key.
 * @list_instances_finish: finish @list_instances_async: a GPtrArray of
 *   BfLatentInstance
 * @stop_instance_async: stop and remove the instance @id found by
 *   @list_instances_async (not necessarily this driver's worker's)
 * @stop_instance_finish: finish @stop_instance_async
 *
 * One subclass per engine: command, local, systemd.  Drivers report an
 * instance id (a pid, a unit name) through bf_latent_driver_get_instance_id()
 * so that an instance left behind by a killed daemon can be stopped by the
 * next one.
 */
struct _BfLatentDriverClass
{
  GObjectClass parent_class;

  void     (*start_async)  (BfLatentDriver          *self,
                            const BfLatentStartInfo *info,
                            GCancellable            *cancellable,
                            GAsyncReadyCallback      callback,
                            gpointer                 user_data);
  gboolean (*start_finish) (BfLatentDriver          *self,
                            GAsyncResult            *result,
                            GError                 **error);
  void     (*stop_async)   (BfLatentDriver          *self,
                            gboolean                 fast,
                            GCancellable            *cancellable,
                            GAsyncReadyCallback      callback,
                            gpointer                 user_data);
  gboolean (*stop_finish)  (BfLatentDriver          *self,
                            GAsyncResult            *result,
                            GError                 **error);

  char *     (*engine_key)            (BfLatentDriver      *self);
  void       (*list_instances_async)  (BfLatentDriver      *self,
                                       const char          *daemon_id,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data);
  GPtrArray *(*list_instances_finish) (BfLatentDriver      *self,
                                       GAsyncResult        *result,
                                       GError             **error);
  void       (*stop_instance_async)   (BfLatentDriver      *self,
                                       const char          *id,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data);
  gboolean   (*stop_instance_finish)  (BfLatentDriver      *self,
                                       GAsyncResult        *result,
                                       GError             **error);

  gpointer padding[3];
};

BfLatentDriver *bf_latent_driver_new             (GType                    type,
                                                  BfWorkerConfig          *config,
                                                  const char              *state_directory);
BfWorkerConfig *bf_latent_driver_get_config      (BfLatentDriver          *self);
void            bf_latent_driver_set_config      (BfLatentDriver          *self,
                                                  BfWorkerConfig          *config);
const char     *bf_latent_driver_get_state_directory (BfLatentDriver      *self);
const char     *bf_latent_driver_get_instance_id (BfLatentDriver          *self);
void            bf_latent_driver_set_instance_id (BfLatentDriver          *self,
                                                  const char              *id);
void            bf_latent_driver_start_async     (BfLatentDriver          *self,
                                                  const BfLatentStartInfo *info,
                                                  GCancellable            *cancellable,
                                                  GAsyncReadyCallback      callback,
                                                  gpointer                 user_data);
gboolean        bf_latent_driver_start_finish    (BfLatentDriver          *self,
                                                  GAsyncResult            *result,
                                                  GError                 **error);
void            bf_latent_driver_stop_async      (BfLatentDriver          *self,
                                                  gboolean                 fast,
                                                  GCancellable            *cancellable,
                                                  GAsyncReadyCallback      callback,
                                                  gpointer                 user_data);
gboolean        bf_latent_driver_stop_finish     (BfLatentDriver          *self,
                                                  GAsyncResult            *result,
                                                  GError                 **error);

char           *bf_latent_driver_get_engine_key  (BfLatentDriver          *self);
void            bf_latent_driver_list_instances_async  (BfLatentDriver    *self,
                                                        const char        *daemon_id,
                                                        GCancellable      *cancellable,
                                                        GAsyncReadyCallback callback,
                                                        gpointer           user_data);
GPtrArray      *bf_latent_driver_list_instances_finish (BfLatentDriver    *self,
                                                        GAsyncResult      *result,
                                                        GError           **error);
void            bf_latent_driver_stop_instance_async   (BfLatentDriver    *self,
                                                        const char        *id,
                                                        GCancellable      *cancellable,
                                                        GAsyncReadyCallback callback,
                                                        gpointer           user_data);
gboolean        bf_latent_driver_stop_instance_finish  (BfLatentDriver    *self,
                                                        GAsyncResult      *result,
                                                        GError           **error);

void            bf_latent_run_async              (const char * const      *argv,
                                                  const char * const      *env,
                                                  const char              *what,
                                                  guint64                  timeout_usec,
                                                  GCancellable            *cancellable,
                                                  GAsyncReadyCallback      callback,
                                                  gpointer                 user_data);
gboolean        bf_latent_run_finish             (GAsyncResult            *result,
                                                  GError                 **error);

void            bf_latent_driver_emit_instance_exited (BfLatentDriver     *self,
                                                  const char              *message);
GStrv           bf_latent_driver_make_env        (const BfLatentStartInfo *info);
gboolean        bf_latent_info_is_pb             (const BfLatentStartInfo *info);

char           *bf_latent_expand                 (const char              *template,
                                                  const BfLatentStartInfo *info);

G_END_DECLS
