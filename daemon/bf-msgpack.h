/* bf-msgpack.h: msgpack <-> GVariant codec
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * SECTION:bf-msgpack
 * @title: BfMsgpack
 * @short_description: msgpack <-> GVariant conversion
 *
 * The Buildbot worker protocol sends one msgpack value per WebSocket
 * message. These functions convert such a value to a #GVariant and back.
 * They are pure: no I/O, no global state, safe to call from any thread.
 *
 * Decoding maps msgpack to a small, fixed set of #GVariant types:
 *
 * | msgpack                         | #GVariant                    |
 * |---------------------------------|------------------------------|
 * | nil                             | `mv` (nothing)               |
 * | bool                            | `b`                          |
 * | int / uint that fits in gint64  | `x`                          |
 * | uint above %G_MAXINT64          | `t`                          |
 * | float 32 / float 64             | `d`                          |
 * | str                             | `s` (invalid UTF-8 repaired) |
 * | bin                             | `ay`                         |
 * | array                           | `av`                         |
 * | map (str keys only)             | `a{sv}`                      |
 *
 * Encoding accepts any #GVariant: booleans, all integer types, doubles,
 * strings (`s`, `o`, `g`), bytestrings (`ay` becomes bin), variants
 * (their content), maybes (nothing becomes nil), the unit tuple `()` (nil),
 * dictionaries `a{?*}` (map) and all other arrays and tuples (array).
 * Anything produced by bf_msgpack_decode() encodes back to the same value.
 */

/**
 * BF_MSGPACK_MAX_DEPTH:
 *
 * The maximum number of arrays and maps nested in each other that
 * bf_msgpack_decode() accepts. A top-level array is at depth 1.
 */
#define BF_MSGPACK_MAX_DEPTH 32

/**
 * BF_MSGPACK_BUDGET_FACTOR:
 * BF_MSGPACK_BUDGET_FLOOR:
 *
 * bf_msgpack_decode() refuses input whose decoded value would take more
 * than %BF_MSGPACK_BUDGET_FACTOR times the input's length plus
 * %BF_MSGPACK_BUDGET_FLOOR bytes of memory (%BF_MSGPACK_ERROR_TOO_BIG).
 * Real worker messages decode to 1 to 4 times their size: strings once,
 * long arrays of scalars (newline offsets, times, file names) at 16 to
 * 20 bytes an element in one instance.  What is refused is input built to
 * amplify, such as millions of small integers in maps or nested arrays.
 */
#define BF_MSGPACK_BUDGET_FACTOR 8
#define BF_MSGPACK_BUDGET_FLOOR (1024 * 1024)

/**
 * BF_MSGPACK_ERROR:
 *
 * Error domain for bf_msgpack_decode(). Errors in this domain are from
 * the #BfMsgpackError enumeration.
 */
#define BF_MSGPACK_ERROR (bf_msgpack_error_quark ())

/**
 * BfMsgpackError:
 * @BF_MSGPACK_ERROR_TRUNCATED: the data ends before the value does, or a
 *   str, bin, array or map declares more bytes or elements than remain
 * @BF_MSGPACK_ERROR_TOO_DEEP: arrays and maps are nested deeper than
 *   %BF_MSGPACK_MAX_DEPTH
 * @BF_MSGPACK_ERROR_INVALID: a byte that is not a msgpack type, an ext
 *   type, or a map key that is not a str
 * @BF_MSGPACK_ERROR_TRAILING: bytes follow the value
 * @BF_MSGPACK_ERROR_TOO_BIG: the decoded value would take more memory than
 *   the budget (see %BF_MSGPACK_BUDGET_FACTOR)
 *
 * Error codes of the %BF_MSGPACK_ERROR domain. The error messages say what
 * was wrong and at which byte offset of the input.
 */
typedef enum
{
  BF_MSGPACK_ERROR_TRUNCATED,
  BF_MSGPACK_ERROR_TOO_DEEP,
  BF_MSGPACK_ERROR_INVALID,
  BF_MSGPACK_ERROR_TRAILING,
  BF_MSGPACK_ERROR_TOO_BIG,
} BfMsgpackError;

GQuark    bf_msgpack_error_quark (void);

/**
 * bf_msgpack_decode:
 * @data: (array length=len) (nullable): the msgpack data
 * @len: the length of @data in bytes
 * @error: return location for a #GError, or %NULL
 *
 * Decodes @data, which must hold exactly one msgpack value, into a
 * #GVariant of one of the types listed in the section overview.
 *
 * Strings that are not valid UTF-8 are repaired with g_utf8_make_valid();
 * embedded NUL bytes become U+FFFD as well, so the string is never cut short.
 * Map keys must be strs. When a map holds the same key more than once (after
 * repair), the last value wins and the key keeps the position of its first
 * occurrence, as when a Python dict is built from the pairs; the result never
 * contains a key twice.
 *
 * Hostile input is safe: nesting is limited to %BF_MSGPACK_MAX_DEPTH, a
 * declared length that cannot fit in the remaining bytes is rejected
 * before anything is allocated for it, and every instance the decoder
 * creates is charged against a memory budget of
 * %BF_MSGPACK_BUDGET_FACTOR times @len plus %BF_MSGPACK_BUDGET_FLOOR, so
 * the result never takes more. Decoding runs in time linear in @len (an
 * array that turns out not to hold only scalars is read twice).
 *
 * Arrays whose elements are all scalars come back as one `av` instance in
 * serialised form; their children are made when read.
 *
 * Returns: (transfer full): the decoded value (never floating), or %NULL
 *   with @error set
 */
GVariant *bf_msgpack_decode      (const guint8 *data,
                                  gsize         len,
                                  GError      **error);

GVariant *bf_msgpack_decode_dropping (const guint8 *data,
                                      gsize         len,
                                      const gchar  *drop_key,
                                      GError      **error);

/**
 * bf_msgpack_encode:
 * @value: the value to encode; a floating reference is consumed
 *
 * Encodes @value as msgpack, choosing the shortest encoding for every
 * integer, str, bin, array and map length. Doubles are always float 64.
 * Every #GVariant type can be encoded (see the section overview).
 *
 * Returns: (transfer full): the msgpack bytes
 */
GBytes   *bf_msgpack_encode      (GVariant     *value);

/**
 * bf_msgpack_encode_to:
 * @out: the array to append to
 * @value: the value to encode; a floating reference is consumed
 *
 * Like bf_msgpack_encode(), but appends the msgpack bytes to @out, so a
 * caller can reuse one buffer for many messages.
 */
void      bf_msgpack_encode_to   (GByteArray   *out,
                                  GVariant     *value);

G_END_DECLS
