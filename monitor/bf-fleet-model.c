/* bf-fleet-model.c: the daemon's workers as a GListModel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * The model follows the well-known name with g_bus_watch_name() and, each
 * time an owner appears, reads the workers of that owner's *unique* name
 * with one GetWorkers() call, in a worker thread (see BfLoad).
 *
 * It does not use a GDBusObjectManagerClient: that makes a GDBusProxy of
 * every interface of every object (see bf-worker-row.c), and on a
 * well-known name it reloads with a synchronous call on the main thread
 * (figures in tests/bench/README.md, "The desktop monitor's load").  The model
 * turns the reply into BfWorkerRows, which implement the generated
 * BfDBusWorker interface, in that thread, and keeps them up to date from
 * four signal subscriptions for the whole fleet (see bf_load_subscribe()).
 *
 * Every change reaches the views in batches: workers that appear are added in
 * one items-changed, and workers whose visible properties change are
 * re-emitted (so that sort and filter models see them) from one idle per main
 * loop iteration, however many PropertiesChanged signals arrived.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-fleet-model.h"
#include "bf-worker-row.h"
#include "bf-worker-util.h"

#define BF_BUS_NAME      "org.buildfleet.Fleet1"
#define BF_MANAGER_PATH  "/org/buildfleet/Fleet1"
#define BF_WORKERS_PATH  "/org/buildfleet/Fleet1/workers"
#define BF_WORKER_PREFIX BF_WORKERS_PATH "/"
#define BF_WORKER_IFACE        "org.buildfleet.Fleet1.Worker"
#define BF_LATENT_WORKER_IFACE "org.buildfleet.Fleet1.LatentWorker"

/* Above this many changed items one items-changed for the whole list is
 * cheaper than one per item. */

G_DEFINE_ENUM_TYPE (BfFleetStatus, bf_fleet_status,
  G_DEFINE_ENUM_VALUE (BF_FLEET_STATUS_CONNECTING, "connecting"),
  G_DEFINE_ENUM_VALUE (BF_FLEET_STATUS_NO_DAEMON, "no-daemon"),
  G_DEFINE_ENUM_VALUE (BF_FLEET_STATUS_LOADING, "loading"),
  G_DEFINE_ENUM_VALUE (BF_FLEET_STATUS_READY, "ready"),
  G_DEFINE_ENUM_VALUE (BF_FLEET_STATUS_ERROR, "error"))

typedef struct
{
  guint position;
  guint counted : 1;
  guint connected : 1;
  guint missing : 1;
  guint paused : 1;
  guint builds;
} BfItemInfo;

typedef struct _BfLoad BfLoad;

struct _BfFleetModel
{
  GObject             parent_instance;

  GBusType            bus_type;
  guint               watch_id;
  GCancellable       *cancellable;

  /* the daemon g_bus_watch_name() last saw, or NULL */
  char               *expected_owner;
  /* the load in progress or done, or NULL */
  BfLoad             *load;
  /* the daemon whose workers are in the model: its unique name (an
   * interned GRefString) */
  GDBusConnection    *connection;
  char               *name_owner;

  /* BfWorkerRows in the order they arrived */
  GPtrArray          *items;
  /* BfWorkerRow -> BfItemInfo; positions are stale while positions_dirty */
  GHashTable         *infos;
  /* object path -> BfWorkerRow, including those not flushed yet */
  GHashTable         *by_path;
  gboolean            positions_dirty;

  GPtrArray          *pending_added;
  GHashTable         *pending_changed;
  guint               flush_source;
  gint64              last_flush_usec;

  BfFleetStatus       status;
  char               *error_message;

  guint               n_connected;
  guint               n_missing;
  guint               n_paused;
  guint               n_builds;
};

static void list_model_iface_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfFleetModel, bf_fleet_model, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL, list_model_iface_init))

enum {
  PROP_0,
  PROP_BUS_TYPE,
  PROP_STATUS,
  PROP_ERROR_MESSAGE,
  PROP_N_ITEMS,
  PROP_N_CONNECTED,
  PROP_N_MISSING,
  PROP_N_PAUSED,
  PROP_N_BUILDS,
  N_PROPS
};

enum {
  WORKER_MISSING,
  WORKER_BACK_ONLINE,
  WORKER_SUBSTANTIATION_FAILED,
  WORKER_HEALTH_CHANGED,
  WORKER_FLAPPING_CHANGED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* Properties that a cell, the sorter or the filter looks at: a change to one
 * of them re-emits the item; others (LastMessageUSec ticks with every
 * keepalive) only notify the proxy. */
static const char * const view_properties[] = {
  "Name", "Connected", "Missing", "Paused", "Graceful", "Quarantined",
  "Flapping", "Unhealthy", "HealthReason", "ActiveBuilds", "MaxBuilds", "Host", "Admin", "DisconnectedSinceUSec", "LastSeenUSec",
  "State",
  NULL
};

/* What the list shows, sorts, filters and counts, and the notifications
 * say: all that the load asks GetWorkers for.  Info and Commands, most of
 * the 20 MB that GetManagedObjects sends for 10,000 attached workers, are
 * not among them; the details pane reads every property of the worker it
 * shows (see bf_worker_row_fetch_all_async()).  Any property added to a
 * cell, sorter, filter or notification must be added here too. */
static const char * const list_properties[] = {
  /* Worker */
  "Name", "Connected", "Missing", "Paused", "PauseReason", "Graceful", "Quarantined",
  "QuarantineUntilUSec", "ActiveBuilds", "MaxBuilds", "Host", "Admin", "DisconnectedSinceUSec",
  "LastSeenUSec", "Flapping", "Unhealthy", "HealthReason",
  /* LatentWorker: the state and its tooltip */
  "State", "LastError",
  NULL
};

static GType
bf_fleet_model_get_item_type (GListModel *model)
{
  return BF_DBUS_TYPE_WORKER;
}

static guint
bf_fleet_model_get_n_items (GListModel *model)
{
  return BF_FLEET_MODEL (model)->items->len;
}

static gpointer
bf_fleet_model_get_item (GListModel *model,
                         guint       position)
{
  BfFleetModel *self = BF_FLEET_MODEL (model);

  if (position >= self->items->len)
    return NULL;

  return g_object_ref (g_ptr_array_index (self->items, position));
}

static void
list_model_iface_init (GListModelInterface *iface)
{
  iface->get_item_type = bf_fleet_model_get_item_type;
  iface->get_n_items = bf_fleet_model_get_n_items;
  iface->get_item = bf_fleet_model_get_item;
}

static void
bf_fleet_model_set_status (BfFleetModel  *self,
                           BfFleetStatus  status,
                           const char    *error_message)
{
  if (g_strcmp0 (self->error_message, error_message) != 0)
    {
      g_free (self->error_message);
      self->error_message = g_strdup (error_message);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ERROR_MESSAGE]);
    }

  if (self->status != status)
    {
      self->status = status;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATUS]);
    }
}

