/* bf-manager.c: the fleet, published as org.buildfleet.Fleet1.Manager
 *
 * Owns the configuration in force, the name -> worker map, the object
 * manager that publishes every worker, the listener, and the fleet-wide
 * counters.  A reload is applied as a diff: workers that stay are updated
 * in place, new ones are exported, removed ones are unexported once they
 * have no running build.
 *
 * A reload acts only on files that have stopped changing: they are read
 * (in a thread) every RELOAD_RETRY_MS until the reads saw the same bytes
 * for RELOAD_SETTLE_USEC, for at most RELOAD_MAX_USEC, and a result that
 * would remove most of the fleet is read once more RELOAD_CONFIRM_MS
 * later.  A file rewritten in place is thus not taken half-written unless
 * its writer stalls longer than that.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <malloc.h>
#include <string.h>

#include "bf-authority.h"
#include "bf-build.h"
#include "bf-dbus-size.h"
#include "bf-error.h"
#include "bf-listener.h"
#include "bf-pb-auth.h"
#include "bf-log.h"
#include "bf-mailer.h"
#include "bf-manager.h"
#include "bf-pool.h"
#include "bf-scheduler.h"
#include "bf-variant-util.h"
#include "bf-history.h"
#include "bf-state.h"
#include "bf-util.h"
#include "drivers/bf-latent-driver.h"

#define FLEET_PATH "/org/buildfleet/Fleet1"
#define WORKERS_PATH FLEET_PATH "/workers"
#define POOLS_PATH FLEET_PATH "/pools"
#define STATUS_DELAY_MS 250
#define TRIM_DELAY_S 2
#define RELOAD_RETRY_MS 100
#define RELOAD_SETTLE_USEC (300 * 1000)
#define RELOAD_CONFIRM_MS 1000
#define RELOAD_MAX_USEC (3 * G_USEC_PER_SEC)
/* Room for a reply's header fields (reply serial, destination, signature,
 * and the sender the bus adds) below MaxBusMessageSize. */
#define BUS_HEADER_ROOM 4096
/* How often the engines that can list instances (docker) are asked for
 * what carries this daemon's id, after the scan at start-up. */
#define ENGINE_SCAN_INTERVAL_S 60

struct _BfManager
{
  BfDBusManagerSkeleton parent_instance;

  BfConfig *config;             /* in force: the last one read in full */
  BfConfig *boot_config;        /* the one the daemon started with: Listen, TLS and
                                 * StateDirectory stay as it says until a restart */
  gboolean session_bus;
  BfState *state;
  BfMailer *mailer;
  BfAuthority *authority;
  BfListener *listener;
  GDBusObjectManagerServer *object_manager;

  GDBusConnection *bus;
  guint listing_filter_id;        /* see listing_filter_cb() */
  char *master;                   /* HOST:PORT for latent instances */
  char *pb_master;                /* HOST:PORT for latent instances that speak PB */
  GHashTable *workers;            /* name -> BfWorker */
  GHashTable *retiring;           /* name -> BfWorker: removed, waiting for its builds */
  GHashTable *pools;              /* name -> BfPool */

  guint status_source_id;
  guint trim_source_id;
  guint engine_scan_source_id;    /* the next periodic engine scan */
  guint engine_scans;             /* listings in flight */
  GCancellable *engine_cancellable;
  GHashTable *orphans_stopping;   /* instance id -> NULL: stops in flight */

  BfScheduler *scheduler;         /* the pending builds */
  BfCacheWarmer *cache_warmer;    /* every worker's property cache, see bf_worker_set_cache_warmer() */
  GHashTable *builds;             /* BfBuild -> linger source id (0 while live); owns the build */
  guint64 next_build_id;

  GPtrArray *reload_tasks;        /* GTask: answered by the reads in progress */
  GPtrArray *reload_queued;       /* GTask: came in after those reads began */
  GCancellable *reload_cancellable;
  guint reload_source_id;         /* the next read */
  guint reload_reads;
  gboolean reload_confirming;     /* a suspicious result is being read again */
  char *reload_digest;            /* of the last read ... */
  char *reload_error;             /* ... and its error, if it failed */
  gint64 reload_started_usec;
  gint64 reload_read_usec;        /* when the last read started */
  gint64 reload_same_since_usec;  /* when the first read with these bytes started */
};

enum {
  SIGNAL_STATUS_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void bf_manager_iface_init (BfDBusManagerIface *iface);

static void
schedule_dispatch (BfManager *self)
{
  if (self->scheduler)
    bf_scheduler_kick (self->scheduler);
}

G_DEFINE_FINAL_TYPE_WITH_CODE (BfManager, bf_manager, BF_DBUS_TYPE_MANAGER_SKELETON,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_MANAGER, bf_manager_iface_init))

static BfDBusManager *
iface (BfManager *self)
{
  return BF_DBUS_MANAGER (self);
}

static char *
worker_path (const char *name)
{
  g_autofree char *escaped = g_dbus_escape_object_path (name);
  return g_strconcat (WORKERS_PATH "/", escaped, NULL);
}

/* Status ------------------------------------------------------------------ */

static gboolean
status_cb (gpointer data)
{
  BfManager *self = data;

  self->status_source_id = 0;
  g_signal_emit (self, signals[SIGNAL_STATUS_CHANGED], 0);
  return G_SOURCE_REMOVE;
}

static gboolean
trim_cb (gpointer data)
{
  BfManager *self = data;

  self->trim_source_id = 0;
  /* An attach storm leaves megabytes of freed transient buffers (HTTP
   * requests, msgpack messages, D-Bus signals) in malloc's arenas; give
   * them back once the fleet is quiet. */
  malloc_trim (0);
  return G_SOURCE_REMOVE;
}

static void
schedule_status (BfManager *self)
{
  g_clear_handle_id (&self->trim_source_id, g_source_remove);
  self->trim_source_id = bf_timeout_add_seconds (TRIM_DELAY_S, trim_cb, self,
                                                 "[buildfleetd] memory trim");
  /* Coalesced: an attach storm of 10,000 workers is one status line. */
  if (self->status_source_id == 0)
    self->status_source_id = bf_timeout_add (STATUS_DELAY_MS, status_cb, self,
                                             "[buildfleetd] status update");
}

char *
bf_manager_dup_status (BfManager *self)
{
  guint total = g_hash_table_size (self->workers);
  guint connected = bf_dbus_manager_get_workers_connected (iface (self));
  guint missing = bf_dbus_manager_get_workers_missing (iface (self));
  guint builds = bf_dbus_manager_get_builds_active (iface (self));
  g_autoptr(GString) s = g_string_new (NULL);

  g_string_append_printf (s, "%u of %u workers connected", connected, total);
  if (missing > 0)
    g_string_append_printf (s, ", %u missing", missing);
  if (builds > 0)
    g_string_append_printf (s, ", %u build%s running", builds, builds == 1 ? "" : "s");
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static void
worker_connected_changed_cb (BfWorker *worker,
                             gboolean  connected,
                             gpointer  data)
{
  BfManager *self = data;
  guint n = bf_dbus_manager_get_workers_connected (iface (self));

  bf_dbus_manager_set_workers_connected (iface (self), connected ? n + 1 : n - 1);
  schedule_status (self);
  if (connected)
    schedule_dispatch (self);
}

static void
worker_missing_changed_cb (BfWorker *worker,
                           gboolean  missing,
                           gpointer  data)
{
  BfManager *self = data;
  guint n = bf_dbus_manager_get_workers_missing (iface (self));

  bf_dbus_manager_set_workers_missing (iface (self), missing ? n + 1 : n - 1);
  schedule_status (self);
}

static void retire_if_idle (BfManager *self,
                            BfWorker  *worker);

static void
worker_active_builds_changed_cb (BfWorker *worker,
                                 int       delta,
                                 gpointer  data)
{
  BfManager *self = data;
  guint n = bf_dbus_manager_get_builds_active (iface (self));

  bf_dbus_manager_set_builds_active (iface (self), (guint) ((int) n + delta));
  schedule_status (self);
  if (delta < 0)
    schedule_dispatch (self);
  if (g_hash_table_lookup (self->retiring, bf_worker_get_name (worker)) == worker)
    retire_if_idle (self, worker);
}

/* Pools --------------------------------------------------------------------- */

static char *
pool_path (const char *name)
{
  g_autofree char *escaped = g_dbus_escape_object_path (name);
  return g_strconcat (POOLS_PATH "/", escaped, NULL);
}

/* The pool @worker's configuration names, if it is in force. */
static BfPool *
pool_of (BfManager *self,
         BfWorker  *worker)
{
  const char *name = bf_worker_get_config (worker)->pool;

  return name ? g_hash_table_lookup (self->pools, name) : NULL;
}

static void
pool_changed_cb (BfPool    *pool,
                 BfManager *self)
{
  /* An instance may have ended: a build waiting for MaxInstances may
   * start one now. */
  schedule_dispatch (self);
}

static void
add_pool (BfManager    *self,
          BfPoolConfig *pc)
{
  BfPool *pool = bf_pool_new (pc);
  g_autofree char *path = pool_path (pc->name);
  g_autoptr(BfDBusObjectSkeleton) object = bf_dbus_object_skeleton_new (path);

  g_signal_connect_object (pool, "changed", G_CALLBACK (pool_changed_cb), self, 0);
  if (self->master || self->pb_master)
    bf_pool_start (pool);     /* added by a reload */
  g_hash_table_insert (self->pools, g_strdup (pc->name), pool);
  bf_dbus_object_skeleton_set_pool (object, BF_DBUS_POOL (pool));
  g_dbus_object_manager_server_export (self->object_manager, G_DBUS_OBJECT_SKELETON (object));
}

/* Pools of @config that are new are created, the others take their new
 * settings; pools no longer configured go (their workers are removed by
 * the worker diff). */
static void
apply_pools (BfManager *self,
             BfConfig  *config)
{
  GHashTableIter iter;
  gpointer key, value;

  for (guint i = 0; i < config->pools->len; i++)
    {
      BfPoolConfig *pc = g_ptr_array_index (config->pools, i);
      BfPool *pool = g_hash_table_lookup (self->pools, pc->name);

      if (pool)
        bf_pool_set_config (pool, pc);
      else
        add_pool (self, pc);
    }
  g_hash_table_iter_init (&iter, self->pools);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      g_autofree char *path = NULL;

      if (bf_config_lookup_pool (config, key) != NULL)
        continue;
      path = pool_path (key);
      g_signal_handlers_disconnect_by_data (value, self);
      bf_pool_clear (value);
      g_dbus_object_manager_server_unexport (self->object_manager, path);
      g_hash_table_iter_remove (&iter);
    }
}

