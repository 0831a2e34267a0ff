/* bf-worker-details.c: every property of one worker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * The pane lists the selected worker's properties in sections, and the
 * buttons for the window's worker.* actions.  It updates its grid in place once per
 * main loop iteration after any property of the worker changed.
 *
 * Above the grid, updated in place: what needs attention (quarantine and
 * why, a latent worker's last error), the worker's presence in words with a
 * live countdown to missing while it is away ("Never" for a worker never
 * seen), its running builds, and its history (BfWorkerHistory).
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-build-list.h"
#include "bf-worker-details.h"
#include "bf-worker-history.h"
#include "bf-worker-row.h"
#include "bf-worker-status.h"
#include "bf-worker-util.h"
#include "bf-worker-watch.h"

struct _BfWorkerDetails
{
  GtkWidget       parent_instance;

  BfDBusWorker   *worker;
  GCancellable   *fetch_cancellable;
  BfWorkerWatch  *watch;
  guint           update_source;
  guint           n_rows;

  GtkStack       *stack;
  GtkLabel       *title_label;
  BfWorkerStatus *status;
  GtkButton      *primary_button;
  GtkGrid        *grid;
  GtkLabel       *alert_label;
  GtkLabel       *presence_label;
  BfBuildList    *build_list;
  BfWorkerHistory *history;
  guint           presence_source;
  GPtrArray      *grid_rows;      /* GridRow, in the grid's order */
  guint64         labels_created; /* for the tests: the grid is updated in place */
};

G_DEFINE_FINAL_TYPE (BfWorkerDetails, bf_worker_details, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_WORKER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The grid is updated in place: an update walks the rows again and only
 * changes the labels whose text changed (a selection in the others stays)
 * and replaces rows from the first whose key differs. */
typedef struct
{
  char *key;            /* the section title or the row's key */
  gboolean section;
  GtkWidget *key_label;
  GtkWidget *value_label;
} GridRow;

static void
grid_row_free (GridRow *row)
{
  g_free (row->key);
  g_free (row);
}

/* Drops the rows from position @from on. */
static void
truncate_rows (BfWorkerDetails *self,
               guint            from)
{
  while (self->grid_rows->len > from)
    {
      GridRow *row = g_ptr_array_index (self->grid_rows, self->grid_rows->len - 1);

      gtk_grid_remove (self->grid, row->key_label);
      if (row->value_label != NULL)
        gtk_grid_remove (self->grid, row->value_label);
      g_ptr_array_remove_index (self->grid_rows, self->grid_rows->len - 1);
    }
}

/* The row at the current position if it has this key, else NULL (and the
 * rows from there on are gone). */
static GridRow *
reuse_row (BfWorkerDetails *self,
           const char      *key,
           gboolean         section)
{
  if (self->n_rows < self->grid_rows->len)
    {
      GridRow *row = g_ptr_array_index (self->grid_rows, self->n_rows);

      if (row->section == section && g_str_equal (row->key, key))
        return row;
      truncate_rows (self, self->n_rows);
    }
  return NULL;
}

static void
add_section (BfWorkerDetails *self,
             const char      *title)
{
  GtkWidget *label;
  GridRow *row;

  if (reuse_row (self, title, TRUE) != NULL)
    {
      self->n_rows++;
      return;
    }
  label = gtk_label_new (title);
  self->labels_created++;
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_widget_add_css_class (label, "heading");
  if (self->n_rows > 0)
    gtk_widget_set_margin_top (label, 12);
  gtk_grid_attach (self->grid, label, 0, self->n_rows++, 2, 1);
  row = g_new0 (GridRow, 1);
  row->key = g_strdup (title);
  row->section = TRUE;
  row->key_label = label;
  g_ptr_array_add (self->grid_rows, row);
}

static void
add_row (BfWorkerDetails *self,
         const char      *key,
         const char      *value)
{
  const char *text = value != NULL && value[0] != '\0' ? value : "—";
  GridRow *row = reuse_row (self, key, FALSE);
  GtkWidget *key_label, *value_label;

  if (row != NULL)
    {
      if (g_strcmp0 (gtk_label_get_label (GTK_LABEL (row->value_label)), text) != 0)
        gtk_label_set_label (GTK_LABEL (row->value_label), text);
      self->n_rows++;
      return;
    }

  key_label = gtk_label_new (key);
  value_label = gtk_label_new (text);
  self->labels_created += 2;

  gtk_label_set_xalign (GTK_LABEL (key_label), 1);
  gtk_label_set_yalign (GTK_LABEL (key_label), 0);
  gtk_widget_set_valign (key_label, GTK_ALIGN_START);
  gtk_widget_add_css_class (key_label, "dim-label");

  gtk_label_set_xalign (GTK_LABEL (value_label), 0);
  gtk_label_set_wrap (GTK_LABEL (value_label), TRUE);
  gtk_label_set_wrap_mode (GTK_LABEL (value_label), PANGO_WRAP_WORD_CHAR);
  gtk_label_set_selectable (GTK_LABEL (value_label), TRUE);
  gtk_widget_set_hexpand (value_label, TRUE);

  gtk_grid_attach (self->grid, key_label, 0, self->n_rows, 1, 1);
  gtk_grid_attach (self->grid, value_label, 1, self->n_rows, 1, 1);
  self->n_rows++;
  row = g_new0 (GridRow, 1);
  row->key = g_strdup (key);
  row->key_label = key_label;
  row->value_label = value_label;
  g_ptr_array_add (self->grid_rows, row);
}

static void
add_row_take (BfWorkerDetails *self,
              const char      *key,
              char            *value)
{
  add_row (self, key, value);
  g_free (value);
}

static const char *
yes_no (gboolean value)
{
  return value ? _("Yes") : _("No");
}

static char *
variant_to_text (GVariant *value)
{
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT))
    {
      g_autoptr(GVariant) inner = g_variant_get_variant (value);
      return variant_to_text (inner);
    }
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    return g_variant_dup_string (value, NULL);
  return g_variant_print (value, FALSE);
}

