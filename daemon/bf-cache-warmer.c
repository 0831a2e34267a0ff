/* bf-cache-warmer.c: rebuild dropped caches in the background
 *
 * A few milliseconds every WARM_PERIOD_MS at low priority, at most a tenth
 * of a CPU, until every cold item is warm again.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-cache-warmer.h"
#include "bf-util.h"

#define WARM_PERIOD_MS 20
#define WARM_BUDGET_USEC 2000

struct _BfCacheWarmer
{
  GObject parent_instance;

  BfCacheWarmFunc warm;
  gboolean wanted;      /* a client asked for whole property sets once */
  GHashTable *cold;     /* item (unowned) */
  guint source_id;
};

G_DEFINE_FINAL_TYPE (BfCacheWarmer, bf_cache_warmer, G_TYPE_OBJECT)

static gboolean
warm_cb (gpointer data)
{
  BfCacheWarmer *self = data;
  gint64 until = g_get_monotonic_time () + WARM_BUDGET_USEC;
  GHashTableIter iter;
  gpointer item;

  g_hash_table_iter_init (&iter, self->cold);
  while (g_hash_table_iter_next (&iter, &item, NULL))
    {
      g_hash_table_iter_remove (&iter);
      self->warm (item);
      if (g_get_monotonic_time () >= until)
        break;
    }
  if (g_hash_table_size (self->cold) > 0)
    return G_SOURCE_CONTINUE;
  self->source_id = 0;
  return G_SOURCE_REMOVE;
}

/**
 * bf_cache_warmer_set_wanted:
 *
 * Some client asked for a whole cache: from now on cold items are rebuilt.
 */
void
bf_cache_warmer_set_wanted (BfCacheWarmer *self)
{
  g_return_if_fail (BF_IS_CACHE_WARMER (self));
  self->wanted = TRUE;
}

/**
 * bf_cache_warmer_mark_cold:
 * @item: an item whose cache was dropped
 *
 * Queues @item for a rebuild, once caches are wanted.
 */
void
bf_cache_warmer_mark_cold (BfCacheWarmer *self,
                           gpointer       item)
{
  g_return_if_fail (BF_IS_CACHE_WARMER (self));

  if (!self->wanted)
    return;
  g_hash_table_add (self->cold, item);
  if (self->source_id == 0)
    {
      GSource *source = g_timeout_source_new (WARM_PERIOD_MS);

      g_source_set_priority (source, G_PRIORITY_LOW);
      self->source_id = bf_timeout_add_full (source, warm_cb, self,
                                             "[buildfleetd] rebuild property caches");
    }
}

/**
 * bf_cache_warmer_forget:
 * @item: an item about to be freed
 */
void
bf_cache_warmer_forget (BfCacheWarmer *self,
                        gpointer       item)
{
  g_return_if_fail (BF_IS_CACHE_WARMER (self));
  g_hash_table_remove (self->cold, item);
}

/**
 * bf_cache_warmer_stop:
 *
 * At exit: forget the caches still to rebuild and queue no more.
 */
void
bf_cache_warmer_stop (BfCacheWarmer *self)
{
  g_return_if_fail (BF_IS_CACHE_WARMER (self));
  g_clear_handle_id (&self->source_id, g_source_remove);
  g_hash_table_remove_all (self->cold);
  self->wanted = FALSE;
}

static void
bf_cache_warmer_finalize (GObject *object)
{
  BfCacheWarmer *self = BF_CACHE_WARMER (object);

  g_clear_handle_id (&self->source_id, g_source_remove);
  g_clear_pointer (&self->cold, g_hash_table_unref);

  G_OBJECT_CLASS (bf_cache_warmer_parent_class)->finalize (object);
}

static void
bf_cache_warmer_class_init (BfCacheWarmerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bf_cache_warmer_finalize;
}

static void
bf_cache_warmer_init (BfCacheWarmer *self)
{
  self->cold = g_hash_table_new (NULL, NULL);
}

/**
 * bf_cache_warmer_new:
 * @warm: rebuilds one item's cache
 */
BfCacheWarmer *
bf_cache_warmer_new (BfCacheWarmFunc warm)
{
  BfCacheWarmer *self;

  g_return_val_if_fail (warm != NULL, NULL);
  self = g_object_new (BF_TYPE_CACHE_WARMER, NULL);
  self->warm = warm;
  return self;
}
