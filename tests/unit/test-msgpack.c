/* test-msgpack.c: unit tests for the msgpack <-> GVariant codec
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <glib.h>

#include "bf-msgpack.h"

#if defined(__SANITIZE_ADDRESS__)
# define HAVE_ASAN 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define HAVE_ASAN 1
# endif
#endif

#if defined(__has_include)
# if __has_include(<valgrind/valgrind.h>)
#  include <valgrind/valgrind.h>
# endif
#endif
#ifndef RUNNING_ON_VALGRIND
# define RUNNING_ON_VALGRIND 0
#endif

/* Helpers */

/* Parses "83 a2 6f 70 ..." (spaces optional) into bytes. */
static GBytes *
hex (const gchar *text)
{
  g_autoptr(GByteArray) bytes = g_byte_array_new ();

  for (const gchar *p = text; *p != '\0'; )
    {
      gint hi, lo;
      guint8 byte;

      if (*p == ' ')
        {
          p++;
          continue;
        }
      hi = g_ascii_xdigit_value (p[0]);
      lo = g_ascii_xdigit_value (p[1]);
      g_assert_cmpint (hi, >=, 0);
      g_assert_cmpint (lo, >=, 0);
      byte = (guint8) (hi << 4 | lo);
      g_byte_array_append (bytes, &byte, 1);
      p += 2;
    }

  return g_byte_array_free_to_bytes (g_steal_pointer (&bytes));
}

static gchar *
to_hex (GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  GString *s = g_string_new (NULL);

  for (gsize i = 0; i < len; i++)
    g_string_append_printf (s, i == 0 ? "%02x" : " %02x", data[i]);
  return g_string_free (s, FALSE);
}

static GVariant *
parse (const gchar *text)
{
  g_autoptr(GError) error = NULL;
  GVariant *value = g_variant_parse (NULL, text, NULL, NULL, &error);

  g_assert_no_error (error);
  /* g_variant_parse() returns a full reference, not a floating one. */
  g_assert_false (g_variant_is_floating (value));
  return value;
}

static void
assert_variant_equal (GVariant *actual,
                      GVariant *expected)
{
  g_autofree gchar *a = g_variant_print (actual, TRUE);
  g_autofree gchar *e = g_variant_print (expected, TRUE);

  g_assert_cmpstr (g_variant_get_type_string (actual), ==,
                   g_variant_get_type_string (expected));
  g_assert_cmpstr (a, ==, e);
  g_assert_true (g_variant_equal (actual, expected));
}

static GVariant *
decode_bytes (GBytes *bytes)
{
  g_autoptr(GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  GVariant *value = bf_msgpack_decode (data, len, &error);

  g_assert_no_error (error);
  g_assert_nonnull (value);
  g_assert_false (g_variant_is_floating (value));
  return value;
}

static void
assert_decodes_to (const gchar *msgpack_hex,
                   const gchar *expected_text)
{
  g_autoptr(GBytes) bytes = hex (msgpack_hex);
  g_autoptr(GVariant) value = decode_bytes (bytes);
  g_autoptr(GVariant) expected = parse (expected_text);

  g_test_message ("decoding %s", msgpack_hex);
  assert_variant_equal (value, expected);
}

static void
assert_encodes_to (GVariant    *value,
                   const gchar *expected_hex)
{
  g_autoptr(GBytes) bytes = bf_msgpack_encode (value);
  g_autoptr(GBytes) expected = hex (expected_hex);
  g_autofree gchar *actual_hex = to_hex (bytes);
  g_autofree gchar *normal_hex = to_hex (expected);

  g_assert_cmpstr (actual_hex, ==, normal_hex);
}

static void
assert_decode_error (GBytes      *bytes,
                     gint         code,
                     const gchar *message_part)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);

  value = bf_msgpack_decode (data, len, &error);
  g_assert_null (value);
  g_assert_error (error, BF_MSGPACK_ERROR, code);
  if (message_part != NULL && strstr (error->message, message_part) == NULL)
    g_error ("error message \"%s\" does not contain \"%s\"", error->message, message_part);
}

static void
assert_decode_error_hex (const gchar *msgpack_hex,
                         gint         code,
                         const gchar *message_part)
{
  g_autoptr(GBytes) bytes = hex (msgpack_hex);

  g_test_message ("decoding %s", msgpack_hex);
  assert_decode_error (bytes, code, message_part);
}

/* The two protocol messages from the brief, as Python's msgpack packs them. */
#define RESPONSE_TEXT \
  "{'op': <'response'>, 'seq_number': <int64 3>, 'result': <@mv nothing>}"
#define RESPONSE_HEX \
  "83 a2 6f 70 a8 72 65 73 70 6f 6e 73 65 aa 73 65 71 5f 6e 75 6d 62 65 72 03" \
  " a6 72 65 73 75 6c 74 c0"

#define UPDATE_TEXT \
  "{'op': <'update'>, 'command_id': <'1'>," \
  " 'args': <[<[<'stdout'>, <[<'text\\n'>, <[<int64 4>]>, <[<1.5>]>]>]>," \
  "           <[<'rc'>, <int64 0>]>]>}"
#define UPDATE_HEX \
  "83 a2 6f 70 a6 75 70 64 61 74 65 aa 63 6f 6d 6d 61 6e 64 5f 69 64 a1 31" \
  " a4 61 72 67 73 92 92 a6 73 74 64 6f 75 74 93 a5 74 65 78 74 0a 91 04 91" \
  " cb 3f f8 00 00 00 00 00 00 92 a2 72 63 00"

/* A map using every msgpack family the decoder accepts, most of them in
 * their longer encodings. */
#define EVERYTHING_HEX \
  "de 00 0c"                                         /* map 16, 12 entries */ \
  " a1 61 c0"                                        /* a: nil */ \
  " a1 62 c3"                                        /* b: true */ \
  " a1 63 cc ff"                                     /* c: uint 8 */ \
  " a1 64 cd 01 00"                                  /* d: uint 16 */ \
  " a1 65 ce 00 01 00 00"                            /* e: uint 32 */ \
  " a1 66 cf 80 00 00 00 00 00 00 00"                /* f: uint 64 */ \
  " a1 67 d3 ff ff ff ff ff ff ff ff"                /* g: int 64 */ \
  " a1 68 ca 3f c0 00 00"                            /* h: float 32 */ \
  " a1 69 d9 01 78"                                  /* i: str 8 */ \
  " d9 01 6a da 00 01 79"                            /* j (str 8 key): str 16 */ \
  " a1 6b c5 00 02 01 02"                            /* k: bin 16 */ \
  " a1 6c dc 00 02 d0 80"                            /* l: array 16 [int 8, */ \
  "  dd 00 00 00 01 df 00 00 00 01 a1 6d"            /*  array 32 [map 32 {m: */ \
  "  db 00 00 00 01 7a"                              /*  str 32}]] */
