/* bf-banana.h: banana framing of Perspective Broker, master side
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * SECTION:bf-banana
 * @title: BfBanana
 * @short_description: banana s-expressions: incremental decoder, encoder
 *
 * Perspective Broker (PB), the default protocol of buildbot-worker, frames
 * everything as banana: a stream of items, each a base-128 little-endian
 * number (the "prefix", bytes 0x00-0x7f, at most %BF_BANANA_PREFIX_LIMIT of
 * them) followed by one type byte (0x80-0x87). These functions are pure: no
 * I/O, no global state, safe to use from any thread (one decoder per
 * connection).
 *
 * | type byte | item     | prefix is                 | decodes to               |
 * |-----------|----------|---------------------------|--------------------------|
 * | 0x80      | LIST     | number of elements        | %BF_BANANA_LIST          |
 * | 0x81      | INT      | value                     | %BF_BANANA_INT           |
 * | 0x82      | STRING   | length; the bytes follow  | %BF_BANANA_STRING        |
 * | 0x83      | NEG      | minus the value           | %BF_BANANA_INT           |
 * | 0x84      | FLOAT    | ignored; 8 bytes IEEE 754 big-endian follow | %BF_BANANA_FLOAT |
 * | 0x85      | LONGINT  | value                     | %BF_BANANA_INT           |
 * | 0x86      | LONGNEG  | minus the value           | %BF_BANANA_INT           |
 * | 0x87      | VOCAB    | index in the pb vocabulary| %BF_BANANA_STRING (the word) |
 *
 * Integers are 64-bit here: an INT, NEG, LONGINT or LONGNEG outside the
 * #gint64 range is refused (Twisted allows 448 bits; Buildbot never sends
 * more than 64). The encoder uses INT/NEG within ±2^31 and LONGINT/LONGNEG
 * beyond, as Twisted does, so Twisted decodes every value we send.
 *
 * Negotiation, as Twisted's server side does it: the master sends the offer
 * `["pb", "none"]` (bf_banana_write_offer()); the worker answers with one
 * STRING naming a dialect. A decoder created with %BF_BANANA_DIALECT_UNSET
 * consumes that answer itself (it is never returned as an expression) and
 * refuses anything else. Only in the "pb" dialect are VOCAB items allowed, in
 * both directions. PB then exchanges `["version", 6]`
 * (bf_banana_write_version(), bf_banana_check_version()).
 *
 * Hostile input: every limit below is checked as soon as the prefix that
 * states it is complete, before anything is allocated for it; string bytes
 * are stored as they arrive, never preallocated from a declared length; a
 * decoder holds at most one unfinished expression: %BF_BANANA_MAX_ITEMS
 * nodes of 24 bytes plus %BF_BANANA_MAX_EXPRESSION_SIZE bytes of strings
 * (about 5 MiB with malloc overhead, in the worst case; an idle decoder
 * holds under 200 bytes); decoding is linear in the input. The first
 * violation fails the decoder for good with a #BF_BANANA_ERROR naming the
 * stream offset and what was wrong: the connection is to be dropped.
 */

/** BF_BANANA_PREFIX_LIMIT: bytes of prefix before a type byte (Twisted's 64). */
#define BF_BANANA_PREFIX_LIMIT 64
/** BF_BANANA_SIZE_LIMIT: longest STRING, in bytes (Twisted's SIZE_LIMIT, 640 KiB). */
#define BF_BANANA_SIZE_LIMIT (640 * 1024)
/** BF_BANANA_MAX_LIST_LENGTH: most elements in one LIST. */
#define BF_BANANA_MAX_LIST_LENGTH 65536
/** BF_BANANA_MAX_DEPTH: LISTs nested in each other; a top-level LIST is at depth 1. */
#define BF_BANANA_MAX_DEPTH 64
/** BF_BANANA_MAX_ITEMS: items (of any type) in one top-level expression. */
#define BF_BANANA_MAX_ITEMS 65536
/** BF_BANANA_MAX_EXPRESSION_SIZE: bytes of STRING content in one top-level expression. */
#define BF_BANANA_MAX_EXPRESSION_SIZE (2 * 1024 * 1024)
/** BF_BANANA_PB_VERSION: the PB protocol version, exchanged after the dialect. */
#define BF_BANANA_PB_VERSION 6

#define BF_BANANA_ERROR (bf_banana_error_quark ())

/**
 * BfBananaError:
 * @BF_BANANA_ERROR_PREFIX: more than %BF_BANANA_PREFIX_LIMIT prefix bytes
 * @BF_BANANA_ERROR_TYPE: a type byte above 0x87, or an unknown VOCAB index,
 *   or a VOCAB item outside the "pb" dialect
 * @BF_BANANA_ERROR_LIMIT: an integer outside #gint64, or a STRING, LIST,
 *   expression or nesting over its limit
 * @BF_BANANA_ERROR_DIALECT: the peer chose a dialect we did not offer, or
 *   sent a wrong version
 * @BF_BANANA_ERROR_TRUNCATED: bf_banana_decode() ran out of input
 * @BF_BANANA_ERROR_TRAILING: bf_banana_decode() found bytes after the expression
 * @BF_BANANA_ERROR_FAILED: the decoder failed before and accepts nothing more
 */
