/* bf-worker-status.c: a worker's state pill and its admin badges
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * Used in the list's State column and in the details pane.  It follows its
 * worker (and the worker's LatentWorker interface, if any) through signal
 * groups, so only the rows on screen listen to property changes.
 *
 * Compact (the list's State column): one clear state, the one that matters
 * most (missing, flapping, unhealthy, quarantined, paused, graceful, then
 * the connection), and
 * all of it in the tooltip, so the column no longer overflows.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-worker-status.h"
#include "bf-worker-util.h"
#include "bf-worker-watch.h"

struct _BfWorkerStatus
{
  GtkWidget           parent_instance;

  BfDBusWorker       *worker;
  BfWorkerWatch      *watch;
  const char         *state_class;
  gboolean            compact;

  GtkLabel           *state_label;
  GtkLabel           *graceful_badge;
  GtkLabel           *paused_badge;
  GtkLabel           *quarantined_badge;
  GtkLabel           *unhealthy_badge;
  GtkLabel           *flapping_badge;
  GtkLabel           *reason_label;
};

G_DEFINE_FINAL_TYPE (BfWorkerStatus, bf_worker_status, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_WORKER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* GTK 4.8 queries the pointer from the X server (a round trip) each time a
 * visible widget's tooltip is set, even to the text it has; the rows of the
 * list set theirs each time they are bound, as often as every frame while
 * scrolling. */
static void
set_tooltip_text (GtkWidget  *widget,
                  const char *text)
{
  if (g_strcmp0 (gtk_widget_get_tooltip_text (widget), text) != 0)
    gtk_widget_set_tooltip_text (widget, text);
}

typedef enum
{
  HEADLINE_STATE,
  HEADLINE_GRACEFUL,
  HEADLINE_PAUSED,
  HEADLINE_QUARANTINED,
  HEADLINE_UNHEALTHY,
  HEADLINE_FLAPPING,
} BfHeadline;

static char *
quarantine_text (BfDBusWorker *worker)
{
  g_autofree char *until = bf_format_timestamp (bf_dbus_worker_get_quarantine_until_usec (worker));

  /* Translators: tooltip of the Quarantined badge, %s is a date and time */
  return g_strdup_printf (_("Kept away from builds until %s"), until);
}

static char *
health_text (BfDBusWorker *worker)
{
  const char *reason = bf_dbus_worker_get_health_reason (worker);

  if (reason != NULL && reason[0] != '\0')
    /* Translators: tooltip of the Unhealthy badge, %s is why (the failed health check) */
    return g_strdup_printf (_("Unhealthy: %s"), reason);
  return g_strdup (_("Unhealthy: failed its last health checks"));
}

/* The compact status: the state that matters most (missing, flapping,
 * unhealthy, quarantined, paused, graceful, then the connection), and all
 * of it, one line each, in @tooltip. */
static BfHeadline
describe (BfDBusWorker  *worker,
          BfWorkerState  state,
          char         **tooltip)
{
  g_autoptr(GString) all = g_string_new (bf_worker_state_to_label (state));
  BfHeadline headline = HEADLINE_STATE;
  const char *reason = bf_dbus_worker_get_pause_reason (worker);

  if (bf_dbus_worker_get_graceful (worker))
    {
      g_string_append_printf (all, "\n%s", _("Graceful shutdown: takes no new builds"));
      headline = HEADLINE_GRACEFUL;
    }
  if (bf_dbus_worker_get_paused (worker))
    {
      if (reason != NULL && reason[0] != '\0')
        /* Translators: in the State column's tooltip, %s is the pause reason */
        g_string_append_printf (all, _("\nPaused: %s"), reason);
      else
        g_string_append_printf (all, "\n%s", _("Paused"));
      headline = HEADLINE_PAUSED;
    }
  if (bf_dbus_worker_get_quarantined (worker))
    {
      g_autofree char *text = quarantine_text (worker);
      g_string_append_printf (all, "\n%s", text);
      headline = HEADLINE_QUARANTINED;
    }
  if (bf_dbus_worker_get_unhealthy (worker))
    {
      g_autofree char *text = health_text (worker);
      g_string_append_printf (all, "\n%s", text);
      headline = HEADLINE_UNHEALTHY;
    }
  if (bf_dbus_worker_get_flapping (worker))
    {
      g_string_append_printf (all, "\n%s", _("Flapping: gets no new builds until it stays attached"));
      headline = HEADLINE_FLAPPING;
    }
  if (state == BF_WORKER_STATE_MISSING)
    headline = HEADLINE_STATE;

  *tooltip = g_string_free (g_steal_pointer (&all), FALSE);
  return headline;
}

