/* bf-variant-util.h: bounded text from values a worker controls
 *
 * Pure helpers, no I/O and no state.  Every function here does work
 * proportional to the bound it is given, not to the size of its input
 * (except bf_variant_bound(), which asks GVariant for a serialised size),
 * so an input of millions of tiny elements costs no more than a short one.
 * Inputs are valid UTF-8 (GVariant strings always are); outputs never
 * split a character.  Limits used with them live in bf-limits.h.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "bf-limits.h"

G_BEGIN_DECLS

/**
 * bf_utf8_prefix_len:
 * @text: UTF-8 text of @len bytes
 * @max_bytes: the most bytes wanted
 *
 * Returns: the length of the longest prefix of @text of at most
 *   @max_bytes bytes that does not end inside a character
 */
gsize  bf_utf8_prefix_len        (const char *text,
                                  gsize       len,
                                  gsize       max_bytes);

/**
 * bf_utf8_chunk_len:
 * @text: UTF-8 text of @len bytes, @len > 0
 * @max_bytes: the most bytes in one chunk (at least 4)
 *
 * How much of @text goes into the next chunk when @text is sent in pieces
 * of at most @max_bytes: all of it if it fits; otherwise up to and
 * including the last newline in the second half of the window, or else the
 * longest prefix that does not split a character.  Never 0.
 */
gsize  bf_utf8_chunk_len         (const char *text,
                                  gsize       len,
                                  gsize       max_bytes);

/**
 * bf_utf8_truncate:
 * @text: UTF-8 text of @len bytes (-1: NUL-terminated)
 * @max_bytes: the most bytes of the result, marker included
 *
 * Returns: (transfer full): @text if it fits in @max_bytes, otherwise its
 *   longest prefix that fits together with %BF_TRUNCATION_MARKER, followed
 *   by the marker
 */
char  *bf_utf8_truncate          (const char *text,
                                  gssize      len,
                                  gsize       max_bytes);

/**
 * bf_variant_print_bounded:
 * @value: any #GVariant
 * @max_bytes: the most bytes of the result, marker included
 *
 * Prints @value much as g_variant_print (@value, FALSE) does (strings
 * quoted, dictionaries as `{key: value}`, arrays as `[...]`, variants as
 * `<...>`), and stops once @max_bytes are reached, ending the text with
 * %BF_TRUNCATION_MARKER.  Only the elements that are printed are visited.
 *
 * Returns: (transfer full): at most @max_bytes bytes of UTF-8
 */
char  *bf_variant_print_bounded  (GVariant   *value,
                                  gsize       max_bytes);

/**
 * bf_variant_bound:
 * @value: any #GVariant
 * @max_bytes: the most bytes of the result, serialised
 *
 * Returns: (transfer full): @value itself (a new reference) if its
 *   serialised size is at most @max_bytes; a truncated string if it is a
 *   string; otherwise a string holding its bounded printed form
 */
GVariant *bf_variant_bound       (GVariant   *value,
                                  gsize       max_bytes);

G_END_DECLS
