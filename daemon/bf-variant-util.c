/* bf-variant-util.c: bounded text from values a worker controls
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-variant-util.h"

#define MARKER_LEN (sizeof BF_TRUNCATION_MARKER - 1)

gsize
bf_utf8_prefix_len (const char *text,
                    gsize       len,
                    gsize       max_bytes)
{
  gsize p;

  if (len <= max_bytes)
    return len;
  /* text[max_bytes] is the first byte left out: if it continues a
   * character, that character starts at most three bytes earlier. */
  p = max_bytes;
  for (guint i = 0; i < 3 && p > 0 && ((guchar) text[p] & 0xc0) == 0x80; i++)
    p--;
  if (((guchar) text[p] & 0xc0) == 0x80)
    return max_bytes;   /* not UTF-8 after all: cut where asked */
  return p;
}

gsize
bf_utf8_chunk_len (const char *text,
                   gsize       len,
                   gsize       max_bytes)
{
  const char *nl;
  gsize n;

  g_return_val_if_fail (max_bytes >= 4, len);

  if (len <= max_bytes)
    return len;
  for (nl = text + max_bytes - 1; nl >= text + max_bytes / 2; nl--)
    if (*nl == '\n')
      return (gsize) (nl - text) + 1;
  n = bf_utf8_prefix_len (text, len, max_bytes);
  return n > 0 ? n : max_bytes;
}

char *
bf_utf8_truncate (const char *text,
                  gssize      len,
                  gsize       max_bytes)
{
  gsize n = len < 0 ? strlen (text) : (gsize) len;
  gsize keep;
  char *out;

  if (n <= max_bytes)
    return g_strndup (text, n);
  if (max_bytes < MARKER_LEN)
    return g_strndup (text, bf_utf8_prefix_len (text, n, max_bytes));
  keep = bf_utf8_prefix_len (text, n, max_bytes - MARKER_LEN);
  out = g_malloc (keep + MARKER_LEN + 1);
  memcpy (out, text, keep);
  memcpy (out + keep, BF_TRUNCATION_MARKER, MARKER_LEN + 1);
  return out;
}

/* Printer -------------------------------------------------------------------- */

typedef struct {
  GString *out;
  gsize limit;      /* bytes of text before the marker */
  gboolean full;
} Printer;

static void
put (Printer    *p,
     const char *s,
     gsize       n)
{
  gsize room;

  if (p->full)
    return;
  room = p->limit - p->out->len;
  if (n <= room)
    {
      g_string_append_len (p->out, s, n);
      return;
    }
  g_string_append_len (p->out, s, bf_utf8_prefix_len (s, n, room));
  p->full = TRUE;
}

static void
put_str (Printer    *p,
         const char *s)
{
  put (p, s, strlen (s));
}

/* Quoted, with the escapes g_variant_print() uses; visits only as much of
 * @s as fits. */
static void
put_quoted (Printer    *p,
            const char *prefix,
            const char *s,
            gsize       n,
            gboolean    bytes)
{
  put_str (p, prefix);
  put (p, "'", 1);
  for (gsize i = 0; i < n && !p->full;)
    {
      guchar c = (guchar) s[i];
      char esc[8];

      switch (c)
        {
        case '\'': put (p, "\\'", 2); i++; continue;
        case '\\': put (p, "\\\\", 2); i++; continue;
        case '\n': put (p, "\\n", 2); i++; continue;
        case '\t': put (p, "\\t", 2); i++; continue;
        case '\r': put (p, "\\r", 2); i++; continue;
        default: break;
        }
      if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80))
        {
          g_snprintf (esc, sizeof esc, bytes ? "\\x%02x" : "\\u%04x", c);
          put_str (p, esc);
          i++;
        }
      else if (c < 0x80)
        {
          put (p, s + i, 1);
          i++;
        }
      else
        {
          /* A whole character or nothing: put() cuts at a boundary. */
          const char *next = g_utf8_find_next_char (s + i, s + n);
          gsize clen = next ? (gsize) (next - (s + i)) : n - i;
          put (p, s + i, clen);
          i += clen;
        }
    }
  put (p, "'", 1);
}

static void print_value (Printer  *p,
                         GVariant *v);

/* Booleans, numbers and strings; FALSE for any other class. */
static gboolean
print_scalar (Printer  *p,
              GVariant *v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  switch (g_variant_classify (v))
    {
    case G_VARIANT_CLASS_BOOLEAN:
      put_str (p, g_variant_get_boolean (v) ? "true" : "false");
      return TRUE;
    case G_VARIANT_CLASS_BYTE:
      g_snprintf (buf, sizeof buf, "0x%02x", g_variant_get_byte (v));
      break;
    case G_VARIANT_CLASS_INT16:
      g_snprintf (buf, sizeof buf, "%d", g_variant_get_int16 (v));
      break;
    case G_VARIANT_CLASS_UINT16:
      g_snprintf (buf, sizeof buf, "%u", g_variant_get_uint16 (v));
      break;
    case G_VARIANT_CLASS_INT32:
      g_snprintf (buf, sizeof buf, "%d", g_variant_get_int32 (v));
      break;
    case G_VARIANT_CLASS_HANDLE:
      g_snprintf (buf, sizeof buf, "%d", g_variant_get_handle (v));
      break;
    case G_VARIANT_CLASS_UINT32:
      g_snprintf (buf, sizeof buf, "%u", g_variant_get_uint32 (v));
      break;
    case G_VARIANT_CLASS_INT64:
      g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, g_variant_get_int64 (v));
      break;
    case G_VARIANT_CLASS_UINT64:
      g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT, g_variant_get_uint64 (v));
      break;
    case G_VARIANT_CLASS_DOUBLE:
      g_ascii_dtostr (buf, sizeof buf, g_variant_get_double (v));
      break;
    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      {
        gsize n;
        const char *s = g_variant_get_string (v, &n);
        put_quoted (p, "", s, n, FALSE);
        return TRUE;
      }
    default:
      return FALSE;
    }
  put_str (p, buf);
  return TRUE;
}

