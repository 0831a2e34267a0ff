/* bf-dbus-size.c: how many bytes a value takes in a D-Bus message
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-dbus-size.h"

static inline gsize
align (gsize offset,
       gsize alignment)
{
  return (offset + alignment - 1) & ~(alignment - 1);
}

/* The D-Bus alignment of a value of the type starting at @type. */
static gsize
type_alignment (const char *type)
{
  switch (*type)
    {
    case 'n': case 'q':
      return 2;
    case 'b': case 'i': case 'u': case 'h': case 's': case 'o': case 'a':
      return 4;
    case 'x': case 't': case 'd': case '(': case '{':
      return 8;
    default:                    /* y, g, v */
      return 1;
    }
}

/* The size of a fixed-size basic type on the wire, 0 for the others. */
static gsize
fixed_size (const char *type)
{
  switch (*type)
    {
    case 'y':
      return 1;
    case 'n': case 'q':
      return 2;
    case 'b': case 'i': case 'u': case 'h':
      return 4;
    case 'x': case 't': case 'd':
      return 8;
    default:
      return 0;
    }
}

/**
 * bf_dbus_size_end:
 * @value: any value that D-Bus can carry
 * @offset: where in the message @value starts (what matters is the
 *   offset modulo 8; a message body starts at a multiple of 8)
 * @limit: stop measuring once past this offset
 *
 * Returns: the offset just after @value marshalled at @offset, or
 * %BF_DBUS_SIZE_OVER once that is more than @limit.
 */
gsize
bf_dbus_size_end (GVariant *value,
                  gsize     offset,
                  gsize     limit)
{
  return bf_dbus_size_end_memo (value, offset, limit, NULL);
}

/* Structs and dict entries this big or bigger are remembered. */
#define MEMO_MIN_SIZE 64

/**
 * bf_dbus_size_new_memo:
 *
 * Returns: a memo for bf_dbus_size_end_memo(): it holds a reference to
 * each value it remembers, so use one per listing and free it after.
 */
GHashTable *
bf_dbus_size_new_memo (void)
{
  return g_hash_table_new_full (g_direct_hash, g_direct_equal, (GDestroyNotify) g_variant_unref, NULL);
}

/**
 * bf_dbus_size_end_memo:
 * @memo: (nullable): from bf_dbus_size_new_memo()
 *
 * As bf_dbus_size_end(), remembering the size of every big struct and dict
 * entry by instance: a struct starts at a multiple of 8, so its size does
 * not depend on where it is.  Listings walk the same shared tree-form
 * entries (see bf-shared-dict.c) once per worker; with a memo they are
 * walked once per listing.
 */
gsize
bf_dbus_size_end_memo (GVariant   *value,
                       gsize       offset,
                       gsize       limit,
                       GHashTable *memo)
{
  const char *type = g_variant_get_type_string (value);
  gsize size = fixed_size (type);

  if (offset > limit)
    return BF_DBUS_SIZE_OVER;

  if (size > 0)
    offset = align (offset, size) + size;
  else
    switch (*type)
      {
      case 's': case 'o':
        {
          gsize len = 0;

          (void) g_variant_get_string (value, &len);
          offset = align (offset, 4) + 4 + len + 1;
        }
        break;

      case 'g':
        {
          gsize len = 0;

          (void) g_variant_get_string (value, &len);
          offset += 1 + len + 1;
        }
        break;

      case 'v':
        {
          g_autoptr(GVariant) child = g_variant_get_variant (value);

          offset += 1 + strlen (g_variant_get_type_string (child)) + 1;
          offset = bf_dbus_size_end_memo (child, offset, limit, memo);
        }
        break;

      case 'a':
        {
          const char *element = type + 1;
          gsize n = g_variant_n_children (value);
          gsize element_size = fixed_size (element);

          /* The length, then padding to the first element even when
           * there is none. */
          offset = align (align (offset, 4) + 4, type_alignment (element));
          if (element_size > 0)
            {
              if (offset > limit || n > (limit - offset) / element_size)
                return BF_DBUS_SIZE_OVER;
              /* Fixed-size basic types are as big as their alignment:
               * no padding between elements. */
              offset += n * element_size;
            }
          else
            for (gsize i = 0; i < n && offset <= limit; i++)
              {
                g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

                offset = bf_dbus_size_end_memo (child, offset, limit, memo);
              }
        }
        break;

      case '(': case '{':
        {
          gsize n = g_variant_n_children (value);
          gsize start = align (offset, 8);
          gpointer known;

          if (memo != NULL && g_hash_table_lookup_extended (memo, value, NULL, &known))
            {
              offset = start + GPOINTER_TO_SIZE (known);
              break;
            }
          offset = start;
          for (gsize i = 0; i < n && offset <= limit; i++)
            {
              g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

              offset = bf_dbus_size_end_memo (child, offset, limit, memo);
            }
          if (memo != NULL && offset <= limit && offset - start >= MEMO_MIN_SIZE)
            g_hash_table_insert (memo, g_variant_ref (value), GSIZE_TO_POINTER (offset - start));
        }
        break;

      default:                  /* m: not on D-Bus */
        break;
      }

  return offset > limit ? BF_DBUS_SIZE_OVER : offset;
}