static int
compare_entries (gconstpointer a,
                 gconstpointer b)
{
  GVariant *entry_a = *(GVariant * const *) a;
  GVariant *entry_b = *(GVariant * const *) b;
  g_autoptr(GVariant) key_a = g_variant_get_child_value (entry_a, 0);
  g_autoptr(GVariant) key_b = g_variant_get_child_value (entry_b, 0);

  return g_strcmp0 (g_variant_get_string (key_a, NULL), g_variant_get_string (key_b, NULL));
}

/* Adds one row per entry of an a{sv} or a{ss} dictionary, sorted by key. */
static void
add_dict_rows_skipping (BfWorkerDetails    *self,
                        GVariant           *dict,
                        const char * const *skip);

static void
add_dict_rows (BfWorkerDetails *self,
               GVariant        *dict)
{
  add_dict_rows_skipping (self, dict, NULL);
}

/* Adds one row per entry of an a{sv} or a{ss} dictionary, sorted by key,
 * but not the keys in @skip (shown elsewhere already). */
static void
add_dict_rows_skipping (BfWorkerDetails    *self,
                        GVariant           *dict,
                        const char * const *skip)
{
  g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);

  if (dict == NULL || g_variant_n_children (dict) == 0)
    {
      add_row (self, _("None"), NULL);
      return;
    }

  for (gsize i = 0; i < g_variant_n_children (dict); i++)
    g_ptr_array_add (entries, g_variant_get_child_value (dict, i));
  g_ptr_array_sort (entries, compare_entries);

  for (guint i = 0; i < entries->len; i++)
    {
      GVariant *entry = g_ptr_array_index (entries, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) value = g_variant_get_child_value (entry, 1);

      if (skip != NULL && g_strv_contains (skip, g_variant_get_string (key, NULL)))
        continue;
      add_row_take (self, g_variant_get_string (key, NULL), variant_to_text (value));
    }
}

/* What needs attention, at the top: quarantine (and why, from the
 * history), a latent worker's last error. */
