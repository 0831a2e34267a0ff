/* bf-notifier.c: desktop notifications for fleet incidents
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * One record per worker holds at most two notifications: "presence" (missing,
 * then back online, which replaces it on screen) and "substantiation" (a
 * latent worker failed to start).  A new incident updates and re-shows the
 * same NotifyNotification, so the server replaces the old bubble instead of
 * stacking a new one.  Only the daemon's signals raise notifications, never
 * the state found at start-up or after a reconnect, so there is no storm.
 *
 * Two more, for the fleet as a whole: the daemon going away and coming
 * back (one notification each, the second replacing the first), and, for an
 * instance started with --background, one summary of the workers already
 * missing when the fleet was first loaded ("3 workers are missing").
 */

#include "config.h"

#include <glib/gi18n.h>
#include <libnotify/notify.h>

#include "bf-notifier.h"
#include "bf-worker-util.h"

typedef struct
{
  char               *name;
  NotifyNotification *presence;
  NotifyNotification *substantiation;
  NotifyNotification *health;      /* unhealthy: one per incident */
  NotifyNotification *flapping;    /* flapping: one per episode */
  guint64             missing_since_usec;
  char               *admin;       /* for the missing body's refreshes */
  guint               refresh_source; /* the missing body's "… ago", while shown */
  gboolean            presence_closed; /* the user (or server) closed it */
  gboolean            unhealthy;   /* announced, not yet recovered */
  gboolean            is_flapping; /* announced, not yet over */
} BfIncidents;

struct _BfNotifier
{
  GObject       parent_instance;

  GApplication *application;   /* weak: the application owns us */
  BfFleetModel *model;
  GHashTable   *incidents;     /* name -> BfIncidents */
  NotifyNotification *daemon;  /* the daemon went away / came back */
  NotifyNotification *summary; /* --background: missing at start-up */
  gboolean      summarize_at_start;
  gboolean      was_ready;     /* the fleet was loaded once */
  gboolean      daemon_gone;   /* announced gone, not back yet */
};

G_DEFINE_FINAL_TYPE (BfNotifier, bf_notifier, G_TYPE_OBJECT)

static void
bf_incidents_free (gpointer data)
{
  BfIncidents *incidents = data;

  g_clear_handle_id (&incidents->refresh_source, g_source_remove);
  if (incidents->presence != NULL)
    g_signal_handlers_disconnect_by_data (incidents->presence, incidents);
  g_clear_object (&incidents->presence);
  g_clear_object (&incidents->substantiation);
  g_clear_object (&incidents->health);
  g_clear_object (&incidents->flapping);
  g_free (incidents->name);
  g_free (incidents->admin);
  g_free (incidents);
}

static BfIncidents *
bf_notifier_get_incidents (BfNotifier *self,
                           const char *name)
{
  BfIncidents *incidents = g_hash_table_lookup (self->incidents, name);

  if (incidents == NULL)
    {
      incidents = g_new0 (BfIncidents, 1);
      incidents->name = g_strdup (name);
      g_hash_table_insert (self->incidents, incidents->name, incidents);
    }

  return incidents;
}

static void
default_action_cb (NotifyNotification *notification,
                   char               *action,
                   gpointer            user_data)
{
  BfNotifier *self = BF_NOTIFIER (user_data);
  const char *name = g_object_get_data (G_OBJECT (notification), "bf-worker-name");

  if (self->application == NULL || name == NULL)
    return;

  g_action_group_activate_action (G_ACTION_GROUP (self->application),
                                  "show-worker",
                                  g_variant_new_string (name));
}

/* Creates the notification on first use and updates it afterwards, so that
 * each incident replaces the previous bubble of the same kind. */