/* Keeps the summary counters in step with one item, in O(1). */
static void
bf_fleet_model_count (BfFleetModel *self,
                      BfDBusWorker *worker,
                      BfItemInfo   *info,
                      gboolean      include)
{
  if (info->counted)
    {
      self->n_connected -= info->connected;
      self->n_missing -= info->missing;
      self->n_paused -= info->paused;
      self->n_builds -= info->builds;
      info->counted = FALSE;
    }

  if (include)
    {
      info->connected = bf_dbus_worker_get_connected (worker);
      info->missing = bf_dbus_worker_get_missing (worker);
      info->paused = bf_dbus_worker_get_paused (worker);
      info->builds = bf_dbus_worker_get_active_builds (worker);
      info->counted = TRUE;

      self->n_connected += info->connected;
      self->n_missing += info->missing;
      self->n_paused += info->paused;
      self->n_builds += info->builds;
    }
}

static void
bf_fleet_model_notify_counts (BfFleetModel *self,
                              guint         old_connected,
                              guint         old_missing,
                              guint         old_paused,
                              guint         old_builds)
{
  if (old_connected != self->n_connected)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_CONNECTED]);
  if (old_missing != self->n_missing)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_MISSING]);
  if (old_paused != self->n_paused)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_PAUSED]);
  if (old_builds != self->n_builds)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_BUILDS]);
}

static void
bf_fleet_model_update_positions (BfFleetModel *self)
{
  if (!self->positions_dirty)
    return;

  for (guint i = 0; i < self->items->len; i++)
    {
      BfItemInfo *info = g_hash_table_lookup (self->infos, g_ptr_array_index (self->items, i));
      info->position = i;
    }

  self->positions_dirty = FALSE;
}

static gboolean
bf_fleet_model_flush (gpointer user_data)
{
  BfFleetModel *self = BF_FLEET_MODEL (user_data);
  guint old_connected = self->n_connected;
  guint old_missing = self->n_missing;
  guint old_paused = self->n_paused;
  guint old_builds = self->n_builds;
  guint old_len = self->items->len;
  guint n_added = self->pending_added->len;
  g_autoptr(GHashTable) changed = NULL;
  GHashTableIter iter;
  gpointer worker;
  gpointer emit;

  self->flush_source = 0;
  self->last_flush_usec = g_get_monotonic_time ();

  changed = g_steal_pointer (&self->pending_changed);
  self->pending_changed = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);

  /* Changes first, so that their positions are those the views know. */
  bf_fleet_model_update_positions (self);

  /* One items-changed per row whose sorted or filtered columns changed
   * (LastMessageUSec moves every second on every busy worker; its cells
   * follow the rows' notify signals by themselves).  Never one reset of
   * the whole list: GTK 4.8's GtkSortListModel trips over
   * items-changed (0, n, n) right after it sorted n new items (a critical
   * in gtksortlistmodel.c with 10,000 attached workers), and a reset loses
   * the selection too.  Flushes are at least FLUSH_MIN_INTERVAL_USEC
   * apart, so a reconnecting fleet comes in a few batches. */
  g_hash_table_iter_init (&iter, changed);
  while (g_hash_table_iter_next (&iter, &worker, &emit))
    {
      BfItemInfo *info = g_hash_table_lookup (self->infos, worker);

      if (info == NULL)
        continue;

      bf_fleet_model_count (self, worker, info, TRUE);
      if (GPOINTER_TO_INT (emit))
        g_list_model_items_changed (G_LIST_MODEL (self), info->position, 1, 1);
    }

  if (n_added > 0)
    {
      for (guint i = 0; i < n_added; i++)
        {
          BfDBusWorker *worker = g_ptr_array_index (self->pending_added, i);
          BfItemInfo *info = g_new0 (BfItemInfo, 1);

          info->position = self->items->len;
          g_ptr_array_add (self->items, g_object_ref (worker));
          g_hash_table_insert (self->infos, worker, info);
          bf_fleet_model_count (self, worker, info, TRUE);
        }
      g_ptr_array_set_size (self->pending_added, 0);

      g_list_model_items_changed (G_LIST_MODEL (self), old_len, 0, n_added);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_ITEMS]);
    }

  bf_fleet_model_notify_counts (self, old_connected, old_missing, old_paused, old_builds);

  return G_SOURCE_REMOVE;
}

/* At most one flush per FLUSH_MIN_INTERVAL_USEC: when thousands of
 * workers reconnect at once, every flush re-sorts and re-filters what
 * changed, so a storm is taken in a few large batches rather than one per
 * main-loop iteration.  A change after a quiet spell is shown at once. */
#define FLUSH_MIN_INTERVAL_USEC (100 * 1000)

static void
bf_fleet_model_queue_flush (BfFleetModel *self)
{
  gint64 since = g_get_monotonic_time () - self->last_flush_usec;

  if (self->flush_source != 0)
    return;

  if (since >= FLUSH_MIN_INTERVAL_USEC)
    self->flush_source = g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, bf_fleet_model_flush, self, NULL);
  else
    self->flush_source = g_timeout_add_full (G_PRIORITY_DEFAULT_IDLE,
                                             (FLUSH_MIN_INTERVAL_USEC - since + 999) / 1000,
                                             bf_fleet_model_flush, self, NULL);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->flush_source),
                            "[buildfleet-monitor] flush fleet changes");
}

static void
bf_fleet_model_add_worker (BfFleetModel *self,
                           BfWorkerRow  *worker)
{
  /* Not g_ptr_array_find() on pending_added: with the rows of a whole
   * reply pending, that made loading quadratic. */
  if (g_hash_table_lookup (self->by_path, bf_worker_row_get_object_path (worker)) == worker)
    return;

  g_hash_table_replace (self->by_path, (gpointer) bf_worker_row_get_object_path (worker), g_object_ref (worker));
  g_ptr_array_add (self->pending_added, g_object_ref (worker));
  bf_fleet_model_queue_flush (self);
}

