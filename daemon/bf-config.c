/* bf-config.c: the fleet configuration, parsed from a key file and drop-ins
 *
 * Pure: reads files, nothing else.  Every error names the file, the line,
 * the group and the key, and says what is wrong in words a user can act on.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf-config.h"
#include "bf-keyfile.h"
#include "bf-unit-name.h"

#define MAX_FILE_SIZE (16 * 1024 * 1024)
#define MAX_PASSWORD_LEN 1024
#define MAX_PASSWORD_FILE_SIZE 4096
#define MAX_DURATION_SEC (10.0 * 365 * 24 * 3600)
/* Buildbot's customary port goes to PB, which nearly every deployed worker
 * speaks; msgpack workers are created for buildfleetd and take the next. */
#define DEFAULT_LISTEN "*:9990"
#define DEFAULT_LISTEN_PB "*:9989"
#define DEFAULT_STATE_DIRECTORY "/var/lib/buildfleet"

typedef struct {
  GPtrArray *files;        /* char*, main first */
  GPtrArray *contents;     /* char*, each file's text, for error positions */
  BfKeyFile *merged;       /* every file's groups and keys, later files over earlier */
  GChecksum *digest;       /* of every byte read, see bf_config_load_full() */
  const char *group;       /* the group being parsed and ... */
  GStrv keys;              /* ... its keys: absent keys are not looked up */
} Parser;

static void
parser_clear (Parser *p)
{
  g_clear_pointer (&p->files, g_ptr_array_unref);
  g_clear_pointer (&p->contents, g_ptr_array_unref);
  g_clear_pointer (&p->merged, bf_key_file_free);
  g_clear_pointer (&p->digest, g_checksum_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Parser, parser_clear)

/* Calls @func for every non-blank line of @text: 1-based number, the
 * line stripped of surrounding white space (in a scratch buffer). */
static gboolean
foreach_line (const char *text,
              gboolean  (*func) (guint line, char *stripped, gpointer data),
              gpointer    data)
{
  g_autoptr(GString) scratch = g_string_new (NULL);
  guint n = 0;

  for (const char *start = text; *start; )
    {
      const char *end = strchr (start, '\n');
      gsize len = end ? (gsize) (end - start) : strlen (start);

      n++;
      g_string_truncate (scratch, 0);
      g_string_append_len (scratch, start, len);
      g_strstrip (scratch->str);
      if (scratch->str[0] != '\0' && !func (n, scratch->str, data))
        return FALSE;
      if (end == NULL)
        break;
      start = end + 1;
    }
  return TRUE;
}

typedef struct {
  const char *group;
  const char *key;
  char *current;
  guint found;
} FindData;

static gboolean
find_line (guint    line,
           char    *text,
           gpointer data)
{
  FindData *d = data;

  if (*text == '#')
    return TRUE;
  if (*text == '[')
    {
      char *close = strrchr (text, ']');
      g_free (d->current);
      d->current = close ? g_strndup (text + 1, close - text - 1) : NULL;
      if (d->key == NULL && g_strcmp0 (d->current, d->group) == 0)
        d->found = line;
      return TRUE;
    }
  if (d->key != NULL && g_strcmp0 (d->current, d->group) == 0)
    {
      char *eq = strchr (text, '=');
      if (eq != NULL)
        {
          *eq = '\0';
          g_strchomp (text);
          if (g_str_equal (text, d->key))
            d->found = line;
        }
    }
  return TRUE;
}

/* Where @group (and @key) were last set, for an error message.  Only
 * errors pay for this: the files are searched again, last file first. */
static char *
parser_where (Parser     *p,
              const char *group,
              const char *key)
{
  for (int pass = key ? 0 : 1; pass < 2; pass++)
    for (guint i = p->files->len; i > 0; i--)
      {
        FindData d = { group, pass == 0 ? key : NULL, NULL, 0 };

        foreach_line (g_ptr_array_index (p->contents, i - 1), find_line, &d);
        g_free (d.current);
        if (d.found)
          return g_strdup_printf ("%s:%u", (char *) g_ptr_array_index (p->files, i - 1), d.found);
      }
  return g_strdup (g_ptr_array_index (p->files, 0));
}

static void G_GNUC_PRINTF (5, 6)
set_error (GError    **error,
           Parser     *p,
           const char *group,
           const char *key,
           const char *format,
           ...)
{
  g_autofree char *what = NULL;
  g_autofree char *where = parser_where (p, group, key);
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);

  if (key != NULL)
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "%s: [%s] %s: %s", where, group, key, what);
  else
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "%s: [%s]: %s", where, group, what);
}

gboolean
bf_worker_name_is_valid (const char *name)
{
  gsize len = 0;

  if (name == NULL || *name == '\0')
    return FALSE;
  for (const char *c = name; *c; c++, len++)
    {
      if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_' && *c != '.')
        return FALSE;
    }
  return len <= BF_WORKER_NAME_MAX;
}

gboolean
bf_config_parse_duration (const char  *text,
                          gboolean     allow_never,
                          gint64      *out_usec,
                          GError     **error)
{
  const char *end = NULL;
  double secs;

  g_assert (text != NULL);

  secs = g_ascii_strtod (text, (char **) &end);
  if (end == text || *end != '\0' || !isfinite (secs) || g_ascii_isspace (*text))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "“%s” is not a number of seconds", text);
      return FALSE;
    }
  if (allow_never && secs == -1)
    {
      *out_usec = -1;
      return TRUE;
    }
  if (secs < 0)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "%s seconds is negative%s", text,
                   allow_never ? " (only -1, meaning never, is allowed)" : "");
      return FALSE;
    }
  if (secs > MAX_DURATION_SEC)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "%s seconds is more than ten years", text);
      return FALSE;
    }
  *out_usec = (gint64) llround (secs * G_USEC_PER_SEC);
  return TRUE;
}

gboolean
bf_config_parse_endpoint (const char  *text,
                          char       **out_host,
                          guint16     *out_port,
                          GError     **error)
{
  g_autofree char *host = NULL;
  const char *colon;
  guint64 port;
  const char *end = NULL;

  if (text[0] == '[')
    {
      const char *close = strchr (text, ']');
      if (close == NULL || close[1] != ':')
        goto bad;
      host = g_strndup (text + 1, close - text - 1);
      colon = close + 1;
    }
  else
    {
      colon = strrchr (text, ':');
      if (colon == NULL)
        goto bad;
      host = g_strndup (text, colon - text);
      if (strchr (host, ':') != NULL)
        goto bad;
    }

  if (*host == '\0')
    goto bad;
  if (g_strcmp0 (host, "*") != 0 && !g_hostname_is_ip_address (host))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "“%s” is not an IP address (use an address such as 127.0.0.1 or [::1], or * for every address)",
                   host);
      return FALSE;
    }

  port = g_ascii_strtoull (colon + 1, (char **) &end, 10);
  if (end == colon + 1 || *end != '\0' || port > 65535)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "“%s” is not a port number (0 to 65535; 0 picks a free port)",
                   colon + 1);
      return FALSE;
    }

  if (out_host)
    *out_host = g_steal_pointer (&host);
  if (out_port)
    *out_port = (guint16) port;
  return TRUE;

bad:
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               "“%s” is not HOST:PORT (for example 127.0.0.1:9990, [::1]:9990 or *:9990)",
               text);
  return FALSE;
}

/* Removes a trailing “  # comment” (whitespace then '#'), so that lines
 * written like the examples in the documentation work. */
static void
strip_inline_comment (char *value)
{
  for (char *c = value; *c; c++)
    {
      if (*c == '#' && c > value && g_ascii_isspace (c[-1]))
        {
          *c = '\0';
          break;
        }
    }
  g_strchomp (value);
}

/* Reads one file, records where every group and key came from, rejects a
 * worker group that appears twice in the same file, and merges its values
 * into p->merged (a later file overrides the keys of an earlier one). */
typedef struct {
  const char *path;
  GHashTable *groups_here;   /* group -> first line */
  GError **error;
} DupData;

static gboolean
find_duplicate_group (guint    line,
                      char    *text,
                      gpointer data)
{
  DupData *d = data;
  char *close;

  if (*text != '[' || (close = strrchr (text, ']')) == NULL)
    return TRUE;   /* bf_key_file_load() reports syntax errors */
  *close = '\0';
  if (g_hash_table_contains (d->groups_here, text + 1))
    {
      g_set_error (d->error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                   "%s:%u: [%s]: defined twice in this file (first at line %u)",
                   d->path, line, text + 1,
                   GPOINTER_TO_UINT (g_hash_table_lookup (d->groups_here, text + 1)));
      return FALSE;
    }
  g_hash_table_insert (d->groups_here, g_strdup (text + 1), GUINT_TO_POINTER (line));
  return TRUE;
}

