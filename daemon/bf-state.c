/* bf-state.c: admin state persisted across daemon restarts
 *
 * One key file, StateDirectory/workers.state, a group per worker.  Every
 * write runs in a thread and is durable before it counts: a temporary file
 * is written and fsync'ed, renamed over the old one, and the directory is
 * fsync'ed, so the file on disk is always either the old or the new
 * version, never half of each, and a completed write survives a crash.
 *
 * Two kinds of change: bf_state_save_worker_async() is for what an admin
 * asked for (Pause, SetGraceful): it completes only once a write that
 * contains the change is on disk, or fails with that write's error.  Calls
 * that arrive while a write runs are all answered by the next one (one
 * fsync for a burst of calls).  Everything else (last seen, missing) is
 * coalesced: written at most every WRITE_DELAY_MS.
 *
 * A file that cannot be read whole keeps every readable entry: unreadable
 * lines, groups and values are left out and logged, the file is set aside
 * (a hard link, so the original stays in place until the clean version
 * replaces it) and rewritten at once.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bf-state.h"
#include "bf-util.h"

#define STATE_FILE "workers.state"
#define DAEMON_ID_FILE "daemon-id"
#define DAEMON_ID_LEN 32
#define WRITE_DELAY_MS 500
#define MAX_DROPPED_LOGGED 20

struct _BfState
{
  GObject parent_instance;

  char *directory;
  char *path;
  char *daemon_id;        /* see bf_state_get_daemon_id() */
  GHashTable *workers;    /* name -> WorkerEntry* (the key is the entry's) */
  GHashTable *instances;  /* name -> BfInstanceRecord* */
  guint write_source_id;
  gboolean writing;       /* a write runs in a thread */
  GPtrArray *graveyard;   /* WorkerEntry*: replaced or removed while a write
                           * runs, which may still read them; else NULL */
  gboolean dirty;         /* changed since the last write started */
  gboolean warned;        /* a write failed; do not repeat the warning */
  GPtrArray *waiting;     /* GTask: durable changes for the next write */
  GPtrArray *in_flight;   /* GTask: durable changes in the running write */
};

G_DEFINE_FINAL_TYPE (BfState, bf_state, G_TYPE_OBJECT)

void
bf_worker_record_clear (BfWorkerRecord *ws)
{
  g_clear_pointer (&ws->pause_reason, g_free);
  g_clear_pointer (&ws->paused_by, g_free);
}

void
bf_instance_record_free (BfInstanceRecord *record)
{
  g_free (record->driver);
  g_free (record->id);
  if (record->password)
    explicit_bzero (record->password, strlen (record->password));
  g_free (record->password);
  g_free (record);
}

/* One worker's record.  Never changed once in the table (a change replaces
 * it), and one that leaves the table while a write runs is kept until the
 * write is over: a write's snapshot is a copy of the table's pointers, and
 * its thread formats them (formatting 10,000 records took 30-40 ms of the
 * main loop, taking a reference on each 1-2 ms). */
typedef struct {
  BfState *owner;
  char *name;
  BfWorkerRecord record;
} WorkerEntry;

static void
worker_entry_free (gpointer data)
{
  WorkerEntry *e = data;

  g_free (e->name);
  bf_worker_record_clear (&e->record);
  g_free (e);
}

/* The table's value destroy function. */
static void
worker_entry_retire (gpointer data)
{
  WorkerEntry *e = data;

  if (e->owner->graveyard != NULL)
    g_ptr_array_add (e->owner->graveyard, e);
  else
    worker_entry_free (e);
}

/* Takes @name and the strings of @ws. */
static WorkerEntry *
worker_entry_new_take (BfState       *owner,
                       char          *name,
                       BfWorkerRecord ws)
{
  WorkerEntry *e = g_new0 (WorkerEntry, 1);

  e->owner = owner;
  e->name = name;
  e->record = ws;
  return e;
}

