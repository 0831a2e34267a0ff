/* test-latent.c: the latent substantiation state machine, with a fake driver and a fake host
 *
 * The five phases (not-substantiated, starting, waiting for the worker,
 * substantiated, insubstantiating) driven by hand: the fake driver records
 * every start, stop and cancel and completes them only when the test says,
 * and the fake host (BfLatentHost) records what the latent asked of the
 * worker.  Timeouts are short; the tests wait for facts on the main
 * context with a generous deadline, never for a fixed time, and check
 * that something does not happen with a "stays true for N ms" loop.
 *
 * The /worker/ cases check the other side: BfWorker as the latent's host,
 * and bf_worker_build_ended(), the one place that decides quarantine.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include <glib/gstdio.h>

#include "bf-latent.h"
#include "bf-worker.h"
#include "drivers/bf-latent-driver.h"

#define DEADLINE_USEC (20 * G_USEC_PER_SEC)

/* The fake driver ---------------------------------------------------------- */

#define FAKE_TYPE_DRIVER (fake_driver_get_type ())
G_DECLARE_FINAL_TYPE (FakeDriver, fake_driver, FAKE, DRIVER, BfLatentDriver)

struct _FakeDriver
{
  BfLatentDriver parent_instance;

  GTask *start;             /* pending start */
  GTask *stop;              /* pending stop */
  guint n_start;
  guint n_stop;
  guint n_cancel;
  gboolean last_fast;
  char *last_password;
};

G_DEFINE_FINAL_TYPE (FakeDriver, fake_driver, BF_TYPE_LATENT_DRIVER)

/* A cancelled start answers G_IO_ERROR_CANCELLED from the main loop, as
 * the real drivers do, and leaves nothing running. */
static gboolean
start_cancelled_cb (gpointer data)
{
  FakeDriver *self = data;
  g_autoptr(GTask) task = g_steal_pointer (&self->start);

  if (task != NULL)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "start cancelled");
  return G_SOURCE_REMOVE;
}

static void
start_cancel_cb (GCancellable *cancellable,
                 FakeDriver   *self)
{
  self->n_cancel++;
  g_idle_add_full (G_PRIORITY_DEFAULT, start_cancelled_cb, g_object_ref (self), g_object_unref);
}

static void
fake_start_async (BfLatentDriver          *driver,
                  const BfLatentStartInfo *info,
                  GCancellable            *cancellable,
                  GAsyncReadyCallback      callback,
                  gpointer                 user_data)
{
  FakeDriver *self = FAKE_DRIVER (driver);

  g_assert_null (self->start);
  g_assert_nonnull (cancellable);
  self->n_start++;
  g_free (self->last_password);
  self->last_password = g_strdup (info->password);
  self->start = g_task_new (self, cancellable, callback, user_data);
  g_cancellable_connect (cancellable, G_CALLBACK (start_cancel_cb), self, NULL);
}