static void
bf_fleet_model_remove_worker (BfFleetModel *self,
                              BfWorkerRow  *worker)
{
  guint old_connected = self->n_connected;
  guint old_missing = self->n_missing;
  guint old_paused = self->n_paused;
  guint old_builds = self->n_builds;
  BfItemInfo *info;
  guint position;

  /* worker may be the last reference but one */
  g_object_ref (worker);
  if (g_hash_table_lookup (self->by_path, bf_worker_row_get_object_path (worker)) == worker)
    g_hash_table_remove (self->by_path, bf_worker_row_get_object_path (worker));
  g_ptr_array_remove (self->pending_added, worker);
  g_hash_table_remove (self->pending_changed, worker);

  info = g_hash_table_lookup (self->infos, worker);
  if (info == NULL)
    {
      g_object_unref (worker);
      return;
    }

  bf_fleet_model_update_positions (self);
  position = info->position;
  bf_fleet_model_count (self, BF_DBUS_WORKER (worker), info, FALSE);
  g_hash_table_remove (self->infos, worker);
  g_ptr_array_remove_index (self->items, position);
  self->positions_dirty = TRUE;

  g_list_model_items_changed (G_LIST_MODEL (self), position, 1, 0);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_ITEMS]);
  bf_fleet_model_notify_counts (self, old_connected, old_missing, old_paused, old_builds);
  g_object_unref (worker);
}

static void
bf_fleet_model_mark_changed (BfFleetModel *self,
                             BfWorkerRow  *worker,
                             gboolean      emit)
{
  gpointer old_emit = NULL;

  if (!g_hash_table_contains (self->infos, worker))
    return;

  if (g_hash_table_lookup_extended (self->pending_changed, worker, NULL, &old_emit))
    emit = emit || GPOINTER_TO_INT (old_emit);

  /* replace() drops the reference its old key held: always give it one */
  g_hash_table_replace (self->pending_changed, g_object_ref (worker), GINT_TO_POINTER (emit));
  bf_fleet_model_queue_flush (self);
}

static void
bf_fleet_model_clear (BfFleetModel *self)
{
  guint old_connected = self->n_connected;
  guint old_missing = self->n_missing;
  guint old_paused = self->n_paused;
  guint old_builds = self->n_builds;
  guint old_len = self->items->len;

  g_ptr_array_set_size (self->pending_added, 0);
  g_hash_table_remove_all (self->pending_changed);
  g_hash_table_remove_all (self->infos);
  g_hash_table_remove_all (self->by_path);
  g_ptr_array_set_size (self->items, 0);
  self->positions_dirty = FALSE;
  self->n_connected = self->n_missing = self->n_paused = self->n_builds = 0;

  if (old_len > 0)
    {
      g_list_model_items_changed (G_LIST_MODEL (self), 0, old_len, 0);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_ITEMS]);
    }
  bf_fleet_model_notify_counts (self, old_connected, old_missing, old_paused, old_builds);
}

/* ------------------------------------------------------------------------ */
/* Workers appearing, changing and going */

static BfWorkerRow *
bf_fleet_model_find (BfFleetModel *self,
                     const char   *object_path)
{
  return g_hash_table_lookup (self->by_path, object_path);
}

static void
bf_fleet_model_interfaces_added (BfFleetModel *self,
                                 const char   *object_path,
                                 GVariant     *interfaces)
{
  g_autoptr(GVariant) worker_properties = NULL;
  g_autoptr(GVariant) latent_properties = NULL;
  BfWorkerRow *row;

  worker_properties = g_variant_lookup_value (interfaces, BF_WORKER_IFACE, G_VARIANT_TYPE_VARDICT);
  latent_properties = g_variant_lookup_value (interfaces, BF_LATENT_WORKER_IFACE, G_VARIANT_TYPE_VARDICT);

  row = bf_fleet_model_find (self, object_path);

  if (worker_properties != NULL)
    {
      g_autoptr(BfWorkerRow) new_row = NULL;

      /* A Worker interface that comes again is a new one, as an object
       * manager client would see it. */
      if (row != NULL)
        bf_fleet_model_remove_worker (self, row);

      new_row = bf_worker_row_new (self->connection, self->name_owner, object_path, worker_properties);
      if (latent_properties != NULL)
        bf_worker_row_set_latent (new_row, latent_properties);
      bf_fleet_model_add_worker (self, new_row);
    }
  else if (latent_properties != NULL && row != NULL)
    {
      bf_worker_row_set_latent (row, latent_properties);
      bf_fleet_model_mark_changed (self, row, TRUE);
    }
}

static void
bf_fleet_model_interfaces_removed (BfFleetModel       *self,
                                   const char         *object_path,
                                   const char * const *interfaces)
{
  BfWorkerRow *row = bf_fleet_model_find (self, object_path);

  if (row == NULL)
    return;

  if (g_strv_contains (interfaces, BF_WORKER_IFACE))
    {
      bf_fleet_model_remove_worker (self, row);
    }
  else if (g_strv_contains (interfaces, BF_LATENT_WORKER_IFACE))
    {
      bf_worker_row_set_latent (row, NULL);
      bf_fleet_model_mark_changed (self, row, TRUE);
    }
}

static void
bf_fleet_model_properties_changed (BfFleetModel       *self,
                                   const char         *object_path,
                                   const char         *interface_name,
                                   GVariant           *changed,
                                   const char * const *invalidated)
{
  BfWorkerRow *row = bf_fleet_model_find (self, object_path);
  gboolean emit = FALSE;
  GVariantIter iter;
  const char *key;

  if (row == NULL)
    return;

  bf_worker_row_update (row, interface_name, changed, invalidated);

  g_variant_iter_init (&iter, changed);
  while (!emit && g_variant_iter_next (&iter, "{&sv}", &key, NULL))
    emit = g_strv_contains (view_properties, key);
  for (guint i = 0; !emit && invalidated[i] != NULL; i++)
    emit = g_strv_contains (view_properties, invalidated[i]);

  bf_fleet_model_mark_changed (self, row, emit);
}