#define EVERYTHING_TEXT \
  "{'a': <@mv nothing>, 'b': <true>, 'c': <int64 255>, 'd': <int64 256>," \
  " 'e': <int64 65536>, 'f': <uint64 9223372036854775808>, 'g': <int64 -1>," \
  " 'h': <1.5>, 'i': <'x'>, 'j': <'y'>, 'k': <[byte 0x01, 0x02]>," \
  " 'l': <[<int64 -128>, <[<{'m': <'z'>}>]>]>}"

/* Decoding */

static const struct { const gchar *msgpack; const gchar *text; } scalar_cases[] = {
  { "c0", "@mv nothing" },
  { "c2", "false" },
  { "c3", "true" },
  /* positive and negative fixint */
  { "00", "int64 0" },
  { "01", "int64 1" },
  { "7f", "int64 127" },
  { "ff", "int64 -1" },
  { "e0", "int64 -32" },
  /* uint 8 ... 64 */
  { "cc 80", "int64 128" },
  { "cc ff", "int64 255" },
  { "cd ff ff", "int64 65535" },
  { "ce ff ff ff ff", "int64 4294967295" },
  { "cf 7f ff ff ff ff ff ff ff", "int64 9223372036854775807" },
  { "cf 80 00 00 00 00 00 00 00", "uint64 9223372036854775808" },
  { "cf ff ff ff ff ff ff ff ff", "uint64 18446744073709551615" },
  /* int 8 ... 64 */
  { "d0 80", "int64 -128" },
  { "d0 7f", "int64 127" },
  { "d1 80 00", "int64 -32768" },
  { "d2 80 00 00 00", "int64 -2147483648" },
  { "d3 80 00 00 00 00 00 00 00", "int64 -9223372036854775808" },
  { "d3 7f ff ff ff ff ff ff ff", "int64 9223372036854775807" },
  /* non-canonical encodings are accepted */
  { "cc 05", "int64 5" },
  { "d0 05", "int64 5" },
  { "cf 00 00 00 00 00 00 00 05", "int64 5" },
  /* float 32 and float 64 */
  { "ca 3f c0 00 00", "1.5" },
  { "ca c0 20 00 00", "-2.5" },
  { "cb 3f f8 00 00 00 00 00 00", "1.5" },
  { "cb 80 00 00 00 00 00 00 00", "-0.0" },
  { "cb 40 09 21 fb 54 44 2d 18", "3.141592653589793" },
  /* str */
  { "a0", "''" },
  { "a3 61 62 63", "'abc'" },
  { "d9 03 61 62 63", "'abc'" },
  { "da 00 03 61 62 63", "'abc'" },
  { "db 00 00 00 03 61 62 63", "'abc'" },
  { "a2 c3 a9", "'\\u00e9'" },
  /* bin */
  { "c4 00", "@ay []" },
  { "c4 03 00 01 ff", "[byte 0x00, 0x01, 0xff]" },
  { "c5 00 01 2a", "[byte 0x2a]" },
  { "c6 00 00 00 01 2a", "[byte 0x2a]" },
};

static void
test_decode_scalars (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (scalar_cases); i++)
    assert_decodes_to (scalar_cases[i].msgpack, scalar_cases[i].text);
}

/* Arrays of scalars take the serialised fast path: they must be the very
 * same `av` as one built element by element, in normal form, for every
 * scalar type and for every width of the offset table (1, 2 and 4 bytes). */
static void
test_decode_scalar_arrays (void)
{
  static const guint counts[] = { 1, 2, 15, 16, 17, 300, 5000 };

  for (gsize c = 0; c < G_N_ELEMENTS (counts); c++)
    {
      guint n = counts[c];
      g_autoptr(GByteArray) msg = g_byte_array_new ();
      g_autoptr(GVariantBuilder) expected_b = g_variant_builder_new (G_VARIANT_TYPE ("av"));
      g_autoptr(GVariant) expected = NULL;
      g_autoptr(GVariant) value = NULL;
      g_autoptr(GError) error = NULL;
      guint8 header[5] = { 0xdd, n >> 24, n >> 16, n >> 8, n };

      g_byte_array_append (msg, header, sizeof header);
      for (guint i = 0; i < n; i++)
        {
          gsize k = (i * 7 + c) % G_N_ELEMENTS (scalar_cases);
          g_autoptr(GBytes) element = hex (scalar_cases[k].msgpack);
          GVariant *v = g_variant_parse (NULL, scalar_cases[k].text, NULL, NULL, NULL);

          g_assert_nonnull (v);
          g_byte_array_append (msg, g_bytes_get_data (element, NULL), g_bytes_get_size (element));
          g_variant_builder_add (expected_b, "v", v);
        }
      expected = g_variant_ref_sink (g_variant_builder_end (expected_b));

      value = bf_msgpack_decode (msg->data, msg->len, &error);
      g_assert_no_error (error);
      g_assert_true (g_variant_is_of_type (value, G_VARIANT_TYPE ("av")));
      g_assert_true (g_variant_is_normal_form (value));
      g_assert_true (g_variant_equal (value, expected));
      for (guint i = 0; i < n; i += 1 + n / 10)
        {
          g_autoptr(GVariant) got = g_variant_get_child_value (value, i);
          g_autoptr(GVariant) want = g_variant_get_child_value (expected, i);

          g_assert_true (g_variant_equal (got, want));
        }
    }

  /* Invalid UTF-8 and NULs in a str element are repaired there too. */
  assert_decodes_to ("92 a3 61 00 ff a2 c3 a9", "[<'a\\ufffd\\ufffd'>, <'\\u00e9'>]");
  /* The first non-scalar sends the array to the general path, which gives
   * the same value. */
  assert_decodes_to ("95 01 a1 61 91 02 81 a1 6b 03 c0",
                     "[<int64 1>, <'a'>, <[<int64 2>]>, <{'k': <int64 3>}>, <@mv nothing>]");
  assert_decodes_to ("92 91 01 92 02 c3", "[<[<int64 1>]>, <[<int64 2>, <true>]>]");
}

