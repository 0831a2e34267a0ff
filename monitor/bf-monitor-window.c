/* bf-monitor-window.c: the fleet at a glance
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * The model chain lives in the template: BfFleetModel -> GtkSortListModel
 * (sorter of the column view) -> GtkFilterListModel (search text and the
 * "show" drop-down) -> GtkSingleSelection -> GtkColumnView.  Cells bind to
 * the rows' properties (see bf-worker-row.c), which are notified on
 * PropertiesChanged.  The "Last Seen" column is relative to now; one timer
 * in this window refreshes the cells that are bound, never one per row.
 *
 * Actions on the selected worker are widget actions (worker.*), one table
 * in bf-worker-actions.c; their errors are shown here in a toast in the
 * daemon's words.  The rows are not proxies (see bf-worker-row.c): the
 * generated proxies that the calls go through are made for the selected
 * worker only, when it is selected, and the actions are enabled once they
 * exist.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-monitor-window.h"
#include "bf-cell-dump.h"
#include "bf-build-list.h"
#include "bf-builds-model.h"
#include "bf-worker-actions.h"
#include "bf-worker-details.h"
#include "bf-worker-row.h"
#include "bf-worker-status.h"
#include "bf-worker-util.h"
#include "bf-worker-watch.h"

#define LAST_SEEN_REFRESH_SECONDS 10

typedef enum
{
  BF_SHOW_ALL,
  BF_SHOW_CONNECTED,
  BF_SHOW_NOT_CONNECTED,
  BF_SHOW_MISSING,
  BF_SHOW_PAUSED,
  BF_SHOW_GRACEFUL,
  BF_SHOW_QUARANTINED,
  BF_SHOW_BUSY,
  BF_SHOW_LATENT,
} BfShow;

struct _BfMonitorWindow
{
  AdwApplicationWindow  parent_instance;

  BfFleetModel         *model;
  BfBuildsModel        *builds;
  BfBuildList          *builds_view;
  GCancellable         *cancellable;
  BfWorkerWatch        *selected_watch;
  GHashTable           *last_seen_items;
  guint                 last_seen_source;
  BfShow                show;
  char                 *pending_selection;
  char                 *last_error;
  gint64                list_shown_usec;
  gboolean              ensuring_proxies;

  /* template children */
  AdwToastOverlay      *toast_overlay;
  AdwWindowTitle       *window_title;
  GtkToggleButton      *search_button;
  GtkToggleButton      *details_button;
  GtkDropDown          *filter_dropdown;
  GtkSearchBar         *search_bar;
  GtkSearchEntry       *search_entry;
  GtkStack             *stack;
  GtkLabel             *connected_label;
  GtkLabel             *missing_label;
  GtkLabel             *paused_label;
  GtkLabel             *builds_label;
  GtkWidget            *no_results_page;
  GtkColumnView        *column_view;
  GtkColumnViewColumn  *name_column;
  GtkColumnViewColumn  *state_column;
  GtkColumnViewColumn  *builds_column;
  GtkColumnViewColumn  *host_column;
  GtkColumnViewColumn  *admin_column;
  GtkSingleSelection   *selection;
  GtkFilterListModel   *filter_model;
  GtkSortListModel     *sort_model;
  GtkCustomFilter      *state_filter;
  BfWorkerDetails      *details;
  GtkScrolledWindow    *builds_view_scroller;
  GtkWidget            *summary_box;
};

G_DEFINE_FINAL_TYPE (BfMonitorWindow, bf_monitor_window, ADW_TYPE_APPLICATION_WINDOW)

enum {
  PROP_0,
  PROP_MODEL,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void bf_monitor_window_update_actions (BfMonitorWindow *self);
static void bf_monitor_window_try_pending_selection (BfMonitorWindow *self);

/* ------------------------------------------------------------------------ */
/* Closures used by the template */

static char *
format_count (gpointer this,
              guint    count)
{
  return g_strdup_printf ("%u", count);
}

static char *
format_n_workers (gpointer this,
                  guint    total,
                  guint    shown)
{
  if (total == 0)
    return NULL;
  if (shown != total)
    /* Translators: window subtitle while a search or filter hides some workers */
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u of %u worker", "%u of %u workers", total),
                            shown, total);
  return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u worker", "%u workers", total), total);
}

static GStrv
missing_css_classes (gpointer this,
                     guint    n_missing)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  g_strv_builder_add_many (builder, "card", "counter", NULL);
  if (n_missing > 0)
    g_strv_builder_add (builder, "alert");

  return g_strv_builder_end (builder);
}

static char *
search_text (BfDBusWorker *worker)
{
  const char *name = bf_dbus_worker_get_name (worker);
  const char *host = bf_dbus_worker_get_host (worker);
  const char *admin = bf_dbus_worker_get_admin (worker);

  return g_strdup_printf ("%s\n%s\n%s", name ? name : "", host ? host : "", admin ? admin : "");
}

static int
state_sort_key (BfDBusWorker *worker)
{
  return bf_worker_get_state (worker);
}

static guint64
last_seen_sort_key (BfDBusWorker *worker)
{
  return bf_worker_get_last_seen_usec (worker);
}

/* ------------------------------------------------------------------------ */
/* The "Last Seen" column */

