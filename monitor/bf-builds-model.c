/* bf-builds-model.c: the daemon's running and pending builds
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * A GListModel of BfBuildItems: the builds of the daemon the fleet model
 * follows, pending and running, in the order they were requested.  A build
 * leaves the model when it finishes.
 *
 * No GDBusObjectManagerClient (it would make a proxy of every worker too,
 * see bf-fleet-model.c): the builds are listed by introspecting
 * /org/buildfleet/Fleet1/builds and reading each one with GetAll, and kept
 * up to date from four subscriptions: InterfacesAdded and InterfacesRemoved
 * of the object manager (those under .../builds/: builds and their commands
 * come and go; GLib 2.74 cannot match an object path arg0 itself), and
 * PropertiesChanged of the Build and Command interfaces.  Owners are bus
 * names; the model asks the bus for their uid once and shows the user name.
 *
 * "changed" is emitted, once per main loop iteration, after any build
 * changed; views refresh their few rows in place then.
 */

#include "config.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <glib/gi18n.h>

#include "bf-builds-model.h"

#define BF_BUILDS_PATH    "/org/buildfleet/Fleet1/builds"
#define BF_BUILD_IFACE    "org.buildfleet.Fleet1.Build"
#define BF_COMMAND_IFACE  "org.buildfleet.Fleet1.Command"

/* BfBuildItem --------------------------------------------------------------- */

typedef struct
{
  guint64 index;
  char *name;
  char *state;
  int exit_code;
} BfCommandInfo;

struct _BfBuildItem
{
  GObject parent_instance;

  char *path;
  char *builder;
  char *worker_path;
  char *state;
  char *owner;
  char *owner_user;
  guint64 created_usec;
  guint64 started_usec;
  char *waiting_for;
  GHashTable *commands;   /* path -> BfCommandInfo */
};

G_DEFINE_FINAL_TYPE (BfBuildItem, bf_build_item, G_TYPE_OBJECT)

static void
command_info_free (BfCommandInfo *info)
{
  g_free (info->name);
  g_free (info->state);
  g_free (info);
}

static void
bf_build_item_finalize (GObject *object)
{
  BfBuildItem *self = BF_BUILD_ITEM (object);

  g_free (self->path);
  g_free (self->builder);
  g_free (self->worker_path);
  g_free (self->state);
  g_free (self->owner);
  g_free (self->owner_user);
  g_free (self->waiting_for);
  g_hash_table_unref (self->commands);

  G_OBJECT_CLASS (bf_build_item_parent_class)->finalize (object);
}

static void
bf_build_item_class_init (BfBuildItemClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bf_build_item_finalize;
}

static void
bf_build_item_init (BfBuildItem *self)
{
  self->commands = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) command_info_free);
  self->state = g_strdup ("pending");
}

const char *bf_build_item_get_path (BfBuildItem *self) { return self->path; }
const char *bf_build_item_get_builder (BfBuildItem *self) { return self->builder ? self->builder : ""; }
const char *bf_build_item_get_worker_path (BfBuildItem *self) { return self->worker_path ? self->worker_path : "/"; }
const char *bf_build_item_get_state (BfBuildItem *self) { return self->state; }
const char *bf_build_item_get_owner (BfBuildItem *self) { return self->owner ? self->owner : ""; }
guint64 bf_build_item_get_created_usec (BfBuildItem *self) { return self->created_usec; }
guint64 bf_build_item_get_started_usec (BfBuildItem *self) { return self->started_usec; }
const char *bf_build_item_get_waiting_for (BfBuildItem *self) { return self->waiting_for ? self->waiting_for : ""; }

/**
 * bf_build_item_get_owner_user:
 *
 * Returns: the owner's user name, or its bus name until (or if never) known
 */
const char *
bf_build_item_get_owner_user (BfBuildItem *self)
{
  return self->owner_user != NULL ? self->owner_user : bf_build_item_get_owner (self);
}

/**
 * bf_build_item_dup_command:
 *
 * Returns: (transfer full): the current command: the newest running one
 * ("shell"), else the last one with how it ended ("shell (exit 0)"), or ""
 */