static void
update_alert (BfWorkerDetails *self)
{
  BfDBusWorker *worker = self->worker;
  g_autoptr(BfDBusLatentWorker) latent = worker != NULL ? bf_worker_dup_latent (worker) : NULL;
  g_autoptr(GString) text = g_string_new (NULL);

  if (worker != NULL && bf_dbus_worker_get_quarantined (worker))
    {
      g_autofree char *until = bf_format_timestamp (bf_dbus_worker_get_quarantine_until_usec (worker));
      const char *why = bf_worker_history_get_latest (self->history, "quarantined");

      if (why != NULL && why[0] != '\0')
        /* Translators: the end of a quarantine and why it began */
        g_string_append_printf (text, _("Quarantined until %s: %s"), until, why);
      else
        g_string_append_printf (text, _("Quarantined until %s"), until);
    }
  if (worker != NULL && bf_dbus_worker_get_unhealthy (worker))
    {
      const char *reason = bf_dbus_worker_get_health_reason (worker);

      if (text->len > 0)
        g_string_append_c (text, '\n');
      /* Translators: why the worker failed its health checks */
      g_string_append_printf (text, _("Unhealthy: %s"),
                              (reason != NULL && reason[0] != '\0') ? reason : _("failed its last health checks"));
    }
  if (worker != NULL && bf_dbus_worker_get_flapping (worker))
    {
      if (text->len > 0)
        g_string_append_c (text, '\n');
      g_string_append (text, _("Flapping: gets no new builds until it stays attached"));
    }
  if (latent != NULL)
    {
      const char *error = bf_dbus_latent_worker_get_last_error (latent);

      if (error != NULL && error[0] != '\0')
        {
          if (text->len > 0)
            g_string_append_c (text, '\n');
          /* Translators: a latent worker's last error */
          g_string_append_printf (text, _("Last error: %s"), error);
        }
    }
  if (g_strcmp0 (gtk_label_get_label (self->alert_label), text->str) != 0)
    gtk_label_set_label (self->alert_label, text->str);
  gtk_widget_set_visible (GTK_WIDGET (self->alert_label), text->len > 0);
}

/* The worker's presence in words, with a live countdown to missing. */
static void
update_presence (BfWorkerDetails *self)
{
  BfDBusWorker *worker = self->worker;
  gint64 now = g_get_real_time ();
  g_autofree char *text = NULL;

  if (worker == NULL)
    return;

  if (bf_dbus_worker_get_connected (worker))
    {
      guint64 since = bf_dbus_worker_get_connected_since_usec (worker);
      g_autofree char *when = bf_format_timestamp (since);
      g_autofree char *elapsed = bf_format_elapsed (now - (gint64) since);

      /* Translators: when the worker attached, and for how long it has been connected */
      text = since != 0 ? g_strdup_printf (_("Connected since %s (for %s)"), when, elapsed)
                        : g_strdup (_("Connected"));
    }
  else
    {
      guint64 last_seen = bf_dbus_worker_get_last_seen_usec (worker);
      guint64 away_since = bf_dbus_worker_get_disconnected_since_usec (worker);
      guint64 timeout = bf_dbus_worker_get_missing_timeout_usec (worker);
      g_autoptr(BfDBusLatentWorker) latent = bf_worker_dup_latent (worker);
      g_autofree char *seen = NULL;

      if (last_seen == 0)
        /* Translators: a worker that never connected */
        seen = g_strdup (_("Last seen: Never"));
      else
        {
          g_autofree char *when = bf_format_timestamp (last_seen);
          g_autofree char *ago = bf_format_relative_time (now, last_seen);
          /* Translators: when the worker was last seen, and how long ago */
          seen = g_strdup_printf (_("Last seen %s (%s)"), when, ago);
        }

      if (bf_dbus_worker_get_missing (worker))
        /* Translators: after "Last seen …" */
        text = g_strdup_printf (_("%s. Missing."), seen);
      else if (timeout != 0 && away_since != 0 && latent == NULL)
        {
          gint64 left = (gint64) (away_since + timeout) - now;
          g_autofree char *in = bf_format_elapsed (MAX (left, 0) + G_USEC_PER_SEC - 1);

          /* Translators: after "Last seen …": the live countdown to the missing alarm */
          text = left > 0 ? g_strdup_printf (_("%s. Missing in %s."), seen, in)
                          : g_strdup_printf (_("%s. Missing now."), seen);
        }
      else
        text = g_strdup_printf ("%s.", seen);
    }

  if (g_strcmp0 (gtk_label_get_label (self->presence_label), text) != 0)
    gtk_label_set_label (self->presence_label, text);
  update_alert (self);
}

