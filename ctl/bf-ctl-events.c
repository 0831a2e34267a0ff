/* bf-ctl-events.c: events (alias monitor) — a live log of the fleet
 *
 * One line per event, or one JSON object per line with --json:
 * {"TimeUSec":…, "Event":"detached", "Worker":"linux-01", …}.  Runs until
 * SIGINT or SIGTERM (exit 0), or until the daemon leaves the bus (exit 5).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <glib-unix.h>

#include "bf-ctl.h"

typedef struct {
  BfCtl *ctl;
  GMainLoop *loop;
  int exit_code;
} Events;

/* One event: @fields are pairs of JSON key and string value, NULL-ended. */
static void
emit (Events     *ev,
      const char *event,
      const char *worker,
      const char *build,
      const char *text,
      ...)
{
  guint64 now = (guint64) g_get_real_time ();
  g_autoptr(GString) out = g_string_new (NULL);
  va_list ap;

  if (ev->ctl->json)
    {
      const char *key;

      g_string_append_printf (out, "{\"TimeUSec\":%" G_GUINT64_FORMAT ",\"Event\":", now);
      bf_ctl_json_append_string (out, event);
      if (worker)
        {
          g_string_append (out, ",\"Worker\":");
          bf_ctl_json_append_string (out, worker);
        }
      if (build)
        {
          g_string_append (out, ",\"Build\":");
          bf_ctl_json_append_string (out, build);
        }
      va_start (ap, text);
      while ((key = va_arg (ap, const char *)) != NULL)
        {
          const char *value = va_arg (ap, const char *);

          g_string_append_c (out, ',');
          bf_ctl_json_append_string (out, key);
          g_string_append_c (out, ':');
          bf_ctl_json_append_string (out, value ? value : "");
        }
      va_end (ap);
      g_string_append (out, "}\n");
    }
  else
    {
      g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local ((gint64) (now / G_USEC_PER_SEC));
      g_autofree char *stamp = g_date_time_format (dt, "%Y-%m-%d %H:%M:%S");

      g_string_append_printf (out, "%s.%03u ", stamp, (guint) (now % G_USEC_PER_SEC / 1000));
      if (worker)
        g_string_append_printf (out, "%s: ", worker);
      else if (build)
        g_string_append_printf (out, "build %s: ", build);
      g_string_append (out, text);
      g_string_append_c (out, '\n');
    }
  /* Line by line, also into a pipe: a live log is read as it comes. */
  bf_ctl_write_all (1, out->str, out->len);
}