char *
bf_build_item_dup_command (BfBuildItem *self)
{
  BfCommandInfo *running = NULL, *last = NULL;
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->commands);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      BfCommandInfo *info = value;

      if (info->name == NULL)
        continue;
      if (g_strcmp0 (info->state, "running") == 0 && (running == NULL || info->index > running->index))
        running = info;
      if (last == NULL || info->index > last->index)
        last = info;
    }
  if (running != NULL)
    return g_strdup (running->name);
  if (last != NULL)
    /* Translators: a finished remote command and its exit code, e.g. "shell (exit 0)" */
    return g_strdup_printf (_("%s (exit %d)"), last->name, last->exit_code);
  return g_strdup ("");
}

static gboolean
set_string (char       **field,
            GVariant    *value)
{
  const char *text;

  if (!g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) &&
      !g_variant_is_of_type (value, G_VARIANT_TYPE_OBJECT_PATH))
    return FALSE;
  text = g_variant_get_string (value, NULL);
  if (g_strcmp0 (*field, text) == 0)
    return FALSE;
  g_free (*field);
  *field = g_strdup (text);
  return TRUE;
}

static gboolean
set_uint64 (guint64  *field,
            GVariant *value)
{
  if (!g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64) || *field == g_variant_get_uint64 (value))
    return FALSE;
  *field = g_variant_get_uint64 (value);
  return TRUE;
}

/* Applies an a{sv} of Build properties; TRUE if Owner changed. */
static gboolean
bf_build_item_update (BfBuildItem *self,
                      GVariant    *properties)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;
  gboolean owner_changed = FALSE;

  g_variant_iter_init (&iter, properties);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      if (g_str_equal (key, "Builder"))
        set_string (&self->builder, value);
      else if (g_str_equal (key, "Worker"))
        set_string (&self->worker_path, value);
      else if (g_str_equal (key, "State"))
        set_string (&self->state, value);
      else if (g_str_equal (key, "Owner"))
        owner_changed |= set_string (&self->owner, value);
      else if (g_str_equal (key, "CreatedUSec"))
        set_uint64 (&self->created_usec, value);
      else if (g_str_equal (key, "StartedUSec"))
        set_uint64 (&self->started_usec, value);
      else if (g_str_equal (key, "WaitingFor"))
        set_string (&self->waiting_for, value);
    }
  return owner_changed;
}

static void
bf_build_item_update_command (BfBuildItem *self,
                              const char  *path,
                              GVariant    *properties)
{
  BfCommandInfo *info = g_hash_table_lookup (self->commands, path);
  const char *slash = strrchr (path, '/');
  GVariantIter iter;
  const char *key;
  GVariant *value;

  if (info == NULL)
    {
      info = g_new0 (BfCommandInfo, 1);
      info->index = slash != NULL ? g_ascii_strtoull (slash + 1, NULL, 10) : 0;
      g_hash_table_insert (self->commands, g_strdup (path), info);
    }
  g_variant_iter_init (&iter, properties);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      if (g_str_equal (key, "Name"))
        set_string (&info->name, value);
      else if (g_str_equal (key, "State"))
        set_string (&info->state, value);
      else if (g_str_equal (key, "ExitCode") && g_variant_is_of_type (value, G_VARIANT_TYPE_INT32))
        info->exit_code = g_variant_get_int32 (value);
    }
}

/* BfBuildsModel -------------------------------------------------------------- */

struct _BfBuildsModel
{
  GObject parent_instance;

  BfFleetModel *fleet;
  GDBusConnection *connection;
  char *name_owner;
  GCancellable *cancellable;
  guint subscriptions[4];

  GPtrArray *items;         /* BfBuildItem, in the order requested */
  GHashTable *by_path;      /* path -> BfBuildItem (weak: items owns) */
  GHashTable *users;        /* bus name -> user name */
  guint changed_source;
};

static void list_model_iface_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfBuildsModel, bf_builds_model, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL, list_model_iface_init))

