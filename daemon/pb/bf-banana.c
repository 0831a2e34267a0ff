/* bf-banana.c: banana framing of Perspective Broker, master side
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "bf-banana.h"

#include <string.h>

G_DEFINE_QUARK (bf-banana-error-quark, bf_banana_error)

enum
{
  TYPE_LIST = 0x80,
  TYPE_INT = 0x81,
  TYPE_STRING = 0x82,
  TYPE_NEG = 0x83,
  TYPE_FLOAT = 0x84,
  TYPE_LONGINT = 0x85,
  TYPE_LONGNEG = 0x86,
  TYPE_VOCAB = 0x87,
};

/* Twisted's Banana.outgoingVocabulary, by index. */
#define W(word) { word, sizeof (word) - 1 }
static const struct
{
  const gchar *word;
  gsize        len;
} vocabulary[BF_BANANA_VOCAB_MAX + 1] = {
  { NULL, 0 }, W ("None"), W ("class"), W ("dereference"), W ("reference"),
  W ("dictionary"), W ("function"), W ("instance"), W ("list"), W ("module"),
  W ("persistent"), W ("tuple"), W ("unpersistable"), W ("copy"), W ("cache"),
  W ("cached"), W ("remote"), W ("local"), W ("lcache"), W ("version"),
  W ("login"), W ("password"), W ("challenge"), W ("logged_in"),
  W ("not_logged_in"), W ("cachemessage"), W ("message"), W ("answer"),
  W ("error"), W ("decref"), W ("decache"), W ("uncache"),
};
#undef W

const gchar *
bf_banana_vocab_word (guint index)
{
  return index >= 1 && index <= BF_BANANA_VOCAB_MAX ? vocabulary[index].word : NULL;
}

guint
bf_banana_vocab_index (const gchar *word,
                       gsize        len)
{
  /* Every word is 4 to 13 bytes long. This runs for every string sent. */
  if (len < 4 || len > 13)
    return 0;
  for (guint i = 1; i <= BF_BANANA_VOCAB_MAX; i++)
    if (vocabulary[i].len == len && memcmp (vocabulary[i].word, word, len) == 0)
      return i;
  return 0;
}

/* Values */

void
bf_banana_value_free (BfBananaValue *value)
{
  if (value == NULL)
    return;
  if (value->type == BF_BANANA_LIST)
    {
      for (guint i = 0; i < value->list.len; i++)
        bf_banana_value_free (value->list.items[i]);
      g_free (value->list.items);
    }
  else if (value->type == BF_BANANA_STRING)
    {
      g_free (value->string.data);
    }
  g_free (value);
}

gboolean
bf_banana_value_is_string (const BfBananaValue *value,
                           const gchar         *str)
{
  return value != NULL && value->type == BF_BANANA_STRING &&
         value->string.len == strlen (str) &&
         memcmp (value->string.data, str, value->string.len) == 0;
}

static void
print_value (GString             *s,
             const BfBananaValue *value)
{
  switch (value->type)
    {
    case BF_BANANA_LIST:
      g_string_append_c (s, '[');
      for (guint i = 0; i < value->list.len; i++)
        {
          if (i > 0)
            g_string_append (s, ", ");
          print_value (s, value->list.items[i]);
        }
      g_string_append_c (s, ']');
      break;
    case BF_BANANA_INT:
      g_string_append_printf (s, "%" G_GINT64_FORMAT, value->integer);
      break;
    case BF_BANANA_FLOAT:
      {
        gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append (s, g_ascii_dtostr (buf, sizeof buf, value->number));
      }
      break;
    case BF_BANANA_STRING:
      g_string_append_c (s, '"');
      for (gsize i = 0; i < value->string.len; i++)
        {
          guchar c = value->string.data[i];
          if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            g_string_append_c (s, c);
          else
            g_string_append_printf (s, "\\x%02x", c);
        }
      g_string_append_c (s, '"');
      break;
    }
}

