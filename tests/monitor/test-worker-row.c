/* test-worker-row.c: the rows of the fleet model, without a bus
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <locale.h>

#include "bf-worker-row.h"
#include "bf-worker-util.h"

/* A connection to nowhere: rows only keep it for the proxies they make on
 * demand, which these tests do not ask for. */
static GDBusConnection *
dummy_connection (void)
{
  g_autoptr(GInputStream) input = g_memory_input_stream_new ();
  g_autoptr(GOutputStream) output = g_memory_output_stream_new_resizable ();
  g_autoptr(GIOStream) stream = g_simple_io_stream_new (input, output);
  g_autoptr(GError) error = NULL;
  GDBusConnection *connection;

  connection = g_dbus_connection_new_sync (stream, NULL, G_DBUS_CONNECTION_FLAGS_DELAY_MESSAGE_PROCESSING,
                                           NULL, NULL, &error);
  g_assert_no_error (error);
  return connection;
}

/* Not floating: the rows take references, never ownership. */
static GVariant *
parse (const char *text)
{
  return g_variant_ref_sink (g_variant_new_parsed (text));
}

static void
update (BfWorkerRow        *row,
        const char         *interface_name,
        const char         *changed,
        const char * const *invalidated)
{
  g_autoptr(GVariant) value = parse (changed);

  bf_worker_row_update (row, interface_name, value, invalidated);
}

static BfWorkerRow *
make_row (GDBusConnection *connection)
{
  g_autoptr(GVariant) properties = parse ("{'Name': <'linux-01'>, 'Connected': <true>, "
                                          "'MaxBuilds': <uint32 2>, 'ActiveBuilds': <uint32 1>, "
                                          "'Builders': <['linux', 'docs']>, "
                                          "'DisconnectedSinceUSec': <uint64 42>, "
                                          "'Info': <{'os': <'Debian'>}>, "
                                          "'SomethingNewer': <'ignored'>}");

  return bf_worker_row_new (connection, ":1.42", "/org/buildfleet/Fleet1/workers/linux_2d01", properties);
}

static void
count_notify_cb (GObject    *object,
                 GParamSpec *pspec,
                 GPtrArray  *names)
{
  g_ptr_array_add (names, g_strdup (pspec->name));
}

static void
test_values (void)
{
  g_autoptr(GDBusConnection) connection = dummy_connection ();
  g_autoptr(BfWorkerRow) row = make_row (connection);
  BfDBusWorker *worker = BF_DBUS_WORKER (row);
  g_autofree char *name = NULL;
  g_auto(GStrv) builders = NULL;
  guint active = 0;

  /* the generated getters */
  g_assert_cmpstr (bf_dbus_worker_get_name (worker), ==, "linux-01");
  g_assert_true (bf_dbus_worker_get_connected (worker));
  g_assert_false (bf_dbus_worker_get_paused (worker));
  g_assert_cmpuint (bf_dbus_worker_get_max_builds (worker), ==, 2);
  g_assert_cmpuint (bf_dbus_worker_get_disconnected_since_usec (worker), ==, 42);
  g_assert_cmpstrv (bf_dbus_worker_get_builders (worker), ((const char *[]) { "linux", "docs", NULL }));
  g_assert_true (g_variant_is_of_type (bf_dbus_worker_get_info (worker), G_VARIANT_TYPE_VARDICT));
  /* unknown values are the type's default, as with a proxy */
  g_assert_null (bf_dbus_worker_get_host (worker));
  g_assert_null (bf_dbus_worker_get_notify_on_missing (worker));

  /* the GObject properties, which cells, sorters and filters read */
  g_object_get (row, "name", &name, "active-builds", &active, "builders", &builders, NULL);
  g_assert_cmpstr (name, ==, "linux-01");
  g_assert_cmpuint (active, ==, 1);
  g_assert_cmpstrv (builders, ((const char *[]) { "linux", "docs", NULL }));

  g_assert_null (bf_worker_dup_latent (worker));
  g_assert_cmpint (bf_worker_get_state (worker), ==, BF_WORKER_STATE_CONNECTED);
  g_assert_cmpstr (bf_worker_row_get_object_path (row), ==, "/org/buildfleet/Fleet1/workers/linux_2d01");
}

