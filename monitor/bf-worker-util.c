/* bf-worker-util.c: how the monitor describes a worker in words
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-worker-row.h"
#include "bf-worker-util.h"

G_DEFINE_ENUM_TYPE (BfWorkerState, bf_worker_state,
  G_DEFINE_ENUM_VALUE (BF_WORKER_STATE_MISSING, "missing"),
  G_DEFINE_ENUM_VALUE (BF_WORKER_STATE_DISCONNECTED, "disconnected"),
  G_DEFINE_ENUM_VALUE (BF_WORKER_STATE_SUBSTANTIATING, "substantiating"),
  G_DEFINE_ENUM_VALUE (BF_WORKER_STATE_INSUBSTANTIATING, "insubstantiating"),
  G_DEFINE_ENUM_VALUE (BF_WORKER_STATE_NOT_SUBSTANTIATED, "not-substantiated"),
  G_DEFINE_ENUM_VALUE (BF_WORKER_STATE_CONNECTED, "connected"))

/**
 * bf_worker_dup_latent:
 * @worker: a row of the fleet model, or a proxy from an object manager
 *
 * Returns: (transfer full) (nullable): the LatentWorker interface of the
 *   same object, if the worker is latent.
 */
BfDBusLatentWorker *
bf_worker_dup_latent (BfDBusWorker *worker)
{
  g_autoptr(GDBusObject) object = NULL;

  g_return_val_if_fail (BF_DBUS_IS_WORKER (worker), NULL);

  if (BF_IS_WORKER_ROW (worker))
    {
      BfLatentWorkerRow *latent = bf_worker_row_get_latent (BF_WORKER_ROW (worker));
      return latent != NULL ? g_object_ref (BF_DBUS_LATENT_WORKER (latent)) : NULL;
    }

  if (!G_IS_DBUS_INTERFACE (worker))
    return NULL;

  object = g_dbus_interface_dup_object (G_DBUS_INTERFACE (worker));
  if (object == NULL)
    return NULL;

  return bf_dbus_object_get_latent_worker (BF_DBUS_OBJECT (object));
}

BfWorkerState
bf_worker_state_classify (gboolean    connected,
                          gboolean    missing,
                          const char *latent_state)
{
  if (g_strcmp0 (latent_state, "substantiating") == 0)
    return BF_WORKER_STATE_SUBSTANTIATING;
  if (g_strcmp0 (latent_state, "insubstantiating") == 0)
    return BF_WORKER_STATE_INSUBSTANTIATING;
  if (connected)
    return BF_WORKER_STATE_CONNECTED;
  if (missing)
    return BF_WORKER_STATE_MISSING;
  if (latent_state != NULL)
    return BF_WORKER_STATE_NOT_SUBSTANTIATED;
  return BF_WORKER_STATE_DISCONNECTED;
}

BfWorkerState
bf_worker_get_state (BfDBusWorker *worker)
{
  g_autoptr(BfDBusLatentWorker) latent = NULL;

  g_return_val_if_fail (BF_DBUS_IS_WORKER (worker), BF_WORKER_STATE_DISCONNECTED);

  latent = bf_worker_dup_latent (worker);

  return bf_worker_state_classify (bf_dbus_worker_get_connected (worker),
                                   bf_dbus_worker_get_missing (worker),
                                   latent ? bf_dbus_latent_worker_get_state (latent) : NULL);
}

const char *
bf_worker_state_to_label (BfWorkerState state)
{
  switch (state)
    {
    case BF_WORKER_STATE_MISSING:
      return C_("worker state", "Missing");
    case BF_WORKER_STATE_DISCONNECTED:
      return C_("worker state", "Disconnected");
    case BF_WORKER_STATE_SUBSTANTIATING:
      return C_("worker state", "Substantiating…");
    case BF_WORKER_STATE_INSUBSTANTIATING:
      return C_("worker state", "Insubstantiating…");
    case BF_WORKER_STATE_NOT_SUBSTANTIATED:
      return C_("worker state", "Not substantiated");
    case BF_WORKER_STATE_CONNECTED:
      return C_("worker state", "Connected");
    default:
      g_return_val_if_reached (NULL);
    }
}

const char *
bf_worker_state_to_css_class (BfWorkerState state)
{
  switch (state)
    {
    case BF_WORKER_STATE_MISSING:
      return "missing";
    case BF_WORKER_STATE_DISCONNECTED:
      return "disconnected";
    case BF_WORKER_STATE_SUBSTANTIATING:
    case BF_WORKER_STATE_INSUBSTANTIATING:
      return "transitioning";
    case BF_WORKER_STATE_NOT_SUBSTANTIATED:
      return "idle";
    case BF_WORKER_STATE_CONNECTED:
      return "connected";
    default:
      g_return_val_if_reached (NULL);
    }
}

/* When the worker was last seen, for sorting: a connected worker is seen now. */
guint64
bf_worker_get_last_seen_usec (BfDBusWorker *worker)
{
  if (bf_dbus_worker_get_connected (worker))
    return G_MAXUINT64;
  return bf_dbus_worker_get_last_seen_usec (worker);
}