static gboolean
presence_tick_cb (gpointer user_data)
{
  update_presence (BF_WORKER_DETAILS (user_data));
  return G_SOURCE_CONTINUE;
}

static void
update_presence_tick (BfWorkerDetails *self)
{
  gboolean want = self->worker != NULL && gtk_widget_get_mapped (GTK_WIDGET (self));

  if (want && self->presence_source == 0)
    {
      self->presence_source = g_timeout_add_seconds (1, presence_tick_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->presence_source),
                                "[buildfleet-monitor] worker presence");
    }
  else if (!want)
    g_clear_handle_id (&self->presence_source, g_source_remove);
}

static void
bf_worker_details_map (GtkWidget *widget)
{
  GTK_WIDGET_CLASS (bf_worker_details_parent_class)->map (widget);
  update_presence_tick (BF_WORKER_DETAILS (widget));
}

static void
bf_worker_details_unmap (GtkWidget *widget)
{
  g_clear_handle_id (&BF_WORKER_DETAILS (widget)->presence_source, g_source_remove);
  GTK_WIDGET_CLASS (bf_worker_details_parent_class)->unmap (widget);
}

static void bf_worker_details_queue_update (BfWorkerDetails *self);

/* Any change of the worker or its latent interface updates the grid (in
 * place, once per main loop iteration).  A change of presence or admin
 * state is an event: read the history again. */
static void
worker_notify_cb (gpointer    user_data,
                  GObject    *object,
                  GParamSpec *pspec)
{
  static const char * const eventful[] = {
    "connected", "missing", "paused", "graceful", "quarantined", "unhealthy", "flapping", NULL
  };
  BfWorkerDetails *self = BF_WORKER_DETAILS (user_data);

  bf_worker_details_queue_update (self);
  if (BF_DBUS_IS_LATENT_WORKER (object))
    {
      update_alert (self);
      return;
    }
  if (self->worker != NULL && g_strv_contains (eventful, pspec->name))
    bf_worker_history_queue_refresh (self->history, bf_dbus_worker_get_connected (self->worker));
  update_presence (self);
}

/* One primary action for the worker's state, in the API's words; the
 * others are in the menu next to it. */
static void
update_primary (BfWorkerDetails    *self,
                BfDBusLatentWorker *latent)
{
  const char *label, *action, *tooltip;

  if (latent != NULL && !bf_dbus_worker_get_connected (self->worker) &&
      g_strcmp0 (bf_dbus_latent_worker_get_state (latent), "not-substantiated") == 0)
    {
      label = _("_Substantiate");
      action = "worker.substantiate";
      tooltip = _("Start an instance of this latent worker");
    }
  else if (bf_dbus_worker_get_paused (self->worker))
    {
      label = _("_Unpause");
      action = "worker.unpause";
      tooltip = _("Let this worker take builds again (Shift+Ctrl+P)");
    }
  else
    {
      label = _("_Pause…");
      action = "worker.pause";
      tooltip = _("Start no new builds on this worker (Ctrl+P)");
    }
  if (g_strcmp0 (gtk_button_get_label (self->primary_button), label) != 0)
    {
      gtk_button_set_label (self->primary_button, label);
      gtk_actionable_set_action_name (GTK_ACTIONABLE (self->primary_button), action);
      gtk_widget_set_tooltip_text (GTK_WIDGET (self->primary_button), tooltip);
    }
}

