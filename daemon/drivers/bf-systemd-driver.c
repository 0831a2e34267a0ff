/* bf-systemd-driver.c: Latent=systemd, a unit started through systemd's D-Bus API
 *
 * Unit= (default buildbot-worker@%n.service) is started and stopped with
 * org.freedesktop.systemd1.Manager.StartUnit/StopUnit in "replace" mode,
 * and the job is followed to its JobRemoved signal: only the result "done"
 * counts as success.  The unit's worker must know its password itself
 * (Password=generate is not offered for this driver), and speaks the
 * protocol it was created with: %r in Unit= (pb or msgpack, from
 * Protocol=) picks a template per protocol, as in
 * Unit=buildbot-worker-%r@%n.service.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-systemd-driver.h"

#define SYSTEMD_NAME "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define JOB_TIMEOUT_MSEC (120 * 1000)

struct _BfSystemdDriver
{
  BfLatentDriver parent_instance;

  GDBusConnection *bus;
  guint job_removed_id;
  GHashTable *waiting;      /* job path -> GTask */
  GHashTable *finished;     /* job path -> result: JobRemoved before the reply */
  guint calls_in_flight;    /* StartUnit/StopUnit calls not answered yet */
};

G_DEFINE_FINAL_TYPE (BfSystemdDriver, bf_systemd_driver, BF_TYPE_LATENT_DRIVER)

typedef struct {
  char *unit;
  const char *method;
} JobData;

static void
job_data_free (JobData *d)
{
  g_free (d->unit);
  g_free (d);
}

static void
complete_job (GTask      *task,
              const char *result)
{
  JobData *d = g_task_get_task_data (task);

  if (g_str_equal (result, "done"))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                             "systemd's %s job for %s ended with result “%s”", d->method, d->unit, result);
}

static void
job_removed_cb (GDBusConnection *bus,
                const char      *sender,
                const char      *path,
                const char      *interface,
                const char      *signal,
                GVariant        *parameters,
                gpointer         user_data)
{
  BfSystemdDriver *self = user_data;
  const char *job, *unit, *result;
  guint32 id;
  GTask *task;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(uoss)")))
    return;
  g_variant_get (parameters, "(u&o&s&s)", &id, &job, &unit, &result);
  task = g_hash_table_lookup (self->waiting, job);
  if (task == NULL)
    {
      /* systemd sends JobRemoved for every job on the machine.  One of
       * ours can come before the reply that names it, so while a call is
       * in flight every result is kept; the last reply clears them. */
      if (self->calls_in_flight > 0)
        g_hash_table_insert (self->finished, g_strdup (job), g_strdup (result));
      return;
    }
  g_object_ref (task);
  g_hash_table_remove (self->waiting, job);
  complete_job (task, result);
  g_object_unref (task);
}

static void
call_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfSystemdDriver *self = g_task_get_source_object (task);
  JobData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
  const char *job;
  const char *early;

  self->calls_in_flight--;
  if (reply == NULL)
    {
      if (self->calls_in_flight == 0)
        g_hash_table_remove_all (self->finished);
      g_dbus_error_strip_remote_error (error);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "systemd refused to %s %s: %s",
                               g_str_equal (d->method, "StartUnit") ? "start" : "stop", d->unit, error->message);
      return;
    }
  g_variant_get (reply, "(&o)", &job);
  early = g_hash_table_lookup (self->finished, job);
  if (early != NULL)
    complete_job (task, early);
  else
    g_hash_table_insert (self->waiting, g_strdup (job), g_object_ref (task));
  if (self->calls_in_flight == 0)
    g_hash_table_remove_all (self->finished);
  else
    g_hash_table_remove (self->finished, job);
}

static void
run_job (BfSystemdDriver *self,
         GTask           *task)
{
  JobData *d = g_task_get_task_data (task);

  self->calls_in_flight++;
  g_dbus_connection_call (self->bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, d->method,
                          g_variant_new ("(ss)", d->unit, "replace"), G_VARIANT_TYPE ("(o)"),
                          G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC, g_task_get_cancellable (task),
                          call_cb, g_object_ref (task));
}

static void
subscribe_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, NULL);

  /* Subscribe() only asks systemd to send signals at all; without it (an
   * old or mock manager) JobRemoved may still come.  Go on either way. */
  run_job (g_task_get_source_object (task), task);
}