static void
last_seen_update (GtkListItem *list_item,
                  gint64       now)
{
  BfDBusWorker *worker = gtk_list_item_get_item (list_item);
  GtkInscription *inscription = GTK_INSCRIPTION (gtk_list_item_get_child (list_item));
  g_autofree char *text = NULL;

  if (worker == NULL)
    return;

  text = bf_format_last_seen (now,
                              bf_dbus_worker_get_connected (worker),
                              bf_dbus_worker_get_last_seen_usec (worker));
  gtk_inscription_set_text (inscription, text);
}

static void
last_seen_notify_cb (BfDBusWorker *worker,
                     GParamSpec   *pspec,
                     GtkListItem  *list_item)
{
  last_seen_update (list_item, g_get_real_time ());
}

static void
last_seen_setup_cb (GtkSignalListItemFactory *factory,
                    GtkListItem              *list_item,
                    BfMonitorWindow          *self)
{
  GtkWidget *inscription = gtk_inscription_new (NULL);

  gtk_inscription_set_xalign (GTK_INSCRIPTION (inscription), 0);
  gtk_list_item_set_child (list_item, inscription);
}

static void
last_seen_bind_cb (GtkSignalListItemFactory *factory,
                   GtkListItem              *list_item,
                   BfMonitorWindow          *self)
{
  BfDBusWorker *worker = gtk_list_item_get_item (list_item);

  g_signal_connect (worker, "notify::connected", G_CALLBACK (last_seen_notify_cb), list_item);
  g_signal_connect (worker, "notify::disconnected-since-usec", G_CALLBACK (last_seen_notify_cb), list_item);
  g_signal_connect (worker, "notify::last-seen-usec", G_CALLBACK (last_seen_notify_cb), list_item);
  g_hash_table_add (self->last_seen_items, list_item);

  last_seen_update (list_item, g_get_real_time ());
}

static void
last_seen_unbind_cb (GtkSignalListItemFactory *factory,
                     GtkListItem              *list_item,
                     BfMonitorWindow          *self)
{
  BfDBusWorker *worker = gtk_list_item_get_item (list_item);

  if (worker != NULL)
    g_signal_handlers_disconnect_by_func (worker, last_seen_notify_cb, list_item);
  g_hash_table_remove (self->last_seen_items, list_item);
}

static gboolean
last_seen_tick_cb (gpointer user_data)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (user_data);
  gint64 now = g_get_real_time ();
  GHashTableIter iter;
  gpointer list_item;

  g_hash_table_iter_init (&iter, self->last_seen_items);
  while (g_hash_table_iter_next (&iter, &list_item, NULL))
    last_seen_update (list_item, now);

  return G_SOURCE_CONTINUE;
}

/* ------------------------------------------------------------------------ */
/* The name column's sorter */

/*
 * Sorts as a GtkStringSorter on "name" with ignore-case does, by the same
 * keys, but reads the keys that the rows computed while they were loaded,
 * in the loading threads, never on the main thread (see
 * tests/bench/README.md, "The desktop monitor's load").
 */
#define BF_TYPE_WORKER_NAME_SORTER (bf_worker_name_sorter_get_type ())
G_DECLARE_FINAL_TYPE (BfWorkerNameSorter, bf_worker_name_sorter, BF, WORKER_NAME_SORTER, GtkSorter)

struct _BfWorkerNameSorter
{
  GtkSorter parent_instance;
};

G_DEFINE_FINAL_TYPE (BfWorkerNameSorter, bf_worker_name_sorter, GTK_TYPE_SORTER)

static const char *
name_key (gpointer item)
{
  return BF_IS_WORKER_ROW (item) ? bf_worker_row_get_name_key (item) : "";
}

static GtkOrdering
bf_worker_name_sorter_compare (GtkSorter *sorter,
                               gpointer   item1,
                               gpointer   item2)
{
  return gtk_ordering_from_cmpfunc (strcmp (name_key (item1), name_key (item2)));
}

static GtkSorterOrder
bf_worker_name_sorter_get_order (GtkSorter *sorter)
{
  return GTK_SORTER_ORDER_PARTIAL;
}

static void
bf_worker_name_sorter_class_init (BfWorkerNameSorterClass *klass)
{
  GtkSorterClass *sorter_class = GTK_SORTER_CLASS (klass);

  sorter_class->compare = bf_worker_name_sorter_compare;
  sorter_class->get_order = bf_worker_name_sorter_get_order;
}

static void
bf_worker_name_sorter_init (BfWorkerNameSorter *self)
{
}

/* ------------------------------------------------------------------------ */
/* The text columns and the State column */

/*
 * Signal factories in C rather than GtkBuilderListItemFactory: that one
 * parses its XML for every cell it makes.  A cell shows its text and follows
 * the properties it is made of.
 */
typedef struct
{
  const char  *css_class;
  gboolean     ellipsize;
  const char  *notify[3];
  char      *(*text) (BfDBusWorker *worker);
} BfTextColumn;

static char *
name_text (BfDBusWorker *worker)
{
  return g_strdup (bf_dbus_worker_get_name (worker));
}

static char *
builds_text (BfDBusWorker *worker)
{
  return bf_format_builds (bf_dbus_worker_get_active_builds (worker),
                           bf_dbus_worker_get_max_builds (worker));
}

static char *
host_text (BfDBusWorker *worker)
{
  return g_strdup (bf_dbus_worker_get_host (worker));
}

