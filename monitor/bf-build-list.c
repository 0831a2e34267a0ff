/* bf-build-list.c: running and pending builds, one line each, live
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * Shows the builds of a BfBuildsModel (all of them, or those of one
 * worker): builder, worker, owner (a user name), how long it has run or
 * waited, and the current command or what a pending build waits for.
 * Rows are kept per build and their labels updated in place, so a text
 * selection survives updates; elapsed times tick once a second while the
 * list is mapped and not empty.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-build-list.h"
#include "bf-worker-util.h"

enum {
  COL_BUILDER,
  COL_WORKER,
  COL_OWNER,
  COL_TIME,
  COL_WHAT,
  N_COLS
};

static const char * const col_keys[N_COLS] = { "builder", "worker", "owner", "time", "what" };

typedef struct
{
  GtkWidget *box;
  GtkWidget *labels[N_COLS];
  gboolean   running;
  /* the end of the first frame that showed it in its current state
   * (pending, then running), 0 before */
  gint64     shown_usec;
} BuildRow;

struct _BfBuildList
{
  GtkWidget parent_instance;

  BfBuildsModel *model;
  char *worker_path;     /* only this worker's builds; NULL for all */
  gboolean all;          /* the Builds view: every build, with its worker */

  GtkWidget *box;
  GtkWidget *summary_label;
  GtkWidget *rows_box;
  GHashTable *rows;      /* build path -> BuildRow */
  guint tick_source;

  /* For the tests: when rows were first painted, and the last one left */
  gboolean stamp_pending;
  char *gone_path;
  gint64 gone_usec;      /* 0 until the frame without it was painted */
};

G_DEFINE_FINAL_TYPE (BfBuildList, bf_build_list, GTK_TYPE_WIDGET)

static void
build_row_free (BuildRow *row)
{
  g_free (row);
}

static BuildRow *
build_row_new (BfBuildList *self)
{
  BuildRow *row = g_new0 (BuildRow, 1);
  static const int widths[N_COLS] = { 10, 8, 8, 9, 0 };

  row->box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  gtk_widget_add_css_class (row->box, "build-row");
  for (int i = 0; i < N_COLS; i++)
    {
      row->labels[i] = gtk_label_new (NULL);
      gtk_label_set_xalign (GTK_LABEL (row->labels[i]), 0);
      gtk_label_set_selectable (GTK_LABEL (row->labels[i]), TRUE);
      gtk_label_set_ellipsize (GTK_LABEL (row->labels[i]), PANGO_ELLIPSIZE_END);
      if (widths[i] > 0)
        gtk_label_set_width_chars (GTK_LABEL (row->labels[i]), widths[i]);
      else
        gtk_widget_set_hexpand (row->labels[i], TRUE);
      gtk_box_append (GTK_BOX (row->box), row->labels[i]);
    }
  gtk_widget_add_css_class (row->labels[COL_BUILDER], "heading");
  gtk_widget_add_css_class (row->labels[COL_TIME], "numeric");
  gtk_widget_set_visible (row->labels[COL_WORKER], self->all);
  return row;
}

static void
set_label (GtkWidget  *label,
           const char *text)
{
  /* Unchanged text is left alone: a selection in it stays. */
  if (g_strcmp0 (gtk_label_get_label (GTK_LABEL (label)), text) != 0)
    gtk_label_set_label (GTK_LABEL (label), text);
}

static gboolean
wanted (BfBuildList *self,
        BfBuildItem *item)
{
  if (self->all)
    return TRUE;
  return self->worker_path != NULL &&
         g_str_equal (bf_build_item_get_state (item), "running") &&
         g_str_equal (bf_build_item_get_worker_path (item), self->worker_path);
}

