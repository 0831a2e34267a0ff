/* bf-build.c: a lease of one worker, published as org.buildfleet.Fleet1.Build
 *
 * A build is pending until the manager assigns a worker; it then prepares
 * the builder directory on the worker (as Buildbot's master does on attach)
 * and runs.  It ends by Release(), when its owner leaves the bus (unless
 * detached), when its worker is lost, or when nobody took it in time.
 * Running commands are interrupted, or completed as lost, before
 * Finished is emitted, so nothing stays "running".
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <gio/gunixfdlist.h>
#include <glib/gstdio.h>

#include "bf-build.h"
#include "bf-command.h"
#include "bf-error.h"
#include "bf-log.h"
#include "bf-util.h"
#include "bf-variant-util.h"

#define MAX_COMMANDS_PER_BUILD 10000

struct _BfBuild
{
  BfDBusBuildSkeleton parent_instance;

  guint64 id;
  char *path;
  char *only_worker;
  gboolean detached;
  BfBuildPhase phase;
  GDBusConnection *bus;
  GDBusObjectManagerServer *object_manager;
  BfAuthority *authority;

  BfWorker *worker;
  guint owner_watch_id;
  guint timeout_source_id;
  GPtrArray *commands;          /* BfCommand, exported under path/commands/N */
  guint64 next_command;
  BfCommand *prepare;           /* mkdir of the builder directory */
};

enum {
  SIGNAL_PREPARED,
  SIGNAL_ENDED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void bf_build_iface_init (BfDBusBuildIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfBuild, bf_build, BF_DBUS_TYPE_BUILD_SKELETON,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_BUILD, bf_build_iface_init))

static BfDBusBuild *
iface (BfBuild *self)
{
  return BF_DBUS_BUILD (self);
}

const char *
bf_build_get_path (BfBuild *self)
{
  return self->path;
}

guint64
bf_build_get_id (BfBuild *self)
{
  return self->id;
}

const char *
bf_build_get_builder (BfBuild *self)
{
  return bf_dbus_build_get_builder (iface (self));
}

const char *
bf_build_get_only_worker (BfBuild *self)
{
  return self->only_worker;
}

BfWorker *
bf_build_get_worker (BfBuild *self)
{
  return self->worker;
}

static void worker_lost_cb (BfWorker   *worker,
                            const char *reason,
                            BfBuild    *self);

/* How a command that was still running when the build ended says why. */
static const char *
describe_result (const char *result)
{
  if (g_str_equal (result, "released"))
    return "the build was released";
  if (g_str_equal (result, "owner-gone"))
    return "the build's owner left the bus";
  if (g_str_equal (result, "lost"))
    return "the build's worker was lost";
  if (g_str_equal (result, "timeout"))
    return "the build timed out";
  return "the build ended";
}

/**
 * bf_build_finish:
 * @result: "released", "lost", "timeout", "owner-gone" or "failed"
 *
 * Ends the build once: running commands are interrupted on the worker and
 * completed at once with ExitCode -1 and "interrupted: ..." (a worker that
 * never answers cannot keep them running), the owner watch and timers are
 * dropped, Finished(@result) is emitted.  The manager frees the worker slot.
 */
void
bf_build_finish (BfBuild    *self,
                 const char *result)
{
  g_autoptr(BfBuild) hold = g_object_ref (self);
  g_autofree char *why = NULL;
  g_autofree char *failure = NULL;

  if (self->phase == BF_BUILD_FINISHED)
    return;
  self->phase = BF_BUILD_FINISHED;

  g_clear_handle_id (&self->owner_watch_id, g_bus_unwatch_name);
  g_clear_handle_id (&self->timeout_source_id, g_source_remove);
  if (self->worker)
    g_signal_handlers_disconnect_by_func (self->worker, worker_lost_cb, self);

  why = g_strdup_printf ("build %s", result);
  failure = g_strdup_printf ("interrupted: %s", describe_result (result));
  for (guint i = 0; i < self->commands->len; i++)
    bf_command_abandon (g_ptr_array_index (self->commands, i), why, failure);
  g_clear_object (&self->prepare);

  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_build_set_state (iface (self), "finished");
  bf_dbus_build_set_waiting_for (iface (self), "");
  bf_dbus_build_set_result (iface (self), result);
  bf_dbus_build_set_finished_usec (iface (self), (guint64) g_get_real_time ());
  g_object_thaw_notify (G_OBJECT (self));

  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO,
                    "BUILDFLEET_WORKER", self->worker ? bf_worker_get_name (self->worker) : "",
                    "MESSAGE", "Build %s for builder %s finished: %s", self->path,
                    bf_build_get_builder (self), result);
  bf_dbus_build_emit_finished (iface (self), result);
  g_signal_emit (self, signals[SIGNAL_ENDED], 0, result);
}