static char *
admin_text (BfDBusWorker *worker)
{
  return g_strdup (bf_dbus_worker_get_admin (worker));
}

static const BfTextColumn name_text_column = {
  "worker-name", TRUE, { "notify::name", NULL }, name_text
};
static const BfTextColumn builds_text_column = {
  "numeric", FALSE, { "notify::active-builds", "notify::max-builds", NULL }, builds_text
};
static const BfTextColumn host_text_column = {
  NULL, TRUE, { "notify::host", NULL }, host_text
};
static const BfTextColumn admin_text_column = {
  NULL, TRUE, { "notify::admin", NULL }, admin_text
};

static void
text_cell_update (GtkListItem *list_item)
{
  const BfTextColumn *column = g_object_get_data (G_OBJECT (list_item), "bf-text-column");
  BfDBusWorker *worker = gtk_list_item_get_item (list_item);
  g_autofree char *text = NULL;

  if (worker != NULL)
    text = column->text (worker);
  gtk_inscription_set_text (GTK_INSCRIPTION (gtk_list_item_get_child (list_item)), text);
}

static void
text_cell_notify_cb (BfDBusWorker *worker,
                     GParamSpec   *pspec,
                     GtkListItem  *list_item)
{
  text_cell_update (list_item);
}

static void
text_cell_setup_cb (GtkSignalListItemFactory *factory,
                    GtkListItem              *list_item,
                    const BfTextColumn       *column)
{
  GtkWidget *inscription = gtk_inscription_new (NULL);

  gtk_inscription_set_xalign (GTK_INSCRIPTION (inscription), 0);
  if (column->ellipsize)
    gtk_inscription_set_text_overflow (GTK_INSCRIPTION (inscription), GTK_INSCRIPTION_OVERFLOW_ELLIPSIZE_END);
  if (column->css_class != NULL)
    gtk_widget_add_css_class (inscription, column->css_class);
  gtk_list_item_set_child (list_item, inscription);
  g_object_set_data (G_OBJECT (list_item), "bf-text-column", (gpointer) column);
}

static void
text_cell_bind_cb (GtkSignalListItemFactory *factory,
                   GtkListItem              *list_item,
                   const BfTextColumn       *column)
{
  BfDBusWorker *worker = gtk_list_item_get_item (list_item);

  for (guint i = 0; column->notify[i] != NULL; i++)
    g_signal_connect (worker, column->notify[i], G_CALLBACK (text_cell_notify_cb), list_item);
  text_cell_update (list_item);
}

static void
text_cell_unbind_cb (GtkSignalListItemFactory *factory,
                     GtkListItem              *list_item,
                     const BfTextColumn       *column)
{
  BfDBusWorker *worker = gtk_list_item_get_item (list_item);

  if (worker != NULL)
    g_signal_handlers_disconnect_by_func (worker, text_cell_notify_cb, list_item);
}

static void
bf_monitor_window_set_text_factory (GtkColumnViewColumn *column,
                                    const BfTextColumn  *text_column)
{
  g_autoptr(GtkListItemFactory) factory = gtk_signal_list_item_factory_new ();

  g_signal_connect (factory, "setup", G_CALLBACK (text_cell_setup_cb), (gpointer) text_column);
  g_signal_connect (factory, "bind", G_CALLBACK (text_cell_bind_cb), (gpointer) text_column);
  g_signal_connect (factory, "unbind", G_CALLBACK (text_cell_unbind_cb), (gpointer) text_column);
  gtk_column_view_column_set_factory (column, factory);
}

static void
state_cell_setup_cb (GtkSignalListItemFactory *factory,
                     GtkListItem              *list_item)
{
  GtkWidget *status = bf_worker_status_new ();

  /* One clear state per row; the rest in its tooltip and the details. */
  bf_worker_status_set_compact (BF_WORKER_STATUS (status), TRUE);
  gtk_list_item_set_child (list_item, status);
}

static void
state_cell_bind_cb (GtkSignalListItemFactory *factory,
                    GtkListItem              *list_item)
{
  bf_worker_status_set_worker (BF_WORKER_STATUS (gtk_list_item_get_child (list_item)),
                               gtk_list_item_get_item (list_item));
}

static void
state_cell_unbind_cb (GtkSignalListItemFactory *factory,
                      GtkListItem              *list_item)
{
  bf_worker_status_set_worker (BF_WORKER_STATUS (gtk_list_item_get_child (list_item)), NULL);
}

static void
bf_monitor_window_set_state_factory (GtkColumnViewColumn *column)
{
  g_autoptr(GtkListItemFactory) factory = gtk_signal_list_item_factory_new ();

  g_signal_connect (factory, "setup", G_CALLBACK (state_cell_setup_cb), NULL);
  g_signal_connect (factory, "bind", G_CALLBACK (state_cell_bind_cb), NULL);
  g_signal_connect (factory, "unbind", G_CALLBACK (state_cell_unbind_cb), NULL);
  gtk_column_view_column_set_factory (column, factory);
}

/* ------------------------------------------------------------------------ */
/* Pages, filters, selection */

static void
bf_monitor_window_mark_list_shown (GdkFrameClock   *frame_clock,
                                   BfMonitorWindow *self)
{
  g_signal_handlers_disconnect_by_func (frame_clock, bf_monitor_window_mark_list_shown, self);
  if (self->list_shown_usec == 0)
    self->list_shown_usec = g_get_monotonic_time ();
}

