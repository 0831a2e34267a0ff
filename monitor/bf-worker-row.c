/* bf-worker-row.c: one worker of the list, read from GetWorkers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * No GDBusProxy per worker: a proxy is a GInitable with its own main
 * context, a subscription and a checked property cache, too dear for a
 * fleet (figures in tests/bench/README.md, "The desktop monitor's load").
 *
 * A row is the cheap store instead: it keeps the GVariant values of the
 * reply as they are (a reference each, nothing is copied) and implements
 * the *generated* BfDBusWorker (and BfDBusLatentWorker) interface over them,
 * so cells, sorters, filters, the details pane and the notifier keep using
 * the typed getters and "notify::" signals they used with proxies.  Both row
 * types derive from BfPropertyRow, the store of one interface's values.
 * The fleet model feeds it the PropertiesChanged signals it receives through one
 * subscription for all workers.
 *
 * A row of the initial load has only the properties the list needs (see
 * bf-fleet-model.c); bf_worker_row_fetch_all_async() reads the others of
 * the worker the details pane shows.
 *
 * Method calls still go through the generated proxies, created only when
 * needed (for the selected worker), by bf_worker_row_ensure_proxies_async().
 */

#include "config.h"

#include "bf-worker-row.h"

#define WORKER_INTERFACE (bf_dbus_worker_interface_info ()->name)
#define LATENT_INTERFACE (bf_dbus_latent_worker_interface_info ()->name)

/* ------------------------------------------------------------------------ */
/* A store of D-Bus property values, shared by both row types */

typedef struct
{
  GDBusInterfaceInfo  *info;
  guint                n_properties;
  /* by property index, in the order of the introspection data, which is
   * also that of the generated property ids (index + 1) */
  GParamSpec         **pspecs;
  /* D-Bus property name -> index + 1 */
  GHashTable          *index;
} BfRowClassData;

typedef struct
{
  GVariant **values;
  /* g_variant_get_strv() of "as" values, which the generated getters
   * return without transferring ownership; by index, lazily */
  gpointer  *strvs;
} BfRowStore;

static void
row_class_data_init (BfRowClassData     *data,
                     GObjectClass       *klass,
                     GDBusInterfaceInfo *info)
{
  g_autofree GParamSpec **pspecs = NULL;
  guint n_pspecs = 0;

  data->info = info;
  while (info->properties[data->n_properties] != NULL)
    data->n_properties++;

  data->index = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < data->n_properties; i++)
    g_hash_table_insert (data->index, info->properties[i]->name, GINT_TO_POINTER (i + 1));

  /* The properties to notify: g_object_class_list_properties() gives the
   * interface's own GParamSpecs, which is what g_object_notify() uses too;
   * their names are the D-Bus names in lower case with hyphens between
   * the words ("QuarantineUntilUSec", "quarantine-until-usec"). */
  data->pspecs = g_new0 (GParamSpec *, data->n_properties);
  pspecs = g_object_class_list_properties (klass, &n_pspecs);
  for (guint i = 0; i < n_pspecs; i++)
    {
      g_autoptr(GString) folded = g_string_new (NULL);

      for (const char *c = pspecs[i]->name; *c != '\0'; c++)
        if (*c != '-')
          g_string_append_c (folded, *c);

      for (guint k = 0; k < data->n_properties; k++)
        {
          if (g_ascii_strcasecmp (folded->str, info->properties[k]->name) == 0)
            {
              data->pspecs[k] = pspecs[i];
              break;
            }
        }
    }

  for (guint k = 0; k < data->n_properties; k++)
    if (data->pspecs[k] == NULL)
      g_critical ("No GObject property for the D-Bus property %s.%s", info->name, info->properties[k]->name);
}

/* The values are allocated with the first one: a base class's init does
 * not know its subclass's interface yet. */
static void
row_store_ensure (BfRowStore     *store,
                  BfRowClassData *data)
{
  if (store->values == NULL)
    store->values = g_new0 (GVariant *, data->n_properties);
}

static void
row_store_clear_strv (BfRowStore *store,
                      guint       i)
{
  if (store->strvs != NULL)
    g_clear_pointer (&store->strvs[i], g_free);
}