/**
 * bf_banana_value_print:
 * @value: a value
 *
 * Returns: a readable form for logs and tests: lists in brackets, strings
 *   quoted with bytes outside printable ASCII as `\xNN`.
 */
gchar *
bf_banana_value_print (const BfBananaValue *value)
{
  GString *s = g_string_new (NULL);

  print_value (s, value);
  return g_string_free (s, FALSE);
}

static BfBananaValue *
value_new (BfBananaType type)
{
  BfBananaValue *value = g_new0 (BfBananaValue, 1);

  value->type = type;
  return value;
}

/* Decoding */

typedef enum
{
  STATE_PREFIX,
  STATE_STRING,
  STATE_FLOAT,
  STATE_FAILED,
} State;

typedef struct
{
  guint      expected;
  GPtrArray *items;
} Frame;

struct _BfBananaDecoder
{
  BfBananaDialect dialect;
  State           state;

  /* The prefix read so far. */
  guint64         prefix;
  guint           prefix_len;
  gboolean        prefix_overflow;

  /* STRING or FLOAT being read: the bytes so far and how many in all. */
  GByteArray     *body;
  gsize           body_len;

  /* Open lists, innermost last; NULL between expressions (an idle
   * connection keeps no stack). */
  GArray         *stack;

  /* Budget of the current top-level expression. */
  guint           n_items;
  gsize           n_string_bytes;

  /* Stream offset of the next byte, for error messages. */
  guint64         offset;
  /* The first bytes of the stream, to recognise HTTP in errors. */
  guint8          head[4];
};

BfBananaDecoder *
bf_banana_decoder_new (BfBananaDialect dialect)
{
  BfBananaDecoder *decoder = g_new0 (BfBananaDecoder, 1);

  decoder->dialect = dialect;
  decoder->state = STATE_PREFIX;
  return decoder;
}

static void
clear_stack (BfBananaDecoder *decoder)
{
  if (decoder->stack == NULL)
    return;
  for (guint i = 0; i < decoder->stack->len; i++)
    g_ptr_array_unref (g_array_index (decoder->stack, Frame, i).items);
  g_clear_pointer (&decoder->stack, g_array_unref);
}

void
bf_banana_decoder_free (BfBananaDecoder *decoder)
{
  if (decoder == NULL)
    return;
  clear_stack (decoder);
  if (decoder->body != NULL)
    g_byte_array_unref (decoder->body);
  g_free (decoder);
}

BfBananaDialect
bf_banana_decoder_get_dialect (BfBananaDecoder *decoder)
{
  return decoder->dialect;
}

G_GNUC_PRINTF (4, 5) static gboolean
fail (BfBananaDecoder *decoder,
      GError         **error,
      BfBananaError    code,
      const gchar     *format,
      ...)
{
  g_autofree gchar *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, BF_BANANA_ERROR, code, "banana: %s at stream offset %" G_GUINT64_FORMAT,
               what, decoder->offset);
  decoder->state = STATE_FAILED;
  clear_stack (decoder);
  return FALSE;
}

static void
free_value_cb (gpointer data)
{
  bf_banana_value_free (data);
}

/* A complete item. Returns the finished top-level expression, if this item
 * completes one, in *expression. */