/* Calls @func on every pool: bf_pool_start() once the daemon listens (and
 * instances left by an earlier daemon are known), bf_pool_clear() when it
 * exits (no spares are kept or started any more). */
static void
for_each_pool (BfManager *self,
               void     (*func) (BfPool *pool))
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->pools);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    func (value);
}

static void
worker_availability_changed_cb (BfWorker *worker,
                                gpointer  data)
{
  schedule_dispatch (data);
}

/* Typed slots, no casts: the compiler checks each callback against its slot. */
static const BfWorkerObserver worker_observer = {
  .connected_changed = worker_connected_changed_cb,
  .missing_changed = worker_missing_changed_cb,
  .active_builds_changed = worker_active_builds_changed_cb,
  .availability_changed = worker_availability_changed_cb,
};

/* Workers ------------------------------------------------------------------- *
 *
 * A worker's interfaces are exported on the connection directly, not
 * through the GDBusObjectManagerServer: a GDBusObjectSkeleton and the
 * server's registration per worker were about a third of the start-up's
 * CPU and 1 KB each with 50,000 configured (tests/bench/README.md,
 * "Start-up").  What a client sees is the same: the same paths and
 * interfaces, InterfacesAdded and InterfacesRemoved from FLEET_PATH as
 * the server sends them (nothing for the workers exported before the
 * connection is given, as the server does for its own objects), and
 * GetManagedObjects lists them with the server's objects
 * (serve_managed_objects()). */

/* The worker's interfaces: Worker, and LatentWorker for a latent one. */
static guint
worker_interfaces (BfWorker                *worker,
                   GDBusInterfaceSkeleton **ifaces)
{
  guint n = 0;

  ifaces[n++] = G_DBUS_INTERFACE_SKELETON (worker);
  if (bf_worker_get_latent (worker))
    ifaces[n++] = G_DBUS_INTERFACE_SKELETON (bf_worker_get_latent (worker));
  return n;
}

/* Exports @worker's interfaces on self->bus, with InterfacesAdded if
 * @announce. */
static void
export_worker_on_bus (BfManager *self,
                      BfWorker  *worker,
                      gboolean   announce)
{
  g_autofree char *path = worker_path (bf_worker_get_name (worker));
  GDBusInterfaceSkeleton *ifaces[2];
  guint n = worker_interfaces (worker, ifaces);
  GVariantBuilder b;

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GError) error = NULL;

      if (!g_dbus_interface_skeleton_export (ifaces[i], self->bus, path, &error))
        g_warning ("Cannot publish worker %s on the bus: %s", bf_worker_get_name (worker), error->message);
    }
  if (!announce)
    return;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sa{sv}}"));
  for (guint i = 0; i < n; i++)
    g_variant_builder_add (&b, "{s@a{sv}}", g_dbus_interface_skeleton_get_info (ifaces[i])->name,
                           g_dbus_interface_skeleton_get_properties (ifaces[i]));
  g_dbus_connection_emit_signal (self->bus, NULL, FLEET_PATH, "org.freedesktop.DBus.ObjectManager",
                                 "InterfacesAdded", g_variant_new ("(oa{sa{sv}})", path, &b), NULL);
}

static void
export_worker (BfManager *self,
               BfWorker  *worker)
{
  if (self->bus != NULL)
    export_worker_on_bus (self, worker, TRUE);
}

/* Takes @worker off the bus, with InterfacesRemoved if @announce. */
static void
unexport_worker (BfManager *self,
                 BfWorker  *worker,
                 gboolean   announce)
{
  GDBusInterfaceSkeleton *ifaces[2];
  guint n = worker_interfaces (worker, ifaces);

  if (self->bus == NULL || !g_dbus_interface_skeleton_has_connection (ifaces[0], self->bus))
    return;
  if (announce)
    {
      g_autofree char *path = worker_path (bf_worker_get_name (worker));
      GVariantBuilder b;

      g_variant_builder_init (&b, G_VARIANT_TYPE ("as"));
      for (guint i = 0; i < n; i++)
        g_variant_builder_add (&b, "s", g_dbus_interface_skeleton_get_info (ifaces[i])->name);
      g_dbus_connection_emit_signal (self->bus, NULL, FLEET_PATH, "org.freedesktop.DBus.ObjectManager",
                                     "InterfacesRemoved", g_variant_new ("(oas)", path, &b), NULL);
    }
  for (guint i = 0; i < n; i++)
    if (g_dbus_interface_skeleton_has_connection (ifaces[i], self->bus))
      g_dbus_interface_skeleton_unexport_from_connection (ifaces[i], self->bus);
}

static void
add_worker (BfManager      *self,
            BfWorkerConfig *wc)
{
  BfWorker *worker = bf_worker_new (wc, self->state, self->mailer, self->authority);

  bf_worker_set_cache_warmer (worker, self->cache_warmer);
  bf_worker_set_duplicate_ping_timeout (worker, self->config->duplicate_ping_timeout_usec);
  bf_worker_set_quarantine_limits (worker, self->config->quarantine_initial_usec,
                                   self->config->quarantine_max_usec);
  /* Not signal handlers (see BfWorkerObserver).  Let go in drop_worker()
   * and in dispose (disconnect_workers()). */
  bf_worker_set_observer (worker, &worker_observer, self);
  if (bf_worker_is_missing (worker))
    bf_dbus_manager_set_workers_missing (iface (self), bf_dbus_manager_get_workers_missing (iface (self)) + 1);
  if (bf_worker_get_latent (worker) && (self->master || self->pb_master))
    {
      bf_latent_set_master (bf_worker_get_latent (worker), self->master, self->boot_config->tls_certificate);
      bf_latent_set_pb_master (bf_worker_get_latent (worker), self->pb_master);
    }
  g_hash_table_insert (self->workers, g_strdup (wc->name), worker);
  export_worker (self, worker);
  if (pool_of (self, worker))
    bf_pool_add_member (pool_of (self, worker), worker);
}

static void
drop_worker (BfManager  *self,
             BfWorker   *worker,
             const char *reason)
{
  if (pool_of (self, worker))
    bf_pool_remove_member (pool_of (self, worker), worker);
  /* An instance that is still starting goes too, not only an attached one. */
  if (bf_worker_get_latent (worker))
    bf_latent_insubstantiate (bf_worker_get_latent (worker), TRUE, reason);
  bf_worker_disconnect (worker, reason);
  if (bf_worker_is_missing (worker))
    bf_dbus_manager_set_workers_missing (iface (self), bf_dbus_manager_get_workers_missing (iface (self)) - 1);
  g_signal_handlers_disconnect_by_data (worker, self);
  bf_worker_set_observer (worker, NULL, NULL);
  unexport_worker (self, worker, TRUE);
  bf_state_remove_worker (self->state, bf_worker_get_name (worker));
  schedule_status (self);
}

static void
retire_if_idle (BfManager *self,
                BfWorker  *worker)
{
  g_autofree char *name = g_strdup (bf_worker_get_name (worker));

  if (bf_worker_get_active_builds (worker) > 0)
    return;
  bf_worker_message (name, "Worker %s removed from the configuration", name);
  drop_worker (self, worker, "removed from the configuration");
  g_hash_table_remove (self->retiring, name);
}

static void
apply_daemon_config (BfManager *self)
{
  BfConnectionLimits limits = {
    .max_message_size = self->config->max_message_size,
    .keepalive_interval_usec = self->config->keepalive_interval_usec,
  };

  bf_mailer_set_config (self->mailer, self->config->mail_command, self->config->mail_from);
  bf_mailer_set_timeout (self->mailer, self->config->mail_timeout_usec);
  bf_mailer_set_digest_interval (self->mailer, self->config->mail_digest_interval_usec);
  if (self->listener)
    bf_listener_set_limits (self->listener, &limits);
}

/* Applies a configuration read in full: the difference to the one in
 * force. */
