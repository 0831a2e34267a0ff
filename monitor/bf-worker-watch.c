/* bf-worker-watch.c: follow one worker's and its latent interface's changes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "bf-worker-util.h"
#include "bf-worker-watch.h"

struct _BfWorkerWatch
{
  GSignalGroup      *worker_signals;
  GSignalGroup      *latent_signals;
  BfWorkerWatchFunc  func;
  gpointer           user_data;
};

/* The worker may have gained or lost its LatentWorker interface. */
static void
follow_latent (BfWorkerWatch *watch)
{
  g_autoptr(GObject) worker = g_signal_group_dup_target (watch->worker_signals);
  g_autoptr(BfDBusLatentWorker) latent = NULL;

  if (worker != NULL)
    latent = bf_worker_dup_latent (BF_DBUS_WORKER (worker));
  g_signal_group_set_target (watch->latent_signals, latent);
}

static void
worker_notify_cb (GObject       *object,
                  GParamSpec    *pspec,
                  BfWorkerWatch *watch)
{
  follow_latent (watch);
  watch->func (watch->user_data, object, pspec);
}

static void
latent_notify_cb (GObject       *object,
                  GParamSpec    *pspec,
                  BfWorkerWatch *watch)
{
  watch->func (watch->user_data, object, pspec);
}

BfWorkerWatch *
bf_worker_watch_new (BfWorkerWatchFunc func,
                     gpointer          user_data)
{
  BfWorkerWatch *watch;

  g_return_val_if_fail (func != NULL, NULL);

  watch = g_new0 (BfWorkerWatch, 1);
  watch->func = func;
  watch->user_data = user_data;
  watch->worker_signals = g_signal_group_new (G_TYPE_OBJECT);
  g_signal_group_connect (watch->worker_signals, "notify", G_CALLBACK (worker_notify_cb), watch);
  watch->latent_signals = g_signal_group_new (G_TYPE_OBJECT);
  g_signal_group_connect (watch->latent_signals, "notify", G_CALLBACK (latent_notify_cb), watch);

  return watch;
}

/**
 * bf_worker_watch_set_worker:
 * @watch: a #BfWorkerWatch
 * @worker: (nullable): the worker to follow
 *
 * Does not call the watch's function: the caller shows @worker as it is.
 */
void
bf_worker_watch_set_worker (BfWorkerWatch *watch,
                            BfDBusWorker  *worker)
{
  g_return_if_fail (watch != NULL);
  g_return_if_fail (worker == NULL || BF_DBUS_IS_WORKER (worker));

  g_signal_group_set_target (watch->worker_signals, worker);
  follow_latent (watch);
}

void
bf_worker_watch_free (BfWorkerWatch *watch)
{
  if (watch == NULL)
    return;

  g_signal_group_set_target (watch->worker_signals, NULL);
  g_signal_group_set_target (watch->latent_signals, NULL);
  g_clear_object (&watch->worker_signals);
  g_clear_object (&watch->latent_signals);
  g_free (watch);
}
