/* test-banana.c: unit tests for the banana framing of PB
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <malloc.h>
#include <string.h>
#include <glib.h>

#include "bf-banana.h"

/* Parses "01 81 ..." (spaces optional) into bytes. */
static GByteArray *
hex (const gchar *text)
{
  GByteArray *bytes = g_byte_array_new ();

  for (const gchar *p = text; *p != '\0'; )
    {
      guint8 byte;

      if (*p == ' ')
        {
          p++;
          continue;
        }
      g_assert_cmpint (g_ascii_xdigit_value (p[0]), >=, 0);
      g_assert_cmpint (g_ascii_xdigit_value (p[1]), >=, 0);
      byte = (guint8) (g_ascii_xdigit_value (p[0]) << 4 | g_ascii_xdigit_value (p[1]));
      g_byte_array_append (bytes, &byte, 1);
      p += 2;
    }
  return bytes;
}

static gchar *
to_hex (const GByteArray *bytes)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < bytes->len; i++)
    g_string_append_printf (s, "%s%02x", i > 0 ? " " : "", bytes->data[i]);
  return g_string_free (s, FALSE);
}

/* Decodes hex input as one expression and returns its printed form, or the
 * error code as "error:N". */
static gchar *
decode_hex (const gchar     *text,
            BfBananaDialect  dialect)
{
  g_autoptr(GByteArray) bytes = hex (text);
  g_autoptr(GError) error = NULL;
  g_autoptr(BfBananaValue) value = bf_banana_decode (bytes->data, bytes->len, dialect, &error);

  if (value == NULL)
    {
      g_assert_true (error->domain == BF_BANANA_ERROR);
      return g_strdup_printf ("error:%d", error->code);
    }
  return bf_banana_value_print (value);
}

static void
assert_decodes (const gchar *text,
                const gchar *expected)
{
  g_autofree gchar *got = decode_hex (text, BF_BANANA_DIALECT_PB);

  g_assert_cmpstr (got, ==, expected);
}

static void
assert_fails (const gchar     *text,
              BfBananaDialect  dialect,
              BfBananaError    code)
{
  g_autofree gchar *got = decode_hex (text, dialect);
  g_autofree gchar *expected = g_strdup_printf ("error:%d", code);

  g_assert_cmpstr (got, ==, expected);
}

/* Encodes with @write and compares to the hex Twisted writes. */
#define assert_encodes(expected, ...) G_STMT_START {           \
    g_autoptr(GByteArray) out = g_byte_array_new ();            \
    g_autofree gchar *got = NULL;                               \
    __VA_ARGS__;                                                \
    got = to_hex (out);                                         \
    g_assert_cmpstr (got, ==, expected);                        \
  } G_STMT_END

