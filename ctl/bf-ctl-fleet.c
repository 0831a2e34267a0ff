/* bf-ctl-fleet.c: status, list and show — reading the fleet
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-ctl.h"

/* What list asks the daemon for: a light GetWorkerPage. */
static const char * const list_properties[] = {
  "Name", "Connected", "Paused", "PauseReason", "PausedBy", "Missing", "Quarantined",
  "Flapping", "Graceful", "ActiveBuilds", "MaxBuilds", "Builders", "Labels", "Protocol",
  "ConnectedSinceUSec", "DisconnectedSinceUSec", "State", NULL
};

/* The state words a worker is in, as `list --state=` takes them. */
static const char * const state_words[] = {
  "connected", "disconnected", "missing", "paused", "quarantined", "flapping", "graceful",
  "busy", "idle", "latent", NULL
};

static gboolean
lookup_bool (GVariant   *worker,
             const char *key)
{
  gboolean b = FALSE;

  g_variant_lookup (worker, key, "b", &b);
  return b;
}

static guint32
lookup_uint (GVariant   *worker,
             const char *key)
{
  guint32 u = 0;

  g_variant_lookup (worker, key, "u", &u);
  return u;
}

static const char *
lookup_string (GVariant   *worker,
               const char *key)
{
  const char *s = "";

  g_variant_lookup (worker, key, "&s", &s);
  return s;
}

static guint64
lookup_time (GVariant   *worker,
             const char *key)
{
  guint64 t = 0;

  g_variant_lookup (worker, key, "t", &t);
  return t;
}

GStrv
bf_ctl_worker_states (GVariant *worker)
{
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  gboolean connected = lookup_bool (worker, "Connected");

  g_strv_builder_add (b, connected ? "connected" : "disconnected");
  if (connected)
    g_strv_builder_add (b, lookup_uint (worker, "ActiveBuilds") > 0 ? "busy" : "idle");
  if (lookup_bool (worker, "Missing"))
    g_strv_builder_add (b, "missing");
  if (lookup_bool (worker, "Paused"))
    g_strv_builder_add (b, "paused");
  if (lookup_bool (worker, "Quarantined"))
    g_strv_builder_add (b, "quarantined");
  if (lookup_bool (worker, "Flapping"))
    g_strv_builder_add (b, "flapping");
  if (lookup_bool (worker, "Graceful"))
    g_strv_builder_add (b, "graceful");
  if (lookup_bool (worker, "Latent"))
    g_strv_builder_add (b, "latent");
  return g_strv_builder_end (b);
}

static const char *
state_colour (GStrv states)
{
  if (g_strv_contains ((const char * const *) states, "missing") ||
      g_strv_contains ((const char * const *) states, "quarantined") ||
      g_strv_contains ((const char * const *) states, "flapping"))
    return "bad";
  if (g_strv_contains ((const char * const *) states, "paused") ||
      g_strv_contains ((const char * const *) states, "graceful"))
    return "warn";
  if (g_strv_contains ((const char * const *) states, "connected"))
    return "good";
  return NULL;
}

/* A worker's a{sv} plus "States", as --json prints it. */
static void
append_worker_json (GString  *out,
                    GVariant *worker)
{
  g_auto(GStrv) states = bf_ctl_worker_states (worker);
  GVariantIter iter;
  const char *key;
  GVariant *value;
  gboolean first = TRUE;

  g_string_append_c (out, '{');
  g_variant_iter_init (&iter, worker);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      if (!first)
        g_string_append_c (out, ',');
      first = FALSE;
      bf_ctl_json_append_string (out, key);
      g_string_append_c (out, ':');
      bf_ctl_json_append (out, value);
      g_variant_unref (value);
    }
  g_string_append (out, ",\"States\":[");
  for (guint i = 0; states[i]; i++)
    {
      if (i > 0)
        g_string_append_c (out, ',');
      bf_ctl_json_append_string (out, states[i]);
    }
  g_string_append (out, "]}");
}

