/* bf-latent.c: a latent worker's instance, published as org.buildfleet.Fleet1.LatentWorker
 *
 * The substantiation state machine:
 *
 *   not-substantiated --start--> substantiating --attached--> substantiated
 *          ^                          |   (driver start, then the        |
 *          |                          |    worker must connect within    |
 *          +------- insubstantiating <+    SubstantiationTimeout)        |
 *                        ^------------------------------------------------+
 *
 * Start and stop of one worker are serialised: a stop requested while
 * starting cancels the start, and a start requested while stopping runs
 * once the stop is done.  A failed start (driver error, or no connection
 * in time) stops the instance, sets LastError, emits SubstantiationFailed,
 * mails NotifyOnMissing and tells the host (which quarantines the worker).
 *
 * The latent knows its worker only as a BfLatentHost (see bf-latent.h): it
 * never includes bf-worker.h, and the host drops a connection for a stop
 * without calling bf_latent_detached(), so a stop cannot recurse.
 *
 * Every started instance is recorded in the state directory until it is
 * stopped; the next daemon adopts it if it connects, or stops it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-error.h"
#include "bf-latent.h"
#include "bf-history.h"
#include "bf-log.h"
#include "bf-util.h"
#include "drivers/bf-command-driver.h"
#include "drivers/bf-docker-driver.h"
#include "drivers/bf-latent-driver.h"
#include "drivers/bf-local-driver.h"
#include "drivers/bf-systemd-driver.h"

#define ADOPT_WINDOW_MAX_USEC (30 * G_USEC_PER_SEC)

typedef enum {
  PHASE_IDLE,          /* not-substantiated */
  PHASE_STARTING,      /* substantiating: the driver is starting the instance */
  PHASE_WAITING,       /* substantiating: started, waiting for the worker */
  PHASE_RUNNING,       /* substantiated */
  PHASE_STOPPING,      /* insubstantiating */
} Phase;

struct _BfLatent
{
  BfDBusLatentWorkerSkeleton parent_instance;

  BfWorkerConfig *config;
  const BfLatentHost *host;      /* NULL once forgotten */
  gpointer host_data;            /* unowned: the worker owns us */
  BfState *state;
  BfMailer *mailer;
  BfAuthority *authority;
  BfLatentDriver *driver;

  char *master;                 /* HOST:PORT of the msgpack endpoint, or NULL */
  char *pb_master;              /* HOST:PORT of the PB endpoint, or NULL */
  char *tls_certificate;
  char *password;                /* Password=generate: this instance's */

  Phase phase;
  gboolean adopting;             /* a leftover from an earlier daemon */
  gboolean frozen;               /* daemon shutdown: leave the instance alone */
  gboolean start_after_stop;
  gboolean used;                 /* BuildWaitTimeout=0: took its one build */
  guint builds;                  /* builds this instance took (MaxBuildsPerInstance=) */
  gboolean spare;                /* a pool keeps it idle: no BuildWaitTimeout */
  BfLatentStartGate gate;        /* a pool's MaxInstances=, or NULL */
  gpointer gate_data;
  GCancellable *start_cancellable;
  guint substantiation_source_id;
  guint idle_source_id;
  GQueue substantiate_waiters;   /* GDBusMethodInvocation */
  GQueue stop_waiters;           /* GDBusMethodInvocation or GTask */
};

static void bf_latent_iface_init (BfDBusLatentWorkerIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfLatent, bf_latent, BF_DBUS_TYPE_LATENT_WORKER_SKELETON,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_LATENT_WORKER, bf_latent_iface_init))

static BfDBusLatentWorker *
iface (BfLatent *self)
{
  return BF_DBUS_LATENT_WORKER (self);
}

static const char *
name_of (BfLatent *self)
{
  return self->config->name;
}

/* The host, or what a latent without one (its worker is gone) assumes. */
static guint
host_active_builds (BfLatent *self)
{
  return self->host ? self->host->active_builds (self->host_data) : 0;
}

static gboolean
host_is_quarantined (BfLatent *self)
{
  return self->host ? self->host->is_quarantined (self->host_data) : FALSE;
}