static void
test_decode_containers (void)
{
  static const struct { const gchar *msgpack; const gchar *text; } cases[] = {
    { "90", "@av []" },
    { "80", "@a{sv} {}" },
    { "92 01 a1 61", "[<int64 1>, <'a'>]" },
    { "91 c0", "[<@mv nothing>]" },
    { "dc 00 01 c3", "[<true>]" },
    { "dd 00 00 00 01 c2", "[<false>]" },
    { "81 a1 61 01", "{'a': <int64 1>}" },
    { "de 00 01 a1 61 90", "{'a': <@av []>}" },
    { "df 00 00 00 01 a1 61 80", "{'a': <@a{sv} {}>}" },
    { "92 91 91 c0 81 a0 c4 00",
      "[<[<[<@mv nothing>]>]>, <{'': <@ay []>}>]" },
    /* the same cached small value many times */
    { "95 00 00 c0 c0 00", "[<int64 0>, <int64 0>, <@mv nothing>, <@mv nothing>, <int64 0>]" },
    { "9a a0 a0 90 90 80 80 c2 c3 c2 c3",
      "[<''>, <''>, <@av []>, <@av []>, <@a{sv} {}>, <@a{sv} {}>,"
      " <false>, <true>, <false>, <true>]" },
    { "92 d9 00 dc 00 00", "[<''>, <@av []>]" },
    { RESPONSE_HEX, RESPONSE_TEXT },
    { UPDATE_HEX, UPDATE_TEXT },
    { EVERYTHING_HEX, EVERYTHING_TEXT },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_decodes_to (cases[i].msgpack, cases[i].text);
}

static void
test_decode_duplicate_keys (void)
{
  g_autoptr(GByteArray) msg = g_byte_array_new ();
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) v = NULL;
  const guint8 header[] = { 0xde, 0x00, 0x00 };
  guint n_pairs = 0;

  /* Last one wins, at the position of the first. */
  assert_decodes_to ("83 a1 61 01 a1 62 02 a1 61 03", "{'a': <int64 3>, 'b': <int64 2>}");
  assert_decodes_to ("82 a1 61 01 a1 61 02", "{'a': <int64 2>}");
  /* the same key three times: the second must not leave a stale key */
  assert_decodes_to ("84 a1 61 01 a1 61 02 a2 61 61 04 a1 61 03",
                     "{'a': <int64 3>, 'aa': <int64 4>}");
  /* a duplicate before the switch to the hash table, and after it */
  assert_decodes_to ("8c a1 61 01 a1 61 02 a1 62 03 a1 63 04 a1 64 05 a1 65 06"
                     " a1 66 07 a1 67 08 a1 68 09 a1 69 0a a1 61 0b a1 69 0c",
                     "{'a': <int64 11>, 'b': <int64 3>, 'c': <int64 4>, 'd': <int64 5>,"
                     " 'e': <int64 6>, 'f': <int64 7>, 'g': <int64 8>, 'h': <int64 9>,"
                     " 'i': <int64 12>}");
  /* A duplicate whose value is a container. */
  assert_decodes_to ("82 a1 61 81 a1 61 01 a1 61 91 81 a1 61 02",
                     "{'a': <[<{'a': <int64 2>}>]>}");

  /* A large map: the duplicate lookup switches to a hash table. Keys k0 ...
   * k39, then k5 ... k9 again with new values, then k0 once more. */
  g_byte_array_append (msg, header, sizeof header);
  for (guint i = 0; i < 40; i++, n_pairs++)
    {
      gchar key[4];
      guint8 h = 0xa0 | (guint8) g_snprintf (key, sizeof key, "k%u", i);

      g_byte_array_append (msg, &h, 1);
      g_byte_array_append (msg, (const guint8 *) key, strlen (key));
      h = (guint8) i;
      g_byte_array_append (msg, &h, 1);
    }
  for (guint i = 5; i < 11; i++, n_pairs++)
    {
      gchar key[4];
      guint8 h;
      guint k = i == 10 ? 0 : i;

      h = 0xa0 | (guint8) g_snprintf (key, sizeof key, "k%u", k);
      g_byte_array_append (msg, &h, 1);
      g_byte_array_append (msg, (const guint8 *) key, strlen (key));
      h = (guint8) (100 + k);
      g_byte_array_append (msg, &h, 1);
    }
  msg->data[2] = (guint8) n_pairs;

  bytes = g_bytes_new (msg->data, msg->len);
  value = decode_bytes (bytes);
  g_assert_cmpuint (g_variant_n_children (value), ==, 40);
  for (guint i = 0; i < 40; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (value, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) inner = g_variant_get_variant (boxed);
      g_autofree gchar *expected_key = g_strdup_printf ("k%u", i);
      gint64 expected = (i == 0 || (i >= 5 && i < 10)) ? 100 + i : i;

      g_assert_cmpstr (g_variant_get_string (key, NULL), ==, expected_key);
      g_assert_cmpint (g_variant_get_int64 (inner), ==, expected);
    }

  v = g_variant_lookup_value (value, "k7", G_VARIANT_TYPE_INT64);
  g_assert_nonnull (v);
  g_assert_cmpint (g_variant_get_int64 (v), ==, 107);
}

static void
test_decode_utf8 (void)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) value = NULL;
  gsize len;
  const gchar *str;

  /* invalid bytes become U+FFFD */
  assert_decodes_to ("a2 ff 61", "'\\ufffda'");
  assert_decodes_to ("a1 80", "'\\ufffd'");
  /* truncated sequence at the end of the str */
  assert_decodes_to ("a3 61 e2 82", "'a\\ufffd\\ufffd'");
  /* overlong NUL and a UTF-16 surrogate */
  assert_decodes_to ("a2 c0 80", "'\\ufffd\\ufffd'");
  assert_decodes_to ("a3 ed a0 80", "'\\ufffd\\ufffd\\ufffd'");
  /* embedded NUL does not cut the string short */
  assert_decodes_to ("a3 61 00 62", "'a\\ufffdb'");
  assert_decodes_to ("a1 00", "'\\ufffd'");
  /* the same in map keys; two keys equal after repair are one key */
  assert_decodes_to ("81 a2 ff 61 01", "{'\\ufffda': <int64 1>}");
  assert_decodes_to ("82 a1 ff 01 a1 fe 02", "{'\\ufffd': <int64 2>}");
  assert_decodes_to ("81 a3 6b 00 6b 01", "{'k\\ufffdk': <int64 1>}");

  /* 4-byte characters survive */
  assert_decodes_to ("a4 f0 9f 98 80", "'\\U0001f600'");

  bytes = hex ("a5 00 00 61 00 00");
  value = decode_bytes (bytes);
  str = g_variant_get_string (value, &len);
  g_assert_cmpuint (len, ==, 3 + 3 + 1 + 3 + 3);
  g_assert_true (g_utf8_validate (str, -1, NULL));
}

