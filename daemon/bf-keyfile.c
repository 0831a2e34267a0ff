/* bf-keyfile.c: the groups, keys and values of key files, merged
 *
 * See bf-keyfile.h for the contract.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-keyfile.h"

typedef struct {
  const char *key;
  const char *value;            /* raw, as written after the '=' */
} Pair;

typedef struct {
  const char *name;
  guint n_pairs;
  guint alloc;
  Pair *pairs;
} Group;

struct _BfKeyFile
{
  GPtrArray *names;             /* const char *, NULL-terminated, in order */
  GHashTable *groups;           /* name -> Group (owned) */
  GPtrArray *strings;           /* owned text every name, key and value points into */
};

static void
group_free (gpointer data)
{
  Group *g = data;

  g_free (g->pairs);
  g_free (g);
}

BfKeyFile *
bf_key_file_new (void)
{
  BfKeyFile *self = g_new0 (BfKeyFile, 1);

  self->names = g_ptr_array_new_null_terminated (0, NULL, TRUE);
  self->groups = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, group_free);
  self->strings = g_ptr_array_new_with_free_func (g_free);
  return self;
}

void
bf_key_file_free (BfKeyFile *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->names);
  g_hash_table_unref (self->groups);
  g_ptr_array_unref (self->strings);
  g_free (self);
}

/* @name is kept as it is: it must live as long as @self. */
static Group *
ensure_group (BfKeyFile  *self,
              const char *name)
{
  Group *g = g_hash_table_lookup (self->groups, name);

  if (g != NULL)
    return g;
  g = g_new0 (Group, 1);
  g->name = name;
  g_hash_table_insert (self->groups, (gpointer) name, g);
  g_ptr_array_add (self->names, (gpointer) name);
  return g;
}

static Pair *
find_pair (Group      *g,
           const char *key)
{
  for (guint i = 0; i < g->n_pairs; i++)
    if (strcmp (g->pairs[i].key, key) == 0)
      return &g->pairs[i];
  return NULL;
}

/* @key and @value are kept as they are: they must live as long as @self. */
static void
set_pair (Group      *g,
          const char *key,
          const char *value)
{
  Pair *pair = find_pair (g, key);

  if (pair != NULL)
    {
      pair->value = value;
      return;
    }
  if (g->n_pairs == g->alloc)
    {
      g->alloc = g->alloc ? g->alloc * 2 : 4;
      g->pairs = g_renew (Pair, g->pairs, g->alloc);
    }
  g->pairs[g->n_pairs].key = key;
  g->pairs[g->n_pairs].value = value;
  g->n_pairs++;
}

static const char *
keep (BfKeyFile  *self,
      const char *text)
{
  char *copy = g_strdup (text);

  g_ptr_array_add (self->strings, copy);
  return copy;
}

static gboolean
is_plain_key_char (char c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '_' || c == '.';
}

/* Reads @text (NUL-terminated, ours to cut) when every line is one of the
 * common ones; FALSE at the first other line, leaving what was read
 * before it in @self (GKeyFile then reads the whole text again). */
static gboolean
load_plain (BfKeyFile *self,
            char      *text)
{
  Group *group = NULL;

  if (strchr (text, '\r') != NULL)
    return FALSE;
  for (char *line = text; line != NULL; )
    {
      char *end = strchr (line, '\n');
      char *next = end ? end + 1 : NULL;
      char *eq, *key_end, *value;

      if (end == NULL)
        end = line + strlen (line);
      while (line < end && g_ascii_isspace (*line))
        line++;
      if (line == end || *line == '#')
        {
          line = next;
          continue;
        }
      if (*line == '[')
        {
          char *name = line + 1;

          if (end[-1] != ']' || end - 1 == name)
            return FALSE;
          for (char *c = name; c < end - 1; c++)
            if (*c == '[' || *c == ']' || g_ascii_iscntrl (*c))
              return FALSE;
          end[-1] = '\0';
          group = ensure_group (self, name);
          line = next;
          continue;
        }

      eq = memchr (line, '=', end - line);
      if (eq == NULL || group == NULL)
        return FALSE;
      key_end = eq;
      while (key_end > line && g_ascii_isspace (key_end[-1]))
        key_end--;
      if (key_end == line)
        return FALSE;
      for (char *c = line; c < key_end; c++)
        if (!is_plain_key_char (*c))
          return FALSE;
      /* GKeyFile checks the first group's Encoding= */
      if (key_end - line == 8 && memcmp (line, "Encoding", 8) == 0)
        return FALSE;
      value = eq + 1;
      while (value < end && g_ascii_isspace (*value))
        value++;
      *key_end = '\0';
      *end = '\0';
      set_pair (group, line, value);
      line = next;
    }
  return TRUE;
}

