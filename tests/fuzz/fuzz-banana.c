/* fuzz-banana.c: libFuzzer target for the PB codec (banana + jelly)
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Input: one flags byte, one chunk-size byte, then the bytes a peer sends
 * on a PB connection. Flags bit 0 set: the stream starts in the "pb"
 * dialect; clear: it starts with the dialect negotiation. Chunk size 0:
 * the stream is fed whole; n: in chunks of n bytes.
 *
 * Properties checked:
 *  - feeding in chunks gives the same expressions and the same error as
 *    feeding whole (the decoder is incremental);
 *  - failures are BF_BANANA_ERRORs naming the stream offset, after which
 *    the decoder refuses everything;
 *  - every expression is within the documented bounds (depth, list length,
 *    string size), and either unjellies or fails with a BF_JELLY_ERROR;
 *  - an unjellied value converts to a GVariant in normal form or fails
 *    with BF_JELLY_ERROR_MALFORMED;
 *  - an unjellied value encodes (or fails with BF_JELLY_ERROR_LIMIT), that
 *    encoding decodes to the same value, and encoding that again gives the
 *    same bytes.
 * No crash, leak, sanitizer report or GLib warning.
 *
 * Linked with fuzz-replay.c it replays files and directories of inputs.
 */

#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "bf-banana.h"
#include "bf-jelly.h"

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

static void
check_bounds (const BfBananaValue *value,
              guint                depth)
{
  g_assert_cmpuint (depth, <=, BF_BANANA_MAX_DEPTH);
  if (value->type == BF_BANANA_LIST)
    {
      g_assert_cmpuint (value->list.len, <=, BF_BANANA_MAX_LIST_LENGTH);
      for (guint i = 0; i < value->list.len; i++)
        check_bounds (value->list.items[i], depth + 1);
    }
  else if (value->type == BF_BANANA_STRING)
    {
      g_assert_cmpuint (value->string.len, <=, BF_BANANA_SIZE_LIMIT);
      g_assert_cmpint (value->string.data[value->string.len], ==, '\0');
    }
}

static void
check_jelly (const BfBananaValue *sexp,
             BfBananaDialect      dialect,
             GString             *transcript)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfJellyValue) value = NULL;
  g_autoptr(BfJellyValue) again = NULL;
  g_autoptr(BfBananaValue) sexp2 = NULL;
  g_autoptr(GByteArray) encoded = g_byte_array_new ();
  g_autoptr(GByteArray) reencoded = g_byte_array_new ();

  value = bf_jelly_decode (sexp, &error);
  if (value == NULL)
    {
      g_assert_true (error->domain == BF_JELLY_ERROR);
      g_assert_true (g_str_has_prefix (error->message, "jelly: "));
      g_string_append_printf (transcript, "  %s\n", error->message);
      return;
    }
  g_assert_cmpuint (value->size, <=, BF_JELLY_MAX_EXPANDED_SIZE);
  g_string_append_printf (transcript, "  jelly ok, expanded size %" G_GSIZE_FORMAT "\n", value->size);

  if (!bf_jelly_encode (encoded, dialect, value, &error))
    {
      g_assert_error (error, BF_JELLY_ERROR, BF_JELLY_ERROR_LIMIT);
      g_assert_cmpuint (encoded->len, ==, 0);
      return;
    }
  sexp2 = bf_banana_decode (encoded->data, encoded->len, dialect, &error);
  g_assert_no_error (error);
  again = bf_jelly_decode (sexp2, &error);
  g_assert_no_error (error);

  /* printing and conversion write shared parts out in full: only for
   * small values */
  if (value->size < 65536)
    {
      g_autoptr(GVariant) variant = bf_jelly_value_to_variant (value, &error);

      if (variant == NULL)
        {
          g_assert_error (error, BF_JELLY_ERROR, BF_JELLY_ERROR_MALFORMED);
          g_clear_error (&error);
        }
      else
        {
          g_assert_false (g_variant_is_floating (variant));
          g_assert_true (g_variant_is_normal_form (variant));
        }
    }
  if (value->size < 65536)
    {
      g_autofree gchar *printed = bf_jelly_value_print (value);
      g_autofree gchar *printed_again = bf_jelly_value_print (again);
      g_assert_cmpstr (printed, ==, printed_again);
    }
  g_assert_true (bf_jelly_encode (reencoded, dialect, again, &error));
  g_assert_cmpmem (encoded->data, encoded->len, reencoded->data, reencoded->len);
}

