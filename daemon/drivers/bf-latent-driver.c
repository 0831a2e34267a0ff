/* bf-latent-driver.c: the engine that starts and stops latent worker instances
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-latent-driver.h"
#include "bf-process-group.h"
#include "bf-util.h"

typedef struct
{
  BfWorkerConfig *config;
  char *state_directory;
  char *instance_id;
} BfLatentDriverPrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (BfLatentDriver, bf_latent_driver, G_TYPE_OBJECT)

static void
bf_latent_driver_finalize (GObject *object)
{
  BfLatentDriverPrivate *priv = bf_latent_driver_get_instance_private (BF_LATENT_DRIVER (object));

  g_clear_pointer (&priv->config, bf_worker_config_unref);
  g_free (priv->state_directory);
  g_free (priv->instance_id);
  G_OBJECT_CLASS (bf_latent_driver_parent_class)->finalize (object);
}

static guint instance_exited_signal;

static void
bf_latent_driver_class_init (BfLatentDriverClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bf_latent_driver_finalize;

  /**
   * BfLatentDriver::instance-exited:
   * @message: what happened
   *
   * The engine says the instance is gone, without being asked to stop it.
   */
  instance_exited_signal =
    g_signal_new ("instance-exited", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

void
bf_latent_driver_emit_instance_exited (BfLatentDriver *self,
                                       const char     *message)
{
  g_signal_emit (self, instance_exited_signal, 0, message);
}

static void
bf_latent_driver_init (BfLatentDriver *self)
{
}

/**
 * bf_latent_driver_new:
 * @type: a subclass of BfLatentDriver
 *
 * The base class knows none of its subclasses: whoever maps Latent= to a
 * driver (bf-latent.c) names the type.
 *
 * Returns: (transfer full): a driver of @type for @config.
 */
BfLatentDriver *
bf_latent_driver_new (GType           type,
                      BfWorkerConfig *config,
                      const char     *state_directory)
{
  BfLatentDriver *self;
  BfLatentDriverPrivate *priv;

  g_return_val_if_fail (g_type_is_a (type, BF_TYPE_LATENT_DRIVER), NULL);
  self = g_object_new (type, NULL);
  priv = bf_latent_driver_get_instance_private (self);
  priv->config = bf_worker_config_ref (config);
  priv->state_directory = g_strdup (state_directory);
  return self;
}

BfWorkerConfig *
bf_latent_driver_get_config (BfLatentDriver *self)
{
  BfLatentDriverPrivate *priv = bf_latent_driver_get_instance_private (self);
  return priv->config;
}

void
bf_latent_driver_set_config (BfLatentDriver *self,
                             BfWorkerConfig *config)
{
  BfLatentDriverPrivate *priv = bf_latent_driver_get_instance_private (self);

  g_clear_pointer (&priv->config, bf_worker_config_unref);
  priv->config = bf_worker_config_ref (config);
}

const char *
bf_latent_driver_get_state_directory (BfLatentDriver *self)
{
  BfLatentDriverPrivate *priv = bf_latent_driver_get_instance_private (self);
  return priv->state_directory;
}

/**
 * bf_latent_driver_get_instance_id:
 *
 * Returns: (nullable): what identifies the running instance to this driver
 *   (a pid, a unit name), for the leak record; %NULL when none runs.
 */
const char *
bf_latent_driver_get_instance_id (BfLatentDriver *self)
{
  BfLatentDriverPrivate *priv = bf_latent_driver_get_instance_private (self);
  return priv->instance_id;
}

void
bf_latent_driver_set_instance_id (BfLatentDriver *self,
                                  const char     *id)
{
  BfLatentDriverPrivate *priv = bf_latent_driver_get_instance_private (self);

  g_free (priv->instance_id);
  priv->instance_id = g_strdup (id);
}

void
bf_latent_driver_start_async (BfLatentDriver          *self,
                              const BfLatentStartInfo *info,
                              GCancellable            *cancellable,
                              GAsyncReadyCallback      callback,
                              gpointer                 user_data)
{
  BF_LATENT_DRIVER_GET_CLASS (self)->start_async (self, info, cancellable, callback, user_data);
}

gboolean
bf_latent_driver_start_finish (BfLatentDriver  *self,
                               GAsyncResult    *result,
                               GError         **error)
{
  return BF_LATENT_DRIVER_GET_CLASS (self)->start_finish (self, result, error);
}

void
bf_latent_driver_stop_async (BfLatentDriver      *self,
                             gboolean             fast,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  BF_LATENT_DRIVER_GET_CLASS (self)->stop_async (self, fast, cancellable, callback, user_data);
}

gboolean
bf_latent_driver_stop_finish (BfLatentDriver  *self,
                              GAsyncResult    *result,
                              GError         **error)
{
  return BF_LATENT_DRIVER_GET_CLASS (self)->stop_finish (self, result, error);
}

void
bf_latent_instance_free (BfLatentInstance *instance)
{
  g_free (instance->id);
  g_free (instance->worker);
  g_free (instance);
}

/**
 * bf_latent_driver_get_engine_key:
 *
 * Returns: (transfer full) (nullable): what names the engine this driver
 *   lists instances of, or %NULL when it cannot list them.
 */
char *
bf_latent_driver_get_engine_key (BfLatentDriver *self)
{
  BfLatentDriverClass *klass = BF_LATENT_DRIVER_GET_CLASS (self);

  if (klass->engine_key == NULL || klass->list_instances_async == NULL || klass->stop_instance_async == NULL)
    return NULL;
  return klass->engine_key (self);
}

void
bf_latent_driver_list_instances_async (BfLatentDriver      *self,
                                       const char          *daemon_id,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  BfLatentDriverClass *klass = BF_LATENT_DRIVER_GET_CLASS (self);

  g_return_if_fail (klass->list_instances_async != NULL);
  g_return_if_fail (daemon_id != NULL && *daemon_id != '\0');
  klass->list_instances_async (self, daemon_id, cancellable, callback, user_data);
}

/**
 * bf_latent_driver_list_instances_finish:
 *
 * Returns: (transfer container) (element-type BfLatentInstance): the
 *   instances, or %NULL with @error set.
 */
GPtrArray *
bf_latent_driver_list_instances_finish (BfLatentDriver  *self,
                                        GAsyncResult    *result,
                                        GError         **error)
{
  return BF_LATENT_DRIVER_GET_CLASS (self)->list_instances_finish (self, result, error);
}

void
bf_latent_driver_stop_instance_async (BfLatentDriver      *self,
                                      const char          *id,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data)
{
  BfLatentDriverClass *klass = BF_LATENT_DRIVER_GET_CLASS (self);

  g_return_if_fail (klass->stop_instance_async != NULL);
  klass->stop_instance_async (self, id, cancellable, callback, user_data);
}

gboolean
bf_latent_driver_stop_instance_finish (BfLatentDriver  *self,
                                       GAsyncResult    *result,
                                       GError         **error)
{
  return BF_LATENT_DRIVER_GET_CLASS (self)->stop_instance_finish (self, result, error);
}

static void
add_env (GStrvBuilder *b,
         const char   *key,
         const char   *value)
{
  g_autofree char *pair = g_strconcat (key, "=", value, NULL);

  g_strv_builder_add (b, pair);
}

/**
 * bf_latent_info_is_pb:
 *
 * Returns: whether the instance of @info is to speak Perspective Broker.
 */
gboolean
bf_latent_info_is_pb (const BfLatentStartInfo *info)
{
  return g_strcmp0 (info->protocol, "pb") == 0;
}

/**
 * bf_latent_driver_make_env:
 *
 * Returns: (transfer full): the environment every engine command gets:
 *   BUILDFLEET_WORKER_NAME, BUILDFLEET_WORKER_PASSWORD, BUILDFLEET_MASTER,
 *   BUILDFLEET_MASTER_URL, BUILDFLEET_PROTOCOL (pb or msgpack),
 *   BUILDFLEET_TLS_CERTIFICATE (with TLS), BUILDFLEET_DAEMON_ID (the
 *   daemon's persistent id, when known), and the names Buildbot's worker
 *   image reads (its buildbot.tac): BUILDMASTER, BUILDMASTER_PORT,
 *   WORKERNAME, WORKERPASS, BUILDMASTER_PROTOCOL (pb or
 *   msgpack_experimental_v7).
 */
GStrv
bf_latent_driver_make_env (const BfLatentStartInfo *info)
{
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  const char *pass = info->password ? info->password : "";
  const char *hostport = info->master ? info->master : "";
  const char *colon = strrchr (hostport, ':');
  g_autofree char *host = colon ? g_strndup (hostport, colon - hostport) : g_strdup (hostport);
  gsize host_len = strlen (host);

  /* BUILDMASTER is a host name or address: "[::1]" loses its brackets. */
  if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']')
    {
      memmove (host, host + 1, host_len - 2);
      host[host_len - 2] = '\0';
    }
  add_env (b, "BUILDFLEET_WORKER_NAME", info->name);
  add_env (b, "BUILDFLEET_WORKER_PASSWORD", pass);
  add_env (b, "BUILDFLEET_MASTER_URL", info->master_url ? info->master_url : "");
  add_env (b, "BUILDFLEET_MASTER", hostport);
  add_env (b, "BUILDFLEET_PROTOCOL", bf_latent_info_is_pb (info) ? "pb" : "msgpack");
  add_env (b, "BUILDMASTER", host);
  add_env (b, "BUILDMASTER_PORT", colon ? colon + 1 : "");
  add_env (b, "WORKERNAME", info->name);
  add_env (b, "WORKERPASS", pass);
  g_strv_builder_add (b, bf_latent_info_is_pb (info) ? "BUILDMASTER_PROTOCOL=pb"
                                                     : "BUILDMASTER_PROTOCOL=msgpack_experimental_v7");
  if (info->tls_certificate)
    add_env (b, "BUILDFLEET_TLS_CERTIFICATE", info->tls_certificate);
  if (info->daemon_id)
    add_env (b, "BUILDFLEET_DAEMON_ID", info->daemon_id);
  return g_strv_builder_end (b);
}

