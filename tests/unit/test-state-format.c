/* test-state-format.c: workers.state is written as GKeyFile writes it
 *
 * The state file's records are written without a GKeyFile each when they
 * hold no free text (bf-state.c, serialize()): the text must stay byte for
 * byte what GKeyFile wrote, so that a file written by either version reads
 * the same, and the records with free text keep GKeyFile's escaping.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib/gstdio.h>

#include "bf-state.h"

/* What serialize() wrote for one record before: a key file of its own. */
static char *
reference_text (const char           *name,
                const BfWorkerRecord *ws)
{
  g_autoptr(GKeyFile) one = g_key_file_new ();
  g_autofree char *group = g_strconcat ("Worker ", name, NULL);
  g_autofree char *text = NULL;

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
  return g_strconcat ("\n", text, NULL);
}

static void
test_same_as_key_file (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bf-state-format-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "workers.state", NULL);
  g_autoptr(BfState) state = bf_state_new (dir);
  g_autoptr(BfState) again = bf_state_new (dir);
  g_autoptr(GString) expected = g_string_new ("# buildfleetd admin state; written by the daemon, do not edit while it runs\n");
  g_autofree char *text = NULL;
  /* sorted by name, as the file is */
  const struct { const char *name; BfWorkerRecord ws; } records[] = {
    { "a", { 0 } },
    { "b-graceful", { .graceful = TRUE, .last_seen_usec = 1, .disconnected_since_usec = G_MAXUINT64 } },
    { "c-paused", { .paused = TRUE, .paused_since_usec = 1764720000000000, .pause_reason = (char *) "",
                    .paused_by = (char *) "" } },
    { "d-paused-no-since", { .paused = TRUE } },
    { "e-missing", { .missing_notified = TRUE, .last_seen_usec = 1764720000123456,
                     .disconnected_since_usec = 1764720000654321 } },
    { "f-reason", { .paused = TRUE, .pause_reason = (char *) "  disk\nfull\t\\ 50%", .paused_by = (char *) "ops" } },
    { "g-by-only", { .paused = TRUE, .paused_by = (char *) "root", .paused_since_usec = 7 } },
    { "h-unpaused-by", { .paused = FALSE, .paused_by = (char *) "root", .paused_since_usec = 7 } },
    { "i.x_y", { .graceful = TRUE, .paused = TRUE, .missing_notified = TRUE, .paused_since_usec = 3,
                 .last_seen_usec = 4, .disconnected_since_usec = 5 } },
  };

  bf_state_load (state);
  for (guint i = G_N_ELEMENTS (records); i > 0; i--)
    bf_state_set_worker (state, records[i - 1].name, &records[i - 1].ws);
  bf_state_flush (state);

  for (guint i = 0; i < G_N_ELEMENTS (records); i++)
    {
      g_autofree char *one = reference_text (records[i].name, &records[i].ws);
      g_string_append (expected, one);
    }
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, expected->str);

  /* and it reads back */
  bf_state_load (again);
  for (guint i = 0; i < G_N_ELEMENTS (records); i++)
    {
      const BfWorkerRecord *ws = &records[i].ws;
      BfWorkerRecord out = { 0 };

      g_assert_true (bf_state_get_worker (again, records[i].name, &out));
      g_assert_cmpint (out.graceful, ==, ws->graceful);
      g_assert_cmpint (out.paused, ==, ws->paused);
      g_assert_cmpint (out.missing_notified, ==, ws->missing_notified);
      g_assert_cmpuint (out.last_seen_usec, ==, ws->last_seen_usec);
      g_assert_cmpuint (out.disconnected_since_usec, ==, ws->disconnected_since_usec);
      if (ws->pause_reason && *ws->pause_reason)
        g_assert_cmpstr (out.pause_reason, ==, ws->pause_reason);
      bf_worker_record_clear (&out);
    }

  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/state-format/same-as-key-file", test_same_as_key_file);
  return g_test_run ();
}