static void
bf_monitor_window_update_page (BfMonitorWindow *self)
{
  const char *page = "loading";

  if (self->model == NULL)
    return;

  switch (bf_fleet_model_get_status (self->model))
    {
    case BF_FLEET_STATUS_CONNECTING:
    case BF_FLEET_STATUS_LOADING:
      page = "loading";
      break;
    case BF_FLEET_STATUS_NO_DAEMON:
      page = "no-daemon";
      break;
    case BF_FLEET_STATUS_ERROR:
      page = "error";
      break;
    case BF_FLEET_STATUS_READY:
      page = g_list_model_get_n_items (G_LIST_MODEL (self->model)) > 0 ? "list" : "empty";
      break;
    default:
      g_assert_not_reached ();
    }

  gtk_stack_set_visible_child_name (self->stack, page);

  /* Remember when the rows were first on screen, for the load benchmark. */
  if (g_str_equal (page, "list") && self->list_shown_usec == 0 && gtk_widget_get_realized (GTK_WIDGET (self)))
    {
      GdkFrameClock *frame_clock = gtk_widget_get_frame_clock (GTK_WIDGET (self));

      g_signal_handlers_disconnect_by_func (frame_clock, bf_monitor_window_mark_list_shown, self);
      g_signal_connect (frame_clock, "after-paint", G_CALLBACK (bf_monitor_window_mark_list_shown), self);
    }
}

static void
on_model_items_changed (BfMonitorWindow *self,
                        guint            position,
                        guint            removed,
                        guint            added,
                        GListModel      *model)
{
  if ((removed == 0) != (added == 0) || g_list_model_get_n_items (model) == added)
    bf_monitor_window_update_page (self);

  if (added > 0 && self->pending_selection != NULL)
    bf_monitor_window_try_pending_selection (self);
}

static void
on_filter_n_items (BfMonitorWindow *self)
{
  gboolean no_results;

  no_results = self->model != NULL &&
               g_list_model_get_n_items (G_LIST_MODEL (self->model)) > 0 &&
               g_list_model_get_n_items (G_LIST_MODEL (self->filter_model)) == 0;

  gtk_widget_set_visible (self->no_results_page, no_results);
}

static gboolean
state_filter_func (gpointer item,
                   gpointer user_data)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (user_data);
  BfDBusWorker *worker = item;

  switch (self->show)
    {
    case BF_SHOW_ALL:
      return TRUE;
    case BF_SHOW_CONNECTED:
      return bf_dbus_worker_get_connected (worker);
    case BF_SHOW_NOT_CONNECTED:
      return !bf_dbus_worker_get_connected (worker);
    case BF_SHOW_MISSING:
      return bf_dbus_worker_get_missing (worker);
    case BF_SHOW_PAUSED:
      return bf_dbus_worker_get_paused (worker);
    case BF_SHOW_GRACEFUL:
      return bf_dbus_worker_get_graceful (worker);
    case BF_SHOW_QUARANTINED:
      return bf_dbus_worker_get_quarantined (worker);
    case BF_SHOW_BUSY:
      return bf_dbus_worker_get_active_builds (worker) > 0;
    case BF_SHOW_LATENT:
      {
        g_autoptr(BfDBusLatentWorker) latent = bf_worker_dup_latent (worker);
        return latent != NULL;
      }
    default:
      return TRUE;
    }
}

static void
on_filter_selected (BfMonitorWindow *self)
{
  BfShow show = gtk_drop_down_get_selected (self->filter_dropdown);
  GtkFilterChange change;

  if (show == self->show)
    return;

  if (show == BF_SHOW_ALL)
    change = GTK_FILTER_CHANGE_LESS_STRICT;
  else if (self->show == BF_SHOW_ALL)
    change = GTK_FILTER_CHANGE_MORE_STRICT;
  else
    change = GTK_FILTER_CHANGE_DIFFERENT;

  self->show = show;
  gtk_filter_changed (GTK_FILTER (self->state_filter), change);
}

static BfDBusWorker *
bf_monitor_window_get_selected (BfMonitorWindow *self)
{
  return gtk_single_selection_get_selected_item (self->selection);
}

static void
on_selected_item_changed (BfMonitorWindow *self)
{
  BfDBusWorker *worker = bf_monitor_window_get_selected (self);

  bf_worker_watch_set_worker (self->selected_watch, worker);
  bf_worker_details_set_worker (self->details, worker);
  bf_monitor_window_update_actions (self);
}

static void
selected_notify_cb (gpointer    user_data,
                    GObject    *object,
                    GParamSpec *pspec)
{
  bf_monitor_window_update_actions (BF_MONITOR_WINDOW (user_data));
}

static GtkWidget *
find_list_view (GtkWidget *widget)
{
  for (GtkWidget *child = gtk_widget_get_first_child (widget);
       child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      if (GTK_IS_LIST_VIEW (child))
        return child;
    }
  return NULL;
}

static gboolean
bf_monitor_window_select_position_of (BfMonitorWindow *self,
                                      BfDBusWorker    *worker)
{
  GListModel *model = G_LIST_MODEL (self->selection);
  guint n_items = g_list_model_get_n_items (model);

  for (guint i = 0; i < n_items; i++)
    {
      g_autoptr(BfDBusWorker) item = g_list_model_get_item (model, i);

      if (item == worker)
        {
          GtkWidget *list_view = find_list_view (GTK_WIDGET (self->column_view));

          gtk_single_selection_set_selected (self->selection, i);
          /* GTK 4.8 has no gtk_column_view_scroll_to(); the inner list view's
           * own action does the same. */
          if (list_view != NULL)
            gtk_widget_activate_action (list_view, "list.scroll-to-item", "u", i);
          return TRUE;
        }
    }

  return FALSE;
}

