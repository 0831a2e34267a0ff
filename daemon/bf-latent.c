/* bf-latent.c: a latent worker's instance, published as org.buildfleet.Fleet1.LatentWorker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-error.h"
#include "bf-latent.h"

struct _BfLatent
{
  BfDBusLatentWorkerSkeleton parent_instance;

  BfWorkerConfig *config;
};

static void bf_latent_iface_init (BfDBusLatentWorkerIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfLatent, bf_latent, BF_DBUS_TYPE_LATENT_WORKER_SKELETON,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_LATENT_WORKER, bf_latent_iface_init))

static gboolean
handle_substantiate (BfDBusLatentWorker    *object,
                     GDBusMethodInvocation *invocation)
{
  g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_FAILED,
                                         "Latent drivers are not available in this version of buildfleetd");
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_insubstantiate (BfDBusLatentWorker    *object,
                       GDBusMethodInvocation *invocation,
                       gboolean               fast)
{
  g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_FAILED,
                                         "Latent drivers are not available in this version of buildfleetd");
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
bf_latent_iface_init (BfDBusLatentWorkerIface *iface)
{
  iface->handle_substantiate = handle_substantiate;
  iface->handle_insubstantiate = handle_insubstantiate;
}

static void
bf_latent_finalize (GObject *object)
{
  BfLatent *self = BF_LATENT (object);

  g_clear_pointer (&self->config, bf_worker_config_unref);
  G_OBJECT_CLASS (bf_latent_parent_class)->finalize (object);
}

static void
bf_latent_class_init (BfLatentClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bf_latent_finalize;
}

static void
bf_latent_init (BfLatent *self)
{
}

void
bf_latent_set_config (BfLatent       *self,
                      BfWorkerConfig *config)
{
  BfDBusLatentWorker *l = BF_DBUS_LATENT_WORKER (self);

  g_clear_pointer (&self->config, bf_worker_config_unref);
  self->config = bf_worker_config_ref (config);
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_latent_worker_set_driver (l, bf_latent_kind_to_string (config->latent));
  bf_dbus_latent_worker_set_build_wait_timeout_usec (l, config->build_wait_timeout_usec);
  bf_dbus_latent_worker_set_substantiation_timeout_usec (l, config->substantiation_timeout_usec);
  g_object_thaw_notify (G_OBJECT (self));
}

BfLatent *
bf_latent_new (BfWorkerConfig *config)
{
  BfLatent *self = g_object_new (BF_TYPE_LATENT, NULL);

  bf_dbus_latent_worker_set_state (BF_DBUS_LATENT_WORKER (self), "not-substantiated");
  bf_dbus_latent_worker_set_last_error (BF_DBUS_LATENT_WORKER (self), "");
  bf_latent_set_config (self, config);
  return self;
}