static void
test_decode_large (void)
{
  gsize size = 1024 * 1024;
  g_autoptr(GByteArray) msg = g_byte_array_sized_new (size + 5);
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GBytes) encoded = NULL;
  const guint8 header[] = { 0xdb, 0x00, 0x10, 0x00, 0x00 };
  const gchar *str;
  gsize len;

  /* 1 MiB valid str */
  g_byte_array_append (msg, header, sizeof header);
  g_byte_array_set_size (msg, size + sizeof header);
  memset (msg->data + sizeof header, 'a', size);
  value = bf_msgpack_decode (msg->data, msg->len, NULL);
  g_assert_nonnull (value);
  str = g_variant_get_string (value, &len);
  g_assert_cmpuint (len, ==, size);
  g_assert_cmpint (str[0], ==, 'a');
  g_assert_cmpint (str[size - 1], ==, 'a');
  encoded = bf_msgpack_encode (value);
  g_assert_cmpmem (g_bytes_get_data (encoded, NULL), g_bytes_get_size (encoded),
                   msg->data, msg->len);
  g_clear_pointer (&value, g_variant_unref);

  /* 1 MiB of invalid bytes: each becomes U+FFFD, in linear time */
  memset (msg->data + sizeof header, 0xff, size);
  value = bf_msgpack_decode (msg->data, msg->len, NULL);
  g_assert_nonnull (value);
  g_variant_get_string (value, &len);
  g_assert_cmpuint (len, ==, 3 * size);
  g_clear_pointer (&value, g_variant_unref);

  /* array 32 of 2^16 fixints (2^20 of them would be over budget: see
   * test_error_amplification) */
  g_byte_array_set_size (msg, 0);
  g_byte_array_append (msg, (const guint8 []) { 0xdd, 0x00, 0x01, 0x00, 0x00 }, 5);
  size = 65536;
  g_byte_array_set_size (msg, size + 5);
  for (gsize i = 0; i < size; i++)
    msg->data[5 + i] = (guint8) (i % 128);
  value = bf_msgpack_decode (msg->data, msg->len, NULL);
  g_assert_nonnull (value);
  g_assert_cmpuint (g_variant_n_children (value), ==, size);
  g_clear_pointer (&encoded, g_bytes_unref);
  encoded = bf_msgpack_encode (value);
  g_assert_cmpmem (g_bytes_get_data (encoded, NULL), g_bytes_get_size (encoded),
                   msg->data, msg->len);
}

/* Errors */

/* Input built to amplify: millions of small values that each would cost a
 * GVariant of 100+ bytes.  Each shape is refused as over budget, quickly
 * and before the memory is spent, while an equally large array of 3-byte
 * integers (the fast path, 16 to 20 bytes an element) decodes within it. */
static GByteArray *
amplifier (guint8  kind,
           guint32 n)
{
  GByteArray *msg = g_byte_array_new ();
  guint8 header[5] = { kind == 'm' ? 0xdf : 0xdd, n >> 24, n >> 16, n >> 8, n };

  g_byte_array_append (msg, header, sizeof header);
  for (guint32 i = 0; i < n; i++)
    {
      switch (kind)
        {
        case 'f':   /* fixints */
          g_byte_array_append (msg, (const guint8 []) { 5 }, 1);
          break;
        case 'u':   /* uint 16 */
          g_byte_array_append (msg, (const guint8 []) { 0xcd, (i >> 8) | 0x80, i }, 3);
          break;
        case 'm':   /* map of distinct 3-letter keys to fixints */
          g_byte_array_append (msg, (const guint8 []) { 0xa3, 'a' + i % 26, 'a' + i / 26 % 26,
                                                        'a' + i / 676 % 26, 1 }, 5);
          break;
        case 'n':   /* array of one-element arrays */
          g_byte_array_append (msg, (const guint8 []) { 0x91, 1 }, 2);
          break;
        case 'd':   /* array of maps with one entry */
          g_byte_array_append (msg, (const guint8 []) { 0x81, 0xa1, 'k', 1 }, 4);
          break;
        default:
          g_assert_not_reached ();
        }
    }
  return msg;
}

static void
test_error_amplification (void)
{
  static const guint8 refused[] = { 'f', 'm', 'n', 'd' };
  const guint32 n = 1024 * 1024;

  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_autoptr(GByteArray) msg = amplifier (refused[i], refused[i] == 'm' ? 17576 * 8 : n);
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = NULL;

      g_test_message ("amplifier '%c', %u bytes", refused[i], msg->len);
      value = bf_msgpack_decode (msg->data, msg->len, &error);
      if (refused[i] == 'm')
        {
          /* 17,576 distinct keys, repeated: duplicates collapse, the
           * entries made on the way are charged all the same. */
          g_assert_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TOO_BIG);
          continue;
        }
      g_assert_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TOO_BIG);
      g_assert_null (value);
      g_assert_nonnull (strstr (error->message, "times the input"));
    }

  {
    g_autoptr(GByteArray) msg = amplifier ('u', n);
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) value = bf_msgpack_decode (msg->data, msg->len, &error);
    g_autoptr(GVariant) last = NULL;

    g_assert_no_error (error);
    g_assert_cmpuint (g_variant_n_children (value), ==, n);
    g_assert_cmpuint (g_variant_get_size (value), <=,
                      (gsize) msg->len * BF_MSGPACK_BUDGET_FACTOR + BF_MSGPACK_BUDGET_FLOOR);
    last = g_variant_get_child_value (value, n - 1);
    g_assert_cmpstr (g_variant_get_type_string (last), ==, "v");
  }
}

static void
test_error_truncated (void)
{
  static const gchar * const messages[] = {
    RESPONSE_HEX,
    UPDATE_HEX,
    EVERYTHING_HEX,
    "cf ff ff ff ff ff ff ff ff",
    "cb 3f f8 00 00 00 00 00 00",
    "c6 00 00 00 02 61 62",
  };

  for (gsize m = 0; m < G_N_ELEMENTS (messages); m++)
    {
      g_autoptr(GBytes) full = hex (messages[m]);
      g_autoptr(GVariant) value = decode_bytes (full);

      g_assert_nonnull (value);
      /* msgpack is prefix-free: every proper prefix is truncated */
      for (gsize len = 0; len < g_bytes_get_size (full); len++)
        {
          g_autoptr(GBytes) prefix = g_bytes_new_from_bytes (full, 0, len);

          g_test_message ("message %" G_GSIZE_FORMAT ", prefix of %" G_GSIZE_FORMAT " bytes",
                          m, len);
          assert_decode_error (prefix, BF_MSGPACK_ERROR_TRUNCATED, len == 0 ? "empty" : "offset");
        }
    }

  /* and the message says where */
  assert_decode_error_hex ("92 91 c0", BF_MSGPACK_ERROR_TRUNCATED,
                           "ends at offset 3 where a value was expected");
  assert_decode_error_hex ("82 a1 61 91 c0", BF_MSGPACK_ERROR_TRUNCATED,
                           "ends at offset 5 where a key of the map at offset 0 was expected");
  assert_decode_error_hex ("91 cd 01", BF_MSGPACK_ERROR_TRUNCATED,
                           "uint 16 at offset 1");
  assert_decode_error_hex ("81 a1 61 01 00", BF_MSGPACK_ERROR_TRAILING, NULL);
  assert_decode_error_hex ("82 a1 61 01 a1", BF_MSGPACK_ERROR_TRUNCATED, NULL);
  assert_decode_error_hex ("82 a1 61 c0 c0", BF_MSGPACK_ERROR_INVALID,
                           "map key at offset 4 is not a string");
}

