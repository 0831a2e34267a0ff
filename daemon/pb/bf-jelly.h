/* bf-jelly.h: the subset of Twisted's jelly that Buildbot's PB speaks
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "bf-banana.h"

G_BEGIN_DECLS

/**
 * SECTION:bf-jelly
 * @title: BfJelly
 * @short_description: jelly s-expressions <-> a small tagged value tree
 *
 * PB serialises the arguments and results of remote calls with jelly: a
 * Python object graph written as banana s-expressions. Twisted's jelly can
 * name any class, module or function of the peer's Python; buildbot-worker
 * only ever sends plain data, references to remote objects and copyable
 * failures, so this is all we accept:
 *
 * | jelly (banana)                                 | #BfJellyType          |
 * |------------------------------------------------|-----------------------|
 * | `["None"]`                                     | %BF_JELLY_NONE        |
 * | `["boolean", "true"/"false"]`                  | %BF_JELLY_BOOLEAN     |
 * | INT, NEG, LONGINT, LONGNEG (64-bit)            | %BF_JELLY_INT         |
 * | FLOAT                                          | %BF_JELLY_FLOAT       |
 * | `["unicode", utf8-bytes]` (valid UTF-8)        | %BF_JELLY_UNICODE     |
 * | STRING                                         | %BF_JELLY_BYTES       |
 * | `["list", v...]`                               | %BF_JELLY_LIST        |
 * | `["tuple", v...]`                              | %BF_JELLY_TUPLE       |
 * | `["dictionary", [k, v]...]` (scalar keys, none twice) | %BF_JELLY_DICT |
 * | `["reference", id, v]`, `["dereference", id]`  | the same shared value |
 * | `["remote", id]` (the peer's Referenceable)    | %BF_JELLY_REMOTE      |
 * | `["local", id]` (one of ours, sent back)       | %BF_JELLY_LOCAL       |
 * | `["twisted.spread.pb.CopyableFailure", dict]`  | %BF_JELLY_FAILURE     |
 *
 * Everything else is refused with %BF_JELLY_ERROR_REFUSED naming the type:
 * `class`, `module`, `function`, `method`, `instance`, `persistent`,
 * `unpersistable`, caches, sets, dates, decimals and every other class name.
 *
 * Why a tagged tree and not #GVariant as in bf-msgpack: jelly distinguishes
 * what #GVariant cannot say without conventions (remote against local
 * object references, failures, tuples against lists, bytes against text,
 * values shared by reference), and the broker has to look at ids and
 * failures before anything goes to D-Bus. Values are immutable once built
 * and reference counted, so a `dereference` shares the node instead of
 * copying it.
 *
 * Hostile input: a dereference must name a reference that is complete, so
 * cycles and forward references are refused (Python allows them; Buildbot
 * never sends them); at most %BF_JELLY_MAX_REFERENCES references per
 * expression; dictionary keys are scalars of at most
 * %BF_JELLY_MAX_KEY_LENGTH bytes (Python allows tuples; Buildbot never sends
 * them), compared by content in linear time; a value's expanded size (what it would take with every shared
 * node copied: 1 per node plus string bytes) is bounded by
 * %BF_JELLY_MAX_EXPANDED_SIZE, so sharing cannot blow up later when the
 * value is walked or converted. Nesting and sizes are already bounded by
 * the banana layer; decoding is linear in the banana tree.
 */

#define BF_JELLY_MAX_REFERENCES 1024
/* longest unicode or bytes dictionary key, in bytes */
#define BF_JELLY_MAX_KEY_LENGTH 1024
#define BF_JELLY_MAX_EXPANDED_SIZE (16 * 1024 * 1024)

/** The jelly type name of the failures PB sends. */
#define BF_JELLY_COPYABLE_FAILURE "twisted.spread.pb.CopyableFailure"

#define BF_JELLY_ERROR (bf_jelly_error_quark ())

/**
 * BfJellyError:
 * @BF_JELLY_ERROR_REFUSED: a jelly type outside the subset
 * @BF_JELLY_ERROR_MALFORMED: a known type with the wrong shape (arguments,
 *   invalid UTF-8, a repeated dictionary key, a key that is not a string,
 *   number, boolean or None)
 * @BF_JELLY_ERROR_REFERENCE: a dereference to an unknown or incomplete
 *   reference, an id defined twice, too many references
 * @BF_JELLY_ERROR_LIMIT: a value over a size limit (decoding or encoding)
 */
typedef enum
{
  BF_JELLY_ERROR_REFUSED,
  BF_JELLY_ERROR_MALFORMED,
  BF_JELLY_ERROR_REFERENCE,
  BF_JELLY_ERROR_LIMIT,
} BfJellyError;