static void
row_store_clear (BfRowStore     *store,
                 BfRowClassData *data)
{
  if (store->values == NULL)
    return;

  for (guint i = 0; i < data->n_properties; i++)
    {
      g_clear_pointer (&store->values[i], g_variant_unref);
      row_store_clear_strv (store, i);
    }
  g_clear_pointer (&store->values, g_free);
  g_clear_pointer (&store->strvs, g_free);
}

/* The index of a D-Bus property, or -1 for one the interface lacks (a
 * newer daemon's). */
static int
row_store_find (BfRowClassData *data,
                const char     *name)
{
  gpointer index_plus_one = g_hash_table_lookup (data->index, name);

  return index_plus_one != NULL ? GPOINTER_TO_INT (index_plus_one) - 1 : -1;
}

/* Returns whether the value changed; @value is (nullable) (transfer none). */
static gboolean
row_store_set (BfRowStore     *store,
               BfRowClassData *data,
               int             i,
               GVariant       *value)
{
  GVariant *old;

  row_store_ensure (store, data);
  old = store->values[i];
  if (value != NULL &&
      !g_variant_is_of_type (value, G_VARIANT_TYPE (data->info->properties[i]->signature)))
    {
      /* GDBusProxy drops such values too, with the same warning. */
      g_warning ("Received property %s with type %s does not match expected type %s in the expected interface",
                 data->info->properties[i]->name, g_variant_get_type_string (value),
                 data->info->properties[i]->signature);
      return FALSE;
    }

  if (old == value || (old != NULL && value != NULL && g_variant_equal (old, value)))
    return FALSE;

  store->values[i] = value != NULL ? g_variant_ref (value) : NULL;
  g_clear_pointer (&old, g_variant_unref);
  row_store_clear_strv (store, i);

  return TRUE;
}

/* The initial values, from an a{sv}: nobody can be listening yet. */
static void
row_store_fill (BfRowStore     *store,
                BfRowClassData *data,
                GVariant       *properties)
{
  gsize n = g_variant_n_children (properties);

  for (gsize k = 0; k < n; k++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (properties, k);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) value = g_variant_get_variant (boxed);
      int i = row_store_find (data, g_variant_get_string (key, NULL));

      if (i >= 0)
        row_store_set (store, data, i, value);
    }
}

/* A PropertiesChanged signal: notifies what really changed, as the
 * generated proxies do. */
static void
row_store_update (BfRowStore         *store,
                  BfRowClassData     *data,
                  GObject            *object,
                  GVariant           *changed,
                  const char * const *invalidated)
{
  GVariantIter iter;
  const char *name;
  GVariant *value;

  g_object_freeze_notify (object);

  g_variant_iter_init (&iter, changed);
  while (g_variant_iter_next (&iter, "{&sv}", &name, &value))
    {
      int i = row_store_find (data, name);

      if (i >= 0 && row_store_set (store, data, i, value) && data->pspecs[i] != NULL)
        g_object_notify_by_pspec (object, data->pspecs[i]);
      g_variant_unref (value);
    }

  for (guint k = 0; invalidated != NULL && invalidated[k] != NULL; k++)
    {
      int i = row_store_find (data, invalidated[k]);

      if (i >= 0 && row_store_set (store, data, i, NULL) && data->pspecs[i] != NULL)
        g_object_notify_by_pspec (object, data->pspecs[i]);
    }

  g_object_thaw_notify (object);
}

static GVariant *
row_store_lookup (BfRowStore     *store,
                  BfRowClassData *data,
                  const char     *name)
{
  int i = row_store_find (data, name);

  return i >= 0 && store->values != NULL ? store->values[i] : NULL;
}

static const char * const *
row_store_lookup_strv (BfRowStore     *store,
                       BfRowClassData *data,
                       const char     *name)
{
  int i = row_store_find (data, name);

  if (i < 0 || store->values == NULL || store->values[i] == NULL)
    return NULL;

  if (store->strvs == NULL)
    store->strvs = g_new0 (gpointer, data->n_properties);
  if (store->strvs[i] == NULL)
    store->strvs[i] = g_variant_get_strv (store->values[i], NULL);

  return store->strvs[i];
}

