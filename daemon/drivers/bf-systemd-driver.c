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
 * Marking: before StartUnit, the unit's Description gets a suffix
 * " (org.buildfleet.daemon=ID org.buildfleet.worker=NAME)" through
 * SetUnitProperties with runtime=true: systemd writes it as a drop-in
 * under /run/systemd/system.control/UNIT.d/, which it keeps until reboot,
 * and Description is one of the few properties systemd changes on a unit
 * that is not transient (polkit verb "set-property").  After the stop the
 * suffix is taken off again, so a unit the daemon no longer runs does not
 * pass for one of its own.  ListUnits returns every loaded unit with its
 * Description: the engine-level reconciliation (bf-manager.c) lists the
 * units that run with this daemon's id and stops those no worker owns; a
 * unit without the id is never listed.  When systemd refuses the marking
 * (a polkit rule that allows start and stop only), the unit is started
 * all the same, with a warning: only the state file then knows it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-systemd-driver.h"

#define SYSTEMD_NAME "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define JOB_TIMEOUT_MSEC (120 * 1000)
#define UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define MARK_PREFIX " (" BF_LATENT_LABEL_DAEMON "="

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
  char *mark;               /* (nullable) the suffix to put on before the job */
  gboolean unmark;          /* take the suffix off once the job is done */
} JobData;

static void
job_data_free (JobData *d)
{
  g_free (d->unit);
  g_free (d->mark);
  g_free (d);
}

static void set_mark_async (BfSystemdDriver     *self,
                            const char          *unit,
                            const char          *mark,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data);

static void
unmarked_cb (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  JobData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (res), &error))
    g_debug ("Cannot take the buildfleet mark off %s: %s", d->unit, error->message);
  g_task_return_boolean (task, TRUE);
}

static void
complete_job (GTask      *task,
              const char *result)
{
  JobData *d = g_task_get_task_data (task);

  if (g_str_equal (result, "done") && d->unmark)
    set_mark_async (g_task_get_source_object (task), d->unit, NULL, NULL, unmarked_cb, g_object_ref (task));
  else if (g_str_equal (result, "done"))
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

static void run_job (BfSystemdDriver *self,
                     GTask           *task);

static void
marked_cb (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  JobData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (res), &error))
    {
      if (g_task_return_error_if_cancelled (task))
        return;
      g_warning ("Cannot mark %s as this daemon's (%s); starting it unmarked: only the state file will "
                 "know it", d->unit, error->message);
    }
  run_job (g_task_get_source_object (task), task);
}

static void
run_job (BfSystemdDriver *self,
         GTask           *task)
{
  JobData *d = g_task_get_task_data (task);

  if (d->mark != NULL)
    {
      g_autofree char *mark = g_steal_pointer (&d->mark);
      set_mark_async (self, d->unit, mark, g_task_get_cancellable (task), marked_cb, g_object_ref (task));
      return;
    }
  self->calls_in_flight++;
  g_dbus_connection_call (self->bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, d->method,
                          g_variant_new ("(ss)", d->unit, "replace"), G_VARIANT_TYPE ("(o)"),
                          G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC, g_task_get_cancellable (task),
                          call_cb, g_object_ref (task));
}

/* The system bus, once, with the JobRemoved subscription.  Subscribe()
 * asks systemd to send its signals at all; its answer need not be awaited
 * (calls on one connection reach systemd in order), and without it (an old
 * or mock manager) JobRemoved may still come. */
static void
adopt_bus (BfSystemdDriver *self,
           GDBusConnection *bus)
{
  if (self->bus != NULL)
    {
      g_object_unref (bus);
      return;
    }
  self->bus = bus;
  self->job_removed_id = g_dbus_connection_signal_subscribe (bus, SYSTEMD_NAME, SYSTEMD_MANAGER,
                                                             "JobRemoved", SYSTEMD_PATH, NULL,
                                                             G_DBUS_SIGNAL_FLAGS_NONE,
                                                             job_removed_cb, self, NULL);
  g_dbus_connection_call (bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                          NULL, NULL, G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC, NULL, NULL, NULL);
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
  adopt_bus (self, bus);
  run_job (self, task);
}

/* @mark: (nullable): put on the unit before the job (a start);
 * @unmark: take the mark off once the job is done (a stop). */
