/* test-worker.c: a worker's lifecycle rules without a bus or a network
 *
 * The missing timer: once per incident, after MissingTimeout, resumed from
 * the persisted disconnect time after a restart, never repeated for an
 * incident already reported.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib/gstdio.h>

#include "bf-worker.h"

typedef struct {
  char *dir;
  char *maildir;
  BfState *state;
  BfMailer *mailer;
  BfAuthority *authority;
  guint missing_signals;
  guint64 missing_since;
  gint64 missing_at;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  g_autofree char *cmd = NULL;

  f->dir = g_dir_make_tmp ("bf-worker-XXXXXX", NULL);
  f->maildir = g_build_filename (f->dir, "mail", NULL);
  g_mkdir (f->maildir, 0700);
  cmd = g_strdup_printf ("/bin/sh -c 'cat > $(mktemp -p %s m-XXXXXX)'", f->maildir);
  f->state = bf_state_new (f->dir);
  bf_state_load (f->state);
  f->mailer = bf_mailer_new (cmd, "test@example.com");
  f->authority = bf_authority_new (TRUE);
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)))
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

static void
wait_mailer_idle (Fixture *f)
{
  while (bf_mailer_get_in_flight (f->mailer) > 0)
    g_main_context_iteration (NULL, TRUE);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  wait_mailer_idle (f);
  bf_state_flush (f->state);
  g_clear_object (&f->state);
  g_clear_object (&f->mailer);
  g_clear_object (&f->authority);
  remove_tree (f->dir);
  g_free (f->dir);
  g_free (f->maildir);
}

static guint
count_mails (Fixture *f)
{
  g_autoptr(GDir) dir = g_dir_open (f->maildir, 0, NULL);
  guint n = 0;

  while (g_dir_read_name (dir))
    n++;
  return n;
}

static BfWorkerConfig *
worker_config (const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfConfig) config = bf_config_load_data (text, "test.conf", &error);

  g_assert_no_error (error);
  return bf_worker_config_ref (g_ptr_array_index (config->workers, 0));
}

static void
missing_cb (BfDBusWorker *worker,
            guint64       since,
            Fixture      *f)
{
  f->missing_signals++;
  f->missing_since = since;
  f->missing_at = g_get_real_time ();
}

static BfWorker *
new_worker (Fixture    *f,
            const char *text)
{
  g_autoptr(BfWorkerConfig) wc = worker_config (text);
  BfWorker *w = bf_worker_new (wc, f->state, f->mailer, f->authority);

  g_signal_connect (w, "missing", G_CALLBACK (missing_cb), f);
  return w;
}

static gboolean
quit_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
run_for (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, quit_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

static void
run_until_missing (Fixture *f,
                   guint    count,
                   guint    max_ms)
{
  gint64 deadline = g_get_monotonic_time () + max_ms * 1000;

  while (f->missing_signals < count && g_get_monotonic_time () < deadline)
    run_for (5);
}

#define CONFIG "[Worker w]\nPassword=secret\nNotifyOnMissing=a@example.com\nMissingTimeout="

static void
test_missing_fires_once (Fixture       *f,
                         gconstpointer  data)
{
  gint64 start = g_get_real_time ();
  g_autoptr(BfWorker) w = new_worker (f, CONFIG "0.15\n");
  guint64 since = bf_dbus_worker_get_disconnected_since_usec (BF_DBUS_WORKER (w));

  g_assert_cmpint (ABS ((gint64) since - start), <, G_USEC_PER_SEC);
  g_assert_false (bf_dbus_worker_get_missing (BF_DBUS_WORKER (w)));
  run_until_missing (f, 1, 10000);
  g_assert_cmpuint (f->missing_signals, ==, 1);
  g_assert_cmpuint (f->missing_since, ==, since);
  /* Never early.  How late is a benchmark figure, not a unit test's. */
  g_assert_cmpint (f->missing_at - (gint64) since, >=, 150000);
  g_assert_true (bf_dbus_worker_get_missing (BF_DBUS_WORKER (w)));
  g_assert_true (bf_worker_is_missing (w));

  run_for (300);
  g_assert_cmpuint (f->missing_signals, ==, 1);
  wait_mailer_idle (f);
  g_assert_cmpuint (count_mails (f), ==, 1);
}

static void
test_no_repeat_after_restart (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, CONFIG "0.05\n");
  g_autoptr(BfWorker) again = NULL;
  g_autoptr(BfState) state2 = NULL;

  run_until_missing (f, 1, 10000);
  g_assert_cmpuint (f->missing_signals, ==, 1);
  bf_state_flush (f->state);
  g_clear_object (&w);

  /* A new daemon: state read back from disk. */
  state2 = bf_state_new (f->dir);
  bf_state_load (state2);
  g_set_object (&f->state, state2);
  again = new_worker (f, CONFIG "0.05\n");
  g_assert_true (bf_dbus_worker_get_missing (BF_DBUS_WORKER (again)));
  run_for (300);
  g_assert_cmpuint (f->missing_signals, ==, 1);
  wait_mailer_idle (f);
  g_assert_cmpuint (count_mails (f), ==, 1);
}