static void
worker_signal (Events     *ev,
               const char *name,
               const char *member,
               GVariant   *params)
{
  if (g_str_equal (member, "Attached"))
    emit (ev, "attached", name, NULL, "attached", NULL);
  else if (g_str_equal (member, "Detached") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(s)")))
    {
      const char *reason;
      g_autofree char *text = NULL;

      g_variant_get (params, "(&s)", &reason);
      text = g_strdup_printf ("detached: %s", reason);
      emit (ev, "detached", name, NULL, text, "Reason", reason, NULL);
    }
  else if (g_str_equal (member, "Missing") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(t)")))
    {
      guint64 since;
      g_autofree char *when = NULL, *text = NULL, *usec = NULL;

      g_variant_get (params, "(t)", &since);
      when = bf_ctl_format_time (since);
      usec = g_strdup_printf ("%" G_GUINT64_FORMAT, since);
      text = g_strdup_printf ("missing (disconnected since %s)", when);
      emit (ev, "missing", name, NULL, text, "DisconnectedSinceUSec", usec, NULL);
    }
  else if (g_str_equal (member, "BackOnline"))
    emit (ev, "back-online", name, NULL, "back online", NULL);
  else if (g_str_equal (member, "GracefulChanged") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(b)")))
    {
      gboolean on;

      g_variant_get (params, "(b)", &on);
      emit (ev, on ? "graceful" : "graceful-cancelled", name, NULL,
            on ? "graceful shutdown requested" : "graceful shutdown cancelled", NULL);
    }
  else if (g_str_equal (member, "FlappingChanged") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(b)")))
    {
      gboolean on;

      g_variant_get (params, "(b)", &on);
      emit (ev, on ? "flapping" : "flapping-ended", name, NULL,
            on ? "flapping: detaches too often, takes no new builds" : "no longer flapping", NULL);
    }
  else if (g_str_equal (member, "Substantiated"))
    emit (ev, "substantiated", name, NULL, "substantiated", NULL);
  else if (g_str_equal (member, "Insubstantiated"))
    emit (ev, "insubstantiated", name, NULL, "insubstantiated", NULL);
  else if (g_str_equal (member, "SubstantiationFailed") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(s)")))
    {
      const char *message;
      g_autofree char *text = NULL;

      g_variant_get (params, "(&s)", &message);
      text = g_strdup_printf ("substantiation failed: %s", message);
      emit (ev, "substantiation-failed", name, NULL, text, "Message", message, NULL);
    }
}

/* Pause and unpause have no signal of their own: PropertiesChanged. */
static void
worker_properties (Events     *ev,
                   const char *name,
                   GVariant   *params)
{
  g_autoptr(GVariant) changed = NULL;
  const char *iface;
  gboolean paused;

  if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (params, "(&s@a{sv}@as)", &iface, &changed, NULL);
  if (!g_str_equal (iface, "org.buildfleet.Fleet1.Worker") ||
      !g_variant_lookup (changed, "Paused", "b", &paused))
    return;
  if (paused)
    {
      const char *by = "", *reason = "";
      g_autofree char *text = NULL;

      g_variant_lookup (changed, "PausedBy", "&s", &by);
      g_variant_lookup (changed, "PauseReason", "&s", &reason);
      text = g_strdup_printf ("paused by %s: %s", *by ? by : "?", *reason ? reason : "no reason given");
      emit (ev, "paused", name, NULL, text, "PausedBy", by, "PauseReason", reason, NULL);
    }
  else
    emit (ev, "unpaused", name, NULL, "unpaused", NULL);
}

static void
build_signal (Events     *ev,
              const char *path,
              const char *member,
              GVariant   *params)
{
  g_autofree char *id = bf_ctl_name_from_path (path);

  if (g_str_equal (member, "Started") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(o)")))
    {
      const char *worker_path;
      g_autofree char *worker = NULL, *text = NULL;

      g_variant_get (params, "(&o)", &worker_path);
      worker = bf_ctl_name_from_path (worker_path);
      text = g_strdup_printf ("started on %s", worker);
      emit (ev, "build-started", NULL, id, text, "WorkerName", worker, NULL);
    }
  else if (g_str_equal (member, "Finished") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(s)")))
    {
      const char *result;
      g_autofree char *text = NULL;

      g_variant_get (params, "(&s)", &result);
      text = g_strdup_printf ("finished: %s", result);
      emit (ev, "build-finished", NULL, id, text, "Result", result, NULL);
    }
}

static void
interfaces_added (Events   *ev,
                  GVariant *params)
{
  const char *path;
  g_autoptr(GVariant) ifaces = NULL;
  g_autoptr(GVariant) props = NULL;
  const char *builder = "";
  g_autofree char *id = NULL, *text = NULL;

  if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(oa{sa{sv}})")))
    return;
  g_variant_get (params, "(&o@a{sa{sv}})", &path, &ifaces);
  props = g_variant_lookup_value (ifaces, "org.buildfleet.Fleet1.Build", G_VARIANT_TYPE_VARDICT);
  if (props == NULL)
    return;
  g_variant_lookup (props, "Builder", "&s", &builder);
  id = bf_ctl_name_from_path (path);
  text = g_strdup_printf ("requested for builder %s", builder);
  emit (ev, "build-requested", NULL, id, text, "Builder", builder, NULL);
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
  Events *ev = user_data;

  if (g_str_has_prefix (path, BF_CTL_WORKERS_PATH "/"))
    {
      g_autofree char *name = bf_ctl_name_from_path (path);

      if (g_str_equal (iface, "org.freedesktop.DBus.Properties") && g_str_equal (member, "PropertiesChanged"))
        worker_properties (ev, name, params);
      else if (g_str_equal (iface, "org.buildfleet.Fleet1.Worker") ||
               g_str_equal (iface, "org.buildfleet.Fleet1.LatentWorker"))
        worker_signal (ev, name, member, params);
    }
  else if (g_str_has_prefix (path, BF_CTL_BUILDS_PATH "/") && g_str_equal (iface, "org.buildfleet.Fleet1.Build"))
    build_signal (ev, path, member, params);
  else if (g_str_equal (path, BF_CTL_FLEET_PATH) && g_str_equal (member, "InterfacesAdded"))
    interfaces_added (ev, params);
}

static void
on_name_vanished (GDBusConnection *bus,
                  const char      *name,
                  gpointer         user_data)
{
  Events *ev = user_data;

  emit (ev, "daemon-gone", NULL, NULL, "buildfleetd left the bus", NULL);
  ev->exit_code = BF_CTL_EXIT_UNAVAILABLE;
  g_main_loop_quit (ev->loop);
}

static gboolean
on_unix_signal (gpointer user_data)
{
  Events *ev = user_data;

  g_main_loop_quit (ev->loop);
  return G_SOURCE_CONTINUE;
}

int
bf_ctl_cmd_events (BfCtl *ctl)
{
  Events ev = { .ctl = ctl, .exit_code = BF_CTL_EXIT_OK };
  g_autoptr(GVariant) owner = NULL;
  g_autoptr(GError) error = NULL;
  guint subscription, watch, sigint_id, sigterm_id;
  const char * const rules[] = {
    "type='signal',sender='" BF_CTL_BUS_NAME "',path_namespace='" BF_CTL_WORKERS_PATH "'",
    "type='signal',sender='" BF_CTL_BUS_NAME "',interface='org.buildfleet.Fleet1.Build',"
      "path_namespace='" BF_CTL_BUILDS_PATH "'",
    "type='signal',sender='" BF_CTL_BUS_NAME "',interface='org.freedesktop.DBus.ObjectManager',"
      "member='InterfacesAdded',path='" BF_CTL_FLEET_PATH "'",
  };

  owner = g_dbus_connection_call_sync (ctl->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetNameOwner",
                                       g_variant_new ("(s)", BF_CTL_BUS_NAME), G_VARIANT_TYPE ("(s)"),
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (owner == NULL)
    return bf_ctl_error (ctl, error, NULL);

  ev.loop = g_main_loop_new (NULL, FALSE);
  /* Only the daemon's signals, in match rules the bus can filter; one
   * subscription without a rule of its own sees each signal once. */
  subscription = g_dbus_connection_signal_subscribe (ctl->bus, BF_CTL_BUS_NAME, NULL, NULL, NULL, NULL,
                                                     G_DBUS_SIGNAL_FLAGS_NO_MATCH_RULE,
                                                     on_signal, &ev, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (rules); i++)
    {
      g_autoptr(GVariant) reply = NULL;

      reply = g_dbus_connection_call_sync (ctl->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                           "org.freedesktop.DBus", "AddMatch",
                                           g_variant_new ("(s)", rules[i]), NULL,
                                           G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
      if (reply == NULL)
        {
          g_dbus_connection_signal_unsubscribe (ctl->bus, subscription);
          g_main_loop_unref (ev.loop);
          return bf_ctl_error (ctl, error, "Cannot follow the daemon's signals");
        }
    }
  watch = g_bus_watch_name_on_connection (ctl->bus, BF_CTL_BUS_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                          NULL, on_name_vanished, &ev, NULL);
  sigint_id = g_unix_signal_add (SIGINT, on_unix_signal, &ev);
  sigterm_id = g_unix_signal_add (SIGTERM, on_unix_signal, &ev);
  if (!ctl->json)
    g_printerr ("Following the fleet's events; Ctrl-C to stop.\n");

  g_main_loop_run (ev.loop);

  g_dbus_connection_signal_unsubscribe (ctl->bus, subscription);
  g_bus_unwatch_name (watch);
  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_main_loop_unref (ev.loop);
  return ev.exit_code;
}