static void
job_async (BfSystemdDriver     *self,
           const char          *method,
           const char          *unit,
           const char          *mark,
           gboolean             unmark,
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
  d->mark = g_strdup (mark);
  d->unmark = unmark;
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
  g_autofree char *mark = NULL;

  if (info->daemon_id != NULL)
    mark = g_strdup_printf (MARK_PREFIX "%s " BF_LATENT_LABEL_WORKER "=%s)", info->daemon_id, info->name);
  bf_latent_driver_set_instance_id (driver, unit);
  job_async (self, "StartUnit", unit, mark, FALSE, cancellable, callback, user_data, bf_systemd_driver_start_async);
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
  job_async (self, "StopUnit", unit, NULL, TRUE, cancellable, callback, user_data, bf_systemd_driver_stop_async);
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

/* Marking ------------------------------------------------------------------------ */

typedef struct {
  char *unit;
  char *mark;
} MarkData;

static void
mark_data_free (MarkData *m)
{
  g_free (m->unit);
  g_free (m->mark);
  g_free (m);
}

/* The reply of a call made for @task, or %NULL once @task has returned
 * the error. */
static GVariant *
finish_call (GObject      *source,
             GAsyncResult *res,
             GTask        *task)
{
  GError *error = NULL;
  GVariant *reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

  if (reply == NULL)
    {
      g_dbus_error_strip_remote_error (error);
      g_task_return_error (task, error);
    }
  return reply;
}

static void
mark_set_cb (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GVariant) reply = finish_call (source, res, task);

  if (reply != NULL)
    g_task_return_boolean (task, TRUE);
}

static void
description_cb (GObject      *source,
                GAsyncResult *res,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  MarkData *m = g_task_get_task_data (task);
  g_autoptr(GVariant) reply = finish_call (source, res, task);
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariantBuilder) props = NULL;
  g_autofree char *base = NULL;
  g_autofree char *wanted = NULL;
  const char *description, *old;

  if (reply == NULL)
    return;
  g_variant_get (reply, "(v)", &value);
  description = g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) ? g_variant_get_string (value, NULL) : "";
  /* A mark an earlier start left (a daemon killed before the stop) goes. */
  old = strstr (description, MARK_PREFIX);
  base = old ? g_strndup (description, old - description) : g_strdup (description);
  wanted = g_strconcat (base, m->mark ? m->mark : "", NULL);
  if (g_str_equal (wanted, description))
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  props = g_variant_builder_new (G_VARIANT_TYPE ("a(sv)"));
  g_variant_builder_add (props, "(sv)", "Description", g_variant_new_string (wanted));
  g_dbus_connection_call (G_DBUS_CONNECTION (source), SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                          "SetUnitProperties", g_variant_new ("(sba(sv))", m->unit, TRUE, props),
                          NULL, G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC, g_task_get_cancellable (task),
                          mark_set_cb, g_object_ref (task));
}

static void
loaded_cb (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GVariant) reply = finish_call (source, res, task);
  const char *path;

  if (reply == NULL)
    return;
  g_variant_get (reply, "(&o)", &path);
  g_dbus_connection_call (G_DBUS_CONNECTION (source), SYSTEMD_NAME, path, "org.freedesktop.DBus.Properties",
                          "Get", g_variant_new ("(ss)", UNIT_IFACE, "Description"), G_VARIANT_TYPE ("(v)"),
                          G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC, g_task_get_cancellable (task),
                          description_cb, g_object_ref (task));
}

/* Puts @mark at the end of @unit's Description (replacing one there), or
 * with @mark %NULL takes it off; a runtime change, gone at reboot. */
static void
set_mark_async (BfSystemdDriver     *self,
                const char          *unit,
                const char          *mark,
                GCancellable        *cancellable,
                GAsyncReadyCallback  callback,
                gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  MarkData *m = g_new0 (MarkData, 1);

  g_task_set_source_tag (task, set_mark_async);
  m->unit = g_strdup (unit);
  m->mark = g_strdup (mark);
  g_task_set_task_data (task, m, (GDestroyNotify) mark_data_free);
  g_dbus_connection_call (self->bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "LoadUnit",
                          g_variant_new ("(s)", unit), G_VARIANT_TYPE ("(o)"), G_DBUS_CALL_FLAGS_NONE,
                          JOB_TIMEOUT_MSEC, cancellable, loaded_cb, g_object_ref (task));
}