static void
host_start_failed (BfLatent   *self,
                   const char *message)
{
  if (self->host)
    self->host->start_failed (self->host_data, message);
}

static void
host_release (BfLatent   *self,
              const char *reason)
{
  if (self->host)
    self->host->release (self->host_data, reason);
}

static void
set_phase (BfLatent *self,
           Phase     phase)
{
  static const char * const names[] = {
    "not-substantiated", "substantiating", "substantiating", "substantiated", "insubstantiating"
  };

  if (strcmp (names[self->phase], names[phase]) != 0)
    bf_history_record (self->state, name_of (self), "instance", names[phase], NULL);
  self->phase = phase;
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_latent_worker_set_state (iface (self), names[phase]);
  bf_dbus_latent_worker_set_substantiated (iface (self), phase == PHASE_RUNNING);
  g_object_thaw_notify (G_OBJECT (self));
}

static void
record_instance (BfLatent *self)
{
  const char *id = bf_latent_driver_get_instance_id (self->driver);

  bf_state_set_instance (self->state, name_of (self), bf_latent_kind_to_string (self->config->latent),
                         id ? id : "starting", self->password);
}

static void
finish_substantiate_waiters (BfLatent   *self,
                             const char *error_message)
{
  GDBusMethodInvocation *invocation;

  while ((invocation = g_queue_pop_head (&self->substantiate_waiters)) != NULL)
    {
      if (error_message)
        g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_FAILED,
                                               "Worker %s could not be substantiated: %s",
                                               name_of (self), error_message);
      else
        bf_dbus_latent_worker_complete_substantiate (iface (self), invocation);
      g_object_unref (invocation);
    }
}

static void
finish_stop_waiters (BfLatent *self)
{
  gpointer waiter;

  while ((waiter = g_queue_pop_head (&self->stop_waiters)) != NULL)
    {
      if (G_IS_DBUS_METHOD_INVOCATION (waiter))
        bf_dbus_latent_worker_complete_insubstantiate (iface (self), waiter);
      else
        g_task_return_boolean (waiter, TRUE);
      g_object_unref (waiter);
    }
}

/* Timers ---------------------------------------------------------------------- */

static void fail (BfLatent   *self,
                  const char *message);
static void begin_stop (BfLatent *self,
                        gboolean  fast);

static gboolean
substantiation_timeout_cb (gpointer data)
{
  BfLatent *self = data;
  g_autofree char *message = NULL;

  self->substantiation_source_id = 0;
  if (self->adopting)
    {
      bf_worker_message (name_of (self),
                         "The instance of worker %s left by an earlier daemon did not connect; stopping it",
                         name_of (self));
      self->adopting = FALSE;
      g_cancellable_cancel (self->start_cancellable);
      begin_stop (self, TRUE);
      return G_SOURCE_REMOVE;
    }
  message = g_strdup_printf ("the worker did not connect within %.1f s",
                             self->config->substantiation_timeout_usec / (double) G_USEC_PER_SEC);
  fail (self, message);
  return G_SOURCE_REMOVE;
}

static gboolean
idle_timeout_cb (gpointer data)
{
  BfLatent *self = data;

  self->idle_source_id = 0;
  bf_worker_info (name_of (self), "Worker %s idle for its BuildWaitTimeout; insubstantiating", name_of (self));
  bf_latent_insubstantiate (self, FALSE, "idle");
  return G_SOURCE_REMOVE;
}

static void
arm_idle_timer (BfLatent *self)
{
  gint64 wait = self->config->build_wait_timeout_usec;

  g_clear_handle_id (&self->idle_source_id, g_source_remove);
  if (self->phase != PHASE_RUNNING || wait <= 0 || self->spare)
    return;
  self->idle_source_id = bf_timeout_add (bf_usec_to_ms ((guint64) wait), idle_timeout_cb, self,
                                         "[buildfleetd] latent build wait timeout");
}

/* Stopping ------------------------------------------------------------------------ */

static void begin_start (BfLatent *self);

