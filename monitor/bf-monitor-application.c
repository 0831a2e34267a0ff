/* bf-monitor-application.c: the desktop monitor application
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * The application owns the fleet model and the notifier, so notifications
 * keep coming with no window open: "--background" (used by the autostart
 * file) holds the application without presenting a window, and a later
 * launch or a click on a notification opens one.
 */

#include "config.h"

#include <glib/gi18n.h>
#include <glib-unix.h>
#include <libnotify/notify.h>

#include "bf-monitor-application.h"
#include "bf-monitor-window.h"
#include "bf-notifier.h"
#include "bf-worker-util.h"

#define APPLICATION_ID "org.buildfleet.Monitor"

struct _BfMonitorApplication
{
  AdwApplication  parent_instance;

  BfFleetModel   *model;
  BfNotifier     *notifier;
  gboolean        held;
  gint64          started_usec;
  guint           sigterm_source;
  guint           sigint_source;
};

G_DEFINE_FINAL_TYPE (BfMonitorApplication, bf_monitor_application, ADW_TYPE_APPLICATION)

static const GOptionEntry option_entries[] = {
  { "background", 'b', G_OPTION_FLAG_NONE, G_OPTION_ARG_NONE, NULL,
    N_("Run without a window and only show notifications"), NULL },
  { "version", 0, G_OPTION_FLAG_NONE, G_OPTION_ARG_NONE, NULL,
    N_("Show the version and exit"), NULL },
  { NULL }
};

static BfMonitorWindow *
bf_monitor_application_get_window (BfMonitorApplication *self,
                                   gboolean              create)
{
  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (self)); l != NULL; l = l->next)
    {
      if (BF_IS_MONITOR_WINDOW (l->data))
        return l->data;
    }

  if (!create)
    return NULL;

  return bf_monitor_window_new (GTK_APPLICATION (self), self->model);
}

static void
bf_monitor_application_activate (GApplication *application)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (application);

  gtk_window_present (GTK_WINDOW (bf_monitor_application_get_window (self, TRUE)));
}

static int
bf_monitor_application_handle_local_options (GApplication *application,
                                             GVariantDict *options)
{
  if (g_variant_dict_contains (options, "version"))
    {
      g_print ("%s %s\n", "buildfleet-monitor", PACKAGE_VERSION);
      return 0;
    }

  return G_APPLICATION_CLASS (bf_monitor_application_parent_class)->handle_local_options (application, options);
}

static int
bf_monitor_application_command_line (GApplication            *application,
                                     GApplicationCommandLine *command_line)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (application);
  GVariantDict *options = g_application_command_line_get_options_dict (command_line);

  if (g_variant_dict_contains (options, "background"))
    {
      /* Only keep running; a window already open stays open.  The
       * workers missing already are summed up in one notification. */
      if (!self->held)
        {
          bf_notifier_set_summarize_at_start (self->notifier, TRUE);
          g_application_hold (application);
          self->held = TRUE;
        }
      return 0;
    }

  g_application_activate (application);
  return 0;
}

static void
quit_action (GSimpleAction *action,
             GVariant      *parameter,
             gpointer       user_data)
{
  g_application_quit (G_APPLICATION (user_data));
}

static void
about_action (GSimpleAction *action,
              GVariant      *parameter,
              gpointer       user_data)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (user_data);
  static const char *developers[] = { "The buildfleet developers", NULL };

  adw_show_about_window (GTK_WINDOW (bf_monitor_application_get_window (self, TRUE)),
                         "application-name", _("Build Fleet Monitor"),
                         "application-icon", APPLICATION_ID,
                         "version", PACKAGE_VERSION,
                         "comments", _("Watch the Buildbot workers of buildfleetd and hear when one goes missing"),
                         "developers", developers,
                         "license-type", GTK_LICENSE_LGPL_2_1,
                         /* Translators: put your names here, one per line */
                         "translator-credits", _("translator-credits"),
                         NULL);
}

static void
show_worker_action (GSimpleAction *action,
                    GVariant      *parameter,
                    gpointer       user_data)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (user_data);
  BfMonitorWindow *window = bf_monitor_application_get_window (self, TRUE);

  bf_monitor_window_select_worker (window, g_variant_get_string (parameter, NULL));
  gtk_window_present (GTK_WINDOW (window));
}

/* Only registered when BUILDFLEET_MONITOR_TEST_DUMP is set: writes what the
 * window shows to the file named by the parameter, for the tests. */