static void
bf_fleet_model_worker_signal (BfFleetModel *self,
                              const char   *object_path,
                              const char   *interface_name,
                              const char   *signal_name,
                              GVariant     *parameters)
{
  BfWorkerRow *row = bf_fleet_model_find (self, object_path);

  if (row == NULL)
    return;

  if (g_str_equal (interface_name, BF_WORKER_IFACE))
    {
      if (g_str_equal (signal_name, "Missing") &&
          g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(t)")))
        {
          guint64 since;

          g_variant_get (parameters, "(t)", &since);
          g_signal_emit (self, signals[WORKER_MISSING], 0, row, since);
        }
      else if (g_str_equal (signal_name, "BackOnline"))
        {
          g_signal_emit (self, signals[WORKER_BACK_ONLINE], 0, row);
        }
      else if (g_str_equal (signal_name, "HealthChanged") &&
               g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(bs)")))
        {
          gboolean unhealthy;
          const char *reason;

          g_variant_get (parameters, "(b&s)", &unhealthy, &reason);
          g_signal_emit (self, signals[WORKER_HEALTH_CHANGED], 0, row, unhealthy, reason);
        }
      else if (g_str_equal (signal_name, "FlappingChanged") &&
               g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(b)")))
        {
          gboolean flapping;

          g_variant_get (parameters, "(b)", &flapping);
          g_signal_emit (self, signals[WORKER_FLAPPING_CHANGED], 0, row, flapping);
        }
    }
  else if (g_str_equal (interface_name, BF_LATENT_WORKER_IFACE))
    {
      if (g_str_equal (signal_name, "SubstantiationFailed") &&
          g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(s)")))
        {
          const char *message;

          g_variant_get (parameters, "(&s)", &message);
          g_signal_emit (self, signals[WORKER_SUBSTANTIATION_FAILED], 0, row, message);
        }
    }
}

static void
bf_fleet_model_dispatch_signal (BfFleetModel *self,
                                const char   *object_path,
                                const char   *interface_name,
                                const char   *signal_name,
                                GVariant     *parameters)
{
  if (g_str_equal (interface_name, "org.freedesktop.DBus.ObjectManager"))
    {
      if (g_str_equal (signal_name, "InterfacesAdded") &&
          g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oa{sa{sv}})")))
        {
          const char *path;
          g_autoptr(GVariant) interfaces = NULL;

          g_variant_get (parameters, "(&o@a{sa{sv}})", &path, &interfaces);
          bf_fleet_model_interfaces_added (self, path, interfaces);
        }
      else if (g_str_equal (signal_name, "InterfacesRemoved") &&
               g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oas)")))
        {
          const char *path;
          g_autofree const char **interfaces = NULL;

          g_variant_get (parameters, "(&o^a&s)", &path, &interfaces);
          bf_fleet_model_interfaces_removed (self, path, interfaces);
        }
    }
  else if (g_str_equal (interface_name, "org.freedesktop.DBus.Properties"))
    {
      if (g_str_equal (signal_name, "PropertiesChanged") &&
          g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")))
        {
          const char *changed_interface;
          g_autoptr(GVariant) changed = NULL;
          g_autofree const char **invalidated = NULL;

          g_variant_get (parameters, "(&s@a{sv}^a&s)", &changed_interface, &changed, &invalidated);
          bf_fleet_model_properties_changed (self, object_path, changed_interface, changed, invalidated);
        }
    }
  else
    {
      bf_fleet_model_worker_signal (self, object_path, interface_name, signal_name, parameters);
    }
}

typedef struct
{
  char     *object_path;
  char     *interface_name;
  char     *signal_name;
  GVariant *parameters;
} BfQueuedSignal;

static void
bf_queued_signal_free (BfQueuedSignal *queued)
{
  g_free (queued->object_path);
  g_free (queued->interface_name);
  g_free (queued->signal_name);
  g_variant_unref (queued->parameters);
  g_free (queued);
}

/*
 * One load of the fleet from one daemon (one unique name): its signal
 * subscriptions, the signals that arrive before its rows are in the model,
 * and a worker thread that subscribes, calls GetWorkers and turns the
 * reply into rows.
 *
 * The thread may block on D-Bus: the main thread never does.  The first
 * load starts as the model is made, before GTK has even opened the display,
 * and asks the bus for the daemon's unique name itself: the daemon answers
 * while GTK starts up and the window is built, rather than after
 * g_bus_watch_name() could tell the main loop about it.
 */
struct _BfLoad
{
  gatomicrefcount  ref_count;

  /* set before the thread runs, then only read */
  GWeakRef         model;
  GBusType         bus_type;
  gint64           started_usec;

  /* set by the thread (unless known before), read by the main thread once
   * it is done */
  GDBusConnection *connection;
  char            *name_owner;  /* an interned GRefString */
  guint            subscriptions[4];
  char            *properties_match_rule;
  GPtrArray       *rows;
  gboolean         partial;  /* the rows have only list_properties */
  gint64           reply_usec;
  gint64           built_usec;

  /* main thread only: the signals that arrived before the rows went into
   * the model, or NULL since then */
  GPtrArray       *queued_signals;
};

static BfLoad *
bf_load_new (BfFleetModel    *model,
             GDBusConnection *connection,
             const char      *name_owner)
{
  BfLoad *load = g_new0 (BfLoad, 1);

  g_atomic_ref_count_init (&load->ref_count);
  g_weak_ref_init (&load->model, model);
  load->bus_type = model->bus_type;
  load->started_usec = g_get_monotonic_time ();
  load->connection = connection != NULL ? g_object_ref (connection) : NULL;
  load->name_owner = name_owner != NULL ? g_ref_string_new_intern (name_owner) : NULL;
  load->queued_signals = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_queued_signal_free);

  return load;
}

static BfLoad *
bf_load_ref (BfLoad *load)
{
  g_atomic_ref_count_inc (&load->ref_count);
  return load;
}

static void
bf_load_unref (BfLoad *load)
{
  if (!g_atomic_ref_count_dec (&load->ref_count))
    return;

  g_weak_ref_clear (&load->model);
  g_clear_object (&load->connection);
  g_clear_pointer (&load->name_owner, g_ref_string_release);
  g_clear_pointer (&load->properties_match_rule, g_free);
  g_clear_pointer (&load->rows, g_ptr_array_unref);
  g_clear_pointer (&load->queued_signals, g_ptr_array_unref);
  g_free (load);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfLoad, bf_load_unref)

static void
on_signal (GDBusConnection *connection,
           const char      *sender_name,
           const char      *object_path,
           const char      *interface_name,
           const char      *signal_name,
           GVariant        *parameters,
           gpointer         user_data)
{
  BfLoad *load = user_data;
  g_autoptr(BfFleetModel) self = g_weak_ref_get (&load->model);

  /* Signals of a daemon that has gone (their subscription may still have
   * something in the queue) are not ours. */
  if (self == NULL || self->load != load)
    return;

  /* Until the reply's rows are in the model, keep every signal and apply
   * them all after it, in order.  Each sets absolute values, so those that
   * the reply already reflects change nothing in the end, and none is lost
   * however the reply and the signals were ordered. */
  if (load->queued_signals != NULL)
    {
      BfQueuedSignal *queued = g_new0 (BfQueuedSignal, 1);

      queued->object_path = g_strdup (object_path);
      queued->interface_name = g_strdup (interface_name);
      queued->signal_name = g_strdup (signal_name);
      queued->parameters = g_variant_ref (parameters);
      g_ptr_array_add (load->queued_signals, queued);
      return;
    }

  bf_fleet_model_dispatch_signal (self, object_path, interface_name, signal_name, parameters);
}

/* Callable from any thread: the callbacks run in the main context either
 * way, since no thread pushes another one. */
static guint
bf_load_subscribe_one (BfLoad          *load,
                       const char      *interface_name,
                       const char      *member,
                       const char      *object_path,
                       GDBusSignalFlags flags)
{
  return g_dbus_connection_signal_subscribe (load->connection, load->name_owner, interface_name, member,
                                             object_path, NULL, flags, on_signal,
                                             bf_load_ref (load), (GDestroyNotify) bf_load_unref);
}

/*
 * One match rule per kind of signal for the whole fleet, never one per
 * worker: InterfacesAdded/Removed on the manager, the Worker and
 * LatentWorker signals, and PropertiesChanged of every object under the
 * workers' path.  The last needs path_namespace, which
 * g_dbus_connection_signal_subscribe() cannot express, so that rule is added
 * by hand (before GetWorkers is sent, hence in effect before the
 * daemon answers it) and the subscription only dispatches.
 */
static void
bf_load_subscribe (BfLoad *load)
{
  load->subscriptions[0] = bf_load_subscribe_one (load, "org.freedesktop.DBus.ObjectManager", NULL,
                                                  BF_MANAGER_PATH, G_DBUS_SIGNAL_FLAGS_NONE);
  load->subscriptions[1] = bf_load_subscribe_one (load, BF_WORKER_IFACE, NULL, NULL, G_DBUS_SIGNAL_FLAGS_NONE);
  load->subscriptions[2] = bf_load_subscribe_one (load, BF_LATENT_WORKER_IFACE, NULL, NULL,
                                                  G_DBUS_SIGNAL_FLAGS_NONE);

  if (g_dbus_connection_get_flags (load->connection) & G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION)
    {
      load->properties_match_rule =
        g_strdup_printf ("type='signal',sender='%s',interface='org.freedesktop.DBus.Properties',"
                         "member='PropertiesChanged',path_namespace='%s'",
                         load->name_owner, BF_WORKERS_PATH);
      /* No reply needed: the bus handles our messages in order. */
      g_dbus_connection_call (load->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                              "org.freedesktop.DBus", "AddMatch",
                              g_variant_new ("(s)", load->properties_match_rule),
                              NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
      load->subscriptions[3] = bf_load_subscribe_one (load, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                                      NULL, G_DBUS_SIGNAL_FLAGS_NO_MATCH_RULE);
    }
  else
    {
      load->subscriptions[3] = bf_load_subscribe_one (load, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                                      NULL, G_DBUS_SIGNAL_FLAGS_NONE);
    }
}

/* Main thread, once the thread is done with @load. */
static void
bf_load_unsubscribe (BfLoad *load)
{
  for (guint i = 0; i < G_N_ELEMENTS (load->subscriptions); i++)
    {
      if (load->subscriptions[i] != 0)
        g_dbus_connection_signal_unsubscribe (load->connection, load->subscriptions[i]);
      load->subscriptions[i] = 0;
    }

  if (load->properties_match_rule != NULL && !g_dbus_connection_is_closed (load->connection))
    g_dbus_connection_call (load->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                            "org.freedesktop.DBus", "RemoveMatch",
                            g_variant_new ("(s)", load->properties_match_rule),
                            NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
  g_clear_pointer (&load->properties_match_rule, g_free);
}

static gpointer
free_variant_thread (gpointer data)
{
  g_variant_unref (data);
  return NULL;
}

/* Appends the rows of the workers among @objects[@start..@end) to @rows. */
static void
build_rows (BfLoad       *load,
            GVariant     *objects,
            gsize         start,
            gsize         end,
            GPtrArray    *rows,
            GCancellable *cancellable)
{
  for (gsize i = start; i < end && !g_cancellable_is_cancelled (cancellable); i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (objects, i);
      g_autoptr(GVariant) path = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) interfaces = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) worker_properties = NULL;
      g_autoptr(GVariant) latent_properties = NULL;
      BfWorkerRow *row;

      worker_properties = g_variant_lookup_value (interfaces, BF_WORKER_IFACE, G_VARIANT_TYPE_VARDICT);
      if (worker_properties == NULL)
        continue;

      row = bf_worker_row_new (load->connection, load->name_owner,
                               g_variant_get_string (path, NULL), worker_properties);
      latent_properties = g_variant_lookup_value (interfaces, BF_LATENT_WORKER_IFACE, G_VARIANT_TYPE_VARDICT);
      if (latent_properties != NULL)
        bf_worker_row_set_latent (row, latent_properties);
      if (load->partial)
        bf_worker_row_set_partial (row);
      g_ptr_array_add (rows, row);
    }
}

typedef struct
{
  BfLoad       *load;
  GVariant     *objects;
  gsize         start;
  gsize         end;
  GPtrArray    *rows;
  GCancellable *cancellable;
} BfBuildRows;

static gpointer
build_rows_thread (gpointer data)
{
  BfBuildRows *half = data;

  build_rows (half->load, half->objects, half->start, half->end, half->rows, half->cancellable);
  return NULL;
}

/* The thread's steps, each blocking, none on the main thread. */

/* The bus and the daemon's unique name, unless the load was given them. */
static gboolean
bf_load_find_daemon (BfLoad        *load,
                     GCancellable  *cancellable,
                     GError       **error)
{
  g_autoptr(GVariant) owner = NULL;
  const char *name_owner;

  if (load->connection == NULL)
    {
      load->connection = g_bus_get_sync (load->bus_type, cancellable, error);
      if (load->connection == NULL)
        return FALSE;
    }

  if (load->name_owner != NULL)
    return TRUE;

  owner = g_dbus_connection_call_sync (load->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetNameOwner",
                                       g_variant_new ("(s)", BF_BUS_NAME), G_VARIANT_TYPE ("(s)"),
                                       G_DBUS_CALL_FLAGS_NONE, -1, cancellable, error);
  if (owner == NULL)
    return FALSE;
  g_variant_get (owner, "(&s)", &name_owner);
  load->name_owner = g_ref_string_new_intern (name_owner);

  return TRUE;
}

/* The workers of the unique name (a new daemon is a new load): GetWorkers
 * with only list_properties, or GetManagedObjects from a daemon older than
 * GetWorkers (then the rows are complete).  Returns the a{oa{sa{sv}}}. */
static GVariant *
bf_load_get_workers (BfLoad        *load,
                     GCancellable  *cancellable,
                     GError       **error)
{
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) local_error = NULL;

  load->partial = TRUE;
  reply = g_dbus_connection_call_sync (load->connection, load->name_owner, BF_MANAGER_PATH,
                                       "org.buildfleet.Fleet1.Manager", "GetWorkers",
                                       g_variant_new ("(^as)", (char **) list_properties),
                                       G_VARIANT_TYPE ("(a{oa{sa{sv}}})"),
                                       G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, cancellable, &local_error);
  if (reply == NULL && g_error_matches (local_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD))
    {
      g_clear_error (&local_error);
      load->partial = FALSE;
      reply = g_dbus_connection_call_sync (load->connection, load->name_owner, BF_MANAGER_PATH,
                                           "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                                           NULL, G_VARIANT_TYPE ("(a{oa{sa{sv}}})"),
                                           G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, cancellable, &local_error);
    }
  if (reply == NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return NULL;
    }

  return g_variant_get_child_value (reply, 0);
}

/* The rows of @objects, the second half in a thread of its own: nothing
 * else runs now but this, and the machine likely has another CPU. */
static GPtrArray *
bf_load_build_rows (BfLoad       *load,
                    GVariant     *objects,
                    GCancellable *cancellable)
{
  gsize n_objects = g_variant_n_children (objects);
  BfBuildRows half = { NULL, };
  GPtrArray *rows;
  GThread *helper;

  half.load = load;
  half.objects = objects;
  half.start = n_objects / 2;
  half.end = n_objects;
  half.cancellable = cancellable;
  half.rows = g_ptr_array_new_full (half.end - half.start, g_object_unref);
  helper = g_thread_new ("bf-build-rows", build_rows_thread, &half);

  rows = g_ptr_array_new_full (n_objects, g_object_unref);
  build_rows (load, objects, 0, half.start, rows, cancellable);

  g_thread_join (helper);
  g_ptr_array_extend_and_steal (rows, g_steal_pointer (&half.rows));

  return rows;
}

/* The task completes only once bf_load_thread() returns, and freeing a
 * large reply takes a while: a thread of its own frees it while the main
 * thread shows the rows (which hold references to the values they keep,
 * not to the reply). */
static void
free_variant_in_thread (GVariant *variant)
{
  g_thread_unref (g_thread_new ("bf-free-reply", free_variant_thread, variant));
}

/* In a worker thread: subscribed before the call, so that nothing between
 * the reply and the first signal is missed (see on_signal() for the
 * order). */
static void
bf_load_thread (GTask        *task,
                gpointer      source_object,
                gpointer      task_data,
                GCancellable *cancellable)
{
  BfLoad *load = task_data;
  g_autoptr(GVariant) objects = NULL;
  GError *error = NULL;

  if (!bf_load_find_daemon (load, cancellable, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  bf_load_subscribe (load);

  objects = bf_load_get_workers (load, cancellable, &error);
  if (objects == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  load->reply_usec = g_get_monotonic_time ();

  load->rows = bf_load_build_rows (load, objects, cancellable);
  load->built_usec = g_get_monotonic_time ();
  free_variant_in_thread (g_steal_pointer (&objects));

  if (!g_task_return_error_if_cancelled (task))
    g_task_return_boolean (task, TRUE);
}

static void bf_fleet_model_start_load (BfFleetModel    *self,
                                       GDBusConnection *connection,
                                       const char      *name_owner);

static void
bf_load_done_cb (GObject      *object,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);
  BfLoad *load = g_task_get_task_data (G_TASK (result));
  g_autoptr(GPtrArray) queued = NULL;
  g_autoptr(GError) error = NULL;
  gint64 callback_usec = g_get_monotonic_time ();
  gint64 installed_usec;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      bf_load_unsubscribe (load);

      if (self->load != load)
        return;  /* cancelled, or replaced */
      g_clear_pointer (&self->load, bf_load_unref);

      /* The first load asked for the daemon itself; if it is not there,
       * or not reachable, g_bus_watch_name() says so. */
      if (self->expected_owner == NULL)
        return;

      g_dbus_error_strip_remote_error (error);
      g_warning ("Could not read the workers of %s: %s", BF_BUS_NAME, error->message);
      {
        g_autofree char *message = g_strdup_printf (_("The fleet daemon did not list its workers: %s"),
                                                    error->message);
        bf_fleet_model_set_status (self, BF_FLEET_STATUS_ERROR, message);
      }
      return;
    }

  if (self->load != load)
    {
      bf_load_unsubscribe (load);
      return;
    }

  /* The first load found the daemon before g_bus_watch_name() did; if the
   * watcher has seen another one since, this one is gone. */
  if (self->expected_owner != NULL && !g_str_equal (self->expected_owner, load->name_owner))
    {
      g_autofree char *owner = g_strdup (self->expected_owner);
      g_autoptr(GDBusConnection) connection = g_object_ref (load->connection);

      bf_load_unsubscribe (load);
      bf_fleet_model_start_load (self, connection, owner);
      return;
    }

  self->connection = g_object_ref (load->connection);
  self->name_owner = g_ref_string_acquire (load->name_owner);

  for (guint i = 0; i < load->rows->len; i++)
    bf_fleet_model_add_worker (self, g_ptr_array_index (load->rows, i));
  g_clear_pointer (&load->rows, g_ptr_array_unref);

  /* All of them in one items-changed, right now rather than in an idle:
   * the window shows the list in the same frame it leaves "loading". */
  bf_fleet_model_flush (self);
  g_clear_handle_id (&self->flush_source, g_source_remove);

  queued = g_steal_pointer (&load->queued_signals);
  for (guint i = 0; i < queued->len; i++)
    {
      BfQueuedSignal *signal = g_ptr_array_index (queued, i);

      bf_fleet_model_dispatch_signal (self, signal->object_path, signal->interface_name,
                                      signal->signal_name, signal->parameters);
    }

  bf_fleet_model_set_status (self, BF_FLEET_STATUS_READY, NULL);
  installed_usec = g_get_monotonic_time ();

  g_debug ("%u workers of %s in the model %.3f s after the load started: the daemon answered "
           "and parsed after %.3f s, rows built in %.3f s, handed to the main thread in %.3f s, "
           "model and views updated in %.3f s (%u signals replayed)",
           self->items->len, load->name_owner,
           (installed_usec - load->started_usec) / (double) G_USEC_PER_SEC,
           (load->reply_usec - load->started_usec) / (double) G_USEC_PER_SEC,
           (load->built_usec - load->reply_usec) / (double) G_USEC_PER_SEC,
           (callback_usec - load->built_usec) / (double) G_USEC_PER_SEC,
           (installed_usec - callback_usec) / (double) G_USEC_PER_SEC,
           queued->len);
}

static void
bf_fleet_model_disconnect (BfFleetModel *self)
{
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);

  /* A load still in its thread is unsubscribed when it is done. */
  if (self->load != NULL && self->load->queued_signals == NULL)
    bf_load_unsubscribe (self->load);
  g_clear_pointer (&self->load, bf_load_unref);
  g_clear_object (&self->connection);
  g_clear_pointer (&self->name_owner, g_ref_string_release);

  bf_fleet_model_clear (self);
}

/* @connection and @name_owner: (nullable): found by the thread if NULL */
static void
bf_fleet_model_start_load (BfFleetModel    *self,
                           GDBusConnection *connection,
                           const char      *name_owner)
{
  g_autoptr(GTask) task = NULL;

  bf_fleet_model_disconnect (self);
  bf_fleet_model_set_status (self, BF_FLEET_STATUS_LOADING, NULL);

  self->cancellable = g_cancellable_new ();
  self->load = bf_load_new (self, connection, name_owner);

  task = g_task_new (self, self->cancellable, bf_load_done_cb, NULL);
  g_task_set_source_tag (task, bf_fleet_model_start_load);
  g_task_set_task_data (task, bf_load_ref (self->load), (GDestroyNotify) bf_load_unref);
  g_task_run_in_thread (task, bf_load_thread);
}

static void
name_appeared_cb (GDBusConnection *connection,
                  const char      *name,
                  const char      *name_owner,
                  gpointer         user_data)
{
  BfFleetModel *self = BF_FLEET_MODEL (user_data);

  g_debug ("%s appeared as %s", name, name_owner);

  g_free (self->expected_owner);
  self->expected_owner = g_strdup (name_owner);

  /* The first load may have found it already (or bf_load_done_cb() sees
   * whether it found this one). */
  if (self->load != NULL &&
      (self->load->queued_signals != NULL || g_strcmp0 (self->name_owner, name_owner) == 0))
    return;

  bf_fleet_model_start_load (self, connection, name_owner);
}

static void
name_vanished_cb (GDBusConnection *connection,
                  const char      *name,
                  gpointer         user_data)
{
  BfFleetModel *self = BF_FLEET_MODEL (user_data);

  g_debug ("%s vanished", name);

  g_clear_pointer (&self->expected_owner, g_free);
  bf_fleet_model_disconnect (self);

  if (connection == NULL)
    bf_fleet_model_set_status (self, BF_FLEET_STATUS_ERROR,
                               _("Could not connect to the system message bus."));
  else
    bf_fleet_model_set_status (self, BF_FLEET_STATUS_NO_DAEMON, NULL);
}

static void
bf_fleet_model_constructed (GObject *object)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);

  G_OBJECT_CLASS (bf_fleet_model_parent_class)->constructed (object);

  bf_fleet_model_start_load (self, NULL, NULL);

  self->watch_id = g_bus_watch_name (self->bus_type,
                                     BF_BUS_NAME,
                                     G_BUS_NAME_WATCHER_FLAGS_NONE,
                                     name_appeared_cb,
                                     name_vanished_cb,
                                     self,
                                     NULL);
}

static void
bf_fleet_model_dispose (GObject *object)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);

  g_clear_handle_id (&self->watch_id, g_bus_unwatch_name);
  g_clear_handle_id (&self->flush_source, g_source_remove);
  bf_fleet_model_disconnect (self);

  G_OBJECT_CLASS (bf_fleet_model_parent_class)->dispose (object);
}