/* Arrays, tuples, dictionaries and their entries, element by element until
 * the printer is full. */
static void
print_container (Printer  *p,
                 GVariant *v)
{
  gboolean dict = g_variant_is_of_type (v, G_VARIANT_TYPE_DICTIONARY);
  gboolean entry = g_variant_is_of_type (v, G_VARIANT_TYPE_DICT_ENTRY);
  gboolean tuple = g_variant_is_of_type (v, G_VARIANT_TYPE_TUPLE);
  gsize n = g_variant_n_children (v);

  if (!entry)
    put_str (p, dict ? "{" : tuple ? "(" : "[");
  /* Each element adds at least one byte (a separator or its own
   * text), so at most p->limit elements are visited. */
  for (gsize i = 0; i < n && !p->full; i++)
    {
      g_autoptr(GVariant) child = g_variant_get_child_value (v, i);

      if (i > 0)
        put_str (p, entry ? ": " : ", ");
      if (dict)
        {
          g_autoptr(GVariant) key = g_variant_get_child_value (child, 0);
          g_autoptr(GVariant) value = g_variant_get_child_value (child, 1);
          print_value (p, key);
          put_str (p, ": ");
          print_value (p, value);
        }
      else
        print_value (p, child);
    }
  if (tuple && n == 1)
    put (p, ",", 1);
  if (!entry)
    put_str (p, dict ? "}" : tuple ? ")" : "]");
}

static void
print_value (Printer  *p,
             GVariant *v)
{
  if (p->full || print_scalar (p, v))
    return;

  switch (g_variant_classify (v))
    {
    case G_VARIANT_CLASS_VARIANT:
      {
        g_autoptr(GVariant) inner = g_variant_get_variant (v);
        put (p, "<", 1);
        print_value (p, inner);
        put (p, ">", 1);
        return;
      }
    case G_VARIANT_CLASS_MAYBE:
      {
        g_autoptr(GVariant) inner = NULL;
        if (g_variant_n_children (v) == 0)
          {
            put_str (p, "nothing");
            return;
          }
        inner = g_variant_get_child_value (v, 0);
        put_str (p, "just ");
        print_value (p, inner);
        return;
      }
    case G_VARIANT_CLASS_ARRAY:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_BYTESTRING))
        {
          gsize n;
          const char *s = g_variant_get_fixed_array (v, &n, 1);
          put_quoted (p, "b", s, n, TRUE);
          return;
        }
      G_GNUC_FALLTHROUGH;
    case G_VARIANT_CLASS_TUPLE:
    case G_VARIANT_CLASS_DICT_ENTRY:
      print_container (p, v);
      return;
    default:
      put_str (p, "?");
      return;
    }
}

char *
bf_variant_print_bounded (GVariant *value,
                          gsize     max_bytes)
{
  Printer p = { 0, };

  p.out = g_string_sized_new (MIN (max_bytes, 256) + 1);
  if (max_bytes <= MARKER_LEN)
    {
      /* No room for a marker: a bare prefix. */
      p.limit = max_bytes;
      print_value (&p, value);
      return g_string_free (p.out, FALSE);
    }
  p.limit = max_bytes - MARKER_LEN;
  print_value (&p, value);
  if (p.full)
    g_string_append_len (p.out, BF_TRUNCATION_MARKER, MARKER_LEN);
  return g_string_free (p.out, FALSE);
}

/* Size -------------------------------------------------------------------------- */

/* Whether @v's serialised size is over @limit, visiting at most about
 * @limit elements: leaves count their size, every element of a container
 * at least one byte (its framing).  Only when the walk stays under the
 * limit is the exact size asked for, which is then cheap. */
static gboolean
size_exceeds (GVariant *v,
              gsize     limit,
              gsize    *used)
{
  gsize n;

  if (!g_variant_is_container (v) || g_variant_is_of_type (v, G_VARIANT_TYPE_BYTESTRING))
    {
      /* Strings, numbers, bin: their size is known at once. */
      *used += g_variant_get_size (v);
      return *used > limit;
    }
  n = g_variant_n_children (v);
  if (*used + n > limit)
    return TRUE;
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) child = g_variant_get_child_value (v, i);

      *used += 1;
      if (size_exceeds (child, limit, used))
        return TRUE;
    }
  return FALSE;
}

GVariant *
bf_variant_bound (GVariant *value,
                  gsize     max_bytes)
{
  gsize used = 0;
  g_autofree char *text = NULL;

  if (!size_exceeds (value, max_bytes, &used) && g_variant_get_size (value) <= max_bytes)
    return g_variant_ref (value);
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    {
      gsize n;
      const char *s = g_variant_get_string (value, &n);
      text = bf_utf8_truncate (s, n, max_bytes > 0 ? max_bytes - 1 : 0);
    }
  else
    text = bf_variant_print_bounded (value, max_bytes > 0 ? max_bytes - 1 : 0);
  return g_variant_ref_sink (g_variant_new_take_string (g_steal_pointer (&text)));
}