static void
test_dump_action (GSimpleAction *action,
                  GVariant      *parameter,
                  gpointer       user_data)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (user_data);
  BfMonitorWindow *window = bf_monitor_application_get_window (self, FALSE);
  g_autoptr(GKeyFile) key_file = g_key_file_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *data = NULL;
  gsize length;

  g_key_file_set_string (key_file, "application", "status",
                         bf_enum_to_nick (BF_TYPE_FLEET_STATUS, bf_fleet_model_get_status (self->model)));
  g_key_file_set_uint64 (key_file, "application", "n-workers",
                         g_list_model_get_n_items (G_LIST_MODEL (self->model)));
  g_key_file_set_uint64 (key_file, "application", "n-windows",
                         g_list_length (gtk_application_get_windows (GTK_APPLICATION (self))));
  g_key_file_set_int64 (key_file, "application", "started-usec", self->started_usec);

  if (window != NULL)
    bf_monitor_window_dump_state (window, key_file);

  data = g_key_file_to_data (key_file, &length, NULL);
  if (!g_file_set_contents (g_variant_get_string (parameter, NULL), data, length, &error))
    g_warning ("Could not write the test dump: %s", error->message);
}

/* SIGTERM and SIGINT end the session cleanly (notifications closed by
 * libnotify's uninit, windows destroyed), as the autostarted instance gets
 * SIGTERM at logout. */
static gboolean
quit_on_signal_cb (gpointer user_data)
{
  g_application_quit (G_APPLICATION (user_data));
  return G_SOURCE_CONTINUE;
}

static const GActionEntry app_actions[] = {
  { "quit", quit_action },
  { "about", about_action },
  { "show-worker", show_worker_action, "s" },
};

static void
bf_monitor_application_startup (GApplication *application)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (application);
  static const char *quit_accels[] = { "<Control>q", NULL };
  static const char *close_accels[] = { "<Control>w", NULL };

  /* First: the model starts loading the fleet in a worker thread at once
   * (see BfLoad in bf-fleet-model.c), so that the daemon answers while GTK
   * starts up.  The model uses no GTK. */
  self->model = bf_fleet_model_new (G_BUS_TYPE_SYSTEM);

  G_APPLICATION_CLASS (bf_monitor_application_parent_class)->startup (application);

  if (!notify_init (g_get_application_name ()))
    g_warning ("Could not initialize libnotify: no desktop notifications");

  g_action_map_add_action_entries (G_ACTION_MAP (self), app_actions, G_N_ELEMENTS (app_actions), self);
  if (g_getenv ("BUILDFLEET_MONITOR_TEST_DUMP") != NULL)
    {
      g_autoptr(GSimpleAction) dump = g_simple_action_new ("test-dump", G_VARIANT_TYPE_STRING);
      g_signal_connect (dump, "activate", G_CALLBACK (test_dump_action), self);
      g_action_map_add_action (G_ACTION_MAP (self), G_ACTION (dump));
    }

  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.quit", quit_accels);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "window.close", close_accels);

  self->sigterm_source = g_unix_signal_add (SIGTERM, quit_on_signal_cb, self);
  self->sigint_source = g_unix_signal_add (SIGINT, quit_on_signal_cb, self);

  self->notifier = bf_notifier_new (application, self->model);
}

static void
bf_monitor_application_shutdown (GApplication *application)
{
  BfMonitorApplication *self = BF_MONITOR_APPLICATION (application);

  g_clear_handle_id (&self->sigterm_source, g_source_remove);
  g_clear_handle_id (&self->sigint_source, g_source_remove);
  g_clear_object (&self->notifier);
  g_clear_object (&self->model);

  if (notify_is_initted ())
    notify_uninit ();

  G_APPLICATION_CLASS (bf_monitor_application_parent_class)->shutdown (application);
}

static void
bf_monitor_application_class_init (BfMonitorApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  app_class->startup = bf_monitor_application_startup;
  app_class->shutdown = bf_monitor_application_shutdown;
  app_class->activate = bf_monitor_application_activate;
  app_class->command_line = bf_monitor_application_command_line;
  app_class->handle_local_options = bf_monitor_application_handle_local_options;
}

static void
bf_monitor_application_init (BfMonitorApplication *self)
{
  self->started_usec = g_get_monotonic_time ();
  g_application_add_main_option_entries (G_APPLICATION (self), option_entries);
}

BfMonitorApplication *
bf_monitor_application_new (void)
{
  return g_object_new (BF_TYPE_MONITOR_APPLICATION,
                       "application-id", APPLICATION_ID,
                       "flags", G_APPLICATION_HANDLES_COMMAND_LINE,
                       "resource-base-path", "/org/buildfleet/Monitor",
                       NULL);
}

/**
 * bf_monitor_application_get_model:
 *
 * Returns: (transfer none): the fleet
 */
BfFleetModel *
bf_monitor_application_get_model (BfMonitorApplication *self)
{
  g_return_val_if_fail (BF_IS_MONITOR_APPLICATION (self), NULL);
  return self->model;
}
