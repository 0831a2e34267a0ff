/* bf-pool.c: a [Pool NAME] of latent workers, published as org.buildfleet.Fleet1.Pool
 *
 * The manager creates the pool's workers like any others (one per name of
 * the pattern) and makes them members here; the pool only applies the
 * three rules that concern them together:
 *
 * - MaxInstances: a member's instance may start (for a build, a spare or
 *   a Substantiate call) only while fewer than MaxInstances members have
 *   one (starting, attached or stopping: an instance exists until its
 *   stop is done).  The pool is the start gate of each member's latent.
 * - MinIdle: after every change of a member (its instance's state, its
 *   builds) the pool looks again (coalesced, from the main loop): the
 *   first MinIdle attached members without a build are spares, kept past
 *   their BuildWaitTimeout; if fewer than MinIdle are idle or starting, it
 *   starts more, within MaxInstances.
 * - MaxBuildsPerInstance is each member's own (BfLatent stops an instance
 *   after its last allowed build); the pool then starts a fresh one if it
 *   needs a spare.
 *
 * Members a reload removed stay here as retiring until the manager drops
 * them (after their builds): they count against MaxInstances but are never
 * spares and never started.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-latent.h"
#include "bf-log.h"
#include "bf-pool.h"
#include "bf-util.h"

typedef struct {
  BfWorker *worker;
  gboolean retiring;
} Member;

struct _BfPool
{
  BfDBusPoolSkeleton parent_instance;

  BfPoolConfig *config;
  GPtrArray *members;          /* Member, by worker name */
  gboolean started;            /* may start spares: see bf_pool_start() */
  guint evaluate_source_id;
};