static void
test_scalars (void)
{
  /* as Twisted's banana.encode() writes them */
  assert_encodes ("00 81", bf_banana_write_int (out, 0));
  assert_encodes ("01 81", bf_banana_write_int (out, 1));
  assert_encodes ("7f 01 81", bf_banana_write_int (out, 255));
  assert_encodes ("01 83", bf_banana_write_int (out, -1));
  assert_encodes ("7f 7f 7f 7f 07 81", bf_banana_write_int (out, G_MAXINT32));
  assert_encodes ("00 00 00 00 08 85", bf_banana_write_int (out, (gint64) G_MAXINT32 + 1));
  assert_encodes ("00 00 00 00 08 83", bf_banana_write_int (out, G_MININT32));
  assert_encodes ("01 00 00 00 08 86", bf_banana_write_int (out, (gint64) G_MININT32 - 1));
  assert_encodes ("7f 7f 7f 7f 7f 7f 7f 7f 7f 85", bf_banana_write_int (out, G_MAXINT64));
  assert_encodes ("00 00 00 00 00 00 00 00 00 01 86", bf_banana_write_int (out, G_MININT64));
  assert_encodes ("84 3f f8 00 00 00 00 00 00", bf_banana_write_float (out, 1.5));
  assert_encodes ("00 82", bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "", 0));
  assert_encodes ("03 82 61 62 63", bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "abc", 3));
  assert_encodes ("00 80", bf_banana_write_list_header (out, 0));
  /* vocabulary only in the pb dialect */
  assert_encodes ("13 87", bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "version", 7));
  assert_encodes ("07 82 76 65 72 73 69 6f 6e",
                  bf_banana_write_string (out, BF_BANANA_DIALECT_NONE, "version", 7));
  assert_encodes ("02 80 02 82 70 62 04 82 6e 6f 6e 65", bf_banana_write_offer (out));
  assert_encodes ("02 80 13 87 06 81", bf_banana_write_version (out, BF_BANANA_DIALECT_PB));

  assert_decodes ("00 81", "0");
  assert_decodes ("81", "0");     /* an empty prefix is zero */
  assert_decodes ("7f 01 81", "255");
  assert_decodes ("01 83", "-1");
  assert_decodes ("7f 7f 7f 7f 7f 7f 7f 7f 7f 00 85", "9223372036854775807");
  assert_decodes ("00 00 00 00 00 00 00 00 00 01 86", "-9223372036854775808");
  assert_decodes ("00 00 00 00 00 00 00 00 00 01 83", "-9223372036854775808");
  assert_decodes ("84 3f f8 00 00 00 00 00 00", "1.5");
  assert_decodes ("05 84 3f f8 00 00 00 00 00 00", "1.5"); /* a FLOAT prefix is ignored */
  assert_decodes ("03 82 61 00 ff", "\"a\\x00\\xff\"");
  assert_decodes ("00 82", "\"\"");
  assert_decodes ("1a 87", "\"message\"");
  assert_decodes ("03 80 01 81 00 80 01 80 02 83", "[1, [], [-2]]");
  /* leading zero digits are harmless, even past 64 bits */
  assert_decodes ("01 00 00 00 00 00 00 00 00 00 00 00 00 81", "1");
}

static void
test_refusals (void)
{
  assert_fails ("88", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TYPE);
  assert_fails ("01 ff", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TYPE);
  assert_fails ("00 87", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TYPE);
  assert_fails ("20 87", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TYPE);
  /* 2^32 + 3 is not "dereference" (found by fuzz-banana: the index was
   * narrowed to 32 bits before the range check) */
  assert_fails ("03 00 00 00 00 10 87", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TYPE);
  assert_fails ("01 87", BF_BANANA_DIALECT_NONE, BF_BANANA_ERROR_TYPE);
  /* 2^63 as INT, 2^63+1 as NEG, 2^64 as LONGINT */
  assert_fails ("00 00 00 00 00 00 00 00 00 01 85", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_LIMIT);
  assert_fails ("01 00 00 00 00 00 00 00 00 01 86", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_LIMIT);
  assert_fails ("00 00 00 00 00 00 00 00 00 02 85", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_LIMIT);
  assert_fails ("00 00 00 00 00 00 00 00 00 00 01 85", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_LIMIT);
  assert_fails ("02 80 01 81", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TRUNCATED);
  assert_fails ("05 82 61", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TRUNCATED);
  assert_fails ("01 81 01 81", BF_BANANA_DIALECT_PB, BF_BANANA_ERROR_TRAILING);
}

static void
assert_feed_fails (const guint8 *data,
                   gsize         len,
                   BfBananaError code,
                   const gchar  *words)
{
  g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_PB);
  g_autoptr(GError) error = NULL;
  g_autoptr(BfBananaValue) value = NULL;
  gsize consumed;

  g_assert_false (bf_banana_decoder_feed (decoder, data, len, &consumed, &value, &error));
  g_assert_error (error, BF_BANANA_ERROR, (gint) code);
  g_assert_null (value);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, words));
  g_assert_nonnull (strstr (error->message, "stream offset"));

  /* a failed decoder stays failed */
  g_clear_error (&error);
  g_assert_false (bf_banana_decoder_feed (decoder, (const guint8 *) "\x01\x81", 2,
                                          &consumed, &value, &error));
  g_assert_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_FAILED);
}

