/* bf-ctl.h: what the rooms of buildfleetctl share
 *
 * buildfleetctl is a client of the generated proxies (the XML files in data/), like
 * the monitor.  main.c parses the command line into a BfCtl and calls one
 * command function; every command returns an exit code from BfCtlExit
 * (run returns the remote command's code) and prints its own errors.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

#define BF_CTL_BUS_NAME     "org.buildfleet.Fleet1"
#define BF_CTL_FLEET_PATH   "/org/buildfleet/Fleet1"
#define BF_CTL_BUILDS_PATH  "/org/buildfleet/Fleet1/builds"
#define BF_CTL_WORKERS_PATH "/org/buildfleet/Fleet1/workers"

/* The exit codes scripts may rely on (buildfleetctl(1), EXIT STATUS). */
typedef enum {
  BF_CTL_EXIT_OK = 0,
  BF_CTL_EXIT_FAILED = 1,        /* the daemon could not do it (Failed, Busy, NotConnected...) */
  BF_CTL_EXIT_USAGE = 2,         /* wrong command line, or arguments the daemon rejected */
  BF_CTL_EXIT_NOT_FOUND = 3,     /* no such worker, builder or build */
  BF_CTL_EXIT_DENIED = 4,        /* not authorised (polkit said no) */
  BF_CTL_EXIT_UNAVAILABLE = 5,   /* no bus, or buildfleetd is not running */
  BF_CTL_EXIT_RUN_FAILED = 125,  /* run: the build or the command could not run */
  BF_CTL_EXIT_INTERRUPTED = 130, /* run, events: interrupted by SIGINT */
} BfCtlExit;

typedef struct {
  /* global options */
  gboolean session;
  char *address;                 /* -H/--host: a D-Bus address */
  gboolean json;
  gboolean no_pager;
  gboolean no_ask_password;
  gboolean no_legend;
  gboolean verbose;

  /* command options */
  char *state;                   /* list --state= */
  char *builder;                 /* list --builder= */
  char **labels;                 /* list, run --label= */
  char *worker;                  /* run --worker= */
  char *workdir;                 /* run --workdir= */
  char **env;                    /* run --env=K=V */
  gboolean cancel;               /* graceful --cancel */
  gboolean fast;                 /* insubstantiate --fast */
  gboolean all;                  /* builds --all: finished ones too */

  const char *command;
  char **args;                   /* positional arguments after the command */
  char **remote_argv;            /* run: what follows "--" */

  GDBusConnection *bus;
  gboolean colour;               /* stdout is a terminal that takes colours */
  GPid agent_pid;                /* pkttyagent we started, 0 if none */
} BfCtl;

/* bf-ctl-bus.c */
gboolean          bf_ctl_connect            (BfCtl       *ctl,
                                             GError     **error);
int               bf_ctl_error              (BfCtl       *ctl,
                                             GError      *error,
                                             const char  *doing);
void              bf_ctl_start_agent        (BfCtl       *ctl);
void              bf_ctl_stop_agent         (BfCtl       *ctl);
BfDBusManager    *bf_ctl_manager            (BfCtl       *ctl,
                                             GError     **error);
char             *bf_ctl_worker_path        (BfCtl       *ctl,
                                             const char  *name,
                                             GError     **error);
GPtrArray        *bf_ctl_fetch_workers      (BfCtl              *ctl,
                                             const char * const *properties,
                                             const char         *prefix,
                                             GError            **error);
GPtrArray        *bf_ctl_fetch_builds       (BfCtl       *ctl,
                                             GError     **error);
char             *bf_ctl_name_from_path     (const char  *path);

/* bf-ctl-output.c */
void              bf_ctl_json_append        (GString     *out,
                                             GVariant    *value);
void              bf_ctl_json_append_string (GString     *out,
                                             const char  *text);
char             *bf_ctl_format_time        (guint64      usec);
char             *bf_ctl_format_ago         (guint64      usec);
char             *bf_ctl_format_duration    (guint64      usec);
char             *bf_ctl_format_value       (const char  *name,
                                             GVariant    *value);
const char       *bf_ctl_colour             (BfCtl       *ctl,
                                             const char  *which);
void              bf_ctl_pager_start        (BfCtl       *ctl);
void              bf_ctl_pager_end          (BfCtl       *ctl);
void              bf_ctl_print_table        (BfCtl       *ctl,
                                             GPtrArray   *rows,
                                             guint        n_columns);
gboolean          bf_ctl_write_all          (int          fd,
                                             const char  *data,
                                             gsize        len);

/* bf-ctl-fleet.c */
GStrv             bf_ctl_worker_states      (GVariant    *worker);
int               bf_ctl_cmd_status         (BfCtl       *ctl);
int               bf_ctl_cmd_list           (BfCtl       *ctl);
int               bf_ctl_cmd_show           (BfCtl       *ctl);

/* bf-ctl-admin.c */
int               bf_ctl_cmd_admin          (BfCtl       *ctl);
int               bf_ctl_cmd_reload         (BfCtl       *ctl);

/* bf-ctl-builds.c */
int               bf_ctl_cmd_builds         (BfCtl       *ctl);

/* bf-ctl-run.c */
int               bf_ctl_cmd_run            (BfCtl       *ctl);

/* bf-ctl-events.c */
int               bf_ctl_cmd_events         (BfCtl       *ctl);

/* bf-ctl-complete.c */
int               bf_ctl_cmd_complete       (BfCtl       *ctl);

G_END_DECLS