enum {
  SIGNAL_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static GType
get_item_type (GListModel *model)
{
  return BF_TYPE_BUILD_ITEM;
}

static guint
get_n_items (GListModel *model)
{
  return BF_BUILDS_MODEL (model)->items->len;
}

static gpointer
get_item (GListModel *model,
          guint       position)
{
  BfBuildsModel *self = BF_BUILDS_MODEL (model);

  if (position >= self->items->len)
    return NULL;
  return g_object_ref (g_ptr_array_index (self->items, position));
}

static void
list_model_iface_init (GListModelInterface *iface)
{
  iface->get_item_type = get_item_type;
  iface->get_n_items = get_n_items;
  iface->get_item = get_item;
}

static gboolean
changed_cb (gpointer user_data)
{
  BfBuildsModel *self = BF_BUILDS_MODEL (user_data);

  self->changed_source = 0;
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
  return G_SOURCE_REMOVE;
}

static void
queue_changed (BfBuildsModel *self)
{
  if (self->changed_source != 0)
    return;
  self->changed_source = g_idle_add (changed_cb, self);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, self->changed_source),
                            "[buildfleet-monitor] builds changed");
}

static guint64
build_number (const char *path)
{
  const char *slash = strrchr (path, '/');

  return slash != NULL ? g_ascii_strtoull (slash + 1, NULL, 10) : 0;
}

static void
remove_build (BfBuildsModel *self,
              const char    *path)
{
  BfBuildItem *item = g_hash_table_lookup (self->by_path, path);
  guint position;

  if (item == NULL || !g_ptr_array_find (self->items, item, &position))
    return;
  g_hash_table_remove (self->by_path, path);
  g_ptr_array_remove_index (self->items, position);
  g_list_model_items_changed (G_LIST_MODEL (self), position, 1, 0);
  queue_changed (self);
}

typedef struct
{
  BfBuildsModel *model;   /* weak */
  char *owner;
} UserLookup;

static void
user_lookup_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  UserLookup *lookup = user_data;
  g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, NULL);
  BfBuildsModel *self = lookup->model;

  if (self != NULL && reply != NULL)
    {
      guint32 uid;
      struct passwd *pw;
      char *name;

      g_variant_get (reply, "(u)", &uid);
      pw = getpwuid (uid);
      /* Translators: a user with no name, by number */
      name = pw != NULL ? g_strdup (pw->pw_name) : g_strdup_printf (_("uid %u"), uid);
      g_hash_table_replace (self->users, g_strdup (lookup->owner), name);
      for (guint i = 0; i < self->items->len; i++)
        {
          BfBuildItem *item = g_ptr_array_index (self->items, i);

          if (g_strcmp0 (item->owner, lookup->owner) == 0)
            {
              g_free (item->owner_user);
              item->owner_user = g_strdup (name);
            }
        }
      queue_changed (self);
    }
  if (self != NULL)
    g_object_remove_weak_pointer (G_OBJECT (self), (gpointer *) &lookup->model);
  g_free (lookup->owner);
  g_free (lookup);
}

static void
resolve_owner (BfBuildsModel *self,
               BfBuildItem   *item)
{
  const char *user;
  UserLookup *lookup;

  if (item->owner == NULL || item->owner[0] == '\0')
    return;
  user = g_hash_table_lookup (self->users, item->owner);
  if (user != NULL)
    {
      g_free (item->owner_user);
      item->owner_user = g_strdup (user);
      return;
    }
  lookup = g_new0 (UserLookup, 1);
  lookup->model = self;
  lookup->owner = g_strdup (item->owner);
  g_object_add_weak_pointer (G_OBJECT (self), (gpointer *) &lookup->model);
  g_dbus_connection_call (self->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "GetConnectionUnixUser",
                          g_variant_new ("(s)", item->owner), G_VARIANT_TYPE ("(u)"),
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, user_lookup_cb, lookup);
}