/* g_hash_table_replace(), never insert: the key belongs to the entry. */
static void
set_entry (BfState             *self,
           const char          *name,
           const BfWorkerRecord *ws)
{
  BfWorkerRecord copy = *ws;
  WorkerEntry *e;

  copy.pause_reason = g_strdup (ws->pause_reason);
  copy.paused_by = g_strdup (ws->paused_by);
  e = worker_entry_new_take (self, g_strdup (name), copy);
  g_hash_table_replace (self->workers, e->name, e);
}

static void
bf_state_finalize (GObject *object)
{
  BfState *self = BF_STATE (object);

  g_clear_handle_id (&self->write_source_id, g_source_remove);
  g_clear_pointer (&self->workers, g_hash_table_unref);
  g_clear_pointer (&self->graveyard, g_ptr_array_unref);
  g_clear_pointer (&self->instances, g_hash_table_unref);
  g_clear_pointer (&self->waiting, g_ptr_array_unref);
  g_clear_pointer (&self->in_flight, g_ptr_array_unref);
  g_free (self->directory);
  g_free (self->path);
  g_free (self->daemon_id);

  G_OBJECT_CLASS (bf_state_parent_class)->finalize (object);
}

static void
bf_state_class_init (BfStateClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bf_state_finalize;
}

static void
bf_state_init (BfState *self)
{
  self->workers = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, worker_entry_retire);
  self->instances = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify) bf_instance_record_free);
  self->waiting = g_ptr_array_new_with_free_func (g_object_unref);
}

BfState *
bf_state_new (const char *directory)
{
  BfState *self = g_object_new (BF_TYPE_STATE, NULL);

  self->directory = g_strdup (directory);
  self->path = g_build_filename (directory, STATE_FILE, NULL);
  return self;
}

const char *
bf_state_get_directory (BfState *self)
{
  return self->directory;
}

static void schedule_write_after (BfState *self, guint delay_ms);

/**
 * bf_state_set_aside:
 * @what: "State file", …: what the warning calls it
 *
 * Keeps a copy of the corrupt file @path as @path.corrupt-STAMP, with a
 * warning that says @why.  A link, not a rename: the file stays where it
 * is until a clean version replaces it, so a crash in between loses
 * nothing readable.
 */
void
bf_state_set_aside (const char *path,
                    const char *what,
                    const char *why)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  g_autofree char *aside = g_strdup_printf ("%s.corrupt-%s", path, stamp);

  if (link (path, aside) == 0 || (errno == EEXIST && g_unlink (aside) == 0 &&
                                  link (path, aside) == 0))
    g_warning ("%s %s is corrupt (%s); kept a copy as %s", what, path, why, aside);
  else
    g_warning ("%s %s is corrupt (%s) and no copy could be kept: %s",
               what, path, why, g_strerror (errno));
}

static void
set_aside (BfState    *self,
           const char *why)
{
  bf_state_set_aside (self->path, "State file", why);
}

static void
drop (GPtrArray  *dropped,
      const char *format,
      ...) G_GNUC_PRINTF (2, 3);

static void
drop (GPtrArray  *dropped,
      const char *format,
      ...)
{
  va_list args;

  va_start (args, format);
  g_ptr_array_add (dropped, g_strdup_vprintf (format, args));
  va_end (args);
}

/* Whether @line alone is a line GKeyFile accepts, inside a group if
 * @in_group; the reason in @error otherwise. */
static gboolean
line_is_readable (const char  *line,
                  gboolean     in_group,
                  GError     **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autofree char *text = g_strconcat (in_group ? "[G]\n" : "", line, "\n", NULL);

  return g_key_file_load_from_data (kf, text, -1, G_KEY_FILE_NONE, error);
}

/* Returns @text without its unreadable lines, each described in @dropped.
 * The entries of a group whose header is unreadable go with it: they would
 * otherwise land in the group before. */