/* How and when the worker is (or was) connected. */
static void
add_connection_rows (BfWorkerDetails *self,
                     BfDBusWorker    *worker)
{
  const char * const *strv;

  add_section (self, _("Connection"));
  add_row (self, _("State"), bf_worker_state_to_label (bf_worker_get_state (worker)));
  add_row (self, _("Peer"), bf_dbus_worker_get_peer (worker));
  add_row_take (self, _("Connected since"),
                bf_dbus_worker_get_connected (worker)
                ? bf_format_timestamp (bf_dbus_worker_get_connected_since_usec (worker))
                : NULL);
  add_row_take (self, _("Last seen"),
                bf_dbus_worker_get_connected (worker)
                ? g_strdup (C_("last seen", "Now"))
                : bf_format_timestamp (bf_dbus_worker_get_last_seen_usec (worker)));
  add_row_take (self, _("Last message"), bf_format_timestamp (bf_dbus_worker_get_last_message_usec (worker)));
  add_row_take (self, _("Missing after"), bf_format_duration (bf_dbus_worker_get_missing_timeout_usec (worker)));
  add_row (self, _("Missing"), yes_no (bf_dbus_worker_get_missing (worker)));
  strv = bf_dbus_worker_get_notify_on_missing (worker);
  add_row_take (self, _("Mail when missing"), strv ? g_strjoinv (", ", (char **) strv) : NULL);
}

/* What the administrators and the daemon decided about it. */
static void
add_administration_rows (BfWorkerDetails *self,
                         BfDBusWorker    *worker)
{
  add_section (self, _("Administration"));
  add_row (self, _("Graceful shutdown"), yes_no (bf_dbus_worker_get_graceful (worker)));
  if (bf_dbus_worker_get_paused (worker))
    {
      const char *reason = bf_dbus_worker_get_pause_reason (worker);
      add_row_take (self, _("Paused"),
                    (reason != NULL && reason[0] != '\0')
                    /* Translators: the worker is paused, %s is the reason given */
                    ? g_strdup_printf (_("Yes: %s"), reason)
                    : g_strdup (_("Yes")));
    }
  else
    add_row (self, _("Paused"), _("No"));
  if (bf_dbus_worker_get_quarantined (worker))
    {
      g_autofree char *until = bf_format_timestamp (bf_dbus_worker_get_quarantine_until_usec (worker));
      /* Translators: %s is the date and time the quarantine ends */
      add_row_take (self, _("Quarantined"), g_strdup_printf (_("Until %s"), until));
    }
  else
    add_row (self, _("Quarantined"), _("No"));
  if (bf_dbus_worker_get_unhealthy (worker))
    {
      const char *reason = bf_dbus_worker_get_health_reason (worker);
      add_row_take (self, _("Health"),
                    (reason != NULL && reason[0] != '\0')
                    /* Translators: the worker failed its health checks, %s is why */
                    ? g_strdup_printf (_("Unhealthy: %s"), reason)
                    : g_strdup (_("Unhealthy")));
    }
  else
    add_row (self, _("Health"), _("Healthy"));
  add_row (self, _("Flapping"), yes_no (bf_dbus_worker_get_flapping (worker)));
}

/* What it may build. */
static void
add_builds_rows (BfWorkerDetails *self,
                 BfDBusWorker    *worker)
{
  const char * const *strv;

  add_section (self, _("Builds"));
  add_row_take (self, _("Running"),
                bf_format_builds (bf_dbus_worker_get_active_builds (worker),
                                  bf_dbus_worker_get_max_builds (worker)));
  strv = bf_dbus_worker_get_builders (worker);
  add_row_take (self, _("Builders"), strv ? g_strjoinv (", ", (char **) strv) : NULL);
  strv = bf_dbus_worker_get_labels (worker);
  add_row_take (self, _("Labels"), (strv != NULL && strv[0] != NULL) ? g_strjoinv (", ", (char **) strv)
                                                                     : g_strdup (_("None")));
}

/* A latent worker's instance. */
static void
add_latent_rows (BfWorkerDetails    *self,
                 BfDBusLatentWorker *latent)
{
  add_section (self, _("Latent Worker"));
  add_row (self, _("Driver"), bf_dbus_latent_worker_get_driver (latent));
  add_row (self, _("Instance"), bf_dbus_latent_worker_get_state (latent));
  add_row (self, _("Substantiated"), yes_no (bf_dbus_latent_worker_get_substantiated (latent)));
  if (bf_dbus_latent_worker_get_build_wait_timeout_usec (latent) < 0)
    add_row (self, _("Kept idle for"), _("Forever"));
  else
    add_row_take (self, _("Kept idle for"),
                  bf_format_duration (bf_dbus_latent_worker_get_build_wait_timeout_usec (latent)));
  add_row_take (self, _("Start timeout"),
                bf_format_duration (bf_dbus_latent_worker_get_substantiation_timeout_usec (latent)));
  add_row (self, _("Last error"), bf_dbus_latent_worker_get_last_error (latent));
}

