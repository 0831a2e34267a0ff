/* bf-worker-history.c: what happened to one worker, from Worker.GetHistory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * An availability strip for the last 24 hours (connected, away, missing,
 * unknown), a line that sums it up ("Connected 87% of the last 24 hours,
 * 3 disconnects"), and the timeline: the newest events first.  The history
 * is read with one GetHistory call for the last 7 days, again (at most
 * every half second) whenever the worker's presence or admin state changes.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-worker-history.h"
#include "bf-worker-util.h"

#define WINDOW_USEC   ((gint64) 24 * 3600 * G_USEC_PER_SEC)
#define FETCH_USEC    ((gint64) 7 * 24 * 3600 * G_USEC_PER_SEC)
#define MAX_SHOWN     30

typedef enum {
  SPAN_UNKNOWN,
  SPAN_CONNECTED,
  SPAN_AWAY,
  SPAN_MISSING,
} SpanKind;

typedef struct
{
  gint64 start;
  gint64 end;
  SpanKind kind;
} Span;

struct _BfWorkerHistory
{
  GtkWidget parent_instance;

  GDBusConnection *connection;
  char *name_owner;
  char *object_path;
  gboolean connected;
  GCancellable *cancellable;
  guint refetch_source;

  GVariant *events;      /* a(tsss), oldest first, or NULL */
  GArray *spans;         /* Span over the last 24 hours */

  GtkWidget *box;
  GtkWidget *strip;
  GtkWidget *strip_label;
  GtkWidget *rows_box;
};

G_DEFINE_FINAL_TYPE (BfWorkerHistory, bf_worker_history, GTK_TYPE_WIDGET)

/**
 * bf_worker_history_describe:
 *
 * Returns: (transfer full): an event in words, e.g. "Detached: connection lost"
 */
char *
bf_worker_history_describe (const char *event,
                            const char *detail,
                            const char *actor)
{
  g_autofree char *text = NULL;
  gboolean has_detail = detail != NULL && detail[0] != '\0';

  if (g_str_equal (event, "attached"))
    text = has_detail ? g_strdup_printf (_("Attached from %s"), detail) : g_strdup (_("Attached"));
  else if (g_str_equal (event, "detached"))
    text = has_detail ? g_strdup_printf (_("Detached: %s"), detail) : g_strdup (_("Detached"));
  else if (g_str_equal (event, "missing"))
    text = g_strdup (_("Missing"));
  else if (g_str_equal (event, "back-online"))
    text = has_detail ? g_strdup_printf (_("Back online after %s"), detail) : g_strdup (_("Back online"));
  else if (g_str_equal (event, "paused"))
    text = has_detail ? g_strdup_printf (_("Paused: %s"), detail) : g_strdup (_("Paused"));
  else if (g_str_equal (event, "unpaused"))
    text = g_strdup (_("Unpaused"));
  else if (g_str_equal (event, "graceful"))
    text = has_detail ? g_strdup_printf (_("Graceful shutdown: %s"), detail) : g_strdup (_("Graceful shutdown"));
  else if (g_str_equal (event, "graceful-cancelled"))
    text = g_strdup (_("Graceful shutdown cancelled"));
  else if (g_str_equal (event, "quarantined"))
    text = has_detail ? g_strdup_printf (_("Quarantined: %s"), detail) : g_strdup (_("Quarantined"));
  else if (g_str_equal (event, "quarantine-ended"))
    text = g_strdup (_("Quarantine ended"));
  else if (g_str_equal (event, "instance"))
    text = g_strdup_printf (_("Instance %s"), has_detail ? detail : "");
  else if (g_str_equal (event, "unhealthy"))
    text = has_detail ? g_strdup_printf (_("Unhealthy: %s"), detail) : g_strdup (_("Unhealthy"));
  else if (g_str_equal (event, "healthy"))
    text = g_strdup (_("Healthy again"));
  else if (g_str_equal (event, "flapping"))
    text = has_detail ? g_strdup_printf (_("Flapping: too many detaches within %s"), detail) : g_strdup (_("Flapping"));
  else if (g_str_equal (event, "flapping-ended"))
    text = g_strdup (_("No longer flapping"));
  else if (g_str_equal (event, "substantiation-failed"))
    text = has_detail ? g_strdup_printf (_("Failed to start: %s"), detail) : g_strdup (_("Failed to start"));
  else
    text = has_detail ? g_strdup_printf ("%s: %s", event, detail) : g_strdup (event);

  if (actor != NULL && actor[0] != '\0')
    /* Translators: an event and who caused it (a bus name) */
    return g_strdup_printf (_("%s (by %s)"), text, actor);
  return g_steal_pointer (&text);
}