static void
fill_row (BfBuildList *self,
          BuildRow    *row,
          BfBuildItem *item,
          gint64       now)
{
  gboolean running = g_str_equal (bf_build_item_get_state (item), "running");
  g_autofree char *elapsed = NULL;
  g_autofree char *time = NULL;
  g_autofree char *what = NULL;
  const char *worker_name = "";

  if (running)
    {
      BfDBusWorker *worker = bf_fleet_model_lookup_path (bf_builds_model_get_fleet (self->model),
                                                         bf_build_item_get_worker_path (item));
      elapsed = bf_format_elapsed (now - (gint64) bf_build_item_get_started_usec (item));
      /* Translators: how long a build has been running, e.g. "for 12 s" */
      time = g_strdup_printf (_("for %s"), elapsed);
      what = bf_build_item_dup_command (item);
      if (what[0] == '\0')
        {
          g_free (what);
          what = g_strdup (_("no command yet"));
        }
      worker_name = worker != NULL ? bf_dbus_worker_get_name (worker) : bf_build_item_get_worker_path (item);
    }
  else
    {
      elapsed = bf_format_elapsed (now - (gint64) bf_build_item_get_created_usec (item));
      /* Translators: how long a pending build has waited, e.g. "waiting 12 s" */
      time = g_strdup_printf (_("waiting %s"), elapsed);
      /* Translators: what a pending build waits for, in the daemon's words */
      what = g_strdup_printf (_("Waits for: %s"), bf_build_item_get_waiting_for (item));
      /* Translators: a pending build has no worker yet */
      worker_name = _("pending");
    }

  if (row->shown_usec == 0 || row->running != running)
    {
      row->running = running;
      row->shown_usec = 0;
      self->stamp_pending = TRUE;
    }

  set_label (row->labels[COL_BUILDER], bf_build_item_get_builder (item));
  set_label (row->labels[COL_WORKER], worker_name);
  set_label (row->labels[COL_OWNER], bf_build_item_get_owner_user (item));
  set_label (row->labels[COL_TIME], time);
  set_label (row->labels[COL_WHAT], what);
  gtk_widget_set_tooltip_text (row->box, bf_build_item_get_path (item));
}

static gboolean tick_cb (gpointer user_data);

static void
update_tick (BfBuildList *self)
{
  gboolean want = gtk_widget_get_mapped (GTK_WIDGET (self)) && g_hash_table_size (self->rows) > 0;

  if (want && self->tick_source == 0)
    {
      self->tick_source = g_timeout_add_seconds (1, tick_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->tick_source),
                                "[buildfleet-monitor] build times");
    }
  else if (!want)
    g_clear_handle_id (&self->tick_source, g_source_remove);
}

/**
 * bf_build_list_refresh:
 *
 * Brings the rows in line with the model, in place.
 */
void
bf_build_list_refresh (BfBuildList *self)
{
  GListModel *list = self->model != NULL ? G_LIST_MODEL (self->model) : NULL;
  guint n = list != NULL ? g_list_model_get_n_items (list) : 0;
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  gint64 now = g_get_real_time ();
  GtkWidget *previous = NULL;
  guint n_running = 0, n_pending = 0;
  GHashTableIter iter;
  gpointer key, value;

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(BfBuildItem) item = g_list_model_get_item (list, i);
      BuildRow *row;

      if (!wanted (self, item))
        continue;
      if (g_str_equal (bf_build_item_get_state (item), "running"))
        n_running++;
      else
        n_pending++;
      row = g_hash_table_lookup (self->rows, bf_build_item_get_path (item));
      if (row == NULL)
        {
          row = build_row_new (self);
          g_hash_table_insert (self->rows, g_strdup (bf_build_item_get_path (item)), row);
          gtk_box_insert_child_after (GTK_BOX (self->rows_box), row->box, previous);
        }
      else
        gtk_box_reorder_child_after (GTK_BOX (self->rows_box), row->box, previous);
      previous = row->box;
      fill_row (self, row, item, now);
      g_hash_table_add (seen, (gpointer) bf_build_item_get_path (item));
    }

  g_hash_table_iter_init (&iter, self->rows);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (!g_hash_table_contains (seen, key))
      {
        gtk_box_remove (GTK_BOX (self->rows_box), ((BuildRow *) value)->box);
        g_free (self->gone_path);
        self->gone_path = g_strdup (key);
        self->gone_usec = 0;
        self->stamp_pending = TRUE;
        g_hash_table_iter_remove (&iter);
      }

  if (n_running + n_pending == 0)
    set_label (self->summary_label, self->all ? _("No builds are running or waiting.") : _("No builds running."));
  else if (self->all)
    {
      g_autofree char *running = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u running", "%u running", n_running), n_running);
      g_autofree char *pending = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u pending", "%u pending", n_pending), n_pending);
      g_autofree char *text = g_strdup_printf ("%s, %s", running, pending);
      set_label (self->summary_label, text);
    }
  else
    {
      g_autofree char *text = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u build running", "%u builds running", n_running),
                                               n_running);
      set_label (self->summary_label, text);
    }
  update_tick (self);
}

