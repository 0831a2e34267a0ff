/* test-dbus-size.c: bf_dbus_size_end() against what GDBus really writes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <gio/gio.h>

#include "bf-dbus-size.h"

/* The body length GDBus writes for @body, from the message header. */
static gsize
marshalled_body_size (GVariant            *body,
                      GDBusMessageByteOrder order)
{
  g_autoptr(GDBusMessage) message = g_dbus_message_new_signal ("/a", "a.b", "c");
  g_autoptr(GError) error = NULL;
  g_autofree guchar *blob = NULL;
  gsize blob_size = 0;
  guint32 len;

  g_dbus_message_set_byte_order (message, order);
  g_dbus_message_set_body (message, body);
  blob = g_dbus_message_to_blob (message, &blob_size, G_DBUS_CAPABILITY_FLAGS_NONE, &error);
  g_assert_no_error (error);
  memcpy (&len, blob + 4, 4);
  return order == G_DBUS_MESSAGE_BYTE_ORDER_LITTLE_ENDIAN ? GUINT32_FROM_LE (len) : GUINT32_FROM_BE (len);
}

static void
check (const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) body = g_variant_ref_sink (g_variant_parse (NULL, text, NULL, NULL, &error));
  gsize want;

  g_assert_no_error (error);
  want = marshalled_body_size (body, G_DBUS_MESSAGE_BYTE_ORDER_LITTLE_ENDIAN);
  g_assert_cmpuint (want, ==, marshalled_body_size (body, G_DBUS_MESSAGE_BYTE_ORDER_BIG_ENDIAN));
  g_test_message ("%s: %" G_GSIZE_FORMAT " bytes", text, want);
  /* Serialised and tree form alike. */
  g_assert_cmpuint (bf_dbus_size_end (body, 0, G_MAXSIZE - 1), ==, want);
  {
    g_autoptr(GVariant) serialised = g_variant_new_from_data (g_variant_get_type (body),
                                                              g_variant_get_data (body),
                                                              g_variant_get_size (body),
                                                              TRUE, NULL, NULL);
    g_variant_ref_sink (serialised);
    g_assert_cmpuint (bf_dbus_size_end (serialised, 0, G_MAXSIZE - 1), ==, want);
  }
  /* With a memo, twice (the second time from it). */
  {
    g_autoptr(GHashTable) memo = bf_dbus_size_new_memo ();

    for (guint i = 0; i < 2; i++)
      for (gsize start = 0; start < 16; start += 8)
        g_assert_cmpuint (bf_dbus_size_end_memo (body, start, G_MAXSIZE - 1, memo), ==, start + want);
  }
  /* The limit: exactly the size passes, one byte less does not. */
  g_assert_cmpuint (bf_dbus_size_end (body, 0, want), ==, want);
  if (want > 0)
    g_assert_cmpuint (bf_dbus_size_end (body, 0, want - 1), ==, BF_DBUS_SIZE_OVER);
}

static void
test_basic (void)
{
  check ("(byte 1,)");
  check ("(true, byte 2, int16 -3, uint16 4, 5, uint32 6, int64 7, uint64 8, 9.5)");
  check ("(byte 1, int64 2, byte 3, int16 4, byte 5, 6)");
  check ("('', 'a', 'abc', 'abcd', objectpath '/x/y', signature 'a{sv}')");
  check ("(byte 1, 'odd', byte 2, signature 'g', byte 3, 'x')");
}