static gboolean
parser_add_contents (Parser      *p,
                     const char  *path,
                     const char  *contents,
                     gsize        len,
                     GError     **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GHashTable) groups_here = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  if (len > MAX_FILE_SIZE)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                   "%s: the file is larger than %d MiB", path, MAX_FILE_SIZE / 1024 / 1024);
      return FALSE;
    }
  if (!g_utf8_validate_len (contents, len, NULL))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                   "%s: the file is not valid UTF-8 text", path);
      return FALSE;
    }

  g_ptr_array_add (p->files, g_strdup (path));
  g_ptr_array_add (p->contents, g_strndup (contents, len));

  /* A group twice in one file would be merged silently (as GKeyFile does). */
  {
    DupData d = { path, groups_here, error };
    if (!foreach_line (contents, find_duplicate_group, &d))
      return FALSE;
  }

  /* A drop-in's keys override those of the files before it. */
  if (!bf_key_file_load (p->merged, contents, len, &local_error))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                   "%s: %s", path, local_error->message);
      return FALSE;
    }
  return TRUE;
}

static const char *
file_kind (mode_t mode)
{
  if (S_ISFIFO (mode))
    return "a FIFO";
  if (S_ISCHR (mode))
    return "a character device";
  if (S_ISBLK (mode))
    return "a block device";
  if (S_ISDIR (mode))
    return "a directory";
  if (S_ISSOCK (mode))
    return "a socket";
  return "not a plain file";
}

/* Reads @path if it is a regular file of at most @max_size bytes.  A FIFO
 * or a device is refused, never waited for or read without end: opened
 * non-blocking, checked with fstat, read with a bound.  The message of
 * @error does not name the file; the caller does. */
static gboolean
read_regular_file (const char  *path,
                   gsize        max_size,
                   char       **out,
                   gsize       *out_len,
                   GError     **error)
{
  g_autofree char *buf = NULL;
  struct stat st;
  gsize len = 0, size;
  int fd, saved;

  fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    goto fail;
  if (fstat (fd, &st) != 0)
    goto fail;
  if (!S_ISREG (st.st_mode))
    {
      close (fd);
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "not a regular file (%s)", file_kind (st.st_mode));
      return FALSE;
    }
  /* The size may change under us: read at most one byte past the bound. */
  size = MIN ((gsize) st.st_size, max_size) + 1;
  buf = g_malloc (size + 1);
  for (;;)
    {
      gssize n = read (fd, buf + len, size - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        goto fail;
      if (n == 0)
        break;
      len += n;
      if (len > max_size)
        {
          close (fd);
          explicit_bzero (buf, len);
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "the file is larger than %zu bytes", max_size);
          return FALSE;
        }
      if (len == size)
        {
          size = MIN (size * 2, max_size + 1);
          buf = g_realloc (buf, size + 1);
        }
    }
  close (fd);
  buf[len] = '\0';
  *out = g_steal_pointer (&buf);
  *out_len = len;
  return TRUE;

fail:
  saved = errno;
  if (fd >= 0)
    close (fd);
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "%s", g_strerror (saved));
  return FALSE;
}

static void
parser_digest (Parser     *p,
               const char *path,
               const char *contents,
               gsize       len)
{
  guint64 n = len;

  g_checksum_update (p->digest, (const guchar *) path, strlen (path) + 1);
  g_checksum_update (p->digest, (const guchar *) &n, sizeof n);
  g_checksum_update (p->digest, (const guchar *) contents, len);
}

static gboolean
parser_add_file (Parser      *p,
                 const char  *path,
                 GError     **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize len = 0;

  if (!read_regular_file (path, MAX_FILE_SIZE, &contents, &len, &local_error))
    {
      parser_digest (p, path, local_error->message, strlen (local_error->message));
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_NOT_FOUND,
                   "%s: cannot read the configuration: %s", path, local_error->message);
      return FALSE;
    }
  parser_digest (p, path, contents, len);
  return parser_add_contents (p, path, contents, len, error);
}

static gint
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static gboolean
parser_add_dropins (Parser      *p,
                    const char  *path,
                    GError     **error)
{
  g_autofree char *dirname = g_strconcat (path, ".d", NULL);
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) local_error = NULL;
  const char *name;

  dir = g_dir_open (dirname, 0, &local_error);
  if (dir == NULL)
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT) ||
          g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR))
        return TRUE;
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_NOT_FOUND,
                   "%s: cannot read the drop-in directory: %s", dirname, local_error->message);
      return FALSE;
    }

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (g_str_has_suffix (name, ".conf") && name[0] != '.')
        g_ptr_array_add (names, g_strdup (name));
    }
  g_ptr_array_sort (names, compare_strings);

  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *file = g_build_filename (dirname, g_ptr_array_index (names, i), NULL);
      if (!parser_add_file (p, file, error))
        return FALSE;
    }
  return TRUE;
}

/* Returns the unescaped value with any inline comment removed, or NULL if
 * the key is not set. */
static char *
get_string (Parser     *p,
            const char *group,
            const char *key,
            gboolean    keep_comment)
{
  char *value;

  /* Most keys of most workers are absent; with 10,000 workers the failed
   * lookups were a good part of the start-up time. */
  if (p->keys != NULL && p->group == group && !g_strv_contains ((const char * const *) p->keys, key))
    return NULL;
  value = bf_key_file_get_string (p->merged, group, key);

  if (value != NULL && !keep_comment)
    strip_inline_comment (value);
  else if (value != NULL)
    g_strstrip (value);
  return value;
}

static GStrv
get_list (Parser     *p,
          const char *group,
          const char *key)
{
  g_autofree char *value = get_string (p, group, key, FALSE);
  g_auto(GStrv) parts = NULL;
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  if (value == NULL)
    return NULL;
  parts = g_strsplit (value, ";", -1);
  for (guint i = 0; parts[i]; i++)
    {
      g_strstrip (parts[i]);
      if (*parts[i] != '\0')
        g_strv_builder_add (builder, parts[i]);
    }
  return g_strv_builder_end (builder);
}

