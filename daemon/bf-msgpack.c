/* bf-msgpack.c: msgpack <-> GVariant codec
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "bf-msgpack.h"

#include <string.h>
#include <msgpack.h>

G_DEFINE_QUARK (bf-msgpack-error-quark, bf_msgpack_error)

/* Decoding
 * ========
 *
 * The decoder is written here rather than built on msgpack_unpack(): the
 * msgpack-c unpacker allocates the msgpack_object array of a container from
 * the count in its header before looking at a single element: for the five
 * bytes dd ff ff ff ff (an array claiming 2^32-1 elements), msgpack-c 4.0
 * calls malloc (137438953480), i.e. 128 GiB. Pre-validating the
 * input with a structural scan would fix that, but it walks the data twice
 * and then still needs a third pass to turn msgpack_objects into GVariants.
 * Decoding straight into GVariants is a single linear pass and about as
 * much code as the scan alone.
 *
 * Every value is decoded into a "boxed" (`v`) GVariant, ready to be an
 * element of `av` or the value of an `a{sv}` entry; the top level unboxes
 * it. The elements of the containers being decoded live on one shared
 * stack, so no array is ever sized from a declared count: the stack only
 * grows as elements are actually decoded, which bounds it by the input
 * length. Nesting is bounded by BF_MSGPACK_MAX_DEPTH, so the recursion is
 * too.
 *
 * Every value that msgpack encodes in a single byte (nil, booleans,
 * fixints, empty str, array and map) is boxed at most once per call and then
 * shared. They are very common (every `result: nil`, every newline offset),
 * and sharing keeps a long array of them at one pointer per element: only
 * values of two bytes and more cost a GVariant of their own, which bounds
 * memory use at a small multiple of the input size.
 */

#define FIXINT_MIN (-32)
#define FIXINT_MAX 127

enum
{
  CACHE_NIL,
  CACHE_FALSE,
  CACHE_TRUE,
  CACHE_EMPTY_STR,
  CACHE_EMPTY_ARRAY,
  CACHE_EMPTY_MAP,
  CACHE_FIXINT,
  N_CACHED = CACHE_FIXINT + FIXINT_MAX - FIXINT_MIN + 1
};

/* Maps with more entries than this look up duplicate keys in a hash table
 * instead of comparing with every earlier key. */
#define MAP_LINEAR_SCAN_MAX 8

typedef struct
{
  const guint8 *data;
  gsize         len;
  gsize         pos;

  /* Owned boxed values (array elements) and dict entries (map entries) of
   * all containers being decoded, innermost last. */
  GPtrArray    *stack;
  /* Key strings of the map entries on @stack, borrowed from the entries. */
  GPtrArray    *keys;

  /* Boxed one-byte values, created on first use. */
  GVariant     *cache[N_CACHED];

  /* Bytes of memory the result may still take (see charge()). */
  guint64       budget;
  guint64       budget_total;

  /* Scratch space of the scalar-array fast path, reused. */
  GByteArray   *body;
  GArray       *ends;

  /* Entries with this key in maps at depth 1 are skipped, not decoded
   * (bf_msgpack_decode_dropping()); NULL for none. */
  const gchar  *drop_key;
} Decoder;

static GVariant *decode_value (Decoder  *d,
                               guint     depth,
                               GError  **error);

static void
decoder_clear (Decoder *d)
{
  g_clear_pointer (&d->stack, g_ptr_array_unref);
  g_clear_pointer (&d->keys, g_ptr_array_unref);
  g_clear_pointer (&d->body, g_byte_array_unref);
  g_clear_pointer (&d->ends, g_array_unref);
  for (gsize i = 0; i < G_N_ELEMENTS (d->cache); i++)
    g_clear_pointer (&d->cache[i], g_variant_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Decoder, decoder_clear)

static inline gsize
remaining (const Decoder *d)
{
  return d->len - d->pos;
}

/* Every GVariant the decoder creates is charged against a budget
 * proportional to the input (BF_MSGPACK_BUDGET_FACTOR times its length plus
 * BF_MSGPACK_BUDGET_FLOOR), at what it really costs: an instance in tree
 * form with its box and GBytes is about CHARGE_VALUE bytes, a dict entry
 * CHARGE_ENTRY, a container's child array a pointer per child, strings and
 * bin their length.  A message that would decode to more is refused, so
 * memory use is bounded whatever the input's shape. */
#define CHARGE_VALUE 256
#define CHARGE_ENTRY 128
/* A child pointer on the decoder's stack, then in the container's copy. */
#define CHARGE_POINTER 16

static gboolean
within_budget (Decoder  *d,
               gsize     start,
               guint64   bytes,
               GError  **error)
{
  if (G_LIKELY (bytes <= d->budget))
    return TRUE;
  g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TOO_BIG,
               "msgpack data of %" G_GSIZE_FORMAT " bytes would take more than %"
               G_GUINT64_FORMAT " bytes of memory to decode (at offset %" G_GSIZE_FORMAT
               "); at most %d times the input plus %d bytes are allowed",
               d->len, d->budget_total, start,
               BF_MSGPACK_BUDGET_FACTOR, BF_MSGPACK_BUDGET_FLOOR);
  return FALSE;
}

static gboolean
charge (Decoder  *d,
        gsize     start,
        guint64   bytes,
        GError  **error)
{
  if (!within_budget (d, start, bytes, error))
    return FALSE;
  d->budget -= bytes;
  return TRUE;
}

/* The elements of the innermost container, from index @base of the stack
 * to its top, or NULL if there are none (pdata is NULL until the first
 * element is added, and NULL + 0 is undefined behaviour). */
