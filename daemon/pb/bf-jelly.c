/* bf-jelly.c: the subset of Twisted's jelly that Buildbot's PB speaks
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "bf-jelly.h"

#include <string.h>

G_DEFINE_QUARK (bf-jelly-error-quark, bf_jelly_error)

/* Values */

static BfJellyValue *
value_new (BfJellyType type)
{
  BfJellyValue *value = g_new0 (BfJellyValue, 1);

  value->type = type;
  value->ref_count = 1;
  value->size = 1;
  return value;
}

BfJellyValue *
bf_jelly_value_ref (BfJellyValue *value)
{
  g_return_val_if_fail (value != NULL, NULL);
  g_atomic_int_inc (&value->ref_count);
  return value;
}

void
bf_jelly_value_unref (BfJellyValue *value)
{
  if (value == NULL || !g_atomic_int_dec_and_test (&value->ref_count))
    return;

  switch (value->type)
    {
    case BF_JELLY_UNICODE:
    case BF_JELLY_BYTES:
      g_free (value->string.data);
      break;
    case BF_JELLY_LIST:
    case BF_JELLY_TUPLE:
    case BF_JELLY_DICT:
      for (guint i = 0; i < value->seq.len; i++)
        bf_jelly_value_unref (value->seq.items[i]);
      g_free (value->seq.items);
      break;
    case BF_JELLY_FAILURE:
      bf_jelly_value_unref (value->state);
      break;
    default:
      break;
    }
  g_free (value);
}

static gsize
add_size (gsize a,
          gsize b)
{
  /* saturating: anything above the limit is refused anyway */
  return MIN (a + b, (gsize) BF_JELLY_MAX_EXPANDED_SIZE + 1);
}

BfJellyValue *
bf_jelly_none (void)
{
  return value_new (BF_JELLY_NONE);
}

BfJellyValue *
bf_jelly_boolean (gboolean b)
{
  BfJellyValue *value = value_new (BF_JELLY_BOOLEAN);

  value->boolean = !!b;
  return value;
}

BfJellyValue *
bf_jelly_int (gint64 i)
{
  BfJellyValue *value = value_new (BF_JELLY_INT);

  value->integer = i;
  return value;
}

BfJellyValue *
bf_jelly_float (gdouble d)
{
  BfJellyValue *value = value_new (BF_JELLY_FLOAT);

  value->number = d;
  return value;
}

static BfJellyValue *
string_new (BfJellyType  type,
            const void  *data,
            gsize        len)
{
  BfJellyValue *value = value_new (type);

  value->string.data = g_malloc (len + 1);
  if (len > 0)
    memcpy (value->string.data, data, len);
  value->string.data[len] = '\0';
  value->string.len = len;
  value->size = add_size (1, len);
  return value;
}

/* UTF-8 that may hold NUL characters, as a Python str may. */
static gboolean
utf8_valid (const gchar *data,
            gsize        len)
{
  while (len > 0)
    {
      const gchar *nul = memchr (data, '\0', len);
      gsize part = nul != NULL ? (gsize) (nul - data) : len;

      if (part > 0 && !g_utf8_validate_len (data, part, NULL))
        return FALSE;
      if (nul == NULL)
        break;
      data += part + 1;
      len -= part + 1;
    }
  return TRUE;
}

BfJellyValue *
bf_jelly_unicode (const gchar *utf8,
                  gssize       len)
{
  if (len < 0)
    len = strlen (utf8);
  g_return_val_if_fail (utf8_valid (utf8, len), NULL);
  return string_new (BF_JELLY_UNICODE, utf8, len);
}

BfJellyValue *
bf_jelly_bytes (const void *data,
                gsize       len)
{
  return string_new (BF_JELLY_BYTES, data, len);
}

BfJellyValue *
bf_jelly_list (void)
{
  return value_new (BF_JELLY_LIST);
}

BfJellyValue *
bf_jelly_tuple (void)
{
  return value_new (BF_JELLY_TUPLE);
}

BfJellyValue *
bf_jelly_dict (void)
{
  return value_new (BF_JELLY_DICT);
}

BfJellyValue *
bf_jelly_remote (gint64 id)
{
  BfJellyValue *value = value_new (BF_JELLY_REMOTE);

  value->integer = id;
  return value;
}

BfJellyValue *
bf_jelly_local (gint64 id)
{
  BfJellyValue *value = value_new (BF_JELLY_LOCAL);

  value->integer = id;
  return value;
}

BfJellyValue *
bf_jelly_failure (BfJellyValue *state)
{
  BfJellyValue *value;

  g_return_val_if_fail (state != NULL && state->type == BF_JELLY_DICT, NULL);
  value = value_new (BF_JELLY_FAILURE);
  value->state = state;
  value->size = add_size (1, state->size);
  return value;
}