static gboolean
fake_start_finish (BfLatentDriver  *driver,
                   GAsyncResult    *result,
                   GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
fake_stop_async (BfLatentDriver      *driver,
                 gboolean             fast,
                 GCancellable        *cancellable,
                 GAsyncReadyCallback  callback,
                 gpointer             user_data)
{
  FakeDriver *self = FAKE_DRIVER (driver);

  g_assert_null (self->stop);
  self->n_stop++;
  self->last_fast = fast;
  self->stop = g_task_new (self, cancellable, callback, user_data);
}

static gboolean
fake_stop_finish (BfLatentDriver  *driver,
                  GAsyncResult    *result,
                  GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
fake_driver_finalize (GObject *object)
{
  FakeDriver *self = FAKE_DRIVER (object);

  g_assert_null (self->start);
  g_assert_null (self->stop);
  g_free (self->last_password);
  G_OBJECT_CLASS (fake_driver_parent_class)->finalize (object);
}

static void
fake_driver_class_init (FakeDriverClass *klass)
{
  BfLatentDriverClass *driver_class = BF_LATENT_DRIVER_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = fake_driver_finalize;
  driver_class->start_async = fake_start_async;
  driver_class->start_finish = fake_start_finish;
  driver_class->stop_async = fake_stop_async;
  driver_class->stop_finish = fake_stop_finish;
}

static void
fake_driver_init (FakeDriver *self)
{
}

/* The engine says the instance is up (@error NULL) or could not start. */
static void
fake_driver_finish_start (FakeDriver *self,
                          const char *error)
{
  g_autoptr(GTask) task = g_steal_pointer (&self->start);

  g_assert_nonnull (task);
  g_signal_handlers_disconnect_by_data (g_task_get_cancellable (task), self);
  if (error)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", error);
  else
    {
      bf_latent_driver_set_instance_id (BF_LATENT_DRIVER (self), "fake-1");
      g_task_return_boolean (task, TRUE);
    }
}

static void
fake_driver_finish_stop (FakeDriver *self,
                         const char *error)
{
  g_autoptr(GTask) task = g_steal_pointer (&self->stop);

  g_assert_nonnull (task);
  if (error)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", error);
  else
    {
      bf_latent_driver_set_instance_id (BF_LATENT_DRIVER (self), NULL);
      g_task_return_boolean (task, TRUE);
    }
}

/* The fixture: a latent, its fake driver, and a fake host -------------------- */

typedef struct {
  char *dir;
  char *maildir;
  BfState *state;
  BfMailer *mailer;
  BfAuthority *authority;
  FakeDriver *driver;
  BfLatent *latent;

  /* the host */
  guint active_builds;
  gboolean quarantined;
  guint n_start_failed;
  char *start_failure;
  guint n_release;
  char *release_reason;
  gboolean reenter_on_release;   /* a careless host that reports its own detach */

  /* the latent's signals */
  guint n_substantiated;
  guint n_failed;
  char *failure;
  guint n_insubstantiated;
} Fixture;

static guint
host_active_builds (gpointer data)
{
  return ((Fixture *) data)->active_builds;
}

static gboolean
host_is_quarantined (gpointer data)
{
  return ((Fixture *) data)->quarantined;
}

static void
host_start_failed (gpointer    data,
                   const char *message)
{
  Fixture *f = data;

  f->n_start_failed++;
  f->quarantined = TRUE;
  g_free (f->start_failure);
  f->start_failure = g_strdup (message);
}

static void
host_release (gpointer    data,
              const char *reason)
{
  Fixture *f = data;

  f->n_release++;
  g_free (f->release_reason);
  f->release_reason = g_strdup (reason);
  if (f->reenter_on_release)
    {
      bf_latent_detached (f->latent, reason);
      bf_latent_insubstantiate (f->latent, TRUE, "again from the host");
    }
}

static const BfLatentHost fake_host = {
  .active_builds = host_active_builds,
  .is_quarantined = host_is_quarantined,
  .start_failed = host_start_failed,
  .release = host_release,
};

static void
substantiated_cb (BfDBusLatentWorker *latent,
                  Fixture            *f)
{
  f->n_substantiated++;
}

static void
substantiation_failed_cb (BfDBusLatentWorker *latent,
                          const char         *message,
                          Fixture            *f)
{
  f->n_failed++;
  g_free (f->failure);
  f->failure = g_strdup (message);
}

static void
insubstantiated_cb (BfDBusLatentWorker *latent,
                    Fixture            *f)
{
  f->n_insubstantiated++;
}

static BfWorkerConfig *
worker_config (const char *extra)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *text = g_strdup_printf ("[Worker w]\n%sLatent=command\n"
                                           "StartCommand=/bin/false\nNotifyOnMissing=a@example.com\n%s",
                                           strstr (extra, "Password=") ? "" : "Password=secret\n",
                                           extra);
  g_autoptr(BfConfig) config = bf_config_load_data (text, "test.conf", &error);

  g_assert_no_error (error);
  return bf_worker_config_ref (g_ptr_array_index (config->workers, 0));
}

/* @data: the [Worker w] keys besides the fixed ones */
static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  g_autofree char *cmd = NULL;
  g_autoptr(BfWorkerConfig) wc = worker_config (data);

  f->dir = g_dir_make_tmp ("bf-latent-XXXXXX", NULL);
  f->maildir = g_build_filename (f->dir, "mail", NULL);
  g_mkdir (f->maildir, 0700);
  cmd = g_strdup_printf ("/bin/sh -c 'cat > $(mktemp -p %s m-XXXXXX)'", f->maildir);
  f->state = bf_state_new (f->dir);
  bf_state_load (f->state);
  f->mailer = bf_mailer_new (cmd, "test@example.com");
  f->authority = bf_authority_new (TRUE);
  f->driver = FAKE_DRIVER (bf_latent_driver_new (FAKE_TYPE_DRIVER, wc, f->dir));
  f->latent = bf_latent_new_with_driver (wc, BF_LATENT_DRIVER (f->driver), &fake_host, f,
                                         f->state, f->mailer, f->authority);
  bf_latent_set_master (f->latent, "127.0.0.1:1", NULL);
  g_signal_connect (f->latent, "substantiated", G_CALLBACK (substantiated_cb), f);
  g_signal_connect (f->latent, "substantiation-failed", G_CALLBACK (substantiation_failed_cb), f);
  g_signal_connect (f->latent, "insubstantiated", G_CALLBACK (insubstantiated_cb), f);
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

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* One main-context iteration that returns within 10 ms even when nothing
 * else is due. */
static void
iterate (void)
{
  guint tick = g_timeout_add (10, tick_cb, NULL);

  g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
}

/* Iterates until @cond holds; fails the test after DEADLINE_USEC. */
#define WAIT_UNTIL(cond) G_STMT_START {                                        \
    gint64 wait_deadline_ = g_get_monotonic_time () + DEADLINE_USEC;           \
    while (!(cond))                                                            \
      {                                                                        \
        if (g_get_monotonic_time () > wait_deadline_)                          \
          g_error ("%s:%d: still not true after %d s: %s", __FILE__, __LINE__, \
                   (int) (DEADLINE_USEC / G_USEC_PER_SEC), #cond);             \
        iterate ();                                                            \
      }                                                                        \
  } G_STMT_END

/* Iterates for @ms milliseconds, checking @cond after every iteration. */
#define STAYS_TRUE(cond, ms) G_STMT_START {                                    \
    gint64 stay_until_ = g_get_monotonic_time () + (ms) * 1000;                \
    g_assert_true (cond);                                                      \
    while (g_get_monotonic_time () < stay_until_)                              \
      {                                                                        \
        iterate ();                                                            \
        if (!(cond))                                                           \
          g_error ("%s:%d: stopped being true: %s", __FILE__, __LINE__, #cond); \
      }                                                                        \
  } G_STMT_END

static guint
count_mails (Fixture *f)
{
  g_autoptr(GDir) dir = g_dir_open (f->maildir, 0, NULL);
  guint n = 0;

  while (g_dir_read_name (dir))
    n++;
  return n;
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  gint64 deadline = g_get_monotonic_time () + DEADLINE_USEC;

  /* Whatever the test left running is stopped, as a daemon would, and
   * the engine ends what it was asked to do. */
  if (f->latent)
    bf_latent_insubstantiate (f->latent, TRUE, "test over");
  while (f->driver && (f->driver->start != NULL || f->driver->stop != NULL))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      if (f->driver->start)
        fake_driver_finish_start (f->driver, "test over");
      if (f->driver->stop)
        fake_driver_finish_stop (f->driver, NULL);
      iterate ();
    }
  g_clear_object (&f->latent);
  WAIT_UNTIL (bf_mailer_get_in_flight (f->mailer) == 0);
  g_clear_object (&f->driver);
  bf_state_flush (f->state);
  g_clear_object (&f->state);
  g_clear_object (&f->mailer);
  g_clear_object (&f->authority);
  remove_tree (f->dir);
  g_free (f->dir);
  g_free (f->maildir);
  g_free (f->start_failure);
  g_free (f->release_reason);
  g_free (f->failure);
}

