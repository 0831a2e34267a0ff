/* main.c: buildfleetd, the worker manager daemon
 *
 * Options, bus name ownership, Unix signals and systemd notification.
 * Owns the name first and starts listening for workers only once the name
 * is ours, so a second instance leaves the first (and its port) alone.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <signal.h>

#include <locale.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <glib-unix.h>
#include <systemd/sd-daemon.h>

#include "bf-error.h"
#include "bf-heap.h"
#include "bf-log.h"
#include "bf-manager.h"
#include "bf-poller.h"
#include "bf-timer-queue.h"
#include "bf-websocket.h"
#include "bf-worker.h"
#include "bf-util.h"

#define BUS_NAME "org.buildfleet.Fleet1"
#define LISTEN_RETRY_MS 100
#define LISTEN_RETRIES 50
#define SHUTDOWN_TIMEOUT_S 20
/* What a big fleet's start-up allocates, roughly, for each byte of its
 * configuration (bf-heap.c): 50,000 workers of three lines are 2.6 MB of
 * configuration and 275 MB of heap at "ready". */
#define HEAP_PER_CONFIG_BYTE 128
#define HEAP_RESERVE_MIN ((gsize) 32 << 20)

typedef struct {
  GMainLoop *loop;
  BfConfig *config;
  BfManager *manager;
  gboolean session_bus;
  guint name_id;
  guint watchdog_id;
  guint listen_retry_id;
  guint listen_attempts;
  guint shutdown_timeout_id;
  gboolean shutting_down;
  GDBusConnection *bus;           /* watched for "closed" */
  gboolean bus_acquired;
  gboolean bus_lost;
  gboolean name_acquired;
  int exit_code;
  gint64 start_usec;
} BfApp;

static void
bf_app_free (BfApp *app)
{
  g_clear_handle_id (&app->watchdog_id, g_source_remove);
  g_clear_handle_id (&app->listen_retry_id, g_source_remove);
  g_clear_handle_id (&app->shutdown_timeout_id, g_source_remove);
  g_clear_handle_id (&app->name_id, g_bus_unown_name);
  if (app->bus != NULL)
    g_signal_handlers_disconnect_by_data (app->bus, app);
  g_clear_object (&app->bus);
  g_clear_object (&app->manager);
  g_clear_pointer (&app->config, bf_config_unref);
  g_clear_pointer (&app->loop, g_main_loop_unref);
  g_free (app);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfApp, bf_app_free)

static void
quit (BfApp *app,
      int    exit_code)
{
  if (app->exit_code == 0)
    app->exit_code = exit_code;
  g_main_loop_quit (app->loop);
}

static void
status_changed_cb (BfManager *manager,
                   BfApp     *app)
{
  g_autofree char *status = bf_manager_dup_status (manager);

  sd_notifyf (0, "STATUS=%s", status);
}

static gboolean
try_listen_cb (gpointer data)
{
  BfApp *app = data;
  g_autoptr(GError) error = NULL;

  app->listen_retry_id = 0;
  if (!bf_manager_start_listening (app->manager, &error))
    {
      /* With --replace the old instance may hold the port a moment longer. */
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE) &&
          ++app->listen_attempts < LISTEN_RETRIES)
        {
          app->listen_retry_id = bf_timeout_add (LISTEN_RETRY_MS, try_listen_cb, app,
                                                 "[buildfleetd] listen retry");
          return G_SOURCE_REMOVE;
        }
      g_printerr ("buildfleetd: %s\n", error->message);
      quit (app, EXIT_FAILURE);
      return G_SOURCE_REMOVE;
    }

  {
    g_autofree char *status = bf_manager_dup_status (app->manager);
    sd_notifyf (0, "READY=1\nSTATUS=%s", status);
    g_message ("buildfleetd %s ready on the %s bus in %.1f ms: %s", PACKAGE_VERSION,
               app->session_bus ? "session" : "system",
               (g_get_monotonic_time () - app->start_usec) / 1000.0, status);
  }
  bf_heap_reserve_end ();
  return G_SOURCE_REMOVE;
}

static const char *
bus_kind (BfApp *app)
{
  return app->session_bus ? "session" : "system";
}

/* The bus went away (dbus-daemon restarted or killed), or dropped us (it
 * does so to a connection that breaks one of its limits).  Without the
 * bus nobody can reach the fleet, and GDBus does not reconnect: exit with
 * a failure, so that systemd restarts the service (Restart=on-failure).
 * Admin state is written; latent instances are not stopped but stay
 * recorded in the state directory, for the next daemon to adopt. */