static void
seq_add (BfJellyValue *seq,
         BfJellyValue *item)
{
  if (seq->seq.len == seq->seq.allocated)
    {
      seq->seq.allocated = MAX (4, seq->seq.allocated * 2);
      seq->seq.items = g_renew (BfJellyValue *, seq->seq.items, seq->seq.allocated);
    }
  seq->seq.items[seq->seq.len++] = item;
  seq->size = add_size (seq->size, item->size);
}

void
bf_jelly_append (BfJellyValue *seq,
                 BfJellyValue *item)
{
  g_return_if_fail (seq->type == BF_JELLY_LIST || seq->type == BF_JELLY_TUPLE);
  g_return_if_fail (item != NULL);
  seq_add (seq, item);
}

void
bf_jelly_dict_set (BfJellyValue *dict,
                   BfJellyValue *key,
                   BfJellyValue *value)
{
  g_return_if_fail (dict->type == BF_JELLY_DICT);
  g_return_if_fail (key != NULL && value != NULL);
  /* what bf_jelly_decode() accepts as a key */
  g_return_if_fail (key->type <= BF_JELLY_BYTES);
  g_return_if_fail ((key->type != BF_JELLY_UNICODE && key->type != BF_JELLY_BYTES) ||
                    key->string.len <= BF_JELLY_MAX_KEY_LENGTH);
  seq_add (dict, key);
  seq_add (dict, value);
}

BfJellyValue *
bf_jelly_dict_lookup (const BfJellyValue *dict,
                      const gchar        *key)
{
  gsize len = strlen (key);

  g_return_val_if_fail (dict->type == BF_JELLY_DICT, NULL);
  for (guint i = 0; i + 1 < dict->seq.len; i += 2)
    {
      const BfJellyValue *k = dict->seq.items[i];

      if ((k->type == BF_JELLY_UNICODE || k->type == BF_JELLY_BYTES) &&
          k->string.len == len && memcmp (k->string.data, key, len) == 0)
        return dict->seq.items[i + 1];
    }
  return NULL;
}

/* Printing */

static void
print_string (GString     *s,
              const gchar *prefix,
              const gchar *data,
              gsize        len)
{
  g_string_append (s, prefix);
  g_string_append_c (s, '"');
  for (gsize i = 0; i < len; i++)
    {
      guchar c = data[i];
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
        g_string_append_c (s, c);
      else
        g_string_append_printf (s, "\\x%02x", c);
    }
  g_string_append_c (s, '"');
}

static void
print_value (GString            *s,
             const BfJellyValue *value)
{
  switch (value->type)
    {
    case BF_JELLY_NONE:
      g_string_append (s, "None");
      break;
    case BF_JELLY_BOOLEAN:
      g_string_append (s, value->boolean ? "True" : "False");
      break;
    case BF_JELLY_INT:
      g_string_append_printf (s, "%" G_GINT64_FORMAT, value->integer);
      break;
    case BF_JELLY_FLOAT:
      {
        guint64 bits;
        memcpy (&bits, &value->number, sizeof bits);
        g_string_append_printf (s, "float:%016" G_GINT64_MODIFIER "x", bits);
      }
      break;
    case BF_JELLY_UNICODE:
      print_string (s, "u", value->string.data, value->string.len);
      break;
    case BF_JELLY_BYTES:
      print_string (s, "b", value->string.data, value->string.len);
      break;
    case BF_JELLY_LIST:
    case BF_JELLY_TUPLE:
      g_string_append_c (s, value->type == BF_JELLY_LIST ? '[' : '(');
      for (guint i = 0; i < value->seq.len; i++)
        {
          if (i > 0)
            g_string_append (s, ", ");
          print_value (s, value->seq.items[i]);
        }
      g_string_append_c (s, value->type == BF_JELLY_LIST ? ']' : ')');
      break;
    case BF_JELLY_DICT:
      g_string_append_c (s, '{');
      for (guint i = 0; i + 1 < value->seq.len; i += 2)
        {
          if (i > 0)
            g_string_append (s, ", ");
          print_value (s, value->seq.items[i]);
          g_string_append (s, ": ");
          print_value (s, value->seq.items[i + 1]);
        }
      g_string_append_c (s, '}');
      break;
    case BF_JELLY_REMOTE:
      g_string_append_printf (s, "remote(%" G_GINT64_FORMAT ")", value->integer);
      break;
    case BF_JELLY_LOCAL:
      g_string_append_printf (s, "local(%" G_GINT64_FORMAT ")", value->integer);
      break;
    case BF_JELLY_FAILURE:
      g_string_append (s, "failure(");
      print_value (s, value->state);
      g_string_append_c (s, ')');
      break;
    }
}