static const char *
state_of (Fixture *f)
{
  return bf_dbus_latent_worker_get_state (BF_DBUS_LATENT_WORKER (f->latent));
}

static gboolean
in_state (Fixture    *f,
          const char *state)
{
  return g_str_equal (state_of (f), state);
}

static const char *
recorded_id (Fixture *f)
{
  BfInstanceRecord *record = g_hash_table_lookup (bf_state_get_instances (f->state), "w");

  return record ? record->id : NULL;
}

static const char *
last_error (Fixture *f)
{
  return bf_dbus_latent_worker_get_last_error (BF_DBUS_LATENT_WORKER (f->latent));
}

/* substantiate, then the engine starts the instance, then the worker attaches */
static void
substantiate_and_attach (Fixture *f)
{
  bf_latent_substantiate (f->latent);
  g_assert_nonnull (f->driver->start);
  fake_driver_finish_start (f->driver, NULL);
  WAIT_UNTIL (f->driver->start == NULL && g_strcmp0 (recorded_id (f), "fake-1") == 0);
  bf_latent_attached (f->latent);
  g_assert_cmpstr (state_of (f), ==, "substantiated");
}

/* The tests ----------------------------------------------------------------- */

#define SLOW_TIMEOUTS "SubstantiationTimeout=60\nBuildWaitTimeout=60\n"

static void
test_substantiate_ok (Fixture       *f,
                      gconstpointer  data)
{
  BfDBusLatentWorker *l = BF_DBUS_LATENT_WORKER (f->latent);

  g_assert_cmpstr (state_of (f), ==, "not-substantiated");
  g_assert_true (bf_latent_can_substantiate (f->latent));
  g_assert_false (bf_latent_accepts_connection (f->latent));

  bf_latent_substantiate (f->latent);
  g_assert_cmpuint (f->driver->n_start, ==, 1);
  g_assert_cmpstr (f->driver->last_password, ==, "secret");
  g_assert_cmpstr (state_of (f), ==, "substantiating");
  g_assert_true (bf_latent_is_substantiating (f->latent));
  g_assert_true (bf_latent_accepts_connection (f->latent));
  g_assert_false (bf_latent_can_take_build (f->latent));
  /* Recorded before the engine answers: a daemon killed now cleans up. */
  g_assert_cmpstr (recorded_id (f), ==, "starting");

  /* A second demand while starting starts nothing more. */
  bf_latent_substantiate (f->latent);
  g_assert_cmpuint (f->driver->n_start, ==, 1);

  fake_driver_finish_start (f->driver, NULL);
  WAIT_UNTIL (g_strcmp0 (recorded_id (f), "fake-1") == 0);
  g_assert_cmpstr (state_of (f), ==, "substantiating");
  g_assert_false (bf_dbus_latent_worker_get_substantiated (l));

  bf_latent_attached (f->latent);
  g_assert_cmpstr (state_of (f), ==, "substantiated");
  g_assert_true (bf_dbus_latent_worker_get_substantiated (l));
  g_assert_cmpuint (f->n_substantiated, ==, 1);
  g_assert_true (bf_latent_can_take_build (f->latent));
  g_assert_false (bf_latent_can_substantiate (f->latent));
  g_assert_cmpstr (last_error (f), ==, "");
  g_assert_cmpuint (f->n_start_failed, ==, 0);
  g_assert_cmpuint (f->n_release, ==, 0);
  g_assert_cmpuint (f->driver->n_stop, ==, 0);
}