static gboolean
tick_cb (gpointer user_data)
{
  bf_build_list_refresh (BF_BUILD_LIST (user_data));
  return G_SOURCE_CONTINUE;
}

/* Stamps the rows that this frame showed first, and the row it no longer
 * showed: what a user sees is what was painted. */
static void
after_paint_cb (GdkFrameClock *frame_clock,
                BfBuildList   *self)
{
  gint64 now;
  GHashTableIter iter;
  gpointer value;

  if (!self->stamp_pending)
    return;
  self->stamp_pending = FALSE;
  now = g_get_real_time ();
  g_hash_table_iter_init (&iter, self->rows);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (((BuildRow *) value)->shown_usec == 0)
      ((BuildRow *) value)->shown_usec = now;
  if (self->gone_path != NULL && self->gone_usec == 0)
    self->gone_usec = now;
}

static void
bf_build_list_realize (GtkWidget *widget)
{
  GTK_WIDGET_CLASS (bf_build_list_parent_class)->realize (widget);
  g_signal_connect_object (gtk_widget_get_frame_clock (widget), "after-paint",
                           G_CALLBACK (after_paint_cb), widget, 0);
}

static void
bf_build_list_unrealize (GtkWidget *widget)
{
  g_signal_handlers_disconnect_by_func (gtk_widget_get_frame_clock (widget), after_paint_cb, widget);
  GTK_WIDGET_CLASS (bf_build_list_parent_class)->unrealize (widget);
}

static void
bf_build_list_map (GtkWidget *widget)
{
  GTK_WIDGET_CLASS (bf_build_list_parent_class)->map (widget);
  bf_build_list_refresh (BF_BUILD_LIST (widget));
}

static void
bf_build_list_unmap (GtkWidget *widget)
{
  BfBuildList *self = BF_BUILD_LIST (widget);

  g_clear_handle_id (&self->tick_source, g_source_remove);
  GTK_WIDGET_CLASS (bf_build_list_parent_class)->unmap (widget);
}

static void
bf_build_list_dispose (GObject *object)
{
  BfBuildList *self = BF_BUILD_LIST (object);

  g_clear_handle_id (&self->tick_source, g_source_remove);
  if (self->model != NULL)
    g_signal_handlers_disconnect_by_data (self->model, self);
  g_clear_object (&self->model);
  g_clear_pointer (&self->box, gtk_widget_unparent);
  g_clear_pointer (&self->rows, g_hash_table_unref);

  G_OBJECT_CLASS (bf_build_list_parent_class)->dispose (object);
}

static void
bf_build_list_finalize (GObject *object)
{
  g_free (BF_BUILD_LIST (object)->worker_path);
  g_free (BF_BUILD_LIST (object)->gone_path);
  G_OBJECT_CLASS (bf_build_list_parent_class)->finalize (object);
}