static char *
keep_readable_lines (const char *text,
                     gsize       len,
                     GPtrArray  *dropped)
{
  g_autoptr(GString) out = g_string_sized_new (len + 1);
  const char *p = text, *end = text + len;
  guint number = 0;
  guint group_line = 0;      /* line of the group header in force, 0 before any */
  gboolean group_ok = FALSE;

  while (p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      gsize n = (nl ? nl : end) - p;
      g_autofree char *line = g_strndup (p, n);
      g_autoptr(GError) error = NULL;
      const char *stripped;

      number++;
      p = nl ? nl + 1 : end;
      if (strlen (line) != n || !g_utf8_validate (line, -1, NULL))
        {
          drop (dropped, "line %u: not UTF-8 text", number);
          continue;
        }
      stripped = line + strspn (line, " \t\r");
      if (*stripped == '\0' || *stripped == '#')
        ;
      else if (*stripped == '[')
        {
          group_ok = line_is_readable (line, FALSE, &error);
          group_line = number;
          if (!group_ok)
            {
              /* GKeyFile's message quotes the line: not in the log, it
               * may hold part of a password. */
              drop (dropped, "line %u: not a valid group header (with the entries that follow it)", number);
              continue;
            }
        }
      else if (group_line == 0)
        {
          drop (dropped, "line %u: an entry before any group", number);
          continue;
        }
      else if (!group_ok)
        {
          drop (dropped, "line %u: an entry of the unreadable group on line %u", number, group_line);
          continue;
        }
      else if (!line_is_readable (line, TRUE, &error))
        {
          drop (dropped, "line %u: not a KEY=VALUE entry", number);
          continue;
        }
      g_string_append_len (out, line, n);
      g_string_append_c (out, '\n');
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static gboolean
get_boolean (GKeyFile   *kf,
             const char *group,
             const char *key,
             GPtrArray  *dropped)
{
  g_autoptr(GError) error = NULL;
  gboolean value;

  if (!g_key_file_has_key (kf, group, key, NULL))
    return FALSE;
  value = g_key_file_get_boolean (kf, group, key, &error);
  if (error)
    drop (dropped, "[%s] %s: an unreadable value", group, key);
  return value;
}

static guint64
get_uint64 (GKeyFile   *kf,
            const char *group,
            const char *key,
            GPtrArray  *dropped)
{
  g_autoptr(GError) error = NULL;
  guint64 value;

  if (!g_key_file_has_key (kf, group, key, NULL))
    return 0;
  value = g_key_file_get_uint64 (kf, group, key, &error);
  if (error)
    drop (dropped, "[%s] %s: an unreadable value", group, key);
  return error ? 0 : value;
}

static char *
get_string (GKeyFile   *kf,
            const char *group,
            const char *key,
            GPtrArray  *dropped)
{
  g_autoptr(GError) error = NULL;
  char *value;

  if (!g_key_file_has_key (kf, group, key, NULL))
    return NULL;
  value = g_key_file_get_string (kf, group, key, &error);
  if (error)
    drop (dropped, "[%s] %s: an unreadable value", group, key);
  return value;
}

static gboolean
daemon_id_is_valid (const char *text)
{
  if (strlen (text) != DAEMON_ID_LEN)
    return FALSE;
  for (const char *c = text; *c; c++)
    if (!g_ascii_isxdigit (*c) || g_ascii_isupper (*c))
      return FALSE;
  return TRUE;
}

/* StateDirectory/daemon-id: read it, or make one and write it atomically.
 * Once, at the first bf_state_get_daemon_id() (the manager asks when it
 * starts listening, before any instance starts). */
static void
load_daemon_id (BfState *self)
{
  g_autofree char *path = g_build_filename (self->directory, DAEMON_ID_FILE, NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) id = NULL;
  g_autoptr(GBytes) bytes = NULL;

  if (g_file_get_contents (path, &text, NULL, &error))
    {
      g_strstrip (text);
      if (daemon_id_is_valid (text))
        {
          self->daemon_id = g_steal_pointer (&text);
          return;
        }
      g_warning ("%s does not hold a daemon id (%d lowercase hex digits); making a new one: "
                 "instances labelled with the old one are no longer this daemon's", path, DAEMON_ID_LEN);
    }
  else if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    g_warning ("Cannot read %s: %s; making a new daemon id", path, error->message);

  id = g_string_sized_new (DAEMON_ID_LEN + 1);
  for (guint i = 0; i < DAEMON_ID_LEN / 8; i++)
    g_string_append_printf (id, "%08" G_GINT32_MODIFIER "x", g_random_int ());
  g_string_append_c (id, '\n');
  bytes = g_bytes_new (id->str, id->len);
  g_clear_error (&error);
  if (!bf_state_write_file (self->directory, path, bytes, &error))
    g_warning ("%s; a restarted daemon will not recognise the instances this one starts", error->message);
  g_string_truncate (id, DAEMON_ID_LEN);
  self->daemon_id = g_string_free (g_steal_pointer (&id), FALSE);
}

/**
 * bf_state_get_daemon_id:
 *
 * Returns: this daemon's persistent id: DAEMON_ID_LEN random lowercase hex
 *   digits kept in StateDirectory/daemon-id, made on the first start.
 *   Drivers label every instance they start with it, so that a restarted
 *   daemon finds its own instances and never touches anybody else's.
 */
const char *
bf_state_get_daemon_id (BfState *self)
{
  if (self->daemon_id == NULL)
    load_daemon_id (self);
  return self->daemon_id;
}

/**
 * bf_state_load:
 *
 * Reads the state file, if any.  Never fails: a missing file is an empty
 * state; of a damaged one, every readable entry is kept, what was left out
 * is logged and the file is set aside and rewritten.
 */
void
bf_state_load (BfState *self)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) dropped = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *contents = NULL;
  g_autofree char *readable = NULL;
  g_auto(GStrv) groups = NULL;
  gsize len = 0;

  if (g_mkdir_with_parents (self->directory, 0700) != 0)
    g_warning ("Cannot create state directory %s: %s; admin state will not survive a restart",
               self->directory, g_strerror (errno));

  if (!g_file_get_contents (self->path, &contents, &len, &error))
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_warning ("Cannot read state file %s: %s", self->path, error->message);
      return;
    }

  readable = keep_readable_lines (contents, len, dropped);
  if (!g_key_file_load_from_data (kf, readable, -1, G_KEY_FILE_NONE, &error))
    {
      /* Not expected: every line passed on its own. */
      drop (dropped, "the rest of the file (%s)", g_quark_to_string (error->domain));
      g_clear_error (&error);
      g_key_file_load_from_data (kf, "", -1, G_KEY_FILE_NONE, NULL);
    }

  groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    {
      BfWorkerRecord ws = { 0 };
      WorkerEntry *e;
      const char *name;

      if (g_str_has_prefix (groups[i], "Instance "))
        {
          BfInstanceRecord *r = g_new0 (BfInstanceRecord, 1);
          r->driver = get_string (kf, groups[i], "Driver", dropped);
          r->id = get_string (kf, groups[i], "Id", dropped);
          r->password = get_string (kf, groups[i], "Password", dropped);
          if (r->driver && r->id)
            g_hash_table_replace (self->instances, g_strdup (groups[i] + strlen ("Instance ")), r);
          else
            bf_instance_record_free (r);
          continue;
        }
      if (!g_str_has_prefix (groups[i], "Worker "))
        continue;
      name = groups[i] + strlen ("Worker ");
      ws.graceful = get_boolean (kf, groups[i], "Graceful", dropped);
      ws.paused = get_boolean (kf, groups[i], "Paused", dropped);
      ws.pause_reason = get_string (kf, groups[i], "PauseReason", dropped);
      ws.paused_by = get_string (kf, groups[i], "PausedBy", dropped);
      ws.paused_since_usec = get_uint64 (kf, groups[i], "PausedSinceUSec", dropped);
      ws.last_seen_usec = get_uint64 (kf, groups[i], "LastSeenUSec", dropped);
      ws.disconnected_since_usec = get_uint64 (kf, groups[i], "DisconnectedSinceUSec", dropped);
      ws.missing_notified = get_boolean (kf, groups[i], "MissingNotified", dropped);
      e = worker_entry_new_take (self, g_strdup (name), ws);
      g_hash_table_replace (self->workers, e->name, e);
    }

  if (dropped->len > 0)
    {
      g_autofree char *why = g_strdup_printf ("%u unreadable %s left out, the rest kept", dropped->len,
                                              dropped->len == 1 ? "entry" : "entries");

      for (guint i = 0; i < dropped->len && i < MAX_DROPPED_LOGGED; i++)
        g_warning ("State file %s: left out %s", self->path, (char *) g_ptr_array_index (dropped, i));
      if (dropped->len > MAX_DROPPED_LOGGED)
        g_warning ("State file %s: and %u more", self->path, dropped->len - MAX_DROPPED_LOGGED);
      set_aside (self, why);
      schedule_write_after (self, 0);
    }
}