/* What the worker reported about itself. */
static void
add_worker_rows (BfWorkerDetails *self,
                 BfDBusWorker    *worker)
{
  add_section (self, _("Worker"));
  add_row (self, _("Admin"), bf_dbus_worker_get_admin (worker));
  add_row (self, _("Host"), bf_dbus_worker_get_host (worker));
  add_row (self, _("Version"), bf_dbus_worker_get_version (worker));
  if (bf_dbus_worker_get_response_time_usec (worker) != 0)
    /* Translators: the round trip of the last health check's ping, %.1f is in milliseconds */
    add_row_take (self, _("Response time"),
                  g_strdup_printf (_("%.1f ms"), bf_dbus_worker_get_response_time_usec (worker) / 1000.0));
  else
    add_row (self, _("Response time"), _("Not measured"));
}

/* Its reported information, build properties and commands, key by key. */
static void
add_dictionary_rows (BfWorkerDetails *self,
                     BfDBusWorker    *worker)
{
  /* Admin, host and version are in the Worker section already. */
  static const char * const shown[] = { "admin", "host", "version", NULL };

  add_section (self, _("Reported Information"));
  add_dict_rows_skipping (self, bf_dbus_worker_get_info (worker), shown);

  add_section (self, _("Build Properties"));
  add_dict_rows (self, bf_dbus_worker_get_properties (worker));

  add_section (self, _("Commands"));
  add_dict_rows (self, bf_dbus_worker_get_commands (worker));
}

/*
 * Updates the grid in place: the rows are walked in their order, a label
 * whose text is unchanged is left alone (its selection with it), a row is
 * made only where the rows' keys first differ from those shown.  Called
 * once per main loop iteration after any change of the worker.
 */
static void
bf_worker_details_update_grid (BfWorkerDetails *self)
{
  g_autoptr(BfDBusLatentWorker) latent = NULL;
  BfDBusWorker *worker = self->worker;

  self->n_rows = 0;

  if (worker == NULL)
    {
      truncate_rows (self, 0);
      gtk_stack_set_visible_child_name (self->stack, "empty");
      return;
    }

  gtk_stack_set_visible_child_name (self->stack, "worker");
  gtk_label_set_label (self->title_label, bf_dbus_worker_get_name (worker));

  latent = bf_worker_dup_latent (worker);
  update_primary (self, latent);

  add_connection_rows (self, worker);
  add_administration_rows (self, worker);
  add_builds_rows (self, worker);
  if (latent != NULL)
    add_latent_rows (self, latent);
  add_worker_rows (self, worker);
  add_dictionary_rows (self, worker);

  /* Rows beyond the last one added belonged to a longer pane. */
  truncate_rows (self, self->n_rows);
}

static gboolean
update_grid_cb (gpointer user_data)
{
  BfWorkerDetails *self = BF_WORKER_DETAILS (user_data);

  self->update_source = 0;
  bf_worker_details_update_grid (self);

  return G_SOURCE_REMOVE;
}

static void
bf_worker_details_queue_update (BfWorkerDetails *self)
{
  if (self->update_source != 0)
    return;

  self->update_source = g_idle_add (update_grid_cb, self);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->update_source),
                            "[buildfleet-monitor] update worker details");
}

static void
bf_worker_details_dispose (GObject *object)
{
  BfWorkerDetails *self = BF_WORKER_DETAILS (object);

  g_clear_handle_id (&self->update_source, g_source_remove);
  g_clear_handle_id (&self->presence_source, g_source_remove);
  g_cancellable_cancel (self->fetch_cancellable);
  g_clear_object (&self->fetch_cancellable);
  bf_worker_watch_set_worker (self->watch, NULL);
  g_clear_object (&self->worker);

  gtk_widget_dispose_template (GTK_WIDGET (self), BF_TYPE_WORKER_DETAILS);

  G_OBJECT_CLASS (bf_worker_details_parent_class)->dispose (object);
}