static void
test_limits (void)
{
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(BfBananaValue) value = NULL;
  g_autoptr(GError) error = NULL;
  guint8 zeros[80] = { 0 };

  /* 64 bytes of prefix are fine, 65 are not (Twisted's limit) */
  g_byte_array_append (bytes, zeros, 64);
  g_byte_array_append (bytes, (const guint8 *) "\x81", 1);
  value = bf_banana_decode (bytes->data, bytes->len, BF_BANANA_DIALECT_PB, &error);
  g_assert_no_error (error);
  g_assert_cmpint (value->integer, ==, 0);
  assert_feed_fails (zeros, 65, BF_BANANA_ERROR_PREFIX, "prefix");

  /* a string one byte over the limit is refused at its prefix, before any
   * of its bytes arrive (640 KiB + 1 = 0x0a0001) */
  assert_feed_fails ((const guint8 *) "\x01\x00\x28\x82", 4, BF_BANANA_ERROR_LIMIT, "string longer");
  /* a list one over its limit (65537 = 0x10001) */
  assert_feed_fails ((const guint8 *) "\x01\x00\x04\x80", 4, BF_BANANA_ERROR_LIMIT, "list longer");

  /* nesting: 64 lists deep are fine, 65 are not */
  g_byte_array_set_size (bytes, 0);
  for (guint i = 0; i < BF_BANANA_MAX_DEPTH; i++)
    bf_banana_write_list_header (bytes, 1);
  bf_banana_write_int (bytes, 7);
  g_clear_pointer (&value, bf_banana_value_free);
  value = bf_banana_decode (bytes->data, bytes->len, BF_BANANA_DIALECT_PB, &error);
  g_assert_no_error (error);
  g_byte_array_set_size (bytes, 0);
  for (guint i = 0; i < BF_BANANA_MAX_DEPTH + 1; i++)
    bf_banana_write_list_header (bytes, 1);
  assert_feed_fails (bytes->data, bytes->len, BF_BANANA_ERROR_LIMIT, "nested deeper");

  /* items in one expression: a list of 65535 lists of 1 already holds
   * 65536 + 1 items before its first element is complete */
  g_byte_array_set_size (bytes, 0);
  bf_banana_write_list_header (bytes, BF_BANANA_MAX_LIST_LENGTH);
  for (guint i = 0; i < BF_BANANA_MAX_LIST_LENGTH; i++)
    bf_banana_write_int (bytes, 1);
  assert_feed_fails (bytes->data, bytes->len, BF_BANANA_ERROR_LIMIT, "more than 65536 items");

  /* bytes of strings in one expression: four strings of 640 KiB */
  g_byte_array_set_size (bytes, 0);
  bf_banana_write_list_header (bytes, 4);
  for (guint i = 0; i < 4; i++)
    {
      g_autofree guint8 *big = g_malloc0 (BF_BANANA_SIZE_LIMIT);
      bf_banana_write_string (bytes, BF_BANANA_DIALECT_PB, big, BF_BANANA_SIZE_LIMIT);
    }
  assert_feed_fails (bytes->data, bytes->len, BF_BANANA_ERROR_LIMIT, "bytes of strings");

  /* ... but three fit, and the budget starts again with each expression */
  {
    g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_PB);
    g_autoptr(GByteArray) three = g_byte_array_new ();
    gsize pos = 0;
    guint n = 0;

    for (guint e = 0; e < 2; e++)
      {
        bf_banana_write_list_header (three, 3);
        for (guint i = 0; i < 3; i++)
          {
            g_autofree guint8 *big = g_malloc0 (BF_BANANA_SIZE_LIMIT);
            bf_banana_write_string (three, BF_BANANA_DIALECT_PB, big, BF_BANANA_SIZE_LIMIT);
          }
      }
    while (pos < three->len)
      {
        g_autoptr(BfBananaValue) expr = NULL;
        gsize consumed;

        g_assert_true (bf_banana_decoder_feed (decoder, three->data + pos,
                                               MIN (4096, three->len - pos),
                                               &consumed, &expr, &error));
        g_assert_no_error (error);
        pos += consumed;
        if (expr != NULL)
          {
            g_assert_cmpuint (expr->list.items[2]->string.len, ==, BF_BANANA_SIZE_LIMIT);
            n++;
          }
      }
    g_assert_cmpuint (n, ==, 2);
  }
}

