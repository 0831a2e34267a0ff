/* bf-history.c: a bounded, persisted event history per worker
 *
 * What happened to a worker, in order: attached, detached (and why),
 * missing, back online, paused and unpaused (and by whom), graceful
 * shutdown, quarantine (and why), the latent instance's phases and failed
 * starts.  Published by Worker.GetHistory(); kept across daemon restarts.
 *
 * Bounded: the last BF_HISTORY_MAX_EVENTS events of a worker and none
 * older than BF_HISTORY_MAX_AGE_USEC.
 *
 * One append-only journal for every worker, StateDirectory/history/
 * journal.log, a line per event: "NAME\tTIME\tEVENT\tDETAIL\tACTOR", the
 * strings escaped with g_strescape().  No event is kept in memory: an event
 * becomes a line in a pending batch, appended by one journal thread at most
 * every WRITE_DELAY_MS (one write(2) per batch, however many workers); a
 * query goes to the same thread, after the batch, and reads the worker's
 * lines back.  The thread owns the file and what is known about it (how
 * many lines each worker has there), so an attach storm of 10,000 workers
 * creates no file and the daemon's memory does not grow with the events.
 *
 * Never half-written: a torn last line (a crash during an append) is cut
 * off when the daemon starts; a failed append is cut back.  When the
 * journal holds more than twice the lines the bounds keep, it is compacted:
 * the kept lines written to journal.log.new, fsync'ed, renamed over it.
 * A journal with unreadable lines keeps its readable ones: a copy is set
 * aside (journal.log.corrupt-STAMP) with a warning and it is compacted.
 *
 * Older versions wrote a file per worker (NAME.log, NAME URI-escaped, or
 * sha256-SUM.log for long names).  At start-up each such file is folded
 * into the journal (its readable lines, within the bounds, followed by a
 * "#migrated\tFILE" line, fdatasync'ed) and removed; a corrupt one is set
 * aside first.  A sha256-SUM.log, whose name cannot be read back, is
 * folded the first time its worker's history is written or read.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bf-error.h"
#include "bf-history.h"
#include "bf-util.h"

#define HISTORY_DIR "history"
#define JOURNAL_FILE "journal.log"
#define MIGRATED_MARK "#migrated\t"
#define WRITE_DELAY_MS 100
#define MAX_FIELD_BYTES 1024
#define MAX_FILE_BYTES (16 * 1024 * 1024)
/* Lines a journal may hold beyond twice its live ones before compaction. */
#define COMPACT_SLACK 8192

typedef struct
{
  guint64 time;
  char *event;
  char *detail;
  char *actor;
} Event;

/* Owned by the journal thread (or by whoever runs a job while no thread can). */
typedef struct
{
  char *directory;
  char *path;
  int fd;                 /* for appends; -1 until the first one */
  GHashTable *counts;     /* escaped name -> lines of it in the journal */
  GHashTable *hashed;     /* sha256-SUM.log files of older versions not folded yet */
  guint64 lines;          /* event lines in the journal */
  guint64 live;           /* of which within BF_HISTORY_MAX_EVENTS of their worker */
  gboolean warned;        /* an append failed; do not repeat the warning */
} Journal;

typedef enum
{
  JOB_OPEN,
  JOB_APPEND,
  JOB_QUERY,
} JobKind;

typedef struct
{
  JobKind kind;
  GBytes *batch;          /* JOB_APPEND */
  GTask *task;            /* JOB_QUERY */
  char *worker;
  guint64 since, until;
  guint limit;
} Job;

struct _BfHistory
{
  GObject parent_instance;

  char *directory;
  Journal *journal;
  GThreadPool *pool;      /* one thread, the jobs in order */
  GString *pending;       /* lines not handed to the thread yet */
  guint write_source_id;
};

G_DEFINE_FINAL_TYPE (BfHistory, bf_history, G_TYPE_OBJECT)

static void
event_free (Event *event)
{
  g_free (event->event);
  g_free (event->detail);
  g_free (event->actor);
  g_free (event);
}