static void
bf_notifier_show (BfNotifier          *self,
                  NotifyNotification **slot,
                  const char          *worker_name,
                  const char          *summary,
                  const char          *body,
                  const char          *icon_name,
                  const char          *category,
                  NotifyUrgency        urgency)
{
  g_autoptr(GError) error = NULL;
  const char *app_id = NULL;

  if (self->application != NULL)
    app_id = g_application_get_application_id (self->application);

  if (*slot == NULL)
    {
      *slot = notify_notification_new (summary, body, icon_name);
      g_object_set_data_full (G_OBJECT (*slot), "bf-worker-name", g_strdup (worker_name), g_free);
    }
  else
    {
      notify_notification_update (*slot, summary, body, icon_name);
    }

  notify_notification_set_urgency (*slot, urgency);
  notify_notification_set_category (*slot, category);
  notify_notification_set_timeout (*slot, urgency == NOTIFY_URGENCY_CRITICAL
                                          ? NOTIFY_EXPIRES_NEVER
                                          : NOTIFY_EXPIRES_DEFAULT);
  if (app_id != NULL)
    notify_notification_set_hint_string (*slot, "desktop-entry", app_id);

  notify_notification_clear_actions (*slot);
  notify_notification_add_action (*slot, "default", _("Show Worker"),
                                  default_action_cb, self, NULL);

  if (!notify_notification_show (*slot, &error))
    g_warning ("Could not show the notification “%s”: %s", summary, error->message);
}

/* Logged with the worker's name as a field: journalctl BUILDFLEET_WORKER=NAME */
static void
bf_notifier_log (const char *worker_name,
                 const char *message)
{
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "BUILDFLEET_WORKER", worker_name,
                    "MESSAGE", "%s", message);
}

/*
 * The missing notification says when the worker was last seen, in words
 * and as a time.  The words ("5 minutes ago") go stale while the bubble
 * stays on screen (a missing worker's is critical: it stays until closed),
 * so the notification is replaced in place (the same id, no sound) when
 * they would change: each minute for the first ten, every ten minutes up
 * to an hour, each hour up to twelve: 26 times at most, the last one
 * with the time alone, which stays true.  libnotify tells when the user
 * closed the bubble (NotificationClosed), and the refreshes stop there:
 * re-showing a closed one would bring it back.  GNotification can replace
 * a notification too, but says nothing of its closing, so it could only
 * keep refreshing blindly.
 */
#define REFRESH_LAST_USEC (G_GINT64_CONSTANT (12) * 3600 * G_USEC_PER_SEC)

static char *
missing_body (BfIncidents *incidents,
              gint64       now,
              gboolean     relative)
{
  g_autofree char *when = bf_format_timestamp (incidents->missing_since_usec);
  g_autofree char *ago = bf_format_relative_time (now, incidents->missing_since_usec);
  const char *admin = incidents->admin;

  if (!relative && admin != NULL && admin[0] != '\0')
    /* Translators: notification body: the time the worker was last seen and its admin contact */
    return g_strdup_printf (_("Not seen since %s.\nAdmin: %s"), when, admin);
  if (!relative)
    /* Translators: notification body: the time the worker was last seen */
    return g_strdup_printf (_("Not seen since %s.\nNo admin contact is known."), when);
  if (admin != NULL && admin[0] != '\0')
    /* Translators: notification body: the time the worker was last seen, how long ago, and its admin contact */
    return g_strdup_printf (_("Not seen since %s (%s).\nAdmin: %s"), when, ago, admin);
  /* Translators: notification body: the time the worker was last seen and how long ago */
  return g_strdup_printf (_("Not seen since %s (%s).\nNo admin contact is known."), when, ago);
}

/* How long after the worker was last seen the words next change, or 0
 * past the last refresh. */
static gint64
next_refresh_usec (gint64 away_usec)
{
  const gint64 minute = G_GINT64_CONSTANT (60) * G_USEC_PER_SEC;
  gint64 step;

  if (away_usec < 10 * minute)
    step = minute;
  else if (away_usec < 60 * minute)
    step = 10 * minute;
  else if (away_usec < REFRESH_LAST_USEC)
    step = 60 * minute;
  else
    return 0;

  return MIN ((away_usec / step + 1) * step, REFRESH_LAST_USEC);
}