static void
bus_cb (GObject      *source,
        GAsyncResult *res,
        gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfSystemdDriver *self = g_task_get_source_object (task);
  g_autoptr(GError) error = NULL;
  GDBusConnection *bus = g_bus_get_finish (res, &error);

  if (bus == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "cannot reach systemd on the system bus: %s", error->message);
      return;
    }
  if (self->bus == NULL)
    {
      self->bus = bus;
      self->job_removed_id = g_dbus_connection_signal_subscribe (bus, SYSTEMD_NAME, SYSTEMD_MANAGER,
                                                                 "JobRemoved", SYSTEMD_PATH, NULL,
                                                                 G_DBUS_SIGNAL_FLAGS_NONE,
                                                                 job_removed_cb, self, NULL);
    }
  else
    g_object_unref (bus);
  g_dbus_connection_call (self->bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                          NULL, NULL, G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC,
                          g_task_get_cancellable (task), subscribe_cb, g_object_ref (task));
}

static void
job_async (BfSystemdDriver     *self,
           const char          *method,
           const char          *unit,
           GCancellable        *cancellable,
           GAsyncReadyCallback  callback,
           gpointer             user_data,
           gpointer             tag)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  JobData *d = g_new0 (JobData, 1);

  g_task_set_source_tag (task, tag);
  d->unit = g_strdup (unit);
  d->method = method;
  g_task_set_task_data (task, d, (GDestroyNotify) job_data_free);
  if (self->bus == NULL)
    g_bus_get (G_BUS_TYPE_SYSTEM, cancellable, bus_cb, g_object_ref (task));
  else
    run_job (self, task);
}

static void
bf_systemd_driver_start_async (BfLatentDriver          *driver,
                               const BfLatentStartInfo *info,
                               GCancellable            *cancellable,
                               GAsyncReadyCallback      callback,
                               gpointer                 user_data)
{
  BfSystemdDriver *self = BF_SYSTEMD_DRIVER (driver);
  g_autofree char *unit = bf_latent_expand (bf_latent_driver_get_config (driver)->unit, info);

  bf_latent_driver_set_instance_id (driver, unit);
  job_async (self, "StartUnit", unit, cancellable, callback, user_data, bf_systemd_driver_start_async);
}

static gboolean
bf_systemd_driver_start_finish (BfLatentDriver  *driver,
                                GAsyncResult    *result,
                                GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
bf_systemd_driver_stop_async (BfLatentDriver      *driver,
                              gboolean             fast,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  BfSystemdDriver *self = BF_SYSTEMD_DRIVER (driver);
  const char *unit = bf_latent_driver_get_instance_id (driver);
  g_autofree char *fallback = NULL;

  if (unit == NULL)
    {
      BfLatentStartInfo info = { .name = bf_latent_driver_get_config (driver)->name };
      unit = fallback = bf_latent_expand (bf_latent_driver_get_config (driver)->unit, &info);
    }
  job_async (self, "StopUnit", unit, cancellable, callback, user_data, bf_systemd_driver_stop_async);
}

static gboolean
bf_systemd_driver_stop_finish (BfLatentDriver  *driver,
                               GAsyncResult    *result,
                               GError         **error)
{
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  bf_latent_driver_set_instance_id (driver, NULL);
  return TRUE;
}

static void
bf_systemd_driver_dispose (GObject *object)
{
  BfSystemdDriver *self = BF_SYSTEMD_DRIVER (object);

  if (self->bus && self->job_removed_id)
    g_dbus_connection_signal_unsubscribe (self->bus, self->job_removed_id);
  self->job_removed_id = 0;
  g_clear_object (&self->bus);
  g_clear_pointer (&self->waiting, g_hash_table_unref);
  g_clear_pointer (&self->finished, g_hash_table_unref);
  G_OBJECT_CLASS (bf_systemd_driver_parent_class)->dispose (object);
}

static void
bf_systemd_driver_class_init (BfSystemdDriverClass *klass)
{
  BfLatentDriverClass *driver_class = BF_LATENT_DRIVER_CLASS (klass);

  G_OBJECT_CLASS (klass)->dispose = bf_systemd_driver_dispose;
  driver_class->start_async = bf_systemd_driver_start_async;
  driver_class->start_finish = bf_systemd_driver_start_finish;
  driver_class->stop_async = bf_systemd_driver_stop_async;
  driver_class->stop_finish = bf_systemd_driver_stop_finish;
}

static void
bf_systemd_driver_init (BfSystemdDriver *self)
{
  self->waiting = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->finished = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}
