/* bf-ctl-run.c: run — lease a worker, run one command on it with its
 * output streamed as it comes, release the lease, exit with its code
 *
 * The order that loses nothing: RequestBuild (the reply names the build),
 * then a match rule for the build's whole subtree (path_namespace), then
 * the build's State, then RunCommand.  Output signals of the command may
 * arrive before RunCommand's reply names it: they are kept by path and
 * replayed once the reply comes.  Ctrl-C (or SIGTERM, SIGHUP) interrupts
 * the remote command, releases the build and exits 130.  The build is
 * not detached, so if buildfleetctl dies the daemon releases it anyway.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <glib-unix.h>

#include "bf-ctl.h"

typedef enum {
  RUN_WAITING,      /* for a worker */
  RUN_STARTING,     /* RunCommand sent */
  RUN_RUNNING,      /* command path known */
  RUN_RELEASING,    /* Release sent; exit when it answers */
} RunState;

typedef struct {
  BfCtl *ctl;
  GMainLoop *loop;
  GCancellable *cancellable;
  RunState state;
  char *build_path;
  char *command_path;
  char *match_rule;
  guint subscription;
  guint sigint_id, sigterm_id, sighup_id;
  guint name_watch;
  GPtrArray *early;             /* (path, member, params) of signals before command_path was known */
  int exit_code;
  gboolean stdout_open, stderr_open;
} Run;

static void release (Run *run, int exit_code);
static void handle_command_signal (Run *run, const char *member, GVariant *params);

static void
say (Run        *run,
     const char *format,
     ...) G_GNUC_PRINTF (2, 3);

static void
say (Run        *run,
     const char *format,
     ...)
{
  g_autofree char *text = NULL;
  va_list ap;

  va_start (ap, format);
  text = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_printerr ("buildfleetctl: %s\n", text);
}

static void
run_command_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Run *run = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;

  if (!bf_dbus_build_call_run_command_finish (BF_DBUS_BUILD (source), &path, result, &error))
    {
      if (run->state == RUN_RELEASING)
        return;
      g_dbus_error_strip_remote_error (error);
      say (run, "Cannot run the command: %s", error->message);
      release (run, BF_CTL_EXIT_RUN_FAILED);
      return;
    }
  run->command_path = g_steal_pointer (&path);
  if (run->state == RUN_RELEASING)
    return;
  run->state = RUN_RUNNING;
  /* Signals that came before the reply, in the order they came. */
  for (guint i = 0; i < run->early->len && run->state == RUN_RUNNING; i++)
    {
      GVariant *sig = g_ptr_array_index (run->early, i);
      const char *sig_path, *member;
      g_autoptr(GVariant) params = NULL;

      g_variant_get (sig, "(&o&s@*)", &sig_path, &member, &params);
      if (g_str_equal (sig_path, run->command_path))
        handle_command_signal (run, member, params);
    }
  g_ptr_array_set_size (run->early, 0);
}

static void
start_command (Run *run)
{
  g_autoptr(BfDBusBuild) build = NULL;
  g_autoptr(GError) error = NULL;
  GVariantBuilder args;

  run->state = RUN_STARTING;
  build = bf_dbus_build_proxy_new_sync (run->ctl->bus,
                                        G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS |
                                        G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES,
                                        BF_CTL_BUS_NAME, run->build_path, NULL, &error);
  if (build == NULL)
    {
      say (run, "%s", error->message);
      release (run, BF_CTL_EXIT_RUN_FAILED);
      return;
    }
  g_variant_builder_init (&args, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&args, "{sv}", "command",
                         g_variant_new_strv ((const char * const *) run->ctl->remote_argv, -1));
  if (run->ctl->workdir)
    g_variant_builder_add (&args, "{sv}", "workdir", g_variant_new_string (run->ctl->workdir));
  if (run->ctl->env)
    {
      GVariantBuilder env;

      g_variant_builder_init (&env, G_VARIANT_TYPE ("a{ss}"));
      for (guint i = 0; run->ctl->env[i]; i++)
        {
          const char *eq = strchr (run->ctl->env[i], '=');
          g_autofree char *key = g_strndup (run->ctl->env[i], (gsize) (eq - run->ctl->env[i]));

          g_variant_builder_add (&env, "{ss}", key, eq + 1);
        }
      g_variant_builder_add (&args, "{sv}", "env", g_variant_builder_end (&env));
    }
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (build), G_MAXINT);
  bf_dbus_build_call_run_command (build, "shell", g_variant_builder_end (&args),
                                  run->cancellable, run_command_cb, run);
}

static void
write_stream (Run        *run,
              int         fd,
              const char *text)
{
  gboolean *open = fd == STDOUT_FILENO ? &run->stdout_open : &run->stderr_open;

  if (*open && !bf_ctl_write_all (fd, text, strlen (text)))
    *open = FALSE;   /* a closed pipe: the command runs on, unread */
}

