/* bf-local-driver.c: Latent=local, a buildbot-worker run by the daemon itself
 *
 * Each start writes a fresh worker base directory under
 * StateDirectory/local/NAME with `buildbot-worker create-worker --force`
 * (so a generated password is used once) and runs
 * `buildbot-worker start --nodaemon` in its own process group.  Stopping
 * sends SIGTERM to the group and SIGKILL after STOP_GRACE_MS.  The pid is
 * the instance id: a daemon killed with -9 leaves the worker running, and
 * the next daemon either adopts it when it connects or stops it by pid
 * (after checking that the pid still runs this worker).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bf-local-driver.h"
#include "bf-process-group.h"
#include "bf-util.h"

#define CREATE_TIMEOUT_USEC (60 * G_USEC_PER_SEC)
#define STOP_GRACE_MS 10000
/* create-worker only takes the password on its command line, where any
 * user could read it in ps: it gets this instead, and the real one is
 * written into buildbot.tac (mode 0600) afterwards. */
#define PASSWORD_PLACEHOLDER "buildfleet-password-placeholder"

struct _BfLocalDriver
{
  BfLatentDriver parent_instance;

  GSubprocess *process;
  GCancellable *wait_cancellable;
  gboolean stopping;
  char *tls_certificate;
};

G_DEFINE_FINAL_TYPE (BfLocalDriver, bf_local_driver, BF_TYPE_LATENT_DRIVER)

static const char *
buildbot_worker (void)
{
  const char *override = g_getenv ("BUILDFLEET_BUILDBOT_WORKER");
  return override && *override ? override : "buildbot-worker";
}

static char *
basedir_for (BfLatentDriver *driver)
{
  return g_build_filename (bf_latent_driver_get_state_directory (driver), "local",
                           bf_latent_driver_get_config (driver)->name, NULL);
}

static void
child_setup (gpointer data)
{
  /* Own process group: stop signals reach twistd and whatever it runs. */
  setpgid (0, 0);
}

static void
process_exited_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  BfLocalDriver *self = user_data;      /* weak: the cancellable outlives us not */
  g_autoptr(GError) error = NULL;
  g_autofree char *message = NULL;
  GSubprocess *process = G_SUBPROCESS (source);

  if (!g_subprocess_wait_finish (process, result, &error))
    return;   /* cancelled: the driver is going away */
  if (self->process != process || self->stopping)
    return;
  if (g_subprocess_get_if_exited (process))
    message = g_strdup_printf ("the local buildbot-worker exited with status %d",
                               g_subprocess_get_exit_status (process));
  else
    message = g_strdup_printf ("the local buildbot-worker was killed by signal %d",
                               g_subprocess_get_term_sig (process));
  g_clear_object (&self->process);
  bf_latent_driver_set_instance_id (BF_LATENT_DRIVER (self), NULL);
  bf_latent_driver_emit_instance_exited (BF_LATENT_DRIVER (self), message);
}

static void
write_info (const char *basedir)
{
  g_autofree char *admin = g_build_filename (basedir, "info", "admin", NULL);
  g_autofree char *host = g_build_filename (basedir, "info", "host", NULL);
  g_autofree char *host_text = g_strdup_printf ("%s (buildfleetd local latent worker)\n", g_get_host_name ());

  g_file_set_contents (admin, "buildfleetd local driver\n", -1, NULL);
  g_file_set_contents (host, host_text, -1, NULL);
}