/**
 * bf_key_file_load:
 * @contents: the text of a key file, valid UTF-8 without NUL bytes
 * @len: its length
 * @error: GKeyFile's error, if it is not a key file
 *
 * Adds the groups, keys and values of @contents to @self (see
 * bf-keyfile.h).  After an error @self holds part of @contents.
 */
gboolean
bf_key_file_load (BfKeyFile   *self,
                  const char  *contents,
                  gsize        len,
                  GError     **error)
{
  char *text = g_strndup (contents, len);
  g_autoptr(GKeyFile) kf = NULL;
  g_auto(GStrv) groups = NULL;

  g_ptr_array_add (self->strings, text);
  if (load_plain (self, text))
    return TRUE;

  kf = g_key_file_new ();
  if (!g_key_file_load_from_data (kf, contents, len, G_KEY_FILE_NONE, error))
    return FALSE;
  groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    {
      g_auto(GStrv) keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);
      Group *g = g_hash_table_lookup (self->groups, groups[i]);

      if (g == NULL)
        g = ensure_group (self, keep (self, groups[i]));
      for (guint j = 0; keys && keys[j]; j++)
        {
          g_autofree char *raw = g_key_file_get_value (kf, groups[i], keys[j], NULL);
          Pair *pair = find_pair (g, keys[j]);

          set_pair (g, pair ? pair->key : keep (self, keys[j]), keep (self, raw));
        }
    }
  return TRUE;
}

/**
 * bf_key_file_get_groups:
 *
 * Returns: (transfer none): the groups' names, in order, NULL-terminated;
 *   valid until @self changes
 */
const char * const *
bf_key_file_get_groups (BfKeyFile *self)
{
  static const char * const none[] = { NULL };

  /* A null-terminated GPtrArray has no array before its first element. */
  return self->names->pdata ? (const char * const *) self->names->pdata : none;
}

/**
 * bf_key_file_get_keys:
 *
 * Returns: (transfer full) (nullable): the keys of @group in order, or
 *   %NULL if there is no such group
 */
GStrv
bf_key_file_get_keys (BfKeyFile  *self,
                      const char *group)
{
  Group *g = g_hash_table_lookup (self->groups, group);
  GStrv keys;

  if (g == NULL)
    return NULL;
  keys = g_new (char *, g->n_pairs + 1);
  for (guint i = 0; i < g->n_pairs; i++)
    keys[i] = g_strdup (g->pairs[i].key);
  keys[g->n_pairs] = NULL;
  return keys;
}

static Pair *
lookup (BfKeyFile  *self,
        const char *group,
        const char *key)
{
  Group *g = g_hash_table_lookup (self->groups, group);

  return g ? find_pair (g, key) : NULL;
}

gboolean
bf_key_file_has_key (BfKeyFile  *self,
                     const char *group,
                     const char *key)
{
  return lookup (self, group, key) != NULL;
}

/**
 * bf_key_file_get_value:
 *
 * Returns: (transfer none) (nullable): the raw value, %NULL if not set
 */
const char *
bf_key_file_get_value (BfKeyFile  *self,
                       const char *group,
                       const char *key)
{
  Pair *pair = lookup (self, group, key);

  return pair ? pair->value : NULL;
}

/**
 * bf_key_file_get_string:
 *
 * Returns: (transfer full) (nullable): the value with its escapes decoded
 *   as g_key_file_get_string() does; %NULL if not set or not decodable
 */
char *
bf_key_file_get_string (BfKeyFile  *self,
                        const char *group,
                        const char *key)
{
  const char *raw = bf_key_file_get_value (self, group, key);
  g_autoptr(GKeyFile) kf = NULL;

  if (raw == NULL)
    return NULL;
  if (strchr (raw, '\\') == NULL)
    return g_strdup (raw);
  kf = g_key_file_new ();
  g_key_file_set_value (kf, "g", "k", raw);
  return g_key_file_get_string (kf, "g", "k", NULL);
}