static void
stop_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(BfLatent) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!bf_latent_driver_stop_finish (BF_LATENT_DRIVER (source), result, &error))
    {
      /* Keep the record: the next daemon tries again. */
      bf_worker_warning (name_of (self), "Stopping the instance of worker %s failed: %s",
                         name_of (self), error->message);
      bf_dbus_latent_worker_set_last_error (iface (self), error->message);
    }
  else
    bf_state_remove_instance (self->state, name_of (self));

  self->used = FALSE;
  self->builds = 0;
  g_clear_pointer (&self->password, g_free);
  set_phase (self, PHASE_IDLE);
  bf_worker_info (name_of (self), "Worker %s insubstantiated", name_of (self));
  bf_dbus_latent_worker_emit_insubstantiated (iface (self));
  finish_stop_waiters (self);

  if (self->start_after_stop && !self->frozen)
    {
      self->start_after_stop = FALSE;
      begin_start (self);
    }
}

static void
begin_stop (BfLatent *self,
            gboolean  fast)
{
  g_clear_handle_id (&self->substantiation_source_id, g_source_remove);
  g_clear_handle_id (&self->idle_source_id, g_source_remove);
  set_phase (self, PHASE_STOPPING);

  /* The connection goes first, so its end is not taken for a lost instance;
   * the worker is asked to exit, which is all a driver without a stop
   * command relies on.  The host does not report this detach back. */
  host_release (self, "insubstantiated");
  bf_latent_driver_stop_async (self->driver, fast, NULL, stop_done_cb, g_object_ref (self));
}

/**
 * bf_latent_insubstantiate:
 * @fast: do not wait for the instance to exit cleanly
 *
 * Stops the instance; a start in progress is cancelled first.
 */
void
bf_latent_insubstantiate (BfLatent   *self,
                          gboolean    fast,
                          const char *reason)
{
  self->start_after_stop = FALSE;
  switch (self->phase)
    {
    case PHASE_IDLE:
      finish_stop_waiters (self);
      return;
    case PHASE_STOPPING:
      return;
    case PHASE_STARTING:
    case PHASE_WAITING:
      bf_worker_message (name_of (self), "Worker %s: start cancelled (%s)", name_of (self), reason);
      g_cancellable_cancel (self->start_cancellable);
      finish_substantiate_waiters (self, "the start was cancelled");
      begin_stop (self, TRUE);
      return;
    case PHASE_RUNNING:
      bf_worker_info (name_of (self), "Insubstantiating worker %s (%s)", name_of (self), reason);
      begin_stop (self, fast);
      return;
    }
}

/* Starting ------------------------------------------------------------------------ */

static void
fail (BfLatent   *self,
      const char *message)
{
  g_autofree char *subject = NULL;
  g_autofree char *body = NULL;

  bf_worker_message (name_of (self), "Worker %s failed to substantiate: %s", name_of (self), message);
  bf_dbus_latent_worker_set_last_error (iface (self), message);
  bf_history_record (self->state, name_of (self), "substantiation-failed", message, NULL);
  g_cancellable_cancel (self->start_cancellable);
  bf_dbus_latent_worker_emit_substantiation_failed (iface (self), message);
  finish_substantiate_waiters (self, message);

  subject = g_strdup_printf ("Buildfleet worker %s failed to start", name_of (self));
  body = g_strdup_printf ("The latent worker %s could not be substantiated:\n%s\n\n"
                          "It is quarantined for a while; pending builds go to other workers or wait.\n\n"
                          "-- \nbuildfleetd on %s\n",
                          name_of (self), message, g_get_host_name ());
  bf_mailer_send (self->mailer, (const char * const *) self->config->notify_on_missing,
                  name_of (self), subject, body);
  host_start_failed (self, message);
  begin_stop (self, TRUE);
}

static void
start_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(BfLatent) self = user_data;
  g_autoptr(GError) error = NULL;
  gboolean ok = bf_latent_driver_start_finish (BF_LATENT_DRIVER (source), result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;   /* a stop took over */
  if (self->phase != PHASE_STARTING && self->phase != PHASE_RUNNING)
    return;
  if (!ok)
    {
      if (self->phase == PHASE_RUNNING)
        bf_worker_warning (name_of (self), "Worker %s attached, but its start reported: %s",
                           name_of (self), error->message);
      else
        fail (self, error->message);
      return;
    }
  record_instance (self);
  if (self->phase == PHASE_STARTING)
    set_phase (self, PHASE_WAITING);
}