/* Puts the real password into buildbot.tac as a Python string literal. */
static gboolean
set_password (const char  *basedir,
              const char  *password,
              GError     **error)
{
  g_autofree char *tac = g_build_filename (basedir, "buildbot.tac", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GString) literal = g_string_new ("'");
  g_autoptr(GString) out = NULL;
  const char *at;

  if (!g_file_get_contents (tac, &text, NULL, error))
    return FALSE;
  at = strstr (text, "'" PASSWORD_PLACEHOLDER "'");
  if (at == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s does not hold the password where buildbot-worker 3.7 puts it", tac);
      return FALSE;
    }
  for (const char *c = password; *c; c++)
    {
      if (*c == '\\' || *c == '\'')
        g_string_append_c (literal, '\\');
      g_string_append_c (literal, *c);
    }
  g_string_append_c (literal, '\'');
  out = g_string_new_len (text, at - text);
  g_string_append (out, literal->str);
  g_string_append (out, at + strlen ("'" PASSWORD_PLACEHOLDER "'"));
  return g_file_set_contents_full (tac, out->str, out->len, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}

static void
create_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfLocalDriver *self = g_task_get_source_object (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autofree char *basedir = basedir_for (BF_LATENT_DRIVER (self));
  g_autofree char *pid = NULL;
  const char *argv[] = { buildbot_worker (), "start", "--nodaemon", basedir, NULL };
  g_autofree char *log_path = g_build_filename (basedir, "stdout.log", NULL);

  if (!bf_latent_run_finish (result, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;
  if (!set_password (basedir, g_task_get_task_data (task), &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  write_info (basedir);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT);
  g_subprocess_launcher_set_stdout_file_path (launcher, log_path);
  g_subprocess_launcher_set_flags (launcher, G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_set_child_setup (launcher, child_setup, NULL, NULL);
  if (self->tls_certificate)
    g_subprocess_launcher_setenv (launcher, "SSL_CERT_FILE", self->tls_certificate, TRUE);
  g_clear_object (&self->process);
  self->process = g_subprocess_launcher_spawnv (launcher, argv, &error);
  if (self->process == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "cannot run %s: %s", buildbot_worker (), error->message);
      return;
    }
  self->stopping = FALSE;
  pid = g_strdup (g_subprocess_get_identifier (self->process));
  bf_latent_driver_set_instance_id (BF_LATENT_DRIVER (self), pid);
  g_subprocess_wait_async (self->process, self->wait_cancellable, process_exited_cb, self);
  g_task_return_boolean (task, TRUE);
}

/* What an earlier start left that create-worker would not replace. */
static const char * const stale_files[] = { "buildbot.tac", "buildbot.tac.new" };

static void
bf_local_driver_start_async (BfLatentDriver          *driver,
                             const BfLatentStartInfo *info,
                             GCancellable            *cancellable,
                             GAsyncReadyCallback      callback,
                             gpointer                 user_data)
{
  BfLocalDriver *self = BF_LOCAL_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *basedir = basedir_for (driver);
  g_autofree char *parent = g_path_get_dirname (basedir);
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  g_auto(GStrv) argv = NULL;

  g_task_set_source_tag (task, bf_local_driver_start_async);
  if (self->process != NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_EXISTS,
                               "a local buildbot-worker for %s is still running", info->name);
      return;
    }
  if (g_mkdir_with_parents (parent, 0700) != 0)
    {
      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (errno),
                               "cannot create %s: %s", parent, g_strerror (errno));
      return;
    }
  g_free (self->tls_certificate);
  self->tls_certificate = g_strdup (info->tls_certificate);
  /* create-worker --force keeps an existing buildbot.tac and writes
   * buildbot.tac.new beside it: every start after the first would run with
   * the first start's password.  Each start writes a fresh one. */
  for (guint i = 0; i < G_N_ELEMENTS (stale_files); i++)
    {
      g_autofree char *path = g_build_filename (basedir, stale_files[i], NULL);

      if (g_unlink (path) != 0 && errno != ENOENT)
        {
          g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (errno),
                                   "cannot remove the old %s: %s", path, g_strerror (errno));
          return;
        }
    }

  g_strv_builder_add_many (b, buildbot_worker (), "create-worker", "--force", "--quiet",
                           "--protocol=msgpack_experimental_v7", "--keepalive=0", NULL);
  if (info->tls_certificate)
    g_strv_builder_add (b, "--use-tls");
  g_strv_builder_add_many (b, basedir, info->master, info->name, PASSWORD_PLACEHOLDER, NULL);
  g_task_set_task_data (task, g_strdup (info->password), g_free);
  argv = g_strv_builder_end (b);
  bf_latent_run_async ((const char * const *) argv, NULL, "buildbot-worker create-worker",
                       CREATE_TIMEOUT_USEC, cancellable, create_done_cb, g_object_ref (task));
}

static gboolean
bf_local_driver_start_finish (BfLatentDriver  *driver,
                              GAsyncResult    *result,
                              GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Stopping -------------------------------------------------------------------- */

static void
group_stopped_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;

  if (!bf_process_group_stop_finish (result, NULL, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  bf_latent_driver_set_instance_id (g_task_get_source_object (task), NULL);
  g_task_return_boolean (task, TRUE);
}

/* Is @pid still the buildbot-worker of @basedir (and not a reused pid)? */
static gboolean
pid_runs_basedir (pid_t       pid,
                  const char *basedir)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/cmdline", (int) pid);
  g_autofree char *cmdline = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &cmdline, &len, NULL))
    return FALSE;
  for (gsize i = 0; i < len; i += strlen (cmdline + i) + 1)
    if (g_str_equal (cmdline + i, basedir))
      return TRUE;
  return FALSE;
}