static gboolean refresh_missing_cb (gpointer user_data);

static void
schedule_missing_refresh (BfIncidents *incidents,
                          gint64       now)
{
  gint64 away = now - (gint64) incidents->missing_since_usec;
  gint64 next = next_refresh_usec (MAX (away, 0));
  guint seconds;

  g_clear_handle_id (&incidents->refresh_source, g_source_remove);
  if (next == 0)
    return;
  /* Rounded up: never before the words change. */
  seconds = (guint) ((next - away + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC);
  incidents->refresh_source = g_timeout_add_seconds (MAX (seconds, 1), refresh_missing_cb, incidents);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, incidents->refresh_source),
                            "[buildfleet-monitor] missing notification's time");
}

static gboolean
refresh_missing_cb (gpointer user_data)
{
  BfIncidents *incidents = user_data;
  gint64 now = g_get_real_time ();
  gboolean last = now - (gint64) incidents->missing_since_usec >= REFRESH_LAST_USEC;
  g_autofree char *body = NULL;
  g_autoptr(GError) error = NULL;

  incidents->refresh_source = 0;
  if (incidents->presence == NULL || incidents->presence_closed || incidents->missing_since_usec == 0)
    return G_SOURCE_REMOVE;

  body = missing_body (incidents, now, !last);
  /* The same summary and icon; only the body changes, silently. */
  notify_notification_update (incidents->presence,
                              g_object_get_data (G_OBJECT (incidents->presence), "bf-summary"), body,
                              "network-offline-symbolic");
  notify_notification_set_hint (incidents->presence, "suppress-sound", g_variant_new_boolean (TRUE));
  if (!notify_notification_show (incidents->presence, &error))
    g_debug ("Could not refresh the notification of %s: %s", incidents->name, error->message);
  notify_notification_set_hint (incidents->presence, "suppress-sound", NULL);

  if (!last)
    schedule_missing_refresh (incidents, now);
  return G_SOURCE_REMOVE;
}

static void
presence_closed_cb (NotifyNotification *notification,
                    BfIncidents        *incidents)
{
  incidents->presence_closed = TRUE;
  g_clear_handle_id (&incidents->refresh_source, g_source_remove);
}

static void
on_worker_missing (BfNotifier   *self,
                   BfDBusWorker *worker,
                   guint64       since_usec,
                   BfFleetModel *model)
{
  const char *name = bf_dbus_worker_get_name (worker);
  gint64 now = g_get_real_time ();
  BfIncidents *incidents;
  g_autofree char *summary = NULL;
  g_autofree char *body = NULL;

  if (name == NULL)
    return;

  incidents = bf_notifier_get_incidents (self, name);
  incidents->missing_since_usec = since_usec;
  g_free (incidents->admin);
  incidents->admin = g_strdup (bf_dbus_worker_get_admin (worker));

  /* Translators: notification title, %s is a worker name */
  summary = g_strdup_printf (_("Worker %s is missing"), name);
  body = missing_body (incidents, now, TRUE);

  bf_notifier_log (name, summary);

  bf_notifier_show (self, &incidents->presence, name, summary, body,
                    "network-offline-symbolic", "network.disconnected",
                    NOTIFY_URGENCY_CRITICAL);
  if (g_object_get_data (G_OBJECT (incidents->presence), "bf-summary") == NULL)
    g_signal_connect (incidents->presence, "closed", G_CALLBACK (presence_closed_cb), incidents);
  g_object_set_data_full (G_OBJECT (incidents->presence), "bf-summary", g_strdup (summary), g_free);
  incidents->presence_closed = FALSE;
  schedule_missing_refresh (incidents, now);
}