static gboolean
got_item (BfBananaDecoder *decoder,
          BfBananaValue   *item,
          BfBananaValue  **expression,
          GError         **error)
{
  while (decoder->stack != NULL)
    {
      Frame *top = &g_array_index (decoder->stack, Frame, decoder->stack->len - 1);
      BfBananaValue *list;

      g_ptr_array_add (top->items, item);
      if (top->items->len < top->expected)
        return TRUE;

      list = value_new (BF_BANANA_LIST);
      list->list.len = top->items->len;
      list->list.items = (BfBananaValue **) g_ptr_array_steal (top->items, NULL);
      g_ptr_array_unref (top->items);
      g_array_set_size (decoder->stack, decoder->stack->len - 1);
      if (decoder->stack->len == 0)
        g_clear_pointer (&decoder->stack, g_array_unref);
      item = list;
    }

  decoder->n_items = 0;
  decoder->n_string_bytes = 0;

  if (decoder->dialect == BF_BANANA_DIALECT_UNSET)
    {
      gboolean ok = TRUE;

      if (bf_banana_value_is_string (item, "pb"))
        decoder->dialect = BF_BANANA_DIALECT_PB;
      else if (bf_banana_value_is_string (item, "none"))
        decoder->dialect = BF_BANANA_DIALECT_NONE;
      else
        {
          g_autofree gchar *printed = NULL;

          if (item->type == BF_BANANA_STRING && item->string.len > 32)
            item->string.len = 32;
          printed = bf_banana_value_print (item);
          if (strlen (printed) > 64)
            strcpy (printed + 60, "...");
          ok = fail (decoder, error, BF_BANANA_ERROR_DIALECT,
                     "the peer chose dialect %s, which was not offered (\"pb\" or \"none\")",
                     printed);
        }
      bf_banana_value_free (item);
      return ok;
    }

  *expression = item;
  return TRUE;
}

static gboolean
count_item (BfBananaDecoder *decoder,
            GError         **error)
{
  if (++decoder->n_items > BF_BANANA_MAX_ITEMS)
    return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                 "expression has more than %u items", BF_BANANA_MAX_ITEMS);
  return TRUE;
}

static gboolean
type_byte (BfBananaDecoder *decoder,
           guint8           type,
           BfBananaValue  **expression,
           GError         **error)
{
  guint64 n = decoder->prefix;
  gboolean overflow = decoder->prefix_overflow;
  BfBananaValue *item;

  decoder->prefix = 0;
  decoder->prefix_len = 0;
  decoder->prefix_overflow = FALSE;

  if (type > TYPE_VOCAB)
    return fail (decoder, error, BF_BANANA_ERROR_TYPE, "invalid type byte 0x%02x", type);
  if (!count_item (decoder, error))
    return FALSE;

  switch (type)
    {
    case TYPE_LIST:
      if (overflow || n > BF_BANANA_MAX_LIST_LENGTH)
        return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                     "list longer than %u elements", BF_BANANA_MAX_LIST_LENGTH);
      if ((decoder->stack != NULL ? decoder->stack->len : 0) + 1 > BF_BANANA_MAX_DEPTH)
        return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                     "lists nested deeper than %u", BF_BANANA_MAX_DEPTH);
      if (n == 0)
        {
          item = value_new (BF_BANANA_LIST);
          return got_item (decoder, item, expression, error);
        }
      else
        {
          Frame frame = { (guint) n, g_ptr_array_new_with_free_func (free_value_cb) };

          if (decoder->stack == NULL)
            decoder->stack = g_array_sized_new (FALSE, FALSE, sizeof (Frame), 8);
          g_array_append_val (decoder->stack, frame);
          return TRUE;
        }

    case TYPE_INT:
    case TYPE_LONGINT:
      if (overflow || n > G_MAXINT64)
        return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                     "integer above the 64-bit range");
      item = value_new (BF_BANANA_INT);
      item->integer = (gint64) n;
      return got_item (decoder, item, expression, error);

    case TYPE_NEG:
    case TYPE_LONGNEG:
      if (overflow || n > (guint64) G_MAXINT64 + 1)
        return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                     "integer below the 64-bit range");
      item = value_new (BF_BANANA_INT);
      item->integer = n == (guint64) G_MAXINT64 + 1 ? G_MININT64 : -(gint64) n;
      return got_item (decoder, item, expression, error);

    case TYPE_STRING:
      if (overflow || n > BF_BANANA_SIZE_LIMIT)
        return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                     "string longer than %u bytes", BF_BANANA_SIZE_LIMIT);
      if (decoder->n_string_bytes + n > BF_BANANA_MAX_EXPRESSION_SIZE)
        return fail (decoder, error, BF_BANANA_ERROR_LIMIT,
                     "expression holds more than %u bytes of strings",
                     BF_BANANA_MAX_EXPRESSION_SIZE);
      decoder->n_string_bytes += n;
      if (n == 0)
        {
          item = value_new (BF_BANANA_STRING);
          item->string.data = g_malloc0 (1);
          return got_item (decoder, item, expression, error);
        }
      decoder->state = STATE_STRING;
      decoder->body_len = n;
      return TRUE;

    case TYPE_FLOAT:
      decoder->state = STATE_FLOAT;
      decoder->body_len = 8;
      return TRUE;

    case TYPE_VOCAB:
      {
        /* n is 64 bits, the index a guint: compare before narrowing */
        const gchar *word = overflow || n > BF_BANANA_VOCAB_MAX ? NULL : bf_banana_vocab_word ((guint) n);

        if (decoder->dialect != BF_BANANA_DIALECT_PB)
          return fail (decoder, error, BF_BANANA_ERROR_TYPE,
                       "vocabulary item outside the \"pb\" dialect");
        if (word == NULL)
          return fail (decoder, error, BF_BANANA_ERROR_TYPE, "unknown vocabulary index");
        item = value_new (BF_BANANA_STRING);
        item->string.len = vocabulary[n].len;
        item->string.data = g_memdup2 (word, vocabulary[n].len + 1);
        return got_item (decoder, item, expression, error);
      }

    default:
      g_assert_not_reached ();
    }
}