static void
bf_worker_details_finalize (GObject *object)
{
  BfWorkerDetails *self = BF_WORKER_DETAILS (object);

  g_clear_pointer (&self->watch, bf_worker_watch_free);
  g_clear_pointer (&self->grid_rows, g_ptr_array_unref);

  G_OBJECT_CLASS (bf_worker_details_parent_class)->finalize (object);
}

static void
bf_worker_details_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  BfWorkerDetails *self = BF_WORKER_DETAILS (object);

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
bf_worker_details_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  BfWorkerDetails *self = BF_WORKER_DETAILS (object);

  switch (prop_id)
    {
    case PROP_WORKER:
      bf_worker_details_set_worker (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bf_worker_details_class_init (BfWorkerDetailsClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = bf_worker_details_dispose;
  object_class->finalize = bf_worker_details_finalize;
  object_class->get_property = bf_worker_details_get_property;
  object_class->set_property = bf_worker_details_set_property;
  widget_class->map = bf_worker_details_map;
  widget_class->unmap = bf_worker_details_unmap;

  properties[PROP_WORKER] =
    g_param_spec_object ("worker", NULL, NULL,
                         BF_DBUS_TYPE_WORKER,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (BF_TYPE_WORKER_STATUS);
  g_type_ensure (BF_TYPE_BUILD_LIST);
  g_type_ensure (BF_TYPE_WORKER_HISTORY);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/buildfleet/Monitor/bf-worker-details.ui");
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, stack);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, title_label);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, status);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, primary_button);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, grid);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, alert_label);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, presence_label);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, build_list);
  gtk_widget_class_bind_template_child (widget_class, BfWorkerDetails, history);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "workerdetails");
}

static void
bf_worker_details_init (BfWorkerDetails *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->grid_rows = g_ptr_array_new_with_free_func ((GDestroyNotify) grid_row_free);

  self->watch = bf_worker_watch_new (worker_notify_cb, self);
}

/**
 * bf_worker_details_get_worker:
 *
 * Returns: (transfer none) (nullable): the worker shown
 */
BfDBusWorker *
bf_worker_details_get_worker (BfWorkerDetails *self)
{
  g_return_val_if_fail (BF_IS_WORKER_DETAILS (self), NULL);
  return self->worker;
}

static void
fetch_all_cb (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  /* The row notified what it learnt, which updated the pane already. */
  if (!bf_worker_row_fetch_all_finish (BF_WORKER_ROW (object), result, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_warning ("Could not read the properties of %s: %s",
               bf_worker_row_get_object_path (BF_WORKER_ROW (object)), error->message);
}

void
bf_worker_details_set_worker (BfWorkerDetails *self,
                              BfDBusWorker    *worker)
{
  g_return_if_fail (BF_IS_WORKER_DETAILS (self));
  g_return_if_fail (worker == NULL || BF_DBUS_IS_WORKER (worker));

  if (!g_set_object (&self->worker, worker))
    return;

  bf_worker_watch_set_worker (self->watch, worker);
  bf_worker_status_set_worker (self->status, worker);

  /* The list loaded only the properties it shows: read the others (Info,
   * Commands, Version…) of this one, and show them as they come.  Not
   * those of a worker no longer shown: it stays partial until shown again. */
  g_cancellable_cancel (self->fetch_cancellable);
  g_clear_object (&self->fetch_cancellable);
  if (worker != NULL && BF_IS_WORKER_ROW (worker))
    {
      self->fetch_cancellable = g_cancellable_new ();
      bf_worker_row_fetch_all_async (BF_WORKER_ROW (worker), self->fetch_cancellable, fetch_all_cb, NULL);
    }

  if (worker != NULL && BF_IS_WORKER_ROW (worker))
    {
      bf_build_list_set_worker_path (self->build_list, bf_worker_row_get_object_path (BF_WORKER_ROW (worker)));
      bf_worker_history_set_worker (self->history, bf_worker_row_get_connection (BF_WORKER_ROW (worker)),
                                    bf_worker_row_get_name_owner (BF_WORKER_ROW (worker)),
                                    bf_worker_row_get_object_path (BF_WORKER_ROW (worker)),
                                    bf_dbus_worker_get_connected (worker));
    }
  else
    {
      bf_build_list_set_worker_path (self->build_list, NULL);
      bf_worker_history_set_worker (self->history, NULL, NULL, NULL, FALSE);
    }

  g_clear_handle_id (&self->update_source, g_source_remove);
  bf_worker_details_update_grid (self);
  gtk_label_set_label (self->presence_label, "");
  update_presence (self);
  update_presence_tick (self);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_WORKER]);
}