static void
on_worker_back_online (BfNotifier   *self,
                       BfDBusWorker *worker,
                       BfFleetModel *model)
{
  const char *name = bf_dbus_worker_get_name (worker);
  BfIncidents *incidents;
  g_autofree char *summary = NULL;
  g_autofree char *body = NULL;

  if (name == NULL)
    return;

  incidents = bf_notifier_get_incidents (self, name);

  /* Translators: notification title, %s is a worker name */
  summary = g_strdup_printf (_("Worker %s is back online"), name);
  if (incidents->missing_since_usec != 0)
    {
      g_autofree char *when = bf_format_timestamp (incidents->missing_since_usec);
      /* Translators: notification body, %s is the time the worker was last seen before it went missing */
      body = g_strdup_printf (_("It had been away since %s."), when);
    }
  else
    {
      body = g_strdup (_("It is connected again."));
    }
  incidents->missing_since_usec = 0;
  g_clear_handle_id (&incidents->refresh_source, g_source_remove);

  bf_notifier_log (name, summary);

  bf_notifier_show (self, &incidents->presence, name, summary, body,
                    "network-transmit-receive-symbolic", "network.connected",
                    NOTIFY_URGENCY_NORMAL);
}

static void
on_worker_substantiation_failed (BfNotifier   *self,
                                 BfDBusWorker *worker,
                                 const char   *message,
                                 BfFleetModel *model)
{
  const char *name = bf_dbus_worker_get_name (worker);
  BfIncidents *incidents;
  g_autofree char *summary = NULL;

  if (name == NULL)
    return;

  incidents = bf_notifier_get_incidents (self, name);

  /* Translators: notification title, %s is a latent worker's name */
  summary = g_strdup_printf (_("Worker %s failed to start"), name);

  {
    g_autofree char *line = g_strdup_printf ("%s: %s", summary, message);
    bf_notifier_log (name, line);
  }

  bf_notifier_show (self, &incidents->substantiation, name, summary,
                    (message != NULL && message[0] != '\0') ? message : _("The daemon gave no reason."),
                    "dialog-error-symbolic", "network.error",
                    NOTIFY_URGENCY_NORMAL);
}

/* Withdraws an incident's notification once it is over: a stale "unhealthy"
 * would say the opposite of the list. */
static void
bf_notifier_withdraw (NotifyNotification *notification)
{
  g_autoptr(GError) error = NULL;

  if (notification != NULL && !notify_notification_close (notification, &error))
    g_debug ("Could not close a notification: %s", error->message);
}

/* One notification per incident: shown when it starts, withdrawn (and
 * @ended logged) when it is over; a repeat of either changes nothing. */
static void
incident_changed (BfNotifier          *self,
                  const char          *name,
                  gboolean            *active,
                  NotifyNotification **slot,
                  gboolean             now,
                  const char          *summary,
                  const char          *body,
                  const char          *log_line,
                  const char          *ended,
                  const char          *icon,
                  const char          *category)
{
  if (!now)
    {
      if (*active)
        {
          bf_notifier_log (name, ended);
          bf_notifier_withdraw (*slot);
        }
      *active = FALSE;
      return;
    }
  if (*active)
    return;
  *active = TRUE;
  bf_notifier_log (name, log_line);
  bf_notifier_show (self, slot, name, summary, body, icon, category, NOTIFY_URGENCY_NORMAL);
}

static void
on_worker_health_changed (BfNotifier   *self,
                          BfDBusWorker *worker,
                          gboolean      unhealthy,
                          const char   *reason,
                          BfFleetModel *model)
{
  const char *name = bf_dbus_worker_get_name (worker);
  BfIncidents *incidents;
  g_autofree char *summary = NULL;
  g_autofree char *line = NULL;
  g_autofree char *ended = NULL;

  if (name == NULL)
    return;
  incidents = bf_notifier_get_incidents (self, name);
  /* Translators: notification title, %s is a worker name */
  summary = g_strdup_printf (_("Worker %s is unhealthy"), name);
  line = g_strdup_printf ("%s: %s", summary, reason);
  ended = g_strdup_printf (_("Worker %s is healthy again"), name);
  incident_changed (self, name, &incidents->unhealthy, &incidents->health, unhealthy, summary,
                    (reason != NULL && reason[0] != '\0') ? reason : _("It failed its last health checks."),
                    line, ended, "dialog-warning-symbolic", "device.error");
}