static gboolean
body_complete (BfBananaDecoder *decoder,
               BfBananaValue  **expression,
               GError         **error)
{
  BfBananaValue *item;

  if (decoder->state == STATE_FLOAT)
    {
      guint64 bits = 0;

      for (guint i = 0; i < 8; i++)
        bits = (bits << 8) | decoder->body->data[i];
      item = value_new (BF_BANANA_FLOAT);
      memcpy (&item->number, &bits, sizeof bits);
      g_byte_array_set_size (decoder->body, 0);
    }
  else
    {
      guint len = decoder->body->len;

      g_byte_array_append (decoder->body, (const guint8 *) "", 1);
      item = value_new (BF_BANANA_STRING);
      item->string.len = len;
      item->string.data = (gchar *) g_byte_array_free (g_steal_pointer (&decoder->body), FALSE);
    }
  decoder->state = STATE_PREFIX;
  decoder->body_len = 0;
  return got_item (decoder, item, expression, error);
}

gboolean
bf_banana_decoder_feed (BfBananaDecoder *decoder,
                        const guint8    *data,
                        gsize            len,
                        gsize           *consumed,
                        BfBananaValue  **expression,
                        GError         **error)
{
  gsize pos = 0;

  g_return_val_if_fail (decoder != NULL, FALSE);
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (expression != NULL && *expression == NULL, FALSE);

  if (consumed != NULL)
    *consumed = 0;
  if (decoder->state == STATE_FAILED)
    {
      g_set_error_literal (error, BF_BANANA_ERROR, BF_BANANA_ERROR_FAILED,
                           "banana: the stream already failed");
      return FALSE;
    }

  while (pos < len && *expression == NULL)
    {
      if (decoder->state == STATE_PREFIX)
        {
          guint8 b = data[pos];

          if (decoder->offset < sizeof decoder->head)
            decoder->head[decoder->offset] = b;

          if (b & 0x80)
            {
              if (!type_byte (decoder, b, expression, error))
                return FALSE;
            }
          else
            {
              guint shift = 7 * decoder->prefix_len;

              if (decoder->prefix_len == BF_BANANA_PREFIX_LIMIT)
                return fail (decoder, error, BF_BANANA_ERROR_PREFIX,
                             "more than %u bytes of prefix%s", BF_BANANA_PREFIX_LIMIT,
                             decoder->offset == BF_BANANA_PREFIX_LIMIT &&
                             memcmp (decoder->head, "GET ", 4) == 0 ?
                             " (this is an HTTP request: a msgpack worker sent to the PB port?)" : "");
              decoder->prefix_len++;
              if (b != 0)
                {
                  if (shift >= 64 || (shift > 57 && (b >> (64 - shift)) != 0))
                    decoder->prefix_overflow = TRUE;
                  else
                    decoder->prefix |= (guint64) b << shift;
                }
            }
          pos++;
          decoder->offset++;
        }
      else if (decoder->state == STATE_STRING && decoder->body == NULL &&
               len - pos >= decoder->body_len)
        {
          /* the whole string is here: no buffering */
          BfBananaValue *item = value_new (BF_BANANA_STRING);

          item->string.len = decoder->body_len;
          item->string.data = g_malloc (decoder->body_len + 1);
          memcpy (item->string.data, data + pos, decoder->body_len);
          item->string.data[decoder->body_len] = '\0';
          pos += decoder->body_len;
          decoder->offset += decoder->body_len;
          decoder->state = STATE_PREFIX;
          decoder->body_len = 0;
          if (!got_item (decoder, item, expression, error))
            return FALSE;
        }
      else
        {
          gsize have, want;

          if (decoder->body == NULL)
            decoder->body = g_byte_array_new ();
          have = decoder->body->len;
          want = MIN (decoder->body_len - have, len - pos);
          g_byte_array_append (decoder->body, data + pos, want);
          pos += want;
          decoder->offset += want;
          if (decoder->body->len == decoder->body_len &&
              !body_complete (decoder, expression, error))
            return FALSE;
        }
    }

  if (consumed != NULL)
    *consumed = pos;
  return TRUE;
}