static void
test_error_huge_lengths (void)
{
  static const struct { const gchar *msgpack; const gchar *message; } cases[] = {
    { "dd ff ff ff ff", "array at offset 0 declares 4294967295 elements but only 0 bytes remain" },
    { "df ff ff ff ff", "map at offset 0 declares 4294967295 entries" },
    { "db ff ff ff ff", "str at offset 0 declares 4294967295 bytes but only 0 remain" },
    { "c6 ff ff ff ff", "bin at offset 0 declares 4294967295 bytes" },
    { "dc ff ff 00", "array at offset 0 declares 65535 elements but only 1 bytes remain" },
    { "de ff ff 00", "map at offset 0 declares 65535 entries" },
    { "da ff ff 61", "str at offset 0 declares 65535 bytes but only 1 remain" },
    { "c5 ff ff", "bin at offset 0 declares 65535 bytes" },
    { "d9 02 61", "str at offset 0 declares 2 bytes but only 1 remain" },
    { "c4 01", "bin at offset 0 declares 1 bytes but only 0 remain" },
    { "9f 00", "array at offset 0 declares 15 elements" },
    /* a map entry takes at least two bytes */
    { "82 a1 61 01", "map at offset 0 declares 2 entries but only 3 bytes remain" },
    { "91 dd ff ff ff ff", "array at offset 1 declares 4294967295 elements" },
    { "81 a1 61 df ff ff ff ff", "map at offset 3 declares 4294967295 entries" },
    { "81 db ff ff ff ff", "str at offset 1 declares 4294967295 bytes" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_decode_error_hex (cases[i].msgpack, BF_MSGPACK_ERROR_TRUNCATED, cases[i].message);
}

/* Declared lengths must not turn into allocations: with the address
 * space limited to what the process uses now plus 256 MiB, a decoder that
 * sized anything from the 2^32-1 in the header would abort in g_malloc. */
static void
test_error_huge_lengths_no_allocation (void)
{
#ifdef HAVE_ASAN
  g_test_skip ("AddressSanitizer needs an unlimited address space");
#else
  /* The subprocess would run natively anyway, and the child watch thread
   * that g_test_trap_subprocess() starts shows up as "possibly lost". */
  if (RUNNING_ON_VALGRIND)
    {
      g_test_skip ("Not under valgrind");
      return;
    }

  if (g_test_subprocess ())
    {
      static const gchar * const messages[] = {
        "dd ff ff ff ff", "df ff ff ff ff", "db ff ff ff ff", "c6 ff ff ff ff",
        "dd ff ff ff fe 91 dd ff ff ff fe 00",
      };
      g_autofree gchar *statm = NULL;
      struct rlimit limit;
      guint64 pages;

      g_assert_true (g_file_get_contents ("/proc/self/statm", &statm, NULL, NULL));
      pages = g_ascii_strtoull (statm, NULL, 10);
      limit.rlim_cur = limit.rlim_max = pages * sysconf (_SC_PAGESIZE) + 256 * 1024 * 1024;
      g_assert_cmpint (setrlimit (RLIMIT_AS, &limit), ==, 0);

      for (gsize i = 0; i < G_N_ELEMENTS (messages); i++)
        assert_decode_error_hex (messages[i], BF_MSGPACK_ERROR_TRUNCATED, NULL);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
#endif
}

static GBytes *
nested (guint        levels,
        const guint8 *open,
        gsize         open_len,
        guint8        innermost)
{
  g_autoptr(GByteArray) msg = g_byte_array_new ();

  for (guint i = 0; i < levels - 1; i++)
    g_byte_array_append (msg, open, open_len);
  g_byte_array_append (msg, &innermost, 1);
  return g_byte_array_free_to_bytes (g_steal_pointer (&msg));
}

static void
test_error_too_deep (void)
{
  const guint8 array[] = { 0x91 };
  const guint8 map[] = { 0x81, 0xa1, 0x6b };
  g_autoptr(GBytes) ok_arrays = nested (BF_MSGPACK_MAX_DEPTH, array, 1, 0x90);
  g_autoptr(GBytes) ok_maps = nested (BF_MSGPACK_MAX_DEPTH, map, 3, 0x80);
  g_autoptr(GBytes) deep_arrays = nested (BF_MSGPACK_MAX_DEPTH + 1, array, 1, 0x90);
  g_autoptr(GBytes) deep_maps = nested (BF_MSGPACK_MAX_DEPTH + 1, map, 3, 0x80);
  g_autoptr(GBytes) deep_scalar = nested (BF_MSGPACK_MAX_DEPTH + 1, array, 1, 0xc0);
  g_autoptr(GBytes) very_deep = nested (1000 * 1000, array, 1, 0x90);
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) value2 = NULL;
  g_autoptr(GBytes) encoded = NULL;

  /* exactly BF_MSGPACK_MAX_DEPTH is fine, and round-trips */
  value = decode_bytes (ok_arrays);
  encoded = bf_msgpack_encode (value);
  g_assert_true (g_bytes_equal (encoded, ok_arrays));
  value2 = decode_bytes (ok_maps);
  g_clear_pointer (&encoded, g_bytes_unref);
  encoded = bf_msgpack_encode (value2);
  g_assert_true (g_bytes_equal (encoded, ok_maps));

  /* a scalar inside BF_MSGPACK_MAX_DEPTH arrays is at the limit, not over it */
  g_clear_pointer (&value, g_variant_unref);
  value = decode_bytes (deep_scalar);

  assert_decode_error (deep_arrays, BF_MSGPACK_ERROR_TOO_DEEP,
                       "array at offset 32 is nested more than 32 levels deep");
  assert_decode_error (deep_maps, BF_MSGPACK_ERROR_TOO_DEEP,
                       "map at offset 96 is nested more than 32 levels deep");
  /* no recursion past the limit, so no stack overflow */
  assert_decode_error (very_deep, BF_MSGPACK_ERROR_TOO_DEEP, NULL);
  /* the depth check comes before the length check */
  assert_decode_error_hex ("91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91"
                           " 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 dd ff ff ff ff",
                           BF_MSGPACK_ERROR_TOO_DEEP, NULL);
}

static void
test_error_map_key (void)
{
  static const gchar * const keys[] = {
    "c0", "c2", "01", "ff", "cc 01", "ca 00 00 00 00", "c4 01 61", "90", "80", "91 a1 61",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autofree gchar *msg = g_strdup_printf ("81 %s 01", keys[i]);

      assert_decode_error_hex (msg, BF_MSGPACK_ERROR_INVALID, "map key at offset 1 is not a string");
    }

  /* {op: 'update', args: {1: 2}}: the bad key is byte 17 */
  assert_decode_error_hex ("82 a2 6f 70 a6 75 70 64 61 74 65 a4 61 72 67 73 81 01 02",
                           BF_MSGPACK_ERROR_INVALID, "map key at offset 17 is not a string");
}

static void
test_error_ext (void)
{
  static const gchar * const exts[] = {
    "d4 01 00",
    "d5 01 00 00",
    "d6 ff 00 00 00 00",
    "d7 ff 00 00 00 00 00 00 00 00",
    "d8 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
    "c7 00 01",
    "c8 00 01 01 00",
    "c9 00 00 00 01 01 00",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (exts); i++)
    {
      g_autofree gchar *in_array = g_strdup_printf ("92 c0 %s", exts[i]);

      assert_decode_error_hex (exts[i], BF_MSGPACK_ERROR_INVALID, "ext type");
      assert_decode_error_hex (in_array, BF_MSGPACK_ERROR_INVALID, "at offset 2 is not supported");
    }

  /* 0xc1 is "never used" */
  assert_decode_error_hex ("c1", BF_MSGPACK_ERROR_INVALID, "byte 0xc1 at offset 0 is not a msgpack type");
  assert_decode_error_hex ("81 a1 61 c1", BF_MSGPACK_ERROR_INVALID, "byte 0xc1 at offset 3");
}

static void
test_error_trailing (void)
{
  g_autofree gchar *response_plus = g_strconcat (RESPONSE_HEX, " 00", NULL);

  assert_decode_error_hex ("c0 c0", BF_MSGPACK_ERROR_TRAILING,
                           "unexpected data at offset 1 after the msgpack value (1 trailing bytes)");
  assert_decode_error_hex ("90 00 00", BF_MSGPACK_ERROR_TRAILING, "at offset 1");
  assert_decode_error_hex (response_plus, BF_MSGPACK_ERROR_TRAILING, "at offset 33");
  /* a valid value followed by garbage is still only TRAILING */
  assert_decode_error_hex ("01 c1", BF_MSGPACK_ERROR_TRAILING, NULL);
}

static void
test_error_empty (void)
{
  g_autoptr(GError) error = NULL;
  const guint8 byte = 0;

  g_assert_null (bf_msgpack_decode (NULL, 0, &error));
  g_assert_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED);
  g_clear_error (&error);
  g_assert_null (bf_msgpack_decode (&byte, 0, &error));
  g_assert_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED);
  /* a NULL error is fine */
  g_assert_null (bf_msgpack_decode (&byte, 0, NULL));
}