static void
bf_worker_status_update (BfWorkerStatus *self)
{
  g_autoptr(BfDBusLatentWorker) latent = NULL;
  g_autofree char *quarantine_tooltip = NULL;
  g_autofree char *health_tooltip = NULL;
  BfWorkerState state;
  const char *reason;
  gboolean paused;
  gboolean quarantined;
  gboolean unhealthy;
  gboolean flapping;

  if (self->worker == NULL)
    {
      gtk_label_set_label (self->state_label, "");
      gtk_widget_set_visible (GTK_WIDGET (self->graceful_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->paused_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->quarantined_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->unhealthy_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->flapping_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->reason_label), FALSE);
      return;
    }

  latent = bf_worker_dup_latent (self->worker);

  state = bf_worker_get_state (self->worker);
  gtk_label_set_label (self->state_label, bf_worker_state_to_label (state));
  if (self->state_class != NULL)
    gtk_widget_remove_css_class (GTK_WIDGET (self->state_label), self->state_class);
  self->state_class = bf_worker_state_to_css_class (state);
  gtk_widget_add_css_class (GTK_WIDGET (self->state_label), self->state_class);

  if (latent != NULL && state == BF_WORKER_STATE_NOT_SUBSTANTIATED &&
      bf_dbus_latent_worker_get_last_error (latent) != NULL &&
      bf_dbus_latent_worker_get_last_error (latent)[0] != '\0')
    set_tooltip_text (GTK_WIDGET (self->state_label),
                                 bf_dbus_latent_worker_get_last_error (latent));
  else
    set_tooltip_text (GTK_WIDGET (self->state_label), NULL);

  gtk_widget_set_visible (GTK_WIDGET (self->graceful_badge),
                          bf_dbus_worker_get_graceful (self->worker));

  paused = bf_dbus_worker_get_paused (self->worker);
  reason = bf_dbus_worker_get_pause_reason (self->worker);
  gtk_widget_set_visible (GTK_WIDGET (self->paused_badge), paused);
  set_tooltip_text (GTK_WIDGET (self->paused_badge),
                               (paused && reason != NULL && reason[0] != '\0') ? reason : NULL);
  gtk_widget_set_visible (GTK_WIDGET (self->reason_label),
                          paused && reason != NULL && reason[0] != '\0');
  gtk_label_set_label (self->reason_label, reason != NULL ? reason : "");

  quarantined = bf_dbus_worker_get_quarantined (self->worker);
  gtk_widget_set_visible (GTK_WIDGET (self->quarantined_badge), quarantined);
  if (quarantined)
    quarantine_tooltip = quarantine_text (self->worker);
  set_tooltip_text (GTK_WIDGET (self->quarantined_badge), quarantine_tooltip);

  unhealthy = bf_dbus_worker_get_unhealthy (self->worker);
  gtk_widget_set_visible (GTK_WIDGET (self->unhealthy_badge), unhealthy);
  if (unhealthy)
    health_tooltip = health_text (self->worker);
  set_tooltip_text (GTK_WIDGET (self->unhealthy_badge), health_tooltip);

  flapping = bf_dbus_worker_get_flapping (self->worker);
  gtk_widget_set_visible (GTK_WIDGET (self->flapping_badge), flapping);

  if (self->compact)
    {
      g_autofree char *all = NULL;
      BfHeadline headline = describe (self->worker, state, &all);
      GtkWidget *widgets[] = {
        [HEADLINE_STATE] = GTK_WIDGET (self->state_label),
        [HEADLINE_GRACEFUL] = GTK_WIDGET (self->graceful_badge),
        [HEADLINE_PAUSED] = GTK_WIDGET (self->paused_badge),
        [HEADLINE_QUARANTINED] = GTK_WIDGET (self->quarantined_badge),
        [HEADLINE_UNHEALTHY] = GTK_WIDGET (self->unhealthy_badge),
        [HEADLINE_FLAPPING] = GTK_WIDGET (self->flapping_badge),
      };

      for (guint i = 0; i < G_N_ELEMENTS (widgets); i++)
        gtk_widget_set_visible (widgets[i], i == headline);
      gtk_widget_set_visible (GTK_WIDGET (self->reason_label), FALSE);
      set_tooltip_text (GTK_WIDGET (self), all);
    }
}

/**
 * bf_worker_status_describe:
 * @worker: a worker
 * @tooltip: (out) (optional): all of its state, one line each
 *
 * What the compact status (the list's State column) shows for @worker: the
 * state that matters most, and the rest in its tooltip.
 *
 * Returns: (transfer full): the label shown
 */