static void
worker_lost_cb (BfWorker   *worker,
                const char *reason,
                BfBuild    *self)
{
  bf_build_finish (self, "lost");
}

static void
owner_vanished_cb (GDBusConnection *bus,
                   const char      *name,
                   gpointer         user_data)
{
  BfBuild *self = user_data;

  bf_build_finish (self, "owner-gone");
}

static gboolean
timeout_cb (gpointer data)
{
  BfBuild *self = data;

  self->timeout_source_id = 0;
  if (self->phase == BF_BUILD_PENDING)
    bf_build_finish (self, "timeout");
  return G_SOURCE_REMOVE;
}

static void
start_running (BfBuild *self)
{
  g_autofree char *worker_path = g_strdup (bf_dbus_build_get_worker (iface (self)));

  self->phase = BF_BUILD_RUNNING;
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_build_set_state (iface (self), "running");
  bf_dbus_build_set_started_usec (iface (self), (guint64) g_get_real_time ());
  g_object_thaw_notify (G_OBJECT (self));
  bf_worker_info (bf_worker_get_name (self->worker), "Build %s for builder %s started on worker %s",
                  self->path, bf_build_get_builder (self), bf_worker_get_name (self->worker));
  bf_dbus_build_emit_started (iface (self), worker_path);
  g_signal_emit (self, signals[SIGNAL_PREPARED], 0, TRUE, "");
}

static void
prepare_finished_cb (BfCommand *prepare,
                     BfBuild   *self)
{
  BfDBusCommand *c = BF_DBUS_COMMAND (prepare);
  /* The worker's words, for two log lines: kept short. */
  g_autofree char *failure = bf_utf8_truncate (bf_dbus_command_get_failure (c), -1, BF_LIMIT_MESSAGE_BYTES);
  int rc = bf_dbus_command_get_exit_code (c);

  if (self->prepare != prepare || self->phase != BF_BUILD_PREPARING)
    return;
  g_clear_object (&self->prepare);
  if (*failure == '\0' && rc == 0)
    {
      start_running (self);
      return;
    }

  /* Back to the queue; the manager quarantines the worker. */
  bf_worker_message (bf_worker_get_name (self->worker),
                     "Worker %s could not prepare builder %s: %s",
                     bf_worker_get_name (self->worker), bf_build_get_builder (self),
                     *failure ? failure : "mkdir failed");
  g_signal_handlers_disconnect_by_func (self->worker, worker_lost_cb, self);
  self->phase = BF_BUILD_PENDING;
  bf_dbus_build_set_worker (iface (self), "/");
  g_signal_emit (self, signals[SIGNAL_PREPARED], 0, FALSE, *failure ? failure : "mkdir failed");
  g_clear_object (&self->worker);
}

/**
 * bf_build_set_labels:
 *
 * The labels every worker of this build must have (RequestBuild's option).
 */
void
bf_build_set_labels (BfBuild            *self,
                     const char * const *labels)
{
  static const char * const none[] = { NULL };

  bf_dbus_build_set_labels (iface (self), labels ? labels : none);
}

const char * const *
bf_build_get_labels (BfBuild *self)
{
  return bf_dbus_build_get_labels (iface (self));
}

/**
 * bf_build_set_waiting_for:
 *
 * The scheduler's word on why this pending build has no worker yet.
 */
void
bf_build_set_waiting_for (BfBuild    *self,
                          const char *why)
{
  if (g_strcmp0 (why, bf_dbus_build_get_waiting_for (iface (self))) != 0)
    bf_dbus_build_set_waiting_for (iface (self), why);
}

/**
 * bf_build_assign:
 *
 * The manager chose @worker (and counted the build on it).  Prepares the
 * builder directory, then the build runs; "prepared" says how it went.
 */