static gboolean
get_duration (Parser      *p,
              const char  *group,
              const char  *key,
              gboolean     allow_never,
              gint64       default_usec,
              gint64      *out,
              GError     **error)
{
  g_autofree char *value = get_string (p, group, key, FALSE);
  g_autoptr(GError) local_error = NULL;

  if (value == NULL)
    {
      *out = default_usec;
      return TRUE;
    }
  if (!bf_config_parse_duration (value, allow_never, out, &local_error))
    {
      set_error (error, p, group, key, "%s", local_error->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_uint (Parser      *p,
          const char  *group,
          const char  *key,
          guint64      default_value,
          guint64      max,
          guint64     *out,
          GError     **error)
{
  g_autofree char *value = get_string (p, group, key, FALSE);
  const char *end = NULL;
  guint64 v;

  if (value == NULL)
    {
      *out = default_value;
      return TRUE;
    }
  v = g_ascii_strtoull (value, (char **) &end, 10);
  if (*value == '\0' || !g_ascii_isdigit (*value) || *end != '\0')
    {
      set_error (error, p, group, key, "“%s” is not a whole number", value);
      return FALSE;
    }
  if (v > max)
    {
      set_error (error, p, group, key, "%s is too large (at most %" G_GUINT64_FORMAT ")", value, max);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

static gboolean
get_bool (Parser      *p,
          const char  *group,
          const char  *key,
          gboolean     default_value,
          gboolean    *out,
          GError     **error)
{
  g_autofree char *value = get_string (p, group, key, FALSE);

  if (value == NULL)
    *out = default_value;
  else if (g_str_equal (value, "true") || g_str_equal (value, "yes") || g_str_equal (value, "1"))
    *out = TRUE;
  else if (g_str_equal (value, "false") || g_str_equal (value, "no") || g_str_equal (value, "0"))
    *out = FALSE;
  else
    {
      set_error (error, p, group, key, "“%s” is not a boolean (true or false)", value);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_keys (Parser             *p,
            const char         *group,
            const char * const *known,
            const char * const *more_known,
            const char         *prefix,
            GError            **error)
{
  g_auto(GStrv) keys = bf_key_file_get_keys (p->merged, group);

  for (guint i = 0; keys && keys[i]; i++)
    {
      if (g_strv_contains (known, keys[i]) || (more_known && g_strv_contains (more_known, keys[i])))
        continue;
      if (prefix && g_str_has_prefix (keys[i], prefix) && keys[i][strlen (prefix)] != '\0')
        continue;
      set_error (error, p, group, keys[i], "unknown key");
      return FALSE;
    }
  return TRUE;
}

/* Whether two endpoints can take the same connections: the same port (not
 * 0, which picks a free one) and the same address, or a wildcard. */
static gboolean
is_wildcard_host (const char *host)
{
  return g_str_equal (host, "*") || g_str_equal (host, "0.0.0.0") || g_str_equal (host, "::");
}

static gboolean
endpoints_overlap (const char *a,
                   const char *b)
{
  g_autofree char *host_a = NULL;
  g_autofree char *host_b = NULL;
  guint16 port_a = 0, port_b = 0;

  if (!bf_config_parse_endpoint (a, &host_a, &port_a, NULL) ||
      !bf_config_parse_endpoint (b, &host_b, &port_b, NULL))
    return FALSE;
  if (port_a == 0 || port_a != port_b)
    return FALSE;
  return is_wildcard_host (host_a) || is_wildcard_host (host_b) || g_str_equal (host_a, host_b);
}

/* ListenPB=: absent is the default *:9989, unless a Listen= endpoint took
 * that port (then no PB endpoint, and a warning at start); empty is no PB
 * endpoint; an explicit overlap with Listen= is an error naming both. */
static gboolean
parse_listen_pb (Parser      *p,
                 const char  *g,
                 BfConfig    *c,
                 GError     **error)
{
  gboolean explicit_listen = bf_key_file_has_key (p->merged, g, "Listen");

  c->listen_pb = get_list (p, g, "ListenPB");
  if (c->listen_pb == NULL)
    {
      c->listen_pb_default = TRUE;
      c->listen_pb = g_strsplit (DEFAULT_LISTEN_PB, ";", -1);
      for (guint i = 0; c->listen[i]; i++)
        if (endpoints_overlap (c->listen[i], DEFAULT_LISTEN_PB))
          {
            c->listen_pb_skipped = g_strdup (c->listen[i]);
            g_strfreev (c->listen_pb);
            c->listen_pb = g_new0 (char *, 1);
            return TRUE;
          }
      return TRUE;
    }
  for (guint i = 0; c->listen_pb[i]; i++)
    {
      g_autoptr(GError) local_error = NULL;

      if (!bf_config_parse_endpoint (c->listen_pb[i], NULL, NULL, &local_error))
        {
          set_error (error, p, g, "ListenPB", "%s", local_error->message);
          return FALSE;
        }
      for (guint j = 0; c->listen[j]; j++)
        if (endpoints_overlap (c->listen_pb[i], c->listen[j]))
          {
            set_error (error, p, g, "ListenPB",
                       "%s overlaps %s%s: the msgpack (Listen=) and PB (ListenPB=) endpoints "
                       "need different ports", c->listen_pb[i], c->listen[j],
                       explicit_listen ? " of Listen=" : ", the default of Listen=");
            return FALSE;
          }
    }
  return TRUE;
}

static const char * const daemon_keys[] = {
  "Listen", "ListenPB", "TlsCertificate", "TlsPrivateKey", "KeepaliveInterval",
  "DuplicatePingTimeout", "StateDirectory", "MailCommand", "MailFrom",
  "MaxMessageSize", "QuarantineInitial", "QuarantineMax", "FinishedBuildLifetime",
  "MailTimeout", "MailDigestInterval", "MaxBusMessageSize", NULL
};

static const char * const worker_keys[] = {
  "Password", "PasswordFile", "MaxBuilds", "Builders", "Labels", "MissingTimeout",
  "FlapThreshold", "FlapWindow", "FlapRecovery",
  "HealthInterval", "MinFreeDisk", "MaxResponseTime", "HealthCommand",
  "NotifyOnMissing", "Latent", "StartCommand", "StopCommand", "Unit",
  "BuildWaitTimeout", "SubstantiationTimeout", "KeepOnShutdown", "Protocol",
  "Image", "DockerHost", "Volumes", "Network", "Ulimits", "Command", "Pull", "Memory",
  "CPUs", "AutoRemove", NULL
};

static const char * const latent_only_keys[] = {
  "StartCommand", "StopCommand", "Unit", "BuildWaitTimeout",
  "SubstantiationTimeout", "KeepOnShutdown", "Protocol",
  "Image", "DockerHost", "Volumes", "Network", "Ulimits", "Command", "Pull", "Memory",
  "CPUs", "AutoRemove", NULL
};

/* Keys only Latent=docker reads (parse_docker_keys()). */
static const char * const docker_only_keys[] = {
  "Image", "DockerHost", "Volumes", "Network", "Ulimits", "Command", "Pull", "Memory",
  "CPUs", "AutoRemove", NULL
};

static const char * const pool_keys[] = {
  "Workers", "Count", "MinIdle", "MaxInstances", "MaxBuildsPerInstance", NULL
};

static void
worker_config_clear (BfWorkerConfig *wc)
{
  g_free (wc->name);
  g_free (wc->pool);
  if (wc->password)
    {
      explicit_bzero (wc->password, strlen (wc->password));
      g_free (wc->password);
    }
  g_strfreev (wc->builders);
  g_strfreev (wc->labels);
  g_free (wc->health_command);
  g_strfreev (wc->notify_on_missing);
  g_clear_pointer (&wc->properties, g_variant_unref);
  g_free (wc->start_command);
  g_free (wc->stop_command);
  g_free (wc->unit);
  g_free (wc->image);
  g_free (wc->docker_host);
  g_strfreev (wc->volumes);
  g_free (wc->network);
  g_strfreev (wc->ulimits);
  g_strfreev (wc->command);
}

BfWorkerConfig *
bf_worker_config_ref (BfWorkerConfig *wc)
{
  return g_rc_box_acquire (wc);
}

void
bf_worker_config_unref (BfWorkerConfig *wc)
{
  g_rc_box_release_full (wc, (GDestroyNotify) worker_config_clear);
}

/* MinFreeDisk=: "5%", "2G", "500M", "1048576" (bytes). */
static gboolean
parse_free_disk (const char *text,
                 guint64    *out_bytes,
                 double     *out_percent)
{
  char *end = NULL;
  double v;

  *out_bytes = 0;
  *out_percent = 0;
  if (!g_ascii_isdigit (*text))
    return FALSE;
  v = g_ascii_strtod (text, &end);
  if (end == text || !(v >= 0))
    return FALSE;
  if (g_str_equal (end, "%"))
    {
      if (v > 100)
        return FALSE;
      *out_percent = v;
      return TRUE;
    }
  switch (g_ascii_toupper (*end))
    {
    case 'T': v *= 1024.0;  /* fall through */
    case 'G': v *= 1024.0;  /* fall through */
    case 'M': v *= 1024.0;  /* fall through */
    case 'K': v *= 1024.0; end++; break;
    case '\0': break;
    default: return FALSE;
    }
  if (*end == 'B' || *end == 'b')
    end++;
  if (*end != '\0' || v > 1e18)
    return FALSE;
  *out_bytes = (guint64) v;
  return TRUE;
}

/**
 * bf_label_is_valid:
 *
 * A label is 1 to BF_MAX_LABEL_BYTES bytes of UTF-8 without whitespace,
 * control characters, “;” or “,” (for example “gpu”, “os=debian”).
 */
gboolean
bf_label_is_valid (const char *label)
{
  gsize len = strlen (label);

  if (len == 0 || len > BF_MAX_LABEL_BYTES || !g_utf8_validate (label, len, NULL))
    return FALSE;
  for (const char *c = label; *c; c = g_utf8_next_char (c))
    {
      gunichar u = g_utf8_get_char (c);
      if (g_unichar_isspace (u) || g_unichar_iscntrl (u) || u == ';' || u == ',')
        return FALSE;
    }
  return TRUE;
}

gboolean
bf_worker_config_serves (BfWorkerConfig *wc,
                         const char     *builder)
{
  return wc->builders != NULL && g_strv_contains ((const char * const *) wc->builders, builder);
}

const char *
bf_latent_kind_to_string (BfLatentKind kind)
{
  switch (kind)
    {
    case BF_LATENT_COMMAND: return "command";
    case BF_LATENT_LOCAL: return "local";
    case BF_LATENT_SYSTEMD: return "systemd";
    case BF_LATENT_DOCKER: return "docker";
    case BF_LATENT_NONE:
    default: return "";
    }
}

/**
 * bf_worker_protocol_to_string:
 *
 * Returns: "pb", "msgpack" (as the Worker's Protocol property says), or ""
 *   for %BF_WORKER_PROTOCOL_DEFAULT.
 */
const char *
bf_worker_protocol_to_string (BfWorkerProtocol protocol)
{
  switch (protocol)
    {
    case BF_WORKER_PROTOCOL_PB: return "pb";
    case BF_WORKER_PROTOCOL_MSGPACK: return "msgpack";
    case BF_WORKER_PROTOCOL_DEFAULT:
    default: return "";
    }
}

static gboolean
read_password_file (Parser      *p,
                    const char  *group,
                    const char  *path,
                    char       **out,
                    GError     **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize len = 0;
  char *nl;

  if (!g_path_is_absolute (path))
    {
      set_error (error, p, group, "PasswordFile", "“%s” is not an absolute path", path);
      return FALSE;
    }
  if (!read_regular_file (path, MAX_PASSWORD_FILE_SIZE, &contents, &len, &local_error))
    {
      parser_digest (p, path, local_error->message, strlen (local_error->message));
      set_error (error, p, group, "PasswordFile", "cannot read the password file %s: %s",
                 path, local_error->message);
      return FALSE;
    }
  /* Only through SHA-256: the digest never shows the password. */
  parser_digest (p, path, contents, len);
  nl = strpbrk (contents, "\r\n");
  if (nl)
    *nl = '\0';
  if (*contents == '\0')
    {
      set_error (error, p, group, "PasswordFile", "the first line of %s is empty", path);
      explicit_bzero (contents, len);
      return FALSE;
    }
  *out = g_strdup (contents);
  explicit_bzero (contents, len);
  return TRUE;
}

/* Latent=: which driver, and no latent-only key on a worker without one. */
static gboolean
parse_latent_kind (Parser             *p,
                   const char         *group,
                   const char * const *keys,
                   BfWorkerConfig     *wc,
                   GError            **error)
{
  g_autofree char *latent = get_string (p, group, "Latent", FALSE);

  if (latent == NULL || *latent == '\0' || g_str_equal (latent, "none"))
    wc->latent = BF_LATENT_NONE;
  else if (g_str_equal (latent, "command"))
    wc->latent = BF_LATENT_COMMAND;
  else if (g_str_equal (latent, "local"))
    wc->latent = BF_LATENT_LOCAL;
  else if (g_str_equal (latent, "systemd"))
    wc->latent = BF_LATENT_SYSTEMD;
  else if (g_str_equal (latent, "docker"))
    wc->latent = BF_LATENT_DOCKER;
  else
    {
      set_error (error, p, group, "Latent", "unknown latent driver “%s” (use command, local, systemd or docker)", latent);
      return FALSE;
    }

  if (wc->latent == BF_LATENT_NONE)
    {
      for (guint i = 0; latent_only_keys[i]; i++)
        {
          if (keys && g_strv_contains (keys, latent_only_keys[i]))
            {
              set_error (error, p, group, latent_only_keys[i],
                         "only latent workers have this key (set Latent=command, local, systemd or docker)");
              return FALSE;
            }
        }
    }
  return TRUE;
}

/* Password= or PasswordFile=, exactly one; "generate" for latent workers. */
static gboolean
parse_password (Parser          *p,
                const char      *group,
                BfWorkerConfig  *wc,
                GError         **error)
{
  /* Passwords keep '#' characters: no inline comments there. */
  g_autofree char *password = get_string (p, group, "Password", TRUE);
  g_autofree char *password_file = get_string (p, group, "PasswordFile", FALSE);

  if (password && password_file)
    {
      set_error (error, p, group, "PasswordFile", "set either Password or PasswordFile, not both");
      return FALSE;
    }
  if (password_file)
    return read_password_file (p, group, password_file, &wc->password, error);
  if (password && g_str_equal (password, "generate"))
    {
      if (wc->latent == BF_LATENT_NONE)
        {
          set_error (error, p, group, "Password",
                     "“generate” is only for latent workers, whose instance receives the password");
          return FALSE;
        }
      wc->password_generate = TRUE;
      return TRUE;
    }
  if (password && *password != '\0')
    {
      if (strlen (password) > MAX_PASSWORD_LEN)
        {
          set_error (error, p, group, "Password", "longer than %d bytes", MAX_PASSWORD_LEN);
          return FALSE;
        }
      wc->password = g_steal_pointer (&password);
      return TRUE;
    }
  set_error (error, p, group, password ? "Password" : NULL,
             "missing password: set Password= or PasswordFile=");
  return FALSE;
}

/* MaxBuilds=, Builders= and Labels=: what builds the worker takes. */
static gboolean
parse_capacity (Parser          *p,
                const char      *group,
                BfWorkerConfig  *wc,
                GError         **error)
{
  guint64 max_builds = 0;

  if (!get_uint (p, group, "MaxBuilds", 0, G_MAXINT32, &max_builds, error))
    return FALSE;
  wc->max_builds = (guint) max_builds;

  wc->builders = get_list (p, group, "Builders");
  if (wc->builders == NULL)
    wc->builders = g_new0 (char *, 1);

  wc->labels = get_list (p, group, "Labels");
  if (wc->labels == NULL)
    wc->labels = g_new0 (char *, 1);
  if (g_strv_length (wc->labels) > BF_MAX_LABELS)
    {
      set_error (error, p, group, "Labels", "more than %d labels", BF_MAX_LABELS);
      return FALSE;
    }
  for (guint i = 0; wc->labels[i]; i++)
    if (!bf_label_is_valid (wc->labels[i]))
      {
        set_error (error, p, group, "Labels",
                   "“%s” is not a label (1 to %d bytes of text without spaces, “;” or “,”)",
                   wc->labels[i], BF_MAX_LABEL_BYTES);
        return FALSE;
      }
  return TRUE;
}

/* MissingTimeout=, flapping and health checks: when the worker is taken
 * for missing, flapping or unhealthy. */
static gboolean
parse_liveness (Parser          *p,
                const char      *group,
                BfWorkerConfig  *wc,
                GError         **error)
{
  gint64 missing = 0, flap_window = 0, flap_recovery = 0;
  gint64 health_interval = 0, max_response = 0;
  guint64 flap_threshold = 0;
  g_autofree char *free_disk = NULL;

  if (!get_duration (p, group, "MissingTimeout", FALSE, 600 * G_USEC_PER_SEC, &missing, error))
    return FALSE;
  wc->missing_timeout_usec = (guint64) missing;

  if (!get_uint (p, group, "FlapThreshold", BF_DEFAULT_FLAP_THRESHOLD, BF_MAX_FLAP_THRESHOLD, &flap_threshold, error) ||
      !get_duration (p, group, "FlapWindow", FALSE, 600 * G_USEC_PER_SEC, &flap_window, error) ||
      !get_duration (p, group, "FlapRecovery", FALSE, 300 * G_USEC_PER_SEC, &flap_recovery, error))
    return FALSE;
  wc->flap_threshold = (guint) flap_threshold;
  wc->flap_window_usec = (guint64) flap_window;
  wc->flap_recovery_usec = (guint64) flap_recovery;

  if (!get_duration (p, group, "HealthInterval", FALSE, 0, &health_interval, error) ||
      !get_duration (p, group, "MaxResponseTime", FALSE, 0, &max_response, error))
    return FALSE;
  wc->health_interval_usec = (guint64) health_interval;
  wc->max_response_time_usec = (guint64) max_response;
  free_disk = get_string (p, group, "MinFreeDisk", FALSE);
  if (free_disk != NULL && !parse_free_disk (free_disk, &wc->min_free_disk_bytes, &wc->min_free_disk_percent))
    {
      set_error (error, p, group, "MinFreeDisk",
                 "“%s” is neither a size (bytes, or with K, M, G, T) nor a percentage (“5%%”)", free_disk);
      return FALSE;
    }
  wc->health_command = get_string (p, group, "HealthCommand", FALSE);
  if (wc->health_command != NULL && *wc->health_command == '\0')
    g_clear_pointer (&wc->health_command, g_free);
  return TRUE;
}

/* NotifyOnMissing=: addresses that go to MailCommand's argument list, so
 * nothing that could pass for an option or a second address. */
static gboolean
parse_mail (Parser          *p,
            const char      *group,
            BfWorkerConfig  *wc,
            GError         **error)
{
  wc->notify_on_missing = get_list (p, group, "NotifyOnMissing");
  if (wc->notify_on_missing == NULL)
    wc->notify_on_missing = g_new0 (char *, 1);
  for (guint i = 0; wc->notify_on_missing[i]; i++)
    {
      const char *addr = wc->notify_on_missing[i];
      const char *at = strchr (addr, '@');
      if (at == NULL || at == addr || at[1] == '\0' || strpbrk (addr, " \t,<>\"'\\") != NULL || addr[0] == '-')
        {
          set_error (error, p, group, "NotifyOnMissing", "“%s” is not a mail address", addr);
          return FALSE;
        }
    }
  return TRUE;
}

/* Property.KEY=VALUE, any number: an a{sv} of strings. */
static GVariant *
parse_properties (Parser             *p,
                  const char         *group,
                  const char * const *keys)
{
  g_autoptr(GVariantBuilder) props = g_variant_builder_new (G_VARIANT_TYPE_VARDICT);

  for (guint i = 0; keys && keys[i]; i++)
    {
      if (g_str_has_prefix (keys[i], "Property."))
        {
          g_autofree char *value = get_string (p, group, keys[i], FALSE);
          g_variant_builder_add (props, "{sv}", keys[i] + strlen ("Property."),
                                 g_variant_new_string (value));
        }
    }
  return g_variant_ref_sink (g_variant_builder_end (props));
}

/* The keys of a latent worker (wc->latent is set): protocol, driver keys,
 * timeouts. */
static gboolean
parse_latent_keys (Parser          *p,
                   const char      *group,
                   BfWorkerConfig  *wc,
                   GError         **error)
{
  g_autofree char *protocol = get_string (p, group, "Protocol", FALSE);
  g_autofree char *why = NULL;
  gint64 wait = 0, subst = 0;

  if (protocol == NULL || *protocol == '\0')
    wc->protocol = BF_WORKER_PROTOCOL_DEFAULT;
  else if (g_str_equal (protocol, "pb"))
    wc->protocol = BF_WORKER_PROTOCOL_PB;
  else if (g_str_equal (protocol, "msgpack"))
    wc->protocol = BF_WORKER_PROTOCOL_MSGPACK;
  else
    {
      set_error (error, p, group, "Protocol",
                 "unknown protocol “%s” (use pb, Buildbot's Perspective Broker, or msgpack)",
                 protocol);
      return FALSE;
    }
  wc->start_command = get_string (p, group, "StartCommand", FALSE);
  wc->stop_command = get_string (p, group, "StopCommand", FALSE);
  wc->unit = get_string (p, group, "Unit", FALSE);
  if (wc->latent == BF_LATENT_COMMAND && (wc->start_command == NULL || *wc->start_command == '\0'))
    {
      set_error (error, p, group, NULL, "Latent=command needs StartCommand=");
      return FALSE;
    }
  if (wc->latent != BF_LATENT_COMMAND && (wc->start_command || wc->stop_command))
    {
      set_error (error, p, group, wc->start_command ? "StartCommand" : "StopCommand",
                 "only Latent=command runs commands");
      return FALSE;
    }
  if (wc->latent != BF_LATENT_SYSTEMD && wc->unit)
    {
      set_error (error, p, group, "Unit", "only Latent=systemd starts a unit");
      return FALSE;
    }
  if (wc->latent == BF_LATENT_SYSTEMD && wc->password_generate)
    {
      set_error (error, p, group, "Password",
                 "“generate” does not work with Latent=systemd: the unit cannot be given the password");
      return FALSE;
    }
  if (wc->latent == BF_LATENT_SYSTEMD && wc->unit == NULL)
    wc->unit = g_strdup ("buildbot-worker@%n.service");
  if (wc->latent == BF_LATENT_SYSTEMD && !bf_unit_template_is_valid (wc->unit, wc->name, &why))
    {
      set_error (error, p, group, "Unit", "%s", why);
      return FALSE;
    }

  if (!get_duration (p, group, "BuildWaitTimeout", TRUE, 600 * G_USEC_PER_SEC, &wait, error))
    return FALSE;
  wc->build_wait_timeout_usec = wait;
  if (!get_duration (p, group, "SubstantiationTimeout", FALSE, (gint64) wc->missing_timeout_usec, &subst, error))
    return FALSE;
  if (subst == 0)
    subst = 1200 * G_USEC_PER_SEC;
  wc->substantiation_timeout_usec = (guint64) subst;
  return get_bool (p, group, "KeepOnShutdown", FALSE, &wc->keep_on_shutdown, error);
}

/**
 * bf_config_parse_ulimit:
 * @text: "NAME=SOFT:HARD" (or "NAME=LIMIT" for both), as Docker's --ulimit:
 *   NAME is letters (nofile, nproc, core, ...), the limits whole numbers,
 *   -1 for unlimited, SOFT at most HARD
 *
 * Returns: whether @text is such a limit; the parts in the out arguments.
 */
gboolean
bf_config_parse_ulimit (const char  *text,
                        char       **out_name,
                        gint64      *out_soft,
                        gint64      *out_hard)
{
  const char *eq = strchr (text, '=');
  g_auto(GStrv) limits = NULL;
  gint64 v[2];

  if (eq == NULL || eq == text || eq - text > 32)
    return FALSE;
  for (const char *c = text; c < eq; c++)
    if (!g_ascii_isalpha (*c))
      return FALSE;
  limits = g_strsplit (eq + 1, ":", -1);
  if (g_strv_length (limits) < 1 || g_strv_length (limits) > 2)
    return FALSE;
  for (guint i = 0; i < 2; i++)
    {
      const char *l = limits[limits[1] ? i : 0];

      if (!g_str_equal (l, "-1") && !g_ascii_string_to_signed (l, 10, 0, G_MAXINT64, &v[i], NULL))
        return FALSE;
      if (g_str_equal (l, "-1"))
        v[i] = -1;
    }
  if (v[1] != -1 && (v[0] == -1 || v[0] > v[1]))
    return FALSE;
  if (out_name)
    *out_name = g_strndup (text, eq - text);
  if (out_soft)
    *out_soft = v[0];
  if (out_hard)
    *out_hard = v[1];
  return TRUE;
}

/* Volumes=: SRC:DST[:ro|:rw], both absolute paths (or a named volume for
 * SRC: letters, digits, '_', '.', '-'). */
static gboolean
volume_is_valid (const char *text)
{
  g_auto(GStrv) parts = g_strsplit (text, ":", -1);
  guint n = g_strv_length (parts);

  if (n < 2 || n > 3 || *parts[0] == '\0' || !g_path_is_absolute (parts[1]))
    return FALSE;
  if (n == 3 && !g_str_equal (parts[2], "ro") && !g_str_equal (parts[2], "rw"))
    return FALSE;
  if (!g_path_is_absolute (parts[0]))
    for (const char *c = parts[0]; *c; c++)
      if (!g_ascii_isalnum (*c) && *c != '_' && *c != '.' && *c != '-')
        return FALSE;
  return TRUE;
}

/* Memory= and CPUs=: the container's resource limits. */
static gboolean
parse_docker_limits (Parser         *p,
                     const char     *group,
                     BfWorkerConfig *wc,
                     GError        **error)
{
  g_autofree char *memory = NULL;
  g_autofree char *cpus = NULL;
  double percent = 0;

  memory = get_string (p, group, "Memory", FALSE);
  if (memory != NULL && (!parse_free_disk (memory, &wc->memory_bytes, &percent) || percent != 0 ||
                         (wc->memory_bytes != 0 && wc->memory_bytes < 4 * 1024 * 1024)))
    {
      set_error (error, p, group, "Memory",
                 "“%s” is not a memory limit (bytes, or with K, M, G; at least 4M; 0 for none)", memory);
      return FALSE;
    }

  cpus = get_string (p, group, "CPUs", FALSE);
  if (cpus != NULL)
    {
      char *end = NULL;
      double v = g_ascii_strtod (cpus, &end);

      if (end == cpus || *end != '\0' || !(v >= 0) || v > 1024)
        {
          set_error (error, p, group, "CPUs", "“%s” is not a number of CPUs (such as 1.5; 0 for no limit)", cpus);
          return FALSE;
        }
      wc->nano_cpus = (guint64) (v * 1e9);
    }
  return TRUE;
}

/* The keys of Latent=docker; an error for any of them on another worker. */
static gboolean
parse_docker_keys (Parser         *p,
                   const char     *group,
                   BfWorkerConfig *wc,
                   GError        **error)
{
  g_autofree char *command = NULL;
  g_autoptr(GError) local_error = NULL;

  if (wc->latent != BF_LATENT_DOCKER)
    {
      for (guint i = 0; docker_only_keys[i]; i++)
        if (p->keys && g_strv_contains ((const char * const *) p->keys, docker_only_keys[i]))
          {
            set_error (error, p, group, docker_only_keys[i], "only Latent=docker has this key");
            return FALSE;
          }
      return TRUE;
    }

  wc->image = get_string (p, group, "Image", FALSE);
  if (wc->image == NULL || *wc->image == '\0')
    {
      set_error (error, p, group, NULL, "Latent=docker needs Image= (the container image to start)");
      return FALSE;
    }
  if (strpbrk (wc->image, " \t\n\"\\") != NULL)
    {
      set_error (error, p, group, "Image", "“%s” is not an image name", wc->image);
      return FALSE;
    }

  wc->docker_host = get_string (p, group, "DockerHost", FALSE);
  if (wc->docker_host == NULL || *wc->docker_host == '\0')
    {
      g_free (wc->docker_host);
      wc->docker_host = g_strdup ("unix:///var/run/docker.sock");
    }
  if (!g_str_has_prefix (wc->docker_host, "unix:///"))
    {
      set_error (error, p, group, "DockerHost",
                 "“%s” is not a unix socket: use unix:///PATH (the engine's API over TCP is not offered)",
                 wc->docker_host);
      return FALSE;
    }

  wc->volumes = get_list (p, group, "Volumes");
  for (guint i = 0; wc->volumes && wc->volumes[i]; i++)
    if (!volume_is_valid (wc->volumes[i]))
      {
        set_error (error, p, group, "Volumes",
                   "“%s” is not a volume: use SOURCE:DESTINATION or SOURCE:DESTINATION:ro, "
                   "absolute paths, several separated by “;”", wc->volumes[i]);
        return FALSE;
      }

  wc->network = get_string (p, group, "Network", FALSE);
  if (wc->network != NULL && *wc->network == '\0')
    g_clear_pointer (&wc->network, g_free);

  wc->ulimits = get_list (p, group, "Ulimits");
  for (guint i = 0; wc->ulimits && wc->ulimits[i]; i++)
    if (!bf_config_parse_ulimit (wc->ulimits[i], NULL, NULL, NULL))
      {
        set_error (error, p, group, "Ulimits",
                   "“%s” is not a limit: use NAME=SOFT:HARD (such as nofile=1024:20000), "
                   "several separated by “;”", wc->ulimits[i]);
        return FALSE;
      }

  /* Command= with nothing after it: the image's own command. */
  command = get_string (p, group, "Command", FALSE);
  if (command != NULL && *command == '\0')
    wc->command = g_new0 (char *, 1);
  else if (command != NULL &&
           !g_shell_parse_argv (command, NULL, &wc->command, &local_error))
    {
      set_error (error, p, group, "Command", "cannot be split into words: %s", local_error->message);
      return FALSE;
    }

  if (!parse_docker_limits (p, group, wc, error))
    return FALSE;

  return get_bool (p, group, "Pull", FALSE, &wc->pull, error) &&
         get_bool (p, group, "AutoRemove", FALSE, &wc->auto_remove, error);
}

/* One [Worker NAME] group; each concern has its own parse_*() above. */
static BfWorkerConfig *
parse_worker (Parser             *p,
              const char         *group,
              const char         *name,
              const char * const *more_keys,
              GError            **error)
{
  BfWorkerConfig *wc = g_rc_box_new0 (BfWorkerConfig);
  g_autoptr(BfWorkerConfig) owner = wc;
  g_auto(GStrv) keys = NULL;

  wc->name = g_strdup (name);
  keys = bf_key_file_get_keys (p->merged, group);
  p->group = group;
  p->keys = keys;

  if (!bf_worker_name_is_valid (name))
    {
      set_error (error, p, group, NULL,
                 "“%s” is not allowed as a worker name: use 1 to %d letters, digits, '-', '_' or '.'",
                 name, BF_WORKER_NAME_MAX);
      return NULL;
    }
  if (!check_keys (p, group, worker_keys, more_keys, "Property.", error))
    return NULL;

  if (!parse_latent_kind (p, group, (const char * const *) keys, wc, error) ||
      !parse_password (p, group, wc, error) ||
      !parse_capacity (p, group, wc, error) ||
      !parse_liveness (p, group, wc, error) ||
      !parse_mail (p, group, wc, error))
    return NULL;
  wc->properties = parse_properties (p, group, (const char * const *) keys);

  if (wc->latent != BF_LATENT_NONE && !parse_latent_keys (p, group, wc, error))
    return NULL;
  if (!parse_docker_keys (p, group, wc, error))
    return NULL;

  return g_steal_pointer (&owner);
}

/* Pools ------------------------------------------------------------------- */

static void
pool_config_clear (BfPoolConfig *pc)
{
  g_free (pc->name);
  g_free (pc->pattern);
  g_strfreev (pc->members);
}

BfPoolConfig *
bf_pool_config_ref (BfPoolConfig *pc)
{
  return g_rc_box_acquire (pc);
}

void
bf_pool_config_unref (BfPoolConfig *pc)
{
  g_rc_box_release_full (pc, (GDestroyNotify) pool_config_clear);
}

/**
 * bf_pool_expand_pattern:
 * @pattern: Workers=, with exactly one `%d`, `%Nd` or `%0Nd` (N at most 2
 *   digits) for the index
 * @count: how many names, index 1 to @count
 *
 * The pattern is read here, never handed to printf.
 *
 * Returns: (transfer full): the names, or %NULL with @error saying what is
 *   wrong with the pattern or which name is not a valid worker name
 */
GStrv
bf_pool_expand_pattern (const char  *pattern,
                        guint        count,
                        GError     **error)
{
  const char *conv = NULL, *end = NULL;
  gboolean zero = FALSE;
  guint width = 0;
  g_autofree char *prefix = NULL;
  g_autoptr(GStrvBuilder) names = g_strv_builder_new ();

  for (const char *c = strchr (pattern, '%'); c != NULL; c = strchr (c + 1, '%'))
    {
      const char *d = c + 1;
      guint w = 0, digits = 0;
      gboolean z = FALSE;

      if (conv != NULL)
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                       "“%s” has more than one “%%”: use exactly one %%d (or %%02d) for the number", pattern);
          return NULL;
        }
      if (*d == '0')
        {
          z = TRUE;
          d++;
        }
      while (g_ascii_isdigit (*d) && digits < 3)
        {
          w = w * 10 + (guint) (*d - '0');
          d++;
          digits++;
        }
      if (*d != 'd' || digits > 2)
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                       "“%s”: only %%d, %%Nd or %%0Nd (N up to 99) may follow “%%”", pattern);
          return NULL;
        }
      conv = c;
      end = d + 1;
      zero = z;
      width = w;
    }
  if (conv == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "“%s” has no %%d for the number of each worker (e.g. cloud-%%02d)", pattern);
      return NULL;
    }

  prefix = g_strndup (pattern, (gsize) (conv - pattern));
  for (guint i = 1; i <= count; i++)
    {
      g_autofree char *name = g_strdup_printf (zero ? "%s%0*u%s" : "%s%*u%s", prefix, (int) width, i, end);

      if (!bf_worker_name_is_valid (name))
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                       "“%s” gives “%s”, not allowed as a worker name: use 1 to %d letters, digits, '-', '_' or '.'",
                       pattern, name, BF_WORKER_NAME_MAX);
          return NULL;
        }
      g_strv_builder_add (names, name);
    }
  return g_strv_builder_end (names);
}