static char *
generate_password (void)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < 8; i++)
    g_string_append_printf (s, "%08x", g_random_int ());
  return g_string_free (s, FALSE);
}

static void
begin_start (BfLatent *self)
{
  BfLatentStartInfo info = { 0 };
  BfWorkerProtocol protocol = self->config->protocol;
  gboolean pb;
  g_autofree char *master_url = NULL;

  if (self->master == NULL && self->pb_master == NULL)
    {
      fail (self, "the daemon is not listening for workers yet");
      return;
    }
  if (protocol == BF_WORKER_PROTOCOL_DEFAULT)
    protocol = self->pb_master ? BF_WORKER_PROTOCOL_PB : BF_WORKER_PROTOCOL_MSGPACK;
  pb = protocol == BF_WORKER_PROTOCOL_PB;
  if ((pb ? self->pb_master : self->master) == NULL)
    {
      fail (self, pb ? "Protocol=pb, but the daemon has no PB endpoint (see ListenPB=)"
                     : "Protocol=msgpack, but the daemon has no msgpack endpoint (see Listen=)");
      return;
    }
  master_url = g_strdup_printf ("%s://%s",
                                pb ? (self->tls_certificate ? "pbs" : "pb") : (self->tls_certificate ? "wss" : "ws"),
                                pb ? self->pb_master : self->master);
  g_clear_object (&self->start_cancellable);
  self->start_cancellable = g_cancellable_new ();
  self->used = FALSE;
  self->builds = 0;
  self->adopting = FALSE;
  g_free (self->password);
  self->password = self->config->password_generate ? generate_password () : NULL;
  bf_dbus_latent_worker_set_last_error (iface (self), "");
  set_phase (self, PHASE_STARTING);

  info.name = name_of (self);
  info.password = self->password ? self->password : self->config->password;
  info.master = pb ? self->pb_master : self->master;
  info.master_url = master_url;
  info.tls_certificate = self->tls_certificate;
  info.protocol = bf_worker_protocol_to_string (protocol);
  info.daemon_id = bf_state_get_daemon_id (self->state);

  bf_worker_info (name_of (self), "Substantiating worker %s with the %s driver (protocol %s)",
                  name_of (self), bf_latent_kind_to_string (self->config->latent), info.protocol);
  self->substantiation_source_id = bf_timeout_add (bf_usec_to_ms (self->config->substantiation_timeout_usec),
                                                   substantiation_timeout_cb, self,
                                                   "[buildfleetd] substantiation timeout");
  bf_latent_driver_start_async (self->driver, &info, self->start_cancellable,
                                start_done_cb, g_object_ref (self));
  /* Recorded before the engine answers: a daemon killed now still cleans up. */
  record_instance (self);
}

/**
 * bf_latent_substantiate:
 *
 * Starts an instance unless one runs or is starting; after a stop in
 * progress if need be.
 */
void
bf_latent_substantiate (BfLatent *self)
{
  if (self->frozen)
    return;     /* the daemon is exiting: nothing starts any more */
  switch (self->phase)
    {
    case PHASE_IDLE:
      begin_start (self);
      return;
    case PHASE_STOPPING:
      self->start_after_stop = TRUE;
      return;
    case PHASE_STARTING:
    case PHASE_WAITING:
    case PHASE_RUNNING:
      return;
    }
}

/**
 * bf_latent_reconcile:
 * @instance_id: what the earlier daemon recorded
 *
 * An instance left by an earlier daemon: wait a little for it to connect
 * (then it is adopted), else stop it.
 */