static void
test_name_key (void)
{
  g_autoptr(GDBusConnection) connection = dummy_connection ();
  g_autoptr(BfWorkerRow) row = make_row (connection);
  g_autofree char *expected = g_utf8_collate_key ("linux-01", -1);
  g_autofree char *renamed = NULL;
  g_autofree char *folded = NULL;

  /* GtkStringSorter's key with ignore-case: the case-folded name's */
  g_assert_cmpstr (bf_worker_row_get_name_key (row), ==, expected);

  update (row, "org.buildfleet.Fleet1.Worker", "{'Name': <'Linux-02'>}", NULL);
  folded = g_utf8_casefold ("Linux-02", -1);
  renamed = g_utf8_collate_key (folded, -1);
  g_assert_cmpstr (bf_worker_row_get_name_key (row), ==, renamed);
}

static void
test_update (void)
{
  g_autoptr(GDBusConnection) connection = dummy_connection ();
  g_autoptr(BfWorkerRow) row = make_row (connection);
  BfDBusWorker *worker = BF_DBUS_WORKER (row);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *invalidated[] = { "Connected", NULL };

  g_signal_connect (row, "notify", G_CALLBACK (count_notify_cb), names);

  /* only what changed is notified */
  update (row, "org.buildfleet.Fleet1.Worker",
          "{'Name': <'linux-01'>, 'Paused': <true>, 'PauseReason': <'disks'>}", NULL);
  g_assert_true (bf_dbus_worker_get_paused (worker));
  g_assert_cmpstr (bf_dbus_worker_get_pause_reason (worker), ==, "disks");
  g_assert_cmpuint (names->len, ==, 2);
  g_assert_true (g_ptr_array_find_with_equal_func (names, "paused", g_str_equal, NULL));
  g_assert_true (g_ptr_array_find_with_equal_func (names, "pause-reason", g_str_equal, NULL));

  g_ptr_array_set_size (names, 0);
  update (row, "org.buildfleet.Fleet1.Worker", "{'Builders': <['linux']>}", invalidated);
  g_assert_cmpstrv (bf_dbus_worker_get_builders (worker), ((const char *[]) { "linux", NULL }));
  g_assert_false (bf_dbus_worker_get_connected (worker));
  g_assert_cmpuint (names->len, ==, 2);

  /* a value of the wrong type is dropped, as GDBusProxy does */
  g_ptr_array_set_size (names, 0);
  g_test_expect_message ("buildfleet-monitor", G_LOG_LEVEL_WARNING, "*MaxBuilds*");
  update (row, "org.buildfleet.Fleet1.Worker", "{'MaxBuilds': <'many'>}", NULL);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (bf_dbus_worker_get_max_builds (worker), ==, 2);
  g_assert_cmpuint (names->len, ==, 0);
}

static void
test_latent (void)
{
  g_autoptr(GDBusConnection) connection = dummy_connection ();
  g_autoptr(BfWorkerRow) row = make_row (connection);
  BfDBusWorker *worker = BF_DBUS_WORKER (row);
  g_autoptr(BfDBusLatentWorker) latent = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GVariant) latent_properties =
    parse ("{'State': <'substantiating'>, 'BuildWaitTimeoutUSec': <int64 -1>}");

  update (row, "org.buildfleet.Fleet1.Worker", "{'Connected': <false>}", NULL);
  bf_worker_row_set_latent (row, latent_properties);
  latent = bf_worker_dup_latent (worker);
  g_assert_nonnull (latent);
  g_assert_cmpstr (bf_dbus_latent_worker_get_state (latent), ==, "substantiating");
  g_assert_cmpint (bf_dbus_latent_worker_get_build_wait_timeout_usec (latent), ==, -1);
  g_assert_cmpint (bf_worker_get_state (worker), ==, BF_WORKER_STATE_SUBSTANTIATING);

  g_signal_connect (latent, "notify", G_CALLBACK (count_notify_cb), names);
  update (row, "org.buildfleet.Fleet1.LatentWorker",
          "{'State': <'not-substantiated'>, 'LastError': <'no quota'>}", NULL);
  g_assert_cmpuint (names->len, ==, 2);
  g_assert_cmpint (bf_worker_get_state (worker), ==, BF_WORKER_STATE_NOT_SUBSTANTIATED);

  bf_worker_row_set_latent (row, NULL);
  g_assert_null (bf_worker_row_get_latent (row));
  g_assert_cmpint (bf_worker_get_state (worker), ==, BF_WORKER_STATE_DISCONNECTED);
}

int
main (int   argc,
      char *argv[])
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/monitor/worker-row/values", test_values);
  g_test_add_func ("/monitor/worker-row/name-key", test_name_key);
  g_test_add_func ("/monitor/worker-row/update", test_update);
  g_test_add_func ("/monitor/worker-row/latent", test_latent);

  return g_test_run ();
}