static void
apply_config (BfManager *self,
              BfConfig  *config)
{
  g_autoptr(BfConfig) old = NULL;
  g_autoptr(GPtrArray) removed = g_ptr_array_new_with_free_func (g_object_unref);
  GHashTableIter iter;
  gpointer value;
  guint added = 0, updated = 0;

  if (!g_strv_equal ((const char * const *) config->listen, (const char * const *) self->boot_config->listen) ||
      g_strcmp0 (config->tls_certificate, self->boot_config->tls_certificate) != 0 ||
      g_strcmp0 (config->tls_private_key, self->boot_config->tls_private_key) != 0)
    g_warning ("Reload: changes to Listen, TlsCertificate and TlsPrivateKey take effect when the daemon restarts");
  if (g_strcmp0 (config->state_directory, self->boot_config->state_directory) != 0)
    g_warning ("Reload: a new StateDirectory takes effect when the daemon restarts");

  old = g_steal_pointer (&self->config);
  self->config = bf_config_ref (config);
  apply_daemon_config (self);
  apply_pools (self, config);

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      BfWorker *worker = value;
      if (bf_config_lookup_worker (config, bf_worker_get_name (worker)) == NULL)
        {
          g_ptr_array_add (removed, g_object_ref (worker));
          g_hash_table_iter_remove (&iter);   /* frees the key too */
        }
    }

  for (guint i = 0; i < config->workers->len; i++)
    {
      BfWorkerConfig *wc = g_ptr_array_index (config->workers, i);
      BfWorker *worker = g_hash_table_lookup (self->workers, wc->name);

      if (worker == NULL && (worker = g_hash_table_lookup (self->retiring, wc->name)) != NULL)
        {
          /* Came back before its builds ended: keep it. */
          g_hash_table_insert (self->workers, g_strdup (wc->name), g_object_ref (worker));
          g_hash_table_remove (self->retiring, wc->name);
        }
      if (worker != NULL)
        {
          BfPool *old_pool = pool_of (self, worker);

          bf_worker_set_config (worker, wc);
          if (old_pool != pool_of (self, worker) && old_pool != NULL)
            bf_pool_remove_member (old_pool, worker);
          if (pool_of (self, worker))
            bf_pool_add_member (pool_of (self, worker), worker);
          bf_worker_set_duplicate_ping_timeout (worker, config->duplicate_ping_timeout_usec);
          bf_worker_set_quarantine_limits (worker, config->quarantine_initial_usec,
                                           config->quarantine_max_usec);
          if (bf_worker_get_link (worker))
            bf_worker_link_set_keepalive (bf_worker_get_link (worker), config->keepalive_interval_usec);
          updated++;
        }
      else
        {
          add_worker (self, wc);
          added++;
        }
    }

  for (guint i = 0; i < removed->len; i++)
    {
      BfWorker *worker = g_ptr_array_index (removed, i);
      g_hash_table_insert (self->retiring, g_strdup (bf_worker_get_name (worker)), g_object_ref (worker));
      if (pool_of (self, worker))
        bf_pool_retire_member (pool_of (self, worker), worker);
      retire_if_idle (self, worker);
    }

  schedule_dispatch (self);
  g_message ("Configuration reloaded from %s: %u workers kept, %u added, %u removed",
             config->path, updated, added, removed->len);
  schedule_status (self);
}


/* How many workers in force @config would remove. */
static guint
count_removed (BfManager *self,
               BfConfig  *config)
{
  GHashTableIter iter;
  gpointer key;
  guint n = 0;

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (bf_config_lookup_worker (config, key) == NULL)
      n++;
  return n;
}

typedef struct {
  BfConfig *config;
  char *digest;
  GError *error;
} ReloadRead;

static void
reload_read_free (ReloadRead *r)
{
  g_clear_pointer (&r->config, bf_config_unref);
  g_free (r->digest);
  g_clear_error (&r->error);
  g_free (r);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ReloadRead, reload_read_free)

static void
reload_read_thread (GTask        *task,
                    gpointer      source_object,
                    gpointer      task_data,
                    GCancellable *cancellable)
{
  ReloadRead *r = g_new0 (ReloadRead, 1);

  r->config = bf_config_load_full (task_data, &r->digest, &r->error);
  g_task_return_pointer (task, r, (GDestroyNotify) reload_read_free);
}

static void reload_read_start (BfManager *self);

static gboolean
reload_read_cb (gpointer data)
{
  BfManager *self = data;

  self->reload_source_id = 0;
  reload_read_start (self);
  return G_SOURCE_REMOVE;
}

static void
reload_read_later (BfManager *self,
                   guint      delay_ms)
{
  self->reload_source_id = bf_timeout_add (delay_ms, reload_read_cb, self, "[buildfleetd] reload read");
}

static void
reload_cycle_start (BfManager *self)
{
  self->reload_reads = 0;
  self->reload_confirming = FALSE;
  g_clear_pointer (&self->reload_digest, g_free);
  g_clear_pointer (&self->reload_error, g_free);
  self->reload_started_usec = g_get_monotonic_time ();
  reload_read_start (self);
}

/* Answers every call the reads in progress were for, then starts reading
 * for those that came in meanwhile. */
static void
reload_cycle_end (BfManager    *self,
                  const GError *error)
{
  g_autoptr(GPtrArray) tasks = g_steal_pointer (&self->reload_tasks);

  g_clear_pointer (&self->reload_digest, g_free);
  g_clear_pointer (&self->reload_error, g_free);
  if (self->reload_queued && !g_cancellable_is_cancelled (self->reload_cancellable))
    {
      self->reload_tasks = g_steal_pointer (&self->reload_queued);
      reload_cycle_start (self);
    }
  for (guint i = 0; tasks && i < tasks->len; i++)
    {
      if (error)
        g_task_return_error (g_ptr_array_index (tasks, i), g_error_copy (error));
      else
        g_task_return_boolean (g_ptr_array_index (tasks, i), TRUE);
    }
}

static void
reload_read_done (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  BfManager *self = BF_MANAGER (object);
  g_autoptr(ReloadRead) r = g_task_propagate_pointer (G_TASK (result), NULL);
  g_autoptr(GError) error = NULL;
  gboolean same;

  if (g_cancellable_is_cancelled (self->reload_cancellable))
    return;   /* dispose answered the calls */

  same = self->reload_digest != NULL && g_str_equal (self->reload_digest, r->digest) &&
         g_strcmp0 (self->reload_error, r->error ? r->error->message : NULL) == 0;
  g_free (self->reload_digest);
  self->reload_digest = g_strdup (r->digest);
  g_free (self->reload_error);
  self->reload_error = r->error ? g_strdup (r->error->message) : NULL;

  if (!same)
    self->reload_same_since_usec = self->reload_read_usec;
  if (!same || self->reload_read_usec - self->reload_same_since_usec < RELOAD_SETTLE_USEC)
    {
      self->reload_confirming = FALSE;
      if (g_get_monotonic_time () - self->reload_started_usec >= RELOAD_MAX_USEC)
        {
          g_set_error (&error, BF_ERROR, BF_ERROR_BUSY,
                       "The configuration was not reloaded: %s kept changing (%u reads in %.1f seconds); "
                       "reload once it is written (best: write a new file and rename it over the old one)",
                       self->config->path, self->reload_reads,
                       (g_get_monotonic_time () - self->reload_started_usec) / 1e6);
          reload_cycle_end (self, error);
          return;
        }
      reload_read_later (self, RELOAD_RETRY_MS);
      return;
    }

  if (r->error)
    {
      g_set_error (&error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "The configuration was not reloaded: %s", r->error->message);
      reload_cycle_end (self, error);
      return;
    }

  if (!self->reload_confirming)
    {
      guint removed = count_removed (self, r->config);
      guint total = g_hash_table_size (self->workers);

      /* A file cut short (or just truncated) by a writer that paused
       * looks like this too. */
      if (removed > 0 && removed * 2 > total)
        {
          g_warning ("Reload: %s would remove %u of %u workers; reading it again in %.1f s to make sure it is complete",
                     self->config->path, removed, total, RELOAD_CONFIRM_MS / 1000.0);
          self->reload_confirming = TRUE;
          reload_read_later (self, RELOAD_CONFIRM_MS);
          return;
        }
    }

  apply_config (self, r->config);
  reload_cycle_end (self, NULL);
}

static void
reload_read_start (BfManager *self)
{
  g_autoptr(GTask) task = g_task_new (self, self->reload_cancellable, reload_read_done, NULL);

  self->reload_reads++;
  self->reload_read_usec = g_get_monotonic_time ();
  g_task_set_source_tag (task, reload_read_start);
  g_task_set_name (task, "[buildfleetd] reload read");
  g_task_set_task_data (task, g_strdup (self->config->path), g_free);
  g_task_set_return_on_cancel (task, FALSE);
  g_task_run_in_thread (task, reload_read_thread);
}

/**
 * bf_manager_reload_async:
 *
 * Reads the configuration again, once its files stopped changing, and
 * applies the difference.  On error nothing changes and the error names
 * the file and the reason.  Calls made while a reload reads are answered
 * by a read that starts after them.
 */
void
bf_manager_reload_async (BfManager           *self,
                         GAsyncReadyCallback  callback,
                         gpointer             user_data)
{
  GTask *task = g_task_new (self, NULL, callback, user_data);

  g_task_set_source_tag (task, bf_manager_reload_async);
  if (self->reload_tasks != NULL)
    {
      if (self->reload_queued == NULL)
        self->reload_queued = g_ptr_array_new_with_free_func (g_object_unref);
      g_ptr_array_add (self->reload_queued, task);
      return;
    }
  self->reload_tasks = g_ptr_array_new_with_free_func (g_object_unref);
  g_ptr_array_add (self->reload_tasks, task);
  reload_cycle_start (self);
}