/**
 * bf_latent_expand:
 * @template: text with %n (name), %p (password), %u (master URL), %m
 *   (HOST:PORT), %r (protocol: pb or msgpack) and %% (a percent sign)
 *
 * Returns: (transfer full): @template with the values filled in.
 */
char *
bf_latent_expand (const char              *template,
                  const BfLatentStartInfo *info)
{
  GString *s = g_string_new (NULL);

  for (const char *c = template; *c; c++)
    {
      if (*c != '%' || c[1] == '\0')
        {
          g_string_append_c (s, *c);
          continue;
        }
      c++;
      switch (*c)
        {
        case 'n': g_string_append (s, info->name); break;
        case 'p': g_string_append (s, info->password ? info->password : ""); break;
        case 'u': g_string_append (s, info->master_url ? info->master_url : ""); break;
        case 'm': g_string_append (s, info->master ? info->master : ""); break;
        case 'r': g_string_append (s, bf_latent_info_is_pb (info) ? "pb" : "msgpack"); break;
        case '%': g_string_append_c (s, '%'); break;
        default: g_string_append_c (s, '%'); g_string_append_c (s, *c); break;
        }
    }
  return g_string_free (s, FALSE);
}

/* Running a command ------------------------------------------------------------
 *
 * Engines are driven by commands that must end (start-vm, stop-vm,
 * create-worker).  The exit status decides; the last bytes of the merged
 * output explain a failure.  Output is read as it comes but its end is not
 * awaited: a command that leaves a daemon behind holding the pipe still
 * counts as finished when it exits.
 *
 * Each command leads a process group of its own (bf-process-group.h).  One
 * that times out or whose caller gives up (a cancelled start: the
 * substantiation timeout, an insubstantiate) has its whole group stopped,
 * SIGTERM then SIGKILL after RUN_KILL_GRACE_MS, so no child of a hung
 * StartCommand survives the failed start; the task completes once the
 * group is gone.
 */