/* As the broker will: the jellied parts of broker messages, else the whole
 * expression. */
static void
check_expression (const BfBananaValue *expression,
                  BfBananaDialect      dialect,
                  GString             *transcript)
{
  const BfBananaValue *head = expression->type == BF_BANANA_LIST && expression->list.len > 0 ?
                              expression->list.items[0] : NULL;

  if ((bf_banana_value_is_string (head, "message") ||
       bf_banana_value_is_string (head, "cachemessage")) && expression->list.len == 7)
    {
      check_jelly (expression->list.items[5], dialect, transcript);
      check_jelly (expression->list.items[6], dialect, transcript);
    }
  else if ((bf_banana_value_is_string (head, "answer") ||
            bf_banana_value_is_string (head, "error")) && expression->list.len == 3)
    {
      check_jelly (expression->list.items[2], dialect, transcript);
    }
  else if (bf_banana_value_is_string (head, "version"))
    {
      g_autoptr(GError) error = NULL;

      if (!bf_banana_check_version (expression, &error))
        g_string_append_printf (transcript, "  %s\n", error->message);
    }
  else
    {
      check_jelly (expression, dialect, transcript);
    }
}

/* Feeds @data in chunks of @chunk bytes (0: whole) and returns a transcript
 * of the expressions and the error. */
static gchar *
run (const guint8    *data,
     gsize            size,
     BfBananaDialect  dialect,
     gsize            chunk,
     gboolean         check)
{
  g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (dialect);
  GString *transcript = g_string_new (NULL);
  gsize pos = 0;

  while (pos < size)
    {
      gsize end = chunk == 0 ? size : MIN (size, pos + chunk);

      while (pos < end)
        {
          g_autoptr(BfBananaValue) expression = NULL;
          g_autoptr(GError) error = NULL;
          gsize consumed = 0;

          if (!bf_banana_decoder_feed (decoder, data + pos, end - pos, &consumed,
                                       &expression, &error))
            {
              g_assert_nonnull (error);
              g_assert_true (error->domain == BF_BANANA_ERROR);
              g_assert_nonnull (strstr (error->message, "stream offset"));
              g_assert_null (expression);
              g_string_append_printf (transcript, "error %d: %s\n", error->code, error->message);

              g_clear_error (&error);
              g_assert_false (bf_banana_decoder_feed (decoder, data, size, &consumed,
                                                      &expression, &error));
              g_assert_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_FAILED);
              return g_string_free (transcript, FALSE);
            }
          g_assert_no_error (error);
          g_assert_cmpuint (consumed, <=, end - pos);
          g_assert_true (consumed > 0 || expression != NULL);
          pos += consumed;
          if (expression != NULL)
            {
              g_autofree gchar *printed = bf_banana_value_print (expression);

              check_bounds (expression, 0);
              g_assert_cmpint (bf_banana_decoder_get_dialect (decoder), !=, BF_BANANA_DIALECT_UNSET);
              g_string_append_printf (transcript, "%s\n", printed);
              if (check)
                check_expression (expression, bf_banana_decoder_get_dialect (decoder), transcript);
            }
        }
    }
  return g_string_free (transcript, FALSE);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static gboolean initialized = FALSE;
  g_autofree gchar *whole = NULL;
  g_autofree gchar *chunked = NULL;
  BfBananaDialect dialect;
  gsize chunk;

  if (!initialized)
    {
      g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }
  if (size < 2)
    return 0;

  dialect = (data[0] & 1) ? BF_BANANA_DIALECT_PB : BF_BANANA_DIALECT_UNSET;
  chunk = data[1];
  data += 2;
  size -= 2;

  whole = run (data, size, dialect, 0, TRUE);
  if (g_getenv ("BF_FUZZ_VERBOSE") != NULL)
    g_print ("%s", whole);
  if (chunk != 0)
    {
      chunked = run (data, size, dialect, chunk, TRUE);
      g_assert_cmpstr (whole, ==, chunked);
    }
  return 0;
}
