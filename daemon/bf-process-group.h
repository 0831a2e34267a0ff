/* bf-process-group.h: commands that run, and are stopped, as a whole
 *
 * A command the daemon runs (MailCommand, StartCommand, StopCommand,
 * create-worker) may fork: a shell script's children, a helper sent to the
 * background.  Killing only the direct child leaves those running, and
 * they keep the pipes the daemon reads open, so the daemon's descriptors
 * leak with them.  Such commands are therefore started as the leader of a
 * session of their own (setsid in the child), and giving up on one stops
 * its whole process group:
 *
 *   - bf_process_group_launcher_new() makes a launcher whose children
 *     start a new session; the group id is the child's pid;
 *   - bf_process_group_stop_async() sends SIGTERM to every process of the
 *     group, SIGKILL to whatever is left of it after @grace_ms, and
 *     completes once no process of the group runs (zombies waiting for
 *     their reaper do not count), or shortly after SIGKILL in any case.
 *
 * A process that leaves the group on purpose (setsid, setpgid: a daemon)
 * is not followed; nothing short of a cgroup could.  Never blocks: the
 * group is polled from a timer owned by the stop's GTask.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

GSubprocessLauncher *bf_process_group_launcher_new (GSubprocessFlags     flags);
GPid                 bf_process_group_get_id       (GSubprocess         *process);
gboolean             bf_process_group_is_running   (GPid                 pgid);
void                 bf_process_group_stop_async   (GPid                 pgid,
                                                    guint                grace_ms,
                                                    GAsyncReadyCallback  callback,
                                                    gpointer             user_data);
gboolean             bf_process_group_stop_finish  (GAsyncResult        *result,
                                                    gboolean            *out_killed,
                                                    GError             **error);

G_END_DECLS