static void
handle_command_signal (Run        *run,
                       const char *member,
                       GVariant   *params)
{
  if (g_str_equal (member, "Output") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(ss)")))
    {
      const char *stream, *text;

      g_variant_get (params, "(&s&s)", &stream, &text);
      if (g_str_equal (stream, "stdout"))
        write_stream (run, STDOUT_FILENO, text);
      else if (g_str_equal (stream, "stderr"))
        write_stream (run, STDERR_FILENO, text);
      else if (g_str_equal (stream, "header") && run->ctl->verbose)
        write_stream (run, STDERR_FILENO, text);
    }
  else if (g_str_equal (member, "Completed") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(is)")))
    {
      gint32 code;
      const char *failure;

      g_variant_get (params, "(i&s)", &code, &failure);
      if (*failure)
        say (run, "The command failed on the worker: %s", failure);
      if (code < 0 || code > 255)
        {
          if (!*failure)
            say (run, "The command ended without an exit code (%d)", code);
          release (run, BF_CTL_EXIT_RUN_FAILED);
        }
      else
        release (run, *failure && code == 0 ? BF_CTL_EXIT_RUN_FAILED : code);
    }
}

static void
on_signal (GDBusConnection *bus,
           const char      *sender,
           const char      *path,
           const char      *iface,
           const char      *member,
           GVariant        *params,
           gpointer         user_data)
{
  Run *run = user_data;

  if (run->state == RUN_RELEASING || run->build_path == NULL)
    return;
  if (g_str_equal (path, run->build_path) && g_str_equal (iface, "org.buildfleet.Fleet1.Build"))
    {
      if (g_str_equal (member, "Started") && run->state == RUN_WAITING)
        start_command (run);
      else if (g_str_equal (member, "Finished") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(s)")))
        {
          const char *result;

          g_variant_get (params, "(&s)", &result);
          say (run, "The build ended before the command did: %s%s", result,
               g_str_equal (result, "lost") ? " (the worker went away)" :
               g_str_equal (result, "timeout") ? " (no worker took it in time)" : "");
          run->state = RUN_RELEASING;
          run->exit_code = BF_CTL_EXIT_RUN_FAILED;
          g_main_loop_quit (run->loop);
        }
      return;
    }
  if (!g_str_equal (iface, "org.buildfleet.Fleet1.Command"))
    return;
  if (run->state == RUN_STARTING)
    {
      g_ptr_array_add (run->early, g_variant_ref_sink (g_variant_new ("(os@*)", path, member, params)));
      return;
    }
  if (run->state == RUN_RUNNING && g_str_equal (path, run->command_path))
    handle_command_signal (run, member, params);
}

static void
release_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Run *run = user_data;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  /* A build that already finished is gone or refuses: nothing is held. */
  if (reply == NULL && !g_dbus_error_is_remote_error (error))
    say (run, "Cannot release the build %s: %s", run->build_path, error->message);
  g_main_loop_quit (run->loop);
}

static void
release (Run *run,
         int  exit_code)
{
  if (run->state == RUN_RELEASING)
    return;
  run->state = RUN_RELEASING;
  run->exit_code = exit_code;
  g_cancellable_cancel (run->cancellable);
  /* Release interrupts a command that still runs; the build's time ends. */
  g_dbus_connection_call (run->ctl->bus, BF_CTL_BUS_NAME, run->build_path,
                          "org.buildfleet.Fleet1.Build", "Release", NULL, NULL,
                          G_DBUS_CALL_FLAGS_NONE, 30000, NULL, release_cb, run);
}

static gboolean
on_unix_signal (gpointer user_data)
{
  Run *run = user_data;

  if (run->state == RUN_RELEASING)
    return G_SOURCE_CONTINUE;
  say (run, "Interrupted: stopping the command and releasing the build");
  /* The remote command first, then the lease: both before we go. */
  if (run->command_path)
    g_dbus_connection_call (run->ctl->bus, BF_CTL_BUS_NAME, run->command_path,
                            "org.buildfleet.Fleet1.Command", "Interrupt",
                            g_variant_new ("(s)", "interrupted by buildfleetctl (Ctrl-C)"), NULL,
                            G_DBUS_CALL_FLAGS_NONE, 30000, NULL, NULL, NULL);
  release (run, BF_CTL_EXIT_INTERRUPTED);
  return G_SOURCE_CONTINUE;
}

static void
on_name_vanished (GDBusConnection *bus,
                  const char      *name,
                  gpointer         user_data)
{
  Run *run = user_data;

  if (run->state == RUN_RELEASING)
    return;
  say (run, "buildfleetd left the bus: the build and its command are gone");
  run->state = RUN_RELEASING;
  run->exit_code = BF_CTL_EXIT_RUN_FAILED;
  g_main_loop_quit (run->loop);
}

static char *
get_build_state (Run     *run,
                 GError **error)
{
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GVariant) value = NULL;

  reply = g_dbus_connection_call_sync (run->ctl->bus, BF_CTL_BUS_NAME, run->build_path,
                                       "org.freedesktop.DBus.Properties", "Get",
                                       g_variant_new ("(ss)", "org.buildfleet.Fleet1.Build", "State"),
                                       G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(v)", &value);
  if (!g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    return g_strdup ("");
  return g_variant_dup_string (value, NULL);
}

int
bf_ctl_cmd_run (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfDBusManager) manager = NULL;
  g_autoptr(GVariant) match_reply = NULL;
  g_autofree char *state = NULL;
  GVariantBuilder options;
  Run run = {
    .ctl = ctl,
    .exit_code = BF_CTL_EXIT_RUN_FAILED,
    .stdout_open = TRUE,
    .stderr_open = TRUE,
  };

  for (guint i = 0; ctl->env && ctl->env[i]; i++)
    if (strchr (ctl->env[i], '=') == NULL || ctl->env[i][0] == '=')
      {
        g_printerr ("buildfleetctl: --env=%s: not KEY=VALUE\n", ctl->env[i]);
        return BF_CTL_EXIT_RUN_FAILED;
      }

  manager = bf_ctl_manager (ctl, &error);
  if (manager == NULL)
    {
      bf_ctl_error (ctl, error, NULL);
      return BF_CTL_EXIT_RUN_FAILED;
    }
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (ctl->worker)
    g_variant_builder_add (&options, "{sv}", "worker", g_variant_new_string (ctl->worker));
  if (ctl->labels)
    g_variant_builder_add (&options, "{sv}", "labels",
                           g_variant_new_strv ((const char * const *) ctl->labels, -1));
  bf_ctl_start_agent (ctl);
  if (!bf_dbus_manager_call_request_build_sync (manager, ctl->args[0], g_variant_builder_end (&options),
                                                &run.build_path, NULL, &error))
    {
      bf_ctl_stop_agent (ctl);
      bf_ctl_error (ctl, error, "Cannot request a build");
      return BF_CTL_EXIT_RUN_FAILED;
    }
  bf_ctl_stop_agent (ctl);

  run.loop = g_main_loop_new (NULL, FALSE);
  run.cancellable = g_cancellable_new ();
  run.early = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  run.sigint_id = g_unix_signal_add (SIGINT, on_unix_signal, &run);
  run.sigterm_id = g_unix_signal_add (SIGTERM, on_unix_signal, &run);
  run.sighup_id = g_unix_signal_add (SIGHUP, on_unix_signal, &run);
  run.name_watch = g_bus_watch_name_on_connection (ctl->bus, BF_CTL_BUS_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                                   NULL, on_name_vanished, &run, NULL);

  /* Every signal of the build and its commands, from before RunCommand. */
  run.subscription = g_dbus_connection_signal_subscribe (ctl->bus, BF_CTL_BUS_NAME, NULL, NULL, NULL, NULL,
                                                         G_DBUS_SIGNAL_FLAGS_NO_MATCH_RULE,
                                                         on_signal, &run, NULL);
  run.match_rule = g_strdup_printf ("type='signal',sender='%s',path_namespace='%s'",
                                    BF_CTL_BUS_NAME, run.build_path);
  match_reply = g_dbus_connection_call_sync (ctl->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "AddMatch",
                                             g_variant_new ("(s)", run.match_rule), NULL,
                                             G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (match_reply == NULL)
    {
      say (&run, "Cannot follow the build's output: %s", error->message);
      g_clear_error (&error);
      release (&run, BF_CTL_EXIT_RUN_FAILED);
    }
  else if ((state = get_build_state (&run, &error)) == NULL)
    {
      g_dbus_error_strip_remote_error (error);
      say (&run, "The build %s is gone: %s", run.build_path, error->message);
      run.exit_code = BF_CTL_EXIT_RUN_FAILED;
      run.state = RUN_RELEASING;
    }
  else if (g_str_equal (state, "running"))
    start_command (&run);
  else if (!g_str_equal (state, "pending"))
    {
      say (&run, "The build ended before it started (%s)", state);
      run.exit_code = BF_CTL_EXIT_RUN_FAILED;
      run.state = RUN_RELEASING;
    }
  else if (ctl->verbose || isatty (STDERR_FILENO))
    say (&run, "Waiting for a worker of %s (build %s)", ctl->args[0], run.build_path);

  if (run.state != RUN_RELEASING || g_cancellable_is_cancelled (run.cancellable))
    g_main_loop_run (run.loop);

  g_dbus_connection_signal_unsubscribe (ctl->bus, run.subscription);
  g_clear_handle_id (&run.sigint_id, g_source_remove);
  g_clear_handle_id (&run.sigterm_id, g_source_remove);
  g_clear_handle_id (&run.sighup_id, g_source_remove);
  g_clear_handle_id (&run.name_watch, g_bus_unwatch_name);
  /* Replies still on their way are answered to nobody. */
  g_dbus_connection_flush_sync (ctl->bus, NULL, NULL);
  g_main_loop_unref (run.loop);
  g_object_unref (run.cancellable);
  g_ptr_array_unref (run.early);
  g_free (run.build_path);
  g_free (run.command_path);
  g_free (run.match_rule);
  return run.exit_code;
}
