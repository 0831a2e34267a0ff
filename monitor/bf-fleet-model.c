/* bf-fleet-model.c: the daemon's workers as a GListModel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * The model follows the well-known name with g_bus_watch_name() and, each
 * time an owner appears, builds a fresh object manager client bound to that
 * owner's *unique* name.  GDBusObjectManagerClient on a well-known name would
 * reconnect by itself, but it does so with a synchronous GetManagedObjects()
 * call on the main thread (gdbusobjectmanagerclient.c, "TODO: do this
 * async!"), which would freeze the window while a daemon with many workers
 * answers.  A unique name never comes back, so the client never does that;
 * its initial load runs in GIO's worker thread through GAsyncInitable.
 *
 * Every change reaches the views in batches: workers that appear are added in
 * one items-changed, and workers whose visible properties change are
 * re-emitted (so that sort and filter models see them) from one idle per main
 * loop iteration, however many PropertiesChanged signals arrived.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-fleet-model.h"
#include "bf-worker-util.h"

#define BF_BUS_NAME      "org.buildfleet.Fleet1"
#define BF_MANAGER_PATH  "/org/buildfleet/Fleet1"
#define BF_WORKER_PREFIX "/org/buildfleet/Fleet1/workers/"

/* Above this many changed items one items-changed for the whole list is
 * cheaper than one per item. */
#define BF_BATCH_RESET_THRESHOLD 256

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

struct _BfFleetModel
{
  GObject             parent_instance;

  GBusType            bus_type;
  guint               watch_id;
  GCancellable       *cancellable;
  GDBusObjectManager *client;
  gint64              load_started_usec;

  /* BfDBusWorker proxies in the order they arrived */
  GPtrArray          *items;
  /* BfDBusWorker -> BfItemInfo; positions are stale while positions_dirty */
  GHashTable         *infos;
  gboolean            positions_dirty;

  GPtrArray          *pending_added;
  GHashTable         *pending_changed;
  guint               flush_source;

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
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* Properties that a cell, the sorter or the filter looks at: a change to one
 * of them re-emits the item; others (LastMessageUSec ticks with every
 * keepalive) only notify the proxy. */
static const char * const view_properties[] = {
  "Name", "Connected", "Missing", "Paused", "Graceful", "Quarantined",
  "ActiveBuilds", "MaxBuilds", "Host", "Admin", "DisconnectedSinceUSec",
  "State",
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

  self->flush_source = 0;

  changed = g_steal_pointer (&self->pending_changed);
  self->pending_changed = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);

  /* Changes first, so that their positions are those the views know. */
  bf_fleet_model_update_positions (self);

  if (g_hash_table_size (changed) > BF_BATCH_RESET_THRESHOLD && old_len > 0)
    {
      GHashTableIter iter;
      gpointer worker;

      g_hash_table_iter_init (&iter, changed);
      while (g_hash_table_iter_next (&iter, &worker, NULL))
        {
          BfItemInfo *info = g_hash_table_lookup (self->infos, worker);
          if (info != NULL)
            bf_fleet_model_count (self, worker, info, TRUE);
        }
      g_list_model_items_changed (G_LIST_MODEL (self), 0, old_len, old_len);
    }
  else
    {
      GHashTableIter iter;
      gpointer worker;
      gpointer emit;

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

static void
bf_fleet_model_queue_flush (BfFleetModel *self)
{
  if (self->flush_source != 0)
    return;

  self->flush_source = g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, bf_fleet_model_flush, self, NULL);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->flush_source),
                            "[buildfleet-monitor] flush fleet changes");
}

static void
bf_fleet_model_add_worker (BfFleetModel *self,
                           BfDBusWorker *worker)
{
  if (g_hash_table_contains (self->infos, worker) ||
      g_ptr_array_find (self->pending_added, worker, NULL))
    return;

  g_ptr_array_add (self->pending_added, g_object_ref (worker));
  bf_fleet_model_queue_flush (self);
}