static gboolean
worker_matches (BfCtl    *ctl,
                GVariant *worker)
{
  if (ctl->state)
    {
      g_auto(GStrv) states = bf_ctl_worker_states (worker);

      if (!g_strv_contains ((const char * const *) states, ctl->state))
        return FALSE;
    }
  if (ctl->builder)
    {
      g_autofree const char **builders = NULL;

      if (!g_variant_lookup (worker, "Builders", "^a&s", &builders) ||
          !g_strv_contains (builders, ctl->builder))
        return FALSE;
    }
  for (guint i = 0; ctl->labels && ctl->labels[i]; i++)
    {
      g_autofree const char **labels = NULL;

      if (!g_variant_lookup (worker, "Labels", "^a&s", &labels) ||
          !g_strv_contains (labels, ctl->labels[i]))
        return FALSE;
    }
  return TRUE;
}

int
bf_ctl_cmd_list (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) workers = NULL;
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  guint shown = 0;

  if (ctl->state && !g_strv_contains (state_words, ctl->state))
    {
      g_autofree char *known = g_strjoinv (", ", (char **) state_words);

      g_printerr ("buildfleetctl: --state=%s: not a state; one of %s\n", ctl->state, known);
      return BF_CTL_EXIT_USAGE;
    }
  workers = bf_ctl_fetch_workers (ctl, list_properties, NULL, &error);
  if (workers == NULL)
    return bf_ctl_error (ctl, error, "Cannot list the workers");

  if (ctl->json)
    {
      g_autoptr(GString) out = g_string_new ("[");

      for (guint i = 0; i < workers->len; i++)
        {
          GVariant *w = g_ptr_array_index (workers, i);

          if (!worker_matches (ctl, w))
            continue;
          if (shown++ > 0)
            g_string_append_c (out, ',');
          append_worker_json (out, w);
        }
      g_string_append (out, "]\n");
      bf_ctl_write_all (1, out->str, out->len);
      return BF_CTL_EXIT_OK;
    }

  g_ptr_array_add (rows, g_strsplit ("NAME|STATE|BUILDS|PROTOCOL|SINCE|BUILDERS", "|", -1));
  for (guint i = 0; i < workers->len; i++)
    {
      GVariant *w = g_ptr_array_index (workers, i);
      g_auto(GStrv) states = NULL;
      g_autofree char *state = NULL, *since = NULL, *builders = NULL;
      g_autofree const char **b = NULL;
      const char *colour;
      char **row;
      guint32 max;

      if (!worker_matches (ctl, w))
        continue;
      shown++;
      states = bf_ctl_worker_states (w);
      colour = state_colour (states);
      state = g_strjoinv (",", states);
      since = bf_ctl_format_ago (lookup_bool (w, "Connected") ? lookup_time (w, "ConnectedSinceUSec")
                                                              : lookup_time (w, "DisconnectedSinceUSec"));
      if (!g_variant_lookup (w, "Builders", "^a&s", &b))
        b = g_new0 (const char *, 1);
      builders = b[0] ? g_strjoinv (",", (char **) b) : g_strdup ("-");
      max = lookup_uint (w, "MaxBuilds");
      row = g_new0 (char *, 7);
      row[0] = g_strdup (lookup_string (w, "Name"));
      row[1] = colour ? g_strdup_printf ("\x01%s\x02%s", colour, state) : g_strdup (state);
      row[2] = max ? g_strdup_printf ("%u/%u", lookup_uint (w, "ActiveBuilds"), max)
                   : g_strdup_printf ("%u/-", lookup_uint (w, "ActiveBuilds"));
      row[3] = g_strdup (*lookup_string (w, "Protocol") ? lookup_string (w, "Protocol") : "-");
      row[4] = g_steal_pointer (&since);
      row[5] = g_steal_pointer (&builders);
      g_ptr_array_add (rows, row);
    }
  bf_ctl_pager_start (ctl);
  bf_ctl_print_table (ctl, rows, 6);
  if (!ctl->no_legend)
    g_print ("\n%u worker%s listed.\n", shown, shown == 1 ? "" : "s");
  bf_ctl_pager_end (ctl);
  return BF_CTL_EXIT_OK;
}