static void
job_free (Job *job)
{
  g_clear_pointer (&job->batch, g_bytes_unref);
  g_clear_object (&job->task);
  g_free (job->worker);
  g_free (job);
}

static char *
legacy_file_name (const char *worker)
{
  g_autofree char *escaped = g_uri_escape_string (worker, NULL, FALSE);

  /* Names too long for a file name were known by their checksum. */
  if (strlen (escaped) > 200)
    {
      g_autofree char *sum = g_compute_checksum_for_string (G_CHECKSUM_SHA256, worker, -1);
      return g_strconcat ("sha256-", sum, ".log", NULL);
    }
  return g_strconcat (escaped, ".log", NULL);
}

/* Reading ------------------------------------------------------------------- */

static char *
parse_field (const char *text)
{
  g_autofree char *value = g_strcompress (text);

  if (!g_utf8_validate (value, -1, NULL))
    return NULL;
  return g_steal_pointer (&value);
}

/* "TIME\tEVENT\tDETAIL\tACTOR", as a journal line after its name. */
static Event *
parse_line (const char *line)
{
  g_auto(GStrv) fields = g_strsplit (line, "\t", -1);
  guint64 time;
  Event *event;

  if (g_strv_length (fields) != 4 || fields[1][0] == '\0' ||
      !g_ascii_string_to_unsigned (fields[0], 10, 1, G_MAXINT64, &time, NULL))
    return NULL;
  event = g_new0 (Event, 1);
  event->time = time;
  event->event = parse_field (fields[1]);
  event->detail = parse_field (fields[2]);
  event->actor = parse_field (fields[3]);
  if (event->event == NULL || event->detail == NULL || event->actor == NULL)
    {
      event_free (event);
      return NULL;
    }
  return event;
}

static void
set_aside (const char *path,
           const char *why)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  g_autofree char *aside = g_strdup_printf ("%s.corrupt-%s", path, stamp);

  /* A link, not a rename: the file stays until the clean version replaces it. */
  if (link (path, aside) == 0 || (errno == EEXIST && g_unlink (aside) == 0 && link (path, aside) == 0))
    g_warning ("History file %s is corrupt (%s); kept a copy as %s", path, why, aside);
  else
    g_warning ("History file %s is corrupt (%s) and no copy could be kept: %s",
               path, why, g_strerror (errno));
}

static void
trim (GQueue  *log,
      guint64  now)
{
  while (log->length > BF_HISTORY_MAX_EVENTS)
    event_free (g_queue_pop_head (log));
  while (!g_queue_is_empty (log) && now > BF_HISTORY_MAX_AGE_USEC &&
         ((Event *) g_queue_peek_head (log))->time < now - BF_HISTORY_MAX_AGE_USEC)
    event_free (g_queue_pop_head (log));
}

/* A journal line's name and the rest; FALSE for a marker or a line without
 * a name.  @line has no newline and is cut at the first tab. */
static gboolean
split_line (char  *line,
            char **rest)
{
  char *tab;

  if (line[0] == '#' || (tab = strchr (line, '\t')) == NULL || tab == line)
    return FALSE;
  *tab = '\0';
  *rest = tab + 1;
  return TRUE;
}

/* Writing ------------------------------------------------------------------- */

static void
append_line (GString    *out,
             const char *escaped_name,
             guint64     time,
             const char *event,
             const char *detail,
             const char *actor)
{
  g_autofree char *e = g_strescape (event != NULL ? event : "", NULL);
  g_autofree char *d = g_strescape (detail != NULL ? detail : "", NULL);
  g_autofree char *a = g_strescape (actor != NULL ? actor : "", NULL);

  g_string_append_printf (out, "%s\t%" G_GUINT64_FORMAT "\t%s\t%s\t%s\n", escaped_name, time, e, d, a);
}

static gboolean
write_all (int          fd,
           const char  *data,
           gsize        len,
           GError     **error)
{
  while (len > 0)
    {
      gssize n = write (fd, data, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s", g_strerror (saved));
          return FALSE;
        }
      data += n;
      len -= n;
    }
  return TRUE;
}

