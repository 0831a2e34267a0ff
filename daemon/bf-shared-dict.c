/* bf-shared-dict.c: property dictionaries that share their repeated entries
 *
 * GetManagedObjects hands every worker's property dictionary to GDBus, and
 * g_dbus_message_to_blob() walks it one GVariant at a time.  A serialised
 * dictionary is the cheapest to keep, but every child it is asked for is a
 * new instance (allocated, offsets checked, freed again): with 10,000
 * workers of about 200 values each, that is two million instances per call
 * and most of the daemon's time.  A child of a tree-form GVariant is only a
 * reference, but a tree of small GVariants costs over ten times the memory
 * of the serialised form, and walking 10,000 private trees is slower than
 * walking serialised data once the trees no longer fit in the CPU cache.
 *
 * Most entries are the same on every worker, though: {"Connected": <true>},
 * the builders, most of Info ("os_name": <"Debian GNU/Linux">) and all of
 * Commands.  So a dictionary is rebuilt as a tree whose repeated entries are
 * one tree-form instance shared by all workers (cheap to walk, and hot in
 * the cache), while the entries that differ per worker (Name, Host, Peer,
 * the timestamps) stay compact serialised copies.  Which entries repeat is
 * learnt, not listed: each key has a small pool of the values seen lately,
 * an entry gets its shared tree when it is seen a second time, and a full
 * pool forgets the entries nobody asked for again.
 *
 * The pools live for the process and are bounded (MAX_KEYS keys of at most
 * MAX_VALUES_PER_KEY entries each, none larger than MAX_POOLED_SIZE bytes).
 * Main thread only, like the skeletons that call this.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-shared-dict.h"

#define MAX_KEYS 512
#define MAX_VALUES_PER_KEY 64
#define MAX_POOLED_SIZE 1024

typedef struct
{
  GVariant *tree;               /* shared tree form, made on the first hit */
  guint hits;
} PoolEntry;

/* key name -> GHashTable (serialised entry -> PoolEntry) */
static GHashTable *pools;

static void
pool_entry_free (gpointer data)
{
  PoolEntry *pe = data;

  g_clear_pointer (&pe->tree, g_variant_unref);
  g_free (pe);
}

static guint
entry_hash (gconstpointer v)
{
  const guint8 *p = g_variant_get_data ((GVariant *) v);
  gsize n = g_variant_get_size ((GVariant *) v);
  guint32 h = 2166136261u;      /* FNV-1a */

  for (gsize i = 0; i < n; i++)
    {
      h ^= p[i];
      h *= 16777619u;
    }
  return h;
}

/* Both sides are serialised (pool keys are copies made by compact_copy(),
 * candidates are children of a serialised dictionary), so comparing the
 * bytes is exact and g_variant_get_data() does not convert anything. */
static gboolean
entry_equal (gconstpointer a,
             gconstpointer b)
{
  GVariant *x = (GVariant *) a;
  GVariant *y = (GVariant *) b;
  gsize n = g_variant_get_size (x);

  return g_variant_type_equal (g_variant_get_type (x), g_variant_get_type (y)) &&
         n == g_variant_get_size (y) &&
         (n == 0 || memcmp (g_variant_get_data (x), g_variant_get_data (y), n) == 0);
}

/* Ages the pool: entries not asked for since the last sweep go, the
 * others have to be asked for again to stay. */
static gboolean
sweep_cb (gpointer key,
          gpointer value,
          gpointer user_data)
{
  PoolEntry *pe = value;

  if (pe->hits == 0)
    return TRUE;
  pe->hits /= 2;
  return FALSE;
}

/* A child of a serialised dictionary keeps the whole dictionary's buffer
 * alive; a pool key gets its own few bytes. */
static GVariant *
compact_copy (GVariant *value)
{
  g_autoptr(GBytes) bytes = g_bytes_new (g_variant_get_data (value), g_variant_get_size (value));

  return g_variant_ref_sink (g_variant_new_from_bytes (g_variant_get_type (value), bytes, TRUE));
}

static GVariant *
to_tree (GVariant *value)
{
  g_autofree GVariant **children = NULL;
  GVariant *result;
  gsize n;

  if (!g_variant_is_container (value))
    return g_variant_ref (value);

  n = g_variant_n_children (value);
  children = g_new (GVariant *, MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) child = g_variant_get_child_value (value, i);
      children[i] = to_tree (child);
    }

  if (g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT))
    result = g_variant_new_variant (children[0]);
  else if (g_variant_is_of_type (value, G_VARIANT_TYPE_ARRAY))
    result = g_variant_new_array (g_variant_type_element (g_variant_get_type (value)), children, n);
  else if (g_variant_is_of_type (value, G_VARIANT_TYPE_DICT_ENTRY))
    result = g_variant_new_dict_entry (children[0], children[1]);
  else if (g_variant_is_of_type (value, G_VARIANT_TYPE_MAYBE))
    result = g_variant_new_maybe (g_variant_type_element (g_variant_get_type (value)),
                                  n > 0 ? children[0] : NULL);
  else
    result = g_variant_new_tuple (children, n);

  for (gsize i = 0; i < n; i++)
    g_variant_unref (children[i]);
  return g_variant_ref_sink (result);
}

/* Returns the shared tree-form entry equal to @entry, or %NULL when
 * @entry has not been seen lately; the pool then remembers it, so that the
 * next worker to have it shares. */