static gboolean
get_pool_uint (Parser      *p,
               const char  *group,
               const char  *key,
               guint        default_value,
               guint       *out,
               GError     **error)
{
  guint64 v = 0;

  if (!get_uint (p, group, key, default_value, BF_POOL_MAX_COUNT, &v, error))
    return FALSE;
  *out = (guint) v;
  return TRUE;
}

/* The pool's own keys; its workers' keys are parse_worker()'s. */
static BfPoolConfig *
parse_pool_keys (Parser      *p,
                 const char  *group,
                 const char  *name,
                 GError     **error)
{
  BfPoolConfig *pc = g_rc_box_new0 (BfPoolConfig);
  g_autoptr(BfPoolConfig) owner = pc;
  g_autofree char *count = NULL;
  g_autoptr(GError) local_error = NULL;

  pc->name = g_strdup (name);
  if (!bf_worker_name_is_valid (name))
    {
      set_error (error, p, group, NULL,
                 "“%s” is not allowed as a pool name: use 1 to %d letters, digits, '-', '_' or '.'",
                 name, BF_WORKER_NAME_MAX);
      return NULL;
    }
  pc->pattern = get_string (p, group, "Workers", FALSE);
  if (pc->pattern == NULL || *pc->pattern == '\0')
    {
      set_error (error, p, group, pc->pattern ? "Workers" : NULL,
                 "a pool needs Workers=, the pattern of its workers' names (e.g. Workers=%s-%%02d)", name);
      return NULL;
    }
  count = get_string (p, group, "Count", FALSE);
  if (count == NULL)
    {
      set_error (error, p, group, NULL, "a pool needs Count=, how many workers it stands for (0 to %d)",
                 BF_POOL_MAX_COUNT);
      return NULL;
    }
  if (!get_pool_uint (p, group, "Count", 0, &pc->count, error) ||
      !get_pool_uint (p, group, "MaxInstances", pc->count, &pc->max_instances, error) ||
      !get_pool_uint (p, group, "MinIdle", 0, &pc->min_idle, error) ||
      !get_pool_uint (p, group, "MaxBuildsPerInstance", 0, &pc->max_builds_per_instance, error))
    return NULL;
  if (pc->max_instances == 0 && pc->count > 0)
    {
      set_error (error, p, group, "MaxInstances", "must be at least 1 (leave it out for Count=%u)", pc->count);
      return NULL;
    }
  if (pc->min_idle > MIN (pc->count, pc->max_instances))
    {
      set_error (error, p, group, "MinIdle", "%u idle instances cannot be kept with %s=%u",
                 pc->min_idle, pc->count <= pc->max_instances ? "Count" : "MaxInstances",
                 MIN (pc->count, pc->max_instances));
      return NULL;
    }
  pc->members = bf_pool_expand_pattern (pc->pattern, pc->count, &local_error);
  if (pc->members == NULL)
    {
      set_error (error, p, group, "Workers", "%s", local_error->message);
      return NULL;
    }
  return g_steal_pointer (&owner);
}

