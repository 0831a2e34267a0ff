/* bf-ctl-complete.c: complete LINE POINT — completions for bash
 *
 * The way `udisksctl complete` works: the bash function passes the
 * command line and the cursor position; this prints one candidate a
 * line: commands, options, option values, worker names and builders
 * from the running daemon (nothing from the daemon if it is not there).
 * Candidates are whole words ("--state=missing"); the bash function
 * trims what bash already split off at "=".
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bf-ctl.h"

static const char * const command_names[] = {
  "status", "list", "show", "pause", "unpause", "graceful", "shutdown", "disconnect",
  "substantiate", "insubstantiate", "reload", "builds", "run", "events", "monitor", NULL
};

static const char * const worker_commands[] = {
  "show", "pause", "unpause", "graceful", "shutdown", "disconnect", "substantiate",
  "insubstantiate", NULL
};

static const char * const global_options[] = {
  "--system", "--session", "--host=", "--json", "--no-pager", "--no-legend",
  "--no-ask-password", "--verbose", "--help", "--version", NULL
};

static const char * const state_values[] = {
  "connected", "disconnected", "missing", "paused", "quarantined", "flapping", "graceful", "busy",
  "idle", "latent", NULL
};

/* Options of one command, beyond the global ones. */
static const char * const *
command_options (const char *command)
{
  static const char * const list[] = { "--state=", "--builder=", "--label=", NULL };
  static const char * const run[] = { "--worker=", "--label=", "--workdir=", "--env=", NULL };
  static const char * const graceful[] = { "--cancel", NULL };
  static const char * const insubstantiate[] = { "--fast", NULL };
  static const char * const builds[] = { "--all", NULL };
  static const char * const none[] = { NULL };

  if (command == NULL)
    return none;
  if (g_str_equal (command, "list"))
    return list;
  if (g_str_equal (command, "run"))
    return run;
  if (g_str_equal (command, "graceful"))
    return graceful;
  if (g_str_equal (command, "insubstantiate"))
    return insubstantiate;
  if (g_str_equal (command, "builds"))
    return builds;
  return none;
}

static void
offer (const char *prefix,
       const char *value,
       const char *typed)
{
  g_autofree char *word = g_strconcat (prefix, value, NULL);

  if (g_str_has_prefix (word, typed))
    printf ("%s\n", word);
}

static void
offer_all (const char         *prefix,
           const char * const *values,
           const char         *typed)
{
  for (guint i = 0; values[i]; i++)
    offer (prefix, values[i], typed);
}

/* Worker names, or builders (@builders), from the running daemon. */
static void
offer_from_daemon (BfCtl      *ctl,
                   gboolean    builders,
                   gboolean    latent_only,
                   const char *prefix,
                   const char *typed)
{
  const char * const properties[] = { "Name", "Builders", NULL };
  g_autoptr(GPtrArray) workers = NULL;
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  const char * const names_only[] = { "Name", NULL };
  /* A LatentWorker property, so that latent workers show as such. */
  const char * const latent_properties[] = { "Name", "Driver", NULL };
  const char *partial = typed + strlen (prefix);

  if (ctl->bus == NULL && !bf_ctl_connect (ctl, NULL))
    return;
  /* Names: only the pages that hold the typed beginning. */
  if (builders)
    workers = bf_ctl_fetch_workers (ctl, properties, NULL, NULL);
  else if (latent_only)
    workers = bf_ctl_fetch_workers (ctl, latent_properties, NULL, NULL);
  else
    workers = bf_ctl_fetch_workers (ctl, names_only, g_str_has_prefix (typed, prefix) ? partial : "", NULL);
  for (guint i = 0; workers && i < workers->len; i++)
    {
      GVariant *w = g_ptr_array_index (workers, i);
      g_autofree const char **list = NULL;
      const char *name = NULL;
      gboolean latent = FALSE;

      g_variant_lookup (w, "Latent", "b", &latent);
      if (!builders)
        {
          if (g_variant_lookup (w, "Name", "&s", &name) && (!latent_only || latent))
            offer (prefix, name, typed);
          continue;
        }
      if (!g_variant_lookup (w, "Builders", "^a&s", &list))
        continue;
      for (guint j = 0; list[j]; j++)
        if (g_hash_table_add (seen, (gpointer) list[j]))
          offer (prefix, list[j], typed);
    }
}