GQuark bf_jelly_error_quark (void);

typedef enum
{
  BF_JELLY_NONE,
  BF_JELLY_BOOLEAN,
  BF_JELLY_INT,
  BF_JELLY_FLOAT,
  BF_JELLY_UNICODE,
  BF_JELLY_BYTES,
  BF_JELLY_LIST,
  BF_JELLY_TUPLE,
  BF_JELLY_DICT,
  BF_JELLY_REMOTE,
  BF_JELLY_LOCAL,
  BF_JELLY_FAILURE,
} BfJellyType;

typedef struct _BfJellyValue BfJellyValue;

/**
 * BfJellyValue:
 *
 * Read the fields directly; never change a value that has been shared.
 * UNICODE and BYTES strings have a NUL after the last byte (UNICODE may also
 * hold NULs: use @len). A DICT's @items alternate key and value (@len is
 * twice the number of entries). A FAILURE's @state is a DICT.
 */
struct _BfJellyValue
{
  BfJellyType type;
  gint        ref_count;
  /* expanded size, see the section overview */
  gsize       size;
  union
  {
    gboolean boolean;
    gint64   integer;   /* INT; REMOTE and LOCAL ids */
    gdouble  number;
    struct
    {
      gchar *data;
      gsize  len;
    } string;
    struct
    {
      BfJellyValue **items;
      guint          len;
      guint          allocated;
    } seq;
    BfJellyValue *state;
  };
};

BfJellyValue *bf_jelly_value_ref   (BfJellyValue *value);
void          bf_jelly_value_unref (BfJellyValue *value);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfJellyValue, bf_jelly_value_unref)

/* Constructors: each returns a new reference. */
BfJellyValue *bf_jelly_none     (void);
BfJellyValue *bf_jelly_boolean  (gboolean      value);
BfJellyValue *bf_jelly_int      (gint64        value);
BfJellyValue *bf_jelly_float    (gdouble       value);
BfJellyValue *bf_jelly_unicode  (const gchar  *utf8,
                                 gssize        len);
BfJellyValue *bf_jelly_bytes    (const void   *data,
                                 gsize         len);
BfJellyValue *bf_jelly_list     (void);
BfJellyValue *bf_jelly_tuple    (void);
BfJellyValue *bf_jelly_dict     (void);
BfJellyValue *bf_jelly_remote   (gint64        id);
BfJellyValue *bf_jelly_local    (gint64        id);
BfJellyValue *bf_jelly_failure  (BfJellyValue *state);

/* Building containers (only before the value is shared); these take
 * ownership of @item, @key and @value. A key must be a scalar (NONE to
 * BYTES, strings up to %BF_JELLY_MAX_KEY_LENGTH) not already in @dict. */
void          bf_jelly_append   (BfJellyValue *seq,
                                 BfJellyValue *item);
void          bf_jelly_dict_set (BfJellyValue *dict,
                                 BfJellyValue *key,
                                 BfJellyValue *value);
/* Looks up a UNICODE (or BYTES) key; borrowed result or NULL. */
BfJellyValue *bf_jelly_dict_lookup (const BfJellyValue *dict,
                                    const gchar        *key);

BfJellyValue *bf_jelly_decode   (const BfBananaValue *sexp,
                                 GError             **error);
gboolean      bf_jelly_encode   (GByteArray         *out,
                                 BfBananaDialect     dialect,
                                 const BfJellyValue *value,
                                 GError            **error);
gchar        *bf_jelly_value_print (const BfJellyValue *value);

/**
 * bf_jelly_value_to_variant:
 * @value: plain data (no REMOTE, LOCAL or FAILURE inside)
 * @error: return location for a #GError
 *
 * Converts plain data to the #GVariant shapes bf_msgpack_decode() gives,
 * so code written for msgpack workers reads PB workers' data unchanged:
 * NONE `mv`, BOOLEAN `b`, INT `x`, FLOAT `d`, UNICODE `s` (NUL characters
 * become U+FFFD), BYTES `ay`, LIST and TUPLE `av`, DICT `a{sv}` (keys must be
 * UNICODE, or BYTES which are repaired to UTF-8; a key that occurs twice
 * after that is an error). Shared parts are copied, within
 * %BF_JELLY_MAX_EXPANDED_SIZE.
 *
 * Returns: (transfer full): a new non-floating #GVariant, or %NULL with a
 *   %BF_JELLY_ERROR_MALFORMED error naming what is not plain data
 */
GVariant     *bf_jelly_value_to_variant (const BfJellyValue *value,
                                         GError            **error);
GVariant     *bf_jelly_value_to_variant_dropping (const BfJellyValue *value,
                                                  const char         *dropped,
                                                  GError            **error);

G_END_DECLS