static void
row_store_get_property (BfRowStore     *store,
                        BfRowClassData *data,
                        guint           prop_id,
                        GValue         *gvalue)
{
  GVariant *value;

  g_assert (prop_id >= 1 && prop_id <= data->n_properties);

  /* Like the generated proxies: an unknown value is the type's default. */
  value = store->values != NULL ? store->values[prop_id - 1] : NULL;
  if (value == NULL)
    return;

  switch (G_TYPE_FUNDAMENTAL (G_VALUE_TYPE (gvalue)))
    {
    case G_TYPE_STRING:
      g_value_set_string (gvalue, g_variant_get_string (value, NULL));
      break;
    case G_TYPE_BOOLEAN:
      g_value_set_boolean (gvalue, g_variant_get_boolean (value));
      break;
    case G_TYPE_UINT:
      g_value_set_uint (gvalue, g_variant_get_uint32 (value));
      break;
    case G_TYPE_INT:
      g_value_set_int (gvalue, g_variant_get_int32 (value));
      break;
    case G_TYPE_UINT64:
      g_value_set_uint64 (gvalue, g_variant_get_uint64 (value));
      break;
    case G_TYPE_INT64:
      g_value_set_int64 (gvalue, g_variant_get_int64 (value));
      break;
    case G_TYPE_DOUBLE:
      g_value_set_double (gvalue, g_variant_get_double (value));
      break;
    case G_TYPE_VARIANT:
      g_value_set_variant (gvalue, value);
      break;
    default:
      if (G_VALUE_HOLDS (gvalue, G_TYPE_STRV))
        g_value_take_boxed (gvalue, g_variant_dup_strv (value, NULL));
      else
        g_warning ("Cannot convert D-Bus property %s to %s",
                   data->info->properties[prop_id - 1]->name, G_VALUE_TYPE_NAME (gvalue));
    }
}

static inline const char *
value_string (GVariant *value)
{
  return value != NULL ? g_variant_get_string (value, NULL) : NULL;
}

static inline gboolean
value_boolean (GVariant *value)
{
  return value != NULL ? g_variant_get_boolean (value) : FALSE;
}

static inline guint
value_uint32 (GVariant *value)
{
  return value != NULL ? g_variant_get_uint32 (value) : 0;
}

static inline guint64
value_uint64 (GVariant *value)
{
  return value != NULL ? g_variant_get_uint64 (value) : 0;
}

static inline gint64
value_int64 (GVariant *value)
{
  return value != NULL ? g_variant_get_int64 (value) : 0;
}

/* ------------------------------------------------------------------------ */
/* BfPropertyRow: the base of both row types, a store of one interface */

typedef struct
{
  BfRowStore store;
} BfPropertyRowPrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (BfPropertyRow, bf_property_row, G_TYPE_OBJECT)

static inline BfRowClassData *
row_class_data (gpointer row)
{
  return BF_PROPERTY_ROW_GET_CLASS (row)->interface_data;
}

static inline BfRowStore *
row_store (gpointer row)
{
  BfPropertyRowPrivate *priv = bf_property_row_get_instance_private (row);

  return &priv->store;
}

static GVariant *
row_lookup (gpointer    row,
            const char *name)
{
  return row_store_lookup (row_store (row), row_class_data (row), name);
}

static const char * const *
row_lookup_strv (gpointer    row,
                 const char *name)
{
  return row_store_lookup_strv (row_store (row), row_class_data (row), name);
}

static void
row_fill (gpointer  row,
          GVariant *properties)
{
  row_store_fill (row_store (row), row_class_data (row), properties);
}

static void
row_update (gpointer            row,
            GVariant           *changed,
            const char * const *invalidated)
{
  row_store_update (row_store (row), row_class_data (row), G_OBJECT (row), changed, invalidated);
}

static void
bf_property_row_finalize (GObject *object)
{
  row_store_clear (row_store (object), row_class_data (object));

  G_OBJECT_CLASS (bf_property_row_parent_class)->finalize (object);
}

static void
bf_property_row_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  row_store_get_property (row_store (object), row_class_data (object), prop_id, value);
}

static void
bf_property_row_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  /* The daemon owns the values: the interface's properties are writable
   * only for skeletons. */
  G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