/* A [Pool NAME] group: its own keys, then every worker it stands for,
 * each parsed as a [Worker] group with the same keys. */
static BfPoolConfig *
parse_pool (Parser      *p,
            BfConfig    *c,
            GHashTable  *groups_by_worker,
            const char  *group,
            const char  *name,
            GError     **error)
{
  g_autoptr(BfPoolConfig) pc = NULL;
  g_auto(GStrv) keys = bf_key_file_get_keys (p->merged, group);

  if (!check_keys (p, group, worker_keys, pool_keys, "Property.", error))
    return NULL;
  p->group = group;
  p->keys = keys;
  pc = parse_pool_keys (p, group, name, error);
  if (pc == NULL)
    return NULL;

  for (guint i = 0; pc->members[i]; i++)
    {
      BfWorkerConfig *wc;
      const char *other = g_hash_table_lookup (groups_by_worker, pc->members[i]);

      if (other != NULL)
        {
          set_error (error, p, group, "Workers", "“%s” gives the worker name %s, which [%s] has already",
                     pc->pattern, pc->members[i], other);
          return NULL;
        }
      wc = parse_worker (p, group, pc->members[i], pool_keys, error);
      p->keys = keys;   /* parse_worker's own list is gone */
      if (wc == NULL)
        return NULL;
      g_ptr_array_add (c->workers, wc);
      g_hash_table_insert (c->workers_by_name, wc->name, wc);
      g_hash_table_insert (groups_by_worker, wc->name, (gpointer) group);
      if (wc->latent == BF_LATENT_NONE)
        {
          set_error (error, p, group, NULL,
                     "a pool's workers are latent: set Latent=command, local or systemd");
          return NULL;
        }
      wc->pool = g_strdup (pc->name);
      wc->max_builds_per_instance = pc->max_builds_per_instance;
    }
  return g_steal_pointer (&pc);
}

