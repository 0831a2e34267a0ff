/* bf-cache-warmer.h: rebuild dropped caches in the background
 *
 * An object whose cache a change dropped is handed to the warmer, which
 * rebuilds caches a few milliseconds at a time at low priority, so that
 * the next client that wants them all (GetManagedObjects, GetWorkers after
 * an attach storm) does not pay for thousands at once.  Nothing is queued
 * until some client asked for whole property sets once
 * (bf_cache_warmer_set_wanted()).  Items are not owned: an item leaves
 * with bf_cache_warmer_forget() before it is freed.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib-object.h>

G_BEGIN_DECLS

/**
 * BfCacheWarmFunc:
 * @item: an item given to bf_cache_warmer_mark_cold()
 *
 * Rebuilds @item's cache.
 */
typedef void (*BfCacheWarmFunc) (gpointer item);

#define BF_TYPE_CACHE_WARMER (bf_cache_warmer_get_type ())
G_DECLARE_FINAL_TYPE (BfCacheWarmer, bf_cache_warmer, BF, CACHE_WARMER, GObject)

BfCacheWarmer *bf_cache_warmer_new        (BfCacheWarmFunc  warm);
void           bf_cache_warmer_set_wanted (BfCacheWarmer   *self);
void           bf_cache_warmer_mark_cold  (BfCacheWarmer   *self,
                                           gpointer         item);
void           bf_cache_warmer_forget     (BfCacheWarmer   *self,
                                           gpointer         item);
void           bf_cache_warmer_stop       (BfCacheWarmer   *self);

G_END_DECLS