static void
bf_fleet_model_remove_worker (BfFleetModel *self,
                              BfDBusWorker *worker)
{
  guint old_connected = self->n_connected;
  guint old_missing = self->n_missing;
  guint old_paused = self->n_paused;
  guint old_builds = self->n_builds;
  BfItemInfo *info;
  guint position;

  g_ptr_array_remove (self->pending_added, worker);
  g_hash_table_remove (self->pending_changed, worker);

  info = g_hash_table_lookup (self->infos, worker);
  if (info == NULL)
    return;

  bf_fleet_model_update_positions (self);
  position = info->position;
  bf_fleet_model_count (self, worker, info, FALSE);
  g_hash_table_remove (self->infos, worker);
  g_ptr_array_remove_index (self->items, position);
  self->positions_dirty = TRUE;

  g_list_model_items_changed (G_LIST_MODEL (self), position, 1, 0);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_ITEMS]);
  bf_fleet_model_notify_counts (self, old_connected, old_missing, old_paused, old_builds);
}

static void
bf_fleet_model_mark_changed (BfFleetModel *self,
                             BfDBusWorker *worker,
                             gboolean      emit)
{
  gpointer old_emit = NULL;

  if (!g_hash_table_contains (self->infos, worker))
    return;

  if (g_hash_table_lookup_extended (self->pending_changed, worker, NULL, &old_emit))
    emit = emit || GPOINTER_TO_INT (old_emit);
  else
    g_object_ref (worker);

  g_hash_table_replace (self->pending_changed, worker, GINT_TO_POINTER (emit));
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

static BfDBusWorker *
worker_of_object (GDBusObject *object)
{
  if (!BF_DBUS_IS_OBJECT (object))
    return NULL;
  return bf_dbus_object_peek_worker (BF_DBUS_OBJECT (object));
}

static void
on_object_added (BfFleetModel       *self,
                 GDBusObject        *object,
                 GDBusObjectManager *client)
{
  BfDBusWorker *worker = worker_of_object (object);

  if (worker != NULL)
    bf_fleet_model_add_worker (self, worker);
}

static void
on_object_removed (BfFleetModel       *self,
                   GDBusObject        *object,
                   GDBusObjectManager *client)
{
  BfDBusWorker *worker = worker_of_object (object);

  if (worker != NULL)
    bf_fleet_model_remove_worker (self, worker);
}

static void
on_interface_added (BfFleetModel       *self,
                    GDBusObject        *object,
                    GDBusInterface     *interface,
                    GDBusObjectManager *client)
{
  BfDBusWorker *worker = worker_of_object (object);

  if (worker == NULL)
    return;

  if (BF_DBUS_IS_WORKER (interface))
    bf_fleet_model_add_worker (self, worker);
  else
    bf_fleet_model_mark_changed (self, worker, TRUE);
}

static void
on_interface_removed (BfFleetModel       *self,
                      GDBusObject        *object,
                      GDBusInterface     *interface,
                      GDBusObjectManager *client)
{
  if (BF_DBUS_IS_WORKER (interface))
    bf_fleet_model_remove_worker (self, BF_DBUS_WORKER (interface));
  else if (worker_of_object (object) != NULL)
    bf_fleet_model_mark_changed (self, worker_of_object (object), TRUE);
}

static void
on_interface_proxy_properties_changed (BfFleetModel             *self,
                                       GDBusObjectProxy         *object,
                                       GDBusProxy               *interface,
                                       GVariant                 *changed,
                                       const char * const       *invalidated,
                                       GDBusObjectManagerClient *client)
{
  BfDBusWorker *worker = worker_of_object (G_DBUS_OBJECT (object));
  gboolean emit = FALSE;
  GVariantIter iter;
  const char *key;

  if (worker == NULL)
    return;

  g_variant_iter_init (&iter, changed);
  while (!emit && g_variant_iter_next (&iter, "{&sv}", &key, NULL))
    emit = g_strv_contains (view_properties, key);
  for (guint i = 0; !emit && invalidated[i] != NULL; i++)
    emit = g_strv_contains (view_properties, invalidated[i]);

  bf_fleet_model_mark_changed (self, worker, emit);
}

static void
on_interface_proxy_signal (BfFleetModel             *self,
                           GDBusObjectProxy         *object,
                           GDBusProxy               *interface,
                           const char               *sender,
                           const char               *signal_name,
                           GVariant                 *parameters,
                           GDBusObjectManagerClient *client)
{
  BfDBusWorker *worker = worker_of_object (G_DBUS_OBJECT (object));

  if (worker == NULL)
    return;

  if (BF_DBUS_IS_WORKER (interface))
    {
      if (g_str_equal (signal_name, "Missing") &&
          g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(t)")))
        {
          guint64 since;

          g_variant_get (parameters, "(t)", &since);
          g_signal_emit (self, signals[WORKER_MISSING], 0, worker, since);
        }
      else if (g_str_equal (signal_name, "BackOnline"))
        {
          g_signal_emit (self, signals[WORKER_BACK_ONLINE], 0, worker);
        }
    }
  else if (BF_DBUS_IS_LATENT_WORKER (interface))
    {
      if (g_str_equal (signal_name, "SubstantiationFailed") &&
          g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(s)")))
        {
          const char *message;

          g_variant_get (parameters, "(&s)", &message);
          g_signal_emit (self, signals[WORKER_SUBSTANTIATION_FAILED], 0, worker, message);
        }
    }
}

static void
bf_fleet_model_set_client (BfFleetModel       *self,
                           GDBusObjectManager *client)
{
  if (self->client == client)
    return;

  if (self->client != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->client, self);
      g_clear_object (&self->client);
    }

  bf_fleet_model_clear (self);

  if (client != NULL)
    {
      g_autolist(GDBusObject) objects = NULL;

      self->client = g_object_ref (client);
      g_signal_connect_object (client, "object-added", G_CALLBACK (on_object_added), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (client, "object-removed", G_CALLBACK (on_object_removed), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (client, "interface-added", G_CALLBACK (on_interface_added), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (client, "interface-removed", G_CALLBACK (on_interface_removed), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (client, "interface-proxy-properties-changed",
                               G_CALLBACK (on_interface_proxy_properties_changed), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (client, "interface-proxy-signal",
                               G_CALLBACK (on_interface_proxy_signal), self, G_CONNECT_SWAPPED);

      objects = g_dbus_object_manager_get_objects (client);
      for (const GList *l = objects; l != NULL; l = l->next)
        {
          BfDBusWorker *worker = worker_of_object (l->data);
          if (worker != NULL)
            g_ptr_array_add (self->pending_added, g_object_ref (worker));
        }

      /* All of them in one items-changed, right now rather than in an idle:
       * the window shows the list in the same frame it leaves "loading". */
      bf_fleet_model_flush (self);
      g_clear_handle_id (&self->flush_source, g_source_remove);
    }
}

static void
client_new_cb (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(BfFleetModel) self = user_data;
  g_autoptr(GDBusObjectManager) client = NULL;
  g_autoptr(GError) error = NULL;

  client = bf_dbus_object_manager_client_new_finish (result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  if (client == NULL)
    {
      g_autofree char *message = NULL;

      g_dbus_error_strip_remote_error (error);
      g_warning ("Could not read the workers of %s: %s", BF_BUS_NAME, error->message);
      message = g_strdup_printf (_("The fleet daemon did not list its workers: %s"), error->message);
      bf_fleet_model_set_status (self, BF_FLEET_STATUS_ERROR, message);
      return;
    }

  g_debug ("Read the objects of %s in %.3f s",
           g_dbus_object_manager_client_get_name (G_DBUS_OBJECT_MANAGER_CLIENT (client)),
           (g_get_monotonic_time () - self->load_started_usec) / (double) G_USEC_PER_SEC);

  bf_fleet_model_set_client (self, client);
  bf_fleet_model_set_status (self, BF_FLEET_STATUS_READY, NULL);

  g_debug ("%u workers in the model %.3f s after %s appeared",
           self->items->len,
           (g_get_monotonic_time () - self->load_started_usec) / (double) G_USEC_PER_SEC,
           BF_BUS_NAME);
}

static void
name_appeared_cb (GDBusConnection *connection,
                  const char      *name,
                  const char      *name_owner,
                  gpointer         user_data)
{
  BfFleetModel *self = BF_FLEET_MODEL (user_data);

  g_debug ("%s appeared as %s", name, name_owner);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();

  bf_fleet_model_set_client (self, NULL);
  bf_fleet_model_set_status (self, BF_FLEET_STATUS_LOADING, NULL);
  self->load_started_usec = g_get_monotonic_time ();

  bf_dbus_object_manager_client_new (connection,
                                     G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_DO_NOT_AUTO_START,
                                     name_owner,
                                     BF_MANAGER_PATH,
                                     self->cancellable,
                                     client_new_cb,
                                     g_object_ref (self));
}

static void
name_vanished_cb (GDBusConnection *connection,
                  const char      *name,
                  gpointer         user_data)
{
  BfFleetModel *self = BF_FLEET_MODEL (user_data);

  g_debug ("%s vanished", name);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);

  bf_fleet_model_set_client (self, NULL);

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
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);

  if (self->client != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->client, self);
      g_clear_object (&self->client);
    }

  G_OBJECT_CLASS (bf_fleet_model_parent_class)->dispose (object);
}

static void
bf_fleet_model_finalize (GObject *object)
{
  BfFleetModel *self = BF_FLEET_MODEL (object);

  g_clear_pointer (&self->items, g_ptr_array_unref);
  g_clear_pointer (&self->infos, g_hash_table_unref);
  g_clear_pointer (&self->pending_added, g_ptr_array_unref);
  g_clear_pointer (&self->pending_changed, g_hash_table_unref);
  g_clear_pointer (&self->error_message, g_free);

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

static void
bf_fleet_model_class_init (BfFleetModelClass *klass)
{
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

  properties[PROP_N_ITEMS] =
    g_param_spec_uint ("n-items", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_N_CONNECTED] =
    g_param_spec_uint ("n-connected", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_N_MISSING] =
    g_param_spec_uint ("n-missing", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_N_PAUSED] =
    g_param_spec_uint ("n-paused", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_N_BUILDS] =
    g_param_spec_uint ("n-builds", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

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
}

static void
bf_fleet_model_init (BfFleetModel *self)
{
  self->bus_type = G_BUS_TYPE_SYSTEM;
  self->items = g_ptr_array_new_with_free_func (g_object_unref);
  self->infos = g_hash_table_new_full (NULL, NULL, NULL, g_free);
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
 * Returns: (transfer none) (nullable): the worker's proxy
 */
BfDBusWorker *
bf_fleet_model_lookup (BfFleetModel *self,
                       const char   *name)
{
  g_autofree char *escaped = NULL;
  g_autofree char *path = NULL;
  g_autoptr(GDBusInterface) interface = NULL;

  g_return_val_if_fail (BF_IS_FLEET_MODEL (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);

  if (self->client == NULL)
    return NULL;

  escaped = g_dbus_escape_object_path (name);
  path = g_strconcat (BF_WORKER_PREFIX, escaped, NULL);
  interface = g_dbus_object_manager_get_interface (self->client, path, "org.buildfleet.Fleet1.Worker");

  if (interface == NULL || !g_hash_table_contains (self->infos, interface))
    return NULL;

  return BF_DBUS_WORKER (interface);
}