#define TAIL_MAX 2048
#define RUN_KILL_GRACE_MS 5000

typedef struct {
  GSubprocess *process;
  GPid pgid;
  GInputStream *output;
  GByteArray *tail;
  guint8 buffer[4096];
  char *what;
  guint timeout_id;
  gboolean timed_out;
  gboolean waited;            /* the direct child has exited, or the wait was cancelled */
  gboolean stopping_group;
  GError *wait_error;         /* the cancelled wait */
  GCancellable *read_cancellable;
} RunData;

static void
run_data_free (RunData *d)
{
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  if (d->read_cancellable)
    g_cancellable_cancel (d->read_cancellable);
  g_clear_object (&d->read_cancellable);
  g_clear_object (&d->output);
  g_clear_object (&d->process);
  g_clear_error (&d->wait_error);
  g_byte_array_unref (d->tail);
  g_free (d->what);
  g_free (d);
}

static void
read_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  GTask *task = user_data;    /* one reference held per read in flight */
  RunData *d = g_task_get_task_data (task);
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, NULL);

  if (n > 0)
    {
      g_byte_array_append (d->tail, d->buffer, n);
      if (d->tail->len > TAIL_MAX)
        g_byte_array_remove_range (d->tail, 0, d->tail->len - TAIL_MAX);
      if (!g_cancellable_is_cancelled (d->read_cancellable))
        {
          g_input_stream_read_async (d->output, d->buffer, sizeof d->buffer, G_PRIORITY_DEFAULT,
                                     d->read_cancellable, read_cb, task);
          return;
        }
    }
  g_object_unref (task);
}

