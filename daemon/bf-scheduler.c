/* bf-scheduler.c: the pending-build queue and the choice of a worker
 *
 * See bf-scheduler.h.  A dispatch walks the queue in request order: a
 * build goes to the least loaded worker that can take it now (choose_worker),
 * else it is told why it waits (waiting_for) and a latent worker may be
 * started for it (create_demand).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-latent.h"
#include "bf-scheduler.h"

struct _BfScheduler
{
  GHashTable *workers;            /* borrowed: name -> BfWorker */
  const BfSchedulerHost *host;
  gpointer host_data;
  GQueue pending;                 /* BfBuild (borrowed), in request order */
  GHashTable *last_assigned;      /* worker name -> monotonic time of its last build */
  guint dispatch_source_id;
};

/* Where the worker is published: builds name it in their Worker property. */
static const char *
worker_path (BfWorker *worker)
{
  const char *path = g_dbus_interface_skeleton_get_object_path (G_DBUS_INTERFACE_SKELETON (worker));

  return path ? path : "/";
}

/* Least loaded first (active / MaxBuilds), then fewest builds, then the one
 * that waited longest since its last build: builds spread over the fleet. */
static BfWorker *
choose_worker (BfScheduler *self,
               BfBuild   *build)
{
  const char *builder = bf_build_get_builder (build);
  const char *only = bf_build_get_only_worker (build);
  const char * const *labels = bf_build_get_labels (build);
  BfWorker *best = NULL;
  double best_load = 0;
  guint best_active = 0;
  gint64 best_stamp = 0;
  GHashTableIter iter;
  gpointer value;

  if (only != NULL)
    {
      BfWorker *w = g_hash_table_lookup (self->workers, only);
      return w && bf_worker_can_take_build (w, builder) && bf_worker_has_labels (w, labels) ? w : NULL;
    }

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      BfWorker *w = value;
      guint active, max;
      double load;
      gint64 stamp;

      if (!bf_worker_can_take_build (w, builder) || !bf_worker_has_labels (w, labels))
        continue;
      active = bf_worker_get_active_builds (w);
      max = bf_worker_get_config (w)->max_builds;
      load = max ? (double) active / max : 0;
      stamp = GPOINTER_TO_SIZE (g_hash_table_lookup (self->last_assigned, bf_worker_get_name (w)));
      if (best == NULL || load < best_load ||
          (load == best_load && (active < best_active ||
                                 (active == best_active && stamp < best_stamp))))
        {
          best = w;
          best_load = load;
          best_active = active;
          best_stamp = stamp;
        }
    }
  return best;
}

/* Substantiating latent workers that serve @builder: each will take one of
 * the builds waiting for it. */
static guint
count_substantiating (BfScheduler *self,
                      const char *builder)
{
  GHashTableIter iter;
  gpointer value;
  guint n = 0;

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      BfLatent *latent = bf_worker_get_latent (value);
      if (latent && bf_latent_is_substantiating (latent) &&
          bf_worker_config_serves (bf_worker_get_config (value), builder))
        n++;
    }
  return n;
}

/* Whether starting @worker's instance would serve @build now (its pool,
 * if any, lets it start: MaxInstances). */
static gboolean
can_start_for (BfWorker *worker,
               BfBuild  *build)
{
  return bf_worker_can_substantiate_for (worker, bf_build_get_builder (build)) &&
         bf_worker_could_have_labels (worker, bf_build_get_labels (build)) &&
         bf_latent_may_start (bf_worker_get_latent (worker));
}

/* A build no attached worker can take: start a latent worker for it,
 * unless enough are starting already for the builds waiting. */
static void
create_demand (BfScheduler *self,
               BfBuild     *build,
               GHashTable  *waiting)
{
  const char *builder = bf_build_get_builder (build);
  const char *only = bf_build_get_only_worker (build);
  guint n_waiting = GPOINTER_TO_UINT (g_hash_table_lookup (waiting, builder)) + 1;
  GHashTableIter iter;
  gpointer value;

  g_hash_table_insert (waiting, (gpointer) builder, GUINT_TO_POINTER (n_waiting));
  if (only != NULL)
    {
      BfWorker *w = g_hash_table_lookup (self->workers, only);
      if (w && can_start_for (w, build))
        bf_latent_substantiate (bf_worker_get_latent (w));
      return;
    }
  if (count_substantiating (self, builder) >= n_waiting)
    return;
  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      if (can_start_for (value, build))
        {
          bf_latent_substantiate (bf_worker_get_latent (value));
          return;
        }
    }
}

static void
pending_changed (BfScheduler *self)
{
  self->host->pending_changed (g_queue_get_length (&self->pending), self->host_data);
}

/* Why no worker takes @build, e.g. "w1: paused; w2: busy".  At most a few
 * workers are named: the rest are counted. */
#define WAITING_FOR_NAMED 4