/* Listing ------------------------------------------------------------------------ */

static char *
bf_systemd_driver_engine_key (BfLatentDriver *driver)
{
  return g_strdup ("systemd");
}

static void
units_listed_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  const char *daemon_id = g_task_get_task_data (task);
  g_autofree char *ours = g_strconcat (MARK_PREFIX, daemon_id, " " BF_LATENT_LABEL_WORKER "=", NULL);
  g_autoptr(GVariant) reply = finish_call (source, res, task);
  g_autoptr(GPtrArray) instances = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_latent_instance_free);
  g_autoptr(GVariantIter) iter = NULL;
  const char *name, *description, *active;

  if (reply == NULL)
    return;
  g_variant_get (reply, "(a(ssssssouso))", &iter);
  while (g_variant_iter_next (iter, "(&s&s&s&s&s&s&ou&s&o)", &name, &description, NULL, &active,
                              NULL, NULL, NULL, NULL, NULL, NULL))
    {
      const char *mark = strstr (description, ours);
      const char *worker = mark ? mark + strlen (ours) : NULL;
      const char *end = worker ? strchr (worker, ')') : NULL;
      BfLatentInstance *instance;

      /* Only what runs: a stopped unit is nothing to stop. */
      if (end == NULL || g_str_equal (active, "inactive") || g_str_equal (active, "failed"))
        continue;
      instance = g_new0 (BfLatentInstance, 1);
      instance->id = g_strdup (name);
      instance->worker = g_strndup (worker, end - worker);
      g_ptr_array_add (instances, instance);
    }
  g_task_return_pointer (task, g_steal_pointer (&instances), (GDestroyNotify) g_ptr_array_unref);
}

static void
list_units (BfSystemdDriver *self,
            GTask           *task)
{
  g_dbus_connection_call (self->bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "ListUnits", NULL,
                          G_VARIANT_TYPE ("(a(ssssssouso))"), G_DBUS_CALL_FLAGS_NONE, JOB_TIMEOUT_MSEC,
                          g_task_get_cancellable (task), units_listed_cb, g_object_ref (task));
}

static void
list_bus_cb (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;
  GDBusConnection *bus = g_bus_get_finish (res, &error);

  if (bus == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  adopt_bus (g_task_get_source_object (task), bus);
  list_units (g_task_get_source_object (task), task);
}

static void
bf_systemd_driver_list_instances_async (BfLatentDriver      *driver,
                                        const char          *daemon_id,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data)
{
  BfSystemdDriver *self = BF_SYSTEMD_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, bf_systemd_driver_list_instances_async);
  g_task_set_task_data (task, g_strdup (daemon_id), g_free);
  if (self->bus == NULL)
    g_bus_get (G_BUS_TYPE_SYSTEM, cancellable, list_bus_cb, g_object_ref (task));
  else
    list_units (self, task);
}

static GPtrArray *
bf_systemd_driver_list_instances_finish (BfLatentDriver  *driver,
                                         GAsyncResult    *result,
                                         GError         **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
bf_systemd_driver_stop_instance_async (BfLatentDriver      *driver,
                                       const char          *id,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  job_async (BF_SYSTEMD_DRIVER (driver), "StopUnit", id, NULL, TRUE, cancellable, callback, user_data,
             bf_systemd_driver_stop_instance_async);
}

static gboolean
bf_systemd_driver_stop_instance_finish (BfLatentDriver  *driver,
                                        GAsyncResult    *result,
                                        GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Object --------------------------------------------------------------------------- */

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
  driver_class->engine_key = bf_systemd_driver_engine_key;
  driver_class->list_instances_async = bf_systemd_driver_list_instances_async;
  driver_class->list_instances_finish = bf_systemd_driver_list_instances_finish;
  driver_class->stop_instance_async = bf_systemd_driver_stop_instance_async;
  driver_class->stop_instance_finish = bf_systemd_driver_stop_instance_finish;
}

static void
bf_systemd_driver_init (BfSystemdDriver *self)
{
  self->waiting = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->finished = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}
