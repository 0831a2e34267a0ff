/* bf-state.c: admin state persisted across daemon restarts
 *
 * One key file, StateDirectory/workers.state, a group per worker.  Changes
 * are coalesced: the file is rewritten at most every WRITE_DELAY_MS, in a
 * thread (g_file_set_contents_full with CONSISTENT: write a temporary file,
 * fsync, rename), so the main loop never waits for the disk and the file on
 * disk is always either the old or the new version, never half of each.
 * A file that cannot be parsed is renamed aside and reported, never fatal.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <glib/gstdio.h>

#include "bf-state.h"
#include "bf-util.h"

#define STATE_FILE "workers.state"
#define WRITE_DELAY_MS 500

struct _BfState
{
  GObject parent_instance;

  char *directory;
  char *path;
  GHashTable *workers;    /* name -> BfWorkerState* */
  GHashTable *instances;  /* name -> BfInstanceRecord* */
  guint write_source_id;
  gboolean writing;       /* a write runs in a thread */
  gboolean dirty;         /* changed since the last write started */
  gboolean warned;        /* a write failed; do not repeat the warning */
};

G_DEFINE_FINAL_TYPE (BfState, bf_state, G_TYPE_OBJECT)

void
bf_worker_state_clear (BfWorkerState *ws)
{
  g_clear_pointer (&ws->pause_reason, g_free);
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

static void
worker_state_free (BfWorkerState *ws)
{
  bf_worker_state_clear (ws);
  g_free (ws);
}

static void
bf_state_finalize (GObject *object)
{
  BfState *self = BF_STATE (object);

  g_clear_handle_id (&self->write_source_id, g_source_remove);
  g_clear_pointer (&self->workers, g_hash_table_unref);
  g_clear_pointer (&self->instances, g_hash_table_unref);
  g_free (self->directory);
  g_free (self->path);

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
  self->workers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) worker_state_free);
  self->instances = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify) bf_instance_record_free);
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

static void
set_aside (BfState    *self,
           const char *why)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  g_autofree char *aside = g_strdup_printf ("%s.corrupt-%s", self->path, stamp);

  if (g_rename (self->path, aside) == 0)
    g_warning ("State file %s is corrupt (%s); moved it to %s and started with empty state",
               self->path, why, aside);
  else
    g_warning ("State file %s is corrupt (%s) and could not be moved aside: %s",
               self->path, why, g_strerror (errno));
}

/**
 * bf_state_load:
 *
 * Reads the state file, if any.  Never fails: a missing file is an empty
 * state, a corrupt one is set aside with a warning.
 */
void
bf_state_load (BfState *self)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) groups = NULL;

  if (g_mkdir_with_parents (self->directory, 0700) != 0)
    g_warning ("Cannot create state directory %s: %s; admin state will not survive a restart",
               self->directory, g_strerror (errno));

  if (!g_key_file_load_from_file (kf, self->path, G_KEY_FILE_NONE, &error))
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          if (error->domain == G_KEY_FILE_ERROR)
            set_aside (self, error->message);
          else
            g_warning ("Cannot read state file %s: %s", self->path, error->message);
        }
      return;
    }

  groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    {
      g_autoptr(GError) local_error = NULL;
      BfWorkerState *ws;
      const char *name;

      if (g_str_has_prefix (groups[i], "Instance "))
        {
          BfInstanceRecord *r = g_new0 (BfInstanceRecord, 1);
          r->driver = g_key_file_get_string (kf, groups[i], "Driver", NULL);
          r->id = g_key_file_get_string (kf, groups[i], "Id", NULL);
          r->password = g_key_file_get_string (kf, groups[i], "Password", NULL);
          if (r->driver && r->id)
            g_hash_table_replace (self->instances, g_strdup (groups[i] + strlen ("Instance ")), r);
          else
            bf_instance_record_free (r);
          continue;
        }
      if (!g_str_has_prefix (groups[i], "Worker "))
        continue;
      name = groups[i] + strlen ("Worker ");
      ws = g_new0 (BfWorkerState, 1);
      ws->graceful = g_key_file_get_boolean (kf, groups[i], "Graceful", NULL);
      ws->paused = g_key_file_get_boolean (kf, groups[i], "Paused", NULL);
      ws->pause_reason = g_key_file_get_string (kf, groups[i], "PauseReason", NULL);
      ws->last_seen_usec = g_key_file_get_uint64 (kf, groups[i], "LastSeenUSec", NULL);
      ws->disconnected_since_usec = g_key_file_get_uint64 (kf, groups[i], "DisconnectedSinceUSec", NULL);
      ws->missing_notified = g_key_file_get_boolean (kf, groups[i], "MissingNotified", NULL);
      g_hash_table_replace (self->workers, g_strdup (name), ws);
    }
}