/* The strip ------------------------------------------------------------------ */

static void
compute_spans (BfWorkerHistory *self,
               gint64           now)
{
  gint64 from = now - WINDOW_USEC;
  SpanKind kind = SPAN_UNKNOWN;
  gint64 start = from;
  GVariantIter iter;
  guint64 time;
  const char *event;

  g_array_set_size (self->spans, 0);
  if (self->events != NULL)
    {
      g_variant_iter_init (&iter, self->events);
      while (g_variant_iter_next (&iter, "(t&s&s&s)", &time, &event, NULL, NULL))
        {
          SpanKind next;

          if (g_str_equal (event, "attached") || g_str_equal (event, "back-online"))
            next = SPAN_CONNECTED;
          else if (g_str_equal (event, "detached"))
            next = SPAN_AWAY;
          else if (g_str_equal (event, "missing"))
            next = SPAN_MISSING;
          else
            continue;
          if ((gint64) time > start)
            {
              Span span = { start, MIN ((gint64) time, now), kind };
              if (span.end > span.start)
                g_array_append_val (self->spans, span);
              start = (gint64) time;
            }
          kind = next;
        }
    }
  /* Up to now, the worker as it is. */
  if (self->connected)
    kind = SPAN_CONNECTED;
  else if (kind == SPAN_CONNECTED || kind == SPAN_UNKNOWN)
    kind = kind == SPAN_UNKNOWN ? SPAN_UNKNOWN : SPAN_AWAY;
  if (now > start)
    {
      Span span = { start, now, kind };
      g_array_append_val (self->spans, span);
    }
}

static void
strip_draw (GtkDrawingArea *area,
            cairo_t        *cr,
            int             width,
            int             height,
            gpointer        user_data)
{
  BfWorkerHistory *self = BF_WORKER_HISTORY (user_data);
  gint64 to = g_get_real_time ();
  gint64 from = to - WINDOW_USEC;

  /* Less than a day known: the strip spans what is known, as the line
   * under it says ("since …"), so that a young history is readable too. */
  for (guint i = 0; i < self->spans->len; i++)
    if (g_array_index (self->spans, Span, i).kind != SPAN_UNKNOWN)
      {
        from = MIN (g_array_index (self->spans, Span, i).start, to - 60 * G_USEC_PER_SEC);
        break;
      }

  for (guint i = 0; i < self->spans->len; i++)
    {
      Span *span = &g_array_index (self->spans, Span, i);
      double x0 = (double) (MAX (span->start, from) - from) / (to - from) * width;
      double x1 = (double) (span->end - from) / (to - from) * width;

      if (span->end <= from)
        continue;

      switch (span->kind)
        {
        case SPAN_CONNECTED:
          cairo_set_source_rgb (cr, 0.2, 0.82, 0.48);   /* GNOME green 3 */
          break;
        case SPAN_AWAY:
          cairo_set_source_rgb (cr, 0.96, 0.76, 0.07);  /* yellow 4 */
          break;
        case SPAN_MISSING:
          cairo_set_source_rgb (cr, 0.88, 0.11, 0.14);  /* red 3 */
          break;
        case SPAN_UNKNOWN:
        default:
          cairo_set_source_rgba (cr, 0.5, 0.5, 0.5, 0.25);
          break;
        }
      /* At least a pixel: a short disconnect must show. */
      cairo_rectangle (cr, x0, 0, MAX (x1 - x0, 1.0), height);
      cairo_fill (cr);
    }
}