static void
bf_local_driver_stop_async (BfLatentDriver      *driver,
                            gboolean             fast,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  BfLocalDriver *self = BF_LOCAL_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  const char *id = bf_latent_driver_get_instance_id (driver);
  g_autofree char *basedir = basedir_for (driver);
  pid_t pid;

  g_task_set_source_tag (task, bf_local_driver_stop_async);
  if (id == NULL || (pid = (pid_t) g_ascii_strtoll (id, NULL, 10)) <= 1)
    {
      bf_latent_driver_set_instance_id (driver, NULL);
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (self->process == NULL && !pid_runs_basedir (pid, basedir))
    {
      /* Gone already, or the pid now belongs to somebody else. */
      bf_latent_driver_set_instance_id (driver, NULL);
      g_task_return_boolean (task, TRUE);
      return;
    }

  self->stopping = TRUE;
  /* The worker leads a process group of its own (see start); our own
   * child is reaped by GSubprocess's wait, an adopted one by init. */
  bf_process_group_stop_async (pid, fast ? 0 : STOP_GRACE_MS, group_stopped_cb,
                               g_steal_pointer (&task));
}

static gboolean
bf_local_driver_stop_finish (BfLatentDriver  *driver,
                             GAsyncResult    *result,
                             GError         **error)
{
  BfLocalDriver *self = BF_LOCAL_DRIVER (driver);

  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  g_clear_object (&self->process);
  return TRUE;
}

static void
bf_local_driver_dispose (GObject *object)
{
  BfLocalDriver *self = BF_LOCAL_DRIVER (object);

  g_cancellable_cancel (self->wait_cancellable);
  g_clear_object (&self->process);
  G_OBJECT_CLASS (bf_local_driver_parent_class)->dispose (object);
}

static void
bf_local_driver_finalize (GObject *object)
{
  BfLocalDriver *self = BF_LOCAL_DRIVER (object);

  g_clear_object (&self->wait_cancellable);
  g_free (self->tls_certificate);
  G_OBJECT_CLASS (bf_local_driver_parent_class)->finalize (object);
}

static void
bf_local_driver_class_init (BfLocalDriverClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  BfLatentDriverClass *driver_class = BF_LATENT_DRIVER_CLASS (klass);

  object_class->dispose = bf_local_driver_dispose;
  object_class->finalize = bf_local_driver_finalize;
  driver_class->start_async = bf_local_driver_start_async;
  driver_class->start_finish = bf_local_driver_start_finish;
  driver_class->stop_async = bf_local_driver_stop_async;
  driver_class->stop_finish = bf_local_driver_stop_finish;
}

static void
bf_local_driver_init (BfLocalDriver *self)
{
  self->wait_cancellable = g_cancellable_new ();
}
