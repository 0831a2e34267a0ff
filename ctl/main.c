/* main.c: buildfleetctl, the fleet from a terminal
 *
 * Parses the command line (options may come before or after the command;
 * everything after "--" belongs to `run`'s remote command), connects to the
 * bus and runs one command.  The exit codes are BfCtlExit.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bf-ctl.h"

typedef struct {
  const char *name;
  const char *args;          /* for the help text */
  int min_args, max_args;
  gboolean needs_bus;
  int (*run) (BfCtl *ctl);
  const char *summary;
} Command;

static const Command commands[] = {
  { "status", "", 0, 0, TRUE, bf_ctl_cmd_status, "The fleet at a glance: workers, missing, paused, builds" },
  { "list", "", 0, 0, TRUE, bf_ctl_cmd_list, "Every worker in a table (--state=, --builder=, --label=)" },
  { "show", "WORKER", 1, 1, TRUE, bf_ctl_cmd_show, "Every property of one worker" },
  { "pause", "WORKER [REASON]", 1, 2, TRUE, bf_ctl_cmd_admin, "Take no new builds on WORKER" },
  { "unpause", "WORKER", 1, 1, TRUE, bf_ctl_cmd_admin, "Let WORKER take builds again" },
  { "graceful", "WORKER", 1, 1, TRUE, bf_ctl_cmd_admin, "Shut WORKER down once idle (--cancel to stop that)" },
  { "shutdown", "WORKER", 1, 1, TRUE, bf_ctl_cmd_admin, "Ask WORKER's process to exit" },
  { "disconnect", "WORKER", 1, 1, TRUE, bf_ctl_cmd_admin, "Drop WORKER's connection now" },
  { "substantiate", "WORKER", 1, 1, TRUE, bf_ctl_cmd_admin, "Start a latent worker and wait until it connects" },
  { "insubstantiate", "WORKER", 1, 1, TRUE, bf_ctl_cmd_admin, "Stop a latent worker (--fast: without waiting)" },
  { "reload", "", 0, 0, TRUE, bf_ctl_cmd_reload, "Read the configuration again" },
  { "builds", "[--all]", 0, 0, TRUE, bf_ctl_cmd_builds, "Running and pending builds (--all: finished ones too)" },
  { "run", "BUILDER [--worker=W] [--label=L] [--workdir=D] [--env=K=V] -- COMMAND...", 1, 1, TRUE, bf_ctl_cmd_run,
    "Run COMMAND on a worker of BUILDER, streaming its output; exit with its code" },
  { "events", "", 0, 0, TRUE, bf_ctl_cmd_events, "Follow attach, detach, missing, build events until interrupted" },
  { "monitor", "", 0, 0, TRUE, bf_ctl_cmd_events, "The same as events" },
  { "complete", "LINE POINT", 2, 2, FALSE, bf_ctl_cmd_complete, "Completions for a bash command line" },
};

static const Command *
find_command (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      return &commands[i];
  return NULL;
}

static char *
commands_help (void)
{
  GString *s = g_string_new ("Commands:\n");

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_autofree char *head = g_strdup_printf ("%s%s%s", commands[i].name,
                                               *commands[i].args ? " " : "", commands[i].args);

      if (g_str_equal (commands[i].name, "complete"))
        continue;
      g_string_append_printf (s, "  %s\n      %s\n", head, commands[i].summary);
    }
  g_string_append (s, "\nExit status: 0 done, 1 the daemon could not do it, 2 usage, 3 not found,\n"
                      "4 not authorised, 5 daemon or bus unavailable; run: the command's own code,\n"
                      "125 if it could not run, 130 if interrupted.  See buildfleetctl(1).");
  return g_string_free (s, FALSE);
}

static void
bf_ctl_clear (BfCtl *ctl)
{
  bf_ctl_stop_agent (ctl);
  g_clear_object (&ctl->bus);
  g_free (ctl->address);
  g_free (ctl->state);
  g_free (ctl->builder);
  g_strfreev (ctl->labels);
  g_free (ctl->worker);
  g_free (ctl->workdir);
  g_strfreev (ctl->env);
  g_strfreev (ctl->args);
  g_strfreev (ctl->remote_argv);
}

static gboolean
stdout_takes_colour (void)
{
  const char *term = g_getenv ("TERM");

  return isatty (STDOUT_FILENO) && g_getenv ("NO_COLOR") == NULL &&
         term != NULL && !g_str_equal (term, "dumb");
}