static char *
summarize (BfWorkerHistory *self)
{
  gint64 known = 0, up = 0;
  guint disconnects = 0;
  gint64 from = g_get_real_time () - WINDOW_USEC;
  GVariantIter iter;
  guint64 time;
  const char *event;
  g_autofree char *count = NULL;

  for (guint i = 0; i < self->spans->len; i++)
    {
      Span *span = &g_array_index (self->spans, Span, i);

      if (span->kind != SPAN_UNKNOWN)
        known += span->end - span->start;
      if (span->kind == SPAN_CONNECTED)
        up += span->end - span->start;
    }
  if (self->events != NULL)
    {
      g_variant_iter_init (&iter, self->events);
      while (g_variant_iter_next (&iter, "(t&s&s&s)", &time, &event, NULL, NULL))
        if ((gint64) time >= from && g_str_equal (event, "detached"))
          disconnects++;
    }
  count = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u disconnect", "%u disconnects", disconnects),
                           disconnects);
  if (known == 0)
    /* Translators: the availability strip knows nothing of the last day */
    return g_strdup_printf (_("No history for the last 24 hours; %s"), count);
  if (known < WINDOW_USEC - 60 * G_USEC_PER_SEC)
    {
      /* Less than a day known: say since when. */
      g_autofree char *since = NULL;

      for (guint i = 0; i < self->spans->len; i++)
        if (g_array_index (self->spans, Span, i).kind != SPAN_UNKNOWN)
          {
            since = bf_format_timestamp ((guint64) g_array_index (self->spans, Span, i).start);
            break;
          }
      /* Translators: availability since the first event known, e.g. "Connected 87% since 2024-05-01 10:00:00, 3 disconnects" */
      return g_strdup_printf (_("Connected %d%% since %s, %s"), (int) (100.0 * up / known + 0.5),
                              since != NULL ? since : "?", count);
    }
  /* Translators: availability over the last day, e.g. "Connected 87% of the last 24 hours, 3 disconnects" */
  return g_strdup_printf (_("Connected %d%% of the last 24 hours, %s"),
                          (int) (100.0 * up / known + 0.5), count);
}

/* The timeline ------------------------------------------------------------------ */

static void
rebuild_rows (BfWorkerHistory *self)
{
  GtkWidget *child;
  gsize n = self->events != NULL ? g_variant_n_children (self->events) : 0;
  guint shown = 0;

  /* The rows are few (MAX_SHOWN) and change only when an event comes. */
  while ((child = gtk_widget_get_first_child (self->rows_box)) != NULL)
    gtk_box_remove (GTK_BOX (self->rows_box), child);

  for (gsize i = n; i > 0 && shown < MAX_SHOWN; i--, shown++)
    {
      guint64 time;
      const char *event, *detail, *actor;
      g_autofree char *when = NULL;
      g_autofree char *what = NULL;
      GtkWidget *row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
      GtkWidget *time_label, *what_label;

      g_variant_get_child (self->events, i - 1, "(t&s&s&s)", &time, &event, &detail, &actor);
      when = bf_format_timestamp (time);
      what = bf_worker_history_describe (event, detail, actor);
      time_label = gtk_label_new (when);
      gtk_widget_add_css_class (time_label, "dim-label");
      gtk_widget_add_css_class (time_label, "numeric");
      gtk_label_set_yalign (GTK_LABEL (time_label), 0);
      what_label = gtk_label_new (what);
      gtk_label_set_xalign (GTK_LABEL (what_label), 0);
      gtk_label_set_wrap (GTK_LABEL (what_label), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (what_label), PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (GTK_LABEL (what_label), TRUE);
      gtk_widget_set_hexpand (what_label, TRUE);
      gtk_widget_add_css_class (row, g_str_equal (event, "missing") || g_str_equal (event, "quarantined") ||
                                     g_str_equal (event, "unhealthy") || g_str_equal (event, "flapping") ||
                                     g_str_equal (event, "substantiation-failed") ? "history-alert" : "history-event");
      gtk_box_append (GTK_BOX (row), time_label);
      gtk_box_append (GTK_BOX (row), what_label);
      gtk_box_append (GTK_BOX (self->rows_box), row);
    }
  if (n == 0)
    {
      GtkWidget *label = gtk_label_new (_("Nothing happened yet."));
      gtk_label_set_xalign (GTK_LABEL (label), 0);
      gtk_widget_add_css_class (label, "dim-label");
      gtk_box_append (GTK_BOX (self->rows_box), label);
    }
}

static void
update_view (BfWorkerHistory *self)
{
  g_autofree char *summary = NULL;

  compute_spans (self, g_get_real_time ());
  summary = summarize (self);
  gtk_label_set_label (GTK_LABEL (self->strip_label), summary);
  gtk_widget_queue_draw (self->strip);
  rebuild_rows (self);
}

/* Fetching -------------------------------------------------------------------- */

static void
get_history_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  BfWorkerHistory *self;

  if (reply == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_debug ("Could not read the worker's history: %s", error->message);
      return;
    }
  self = BF_WORKER_HISTORY (user_data);
  g_clear_pointer (&self->events, g_variant_unref);
  self->events = g_variant_get_child_value (reply, 0);
  update_view (self);
}

