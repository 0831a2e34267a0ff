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
 * @master: "HOST:PORT" of a daemon endpoint, as create-worker wants it
 * @master_url: "ws://HOST:PORT" or "wss://HOST:PORT" (%u)
 * @tls_certificate: (nullable): the daemon's certificate, for instances to trust
 */
typedef struct {
  const char *name;
  const char *password;
  const char *master;
  const char *master_url;
  const char *tls_certificate;
} BfLatentStartInfo;

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

  gpointer padding[8];
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

char           *bf_latent_expand                 (const char              *template,
                                                  const BfLatentStartInfo *info);

G_END_DECLS