/* Feeds @bytes split at random points (or a byte at a time) and returns the
 * printed expressions, one a line. */
static gchar *
feed_split (GByteArray      *bytes,
            BfBananaDialect  dialect,
            gsize            max_chunk,
            GRand           *rand)
{
  g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (dialect);
  GString *s = g_string_new (NULL);
  gsize pos = 0;

  while (pos < bytes->len)
    {
      gsize chunk = max_chunk == 1 ? 1 : (gsize) g_rand_int_range (rand, 1, (gint32) max_chunk + 1);
      gsize end = MIN (bytes->len, pos + chunk);

      /* a chunk may hold several expressions: call until it is used up */
      while (pos < end)
        {
          g_autoptr(BfBananaValue) expr = NULL;
          g_autoptr(GError) error = NULL;
          gsize consumed;

          g_assert_true (bf_banana_decoder_feed (decoder, bytes->data + pos, end - pos,
                                                 &consumed, &expr, &error));
          g_assert_no_error (error);
          g_assert_true (consumed > 0 || expr != NULL);
          pos += consumed;
          if (expr != NULL)
            {
              g_autofree gchar *printed = bf_banana_value_print (expr);
              g_string_append_printf (s, "%s\n", printed);
            }
        }
    }
  return g_string_free (s, FALSE);
}

static void
test_split (void)
{
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GRand) rand = g_rand_new_with_seed (13);
  g_autofree gchar *whole = NULL;
  g_autofree gchar *bytewise = NULL;
  const gchar *expected;

  /* the worker's side of a session start: dialect, version, then a message
   * with every item type, including a long string */
  bf_banana_write_string (bytes, BF_BANANA_DIALECT_UNSET, "pb", 2);
  bf_banana_write_version (bytes, BF_BANANA_DIALECT_PB);
  bf_banana_write_list_header (bytes, 7);
  bf_banana_write_string (bytes, BF_BANANA_DIALECT_PB, "message", 7);
  bf_banana_write_int (bytes, 1);
  bf_banana_write_int (bytes, -300);
  bf_banana_write_string (bytes, BF_BANANA_DIALECT_PB, "update", 6);
  bf_banana_write_float (bytes, -0.25);
  bf_banana_write_int (bytes, G_MAXINT64);
  bf_banana_write_list_header (bytes, 2);
  bf_banana_write_list_header (bytes, 0);
  {
    g_autofree gchar *text = g_strnfill (300, 'x');
    bf_banana_write_string (bytes, BF_BANANA_DIALECT_PB, text, 300);
  }
  bf_banana_write_int (bytes, 5);

  whole = feed_split (bytes, BF_BANANA_DIALECT_UNSET, bytes->len, rand);
  bytewise = feed_split (bytes, BF_BANANA_DIALECT_UNSET, 1, rand);
  g_assert_cmpstr (whole, ==, bytewise);
  expected = "[\"version\", 6]\n";
  g_assert_true (g_str_has_prefix (whole, expected));
  g_assert_nonnull (strstr (whole, "[\"message\", 1, -300, \"update\", -0.25, 9223372036854775807, [[], \"xxx"));
  g_assert_true (g_str_has_suffix (whole, "xxx\"]]\n5\n"));
  for (guint i = 0; i < 200; i++)
    {
      g_autofree gchar *split = feed_split (bytes, BF_BANANA_DIALECT_UNSET, 1 + i % 40, rand);
      g_assert_cmpstr (split, ==, whole);
    }
}