static inline GVariant * const *
stack_slice (const Decoder *d,
             guint          base)
{
  if (d->stack->len == base)
    return NULL;
  return (GVariant * const *) d->stack->pdata + base;
}

/* Takes a floating reference, returns an owned one. */
static inline GVariant *
box (GVariant *value)
{
  return g_variant_ref_sink (g_variant_new_variant (value));
}

/* Returns a new reference to the boxed value of cache @slot. */
static GVariant *
cached (Decoder *d,
        guint    slot)
{
  if (d->cache[slot] == NULL)
    {
      GVariant *value;

      switch (slot)
        {
        case CACHE_NIL:
          value = g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL);
          break;
        case CACHE_FALSE:
        case CACHE_TRUE:
          value = g_variant_new_boolean (slot == CACHE_TRUE);
          break;
        case CACHE_EMPTY_STR:
          value = g_variant_new_string ("");
          break;
        case CACHE_EMPTY_ARRAY:
          value = g_variant_new_array (G_VARIANT_TYPE_VARIANT, NULL, 0);
          break;
        case CACHE_EMPTY_MAP:
          value = g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0);
          break;
        default:
          value = g_variant_new_int64 ((gint64) (slot - CACHE_FIXINT) + FIXINT_MIN);
          break;
        }
      d->cache[slot] = box (value);
    }

  return g_variant_ref (d->cache[slot]);
}

static GVariant *
box_int64 (Decoder *d,
           gint64   value)
{
  if (value < FIXINT_MIN || value > FIXINT_MAX)
    return box (g_variant_new_int64 (value));
  return cached (d, CACHE_FIXINT + (guint) (value - FIXINT_MIN));
}

static gboolean
set_truncated (Decoder     *d,
               gsize        start,
               const gchar *what,
               gsize        needed,
               GError     **error)
{
  g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
               "msgpack data ends inside the %s at offset %" G_GSIZE_FORMAT
               " (%" G_GSIZE_FORMAT " more bytes needed, %" G_GSIZE_FORMAT " left)",
               what, start, needed, remaining (d));
  return FALSE;
}

/* Reads a big-endian unsigned integer of @size (1, 2, 4 or 8) bytes. */
static gboolean
read_uint (Decoder     *d,
           gsize        start,
           const gchar *what,
           guint        size,
           guint64     *out,
           GError     **error)
{
  guint64 value = 0;

  if (remaining (d) < size)
    return set_truncated (d, start, what, size, error);

  for (guint i = 0; i < size; i++)
    value = (value << 8) | d->data[d->pos + i];
  d->pos += size;

  *out = value;
  return TRUE;
}

/* Checks that @n payload bytes of a str or bin remain. */
static gboolean
check_payload (Decoder     *d,
               gsize        start,
               const gchar *what,
               guint64      n,
               GError     **error)
{
  if (n > remaining (d))
    {
      g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                   "%s at offset %" G_GSIZE_FORMAT " declares %" G_GUINT64_FORMAT
                   " bytes but only %" G_GSIZE_FORMAT " remain",
                   what, start, n, remaining (d));
      return FALSE;
    }
  return TRUE;
}

/* Reads the payload of a str of @n bytes whose header started at @start,
 * and returns it as a newly allocated, valid UTF-8 string without NULs. */
static gchar *
read_str_payload (Decoder  *d,
                  gsize     start,
                  guint64   n,
                  gsize    *out_len,
                  GError  **error)
{
  gchar *str;

  if (!check_payload (d, start, "str", n, error))
    return NULL;

  /* Copies valid input once; otherwise replaces every byte that is not
   * part of a valid character, NUL included, with U+FFFD (three bytes for
   * one). Linear either way. */
  str = g_utf8_make_valid ((const gchar *) d->data + d->pos, n);
  d->pos += n;
  *out_len = strlen (str);
  return str;
}

/* If @tag starts a str, reads its length into @n. */
static gboolean
read_str_header (Decoder  *d,
                 gsize     start,
                 guint8    tag,
                 guint64  *n,
                 GError  **error)
{
  if (tag >= 0xa0 && tag <= 0xbf)
    {
      *n = tag & 0x1f;
      return TRUE;
    }

  switch (tag)
    {
    case 0xd9:
      return read_uint (d, start, "str 8 header", 1, n, error);
    case 0xda:
      return read_uint (d, start, "str 16 header", 2, n, error);
    case 0xdb:
      return read_uint (d, start, "str 32 header", 4, n, error);
    default:
      g_assert_not_reached ();
    }
}

/* Reads the payload of the int or uint whose tag (0xcc to 0xd3) was just
 * read.  A uint above G_MAXINT64 comes back in @value's bits with
 * @is_unsigned set. */
static gboolean
read_int (Decoder   *d,
          gsize      start,
          guint8     tag,
          gint64    *value,
          gboolean  *is_unsigned,
          GError   **error)
{
  static const guint sizes[] = { 1, 2, 4, 8, 1, 2, 4, 8 };
  static const gchar * const names[] = {
    "uint 8", "uint 16", "uint 32", "uint 64", "int 8", "int 16", "int 32", "int 64"
  };
  guint i = tag - 0xcc;
  guint64 u;

  if (!read_uint (d, start, names[i], sizes[i], &u, error))
    return FALSE;

  *is_unsigned = FALSE;
  switch (tag)
    {
    case 0xcf:
      *is_unsigned = u > G_MAXINT64;
      *value = (gint64) u;
      break;
    case 0xd0:
      *value = (gint8) u;
      break;
    case 0xd1:
      *value = (gint16) u;
      break;
    case 0xd2:
      *value = (gint32) u;
      break;
    case 0xd3:
      *value = (gint64) u;
      break;
    default:
      *value = (gint64) u;
      break;
    }
  return TRUE;
}