/* Encoding */

static void
test_encode_bytes (void)
{
  g_autofree gchar *s31 = g_strnfill (31, 'x');
  g_autofree gchar *s32 = g_strnfill (32, 'x');
  g_autofree gchar *s256 = g_strnfill (256, 'x');
  g_autofree gchar *s65536 = g_strnfill (65536, 'x');
  g_autoptr(GBytes) encoded = NULL;
  const guint8 *data;
  static const struct { const gchar *text; const gchar *msgpack; } cases[] = {
    /* nil, bool */
    { "@mv nothing", "c0" },
    { "@ms nothing", "c0" },
    { "()", "c0" },
    { "true", "c3" },
    { "false", "c2" },
    /* integers take the shortest form (msgpack spec, "int format family") */
    { "byte 0", "00" },
    { "byte 255", "cc ff" },
    { "int16 -1", "ff" },
    { "int16 -32", "e0" },
    { "int16 -33", "d0 df" },
    { "int16 -128", "d0 80" },
    { "int16 -129", "d1 ff 7f" },
    { "uint16 128", "cc 80" },
    { "uint16 256", "cd 01 00" },
    { "int32 -32769", "d2 ff ff 7f ff" },
    { "uint32 65536", "ce 00 01 00 00" },
    { "int32 2147483647", "ce 7f ff ff ff" },
    { "int64 4294967296", "cf 00 00 00 01 00 00 00 00" },
    { "int64 -2147483649", "d3 ff ff ff ff 7f ff ff ff" },
    { "int64 -9223372036854775808", "d3 80 00 00 00 00 00 00 00" },
    { "uint64 18446744073709551615", "cf ff ff ff ff ff ff ff ff" },
    { "handle 5", "05" },
    { "handle -1", "ff" },
    /* doubles are float 64 */
    { "1.5", "cb 3f f8 00 00 00 00 00 00" },
    { "-0.0", "cb 80 00 00 00 00 00 00 00" },
    /* strings */
    { "''", "a0" },
    { "'abc'", "a3 61 62 63" },
    { "objectpath '/a'", "a2 2f 61" },
    { "signature 'as'", "a2 61 73" },
    { "'\\u00e9'", "a2 c3 a9" },
    /* bytestrings are bin */
    { "@ay []", "c4 00" },
    { "[byte 0x61, 0x62]", "c4 02 61 62" },
    /* variants and maybes are transparent */
    { "<int64 1>", "01" },
    { "<<'x'>>", "a1 78" },
    { "@ms 'x'", "a1 78" },
    { "@mmi just nothing", "c0" },
    { "@mai [1]", "91 01" },
    /* arrays and tuples */
    { "@av []", "90" },
    { "[<1>, <'a'>]", "92 01 a1 61" },
    { "(int32 1, true)", "92 01 c3" },
    { "(1,)", "91 01" },
    { "((),)", "91 c0" },
    { "{1, 'x'}", "92 01 a1 78" },
    { "@aas [['a'], []]", "92 91 a1 61 90" },
    { "@a(is) [(1, 'a')]", "91 92 01 a1 61" },
    /* fixed-size element arrays (fast path) */
    { "[true, false]", "92 c3 c2" },
    { "[int16 -1, 1000]", "92 ff cd 03 e8" },
    { "[uint16 1, 65535]", "92 01 cd ff ff" },
    { "[int32 1, 2, -300]", "93 01 02 d1 fe d4" },
    { "[uint32 4294967295]", "91 ce ff ff ff ff" },
    { "[int64 -1, 300]", "92 ff cd 01 2c" },
    { "[uint64 18446744073709551615]", "91 cf ff ff ff ff ff ff ff ff" },
    { "[handle 3]", "91 03" },
    { "[1.5, -2.0]", "92 cb 3f f8 00 00 00 00 00 00 cb c0 00 00 00 00 00 00 00" },
    { "@ax []", "90" },
    { "@ad []", "90" },
    /* string arrays (fast path and generic) */
    { "['a', 'bc']", "92 a1 61 a2 62 63" },
    { "@as []", "90" },
    { "[objectpath '/']", "91 a1 2f" },
    { "[signature 'i']", "91 a1 69" },
    { "[@ms 'a', nothing]", "92 a1 61 c0" },
    /* dictionaries are maps, whatever their key type */
    { "@a{sv} {}", "80" },
    { "{'a': <int64 1>}", "81 a1 61 01" },
    { "{1: 'a'}", "81 01 a1 61" },
    { "{'a': [byte 0x00]}", "81 a1 61 c4 01 00" },
    { "{'k': {'j': @as []}}", "81 a1 6b 81 a1 6a 90" },
    /* the protocol messages, byte for byte as Python's msgpack */
    { RESPONSE_TEXT, RESPONSE_HEX },
    { UPDATE_TEXT, UPDATE_HEX },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GVariant) value = parse (cases[i].text);

      g_test_message ("encoding %s", cases[i].text);
      assert_encodes_to (value, cases[i].msgpack);
    }

  /* str length boundaries: fixstr, str 8, str 16, str 32 */
  encoded = bf_msgpack_encode (g_variant_new_string (s31));
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 1 + 31);
  g_assert_cmpuint (((const guint8 *) g_bytes_get_data (encoded, NULL))[0], ==, 0xbf);
  g_clear_pointer (&encoded, g_bytes_unref);

  encoded = bf_msgpack_encode (g_variant_new_string (s32));
  data = g_bytes_get_data (encoded, NULL);
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 2 + 32);
  g_assert_cmpmem (data, 2, "\xd9\x20", 2);
  g_clear_pointer (&encoded, g_bytes_unref);

  encoded = bf_msgpack_encode (g_variant_new_string (s256));
  data = g_bytes_get_data (encoded, NULL);
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 3 + 256);
  g_assert_cmpmem (data, 3, "\xda\x01\x00", 3);
  g_clear_pointer (&encoded, g_bytes_unref);

  encoded = bf_msgpack_encode (g_variant_new_string (s65536));
  data = g_bytes_get_data (encoded, NULL);
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 5 + 65536);
  g_assert_cmpmem (data, 5, "\xdb\x00\x01\x00\x00", 5);
  g_clear_pointer (&encoded, g_bytes_unref);

  /* bin 16 */
  encoded = bf_msgpack_encode (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, s256, 256, 1));
  data = g_bytes_get_data (encoded, NULL);
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 3 + 256);
  g_assert_cmpmem (data, 3, "\xc5\x01\x00", 3);
}