static void
test_dialect (void)
{
  g_autoptr(GError) error = NULL;

  {
    g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
    g_autoptr(BfBananaValue) expr = NULL;
    gsize consumed;

    /* "pb", then a VOCAB item is accepted */
    g_assert_true (bf_banana_decoder_feed (decoder, (const guint8 *) "\x02\x82pb\x13\x87", 6,
                                           &consumed, &expr, &error));
    g_assert_no_error (error);
    g_assert_cmpint (bf_banana_decoder_get_dialect (decoder), ==, BF_BANANA_DIALECT_PB);
    g_assert_true (bf_banana_value_is_string (expr, "version"));
    g_assert_cmpuint (consumed, ==, 6);
  }
  {
    g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
    g_autoptr(BfBananaValue) expr = NULL;
    gsize consumed;

    /* "none": VOCAB is refused */
    g_assert_false (bf_banana_decoder_feed (decoder, (const guint8 *) "\x04\x82none\x13\x87", 8,
                                            &consumed, &expr, &error));
    g_assert_cmpint (bf_banana_decoder_get_dialect (decoder), ==, BF_BANANA_DIALECT_NONE);
    g_assert_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_TYPE);
    g_clear_error (&error);
  }
  {
    /* a dialect we did not offer; an HTTP request on the PB port */
    const gchar *inputs[] = { "\x03\x82xyz", "\x01\x80\x02\x82pb", "\x01\x81" };

    for (gsize i = 0; i < G_N_ELEMENTS (inputs); i++)
      {
        g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
        g_autoptr(BfBananaValue) expr = NULL;
        gsize consumed;

        g_assert_false (bf_banana_decoder_feed (decoder, (const guint8 *) inputs[i],
                                                strlen (inputs[i]), &consumed, &expr, &error));
        g_assert_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_DIALECT);
        g_assert_nonnull (strstr (error->message, "not offered"));
        g_clear_error (&error);
      }
  }
  {
    g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
    g_autoptr(BfBananaValue) expr = NULL;
    gsize consumed;
    const gchar *http = "GET /ws HTTP/1.1\r\nHost: localhost:9989\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    /* ASCII is all prefix bytes: the prefix limit catches an HTTP request
     * at its 65th byte, and says what it is */
    g_assert_false (bf_banana_decoder_feed (decoder, (const guint8 *) http, strlen (http),
                                            &consumed, &expr, &error));
    g_assert_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_PREFIX);
    g_assert_nonnull (strstr (error->message, "HTTP request"));
    g_clear_error (&error);
  }

  /* version */
  {
    g_autoptr(GByteArray) bytes = g_byte_array_new ();
    g_autoptr(BfBananaValue) good = NULL;
    g_autoptr(BfBananaValue) bad = NULL;

    bf_banana_write_version (bytes, BF_BANANA_DIALECT_PB);
    good = bf_banana_decode (bytes->data, bytes->len, BF_BANANA_DIALECT_PB, &error);
    g_assert_true (bf_banana_check_version (good, &error));
    g_assert_no_error (error);
    bad = bf_banana_decode ((const guint8 *) "\x02\x80\x13\x87\x05\x81", 6, BF_BANANA_DIALECT_PB, &error);
    g_assert_false (bf_banana_check_version (bad, &error));
    g_assert_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_DIALECT);
    g_assert_nonnull (strstr (error->message, "version 5"));
  }
}