static inline gboolean
is_str_tag (guint8 tag)
{
  return (tag >= 0xa0 && tag <= 0xbf) || (tag >= 0xd9 && tag <= 0xdb);
}

/* The scalar-array fast path
 * ---------------------------
 *
 * Long arrays in real messages hold scalars (newline offsets and times of
 * every output chunk, file names, stat results).  Boxing each element costs
 * two GVariant instances, about 250 bytes for a 3-byte msgpack integer; so
 * an array whose elements are all scalars is written straight into
 * GVariant's serialised form of `av` instead, as one instance: each element
 * is a variant (the value, a zero byte, its type string) starting at a
 * multiple of 8, followed by the table of element end offsets (little
 * endian, each as wide as the total size needs).  That is 16 to 20 bytes for
 * an integer, a double or a short string, and no allocation per element.
 * GLib makes the children only when they are read.
 *
 * The first element that is not a scalar (an array or a map, or anything
 * invalid) sends the whole array back to the general path, which decodes it
 * again from its first element: every byte is read at most twice. */

static void
body_append (Decoder      *d,
             gconstpointer data,
             gsize         len)
{
  g_byte_array_append (d->body, data, len);
}

static void
body_append_type (Decoder     *d,
                  const gchar *type_string)
{
  /* The zero byte that ends a variant's value, then its type. */
  g_byte_array_append (d->body, (const guint8 *) "", 1);
  body_append (d, type_string, strlen (type_string));
}

/* Appends the serialised variant of the scalar at d->pos.  Returns FALSE
 * without reading anything if it is not a scalar, and FALSE with @error set
 * if the scalar is broken. */
static gboolean
append_scalar (Decoder  *d,
               gboolean *is_scalar,
               GError  **error)
{
  gsize start = d->pos;
  guint8 tag = d->data[d->pos];
  guint64 u;
  gint64 value;
  gboolean is_unsigned;

  *is_scalar = TRUE;

  if (tag <= 0x7f || tag >= 0xe0)
    {
      value = tag <= 0x7f ? tag : (gint8) tag;
      d->pos++;
      body_append (d, &value, sizeof value);
      body_append_type (d, "x");
      return TRUE;
    }
  if (tag >= 0xcc && tag <= 0xd3)
    {
      d->pos++;
      if (!read_int (d, start, tag, &value, &is_unsigned, error))
        return FALSE;
      body_append (d, &value, sizeof value);
      body_append_type (d, is_unsigned ? "t" : "x");
      return TRUE;
    }
  if (is_str_tag (tag))
    {
      g_autofree gchar *str = NULL;
      gsize len;

      d->pos++;
      if (!read_str_header (d, start, tag, &u, error))
        return FALSE;
      str = read_str_payload (d, start, u, &len, error);
      if (str == NULL)
        return FALSE;
      body_append (d, str, len + 1);
      body_append_type (d, "s");
      return TRUE;
    }

  switch (tag)
    {
    case 0xc0:
      d->pos++;
      body_append_type (d, "mv");
      return TRUE;

    case 0xc2:
    case 0xc3:
      {
        guint8 b = tag == 0xc3;

        d->pos++;
        body_append (d, &b, 1);
        body_append_type (d, "b");
        return TRUE;
      }

    case 0xca:
    case 0xcb:
      {
        gdouble f;

        d->pos++;
        if (!read_uint (d, start, tag == 0xca ? "float 32" : "float 64",
                        tag == 0xca ? 4 : 8, &u, error))
          return FALSE;
        if (tag == 0xca)
          {
            guint32 bits = (guint32) u;
            gfloat f32;

            memcpy (&f32, &bits, sizeof f32);
            f = f32;
          }
        else
          memcpy (&f, &u, sizeof f);
        body_append (d, &f, sizeof f);
        body_append_type (d, "d");
        return TRUE;
      }

    case 0xc4:
    case 0xc5:
    case 0xc6:
      {
        static const guint sizes[] = { 1, 2, 4 };
        static const gchar * const names[] = { "bin 8 header", "bin 16 header", "bin 32 header" };

        d->pos++;
        if (!read_uint (d, start, names[tag - 0xc4], sizes[tag - 0xc4], &u, error) ||
            !check_payload (d, start, "bin", u, error))
          return FALSE;
        body_append (d, d->data + d->pos, u);
        d->pos += u;
        body_append_type (d, "ay");
        return TRUE;
      }

    default:
      *is_scalar = FALSE;
      return FALSE;
    }
}

/* Decodes the @n elements from d->pos as a serialised `av` if they are all
 * scalars.  Returns NULL with *@fallback set (and d->pos unchanged) if one
 * is not; NULL with @error set if the data is broken or over budget. */