/**
 * bf_banana_decode:
 * @data: (array length=len): exactly one expression
 * @len: length of @data
 * @dialect: the dialect in force (%BF_BANANA_DIALECT_UNSET is not allowed)
 * @error: return location for a #GError
 *
 * Decodes one complete top-level expression, for tests and tools.
 *
 * Returns: (transfer full): the expression, or %NULL with @error set
 */
BfBananaValue *
bf_banana_decode (const guint8    *data,
                  gsize            len,
                  BfBananaDialect  dialect,
                  GError         **error)
{
  g_autoptr(BfBananaDecoder) decoder = NULL;
  g_autoptr(BfBananaValue) expression = NULL;
  gsize consumed = 0;

  g_return_val_if_fail (dialect != BF_BANANA_DIALECT_UNSET, NULL);

  decoder = bf_banana_decoder_new (dialect);
  if (!bf_banana_decoder_feed (decoder, data, len, &consumed, &expression, error))
    return NULL;
  if (expression == NULL)
    {
      g_set_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_TRUNCATED,
                   "banana: the data ends inside an expression at offset %" G_GSIZE_FORMAT, len);
      return NULL;
    }
  if (consumed != len)
    {
      g_set_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_TRAILING,
                   "banana: %" G_GSIZE_FORMAT " bytes follow the expression at offset %" G_GSIZE_FORMAT,
                   len - consumed, consumed);
      return NULL;
    }
  return g_steal_pointer (&expression);
}

/* Encoding */

static void
write_prefixed (GByteArray *out,
                guint64     n,
                guint8      type)
{
  guint8 buf[11];
  guint i = 0;

  /* int2b128: zero is one 0x00 byte, as Twisted writes it */
  do
    {
      buf[i++] = n & 0x7f;
      n >>= 7;
    }
  while (n != 0);
  buf[i++] = type;
  g_byte_array_append (out, buf, i);
}

void
bf_banana_write_list_header (GByteArray *out,
                             gsize       n_items)
{
  g_return_if_fail (n_items <= BF_BANANA_MAX_LIST_LENGTH);
  write_prefixed (out, n_items, TYPE_LIST);
}

void
bf_banana_write_int (GByteArray *out,
                     gint64      value)
{
  if (value >= 0)
    write_prefixed (out, (guint64) value, value <= G_MAXINT32 ? TYPE_INT : TYPE_LONGINT);
  else
    write_prefixed (out, (guint64) 0 - (guint64) value,
                    value >= G_MININT32 ? TYPE_NEG : TYPE_LONGNEG);
}