static void
config_clear (BfConfig *c)
{
  g_free (c->path);
  g_strfreev (c->files);
  g_strfreev (c->listen);
  g_strfreev (c->listen_pb);
  g_free (c->listen_pb_skipped);
  g_free (c->tls_certificate);
  g_free (c->tls_private_key);
  g_free (c->state_directory);
  g_free (c->mail_command);
  g_free (c->mail_from);
  g_clear_pointer (&c->workers_by_name, g_hash_table_unref);
  g_clear_pointer (&c->workers, g_ptr_array_unref);
  g_clear_pointer (&c->pools, g_ptr_array_unref);
}

BfConfig *
bf_config_ref (BfConfig *config)
{
  return g_rc_box_acquire (config);
}

void
bf_config_unref (BfConfig *config)
{
  g_rc_box_release_full (config, (GDestroyNotify) config_clear);
}

BfWorkerConfig *
bf_config_lookup_worker (BfConfig   *config,
                         const char *name)
{
  return g_hash_table_lookup (config->workers_by_name, name);
}

BfPoolConfig *
bf_config_lookup_pool (BfConfig   *config,
                       const char *name)
{
  for (guint i = 0; i < config->pools->len; i++)
    {
      BfPoolConfig *pc = g_ptr_array_index (config->pools, i);
      if (g_str_equal (pc->name, name))
        return pc;
    }
  return NULL;
}