static GVariant *
decode_scalar_array (Decoder   *d,
                     gsize      start,
                     guint64    n,
                     gboolean  *fallback,
                     GError   **error)
{
  gsize first = d->pos;
  guint64 budget_before = d->budget;
  guint32 prev_end = 0;
  gsize body_size;
  gsize total;
  guint offset_size;
  g_autoptr(GBytes) bytes = NULL;

  *fallback = FALSE;

  /* Every element but the last takes at least 8 bytes and an offset here;
   * if that cannot fit, the array is no array of scalars within budget, and
   * the general path decides (and reports what is wrong with it). */
  if ((n - 1) * 9 > d->budget)
    {
      *fallback = TRUE;
      return NULL;
    }
  /* The array is one instance, and its box. */
  if (!charge (d, start, CHARGE_VALUE, error))
    return NULL;

  /* Sized for integers and doubles up front: growing by doubling would
   * copy the array over and over and leave it up to twice too big. */
  g_clear_pointer (&d->body, g_byte_array_unref);
  d->body = g_byte_array_sized_new ((guint) MIN (n * 16 + 8 * n, MIN (d->budget, G_MAXUINT32)));
  if (d->ends == NULL)
    d->ends = g_array_sized_new (FALSE, FALSE, sizeof (guint32), (guint) n);
  g_array_set_size (d->ends, 0);

  for (guint64 i = 0; i < n; i++)
    {
      gboolean is_scalar;
      guint32 end;
      gsize padding = (8 - (d->body->len & 7)) & 7;

      if (remaining (d) == 0)
        {
          g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                       "msgpack data ends at offset %" G_GSIZE_FORMAT
                       " inside the array at offset %" G_GSIZE_FORMAT, d->pos, start);
          return NULL;
        }
      if (padding > 0)
        {
          static const guint8 zeros[8] = { 0, };

          body_append (d, zeros, padding);
        }
      if (!append_scalar (d, &is_scalar, error))
        {
          if (!is_scalar)
            {
              d->pos = first;
              d->budget = budget_before;
              *fallback = TRUE;
            }
          return NULL;
        }
      end = d->body->len;
      g_array_append_val (d->ends, end);

      /* Charged as it grows, so an array over budget stops early.  The
       * budget is below 4 GiB, so offsets are at most 4 bytes wide. */
      if (!charge (d, start, end - prev_end + sizeof (guint32), error))
        return NULL;
      prev_end = end;
    }

  /* As GLib's gvs_calculate_total_size(): the narrowest offsets that can
   * address the whole array. */
  body_size = d->body->len;
  if (body_size + n <= G_MAXUINT8)
    offset_size = 1;
  else if (body_size + 2 * n <= G_MAXUINT16)
    offset_size = 2;
  else if (body_size + 4 * n <= G_MAXUINT32)
    offset_size = 4;
  else
    offset_size = 8;
  total = body_size + offset_size * n;

  for (guint64 i = 0; i < n; i++)
    {
      guint64 le = GUINT64_TO_LE ((guint64) g_array_index (d->ends, guint32, i));

      body_append (d, &le, offset_size);
    }
  g_assert (d->body->len == total);

  bytes = g_byte_array_free_to_bytes (g_steal_pointer (&d->body));
  return box (g_variant_new_from_bytes (G_VARIANT_TYPE ("av"), bytes, FALSE));
}

static GVariant *
decode_array (Decoder  *d,
              gsize     start,
              guint64   n,
              guint     depth,
              GError  **error)
{
  guint base = d->stack->len;
  GVariant *array;
  gboolean fallback;

  /* Every element takes at least one byte. */
  if (n > remaining (d))
    {
      g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                   "array at offset %" G_GSIZE_FORMAT " declares %" G_GUINT64_FORMAT
                   " elements but only %" G_GSIZE_FORMAT " bytes remain",
                   start, n, remaining (d));
      return NULL;
    }

  array = decode_scalar_array (d, start, n, &fallback, error);
  if (array != NULL || !fallback)
    return array;

  if (!charge (d, start, CHARGE_VALUE + n * CHARGE_POINTER, error))
    return NULL;

  for (guint64 i = 0; i < n; i++)
    {
      GVariant *element = decode_value (d, depth + 1, error);

      if (element == NULL)
        return NULL;
      g_ptr_array_add (d->stack, element);
    }

  array = g_variant_new_array (G_VARIANT_TYPE_VARIANT, stack_slice (d, base), n);
  g_ptr_array_set_size (d->stack, base);

  return box (array);
}

/* Returns the index among the @n_entries entries of the current map whose
 * key is @key, or -1. */
static gssize
find_key (Decoder      *d,
          guint         keys_base,
          guint         n_entries,
          GHashTable   *index,
          const gchar  *key)
{
  gpointer found;

  if (index != NULL)
    {
      if (g_hash_table_lookup_extended (index, key, NULL, &found))
        return GPOINTER_TO_UINT (found);
      return -1;
    }

  for (guint i = 0; i < n_entries; i++)
    {
      if (strcmp (g_ptr_array_index (d->keys, keys_base + i), key) == 0)
        return i;
    }
  return -1;
}

/* Reads the tag of the value at d->pos. */
static gboolean
read_tag (Decoder  *d,
          guint8   *tag,
          GError  **error)
{
  if (remaining (d) == 0)
    {
      g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                   "msgpack data ends at offset %" G_GSIZE_FORMAT " where a value was expected",
                   d->pos);
      return FALSE;
    }
  *tag = d->data[d->pos++];
  return TRUE;
}

static gboolean
too_deep (gsize     start,
          gboolean  is_map,
          guint     depth,
          GError  **error)
{
  if (depth < BF_MSGPACK_MAX_DEPTH)
    return FALSE;
  g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TOO_DEEP,
               "%s at offset %" G_GSIZE_FORMAT " is nested more than %d levels deep",
               is_map ? "map" : "array", start, BF_MSGPACK_MAX_DEPTH);
  return TRUE;
}

static gboolean
unsupported_tag (gsize    start,
                 guint8   tag,
                 GError **error)
{
  if ((tag >= 0xc7 && tag <= 0xc9) || (tag >= 0xd4 && tag <= 0xd8))
    g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_INVALID,
                 "ext type (0x%02x) at offset %" G_GSIZE_FORMAT " is not supported",
                 tag, start);
  else
    g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_INVALID,
                 "byte 0x%02x at offset %" G_GSIZE_FORMAT " is not a msgpack type",
                 tag, start);
  return FALSE;
}