gboolean
bf_manager_reload_finish (BfManager     *self,
                          GAsyncResult  *result,
                          GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Answers pending reloads when the manager goes away. */
static void
reload_abort (BfManager *self)
{
  g_autoptr(GError) error = g_error_new (BF_ERROR, BF_ERROR_FAILED,
                                         "The configuration was not reloaded: the daemon is stopping");

  g_cancellable_cancel (self->reload_cancellable);
  g_clear_handle_id (&self->reload_source_id, g_source_remove);
  if (self->reload_queued)
    {
      if (self->reload_tasks == NULL)
        self->reload_tasks = g_ptr_array_new_with_free_func (g_object_unref);
      g_ptr_array_extend_and_steal (self->reload_tasks, g_steal_pointer (&self->reload_queued));
    }
  reload_cycle_end (self, error);
}

/* Connections --------------------------------------------------------------- */

static gboolean
listener_auth_cb (const char  *name,
                  const char  *password,
                  const char **why,
                  gpointer     user_data)
{
  BfManager *self = user_data;
  BfWorker *worker = g_hash_table_lookup (self->workers, name);

  if (worker == NULL)
    {
      *why = "no such worker is configured";
      return FALSE;
    }
  if (!bf_worker_check_password (worker, password))
    {
      *why = "wrong password";
      return FALSE;
    }
  return TRUE;
}

/* PB logins: the worker's md5 response to our challenge, checked against
 * its password (constant time); an unknown name costs the same work. */
static gboolean
listener_pb_auth_cb (const char    *name,
                     const guint8  *challenge,
                     gsize          challenge_len,
                     const guint8  *response,
                     gsize          response_len,
                     const char   **why,
                     gpointer       user_data)
{
  BfManager *self = user_data;
  BfWorker *worker = g_hash_table_lookup (self->workers, name);

  if (worker == NULL)
    {
      /* The same work as a known name, so timing does not tell names. */
      (void) bf_pb_auth_check (challenge, challenge_len, "", 0, response, response_len);
      *why = "no such worker is configured";
      return FALSE;
    }
  if (!bf_worker_check_pb_response (worker, challenge, challenge_len, response, response_len))
    {
      *why = "wrong password";
      return FALSE;
    }
  return TRUE;
}

static void
listener_connection_cb (BfListener   *listener,
                        BfWorkerLink *connection,
                        BfManager    *self)
{
  BfWorker *worker = g_hash_table_lookup (self->workers, bf_worker_link_get_worker_name (connection));

  if (worker == NULL)
    {
      bf_worker_link_close (connection, "no such worker");
      return;
    }
  bf_worker_offer_connection (worker, connection);
}

/* Where a local instance connects: a wildcard endpoint becomes loopback. */
static char *
local_endpoint (const char *endpoint)
{
  if (g_str_has_prefix (endpoint, "0.0.0.0:"))
    return g_strconcat ("127.0.0.1", endpoint + strlen ("0.0.0.0"), NULL);
  if (g_str_has_prefix (endpoint, "[::]:"))
    return g_strconcat ("[::1]", endpoint + strlen ("[::]"), NULL);
  return g_strdup (endpoint);
}

/* Instances recorded by an earlier daemon that did not stop them: adopt
 * them if they connect, stop them otherwise, before any new start. */
static void
reconcile_instances (BfManager *self)
{
  GHashTable *instances = bf_state_get_instances (self->state);
  g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, instances);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      BfInstanceRecord *record = value;
      BfWorker *worker = g_hash_table_lookup (self->workers, key);
      BfLatent *latent = worker ? bf_worker_get_latent (worker) : NULL;

      if (latent == NULL ||
          !g_str_equal (record->driver, bf_latent_kind_to_string (bf_worker_get_config (worker)->latent)))
        {
          g_warning ("An instance of worker %s (%s driver, %s) was left running by an earlier daemon, "
                     "and the worker is no longer configured with that driver: %s",
                     (char *) key, record->driver, record->id,
                     g_str_equal (record->driver, bf_latent_kind_to_string (BF_LATENT_DOCKER))
                       ? "the engine scan stops it if a Latent=docker worker still uses its engine, "
                         "else stop it by hand"
                       : "stop it by hand");
          g_ptr_array_add (gone, g_strdup (key));
          continue;
        }
      bf_latent_reconcile (latent, record->id, record->password);
    }
  for (guint i = 0; i < gone->len; i++)
    bf_state_remove_instance (self->state, g_ptr_array_index (gone, i));
}

/* Engine-level reconciliation --------------------------------------------------
 *
 * The state file knows the instances this daemon started and did not stop
 * (reconcile_instances() above).  Engines that can list their instances by
 * label (BfLatentDriverClass.engine_key) are also asked, at start-up and
 * every ENGINE_SCAN_INTERVAL_S, for every instance labelled with this
 * daemon's id: one a worker owns (it runs, adopts, starts or stops it) is
 * left alone; any other (a worker since removed, a record lost with a
 * killed daemon, a start whose answer never came) is stopped and removed.
 * An instance without this daemon's id is never listed, so never touched.
 */

static void schedule_engine_scan (BfManager *self);

typedef struct {
  BfManager *manager;          /* strong */
  BfLatentDriver *driver;      /* strong */
  char *key;
  char *id;                    /* stop_instance: which */
} EngineCall;

static void
engine_call_free (EngineCall *c)
{
  g_clear_object (&c->manager);
  g_clear_object (&c->driver);
  g_free (c->key);
  g_free (c->id);
  g_free (c);
}

static EngineCall *
engine_call_new (BfManager      *self,
                 BfLatentDriver *driver,
                 const char     *key,
                 const char     *id)
{
  EngineCall *c = g_new0 (EngineCall, 1);

  c->manager = g_object_ref (self);
  c->driver = g_object_ref (driver);
  c->key = g_strdup (key);
  c->id = g_strdup (id);
  return c;
}

static BfLatent *
latent_named (BfManager  *self,
              const char *name)
{
  BfWorker *worker = g_hash_table_lookup (self->workers, name);

  if (worker == NULL)
    worker = g_hash_table_lookup (self->retiring, name);
  return worker ? bf_worker_get_latent (worker) : NULL;
}

static void
orphan_stopped_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  EngineCall *c = user_data;
  g_autoptr(GError) error = NULL;

  if (!bf_latent_driver_stop_instance_finish (BF_LATENT_DRIVER (source), result, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_warning ("Cannot stop the orphaned instance %s (%s): %s; trying again at the next scan",
               c->id, c->key, error->message);
  if (c->manager->orphans_stopping)
    g_hash_table_remove (c->manager->orphans_stopping, c->id);
  engine_call_free (c);
}

static void
engine_listed_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  EngineCall *c = user_data;
  BfManager *self = c->manager;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) instances = bf_latent_driver_list_instances_finish (BF_LATENT_DRIVER (source),
                                                                           result, &error);

  if (instances == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_warning ("Cannot list the instances of %s: %s", c->key, error->message);
    }
  else if (!g_cancellable_is_cancelled (self->engine_cancellable))
    {
      for (guint i = 0; i < instances->len; i++)
        {
          BfLatentInstance *instance = g_ptr_array_index (instances, i);
          BfLatent *latent = latent_named (self, instance->worker);

          if (latent != NULL && bf_latent_owns_instance (latent, instance->id))
            continue;
          if (g_hash_table_contains (self->orphans_stopping, instance->id))
            continue;
          g_message ("Stopping instance %s of %s: it carries this daemon's id and worker name %s, "
                     "but %s", instance->id, c->key, instance->worker,
                     latent ? "the worker does not know it" : "no such latent worker is configured");
          g_hash_table_add (self->orphans_stopping, g_strdup (instance->id));
          bf_latent_driver_stop_instance_async (c->driver, instance->id, self->engine_cancellable,
                                                orphan_stopped_cb,
                                                engine_call_new (self, c->driver, c->key, instance->id));
        }
    }
  if (--self->engine_scans == 0)
    schedule_engine_scan (self);
  engine_call_free (c);
}

/* One listing per engine, asked of the first driver that names it. */
static void
scan_engines (BfManager *self)
{
  g_autoptr(GHashTable) asked = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char *daemon_id = bf_state_get_daemon_id (self->state);
  GHashTable *tables[] = { self->workers, self->retiring };

  if (self->engine_scans > 0 || daemon_id == NULL)
    return;
  for (guint t = 0; t < G_N_ELEMENTS (tables); t++)
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, tables[t]);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          BfLatent *latent = bf_worker_get_latent (value);
          BfLatentDriver *driver = latent ? bf_latent_get_driver (latent) : NULL;
          g_autofree char *key = driver ? bf_latent_driver_get_engine_key (driver) : NULL;

          if (key == NULL || g_hash_table_contains (asked, key))
            continue;
          self->engine_scans++;
          bf_latent_driver_list_instances_async (driver, daemon_id, self->engine_cancellable,
                                                 engine_listed_cb,
                                                 engine_call_new (self, driver, key, NULL));
          g_hash_table_add (asked, g_steal_pointer (&key));
        }
    }
  if (self->engine_scans == 0)
    schedule_engine_scan (self);
}