/* The journal (thread side) ---------------------------------------------------- */

static Journal *
journal_new (const char *directory)
{
  Journal *j = g_new0 (Journal, 1);

  j->directory = g_strdup (directory);
  j->path = g_build_filename (directory, JOURNAL_FILE, NULL);
  j->fd = -1;
  j->counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  j->hashed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return j;
}

static void
journal_free (Journal *j)
{
  if (j->fd >= 0)
    close (j->fd);
  g_hash_table_unref (j->counts);
  g_hash_table_unref (j->hashed);
  g_free (j->directory);
  g_free (j->path);
  g_free (j);
}

static void
journal_count (Journal    *j,
               const char *escaped_name,
               guint       n)
{
  guint count = GPOINTER_TO_UINT (g_hash_table_lookup (j->counts, escaped_name));

  j->lines += n;
  j->live += MIN (count + n, BF_HISTORY_MAX_EVENTS) - MIN (count, BF_HISTORY_MAX_EVENTS);
  g_hash_table_insert (j->counts, g_strdup (escaped_name), GUINT_TO_POINTER (count + n));
}

static gboolean
journal_open (Journal  *j,
              GError  **error)
{
  if (j->fd >= 0)
    return TRUE;
  if (g_mkdir_with_parents (j->directory, 0750) != 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "Cannot create %s: %s", j->directory, g_strerror (saved));
      return FALSE;
    }
  j->fd = g_open (j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (j->fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "Cannot open %s: %s", j->path, g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

/* Appends @data, whole lines; on failure the journal is cut back to what it
 * was, so that no line is ever left half-written. */
static gboolean
journal_write (Journal     *j,
               const char  *data,
               gsize        len,
               GError     **error)
{
  struct stat st;

  if (!journal_open (j, error))
    return FALSE;
  if (fstat (j->fd, &st) != 0)
    st.st_size = -1;
  if (write_all (j->fd, data, len, error))
    return TRUE;
  if (st.st_size >= 0 && ftruncate (j->fd, st.st_size) != 0)
    g_warning ("Cannot cut %s back after a failed write: %s", j->path, g_strerror (errno));
  g_prefix_error (error, "Cannot write %s: ", j->path);
  return FALSE;
}

/* A worker's file of an older version, folded into the journal and removed. */
static void
journal_fold_legacy (Journal    *j,
                     const char *worker,
                     const char *file)
{
  g_autofree char *path = g_build_filename (j->directory, file, NULL);
  g_autofree char *contents = NULL;
  g_autofree char *escaped = g_strescape (worker, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) out = g_string_new (NULL);
  GQueue log = G_QUEUE_INIT;
  gsize length = 0;
  guint dropped = 0;
  char *line, *next;

  if (!g_file_get_contents (path, &contents, &length, &error))
    {
      g_warning ("Cannot read the history of worker %s: %s", worker, error->message);
      return;
    }
  if (length > MAX_FILE_BYTES || memchr (contents, '\0', length) != NULL)
    set_aside (path, length > MAX_FILE_BYTES ? "too large" : "binary data");
  else
    {
      for (line = contents; line != NULL && *line != '\0'; line = next)
        {
          Event *event;

          next = strchr (line, '\n');
          if (next != NULL)
            *next++ = '\0';
          if (*line == '\0')
            continue;
          if ((event = parse_line (line)) != NULL)
            g_queue_push_tail (&log, event);
          else
            dropped++;
        }
      if (dropped > 0)
        {
          g_autofree char *why = g_strdup_printf ("%u unreadable line%s left out", dropped, dropped == 1 ? "" : "s");
          set_aside (path, why);
        }
    }
  trim (&log, (guint64) g_get_real_time ());
  for (GList *l = log.head; l != NULL; l = l->next)
    {
      Event *e = l->data;
      append_line (out, escaped, e->time, e->event, e->detail, e->actor);
    }
  g_string_append_printf (out, MIGRATED_MARK "%s\n", file);
  /* The events are on disk before the file goes; the mark says they are. */
  if (!journal_write (j, out->str, out->len, &error) || fdatasync (j->fd) != 0)
    {
      g_warning ("Cannot fold %s into the history journal: %s", path,
                 error != NULL ? error->message : g_strerror (errno));
      g_queue_clear_full (&log, (GDestroyNotify) event_free);
      return;
    }
  if (log.length > 0)
    journal_count (j, escaped, log.length);
  g_queue_clear_full (&log, (GDestroyNotify) event_free);
  g_unlink (path);
  g_debug ("Folded %s into the history journal", path);
}

/* A long-named worker's sha256-SUM.log, if an older version left one. */
static void
journal_fold_hashed (Journal    *j,
                     const char *escaped_name)
{
  g_autofree char *worker = NULL;
  g_autofree char *file = NULL;

  if (g_hash_table_size (j->hashed) == 0 || strlen (escaped_name) < 66)
    return;
  worker = g_strcompress (escaped_name);
  file = legacy_file_name (worker);
  if (g_hash_table_remove (j->hashed, file))
    journal_fold_legacy (j, worker, file);
}

static void
journal_compact (Journal *j)
{
  g_autofree char *tmp = g_strconcat (j->path, ".new", NULL);
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GHashTable) counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint64 now = (guint64) g_get_real_time ();
  guint64 kept = 0;
  g_autofree char *buf = NULL;
  size_t size = 0;
  ssize_t n;
  FILE *in, *out = NULL;
  int fd, saved = 0;

  if ((in = fopen (j->path, "re")) == NULL)
    return;
  if ((fd = g_open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0 ||
      (out = fdopen (fd, "w")) == NULL)
    {
      if (fd >= 0)
        close (fd);
      g_warning ("Cannot compact the history journal: %s: %s", tmp, g_strerror (errno));
      fclose (in);
      return;
    }
  while ((n = getline (&buf, &size, in)) > 0)
    {
      g_autoptr(GString) line = NULL;
      Event *event;
      char *rest;
      guint index, count;

      if (buf[n - 1] != '\n' || memchr (buf, '\0', n) != NULL)
        continue;
      line = g_string_new_len (buf, n);
      buf[n - 1] = '\0';
      if (!split_line (buf, &rest) || (event = parse_line (rest)) == NULL)
        continue;
      index = GPOINTER_TO_UINT (g_hash_table_lookup (seen, buf));
      g_hash_table_insert (seen, g_strdup (buf), GUINT_TO_POINTER (index + 1));
      count = GPOINTER_TO_UINT (g_hash_table_lookup (j->counts, buf));
      if (index + BF_HISTORY_MAX_EVENTS >= count &&
          (now <= BF_HISTORY_MAX_AGE_USEC || event->time >= now - BF_HISTORY_MAX_AGE_USEC))
        {
          fwrite (line->str, 1, line->len, out);
          g_hash_table_insert (counts, g_strdup (buf),
                               GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (counts, buf)) + 1));
          kept++;
        }
      event_free (event);
    }
  fclose (in);
  if (fflush (out) != 0 || fsync (fileno (out)) != 0)
    saved = errno;
  if (fclose (out) != 0 && saved == 0)
    saved = errno;
  if (saved != 0 || g_rename (tmp, j->path) != 0)
    {
      g_warning ("Cannot compact the history journal: %s", g_strerror (saved != 0 ? saved : errno));
      g_unlink (tmp);
      return;
    }
  if (j->fd >= 0)
    close (j->fd);
  j->fd = -1;
  g_debug ("Compacted the history journal: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " lines kept",
           kept, j->lines);
  g_hash_table_remove_all (j->counts);
  j->lines = j->live = 0;
  {
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init (&iter, counts);
    while (g_hash_table_iter_next (&iter, &key, &value))
      journal_count (j, key, GPOINTER_TO_UINT (value));
  }
}

