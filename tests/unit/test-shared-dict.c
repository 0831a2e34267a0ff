/* test-shared-dict.c: property dictionaries with shared entries
 *
 * Whatever bf_shared_dict_new() does to the layout, the value must stay the
 * same, byte for byte once serialised (GetManagedObjects' reply must not
 * change), and entries repeated across dictionaries must be shared.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib.h>

#include "bf-shared-dict.h"

static GVariant *
worker_props (guint i,
              guint variety)
{
  GVariantBuilder b, info, cmds;
  g_autofree char *name = g_strdup_printf ("worker-%05u", i);
  g_autofree char *host = g_strdup_printf ("host-%u.example", i % MAX (variety, 1));

  g_variant_builder_init (&info, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&info, "{sv}", "os_name", g_variant_new_string ("Debian GNU/Linux"));
  g_variant_builder_add (&info, "{sv}", "numcpus", g_variant_new_int64 (i % 3 + 1));
  g_variant_builder_add (&info, "{sv}", "basedir", g_variant_new_string (name));
  g_variant_builder_init (&cmds, G_VARIANT_TYPE ("a{ss}"));
  g_variant_builder_add (&cmds, "{ss}", "shell", "3.7");
  g_variant_builder_add (&cmds, "{ss}", "mkdir", "3.7");

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "Name", g_variant_new_string (name));
  g_variant_builder_add (&b, "{sv}", "Connected", g_variant_new_boolean (i % 2));
  g_variant_builder_add (&b, "{sv}", "Host", g_variant_new_string (host));
  g_variant_builder_add (&b, "{sv}", "MaxBuilds", g_variant_new_uint32 (4));
  g_variant_builder_add (&b, "{sv}", "ConnectedSinceUSec", g_variant_new_uint64 (1000000 + i));
  g_variant_builder_add (&b, "{sv}", "Builders", g_variant_new_strv ((const char *[]) { "a", "b", NULL }, -1));
  g_variant_builder_add (&b, "{sv}", "Info", g_variant_builder_end (&info));
  g_variant_builder_add (&b, "{sv}", "Commands", g_variant_builder_end (&cmds));
  g_variant_builder_add (&b, "{sv}", "Empty", g_variant_new ("a{sv}", NULL));
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

static void
assert_same (GVariant *a,
             GVariant *b)
{
  g_assert_true (g_variant_equal (a, b));
  g_assert_cmpmem (g_variant_get_data (a), g_variant_get_size (a),
                   g_variant_get_data (b), g_variant_get_size (b));
}

static void
test_values_unchanged (void)
{
  for (guint variety = 1; variety <= 1000; variety *= 10)
    for (guint i = 0; i < 300; i++)
      {
        g_autoptr(GVariant) props = worker_props (i, variety);
        g_autoptr(GVariant) expected_copy = g_variant_ref_sink (g_variant_new_from_bytes (
          G_VARIANT_TYPE_VARDICT, g_variant_get_data_as_bytes (props), TRUE));
        g_autoptr(GVariant) shared = bf_shared_dict_new (props);

        g_assert_false (g_variant_is_floating (shared));
        g_assert_true (g_variant_is_of_type (shared, G_VARIANT_TYPE_VARDICT));
        assert_same (shared, expected_copy);
      }
}

static void
test_repeated_entries_shared (void)
{
  g_autoptr(GVariant) a = worker_props (2, 1);
  g_autoptr(GVariant) b = worker_props (4, 1);
  g_autoptr(GVariant) c = worker_props (6, 1);
  g_autoptr(GVariant) sa = bf_shared_dict_new (a);
  g_autoptr(GVariant) sb = bf_shared_dict_new (b);
  g_autoptr(GVariant) sc = bf_shared_dict_new (c);
  g_autoptr(GVariant) builders_b = NULL;
  g_autoptr(GVariant) builders_c = NULL;
  gsize n = g_variant_n_children (sc);

  /* Once seen twice, the third dictionary's "Builders" entry is the very
   * instance the second one has. */
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) eb = g_variant_get_child_value (sb, i);
      g_autoptr(GVariant) ec = g_variant_get_child_value (sc, i);
      g_autoptr(GVariant) kc = g_variant_get_child_value (ec, 0);

      if (g_str_equal (g_variant_get_string (kc, NULL), "Builders"))
        {
          builders_b = g_steal_pointer (&eb);
          builders_c = g_steal_pointer (&ec);
        }
    }
  g_assert_nonnull (builders_c);
  g_assert_true (builders_b == builders_c);
  assert_same (sa, a);
  assert_same (sc, c);
}

static void
test_not_a_dict (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr(GVariant) v = g_variant_ref_sink (g_variant_new_int32 (3));
      bf_shared_dict_new (v);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/shared-dict/values-unchanged", test_values_unchanged);
  g_test_add_func ("/shared-dict/repeated-entries-shared", test_repeated_entries_shared);
  g_test_add_func ("/shared-dict/not-a-dict", test_not_a_dict);
  return g_test_run ();
}
