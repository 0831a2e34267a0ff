/* test-state.c: the persisted admin state
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib/gstdio.h>

#include "bf-state.h"

static void
saved_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  GError **error = user_data;

  if (!bf_state_save_worker_finish (BF_STATE (source), result, error))
    g_assert_nonnull (*error);
  else
    *error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_NONE, "done");
}

/* Runs the loop until the save completes; returns its error, or NULL. */
static GError *
save_and_wait (BfState             *state,
               const char          *name,
               const BfWorkerRecord *ws)
{
  GError *error = NULL;

  bf_state_save_worker_async (state, name, ws, saved_cb, &error);
  while (error == NULL)
    g_main_context_iteration (NULL, TRUE);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NONE))
    g_clear_error (&error);
  return error;
}

static void
test_durable_save (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bf-state-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "workers.state", NULL);
  g_autoptr(BfState) state = bf_state_new (dir);
  g_autoptr(BfState) again = bf_state_new (dir);
  BfWorkerRecord ws = { .paused = TRUE, .pause_reason = (char *) "disk\nswap" };
  BfWorkerRecord out = { 0 };
  GError *error;
  g_autofree char *text = NULL;

  bf_state_load (state);
  error = save_and_wait (state, "a", &ws);
  g_assert_no_error (error);
  /* On disk by the time the callback runs. */
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "[Worker a]"));
  bf_state_load (again);
  g_assert_true (bf_state_get_worker (again, "a", &out));
  g_assert_true (out.paused);
  g_assert_cmpstr (out.pause_reason, ==, "disk\nswap");
  bf_worker_record_clear (&out);

  g_unlink (path);
  g_rmdir (dir);
}

static void
test_unwritable (void)
{
  /* Nobody, not even root, can create a directory in /proc/self. */
  g_autoptr(BfState) state = bf_state_new ("/proc/self/no-such-dir");
  BfWorkerRecord ws = { .paused = TRUE };
  g_autoptr(GError) error = NULL;

  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "Cannot create state directory*");
  bf_state_load (state);
  g_test_assert_expected_messages ();
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "Cannot save admin state*");
  error = save_and_wait (state, "a", &ws);
  g_test_assert_expected_messages ();
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "cannot save the state to /proc/self/no-such-dir/workers.state: "));
}

static void
test_partly_corrupt (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bf-state-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "workers.state", NULL);
  g_autoptr(BfState) state = bf_state_new (dir);
  g_autoptr(GDir) d = NULL;
  BfWorkerRecord out = { 0 };
  const char *name;
  guint asides = 0;
  static const char text[] =
    "# comment\n"
    "stray=entry before any group\n"                /* 2 */
    "[Worker a]\nPaused=true\nPauseReason=kept\n"
    "not a key file line\n"                         /* 6 */
    "LastSeenUSec=12\n"
    "[Worker b\nPaused=true\n"                      /* 8, 9 */
    "[Worker c]\nPaused=perhaps\nGraceful=true\n"
    "[Instance d]\nDriver=local\nId=42\n";

  g_file_set_contents (path, text, -1, NULL);
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*line 2: an entry before any group*");
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*line 6: *");
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*line 8: *");
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*line 9: an entry of the unreadable group on line 8*");
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*[Worker c] Paused: an unreadable value*");
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*is corrupt (5 unreadable entries left out, the rest kept); kept a copy as *");
  bf_state_load (state);
  g_test_assert_expected_messages ();

  g_assert_true (bf_state_get_worker (state, "a", &out));
  g_assert_true (out.paused);
  g_assert_cmpstr (out.pause_reason, ==, "kept");
  g_assert_cmpuint (out.last_seen_usec, ==, 12);
  bf_worker_record_clear (&out);
  g_assert_false (bf_state_get_worker (state, "b", &out));
  g_assert_true (bf_state_get_worker (state, "c", &out));
  g_assert_false (out.paused);
  g_assert_true (out.graceful);
  bf_worker_record_clear (&out);
  g_assert_nonnull (g_hash_table_lookup (bf_state_get_instances (state), "d"));

  /* The damaged file is kept aside and the clean one written at once. */
  bf_state_flush (state);
  d = g_dir_open (dir, 0, NULL);
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *full = g_build_filename (dir, name, NULL);
      if (g_str_has_prefix (name, "workers.state.corrupt-"))
        asides++;
      if (!g_str_equal (name, "workers.state"))
        g_unlink (full);
    }
  g_assert_cmpuint (asides, ==, 1);
  {
    g_autoptr(BfState) again = bf_state_new (dir);
    bf_state_load (again);   /* no warning: clean now */
    g_assert_true (bf_state_get_worker (again, "a", &out));
    bf_worker_record_clear (&out);
  }
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/state/durable-save", test_durable_save);
  g_test_add_func ("/state/unwritable", test_unwritable);
  g_test_add_func ("/state/partly-corrupt", test_partly_corrupt);

  return g_test_run ();
}