static void
journal_maybe_compact (Journal *j)
{
  if (j->lines > 2 * j->live + COMPACT_SLACK)
    journal_compact (j);
}

typedef struct
{
  guint corrupt;          /* unreadable lines */
  guint aged;             /* lines past the maximum age */
  GHashTable *migrated;   /* files named by a "#migrated" mark */
} Scan;

/* Counts the journal's lines per worker; cuts off a torn last line. */
static void
journal_scan (Journal *j,
              Scan    *scan)
{
  g_autofree char *buf = NULL;
  guint64 now = (guint64) g_get_real_time ();
  size_t size = 0;
  off_t good = 0;
  ssize_t n;
  FILE *in;

  if ((in = fopen (j->path, "re")) == NULL)
    {
      if (errno != ENOENT)
        g_warning ("Cannot read the history journal %s: %s", j->path, g_strerror (errno));
      return;
    }
  while ((n = getline (&buf, &size, in)) > 0)
    {
      Event *event;
      char *rest;

      if (buf[n - 1] != '\n')
        break;
      good += n;
      buf[n - 1] = '\0';
      if (g_str_has_prefix (buf, MIGRATED_MARK))
        g_hash_table_add (scan->migrated, g_strdup (buf + strlen (MIGRATED_MARK)));
      if (buf[0] == '#')
        continue;
      if ((size_t) strlen (buf) != (size_t) (n - 1) || !split_line (buf, &rest) ||
          (event = parse_line (rest)) == NULL)
        {
          scan->corrupt++;
          continue;
        }
      if (now > BF_HISTORY_MAX_AGE_USEC && event->time < now - BF_HISTORY_MAX_AGE_USEC)
        scan->aged++;
      journal_count (j, buf, 1);
      event_free (event);
    }
  fclose (in);
  if (n > 0 && buf[n - 1] != '\n')
    {
      /* A crash during an append: the line was never whole. */
      g_message ("History journal %s: dropped a torn last line (%zd bytes)", j->path, n);
      if (truncate (j->path, good) != 0)
        g_warning ("Cannot cut the torn last line off %s: %s", j->path, g_strerror (errno));
    }
}

