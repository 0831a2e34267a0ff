/* bf-command-driver.c: Latent=command, StartCommand and StopCommand
 *
 * StartCommand starts an instance (a VM, a container, a remote machine)
 * and exits; StopCommand stops it.  Both are split into words like a shell
 * would, then %n (name), %p (password), %u (master URL), %m (HOST:PORT) and
 * %r (protocol, pb or msgpack) are filled in word by word, so a value never
 * changes how the command is split.  The same values are in the
 * environment as BUILDFLEET_WORKER_NAME, BUILDFLEET_WORKER_PASSWORD,
 * BUILDFLEET_MASTER_URL, BUILDFLEET_MASTER and BUILDFLEET_PROTOCOL, and
 * under the names Buildbot's worker image reads (BUILDMASTER,
 * BUILDMASTER_PORT, WORKERNAME, WORKERPASS, BUILDMASTER_PROTOCOL), so an
 * engine can start that image unchanged.  BUILDFLEET_DAEMON_ID, the
 * daemon's persistent id, is there too, for both commands: a StartCommand
 * can label what it starts with it and the worker name, and a StopCommand
 * find it again by those labels (the stop of an instance left by an
 * earlier daemon has the name but not the id: nothing started it here).
 * A start is bounded by the substantiation timeout, a stop by
 * STOP_TIMEOUT_USEC; a non-zero exit status fails with the tail of the
 * command's output.  Both run in a process group of their own
 * (bf_latent_run_async): a start that times out or is cancelled is stopped
 * with every process it forked, not just the direct child.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-command-driver.h"

#define STOP_TIMEOUT_USEC (60 * G_USEC_PER_SEC)

struct _BfCommandDriver
{
  BfLatentDriver parent_instance;

  BfLatentStartInfo info;       /* of the last start, for StopCommand */
  char *name;
  char *password;
  char *master;
  char *master_url;
  char *daemon_id;
};

G_DEFINE_FINAL_TYPE (BfCommandDriver, bf_command_driver, BF_TYPE_LATENT_DRIVER)

static GStrv
expand_argv (const char              *command,
             const BfLatentStartInfo *info,
             GError                 **error)
{
  g_auto(GStrv) argv = NULL;

  if (!g_shell_parse_argv (command, NULL, &argv, error))
    return NULL;
  for (guint i = 0; argv[i]; i++)
    {
      char *expanded = bf_latent_expand (argv[i], info);
      g_free (argv[i]);
      argv[i] = expanded;
    }
  return g_steal_pointer (&argv);
}

static void
remember (BfCommandDriver         *self,
          const BfLatentStartInfo *info)
{
  g_free (self->name);
  self->name = g_strdup (info->name);
  g_free (self->password);
  self->password = g_strdup (info->password);
  g_free (self->master);
  self->master = g_strdup (info->master);
  g_free (self->master_url);
  self->master_url = g_strdup (info->master_url);
  g_free (self->daemon_id);
  self->daemon_id = g_strdup (info->daemon_id);
  self->info.name = self->name;
  self->info.password = self->password;
  self->info.master = self->master;
  self->info.master_url = self->master_url;
  self->info.daemon_id = self->daemon_id;
  self->info.protocol = bf_latent_info_is_pb (info) ? "pb" : "msgpack";
}

static void
run_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;

  if (bf_latent_run_finish (result, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
run (BfCommandDriver         *self,
     const char              *command,
     const char              *what,
     const BfLatentStartInfo *info,
     guint64                  timeout_usec,
     GTask                   *task)
{
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) argv = expand_argv (command, info, &error);
  g_auto(GStrv) env = bf_latent_driver_make_env (info);

  if (argv == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "%s cannot be parsed: %s", what, error->message);
      return;
    }
  bf_latent_run_async ((const char * const *) argv, (const char * const *) env, what, timeout_usec,
                       g_task_get_cancellable (task), run_done_cb, g_object_ref (task));
}

static void
bf_command_driver_start_async (BfLatentDriver          *driver,
                               const BfLatentStartInfo *info,
                               GCancellable            *cancellable,
                               GAsyncReadyCallback      callback,
                               gpointer                 user_data)
{
  BfCommandDriver *self = BF_COMMAND_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, bf_command_driver_start_async);
  remember (self, info);
  /* Recorded before it runs: a daemon killed now still stops it next time. */
  bf_latent_driver_set_instance_id (driver, "started");
  run (self, bf_latent_driver_get_config (driver)->start_command, "StartCommand", info, 0, task);
}

static gboolean
bf_command_driver_start_finish (BfLatentDriver  *driver,
                                GAsyncResult    *result,
                                GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
stop_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_task_return_error (task, error);
      return;
    }
  bf_latent_driver_set_instance_id (g_task_get_source_object (task), NULL);
  g_task_return_boolean (task, TRUE);
}

static void
bf_command_driver_stop_async (BfLatentDriver      *driver,
                              gboolean             fast,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  BfCommandDriver *self = BF_COMMAND_DRIVER (driver);
  BfWorkerConfig *config = bf_latent_driver_get_config (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(GTask) inner = NULL;
  BfLatentStartInfo info = self->info;

  g_task_set_source_tag (task, bf_command_driver_stop_async);
  if (config->stop_command == NULL || *config->stop_command == '\0')
    {
      /* Nothing to run: the daemon asked the worker itself to exit. */
      bf_latent_driver_set_instance_id (driver, NULL);
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (info.name == NULL)
    info.name = config->name;    /* a leftover from an earlier daemon */
  inner = g_task_new (self, cancellable, stop_done_cb, g_object_ref (task));
  run (self, config->stop_command, "StopCommand", &info, STOP_TIMEOUT_USEC, inner);
}

static gboolean
bf_command_driver_stop_finish (BfLatentDriver  *driver,
                               GAsyncResult    *result,
                               GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
bf_command_driver_finalize (GObject *object)
{
  BfCommandDriver *self = BF_COMMAND_DRIVER (object);

  g_free (self->name);
  g_free (self->password);
  g_free (self->master);
  g_free (self->master_url);
  g_free (self->daemon_id);
  G_OBJECT_CLASS (bf_command_driver_parent_class)->finalize (object);
}

static void
bf_command_driver_class_init (BfCommandDriverClass *klass)
{
  BfLatentDriverClass *driver_class = BF_LATENT_DRIVER_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = bf_command_driver_finalize;
  driver_class->start_async = bf_command_driver_start_async;
  driver_class->start_finish = bf_command_driver_start_finish;
  driver_class->stop_async = bf_command_driver_stop_async;
  driver_class->stop_finish = bf_command_driver_stop_finish;
}

static void
bf_command_driver_init (BfCommandDriver *self)
{
}