/**
 * bf_jelly_value_print:
 * @value: a value
 *
 * Prints @value in a canonical form, shared values written out in full:
 * `None`, `True`, `-3`, `float:3ff8000000000000` (the IEEE 754 bits),
 * `u"text"` and `b"bytes"` (bytes outside printable ASCII, `"` and `\` as
 * `\xNN`), `[a, b]`, `(a, b)`, `{k: v}`, `remote(1)`, `local(2)`,
 * `failure({...})`. tests/unit/jelly-twisted.py prints Python values the
 * same way. Only for values below %BF_JELLY_MAX_EXPANDED_SIZE.
 *
 * Returns: (transfer full): the text
 */
gchar *
bf_jelly_value_print (const BfJellyValue *value)
{
  GString *s = g_string_new (NULL);

  print_value (s, value);
  return g_string_free (s, FALSE);
}

/* Decoding */

/* bf_banana_value_is_string() without a strlen() per type name tried */
#define IS(value, literal) \
  ((value)->type == BF_BANANA_STRING && (value)->string.len == sizeof (literal) - 1 && \
   memcmp ((value)->string.data, literal, sizeof (literal) - 1) == 0)

typedef struct
{
  /* refid -> BfJellyValue (owned), or NULL while it is being decoded */
  GHashTable *references;
} Unjellier;

G_GNUC_PRINTF (3, 4) static BfJellyValue *
refuse (GError      **error,
        BfJellyError  code,
        const gchar  *format,
        ...)
{
  g_autofree gchar *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, BF_JELLY_ERROR, code, "jelly: %s", what);
  return NULL;
}

static gchar *
short_name (const BfBananaValue *s)
{
  BfBananaValue copy = *s;

  copy.string.len = MIN (copy.string.len, 48);
  return bf_banana_value_print (&copy);
}

static BfJellyValue *unjelly (Unjellier *u, const BfBananaValue *sexp, GError **error);

static BfJellyValue *
check_size (BfJellyValue *value,
            GError      **error)
{
  if (value->size > BF_JELLY_MAX_EXPANDED_SIZE)
    {
      bf_jelly_value_unref (value);
      return refuse (error, BF_JELLY_ERROR_LIMIT,
                     "value larger than %u bytes when shared parts are counted each time",
                     BF_JELLY_MAX_EXPANDED_SIZE);
    }
  return value;
}

static gboolean
want_args (const BfBananaValue *sexp,
           const gchar         *type,
           guint                n_args,
           GError             **error)
{
  if (sexp->list.len != n_args + 1)
    {
      refuse (error, BF_JELLY_ERROR_MALFORMED, "'%s' takes %u argument%s, got %u",
              type, n_args, n_args == 1 ? "" : "s", sexp->list.len - 1);
      return FALSE;
    }
  return TRUE;
}

static BfJellyValue *
unjelly_seq (Unjellier           *u,
             BfJellyValue        *seq,
             const BfBananaValue *sexp,
             GError             **error)
{
  g_autoptr(BfJellyValue) owned = seq;

  for (guint i = 1; i < sexp->list.len; i++)
    {
      BfJellyValue *item = unjelly (u, sexp->list.items[i], error);

      if (item == NULL)
        return NULL;
      seq_add (seq, item);
      if (seq->size > BF_JELLY_MAX_EXPANDED_SIZE)
        return check_size (g_steal_pointer (&owned), error);
    }
  return g_steal_pointer (&owned);
}

/* Dictionary keys are scalars of bounded length: what Buildbot sends, and
 * what keeps the duplicate check linear (a shared long key cannot be
 * compared again and again). */
static gboolean
key_allowed (const BfJellyValue *key,
             guint               i,
             GError            **error)
{
  switch (key->type)
    {
    case BF_JELLY_NONE:
    case BF_JELLY_BOOLEAN:
    case BF_JELLY_INT:
    case BF_JELLY_FLOAT:
      return TRUE;
    case BF_JELLY_UNICODE:
    case BF_JELLY_BYTES:
      if (key->string.len <= BF_JELLY_MAX_KEY_LENGTH)
        return TRUE;
      refuse (error, BF_JELLY_ERROR_LIMIT, "dictionary key %u is longer than %u bytes",
              i, BF_JELLY_MAX_KEY_LENGTH);
      return FALSE;
    default:
      refuse (error, BF_JELLY_ERROR_MALFORMED,
              "dictionary key %u is not a string, number, boolean or None", i);
      return FALSE;
    }
}

/* The identity of a key for the duplicate check: its type, then its bytes. */
static GBytes *
key_bytes (const BfJellyValue *key)
{
  g_autoptr(GByteArray) bytes = g_byte_array_sized_new (16);
  guint8 type = key->type;

  g_byte_array_append (bytes, &type, 1);
  switch (key->type)
    {
    case BF_JELLY_BOOLEAN:
      g_byte_array_append (bytes, (const guint8 *) (key->boolean ? "T" : "F"), 1);
      break;
    case BF_JELLY_INT:
      g_byte_array_append (bytes, (const guint8 *) &key->integer, sizeof key->integer);
      break;
    case BF_JELLY_FLOAT:
      g_byte_array_append (bytes, (const guint8 *) &key->number, sizeof key->number);
      break;
    case BF_JELLY_UNICODE:
    case BF_JELLY_BYTES:
      g_byte_array_append (bytes, (const guint8 *) key->string.data, key->string.len);
      break;
    default:
      break;
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&bytes));
}