static void
test_encode_containers_sizes (void)
{
  /* array 16 and map 16 headers above 15 elements */
  g_autoptr(GVariantBuilder) array = g_variant_builder_new (G_VARIANT_TYPE ("av"));
  g_autoptr(GVariantBuilder) dict = g_variant_builder_new (G_VARIANT_TYPE_VARDICT);
  g_autoptr(GBytes) encoded = NULL;
  g_autoptr(GVariant) decoded = NULL;
  g_autoptr(GVariant) dict_value = NULL;
  const guint8 *data;

  for (guint i = 0; i < 16; i++)
    {
      g_autofree gchar *key = g_strdup_printf ("%02u", i);

      g_variant_builder_add (array, "v", g_variant_new_int64 (i));
      g_variant_builder_add (dict, "{sv}", key, g_variant_new_int64 (i));
    }

  encoded = bf_msgpack_encode (g_variant_builder_end (array));
  data = g_bytes_get_data (encoded, NULL);
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 3 + 16);
  g_assert_cmpmem (data, 4, "\xdc\x00\x10\x00", 4);
  g_clear_pointer (&encoded, g_bytes_unref);

  dict_value = g_variant_ref_sink (g_variant_builder_end (dict));
  encoded = bf_msgpack_encode (dict_value);
  data = g_bytes_get_data (encoded, NULL);
  g_assert_cmpuint (g_bytes_get_size (encoded), ==, 3 + 16 * 4);
  g_assert_cmpmem (data, 4, "\xde\x00\x10\xa2", 4);
  decoded = decode_bytes (encoded);
  assert_variant_equal (decoded, dict_value);
}

static void
test_encode_to_appends (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GVariant) value = parse (RESPONSE_TEXT);
  g_autoptr(GBytes) expected = hex ("78 79 " RESPONSE_HEX " c3");

  g_byte_array_append (out, (const guint8 *) "xy", 2);
  bf_msgpack_encode_to (out, value);
  /* a floating reference is consumed */
  bf_msgpack_encode_to (out, g_variant_new_boolean (TRUE));
  g_assert_cmpmem (out->data, out->len,
                   g_bytes_get_data (expected, NULL), g_bytes_get_size (expected));
  /* the caller's reference is untouched */
  g_assert_false (g_variant_is_floating (value));
}

/* Round trips */

static void
test_roundtrip_protocol (void)
{
  static const gchar * const messages[] = { RESPONSE_HEX, UPDATE_HEX, EVERYTHING_HEX };
  static const gchar * const texts[] = {
    RESPONSE_TEXT,
    UPDATE_TEXT,
    EVERYTHING_TEXT,
    /* an exception response */
    "{'op': <'response'>, 'seq_number': <int64 4>, 'is_exception': <true>,"
    " 'result': <'Traceback (most recent call last):\\n  ...'>}",
    /* set_worker_settings */
    "{'op': <'set_worker_settings'>, 'seq_number': <int64 2>,"
    " 'args': <{'newline_re': <'(\\r\\n|\\r|\\n)'>, 'max_line_length': <int64 4096>,"
    "           'buffer_timeout': <int64 5>, 'buffer_size': <int64 65536>}>}",
    /* start_command for a shell */
    "{'op': <'start_command'>, 'seq_number': <int64 7>, 'command_id': <'12'>,"
    " 'command_name': <'shell'>, 'builder_name': <'linux'>,"
    " 'args': <{'workdir': <'/srv/worker/linux/build'>,"
    "           'command': <[<'make'>, <'-j4'>, <[<'obfuscated'>, <'s3cret'>, <'XXX'>]>]>,"
    "           'env': <{'PATH': <@mv nothing>, 'LANG': <'C.UTF-8'>}>,"
    "           'timeout': <int64 1200>, 'maxTime': <@mv nothing>, 'usePTY': <false>,"
    "           'logfiles': <@a{sv} {}>}>}",
    /* an upload chunk */
    "{'op': <'update_upload_file_write'>, 'seq_number': <int64 9>, 'command_id': <'3'>,"
    " 'args': <[byte 0x00, 0x01, 0xfe, 0xff]>}",
    /* a large and a negative number */
    "{'op': <'update'>, 'command_id': <'4'>,"
    " 'args': <[<[<'rc'>, <int64 -1>]>, <[<'elapsed'>, <0.25>]>,"
    "           <[<'stat'>, <[<uint64 18446744073709551615>, <int64 -9223372036854775808>]>]>]>}",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (messages); i++)
    {
      g_autoptr(GBytes) bytes = hex (messages[i]);
      g_autoptr(GVariant) value = decode_bytes (bytes);
      g_autoptr(GBytes) encoded = bf_msgpack_encode (value);
      g_autoptr(GVariant) again = decode_bytes (encoded);

      assert_variant_equal (again, value);
    }

  for (gsize i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr(GVariant) value = parse (texts[i]);
      g_autoptr(GBytes) encoded = bf_msgpack_encode (value);
      g_autoptr(GVariant) decoded = decode_bytes (encoded);
      g_autoptr(GBytes) again = bf_msgpack_encode (decoded);

      g_test_message ("round trip of %s", texts[i]);
      assert_variant_equal (decoded, value);
      g_assert_true (g_bytes_equal (encoded, again));
    }
}