/* Adds or updates a build from (some of) its properties. */
static void
update_build (BfBuildsModel *self,
              const char    *path,
              GVariant      *properties)
{
  BfBuildItem *item = g_hash_table_lookup (self->by_path, path);
  gboolean added = FALSE;

  if (item == NULL)
    {
      guint64 number = build_number (path);
      guint position = self->items->len;

      item = g_object_new (BF_TYPE_BUILD_ITEM, NULL);
      item->path = g_strdup (path);
      while (position > 0 &&
             build_number (((BfBuildItem *) g_ptr_array_index (self->items, position - 1))->path) > number)
        position--;
      g_ptr_array_insert (self->items, position, item);
      g_hash_table_insert (self->by_path, item->path, item);
      added = TRUE;
    }
  if (bf_build_item_update (item, properties))
    resolve_owner (self, item);

  if (g_str_equal (item->state, "finished"))
    {
      remove_build (self, path);
      return;
    }
  if (added)
    {
      guint position;

      g_ptr_array_find (self->items, item, &position);
      g_list_model_items_changed (G_LIST_MODEL (self), position, 0, 1);
    }
  queue_changed (self);
}

/* The build a command path belongs to: .../builds/N/commands/M */
static BfBuildItem *
build_of_command (BfBuildsModel *self,
                  const char    *command_path)
{
  const char *marker = strstr (command_path, "/commands/");
  g_autofree char *build_path = NULL;

  if (marker == NULL)
    return NULL;
  build_path = g_strndup (command_path, marker - command_path);
  return g_hash_table_lookup (self->by_path, build_path);
}

static void
update_command (BfBuildsModel *self,
                const char    *path,
                GVariant      *properties)
{
  BfBuildItem *item = build_of_command (self, path);

  if (item == NULL)
    return;
  bf_build_item_update_command (item, path, properties);
  queue_changed (self);
}

/* Reading what is there ------------------------------------------------------ */

typedef struct
{
  BfBuildsModel *model;
  char *path;
  gboolean command;
} GetAllData;

static void
get_all_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  GetAllData *data = user_data;
  g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, NULL);

  if (reply != NULL)
    {
      g_autoptr(GVariant) properties = g_variant_get_child_value (reply, 0);

      if (data->command)
        update_command (data->model, data->path, properties);
      else
        update_build (data->model, data->path, properties);
    }
  g_object_unref (data->model);
  g_free (data->path);
  g_free (data);
}

static void
get_all (BfBuildsModel *self,
         const char    *path,
         gboolean       command)
{
  GetAllData *data = g_new0 (GetAllData, 1);

  data->model = g_object_ref (self);
  data->path = g_strdup (path);
  data->command = command;
  g_dbus_connection_call (self->connection, self->name_owner, path, "org.freedesktop.DBus.Properties",
                          "GetAll", g_variant_new ("(s)", command ? BF_COMMAND_IFACE : BF_BUILD_IFACE),
                          G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, -1,
                          self->cancellable, get_all_cb, data);
}

static void introspect (BfBuildsModel *self, const char *path, int depth);

typedef struct
{
  BfBuildsModel *model;
  char *path;
  int depth;        /* 0: builds, 1: one build, 2: its commands */
} IntrospectData;

static void
introspect_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  IntrospectData *data = user_data;
  g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, NULL);
  g_autoptr(GDBusNodeInfo) node = NULL;
  const char *xml;

  if (reply != NULL)
    {
      g_variant_get (reply, "(&s)", &xml);
      node = g_dbus_node_info_new_for_xml (xml, NULL);
    }
  for (guint i = 0; node != NULL && node->nodes != NULL && node->nodes[i] != NULL; i++)
    {
      g_autofree char *child = g_strconcat (data->path, "/", node->nodes[i]->path, NULL);

      if (data->depth == 0)
        {
          get_all (data->model, child, FALSE);
          introspect (data->model, child, 1);
        }
      else if (data->depth == 1 && g_str_equal (node->nodes[i]->path, "commands"))
        introspect (data->model, child, 2);
      else if (data->depth == 2)
        get_all (data->model, child, TRUE);
    }
  g_object_unref (data->model);
  g_free (data->path);
  g_free (data);
}