static BfJellyValue *
unjelly_dict (Unjellier           *u,
              const BfBananaValue *sexp,
              GError             **error)
{
  g_autoptr(BfJellyValue) dict = bf_jelly_dict ();
  g_autoptr(GHashTable) seen = NULL;

  if (sexp->list.len > 2)
    seen = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL);

  for (guint i = 1; i < sexp->list.len; i++)
    {
      const BfBananaValue *pair = sexp->list.items[i];
      BfJellyValue *key, *value;

      if (pair->type != BF_BANANA_LIST || pair->list.len != 2)
        return refuse (error, BF_JELLY_ERROR_MALFORMED,
                       "dictionary entry %u is not a [key, value] pair", i);
      key = unjelly (u, pair->list.items[0], error);
      if (key == NULL)
        return NULL;
      seq_add (dict, key);
      if (!key_allowed (key, i, error))
        return NULL;
      if (seen != NULL && !g_hash_table_add (seen, key_bytes (key)))
        {
          g_autofree gchar *printed = bf_jelly_value_print (key);
          g_autofree gchar *shown = g_utf8_make_valid (printed, MIN (strlen (printed), 64));

          return refuse (error, BF_JELLY_ERROR_MALFORMED,
                         "dictionary repeats the key %s", shown);
        }
      value = unjelly (u, pair->list.items[1], error);
      if (value == NULL)
        return NULL;
      seq_add (dict, value);
      if (dict->size > BF_JELLY_MAX_EXPANDED_SIZE)
        return check_size (g_steal_pointer (&dict), error);
    }
  return g_steal_pointer (&dict);
}

static BfJellyValue *
unjelly_id (const BfBananaValue *sexp,
            const gchar         *type,
            gint64              *id,
            GError             **error)
{
  if (!want_args (sexp, type, 1, error))
    return NULL;
  if (sexp->list.items[1]->type != BF_BANANA_INT)
    return refuse (error, BF_JELLY_ERROR_MALFORMED, "the id of '%s' is not an integer", type);
  *id = sexp->list.items[1]->integer;
  return (BfJellyValue *) sexp; /* non-NULL: success */
}

/* What the refused types are, for the message. */
static const struct
{
  const gchar *type;
  const gchar *what;
} refused_types[] = {
  { "class", "a Python class" },
  { "module", "a Python module" },
  { "function", "a Python function" },
  { "method", "a bound Python method" },
  { "instance", "an instance of a Python class" },
  { "persistent", "a persistent object" },
  { "unpersistable", "an object the peer could not serialise" },
  { "copy", "a copyable object other than a failure" },
  { "cache", "a cacheable object" },
  { "cached", "a cacheable object" },
  { "lcache", "a cacheable object" },
};