static void
test_resume_from_persisted_time (Fixture       *f,
                                 gconstpointer  data)
{
  BfWorkerRecord ws = { 0 };
  guint64 since = (guint64) g_get_real_time () - 3 * G_USEC_PER_SEC;   /* 3 s ago */
  g_autoptr(BfWorker) w = NULL;
  gint64 restart;

  ws.disconnected_since_usec = since;
  ws.last_seen_usec = since;
  bf_state_set_worker (f->state, "w", &ws);
  restart = g_get_real_time ();
  w = new_worker (f, CONFIG "3.5\n");
  g_assert_cmpuint (bf_dbus_worker_get_disconnected_since_usec (BF_DBUS_WORKER (w)), ==, since);
  run_until_missing (f, 1, 10000);
  g_assert_cmpuint (f->missing_signals, ==, 1);
  /* 3.5 s after the persisted time, i.e. ~0.5 s after the "restart"; a
   * timer that started again at the restart would fire 3.5 s after it
   * (2 s of slack for a busy machine between the two). */
  g_assert_cmpint (f->missing_at - (gint64) since, >=, 3500000);
  g_assert_cmpint (f->missing_at - restart, <, 2500000);
}

static void
test_overdue_fires_at_once (Fixture       *f,
                            gconstpointer  data)
{
  BfWorkerRecord ws = { 0 };
  gint64 restart;

  ws.disconnected_since_usec = (guint64) g_get_real_time () - 10 * G_USEC_PER_SEC;
  bf_state_set_worker (f->state, "w", &ws);
  restart = g_get_real_time ();
  {
    g_autoptr(BfWorker) w = new_worker (f, CONFIG "3\n");
    run_until_missing (f, 1, 10000);
    g_assert_cmpuint (f->missing_signals, ==, 1);
    /* At once, not 3 s after the "restart" (2 s of slack for a busy machine). */
    g_assert_cmpint (f->missing_at - restart, <, 2000000);
  }
}

static void
test_zero_timeout_disables (Fixture       *f,
                            gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, CONFIG "0\n");

  run_for (200);
  g_assert_cmpuint (f->missing_signals, ==, 0);
  g_assert_false (bf_dbus_worker_get_missing (BF_DBUS_WORKER (w)));
}

static void
test_reconfigure_rearms (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, CONFIG "0.3\n");
  g_autoptr(BfWorkerConfig) longer = worker_config (CONFIG "60\n");
  g_autoptr(BfWorkerConfig) shorter = worker_config (CONFIG "0.1\n");

  /* Lengthened before it fires: the 0.3 s timer is gone. */
  bf_worker_set_config (w, longer);
  run_for (600);
  g_assert_cmpuint (f->missing_signals, ==, 0);
  /* Shortened: it fires after the new timeout. */
  bf_worker_set_config (w, shorter);
  g_assert_cmpuint (bf_dbus_worker_get_missing_timeout_usec (BF_DBUS_WORKER (w)), ==, 100000);
  run_until_missing (f, 1, 10000);
  g_assert_cmpuint (f->missing_signals, ==, 1);
}

static void
test_password (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, CONFIG "0\n");

  g_assert_true (bf_worker_check_password (w, "secret"));
  g_assert_false (bf_worker_check_password (w, "secret "));
  g_assert_false (bf_worker_check_password (w, "secre"));
  g_assert_false (bf_worker_check_password (w, ""));
  g_assert_false (bf_worker_check_password (w, NULL));
}

static void
test_admin_state_persisted (Fixture       *f,
                            gconstpointer  data)
{
  g_autoptr(BfWorker) w = NULL;
  BfWorkerRecord ws = { 0 };

  ws.graceful = TRUE;
  ws.paused = TRUE;
  ws.pause_reason = (char *) "broken disk";
  ws.disconnected_since_usec = 1;
  bf_state_set_worker (f->state, "w", &ws);
  w = new_worker (f, CONFIG "0\n");
  g_assert_true (bf_dbus_worker_get_graceful (BF_DBUS_WORKER (w)));
  g_assert_true (bf_dbus_worker_get_paused (BF_DBUS_WORKER (w)));
  g_assert_cmpstr (bf_dbus_worker_get_pause_reason (BF_DBUS_WORKER (w)), ==, "broken disk");
  g_assert_false (bf_worker_can_take_build (w, "x"));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) \
  g_test_add ("/worker/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("missing-fires-once", test_missing_fires_once);
  ADD ("no-repeat-after-restart", test_no_repeat_after_restart);
  ADD ("resume-from-persisted-time", test_resume_from_persisted_time);
  ADD ("overdue-fires-at-once", test_overdue_fires_at_once);
  ADD ("zero-timeout-disables", test_zero_timeout_disables);
  ADD ("reconfigure-rearms", test_reconfigure_rearms);
  ADD ("password", test_password);
  ADD ("admin-state-persisted", test_admin_state_persisted);
#undef ADD

  return g_test_run ();
}
