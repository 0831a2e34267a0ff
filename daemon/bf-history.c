/* bf-history.c: a bounded, persisted event history per worker
 *
 * What happened to a worker, in order: attached, detached (and why),
 * missing, back online, paused and unpaused (and by whom), graceful
 * shutdown, quarantine (and why), the latent instance's phases and failed
 * starts.  Published by Worker.GetHistory(); kept across daemon restarts.
 *
 * Bounded: the last BF_HISTORY_MAX_EVENTS events of a worker and none
 * older than BF_HISTORY_MAX_AGE_USEC, so a flapping worker costs at most
 * a few hundred kilobytes.
 *
 * One file per worker, StateDirectory/history/NAME.log (NAME URI-escaped),
 * a line per event: "TIME\tEVENT\tDETAIL\tACTOR", the strings escaped with
 * g_strescape().  A worker's file is read the first time its history is
 * needed.  Writes run in a thread, coalesced (at most every
 * WRITE_DELAY_MS), each one a temporary file renamed over the old one: a
 * file is always the old or the new version (see write_atomically() for
 * why not fsync'ed).  bf_history_flush() writes what is left at shutdown.
 *
 * A file with unreadable lines keeps its readable ones: it is set aside
 * (NAME.log.corrupt-STAMP) with a warning and written again clean.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bf-error.h"
#include "bf-history.h"
#include "bf-util.h"

#define HISTORY_DIR "history"
#define WRITE_DELAY_MS 100
#define MAX_FIELD_BYTES 1024
#define MAX_FILE_BYTES (16 * 1024 * 1024)

typedef struct
{
  guint64 time;
  char *event;
  char *detail;
  char *actor;
} Event;

struct _BfHistory
{
  GObject parent_instance;

  char *directory;
  GHashTable *logs;       /* worker name -> GQueue of Event*, oldest first */
  GHashTable *dirty;      /* worker names changed since their last write started */
  guint write_source_id;
  gboolean writing;       /* a write runs in a thread */
  gboolean warned;        /* a write failed; do not repeat the warning */
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
log_free (GQueue *log)
{
  g_queue_free_full (log, (GDestroyNotify) event_free);
}

static char *
file_name_of (const char *worker)
{
  g_autofree char *escaped = g_uri_escape_string (worker, NULL, FALSE);

  /* Names too long for a file name are known by their checksum. */
  if (strlen (escaped) > 200)
    {
      g_autofree char *sum = g_compute_checksum_for_string (G_CHECKSUM_SHA256, worker, -1);
      return g_strconcat ("sha256-", sum, ".log", NULL);
    }
  return g_strconcat (escaped, ".log", NULL);
}

static char *
path_of (BfHistory  *self,
         const char *worker)
{
  g_autofree char *file = file_name_of (worker);

  return g_build_filename (self->directory, file, NULL);
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

static void trim (GQueue *log, guint64 now);
static void mark_dirty (BfHistory *self, const char *worker);

/* The worker's events, read from its file the first time. */
static GQueue *
ensure_log (BfHistory  *self,
            const char *worker)
{
  GQueue *log = g_hash_table_lookup (self->logs, worker);
  g_autofree char *path = NULL;
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  gsize length = 0;
  guint dropped = 0;
  char *line, *next;

  if (log != NULL)
    return log;

  log = g_queue_new ();
  g_hash_table_insert (self->logs, g_strdup (worker), log);

  path = path_of (self, worker);
  if (!g_file_get_contents (path, &contents, &length, &error))
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_warning ("Cannot read the history of worker %s: %s", worker, error->message);
      return log;
    }
  if (length > MAX_FILE_BYTES || memchr (contents, '\0', length) != NULL)
    {
      set_aside (path, length > MAX_FILE_BYTES ? "too large" : "binary data");
      mark_dirty (self, worker);
      return log;
    }

  for (line = contents; line != NULL && *line != '\0'; line = next)
    {
      Event *event;

      next = strchr (line, '\n');
      if (next != NULL)
        *next++ = '\0';
      if (*line == '\0')
        continue;
      event = parse_line (line);
      if (event == NULL)
        {
          dropped++;
          continue;
        }
      g_queue_push_tail (log, event);
    }

  if (dropped > 0)
    {
      g_autofree char *why = g_strdup_printf ("%u unreadable line%s left out", dropped, dropped == 1 ? "" : "s");
      set_aside (path, why);
      mark_dirty (self, worker);
    }
  trim (log, (guint64) g_get_real_time ());
  return log;
}