static BfJellyValue *
unjelly (Unjellier           *u,
         const BfBananaValue *sexp,
         GError             **error)
{
  const BfBananaValue *head;
  gint64 id;

  switch (sexp->type)
    {
    case BF_BANANA_INT:
      return bf_jelly_int (sexp->integer);
    case BF_BANANA_FLOAT:
      return bf_jelly_float (sexp->number);
    case BF_BANANA_STRING:
      return bf_jelly_bytes (sexp->string.data, sexp->string.len);
    case BF_BANANA_LIST:
      break;
    }

  if (sexp->list.len == 0)
    return refuse (error, BF_JELLY_ERROR_MALFORMED, "an empty list names no type");
  head = sexp->list.items[0];
  if (head->type != BF_BANANA_STRING)
    return refuse (error, BF_JELLY_ERROR_MALFORMED, "a list whose first item is not a type name");

  if (IS (head, "None"))
    {
      if (!want_args (sexp, "None", 0, error))
        return NULL;
      return bf_jelly_none ();
    }
  if (IS (head, "boolean"))
    {
      if (!want_args (sexp, "boolean", 1, error))
        return NULL;
      if (IS (sexp->list.items[1], "true"))
        return bf_jelly_boolean (TRUE);
      if (IS (sexp->list.items[1], "false"))
        return bf_jelly_boolean (FALSE);
      return refuse (error, BF_JELLY_ERROR_MALFORMED, "a boolean is neither \"true\" nor \"false\"");
    }
  if (IS (head, "unicode"))
    {
      const BfBananaValue *s;

      if (!want_args (sexp, "unicode", 1, error))
        return NULL;
      s = sexp->list.items[1];
      if (s->type != BF_BANANA_STRING)
        return refuse (error, BF_JELLY_ERROR_MALFORMED, "a unicode string that is not a string");
      if (!utf8_valid (s->string.data, s->string.len))
        return refuse (error, BF_JELLY_ERROR_MALFORMED, "a unicode string that is not valid UTF-8");
      return string_new (BF_JELLY_UNICODE, s->string.data, s->string.len);
    }
  if (IS (head, "list"))
    return unjelly_seq (u, bf_jelly_list (), sexp, error);
  if (IS (head, "tuple"))
    return unjelly_seq (u, bf_jelly_tuple (), sexp, error);
  if (IS (head, "dictionary"))
    return unjelly_dict (u, sexp, error);
  if (IS (head, "remote"))
    {
      if (unjelly_id (sexp, "remote", &id, error) == NULL)
        return NULL;
      return bf_jelly_remote (id);
    }
  if (IS (head, "local"))
    {
      if (unjelly_id (sexp, "local", &id, error) == NULL)
        return NULL;
      return bf_jelly_local (id);
    }
  if (IS (head, BF_JELLY_COPYABLE_FAILURE))
    {
      BfJellyValue *state;

      if (!want_args (sexp, "failure", 1, error))
        return NULL;
      state = unjelly (u, sexp->list.items[1], error);
      if (state == NULL)
        return NULL;
      if (state->type != BF_JELLY_DICT)
        {
          bf_jelly_value_unref (state);
          return refuse (error, BF_JELLY_ERROR_MALFORMED, "a failure whose state is not a dictionary");
        }
      return check_size (bf_jelly_failure (state), error);
    }
  if (IS (head, "reference"))
    {
      BfJellyValue *value;

      if (sexp->list.len != 3 || sexp->list.items[1]->type != BF_BANANA_INT)
        return refuse (error, BF_JELLY_ERROR_MALFORMED, "'reference' takes an id and a value");
      id = sexp->list.items[1]->integer;
      if (u->references == NULL)
        u->references = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                               (GDestroyNotify) bf_jelly_value_unref);
      if (g_hash_table_contains (u->references, &id))
        return refuse (error, BF_JELLY_ERROR_REFERENCE,
                       "reference %" G_GINT64_FORMAT " is defined twice", id);
      if (g_hash_table_size (u->references) >= BF_JELLY_MAX_REFERENCES)
        return refuse (error, BF_JELLY_ERROR_REFERENCE,
                       "more than %u references", BF_JELLY_MAX_REFERENCES);
      g_hash_table_insert (u->references, g_memdup2 (&id, sizeof id), NULL);
      value = unjelly (u, sexp->list.items[2], error);
      if (value == NULL)
        return NULL;
      g_hash_table_insert (u->references, g_memdup2 (&id, sizeof id), bf_jelly_value_ref (value));
      return value;
    }
  if (IS (head, "dereference"))
    {
      BfJellyValue *value = NULL;

      if (unjelly_id (sexp, "dereference", &id, error) == NULL)
        return NULL;
      if (u->references == NULL ||
          !g_hash_table_lookup_extended (u->references, &id, NULL, (gpointer *) &value))
        return refuse (error, BF_JELLY_ERROR_REFERENCE,
                       "dereference to %" G_GINT64_FORMAT ", which was not defined before "
                       "(forward references are refused)", id);
      if (value == NULL)
        return refuse (error, BF_JELLY_ERROR_REFERENCE,
                       "dereference to %" G_GINT64_FORMAT " inside its own definition "
                       "(circular references are refused)", id);
      return bf_jelly_value_ref (value);
    }

  for (gsize i = 0; i < G_N_ELEMENTS (refused_types); i++)
    if (bf_banana_value_is_string (head, refused_types[i].type))
      return refuse (error, BF_JELLY_ERROR_REFUSED,
                     "refused '%s' (%s): only plain data, object references and "
                     "copyable failures are accepted", refused_types[i].type, refused_types[i].what);
  {
    g_autofree gchar *name = short_name (head);
    return refuse (error, BF_JELLY_ERROR_REFUSED,
                   "refused type %s: only plain data, object references and "
                   "copyable failures are accepted", name);
  }
}

/**
 * bf_jelly_decode:
 * @sexp: one jellied value, as the banana decoder gave it
 * @error: return location for a #GError
 *
 * Unjellies @sexp, the way Twisted's unjelly() does for the subset in the
 * section overview. References are resolved within @sexp only.
 *
 * Returns: (transfer full): the value, or %NULL with a %BF_JELLY_ERROR
 */
BfJellyValue *
bf_jelly_decode (const BfBananaValue *sexp,
                 GError             **error)
{
  Unjellier u = { NULL };
  BfJellyValue *value;

  g_return_val_if_fail (sexp != NULL, NULL);

  value = unjelly (&u, sexp, error);
  g_clear_pointer (&u.references, g_hash_table_unref);
  return value;
}

/* Encoding */