static void
test_roundtrip_types (void)
{
  /* every GVariant type encodes to msgpack that decodes to its normal form */
  static const struct { const gchar *in; const gchar *out; } cases[] = {
    { "true", "true" },
    { "byte 200", "int64 200" },
    { "int16 -5", "int64 -5" },
    { "uint16 65535", "int64 65535" },
    { "int32 -2147483648", "int64 -2147483648" },
    { "uint32 4294967295", "int64 4294967295" },
    { "int64 -9223372036854775808", "int64 -9223372036854775808" },
    { "uint64 5", "int64 5" },
    { "uint64 9223372036854775807", "int64 9223372036854775807" },
    { "uint64 9223372036854775808", "uint64 9223372036854775808" },
    { "handle 7", "int64 7" },
    { "2.5e-300", "2.5e-300" },
    { "'text'", "'text'" },
    { "objectpath '/org/buildfleet'", "'/org/buildfleet'" },
    { "signature 'a{sv}'", "'a{sv}'" },
    { "<<int32 1>>", "int64 1" },
    { "@mv nothing", "@mv nothing" },
    { "@ms 'x'", "'x'" },
    { "()", "@mv nothing" },
    { "@ay [0x00, 0xff]", "[byte 0x00, 0xff]" },
    { "[int32 1, 2]", "[<int64 1>, <int64 2>]" },
    { "['a', 'b']", "[<'a'>, <'b'>]" },
    { "[[1.5], @ad []]", "[<[<1.5>]>, <@av []>]" },
    { "(1, 'a', [byte 0x01])", "[<int64 1>, <'a'>, <[byte 0x01]>]" },
    { "{'k': 'v'}", "{'k': <'v'>}" },
    { "{'k': <{'j': <@mv nothing>}>}", "{'k': <{'j': <@mv nothing>}>}" },
    { "[<@mv nothing>, <true>, <int64 0>, <int64 0>, <''>]",
      "[<@mv nothing>, <true>, <int64 0>, <int64 0>, <''>]" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GVariant) in = parse (cases[i].in);
      g_autoptr(GVariant) expected = parse (cases[i].out);
      g_autoptr(GBytes) encoded = bf_msgpack_encode (in);
      g_autoptr(GVariant) decoded = decode_bytes (encoded);
      g_autoptr(GBytes) again = bf_msgpack_encode (decoded);

      g_test_message ("round trip of %s", cases[i].in);
      assert_variant_equal (decoded, expected);
      /* what the decoder produces is a fixed point */
      g_assert_true (g_bytes_equal (encoded, again));
    }
}

/* What a worker never gets to keep is skipped, not decoded: the entry is
 * gone from maps one level down, nowhere else, and what is skipped is
 * still checked. */
static void
test_decode_dropping (void)
{
  /* {"op": "response", "environ": 1, "result": {"a": 1, "environ": {"X": "y", "Z": [1, 2.5]}, "b": 2}} */
  static const guint8 msg[] = {
    0x83, 0xa2, 'o', 'p', 0xa8, 'r', 'e', 's', 'p', 'o', 'n', 's', 'e',
    0xa7, 'e', 'n', 'v', 'i', 'r', 'o', 'n', 0x01,
    0xa6, 'r', 'e', 's', 'u', 'l', 't', 0x83,
      0xa1, 'a', 0x01,
      0xa7, 'e', 'n', 'v', 'i', 'r', 'o', 'n', 0x82, 0xa1, 'X', 0xa1, 'y',
        0xa1, 'Z', 0x92, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0,
      0xa1, 'b', 0x02,
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) all = bf_msgpack_decode (msg, sizeof msg, &error);
  g_autoptr(GVariant) dropped = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GVariant) top = NULL;
  guint8 bad[sizeof msg];

  g_assert_no_error (error);
  result = g_variant_lookup_value (all, "result", NULL);
  g_assert_nonnull (g_variant_lookup_value (result, "environ", NULL));
  g_clear_pointer (&result, g_variant_unref);

  dropped = bf_msgpack_decode_dropping (msg, sizeof msg, "environ", &error);
  g_assert_no_error (error);
  result = g_variant_lookup_value (dropped, "result", G_VARIANT_TYPE_VARDICT);
  g_assert_nonnull (result);
  g_assert_cmpuint (g_variant_n_children (result), ==, 2);
  g_assert_null (g_variant_lookup_value (result, "environ", NULL));
  g_assert_true (g_variant_lookup (result, "b", "x", NULL));
  /* at the top level it stays */
  top = g_variant_lookup_value (dropped, "environ", NULL);
  g_assert_nonnull (top);

  /* a skipped value is still checked: an ext type inside it ... */
  memcpy (bad, msg, sizeof msg);
  bad[44] = 0xd4;
  g_clear_pointer (&dropped, g_variant_unref);
  dropped = bf_msgpack_decode_dropping (bad, sizeof bad, "environ", &error);
  g_assert_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_INVALID);
  g_assert_null (dropped);
  g_clear_error (&error);
  /* ... or a value cut short */
  dropped = bf_msgpack_decode_dropping (msg, 50, "environ", &error);
  g_assert_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED);
  g_assert_null (dropped);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/msgpack/decode/scalars", test_decode_scalars);
  g_test_add_func ("/msgpack/decode/scalar-arrays", test_decode_scalar_arrays);
  g_test_add_func ("/msgpack/decode/containers", test_decode_containers);
  g_test_add_func ("/msgpack/decode/duplicate-keys", test_decode_duplicate_keys);
  g_test_add_func ("/msgpack/decode/utf8-repair", test_decode_utf8);
  g_test_add_func ("/msgpack/decode/large", test_decode_large);
  g_test_add_func ("/msgpack/error/truncated", test_error_truncated);
  g_test_add_func ("/msgpack/error/amplification", test_error_amplification);
  g_test_add_func ("/msgpack/error/huge-lengths", test_error_huge_lengths);
  g_test_add_func ("/msgpack/error/huge-lengths-no-allocation", test_error_huge_lengths_no_allocation);
  g_test_add_func ("/msgpack/error/too-deep", test_error_too_deep);
  g_test_add_func ("/msgpack/error/map-key-not-string", test_error_map_key);
  g_test_add_func ("/msgpack/error/ext", test_error_ext);
  g_test_add_func ("/msgpack/error/trailing", test_error_trailing);
  g_test_add_func ("/msgpack/error/empty", test_error_empty);
  g_test_add_func ("/msgpack/encode/bytes", test_encode_bytes);
  g_test_add_func ("/msgpack/encode/container-sizes", test_encode_containers_sizes);
  g_test_add_func ("/msgpack/encode/to-appends", test_encode_to_appends);
  g_test_add_func ("/msgpack/roundtrip/protocol", test_roundtrip_protocol);
  g_test_add_func ("/msgpack/roundtrip/types", test_roundtrip_types);
  g_test_add_func ("/msgpack/decode/dropping", test_decode_dropping);

  return g_test_run ();
}