bf_property_row_class_init (BfPropertyRowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = bf_property_row_finalize;
}

static void
bf_property_row_init (BfPropertyRow *self)
{
}

/* For a subclass's class_init: the interface's properties become the
 * class's, as property ids 1…n (GObject does not inherit get_property and
 * set_property: property ids are per class).  The class is static, its
 * data never freed. */
static void
bf_property_row_class_bind (gpointer             klass,
                            GDBusInterfaceInfo  *info,
                            guint              (*override_properties) (GObjectClass *klass,
                                                                       guint         property_id_begin))
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  BfRowClassData *data = g_new0 (BfRowClassData, 1);

  object_class->get_property = bf_property_row_get_property;
  object_class->set_property = bf_property_row_set_property;
  override_properties (object_class, 1);
  row_class_data_init (data, object_class, info);
  BF_PROPERTY_ROW_CLASS (klass)->interface_data = data;
}

/* ------------------------------------------------------------------------ */
/* BfLatentWorkerRow: the LatentWorker interface of a worker */

struct _BfLatentWorkerRow
{
  BfPropertyRow parent_instance;
};

static void bf_latent_worker_row_iface_init (BfDBusLatentWorkerIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfLatentWorkerRow, bf_latent_worker_row, BF_TYPE_PROPERTY_ROW,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_LATENT_WORKER, bf_latent_worker_row_iface_init))

#define LATENT_VALUE(object, name) row_lookup (object, name)

static gboolean
latent_get_substantiated (BfDBusLatentWorker *object)
{
  return value_boolean (LATENT_VALUE (object, "Substantiated"));
}

static const char *
latent_get_state (BfDBusLatentWorker *object)
{
  return value_string (LATENT_VALUE (object, "State"));
}

static const char *
latent_get_driver (BfDBusLatentWorker *object)
{
  return value_string (LATENT_VALUE (object, "Driver"));
}

static gint64
latent_get_build_wait_timeout_usec (BfDBusLatentWorker *object)
{
  return value_int64 (LATENT_VALUE (object, "BuildWaitTimeoutUSec"));
}

static guint64
latent_get_substantiation_timeout_usec (BfDBusLatentWorker *object)
{
  return value_uint64 (LATENT_VALUE (object, "SubstantiationTimeoutUSec"));
}

static const char *
latent_get_last_error (BfDBusLatentWorker *object)
{
  return value_string (LATENT_VALUE (object, "LastError"));
}

static void
bf_latent_worker_row_iface_init (BfDBusLatentWorkerIface *iface)
{
  iface->get_substantiated = latent_get_substantiated;
  iface->get_state = latent_get_state;
  iface->get_driver = latent_get_driver;
  iface->get_build_wait_timeout_usec = latent_get_build_wait_timeout_usec;
  iface->get_substantiation_timeout_usec = latent_get_substantiation_timeout_usec;
  iface->get_last_error = latent_get_last_error;
}

static void
bf_latent_worker_row_class_init (BfLatentWorkerRowClass *klass)
{
  bf_property_row_class_bind (klass, bf_dbus_latent_worker_interface_info (),
                              bf_dbus_latent_worker_override_properties);
}

static void
bf_latent_worker_row_init (BfLatentWorkerRow *self)
{
}

/* ------------------------------------------------------------------------ */
/* BfWorkerRow */

struct _BfWorkerRow
{
  BfPropertyRow       parent_instance;

  BfLatentWorkerRow  *latent;
  /* the name's collation key, or NULL until asked for again */
  char               *name_key;

  GDBusConnection    *connection;
  char               *name_owner;  /* an interned GRefString, shared by all rows */
  char               *object_path;

  BfDBusWorker       *proxy;
  BfDBusLatentWorker *latent_proxy;

  /* made from only some of the properties (GetWorkers), and not completed
   * by bf_worker_row_fetch_all_async() since */
  gboolean            partial;
};

static void bf_worker_row_iface_init (BfDBusWorkerIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfWorkerRow, bf_worker_row, BF_TYPE_PROPERTY_ROW,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_WORKER, bf_worker_row_iface_init))

#define WORKER_VALUE(object, name) row_lookup (object, name)
#define WORKER_STRV(object, name) row_lookup_strv (object, name)