typedef struct
{
  GByteArray      *out;
  BfBananaDialect  dialect;
  /* container -> GUINT_TO_POINTER (times seen), then (refid << 1 | 1) once
   * its reference has been written */
  GHashTable      *shared;
  guint            next_refid;
} Jellier;

static gboolean
is_container (const BfJellyValue *value)
{
  return value->type == BF_JELLY_LIST || value->type == BF_JELLY_TUPLE ||
         value->type == BF_JELLY_DICT || value->type == BF_JELLY_FAILURE;
}

static void
count_shared (GHashTable         *seen,
              const BfJellyValue *value)
{
  guint n;

  if (!is_container (value))
    return;
  n = GPOINTER_TO_UINT (g_hash_table_lookup (seen, value));
  g_hash_table_insert (seen, (gpointer) value, GUINT_TO_POINTER (n + 1));
  if (n > 0)
    return;
  if (value->type == BF_JELLY_FAILURE)
    count_shared (seen, value->state);
  else
    for (guint i = 0; i < value->seq.len; i++)
      count_shared (seen, value->seq.items[i]);
}

static gboolean
jelly (Jellier            *j,
       const BfJellyValue *value,
       guint               depth,
       GError            **error)
{
  const gchar *type = NULL;

  if (depth > BF_BANANA_MAX_DEPTH)
    {
      refuse (error, BF_JELLY_ERROR_LIMIT, "value nested deeper than %u banana lists",
              BF_BANANA_MAX_DEPTH);
      return FALSE;
    }

  if (is_container (value))
    {
      guint mark = GPOINTER_TO_UINT (g_hash_table_lookup (j->shared, value));

      if (mark & 1)
        {
          bf_banana_write_list_header (j->out, 2);
          bf_banana_write_string (j->out, j->dialect, "dereference", 11);
          bf_banana_write_int (j->out, mark >> 1);
          return TRUE;
        }
      if (mark > 2)
        {
          guint refid = j->next_refid++;

          g_hash_table_insert (j->shared, (gpointer) value, GUINT_TO_POINTER (refid << 1 | 1));
          bf_banana_write_list_header (j->out, 3);
          bf_banana_write_string (j->out, j->dialect, "reference", 9);
          bf_banana_write_int (j->out, refid);
          depth++;
          if (depth > BF_BANANA_MAX_DEPTH)
            {
              refuse (error, BF_JELLY_ERROR_LIMIT, "value nested deeper than %u banana lists",
                      BF_BANANA_MAX_DEPTH);
              return FALSE;
            }
        }
    }

  switch (value->type)
    {
    case BF_JELLY_NONE:
      bf_banana_write_list_header (j->out, 1);
      bf_banana_write_string (j->out, j->dialect, "None", 4);
      return TRUE;
    case BF_JELLY_BOOLEAN:
      bf_banana_write_list_header (j->out, 2);
      bf_banana_write_string (j->out, j->dialect, "boolean", 7);
      bf_banana_write_string (j->out, j->dialect, value->boolean ? "true" : "false",
                              value->boolean ? 4 : 5);
      return TRUE;
    case BF_JELLY_INT:
      bf_banana_write_int (j->out, value->integer);
      return TRUE;
    case BF_JELLY_FLOAT:
      bf_banana_write_float (j->out, value->number);
      return TRUE;
    case BF_JELLY_UNICODE:
    case BF_JELLY_BYTES:
      if (value->string.len > BF_BANANA_SIZE_LIMIT)
        {
          refuse (error, BF_JELLY_ERROR_LIMIT, "a string of %" G_GSIZE_FORMAT
                  " bytes is longer than PB allows (%u)", value->string.len, BF_BANANA_SIZE_LIMIT);
          return FALSE;
        }
      if (value->type == BF_JELLY_UNICODE)
        {
          bf_banana_write_list_header (j->out, 2);
          bf_banana_write_string (j->out, j->dialect, "unicode", 7);
          bf_banana_write_string (j->out, j->dialect, value->string.data,
                                  value->string.len);
        }
      else
        bf_banana_write_string (j->out, j->dialect, value->string.data, value->string.len);
      return TRUE;
    case BF_JELLY_REMOTE:
    case BF_JELLY_LOCAL:
      bf_banana_write_list_header (j->out, 2);
      type = value->type == BF_JELLY_REMOTE ? "remote" : "local";
      bf_banana_write_string (j->out, j->dialect, type, strlen (type));
      bf_banana_write_int (j->out, value->integer);
      return TRUE;
    case BF_JELLY_FAILURE:
      bf_banana_write_list_header (j->out, 2);
      bf_banana_write_string (j->out, j->dialect, BF_JELLY_COPYABLE_FAILURE,
                              strlen (BF_JELLY_COPYABLE_FAILURE));
      return jelly (j, value->state, depth + 1, error);
    case BF_JELLY_LIST:
    case BF_JELLY_TUPLE:
    case BF_JELLY_DICT:
      break;
    }

  {
    guint n = value->type == BF_JELLY_DICT ? value->seq.len / 2 : value->seq.len;

    if (n + 1 > BF_BANANA_MAX_LIST_LENGTH)
      {
        refuse (error, BF_JELLY_ERROR_LIMIT, "a container of %u items is longer than %u",
                n, BF_BANANA_MAX_LIST_LENGTH - 1);
        return FALSE;
      }
    type = value->type == BF_JELLY_LIST ? "list" :
           value->type == BF_JELLY_TUPLE ? "tuple" : "dictionary";
    bf_banana_write_list_header (j->out, n + 1);
    bf_banana_write_string (j->out, j->dialect, type, strlen (type));
    if (value->type == BF_JELLY_DICT)
      {
        if (depth + 2 > BF_BANANA_MAX_DEPTH)
          {
            refuse (error, BF_JELLY_ERROR_LIMIT, "value nested deeper than %u banana lists",
                    BF_BANANA_MAX_DEPTH);
            return FALSE;
          }
        for (guint i = 0; i + 1 < value->seq.len; i += 2)
          {
            bf_banana_write_list_header (j->out, 2);
            if (!jelly (j, value->seq.items[i], depth + 2, error) ||
                !jelly (j, value->seq.items[i + 1], depth + 2, error))
              return FALSE;
          }
      }
    else
      {
        for (guint i = 0; i < value->seq.len; i++)
          if (!jelly (j, value->seq.items[i], depth + 1, error))
            return FALSE;
      }
  }
  return TRUE;
}