/* [Daemon] Listen=, ListenPb=, TlsCertificate=, TlsPrivateKey=: where
 * workers connect and how. */
static gboolean
parse_daemon_endpoints (Parser      *p,
                        const char  *g,
                        BfConfig    *c,
                        GError     **error)
{
  c->listen = get_list (p, g, "Listen");
  if (c->listen == NULL)
    c->listen = g_strsplit (DEFAULT_LISTEN, ";", -1);
  if (c->listen[0] == NULL)
    {
      set_error (error, p, g, "Listen", "no endpoint given: workers could never connect");
      return FALSE;
    }
  for (guint i = 0; c->listen[i]; i++)
    {
      g_autoptr(GError) local_error = NULL;
      if (!bf_config_parse_endpoint (c->listen[i], NULL, NULL, &local_error))
        {
          set_error (error, p, g, "Listen", "%s", local_error->message);
          return FALSE;
        }
    }

  if (!parse_listen_pb (p, g, c, error))
    return FALSE;

  c->tls_certificate = get_string (p, g, "TlsCertificate", FALSE);
  c->tls_private_key = get_string (p, g, "TlsPrivateKey", FALSE);
  if ((c->tls_certificate == NULL) != (c->tls_private_key == NULL))
    {
      set_error (error, p, g, c->tls_certificate ? "TlsCertificate" : "TlsPrivateKey",
                 "TlsCertificate and TlsPrivateKey go together: set both or neither");
      return FALSE;
    }
  return TRUE;
}

/* [Daemon] KeepaliveInterval=, DuplicatePingTimeout=: how the daemon
 * notices a dead or duplicate connection. */
static gboolean
parse_daemon_liveness (Parser      *p,
                       const char  *g,
                       BfConfig    *c,
                       GError     **error)
{
  gint64 keepalive = 0, dup = 0;

  if (!get_duration (p, g, "KeepaliveInterval", FALSE, 60 * G_USEC_PER_SEC, &keepalive, error))
    return FALSE;
  if (keepalive != 0 && keepalive < G_USEC_PER_SEC / 10)
    {
      set_error (error, p, g, "KeepaliveInterval", "must be 0 (off) or at least 0.1 seconds");
      return FALSE;
    }
  c->keepalive_interval_usec = (guint64) keepalive;

  if (!get_duration (p, g, "DuplicatePingTimeout", FALSE, 5 * G_USEC_PER_SEC, &dup, error))
    return FALSE;
  if (dup <= 0)
    {
      set_error (error, p, g, "DuplicatePingTimeout", "must be more than 0 seconds");
      return FALSE;
    }
  c->duplicate_ping_timeout_usec = (guint64) dup;
  return TRUE;
}

/* [Daemon] StateDirectory=, defaulting to systemd's $STATE_DIRECTORY. */
static gboolean
parse_daemon_state_directory (Parser      *p,
                              const char  *g,
                              BfConfig    *c,
                              GError     **error)
{
  c->state_directory = get_string (p, g, "StateDirectory", FALSE);
  if (c->state_directory == NULL)
    {
      const char *env = g_getenv ("STATE_DIRECTORY");   /* set by systemd's StateDirectory= */
      c->state_directory = g_strdup (env && *env && !strchr (env, ':') ? env : DEFAULT_STATE_DIRECTORY);
    }
  if (!g_path_is_absolute (c->state_directory))
    {
      set_error (error, p, g, "StateDirectory", "“%s” is not an absolute path", c->state_directory);
      return FALSE;
    }
  return TRUE;
}

/* [Daemon] MailCommand=, MailFrom=, MailTimeout=, MailDigestInterval=:
 * how notices are sent. */
static gboolean
parse_daemon_mail (Parser      *p,
                   const char  *g,
                   BfConfig    *c,
                   GError     **error)
{
  gint64 mail_timeout = 0;
  gint64 mail_digest = 0;

  c->mail_command = get_string (p, g, "MailCommand", FALSE);
  if (c->mail_command == NULL)
    c->mail_command = g_strdup ("/usr/sbin/sendmail -t -oi");
  if (*c->mail_command != '\0')
    {
      g_auto(GStrv) argv = NULL;
      g_autoptr(GError) local_error = NULL;
      if (!g_shell_parse_argv (c->mail_command, NULL, &argv, &local_error))
        {
          set_error (error, p, g, "MailCommand", "%s", local_error->message);
          return FALSE;
        }
    }
  c->mail_from = get_string (p, g, "MailFrom", FALSE);
  if (c->mail_from == NULL)
    c->mail_from = g_strdup ("buildfleet@localhost");

  if (!get_duration (p, g, "MailTimeout", FALSE, 60 * G_USEC_PER_SEC, &mail_timeout, error))
    return FALSE;
  if (mail_timeout < G_USEC_PER_SEC / 10)
    {
      set_error (error, p, g, "MailTimeout", "must be at least 0.1 seconds");
      return FALSE;
    }
  c->mail_timeout_usec = (guint64) mail_timeout;

  if (!get_duration (p, g, "MailDigestInterval", FALSE, 60 * G_USEC_PER_SEC, &mail_digest, error))
    return FALSE;
  if (mail_digest > G_GINT64_CONSTANT (24 * 3600) * G_USEC_PER_SEC)
    {
      set_error (error, p, g, "MailDigestInterval", "must be at most a day (86400 seconds)");
      return FALSE;
    }
  c->mail_digest_interval_usec = (guint64) mail_digest;
  return TRUE;
}