static void
bus_lost (BfApp      *app,
          const char *why)
{
  if (app->bus_lost)
    return;
  app->bus_lost = TRUE;
  g_printerr ("buildfleetd: lost the connection to the %s bus: %s; "
              "exiting so that systemd restarts the service\n", bus_kind (app), why);
  sd_notify (0, "STATUS=Lost the connection to the bus; exiting");
  bf_manager_keep_instances (app->manager);
  bf_manager_shutdown (app->manager);
  quit (app, EXIT_FAILURE);
}

static void
bus_closed_cb (GDBusConnection *bus,
               gboolean         remote_peer_vanished,
               GError          *error,
               BfApp           *app)
{
  bus_lost (app, error ? error->message :
                 remote_peer_vanished ? "the bus closed the connection" : "the connection was closed");
}

static void
bus_acquired_cb (GDBusConnection *bus,
                 const char      *name,
                 gpointer         user_data)
{
  BfApp *app = user_data;
  g_autoptr(GError) error = NULL;

  /* GDBus's default for a bus connection is raise(SIGTERM) when it
   * closes, which would look like an orderly stop (and stop every latent
   * instance); bus_lost() says what happened instead. */
  app->bus_acquired = TRUE;
  g_dbus_connection_set_exit_on_close (bus, FALSE);
  if (app->bus == NULL)
    {
      app->bus = g_object_ref (bus);
      g_signal_connect (bus, "closed", G_CALLBACK (bus_closed_cb), app);
    }

  if (!bf_manager_export (app->manager, bus, &error))
    {
      g_printerr ("buildfleetd: cannot export the fleet on the bus: %s\n", error->message);
      quit (app, EXIT_FAILURE);
    }
  g_debug ("Fleet exported on the bus at %.1f ms", (g_get_monotonic_time () - app->start_usec) / 1000.0);
}

static void
name_acquired_cb (GDBusConnection *bus,
                  const char      *name,
                  gpointer         user_data)
{
  BfApp *app = user_data;

  app->name_acquired = TRUE;
  try_listen_cb (app);
}

static void
name_lost_cb (GDBusConnection *bus,
              const char      *name,
              gpointer         user_data)
{
  BfApp *app = user_data;

  if (bus == NULL && app->bus_acquired)
    {
      /* Usually bus_closed_cb() has said why already. */
      bus_lost (app, "the connection was closed");
      return;
    }
  if (bus == NULL)
    g_printerr ("buildfleetd: cannot connect to the %s bus (is dbus-daemon running, and "
                "DBUS_%s_BUS_ADDRESS right if set?)\n", bus_kind (app), app->session_bus ? "SESSION" : "SYSTEM");
  else if (app->name_acquired)
    g_printerr ("buildfleetd: another instance took over the name %s; exiting\n", name);
  else
    g_printerr ("buildfleetd: cannot own the name %s: another instance owns it (use --replace to take it over), "
                "or the bus policy does not allow this user to own it\n", name);
  /* Stop listening at once so a replacing instance gets the port. */
  bf_manager_shutdown (app->manager);
  quit (app, EXIT_FAILURE);
}

static void
shutdown_done_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  BfApp *app = user_data;

  bf_manager_shutdown_finish (BF_MANAGER (source), result, NULL);
  g_main_loop_quit (app->loop);
}

static gboolean
shutdown_timeout_cb (gpointer data)
{
  BfApp *app = data;

  app->shutdown_timeout_id = 0;
  g_warning ("Latent instances did not stop within %d s; exiting anyway (they stay recorded)",
             SHUTDOWN_TIMEOUT_S);
  g_main_loop_quit (app->loop);
  return G_SOURCE_REMOVE;
}

static gboolean
sigterm_cb (gpointer data)
{
  BfApp *app = data;

  if (app->shutting_down)
    return G_SOURCE_CONTINUE;
  app->shutting_down = TRUE;
  g_message ("Received a termination signal; stopping latent instances and exiting");
  sd_notify (0, "STOPPING=1");
  /* Like the seed's before-shutdown hook: instances are stopped, bounded
   * in time, before the loop ends. */
  app->shutdown_timeout_id = bf_timeout_add_seconds (SHUTDOWN_TIMEOUT_S, shutdown_timeout_cb, app,
                                                     "[buildfleetd] shutdown timeout");
  bf_manager_shutdown_async (app->manager, shutdown_done_cb, app);
  return G_SOURCE_CONTINUE;
}

static void
reload_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!bf_manager_reload_finish (BF_MANAGER (source), result, &error))
    g_warning ("%s", error->message);
  sd_notify (0, "READY=1");
}

static gboolean
sighup_cb (gpointer data)
{
  BfApp *app = data;

  sd_notify (0, "RELOADING=1");
  bf_manager_reload_async (app->manager, reload_done_cb, NULL);
  return G_SOURCE_CONTINUE;
}

static gboolean
watchdog_cb (gpointer data)
{
  sd_notify (0, "WATCHDOG=1");
  return G_SOURCE_CONTINUE;
}