void
bf_build_assign (BfBuild    *self,
                 BfWorker   *worker,
                 const char *worker_path)
{
  BfWorkerLink *link = bf_worker_get_link (worker);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) neutral = NULL;
  g_autoptr(GVariant) args = NULL;
  g_autofree char *command_id = NULL;

  g_return_if_fail (self->phase == BF_BUILD_PENDING);
  g_return_if_fail (link != NULL);

  g_clear_handle_id (&self->timeout_source_id, g_source_remove);
  g_set_object (&self->worker, worker);
  bf_dbus_build_set_waiting_for (iface (self), "");
  self->phase = BF_BUILD_PREPARING;
  bf_dbus_build_set_worker (iface (self), worker_path);
  g_signal_connect_object (worker, "lost", G_CALLBACK (worker_lost_cb), self, 0);

  neutral = bf_command_validate_args ("mkdir", g_variant_new_parsed ("{'paths': <['.']>}"), NULL);
  args = bf_worker_link_prepare_command (link, "mkdir", neutral, bf_build_get_builder (self), &error);
  if (args == NULL)
    {
      /* No base directory reported: let the worker create directories
       * when commands run. */
      start_running (self);
      return;
    }
  command_id = g_strdup_printf ("%" G_GUINT64_FORMAT "-prepare", self->id);
  self->prepare = bf_command_new ("mkdir", command_id, bf_build_get_builder (self), self->authority);
  g_signal_connect_object (self->prepare, "finished", G_CALLBACK (prepare_finished_cb), self, 0);
  bf_command_start (self->prepare, link, g_steal_pointer (&args));
}

/* D-Bus ------------------------------------------------------------------------ */

static void
export_command (BfBuild   *self,
                BfCommand *command,
                guint64    index)
{
  g_autofree char *path = g_strdup_printf ("%s/commands/%" G_GUINT64_FORMAT, self->path, index);
  g_autoptr(BfDBusObjectSkeleton) object = bf_dbus_object_skeleton_new (path);

  bf_dbus_object_skeleton_set_command (object, BF_DBUS_COMMAND (command));
  g_dbus_object_manager_server_export (self->object_manager, G_DBUS_OBJECT_SKELETON (object));
}

/* RunCommand's "stdout-fd" and "stderr-fd" options, and a transfer's
 * "fd": handles into the message's descriptors.  They are not the remote
 * command's arguments. */
typedef struct {
  int fds[3];     /* stdout, stderr, transfer; -1 when not given */
} OutputFds;

static void output_fds_clear (OutputFds *o);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OutputFds, output_fds_clear)

static void
output_fds_clear (OutputFds *o)
{
  for (guint i = 0; i < G_N_ELEMENTS (o->fds); i++)
    if (o->fds[i] >= 0)
      {
        g_close (o->fds[i], NULL);
        o->fds[i] = -1;
      }
}

static GVariant *
take_output_fds (GDBusMethodInvocation  *invocation,
                 GVariant               *args,
                 OutputFds              *out,
                 GError                **error)
{
  static const char * const keys[] = { "stdout-fd", "stderr-fd", "fd" };
  GUnixFDList *fd_list = g_dbus_message_get_unix_fd_list (g_dbus_method_invocation_get_message (invocation));
  GVariantBuilder rest;
  gsize n = g_variant_n_children (args);

  g_variant_builder_init (&rest, G_VARIANT_TYPE_VARDICT);
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (args, i);
      g_autoptr(GVariant) key_v = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) value = g_variant_get_variant (boxed);
      const char *key = g_variant_get_string (key_v, NULL);
      int slot = -1;

      for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
        if (g_str_equal (key, keys[k]))
          slot = (int) k;
      gint32 handle;

      if (slot < 0)
        {
          g_variant_builder_add_value (&rest, entry);
          continue;
        }
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE_HANDLE))
        {
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                       "Argument “%s” must be a file descriptor (h), not %s", key,
                       g_variant_get_type_string (value));
          break;
        }
      handle = g_variant_get_handle (value);
      if (fd_list == NULL || handle < 0 || handle >= g_unix_fd_list_get_length (fd_list))
        {
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                       "Argument “%s”: no file descriptor was sent with the call for handle %d", key, handle);
          break;
        }
      if (out->fds[slot] >= 0)
        g_close (out->fds[slot], NULL);
      out->fds[slot] = g_unix_fd_list_get (fd_list, handle, error);
      if (out->fds[slot] < 0)
        break;
    }
  if (error != NULL && *error != NULL)
    {
      g_variant_builder_clear (&rest);
      output_fds_clear (out);
      return NULL;
    }
  return g_variant_ref_sink (g_variant_builder_end (&rest));
}

