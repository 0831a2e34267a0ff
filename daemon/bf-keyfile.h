/* bf-keyfile.h: the groups, keys and values of key files, merged
 *
 * What bf-config.c needs of a GKeyFile, for a fleet of 50,000 workers:
 * GKeyFile keeps a hash table per group, a list node, a pair and two
 * copies per key (32 MB for 50,000 workers of three keys, 16 % of the
 * start-up's CPU to build and free).  Here a file's text is kept once,
 * each group is an array of (key, value) pointers into it.
 *
 * Contract:
 * - bf_key_file_load() reads like GKeyFile does, into what is there
 *   already: a group that exists takes the new keys, a key that exists
 *   takes the new value in place, new groups and keys go at the end, in
 *   file order (as setting each value in turn on one GKeyFile would).  The
 *   common lines (`[Group]`, `Key=value` with a key of letters, digits and
 *   `-_.`, comments, blank lines) are read here; a file with any other line
 *   (locale keys, Encoding=, CR, a syntax error...) is read by GKeyFile and
 *   copied, so every error is GKeyFile's own.  A key twice in a group keeps
 *   the last value (GKeyFile's lookup), listed once.
 * - Values are raw (escapes not decoded) but for bf_key_file_get_string(),
 *   which decodes them exactly as g_key_file_get_string() does.
 * - Groups and keys are listed in the order they first appeared.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _BfKeyFile BfKeyFile;

BfKeyFile           *bf_key_file_new        (void);
void                 bf_key_file_free       (BfKeyFile   *self);
gboolean             bf_key_file_load       (BfKeyFile   *self,
                                             const char  *contents,
                                             gsize        len,
                                             GError     **error);
const char * const  *bf_key_file_get_groups (BfKeyFile   *self);
GStrv                bf_key_file_get_keys   (BfKeyFile   *self,
                                             const char  *group);
gboolean             bf_key_file_has_key    (BfKeyFile   *self,
                                             const char  *group,
                                             const char  *key);
const char          *bf_key_file_get_value  (BfKeyFile   *self,
                                             const char  *group,
                                             const char  *key);
char                *bf_key_file_get_string (BfKeyFile   *self,
                                             const char  *group,
                                             const char  *key);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfKeyFile, bf_key_file_free)

G_END_DECLS