/* Files of older versions: folded now, or (sha256-SUM.log) when needed. */
static void
journal_migrate (Journal    *j,
                 GHashTable *migrated)
{
  g_autoptr(GDir) dir = g_dir_open (j->directory, 0, NULL);
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL)
    if (g_str_has_suffix (name, ".log") && strcmp (name, JOURNAL_FILE) != 0)
      g_ptr_array_add (files, g_strdup (name));
  for (guint i = 0; i < files->len; i++)
    {
      const char *file = files->pdata[i];
      g_autofree char *stem = g_strndup (file, strlen (file) - strlen (".log"));
      g_autofree char *worker = g_uri_unescape_string (stem, NULL);
      g_autofree char *path = g_build_filename (j->directory, file, NULL);

      if (g_hash_table_contains (migrated, file))
        g_unlink (path);  /* folded before a crash took the daemon */
      else if (g_str_has_prefix (file, "sha256-"))
        g_hash_table_add (j->hashed, g_strdup (file));
      else if (worker == NULL || !g_utf8_validate (worker, -1, NULL))
        g_warning ("History file %s is not named after a worker; left alone", path);
      else
        journal_fold_legacy (j, worker, file);
    }
}

static void
journal_run_open (Journal *j)
{
  g_autofree char *tmp = g_strconcat (j->path, ".new", NULL);
  Scan scan = { 0, 0, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };

  g_unlink (tmp);  /* a compaction cut short */
  journal_scan (j, &scan);
  if (scan.corrupt > 0)
    {
      g_autofree char *why = g_strdup_printf ("%u unreadable line%s left out", scan.corrupt,
                                              scan.corrupt == 1 ? "" : "s");
      set_aside (j->path, why);
    }
  journal_migrate (j, scan.migrated);
  if (scan.corrupt > 0 || scan.aged > 0 || g_hash_table_size (scan.migrated) > 0)
    journal_compact (j);
  else
    journal_maybe_compact (j);
  g_hash_table_unref (scan.migrated);
}