static char *
waiting_for (BfScheduler *self,
             BfBuild   *build)
{
  const char *builder = bf_build_get_builder (build);
  const char *only = bf_build_get_only_worker (build);
  const char * const *labels = bf_build_get_labels (build);
  g_autoptr(GString) s = g_string_new (NULL);
  guint named = 0, more = 0;
  GHashTableIter iter;
  gpointer value;

  if (only != NULL)
    {
      BfWorker *w = g_hash_table_lookup (self->workers, only);
      const char *why = w ? bf_worker_why_not (w, builder, labels) : "not configured";

      return g_strdup_printf ("%s: %s", only, why ? why : "about to take it");
    }
  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      BfWorker *w = value;
      const char *why;

      if (!bf_worker_config_serves (bf_worker_get_config (w), builder))
        continue;
      if (!bf_worker_could_have_labels (w, labels))
        continue;
      why = bf_worker_why_not (w, builder, labels);
      if (bf_worker_can_substantiate_for (w, builder) && !bf_latent_may_start (bf_worker_get_latent (w)))
        why = "not started: its pool runs MaxInstances instances";
      if (named == WAITING_FOR_NAMED)
        {
          more++;
          continue;
        }
      g_string_append_printf (s, "%s%s: %s", named ? "; " : "", bf_worker_get_name (w),
                              why ? why : "about to take it");
      named++;
    }
  if (named == 0)
    return g_strdup_printf ("no worker serves builder %s", builder);
  if (more > 0)
    g_string_append_printf (s, "; %u more", more);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static gboolean
dispatch_cb (gpointer data)
{
  BfScheduler *self = data;
  g_autoptr(GHashTable) waiting = g_hash_table_new (g_str_hash, g_str_equal);
  GList *next;

  self->dispatch_source_id = 0;
  for (GList *l = self->pending.head; l != NULL; l = next)
    {
      BfBuild *build = l->data;
      BfWorker *worker;

      next = l->next;
      worker = choose_worker (self, build);
      if (worker == NULL)
        {
          g_autofree char *why = waiting_for (self, build);

          bf_build_set_waiting_for (build, why);
          create_demand (self, build, waiting);
          continue;
        }
      g_queue_delete_link (&self->pending, l);
      pending_changed (self);
      g_hash_table_insert (self->last_assigned, g_strdup (bf_worker_get_name (worker)),
                           GSIZE_TO_POINTER ((gsize) g_get_monotonic_time ()));
      bf_worker_build_started (worker, bf_build_get_builder (build));
      bf_build_assign (build, worker, worker_path (worker));
    }
  return G_SOURCE_REMOVE;
}

static void
schedule_dispatch (BfScheduler *self)
{
  if (self->dispatch_source_id == 0 && self->pending.length > 0)
    {
      self->dispatch_source_id = g_idle_add (dispatch_cb, self);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->dispatch_source_id),
                                "[buildfleetd] build dispatch");
    }
}

static gint
compare_build_ids (gconstpointer a,
                   gconstpointer b,
                   gpointer      user_data)
{
  guint64 ia = bf_build_get_id ((BfBuild *) a);
  guint64 ib = bf_build_get_id ((BfBuild *) b);

  return ia < ib ? -1 : ia > ib;
}

/**
 * bf_scheduler_new:
 * @workers: (transfer none): the manager's name -> BfWorker table; must
 *   outlive the scheduler
 * @host: (not nullable): static callbacks
 */
BfScheduler *
bf_scheduler_new (GHashTable            *workers,
                  const BfSchedulerHost *host,
                  gpointer               host_data)
{
  BfScheduler *self = g_new0 (BfScheduler, 1);

  self->workers = workers;
  self->host = host;
  self->host_data = host_data;
  g_queue_init (&self->pending);
  self->last_assigned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return self;
}

void
bf_scheduler_free (BfScheduler *self)
{
  g_clear_handle_id (&self->dispatch_source_id, g_source_remove);
  g_queue_clear (&self->pending);
  g_clear_pointer (&self->last_assigned, g_hash_table_unref);
  g_free (self);
}

/**
 * bf_scheduler_add:
 * @build: (transfer none): a new build; the caller keeps it alive until
 *   it is assigned or bf_scheduler_remove()d
 *
 * Queues @build behind every build requested before it.
 */
void
bf_scheduler_add (BfScheduler *self,
                  BfBuild     *build)
{
  g_queue_push_tail (&self->pending, build);
  pending_changed (self);
  schedule_dispatch (self);
}

/**
 * bf_scheduler_requeue:
 *
 * A build whose worker could not be prepared waits again, in its place
 * (by build id).
 */
void
bf_scheduler_requeue (BfScheduler *self,
                      BfBuild     *build)
{
  g_queue_insert_sorted (&self->pending, build, compare_build_ids, NULL);
  pending_changed (self);
  schedule_dispatch (self);
}

/**
 * bf_scheduler_remove:
 *
 * Returns: whether @build was waiting (it waits no more)
 */
gboolean
bf_scheduler_remove (BfScheduler *self,
                     BfBuild     *build)
{
  if (!g_queue_remove (&self->pending, build))
    return FALSE;
  pending_changed (self);
  return TRUE;
}

/**
 * bf_scheduler_kick:
 *
 * Something changed that may let a waiting build run (a worker attached, a
 * build ended, the configuration changed): dispatch soon.
 */
void
bf_scheduler_kick (BfScheduler *self)
{
  schedule_dispatch (self);
}