/* Writing ------------------------------------------------------------------- */

static char *
escape_field (const char *text)
{
  return g_strescape (text != NULL ? text : "", NULL);
}

static GBytes *
serialize (GQueue *log)
{
  GString *out = g_string_new (NULL);

  for (GList *l = log->head; l != NULL; l = l->next)
    {
      Event *event = l->data;
      g_autofree char *e = escape_field (event->event);
      g_autofree char *d = escape_field (event->detail);
      g_autofree char *a = escape_field (event->actor);

      g_string_append_printf (out, "%" G_GUINT64_FORMAT "\t%s\t%s\t%s\n", event->time, e, d, a);
    }
  return g_string_free_to_bytes (out);
}

/* A temporary file renamed over the old one: a reader sees the old or the
 * new version, never half of one.  Not fsync'ed: the history is advisory,
 * and an fsync per worker made an attach storm of 10,000 workers spend a
 * fifth of the daemon's CPU syncing.  A power loss can cost the last
 * events (a file left short is read as far as it is readable); the admin
 * state in bf-state.c stays durable. */
static gboolean
write_atomically (const char  *path,
                  GBytes      *bytes,
                  GError     **error)
{
  gsize len = 0;
  const char *data = g_bytes_get_data (bytes, &len);
  g_autofree char *tmp = g_strconcat (path, ".new", NULL);

  if (!g_file_set_contents_full (tmp, data != NULL ? data : "", len, G_FILE_SET_CONTENTS_NONE, 0640, error))
    return FALSE;
  if (g_rename (tmp, path) != 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "Cannot rename %s: %s", tmp, g_strerror (saved));
      g_unlink (tmp);
      return FALSE;
    }
  return TRUE;
}


typedef struct
{
  char *directory;
  GPtrArray *paths;   /* char* */
  GPtrArray *bytes;   /* GBytes* */
} WriteJob;

static void
write_job_free (WriteJob *job)
{
  g_free (job->directory);
  g_ptr_array_unref (job->paths);
  g_ptr_array_unref (job->bytes);
  g_free (job);
}

static WriteJob *
take_dirty (BfHistory *self)
{
  WriteJob *job = g_new0 (WriteJob, 1);
  GHashTableIter iter;
  gpointer key;

  job->directory = g_strdup (self->directory);
  job->paths = g_ptr_array_new_with_free_func (g_free);
  job->bytes = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_hash_table_iter_init (&iter, self->dirty);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      GQueue *log = g_hash_table_lookup (self->logs, key);

      if (log == NULL)
        continue;
      g_ptr_array_add (job->paths, path_of (self, key));
      g_ptr_array_add (job->bytes, serialize (log));
    }
  g_hash_table_remove_all (self->dirty);
  return job;
}

static gboolean
run_job (WriteJob  *job,
         GError   **error)
{
  g_autoptr(GError) first = NULL;

  if (g_mkdir_with_parents (job->directory, 0750) != 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "Cannot create %s: %s", job->directory, g_strerror (saved));
      return FALSE;
    }
  for (guint i = 0; i < job->paths->len; i++)
    {
      g_autoptr(GError) local = NULL;

      if (!write_atomically (job->paths->pdata[i], job->bytes->pdata[i], &local) && first == NULL)
        first = g_steal_pointer (&local);
    }
  if (first != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&first));
      return FALSE;
    }
  return TRUE;
}