static void
journal_run_append (Journal *j,
                    GBytes  *batch)
{
  g_autoptr(GError) error = NULL;
  gsize len = 0;
  const char *data = g_bytes_get_data (batch, &len);
  g_autofree char *copy = g_strndup (data, len);
  char *line, *next, *rest;

  /* Counted first: a sha256-SUM.log of an older version goes in before. */
  for (line = copy; line != NULL && *line != '\0'; line = next)
    {
      next = strchr (line, '\n');
      if (next != NULL)
        *next++ = '\0';
      if (!split_line (line, &rest))
        continue;
      journal_fold_hashed (j, line);
      journal_count (j, line, 1);
    }
  if (!journal_write (j, data, len, &error))
    {
      if (!j->warned)
        g_warning ("Cannot save worker history: %s", error->message);
      j->warned = TRUE;
      return;
    }
  j->warned = FALSE;
  journal_maybe_compact (j);
}

/* The worker's events, within the bounds, oldest first. */
static void
journal_read (Journal    *j,
              const char *worker,
              GQueue     *log)
{
  g_autofree char *escaped = g_strescape (worker, NULL);
  g_autofree char *buf = NULL;
  gsize prefix = strlen (escaped);
  size_t size = 0;
  ssize_t n;
  FILE *in;

  journal_fold_hashed (j, escaped);
  if ((in = fopen (j->path, "re")) == NULL)
    {
      if (errno != ENOENT)
        g_warning ("Cannot read the history of worker %s: %s", worker, g_strerror (errno));
      return;
    }
  while ((n = getline (&buf, &size, in)) > 0)
    {
      Event *event;

      if ((gsize) n <= prefix + 1 || buf[prefix] != '\t' || memcmp (buf, escaped, prefix) != 0 ||
          buf[n - 1] != '\n')
        continue;
      buf[n - 1] = '\0';
      if ((event = parse_line (buf + prefix + 1)) == NULL)
        continue;
      g_queue_push_tail (log, event);
      if (log->length > BF_HISTORY_MAX_EVENTS)
        event_free (g_queue_pop_head (log));
    }
  fclose (in);
  trim (log, (guint64) g_get_real_time ());
}

