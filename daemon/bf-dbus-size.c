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
          offset = bf_dbus_size_end (child, offset, limit);
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

                offset = bf_dbus_size_end (child, offset, limit);
              }
        }
        break;

      case '(': case '{':
        {
          gsize n = g_variant_n_children (value);

          offset = align (offset, 8);
          for (gsize i = 0; i < n && offset <= limit; i++)
            {
              g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

              offset = bf_dbus_size_end (child, offset, limit);
            }
        }
        break;

      default:                  /* m: not on D-Bus */
        break;
      }

  return offset > limit ? BF_DBUS_SIZE_OVER : offset;
}