void
bf_latent_reconcile (BfLatent   *self,
                     const char *instance_id,
                     const char *password)
{
  guint64 window = MIN (self->config->substantiation_timeout_usec, ADOPT_WINDOW_MAX_USEC);

  g_return_if_fail (self->phase == PHASE_IDLE);
  bf_worker_message (name_of (self), "Worker %s has an instance left by an earlier daemon (%s); waiting %.1f s for it to connect",
                     name_of (self), instance_id, window / (double) G_USEC_PER_SEC);
  bf_latent_driver_set_instance_id (self->driver, instance_id);
  g_free (self->password);
  self->password = g_strdup (password);
  self->adopting = TRUE;
  set_phase (self, PHASE_WAITING);
  self->substantiation_source_id = bf_timeout_add (bf_usec_to_ms (window), substantiation_timeout_cb, self,
                                                   "[buildfleetd] adoption window");
}

/**
 * bf_latent_get_driver:
 *
 * Returns: (transfer none): the engine of this worker's instances.
 */
BfLatentDriver *
bf_latent_get_driver (BfLatent *self)
{
  return self->driver;
}

/**
 * bf_latent_owns_instance:
 * @instance_id: an instance the engine lists under this worker's name and
 *   the daemon's id
 *
 * For the engine-level reconciliation (bf-manager.c): is @instance_id one
 * this latent knows (the one it runs, adopts or stops), or may be about to
 * know (a start in flight has not told its id yet)?  What it does not own
 * is an orphan, stopped by the manager.
 *
 * Returns: %TRUE when @instance_id must be left alone.
 */
gboolean
bf_latent_owns_instance (BfLatent   *self,
                         const char *instance_id)
{
  const char *current = bf_latent_driver_get_instance_id (self->driver);

  if (self->phase == PHASE_STARTING)
    return TRUE;
  return current != NULL && g_strcmp0 (current, instance_id) == 0;
}

/* Hooks from the worker ------------------------------------------------------------ */

gboolean
bf_latent_accepts_connection (BfLatent *self)
{
  switch (self->phase)
    {
    case PHASE_STARTING:
    case PHASE_WAITING:
    case PHASE_RUNNING:
      return TRUE;
    case PHASE_IDLE:
      /* An instance that is never stopped may come and go by itself. */
      return self->config->build_wait_timeout_usec < 0;
    case PHASE_STOPPING:
    default:
      return FALSE;
    }
}

void
bf_latent_attached (BfLatent *self)
{
  g_clear_handle_id (&self->substantiation_source_id, g_source_remove);
  if (self->phase == PHASE_RUNNING)
    return;
  if (self->adopting)
    bf_worker_message (name_of (self), "Adopted the instance of worker %s left by an earlier daemon", name_of (self));
  self->adopting = FALSE;
  set_phase (self, PHASE_RUNNING);
  bf_worker_info (name_of (self), "Worker %s substantiated", name_of (self));
  bf_dbus_latent_worker_emit_substantiated (iface (self));
  finish_substantiate_waiters (self, NULL);
  if (host_active_builds (self) == 0)
    arm_idle_timer (self);
}

void
bf_latent_detached (BfLatent   *self,
                    const char *reason)
{
  /* A substantiated instance whose connection drops is stopped, and started
   * again on the next demand. */
  if (self->phase == PHASE_RUNNING && !self->frozen)
    {
      g_autofree char *why = g_strdup_printf ("connection lost: %s", reason);
      bf_latent_insubstantiate (self, TRUE, why);
    }
}

/* The instance took all the builds it may (BuildWaitTimeout=0: one;
 * MaxBuildsPerInstance=N: N): it is replaced once they end. */
static gboolean
used_up (BfLatent *self)
{
  guint max = self->config->max_builds_per_instance;

  return (self->config->build_wait_timeout_usec == 0 && self->used) ||
         (max > 0 && self->builds >= max);
}

gboolean
bf_latent_can_take_build (BfLatent *self)
{
  return self->phase == PHASE_RUNNING && !used_up (self);
}

gboolean
bf_latent_can_substantiate (BfLatent *self)
{
  return self->phase == PHASE_IDLE;
}

gboolean
bf_latent_is_substantiating (BfLatent *self)
{
  return self->phase == PHASE_STARTING || self->phase == PHASE_WAITING;
}

void
bf_latent_build_started (BfLatent *self)
{
  g_clear_handle_id (&self->idle_source_id, g_source_remove);
  self->used = TRUE;
  self->builds++;
}