static GVariant *
journal_query (Journal    *j,
               const char *worker,
               guint64     since_usec,
               guint64     until_usec,
               guint       limit)
{
  GQueue log = G_QUEUE_INIT;
  g_autoptr(GPtrArray) picked = g_ptr_array_new ();
  GVariantBuilder builder;

  journal_read (j, worker, &log);
  /* Newest first, then reversed: the limit keeps the newest. */
  for (GList *l = log.tail; l != NULL; l = l->prev)
    {
      Event *event = l->data;

      if (event->time < since_usec || (until_usec != 0 && event->time > until_usec))
        continue;
      g_ptr_array_add (picked, event);
      if (limit != 0 && picked->len >= limit)
        break;
    }

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(tsss)"));
  for (guint i = picked->len; i > 0; i--)
    {
      Event *event = picked->pdata[i - 1];
      g_variant_builder_add (&builder, "(tsss)", event->time, event->event, event->detail, event->actor);
    }
  g_queue_clear_full (&log, (GDestroyNotify) event_free);
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

static void
journal_run (gpointer data,
             gpointer user_data)
{
  Job *job = data;
  Journal *j = user_data;

  switch (job->kind)
    {
    case JOB_OPEN:
      journal_run_open (j);
      break;
    case JOB_APPEND:
      journal_run_append (j, job->batch);
      break;
    case JOB_QUERY:
      g_task_return_pointer (job->task,
                             journal_query (j, job->worker, job->since, job->until, job->limit),
                             (GDestroyNotify) g_variant_unref);
      break;
    default:
      g_assert_not_reached ();
    }
  job_free (job);
}

/* Object -------------------------------------------------------------------- */

static void
push_job (BfHistory *self,
          Job       *job)
{
  g_autoptr(GError) error = NULL;

  if (!g_thread_pool_push (self->pool, job, &error))
    {
      /* No thread: run it here rather than lose it. */
      g_warning ("No history thread: %s", error->message);
      journal_run (job, self->journal);
    }
}

/* The pending lines go to the thread, behind what it has already. */
static void
hand_over (BfHistory *self)
{
  Job *job;

  g_clear_handle_id (&self->write_source_id, g_source_remove);
  if (self->pending == NULL || self->pending->len == 0)
    return;
  job = g_new0 (Job, 1);
  job->kind = JOB_APPEND;
  job->batch = g_string_free_to_bytes (g_steal_pointer (&self->pending));
  push_job (self, job);
}

static gboolean
write_cb (gpointer data)
{
  BfHistory *self = data;

  self->write_source_id = 0;
  hand_over (self);
  return G_SOURCE_REMOVE;
}

static GThreadPool *
new_pool (Journal *journal)
{
  return g_thread_pool_new (journal_run, journal, 1, FALSE, NULL);
}

/* Every job handed over has run when this returns. */
static void
drain (BfHistory *self)
{
  hand_over (self);
  g_thread_pool_free (self->pool, FALSE, TRUE);
  self->pool = new_pool (self->journal);
}

static void
bf_history_finalize (GObject *object)
{
  BfHistory *self = BF_HISTORY (object);

  /* What is left is written now. */
  hand_over (self);
  g_thread_pool_free (self->pool, FALSE, TRUE);
  journal_free (self->journal);
  g_free (self->directory);

  G_OBJECT_CLASS (bf_history_parent_class)->finalize (object);
}

static void
bf_history_class_init (BfHistoryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bf_history_finalize;
}

static void
bf_history_init (BfHistory *self)
{
}

/**
 * bf_history_new:
 * @directory: where the journal is
 *
 * Reads the journal (and folds in older versions' files) in its thread.
 */
BfHistory *
bf_history_new (const char *directory)
{
  BfHistory *self = g_object_new (BF_TYPE_HISTORY, NULL);
  Job *job = g_new0 (Job, 1);

  self->directory = g_strdup (directory);
  self->journal = journal_new (directory);
  self->pool = new_pool (self->journal);
  job->kind = JOB_OPEN;
  push_job (self, job);
  return self;
}

/**
 * bf_history_for_state:
 *
 * Returns: (transfer none): the history kept in @state's directory, one per
 * #BfState, made on first use
 */
BfHistory *
bf_history_for_state (BfState *state)
{
  BfHistory *self = g_object_get_data (G_OBJECT (state), "bf-history");

  if (self == NULL)
    {
      g_autofree char *directory = g_build_filename (bf_state_get_directory (state), HISTORY_DIR, NULL);

      self = bf_history_new (directory);
      g_object_set_data_full (G_OBJECT (state), "bf-history", self, g_object_unref);
    }
  return self;
}

static char *
clip (const char *text)
{
  const char *end;

  if (text == NULL)
    return g_strdup ("");
  if (strlen (text) <= MAX_FIELD_BYTES)
    return g_utf8_make_valid (text, -1);
  /* Cut at a character boundary. */
  end = g_utf8_find_prev_char (text, text + MAX_FIELD_BYTES + 1);
  return g_utf8_make_valid (text, end != NULL ? end - text : MAX_FIELD_BYTES);
}

/**
 * bf_history_add:
 * @time_usec: wall-clock time of the event
 * @event: what happened: "attached", "detached", "missing"…
 * @detail: (nullable): why, or more about it
 * @actor: (nullable): who did it (a bus name), if someone did
 *
 * Queued for the journal, written within WRITE_DELAY_MS.
 */
void
bf_history_add (BfHistory  *self,
                const char *worker,
                guint64     time_usec,
                const char *event,
                const char *detail,
                const char *actor)
{
  g_autofree char *escaped = g_strescape (worker, NULL);
  g_autofree char *e = clip (event);
  g_autofree char *d = clip (detail);
  g_autofree char *a = clip (actor);

  if (self->pending == NULL)
    self->pending = g_string_sized_new (4096);
  append_line (self->pending, escaped, MAX (time_usec, 1), e, d, a);
  if (self->write_source_id == 0)
    self->write_source_id = bf_timeout_add (WRITE_DELAY_MS, write_cb, self, "[buildfleetd] history write");
}

/**
 * bf_history_query:
 * @since_usec: the earliest time wanted
 * @until_usec: the latest time wanted; 0 for no limit
 * @limit: at most this many, the newest; 0 for all
 *
 * Blocks until the journal thread has written what is pending, then reads
 * the journal: for tests and tools.  The daemon uses
 * bf_history_query_async().
 *
 * Returns: (transfer full): a(tsss): time, event, detail, actor, oldest
 * first
 */
GVariant *
bf_history_query (BfHistory  *self,
                  const char *worker,
                  guint64     since_usec,
                  guint64     until_usec,
                  guint       limit)
{
  drain (self);
  return journal_query (self->journal, worker, since_usec, until_usec, limit);
}

/**
 * bf_history_query_async:
 *
 * bf_history_query() in the journal thread, after every event added so far.
 */
void
bf_history_query_async (BfHistory           *self,
                        const char          *worker,
                        guint64              since_usec,
                        guint64              until_usec,
                        guint                limit,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  Job *job = g_new0 (Job, 1);

  job->kind = JOB_QUERY;
  job->task = g_task_new (self, NULL, callback, user_data);
  g_task_set_source_tag (job->task, bf_history_query_async);
  g_task_set_name (job->task, "[buildfleetd] history query");
  job->worker = g_strdup (worker);
  job->since = since_usec;
  job->until = until_usec;
  job->limit = limit;
  hand_over (self);
  push_job (self, job);
}

/**
 * bf_history_query_finish:
 *
 * Returns: (transfer full): as bf_history_query()
 */
GVariant *
bf_history_query_finish (BfHistory     *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * bf_history_flush:
 *
 * Writes pending changes now, synchronously.  Only for shutdown.
 */
void
bf_history_flush (BfHistory *self)
{
  drain (self);
}

/* Hooks ----------------------------------------------------------------------- */

/**
 * bf_history_record:
 *
 * Adds an event, now, to @worker's history in @state's directory.
 */
void
bf_history_record (BfState    *state,
                   const char *worker,
                   const char *event,
                   const char *detail,
                   const char *actor)
{
  bf_history_add (bf_history_for_state (state), worker, (guint64) g_get_real_time (), event, detail, actor);
}

void
bf_history_flush_state (BfState *state)
{
  BfHistory *self = g_object_get_data (G_OBJECT (state), "bf-history");

  if (self != NULL)
    bf_history_flush (self);
}

static void
got_history (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GDBusMethodInvocation) invocation = user_data;
  BfDBusWorker *worker = g_object_get_data (G_OBJECT (invocation), "bf-worker");
  g_autoptr(GVariant) events = bf_history_query_finish (BF_HISTORY (source), result, NULL);

  bf_dbus_worker_complete_get_history (worker, invocation, events);
}

/**
 * bf_history_handle_get_history:
 *
 * Worker.GetHistory(): anyone may read it, as the properties.  Answered
 * from the journal thread.
 */
gboolean
bf_history_handle_get_history (BfState               *state,
                               BfDBusWorker          *worker,
                               GDBusMethodInvocation *invocation,
                               guint64                since_usec,
                               guint64                until_usec,
                               guint                  limit)
{
  if (until_usec != 0 && until_usec < since_usec)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_INVALID_ARGS,
                                             "until_usec (%" G_GUINT64_FORMAT ") is before since_usec (%"
                                             G_GUINT64_FORMAT ")", until_usec, since_usec);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  g_object_set_data_full (G_OBJECT (invocation), "bf-worker", g_object_ref (worker), g_object_unref);
  bf_history_query_async (bf_history_for_state (state), bf_dbus_worker_get_name (worker),
                          since_usec, until_usec, limit, got_history, g_object_ref (invocation));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}