static void
bf_fleet_model_finalize (GObject *object)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);

  g_clear_pointer (&self->items, g_ptr_array_unref);
  g_clear_pointer (&self->infos, g_hash_table_unref);
  g_clear_pointer (&self->by_path, g_hash_table_unref);
  g_clear_pointer (&self->pending_added, g_ptr_array_unref);
  g_clear_pointer (&self->pending_changed, g_hash_table_unref);
  g_clear_pointer (&self->error_message, g_free);
  g_clear_pointer (&self->expected_owner, g_free);

  G_OBJECT_CLASS (bf_fleet_model_parent_class)->finalize (object);
}

static void
bf_fleet_model_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);

  switch (prop_id)
    {
    case PROP_BUS_TYPE:
      g_value_set_enum (value, self->bus_type);
      break;
    case PROP_STATUS:
      g_value_set_enum (value, self->status);
      break;
    case PROP_ERROR_MESSAGE:
      g_value_set_string (value, self->error_message);
      break;
    case PROP_N_ITEMS:
      g_value_set_uint (value, self->items->len);
      break;
    case PROP_N_CONNECTED:
      g_value_set_uint (value, self->n_connected);
      break;
    case PROP_N_MISSING:
      g_value_set_uint (value, self->n_missing);
      break;
    case PROP_N_PAUSED:
      g_value_set_uint (value, self->n_paused);
      break;
    case PROP_N_BUILDS:
      g_value_set_uint (value, self->n_builds);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bf_fleet_model_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);

  switch (prop_id)
    {
    case PROP_BUS_TYPE:
      self->bus_type = g_value_get_enum (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

/* The daemon's incidents, for the notifier. */
static void
bf_fleet_model_class_add_signals (BfFleetModelClass *klass)
{
  /**
   * BfFleetModel::worker-missing:
   * @worker: the worker
   * @since_usec: when it was last seen
   *
   * The daemon reported that @worker stayed away longer than its MissingTimeout.
   */
  signals[WORKER_MISSING] =
    g_signal_new ("worker-missing",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, BF_DBUS_TYPE_WORKER, G_TYPE_UINT64);

  /**
   * BfFleetModel::worker-back-online:
   * @worker: the worker
   *
   * A worker that was missing attached again.
   */
  signals[WORKER_BACK_ONLINE] =
    g_signal_new ("worker-back-online",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, BF_DBUS_TYPE_WORKER);

  /**
   * BfFleetModel::worker-substantiation-failed:
   * @worker: the latent worker
   * @message: the daemon's reason
   *
   * Starting an instance of a latent worker failed.
   */
  signals[WORKER_SUBSTANTIATION_FAILED] =
    g_signal_new ("worker-substantiation-failed",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, BF_DBUS_TYPE_WORKER, G_TYPE_STRING);

  /**
   * BfFleetModel::worker-health-changed:
   * @worker: the worker
   * @unhealthy: whether it failed its last round of health checks
   * @reason: why (the daemon's HealthReason), "" when healthy
   *
   * The daemon's HealthChanged: once per transition.
   */
  signals[WORKER_HEALTH_CHANGED] =
    g_signal_new ("worker-health-changed",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 3, BF_DBUS_TYPE_WORKER, G_TYPE_BOOLEAN, G_TYPE_STRING);

  /**
   * BfFleetModel::worker-flapping-changed:
   * @worker: the worker
   * @flapping: whether it now detaches too often
   *
   * The daemon's FlappingChanged: once per episode each way.
   */
  signals[WORKER_FLAPPING_CHANGED] =
    g_signal_new ("worker-flapping-changed",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, BF_DBUS_TYPE_WORKER, G_TYPE_BOOLEAN);
}

static void
bf_fleet_model_class_init (BfFleetModelClass *klass)
{
  static const char * const counter_names[] = { "n-items", "n-connected", "n-missing", "n-paused", "n-builds" };
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = bf_fleet_model_constructed;
  object_class->dispose = bf_fleet_model_dispose;
  object_class->finalize = bf_fleet_model_finalize;
  object_class->get_property = bf_fleet_model_get_property;
  object_class->set_property = bf_fleet_model_set_property;

  properties[PROP_BUS_TYPE] =
    g_param_spec_enum ("bus-type", NULL, NULL,
                       G_TYPE_BUS_TYPE, G_BUS_TYPE_SYSTEM,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  properties[PROP_STATUS] =
    g_param_spec_enum ("status", NULL, NULL,
                       BF_TYPE_FLEET_STATUS, BF_FLEET_STATUS_CONNECTING,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  properties[PROP_ERROR_MESSAGE] =
    g_param_spec_string ("error-message", NULL, NULL,
                         NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /* The counters, PROP_N_ITEMS to PROP_N_BUILDS in this order */
  for (guint i = 0; i < G_N_ELEMENTS (counter_names); i++)
    properties[PROP_N_ITEMS + i] =
      g_param_spec_uint (counter_names[i], NULL, NULL, 0, G_MAXUINT, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  bf_fleet_model_class_add_signals (klass);
}

static void
bf_fleet_model_init (BfFleetModel *self)
{
  self->bus_type = G_BUS_TYPE_SYSTEM;
  self->items = g_ptr_array_new_with_free_func (g_object_unref);
  self->infos = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  /* the keys are the rows' own paths */
  self->by_path = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_object_unref);
  self->pending_added = g_ptr_array_new_with_free_func (g_object_unref);
  self->pending_changed = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
}

BfFleetModel *
bf_fleet_model_new (GBusType bus_type)
{
  return g_object_new (BF_TYPE_FLEET_MODEL,
                       "bus-type", bus_type,
                       NULL);
}

BfFleetStatus
bf_fleet_model_get_status (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), BF_FLEET_STATUS_ERROR);
  return self->status;
}

const char *
bf_fleet_model_get_error_message (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), NULL);
  return self->error_message;
}

guint
bf_fleet_model_get_n_connected (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), 0);
  return self->n_connected;
}