static void
bf_monitor_window_try_pending_selection (BfMonitorWindow *self)
{
  BfDBusWorker *worker;

  if (self->pending_selection == NULL || self->model == NULL)
    return;

  worker = bf_fleet_model_lookup (self->model, self->pending_selection);
  if (worker == NULL)
    return;

  if (!bf_monitor_window_select_position_of (self, worker))
    {
      /* Hidden by the search or the filter: show everything. */
      gtk_editable_set_text (GTK_EDITABLE (self->search_entry), "");
      gtk_drop_down_set_selected (self->filter_dropdown, BF_SHOW_ALL);
      bf_monitor_window_select_position_of (self, worker);
    }

  g_clear_pointer (&self->pending_selection, g_free);
}

/**
 * bf_monitor_window_select_worker:
 * @self: a #BfMonitorWindow
 * @name: a worker name
 *
 * Selects the worker and scrolls to it, now or as soon as it is known.
 */
void
bf_monitor_window_select_worker (BfMonitorWindow *self,
                                 const char      *name)
{
  g_return_if_fail (BF_IS_MONITOR_WINDOW (self));
  g_return_if_fail (name != NULL);

  g_free (self->pending_selection);
  self->pending_selection = g_strdup (name);
  bf_monitor_window_try_pending_selection (self);
}

/* ------------------------------------------------------------------------ */
/* Actions on the selected worker */

static void
proxies_ready_cb (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(BfMonitorWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  self->ensuring_proxies = FALSE;

  if (!bf_worker_row_ensure_proxies_finish (BF_WORKER_ROW (object), result, &error))
    {
      /* Not retried: the actions stay disabled until the selection changes. */
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_warning ("Could not make a proxy of %s: %s",
                   bf_worker_row_get_object_path (BF_WORKER_ROW (object)), error->message);
      return;
    }

  /* Also makes those of a worker selected meanwhile. */
  bf_monitor_window_update_actions (self);
}

/* The actions (bf-worker-actions.c) call the selected worker's generated
 * proxies: made here when it is selected, one request at a time. */
static void
bf_monitor_window_update_actions (BfMonitorWindow *self)
{
  BfDBusWorker *worker = bf_monitor_window_get_selected (self);

  if (worker != NULL && BF_IS_WORKER_ROW (worker) && !self->ensuring_proxies)
    {
      BfWorkerRow *row = BF_WORKER_ROW (worker);

      if (bf_worker_row_get_proxy (row) == NULL ||
          (bf_worker_row_get_latent (row) != NULL && bf_worker_row_get_latent_proxy (row) == NULL))
        {
          self->ensuring_proxies = TRUE;
          bf_worker_row_ensure_proxies_async (row, self->cancellable, proxies_ready_cb, g_object_ref (self));
        }
    }

  bf_worker_actions_update (GTK_WIDGET (self), worker);
}

static void
bf_monitor_window_show_error (GtkWidget  *widget,
                              const char *failure,
                              GError     *error)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (widget);
  g_autofree char *message = NULL;
  g_autofree char *markup = NULL;
  AdwToast *toast;

  g_dbus_error_strip_remote_error (error);
  /* Translators: an action failed; the first %s says which, the second is the daemon's reason */
  message = g_strdup_printf (_("%s: %s"), failure, error->message);
  g_message ("%s", message);

  g_free (self->last_error);
  self->last_error = g_strdup (message);

  markup = g_markup_escape_text (message, -1);
  toast = adw_toast_new (markup);
  adw_toast_set_timeout (toast, 0);
  adw_toast_set_priority (toast, ADW_TOAST_PRIORITY_HIGH);
  adw_toast_overlay_add_toast (self->toast_overlay, toast);
}

static BfDBusWorker *
action_host_get_worker (GtkWidget *widget)
{
  return bf_monitor_window_get_selected (BF_MONITOR_WINDOW (widget));
}

static GCancellable *
action_host_get_cancellable (GtkWidget *widget)
{
  return BF_MONITOR_WINDOW (widget)->cancellable;
}

static const BfWorkerActionHost action_host = {
  action_host_get_worker,
  action_host_get_cancellable,
  bf_monitor_window_show_error,
};

static void
monitor_search_action (GtkWidget  *widget,
                       const char *action_name,
                       GVariant   *parameter)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (widget);

  gtk_search_bar_set_search_mode (self->search_bar, TRUE);
  gtk_widget_grab_focus (GTK_WIDGET (self->search_entry));
}

static void
monitor_toggle_details_action (GtkWidget  *widget,
                               const char *action_name,
                               GVariant   *parameter)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (widget);

  gtk_toggle_button_set_active (self->details_button,
                                !gtk_toggle_button_get_active (self->details_button));
}

/* ------------------------------------------------------------------------ */
/* State for the tests */