/* Returns the task's result once the child has exited (or the caller gave
 * up) and no group stop is in flight. */
static void
run_complete (GTask *task)
{
  RunData *d = g_task_get_task_data (task);
  g_autofree char *tail = NULL;

  if (!d->waited || d->stopping_group)
    return;
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  g_cancellable_cancel (d->read_cancellable);
  if (d->wait_error)
    {
      g_task_return_error (task, g_steal_pointer (&d->wait_error));
      return;
    }

  tail = d->tail->len ? g_utf8_make_valid ((const char *) d->tail->data, d->tail->len) : g_strdup ("");
  g_strstrip (tail);
  if (d->timed_out)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                             "%s did not finish in time and was killed%s%s",
                             d->what, *tail ? ": " : "", tail);
  else if (g_subprocess_get_if_exited (d->process) && g_subprocess_get_exit_status (d->process) == 0)
    g_task_return_boolean (task, TRUE);
  else if (g_subprocess_get_if_exited (d->process))
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                             "%s exited with status %d%s%s", d->what,
                             g_subprocess_get_exit_status (d->process), *tail ? ": " : "", tail);
  else
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                             "%s was killed by signal %d%s%s", d->what,
                             g_subprocess_get_term_sig (d->process), *tail ? ": " : "", tail);
}

static void
group_stopped_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  RunData *d = g_task_get_task_data (task);

  bf_process_group_stop_finish (result, NULL, NULL);
  d->stopping_group = FALSE;
  run_complete (task);
}

static void
stop_group (GTask *task)
{
  RunData *d = g_task_get_task_data (task);

  if (d->stopping_group)
    return;
  d->stopping_group = TRUE;
  bf_process_group_stop_async (d->pgid, RUN_KILL_GRACE_MS, group_stopped_cb, g_object_ref (task));
}

static gboolean
run_timeout_cb (gpointer data)
{
  GTask *task = data;
  RunData *d = g_task_get_task_data (task);

  d->timeout_id = 0;
  d->timed_out = TRUE;
  stop_group (task);
  return G_SOURCE_REMOVE;
}

static void
run_wait_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  RunData *d = g_task_get_task_data (task);

  d->waited = TRUE;
  if (!g_subprocess_wait_finish (d->process, result, &d->wait_error))
    {
      /* Cancelled: stop all of it, nothing must be left running. */
      stop_group (task);
      return;
    }
  run_complete (task);
}

/**
 * bf_latent_run_async:
 * @argv: the command
 * @env: (nullable): extra environment, "KEY=VALUE"
 * @what: how to name the command in errors ("StartCommand")
 * @timeout_usec: kill it after this long; 0 for no limit
 *
 * Runs a command to its end, asynchronously, in a process group of its
 * own.  Timing out or cancelling stops the whole group before the task
 * completes.
 */
void
bf_latent_run_async (const char * const  *argv,
                     const char * const  *env,
                     const char          *what,
                     guint64              timeout_usec,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GError) error = NULL;
  RunData *d;

  g_task_set_source_tag (task, bf_latent_run_async);
  d = g_new0 (RunData, 1);
  d->tail = g_byte_array_new ();
  d->what = g_strdup (what);
  d->read_cancellable = g_cancellable_new ();
  g_task_set_task_data (task, d, (GDestroyNotify) run_data_free);

  launcher = bf_process_group_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT |
                                            G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                            G_SUBPROCESS_FLAGS_STDERR_MERGE);
  for (guint i = 0; env && env[i]; i++)
    {
      g_auto(GStrv) kv = g_strsplit (env[i], "=", 2);
      if (kv[0] && kv[1])
        g_subprocess_launcher_setenv (launcher, kv[0], kv[1], TRUE);
    }
  d->process = g_subprocess_launcher_spawnv (launcher, argv, &error);
  if (d->process == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "%s could not be started: %s", what, error->message);
      return;
    }
  d->pgid = bf_process_group_get_id (d->process);
  d->output = g_object_ref (g_subprocess_get_stdout_pipe (d->process));
  g_input_stream_read_async (d->output, d->buffer, sizeof d->buffer, G_PRIORITY_DEFAULT,
                             d->read_cancellable, read_cb, g_object_ref (task));
  if (timeout_usec > 0)
    d->timeout_id = bf_timeout_add (bf_usec_to_ms (timeout_usec), run_timeout_cb, task,
                                    "[buildfleetd] latent command timeout");
  g_subprocess_wait_async (d->process, cancellable, run_wait_cb, g_object_ref (task));
}

gboolean
bf_latent_run_finish (GAsyncResult  *result,
                      GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}