static void
test_start_timeout (Fixture       *f,
                    gconstpointer  data)
{
  gint64 started = g_get_monotonic_time ();

  bf_latent_substantiate (f->latent);
  fake_driver_finish_start (f->driver, NULL);
  /* The worker never connects. */
  WAIT_UNTIL (f->n_failed == 1);
  /* Never early. */
  g_assert_cmpint (g_get_monotonic_time () - started, >=, 200000);
  g_assert_nonnull (strstr (f->failure, "did not connect within 0.2 s"));
  g_assert_cmpstr (last_error (f), ==, f->failure);
  g_assert_cmpuint (f->n_start_failed, ==, 1);
  g_assert_cmpstr (f->start_failure, ==, f->failure);

  /* The instance is stopped, fast; the host drops whatever connected. */
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  g_assert_true (f->driver->last_fast);
  g_assert_cmpuint (f->n_release, ==, 1);
  g_assert_false (bf_latent_accepts_connection (f->latent));
  g_assert_cmpstr (recorded_id (f), ==, "fake-1");

  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
  g_assert_cmpuint (f->n_insubstantiated, ==, 1);
  g_assert_null (recorded_id (f));
  WAIT_UNTIL (bf_mailer_get_in_flight (f->mailer) == 0 && count_mails (f) == 1);
  /* Once only. */
  STAYS_TRUE (f->n_failed == 1 && f->n_start_failed == 1 && f->driver->n_stop == 1, 300);
}

static void
test_start_failure_quarantines (Fixture       *f,
                                gconstpointer  data)
{
  bf_latent_substantiate (f->latent);
  fake_driver_finish_start (f->driver, "no capacity in zone");
  WAIT_UNTIL (f->n_failed == 1);
  g_assert_cmpstr (f->failure, ==, "no capacity in zone");
  g_assert_cmpstr (last_error (f), ==, "no capacity in zone");
  /* The host is told, and decides: the fake one quarantines. */
  g_assert_cmpuint (f->n_start_failed, ==, 1);
  g_assert_cmpstr (f->start_failure, ==, "no capacity in zone");
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  g_assert_true (f->driver->last_fast);

  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
  g_assert_null (recorded_id (f));
  WAIT_UNTIL (bf_mailer_get_in_flight (f->mailer) == 0 && count_mails (f) == 1);

  /* A new start clears LastError. */
  bf_latent_substantiate (f->latent);
  g_assert_cmpuint (f->driver->n_start, ==, 2);
  g_assert_cmpstr (last_error (f), ==, "");
}

static void
test_attach_while_substantiating (Fixture       *f,
                                  gconstpointer  data)
{
  bf_latent_substantiate (f->latent);
  /* The worker connects before the engine says it started it. */
  bf_latent_attached (f->latent);
  g_assert_cmpstr (state_of (f), ==, "substantiated");
  g_assert_cmpuint (f->n_substantiated, ==, 1);

  /* The engine's late answer changes nothing but the record. */
  fake_driver_finish_start (f->driver, NULL);
  WAIT_UNTIL (g_strcmp0 (recorded_id (f), "fake-1") == 0);
  g_assert_cmpstr (state_of (f), ==, "substantiated");

  /* The substantiation timeout (0.2 s) is gone with the attach. */
  STAYS_TRUE (in_state (f, "substantiated") && f->n_failed == 0 && f->n_start_failed == 0, 600);
  g_assert_cmpuint (f->driver->n_stop, ==, 0);
  /* Attached twice (a reconnect): one Substantiated signal. */
  bf_latent_attached (f->latent);
  g_assert_cmpuint (f->n_substantiated, ==, 1);
}

static void
test_attach_then_start_error (Fixture       *f,
                              gconstpointer  data)
{
  bf_latent_substantiate (f->latent);
  bf_latent_attached (f->latent);
  /* A start error after the worker attached is only logged. */
  fake_driver_finish_start (f->driver, "engine hiccup");
  STAYS_TRUE (in_state (f, "substantiated") && f->n_failed == 0 && f->n_start_failed == 0, 300);
  g_assert_cmpuint (f->driver->n_stop, ==, 0);
}

static void
test_build_wait_timeout (Fixture       *f,
                         gconstpointer  data)
{
  gint64 idle_since;

  substantiate_and_attach (f);
  /* A build keeps it: the idle timer stops while one runs. */
  f->active_builds = 1;
  bf_latent_build_started (f->latent);
  STAYS_TRUE (in_state (f, "substantiated") && f->n_release == 0, 500);

  /* The last build ended: insubstantiated after BuildWaitTimeout. */
  f->active_builds = 0;
  idle_since = g_get_monotonic_time ();
  bf_latent_builds_idle (f->latent, FALSE);
  WAIT_UNTIL (in_state (f, "insubstantiating"));
  g_assert_cmpint (g_get_monotonic_time () - idle_since, >=, 200000);
  g_assert_cmpuint (f->n_release, ==, 1);
  g_assert_cmpstr (f->release_reason, ==, "insubstantiated");
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  g_assert_false (f->driver->last_fast);
  g_assert_cmpuint (f->n_start_failed, ==, 0);

  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
  g_assert_cmpuint (f->n_insubstantiated, ==, 1);
  g_assert_null (recorded_id (f));
  g_assert_true (bf_latent_can_substantiate (f->latent));
}