enum {
  SIGNAL_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (BfPool, bf_pool, BF_DBUS_TYPE_POOL_SKELETON)

static BfDBusPool *
iface (BfPool *self)
{
  return BF_DBUS_POOL (self);
}

static void
member_free (gpointer data)
{
  Member *m = data;

  g_object_unref (m->worker);
  g_free (m);
}

static gint
compare_members (gconstpointer a,
                 gconstpointer b)
{
  const Member *ma = *(const Member * const *) a;
  const Member *mb = *(const Member * const *) b;

  return g_strcmp0 (bf_worker_get_name (ma->worker), bf_worker_get_name (mb->worker));
}

static Member *
find_member (BfPool   *self,
             BfWorker *worker,
             guint    *out_index)
{
  for (guint i = 0; i < self->members->len; i++)
    {
      Member *m = g_ptr_array_index (self->members, i);
      if (m->worker == worker)
        {
          if (out_index)
            *out_index = i;
          return m;
        }
    }
  return NULL;
}

/* Members whose instance exists: what MaxInstances counts. */
static guint
count_instances (BfPool *self)
{
  guint n = 0;

  for (guint i = 0; i < self->members->len; i++)
    {
      Member *m = g_ptr_array_index (self->members, i);
      BfLatent *latent = bf_worker_get_latent (m->worker);

      if (latent && !bf_latent_can_substantiate (latent))
        n++;
    }
  return n;
}

static gboolean
start_gate (gpointer data)
{
  BfPool *self = data;

  return count_instances (self) < self->config->max_instances;
}

/* Whether @m's attached instance could take a build now: a spare that
 * could not (quarantined, paused, unhealthy...) is none. */
static gboolean
member_can_take_build (Member *m)
{
  BfWorkerConfig *wc = bf_worker_get_config (m->worker);

  return !m->retiring && wc->builders[0] != NULL && bf_worker_can_take_build (m->worker, wc->builders[0]);
}

/* A member that may start an instance now (not quarantined, paused or
 * graceful; none running); NULL if there is none. */
static BfWorker *
startable_member (BfPool *self)
{
  for (guint i = 0; i < self->members->len; i++)
    {
      Member *m = g_ptr_array_index (self->members, i);
      BfWorkerConfig *wc = bf_worker_get_config (m->worker);

      if (!m->retiring && wc->builders[0] != NULL &&
          bf_worker_can_substantiate_for (m->worker, wc->builders[0]))
        return m->worker;
    }
  return NULL;
}

static void
publish_members (BfPool *self)
{
  g_autoptr(GStrvBuilder) names = g_strv_builder_new ();
  g_auto(GStrv) strv = NULL;

  for (guint i = 0; i < self->members->len; i++)
    {
      Member *m = g_ptr_array_index (self->members, i);
      if (!m->retiring)
        g_strv_builder_add (names, bf_worker_get_name (m->worker));
    }
  strv = g_strv_builder_end (names);
  bf_dbus_pool_set_workers (iface (self), (const char * const *) strv);
}

static gboolean
evaluate_cb (gpointer data)
{
  BfPool *self = data;
  guint instances = 0, starting = 0, idle = 0, busy = 0;
  guint min_idle = self->config->min_idle;

  self->evaluate_source_id = 0;
  for (guint i = 0; i < self->members->len; i++)
    {
      Member *m = g_ptr_array_index (self->members, i);
      BfLatent *latent = bf_worker_get_latent (m->worker);
      gboolean spare = FALSE;

      if (latent == NULL)
        continue;
      if (!bf_latent_can_substantiate (latent))
        instances++;
      if (bf_latent_is_substantiating (latent))
        starting++;
      else if (bf_dbus_latent_worker_get_substantiated (BF_DBUS_LATENT_WORKER (latent)))
        {
          if (bf_worker_get_active_builds (m->worker) > 0)
            busy++;
          else if (member_can_take_build (m))
            spare = idle++ < min_idle;
        }
      bf_latent_set_spare (latent, spare);
    }

  /* Instances that are starting become spares once attached (or take the
   * builds that wait): only the rest is started here. */
  while (self->started && idle + starting < min_idle && instances < self->config->max_instances)
    {
      BfWorker *worker = startable_member (self);

      if (worker == NULL)
        break;
      bf_worker_info (bf_worker_get_name (worker), "Pool %s: starting %s as a spare (%u idle, %u starting, MinIdle=%u)",
                      bf_pool_get_name (self), bf_worker_get_name (worker), idle, starting, min_idle);
      bf_latent_substantiate (bf_worker_get_latent (worker));
      instances++;
      starting++;
    }

  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_pool_set_instances (iface (self), instances);
  bf_dbus_pool_set_starting (iface (self), starting);
  bf_dbus_pool_set_idle (iface (self), idle);
  bf_dbus_pool_set_busy (iface (self), busy);
  g_object_thaw_notify (G_OBJECT (self));
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
  return G_SOURCE_REMOVE;
}

static void
schedule_evaluate (BfPool *self)
{
  if (self->evaluate_source_id == 0)
    {
      self->evaluate_source_id = g_idle_add (evaluate_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->evaluate_source_id),
                                "[buildfleetd] pool evaluation");
    }
}

static void
member_changed_cb (BfPool *self)
{
  schedule_evaluate (self);
}

static void
unwatch (BfPool *self,
         Member *m)
{
  BfLatent *latent = bf_worker_get_latent (m->worker);

  g_signal_handlers_disconnect_by_data (m->worker, self);
  if (latent)
    {
      g_signal_handlers_disconnect_by_data (latent, self);
      bf_latent_set_start_gate (latent, NULL, NULL);
      bf_latent_set_spare (latent, FALSE);
    }
}

/**
 * bf_pool_add_member:
 *
 * @worker (latent, of this pool's configuration) is one of the pool's; a
 * retiring member is one again.
 */