static void
write_thread (GTask        *task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  GError *error = NULL;

  if (run_job (task_data, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void schedule_write (BfHistory *self);

static void
write_done (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  BfHistory *self = BF_HISTORY (source);
  g_autoptr(GError) error = NULL;

  self->writing = FALSE;
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      if (!self->warned)
        g_warning ("Cannot save worker history: %s", error->message);
      self->warned = TRUE;
    }
  else
    self->warned = FALSE;
  if (g_hash_table_size (self->dirty) > 0)
    schedule_write (self);
}

static gboolean
write_cb (gpointer data)
{
  BfHistory *self = data;
  g_autoptr(GTask) task = g_task_new (self, NULL, write_done, NULL);

  self->write_source_id = 0;
  self->writing = TRUE;
  g_task_set_source_tag (task, write_cb);
  g_task_set_name (task, "[buildfleetd] history write");
  g_task_set_task_data (task, take_dirty (self), (GDestroyNotify) write_job_free);
  g_task_run_in_thread (task, write_thread);
  return G_SOURCE_REMOVE;
}

static void
schedule_write (BfHistory *self)
{
  if (self->write_source_id != 0 || self->writing)
    return;
  self->write_source_id = bf_timeout_add (WRITE_DELAY_MS, write_cb, self, "[buildfleetd] history write");
}

static void
mark_dirty (BfHistory  *self,
            const char *worker)
{
  g_hash_table_add (self->dirty, g_strdup (worker));
  schedule_write (self);
}

/* Object -------------------------------------------------------------------- */

static void
bf_history_finalize (GObject *object)
{
  BfHistory *self = BF_HISTORY (object);

  /* No write runs (it would hold a reference): what is left is written now. */
  g_clear_handle_id (&self->write_source_id, g_source_remove);
  if (g_hash_table_size (self->dirty) > 0)
    bf_history_flush (self);
  g_clear_pointer (&self->logs, g_hash_table_unref);
  g_clear_pointer (&self->dirty, g_hash_table_unref);
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
  self->logs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) log_free);
  self->dirty = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

/**
 * bf_history_new:
 * @directory: where the workers' files are
 */
BfHistory *
bf_history_new (const char *directory)
{
  BfHistory *self = g_object_new (BF_TYPE_HISTORY, NULL);

  self->directory = g_strdup (directory);
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
 */
void
bf_history_add (BfHistory  *self,
                const char *worker,
                guint64     time_usec,
                const char *event,
                const char *detail,
                const char *actor)
{
  GQueue *log = ensure_log (self, worker);
  Event *e = g_new0 (Event, 1);

  e->time = MAX (time_usec, 1);
  e->event = clip (event);
  e->detail = clip (detail);
  e->actor = clip (actor);
  g_queue_push_tail (log, e);
  trim (log, time_usec);
  mark_dirty (self, worker);
}

/**
 * bf_history_query:
 * @since_usec: the earliest time wanted
 * @until_usec: the latest time wanted; 0 for no limit
 * @limit: at most this many, the newest; 0 for all
 *
 * Returns: (transfer floating): a(tsss): time, event, detail, actor, oldest
 * first
 */
GVariant *
bf_history_query (BfHistory  *self,
                  const char *worker,
                  guint64     since_usec,
                  guint64     until_usec,
                  guint       limit)
{
  GQueue *log = ensure_log (self, worker);
  g_autoptr(GPtrArray) picked = g_ptr_array_new ();
  GVariantBuilder builder;

  /* Newest first, then reversed: the limit keeps the newest. */
  for (GList *l = log->tail; l != NULL; l = l->prev)
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
  return g_variant_builder_end (&builder);
}

/**
 * bf_history_flush:
 *
 * Writes pending changes now, synchronously.  Only for shutdown.
 */
void
bf_history_flush (BfHistory *self)
{
  WriteJob *job;
  g_autoptr(GError) error = NULL;

  /* A write in a thread holds a reference to us; let it finish first. */
  while (self->writing)
    g_main_context_iteration (NULL, TRUE);
  g_clear_handle_id (&self->write_source_id, g_source_remove);
  if (g_hash_table_size (self->dirty) == 0)
    return;
  job = take_dirty (self);
  if (!run_job (job, &error))
    g_warning ("Cannot save worker history: %s", error->message);
  write_job_free (job);
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

/**
 * bf_history_handle_get_history:
 *
 * Worker.GetHistory(): anyone may read it, as the properties.
 */
gboolean
bf_history_handle_get_history (BfState               *state,
                               BfDBusWorker          *worker,
                               GDBusMethodInvocation *invocation,
                               guint64                since_usec,
                               guint64                until_usec,
                               guint                  limit)
{
  GVariant *events;

  if (until_usec != 0 && until_usec < since_usec)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_INVALID_ARGS,
                                             "until_usec (%" G_GUINT64_FORMAT ") is before since_usec (%"
                                             G_GUINT64_FORMAT ")", until_usec, since_usec);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  events = bf_history_query (bf_history_for_state (state), bf_dbus_worker_get_name (worker),
                             since_usec, until_usec, limit);
  bf_dbus_worker_complete_get_history (worker, invocation, events);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}