/* Walks over the value at d->pos, nested in @depth arrays and maps, as
 * decode_value() reads it, and builds nothing: the same checks of the
 * structure (lengths, nesting, string keys, supported types), none of the
 * memory budget, since nothing is kept. */
static gboolean
skip_value (Decoder  *d,
            guint     depth,
            GError  **error)
{
  static const guint sizes[] = { 1, 2, 4 };
  gsize start = d->pos;
  gboolean is_map;
  guint8 tag;
  guint64 n;

  if (!read_tag (d, &tag, error))
    return FALSE;

  if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3)
    return TRUE;
  if (tag <= 0x9f)
    {
      is_map = tag <= 0x8f;
      n = tag & 0x0f;
    }
  else if (is_str_tag (tag))
    {
      if (!read_str_header (d, start, tag, &n, error) || !check_payload (d, start, "str", n, error))
        return FALSE;
      d->pos += n;
      return TRUE;
    }
  else
    switch (tag)
      {
      case 0xc4:
      case 0xc5:
      case 0xc6:
        if (!read_uint (d, start, "bin header", sizes[tag - 0xc4], &n, error) ||
            !check_payload (d, start, "bin", n, error))
          return FALSE;
        d->pos += n;
        return TRUE;
      case 0xca:
        return read_uint (d, start, "float 32", 4, &n, error);
      case 0xcb:
        return read_uint (d, start, "float 64", 8, &n, error);
      case 0xcc: case 0xcd: case 0xce: case 0xcf:
      case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        {
          gint64 value;
          gboolean is_unsigned;

          return read_int (d, start, tag, &value, &is_unsigned, error);
        }
      case 0xdc:
      case 0xdd:
      case 0xde:
      case 0xdf:
        is_map = tag >= 0xde;
        if (!read_uint (d, start, is_map ? "map header" : "array header", (tag & 1) ? 4 : 2, &n, error))
          return FALSE;
        break;
      default:
        return unsupported_tag (start, tag, error);
      }

  if (too_deep (start, is_map, depth, error))
    return FALSE;
  if (n > remaining (d) / (is_map ? 2 : 1))
    {
      g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                   "%s at offset %" G_GSIZE_FORMAT " declares %" G_GUINT64_FORMAT
                   " elements but only %" G_GSIZE_FORMAT " bytes remain",
                   is_map ? "map" : "array", start, n, remaining (d));
      return FALSE;
    }
  for (guint64 i = 0; i < n; i++)
    {
      if (is_map)
        {
          gsize key_start = d->pos;

          if (remaining (d) > 0 && !is_str_tag (d->data[d->pos]))
            {
              g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_INVALID,
                           "map key at offset %" G_GSIZE_FORMAT " is not a string", key_start);
              return FALSE;
            }
          if (!skip_value (d, depth + 1, error))
            return FALSE;
        }
      if (!skip_value (d, depth + 1, error))
        return FALSE;
    }
  return TRUE;
}

static GVariant *
decode_map (Decoder  *d,
            gsize     start,
            guint64   n,
            guint     depth,
            GError  **error)
{
  g_autoptr(GHashTable) index = NULL;
  guint base = d->stack->len;
  guint keys_base = d->keys->len;
  guint n_entries = 0;
  GVariant *map;

  /* Every entry takes at least two bytes. */
  if (n > remaining (d) / 2)
    {
      g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                   "map at offset %" G_GSIZE_FORMAT " declares %" G_GUINT64_FORMAT
                   " entries but only %" G_GSIZE_FORMAT " bytes remain",
                   start, n, remaining (d));
      return NULL;
    }
  if (!charge (d, start, CHARGE_VALUE + n * (CHARGE_POINTER + CHARGE_ENTRY), error))
    return NULL;

  for (guint64 i = 0; i < n; i++)
    {
      gsize key_start = d->pos;
      g_autofree gchar *key_str = NULL;
      GVariant *key;
      GVariant *value;
      GVariant *entry;
      const gchar *key_borrowed;
      guint64 key_len;
      gsize key_len_valid;
      gssize dup;

      if (remaining (d) == 0)
        {
          g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                       "msgpack data ends at offset %" G_GSIZE_FORMAT
                       " where a key of the map at offset %" G_GSIZE_FORMAT " was expected",
                       key_start, start);
          return NULL;
        }
      if (!is_str_tag (d->data[d->pos]))
        {
          g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_INVALID,
                       "map key at offset %" G_GSIZE_FORMAT " is not a string",
                       key_start);
          return NULL;
        }
      d->pos++;
      if (!read_str_header (d, key_start, d->data[key_start], &key_len, error))
        return NULL;
      key_str = read_str_payload (d, key_start, key_len, &key_len_valid, error);
      if (key_str == NULL || !charge (d, key_start, key_len_valid + CHARGE_VALUE, error))
        return NULL;
      if (depth == 1 && d->drop_key != NULL && strcmp (key_str, d->drop_key) == 0)
        {
          if (!skip_value (d, depth + 1, error))
            return NULL;
          continue;
        }

      value = decode_value (d, depth + 1, error);
      if (value == NULL)
        return NULL;

      key = g_variant_new_take_string (g_steal_pointer (&key_str));
      key_borrowed = g_variant_get_string (key, NULL);
      entry = g_variant_ref_sink (g_variant_new_dict_entry (key, value));
      g_variant_unref (value);

      dup = find_key (d, keys_base, n_entries, index, key_borrowed);
      if (dup >= 0)
        {
          /* Last value wins, at the position of the first occurrence. The
           * old key string dies with the old entry, so point the index and
           * the key list at the new one first. */
          if (index != NULL)
            g_hash_table_replace (index, (gpointer) key_borrowed, GUINT_TO_POINTER (dup));
          g_ptr_array_index (d->keys, keys_base + dup) = (gpointer) key_borrowed;
          g_variant_unref (g_ptr_array_index (d->stack, base + dup));
          g_ptr_array_index (d->stack, base + dup) = entry;
          continue;
        }

      g_ptr_array_add (d->stack, entry);
      g_ptr_array_add (d->keys, (gpointer) key_borrowed);
      n_entries++;

      if (index != NULL)
        {
          g_hash_table_insert (index, (gpointer) key_borrowed,
                               GUINT_TO_POINTER (n_entries - 1));
        }
      else if (n_entries > MAP_LINEAR_SCAN_MAX)
        {
          index = g_hash_table_new (g_str_hash, g_str_equal);
          for (guint j = 0; j < n_entries; j++)
            g_hash_table_insert (index, g_ptr_array_index (d->keys, keys_base + j),
                                 GUINT_TO_POINTER (j));
        }
    }

  map = g_variant_new_array (G_VARIANT_TYPE ("{sv}"), stack_slice (d, base), n_entries);
  g_ptr_array_set_size (d->keys, keys_base);
  g_ptr_array_set_size (d->stack, base);

  return box (map);
}