void
bf_banana_write_float (GByteArray *out,
                       gdouble     value)
{
  guint8 buf[9];
  guint64 bits;

  memcpy (&bits, &value, sizeof bits);
  buf[0] = TYPE_FLOAT;
  for (guint i = 0; i < 8; i++)
    buf[1 + i] = bits >> (56 - 8 * i);
  g_byte_array_append (out, buf, sizeof buf);
}

void
bf_banana_write_string (GByteArray      *out,
                        BfBananaDialect  dialect,
                        const void      *data,
                        gsize            len)
{
  guint index;

  g_return_if_fail (len <= BF_BANANA_SIZE_LIMIT);

  if (dialect == BF_BANANA_DIALECT_PB && (index = bf_banana_vocab_index (data, len)) != 0)
    {
      write_prefixed (out, index, TYPE_VOCAB);
      return;
    }
  write_prefixed (out, len, TYPE_STRING);
  g_byte_array_append (out, data, len);
}

void
bf_banana_write_value (GByteArray          *out,
                       BfBananaDialect      dialect,
                       const BfBananaValue *value)
{
  switch (value->type)
    {
    case BF_BANANA_LIST:
      bf_banana_write_list_header (out, value->list.len);
      for (guint i = 0; i < value->list.len; i++)
        bf_banana_write_value (out, dialect, value->list.items[i]);
      break;
    case BF_BANANA_INT:
      bf_banana_write_int (out, value->integer);
      break;
    case BF_BANANA_FLOAT:
      bf_banana_write_float (out, value->number);
      break;
    case BF_BANANA_STRING:
      bf_banana_write_string (out, dialect, value->string.data, value->string.len);
      break;
    }
}

/**
 * bf_banana_write_offer:
 * @out: where to append
 *
 * Appends the server's dialect offer, `["pb", "none"]`, the first bytes a
 * master sends on a new connection.
 */
void
bf_banana_write_offer (GByteArray *out)
{
  bf_banana_write_list_header (out, 2);
  bf_banana_write_string (out, BF_BANANA_DIALECT_UNSET, "pb", 2);
  bf_banana_write_string (out, BF_BANANA_DIALECT_UNSET, "none", 4);
}

/**
 * bf_banana_write_version:
 * @out: where to append
 * @dialect: the negotiated dialect
 *
 * Appends `["version", 6]`, which PB sends once the dialect is chosen.
 */
void
bf_banana_write_version (GByteArray      *out,
                         BfBananaDialect  dialect)
{
  bf_banana_write_list_header (out, 2);
  bf_banana_write_string (out, dialect, "version", 7);
  bf_banana_write_int (out, BF_BANANA_PB_VERSION);
}

/**
 * bf_banana_check_version:
 * @expression: an expression whose head is "version"
 * @error: return location for a #GError
 *
 * Returns: %TRUE if @expression is `["version", 6]`, else %FALSE with a
 *   %BF_BANANA_ERROR_DIALECT error naming what the peer sent
 */
gboolean
bf_banana_check_version (const BfBananaValue *expression,
                         GError             **error)
{
  if (expression->type != BF_BANANA_LIST || expression->list.len != 2 ||
      !bf_banana_value_is_string (expression->list.items[0], "version") ||
      expression->list.items[1]->type != BF_BANANA_INT)
    {
      g_set_error_literal (error, BF_BANANA_ERROR, BF_BANANA_ERROR_DIALECT,
                           "pb: malformed version message");
      return FALSE;
    }
  if (expression->list.items[1]->integer != BF_BANANA_PB_VERSION)
    {
      g_set_error (error, BF_BANANA_ERROR, BF_BANANA_ERROR_DIALECT,
                   "pb: the peer speaks PB version %" G_GINT64_FORMAT ", we speak %d",
                   expression->list.items[1]->integer, BF_BANANA_PB_VERSION);
      return FALSE;
    }
  return TRUE;
}