static gboolean
engine_scan_cb (gpointer data)
{
  BfManager *self = data;

  self->engine_scan_source_id = 0;
  scan_engines (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_engine_scan (BfManager *self)
{
  g_clear_handle_id (&self->engine_scan_source_id, g_source_remove);
  if (g_cancellable_is_cancelled (self->engine_cancellable))
    return;
  self->engine_scan_source_id = bf_timeout_add_seconds (ENGINE_SCAN_INTERVAL_S, engine_scan_cb, self,
                                                        "[buildfleetd] engine instance scan");
}

/* Shutdown: no more scans, and no orphan stop goes on. */
static void
stop_engine_scans (BfManager *self)
{
  g_clear_handle_id (&self->engine_scan_source_id, g_source_remove);
  if (self->engine_cancellable)
    g_cancellable_cancel (self->engine_cancellable);
}

gboolean
bf_manager_start_listening (BfManager  *self,
                            GError    **error)
{
  g_auto(GStrv) endpoints = NULL;
  g_auto(GStrv) pb_endpoints = NULL;
  GHashTableIter iter;
  gpointer value;

  if (!bf_listener_start (self->listener, self->boot_config, error))
    return FALSE;
  endpoints = bf_listener_get_endpoints (self->listener);
  bf_dbus_manager_set_listen (iface (self), (const char * const *) endpoints);
  pb_endpoints = bf_listener_get_pb_endpoints (self->listener);
  bf_dbus_manager_set_listen_pb (iface (self), (const char * const *) pb_endpoints);
  for (guint i = 0; pb_endpoints[i]; i++)
    g_message ("Listening for PB workers on %s%s", pb_endpoints[i], self->boot_config->tls_certificate ? " (TLS)" : "");
  for (guint i = 0; endpoints[i]; i++)
    g_message ("Listening for workers on %s%s", endpoints[i],
               self->boot_config->tls_certificate ? " (TLS)" : "");
  g_free (self->master);
  self->master = endpoints[0] ? local_endpoint (endpoints[0]) : NULL;
  g_free (self->pb_master);
  self->pb_master = pb_endpoints[0] ? local_endpoint (pb_endpoints[0]) : NULL;

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (bf_worker_get_latent (value))
      {
        bf_latent_set_master (bf_worker_get_latent (value), self->master, self->boot_config->tls_certificate);
        bf_latent_set_pb_master (bf_worker_get_latent (value), self->pb_master);
      }
  reconcile_instances (self);
  scan_engines (self);
  for_each_pool (self, bf_pool_start);
  schedule_dispatch (self);
  return TRUE;
}

/* D-Bus methods --------------------------------------------------------------- */

static void
reload_done (GObject      *object,
             GAsyncResult *result,
             gpointer      user_data)
{
  BfManager *self = BF_MANAGER (object);
  GDBusMethodInvocation *invocation = user_data;
  g_autoptr(GError) error = NULL;

  if (!bf_manager_reload_finish (self, result, &error))
    {
      g_warning ("%s", error->message);
      g_dbus_method_invocation_return_gerror (invocation, error);
      return;
    }
  bf_dbus_manager_complete_reload (iface (self), invocation);
}

static void
reload_authorized (GObject               *object,
                   GDBusMethodInvocation *invocation)
{
  bf_manager_reload_async (BF_MANAGER (object), reload_done, invocation);
}

static gboolean
handle_reload (BfDBusManager         *object,
               GDBusMethodInvocation *invocation)
{
  bf_authority_check (BF_MANAGER (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_RELOAD, reload_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_get_worker (BfDBusManager         *object,
                   GDBusMethodInvocation *invocation,
                   const char            *name)
{
  BfManager *self = BF_MANAGER (object);
  g_autofree char *path = NULL;

  if (!g_hash_table_contains (self->workers, name))
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_NOT_FOUND,
                                             "No worker named “%s” is configured", name);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  path = worker_path (name);
  bf_dbus_manager_complete_get_worker (object, invocation, path);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

#define GET_WORKERS_MAX_PROPERTIES 64

/* Listings -------------------------------------------------------------------
 *
 * The bus drops a connection that sends a message larger than its
 * max_message_size (32 MiB on the system bus), and with it the daemon's
 * name: a reply that grows with the fleet must never get there.  Every
 * listing (GetManagedObjects, GetWorkers, GetWorkerPage) measures its reply
 * entry by entry as it builds it (bf_dbus_size_end(), exact, and stopping at
 * the bound) and fails with ReplyTooLarge, or ends the page, before it
 * would exceed MaxBusMessageSize less BUS_HEADER_ROOM. */

static gsize
reply_bound (BfManager *self)
{
  return self->config->max_bus_message_size - BUS_HEADER_ROOM;
}

/* A reply body a{oa{sa{sv}}}...: the array's length, then its first dict
 * entry at the next multiple of 8. */
#define FIRST_ENTRY_OFFSET 8

static void
set_too_large (GError    **error,
               BfManager  *self,
               const char *call,
               gsize       measured,
               guint       n_measured,
               guint       n_total,
               const char *what,
               const char *instead)
{
  /* The walk stops at the bound: what is left is extrapolated. */
  double estimate = n_measured > 0 ? (double) measured * n_total / n_measured : (double) reply_bound (self);

  g_set_error (error, BF_ERROR, BF_ERROR_REPLY_TOO_LARGE,
               "%s would return about %.1f MB for %u %s, more than one message on the bus may hold "
               "(MaxBusMessageSize=%" G_GSIZE_FORMAT " bytes); %s",
               call, MAX (estimate, (double) reply_bound (self)) / 1e6, n_total, what,
               self->config->max_bus_message_size, instead);
}

static gboolean
parse_wanted (const char * const *properties,
              GHashTable         *wanted,
              GError            **error)
{
  GDBusInterfaceInfo *worker_info = bf_dbus_worker_interface_info ();
  GDBusInterfaceInfo *latent_info = bf_dbus_latent_worker_interface_info ();

  if (g_strv_length ((char **) properties) > GET_WORKERS_MAX_PROPERTIES)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "At most %d property names", GET_WORKERS_MAX_PROPERTIES);
      return FALSE;
    }
  for (guint i = 0; properties[i]; i++)
    {
      if (g_dbus_interface_info_lookup_property (worker_info, properties[i]) == NULL &&
          g_dbus_interface_info_lookup_property (latent_info, properties[i]) == NULL)
        {
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                       "“%s” is not a property of %s or %s", properties[i],
                       worker_info->name, latent_info->name);
          return FALSE;
        }
      g_hash_table_add (wanted, (gpointer) properties[i]);
    }
  return TRUE;
}

static GVariant *
filter_properties (GVariant   *all,
                   GHashTable *wanted)
{
  GVariantBuilder b;
  gsize n = g_variant_n_children (all);

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (all, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);

      if (g_hash_table_contains (wanted, g_variant_get_string (key, NULL)))
        g_variant_builder_add_value (&b, entry);
    }
  return g_variant_builder_end (&b);
}

/* One {oa{sa{sv}}} entry: the object's interfaces and their properties,
 * with @wanted only the Worker and LatentWorker interfaces and only the
 * properties in @wanted (all of them when it is empty).  Built from the
 * same (cached) property dictionaries as GetManagedObjects, so the two
 * always agree. */
static GVariant *
object_entry (const char              *path,
              GDBusInterfaceSkeleton **ifaces,
              guint                    n_ifaces,
              GHashTable              *wanted)
{
  GDBusInterfaceInfo *worker_info = bf_dbus_worker_interface_info ();
  GDBusInterfaceInfo *latent_info = bf_dbus_latent_worker_interface_info ();
  GVariantBuilder ib;

  g_variant_builder_init (&ib, G_VARIANT_TYPE ("a{sa{sv}}"));
  for (guint i = 0; i < n_ifaces; i++)
    {
      GDBusInterfaceInfo *info = g_dbus_interface_skeleton_get_info (ifaces[i]);
      g_autoptr(GVariant) all = NULL;

      if (wanted != NULL && info != worker_info && info != latent_info)
        continue;
      all = g_dbus_interface_skeleton_get_properties (ifaces[i]);
      g_variant_builder_add (&ib, "{s@a{sv}}", info->name,
                             wanted != NULL && g_hash_table_size (wanted) > 0 ?
                             filter_properties (all, wanted) : all);
    }
  return g_variant_ref_sink (g_variant_new ("{o@a{sa{sv}}}", path, g_variant_builder_end (&ib)));
}

/* object_entry() of a worker (exported on the bus by the manager itself,
 * see export_worker_on_bus()). */
static GVariant *
worker_entry (BfWorker   *worker,
              GHashTable *wanted)
{
  GDBusInterfaceSkeleton *ifaces[2];
  guint n = worker_interfaces (worker, ifaces);
  const char *path = g_dbus_interface_skeleton_get_object_path (ifaces[0]);
  g_autofree char *own = path ? NULL : worker_path (bf_worker_get_name (worker));

  return object_entry (path ? path : own, ifaces, n, wanted);
}

/* object_entry() of an object of the GDBusObjectManagerServer. */
static GVariant *
server_object_entry (GDBusObject *object,
                     GHashTable  *wanted)
{
  g_autolist(GDBusInterface) interfaces = g_dbus_object_get_interfaces (object);
  g_autoptr(GPtrArray) ifaces = g_ptr_array_new ();

  for (GList *il = interfaces; il != NULL; il = il->next)
    g_ptr_array_add (ifaces, il->data);
  return object_entry (g_dbus_object_get_object_path (object), (GDBusInterfaceSkeleton **) ifaces->pdata,
                       ifaces->len, wanted);
}

static void
add_values (GPtrArray  *items,
            GHashTable *table)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (items, value);
}

/* A listing of the workers, and with @wanted == NULL of the object
 * manager's other objects too (pools, builds, commands), or an error once
 * it would not fit in a message. */
