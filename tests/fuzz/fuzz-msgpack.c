/* fuzz-msgpack.c: libFuzzer target for the msgpack <-> GVariant codec
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Property checked for every input that decodes:
 *  - the decoded value only uses the documented types (mv b x t d s ay av
 *    a{sv}), its strings are valid UTF-8 without NULs and its maps have no
 *    key twice;
 *  - encoding it and decoding the result gives an equal value;
 *  - encoding that value again gives the same bytes (the encoding of a
 *    decoded value is canonical).
 * Inputs that do not decode must fail with a BF_MSGPACK_ERROR.
 *
 * Linked with fuzz-replay.c it replays files and directories of inputs,
 * so normal builds regression-test the corpus without libFuzzer.
 */

#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "bf-msgpack.h"

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

static void
check_decoded_shape (GVariant *value)
{
  const gchar *type = g_variant_get_type_string (value);

  if (g_str_equal (type, "mv"))
    {
      g_assert_null (g_variant_get_maybe (value));
    }
  else if (g_str_equal (type, "s"))
    {
      gsize len;
      const gchar *str = g_variant_get_string (value, &len);

      g_assert_true (g_utf8_validate (str, len, NULL));
      g_assert_cmpuint (strlen (str), ==, len);
    }
  else if (g_str_equal (type, "av"))
    {
      GVariantIter iter;
      GVariant *child;

      g_variant_iter_init (&iter, value);
      while (g_variant_iter_next (&iter, "v", &child))
        {
          check_decoded_shape (child);
          g_variant_unref (child);
        }
    }
  else if (g_str_equal (type, "a{sv}"))
    {
      g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
      GVariantIter iter;
      const gchar *key;
      GVariant *child;

      g_variant_iter_init (&iter, value);
      while (g_variant_iter_next (&iter, "{&sv}", &key, &child))
        {
          g_assert_true (g_utf8_validate (key, -1, NULL));
          g_assert_true (g_hash_table_add (seen, (gpointer) key));
          check_decoded_shape (child);
          g_variant_unref (child);
        }
    }
  else if (!g_str_equal (type, "b") && !g_str_equal (type, "x") &&
           !g_str_equal (type, "t") && !g_str_equal (type, "d") &&
           !g_str_equal (type, "ay"))
    {
      g_error ("decoded value has unexpected type %s", type);
    }

  if (g_str_equal (type, "t"))
    g_assert_cmpuint (g_variant_get_uint64 (value), >, G_MAXINT64);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static gboolean initialized = FALSE;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) again = NULL;
  g_autoptr(GBytes) encoded = NULL;
  g_autoptr(GBytes) reencoded = NULL;

  if (!initialized)
    {
      /* Any critical or warning, e.g. from a g_return_if_fail() inside
       * GLib, is a finding. */
      g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }

  value = bf_msgpack_decode (data, size, &error);
  if (value == NULL)
    {
      g_assert_nonnull (error);
      g_assert_true (error->domain == BF_MSGPACK_ERROR);
      g_assert_cmpint (error->code, >=, BF_MSGPACK_ERROR_TRUNCATED);
      g_assert_cmpint (error->code, <=, BF_MSGPACK_ERROR_TRAILING);
      /* every message says where, except the one for empty input */
      if (size > 0)
        g_assert_nonnull (strstr (error->message, " offset "));
      return 0;
    }
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (value));
  check_decoded_shape (value);

  encoded = bf_msgpack_encode (value);
  again = bf_msgpack_decode (g_bytes_get_data (encoded, NULL),
                             g_bytes_get_size (encoded), &error);
  g_assert_no_error (error);
  g_assert_nonnull (again);
  g_assert_true (g_variant_equal (value, again));

  reencoded = bf_msgpack_encode (again);
  g_assert_true (g_bytes_equal (encoded, reencoded));

  return 0;
}