static void
run_command_authorized (GObject               *object,
                        GDBusMethodInvocation *invocation)
{
  BfBuild *self = BF_BUILD (object);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) neutral = NULL;
  g_autoptr(GVariant) wire = NULL;
  g_autoptr(BfCommand) command = NULL;
  g_autoptr(GVariant) args = NULL;
  g_autoptr(GVariant) command_args = NULL;
  g_auto(OutputFds) fds = { { -1, -1, -1 } };
  g_autofree char *command_id = NULL;
  g_autofree char *path = NULL;
  BfWorkerLink *link;
  const char *name;
  GVariant *commands;

  g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(&s@a{sv})", &name, &args);

  if (self->phase == BF_BUILD_FINISHED)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_FAILED,
                                             "Build %s has finished", self->path);
      return;
    }
  if (self->phase != BF_BUILD_RUNNING ||
      (link = bf_worker_get_link (self->worker)) == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_NOT_CONNECTED,
                                             "Build %s has no worker yet (it is %s)", self->path,
                                             bf_dbus_build_get_state (iface (self)));
      return;
    }
  if (self->commands->len >= MAX_COMMANDS_PER_BUILD)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_BUSY,
                                             "Build %s already ran %d commands", self->path,
                                             MAX_COMMANDS_PER_BUILD);
      return;
    }
  commands = bf_dbus_worker_get_commands (BF_DBUS_WORKER (self->worker));
  if (commands && !g_variant_lookup (commands, name, "&s", NULL))
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_INVALID_ARGS,
                                             "Worker %s does not offer the command “%s”",
                                             bf_worker_get_name (self->worker), name);
      return;
    }
  command_args = take_output_fds (invocation, args, &fds, &error);
  if (command_args != NULL && bf_command_is_transfer (name) != (fds.fds[2] >= 0))
    {
      if (fds.fds[2] < 0)
        g_set_error (&error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                     "Argument “fd” (h) is required for the %s command: the data goes through it", name);
      else
        g_set_error (&error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                     "Argument “fd” is not known to the %s command (it is for upload_file, upload_directory "
                     "and download_file)", name);
      g_clear_pointer (&command_args, g_variant_unref);
    }
  if (command_args != NULL)
    neutral = bf_command_validate_args (name, command_args, &error);
  if (neutral != NULL)
    wire = bf_worker_link_prepare_command (link, name, neutral, bf_build_get_builder (self), &error);
  if (wire == NULL)
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return;
    }

  self->next_command++;
  command_id = g_strdup_printf ("%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT, self->id, self->next_command);
  command = bf_command_new (name, command_id, bf_build_get_builder (self), self->authority);
  g_ptr_array_add (self->commands, g_object_ref (command));
  export_command (self, command, self->next_command);
  path = g_strdup_printf ("%s/commands/%" G_GUINT64_FORMAT, self->path, self->next_command);
  /* Answer first, so the caller knows the path before Output arrives. */
  bf_dbus_build_complete_run_command (iface (self), invocation, path);
  for (guint i = 0; i < 2; i++)
    if (fds.fds[i] >= 0)
      {
        bf_command_set_output_fd (command, i == 0 ? "stdout" : "stderr", fds.fds[i]);
        fds.fds[i] = -1;
      }
  if (fds.fds[2] >= 0)
    {
      bf_command_set_transfer (command, fds.fds[2], neutral);
      fds.fds[2] = -1;
    }
  bf_command_start (command, link, g_steal_pointer (&wire));
}