static GVariant *
list_objects (BfManager   *self,
              GHashTable  *wanted,
              const char  *call,
              const char  *instead,
              GError     **error)
{
  g_autoptr(GHashTable) memo = bf_dbus_size_new_memo ();
  g_autolist(GDBusObject) objects = NULL;
  g_autoptr(GPtrArray) items = g_ptr_array_new ();   /* GDBusObject or BfWorker */
  gsize bound = reply_bound (self);
  gsize offset = FIRST_ENTRY_OFFSET;
  guint n = 0;
  GVariantBuilder b;

  if (wanted == NULL)
    {
      objects = g_dbus_object_manager_get_objects (G_DBUS_OBJECT_MANAGER (self->object_manager));
      for (GList *l = objects; l != NULL; l = l->next)
        g_ptr_array_add (items, l->data);
    }
  add_values (items, self->workers);
  add_values (items, self->retiring);

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
  for (guint i = 0; i < items->len; i++)
    {
      gpointer item = g_ptr_array_index (items, i);
      g_autoptr(GVariant) entry = NULL;
      gsize end;

      entry = BF_IS_WORKER (item) ? worker_entry (item, wanted) : server_object_entry (item, wanted);
      end = bf_dbus_size_end_memo (entry, offset, bound, memo);
      if (end == BF_DBUS_SIZE_OVER)
        {
          g_variant_builder_clear (&b);
          set_too_large (error, self, call, offset, n, items->len, wanted ? "workers" : "objects", instead);
          return NULL;
        }
      offset = end;
      n++;
      g_variant_builder_add_value (&b, entry);
    }
  return g_variant_builder_end (&b);
}

static gboolean
handle_get_workers (BfDBusManager         *object,
                    GDBusMethodInvocation *invocation,
                    const char * const    *properties)
{
  BfManager *self = BF_MANAGER (object);
  g_autoptr(GHashTable) wanted = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GError) error = NULL;
  GVariant *workers;

  if (!parse_wanted (properties, wanted, &error))
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  workers = list_objects (self, wanted, "GetWorkers",
                          "list the workers in pages with org.buildfleet.Fleet1.Manager.GetWorkerPage, "
                          "or ask for fewer properties", &error);
  if (workers == NULL)
    g_dbus_method_invocation_return_gerror (invocation, error);
  else
    bf_dbus_manager_complete_get_workers (object, invocation, workers);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gint
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static void
add_names_after (GHashTable *table,
                 const char *after,
                 GPtrArray  *names)
{
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (strcmp (key, after) > 0)
      g_ptr_array_add (names, key);
}

static gboolean
handle_get_worker_page (BfDBusManager         *object,
                        GDBusMethodInvocation *invocation,
                        const char * const    *properties,
                        const char            *after,
                        guint                  limit)
{
  BfManager *self = BF_MANAGER (object);
  g_autoptr(GHashTable) wanted = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  g_autoptr(GHashTable) memo = bf_dbus_size_new_memo ();
  g_autoptr(GError) error = NULL;
  gsize bound = reply_bound (self);
  gsize offset = FIRST_ENTRY_OFFSET;
  gint64 start_usec = g_get_monotonic_time ();
  const char *next = "";
  GVariantBuilder b;
  guint n = 0;

  if (!parse_wanted (properties, wanted, &error))
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }

  /* Workers still exported while their last builds end are listed too. */
  add_names_after (self->workers, after, names);
  add_names_after (self->retiring, after, names);
  g_ptr_array_sort (names, compare_names);

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      BfWorker *worker;
      g_autoptr(GVariant) entry = NULL;
      gsize end;

      if (limit > 0 && n == limit)
        break;
      worker = g_hash_table_lookup (self->workers, name);
      if (worker == NULL)
        worker = g_hash_table_lookup (self->retiring, name);
      if (worker == NULL)
        continue;
      entry = worker_entry (worker, wanted);
      end = bf_dbus_size_end_memo (entry, offset, bound, memo);
      /* ...and room for @next, this worker's name, after the array. */
      if (end != BF_DBUS_SIZE_OVER && end + 8 + strlen (name) + 1 > bound)
        end = BF_DBUS_SIZE_OVER;
      if (end == BF_DBUS_SIZE_OVER)
        {
          if (n > 0)
            break;
          g_variant_builder_clear (&b);
          g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_REPLY_TOO_LARGE,
                                                 "Worker %s alone would take more than one message on the bus "
                                                 "may hold (MaxBusMessageSize=%" G_GSIZE_FORMAT " bytes) with "
                                                 "these properties; ask for fewer properties, or pass “%s” "
                                                 "as the cursor to skip it",
                                                 name, self->config->max_bus_message_size, name);
          return G_DBUS_METHOD_INVOCATION_HANDLED;
        }
      offset = end;
      n++;
      next = name;
      g_variant_builder_add_value (&b, entry);
    }
  /* The page reached the end of the fleet. */
  if (n == 0 || g_str_equal (next, g_ptr_array_index (names, names->len - 1)))
    next = "";

  g_debug ("GetWorkerPage: %u workers, %" G_GSIZE_FORMAT " bytes, built in %.1f ms", n, offset,
           (g_get_monotonic_time () - start_usec) / 1000.0);
  bf_dbus_manager_complete_get_worker_page (object, invocation, g_variant_builder_end (&b), next);
  g_debug ("GetWorkerPage: sent after %.1f ms", (g_get_monotonic_time () - start_usec) / 1000.0);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* GetManagedObjects is answered by GDBusObjectManagerServer, which knows
 * nothing of the bus's limit.  This filter (in GDBus's worker thread)
 * takes the call away from it before dispatch and hands it to
 * serve_managed_objects() in the main context, which builds the same reply
 * from the same objects, measured. */
typedef struct {
  GWeakRef manager;             /* the filter may outlive it a moment */
  GMainContext *context;
} ListingFilter;

static void
listing_filter_free (gpointer data)
{
  ListingFilter *lf = data;

  g_weak_ref_clear (&lf->manager);
  g_main_context_unref (lf->context);
  g_free (lf);
}

typedef struct {
  BfManager *manager;
  GDBusMessage *call;
} ListingCall;

static void
listing_call_free (gpointer data)
{
  ListingCall *lc = data;

  g_object_unref (lc->manager);
  g_object_unref (lc->call);
  g_free (lc);
}

static gboolean
serve_managed_objects (gpointer data)
{
  ListingCall *lc = data;
  BfManager *self = lc->manager;
  g_autoptr(GDBusMessage) reply = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) send_error = NULL;
  GVariant *listing;

  gint64 start_usec = g_get_monotonic_time ();

  if (self->bus == NULL || self->object_manager == NULL)
    return G_SOURCE_REMOVE;
  listing = list_objects (self, NULL, "GetManagedObjects",
                          "list the workers in pages with org.buildfleet.Fleet1.Manager.GetWorkerPage", &error);
  if (g_dbus_message_get_flags (lc->call) & G_DBUS_MESSAGE_FLAGS_NO_REPLY_EXPECTED)
    {
      if (listing != NULL)
        g_variant_unref (g_variant_ref_sink (listing));
      return G_SOURCE_REMOVE;
    }
  if (listing != NULL)
    {
      reply = g_dbus_message_new_method_reply (lc->call);
      g_dbus_message_set_body (reply, g_variant_new_tuple (&listing, 1));
    }
  else
    {
      g_autofree char *name = g_dbus_error_encode_gerror (error);

      g_debug ("Refused GetManagedObjects from %s: %s", g_dbus_message_get_sender (lc->call), error->message);
      reply = g_dbus_message_new_method_error_literal (lc->call, name, error->message);
    }
  if (!g_dbus_connection_send_message (self->bus, reply, G_DBUS_SEND_MESSAGE_FLAGS_NONE, NULL, &send_error))
    g_debug ("Cannot send the reply to GetManagedObjects: %s", send_error->message);
  g_debug ("GetManagedObjects answered in %.1f ms", (g_get_monotonic_time () - start_usec) / 1000.0);
  return G_SOURCE_REMOVE;
}

static GDBusMessage *
listing_filter_cb (GDBusConnection *connection,
                   GDBusMessage    *message,
                   gboolean         incoming,
                   gpointer         user_data)
{
  ListingFilter *lf = user_data;
  const char *interface;
  ListingCall *lc;
  BfManager *self;

  if (!incoming ||
      g_dbus_message_get_message_type (message) != G_DBUS_MESSAGE_TYPE_METHOD_CALL ||
      g_strcmp0 (g_dbus_message_get_member (message), "GetManagedObjects") != 0 ||
      g_strcmp0 (g_dbus_message_get_path (message), FLEET_PATH) != 0)
    return message;
  interface = g_dbus_message_get_interface (message);
  if (interface != NULL && !g_str_equal (interface, "org.freedesktop.DBus.ObjectManager"))
    return message;
  /* Wrong arguments: GDBus's own error. */
  if (g_dbus_message_get_body (message) != NULL &&
      g_variant_n_children (g_dbus_message_get_body (message)) > 0)
    return message;

  self = g_weak_ref_get (&lf->manager);
  if (self == NULL)
    return message;
  lc = g_new0 (ListingCall, 1);
  lc->manager = self;
  lc->call = message;           /* the filter owns it */
  g_main_context_invoke_full (lf->context, G_PRIORITY_DEFAULT, serve_managed_objects, lc, listing_call_free);
  return NULL;
}

/* Builds ------------------------------------------------------------------------ */