static void
dump_row (GKeyFile     *key_file,
          guint         index,
          BfDBusWorker *worker,
          gint64        now)
{
  g_autofree char *group = g_strdup_printf ("row %u", index);
  g_autofree char *builds = bf_format_builds (bf_dbus_worker_get_active_builds (worker),
                                              bf_dbus_worker_get_max_builds (worker));
  g_autofree char *last_seen = bf_format_last_seen (now,
                                                    bf_dbus_worker_get_connected (worker),
                                                    bf_dbus_worker_get_last_seen_usec (worker));
  g_autoptr(GStrvBuilder) badges = g_strv_builder_new ();
  g_auto(GStrv) badges_strv = NULL;
  g_autofree char *status = NULL;
  g_autofree char *status_tooltip = NULL;

  if (bf_dbus_worker_get_graceful (worker))
    g_strv_builder_add (badges, "graceful");
  if (bf_dbus_worker_get_paused (worker))
    g_strv_builder_add (badges, "paused");
  if (bf_dbus_worker_get_quarantined (worker))
    g_strv_builder_add (badges, "quarantined");
  if (bf_dbus_worker_get_unhealthy (worker))
    g_strv_builder_add (badges, "unhealthy");
  if (bf_dbus_worker_get_flapping (worker))
    g_strv_builder_add (badges, "flapping");
  badges_strv = g_strv_builder_end (badges);
  status = bf_worker_status_describe (worker, &status_tooltip);

  g_key_file_set_string (key_file, group, "name", bf_dbus_worker_get_name (worker));
  g_key_file_set_string (key_file, group, "state",
                         bf_enum_to_nick (BF_TYPE_WORKER_STATE, bf_worker_get_state (worker)));
  g_key_file_set_string (key_file, group, "state-label", bf_worker_state_to_label (bf_worker_get_state (worker)));
  g_key_file_set_string_list (key_file, group, "badges", (const char * const *) badges_strv,
                             g_strv_length (badges_strv));
  /* The State column's cell: the one state it shows and its tooltip */
  g_key_file_set_string (key_file, group, "status", status);
  g_key_file_set_string (key_file, group, "status-tooltip", status_tooltip);
  g_key_file_set_string (key_file, group, "pause-reason", bf_dbus_worker_get_pause_reason (worker) ?: "");
  g_key_file_set_string (key_file, group, "builds", builds);
  g_key_file_set_string (key_file, group, "host", bf_dbus_worker_get_host (worker) ?: "");
  g_key_file_set_string (key_file, group, "admin", bf_dbus_worker_get_admin (worker) ?: "");
  g_key_file_set_string (key_file, group, "last-seen", last_seen);
}

/**
 * bf_monitor_window_dump_state:
 * @self: a #BfMonitorWindow
 * @key_file: where to write
 *
 * Writes what the window shows: the page, the summary, the selection and
 * the rows of the column view's model in their visible order (the first
 * 200), each formatted as its cells format it.  Only for the tests.
 */
void
bf_monitor_window_dump_state (BfMonitorWindow *self,
                              GKeyFile        *key_file)
{
  GListModel *rows = G_LIST_MODEL (self->selection);
  guint n_rows = g_list_model_get_n_items (rows);
  BfDBusWorker *selected = bf_monitor_window_get_selected (self);
  gint64 now = g_get_real_time ();

  g_key_file_set_string (key_file, "window", "page", gtk_stack_get_visible_child_name (self->stack));
  g_key_file_set_boolean (key_file, "window", "visible", gtk_widget_get_visible (GTK_WIDGET (self)));
  g_key_file_set_boolean (key_file, "window", "active", gtk_window_is_active (GTK_WINDOW (self)));
  g_key_file_set_string (key_file, "window", "subtitle", adw_window_title_get_subtitle (self->window_title) ?: "");
  g_key_file_set_string (key_file, "window", "connected", gtk_label_get_label (self->connected_label));
  g_key_file_set_string (key_file, "window", "missing", gtk_label_get_label (self->missing_label));
  g_key_file_set_string (key_file, "window", "paused", gtk_label_get_label (self->paused_label));
  g_key_file_set_string (key_file, "window", "builds", gtk_label_get_label (self->builds_label));
  g_key_file_set_uint64 (key_file, "window", "n-rows", n_rows);
  g_key_file_set_uint64 (key_file, "window", "filter", gtk_drop_down_get_selected (self->filter_dropdown));
  g_key_file_set_string (key_file, "window", "selected", selected ? bf_dbus_worker_get_name (selected) : "");
  g_key_file_set_string (key_file, "window", "last-error", self->last_error ?: "");
  g_key_file_set_int64 (key_file, "window", "list-shown-usec", self->list_shown_usec);

  g_key_file_set_double (key_file, "window", "scroll-offset",
                         gtk_adjustment_get_value (gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (self->column_view))));

  /* Frame pacing over the frame clock's short history, for the scrolling benchmark. */
  if (gtk_widget_get_realized (GTK_WIDGET (self)))
    {
      GdkFrameClock *frame_clock = gtk_widget_get_frame_clock (GTK_WIDGET (self));
      gint64 last = gdk_frame_clock_get_frame_counter (frame_clock);
      gint64 first = gdk_frame_clock_get_history_start (frame_clock);
      gint64 previous_time = 0;
      gint64 max_interval = 0;

      for (gint64 frame = first; frame <= last; frame++)
        {
          GdkFrameTimings *timings = gdk_frame_clock_get_timings (frame_clock, frame);
          gint64 frame_time;

          if (timings == NULL)
            continue;
          frame_time = gdk_frame_timings_get_frame_time (timings);
          if (previous_time != 0)
            max_interval = MAX (max_interval, frame_time - previous_time);
          previous_time = frame_time;
        }

      g_key_file_set_double (key_file, "window", "fps", gdk_frame_clock_get_fps (frame_clock));
      g_key_file_set_int64 (key_file, "window", "frames", last);
      g_key_file_set_int64 (key_file, "window", "max-frame-interval-usec", max_interval);
    }

  for (guint i = 0; i < MIN (n_rows, 200); i++)
    {
      g_autoptr(BfDBusWorker) worker = g_list_model_get_item (rows, i);
      dump_row (key_file, i, worker, now);
    }
  /* ... and what their cells show, read from the widgets */
  bf_cell_dump (self->column_view, key_file);

  /* The Builds view and the details pane, label by label. */
  if (self->builds_view != NULL)
    bf_build_list_dump (self->builds_view, key_file, "builds", "build");
  bf_worker_details_dump (self->details, key_file);
}