/**
 * bf_jelly_encode:
 * @out: where to append the banana bytes
 * @dialect: the negotiated dialect (VOCAB for known words in "pb")
 * @value: the value
 * @error: return location for a #GError
 *
 * Jellies @value as Twisted's jelly() would. A container that occurs more
 * than once in @value is sent once as `["reference", id, ...]` and then as
 * `["dereference", id]` (ids in order of first occurrence; Twisted numbers
 * them in order of second occurrence, which decodes to the same value).
 *
 * Returns: %FALSE with a %BF_JELLY_ERROR_LIMIT error, and @out as it was,
 *   if a string, a container or the nesting is over the banana limits
 */
gboolean
bf_jelly_encode (GByteArray         *out,
                 BfBananaDialect     dialect,
                 const BfJellyValue *value,
                 GError            **error)
{
  Jellier j = { out, dialect, NULL, 1 };
  guint start = out->len;
  gboolean ok;

  g_return_val_if_fail (value != NULL, FALSE);

  j.shared = g_hash_table_new (NULL, NULL);
  count_shared (j.shared, value);
  /* the count is stored shifted so that bit 0 tells "already written" */
  {
    GHashTableIter iter;
    gpointer key, count;

    g_hash_table_iter_init (&iter, j.shared);
    while (g_hash_table_iter_next (&iter, &key, &count))
      g_hash_table_iter_replace (&iter, GUINT_TO_POINTER (GPOINTER_TO_UINT (count) << 1));
  }
  ok = jelly (&j, value, 1, error);
  g_hash_table_unref (j.shared);
  if (!ok)
    g_byte_array_set_size (out, start);
  return ok;
}

/* Conversion to GVariant */

static gchar *
text_without_nuls (const gchar *data,
                   gsize        len,
                   gboolean     repair)
{
  GString *s = g_string_sized_new (len);

  for (gsize i = 0; i < len; i++)
    {
      if (data[i] == '\0')
        g_string_append (s, "\xef\xbf\xbd");
      else
        g_string_append_c (s, data[i]);
    }
  if (repair && !g_utf8_validate_len (s->str, s->len, NULL))
    {
      gchar *valid = g_utf8_make_valid (s->str, s->len);
      g_string_free (s, TRUE);
      return valid;
    }
  return g_string_free (s, FALSE);
}

static GVariant *to_variant (const BfJellyValue *value,
                             const char         *drop,
                             GError            **error);

/* Whether @value is plain data, as to_variant() would find it, without
 * converting it: for what is dropped unread. */
static gboolean
check_plain (const BfJellyValue *value,
             GError            **error)
{
  switch (value->type)
    {
    case BF_JELLY_LIST:
    case BF_JELLY_TUPLE:
      for (guint i = 0; i < value->seq.len; i++)
        if (!check_plain (value->seq.items[i], error))
          return FALSE;
      return TRUE;
    case BF_JELLY_DICT:
      for (guint i = 0; i + 1 < value->seq.len; i += 2)
        {
          const BfJellyValue *k = value->seq.items[i];

          if (k->type != BF_JELLY_UNICODE && k->type != BF_JELLY_BYTES)
            {
              refuse (error, BF_JELLY_ERROR_MALFORMED, "a dictionary key is not a string");
              return FALSE;
            }
          if (!check_plain (value->seq.items[i + 1], error))
            return FALSE;
        }
      return TRUE;
    case BF_JELLY_REMOTE:
    case BF_JELLY_LOCAL:
      refuse (error, BF_JELLY_ERROR_MALFORMED, "an object reference where plain data was expected");
      return FALSE;
    case BF_JELLY_FAILURE:
      refuse (error, BF_JELLY_ERROR_MALFORMED, "a failure where plain data was expected");
      return FALSE;
    default:
      return TRUE;
    }
}