static void
build_prepared_cb (BfBuild    *build,
                   gboolean    ok,
                   const char *failure,
                   BfManager  *self)
{
  BfWorker *worker = bf_build_get_worker (build);

  if (ok)
    return;
  /* The worker could not be prepared (it decides what that costs it);
   * the build goes back to the queue in its place. */
  bf_worker_build_ended (worker, bf_build_get_builder (build), "unprepared", failure);
  bf_scheduler_requeue (self->scheduler, build);
}

typedef struct {
  BfManager *manager;
  BfBuild *build;
} Linger;

static gboolean
linger_cb (gpointer data)
{
  Linger *linger = data;
  BfManager *self = linger->manager;
  BfBuild *build = linger->build;

  /* Unexport while the table still holds the build, so that disposing it
   * (which unexports its commands) happens outside the object manager. */
  g_dbus_object_manager_server_unexport (self->object_manager, bf_build_get_path (build));
  g_hash_table_remove (self->builds, build);
  return G_SOURCE_REMOVE;
}

static void
build_ended_cb (BfBuild    *build,
                const char *result,
                BfManager  *self)
{
  BfWorker *worker = bf_build_get_worker (build);
  Linger *linger;
  guint id;

  bf_scheduler_remove (self->scheduler, build);
  if (worker != NULL)
    bf_worker_build_ended (worker, bf_build_get_builder (build), result, NULL);

  /* Finished builds stay readable for FinishedBuildLifetime, then go. */
  linger = g_new0 (Linger, 1);
  linger->manager = self;
  linger->build = build;
  id = g_timeout_add_full (G_PRIORITY_DEFAULT, bf_usec_to_ms (self->config->finished_build_lifetime_usec),
                           linger_cb, linger, g_free);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, id), "[buildfleetd] finished build");
  /* The table already owns the build: the extra reference passed here is
   * dropped by the insert, which only replaces the value. */
  g_hash_table_insert (self->builds, g_object_ref (build), GUINT_TO_POINTER (id));
  schedule_dispatch (self);
}

static gboolean
builder_is_served (BfManager  *self,
                   const char *builder)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (bf_worker_config_serves (bf_worker_get_config (value), builder))
      return TRUE;
  return FALSE;
}

/* 30 days: longer waits would outgrow the main loop's millisecond timers. */
#define MAX_BUILD_TIMEOUT_USEC (30.0 * 24 * 3600 * G_USEC_PER_SEC)

typedef struct {
  const char *only_worker;
  gboolean detached;
  guint64 timeout_usec;
  const char **labels;      /* container owned, strings borrowed; NULL-terminated */
} BuildOptions;

static void
build_options_clear (BuildOptions *o)
{
  g_clear_pointer (&o->labels, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (BuildOptions, build_options_clear)

/* Whether some configured worker of @builder (or @only) could ever have
 * every one of @labels. */
static gboolean
labels_satisfiable (BfManager          *self,
                    const char         *builder,
                    const char         *only,
                    const char * const *labels)
{
  GHashTableIter iter;
  gpointer value;

  if (only != NULL)
    return bf_worker_could_have_labels (g_hash_table_lookup (self->workers, only), labels);
  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (bf_worker_config_serves (bf_worker_get_config (value), builder) &&
        bf_worker_could_have_labels (value, labels))
      return TRUE;
  return FALSE;
}

/* Option "labels": every one a valid label, not too many. */
static gboolean
parse_labels_option (GVariant      *v,
                     BuildOptions  *out,
                     GError       **error)
{
  g_clear_pointer (&out->labels, g_free);
  out->labels = g_variant_get_strv (v, NULL);
  if (g_strv_length ((char **) out->labels) > BF_MAX_LABELS)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "Option “labels”: more than %d labels", BF_MAX_LABELS);
      return FALSE;
    }
  for (guint i = 0; out->labels[i]; i++)
    if (!bf_label_is_valid (out->labels[i]))
      {
        g_autofree char *shown = bf_utf8_truncate (out->labels[i], -1, 80);
        g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                     "Option “labels”: “%s” is not a label (1 to %d bytes without spaces, “;” or “,”)",
                     shown, BF_MAX_LABEL_BYTES);
        return FALSE;
      }
  return TRUE;
}

/* One entry of RequestBuild's options; @v is borrowed by @out. */
static gboolean
parse_build_option (const char    *key,
                    GVariant      *v,
                    BuildOptions  *out,
                    GError       **error)
{
  const char *want = NULL;

  if (g_str_equal (key, "worker"))
    {
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
        out->only_worker = g_variant_get_string (v, NULL);
      else
        want = "s";
    }
  else if (g_str_equal (key, "detached"))
    {
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN))
        out->detached = g_variant_get_boolean (v);
      else
        want = "b";
    }
  else if (g_str_equal (key, "labels"))
    {
      if (!g_variant_is_of_type (v, G_VARIANT_TYPE_STRING_ARRAY))
        want = "as";
      else if (!parse_labels_option (v, out, error))
        return FALSE;
    }
  else if (g_str_equal (key, "timeout-usec"))
    {
      double usec;

      if (!bf_check_number (v, "Option “timeout-usec”", "microseconds",
                            MAX_BUILD_TIMEOUT_USEC, &usec, error))
        return FALSE;
      out->timeout_usec = (guint64) usec;
      if ((double) out->timeout_usec < usec)
        out->timeout_usec++;          /* a fraction rounds up */
    }
  else
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "Unknown option “%s” (known: worker, detached, timeout-usec, labels)", key);
      return FALSE;
    }
  if (want != NULL)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "Option “%s” must be of type %s, not %s", key, want, g_variant_get_type_string (v));
      return FALSE;
    }
  return TRUE;
}

/* Whether some configured worker can ever take the build @out describes. */
static gboolean
check_build_target (BfManager     *self,
                    const char    *builder,
                    BuildOptions  *out,
                    GError       **error)
{
  if (out->only_worker != NULL)
    {
      BfWorker *w = g_hash_table_lookup (self->workers, out->only_worker);
      if (w == NULL)
        {
          g_set_error (error, BF_ERROR, BF_ERROR_NOT_FOUND,
                       "No worker named “%s” is configured", out->only_worker);
          return FALSE;
        }
      if (!bf_worker_config_serves (bf_worker_get_config (w), builder))
        {
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                       "Worker %s does not serve builder “%s”", out->only_worker, builder);
          return FALSE;
        }
    }
  else if (!builder_is_served (self, builder))
    {
      g_set_error (error, BF_ERROR, BF_ERROR_NOT_FOUND,
                   "No configured worker serves builder “%s”", builder);
      return FALSE;
    }
  if (out->labels != NULL && !labels_satisfiable (self, builder, out->only_worker, out->labels))
    {
      g_autofree char *wanted = g_strjoinv (", ", (char **) out->labels);
      g_set_error (error, BF_ERROR, BF_ERROR_NOT_FOUND,
                   "No configured worker %s%s of builder “%s” has the labels %s",
                   out->only_worker ? "named " : "", out->only_worker ? out->only_worker : "",
                   builder, wanted);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_build_options (BfManager     *self,
                     const char    *builder,
                     GVariant      *options,
                     BuildOptions  *out,
                     GError       **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  if (*builder == '\0' || strlen (builder) > 200 || !g_utf8_validate (builder, -1, NULL))
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "The builder name must be 1 to 200 bytes of text");
      return FALSE;
    }

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      g_autoptr(GVariant) v = value;

      if (!parse_build_option (key, v, out, error))
        return FALSE;
    }
  return check_build_target (self, builder, out, error);
}

static void
request_build_authorized (GObject               *object,
                          GDBusMethodInvocation *invocation)
{
  BfManager *self = BF_MANAGER (object);
  g_autoptr(GVariant) options = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(BfDBusObjectSkeleton) skeleton = NULL;
  g_auto(BuildOptions) opts = { 0 };
  const char *builder;
  BfBuild *build;

  g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(&s@a{sv})", &builder, &options);
  /* Again: the configuration may have changed while polkit was asked. */
  if (!parse_build_options (self, builder, options, &opts, &error))
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return;
    }

  build = bf_build_new (++self->next_build_id, builder,
                        g_dbus_method_invocation_get_sender (invocation),
                        opts.detached, opts.only_worker, opts.timeout_usec,
                        self->bus, self->object_manager, self->authority);
  bf_build_set_labels (build, opts.labels);
  g_hash_table_insert (self->builds, build, GUINT_TO_POINTER (0));
  g_signal_connect_object (build, "prepared", G_CALLBACK (build_prepared_cb), self, 0);
  g_signal_connect_object (build, "ended", G_CALLBACK (build_ended_cb), self, 0);

  skeleton = bf_dbus_object_skeleton_new (bf_build_get_path (build));
  bf_dbus_object_skeleton_set_build (skeleton, BF_DBUS_BUILD (build));
  g_dbus_object_manager_server_export (self->object_manager, G_DBUS_OBJECT_SKELETON (skeleton));

  bf_scheduler_add (self->scheduler, build);
  bf_dbus_manager_complete_request_build (iface (self), invocation, bf_build_get_path (build));
}