int
bf_ctl_cmd_complete (BfCtl *ctl)
{
  const char *line = ctl->args[0];
  guint64 point = g_ascii_strtoull (ctl->args[1], NULL, 10);
  g_autofree char *upto = g_strndup (line, MIN (point, strlen (line)));
  g_auto(GStrv) words = NULL;
  g_autoptr(GPtrArray) positional = g_ptr_array_new ();
  const char *typed, *prev = NULL, *command = NULL;
  gboolean after_dashdash = FALSE;
  guint n;

  words = g_regex_split_simple ("[ \t]+", upto, 0, 0);
  n = g_strv_length (words);
  /* The word under the cursor: "" right after a space. */
  if (n == 0)
    return BF_CTL_EXIT_OK;
  typed = words[n - 1];

  /* words[0] is the program; the last word is being typed. */
  for (guint i = 1; i + 1 < n; i++)
    {
      const char *w = words[i];

      if (*w == '\0')
        continue;
      if (g_str_equal (w, "--"))
        after_dashdash = TRUE;
      else if (g_str_equal (w, "--session"))
        ctl->session = TRUE;
      else if (g_str_has_prefix (w, "--host="))
        ctl->address = g_strdup (w + strlen ("--host="));
      else if (w[0] == '-')
        ;
      else if (prev && (g_str_equal (prev, "--state") || g_str_equal (prev, "--builder") ||
                        g_str_equal (prev, "--worker") || g_str_equal (prev, "--workdir") ||
                        g_str_equal (prev, "--env") || g_str_equal (prev, "-H") ||
                        g_str_equal (prev, "--host")))
        ;
      else if (command == NULL)
        command = w;
      else
        g_ptr_array_add (positional, (gpointer) w);
      prev = w;
    }
  if (n >= 2)
    prev = words[n - 2];

  if (after_dashdash)
    return BF_CTL_EXIT_OK;   /* the remote command: bash completes file names */

  /* Values of options */
  if (g_str_has_prefix (typed, "--state="))
    offer_all ("--state=", state_values, typed);
  else if (prev && g_str_equal (prev, "--state"))
    offer_all ("", state_values, typed);
  else if (g_str_has_prefix (typed, "--builder="))
    offer_from_daemon (ctl, TRUE, FALSE, "--builder=", typed);
  else if (prev && g_str_equal (prev, "--builder"))
    offer_from_daemon (ctl, TRUE, FALSE, "", typed);
  else if (g_str_has_prefix (typed, "--worker="))
    offer_from_daemon (ctl, FALSE, FALSE, "--worker=", typed);
  else if (prev && g_str_equal (prev, "--worker"))
    offer_from_daemon (ctl, FALSE, FALSE, "", typed);
  else if (typed[0] == '-')
    {
      offer_all ("", global_options, typed);
      offer_all ("", command_options (command), typed);
    }
  else if (command == NULL)
    offer_all ("", command_names, typed);
  else if (positional->len == 0 && g_strv_contains (worker_commands, command))
    offer_from_daemon (ctl, FALSE,
                       g_str_equal (command, "substantiate") || g_str_equal (command, "insubstantiate"),
                       "", typed);
  else if (positional->len == 0 && g_str_equal (command, "run"))
    offer_from_daemon (ctl, TRUE, FALSE, "", typed);
  else if (g_str_equal (command, "run") && positional->len == 1)
    offer ("", "--", typed);
  return BF_CTL_EXIT_OK;
}