static void
test_roundtrip (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);

  /* every vocabulary word encodes as VOCAB and decodes to itself */
  for (guint i = 1; i <= BF_BANANA_VOCAB_MAX; i++)
    {
      const gchar *word = bf_banana_vocab_word (i);
      g_autoptr(GByteArray) out = g_byte_array_new ();
      g_autoptr(BfBananaValue) value = NULL;
      g_autoptr(GError) error = NULL;

      g_assert_cmpuint (bf_banana_vocab_index (word, strlen (word)), ==, i);
      bf_banana_write_string (out, BF_BANANA_DIALECT_PB, word, strlen (word));
      g_assert_cmpuint (out->len, ==, 2);
      value = bf_banana_decode (out->data, out->len, BF_BANANA_DIALECT_PB, &error);
      g_assert_no_error (error);
      g_assert_true (bf_banana_value_is_string (value, word));
    }
  g_assert_null (bf_banana_vocab_word (0));
  g_assert_null (bf_banana_vocab_word (BF_BANANA_VOCAB_MAX + 1));

  /* integers at and around every power of two */
  for (guint bit = 0; bit < 64; bit++)
    for (gint delta = -1; delta <= 1; delta++)
      for (gint sign = -1; sign <= 1; sign += 2)
        {
          gint64 v = (gint64) (((guint64) 1 << bit) + (guint64) (gint64) delta);
          g_autoptr(GByteArray) out = g_byte_array_new ();
          g_autoptr(BfBananaValue) value = NULL;
          g_autoptr(GError) error = NULL;

          if (sign < 0 && v != G_MININT64)
            v = -v;
          bf_banana_write_int (out, v);
          value = bf_banana_decode (out->data, out->len, BF_BANANA_DIALECT_PB, &error);
          g_assert_no_error (error);
          g_assert_cmpint (value->type, ==, BF_BANANA_INT);
          g_assert_cmpint (value->integer, ==, v);
        }

  /* doubles, bit for bit */
  for (guint i = 0; i < 1000; i++)
    {
      guint64 bits = (guint64) g_rand_int (rand) << 32 | g_rand_int (rand);
      gdouble d, back;
      g_autoptr(GByteArray) out = g_byte_array_new ();
      g_autoptr(BfBananaValue) value = NULL;
      g_autoptr(GError) error = NULL;

      memcpy (&d, &bits, sizeof d);
      bf_banana_write_float (out, d);
      value = bf_banana_decode (out->data, out->len, BF_BANANA_DIALECT_PB, &error);
      g_assert_no_error (error);
      back = value->number;
      g_assert_cmpmem (&back, sizeof back, &d, sizeof d);
    }
}

/* -m perf: heap held by an idle decoder (one per PB connection), after a
 * session start has gone through it */
static void
test_perf_idle_decoder (void)
{
  const guint n = 10000;
  g_autoptr(GPtrArray) decoders = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_banana_decoder_free);
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  struct mallinfo2 before, after;

  bf_banana_write_string (bytes, BF_BANANA_DIALECT_UNSET, "pb", 2);
  bf_banana_write_version (bytes, BF_BANANA_DIALECT_PB);
  before = mallinfo2 ();
  for (guint i = 0; i < n; i++)
    {
      BfBananaDecoder *decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
      g_autoptr(BfBananaValue) expr = NULL;
      g_autoptr(GError) error = NULL;
      gsize consumed;

      g_assert_true (bf_banana_decoder_feed (decoder, bytes->data, bytes->len, &consumed, &expr, &error));
      g_assert_nonnull (expr);
      g_ptr_array_add (decoders, decoder);
    }
  after = mallinfo2 ();
  g_test_minimized_result ((after.uordblks - before.uordblks) / (gdouble) n,
                           "heap per idle decoder: %.0f bytes",
                           (after.uordblks - before.uordblks) / (gdouble) n);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/banana/scalars", test_scalars);
  g_test_add_func ("/banana/refusals", test_refusals);
  g_test_add_func ("/banana/limits", test_limits);
  g_test_add_func ("/banana/split", test_split);
  g_test_add_func ("/banana/dialect", test_dialect);
  g_test_add_func ("/banana/roundtrip", test_roundtrip);
  if (g_test_perf ())
    g_test_add_func ("/banana/perf/idle-decoder", test_perf_idle_decoder);

  return g_test_run ();
}