/**
 * bf_worker_details_set_builds_model:
 *
 * Where the pane finds the builds running on its worker.
 */
void
bf_worker_details_set_builds_model (BfWorkerDetails *self,
                                    BfBuildsModel   *builds)
{
  g_return_if_fail (BF_IS_WORKER_DETAILS (self));
  bf_build_list_set_model (self->build_list, builds);
}

/* Where a value label is on its window's surface, and its selection. */
static void
dump_value_label (GKeyFile   *key_file,
                  const char *name,
                  GridRow    *row)
{
  GtkLabel *label = GTK_LABEL (row->value_label);
  GtkNative *native = gtk_widget_get_native (row->value_label);
  graphene_rect_t bounds;
  int start, end;

  if (native != NULL && gtk_widget_compute_bounds (row->value_label, GTK_WIDGET (native), &bounds))
    {
      double dx, dy;
      g_autofree char *text = NULL;

      gtk_native_get_surface_transform (native, &dx, &dy);
      text = g_strdup_printf ("%d %d %d %d", (int) (bounds.origin.x + dx), (int) (bounds.origin.y + dy),
                              (int) bounds.size.width, (int) bounds.size.height);
      g_key_file_set_string (key_file, "details-grid-bounds", name, text);
    }
  if (gtk_label_get_selection_bounds (label, &start, &end))
    {
      const char *text = gtk_label_get_text (label);
      const char *from = g_utf8_offset_to_pointer (text, start);
      g_autofree char *selected = g_strndup (from, g_utf8_offset_to_pointer (text, end) - from);

      g_key_file_set_string (key_file, "details", "selected-key", row->key);
      g_key_file_set_string (key_file, "details", "selected-text", selected);
    }
}

/**
 * bf_worker_details_dump:
 *
 * Writes the labels the pane shows above its grid: presence, alert,
 * builds, history.  For the tests.
 */
void
bf_worker_details_dump (BfWorkerDetails *self,
                        GKeyFile        *key_file)
{
  g_return_if_fail (BF_IS_WORKER_DETAILS (self));

  g_key_file_set_string (key_file, "details", "title", gtk_label_get_label (self->title_label));
  g_key_file_set_string (key_file, "details", "primary-action", gtk_button_get_label (self->primary_button));
  g_key_file_set_string (key_file, "details", "presence", gtk_label_get_label (self->presence_label));
  g_key_file_set_uint64 (key_file, "details", "grid-labels-created", self->labels_created);
  g_key_file_set_uint64 (key_file, "details", "grid-rows", self->grid_rows->len);
  g_key_file_set_string (key_file, "details", "alert",
                         gtk_widget_get_visible (GTK_WIDGET (self->alert_label))
                         ? gtk_label_get_label (self->alert_label) : "");
  /* The grid's rows as shown: "row N" = "KEY: VALUE" (sections as "KEY:"),
   * where each value is on the window's surface ("x y width height"), and
   * the text selected in one */
  for (guint i = 0; i < MIN (self->n_rows, self->grid_rows->len); i++)
    {
      GridRow *row = g_ptr_array_index (self->grid_rows, i);
      g_autofree char *name = g_strdup_printf ("row %u", i);

      if (row->value_label != NULL)
        dump_value_label (key_file, name, row);
      g_autofree char *text = g_strdup_printf ("%s:%s%s", gtk_label_get_label (GTK_LABEL (row->key_label)),
                                               row->value_label != NULL ? " " : "",
                                               row->value_label != NULL
                                               ? gtk_label_get_label (GTK_LABEL (row->value_label)) : "");
      g_key_file_set_string (key_file, "details-grid", name, text);
    }
  bf_build_list_dump (self->build_list, key_file, "details-builds", "details-build");
  bf_worker_history_dump (self->history, key_file, "history");
}