static void
test_idle_on_attach (Fixture       *f,
                     gconstpointer  data)
{
  /* Substantiated and nothing to do: the idle timer runs from the attach. */
  substantiate_and_attach (f);
  WAIT_UNTIL (in_state (f, "insubstantiating"));
  g_assert_cmpuint (f->n_release, ==, 1);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
}

static void
test_one_build_per_instance (Fixture       *f,
                             gconstpointer  data)
{
  substantiate_and_attach (f);
  g_assert_true (bf_latent_can_take_build (f->latent));
  f->active_builds = 1;
  bf_latent_build_started (f->latent);
  g_assert_false (bf_latent_can_take_build (f->latent));
  f->active_builds = 0;
  bf_latent_builds_idle (f->latent, FALSE);
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");
  g_assert_false (f->driver->last_fast);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
}

static void
test_insubstantiate_during_start (Fixture       *f,
                                  gconstpointer  data)
{
  bf_latent_substantiate (f->latent);
  g_assert_nonnull (f->driver->start);

  bf_latent_insubstantiate (f->latent, FALSE, "requested by the test");
  /* The start is cancelled and the stop is fast, whatever was asked. */
  g_assert_cmpuint (f->driver->n_cancel, ==, 1);
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  g_assert_true (f->driver->last_fast);
  WAIT_UNTIL (f->driver->start == NULL);   /* the start answered "cancelled" */
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");

  /* A demand while stopping starts again once the stop is done. */
  bf_latent_substantiate (f->latent);
  g_assert_cmpuint (f->driver->n_start, ==, 1);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (f->driver->n_start == 2);
  g_assert_cmpuint (f->n_insubstantiated, ==, 1);
  g_assert_cmpstr (state_of (f), ==, "substantiating");

  /* A cancelled start is no failure. */
  g_assert_cmpuint (f->n_failed, ==, 0);
  g_assert_cmpuint (f->n_start_failed, ==, 0);
  g_assert_cmpstr (last_error (f), ==, "");
  g_assert_cmpuint (count_mails (f), ==, 0);

  /* And a stop request in the meantime wins over that restart. */
  bf_latent_insubstantiate (f->latent, TRUE, "again");
  bf_latent_substantiate (f->latent);
  bf_latent_insubstantiate (f->latent, TRUE, "and again");
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
  STAYS_TRUE (in_state (f, "not-substantiated") && f->driver->n_start == 2, 200);
}

static void
test_instance_exited (Fixture       *f,
                      gconstpointer  data)
{
  /* Gone while starting: a failed start. */
  bf_latent_substantiate (f->latent);
  fake_driver_finish_start (f->driver, NULL);
  WAIT_UNTIL (g_strcmp0 (recorded_id (f), "fake-1") == 0);
  bf_latent_driver_emit_instance_exited (BF_LATENT_DRIVER (f->driver), "exited with status 3");
  g_assert_cmpuint (f->n_failed, ==, 1);
  g_assert_cmpstr (f->failure, ==, "exited with status 3");
  g_assert_cmpuint (f->n_start_failed, ==, 1);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));

  /* Gone while substantiated: stopped (fast), no failure, no quarantine. */
  substantiate_and_attach (f);
  bf_latent_driver_emit_instance_exited (BF_LATENT_DRIVER (f->driver), "killed by signal 9");
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");
  g_assert_true (f->driver->last_fast);
  g_assert_cmpuint (f->n_failed, ==, 1);
  g_assert_cmpuint (f->n_start_failed, ==, 1);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));

  /* Gone while nothing runs: nothing to do. */
  bf_latent_driver_emit_instance_exited (BF_LATENT_DRIVER (f->driver), "late news");
  g_assert_cmpstr (state_of (f), ==, "not-substantiated");
  g_assert_cmpuint (f->driver->n_stop, ==, 2);
}

static void
test_connection_lost (Fixture       *f,
                      gconstpointer  data)
{
  substantiate_and_attach (f);
  /* The worker's connection ends by itself: the instance is stopped. */
  bf_latent_detached (f->latent, "peer closed");
  g_assert_cmpstr (state_of (f), ==, "insubstantiating");
  g_assert_true (f->driver->last_fast);
  g_assert_cmpuint (f->n_release, ==, 1);
  /* The host's detach for that stop comes back: nothing more happens. */
  bf_latent_detached (f->latent, "insubstantiated");
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
}

static void
test_release_reentry (Fixture       *f,
                      gconstpointer  data)
{
  /* Even a host that breaks the contract and reports the detach of a stop
   * back starts no second stop: the latent is already insubstantiating
   * when it asks for the release. */
  f->reenter_on_release = TRUE;
  substantiate_and_attach (f);
  bf_latent_insubstantiate (f->latent, FALSE, "test");
  g_assert_cmpuint (f->n_release, ==, 1);
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  g_assert_false (f->driver->last_fast);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
  g_assert_cmpuint (f->n_insubstantiated, ==, 1);
  f->reenter_on_release = FALSE;
}