gboolean
bf_state_get_worker (BfState       *self,
                     const char    *name,
                     BfWorkerState *out)
{
  BfWorkerState *ws = g_hash_table_lookup (self->workers, name);

  if (ws == NULL)
    return FALSE;
  *out = *ws;
  out->pause_reason = g_strdup (ws->pause_reason);
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
                     const BfWorkerState *ws)
{
  BfWorkerState *copy = g_new0 (BfWorkerState, 1);

  *copy = *ws;
  copy->pause_reason = g_strdup (ws->pause_reason);
  g_hash_table_replace (self->workers, g_strdup (name), copy);
  schedule_write (self);
}

void
bf_state_remove_worker (BfState    *self,
                        const char *name)
{
  if (g_hash_table_remove (self->workers, name))
    schedule_write (self);
}

static GBytes *
serialize (BfState *self)
{
  g_autoptr(GString) s = g_string_sized_new (128 * g_hash_table_size (self->workers) + 128);
  g_autoptr(GList) names = g_hash_table_get_keys (self->workers);

  g_string_append (s, "# buildfleetd admin state; written by the daemon, do not edit while it runs\n");
  names = g_list_sort (names, (GCompareFunc) g_strcmp0);
  for (GList *l = names; l; l = l->next)
    {
      BfWorkerState *ws = g_hash_table_lookup (self->workers, l->data);
      g_autoptr(GKeyFile) one = g_key_file_new ();
      g_autofree char *group = g_strconcat ("Worker ", (char *) l->data, NULL);
      g_autofree char *text = NULL;

      /* GKeyFile escapes the free-text reason for us. */
      g_key_file_set_boolean (one, group, "Graceful", ws->graceful);
      g_key_file_set_boolean (one, group, "Paused", ws->paused);
      if (ws->pause_reason && *ws->pause_reason)
        g_key_file_set_string (one, group, "PauseReason", ws->pause_reason);
      g_key_file_set_uint64 (one, group, "LastSeenUSec", ws->last_seen_usec);
      g_key_file_set_uint64 (one, group, "DisconnectedSinceUSec", ws->disconnected_since_usec);
      g_key_file_set_boolean (one, group, "MissingNotified", ws->missing_notified);
      text = g_key_file_to_data (one, NULL, NULL);
      g_string_append_c (s, '\n');
      g_string_append (s, text);
    }
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
  return g_string_free_to_bytes (g_steal_pointer (&s));
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

static void
write_thread (GTask        *task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  BfState *self = source_object;
  GBytes *bytes = task_data;
  GError *error = NULL;

  if (g_file_set_contents_full (self->path,
                                g_bytes_get_data (bytes, NULL),
                                g_bytes_get_size (bytes),
                                G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
write_done (GObject      *object,
            GAsyncResult *result,
            gpointer      user_data)
{
  BfState *self = BF_STATE (object);
  g_autoptr(GError) error = NULL;

  self->writing = FALSE;
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      if (!self->warned)
        g_warning ("Cannot save admin state to %s: %s", self->path, error->message);
      self->warned = TRUE;
    }
  else
    self->warned = FALSE;

  if (self->dirty)
    schedule_write (self);
}

static gboolean
write_cb (gpointer data)
{
  BfState *self = data;
  g_autoptr(GTask) task = g_task_new (self, NULL, write_done, NULL);

  self->write_source_id = 0;
  self->dirty = FALSE;
  self->writing = TRUE;
  g_task_set_source_tag (task, write_cb);
  g_task_set_name (task, "[buildfleetd] state write");
  g_task_set_task_data (task, serialize (self), (GDestroyNotify) g_bytes_unref);
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

  /* A write in a thread holds a reference to us; let it finish first. */
  while (self->writing)
    g_main_context_iteration (NULL, TRUE);
  if (!self->dirty)
    return;
  g_clear_handle_id (&self->write_source_id, g_source_remove);
  self->dirty = FALSE;
  bytes = serialize (self);
  if (!g_file_set_contents_full (self->path, g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes),
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_warning ("Cannot save admin state to %s: %s", self->path, error->message);
}