int
main (int   argc,
      char *argv[])
{
  BfCtl ctl = { 0 };
  gboolean system_bus = FALSE, version = FALSE;
  char **positional = NULL;
  const GOptionEntry entries[] = {
    { "system", 0, 0, G_OPTION_ARG_NONE, &system_bus, "Talk to the daemon on the system bus (the default)", NULL },
    { "session", 0, 0, G_OPTION_ARG_NONE, &ctl.session, "Talk to a daemon on the session bus (buildfleetd --session)", NULL },
    { "host", 'H', 0, G_OPTION_ARG_STRING, &ctl.address, "Connect to this D-Bus address instead (e.g. unix:path=/tmp/remote-bus)", "ADDRESS" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &ctl.json, "Reading commands print JSON (events: one object a line)", NULL },
    { "no-pager", 0, 0, G_OPTION_ARG_NONE, &ctl.no_pager, "Do not pipe the output into a pager", NULL },
    { "no-legend", 0, 0, G_OPTION_ARG_NONE, &ctl.no_legend, "Print tables without their header", NULL },
    { "no-ask-password", 0, 0, G_OPTION_ARG_NONE, &ctl.no_ask_password, "Do not ask for a password when polkit wants one", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &ctl.verbose, "run: also print the command's header lines", NULL },
    { "state", 0, 0, G_OPTION_ARG_STRING, &ctl.state, "list: only workers in this state (connected, disconnected, missing, paused, quarantined, flapping, graceful, busy, idle, latent)", "STATE" },
    { "builder", 0, 0, G_OPTION_ARG_STRING, &ctl.builder, "list: only workers serving this builder", "BUILDER" },
    { "label", 0, 0, G_OPTION_ARG_STRING_ARRAY, &ctl.labels, "list: only workers with this label; run: only a worker with it (repeatable)", "LABEL" },
    { "worker", 0, 0, G_OPTION_ARG_STRING, &ctl.worker, "run: only this worker may take the build", "WORKER" },
    { "workdir", 0, 0, G_OPTION_ARG_STRING, &ctl.workdir, "run: the directory to run in on the worker (relative: below the builder's)", "DIR" },
    { "env", 0, 0, G_OPTION_ARG_STRING_ARRAY, &ctl.env, "run: set an environment variable (repeatable)", "KEY=VALUE" },
    { "cancel", 0, 0, G_OPTION_ARG_NONE, &ctl.cancel, "graceful: cancel a graceful shutdown", NULL },
    { "fast", 0, 0, G_OPTION_ARG_NONE, &ctl.fast, "insubstantiate: stop at once", NULL },
    { "all", 'a', 0, G_OPTION_ARG_NONE, &ctl.all, "builds: finished builds too (while they are still on the bus)", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &positional, NULL, "COMMAND [ARGS...]" },
    { NULL }
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *help = NULL;
  g_autoptr(GPtrArray) before = g_ptr_array_new ();
  g_autoptr(GStrvBuilder) remote = g_strv_builder_new ();
  gboolean dashdash = FALSE;
  const Command *cmd;
  guint n_args;
  int code;

  setlocale (LC_ALL, "");
  signal (SIGPIPE, SIG_IGN);

  /* "--" ends buildfleetctl's options: the rest is the remote command. */
  for (int i = 0; i < argc; i++)
    {
      if (!dashdash && i > 0 && g_str_equal (argv[i], "--"))
        dashdash = TRUE;
      else if (dashdash)
        g_strv_builder_add (remote, argv[i]);
      else
        g_ptr_array_add (before, argv[i]);
    }
  ctl.remote_argv = g_strv_builder_end (remote);
  {
    int pargc = (int) before->len;
    char **pargv = (char **) before->pdata;

    context = g_option_context_new (NULL);
    g_option_context_set_summary (context, "Control buildfleetd, the Buildbot worker fleet daemon.");
    help = commands_help ();
    g_option_context_set_description (context, help);
    g_option_context_add_main_entries (context, entries, NULL);
    if (!g_option_context_parse (context, &pargc, &pargv, &error))
      {
        g_printerr ("buildfleetctl: %s\nTry “buildfleetctl --help”.\n", error->message);
        bf_ctl_clear (&ctl);
        return BF_CTL_EXIT_USAGE;
      }
  }
  if (version)
    {
      g_print ("buildfleetctl %s\n", PACKAGE_VERSION);
      g_strfreev (positional);
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_OK;
    }
  if (system_bus && (ctl.session || ctl.address))
    {
      g_printerr ("buildfleetctl: --system cannot be combined with --session or --host\n");
      g_strfreev (positional);
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_USAGE;
    }
  if (positional == NULL || positional[0] == NULL)
    {
      g_printerr ("buildfleetctl: which command?  Try “buildfleetctl --help”.\n");
      g_strfreev (positional);
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_USAGE;
    }

  cmd = find_command (positional[0]);
  if (cmd == NULL)
    {
      g_printerr ("buildfleetctl: unknown command “%s”.  Try “buildfleetctl --help”.\n", positional[0]);
      g_strfreev (positional);
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_USAGE;
    }
  ctl.command = cmd->name;
  ctl.args = g_strdupv (positional + 1);
  g_strfreev (positional);
  n_args = g_strv_length (ctl.args);
  if ((int) n_args < cmd->min_args || (int) n_args > cmd->max_args)
    {
      g_printerr ("buildfleetctl: usage: buildfleetctl %s %s\n", cmd->name, cmd->args);
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_USAGE;
    }
  if (g_str_equal (cmd->name, "run") && ctl.remote_argv[0] == NULL)
    {
      g_printerr ("buildfleetctl: run needs a command after “--”, e.g. buildfleetctl run linux -- make check\n");
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_USAGE;
    }
  if (!g_str_equal (cmd->name, "run") && ctl.remote_argv[0] != NULL)
    {
      g_printerr ("buildfleetctl: only run takes a command after “--”\n");
      bf_ctl_clear (&ctl);
      return BF_CTL_EXIT_USAGE;
    }

  ctl.colour = stdout_takes_colour ();
  if (cmd->needs_bus && !bf_ctl_connect (&ctl, &error))
    {
      code = bf_ctl_error (&ctl, error, NULL);
      bf_ctl_clear (&ctl);
      return code;
    }
  code = cmd->run (&ctl);
  bf_ctl_clear (&ctl);
  return code;
}