/* ------------------------------------------------------------------------ */

/* The summary cards are filters: a click shows only those workers, a
 * second click all of them again. */
static void
card_pressed_cb (GtkGestureClick *gesture,
                 int              n_press,
                 double           x,
                 double           y,
                 BfMonitorWindow *self)
{
  BfShow show = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (gesture), "bf-show"));

  if (gtk_drop_down_get_selected (self->filter_dropdown) == show)
    show = BF_SHOW_ALL;
  gtk_drop_down_set_selected (self->filter_dropdown, show);
}

static void
setup_summary_cards (BfMonitorWindow *self)
{
  /* The cards in the template's order */
  static const BfShow shows[] = { BF_SHOW_CONNECTED, BF_SHOW_MISSING, BF_SHOW_PAUSED, BF_SHOW_BUSY };
  static const char * const tooltips[] = {
    N_("Show only connected workers"), N_("Show only missing workers"),
    N_("Show only paused workers"), N_("Show only workers running builds"),
  };
  guint i = 0;

  for (GtkWidget *card = gtk_widget_get_first_child (self->summary_box);
       card != NULL && i < G_N_ELEMENTS (shows); card = gtk_widget_get_next_sibling (card), i++)
    {
      GtkGesture *click = gtk_gesture_click_new ();

      g_object_set_data (G_OBJECT (click), "bf-show", GUINT_TO_POINTER (shows[i]));
      g_signal_connect (click, "pressed", G_CALLBACK (card_pressed_cb), self);
      gtk_widget_add_controller (card, GTK_EVENT_CONTROLLER (click));
      gtk_widget_set_cursor_from_name (card, "pointer");
      gtk_widget_set_tooltip_text (card, _(tooltips[i]));
    }
}

static void
bf_monitor_window_set_model (BfMonitorWindow *self,
                             BfFleetModel    *model)
{
  g_assert (self->model == NULL);

  self->model = g_object_ref (model);
  setup_summary_cards (self);
  /* The Builds view (every build, running and pending) and the details'
   * builds of the selected worker read the same model. */
  self->builds = bf_builds_model_new (model);
  self->builds_view = BF_BUILD_LIST (bf_build_list_new (TRUE));
  gtk_scrolled_window_set_child (self->builds_view_scroller, GTK_WIDGET (self->builds_view));
  bf_build_list_set_model (self->builds_view, self->builds);
  bf_worker_details_set_builds_model (self->details, self->builds);
  g_signal_connect_object (model, "notify::status",
                           G_CALLBACK (bf_monitor_window_update_page), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (model, "items-changed",
                           G_CALLBACK (on_model_items_changed), self, G_CONNECT_SWAPPED);
  bf_monitor_window_update_page (self);
}

static void
bf_monitor_window_map (GtkWidget *widget)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (widget);

  GTK_WIDGET_CLASS (bf_monitor_window_parent_class)->map (widget);

  if (self->last_seen_source == 0)
    {
      self->last_seen_source = g_timeout_add_seconds (LAST_SEEN_REFRESH_SECONDS, last_seen_tick_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->last_seen_source),
                                "[buildfleet-monitor] refresh last seen");
    }
  last_seen_tick_cb (self);

  bf_monitor_window_update_page (self);
}

static void
bf_monitor_window_unmap (GtkWidget *widget)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (widget);

  g_clear_handle_id (&self->last_seen_source, g_source_remove);

  GTK_WIDGET_CLASS (bf_monitor_window_parent_class)->unmap (widget);
}

static void
bf_monitor_window_dispose (GObject *object)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_handle_id (&self->last_seen_source, g_source_remove);
  bf_worker_watch_set_worker (self->selected_watch, NULL);

  gtk_widget_dispose_template (GTK_WIDGET (self), BF_TYPE_MONITOR_WINDOW);

  self->builds_view = NULL;   /* the scrolled window's child, gone with the template */
  g_clear_object (&self->builds);
  g_clear_object (&self->model);

  G_OBJECT_CLASS (bf_monitor_window_parent_class)->dispose (object);
}

static void
bf_monitor_window_finalize (GObject *object)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (object);

  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->selected_watch, bf_worker_watch_free);
  g_clear_pointer (&self->last_seen_items, g_hash_table_unref);
  g_clear_pointer (&self->pending_selection, g_free);
  g_clear_pointer (&self->last_error, g_free);

  G_OBJECT_CLASS (bf_monitor_window_parent_class)->finalize (object);
}

