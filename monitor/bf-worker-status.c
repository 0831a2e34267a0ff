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
 * most (missing, quarantined, paused, graceful, then the connection), and
 * all of it in the tooltip, so the column no longer overflows.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-worker-status.h"
#include "bf-worker-util.h"

struct _BfWorkerStatus
{
  GtkWidget           parent_instance;

  BfDBusWorker       *worker;
  GSignalGroup       *worker_signals;
  GSignalGroup       *latent_signals;
  const char         *state_class;
  gboolean            compact;

  GtkLabel           *state_label;
  GtkLabel           *graceful_badge;
  GtkLabel           *paused_badge;
  GtkLabel           *quarantined_badge;
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

static void
bf_worker_status_update (BfWorkerStatus *self)
{
  g_autoptr(BfDBusLatentWorker) latent = NULL;
  g_autofree char *quarantine_tooltip = NULL;
  BfWorkerState state;
  const char *reason;
  gboolean paused;
  gboolean quarantined;

  if (self->worker == NULL)
    {
      gtk_label_set_label (self->state_label, "");
      gtk_widget_set_visible (GTK_WIDGET (self->graceful_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->paused_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->quarantined_badge), FALSE);
      gtk_widget_set_visible (GTK_WIDGET (self->reason_label), FALSE);
      return;
    }

  latent = bf_worker_dup_latent (self->worker);
  g_signal_group_set_target (self->latent_signals, latent);

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
    {
      g_autofree char *until = bf_format_timestamp (bf_dbus_worker_get_quarantine_until_usec (self->worker));
      /* Translators: tooltip of the Quarantined badge, %s is a date and time */
      quarantine_tooltip = g_strdup_printf (_("Kept away from builds until %s"), until);
    }
  set_tooltip_text (GTK_WIDGET (self->quarantined_badge), quarantine_tooltip);

  if (self->compact)
    {
      g_autoptr(GString) all = g_string_new (bf_worker_state_to_label (state));
      GtkWidget *headline = GTK_WIDGET (self->state_label);

      if (bf_dbus_worker_get_graceful (self->worker))
        {
          g_string_append_printf (all, "\n%s", _("Graceful shutdown: takes no new builds"));
          headline = GTK_WIDGET (self->graceful_badge);
        }
      if (paused)
        {
          if (reason != NULL && reason[0] != '\0')
            /* Translators: in the State column's tooltip, %s is the pause reason */
            g_string_append_printf (all, _("\nPaused: %s"), reason);
          else
            g_string_append_printf (all, "\n%s", _("Paused"));
          headline = GTK_WIDGET (self->paused_badge);
        }
      if (quarantined)
        {
          g_string_append_printf (all, "\n%s", quarantine_tooltip);
          headline = GTK_WIDGET (self->quarantined_badge);
        }
      if (state == BF_WORKER_STATE_MISSING)
        headline = GTK_WIDGET (self->state_label);

      gtk_widget_set_visible (GTK_WIDGET (self->state_label), headline == GTK_WIDGET (self->state_label));
      gtk_widget_set_visible (GTK_WIDGET (self->graceful_badge), headline == GTK_WIDGET (self->graceful_badge));
      gtk_widget_set_visible (GTK_WIDGET (self->paused_badge), headline == GTK_WIDGET (self->paused_badge));
      gtk_widget_set_visible (GTK_WIDGET (self->quarantined_badge), headline == GTK_WIDGET (self->quarantined_badge));
      gtk_widget_set_visible (GTK_WIDGET (self->reason_label), FALSE);
      set_tooltip_text (GTK_WIDGET (self), all->str);
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
on_notify (BfWorkerStatus *self)
{
  bf_worker_status_update (self);
}

static void
bf_worker_status_dispose (GObject *object)
{
  BfWorkerStatus *self = BF_WORKER_STATUS (object);

  g_signal_group_set_target (self->worker_signals, NULL);
  g_signal_group_set_target (self->latent_signals, NULL);
  g_clear_object (&self->worker);

  gtk_widget_dispose_template (GTK_WIDGET (self), BF_TYPE_WORKER_STATUS);

  G_OBJECT_CLASS (bf_worker_status_parent_class)->dispose (object);
}

static void
bf_worker_status_finalize (GObject *object)
{
  BfWorkerStatus *self = BF_WORKER_STATUS (object);

  g_clear_object (&self->worker_signals);
  g_clear_object (&self->latent_signals);

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
  gtk_widget_class_bind_template_child (widget_class, BfWorkerStatus, reason_label);
  gtk_widget_class_set_css_name (widget_class, "workerstatus");
}

static void
bf_worker_status_init (BfWorkerStatus *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  self->worker_signals = g_signal_group_new (G_TYPE_OBJECT);
  g_signal_group_connect_swapped (self->worker_signals, "notify", G_CALLBACK (on_notify), self);

  self->latent_signals = g_signal_group_new (G_TYPE_OBJECT);
  g_signal_group_connect_swapped (self->latent_signals, "notify::state", G_CALLBACK (on_notify), self);
  g_signal_group_connect_swapped (self->latent_signals, "notify::last-error", G_CALLBACK (on_notify), self);
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

  g_signal_group_set_target (self->worker_signals, worker);
  if (worker == NULL)
    g_signal_group_set_target (self->latent_signals, NULL);

  bf_worker_status_update (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_WORKER]);
}