guint
bf_fleet_model_get_n_missing (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), 0);
  return self->n_missing;
}

guint
bf_fleet_model_get_n_paused (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), 0);
  return self->n_paused;
}

guint
bf_fleet_model_get_n_builds (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), 0);
  return self->n_builds;
}

/**
 * bf_fleet_model_lookup:
 * @self: a #BfFleetModel
 * @name: a worker name as configured
 *
 * Returns: (transfer none) (nullable): the worker, a #BfWorkerRow
 */
BfDBusWorker *
bf_fleet_model_lookup (BfFleetModel *self,
                       const char   *name)
{
  g_autofree char *escaped = NULL;
  g_autofree char *path = NULL;
  BfWorkerRow *row;

  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);

  escaped = g_dbus_escape_object_path (name);
  path = g_strconcat (BF_WORKER_PREFIX, escaped, NULL);
  row = bf_fleet_model_find (self, path);

  if (row == NULL || !g_hash_table_contains (self->infos, row))
    return NULL;

  return BF_DBUS_WORKER (row);
}

/**
 * bf_fleet_model_get_connection:
 *
 * Returns: (transfer none) (nullable): the bus of the daemon whose workers
 * are in the model, once loaded
 */
GDBusConnection *
bf_fleet_model_get_connection (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), NULL);
  return self->connection;
}

/**
 * bf_fleet_model_get_name_owner:
 *
 * Returns: (transfer none) (nullable): the unique name of that daemon
 */
const char *
bf_fleet_model_get_name_owner (BfFleetModel *self)
{
  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), NULL);
  return self->name_owner;
}

/**
 * bf_fleet_model_lookup_path:
 *
 * Returns: (transfer none) (nullable): the worker at @object_path
 */
BfDBusWorker *
bf_fleet_model_lookup_path (BfFleetModel *self,
                            const char   *object_path)
{
  BfWorkerRow *row;

  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), NULL);
  row = object_path != NULL ? bf_fleet_model_find (self, object_path) : NULL;
  if (row == NULL || !g_hash_table_contains (self->infos, row))
    return NULL;
  return BF_DBUS_WORKER (row);
}