static GVariant *
decode_container (Decoder  *d,
                  gsize     start,
                  gboolean  is_map,
                  guint64   n,
                  guint     depth,
                  GError  **error)
{
  if (too_deep (start, is_map, depth, error))
    return NULL;

  if (n == 0)
    return cached (d, is_map ? CACHE_EMPTY_MAP : CACHE_EMPTY_ARRAY);
  if (is_map)
    return decode_map (d, start, n, depth, error);
  else
    return decode_array (d, start, n, depth, error);
}

/* Decodes the value at d->pos, which is nested in @depth arrays and maps.
 * Returns an owned boxed (`v`) GVariant. */
static GVariant *
decode_value (Decoder  *d,
              guint     depth,
              GError  **error)
{
  gsize start = d->pos;
  guint8 tag;
  guint64 u;
  gsize len;

  if (!read_tag (d, &tag, error))
    return NULL;

  if (tag <= 0x7f)
    return box_int64 (d, tag);
  if (tag >= 0xe0)
    return box_int64 (d, (gint8) tag);
  if (tag <= 0x8f)
    return decode_container (d, start, TRUE, tag & 0x0f, depth, error);
  if (tag <= 0x9f)
    return decode_container (d, start, FALSE, tag & 0x0f, depth, error);

  if (is_str_tag (tag))
    {
      gchar *str;

      if (!read_str_header (d, start, tag, &u, error))
        return NULL;
      if (u == 0)
        return cached (d, CACHE_EMPTY_STR);
      str = read_str_payload (d, start, u, &len, error);
      if (str == NULL)
        return NULL;
      if (!charge (d, start, len + CHARGE_VALUE, error))
        {
          g_free (str);
          return NULL;
        }
      return box (g_variant_new_take_string (str));
    }

  switch (tag)
    {
    case 0xc0:
      return cached (d, CACHE_NIL);

    case 0xc2:
    case 0xc3:
      return cached (d, tag == 0xc3 ? CACHE_TRUE : CACHE_FALSE);

    case 0xc4:
    case 0xc5:
    case 0xc6:
      {
        static const guint sizes[] = { 1, 2, 4 };
        static const gchar * const names[] = { "bin 8 header", "bin 16 header", "bin 32 header" };
        GVariant *bin;

        if (!read_uint (d, start, names[tag - 0xc4], sizes[tag - 0xc4], &u, error) ||
            !check_payload (d, start, "bin", u, error) ||
            !charge (d, start, u + CHARGE_VALUE, error))
          return NULL;
        bin = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, d->data + d->pos, u, 1);
        d->pos += u;
        return box (bin);
      }

    case 0xca:
      {
        guint32 bits;
        gfloat f;

        if (!read_uint (d, start, "float 32", 4, &u, error) ||
            !charge (d, start, CHARGE_VALUE, error))
          return NULL;
        bits = (guint32) u;
        memcpy (&f, &bits, sizeof f);
        return box (g_variant_new_double (f));
      }

    case 0xcb:
      {
        gdouble f;

        if (!read_uint (d, start, "float 64", 8, &u, error) ||
            !charge (d, start, CHARGE_VALUE, error))
          return NULL;
        memcpy (&f, &u, sizeof f);
        return box (g_variant_new_double (f));
      }

    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
      {
        gboolean is_unsigned;
        gint64 value;

        if (!read_int (d, start, tag, &value, &is_unsigned, error))
          return NULL;
        if (is_unsigned || value < FIXINT_MIN || value > FIXINT_MAX)
          {
            if (!charge (d, start, CHARGE_VALUE, error))
              return NULL;
          }
        if (is_unsigned)
          return box (g_variant_new_uint64 ((guint64) value));
        return box_int64 (d, value);
      }

    case 0xdc:
      if (!read_uint (d, start, "array 16 header", 2, &u, error))
        return NULL;
      return decode_container (d, start, FALSE, u, depth, error);
    case 0xdd:
      if (!read_uint (d, start, "array 32 header", 4, &u, error))
        return NULL;
      return decode_container (d, start, FALSE, u, depth, error);
    case 0xde:
      if (!read_uint (d, start, "map 16 header", 2, &u, error))
        return NULL;
      return decode_container (d, start, TRUE, u, depth, error);
    case 0xdf:
      if (!read_uint (d, start, "map 32 header", 4, &u, error))
        return NULL;
      return decode_container (d, start, TRUE, u, depth, error);

    default:   /* ext types, 0xc1 */
      unsupported_tag (start, tag, error);
      return NULL;
    }
}