static void
warn_if_readable (BfConfig *config)
{
  for (guint i = 0; config->files[i]; i++)
    {
      struct stat st;

      if (stat (config->files[i], &st) == 0 && (st.st_mode & S_IROTH))
        g_warning ("%s holds worker passwords and is readable by every user; "
                   "make it readable only by the service (chmod o-r)", config->files[i]);
    }
}

/* One socket per worker: tens of thousands of them need more than the
 * usual soft limit of 1024 descriptors. */
static void
raise_descriptor_limit (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
}

/* SIGTERM/SIGINT quit, SIGHUP reloads, systemd's watchdog is fed. */
static void
watch_signals (BfApp *app)
{
  guint64 watchdog_usec = 0;

  /* A reader that goes away (a client's output pipe, a mailer) is an
   * EPIPE for the writer to handle, not a signal that ends the daemon. */
  signal (SIGPIPE, SIG_IGN);
  g_unix_signal_add (SIGTERM, sigterm_cb, app);
  g_unix_signal_add (SIGINT, sigterm_cb, app);
  g_unix_signal_add (SIGHUP, sighup_cb, app);

  if (sd_watchdog_enabled (FALSE, &watchdog_usec) > 0 && watchdog_usec > 0)
    app->watchdog_id = bf_timeout_add (bf_usec_to_ms (watchdog_usec / 2), watchdog_cb, app,
                                       "[buildfleetd] watchdog");
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(BfApp) app = g_new0 (BfApp, 1);
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *config_path = NULL;
  gboolean replace = FALSE;
  gboolean verbose = FALSE;
  gboolean version = FALSE;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
      "Configuration file (default " BF_SYSCONFDIR "/buildfleet/buildfleet.conf, plus FILE.d/*.conf)", "FILE" },
    { "session", 0, 0, G_OPTION_ARG_NONE, &app->session_bus, "Own the name on the session bus", NULL },
    { "replace", 'r', 0, G_OPTION_ARG_NONE, &replace, "Replace a running instance", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log debugging messages", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    G_OPTION_ENTRY_NULL
  };

  setlocale (LC_ALL, "");
  /* Before the first message: text from workers and callers is escaped
   * onto one line (bf-log.c). */
  g_log_set_writer_func (bf_log_writer, NULL, NULL);

  raise_descriptor_limit ();

  context = g_option_context_new ("— manage a fleet of Buildbot workers over D-Bus");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("buildfleetd: %s\n", error->message);
      return EXIT_FAILURE;
    }
  if (version)
    {
      g_print ("buildfleetd %s\n", PACKAGE_VERSION);
      return EXIT_SUCCESS;
    }
  if (verbose)
    g_log_set_debug_enabled (TRUE);
  if (config_path == NULL)
    config_path = g_build_filename (BF_SYSCONFDIR, "buildfleet", "buildfleet.conf", NULL);

  /* Register the error domain before any error can cross the bus. */
  (void) BF_ERROR;

  app->start_usec = g_get_monotonic_time ();
  {
    struct stat st;

    if (stat (config_path, &st) == 0 && S_ISREG (st.st_mode) &&
        (gsize) st.st_size * HEAP_PER_CONFIG_BYTE >= HEAP_RESERVE_MIN)
      bf_heap_reserve ((gsize) st.st_size * HEAP_PER_CONFIG_BYTE);
  }
  app->config = bf_config_load (config_path, &error);
  if (app->config == NULL)
    {
      g_printerr ("buildfleetd: %s\n", error->message);
      return EXIT_FAILURE;
    }
  warn_if_readable (app->config);
  g_debug ("Configuration with %u workers read in %.1f ms", app->config->workers->len,
           (g_get_monotonic_time () - app->start_usec) / 1000.0);

  app->loop = g_main_loop_new (NULL, FALSE);
  app->manager = bf_manager_new (app->config, app->session_bus);
  g_signal_connect (app->manager, "status-changed", G_CALLBACK (status_changed_cb), app);
  g_debug ("Workers created at %.1f ms", (g_get_monotonic_time () - app->start_usec) / 1000.0);

  watch_signals (app);

  app->name_id = g_bus_own_name (app->session_bus ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM,
                                 BUS_NAME,
                                 G_BUS_NAME_OWNER_FLAGS_ALLOW_REPLACEMENT |
                                 (replace ? G_BUS_NAME_OWNER_FLAGS_REPLACE : 0),
                                 bus_acquired_cb, name_acquired_cb, name_lost_cb,
                                 app, NULL);

  g_main_loop_run (app->loop);

  bf_worker_flush_attach_announcements ();
  bf_manager_shutdown (app->manager);
  g_clear_object (&app->manager);
  bf_websocket_close_all ();
  bf_timer_queue_shutdown ();
  bf_poller_shutdown ();
  return app->exit_code;
}