static const char *
worker_get_name (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "Name"));
}

static gboolean
worker_get_connected (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Connected"));
}

static gboolean
worker_get_graceful (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Graceful"));
}

static gboolean
worker_get_paused (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Paused"));
}

static const char *
worker_get_pause_reason (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "PauseReason"));
}

static gboolean
worker_get_missing (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Missing"));
}

static gboolean
worker_get_quarantined (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Quarantined"));
}

static guint64
worker_get_quarantine_until_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "QuarantineUntilUSec"));
}

static guint
worker_get_max_builds (BfDBusWorker *object)
{
  return value_uint32 (WORKER_VALUE (object, "MaxBuilds"));
}

static guint
worker_get_active_builds (BfDBusWorker *object)
{
  return value_uint32 (WORKER_VALUE (object, "ActiveBuilds"));
}

static const char * const *
worker_get_builders (BfDBusWorker *object)
{
  return WORKER_STRV (object, "Builders");
}

static const char *
worker_get_admin (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "Admin"));
}

static const char *
worker_get_host (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "Host"));
}

static const char *
worker_get_version (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "Version"));
}

static GVariant *
worker_get_info (BfDBusWorker *object)
{
  return WORKER_VALUE (object, "Info");
}

static GVariant *
worker_get_commands (BfDBusWorker *object)
{
  return WORKER_VALUE (object, "Commands");
}

static GVariant *
worker_get_properties (BfDBusWorker *object)
{
  return WORKER_VALUE (object, "Properties");
}

static const char *
worker_get_peer (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "Peer"));
}

static guint64
worker_get_connected_since_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "ConnectedSinceUSec"));
}

static guint64
worker_get_disconnected_since_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "DisconnectedSinceUSec"));
}

static guint64
worker_get_last_seen_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "LastSeenUSec"));
}

static guint64
worker_get_last_message_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "LastMessageUSec"));
}

static guint64
worker_get_missing_timeout_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "MissingTimeoutUSec"));
}

static const char * const *
worker_get_notify_on_missing (BfDBusWorker *object)
{
  return WORKER_STRV (object, "NotifyOnMissing");
}

static gboolean
worker_get_flapping (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Flapping"));
}

static gboolean
worker_get_unhealthy (BfDBusWorker *object)
{
  return value_boolean (WORKER_VALUE (object, "Unhealthy"));
}

static const char *
worker_get_health_reason (BfDBusWorker *object)
{
  return value_string (WORKER_VALUE (object, "HealthReason"));
}

static guint64
worker_get_response_time_usec (BfDBusWorker *object)
{
  return value_uint64 (WORKER_VALUE (object, "ResponseTimeUSec"));
}

static const char * const *
worker_get_labels (BfDBusWorker *object)
{
  return WORKER_STRV (object, "Labels");
}

static void
bf_worker_row_iface_init (BfDBusWorkerIface *iface)
{
  iface->get_name = worker_get_name;
  iface->get_connected = worker_get_connected;
  iface->get_graceful = worker_get_graceful;
  iface->get_paused = worker_get_paused;
  iface->get_pause_reason = worker_get_pause_reason;
  iface->get_missing = worker_get_missing;
  iface->get_quarantined = worker_get_quarantined;
  iface->get_quarantine_until_usec = worker_get_quarantine_until_usec;
  iface->get_max_builds = worker_get_max_builds;
  iface->get_active_builds = worker_get_active_builds;
  iface->get_builders = worker_get_builders;
  iface->get_admin = worker_get_admin;
  iface->get_host = worker_get_host;
  iface->get_version = worker_get_version;
  iface->get_info = worker_get_info;
  iface->get_commands = worker_get_commands;
  iface->get_properties = worker_get_properties;
  iface->get_peer = worker_get_peer;
  iface->get_connected_since_usec = worker_get_connected_since_usec;
  iface->get_disconnected_since_usec = worker_get_disconnected_since_usec;
  iface->get_last_message_usec = worker_get_last_message_usec;
  iface->get_last_seen_usec = worker_get_last_seen_usec;
  iface->get_missing_timeout_usec = worker_get_missing_timeout_usec;
  iface->get_notify_on_missing = worker_get_notify_on_missing;
  iface->get_flapping = worker_get_flapping;
  iface->get_unhealthy = worker_get_unhealthy;
  iface->get_health_reason = worker_get_health_reason;
  iface->get_response_time_usec = worker_get_response_time_usec;
  iface->get_labels = worker_get_labels;
}