static void
bf_monitor_window_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (object);

  switch (prop_id)
    {
    case PROP_MODEL:
      g_value_set_object (value, self->model);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bf_monitor_window_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  BfMonitorWindow *self = BF_MONITOR_WINDOW (object);

  switch (prop_id)
    {
    case PROP_MODEL:
      bf_monitor_window_set_model (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bf_monitor_window_class_init (BfMonitorWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = bf_monitor_window_dispose;
  object_class->finalize = bf_monitor_window_finalize;
  object_class->get_property = bf_monitor_window_get_property;
  object_class->set_property = bf_monitor_window_set_property;

  widget_class->map = bf_monitor_window_map;
  widget_class->unmap = bf_monitor_window_unmap;

  properties[PROP_MODEL] =
    g_param_spec_object ("model", NULL, NULL,
                         BF_TYPE_FLEET_MODEL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (BF_TYPE_FLEET_MODEL);
  g_type_ensure (BF_TYPE_WORKER_NAME_SORTER);
  g_type_ensure (BF_TYPE_WORKER_DETAILS);
  g_type_ensure (BF_TYPE_WORKER_STATUS);
  g_type_ensure (BF_DBUS_TYPE_WORKER);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/buildfleet/Monitor/bf-monitor-window.ui");
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, window_title);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, search_button);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, details_button);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, filter_dropdown);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, search_bar);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, search_entry);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, stack);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, connected_label);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, missing_label);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, paused_label);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, builds_label);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, no_results_page);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, column_view);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, name_column);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, state_column);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, builds_column);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, host_column);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, admin_column);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, selection);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, filter_model);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, sort_model);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, state_filter);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, details);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, builds_view_scroller);
  gtk_widget_class_bind_template_child (widget_class, BfMonitorWindow, summary_box);

  gtk_widget_class_bind_template_callback (widget_class, format_count);
  gtk_widget_class_bind_template_callback (widget_class, format_n_workers);
  gtk_widget_class_bind_template_callback (widget_class, missing_css_classes);
  gtk_widget_class_bind_template_callback (widget_class, search_text);
  gtk_widget_class_bind_template_callback (widget_class, state_sort_key);
  gtk_widget_class_bind_template_callback (widget_class, last_seen_sort_key);
  gtk_widget_class_bind_template_callback (widget_class, last_seen_setup_cb);
  gtk_widget_class_bind_template_callback (widget_class, last_seen_bind_cb);
  gtk_widget_class_bind_template_callback (widget_class, last_seen_unbind_cb);
  gtk_widget_class_bind_template_callback (widget_class, on_filter_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_selected_item_changed);

  bf_worker_actions_install (widget_class, &action_host);
  gtk_widget_class_install_action (widget_class, "monitor.search", NULL, monitor_search_action);
  gtk_widget_class_install_action (widget_class, "monitor.toggle-details", NULL, monitor_toggle_details_action);

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_p, GDK_CONTROL_MASK, "worker.pause", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_p, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "worker.unpause", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_f, GDK_CONTROL_MASK, "monitor.search", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_F9, 0, "monitor.toggle-details", NULL);
}

static void
bf_monitor_window_init (BfMonitorWindow *self)
{
  self->cancellable = g_cancellable_new ();
  self->last_seen_items = g_hash_table_new (NULL, NULL);

  gtk_widget_init_template (GTK_WIDGET (self));

  bf_monitor_window_set_text_factory (self->name_column, &name_text_column);
  bf_monitor_window_set_state_factory (self->state_column);
  bf_monitor_window_set_text_factory (self->builds_column, &builds_text_column);
  bf_monitor_window_set_text_factory (self->host_column, &host_text_column);
  bf_monitor_window_set_text_factory (self->admin_column, &admin_text_column);

  gtk_custom_filter_set_filter_func (self->state_filter, state_filter_func, self, NULL);
  gtk_search_bar_set_key_capture_widget (self->search_bar, GTK_WIDGET (self));
  gtk_search_bar_connect_entry (self->search_bar, GTK_EDITABLE (self->search_entry));
  gtk_column_view_sort_by_column (self->column_view, self->name_column, GTK_SORT_ASCENDING);

  g_signal_connect_object (self->filter_model, "notify::n-items",
                           G_CALLBACK (on_filter_n_items), self, G_CONNECT_SWAPPED);

  self->selected_watch = bf_worker_watch_new (selected_notify_cb, self);

  bf_monitor_window_update_actions (self);
}

BfMonitorWindow *
bf_monitor_window_new (GtkApplication *application,
                       BfFleetModel   *model)
{
  g_return_val_if_fail (GTK_IS_APPLICATION (application), NULL);
  g_return_val_if_fail (BF_IS_FLEET_MODEL (model), NULL);

  return g_object_new (BF_TYPE_MONITOR_WINDOW,
                       "application", application,
                       "model", model,
                       NULL);
}

/**
 * bf_monitor_window_get_model:
 *
 * Returns: (transfer none): the fleet shown
 */
BfFleetModel *
bf_monitor_window_get_model (BfMonitorWindow *self)
{
  g_return_val_if_fail (BF_IS_MONITOR_WINDOW (self), NULL);
  return self->model;
}