static void
on_worker_flapping_changed (BfNotifier   *self,
                            BfDBusWorker *worker,
                            gboolean      flapping,
                            BfFleetModel *model)
{
  const char *name = bf_dbus_worker_get_name (worker);
  BfIncidents *incidents;
  g_autofree char *summary = NULL;
  g_autofree char *ended = NULL;

  if (name == NULL)
    return;
  incidents = bf_notifier_get_incidents (self, name);
  /* Translators: notification title, %s is a worker name */
  summary = g_strdup_printf (_("Worker %s is flapping"), name);
  ended = g_strdup_printf (_("Worker %s stopped flapping"), name);
  incident_changed (self, name, &incidents->is_flapping, &incidents->flapping, flapping, summary,
                    _("It detaches too often: it gets no new builds until it stays attached."),
                    summary, ended, "network-error-symbolic", "network.error");
}

/* The whole fleet: the daemon's presence and the start-up summary ------- */

static void
fleet_action_cb (NotifyNotification *notification,
                 char               *action,
                 gpointer            user_data)
{
  BfNotifier *self = BF_NOTIFIER (user_data);

  if (self->application != NULL)
    g_application_activate (self->application);
}

static void
bf_notifier_show_fleet (BfNotifier          *self,
                        NotifyNotification **slot,
                        const char          *summary,
                        const char          *body,
                        const char          *icon_name,
                        const char          *category,
                        NotifyUrgency        urgency)
{
  g_autoptr(GError) error = NULL;

  if (*slot == NULL)
    *slot = notify_notification_new (summary, body, icon_name);
  else
    notify_notification_update (*slot, summary, body, icon_name);
  notify_notification_set_urgency (*slot, urgency);
  notify_notification_set_category (*slot, category);
  if (self->application != NULL)
    notify_notification_set_hint_string (*slot, "desktop-entry",
                                         g_application_get_application_id (self->application));
  notify_notification_clear_actions (*slot);
  notify_notification_add_action (*slot, "default", _("Show Fleet"), fleet_action_cb, self, NULL);
  bf_notifier_log ("", summary);
  if (!notify_notification_show (*slot, &error))
    g_warning ("Could not show the notification “%s”: %s", summary, error->message);
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return g_strcmp0 (*(char *const *) a, *(char *const *) b);
}

static void
bf_notifier_summarize_missing (BfNotifier *self)
{
  GListModel *list = G_LIST_MODEL (self->model);
  guint n_missing = bf_fleet_model_get_n_missing (self->model);
  g_autoptr(GString) names = g_string_new (NULL);
  g_autoptr(GPtrArray) missing = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *summary = NULL;
  guint listed = 0;

  if (n_missing == 0)
    return;
  /* the first few by name: the daemon lists its workers in no particular order */
  for (guint i = 0; i < g_list_model_get_n_items (list); i++)
    {
      g_autoptr(BfDBusWorker) worker = g_list_model_get_item (list, i);

      if (bf_dbus_worker_get_missing (worker))
        g_ptr_array_add (missing, g_strdup (bf_dbus_worker_get_name (worker)));
    }
  g_ptr_array_sort (missing, compare_names);
  for (; listed < missing->len && listed < 5; listed++)
    {
      if (names->len > 0)
        g_string_append (names, ", ");
      g_string_append (names, g_ptr_array_index (missing, listed));
    }
  if (n_missing > listed)
    /* Translators: after a list of worker names: how many more are missing */
    g_string_append_printf (names, g_dngettext (NULL, " and %u more", " and %u more", n_missing - listed),
                            n_missing - listed);

  /* Translators: notification title at start-up */
  summary = g_strdup_printf (g_dngettext (NULL, "%u worker is missing", "%u workers are missing", n_missing),
                             n_missing);
  bf_notifier_show_fleet (self, &self->summary, summary, names->str,
                          "network-offline-symbolic", "network.disconnected", NOTIFY_URGENCY_CRITICAL);
}