static void
bf_build_list_class_init (BfBuildListClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = bf_build_list_dispose;
  object_class->finalize = bf_build_list_finalize;
  widget_class->realize = bf_build_list_realize;
  widget_class->unrealize = bf_build_list_unrealize;
  widget_class->map = bf_build_list_map;
  widget_class->unmap = bf_build_list_unmap;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "buildlist");
}

static void
bf_build_list_init (BfBuildList *self)
{
  self->rows = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) build_row_free);
  self->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  gtk_widget_set_parent (self->box, GTK_WIDGET (self));
  self->summary_label = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (self->summary_label), 0);
  gtk_widget_add_css_class (self->summary_label, "dim-label");
  gtk_box_append (GTK_BOX (self->box), self->summary_label);
  self->rows_box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  gtk_box_append (GTK_BOX (self->box), self->rows_box);
}

GtkWidget *
bf_build_list_new (gboolean all)
{
  BfBuildList *self = g_object_new (BF_TYPE_BUILD_LIST, NULL);

  self->all = all;
  return GTK_WIDGET (self);
}

void
bf_build_list_set_model (BfBuildList   *self,
                         BfBuildsModel *model)
{
  g_return_if_fail (BF_IS_BUILD_LIST (self));

  if (self->model != NULL)
    g_signal_handlers_disconnect_by_data (self->model, self);
  g_set_object (&self->model, model);
  if (model != NULL)
    g_signal_connect_object (model, "changed", G_CALLBACK (bf_build_list_refresh), self, G_CONNECT_SWAPPED);
  bf_build_list_refresh (self);
}

void
bf_build_list_set_worker_path (BfBuildList *self,
                               const char  *worker_path)
{
  g_return_if_fail (BF_IS_BUILD_LIST (self));

  if (g_strcmp0 (self->worker_path, worker_path) == 0)
    return;
  g_free (self->worker_path);
  self->worker_path = g_strdup (worker_path);
  bf_build_list_refresh (self);
}

/**
 * bf_build_list_dump:
 * @prefix: the key file's group prefix, e.g. "build" gives "build 0"…
 *
 * Writes the labels shown, row by row, and the summary line; when each row
 * was first painted in its current state (a pending build that starts is
 * painted again as running) and when the last row to leave was no longer
 * painted
 * (CLOCK_REALTIME, like the daemon's time stamps).  For the tests.
 */
void
bf_build_list_dump (BfBuildList *self,
                    GKeyFile    *key_file,
                    const char  *summary_group,
                    const char  *prefix)
{
  guint index = 0;

  g_key_file_set_string (key_file, summary_group, "summary", gtk_label_get_label (GTK_LABEL (self->summary_label)));
  for (GtkWidget *box = gtk_widget_get_first_child (self->rows_box); box != NULL;
       box = gtk_widget_get_next_sibling (box), index++)
    {
      g_autofree char *group = g_strdup_printf ("%s %u", prefix, index);
      int col = 0;

      const char *path = gtk_widget_get_tooltip_text (box);
      BuildRow *row = path != NULL ? g_hash_table_lookup (self->rows, path) : NULL;

      for (GtkWidget *label = gtk_widget_get_first_child (box); label != NULL && col < N_COLS;
           label = gtk_widget_get_next_sibling (label), col++)
        g_key_file_set_string (key_file, group, col_keys[col], gtk_label_get_label (GTK_LABEL (label)));
      g_key_file_set_string (key_file, group, "path", path != NULL ? path : "");
      g_key_file_set_int64 (key_file, group, "shown-usec", row != NULL ? row->shown_usec : 0);
    }
  g_key_file_set_uint64 (key_file, summary_group, "n-builds", index);
  g_key_file_set_string (key_file, summary_group, "gone-path", self->gone_path != NULL ? self->gone_path : "");
  g_key_file_set_int64 (key_file, summary_group, "gone-usec", self->gone_usec);
}