static void
bf_worker_row_dispose (GObject *object)
{
  BfWorkerRow *self = BF_WORKER_ROW (object);

  g_clear_object (&self->latent);
  g_clear_object (&self->proxy);
  g_clear_object (&self->latent_proxy);

  G_OBJECT_CLASS (bf_worker_row_parent_class)->dispose (object);
}

static void
bf_worker_row_finalize (GObject *object)
{
  BfWorkerRow *self = BF_WORKER_ROW (object);

  g_clear_pointer (&self->name_key, g_free);
  g_clear_object (&self->connection);
  g_clear_pointer (&self->name_owner, g_ref_string_release);
  g_clear_pointer (&self->object_path, g_free);

  G_OBJECT_CLASS (bf_worker_row_parent_class)->finalize (object);
}

static void
bf_worker_row_class_init (BfWorkerRowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_worker_row_dispose;
  object_class->finalize = bf_worker_row_finalize;

  bf_property_row_class_bind (klass, bf_dbus_worker_interface_info (), bf_dbus_worker_override_properties);
}

static void
bf_worker_row_init (BfWorkerRow *self)
{
}

/**
 * bf_worker_row_new:
 * @connection: the bus
 * @name_owner: the daemon's unique name
 * @object_path: the worker's object path
 * @properties: the a{sv} of its org.buildfleet.Fleet1.Worker interface
 *
 * May be called in any thread; the row belongs to the caller until it
 * hands it to another.
 *
 * Returns: (transfer full): a new row
 */
BfWorkerRow *
bf_worker_row_new (GDBusConnection *connection,
                   const char      *name_owner,
                   const char      *object_path,
                   GVariant        *properties)
{
  BfWorkerRow *self;

  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection), NULL);
  g_return_val_if_fail (name_owner != NULL, NULL);
  g_return_val_if_fail (g_variant_is_object_path (object_path), NULL);
  g_return_val_if_fail (g_variant_is_of_type (properties, G_VARIANT_TYPE_VARDICT), NULL);

  self = g_object_new (BF_TYPE_WORKER_ROW, NULL);
  self->connection = g_object_ref (connection);
  self->name_owner = g_ref_string_new_intern (name_owner);
  self->object_path = g_strdup (object_path);
  row_fill (self, properties);

  /* Now, in the loading threads, rather than for the first sort on the
   * main thread. */
  bf_worker_row_get_name_key (self);

  return self;
}

const char *
bf_worker_row_get_object_path (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);
  return self->object_path;
}

/**
 * bf_worker_row_get_name_key:
 * @self: a #BfWorkerRow
 *
 * The key by which the list sorts names, the same as GtkStringSorter's
 * with #GtkStringSorter:ignore-case: strcmp() on two keys compares the
 * names as g_utf8_collate() compares their case-folded forms.
 *
 * Returns: (transfer none): the key
 */
const char *
bf_worker_row_get_name_key (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);

  if (self->name_key == NULL)
    {
      const char *name = worker_get_name (BF_DBUS_WORKER (self));
      g_autofree char *folded = g_utf8_casefold (name != NULL ? name : "", -1);

      self->name_key = g_utf8_collate_key (folded, -1);
    }

  return self->name_key;
}

/**
 * bf_worker_row_update:
 * @self: a #BfWorkerRow
 * @interface_name: the interface of a PropertiesChanged signal
 * @changed: its a{sv} of changed values
 * @invalidated: (nullable): its invalidated properties
 *
 * Applies the signal and notifies the properties whose values changed.
 */