/* @drop: (nullable): a key of this dictionary whose value is only checked
 * to be plain data, then left out */
static GVariant *
to_variant (const BfJellyValue *value,
            const char         *drop,
            GError            **error)
{
  switch (value->type)
    {
    case BF_JELLY_NONE:
      return g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL);
    case BF_JELLY_BOOLEAN:
      return g_variant_new_boolean (value->boolean);
    case BF_JELLY_INT:
      return g_variant_new_int64 (value->integer);
    case BF_JELLY_FLOAT:
      return g_variant_new_double (value->number);
    case BF_JELLY_UNICODE:
      return g_variant_new_take_string (text_without_nuls (value->string.data,
                                                           value->string.len, FALSE));
    case BF_JELLY_BYTES:
      return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, value->string.data,
                                        value->string.len, 1);
    case BF_JELLY_LIST:
    case BF_JELLY_TUPLE:
      {
        GVariantBuilder builder;

        g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
        for (guint i = 0; i < value->seq.len; i++)
          {
            GVariant *child = to_variant (value->seq.items[i], NULL, error);

            if (child == NULL)
              {
                g_variant_builder_clear (&builder);
                return NULL;
              }
            g_variant_builder_add (&builder, "v", child);
          }
        return g_variant_builder_end (&builder);
      }
    case BF_JELLY_DICT:
      {
        g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
        GVariantBuilder builder;

        g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{sv}"));
        for (guint i = 0; i + 1 < value->seq.len; i += 2)
          {
            const BfJellyValue *k = value->seq.items[i];
            gchar *key;
            GVariant *child;

            if (k->type != BF_JELLY_UNICODE && k->type != BF_JELLY_BYTES)
              {
                g_variant_builder_clear (&builder);
                refuse (error, BF_JELLY_ERROR_MALFORMED, "a dictionary key is not a string");
                return NULL;
              }
            key = text_without_nuls (k->string.data, k->string.len, TRUE);
            if (!g_hash_table_add (seen, key))
              {
                g_autofree gchar *shown = g_utf8_substring (key, 0, MIN (g_utf8_strlen (key, -1), 48));
                g_variant_builder_clear (&builder);
                refuse (error, BF_JELLY_ERROR_MALFORMED,
                        "the dictionary key \"%s\" occurs twice (as text and as bytes)", shown);
                return NULL;
              }
            if (drop != NULL && g_str_equal (key, drop))
              {
                if (check_plain (value->seq.items[i + 1], error))
                  continue;
                g_variant_builder_clear (&builder);
                return NULL;
              }
            child = to_variant (value->seq.items[i + 1], NULL, error);
            if (child == NULL)
              {
                g_variant_builder_clear (&builder);
                return NULL;
              }
            g_variant_builder_add (&builder, "{sv}", key, child);
          }
        return g_variant_builder_end (&builder);
      }
    case BF_JELLY_REMOTE:
    case BF_JELLY_LOCAL:
      refuse (error, BF_JELLY_ERROR_MALFORMED, "an object reference where plain data was expected");
      return NULL;
    case BF_JELLY_FAILURE:
      refuse (error, BF_JELLY_ERROR_MALFORMED, "a failure where plain data was expected");
      return NULL;
    }
  g_assert_not_reached ();
}

GVariant *
bf_jelly_value_to_variant (const BfJellyValue *value,
                           GError            **error)
{
  GVariant *variant;

  g_return_val_if_fail (value != NULL, NULL);

  variant = to_variant (value, NULL, error);
  return variant != NULL ? g_variant_ref_sink (variant) : NULL;
}

/**
 * bf_jelly_value_to_variant_dropping:
 * @dropped: a key of the DICT @value whose value is left out of the
 *   result: it is only checked to be plain data, not converted
 *
 * Like bf_jelly_value_to_variant(), for a dictionary with one bulky entry
 * that is never kept (getWorkerInfo's environ, the bulk of its reply).
 */
GVariant *
bf_jelly_value_to_variant_dropping (const BfJellyValue *value,
                                    const char         *dropped,
                                    GError            **error)
{
  GVariant *variant;

  g_return_val_if_fail (value != NULL, NULL);
  g_return_val_if_fail (dropped != NULL, NULL);

  variant = to_variant (value, dropped, error);
  return variant != NULL ? g_variant_ref_sink (variant) : NULL;
}