static gboolean
handle_run_command (BfDBusBuild           *object,
                    GDBusMethodInvocation *invocation,
                    const char            *name,
                    GVariant              *args)
{
  bf_authority_check (BF_BUILD (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_RUN_BUILDS, run_command_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
release_authorized (GObject               *object,
                    GDBusMethodInvocation *invocation)
{
  BfBuild *self = BF_BUILD (object);

  if (self->phase == BF_BUILD_FINISHED)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_FAILED,
                                             "Build %s has finished already", self->path);
      return;
    }
  bf_build_finish (self, "released");
  bf_dbus_build_complete_release (iface (self), invocation);
}

static gboolean
handle_release (BfDBusBuild           *object,
                GDBusMethodInvocation *invocation)
{
  bf_authority_check (BF_BUILD (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_RUN_BUILDS, release_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
bf_build_iface_init (BfDBusBuildIface *iface)
{
  iface->handle_run_command = handle_run_command;
  iface->handle_release = handle_release;
}

/* Disposing a build removes its commands from the bus; the manager
 * unexports the build itself. */
static void
bf_build_dispose (GObject *object)
{
  BfBuild *self = BF_BUILD (object);

  g_clear_handle_id (&self->owner_watch_id, g_bus_unwatch_name);
  g_clear_handle_id (&self->timeout_source_id, g_source_remove);
  if (self->commands && self->object_manager)
    {
      for (guint i = 0; i < self->commands->len; i++)
        {
          g_autofree char *path = g_strdup_printf ("%s/commands/%u", self->path, i + 1);
          g_dbus_object_manager_server_unexport (self->object_manager, path);
        }
    }
  g_clear_pointer (&self->commands, g_ptr_array_unref);
  g_clear_object (&self->prepare);
  g_clear_object (&self->worker);

  G_OBJECT_CLASS (bf_build_parent_class)->dispose (object);
}

static void
bf_build_finalize (GObject *object)
{
  BfBuild *self = BF_BUILD (object);

  g_clear_object (&self->bus);
  g_clear_object (&self->object_manager);
  g_clear_object (&self->authority);
  g_free (self->path);
  g_free (self->only_worker);
  G_OBJECT_CLASS (bf_build_parent_class)->finalize (object);
}

static void
bf_build_class_init (BfBuildClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_build_dispose;
  object_class->finalize = bf_build_finalize;

  /* (gboolean ok, const char *failure) after bf_build_assign() */
  signals[SIGNAL_PREPARED] =
    g_signal_new ("prepared", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_BOOLEAN, G_TYPE_STRING);
  /* (const char *result) once, when the build ends.  Not "finished":
   * that is the D-Bus interface's signal on this object. */
  signals[SIGNAL_ENDED] =
    g_signal_new ("ended", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
bf_build_init (BfBuild *self)
{
  self->commands = g_ptr_array_new_with_free_func (g_object_unref);
}

BfBuild *
bf_build_new (guint64                   id,
              const char               *builder,
              const char               *owner,
              gboolean                  detached,
              const char               *only_worker,
              guint64                   timeout_usec,
              GDBusConnection          *bus,
              GDBusObjectManagerServer *object_manager,
              BfAuthority              *authority)
{
  BfBuild *self = g_object_new (BF_TYPE_BUILD, NULL);
  BfDBusBuild *b = iface (self);

  self->id = id;
  self->path = g_strdup_printf ("/org/buildfleet/Fleet1/builds/%" G_GUINT64_FORMAT, id);
  self->detached = detached;
  self->only_worker = g_strdup (only_worker);
  self->bus = g_object_ref (bus);
  self->object_manager = g_object_ref (object_manager);
  self->authority = g_object_ref (authority);
  self->phase = BF_BUILD_PENDING;

  bf_dbus_build_set_builder (b, builder);
  bf_dbus_build_set_worker (b, "/");
  bf_dbus_build_set_state (b, "pending");
  bf_dbus_build_set_waiting_for (b, "looking for a worker");
  bf_dbus_build_set_result (b, "");
  bf_dbus_build_set_owner (b, owner);
  bf_dbus_build_set_created_usec (b, (guint64) g_get_real_time ());

  if (!detached)
    self->owner_watch_id = g_bus_watch_name_on_connection (bus, owner, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                                           NULL, owner_vanished_cb, self, NULL);
  if (timeout_usec > 0)
    self->timeout_source_id = bf_timeout_add (bf_usec_to_ms (timeout_usec), timeout_cb, self,
                                              "[buildfleetd] build wait timeout");
  return self;
}