/**
 * bf_enum_to_nick:
 * @enum_type: a registered enum type
 * @value: one of its values
 *
 * Returns: (transfer none): the value's nick, or "" if unknown
 */
const char *
bf_enum_to_nick (GType enum_type,
                 int   value)
{
  g_autoptr(GEnumClass) enum_class = g_type_class_ref (enum_type);
  GEnumValue *enum_value = g_enum_get_value (enum_class, value);

  /* The class of a static type is never freed, nor are its nicks. */
  return enum_value != NULL ? enum_value->value_nick : "";
}

char *
bf_format_builds (guint active,
                  guint max)
{
  if (max == 0)
    /* Translators: running builds on a worker without a limit, e.g. "3 / ∞" */
    return g_strdup_printf (_("%u / ∞"), active);
  /* Translators: running builds out of the worker's maximum, e.g. "1 / 2" */
  return g_strdup_printf (_("%u / %u"), active, max);
}

/**
 * bf_format_relative_time:
 * @now_usec: the current CLOCK_REALTIME time in microseconds
 * @then_usec: a CLOCK_REALTIME time in microseconds, 0 for never
 *
 * Returns: (transfer full): "just now", "5 minutes ago", … or "never"
 */
char *
bf_format_relative_time (gint64  now_usec,
                         guint64 then_usec)
{
  gint64 seconds;

  if (then_usec == 0)
    return g_strdup (C_("last seen", "Never"));

  seconds = (now_usec - (gint64) then_usec) / G_USEC_PER_SEC;

  if (seconds < 10)
    return g_strdup (C_("last seen", "Just now"));
  if (seconds < 60)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d second ago", "%d seconds ago", seconds),
                            (int) seconds);
  if (seconds < 60 * 60)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d minute ago", "%d minutes ago", seconds / 60),
                            (int) (seconds / 60));
  if (seconds < 24 * 60 * 60)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d hour ago", "%d hours ago", seconds / 3600),
                            (int) (seconds / 3600));
  return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d day ago", "%d days ago", seconds / 86400),
                          (int) (seconds / 86400));
}

char *
bf_format_last_seen (gint64   now_usec,
                     gboolean connected,
                     guint64  disconnected_since_usec)
{
  if (connected)
    return g_strdup (C_("last seen", "Now"));
  return bf_format_relative_time (now_usec, disconnected_since_usec);
}

/**
 * bf_format_timestamp:
 * @usec: CLOCK_REALTIME microseconds, 0 for never
 *
 * Returns: (transfer full): the local date and time, or "Never"
 */
char *
bf_format_timestamp (guint64 usec)
{
  g_autoptr(GDateTime) dt = NULL;

  if (usec == 0 || usec > (guint64) G_MAXINT64)
    return g_strdup (C_("timestamp", "Never"));

  dt = g_date_time_new_from_unix_local ((gint64) (usec / G_USEC_PER_SEC));
  if (dt == NULL)
    return g_strdup (C_("timestamp", "Never"));

  /* Translators: a date and time, see g_date_time_format() */
  return g_date_time_format (dt, _("%Y-%m-%d %H:%M:%S"));
}

/**
 * bf_format_duration:
 * @usec: a duration in microseconds
 *
 * Returns: (transfer full): the duration in the largest unit that fits, in words
 */
char *
bf_format_duration (guint64 usec)
{
  guint64 seconds = usec / G_USEC_PER_SEC;

  if (usec % G_USEC_PER_SEC != 0 && seconds < 60)
    /* Translators: a short duration in seconds with decimals */
    return g_strdup_printf (_("%.1f seconds"), usec / (double) G_USEC_PER_SEC);
  if (seconds < 60 || seconds % 60 != 0)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u second", "%u seconds", seconds), (guint) seconds);
  if (seconds < 3600 || seconds % 3600 != 0)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u minute", "%u minutes", seconds / 60), (guint) (seconds / 60));
  return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u hour", "%u hours", seconds / 3600), (guint) (seconds / 3600));
}

/**
 * bf_format_elapsed:
 * @usec: a span of time in microseconds
 *
 * Returns: (transfer full): a short live duration: "8 s", "3 min 4 s",
 * "2 h 5 min", "3 d 2 h"
 */
char *
bf_format_elapsed (gint64 usec)
{
  gint64 s = MAX (usec, 0) / G_USEC_PER_SEC;

  if (s < 60)
    /* Translators: a short duration: seconds */
    return g_strdup_printf (_("%d s"), (int) s);
  if (s < 3600)
    /* Translators: a short duration: minutes and seconds */
    return g_strdup_printf (_("%d min %d s"), (int) (s / 60), (int) (s % 60));
  if (s < 86400)
    /* Translators: a short duration: hours and minutes */
    return g_strdup_printf (_("%d h %d min"), (int) (s / 3600), (int) (s % 3600 / 60));
  /* Translators: a short duration: days and hours */
  return g_strdup_printf (_("%d d %d h"), (int) (s / 86400), (int) (s % 86400 / 3600));
}