void
bf_pool_add_member (BfPool   *self,
                    BfWorker *worker)
{
  Member *m = find_member (self, worker, NULL);
  BfLatent *latent = bf_worker_get_latent (worker);

  if (latent == NULL)
    {
      /* A [Worker] group that became a pool's on reload: Latent= takes
       * effect when the daemon restarts. */
      bf_worker_message (bf_worker_get_name (worker),
                         "Worker %s is not latent until the daemon restarts: pool %s leaves it alone",
                         bf_worker_get_name (worker), bf_pool_get_name (self));
      return;
    }
  if (m == NULL)
    {
      m = g_new0 (Member, 1);
      m->worker = g_object_ref (worker);
      g_ptr_array_add (self->members, m);
      g_ptr_array_sort (self->members, compare_members);
      g_signal_connect_object (worker, "active-builds-changed", G_CALLBACK (member_changed_cb), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (worker, "availability-changed", G_CALLBACK (member_changed_cb), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (worker, "connected-changed", G_CALLBACK (member_changed_cb), self, G_CONNECT_SWAPPED);
      g_signal_connect_object (latent, "notify::state", G_CALLBACK (member_changed_cb), self, G_CONNECT_SWAPPED);
      bf_latent_set_start_gate (latent, start_gate, self);
    }
  m->retiring = FALSE;
  publish_members (self);
  schedule_evaluate (self);
}

/**
 * bf_pool_retire_member:
 *
 * A reload removed @worker from the pool; it finishes its builds and is
 * then removed with bf_pool_remove_member().  Until then its instance
 * counts against MaxInstances.
 */
void
bf_pool_retire_member (BfPool   *self,
                       BfWorker *worker)
{
  Member *m = find_member (self, worker, NULL);

  if (m == NULL)
    return;
  m->retiring = TRUE;
  bf_latent_set_spare (bf_worker_get_latent (worker), FALSE);
  publish_members (self);
  schedule_evaluate (self);
}

void
bf_pool_remove_member (BfPool   *self,
                       BfWorker *worker)
{
  guint index;
  Member *m = find_member (self, worker, &index);

  if (m == NULL)
    return;
  unwatch (self, m);
  g_ptr_array_remove_index (self->members, index);
  publish_members (self);
  schedule_evaluate (self);
}

/**
 * bf_pool_start:
 *
 * The daemon listens, so started instances can connect: the pool may start
 * spares from now on (a spare started earlier would fail and quarantine
 * its worker).
 */
void
bf_pool_start (BfPool *self)
{
  self->started = TRUE;
  schedule_evaluate (self);
}

/**
 * bf_pool_clear:
 *
 * The pool is going away: its members are left to themselves (no gate,
 * no spares).
 */
void
bf_pool_clear (BfPool *self)
{
  for (guint i = 0; i < self->members->len; i++)
    unwatch (self, g_ptr_array_index (self->members, i));
  g_ptr_array_set_size (self->members, 0);
  self->started = FALSE;
  g_clear_handle_id (&self->evaluate_source_id, g_source_remove);
}

void
bf_pool_set_config (BfPool       *self,
                    BfPoolConfig *config)
{
  BfDBusPool *p = iface (self);

  if (self->config != config)
    {
      g_clear_pointer (&self->config, bf_pool_config_unref);
      self->config = bf_pool_config_ref (config);
    }
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_pool_set_name (p, config->name);
  bf_dbus_pool_set_count (p, config->count);
  bf_dbus_pool_set_min_idle (p, config->min_idle);
  bf_dbus_pool_set_max_instances (p, config->max_instances);
  bf_dbus_pool_set_max_builds_per_instance (p, config->max_builds_per_instance);
  g_object_thaw_notify (G_OBJECT (self));
  schedule_evaluate (self);
}

const char *
bf_pool_get_name (BfPool *self)
{
  return self->config->name;
}

static void
bf_pool_dispose (GObject *object)
{
  BfPool *self = BF_POOL (object);

  if (self->members)
    bf_pool_clear (self);
  g_clear_pointer (&self->members, g_ptr_array_unref);
  G_OBJECT_CLASS (bf_pool_parent_class)->dispose (object);
}

static void
bf_pool_finalize (GObject *object)
{
  BfPool *self = BF_POOL (object);

  g_clear_pointer (&self->config, bf_pool_config_unref);
  G_OBJECT_CLASS (bf_pool_parent_class)->finalize (object);
}

static void
bf_pool_class_init (BfPoolClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_pool_dispose;
  object_class->finalize = bf_pool_finalize;

  /* After each look at the members: an instance may have ended, so a
   * build that waits for MaxInstances may start now. */
  signals[SIGNAL_CHANGED] =
    g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
bf_pool_init (BfPool *self)
{
  self->members = g_ptr_array_new_with_free_func (member_free);
  bf_dbus_pool_set_workers (iface (self), (const char * const []) { NULL });
}

BfPool *
bf_pool_new (BfPoolConfig *config)
{
  BfPool *self = g_object_new (BF_TYPE_POOL, NULL);

  bf_pool_set_config (self, config);
  return self;
}