void
bf_worker_row_update (BfWorkerRow        *self,
                      const char         *interface_name,
                      GVariant           *changed,
                      const char * const *invalidated)
{
  g_return_if_fail (BF_IS_WORKER_ROW (self));

  if (g_strcmp0 (interface_name, WORKER_INTERFACE) == 0)
    {
      g_autoptr(GVariant) name = g_variant_lookup_value (changed, "Name", NULL);

      if (name != NULL || (invalidated != NULL && g_strv_contains (invalidated, "Name")))
        g_clear_pointer (&self->name_key, g_free);
      row_update (self, changed, invalidated);
    }
  else if (g_strcmp0 (interface_name, LATENT_INTERFACE) == 0 && self->latent != NULL)
    row_update (self->latent, changed, invalidated);
}

/**
 * bf_worker_row_get_latent:
 *
 * Returns: (transfer none) (nullable): the LatentWorker interface, if the
 *   worker is latent
 */
BfLatentWorkerRow *
bf_worker_row_get_latent (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);
  return self->latent;
}

/**
 * bf_worker_row_set_latent:
 * @self: a #BfWorkerRow
 * @properties: (nullable): the a{sv} of the LatentWorker interface, or
 *   %NULL when the object lost it
 */
void
bf_worker_row_set_latent (BfWorkerRow *self,
                          GVariant    *properties)
{
  g_return_if_fail (BF_IS_WORKER_ROW (self));

  /* A new interface is a new object, as with an object manager client:
   * whoever follows the old one sees it go away. */
  g_clear_object (&self->latent);
  g_clear_object (&self->latent_proxy);

  if (properties != NULL)
    {
      self->latent = g_object_new (BF_TYPE_LATENT_WORKER_ROW, NULL);
      row_fill (self->latent, properties);
    }
}

/**
 * bf_worker_row_set_partial:
 * @self: a #BfWorkerRow
 *
 * Says that the row was made from only some of the worker's properties:
 * until bf_worker_row_fetch_all_async() read the others, their getters
 * return %NULL, 0 or %FALSE, as a proxy's do for a property it does not
 * know.
 */
void
bf_worker_row_set_partial (BfWorkerRow *self)
{
  g_return_if_fail (BF_IS_WORKER_ROW (self));
  self->partial = TRUE;
}

/* ------------------------------------------------------------------------ */
/* All the properties, for the details */

static void
get_all_cb (GObject      *object,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfWorkerRow *self = g_task_get_source_object (task);
  const char *interface_name = g_task_get_task_data (task);
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GVariant) values = NULL;
  GError *error = NULL;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (object), result, &error);
  if (reply == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  /* As a PropertiesChanged signal, so that whoever shows the row hears of
   * each value it did not have.  The reply is dispatched in its place
   * among the daemon's signals, so it is never older than the values they
   * set before it, and those that follow it apply after it. */
  g_variant_get (reply, "(@a{sv})", &values);
  bf_worker_row_update (self, interface_name, values, NULL);

  /* The LatentWorker interface may have gone meanwhile (or come again
   * from InterfacesAdded, with all its properties). */
  if (g_str_equal (interface_name, WORKER_INTERFACE) && self->latent != NULL)
    {
      /* Not in the call's arguments: those are evaluated in any order. */
      GCancellable *cancellable = g_task_get_cancellable (task);

      g_task_set_task_data (task, (gpointer) LATENT_INTERFACE, NULL);
      g_dbus_connection_call (self->connection, self->name_owner, self->object_path,
                              "org.freedesktop.DBus.Properties", "GetAll",
                              g_variant_new ("(s)", LATENT_INTERFACE),
                              G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START, -1,
                              cancellable, get_all_cb, g_steal_pointer (&task));
      return;
    }

  self->partial = FALSE;
  g_task_return_boolean (task, TRUE);
}

/**
 * bf_worker_row_fetch_all_async:
 * @self: a #BfWorkerRow
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when done
 * @user_data: for @callback
 *
 * Reads every property of a row that bf_worker_row_set_partial() marked,
 * with GetAll for its Worker and LatentWorker interfaces, and notifies
 * those whose values it learns.  A row made from all of them, or fetched
 * before, has nothing to read: PropertiesChanged keeps it current.
 */