static void
test_missing_instance (Fixture       *f,
                       gconstpointer  data)
{
  gint64 started;

  /* An earlier daemon recorded an instance that never connects: after the
   * adoption window it is stopped by its recorded id, fast, and nobody is
   * quarantined for it. */
  bf_state_set_instance (f->state, "w", "command", "left-7", NULL);
  started = g_get_monotonic_time ();
  bf_latent_reconcile (f->latent, "left-7", NULL);
  g_assert_cmpstr (state_of (f), ==, "substantiating");
  g_assert_true (bf_latent_accepts_connection (f->latent));
  g_assert_cmpstr (bf_latent_driver_get_instance_id (BF_LATENT_DRIVER (f->driver)), ==, "left-7");
  g_assert_cmpuint (f->driver->n_start, ==, 0);

  WAIT_UNTIL (in_state (f, "insubstantiating"));
  g_assert_cmpint (g_get_monotonic_time () - started, >=, 200000);
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
  g_assert_true (f->driver->last_fast);
  g_assert_cmpuint (f->n_failed, ==, 0);
  g_assert_cmpuint (f->n_start_failed, ==, 0);
  g_assert_cmpstr (recorded_id (f), ==, "left-7");

  /* A stop that fails keeps the record, for the next daemon. */
  fake_driver_finish_stop (f->driver, "no such instance");
  WAIT_UNTIL (in_state (f, "not-substantiated"));
  g_assert_cmpstr (recorded_id (f), ==, "left-7");
  g_assert_cmpstr (last_error (f), ==, "no such instance");
}

static void
test_adopt_instance (Fixture       *f,
                     gconstpointer  data)
{
  bf_state_set_instance (f->state, "w", "command", "left-8", "pw-of-left-8");
  bf_latent_reconcile (f->latent, "left-8", "pw-of-left-8");
  g_assert_cmpstr (bf_latent_get_password (f->latent), ==, "pw-of-left-8");
  bf_latent_attached (f->latent);
  g_assert_cmpstr (state_of (f), ==, "substantiated");
  g_assert_cmpuint (f->n_substantiated, ==, 1);
  /* Adopted: the adoption window (0.2 s) no longer stops it. */
  STAYS_TRUE (in_state (f, "substantiated") && f->driver->n_stop == 0, 600);
  g_assert_cmpuint (f->driver->n_start, ==, 0);
}

static void
test_reconfigure (Fixture       *f,
                  gconstpointer  data)
{
  BfDBusLatentWorker *l = BF_DBUS_LATENT_WORKER (f->latent);
  g_autoptr(BfWorkerConfig) quick = worker_config ("SubstantiationTimeout=0.2\nBuildWaitTimeout=0.2\n");
  gint64 started;

  g_assert_cmpuint (bf_dbus_latent_worker_get_substantiation_timeout_usec (l), ==, 60 * G_USEC_PER_SEC);
  bf_latent_set_config (f->latent, quick);
  g_assert_cmpuint (bf_dbus_latent_worker_get_substantiation_timeout_usec (l), ==, 200000);
  g_assert_cmpint (bf_dbus_latent_worker_get_build_wait_timeout_usec (l), ==, 200000);
  g_assert_cmpstr (bf_dbus_latent_worker_get_driver (l), ==, "command");
  g_assert_true (bf_latent_driver_get_config (BF_LATENT_DRIVER (f->driver)) == quick);

  /* The next start runs with the new SubstantiationTimeout ... */
  started = g_get_monotonic_time ();
  bf_latent_substantiate (f->latent);
  WAIT_UNTIL (f->n_failed == 1);
  g_assert_cmpint (g_get_monotonic_time () - started, <, 30 * G_USEC_PER_SEC);
  g_assert_nonnull (strstr (f->failure, "within 0.2 s"));
  WAIT_UNTIL (f->driver->start == NULL);   /* cancelled by the failure */
  g_assert_cmpuint (f->driver->n_cancel, ==, 1);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));

  /* ... and the next idle with the new BuildWaitTimeout. */
  f->quarantined = FALSE;
  substantiate_and_attach (f);
  WAIT_UNTIL (in_state (f, "insubstantiating"));
  g_assert_cmpuint (f->n_release, ==, 2);
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated"));
}

static void
test_generated_password (Fixture       *f,
                         gconstpointer  data)
{
  g_autofree char *first = NULL;

  bf_latent_substantiate (f->latent);
  first = g_strdup (f->driver->last_password);
  g_assert_cmpuint (strlen (first), ==, 64);
  g_assert_cmpstr (bf_latent_get_password (f->latent), ==, first);
  bf_latent_insubstantiate (f->latent, TRUE, "test");
  fake_driver_finish_stop (f->driver, NULL);
  WAIT_UNTIL (in_state (f, "not-substantiated") && f->driver->start == NULL);
  g_assert_null (bf_latent_get_password (f->latent));
  bf_latent_substantiate (f->latent);
  g_assert_cmpstr (f->driver->last_password, !=, first);
}