static void
fetch (BfWorkerHistory *self)
{
  gint64 now = g_get_real_time ();

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  if (self->connection == NULL || self->object_path == NULL)
    return;
  self->cancellable = g_cancellable_new ();
  /* user_data is not referenced: the call is cancelled in dispose. */
  g_dbus_connection_call (self->connection, self->name_owner, self->object_path,
                          "org.buildfleet.Fleet1.Worker", "GetHistory",
                          g_variant_new ("(ttu)", (guint64) MAX (now - FETCH_USEC, 0), (guint64) 0, (guint32) 500),
                          G_VARIANT_TYPE ("(a(tsss))"), G_DBUS_CALL_FLAGS_NONE, -1,
                          self->cancellable, get_history_cb, self);
}

static gboolean
refetch_cb (gpointer user_data)
{
  BfWorkerHistory *self = BF_WORKER_HISTORY (user_data);

  self->refetch_source = 0;
  fetch (self);
  return G_SOURCE_REMOVE;
}

/**
 * bf_worker_history_queue_refresh:
 * @connected: whether the worker is connected now
 *
 * Reads the history again soon: something happened to the worker.
 */
void
bf_worker_history_queue_refresh (BfWorkerHistory *self,
                                 gboolean         connected)
{
  self->connected = connected;
  if (self->refetch_source != 0)
    return;
  self->refetch_source = g_timeout_add (300, refetch_cb, self);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->refetch_source),
                            "[buildfleet-monitor] refetch history");
}

/**
 * bf_worker_history_set_worker:
 *
 * Shows the history of the worker at @object_path of the daemon
 * @name_owner on @connection; NULLs for none.
 */
void
bf_worker_history_set_worker (BfWorkerHistory *self,
                              GDBusConnection *connection,
                              const char      *name_owner,
                              const char      *object_path,
                              gboolean         connected)
{
  g_clear_handle_id (&self->refetch_source, g_source_remove);
  g_set_object (&self->connection, connection);
  g_free (self->name_owner);
  self->name_owner = g_strdup (name_owner);
  g_free (self->object_path);
  self->object_path = g_strdup (object_path);
  self->connected = connected;
  g_clear_pointer (&self->events, g_variant_unref);
  update_view (self);
  fetch (self);
}

/**
 * bf_worker_history_get_latest:
 * @event: an event name, e.g. "quarantined"
 *
 * Returns: (transfer none) (nullable): the detail of the newest such event
 */