static gboolean
handle_request_build (BfDBusManager         *object,
                      GDBusMethodInvocation *invocation,
                      const char            *builder,
                      GVariant              *options)
{
  BfManager *self = BF_MANAGER (object);
  g_autoptr(GError) error = NULL;
  g_auto(BuildOptions) opts = { 0 };

  if (!parse_build_options (self, builder, options, &opts, &error))
    {
      g_dbus_method_invocation_return_gerror (invocation, error);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  bf_authority_check (self->authority, G_OBJECT (self), invocation,
                      BF_ACTION_RUN_BUILDS, request_build_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
bf_manager_iface_init (BfDBusManagerIface *iface)
{
  iface->handle_reload = handle_reload;
  iface->handle_get_worker = handle_get_worker;
  iface->handle_get_workers = handle_get_workers;
  iface->handle_get_worker_page = handle_get_worker_page;
  iface->handle_request_build = handle_request_build;
}

/* Object ------------------------------------------------------------------------ */

typedef struct {
  guint remaining;
} ShutdownData;

static void
latent_shutdown_cb (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  ShutdownData *d = g_task_get_task_data (task);

  bf_latent_shutdown_finish (BF_LATENT (source), result, NULL);
  if (--d->remaining == 0)
    g_task_return_boolean (task, TRUE);
}

/**
 * bf_manager_shutdown_async:
 *
 * Stops every latent instance that is not kept (KeepOnShutdown=), in
 * parallel, for a clean exit; the caller bounds the wait.
 */
void
bf_manager_shutdown_async (BfManager           *self,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, NULL, callback, user_data);
  ShutdownData *d = g_new0 (ShutdownData, 1);
  GHashTableIter iter;
  gpointer value;

  g_task_set_source_tag (task, bf_manager_shutdown_async);
  g_task_set_task_data (task, d, g_free);
  stop_engine_scans (self);
  for_each_pool (self, bf_pool_clear);
  d->remaining = 1;
  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      BfLatent *latent = bf_worker_get_latent (value);
      if (latent == NULL)
        continue;
      d->remaining++;
      bf_latent_shutdown_async (latent, NULL, latent_shutdown_cb, g_object_ref (task));
    }
  if (--d->remaining == 0)
    g_task_return_boolean (task, TRUE);
}

gboolean
bf_manager_shutdown_finish (BfManager     *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * bf_manager_keep_instances:
 *
 * For an exit that is not an orderly stop (the bus went away): leaves every
 * latent instance running and recorded, for the next daemon to adopt, even
 * when bf_manager_shutdown() then drops its connection.
 */
void
bf_manager_keep_instances (BfManager *self)
{
  GHashTableIter iter;
  gpointer value;

  stop_engine_scans (self);
  for_each_pool (self, bf_pool_clear);
  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (bf_worker_get_latent (value) != NULL)
      bf_latent_freeze (bf_worker_get_latent (value));
}

/**
 * bf_manager_shutdown:
 *
 * Stops listening, drops every connection and writes the state; for a
 * clean exit.
 */
void
bf_manager_shutdown (BfManager *self)
{
  GHashTableIter iter;
  gpointer value;

  if (self->listener)
    bf_listener_stop (self->listener);
  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    bf_worker_disconnect (value, "daemon shutting down");
  bf_state_flush (self->state);
  bf_history_flush_state (self->state);
  bf_mailer_flush (self->mailer);
}

/* A worker can outlive the manager (a task or the attach batch holds it):
 * it must not call back into us. */
static void
disconnect_workers (BfManager  *self,
                    GHashTable *workers)
{
  GHashTableIter iter;
  gpointer worker;

  if (workers == NULL)
    return;
  g_hash_table_iter_init (&iter, workers);
  while (g_hash_table_iter_next (&iter, NULL, &worker))
    {
      g_signal_handlers_disconnect_by_data (worker, self);
      bf_worker_set_observer (worker, NULL, NULL);
      unexport_worker (self, worker, FALSE);
    }
}

static void
bf_manager_dispose (GObject *object)
{
  BfManager *self = BF_MANAGER (object);

  g_clear_handle_id (&self->status_source_id, g_source_remove);
  g_clear_handle_id (&self->trim_source_id, g_source_remove);
  stop_engine_scans (self);
  if (self->reload_cancellable)
    reload_abort (self);
  if (self->builds)
    {
      GHashTableIter iter;
      gpointer key, value;

      g_hash_table_iter_init (&iter, self->builds);
      while (g_hash_table_iter_next (&iter, &key, &value))
        {
          guint id = GPOINTER_TO_UINT (value);
          g_signal_handlers_disconnect_by_data (key, self);
          g_clear_handle_id (&id, g_source_remove);
        }
      g_clear_pointer (&self->builds, g_hash_table_unref);
    }
  g_clear_pointer (&self->scheduler, bf_scheduler_free);
  /* Workers that outlive us keep the warmer; nothing is rebuilt any more. */
  if (self->cache_warmer)
    bf_cache_warmer_stop (self->cache_warmer);
  g_clear_object (&self->cache_warmer);
  g_clear_object (&self->listener);
  disconnect_workers (self, self->workers);
  disconnect_workers (self, self->retiring);
  if (self->pools)
    {
      for_each_pool (self, bf_pool_clear);
      g_clear_pointer (&self->pools, g_hash_table_unref);
    }
  g_clear_pointer (&self->workers, g_hash_table_unref);
  g_clear_pointer (&self->retiring, g_hash_table_unref);
  g_clear_object (&self->object_manager);
  if (self->listing_filter_id != 0)
    {
      g_dbus_connection_remove_filter (self->bus, self->listing_filter_id);
      self->listing_filter_id = 0;
    }

  G_OBJECT_CLASS (bf_manager_parent_class)->dispose (object);
}

static void
bf_manager_finalize (GObject *object)
{
  BfManager *self = BF_MANAGER (object);

  g_clear_pointer (&self->config, bf_config_unref);
  g_clear_pointer (&self->boot_config, bf_config_unref);
  g_clear_object (&self->bus);
  g_free (self->master);
  g_free (self->pb_master);
  g_clear_object (&self->state);
  g_clear_object (&self->mailer);
  g_clear_object (&self->authority);
  g_clear_object (&self->reload_cancellable);
  g_clear_object (&self->engine_cancellable);
  g_clear_pointer (&self->orphans_stopping, g_hash_table_unref);

  G_OBJECT_CLASS (bf_manager_parent_class)->finalize (object);
}

static void
bf_manager_class_init (BfManagerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_manager_dispose;
  object_class->finalize = bf_manager_finalize;

  /* Coalesced; for sd_notify STATUS= */
  signals[SIGNAL_STATUS_CHANGED] =
    g_signal_new ("status-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
scheduler_pending_changed (guint    n_pending,
                           gpointer data)
{
  bf_dbus_manager_set_builds_pending (iface (data), n_pending);
}

static const BfSchedulerHost scheduler_host = {
  .pending_changed = scheduler_pending_changed,
};

static void
bf_manager_init (BfManager *self)
{
  self->workers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->retiring = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->pools = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->builds = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
  self->scheduler = bf_scheduler_new (self->workers, &scheduler_host, self);
  self->cache_warmer = bf_worker_new_cache_warmer ();
  self->reload_cancellable = g_cancellable_new ();
  self->engine_cancellable = g_cancellable_new ();
  self->orphans_stopping = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

/**
 * bf_manager_new:
 *
 * Loads the persisted state and creates every configured worker; nothing
 * is published or listening yet.
 */
BfManager *
bf_manager_new (BfConfig *config,
                gboolean  session_bus)
{
  BfManager *self = g_object_new (BF_TYPE_MANAGER, NULL);

  self->config = bf_config_ref (config);
  self->boot_config = bf_config_ref (config);
  self->session_bus = session_bus;
  self->state = bf_state_new (config->state_directory);
  bf_state_load (self->state);
  self->mailer = bf_mailer_new (config->mail_command, config->mail_from);
  self->authority = bf_authority_new (session_bus);
  self->listener = bf_listener_new (listener_auth_cb, self);
  bf_listener_set_pb_auth (self->listener, listener_pb_auth_cb, self);
  g_signal_connect_object (self->listener, "connection", G_CALLBACK (listener_connection_cb), self, 0);
  self->object_manager = g_dbus_object_manager_server_new (FLEET_PATH);
  apply_daemon_config (self);
  /* after the interval is set: held digests are due by it */
  bf_mailer_load_held (self->mailer, config->state_directory);

  bf_dbus_manager_set_version (iface (self), PACKAGE_VERSION);
  bf_dbus_manager_set_listen (iface (self), (const char * const *) config->listen);

  for (guint i = 0; i < config->pools->len; i++)
    add_pool (self, g_ptr_array_index (config->pools, i));
  for (guint i = 0; i < config->workers->len; i++)
    add_worker (self, g_ptr_array_index (config->workers, i));
  return self;
}

static void
export_all_workers (BfManager  *self,
                    GHashTable *workers)
{
  GHashTableIter iter;
  gpointer worker;

  g_hash_table_iter_init (&iter, workers);
  while (g_hash_table_iter_next (&iter, NULL, &worker))
    if (!g_dbus_interface_skeleton_has_connection (worker, self->bus))
      export_worker_on_bus (self, worker, FALSE);
}

gboolean
bf_manager_export (BfManager        *self,
                   GDBusConnection  *bus,
                   GError          **error)
{
  g_set_object (&self->bus, bus);
  if (self->listing_filter_id == 0)
    {
      ListingFilter *lf = g_new0 (ListingFilter, 1);

      g_weak_ref_init (&lf->manager, self);
      lf->context = g_main_context_ref_thread_default ();
      self->listing_filter_id = g_dbus_connection_add_filter (bus, listing_filter_cb, lf, listing_filter_free);
    }
  g_dbus_object_manager_server_set_connection (self->object_manager, bus);
  /* No InterfacesAdded for them, as the server sends none for the objects
   * it holds when it is given the connection. */
  export_all_workers (self, self->workers);
  export_all_workers (self, self->retiring);
  return g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self), bus, FLEET_PATH, error);
}