static void
test_host_forgotten (Fixture       *f,
                     gconstpointer  data)
{
  /* The worker went away while a start was running: the latent calls it
   * no more, and still stops its instance. */
  bf_latent_substantiate (f->latent);
  bf_latent_forget_host (f->latent);
  fake_driver_finish_start (f->driver, "too late");
  WAIT_UNTIL (f->n_failed == 1);
  g_assert_cmpuint (f->n_start_failed, ==, 0);
  g_assert_cmpuint (f->n_release, ==, 0);
  g_assert_cmpuint (f->driver->n_stop, ==, 1);
}

/* The worker's side -------------------------------------------------------- */

static void
worker_setup (Fixture       *f,
              gconstpointer  data)
{
  g_autofree char *cmd = NULL;

  f->dir = g_dir_make_tmp ("bf-latent-XXXXXX", NULL);
  f->maildir = g_build_filename (f->dir, "mail", NULL);
  g_mkdir (f->maildir, 0700);
  cmd = g_strdup_printf ("/bin/sh -c 'cat > $(mktemp -p %s m-XXXXXX)'", f->maildir);
  f->state = bf_state_new (f->dir);
  bf_state_load (f->state);
  f->mailer = bf_mailer_new (cmd, "test@example.com");
  f->authority = bf_authority_new (TRUE);
}

/* @keys: NULL for a worker that is not latent */
static BfWorker *
new_worker (Fixture    *f,
            const char *keys)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfConfig) plain = NULL;
  g_autoptr(BfWorkerConfig) wc = NULL;

  if (keys)
    wc = worker_config (keys);
  else
    {
      plain = bf_config_load_data ("[Worker w]\nPassword=secret\n", "test.conf", &error);
      g_assert_no_error (error);
      wc = bf_worker_config_ref (g_ptr_array_index (plain->workers, 0));
    }
  return bf_worker_new (wc, f->state, f->mailer, f->authority);
}

static gint64
quarantine_left_usec (BfWorker *w)
{
  guint64 until = bf_dbus_worker_get_quarantine_until_usec (BF_DBUS_WORKER (w));

  g_assert_true (bf_dbus_worker_get_quarantined (BF_DBUS_WORKER (w)));
  return (gint64) until - g_get_real_time ();
}

/* bf_worker_build_ended() decides: lost and unprepared quarantine (with a
 * doubling backoff), released resets the backoff, the rest say nothing. */
static void
test_worker_build_ended (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, NULL);
  BfDBusWorker *dw = BF_DBUS_WORKER (w);

  bf_worker_set_quarantine_limits (w, 100 * G_USEC_PER_SEC, 300 * G_USEC_PER_SEC);

  bf_worker_build_started (w, "b1");
  bf_worker_build_started (w, "b2");
  g_assert_cmpuint (bf_worker_get_active_builds (w), ==, 2);
  g_assert_true (bf_worker_runs_builder (w, "b1"));
  bf_worker_build_ended (w, "b1", "failed", NULL);
  g_assert_cmpuint (bf_worker_get_active_builds (w), ==, 1);
  g_assert_false (bf_worker_runs_builder (w, "b1"));
  g_assert_false (bf_dbus_worker_get_quarantined (dw));
  bf_worker_build_ended (w, "b2", "timeout", NULL);
  bf_worker_build_started (w, "b1");
  bf_worker_build_ended (w, "b1", "owner-gone", NULL);
  g_assert_false (bf_dbus_worker_get_quarantined (dw));

  /* Lost: 100 s, then doubled, then capped. */
  bf_worker_build_started (w, "b1");
  bf_worker_build_ended (w, "b1", "lost", NULL);
  g_assert_cmpuint (bf_worker_get_active_builds (w), ==, 0);
  g_assert_cmpint (quarantine_left_usec (w), >, 90 * G_USEC_PER_SEC);
  g_assert_cmpint (quarantine_left_usec (w), <=, 100 * G_USEC_PER_SEC);
  g_assert_false (bf_worker_can_take_build (w, "b1"));
  bf_worker_build_started (w, "b1");
  bf_worker_build_ended (w, "b1", "unprepared", "disk full");
  g_assert_cmpint (quarantine_left_usec (w), >, 190 * G_USEC_PER_SEC);
  bf_worker_build_started (w, "b1");
  bf_worker_build_ended (w, "b1", "lost", NULL);
  g_assert_cmpint (quarantine_left_usec (w), >, 290 * G_USEC_PER_SEC);
  g_assert_cmpint (quarantine_left_usec (w), <=, 300 * G_USEC_PER_SEC);

  /* A released build resets the backoff: the next incident is 100 s again. */
  bf_worker_build_started (w, "b1");
  bf_worker_build_ended (w, "b1", "released", NULL);
  bf_worker_build_started (w, "b1");
  bf_worker_build_ended (w, "b1", "lost", NULL);
  g_assert_cmpint (quarantine_left_usec (w), <=, 100 * G_USEC_PER_SEC);
  g_assert_cmpuint (bf_worker_get_active_builds (w), ==, 0);
}