static void
introspect (BfBuildsModel *self,
            const char    *path,
            int            depth)
{
  IntrospectData *data = g_new0 (IntrospectData, 1);

  data->model = g_object_ref (self);
  data->path = g_strdup (path);
  data->depth = depth;
  g_dbus_connection_call (self->connection, self->name_owner, path, "org.freedesktop.DBus.Introspectable",
                          "Introspect", NULL, G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, -1,
                          self->cancellable, introspect_cb, data);
}

/* Following changes ------------------------------------------------------------ */

static void
signal_cb (GDBusConnection *connection,
           const char      *sender,
           const char      *object_path,
           const char      *interface_name,
           const char      *signal_name,
           GVariant        *parameters,
           gpointer         user_data)
{
  BfBuildsModel *self = BF_BUILDS_MODEL (user_data);

  if (g_str_equal (signal_name, "PropertiesChanged") &&
      g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")))
    {
      const char *iface;
      g_autoptr(GVariant) changed = NULL;

      g_variant_get (parameters, "(&s@a{sv}@as)", &iface, &changed, NULL);
      /* A build not (or no longer) in the model: read it whole, it may be
       * finished (its Result changing) or new. */
      if (g_str_equal (iface, BF_BUILD_IFACE) && !g_hash_table_contains (self->by_path, object_path))
        get_all (self, object_path, FALSE);
      else if (g_str_equal (iface, BF_BUILD_IFACE))
        update_build (self, object_path, changed);
      else if (g_str_equal (iface, BF_COMMAND_IFACE))
        update_command (self, object_path, changed);
    }
  else if (g_str_equal (signal_name, "InterfacesAdded") &&
           g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oa{sa{sv}})")))
    {
      const char *path;
      g_autoptr(GVariant) interfaces = NULL;
      g_autoptr(GVariant) build = NULL;
      g_autoptr(GVariant) command = NULL;

      g_variant_get (parameters, "(&o@a{sa{sv}})", &path, &interfaces);
      if (!g_str_has_prefix (path, BF_BUILDS_PATH "/"))
        return;
      build = g_variant_lookup_value (interfaces, BF_BUILD_IFACE, G_VARIANT_TYPE ("a{sv}"));
      command = g_variant_lookup_value (interfaces, BF_COMMAND_IFACE, G_VARIANT_TYPE ("a{sv}"));
      if (build != NULL)
        update_build (self, path, build);
      if (command != NULL)
        update_command (self, path, command);
    }
  else if (g_str_equal (signal_name, "InterfacesRemoved") &&
           g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oas)")))
    {
      const char *path;

      g_variant_get (parameters, "(&o@as)", &path, NULL);
      if (g_hash_table_contains (self->by_path, path))
        remove_build (self, path);
      else
        {
          BfBuildItem *item = build_of_command (self, path);

          if (item != NULL && g_hash_table_remove (item->commands, path))
            queue_changed (self);
        }
    }
}

static void
bf_builds_model_stop (BfBuildsModel *self)
{
  guint n = self->items->len;

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  for (guint i = 0; i < G_N_ELEMENTS (self->subscriptions); i++)
    if (self->subscriptions[i] != 0)
      {
        g_dbus_connection_signal_unsubscribe (self->connection, self->subscriptions[i]);
        self->subscriptions[i] = 0;
      }
  g_clear_object (&self->connection);
  g_clear_pointer (&self->name_owner, g_free);
  g_hash_table_remove_all (self->by_path);
  g_ptr_array_set_size (self->items, 0);
  if (n > 0)
    {
      g_list_model_items_changed (G_LIST_MODEL (self), 0, n, 0);
      queue_changed (self);
    }
}

static void
bf_builds_model_start (BfBuildsModel   *self,
                       GDBusConnection *connection,
                       const char      *name_owner)
{
  self->connection = g_object_ref (connection);
  self->name_owner = g_strdup (name_owner);
  self->cancellable = g_cancellable_new ();

  self->subscriptions[0] =
    g_dbus_connection_signal_subscribe (connection, name_owner, "org.freedesktop.DBus.ObjectManager",
                                        "InterfacesAdded", "/org/buildfleet/Fleet1", NULL,
                                        G_DBUS_SIGNAL_FLAGS_NONE, signal_cb, self, NULL);
  self->subscriptions[1] =
    g_dbus_connection_signal_subscribe (connection, name_owner, "org.freedesktop.DBus.ObjectManager",
                                        "InterfacesRemoved", "/org/buildfleet/Fleet1", NULL,
                                        G_DBUS_SIGNAL_FLAGS_NONE, signal_cb, self, NULL);
  self->subscriptions[2] =
    g_dbus_connection_signal_subscribe (connection, name_owner, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", NULL, BF_BUILD_IFACE,
                                        G_DBUS_SIGNAL_FLAGS_NONE, signal_cb, self, NULL);
  self->subscriptions[3] =
    g_dbus_connection_signal_subscribe (connection, name_owner, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", NULL, BF_COMMAND_IFACE,
                                        G_DBUS_SIGNAL_FLAGS_NONE, signal_cb, self, NULL);
  introspect (self, BF_BUILDS_PATH, 0);
}

static void
fleet_status_cb (BfBuildsModel *self)
{
  GDBusConnection *connection = bf_fleet_model_get_connection (self->fleet);
  const char *owner = bf_fleet_model_get_name_owner (self->fleet);

  if (bf_fleet_model_get_status (self->fleet) == BF_FLEET_STATUS_READY && connection != NULL && owner != NULL)
    {
      if (self->connection == connection && g_strcmp0 (self->name_owner, owner) == 0)
        return;
      bf_builds_model_stop (self);
      bf_builds_model_start (self, connection, owner);
    }
  else
    bf_builds_model_stop (self);
}

static void
bf_builds_model_dispose (GObject *object)
{
  BfBuildsModel *self = BF_BUILDS_MODEL (object);

  if (self->fleet != NULL)
    g_signal_handlers_disconnect_by_data (self->fleet, self);
  if (self->items != NULL)
    bf_builds_model_stop (self);
  g_clear_handle_id (&self->changed_source, g_source_remove);
  g_clear_object (&self->fleet);

  G_OBJECT_CLASS (bf_builds_model_parent_class)->dispose (object);
}

static void
bf_builds_model_finalize (GObject *object)
{
  BfBuildsModel *self = BF_BUILDS_MODEL (object);

  g_ptr_array_unref (self->items);
  g_hash_table_unref (self->by_path);
  g_hash_table_unref (self->users);

  G_OBJECT_CLASS (bf_builds_model_parent_class)->finalize (object);
}

static void
bf_builds_model_class_init (BfBuildsModelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_builds_model_dispose;
  object_class->finalize = bf_builds_model_finalize;

  /**
   * BfBuildsModel::changed:
   *
   * Something about the builds changed (at most once per main loop
   * iteration).
   */
  signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
bf_builds_model_init (BfBuildsModel *self)
{
  self->items = g_ptr_array_new_with_free_func (g_object_unref);
  self->by_path = g_hash_table_new (g_str_hash, g_str_equal);
  self->users = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

/**
 * bf_builds_model_new:
 * @fleet: the fleet whose daemon to follow
 */
BfBuildsModel *
bf_builds_model_new (BfFleetModel *fleet)
{
  BfBuildsModel *self = g_object_new (BF_TYPE_BUILDS_MODEL, NULL);

  self->fleet = g_object_ref (fleet);
  g_signal_connect_object (fleet, "notify::status", G_CALLBACK (fleet_status_cb), self, G_CONNECT_SWAPPED);
  fleet_status_cb (self);
  return self;
}

/**
 * bf_builds_model_get_fleet:
 *
 * Returns: (transfer none): the fleet
 */
BfFleetModel *
bf_builds_model_get_fleet (BfBuildsModel *self)
{
  return self->fleet;
}