/* The same big tree-form entry in many places, remembered once. */
static void
test_shared_entries (void)
{
  g_autoptr(GVariant) shared = g_variant_ref_sink (g_variant_new_parsed ("{'Commands', <{'shell': '3', 'mkdir': '3', 'rmdir': '3', 'glob': '3'}>}"));
  g_autoptr(GHashTable) memo = bf_dbus_size_new_memo ();
  g_autoptr(GVariant) body = NULL;
  GVariantBuilder b;
  gsize want;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("(ya{sv}ya{sv})"));
  g_variant_builder_add (&b, "y", 1);
  g_variant_builder_open (&b, G_VARIANT_TYPE ("a{sv}"));
  g_variant_builder_add_value (&b, shared);
  g_variant_builder_add (&b, "{sv}", "odd", g_variant_new_byte (1));
  g_variant_builder_add_value (&b, shared);
  g_variant_builder_close (&b);
  g_variant_builder_add (&b, "y", 2);
  g_variant_builder_open (&b, G_VARIANT_TYPE ("a{sv}"));
  g_variant_builder_add_value (&b, shared);
  g_variant_builder_close (&b);
  body = g_variant_ref_sink (g_variant_builder_end (&b));

  want = marshalled_body_size (body, G_DBUS_MESSAGE_BYTE_ORDER_LITTLE_ENDIAN);
  g_assert_cmpuint (bf_dbus_size_end_memo (body, 0, G_MAXSIZE - 1, memo), ==, want);
  g_assert_true (g_hash_table_contains (memo, shared));
  g_assert_cmpuint (bf_dbus_size_end_memo (body, 0, G_MAXSIZE - 1, memo), ==, want);
  g_assert_cmpuint (bf_dbus_size_end_memo (body, 0, want - 1, memo), ==, BF_DBUS_SIZE_OVER);
}

static void
test_containers (void)
{
  check ("(@ay [], byte 1, @ay [1, 2, 3])");
  check ("(byte 1, @at [], byte 2, @at [1, 2], byte 3, @aq [1, 2, 3])");
  check ("(byte 1, @as [], ['', 'a', 'bb'], byte 2, @a{sv} {})");
  check ("(byte 1, {'a': <byte 1>, 'b': <(byte 1, int64 2)>, 'c': <@as []>})");
  check ("(byte 1, [@a{sv} {}, {}, {'x': <''>}], byte 2, [<<byte 3>>, <'s'>])");
  check ("({objectpath '/a': {'org.x': {'Name': <'a'>, 'Info': <{'k': <['l', 'm']>}>}}},)");
  check ("(byte 7, [(byte 1, 'a'), (byte 2, 'bc')], [{1, 'x'}], {byte 1: int64 2})");
}

/* A dictionary shaped like a worker's properties, much bigger than the
 * limit: the walk stops at the limit. */
static void
test_stops_at_limit (void)
{
  GVariantBuilder b;
  g_autoptr(GVariant) dict = NULL;
  gsize full;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
  for (guint i = 0; i < 20000; i++)
    {
      g_autofree char *key = g_strdup_printf ("key-%u", i);
      g_variant_builder_add (&b, "{sv}", key, g_variant_new_string ("some value"));
    }
  dict = g_variant_ref_sink (g_variant_builder_end (&b));
  full = bf_dbus_size_end (dict, 0, G_MAXSIZE - 1);
  g_assert_cmpuint (full, >, 20000 * 20);
  g_assert_cmpuint (bf_dbus_size_end (dict, 0, 4096), ==, BF_DBUS_SIZE_OVER);
  g_assert_cmpuint (bf_dbus_size_end (dict, 8, full + 8), ==, full + 8);
  /* A huge array of fixed-size values is measured without a walk. */
  {
    g_autofree guint64 *numbers = g_new0 (guint64, 1 << 20);
    g_autoptr(GVariant) big = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64, numbers,
                                                                              1 << 20, sizeof (guint64)));
    g_assert_cmpuint (bf_dbus_size_end (big, 1, G_MAXSIZE - 1), ==, 8 + (8u << 20));
    g_assert_cmpuint (bf_dbus_size_end (big, 1, 1000), ==, BF_DBUS_SIZE_OVER);
  }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dbus-size/basic", test_basic);
  g_test_add_func ("/dbus-size/containers", test_containers);
  g_test_add_func ("/dbus-size/stops-at-limit", test_stops_at_limit);
  g_test_add_func ("/dbus-size/shared-entries", test_shared_entries);
  return g_test_run ();
}