/**
 * bf_latent_builds_idle:
 * @graceful: the worker is graceful
 *
 * The last build ended: stop now (graceful, or BuildWaitTimeout=0), after
 * BuildWaitTimeout, or never (-1).
 */
void
bf_latent_builds_idle (BfLatent *self,
                       gboolean  graceful)
{
  if (self->phase != PHASE_RUNNING)
    return;
  if (graceful)
    bf_latent_insubstantiate (self, FALSE, "graceful");
  else if (self->config->build_wait_timeout_usec == 0)
    bf_latent_insubstantiate (self, FALSE, "one build per instance");
  else if (used_up (self))
    {
      g_autofree char *why = g_strdup_printf ("took its %u builds (MaxBuildsPerInstance)", self->builds);
      bf_latent_insubstantiate (self, FALSE, why);
    }
  else
    arm_idle_timer (self);
}

static void
instance_exited_cb (BfLatentDriver *driver,
                    const char     *message,
                    BfLatent       *self)
{
  if (self->phase == PHASE_STARTING || self->phase == PHASE_WAITING)
    fail (self, message);
  else if (self->phase == PHASE_RUNNING)
    bf_latent_insubstantiate (self, TRUE, message);
}

/* Shutdown -------------------------------------------------------------------------- */

/**
 * bf_latent_freeze:
 *
 * For an exit that leaves the instance to the next daemon (KeepOnShutdown,
 * or a lost bus): nothing starts or stops any more, the record stays and
 * the next daemon adopts the instance.
 */
void
bf_latent_freeze (BfLatent *self)
{
  self->frozen = TRUE;
  g_clear_handle_id (&self->substantiation_source_id, g_source_remove);
  g_clear_handle_id (&self->idle_source_id, g_source_remove);
}

/**
 * bf_latent_shutdown_async:
 *
 * For daemon shutdown: stops a running or starting instance quickly,
 * unless KeepOnShutdown=true (then its record stays for the next daemon).
 */
void
bf_latent_shutdown_async (BfLatent            *self,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, bf_latent_shutdown_async);
  if (self->phase == PHASE_IDLE || self->config->keep_on_shutdown)
    {
      bf_latent_freeze (self);
      g_task_return_boolean (task, TRUE);
      return;
    }
  g_queue_push_tail (&self->stop_waiters, g_steal_pointer (&task));
  bf_latent_insubstantiate (self, TRUE, "daemon shutting down");
  self->frozen = TRUE;
}

gboolean
bf_latent_shutdown_finish (BfLatent      *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* D-Bus ----------------------------------------------------------------------------- */

static void
substantiate_authorized (GObject               *object,
                         GDBusMethodInvocation *invocation)
{
  BfLatent *self = BF_LATENT (object);

  if (self->phase == PHASE_RUNNING)
    {
      bf_dbus_latent_worker_complete_substantiate (iface (self), invocation);
      return;
    }
  if (self->phase == PHASE_IDLE && !bf_latent_may_start (self))
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_BUSY,
                                             "Worker %s: its pool runs as many instances as it may (MaxInstances)",
                                             name_of (self));
      return;
    }
  if (self->phase == PHASE_IDLE && host_is_quarantined (self))
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_BUSY,
                                             "Worker %s is quarantined after a failed start: %s",
                                             name_of (self), bf_dbus_latent_worker_get_last_error (iface (self)));
      return;
    }
  g_queue_push_tail (&self->substantiate_waiters, g_object_ref (invocation));
  bf_latent_substantiate (self);
}