static const char * const status_properties[] = {
  "Name", "Connected", "Missing", "Paused", "PauseReason", "PausedBy", "Quarantined",
  "QuarantineUntilUSec", "Flapping", "Graceful", "ActiveBuilds", "DisconnectedSinceUSec", NULL
};

int
bf_ctl_cmd_status (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfDBusManager) manager = NULL;
  g_autoptr(GPtrArray) workers = NULL;
  g_autoptr(GPtrArray) builds = NULL;
  g_autoptr(GPtrArray) missing = g_ptr_array_new ();
  g_autoptr(GPtrArray) paused = g_ptr_array_new ();
  g_autoptr(GPtrArray) quarantined = g_ptr_array_new ();
  g_autoptr(GPtrArray) flapping = g_ptr_array_new ();
  guint connected = 0, graceful = 0, running = 0, pending = 0;
  g_autofree char *listen = NULL;
  g_autofree char *listen_pb = NULL;
  g_autofree char *owner = NULL;

  manager = bf_ctl_manager (ctl, &error);
  if (manager == NULL)
    return bf_ctl_error (ctl, error, NULL);
  owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (manager));
  if (owner == NULL)
    {
      g_printerr ("buildfleetctl: buildfleetd is not running on the %s (nobody owns %s)\n",
                  ctl->address ? "bus at that address" : ctl->session ? "session bus" : "system bus",
                  BF_CTL_BUS_NAME);
      return BF_CTL_EXIT_UNAVAILABLE;
    }
  workers = bf_ctl_fetch_workers (ctl, status_properties, NULL, &error);
  if (workers == NULL)
    return bf_ctl_error (ctl, error, "Cannot list the workers");
  builds = bf_ctl_fetch_builds (ctl, &error);
  if (builds == NULL)
    return bf_ctl_error (ctl, error, "Cannot list the builds");

  for (guint i = 0; i < workers->len; i++)
    {
      GVariant *w = g_ptr_array_index (workers, i);

      connected += lookup_bool (w, "Connected");
      graceful += lookup_bool (w, "Graceful");
      if (lookup_bool (w, "Missing"))
        g_ptr_array_add (missing, w);
      if (lookup_bool (w, "Paused"))
        g_ptr_array_add (paused, w);
      if (lookup_bool (w, "Quarantined"))
        g_ptr_array_add (quarantined, w);
      if (lookup_bool (w, "Flapping"))
        g_ptr_array_add (flapping, w);
    }
  for (guint i = 0; i < builds->len; i++)
    {
      const char *state = "";

      g_variant_lookup (g_ptr_array_index (builds, i), "State", "&s", &state);
      running += g_str_equal (state, "running");
      pending += g_str_equal (state, "pending");
    }

  if (ctl->json)
    {
      g_autoptr(GString) out = g_string_new ("{\"Version\":");
      GPtrArray *lists[] = { missing, paused, quarantined, flapping };
      const char *names[] = { "Missing", "Paused", "Quarantined", "Flapping" };
      const char * const *endpoints = bf_dbus_manager_get_listen (manager);
      const char * const *pb_endpoints = bf_dbus_manager_get_listen_pb (manager);

      bf_ctl_json_append_string (out, bf_dbus_manager_get_version (manager) ?: "");
      g_string_append (out, ",\"Listen\":[");
      for (guint i = 0; endpoints && endpoints[i]; i++)
        {
          if (i > 0)
            g_string_append_c (out, ',');
          bf_ctl_json_append_string (out, endpoints[i]);
        }
      g_string_append (out, "],\"ListenPB\":[");
      for (guint i = 0; pb_endpoints && pb_endpoints[i]; i++)
        {
          if (i > 0)
            g_string_append_c (out, ',');
          bf_ctl_json_append_string (out, pb_endpoints[i]);
        }
      g_string_append_printf (out, "],\"Workers\":%u,\"WorkersConnected\":%u,\"WorkersMissing\":%u,"
                              "\"WorkersPaused\":%u,\"WorkersQuarantined\":%u,\"WorkersFlapping\":%u,"
                              "\"WorkersGraceful\":%u,\"BuildsRunning\":%u,\"BuildsPending\":%u",
                              workers->len, connected, missing->len, paused->len, quarantined->len,
                              flapping->len, graceful, running, pending);
      for (guint l = 0; l < G_N_ELEMENTS (lists); l++)
        {
          g_string_append_printf (out, ",\"%s\":[", names[l]);
          for (guint i = 0; i < lists[l]->len; i++)
            {
              if (i > 0)
                g_string_append_c (out, ',');
              bf_ctl_json_append_string (out, lookup_string (g_ptr_array_index (lists[l], i), "Name"));
            }
          g_string_append_c (out, ']');
        }
      g_string_append (out, "}\n");
      bf_ctl_write_all (1, out->str, out->len);
      return BF_CTL_EXIT_OK;
    }

  bf_ctl_pager_start (ctl);
  listen = g_strjoinv (", ", (char **) bf_dbus_manager_get_listen (manager));
  listen_pb = g_strjoinv (", ", (char **) bf_dbus_manager_get_listen_pb (manager));
  g_print ("%sbuildfleetd %s%s, listening on %s (msgpack), %s (PB)\n", bf_ctl_colour (ctl, "bold"),
           bf_dbus_manager_get_version (manager) ?: "", bf_ctl_colour (ctl, "normal"),
           *listen ? listen : "nothing", *listen_pb ? listen_pb : "nothing");
  g_print ("    Workers: %u configured, %s%u connected%s, %s%u missing%s, %s%u paused%s, "
           "%s%u quarantined%s, %s%u flapping%s, %u graceful\n",
           workers->len,
           bf_ctl_colour (ctl, connected ? "good" : "normal"), connected, bf_ctl_colour (ctl, "normal"),
           bf_ctl_colour (ctl, missing->len ? "bad" : "normal"), missing->len, bf_ctl_colour (ctl, "normal"),
           bf_ctl_colour (ctl, paused->len ? "warn" : "normal"), paused->len, bf_ctl_colour (ctl, "normal"),
           bf_ctl_colour (ctl, quarantined->len ? "bad" : "normal"), quarantined->len, bf_ctl_colour (ctl, "normal"),
           bf_ctl_colour (ctl, flapping->len ? "bad" : "normal"), flapping->len, bf_ctl_colour (ctl, "normal"),
           graceful);
  g_print ("     Builds: %u running, %u pending\n", running, pending);
  for (guint i = 0; i < missing->len; i++)
    {
      GVariant *w = g_ptr_array_index (missing, i);
      g_autofree char *ago = bf_ctl_format_ago (lookup_time (w, "DisconnectedSinceUSec"));

      g_print ("    %sMissing:%s %s (disconnected %s)\n", bf_ctl_colour (ctl, "bad"),
               bf_ctl_colour (ctl, "normal"), lookup_string (w, "Name"), ago);
    }
  for (guint i = 0; i < paused->len; i++)
    {
      GVariant *w = g_ptr_array_index (paused, i);

      g_print ("     %sPaused:%s %s (by %s: %s)\n", bf_ctl_colour (ctl, "warn"),
               bf_ctl_colour (ctl, "normal"), lookup_string (w, "Name"),
               *lookup_string (w, "PausedBy") ? lookup_string (w, "PausedBy") : "?",
               *lookup_string (w, "PauseReason") ? lookup_string (w, "PauseReason") : "no reason given");
    }
  for (guint i = 0; i < quarantined->len; i++)
    {
      GVariant *w = g_ptr_array_index (quarantined, i);
      g_autofree char *until = bf_ctl_format_ago (lookup_time (w, "QuarantineUntilUSec"));

      g_print ("%sQuarantined:%s %s (until %s)\n", bf_ctl_colour (ctl, "bad"),
               bf_ctl_colour (ctl, "normal"), lookup_string (w, "Name"), until);
    }
  for (guint i = 0; i < flapping->len; i++)
    g_print ("   %sFlapping:%s %s (takes no builds until it stays attached)\n", bf_ctl_colour (ctl, "bad"),
             bf_ctl_colour (ctl, "normal"), lookup_string (g_ptr_array_index (flapping, i), "Name"));
  bf_ctl_pager_end (ctl);
  return BF_CTL_EXIT_OK;
}