static void
on_status_changed (BfNotifier *self)
{
  BfFleetStatus status = bf_fleet_model_get_status (self->model);

  if (status == BF_FLEET_STATUS_READY)
    {
      if (!self->was_ready && self->summarize_at_start)
        bf_notifier_summarize_missing (self);
      else if (self->daemon_gone)
        bf_notifier_show_fleet (self, &self->daemon, _("The fleet daemon is back"),
                                _("buildfleetd is running again; workers are watched again."),
                                "network-transmit-receive-symbolic", "network.connected",
                                NOTIFY_URGENCY_NORMAL);
      self->was_ready = TRUE;
      self->daemon_gone = FALSE;
    }
  else if ((status == BF_FLEET_STATUS_NO_DAEMON || status == BF_FLEET_STATUS_ERROR) &&
           self->was_ready && !self->daemon_gone)
    {
      self->daemon_gone = TRUE;
      bf_notifier_show_fleet (self, &self->daemon, _("The fleet daemon went away"),
                              _("buildfleetd is not running: nobody watches the workers until it is back."),
                              "network-error-symbolic", "network.error", NOTIFY_URGENCY_CRITICAL);
    }
}

/**
 * bf_notifier_set_summarize_at_start:
 *
 * When the fleet is first loaded, one notification says how many workers
 * are missing already (for --background: a login should not be silent).
 */
void
bf_notifier_set_summarize_at_start (BfNotifier *self,
                                    gboolean    summarize)
{
  g_return_if_fail (BF_IS_NOTIFIER (self));
  self->summarize_at_start = summarize;
}

static void
bf_notifier_dispose (GObject *object)
{
  BfNotifier *self = BF_NOTIFIER (object);

  if (self->model != NULL)
    g_signal_handlers_disconnect_by_data (self->model, self);
  g_clear_object (&self->model);
  g_clear_weak_pointer (&self->application);
  g_clear_pointer (&self->incidents, g_hash_table_unref);
  g_clear_object (&self->daemon);
  g_clear_object (&self->summary);

  G_OBJECT_CLASS (bf_notifier_parent_class)->dispose (object);
}

static void
bf_notifier_class_init (BfNotifierClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_notifier_dispose;
}

static void
bf_notifier_init (BfNotifier *self)
{
  self->incidents = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, bf_incidents_free);
}

/**
 * bf_notifier_new:
 * @application: the application whose "show-worker" action a click activates
 * @model: the fleet whose incidents to announce
 *
 * notify_init() must have been called.
 */
BfNotifier *
bf_notifier_new (GApplication *application,
                 BfFleetModel *model)
{
  BfNotifier *self;

  g_return_val_if_fail (G_IS_APPLICATION (application), NULL);
  g_return_val_if_fail (BF_IS_FLEET_MODEL (model), NULL);

  self = g_object_new (BF_TYPE_NOTIFIER, NULL);
  g_set_weak_pointer (&self->application, application);
  self->model = g_object_ref (model);

  g_signal_connect_object (model, "worker-missing",
                           G_CALLBACK (on_worker_missing), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (model, "worker-back-online",
                           G_CALLBACK (on_worker_back_online), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (model, "worker-substantiation-failed",
                           G_CALLBACK (on_worker_substantiation_failed), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (model, "worker-health-changed",
                           G_CALLBACK (on_worker_health_changed), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (model, "worker-flapping-changed",
                           G_CALLBACK (on_worker_flapping_changed), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (model, "notify::status",
                           G_CALLBACK (on_status_changed), self, G_CONNECT_SWAPPED);

  return self;
}