static void
test_worker_quarantine_ends (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, NULL);
  BfDBusWorker *dw = BF_DBUS_WORKER (w);
  gint64 lost_at;

  bf_worker_set_quarantine_limits (w, 200000, G_USEC_PER_SEC);
  bf_worker_build_started (w, "b1");
  lost_at = g_get_monotonic_time ();
  bf_worker_build_ended (w, "b1", "lost", NULL);
  g_assert_true (bf_dbus_worker_get_quarantined (dw));
  WAIT_UNTIL (!bf_dbus_worker_get_quarantined (dw));
  g_assert_cmpint (g_get_monotonic_time () - lost_at, >=, 200000);
  g_assert_cmpuint (bf_dbus_worker_get_quarantine_until_usec (dw), ==, 0);
}

/* The real host: a latent worker whose StartCommand fails is quarantined
 * by its worker, and the Substantiate path then sees the quarantine. */
static void
test_worker_hosts_latent (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(BfWorker) w = new_worker (f, "Builders=b1\nSubstantiationTimeout=60\nBuildWaitTimeout=60\n");
  BfDBusWorker *dw = BF_DBUS_WORKER (w);
  BfLatent *latent = bf_worker_get_latent (w);

  g_assert_nonnull (latent);
  bf_worker_set_quarantine_limits (w, 100 * G_USEC_PER_SEC, 300 * G_USEC_PER_SEC);
  bf_latent_set_master (latent, "127.0.0.1:1", NULL);
  g_assert_true (bf_worker_can_substantiate_for (w, "b1"));
  bf_latent_substantiate (latent);
  g_assert_true (bf_latent_is_substantiating (latent));
  /* StartCommand=/bin/false */
  WAIT_UNTIL (bf_dbus_worker_get_quarantined (dw));
  g_assert_cmpint (quarantine_left_usec (w), <=, 100 * G_USEC_PER_SEC);
  g_assert_nonnull (strstr (bf_dbus_latent_worker_get_last_error (BF_DBUS_LATENT_WORKER (latent)),
                            "StartCommand"));
  WAIT_UNTIL (g_str_equal (bf_dbus_latent_worker_get_state (BF_DBUS_LATENT_WORKER (latent)),
                           "not-substantiated"));
  g_assert_false (bf_worker_can_substantiate_for (w, "b1"));
  g_assert_false (bf_worker_is_connected (w));
}

/* Warnings are part of what the latent does (a stop that failed, a start
 * error after attaching); the test prints them but does not abort on them.
 * Criticals stay fatal. */
static GLogWriterOutput
log_writer (GLogLevelFlags   log_level,
            const GLogField *fields,
            gsize            n_fields,
            gpointer         user_data)
{
  if (log_level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return g_log_writer_default (log_level, fields, n_fields, user_data);
  if (log_level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE) || g_test_verbose ())
    return g_log_writer_standard_streams (log_level & ~G_LOG_FLAG_FATAL, fields, n_fields, user_data);
  return G_LOG_WRITER_HANDLED;
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_log_set_writer_func (log_writer, NULL, NULL);

#define QUICK "SubstantiationTimeout=0.2\nBuildWaitTimeout=0.2\n"
#define QUICK_START "SubstantiationTimeout=0.2\nBuildWaitTimeout=60\n"
#define ADD(path, keys, func) \
  g_test_add ("/latent/" path, Fixture, keys, fixture_setup, func, fixture_teardown)
  ADD ("substantiate-ok", SLOW_TIMEOUTS, test_substantiate_ok);
  ADD ("start-timeout", QUICK_START, test_start_timeout);
  ADD ("start-failure-quarantines", SLOW_TIMEOUTS, test_start_failure_quarantines);
  ADD ("attach-while-substantiating", QUICK_START, test_attach_while_substantiating);
  ADD ("attach-then-start-error", SLOW_TIMEOUTS, test_attach_then_start_error);
  ADD ("build-wait-timeout", QUICK, test_build_wait_timeout);
  ADD ("idle-on-attach", QUICK, test_idle_on_attach);
  ADD ("one-build-per-instance", "BuildWaitTimeout=0\n", test_one_build_per_instance);
  ADD ("insubstantiate-during-start", SLOW_TIMEOUTS, test_insubstantiate_during_start);
  ADD ("instance-exited", SLOW_TIMEOUTS, test_instance_exited);
  ADD ("connection-lost", SLOW_TIMEOUTS, test_connection_lost);
  ADD ("release-reentry", SLOW_TIMEOUTS, test_release_reentry);
  ADD ("missing-instance", QUICK, test_missing_instance);
  ADD ("adopt-instance", QUICK_START, test_adopt_instance);
  ADD ("reconfigure", SLOW_TIMEOUTS, test_reconfigure);
  ADD ("generated-password", "Password=generate\n" SLOW_TIMEOUTS, test_generated_password);
  ADD ("host-forgotten", SLOW_TIMEOUTS, test_host_forgotten);
#undef ADD
#define ADD(path, func) \
  g_test_add ("/worker/" path, Fixture, NULL, worker_setup, func, fixture_teardown)
  ADD ("build-ended-decides-quarantine", test_worker_build_ended);
  ADD ("quarantine-ends", test_worker_quarantine_ends);
  ADD ("hosts-latent", test_worker_hosts_latent);
#undef ADD

  return g_test_run ();
}