const char *
bf_worker_history_get_latest (BfWorkerHistory *self,
                              const char      *event)
{
  gsize n = self->events != NULL ? g_variant_n_children (self->events) : 0;

  for (gsize i = n; i > 0; i--)
    {
      const char *name, *detail;

      g_variant_get_child (self->events, i - 1, "(t&s&s&s)", NULL, &name, &detail, NULL);
      if (g_str_equal (name, event))
        return detail;
    }
  return NULL;
}

void
bf_worker_history_dump (BfWorkerHistory *self,
                        GKeyFile        *key_file,
                        const char      *group)
{
  guint index = 0;

  g_key_file_set_string (key_file, group, "strip", gtk_label_get_label (GTK_LABEL (self->strip_label)));
  for (GtkWidget *row = gtk_widget_get_first_child (self->rows_box); row != NULL;
       row = gtk_widget_get_next_sibling (row))
    {
      GtkWidget *time_label = gtk_widget_get_first_child (row);
      GtkWidget *what_label = time_label != NULL ? gtk_widget_get_next_sibling (time_label) : NULL;
      g_autofree char *key = g_strdup_printf ("event %u", index);

      if (!GTK_IS_BOX (row) || what_label == NULL)
        continue;
      g_key_file_set_string (key_file, group, key, gtk_label_get_label (GTK_LABEL (what_label)));
      g_free (key);
      key = g_strdup_printf ("time %u", index++);
      g_key_file_set_string (key_file, group, key, gtk_label_get_label (GTK_LABEL (time_label)));
    }
  g_key_file_set_uint64 (key_file, group, "n-events", index);
}

/* Object ---------------------------------------------------------------------- */

static void
bf_worker_history_dispose (GObject *object)
{
  BfWorkerHistory *self = BF_WORKER_HISTORY (object);

  g_clear_handle_id (&self->refetch_source, g_source_remove);
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->connection);
  g_clear_pointer (&self->box, gtk_widget_unparent);

  G_OBJECT_CLASS (bf_worker_history_parent_class)->dispose (object);
}

static void
bf_worker_history_finalize (GObject *object)
{
  BfWorkerHistory *self = BF_WORKER_HISTORY (object);

  g_clear_pointer (&self->events, g_variant_unref);
  g_array_unref (self->spans);
  g_free (self->name_owner);
  g_free (self->object_path);

  G_OBJECT_CLASS (bf_worker_history_parent_class)->finalize (object);
}

static void
bf_worker_history_class_init (BfWorkerHistoryClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = bf_worker_history_dispose;
  object_class->finalize = bf_worker_history_finalize;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "workerhistory");
}

static void
bf_worker_history_init (BfWorkerHistory *self)
{
  self->spans = g_array_new (FALSE, FALSE, sizeof (Span));
  self->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_parent (self->box, GTK_WIDGET (self));

  self->strip = gtk_drawing_area_new ();
  gtk_drawing_area_set_content_height (GTK_DRAWING_AREA (self->strip), 14);
  gtk_drawing_area_set_draw_func (GTK_DRAWING_AREA (self->strip), strip_draw, self, NULL);
  gtk_widget_set_tooltip_text (self->strip, _("The last 24 hours, or since the first event known: green connected, yellow away, red missing"));
  gtk_widget_add_css_class (self->strip, "availability-strip");
  gtk_box_append (GTK_BOX (self->box), self->strip);

  self->strip_label = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (self->strip_label), 0);
  gtk_label_set_wrap (GTK_LABEL (self->strip_label), TRUE);
  gtk_widget_add_css_class (self->strip_label, "caption");
  gtk_widget_add_css_class (self->strip_label, "dim-label");
  gtk_box_append (GTK_BOX (self->box), self->strip_label);

  self->rows_box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  gtk_box_append (GTK_BOX (self->box), self->rows_box);
}

GtkWidget *
bf_worker_history_new (void)
{
  return g_object_new (BF_TYPE_WORKER_HISTORY, NULL);
}