typedef enum
{
  BF_BANANA_ERROR_PREFIX,
  BF_BANANA_ERROR_TYPE,
  BF_BANANA_ERROR_LIMIT,
  BF_BANANA_ERROR_DIALECT,
  BF_BANANA_ERROR_TRUNCATED,
  BF_BANANA_ERROR_TRAILING,
  BF_BANANA_ERROR_FAILED,
} BfBananaError;

GQuark bf_banana_error_quark (void);

typedef enum
{
  BF_BANANA_DIALECT_UNSET,
  BF_BANANA_DIALECT_PB,
  BF_BANANA_DIALECT_NONE,
} BfBananaDialect;

typedef enum
{
  BF_BANANA_LIST,
  BF_BANANA_INT,
  BF_BANANA_STRING,
  BF_BANANA_FLOAT,
} BfBananaType;

typedef struct _BfBananaValue BfBananaValue;

/**
 * BfBananaValue:
 *
 * One decoded item; a LIST owns its elements. Strings are bytes (not
 * necessarily UTF-8) with a NUL after the last byte for convenience.
 */
struct _BfBananaValue
{
  BfBananaType type;
  union
  {
    gint64  integer;
    gdouble number;
    struct
    {
      gchar *data;
      gsize  len;
    } string;
    struct
    {
      BfBananaValue **items;
      guint           len;
    } list;
  };
};

void           bf_banana_value_free       (BfBananaValue *value);
gboolean       bf_banana_value_is_string  (const BfBananaValue *value,
                                           const gchar         *str);
gchar         *bf_banana_value_print      (const BfBananaValue *value);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfBananaValue, bf_banana_value_free)

typedef struct _BfBananaDecoder BfBananaDecoder;

BfBananaDecoder *bf_banana_decoder_new         (BfBananaDialect  dialect);
void             bf_banana_decoder_free        (BfBananaDecoder *decoder);
BfBananaDialect  bf_banana_decoder_get_dialect (BfBananaDecoder *decoder);

/**
 * bf_banana_decoder_feed:
 * @decoder: a decoder
 * @data: (array length=len): the next bytes of the stream, any amount
 * @len: length of @data
 * @consumed: (out): how many bytes of @data were used
 * @expression: (out) (transfer full) (nullable): the next complete
 *   top-level expression, or %NULL
 * @error: return location for a #GError
 *
 * Decodes bytes until one top-level expression is complete (then stores it
 * in @expression and stops, so *@consumed may be less than @len: call again
 * with the rest) or until @data is used up (*@expression is %NULL, partial
 * state kept for the next call). Any split of the stream gives the same
 * expressions, down to a byte at a time.
 *
 * Returns: %FALSE with @error set when the stream breaks a rule; the decoder
 *   then refuses every further call
 */
gboolean         bf_banana_decoder_feed        (BfBananaDecoder *decoder,
                                                const guint8    *data,
                                                gsize            len,
                                                gsize           *consumed,
                                                BfBananaValue  **expression,
                                                GError         **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfBananaDecoder, bf_banana_decoder_free)

BfBananaValue *bf_banana_decode (const guint8    *data,
                                 gsize            len,
                                 BfBananaDialect  dialect,
                                 GError         **error);

/* Encoding. Writers append to @out. Strings longer than
 * %BF_BANANA_SIZE_LIMIT and lists longer than %BF_BANANA_MAX_LIST_LENGTH are
 * programming errors here (callers check, see bf_jelly_encode()). In the
 * %BF_BANANA_DIALECT_PB dialect a string equal to a vocabulary word is sent
 * as its VOCAB index, as Twisted does. */
void bf_banana_write_list_header (GByteArray      *out,
                                  gsize            n_items);
void bf_banana_write_int         (GByteArray      *out,
                                  gint64           value);
void bf_banana_write_float       (GByteArray      *out,
                                  gdouble          value);
void bf_banana_write_string      (GByteArray      *out,
                                  BfBananaDialect  dialect,
                                  const void      *data,
                                  gsize            len);
void bf_banana_write_value       (GByteArray      *out,
                                  BfBananaDialect  dialect,
                                  const BfBananaValue *value);
void bf_banana_write_offer       (GByteArray      *out);
void bf_banana_write_version     (GByteArray      *out,
                                  BfBananaDialect  dialect);
gboolean bf_banana_check_version (const BfBananaValue *expression,
                                  GError         **error);

/* The pb vocabulary: index -> word, 1..BF_BANANA_VOCAB_MAX; NULL outside. */
#define BF_BANANA_VOCAB_MAX 31
const gchar *bf_banana_vocab_word  (guint        index);
guint        bf_banana_vocab_index (const gchar *word,
                                    gsize        len);

G_END_DECLS