static gboolean
handle_substantiate (BfDBusLatentWorker    *object,
                     GDBusMethodInvocation *invocation)
{
  bf_authority_check (BF_LATENT (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_MANAGE_WORKERS, substantiate_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
insubstantiate_authorized (GObject               *object,
                           GDBusMethodInvocation *invocation)
{
  BfLatent *self = BF_LATENT (object);
  gboolean fast;

  g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(b)", &fast);
  g_queue_push_tail (&self->stop_waiters, g_object_ref (invocation));
  bf_latent_insubstantiate (self, fast, "requested over D-Bus");
}

static gboolean
handle_insubstantiate (BfDBusLatentWorker    *object,
                       GDBusMethodInvocation *invocation,
                       gboolean               fast)
{
  bf_authority_check (BF_LATENT (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_MANAGE_WORKERS, insubstantiate_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
bf_latent_iface_init (BfDBusLatentWorkerIface *iface)
{
  iface->handle_substantiate = handle_substantiate;
  iface->handle_insubstantiate = handle_insubstantiate;
}

/* Object ---------------------------------------------------------------------------- */

static void
bf_latent_dispose (GObject *object)
{
  BfLatent *self = BF_LATENT (object);

  g_clear_handle_id (&self->substantiation_source_id, g_source_remove);
  g_clear_handle_id (&self->idle_source_id, g_source_remove);
  if (self->start_cancellable)
    g_cancellable_cancel (self->start_cancellable);
  finish_substantiate_waiters (self, "the worker was removed");
  finish_stop_waiters (self);
  if (self->driver)
    g_signal_handlers_disconnect_by_data (self->driver, self);
  g_clear_object (&self->driver);
  G_OBJECT_CLASS (bf_latent_parent_class)->dispose (object);
}

static void
bf_latent_finalize (GObject *object)
{
  BfLatent *self = BF_LATENT (object);

  g_clear_pointer (&self->config, bf_worker_config_unref);
  g_clear_object (&self->state);
  g_clear_object (&self->mailer);
  g_clear_object (&self->authority);
  g_clear_object (&self->start_cancellable);
  g_free (self->master);
  g_free (self->pb_master);
  g_free (self->tls_certificate);
  g_free (self->password);
  G_OBJECT_CLASS (bf_latent_parent_class)->finalize (object);
}

static void
bf_latent_class_init (BfLatentClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_latent_dispose;
  object_class->finalize = bf_latent_finalize;
}

static void
bf_latent_init (BfLatent *self)
{
  g_queue_init (&self->substantiate_waiters);
  g_queue_init (&self->stop_waiters);
}

void
bf_latent_set_config (BfLatent       *self,
                      BfWorkerConfig *config)
{
  BfDBusLatentWorker *l = iface (self);

  g_clear_pointer (&self->config, bf_worker_config_unref);
  self->config = bf_worker_config_ref (config);
  if (self->driver)
    bf_latent_driver_set_config (self->driver, config);
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_latent_worker_set_driver (l, bf_latent_kind_to_string (config->latent));
  bf_dbus_latent_worker_set_build_wait_timeout_usec (l, config->build_wait_timeout_usec);
  bf_dbus_latent_worker_set_substantiation_timeout_usec (l, config->substantiation_timeout_usec);
  bf_dbus_latent_worker_set_pool (l, config->pool ? config->pool : "");
  g_object_thaw_notify (G_OBJECT (self));
}

/**
 * bf_latent_set_master:
 * @master: (nullable): "HOST:PORT" of the msgpack endpoint instances connect to
 * @tls_certificate: (nullable): set when the endpoints speak TLS
 */
void
bf_latent_set_master (BfLatent   *self,
                      const char *master,
                      const char *tls_certificate)
{
  g_free (self->master);
  self->master = g_strdup (master);
  g_free (self->tls_certificate);
  self->tls_certificate = g_strdup (tls_certificate);
}

/**
 * bf_latent_set_pb_master:
 * @pb_master: (nullable): "HOST:PORT" of the PB endpoint instances connect to
 *
 * Which endpoint a new instance gets follows the worker's Protocol=: this
 * one for PB (the default when there is one), bf_latent_set_master()'s for
 * msgpack.
 */
void
bf_latent_set_pb_master (BfLatent   *self,
                         const char *pb_master)
{
  g_free (self->pb_master);
  self->pb_master = g_strdup (pb_master);
}

/**
 * bf_latent_get_password:
 *
 * Returns: (nullable): the generated password of the current instance, or
 *   %NULL when none is running or the configured password applies.
 */
const char *
bf_latent_get_password (BfLatent *self)
{
  return self->password;
}

/**
 * bf_latent_set_spare:
 * @spare: whether the instance is kept idle on purpose
 *
 * A pool's warm spare (MinIdle=) is not stopped after BuildWaitTimeout
 * while it is one; once it is not, an idle instance's timeout starts over.
 */
void
bf_latent_set_spare (BfLatent *self,
                     gboolean  spare)
{
  spare = !!spare;
  if (self->spare == spare)
    return;
  self->spare = spare;
  if (spare)
    g_clear_handle_id (&self->idle_source_id, g_source_remove);
  else if (self->phase == PHASE_RUNNING && host_active_builds (self) == 0 && !self->frozen)
    arm_idle_timer (self);
}

/**
 * bf_latent_set_start_gate:
 * @gate: (nullable): asked before an instance is started for a build or a
 *   Substantiate call; %NULL: always allowed
 *
 * How a pool keeps to MaxInstances=.
 */
void
bf_latent_set_start_gate (BfLatent          *self,
                          BfLatentStartGate  gate,
                          gpointer           gate_data)
{
  self->gate = gate;
  self->gate_data = gate_data;
}

/**
 * bf_latent_may_start:
 *
 * Whether the start gate, if any, lets a new instance start now.
 */
gboolean
bf_latent_may_start (BfLatent *self)
{
  return self->gate == NULL || self->gate (self->gate_data);
}

/**
 * bf_latent_get_builds:
 *
 * Returns: how many builds the current instance took
 */
guint
bf_latent_get_builds (BfLatent *self)
{
  return self->builds;
}

/**
 * bf_latent_forget_host:
 *
 * The host is going away: the latent calls it no more (a latent may live
 * on for a while, e.g. while a driver call it started completes).
 */
void
bf_latent_forget_host (BfLatent *self)
{
  self->host = NULL;
  self->host_data = NULL;
}

/**
 * bf_latent_new_with_driver:
 * @driver: (transfer none): the engine; tests pass a fake one
 * @host: (not nullable): the worker's side; must stay valid until
 *   bf_latent_forget_host() or the latent's end
 *
 * Returns: (transfer full): a latent worker's instance, not substantiated.
 */
BfLatent *
bf_latent_new_with_driver (BfWorkerConfig     *config,
                           BfLatentDriver     *driver,
                           const BfLatentHost *host,
                           gpointer            host_data,
                           BfState            *state,
                           BfMailer           *mailer,
                           BfAuthority        *authority)
{
  BfLatent *self = g_object_new (BF_TYPE_LATENT, NULL);

  g_return_val_if_fail (host != NULL, self);
  self->host = host;
  self->host_data = host_data;
  self->state = g_object_ref (state);
  self->mailer = g_object_ref (mailer);
  self->authority = g_object_ref (authority);
  self->driver = g_object_ref (driver);
  g_signal_connect (self->driver, "instance-exited", G_CALLBACK (instance_exited_cb), self);
  set_phase (self, PHASE_IDLE);
  bf_dbus_latent_worker_set_last_error (iface (self), "");
  bf_latent_set_config (self, config);
  return self;
}

static GType
driver_type (BfLatentKind kind)
{
  switch (kind)
    {
    case BF_LATENT_COMMAND: return BF_TYPE_COMMAND_DRIVER;
    case BF_LATENT_LOCAL: return BF_TYPE_LOCAL_DRIVER;
    case BF_LATENT_SYSTEMD: return BF_TYPE_SYSTEMD_DRIVER;
    case BF_LATENT_DOCKER: return BF_TYPE_DOCKER_DRIVER;
    case BF_LATENT_NONE:
    default:
      g_return_val_if_reached (G_TYPE_INVALID);
    }
}

/**
 * bf_latent_new:
 *
 * As bf_latent_new_with_driver(), with the driver for @config's Latent=.
 */
BfLatent *
bf_latent_new (BfWorkerConfig     *config,
               const BfLatentHost *host,
               gpointer            host_data,
               BfState            *state,
               BfMailer           *mailer,
               BfAuthority        *authority)
{
  g_autoptr(BfLatentDriver) driver = bf_latent_driver_new (driver_type (config->latent), config,
                                                                 bf_state_get_directory (state));

  return bf_latent_new_with_driver (config, driver, host, host_data, state, mailer, authority);
}