void
bf_worker_row_fetch_all_async (BfWorkerRow         *self,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (BF_IS_WORKER_ROW (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, bf_worker_row_fetch_all_async);

  if (!self->partial)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  g_task_set_task_data (task, (gpointer) WORKER_INTERFACE, NULL);
  g_dbus_connection_call (self->connection, self->name_owner, self->object_path,
                          "org.freedesktop.DBus.Properties", "GetAll",
                          g_variant_new ("(s)", WORKER_INTERFACE),
                          G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START, -1,
                          cancellable, get_all_cb, g_steal_pointer (&task));
}

gboolean
bf_worker_row_fetch_all_finish (BfWorkerRow   *self,
                                GAsyncResult  *result,
                                GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ------------------------------------------------------------------------ */
/* Proxies for method calls */

/* The row holds the properties and follows their changes, so the proxies
 * load none and subscribe to nothing of their own; with a unique name they
 * make no D-Bus call before the first method call. */
#define BF_ROW_PROXY_FLAGS (G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES | \
                            G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS | \
                            G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START)

static void ensure_proxies_step (GTask *task);

static void
latent_proxy_new_cb (GObject      *object,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfWorkerRow *self = g_task_get_source_object (task);
  g_autoptr(BfDBusLatentWorker) proxy = NULL;
  GError *error = NULL;

  proxy = bf_dbus_latent_worker_proxy_new_finish (result, &error);
  if (proxy == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  /* The interface may have gone (or come again) meanwhile. */
  if (self->latent != NULL && self->latent_proxy == NULL)
    self->latent_proxy = g_steal_pointer (&proxy);

  ensure_proxies_step (g_steal_pointer (&task));
}

static void
worker_proxy_new_cb (GObject      *object,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfWorkerRow *self = g_task_get_source_object (task);
  g_autoptr(BfDBusWorker) proxy = NULL;
  GError *error = NULL;

  proxy = bf_dbus_worker_proxy_new_finish (result, &error);
  if (proxy == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  if (self->proxy == NULL)
    self->proxy = g_steal_pointer (&proxy);

  ensure_proxies_step (g_steal_pointer (&task));
}

static void
ensure_proxies_step (GTask *task)
{
  BfWorkerRow *self = g_task_get_source_object (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (self->proxy == NULL)
    bf_dbus_worker_proxy_new (self->connection, BF_ROW_PROXY_FLAGS, self->name_owner, self->object_path,
                              cancellable, worker_proxy_new_cb, task);
  else if (self->latent != NULL && self->latent_proxy == NULL)
    bf_dbus_latent_worker_proxy_new (self->connection, BF_ROW_PROXY_FLAGS, self->name_owner, self->object_path,
                                     cancellable, latent_proxy_new_cb, task);
  else
    {
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
}

/**
 * bf_worker_row_ensure_proxies_async:
 *
 * Creates the generated proxies of the worker (and of its LatentWorker
 * interface) for method calls, unless they exist already.
 */
void
bf_worker_row_ensure_proxies_async (BfWorkerRow         *self,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (BF_IS_WORKER_ROW (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, bf_worker_row_ensure_proxies_async);
  ensure_proxies_step (task);
}

gboolean
bf_worker_row_ensure_proxies_finish (BfWorkerRow   *self,
                                     GAsyncResult  *result,
                                     GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * bf_worker_row_get_proxy:
 *
 * Returns: (transfer none) (nullable): the worker's proxy, once
 *   bf_worker_row_ensure_proxies_async() created it
 */
BfDBusWorker *
bf_worker_row_get_proxy (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);
  return self->proxy;
}

/**
 * bf_worker_row_get_latent_proxy:
 *
 * Returns: (transfer none) (nullable): the proxy of the LatentWorker
 *   interface, once bf_worker_row_ensure_proxies_async() created it
 */
BfDBusLatentWorker *
bf_worker_row_get_latent_proxy (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);
  return self->latent_proxy;
}

/**
 * bf_worker_row_get_connection:
 *
 * Returns: (transfer none): the bus the row was read from
 */
GDBusConnection *
bf_worker_row_get_connection (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);
  return self->connection;
}

/**
 * bf_worker_row_get_name_owner:
 *
 * Returns: (transfer none): the daemon's unique name
 */
const char *
bf_worker_row_get_name_owner (BfWorkerRow *self)
{
  g_return_val_if_fail (BF_IS_WORKER_ROW (self), NULL);
  return self->name_owner;
}