static gint
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char **) a, *(const char **) b);
}

/* Every cached property of @proxy into @out (a{sv}). */
static void
add_properties (GVariantBuilder *out,
                GDBusProxy      *proxy)
{
  g_auto(GStrv) names = g_dbus_proxy_get_cached_property_names (proxy);

  for (guint i = 0; names && names[i]; i++)
    {
      g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (proxy, names[i]);

      if (v)
        g_variant_builder_add (out, "{sv}", names[i], v);
    }
}

int
bf_ctl_cmd_show (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = bf_ctl_worker_path (ctl, ctl->args[0], &error);
  g_autoptr(BfDBusWorker) worker = NULL;
  g_autoptr(BfDBusLatentWorker) latent = NULL;
  g_autoptr(GVariant) all = NULL;
  g_auto(GStrv) latent_names = NULL;
  g_auto(GStrv) states = NULL;
  g_autofree char *state = NULL;
  g_autoptr(GPtrArray) keys = g_ptr_array_new ();
  GVariantBuilder b;
  GVariantIter iter;
  const char *key;
  GVariant *value;
  guint width = 0;

  if (path == NULL)
    return bf_ctl_error (ctl, error, NULL);
  worker = bf_dbus_worker_proxy_new_sync (ctl->bus, G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                          BF_CTL_BUS_NAME, path, NULL, &error);
  if (worker)
    latent = bf_dbus_latent_worker_proxy_new_sync (ctl->bus, G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                                   BF_CTL_BUS_NAME, path, NULL, &error);
  if (worker == NULL || latent == NULL)
    return bf_ctl_error (ctl, error, NULL);

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "Path", g_variant_new_object_path (path));
  add_properties (&b, G_DBUS_PROXY (worker));
  latent_names = g_dbus_proxy_get_cached_property_names (G_DBUS_PROXY (latent));
  if (latent_names && latent_names[0])
    add_properties (&b, G_DBUS_PROXY (latent));
  g_variant_builder_add (&b, "{sv}", "Latent", g_variant_new_boolean (latent_names && latent_names[0]));
  all = g_variant_ref_sink (g_variant_builder_end (&b));

  if (ctl->json)
    {
      g_autoptr(GString) out = g_string_new (NULL);

      append_worker_json (out, all);
      g_string_append_c (out, '\n');
      bf_ctl_write_all (1, out->str, out->len);
      return BF_CTL_EXIT_OK;
    }

  states = bf_ctl_worker_states (all);
  state = g_strjoinv (", ", states);
  g_variant_iter_init (&iter, all);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      g_ptr_array_add (keys, (gpointer) key);
      width = MAX (width, (guint) strlen (key));
      g_variant_unref (value);
    }
  g_ptr_array_sort (keys, compare_names);

  bf_ctl_pager_start (ctl);
  g_print ("%s%s%s (%s%s%s)\n", bf_ctl_colour (ctl, "bold"), lookup_string (all, "Name"),
           bf_ctl_colour (ctl, "normal"), bf_ctl_colour (ctl, state_colour (states) ?: "normal"),
           state, bf_ctl_colour (ctl, "normal"));
  for (guint i = 0; i < keys->len; i++)
    {
      g_autoptr(GVariant) v = g_variant_lookup_value (all, g_ptr_array_index (keys, i), NULL);
      g_autofree char *text = bf_ctl_format_value (g_ptr_array_index (keys, i), v);

      g_print ("%*s: %s\n", (int) width, (char *) g_ptr_array_index (keys, i), text);
    }
  bf_ctl_pager_end (ctl);
  return BF_CTL_EXIT_OK;
}