char *
bf_worker_status_describe (BfDBusWorker  *worker,
                           char         **tooltip)
{
  BfWorkerState state;
  g_autofree char *all = NULL;
  BfHeadline headline;

  g_return_val_if_fail (BF_DBUS_IS_WORKER (worker), NULL);

  state = bf_worker_get_state (worker);
  headline = describe (worker, state, &all);
  if (tooltip != NULL)
    *tooltip = g_steal_pointer (&all);

  switch (headline)
    {
    case HEADLINE_GRACEFUL:
      return g_strdup (C_("badge", "Graceful"));
    case HEADLINE_PAUSED:
      return g_strdup (C_("badge", "Paused"));
    case HEADLINE_QUARANTINED:
      return g_strdup (C_("badge", "Quarantined"));
    case HEADLINE_UNHEALTHY:
      return g_strdup (C_("badge", "Unhealthy"));
    case HEADLINE_FLAPPING:
      return g_strdup (C_("badge", "Flapping"));
    case HEADLINE_STATE:
    default:
      return g_strdup (bf_worker_state_to_label (state));
    }
}

/**
 * bf_worker_status_set_compact:
 *
 * Shows one state, the one that matters most, and the rest in the tooltip.
 */
void
bf_worker_status_set_compact (BfWorkerStatus *self,
                              gboolean        compact)
{
  g_return_if_fail (BF_IS_WORKER_STATUS (self));
  self->compact = compact;
  bf_worker_status_update (self);
}

static void
on_notify (gpointer    user_data,
           GObject    *object,
           GParamSpec *pspec)
{
  bf_worker_status_update (BF_WORKER_STATUS (user_data));
}

static void
bf_worker_status_dispose (GObject *object)
{
  BfWorkerStatus *self = BF_WORKER_STATUS (object);

  bf_worker_watch_set_worker (self->watch, NULL);
  g_clear_object (&self->worker);

  gtk_widget_dispose_template (GTK_WIDGET (self), BF_TYPE_WORKER_STATUS);

  G_OBJECT_CLASS (bf_worker_status_parent_class)->dispose (object);
}

static void
bf_worker_status_finalize (GObject *object)
{
  BfWorkerStatus *self = BF_WORKER_STATUS (object);

  g_clear_pointer (&self->watch, bf_worker_watch_free);

  G_OBJECT_CLASS (bf_worker_status_parent_class)->finalize (object);
}

static void
bf_worker_status_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  BfWorkerStatus *self = BF_WORKER_STATUS (object);

  switch (prop_id)
    {
    case PROP_WORKER:
      g_value_set_object (value, self->worker);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bf_worker_status_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  BfWorkerStatus *self = BF_WORKER_STATUS (object);

  switch (prop_id)
    {
    case PROP_WORKER:
      bf_worker_status_set_worker (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bf_worker_status_class_init (BfWorkerStatusClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = bf_worker_status_dispose;
  object_class->finalize = bf_worker_status_finalize;
  object_class->get_property = bf_worker_status_get_property;
  object_class->set_property = bf_worker_status_set_property;

  properties[PROP_WORKER] =
    g_param_spec_object ("worker", NULL, NULL,
                         BF_DBUS_TYPE_WORKER,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/buildfleet/Monitor/bf-worker-status.ui");
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, state_label);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, graceful_badge);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, paused_badge);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, quarantined_badge);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, unhealthy_badge);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, flapping_badge);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, reason_label);
  gtk_widget_class_set_css_name (widget_class, "workerstatus");
}

static void
bf_worker_status_init (BfWorkerStatus *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  self->watch = bf_worker_watch_new (on_notify, self);
}

GtkWidget *
bf_worker_status_new (void)
{
  return g_object_new (BF_TYPE_WORKER_STATUS, NULL);
}

/**
 * bf_worker_status_get_worker:
 *
 * Returns: (transfer none) (nullable): the worker shown
 */
BfDBusWorker *
bf_worker_status_get_worker (BfWorkerStatus *self)
{
  g_return_val_if_fail (BF_IS_WORKER_STATUS (self), NULL);
  return self->worker;
}

void
bf_worker_status_set_worker (BfWorkerStatus *self,
                             BfDBusWorker   *worker)
{
  g_return_if_fail (BF_IS_WORKER_STATUS (self));
  g_return_if_fail (worker == NULL || BF_DBUS_IS_WORKER (worker));

  if (!g_set_object (&self->worker, worker))
    return;

  bf_worker_watch_set_worker (self->watch, worker);

  bf_worker_status_update (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_WORKER]);
}