gboolean
bf_state_get_worker (BfState       *self,
                     const char    *name,
                     BfWorkerRecord *out)
{
  WorkerEntry *e = g_hash_table_lookup (self->workers, name);
  const BfWorkerRecord *ws;

  if (e == NULL)
    return FALSE;
  ws = &e->record;
  *out = *ws;
  out->pause_reason = g_strdup (ws->pause_reason);
  out->paused_by = g_strdup (ws->paused_by);
  return TRUE;
}

static gboolean write_cb (gpointer data);

static void
schedule_write_after (BfState *self,
                      guint    delay_ms)
{
  self->dirty = TRUE;
  if (self->writing)
    return;   /* write_done() schedules the next one */
  if (self->write_source_id != 0 && delay_ms > 0)
    return;
  g_clear_handle_id (&self->write_source_id, g_source_remove);
  self->write_source_id = bf_timeout_add (delay_ms, write_cb, self, "[buildfleetd] state write");
}

/* Coalesced: an attach storm of thousands of workers is a few writes. */
static void
schedule_write (BfState *self)
{
  schedule_write_after (self, WRITE_DELAY_MS);
}

void
bf_state_set_worker (BfState             *self,
                     const char          *name,
                     const BfWorkerRecord *ws)
{
  set_entry (self, name, ws);
  schedule_write (self);
}