static GVariant *
pool_share (const char *name,
            GVariant   *entry)
{
  GHashTable *values;
  GVariant *known;
  PoolEntry *pe;

  if (g_variant_get_size (entry) > MAX_POOLED_SIZE)
    return NULL;

  if (pools == NULL)
    pools = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                   (GDestroyNotify) g_hash_table_unref);
  values = g_hash_table_lookup (pools, name);
  if (values == NULL)
    {
      if (g_hash_table_size (pools) >= MAX_KEYS)
        return NULL;
      values = g_hash_table_new_full (entry_hash, entry_equal,
                                      (GDestroyNotify) g_variant_unref, pool_entry_free);
      g_hash_table_insert (pools, g_strdup (name), values);
    }

  if (g_hash_table_lookup_extended (values, entry, (gpointer *) &known, (gpointer *) &pe))
    {
      /* From the pool's own copy: leaves taken from @entry would keep
       * the caller's whole dictionary alive. */
      if (pe->tree == NULL)
        pe->tree = to_tree (known);
      pe->hits = MIN (pe->hits + 1, G_MAXUINT / 2);
      return g_variant_ref (pe->tree);
    }

  /* Per-worker keys (Name, Peer, timestamps) fill their pool with entries
   * seen once; they go at the next sweep, popular ones stay. */
  if (g_hash_table_size (values) >= MAX_VALUES_PER_KEY &&
      g_hash_table_foreach_remove (values, sweep_cb, NULL) == 0)
    g_hash_table_remove_all (values);

  g_hash_table_insert (values, compact_copy (entry), g_new0 (PoolEntry, 1));
  return NULL;
}

static gboolean
is_string_dict (GVariant *value)
{
  const GVariantType *type = g_variant_get_type (value);

  return g_variant_type_is_array (type) &&
         g_variant_type_is_dict_entry (g_variant_type_element (type)) &&
         g_variant_type_equal (g_variant_type_key (g_variant_type_element (type)),
                               G_VARIANT_TYPE_STRING);
}

static GVariant *share_dict (GVariant *dict,
                             gboolean  nested);

/* Returns @entry shared, or %NULL when it stays the worker's own. */
static GVariant *
share_entry (GVariant *entry,
             gboolean  nested)
{
  g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
  g_autoptr(GVariant) value = g_variant_get_child_value (entry, 1);
  const char *name = g_variant_get_string (key, NULL);
  GVariant *shared = pool_share (name, entry);

  if (shared != NULL)
    return shared;

  /* A dictionary-valued property that differs per worker (Info, for the
   * host name in it) usually repeats most of its entries: share those one
   * level down.  One that is the same everywhere (Commands) is shared whole
   * from the second worker on. */
  if (!nested && g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT))
    {
      g_autoptr(GVariant) inner = g_variant_get_variant (value);

      g_autoptr(GVariant) dict = NULL;

      if (is_string_dict (inner) && g_variant_n_children (inner) > 0)
        dict = share_dict (inner, TRUE);
      if (dict != NULL)
        return g_variant_ref_sink (g_variant_new_dict_entry (g_variant_new_string (name),
                                                             g_variant_new_variant (dict)));
    }

  return NULL;
}

/* Returns @dict as a tree of shared entries and the worker's own, or
 * %NULL for a nested dictionary that mostly differs per worker: it is
 * cheaper kept whole in its parent. */
static GVariant *
share_dict (GVariant *dict,
            gboolean  nested)
{
  gsize n = g_variant_n_children (dict);
  g_autofree GVariant **entries = g_new0 (GVariant *, MAX (n, 1));
  g_autoptr(GPtrArray) own = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  GVariant *result;

  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (dict, i);

      entries[i] = share_entry (entry, nested);
      if (entries[i] == NULL)
        g_ptr_array_add (own, g_steal_pointer (&entry));
    }

  if (nested && own->len * 2 > n)
    {
      for (gsize i = 0; i < n; i++)
        g_clear_pointer (&entries[i], g_variant_unref);
      return NULL;
    }

  /* The worker's own entries go into one serialised array of their own:
   * each is then a small instance pointing into it, where a copy apiece
   * would cost a GBytes and an allocation more, and nothing keeps @dict's
   * buffer alive. */
  if (own->len > 0)
    {
      g_autoptr(GVariant) packed = g_variant_ref_sink (g_variant_new_array (g_variant_type_element (g_variant_get_type (dict)),
                                                                             (GVariant **) own->pdata, own->len));
      gsize j = 0;

      (void) g_variant_get_data (packed);
      for (gsize i = 0; i < n; i++)
        if (entries[i] == NULL)
          entries[i] = g_variant_get_child_value (packed, j++);
    }

  result = g_variant_new_array (g_variant_type_element (g_variant_get_type (dict)), entries, n);
  for (gsize i = 0; i < n; i++)
    g_variant_unref (entries[i]);
  return g_variant_ref_sink (result);
}

/**
 * bf_shared_dict_new:
 * @dict: a dictionary with string keys, such as a{sv}
 *
 * Returns: (transfer full): a tree-form dictionary equal to @dict whose
 * repeated entries are shared with the other dictionaries made here, and
 * which holds no reference to @dict.
 */
GVariant *
bf_shared_dict_new (GVariant *dict)
{
  g_return_val_if_fail (dict != NULL && is_string_dict (dict), NULL);

  /* Serialised first, so that every child is serialised too: the pools
   * compare bytes, and g_variant_get_data() on a tree would convert it. */
  (void) g_variant_get_data (dict);
  return share_dict (dict, FALSE);
}