/* [Daemon] MaxMessageSize=, MaxBusMessageSize=: the largest message from a
 * worker and on the bus. */
static gboolean
parse_daemon_message_sizes (Parser      *p,
                            const char  *g,
                            BfConfig    *c,
                            GError     **error)
{
  guint64 max_msg = 0;
  guint64 max_bus_msg = 0;

  if (!get_uint (p, g, "MaxMessageSize", 16 * 1024 * 1024, 256 * 1024 * 1024, &max_msg, error))
    return FALSE;
  if (max_msg < 64 * 1024)
    {
      set_error (error, p, g, "MaxMessageSize", "must be at least 65536 bytes (workers send 64 KiB of output at once)");
      return FALSE;
    }
  c->max_message_size = max_msg;

  /* The system bus's max_message_size; 128 MiB is the protocol's own. */
  if (!get_uint (p, g, "MaxBusMessageSize", 32 * 1024 * 1024, 128 * 1024 * 1024, &max_bus_msg, error))
    return FALSE;
  if (max_bus_msg < 64 * 1024)
    {
      set_error (error, p, g, "MaxBusMessageSize", "must be at least 65536 bytes");
      return FALSE;
    }
  c->max_bus_message_size = max_bus_msg;
  return TRUE;
}

/* [Daemon] QuarantineInitial=, QuarantineMax=, FinishedBuildLifetime=. */
static gboolean
parse_daemon_quarantine (Parser      *p,
                         const char  *g,
                         BfConfig    *c,
                         GError     **error)
{
  gint64 q_initial = 0, q_max = 0, lifetime = 0;

  if (!get_duration (p, g, "QuarantineInitial", FALSE, 10 * G_USEC_PER_SEC, &q_initial, error) ||
      !get_duration (p, g, "QuarantineMax", FALSE, (gint64) 3600 * G_USEC_PER_SEC, &q_max, error) ||
      !get_duration (p, g, "FinishedBuildLifetime", FALSE, 60 * G_USEC_PER_SEC, &lifetime, error))
    return FALSE;
  if (q_initial == 0 || q_max < q_initial)
    {
      set_error (error, p, g, "QuarantineMax", "QuarantineInitial must be more than 0 and at most QuarantineMax");
      return FALSE;
    }
  c->quarantine_initial_usec = (guint64) q_initial;
  c->quarantine_max_usec = (guint64) q_max;
  c->finished_build_lifetime_usec = (guint64) lifetime;
  return TRUE;
}

static gboolean
parse_daemon (Parser    *p,
              BfConfig  *c,
              GError   **error)
{
  const char *g = "Daemon";

  return check_keys (p, g, daemon_keys, NULL, NULL, error) &&
         parse_daemon_endpoints (p, g, c, error) &&
         parse_daemon_liveness (p, g, c, error) &&
         parse_daemon_state_directory (p, g, c, error) &&
         parse_daemon_mail (p, g, c, error) &&
         parse_daemon_message_sizes (p, g, c, error) &&
         parse_daemon_quarantine (p, g, c, error);
}

static BfConfig *
parse (Parser   *p,
       GError  **error)
{
  BfConfig *c = g_rc_box_new0 (BfConfig);
  g_autoptr(BfConfig) owner = c;
  const char * const *groups = bf_key_file_get_groups (p->merged);
  g_autoptr(GStrvBuilder) files = g_strv_builder_new ();
  /* worker name -> the group it comes from, for duplicates */
  g_autoptr(GHashTable) groups_by_worker = g_hash_table_new (g_str_hash, g_str_equal);

  c->path = g_strdup (g_ptr_array_index (p->files, 0));
  for (guint i = 0; i < p->files->len; i++)
    g_strv_builder_add (files, g_ptr_array_index (p->files, i));
  c->files = g_strv_builder_end (files);
  c->workers = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_worker_config_unref);
  c->workers_by_name = g_hash_table_new (g_str_hash, g_str_equal);
  c->pools = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_pool_config_unref);

  /* [Daemon] is optional: every key has a default. */
  if (!parse_daemon (p, c, error))
    return NULL;

  for (guint i = 0; groups[i]; i++)
    {
      BfWorkerConfig *wc;

      if (g_str_equal (groups[i], "Daemon"))
        continue;
      if (g_str_has_prefix (groups[i], "Pool "))
        {
          BfPoolConfig *pc = parse_pool (p, c, groups_by_worker, groups[i], groups[i] + strlen ("Pool "), error);

          p->group = NULL;   /* parse_pool's key list is gone */
          p->keys = NULL;
          if (pc == NULL)
            return NULL;
          if (bf_config_lookup_pool (c, pc->name) != NULL)
            {
              /* [Pool a] and [Pool  a] are different groups */
              set_error (error, p, groups[i], NULL, "a second pool named %s", pc->name);
              bf_pool_config_unref (pc);
              return NULL;
            }
          g_ptr_array_add (c->pools, pc);
          continue;
        }
      if (!g_str_has_prefix (groups[i], "Worker "))
        {
          set_error (error, p, groups[i], NULL, "unknown group (expected [Daemon], [Worker NAME] or [Pool NAME])");
          return NULL;
        }
      wc = parse_worker (p, groups[i], groups[i] + strlen ("Worker "), NULL, error);
      p->group = NULL;   /* parse_worker's key list is gone */
      p->keys = NULL;
      if (wc == NULL)
        return NULL;
      if (g_hash_table_contains (groups_by_worker, wc->name))
        {
          set_error (error, p, groups[i], NULL, "the worker name %s is taken by [%s] already",
                     wc->name, (char *) g_hash_table_lookup (groups_by_worker, wc->name));
          bf_worker_config_unref (wc);
          return NULL;
        }
      g_ptr_array_add (c->workers, wc);
      g_hash_table_insert (c->workers_by_name, wc->name, wc);
      g_hash_table_insert (groups_by_worker, wc->name, (gpointer) groups[i]);
    }

  return g_steal_pointer (&owner);
}

static void
parser_init (Parser *p)
{
  p->files = g_ptr_array_new_with_free_func (g_free);
  p->merged = bf_key_file_new ();
  p->contents = g_ptr_array_new_with_free_func (g_free);
  p->digest = g_checksum_new (G_CHECKSUM_SHA256);
}

/**
 * bf_config_load:
 * @path: the main configuration file
 * @error: return location for a #GError
 *
 * Reads @path, then every `*.conf` in `@path.d/` in lexical order; a later
 * file overrides the keys of an earlier one, group by group.
 *
 * Returns: (transfer full): the configuration, or %NULL with @error naming
 *   the file, line, group and key.
 */
BfConfig *
bf_config_load (const char  *path,
                GError     **error)
{
  return bf_config_load_full (path, NULL, error);
}

/**
 * bf_config_load_full:
 * @path: the main configuration file
 * @out_digest: (out) (optional): a digest of every byte read (the
 *   configuration files, the password files, and the reasons of files that
 *   could not be read), set even when loading fails
 * @error: return location for a #GError
 *
 * Like bf_config_load().  Two loads with the same digest read the same
 * bytes: this is how a reload tells a file being rewritten in place from a
 * finished one.  Every file is read only if it is a regular file of bounded
 * size (a FIFO or a device is an error, never a wait).
 */
BfConfig *
bf_config_load_full (const char  *path,
                     char       **out_digest,
                     GError     **error)
{
  g_auto(Parser) p = { 0 };
  BfConfig *config = NULL;

  parser_init (&p);
  if (parser_add_file (&p, path, error) &&
      parser_add_dropins (&p, path, error))
    config = parse (&p, error);
  if (out_digest)
    *out_digest = g_strdup (g_checksum_get_string (p.digest));
  return config;
}

/**
 * bf_config_load_data:
 * @data: key file text
 * @name: the name to use in error messages
 * @error: return location for a #GError
 *
 * Like bf_config_load() for text in memory, without drop-ins.
 */
BfConfig *
bf_config_load_data (const char  *data,
                     const char  *name,
                     GError     **error)
{
  g_auto(Parser) p = { 0 };

  parser_init (&p);
  if (!parser_add_contents (&p, name, data, strlen (data), error))
    return NULL;
  return parse (&p, error);
}
