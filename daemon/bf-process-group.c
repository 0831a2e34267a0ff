/* bf-process-group.c: commands that run, and are stopped, as a whole
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bf-process-group.h"
#include "bf-util.h"

#define POLL_MS 100
/* kill(2) cannot tell a live process from a zombie its reaper has not
 * collected yet; /proc can, at the price of a scan: once every SCAN_EVERY
 * polls. */
#define SCAN_EVERY 5
/* SIGKILL cannot be refused; what is still there after this is a zombie
 * or a process we may not signal. */
#define AFTER_KILL_MS 2000

static void
child_setup (gpointer data)
{
  /* A session of its own makes the child the leader of a new process
   * group (and detaches it from any terminal of ours). */
  setsid ();
}

/**
 * bf_process_group_launcher_new:
 *
 * Returns: (transfer full): a launcher whose children each lead a new
 *   session and process group, whose id is their pid.
 */
GSubprocessLauncher *
bf_process_group_launcher_new (GSubprocessFlags flags)
{
  GSubprocessLauncher *launcher = g_subprocess_launcher_new (flags);

  g_subprocess_launcher_set_child_setup (launcher, child_setup, NULL, NULL);
  return launcher;
}

/**
 * bf_process_group_get_id:
 *
 * Returns: the process group of a child started with a launcher from
 *   bf_process_group_launcher_new(), or 0 once it has been reaped.  Take
 *   it right after the spawn.
 */
GPid
bf_process_group_get_id (GSubprocess *process)
{
  const char *id = g_subprocess_get_identifier (process);
  gint64 pid = id ? g_ascii_strtoll (id, NULL, 10) : 0;

  return pid > 1 && pid <= G_MAXINT ? (GPid) pid : 0;
}

static gboolean
group_has_members (GPid pgid)
{
  return kill (-pgid, 0) == 0 || errno != ESRCH;
}

/**
 * bf_process_group_is_running:
 *
 * Returns: whether a process of group @pgid runs; zombies do not count.
 */
gboolean
bf_process_group_is_running (GPid pgid)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  if (pgid <= 1 || !group_has_members (pgid))
    return FALSE;
  dir = g_dir_open ("/proc", 0, NULL);
  if (dir == NULL)
    return TRUE;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autofree char *stat = NULL;
      const char *end;
      char state;
      long long pgrp;

      if (!g_ascii_isdigit (name[0]))
        continue;
      path = g_strconcat ("/proc/", name, "/stat", NULL);
      if (!g_file_get_contents (path, &stat, NULL, NULL))
        continue;
      /* "pid (comm) state ppid pgrp ...": comm may hold anything but
       * the last ')'. */
      end = strrchr (stat, ')');
      if (end == NULL || sscanf (end + 1, " %c %*d %lld", &state, &pgrp) != 2)
        continue;
      if (pgrp == pgid && state != 'Z' && state != 'X')
        return TRUE;
    }
  return FALSE;
}

typedef struct {
  GPid pgid;
  gint64 kill_at;
  gint64 give_up_at;
  guint polls;
  gboolean killed;
  guint poll_id;
} StopData;

static void
stop_data_free (StopData *d)
{
  g_clear_handle_id (&d->poll_id, g_source_remove);
  g_free (d);
}

static gboolean
stop_poll_cb (gpointer data)
{
  GTask *task = data;
  StopData *d = g_task_get_task_data (task);
  gint64 now = g_get_monotonic_time ();
  gboolean running;

  d->polls++;
  if (!group_has_members (d->pgid))
    running = FALSE;
  else if (!d->killed && now >= d->kill_at)
    running = bf_process_group_is_running (d->pgid);
  else if (d->killed && now >= d->give_up_at)
    running = FALSE;
  else if (d->polls % SCAN_EVERY == 0)
    running = bf_process_group_is_running (d->pgid);
  else
    return G_SOURCE_CONTINUE;

  if (running && !d->killed && now >= d->kill_at)
    {
      kill (-d->pgid, SIGKILL);
      d->killed = TRUE;
      d->give_up_at = now + AFTER_KILL_MS * 1000;
      return G_SOURCE_CONTINUE;
    }
  if (running)
    return G_SOURCE_CONTINUE;

  d->poll_id = 0;
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

/**
 * bf_process_group_stop_async:
 * @pgid: the group, from bf_process_group_get_id()
 * @grace_ms: how long SIGTERM has before SIGKILL; 0 kills at once
 *
 * Stops every process of the group; see the header.  Never fails.
 */
void
bf_process_group_stop_async (GPid                 pgid,
                             guint                grace_ms,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, NULL, callback, user_data);
  StopData *d = g_new0 (StopData, 1);

  g_task_set_source_tag (task, bf_process_group_stop_async);
  g_task_set_task_data (task, d, (GDestroyNotify) stop_data_free);
  d->pgid = pgid;
  d->kill_at = g_get_monotonic_time () + (gint64) grace_ms * 1000;
  if (pgid <= 1 || !group_has_members (pgid))
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (grace_ms == 0)
    {
      kill (-pgid, SIGKILL);
      d->killed = TRUE;
      d->give_up_at = d->kill_at + AFTER_KILL_MS * 1000;
    }
  else
    {
      kill (-pgid, SIGTERM);
      kill (-pgid, SIGCONT);    /* a stopped process only sees SIGTERM once continued */
    }
  d->poll_id = bf_timeout_add (POLL_MS, stop_poll_cb, g_object_ref (task),
                               "[buildfleetd] process group stop");
}

/**
 * bf_process_group_stop_finish:
 * @out_killed: (out) (optional): whether SIGKILL was needed
 */
gboolean
bf_process_group_stop_finish (GAsyncResult  *result,
                              gboolean      *out_killed,
                              GError       **error)
{
  StopData *d = g_task_get_task_data (G_TASK (result));

  if (out_killed)
    *out_killed = d->killed;
  return g_task_propagate_boolean (G_TASK (result), error);
}