GVariant *
bf_msgpack_decode (const guint8  *data,
                   gsize          len,
                   GError       **error)
{
  return bf_msgpack_decode_dropping (data, len, NULL, error);
}

/**
 * bf_msgpack_decode_dropping:
 * @drop_key: (nullable): a map key
 *
 * As bf_msgpack_decode(), but the entries named @drop_key of the maps one
 * level inside the top-level map (a message's "result" or "args") are left
 * out: checked to be well-formed msgpack as everything else, not decoded.
 * For what a worker sends that is never kept (get_worker_info's environ).
 */
GVariant *
bf_msgpack_decode_dropping (const guint8  *data,
                            gsize          len,
                            const gchar   *drop_key,
                            GError       **error)
{
  g_auto(Decoder) d = { 0, };
  g_autoptr(GVariant) boxed = NULL;

  g_return_val_if_fail (data != NULL || len == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (len == 0)
    {
      g_set_error_literal (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRUNCATED,
                           "msgpack data is empty");
      return NULL;
    }

  d.data = data;
  d.len = len;
  d.drop_key = drop_key;
  d.stack = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  d.keys = g_ptr_array_new ();
  /* Capped at 4 GiB, which also keeps the fast path's offsets in 32 bits. */
  d.budget_total = MIN ((guint64) len * BF_MSGPACK_BUDGET_FACTOR + BF_MSGPACK_BUDGET_FLOOR, G_MAXUINT32);
  d.budget = d.budget_total;

  boxed = decode_value (&d, 0, error);
  if (boxed == NULL)
    return NULL;

  if (d.pos != len)
    {
      g_set_error (error, BF_MSGPACK_ERROR, BF_MSGPACK_ERROR_TRAILING,
                   "unexpected data at offset %" G_GSIZE_FORMAT " after the msgpack value"
                   " (%" G_GSIZE_FORMAT " trailing bytes)",
                   d.pos, len - d.pos);
      return NULL;
    }

  return g_variant_get_variant (boxed);
}

/* Encoding
 * ========
 *
 * msgpack-c's packer picks the shortest form for every integer and length;
 * its write callback appends straight to the caller's GByteArray.
 */

static int
append_to_byte_array (void       *data,
                      const char *buf,
                      size_t      len)
{
  g_byte_array_append (data, (const guint8 *) buf, len);
  return 0;
}

/* msgpack lengths are 32-bit; GVariant's are not. */
static gboolean
check_length (msgpack_packer *pk,
              gsize           len)
{
  if (G_LIKELY (len <= G_MAXUINT32))
    return TRUE;

  g_critical ("Cannot encode a string, array or map of %" G_GSIZE_FORMAT
              " bytes or elements in msgpack; encoding nil instead", len);
  msgpack_pack_nil (pk);
  return FALSE;
}

static void
pack_str (msgpack_packer *pk,
          const gchar    *str,
          gsize           len)
{
  if (!check_length (pk, len))
    return;
  msgpack_pack_str (pk, len);
  msgpack_pack_str_body (pk, str, len);
}

static void encode_value (msgpack_packer *pk,
                          GVariant       *value);

/* Arrays of fixed-size basic types, without a GVariant per element. */
static gboolean
encode_fixed_array (msgpack_packer *pk,
                    GVariant       *value,
                    gchar           element_type)
{
  gsize n = 0;
  gconstpointer elements;

#define PACK_FIXED(ctype, pack)                                             \
  G_STMT_START {                                                            \
    const ctype *v = g_variant_get_fixed_array (value, &n, sizeof (ctype)); \
    if (!check_length (pk, n))                                              \
      return TRUE;                                                          \
    msgpack_pack_array (pk, n);                                             \
    for (gsize i = 0; i < n; i++)                                           \
      pack (pk, v[i]);                                                      \
  } G_STMT_END

  switch (element_type)
    {
    case 'y':
      elements = g_variant_get_fixed_array (value, &n, 1);
      if (!check_length (pk, n))
        return TRUE;
      msgpack_pack_bin (pk, n);
      msgpack_pack_bin_body (pk, elements, n);
      return TRUE;
    case 'b':
      {
        /* Serialised booleans are one byte each. */
        const guint8 *v = g_variant_get_fixed_array (value, &n, 1);

        if (!check_length (pk, n))
          return TRUE;
        msgpack_pack_array (pk, n);
        for (gsize i = 0; i < n; i++)
          {
            if (v[i])
              msgpack_pack_true (pk);
            else
              msgpack_pack_false (pk);
          }
        return TRUE;
      }
    case 'n':
      PACK_FIXED (gint16, msgpack_pack_int64);
      return TRUE;
    case 'q':
      PACK_FIXED (guint16, msgpack_pack_uint64);
      return TRUE;
    case 'i':
    case 'h':
      PACK_FIXED (gint32, msgpack_pack_int64);
      return TRUE;
    case 'u':
      PACK_FIXED (guint32, msgpack_pack_uint64);
      return TRUE;
    case 'x':
      PACK_FIXED (gint64, msgpack_pack_int64);
      return TRUE;
    case 't':
      PACK_FIXED (guint64, msgpack_pack_uint64);
      return TRUE;
    case 'd':
      PACK_FIXED (gdouble, msgpack_pack_double);
      return TRUE;
    default:
      return FALSE;
    }

#undef PACK_FIXED
}

static void
encode_array (msgpack_packer *pk,
              GVariant       *value)
{
  const GVariantType *element_type;
  GVariantIter iter;
  GVariant *child;
  gsize n;

  element_type = g_variant_type_element (g_variant_get_type (value));

  if (g_variant_type_is_basic (element_type) &&
      encode_fixed_array (pk, value, *g_variant_type_peek_string (element_type)))
    return;

  n = g_variant_n_children (value);
  if (!check_length (pk, n))
    return;

  if (g_variant_type_is_dict_entry (element_type))
    {
      msgpack_pack_map (pk, n);
      g_variant_iter_init (&iter, value);
      while ((child = g_variant_iter_next_value (&iter)) != NULL)
        {
          g_autoptr(GVariant) key = g_variant_get_child_value (child, 0);
          g_autoptr(GVariant) val = g_variant_get_child_value (child, 1);

          encode_value (pk, key);
          encode_value (pk, val);
          g_variant_unref (child);
        }
      return;
    }

  msgpack_pack_array (pk, n);

  /* String arrays: borrow all strings at once instead of one GVariant
   * per element. */
  if (g_variant_type_equal (element_type, G_VARIANT_TYPE_STRING) ||
      g_variant_type_equal (element_type, G_VARIANT_TYPE_OBJECT_PATH))
    {
      g_autofree const gchar **strv = NULL;

      if (g_variant_type_equal (element_type, G_VARIANT_TYPE_STRING))
        strv = g_variant_get_strv (value, NULL);
      else
        strv = g_variant_get_objv (value, NULL);
      for (gsize i = 0; i < n; i++)
        pack_str (pk, strv[i], strlen (strv[i]));
      return;
    }

  g_variant_iter_init (&iter, value);
  while ((child = g_variant_iter_next_value (&iter)) != NULL)
    {
      encode_value (pk, child);
      g_variant_unref (child);
    }
}

static void
encode_value (msgpack_packer *pk,
              GVariant       *value)
{
  switch (g_variant_classify (value))
    {
    case G_VARIANT_CLASS_BOOLEAN:
      if (g_variant_get_boolean (value))
        msgpack_pack_true (pk);
      else
        msgpack_pack_false (pk);
      break;

    case G_VARIANT_CLASS_BYTE:
      msgpack_pack_uint64 (pk, g_variant_get_byte (value));
      break;
    case G_VARIANT_CLASS_INT16:
      msgpack_pack_int64 (pk, g_variant_get_int16 (value));
      break;
    case G_VARIANT_CLASS_UINT16:
      msgpack_pack_uint64 (pk, g_variant_get_uint16 (value));
      break;
    case G_VARIANT_CLASS_INT32:
      msgpack_pack_int64 (pk, g_variant_get_int32 (value));
      break;
    case G_VARIANT_CLASS_HANDLE:
      msgpack_pack_int64 (pk, g_variant_get_handle (value));
      break;
    case G_VARIANT_CLASS_UINT32:
      msgpack_pack_uint64 (pk, g_variant_get_uint32 (value));
      break;
    case G_VARIANT_CLASS_INT64:
      msgpack_pack_int64 (pk, g_variant_get_int64 (value));
      break;
    case G_VARIANT_CLASS_UINT64:
      msgpack_pack_uint64 (pk, g_variant_get_uint64 (value));
      break;

    case G_VARIANT_CLASS_DOUBLE:
      msgpack_pack_double (pk, g_variant_get_double (value));
      break;

    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      {
        gsize len;
        const gchar *str = g_variant_get_string (value, &len);

        pack_str (pk, str, len);
      }
      break;

    case G_VARIANT_CLASS_VARIANT:
      {
        g_autoptr(GVariant) child = g_variant_get_variant (value);

        encode_value (pk, child);
      }
      break;

    case G_VARIANT_CLASS_MAYBE:
      {
        g_autoptr(GVariant) child = g_variant_get_maybe (value);

        if (child == NULL)
          msgpack_pack_nil (pk);
        else
          encode_value (pk, child);
      }
      break;

    case G_VARIANT_CLASS_ARRAY:
      encode_array (pk, value);
      break;

    case G_VARIANT_CLASS_TUPLE:
    case G_VARIANT_CLASS_DICT_ENTRY:
      {
        gsize n = g_variant_n_children (value);

        if (n == 0)
          {
            msgpack_pack_nil (pk);
            break;
          }
        msgpack_pack_array (pk, n);
        for (gsize i = 0; i < n; i++)
          {
            g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

            encode_value (pk, child);
          }
      }
      break;

    default:
      g_assert_not_reached ();
    }
}

void
bf_msgpack_encode_to (GByteArray *out,
                      GVariant   *value)
{
  msgpack_packer pk;

  g_return_if_fail (out != NULL);
  g_return_if_fail (value != NULL);

  g_variant_ref_sink (value);
  msgpack_packer_init (&pk, out, append_to_byte_array);
  encode_value (&pk, value);
  g_variant_unref (value);
}

GBytes *
bf_msgpack_encode (GVariant *value)
{
  g_autoptr(GByteArray) out = NULL;

  g_return_val_if_fail (value != NULL, NULL);

  out = g_byte_array_new ();
  bf_msgpack_encode_to (out, value);
  return g_byte_array_free_to_bytes (g_steal_pointer (&out));
}