/**
 * bf_state_save_worker_async:
 *
 * Like bf_state_set_worker(), for a change somebody is waiting for:
 * @callback runs once a write that contains the change is on disk (fsync'ed,
 * renamed, directory fsync'ed), or failed.  If it failed, the entry keeps
 * the new value in memory: the caller puts back what it publishes (with
 * bf_state_set_worker()) so that a later write does not persist a change
 * that was refused.
 */
void
bf_state_save_worker_async (BfState             *self,
                            const char          *name,
                            const BfWorkerRecord *ws,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  GTask *task = g_task_new (self, NULL, callback, user_data);

  g_task_set_source_tag (task, bf_state_save_worker_async);
  set_entry (self, name, ws);
  g_ptr_array_add (self->waiting, task);
  schedule_write_after (self, 0);
}

gboolean
bf_state_save_worker_finish (BfState       *self,
                             GAsyncResult  *result,
                             GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
bf_state_remove_worker (BfState    *self,
                        const char *name)
{
  if (g_hash_table_remove (self->workers, name))
    schedule_write (self);
}

/* The worker entries as they are now (WorkerEntry*, not owned; see
 * WorkerEntry): all the main loop does for a write, however many workers
 * there are. */
static GPtrArray *
snapshot_workers (BfState *self)
{
  GPtrArray *entries = g_ptr_array_new_full (g_hash_table_size (self->workers), NULL);
  GHashTableIter iter;
  gpointer e;

  g_hash_table_iter_init (&iter, self->workers);
  while (g_hash_table_iter_next (&iter, NULL, &e))
    g_ptr_array_add (entries, e);
  return entries;
}

static int
compare_entries (gconstpointer a,
                 gconstpointer b)
{
  const WorkerEntry *ea = *(WorkerEntry **) a, *eb = *(WorkerEntry **) b;

  return strcmp (ea->name, eb->name);
}

static char *serialize_instances (BfState *self);

/* Any thread: @entries (a snapshot, sorted here) and the instances' text. */
static GBytes *
serialize (GPtrArray  *entries,
           const char *instances)
{
  g_autoptr(GString) s = g_string_sized_new (128 * entries->len + 128 + strlen (instances));

  g_string_append (s, "# buildfleetd admin state; written by the daemon, do not edit while it runs\n");
  g_ptr_array_sort (entries, compare_entries);
  for (guint i = 0; i < entries->len; i++)
    {
      const WorkerEntry *e = g_ptr_array_index (entries, i);
      const BfWorkerRecord *ws = &e->record;
      g_autoptr(GKeyFile) one = NULL;
      g_autofree char *group = NULL;
      g_autofree char *text = NULL;

      /* Nearly every record has no free text: written directly, as
       * GKeyFile would (a key file per record was most of the first
       * write's CPU with 50,000 workers; test-state-format.c). */
      if (!(ws->pause_reason && *ws->pause_reason) && !(ws->paused && ws->paused_by && *ws->paused_by))
        {
          g_string_append_printf (s, "\n[Worker %s]\nGraceful=%s\nPaused=%s\n", e->name,
                                  ws->graceful ? "true" : "false", ws->paused ? "true" : "false");
          if (ws->paused && ws->paused_since_usec != 0)
            g_string_append_printf (s, "PausedSinceUSec=%" G_GUINT64_FORMAT "\n", ws->paused_since_usec);
          g_string_append_printf (s, "LastSeenUSec=%" G_GUINT64_FORMAT "\nDisconnectedSinceUSec=%"
                                  G_GUINT64_FORMAT "\nMissingNotified=%s\n",
                                  ws->last_seen_usec, ws->disconnected_since_usec,
                                  ws->missing_notified ? "true" : "false");
          continue;
        }

      /* GKeyFile escapes the free-text reason for us. */
      one = g_key_file_new ();
      group = g_strconcat ("Worker ", e->name, NULL);
      g_key_file_set_boolean (one, group, "Graceful", ws->graceful);
      g_key_file_set_boolean (one, group, "Paused", ws->paused);
      if (ws->pause_reason && *ws->pause_reason)
        g_key_file_set_string (one, group, "PauseReason", ws->pause_reason);
      if (ws->paused && ws->paused_by && *ws->paused_by)
        g_key_file_set_string (one, group, "PausedBy", ws->paused_by);
      if (ws->paused && ws->paused_since_usec != 0)
        g_key_file_set_uint64 (one, group, "PausedSinceUSec", ws->paused_since_usec);
      g_key_file_set_uint64 (one, group, "LastSeenUSec", ws->last_seen_usec);
      g_key_file_set_uint64 (one, group, "DisconnectedSinceUSec", ws->disconnected_since_usec);
      g_key_file_set_boolean (one, group, "MissingNotified", ws->missing_notified);
      text = g_key_file_to_data (one, NULL, NULL);
      g_string_append_c (s, '\n');
      g_string_append (s, text);
    }
  g_string_append (s, instances);
  return g_string_free_to_bytes (g_steal_pointer (&s));
}

/* Main thread: the latent instances are few (and hold passwords, which are
 * not worth sharing with a thread by reference). */
static char *
serialize_instances (BfState *self)
{
  g_autoptr(GString) s = g_string_new (NULL);

  {
    g_autoptr(GList) inames = g_hash_table_get_keys (self->instances);
    inames = g_list_sort (inames, (GCompareFunc) g_strcmp0);
    for (GList *l = inames; l; l = l->next)
      {
        BfInstanceRecord *r = g_hash_table_lookup (self->instances, l->data);
        g_autoptr(GKeyFile) one = g_key_file_new ();
        g_autofree char *group = g_strconcat ("Instance ", (char *) l->data, NULL);
        g_autofree char *text = NULL;

        g_key_file_set_string (one, group, "Driver", r->driver);
        g_key_file_set_string (one, group, "Id", r->id);
        if (r->password)
          g_key_file_set_string (one, group, "Password", r->password);
        text = g_key_file_to_data (one, NULL, NULL);
        g_string_append_c (s, '\n');
        g_string_append (s, text);
      }
  }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/**
 * bf_state_set_instance:
 *
 * Records a started latent instance (the file is 0600 in a 0700
 * directory: a generated password is kept so the instance can be adopted).
 */
void
bf_state_set_instance (BfState    *self,
                       const char *name,
                       const char *driver,
                       const char *id,
                       const char *password)
{
  BfInstanceRecord *r = g_new0 (BfInstanceRecord, 1);

  r->driver = g_strdup (driver);
  r->id = g_strdup (id);
  r->password = g_strdup (password);
  g_hash_table_replace (self->instances, g_strdup (name), r);
  /* At once: a daemon killed right after starting an instance must still
   * find its record. */
  schedule_write_after (self, 0);
}

void
bf_state_remove_instance (BfState    *self,
                          const char *name)
{
  if (g_hash_table_remove (self->instances, name))
    schedule_write (self);
}

/**
 * bf_state_get_instances:
 *
 * Returns: (transfer none): name -> BfInstanceRecord
 */
GHashTable *
bf_state_get_instances (BfState *self)
{
  return self->instances;
}

/**
 * bf_state_write_file:
 * @directory: the directory of @path, created if need be
 *
 * Replaces @path by @bytes durably, from any thread: temporary file,
 * fsync, rename, fsync of the directory.  The error says what could not
 * be saved where, and why, in words fit for a D-Bus reply.
 */
gboolean
bf_state_write_file (const char  *directory,
                     const char  *path,
                     GBytes      *bytes,
                     GError     **error)
{
  g_autofree char *tmp = g_strconcat (path, ".XXXXXX", NULL);
  gsize len = 0;
  const char *data = g_bytes_get_data (bytes, &len);
  gsize done = 0;
  int fd = -1, dfd;
  int saved;

  if (g_mkdir_with_parents (directory, 0700) != 0)
    goto fail;
  fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0)
    goto fail;
  while (done < len)
    {
      gssize n = write (fd, data + done, len - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        goto fail_unlink;
      done += n;
    }
  if (fsync (fd) != 0)
    goto fail_unlink;
  saved = close (fd);
  fd = -1;
  if (saved != 0 || rename (tmp, path) != 0)
    goto fail_unlink;
  dfd = open (directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    goto fail;
  /* Some file systems cannot sync a directory; nothing more to do there. */
  if (fsync (dfd) != 0 && errno != EINVAL)
    {
      saved = errno;
      close (dfd);
      errno = saved;
      goto fail;
    }
  close (dfd);
  return TRUE;

fail_unlink:
  saved = errno;
  if (fd >= 0)
    close (fd);
  g_unlink (tmp);
  errno = saved;
fail:
  saved = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
               "cannot save the state to %s: %s", path, g_strerror (saved));
  return FALSE;
}

typedef struct {
  char *directory;
  char *path;
  GPtrArray *entries;     /* WorkerEntry*, a snapshot (see WorkerEntry) */
  char *instances;        /* their text, already formatted */
} WriteJob;

static void
write_job_free (WriteJob *job)
{
  g_free (job->directory);
  g_free (job->path);
  g_ptr_array_unref (job->entries);
  if (job->instances)
    explicit_bzero (job->instances, strlen (job->instances));
  g_free (job->instances);
  g_free (job);
}

static void
write_thread (GTask        *task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  WriteJob *job = task_data;
  g_autoptr(GBytes) bytes = serialize (job->entries, job->instances);
  GError *error = NULL;

  if (bf_state_write_file (job->directory, job->path, bytes, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/* Answers every call whose change was in the write that ended. */
static void
complete_waiters (GPtrArray    *waiters,
                  const GError *error)
{
  for (guint i = 0; i < waiters->len; i++)
    {
      GTask *task = g_ptr_array_index (waiters, i);
      if (error)
        g_task_return_error (task, g_error_copy (error));
      else
        g_task_return_boolean (task, TRUE);
    }
}

static void
write_done (GObject      *object,
            GAsyncResult *result,
            gpointer      user_data)
{
  BfState *self = BF_STATE (object);
  g_autoptr(GPtrArray) waiters = g_steal_pointer (&self->in_flight);
  g_autoptr(GError) error = NULL;

  self->writing = FALSE;
  g_clear_pointer (&self->graveyard, g_ptr_array_unref);
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      if (!self->warned)
        g_warning ("Cannot save admin state: %s", error->message);
      self->warned = TRUE;
    }
  else
    self->warned = FALSE;

  /* Calls that came in during this write wait for the next, at once. */
  if (self->waiting->len > 0)
    schedule_write_after (self, 0);
  else if (self->dirty)
    schedule_write (self);
  if (waiters)
    complete_waiters (waiters, error);
}

static gboolean
write_cb (gpointer data)
{
  BfState *self = data;
  g_autoptr(GTask) task = g_task_new (self, NULL, write_done, NULL);
  WriteJob *job = g_new0 (WriteJob, 1);

  self->write_source_id = 0;
  self->dirty = FALSE;
  self->writing = TRUE;
  self->graveyard = g_ptr_array_new_with_free_func (worker_entry_free);
  self->in_flight = g_steal_pointer (&self->waiting);
  self->waiting = g_ptr_array_new_with_free_func (g_object_unref);
  job->directory = g_strdup (self->directory);
  job->path = g_strdup (self->path);
  job->entries = snapshot_workers (self);
  job->instances = serialize_instances (self);
  g_task_set_source_tag (task, write_cb);
  g_task_set_name (task, "[buildfleetd] state write");
  g_task_set_task_data (task, job, (GDestroyNotify) write_job_free);
  g_task_run_in_thread (task, write_thread);
  return G_SOURCE_REMOVE;
}

/**
 * bf_state_flush:
 *
 * Writes pending changes now, synchronously.  Only for shutdown, after the
 * main loop stopped.
 */
void
bf_state_flush (BfState *self)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) waiters = NULL;
  g_autoptr(GPtrArray) entries = NULL;
  g_autofree char *instances = NULL;

  /* A write in a thread holds a reference to us; let it finish first. */
  while (self->writing)
    g_main_context_iteration (NULL, TRUE);
  if (!self->dirty)
    return;
  g_clear_handle_id (&self->write_source_id, g_source_remove);
  self->dirty = FALSE;
  waiters = g_steal_pointer (&self->waiting);
  self->waiting = g_ptr_array_new_with_free_func (g_object_unref);
  entries = snapshot_workers (self);
  instances = serialize_instances (self);
  bytes = serialize (entries, instances);
  if (!bf_state_write_file (self->directory, self->path, bytes, &error))
    g_warning ("Cannot save admin state: %s", error->message);
  complete_waiters (waiters, error);
}
