/* bf-worker.c: one worker's lifecycle, published as org.buildfleet.Fleet1.Worker
 *
 * The worker owns its state and its timers: which connection is attached,
 * the duplicate-connection check, the missing timer, graceful and pause.
 * Only this file decides when a worker is missing or back online.
 *
 * The missing timer runs from DisconnectedSinceUSec, which is persisted, and
 * whether Missing was already raised for the current incident is persisted
 * too: restarting the daemon resumes the timers where they were and never
 * mails an admin twice about the same absence (Buildbot's issue 4234).
 * Within one process the timer counts monotonic time since the disconnect;
 * only at start-up is the persisted wall-clock time turned back into "how
 * long ago", which is all a restarted process can know.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-error.h"
#include "bf-history.h"
#include "bf-log.h"
#include "bf-shared-dict.h"
#include "bf-timer-queue.h"
#include "bf-util.h"
#include "bf-variant-util.h"
#include "bf-worker.h"
#include "bf-health.h"
#include "bf-pb-auth.h"

#define MAX_REASON_LEN 1024

struct _BfWorker
{
  BfDBusWorkerSkeleton parent_instance;

  BfWorkerConfig *config;
  BfState *state;
  BfMailer *mailer;
  BfAuthority *authority;

  BfLatent *latent;             /* latent workers only */
  const BfWorkerObserver *observer;   /* the manager; NULL once it let go */
  gpointer observer_data;

  BfWorkerLink *connection;     /* attached */
  BfWorkerLink *candidate;      /* being attached, or waiting for the duplicate check */
  GPtrArray *busy_builders;     /* builders with an active build here; NULL if none */
  GStrv reported_labels;        /* derived from the last attach's info; NULL before */
  GCancellable *candidate_cancellable;
  guint64 duplicate_ping_timeout_usec;

  BfTimer *missing_timer;
  BfTimer *quarantine_timer;
  BfTimer *flap_timer;          /* while flapping and attached: until recovery */
  GArray *detach_times;         /* gint64 monotonic, the last FlapThreshold+1; NULL if none */
  gboolean detach_expected;     /* we asked it to go (Shutdown, Disconnect): not a flap */
  BfHealth *health;             /* with HealthInterval= only */
  guint64 quarantine_backoff_usec;
  guint64 quarantine_initial_usec;
  guint64 quarantine_max_usec;
  gboolean missing_notified;
  gint64 disconnected_mono;       /* DisconnectedSinceUSec on the monotonic clock */
  guint64 last_seen_usec;

  GVariant *properties_cache;   /* a{sv} of all properties, see bf_shared_dict_new() */
  BfCacheWarmer *cache_warmer;  /* rebuilds properties_cache, see bf_worker_set_cache_warmer() */
  gboolean attach_announcing;   /* in the attach batch: Attached not sent yet */

  GQueue admin_ops;             /* AdminOp: authorised admin calls, in order; the head is
                                 * being saved while admin_saving */
  gboolean admin_saving;
};

/* An admin call (SetGraceful, Pause, Unpause) waiting for its turn.  It
 * is answered, and takes effect on the bus, only once it is on disk. */
typedef enum {
  ADMIN_SET_GRACEFUL,
  ADMIN_PAUSE,
  ADMIN_UNPAUSE,
} AdminKind;

typedef struct {
  AdminKind kind;
  GDBusMethodInvocation *invocation;
  gboolean graceful;
  char *reason;
  char *caller;                 /* the caller's user name (PausedBy) */
  guint64 since_usec;           /* when the call came (PausedSinceUSec) */
} AdminOp;

static void
admin_op_free (AdminOp *op)
{
  g_clear_object (&op->invocation);
  g_free (op->reason);
  g_free (op->caller);
  g_free (op);
}

enum {
  SIGNAL_CONNECTED_CHANGED,
  SIGNAL_MISSING_CHANGED,
  SIGNAL_ACTIVE_BUILDS_CHANGED,
  SIGNAL_AVAILABILITY_CHANGED,
  SIGNAL_LOST,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* The observer first, then the signal; a reference is held throughout,
 * as a signal emission does (the manager may drop the worker). */
static void
emit_connected_changed (BfWorker *self,
                        gboolean  connected)
{
  g_autoptr(BfWorker) hold = g_object_ref (self);

  if (self->observer)
    self->observer->connected_changed (self, connected, self->observer_data);
  g_signal_emit (self, signals[SIGNAL_CONNECTED_CHANGED], 0, connected);
}

static void
emit_missing_changed (BfWorker *self,
                      gboolean  missing)
{
  g_autoptr(BfWorker) hold = g_object_ref (self);

  if (self->observer)
    self->observer->missing_changed (self, missing, self->observer_data);
  g_signal_emit (self, signals[SIGNAL_MISSING_CHANGED], 0, missing);
}

static void
emit_active_builds_changed (BfWorker *self,
                            int       delta)
{
  g_autoptr(BfWorker) hold = g_object_ref (self);

  if (self->observer)
    self->observer->active_builds_changed (self, delta, self->observer_data);
  g_signal_emit (self, signals[SIGNAL_ACTIVE_BUILDS_CHANGED], 0, delta);
}

static void
emit_availability_changed (BfWorker *self)
{
  g_autoptr(BfWorker) hold = g_object_ref (self);

  if (self->observer)
    self->observer->availability_changed (self, self->observer_data);
  g_signal_emit (self, signals[SIGNAL_AVAILABILITY_CHANGED], 0);
}

/**
 * bf_worker_set_observer:
 * @observer: (nullable): static callbacks, or %NULL to stop
 *
 * The one observer (the manager) that hears of every change of the
 * worker's counters and availability, see #BfWorkerObserver.
 */
void
bf_worker_set_observer (BfWorker               *self,
                        const BfWorkerObserver *observer,
                        gpointer                data)
{
  self->observer = observer;
  self->observer_data = observer ? data : NULL;
}

static void bf_worker_iface_init (BfDBusWorkerIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfWorker, bf_worker, BF_DBUS_TYPE_WORKER_SKELETON,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_WORKER, bf_worker_iface_init))

static BfDBusWorker *
iface (BfWorker *self)
{
  return BF_DBUS_WORKER (self);
}

/* Attach announcements --------------------------------------------------------
 *
 * An attach is published as PropertiesChanged (Connected, Info, Peer…) and
 * then Attached.  Both go out from one idle for every worker
 * that attached while the main loop was dispatching, not one by one between
 * socket reads (and not as the skeleton does by itself, Attached at once
 * and PropertiesChanged from an idle afterwards): each D-Bus message handed to an idle GDBus writer thread
 * wakes it (a futex and a context switch), and with the daemon on one CPU
 * that was a large part of an attach storm's cost.  A worker's own later
 * signals (Detached, GracefulChanged, …) send its pending announcement
 * first, so a client never sees them out of order.
 *
 * One dispatch sends for at most ANNOUNCE_BUDGET_USEC, oldest first, and
 * leaves the rest to the next iteration; at default priority, so a D-Bus
 * call (GDBus hands it to the main loop as a default-priority idle) waits
 * for one slice, not for every attach of a storm's iteration (issue 20). */
#define ANNOUNCE_BUDGET_USEC 2000
static GQueue attach_batch = G_QUEUE_INIT;   /* BfWorker* (owned) */
static guint attach_batch_id;

static void
announce_attached (BfWorker *self)
{
  self->attach_announcing = FALSE;
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  bf_dbus_worker_emit_attached (iface (self));
}

/* Sends @self's pending attach announcement, if any, now. */
static void
announce_pending (BfWorker *self)
{
  if (!self->attach_announcing)
    return;
  g_queue_remove (&attach_batch, self);
  announce_attached (self);
  g_object_unref (self);
}

/* Sends the oldest pending announcement; FALSE if there was none. */
static gboolean
announce_oldest (void)
{
  BfWorker *worker = g_queue_pop_head (&attach_batch);

  if (worker == NULL)
    return FALSE;
  announce_attached (worker);
  g_object_unref (worker);
  return TRUE;
}

static gboolean
attach_batch_cb (gpointer data)
{
  gint64 until = g_get_monotonic_time () + ANNOUNCE_BUDGET_USEC;

  while (announce_oldest ())
    if (!g_queue_is_empty (&attach_batch) && g_get_monotonic_time () >= until)
      return G_SOURCE_CONTINUE;
  attach_batch_id = 0;
  return G_SOURCE_REMOVE;
}

static void
announce_later (BfWorker *self)
{
  g_assert (!self->attach_announcing);
  self->attach_announcing = TRUE;
  g_queue_push_tail (&attach_batch, g_object_ref (self));
  if (attach_batch_id == 0)
    {
      GSource *source = g_idle_source_new ();

      attach_batch_id = bf_timeout_add_full (source, attach_batch_cb, NULL,
                                             "[buildfleetd] announce attached workers");
    }
}

/**
 * bf_worker_flush_attach_announcements:
 *
 * At exit: sends what is pending, so no worker keeps a reference.
 */
void
bf_worker_flush_attach_announcements (void)
{
  g_clear_handle_id (&attach_batch_id, g_source_remove);
  while (announce_oldest ())
    ;
}

/* Wall-clock time: only for what is published and persisted.  Intervals
 * and deadlines use g_get_monotonic_time(), so a stepped clock neither
 * raises alarms early nor holds them back. */
static guint64
now_usec (void)
{
  return (guint64) g_get_real_time ();
}

/* Sets DisconnectedSinceUSec and its monotonic twin; @since is in the past
 * (a persisted time) or now. */
static void
set_disconnected_since (BfWorker *self,
                        guint64   since)
{
  guint64 now = now_usec ();
  guint64 ago = since != 0 && since < now ? now - since : 0;

  bf_dbus_worker_set_disconnected_since_usec (iface (self), since);
  self->disconnected_mono = g_get_monotonic_time () - (gint64) MIN (ago, (guint64) G_MAXINT64 / 2);
}

static char *
format_time (guint64 usec)
{
  g_autoptr(GDateTime) secs = g_date_time_new_from_unix_local ((gint64) (usec / G_USEC_PER_SEC));
  g_autoptr(GDateTime) dt = secs ? g_date_time_add (secs, (GTimeSpan) (usec % G_USEC_PER_SEC)) : NULL;

  if (dt == NULL)
    return g_strdup ("(unknown)");
  return g_date_time_format (dt, "%Y-%m-%d %H:%M:%S %Z");
}

static char *
format_duration (guint64 usec)
{
  guint64 s = usec / G_USEC_PER_SEC;

  if (usec < G_USEC_PER_SEC)
    return g_strdup_printf ("%.1f seconds", usec / (double) G_USEC_PER_SEC);
  if (s < 120)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " seconds", s);
  if (s < 2 * 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " minutes", s / 60);
  if (s < 2 * 86400)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " hours", s / 3600);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " days", s / 86400);
}

/* What the state file should say: what is published, with the admin
 * change being saved on top (a save_state() meanwhile must not undo it). */
static void
fill_state (BfWorker      *self,
            BfWorkerRecord *ws)
{
  AdminOp *op = self->admin_saving ? g_queue_peek_head (&self->admin_ops) : NULL;

  *ws = (BfWorkerRecord) {
    .graceful = bf_dbus_worker_get_graceful (iface (self)),
    .paused = bf_dbus_worker_get_paused (iface (self)),
    .pause_reason = (char *) bf_dbus_worker_get_pause_reason (iface (self)),
    .paused_by = (char *) bf_dbus_worker_get_paused_by (iface (self)),
    .paused_since_usec = bf_dbus_worker_get_paused_since_usec (iface (self)),
    .last_seen_usec = self->last_seen_usec,
    .disconnected_since_usec = bf_dbus_worker_get_disconnected_since_usec (iface (self)),
    .missing_notified = self->missing_notified,
  };
  if (op == NULL)
    return;
  switch (op->kind)
    {
    case ADMIN_SET_GRACEFUL:
      ws->graceful = op->graceful;
      break;
    case ADMIN_PAUSE:
      ws->paused = TRUE;
      ws->pause_reason = op->reason;
      ws->paused_by = op->caller;
      ws->paused_since_usec = op->since_usec;
      break;
    case ADMIN_UNPAUSE:
      ws->paused = FALSE;
      ws->pause_reason = (char *) "";
      ws->paused_by = (char *) "";
      ws->paused_since_usec = 0;
      break;
    }
}

static void
save_state (BfWorker *self)
{
  BfWorkerRecord ws;

  fill_state (self, &ws);
  bf_state_set_worker (self->state, bf_worker_get_name (self), &ws);
}

static void
mail_admins (BfWorker   *self,
             const char *subject,
             const char *body)
{
  bf_mailer_send (self->mailer,
                  (const char * const *) self->config->notify_on_missing,
                  bf_worker_get_name (self), subject, body);
}

static void
append_details (BfWorker *self,
                GString  *body)
{
  const char *admin = bf_dbus_worker_get_admin (iface (self));
  const char *host = bf_dbus_worker_get_host (iface (self));

  if (admin && *admin)
    g_string_append_printf (body, "Admin: %s\n", admin);
  if (host && *host)
    g_string_append_printf (body, "Host: %s\n", host);
  g_string_append_printf (body, "\n-- \nbuildfleetd on %s\n", g_get_host_name ());
}

/* Missing ------------------------------------------------------------------ */

static gboolean
missing_timeout_cb (gpointer data)
{
  BfWorker *self = data;
  guint64 since = bf_dbus_worker_get_disconnected_since_usec (iface (self));
  g_autofree char *subject = NULL;
  g_autofree char *when = format_time (since);
  g_autofree char *timeout = format_duration (self->config->missing_timeout_usec);
  g_autoptr(GString) body = g_string_new (NULL);

  /* The signal first: everything else (state, log, mail) can wait a
   * moment, the alarm should not. */
  self->missing_notified = TRUE;
  announce_pending (self);
  bf_dbus_worker_set_missing (iface (self), TRUE);
  bf_dbus_worker_emit_missing (iface (self), since);
  emit_missing_changed (self, TRUE);
  save_state (self);
  bf_history_record (self->state, bf_worker_get_name (self), "missing", when, NULL);

  bf_worker_message (bf_worker_get_name (self),
                     "Worker %s is missing: disconnected since %s, longer than its missing timeout of %s",
                     bf_worker_get_name (self), when, timeout);

  subject = g_strdup_printf ("Buildfleet worker %s is missing", bf_worker_get_name (self));
  g_string_append_printf (body,
                          "The worker %s has been disconnected since %s,\n"
                          "longer than its missing timeout of %s.\n\n",
                          bf_worker_get_name (self), when, timeout);
  append_details (self, body);
  /* A flapping worker's absences are folded into its one flapping mail. */
  if (!bf_dbus_worker_get_flapping (iface (self)))
    mail_admins (self, subject, body->str);
  return G_SOURCE_REMOVE;
}

/* Health ----------------------------------------------------------------------- */

static gboolean
health_idle (gpointer data)
{
  BfWorker *self = data;

  return bf_dbus_worker_get_active_builds (iface (self)) == 0;
}

static void
health_response_time (gpointer data,
                      guint64  usec)
{
  bf_dbus_worker_set_response_time_usec (iface (BF_WORKER (data)), usec);
}

/* Published on transitions only: one signal, log line and mail each. */
static void
health_result (gpointer    data,
               gboolean    healthy,
               const char *reason)
{
  BfWorker *self = data;
  gboolean was_unhealthy = bf_dbus_worker_get_unhealthy (iface (self));
  g_autofree char *subject = NULL;
  g_autoptr(GString) body = g_string_new (NULL);

  if (healthy != was_unhealthy)
    {
      /* No transition; a still-unhealthy worker's reason may change. */
      if (!healthy)
        bf_dbus_worker_set_health_reason (iface (self), reason);
      return;
    }
  announce_pending (self);
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_worker_set_unhealthy (iface (self), !healthy);
  bf_dbus_worker_set_health_reason (iface (self), healthy ? "" : reason);
  g_object_thaw_notify (G_OBJECT (self));
  bf_dbus_worker_emit_health_changed (iface (self), !healthy, healthy ? "" : reason);
  bf_history_record (self->state, bf_worker_get_name (self), healthy ? "healthy" : "unhealthy", healthy ? NULL : reason, NULL);
  if (healthy)
    {
      bf_worker_message (bf_worker_get_name (self), "Worker %s passed its health checks again: it takes builds",
                         bf_worker_get_name (self));
      subject = g_strdup_printf ("Buildfleet worker %s is healthy again", bf_worker_get_name (self));
      g_string_append_printf (body, "The worker %s passed its health checks again and takes builds.\n\n",
                              bf_worker_get_name (self));
    }
  else
    {
      bf_worker_message (bf_worker_get_name (self), "Worker %s failed its health checks, no new builds: %s",
                         bf_worker_get_name (self), reason);
      subject = g_strdup_printf ("Buildfleet worker %s is unhealthy", bf_worker_get_name (self));
      g_string_append_printf (body, "The worker %s failed its health checks:\n  %s\n"
                              "It gets no new builds until it passes them again.\n\n",
                              bf_worker_get_name (self), reason);
    }
  append_details (self, body);
  mail_admins (self, subject, body->str);
  /* Pending builds: taken now, or waiting for another reason. */
  emit_availability_changed (self);
}

static const BfHealthHost health_host = {
  .idle = health_idle,
  .response_time = health_response_time,
  .result = health_result,
};

/* Flapping --------------------------------------------------------------------- */

static gboolean
flap_recovered_cb (gpointer data)
{
  BfWorker *self = data;
  g_autofree char *recovery = format_duration (self->config->flap_recovery_usec);

  bf_dbus_worker_set_flapping (iface (self), FALSE);
  bf_worker_message (bf_worker_get_name (self), "Worker %s stayed attached for %s: no longer flapping",
                     bf_worker_get_name (self), recovery);
  announce_pending (self);
  bf_dbus_worker_emit_flapping_changed (iface (self), FALSE);
  bf_history_record (self->state, bf_worker_get_name (self), "flapping-ended", recovery, NULL);
  g_clear_pointer (&self->detach_times, g_array_unref);
  /* It may take builds again. */
  emit_availability_changed (self);
  return G_SOURCE_REMOVE;
}

/* Network blips: when the master's own network goes away, every worker
 * detaches within a moment and comes back.  That is not each worker
 * flapping: counted as such, the sixth blip within FlapWindow would stop
 * the whole fleet's builds for FlapRecovery and send one mail per worker.
 * So a detach is not counted while at least BLIP_WORKERS workers detached
 * (unasked) within BLIP_WINDOW_USEC of each other; the detaches that came
 * just before the blip was recognised are taken back.  A worker that also
 * flaps on its own still crosses its threshold with its other detaches. */
#define BLIP_WORKERS 10
#define BLIP_WINDOW_USEC G_USEC_PER_SEC

typedef struct {
  BfWorker *worker;       /* a reference */
  gint64 when;
} RecentDetach;

static GQueue recent_detaches;  /* RecentDetach of distinct workers, oldest first, fewer than BLIP_WORKERS */
static gint64 blip_until;       /* monotonic: a detach before this is part of a blip */

static void
forget_recent_detaches (gint64 before)
{
  RecentDetach *r;

  while ((r = g_queue_peek_head (&recent_detaches)) != NULL && r->when < before)
    {
      g_queue_pop_head (&recent_detaches);
      g_object_unref (r->worker);
      g_free (r);
    }
}

/* Takes back a detach counted at @when, if it is still the newest. */
static void
uncount_detach (BfWorker *self,
                gint64    when)
{
  GArray *times = self->detach_times;

  if (times != NULL && times->len > 0 && g_array_index (times, gint64, times->len - 1) == when)
    g_array_set_size (times, times->len - 1);
}

/* Whether the detach at @now is part of a network blip. */
static gboolean
in_network_blip (BfWorker *self,
                 gint64    now)
{
  RecentDetach *r;

  if (now < blip_until)
    {
      blip_until = now + BLIP_WINDOW_USEC;
      return TRUE;
    }
  forget_recent_detaches (now - BLIP_WINDOW_USEC);
  /* Distinct workers: one worker dropping ten times a second is flapping. */
  for (GList *l = recent_detaches.head; l != NULL; l = l->next)
    if (((RecentDetach *) l->data)->worker == self)
      return FALSE;
  if (recent_detaches.length + 1 < BLIP_WORKERS)
    {
      r = g_new (RecentDetach, 1);
      r->worker = g_object_ref (self);
      r->when = now;
      g_queue_push_tail (&recent_detaches, r);
      return FALSE;
    }

  /* A blip: the ones before this one were counted; take them back. */
  g_message ("Network blip: %u workers detached within %.1f s; detaches are not counted "
             "as flapping until there is a pause of %.1f s between two of them",
             BLIP_WORKERS, BLIP_WINDOW_USEC / (double) G_USEC_PER_SEC,
             BLIP_WINDOW_USEC / (double) G_USEC_PER_SEC);
  blip_until = now + BLIP_WINDOW_USEC;
  while ((r = g_queue_pop_head (&recent_detaches)) != NULL)
    {
      uncount_detach (r->worker, r->when);
      g_object_unref (r->worker);
      g_free (r);
    }
  return TRUE;
}

/* A detach: too many within FlapWindow make the worker flapping, once per
 * episode, with one mail. */
static void
count_detach (BfWorker *self)
{
  guint threshold = self->config->flap_threshold;
  gint64 now = g_get_monotonic_time ();
  gint64 oldest;
  g_autofree char *window = NULL;
  g_autofree char *recovery = NULL;
  g_autofree char *subject = NULL;
  g_autoptr(GString) body = NULL;

  bf_timer_stop (&self->flap_timer);
  /* Only detaches nobody asked for count: a latent instance going away is
   * its driver's business, a Shutdown or Disconnect an admin's. */
  if (threshold == 0 || self->latent != NULL || self->detach_expected ||
      bf_dbus_worker_get_flapping (iface (self)))
    return;
  if (in_network_blip (self, now))
    return;
  if (self->detach_times == NULL)
    self->detach_times = g_array_sized_new (FALSE, FALSE, sizeof (gint64), threshold + 1);
  g_array_append_val (self->detach_times, now);
  if (self->detach_times->len > threshold + 1)
    g_array_remove_index (self->detach_times, 0);
  oldest = g_array_index (self->detach_times, gint64, 0);
  if (self->detach_times->len <= threshold || now - oldest > (gint64) self->config->flap_window_usec)
    return;

  window = format_duration (self->config->flap_window_usec);
  recovery = format_duration (self->config->flap_recovery_usec);
  bf_dbus_worker_set_flapping (iface (self), TRUE);
  bf_worker_message (bf_worker_get_name (self),
                     "Worker %s is flapping: more than %u detaches within %s; no new builds until it stays attached for %s",
                     bf_worker_get_name (self), threshold, window, recovery);
  announce_pending (self);
  bf_dbus_worker_emit_flapping_changed (iface (self), TRUE);
  bf_history_record (self->state, bf_worker_get_name (self), "flapping", window, NULL);
  subject = g_strdup_printf ("Buildfleet worker %s is flapping", bf_worker_get_name (self));
  body = g_string_new (NULL);
  g_string_append_printf (body,
                          "The worker %s detached more than %u times within %s.\n"
                          "It gets no new builds until it stays attached for %s.\n"
                          "Until then no further mail is sent about it going missing or coming back.\n\n",
                          bf_worker_get_name (self), threshold, window, recovery);
  append_details (self, body);
  mail_admins (self, subject, body->str);
}

static void
arm_missing_timer (BfWorker *self)
{
  guint64 since = bf_dbus_worker_get_disconnected_since_usec (iface (self));
  guint64 timeout = self->config->missing_timeout_usec;
  gint64 away = g_get_monotonic_time () - self->disconnected_mono;

  bf_timer_stop (&self->missing_timer);
  /* A latent worker is away by design; its failures to start are
   * reported as SubstantiationFailed instead. */
  if (self->connection != NULL || self->missing_notified || timeout == 0 || since == 0 ||
      self->latent != NULL)
    return;

  /* Microsecond due times in the shared timer queue, not
   * g_timeout_add_seconds(): the alarm must come within a few milliseconds
   * of its due time, and 10,000 disconnected workers must not mean 10,000
   * main-loop sources. */
  bf_timer_start (&self->missing_timer, (guint64) away < timeout ? timeout - (guint64) away : 0,
                  missing_timeout_cb, self);
}

/* Attach / detach ------------------------------------------------------------ */

static void connection_closed_cb (BfWorkerLink *connection,
                                  const char   *reason,
                                  BfWorker     *self);

static void
connection_activity_cb (BfWorkerLink *connection,
                        BfWorker     *self)
{
  bf_dbus_worker_set_last_message_usec (iface (self), bf_worker_link_get_last_rx_usec (connection));
}

static void apply_graceful (BfWorker *self,
                            gboolean  graceful);

/* buildbot-worker's own graceful shutdown (SIGHUP, shutdown.stamp): over
 * PB it asks the master, which treats it as SetGraceful(true). */
static void
shutdown_requested_cb (BfWorkerLink *link,
                       BfWorker     *self)
{
  if (link != self->connection || bf_dbus_worker_get_graceful (iface (self)))
    return;
  bf_worker_message (bf_worker_get_name (self), "Worker %s asked to shut down gracefully",
                     bf_worker_get_name (self));
  apply_graceful (self, TRUE);
  save_state (self);
  bf_history_record (self->state, bf_worker_get_name (self), "graceful", "asked by the worker", NULL);
}

static void
detach (BfWorker   *self,
        const char *reason)
{
  g_autoptr(BfWorkerLink) connection = g_steal_pointer (&self->connection);
  guint64 now = now_usec ();

  g_assert (connection != NULL);

  announce_pending (self);
  g_signal_handlers_disconnect_by_data (connection, self);
  if (self->health)
    bf_health_detached (self->health);
  bf_worker_link_close (connection, reason);

  self->last_seen_usec = now;
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_worker_set_last_seen_usec (iface (self), now);
  bf_dbus_worker_set_connected (iface (self), FALSE);
  bf_dbus_worker_set_peer (iface (self), "");
  bf_dbus_worker_set_protocol (iface (self), "");
  bf_dbus_worker_set_connected_since_usec (iface (self), 0);
  set_disconnected_since (self, now);
  g_object_thaw_notify (G_OBJECT (self));
  save_state (self);

  bf_worker_info (bf_worker_get_name (self), "Worker %s detached (%s): was connected from %s",
                  bf_worker_get_name (self), reason, bf_worker_link_get_peer (connection));

  bf_history_record (self->state, bf_worker_get_name (self), "detached", reason, NULL);
  /* As for Attached: the PropertiesChanged that shows it disconnected
   * first, so a client's cached properties are current when Detached
   * arrives. */
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  bf_dbus_worker_emit_detached (iface (self), reason);
  g_signal_emit (self, signals[SIGNAL_LOST], 0, reason);
  emit_connected_changed (self, FALSE);
  arm_missing_timer (self);
  count_detach (self);
}

/* The connection ended by itself, or for a reason of the worker's: a
 * latent worker hears of it (and stops its instance).  A stop the latent
 * asked for goes through latent_release() instead, which only detaches. */
static void
lose_connection (BfWorker   *self,
                 const char *reason)
{
  detach (self, reason);
  if (self->latent)
    bf_latent_detached (self->latent, reason);
}

static void
connection_closed_cb (BfWorkerLink *connection,
                      const char   *reason,
                      BfWorker     *self)
{
  if (connection == self->connection)
    lose_connection (self, reason);
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/* Labels = Labels= plus what the worker reported, sorted, once each. */
/* Equal on the bus: a NULL list or dictionary goes out empty. */
static gboolean
same_strv (const char * const *a,
           char              **b)
{
  if (a == NULL || b == NULL)
    return (a == NULL || a[0] == NULL) && (b == NULL || b[0] == NULL);
  return g_strv_equal (a, (const char * const *) b);
}

static gboolean
same_dict (GVariant *a,
           GVariant *b)
{
  if (a == NULL || b == NULL)
    return (a == NULL || g_variant_n_children (a) == 0) && (b == NULL || g_variant_n_children (b) == 0);
  return g_variant_equal (a, b);
}

static void
publish_labels (BfWorker *self)
{
  g_autoptr(GPtrArray) all = g_ptr_array_new ();
  g_autoptr(GPtrArray) unique = g_ptr_array_new ();

  for (guint i = 0; self->config->labels[i]; i++)
    g_ptr_array_add (all, self->config->labels[i]);
  for (guint i = 0; self->reported_labels && self->reported_labels[i]; i++)
    g_ptr_array_add (all, self->reported_labels[i]);
  g_ptr_array_sort (all, compare_strings);
  for (guint i = 0; i < all->len; i++)
    if (unique->len == 0 || !g_str_equal (g_ptr_array_index (unique, unique->len - 1), g_ptr_array_index (all, i)))
      g_ptr_array_add (unique, g_ptr_array_index (all, i));
  g_ptr_array_add (unique, NULL);
  if (!same_strv (bf_dbus_worker_get_labels (iface (self)), (char **) unique->pdata))
    bf_dbus_worker_set_labels (iface (self), (const char * const *) unique->pdata);
}

static void
add_reported_label (GStrvBuilder *b,
                    const char   *key,
                    GVariant     *value)
{
  g_autofree char *label = NULL;

  if (value == NULL)
    return;
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    label = g_strdup_printf ("%s=%s", key, g_variant_get_string (value, NULL));
  else if (g_variant_is_of_type (value, G_VARIANT_TYPE_INT64))
    label = g_strdup_printf ("%s=%" G_GINT64_FORMAT, key, g_variant_get_int64 (value));
  if (label != NULL && bf_label_is_valid (label))
    g_strv_builder_add (b, label);
}

/* What the worker told about itself that builds may ask for.  One walk
 * of Info for the three keys (the first entry of each, as
 * g_variant_lookup_value() would find it), not one walk per key: every
 * entry looked at is a new GVariant, and this runs at every attach. */
static GStrv
labels_from_info (const BfWorkerInfo *info)
{
  static const char * const keys[] = { "os_id", "os_version_id", "numcpus" };
  static const char * const labels[] = { "os", "os-version", "cpus" };
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  GVariant *found[G_N_ELEMENTS (keys)] = { NULL, };
  guint missing = G_N_ELEMENTS (keys);
  gsize n = g_variant_n_children (info->details);

  for (gsize i = 0; i < n && missing > 0; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (info->details, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      const char *name = g_variant_get_string (key, NULL);

      for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
        if (found[k] == NULL && g_str_equal (name, keys[k]))
          {
            g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);

            found[k] = g_variant_get_variant (boxed);
            missing--;
          }
    }
  for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
    {
      add_reported_label (b, labels[k], found[k]);
      g_clear_pointer (&found[k], g_variant_unref);
    }
  return g_strv_builder_end (b);
}

/**
 * bf_worker_has_labels:
 *
 * Whether every one of @labels is among this worker's Labels.
 */
gboolean
bf_worker_has_labels (BfWorker           *self,
                      const char * const *labels)
{
  const char * const *mine = bf_dbus_worker_get_labels (iface (self));

  for (guint i = 0; labels && labels[i]; i++)
    if (mine == NULL || !g_strv_contains (mine, labels[i]))
      return FALSE;
  return TRUE;
}

/* Labels a worker reports itself: unknown until it attached once. */
static gboolean
is_reported_label (const char *label)
{
  return g_str_has_prefix (label, "os=") || g_str_has_prefix (label, "os-version=") ||
         g_str_has_prefix (label, "cpus=");
}

/**
 * bf_worker_could_have_labels:
 *
 * Whether this worker can ever satisfy @labels: it has them, or the
 * missing ones are of the kind it reports and it has not reported yet.
 */
gboolean
bf_worker_could_have_labels (BfWorker           *self,
                             const char * const *labels)
{
  const char * const *mine = bf_dbus_worker_get_labels (iface (self));

  for (guint i = 0; labels && labels[i]; i++)
    if ((mine == NULL || !g_strv_contains (mine, labels[i])) &&
        !(self->reported_labels == NULL && is_reported_label (labels[i])))
      return FALSE;
  return TRUE;
}

static void
fill_from_info (BfWorker     *self,
                BfWorkerLink *link)
{
  const BfWorkerInfo *info = bf_worker_link_get_info (link);

  g_strfreev (self->reported_labels);
  self->reported_labels = labels_from_info (info);
  publish_labels (self);

  /* Every attach replaces all of it: what this worker did not report is
   * empty, not left over from an earlier connection. */
  bf_dbus_worker_set_admin (iface (self), info->admin);
  bf_dbus_worker_set_host (iface (self), info->host);
  bf_dbus_worker_set_version (iface (self), info->version);
  bf_dbus_worker_set_info (iface (self), info->details);
  bf_dbus_worker_set_commands (iface (self), info->commands);
  bf_dbus_worker_set_protocol (iface (self), bf_worker_link_get_protocol (link));
}

static void
attach (BfWorker     *self,
        BfWorkerLink *connection)
{
  gboolean was_missing = self->missing_notified;
  guint64 away_since = bf_dbus_worker_get_disconnected_since_usec (iface (self));
  guint64 now = now_usec ();

  g_assert (self->connection == NULL);

  self->connection = g_object_ref (connection);
  g_signal_connect_object (connection, "closed", G_CALLBACK (connection_closed_cb), self, 0);
  g_signal_connect_object (connection, "activity", G_CALLBACK (connection_activity_cb), self, 0);
  g_signal_connect_object (connection, "shutdown-requested", G_CALLBACK (shutdown_requested_cb), self, 0);
  bf_timer_stop (&self->missing_timer);

  self->missing_notified = FALSE;
  self->detach_expected = FALSE;
  self->last_seen_usec = now;
  if (bf_dbus_worker_get_flapping (iface (self)))
    bf_timer_start (&self->flap_timer, self->config->flap_recovery_usec, flap_recovered_cb, self);

  if (self->health)
    bf_health_attached (self->health, connection);
  g_object_freeze_notify (G_OBJECT (self));
  fill_from_info (self, connection);
  bf_dbus_worker_set_peer (iface (self), bf_worker_link_get_peer (connection));
  bf_dbus_worker_set_connected_since_usec (iface (self), now);
  bf_dbus_worker_set_last_seen_usec (iface (self), now);
  bf_dbus_worker_set_disconnected_since_usec (iface (self), 0);
  bf_dbus_worker_set_last_message_usec (iface (self), bf_worker_link_get_last_rx_usec (connection));
  bf_dbus_worker_set_missing (iface (self), FALSE);
  bf_dbus_worker_set_connected (iface (self), TRUE);
  g_object_thaw_notify (G_OBJECT (self));
  save_state (self);

  bf_worker_info (bf_worker_get_name (self), "Worker %s attached from %s (buildbot-worker %s)",
                  bf_worker_get_name (self), bf_worker_link_get_peer (connection),
                  bf_dbus_worker_get_version (iface (self)));

  bf_history_record (self->state, bf_worker_get_name (self), "attached", bf_worker_link_get_peer (connection), NULL);
  /* A latent worker's Substantiated and a BackOnline follow at once: they
   * must not overtake Attached. */
  if (self->latent || was_missing)
    announce_attached (self);
  else
    announce_later (self);
  if (self->latent)
    bf_latent_attached (self->latent);
  emit_connected_changed (self, TRUE);

  if (was_missing)
    {
      g_autofree char *subject = g_strdup_printf ("Buildfleet worker %s is back online", bf_worker_get_name (self));
      g_autofree char *when = format_time (now);
      g_autofree char *since = format_time (away_since);
      g_autofree char *away = format_duration (away_since && now > away_since ? now - away_since : 0);
      g_autoptr(GString) body = g_string_new (NULL);

      bf_worker_message (bf_worker_get_name (self), "Worker %s is back online after %s",
                         bf_worker_get_name (self), away);
      g_string_append_printf (body,
                              "The worker %s attached again at %s from %s,\n"
                              "after being away since %s (%s).\n\n",
                              bf_worker_get_name (self), when, bf_worker_link_get_peer (connection),
                              since, away);
      append_details (self, body);
      if (!bf_dbus_worker_get_flapping (iface (self)))
        mail_admins (self, subject, body->str);
      bf_history_record (self->state, bf_worker_get_name (self), "back-online", away, NULL);
      bf_dbus_worker_emit_back_online (iface (self));
      emit_missing_changed (self, FALSE);
    }
}

static void
candidate_attach_cb (GObject      *object,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(BfWorker) self = user_data;
  BfWorkerLink *connection = BF_WORKER_LINK (object);
  g_autoptr(GError) error = NULL;

  if (!bf_worker_link_attach_finish (connection, result, &error))
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
      bf_worker_message (bf_worker_get_name (self), "Worker %s from %s failed to attach: %s",
                         bf_worker_get_name (self), bf_worker_link_get_peer (connection), error->message);
      bf_worker_link_close (connection, error->message);
      if (self->candidate == connection)
        g_clear_object (&self->candidate);
      return;
    }

  if (self->candidate != connection)
    return;
  g_clear_object (&self->candidate_cancellable);
  attach (self, connection);
  g_clear_object (&self->candidate);
}

static void
start_attach (BfWorker *self)
{
  g_clear_object (&self->candidate_cancellable);
  self->candidate_cancellable = g_cancellable_new ();
  bf_worker_link_attach_async (self->candidate, self->candidate_cancellable,
                              candidate_attach_cb, g_object_ref (self));
}

static void
duplicate_ping_cb (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(BfWorker) self = user_data;
  BfWorkerLink *old = BF_WORKER_LINK (object);
  g_autoptr(GError) error = NULL;
  g_autofree char *reason = NULL;
  gboolean answered;

  answered = bf_worker_link_ping_finish (old, result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || self->candidate == NULL)
    return;

  if (answered && old == self->connection)
    {
      g_autofree char *why = g_strdup_printf ("duplicate connection: worker %s is already connected from %s",
                                              bf_worker_get_name (self), bf_worker_link_get_peer (old));
      bf_worker_message (bf_worker_get_name (self),
                         "Refused a second connection for worker %s from %s: the connection from %s still answers",
                         bf_worker_get_name (self), bf_worker_link_get_peer (self->candidate),
                         bf_worker_link_get_peer (old));
      bf_worker_link_close (self->candidate, why);
      g_clear_object (&self->candidate);
      g_clear_object (&self->candidate_cancellable);
      return;
    }

  bf_worker_message (bf_worker_get_name (self),
                     "Worker %s: the old connection from %s did not answer (%s); replacing it with the one from %s",
                     bf_worker_get_name (self), bf_worker_link_get_peer (old),
                     error ? error->message : "it closed", bf_worker_link_get_peer (self->candidate));
  if (old == self->connection)
    {
      reason = g_strdup_printf ("replaced by a new connection from %s", bf_worker_link_get_peer (self->candidate));
      lose_connection (self, reason);
    }
  start_attach (self);
}

/**
 * bf_worker_offer_connection:
 *
 * A connection authenticated as this worker.  If the worker is already
 * connected, the old connection is pinged: if it answers within the
 * duplicate ping timeout the new one is refused, otherwise the old one is
 * torn down and the new one attached.
 */
void
bf_worker_offer_connection (BfWorker     *self,
                            BfWorkerLink *connection)
{
  g_return_if_fail (BF_IS_WORKER (self));

  if (self->candidate != NULL)
    {
      g_autofree char *why = g_strdup_printf ("another connection for worker %s from %s is being attached",
                                              bf_worker_get_name (self), bf_worker_link_get_peer (self->candidate));
      bf_worker_message (bf_worker_get_name (self), "Refused a connection for worker %s from %s: %s",
                         bf_worker_get_name (self), bf_worker_link_get_peer (connection), why);
      bf_worker_link_close (connection, why);
      return;
    }

  if (self->latent != NULL && !bf_latent_accepts_connection (self->latent))
    {
      g_autofree char *why = g_strdup_printf ("latent worker %s is not being substantiated",
                                              bf_worker_get_name (self));
      bf_worker_message (bf_worker_get_name (self), "Refused a connection for worker %s from %s: %s",
                         bf_worker_get_name (self), bf_worker_link_get_peer (connection), why);
      bf_worker_link_close (connection, why);
      return;
    }

  self->candidate = g_object_ref (connection);

  if (self->connection == NULL)
    {
      start_attach (self);
      return;
    }

  bf_worker_message (bf_worker_get_name (self),
                     "Worker %s is connected from %s and a new connection came from %s; checking the old one",
                     bf_worker_get_name (self), bf_worker_link_get_peer (self->connection),
                     bf_worker_link_get_peer (connection));
  g_clear_object (&self->candidate_cancellable);
  self->candidate_cancellable = g_cancellable_new ();
  bf_worker_link_ping_async (self->connection, "buildfleetd: duplicate connection check",
                             self->duplicate_ping_timeout_usec, self->candidate_cancellable,
                             duplicate_ping_cb, g_object_ref (self));
}

static void
drop_candidate (BfWorker   *self,
                const char *reason)
{
  if (self->candidate != NULL)
    {
      g_cancellable_cancel (self->candidate_cancellable);
      bf_worker_link_close (self->candidate, reason);
      g_clear_object (&self->candidate);
    }
}

void
bf_worker_disconnect (BfWorker   *self,
                      const char *reason)
{
  drop_candidate (self, reason);
  self->detach_expected = TRUE;
  if (self->connection != NULL)
    lose_connection (self, reason);
}

static void
shutdown_reply_cb (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!bf_worker_link_shutdown_finish (BF_WORKER_LINK (object), result, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    bf_worker_debug (bf_worker_link_get_worker_name (BF_WORKER_LINK (object)),
                     "Shutdown request to worker %s: %s",
                     bf_worker_link_get_worker_name (BF_WORKER_LINK (object)), error->message);
}

/**
 * bf_worker_request_shutdown:
 *
 * Asks the attached worker process to exit.
 */
void
bf_worker_request_shutdown (BfWorker *self)
{
  if (self->connection == NULL)
    return;
  self->detach_expected = TRUE;
  bf_worker_message (bf_worker_get_name (self), "Asking worker %s to shut down", bf_worker_get_name (self));
  bf_worker_link_shutdown_async (self->connection, NULL, shutdown_reply_cb, NULL);
}

/* Builds --------------------------------------------------------------------- */

gboolean
bf_worker_can_take_build (BfWorker   *self,
                          const char *builder)
{
  BfDBusWorker *w = iface (self);
  guint max = self->config->max_builds;

  return self->connection != NULL &&
         (self->latent == NULL || bf_latent_can_take_build (self->latent)) &&
         bf_worker_config_serves (self->config, builder) &&
         !bf_dbus_worker_get_graceful (w) &&
         !bf_dbus_worker_get_paused (w) &&
         !bf_dbus_worker_get_quarantined (w) &&
         !bf_dbus_worker_get_flapping (w) &&
         !bf_dbus_worker_get_unhealthy (w) &&
         (max == 0 || bf_dbus_worker_get_active_builds (w) < max) &&
         !bf_worker_runs_builder (self, builder);
}

/**
 * bf_worker_why_not:
 *
 * Returns: (nullable): why this worker cannot take a build of @builder
 *   now, in a few words for Build.WaitingFor; %NULL if it can
 */
const char *
bf_worker_why_not (BfWorker           *self,
                   const char         *builder,
                   const char * const *labels)
{
  BfDBusWorker *w = iface (self);
  guint max = self->config->max_builds;

  if (!bf_worker_config_serves (self->config, builder))
    return "does not serve the builder";
  if (!bf_worker_has_labels (self, labels))
    return "lacks a label";
  if (bf_dbus_worker_get_paused (w))
    return "paused";
  if (bf_dbus_worker_get_quarantined (w))
    return "quarantined";
  if (bf_dbus_worker_get_graceful (w))
    return "shutting down gracefully";
  if (bf_dbus_worker_get_flapping (w))
    return "flapping";
  if (bf_dbus_worker_get_unhealthy (w))
    return "unhealthy";
  if (self->connection == NULL)
    {
      if (self->latent != NULL)
        return bf_latent_can_substantiate (self->latent) ? "not started" : "starting";
      return self->missing_notified ? "missing" : "not connected";
    }
  if (self->latent != NULL && !bf_latent_can_take_build (self->latent))
    return "stopping";
  if (max != 0 && bf_dbus_worker_get_active_builds (w) >= max)
    return "busy";
  if (bf_worker_runs_builder (self, builder))
    return "running a build of this builder";
  return NULL;
}

/**
 * bf_worker_runs_builder:
 *
 * Whether a build of @builder is active on this worker.  A worker runs at
 * most one build of a builder at a time, as Buildbot's do: both would use
 * BASEDIR/BUILDER, and a PB worker holds one command per builder.
 */
gboolean
bf_worker_runs_builder (BfWorker   *self,
                        const char *builder)
{
  if (self->busy_builders == NULL)
    return FALSE;
  for (guint i = 0; i < self->busy_builders->len; i++)
    if (g_str_equal (g_ptr_array_index (self->busy_builders, i), builder))
      return TRUE;
  return FALSE;
}

/**
 * bf_worker_can_substantiate_for:
 *
 * Whether starting this latent worker's instance would give @builder a
 * worker.
 */
gboolean
bf_worker_can_substantiate_for (BfWorker   *self,
                                const char *builder)
{
  BfDBusWorker *w = iface (self);

  return self->latent != NULL &&
         self->connection == NULL &&
         bf_latent_can_substantiate (self->latent) &&
         bf_worker_config_serves (self->config, builder) &&
         !bf_dbus_worker_get_graceful (w) &&
         !bf_dbus_worker_get_paused (w) &&
         !bf_dbus_worker_get_quarantined (w);
}

guint
bf_worker_get_active_builds (BfWorker *self)
{
  return bf_dbus_worker_get_active_builds (iface (self));
}

void
bf_worker_build_started (BfWorker   *self,
                         const char *builder)
{
  /* Created on first use: most workers of a big fleet are idle. */
  if (self->busy_builders == NULL)
    self->busy_builders = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (self->busy_builders, g_strdup (builder));
  bf_dbus_worker_set_active_builds (iface (self), bf_dbus_worker_get_active_builds (iface (self)) + 1);
  if (self->latent)
    bf_latent_build_started (self->latent);
  emit_active_builds_changed (self, 1);
}

static void
build_finished (BfWorker   *self,
                const char *builder)
{
  guint active = bf_dbus_worker_get_active_builds (iface (self));

  g_return_if_fail (active > 0);
  for (guint i = 0; self->busy_builders && i < self->busy_builders->len; i++)
    if (g_str_equal (g_ptr_array_index (self->busy_builders, i), builder))
      {
        g_ptr_array_remove_index_fast (self->busy_builders, i);
        break;
      }
  if (self->busy_builders && self->busy_builders->len == 0)
    g_clear_pointer (&self->busy_builders, g_ptr_array_unref);
  bf_dbus_worker_set_active_builds (iface (self), active - 1);
  emit_active_builds_changed (self, -1);

  /* The seed's after-build rule: a graceful worker shuts down once idle;
   * a latent one is insubstantiated (or kept, per BuildWaitTimeout). */
  if (active == 1 && self->latent)
    bf_latent_builds_idle (self->latent, bf_dbus_worker_get_graceful (iface (self)));
  else if (active == 1 && bf_dbus_worker_get_graceful (iface (self)))
    bf_worker_request_shutdown (self);
}

/* Quarantine ----------------------------------------------------------------- *
 *
 * Only this file decides when a worker is quarantined: a lost build, a
 * builder that could not be prepared (bf_worker_build_ended()), a latent
 * instance that failed to start (latent_start_failed()).  A released
 * build resets the backoff. */

static gboolean
quarantine_end_cb (gpointer data)
{
  BfWorker *self = data;

  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_worker_set_quarantined (iface (self), FALSE);
  bf_dbus_worker_set_quarantine_until_usec (iface (self), 0);
  g_object_thaw_notify (G_OBJECT (self));
  bf_worker_message (bf_worker_get_name (self), "Worker %s leaves quarantine", bf_worker_get_name (self));
  bf_history_record (self->state, bf_worker_get_name (self), "quarantine-ended", NULL, NULL);
  emit_availability_changed (self);
  return G_SOURCE_REMOVE;
}

void
bf_worker_set_quarantine_limits (BfWorker *self,
                                 guint64   initial_usec,
                                 guint64   max_usec)
{
  self->quarantine_initial_usec = initial_usec;
  self->quarantine_max_usec = max_usec;
}

/*
 * quarantine:
 * @why: for the log
 *
 * Keeps builds away from the worker for a while: 10 s the first time (by
 * default), doubling with every further incident up to an hour, until a
 * build succeeds.  Separate from Pause: nobody has to lift it by hand.
 */
static void
quarantine (BfWorker   *self,
            const char *why)
{
  guint64 until;
  g_autofree char *span = NULL;

  if (self->quarantine_backoff_usec == 0)
    self->quarantine_backoff_usec = self->quarantine_initial_usec;
  else
    self->quarantine_backoff_usec = MIN (self->quarantine_backoff_usec * 2, self->quarantine_max_usec);
  until = now_usec () + self->quarantine_backoff_usec;
  span = format_duration (self->quarantine_backoff_usec);

  bf_timer_start (&self->quarantine_timer, self->quarantine_backoff_usec, quarantine_end_cb, self);
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_worker_set_quarantined (iface (self), TRUE);
  bf_dbus_worker_set_quarantine_until_usec (iface (self), until);
  g_object_thaw_notify (G_OBJECT (self));
  bf_worker_message (bf_worker_get_name (self), "Worker %s quarantined for %s: %s",
                     bf_worker_get_name (self), span, why);
  bf_history_record (self->state, bf_worker_get_name (self), "quarantined", why, NULL);
}

/**
 * bf_worker_build_ended:
 * @builder: the build's builder
 * @result: how it ended: a BfBuild result ("released", "lost", "timeout",
 *   "owner-gone", "failed"), or "unprepared" when the builder could not be
 *   prepared on this worker (the build goes back to the queue)
 * @detail: (nullable): what went wrong, for the log
 *
 * A build assigned by bf_worker_build_started() left this worker.  A lost
 * or unprepared build quarantines the worker; a released one resets the
 * quarantine backoff; the others say nothing about the worker.
 */
void
bf_worker_build_ended (BfWorker   *self,
                       const char *builder,
                       const char *result,
                       const char *detail)
{
  if (g_str_equal (result, "lost"))
    quarantine (self, "its build was lost");
  else if (g_str_equal (result, "unprepared"))
    {
      g_autofree char *why = g_strdup_printf ("could not prepare builder %s: %s", builder,
                                              detail ? detail : "unknown error");
      quarantine (self, why);
    }
  else if (g_str_equal (result, "released"))
    self->quarantine_backoff_usec = 0;
  build_finished (self, builder);
}

/* The latent's host ----------------------------------------------------------- */

static guint
latent_active_builds (gpointer data)
{
  return bf_dbus_worker_get_active_builds (iface (data));
}

static gboolean
latent_is_quarantined (gpointer data)
{
  return bf_dbus_worker_get_quarantined (iface (data));
}

static void
latent_start_failed (gpointer    data,
                     const char *message)
{
  quarantine (data, message);
}

/* The latent stops its instance: the worker is asked to exit and its
 * connection goes, without telling the latent (it asked). */
static void
latent_release (gpointer    data,
                const char *reason)
{
  BfWorker *self = data;

  if (self->connection == NULL)
    return;
  bf_worker_request_shutdown (self);
  drop_candidate (self, reason);
  detach (self, reason);
}

static const BfLatentHost latent_host = {
  .active_builds = latent_active_builds,
  .is_quarantined = latent_is_quarantined,
  .start_failed = latent_start_failed,
  .release = latent_release,
};

/* D-Bus methods -------------------------------------------------------------- */

/* Graceful is published and saved: finish current builds, take no new
 * ones, then shut the worker down (at once when idle). */
static void
apply_graceful (BfWorker *self,
                gboolean  graceful)
{
  announce_pending (self);
  bf_dbus_worker_set_graceful (iface (self), graceful);
  bf_dbus_worker_emit_graceful_changed (iface (self), graceful);
  if (graceful && bf_dbus_worker_get_active_builds (iface (self)) == 0)
    {
      if (self->latent)
        bf_latent_insubstantiate (self->latent, FALSE, "graceful");
      else if (self->connection != NULL)
        bf_worker_request_shutdown (self);
    }
}

static void admin_next (BfWorker *self);

static gboolean
admin_op_changes_something (BfWorker *self,
                            AdminOp  *op)
{
  switch (op->kind)
    {
    case ADMIN_SET_GRACEFUL:
      return op->graceful != bf_dbus_worker_get_graceful (iface (self));
    case ADMIN_PAUSE:
      return !bf_dbus_worker_get_paused (iface (self)) ||
             g_strcmp0 (op->reason, bf_dbus_worker_get_pause_reason (iface (self))) != 0;
    case ADMIN_UNPAUSE:
      return bf_dbus_worker_get_paused (iface (self));
    default:
      g_assert_not_reached ();
    }
}

/* The change is on disk: publish it and do what it asks. */
static void
admin_op_apply (BfWorker *self,
                AdminOp  *op)
{
  const char *name = bf_worker_get_name (self);
  guint32 uid = 0;
  const char *user = bf_authority_get_caller (op->invocation, &uid);
  g_autofree char *sender = g_strdup_printf ("%s (uid %u, %s)", user ? user : "?", uid,
                                             g_dbus_method_invocation_get_sender (op->invocation));

  switch (op->kind)
    {
    case ADMIN_SET_GRACEFUL:
      bf_worker_message (name, "Worker %s: graceful shutdown %s by %s",
                         name, op->graceful ? "requested" : "cancelled", sender);
      apply_graceful (self, op->graceful);
      bf_history_record (self->state, name, op->graceful ? "graceful" : "graceful-cancelled", NULL, sender);
      break;
    case ADMIN_PAUSE:
      g_object_freeze_notify (G_OBJECT (self));
      bf_dbus_worker_set_paused (iface (self), TRUE);
      bf_dbus_worker_set_pause_reason (iface (self), op->reason);
      bf_dbus_worker_set_paused_by (iface (self), op->caller);
      bf_dbus_worker_set_paused_since_usec (iface (self), op->since_usec);
      g_object_thaw_notify (G_OBJECT (self));
      bf_worker_message (name, "Worker %s paused by %s: %s", name, sender, op->reason);
      bf_history_record (self->state, name, "paused", op->reason, sender);
      /* Pending builds now wait for another reason: let the queue say so. */
      emit_availability_changed (self);
      break;
    case ADMIN_UNPAUSE:
      g_object_freeze_notify (G_OBJECT (self));
      bf_dbus_worker_set_paused (iface (self), FALSE);
      bf_dbus_worker_set_pause_reason (iface (self), "");
      bf_dbus_worker_set_paused_by (iface (self), "");
      bf_dbus_worker_set_paused_since_usec (iface (self), 0);
      g_object_thaw_notify (G_OBJECT (self));
      bf_worker_message (name, "Worker %s unpaused by %s", name, sender);
      bf_history_record (self->state, name, "unpaused", NULL, sender);
      emit_availability_changed (self);
      break;
    }
}

static void
admin_saved_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(BfWorker) self = user_data;
  AdminOp *op = g_queue_pop_head (&self->admin_ops);
  g_autoptr(GError) error = NULL;

  self->admin_saving = FALSE;
  if (bf_state_save_worker_finish (BF_STATE (source), result, &error))
    {
      admin_op_apply (self, op);
      g_dbus_method_invocation_return_value (op->invocation, NULL);
    }
  else
    {
      /* Not on disk, so not in force: the state entry goes back to what
       * is published, and the caller learns why. */
      save_state (self);
      bf_worker_warning (bf_worker_get_name (self), "Worker %s: %s refused: %s",
                         bf_worker_get_name (self),
                         g_dbus_method_invocation_get_method_name (op->invocation), error->message);
      g_dbus_method_invocation_return_error (op->invocation, BF_ERROR, BF_ERROR_FAILED,
                                             "%s", error->message);
    }
  admin_op_free (op);
  admin_next (self);
}

/* Admin calls on one worker take effect in the order they came, each once
 * it is on disk; those of different workers share writes. */
static void
admin_next (BfWorker *self)
{
  while (!self->admin_saving && !g_queue_is_empty (&self->admin_ops))
    {
      AdminOp *op = g_queue_peek_head (&self->admin_ops);
      BfWorkerRecord ws;

      if (!admin_op_changes_something (self, op))
        {
          g_queue_pop_head (&self->admin_ops);
          g_dbus_method_invocation_return_value (op->invocation, NULL);
          admin_op_free (op);
          continue;
        }
      self->admin_saving = TRUE;
      fill_state (self, &ws);
      bf_state_save_worker_async (self->state, bf_worker_get_name (self), &ws,
                                  admin_saved_cb, g_object_ref (self));
    }
}

static void
admin_enqueue (BfWorker              *self,
               AdminKind              kind,
               GDBusMethodInvocation *invocation)
{
  AdminOp *op = g_new0 (AdminOp, 1);
  GVariant *params = g_dbus_method_invocation_get_parameters (invocation);

  op->kind = kind;
  /* Our own reference; the one GDBus handed over goes with the answer. */
  op->invocation = g_object_ref (invocation);
  if (kind == ADMIN_SET_GRACEFUL)
    g_variant_get (params, "(b)", &op->graceful);
  else if (kind == ADMIN_PAUSE)
    g_variant_get (params, "(s)", &op->reason);
  op->caller = g_strdup (bf_authority_get_caller (invocation, NULL));
  if (op->caller == NULL)
    op->caller = g_strdup ("");
  op->since_usec = now_usec ();
  g_queue_push_tail (&self->admin_ops, op);
  admin_next (self);
}

static void
set_graceful_authorized (GObject               *object,
                         GDBusMethodInvocation *invocation)
{
  admin_enqueue (BF_WORKER (object), ADMIN_SET_GRACEFUL, invocation);
}

static gboolean
handle_set_graceful (BfDBusWorker          *object,
                     GDBusMethodInvocation *invocation,
                     gboolean               graceful)
{
  BfWorker *self = BF_WORKER (object);

  bf_authority_check (self->authority, G_OBJECT (self), invocation,
                      BF_ACTION_MANAGE_WORKERS, set_graceful_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
pause_authorized (GObject               *object,
                  GDBusMethodInvocation *invocation)
{
  admin_enqueue (BF_WORKER (object), ADMIN_PAUSE, invocation);
}

static gboolean
handle_pause (BfDBusWorker          *object,
              GDBusMethodInvocation *invocation,
              const char            *reason)
{
  BfWorker *self = BF_WORKER (object);

  if (strlen (reason) > MAX_REASON_LEN)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_INVALID_ARGS,
                                             "The pause reason is %zu bytes long; at most %d are allowed",
                                             strlen (reason), MAX_REASON_LEN);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  bf_authority_check (self->authority, G_OBJECT (self), invocation,
                      BF_ACTION_MANAGE_WORKERS, pause_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
unpause_authorized (GObject               *object,
                    GDBusMethodInvocation *invocation)
{
  admin_enqueue (BF_WORKER (object), ADMIN_UNPAUSE, invocation);
}

static gboolean
handle_unpause (BfDBusWorker          *object,
                GDBusMethodInvocation *invocation)
{
  bf_authority_check (BF_WORKER (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_MANAGE_WORKERS, unpause_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
return_not_connected (BfWorker              *self,
                      GDBusMethodInvocation *invocation)
{
  if (self->connection != NULL)
    return FALSE;
  g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_NOT_CONNECTED,
                                         "Worker %s is not connected", bf_worker_get_name (self));
  return TRUE;
}

static void
shutdown_authorized (GObject               *object,
                     GDBusMethodInvocation *invocation)
{
  BfWorker *self = BF_WORKER (object);

  if (return_not_connected (self, invocation))
    return;
  bf_worker_request_shutdown (self);
  bf_dbus_worker_complete_shutdown (iface (self), invocation);
}

static gboolean
handle_shutdown (BfDBusWorker          *object,
                 GDBusMethodInvocation *invocation)
{
  bf_authority_check (BF_WORKER (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_MANAGE_WORKERS, shutdown_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
disconnect_authorized (GObject               *object,
                       GDBusMethodInvocation *invocation)
{
  BfWorker *self = BF_WORKER (object);

  if (return_not_connected (self, invocation))
    return;
  bf_worker_disconnect (self, "disconnected by administrator");
  bf_dbus_worker_complete_disconnect (iface (self), invocation);
}

static gboolean
handle_disconnect (BfDBusWorker          *object,
                   GDBusMethodInvocation *invocation)
{
  bf_authority_check (BF_WORKER (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_MANAGE_WORKERS, disconnect_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_get_history (BfDBusWorker          *object,
                    GDBusMethodInvocation *invocation,
                    guint64                since_usec,
                    guint64                until_usec,
                    guint                  limit)
{
  return bf_history_handle_get_history (BF_WORKER (object)->state, object, invocation,
                                        since_usec, until_usec, limit);
}

static void
bf_worker_iface_init (BfDBusWorkerIface *iface)
{
  iface->handle_set_graceful = handle_set_graceful;
  iface->handle_pause = handle_pause;
  iface->handle_unpause = handle_unpause;
  iface->handle_shutdown = handle_shutdown;
  iface->handle_disconnect = handle_disconnect;
  iface->handle_get_history = handle_get_history;
}

/* Object --------------------------------------------------------------------- */

static void
bf_worker_dispose (GObject *object)
{
  BfWorker *self = BF_WORKER (object);

  bf_timer_stop (&self->missing_timer);
  bf_timer_stop (&self->quarantine_timer);
  bf_timer_stop (&self->flap_timer);
  g_clear_pointer (&self->detach_times, g_array_unref);
  g_clear_pointer (&self->health, bf_health_free);
  if (self->candidate_cancellable)
    g_cancellable_cancel (self->candidate_cancellable);
  if (self->candidate)
    bf_worker_link_close (self->candidate, "worker removed");
  g_clear_object (&self->candidate);
  if (self->connection)
    {
      g_signal_handlers_disconnect_by_data (self->connection, self);
      bf_worker_link_close (self->connection, "worker removed");
    }
  g_clear_object (&self->connection);
  g_clear_object (&self->candidate_cancellable);
  if (self->latent)
    bf_latent_forget_host (self->latent);
  g_clear_object (&self->latent);

  G_OBJECT_CLASS (bf_worker_parent_class)->dispose (object);
}

static void
bf_worker_finalize (GObject *object)
{
  BfWorker *self = BF_WORKER (object);

  if (self->cache_warmer != NULL)
    bf_cache_warmer_forget (self->cache_warmer, self);
  g_clear_object (&self->cache_warmer);
  g_clear_pointer (&self->busy_builders, g_ptr_array_unref);
  g_strfreev (self->reported_labels);
  /* A save in progress holds a reference: nothing is being saved now. */
  while (!g_queue_is_empty (&self->admin_ops))
    {
      AdminOp *op = g_queue_pop_head (&self->admin_ops);
      g_dbus_method_invocation_return_error (op->invocation, BF_ERROR, BF_ERROR_NOT_FOUND,
                                             "The worker was removed");
      admin_op_free (op);
    }
  g_clear_pointer (&self->config, bf_worker_config_unref);
  g_clear_pointer (&self->properties_cache, g_variant_unref);
  g_clear_object (&self->state);
  g_clear_object (&self->mailer);
  g_clear_object (&self->authority);

  G_OBJECT_CLASS (bf_worker_parent_class)->finalize (object);
}

/* GetManagedObjects asks every worker for all its properties; the
 * generated skeleton converts each GValue every time.  A worker's
 * properties change rarely compared with how often a monitor or a script
 * lists the fleet, so the dictionary is kept until the next change.  It is
 * kept in the form GDBus serialises fastest for the memory it costs: a
 * tree whose entries repeated across the fleet are shared (see
 * bf-shared-dict.c; the figures are in tests/bench/README.md). */
static void
ensure_properties_cache (BfWorker *self)
{
  GDBusInterfaceSkeleton *skeleton = G_DBUS_INTERFACE_SKELETON (self);
  g_autoptr(GVariant) fresh = NULL;

  if (self->properties_cache != NULL)
    return;
  fresh = g_variant_ref_sink (G_DBUS_INTERFACE_SKELETON_CLASS (bf_worker_parent_class)->get_properties (skeleton));
  self->properties_cache = bf_shared_dict_new (fresh);
}

static GVariant *
bf_worker_get_properties (GDBusInterfaceSkeleton *skeleton)
{
  BfWorker *self = BF_WORKER (skeleton);

  if (self->cache_warmer != NULL)
    bf_cache_warmer_set_wanted (self->cache_warmer);
  ensure_properties_cache (self);
  return g_variant_ref (self->properties_cache);
}

static void
warm_properties_cache (gpointer item)
{
  ensure_properties_cache (BF_WORKER (item));
}

/**
 * bf_worker_set_cache_warmer:
 * @warmer: (nullable): rebuilds this worker's property cache after a
 *   change, once some client lists the fleet (GetManagedObjects,
 *   GetWorkers), so that the next listing after an attach storm or in a
 *   fleet whose pongs keep moving LastMessageUSec does not pay for
 *   thousands of caches at once
 *
 * The warmer must have been made by bf_worker_new_cache_warmer().
 */
void
bf_worker_set_cache_warmer (BfWorker      *self,
                            BfCacheWarmer *warmer)
{
  g_return_if_fail (BF_IS_WORKER (self));
  if (self->cache_warmer != NULL)
    bf_cache_warmer_forget (self->cache_warmer, self);
  g_set_object (&self->cache_warmer, warmer);
}

/**
 * bf_worker_new_cache_warmer:
 *
 * Returns: (transfer full): a warmer of workers' property caches, for
 *   bf_worker_set_cache_warmer()
 */
BfCacheWarmer *
bf_worker_new_cache_warmer (void)
{
  return bf_cache_warmer_new (warm_properties_cache);
}

static void
bf_worker_dispatch_properties_changed (GObject     *object,
                                       guint        n_pspecs,
                                       GParamSpec **pspecs)
{
  BfWorker *self = BF_WORKER (object);
  static guint notify_id;

  g_clear_pointer (&self->properties_cache, g_variant_unref);
  if (self->cache_warmer != NULL)
    bf_cache_warmer_mark_cold (self->cache_warmer, self);
  /* Before the worker is on the bus nobody can hear of a change: the
   * skeleton's PropertiesChanged (scheduled from its notify handler) needs
   * a connection and the daemon connects no notify handler.  Skipping the
   * emission while a fleet of 10,000 is created saves a tenth of the
   * start-up time. */
  if (notify_id == 0)
    notify_id = g_signal_lookup ("notify", G_TYPE_OBJECT);
  if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (object)) != NULL ||
      g_signal_has_handler_pending (object, notify_id, 0, TRUE))
    G_OBJECT_CLASS (bf_worker_parent_class)->dispatch_properties_changed (object, n_pspecs, pspecs);
}

static void
bf_worker_class_init (BfWorkerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GDBusInterfaceSkeletonClass *skeleton_class = G_DBUS_INTERFACE_SKELETON_CLASS (klass);

  object_class->dispose = bf_worker_dispose;
  object_class->finalize = bf_worker_finalize;
  object_class->dispatch_properties_changed = bf_worker_dispatch_properties_changed;
  skeleton_class->get_properties = bf_worker_get_properties;

  /* For the manager's counters; emitted only on real transitions. */
  signals[SIGNAL_CONNECTED_CHANGED] =
    g_signal_new ("connected-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  signals[SIGNAL_MISSING_CHANGED] =
    g_signal_new ("missing-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  /* (int delta): +1 when a build starts on the worker, -1 when one ends */
  signals[SIGNAL_ACTIVE_BUILDS_CHANGED] =
    g_signal_new ("active-builds-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  /* Whether the worker may take a build may have changed (pause, quarantine,
   * health, flapping, MaxBuilds): the scheduler looks at its queue again. */
  signals[SIGNAL_AVAILABILITY_CHANGED] =
    g_signal_new ("availability-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  /* (const char *reason): the connection is gone, builds on it are lost.
   * Not "detached": that is the D-Bus interface's signal on this object. */
  signals[SIGNAL_LOST] =
    g_signal_new ("lost", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
bf_worker_init (BfWorker *self)
{
  self->duplicate_ping_timeout_usec = 5 * G_USEC_PER_SEC;
  self->quarantine_initial_usec = 10 * G_USEC_PER_SEC;
  self->quarantine_max_usec = (gint64) 3600 * G_USEC_PER_SEC;
}

/* Health checks exist only for workers that have them configured: most
 * of a big fleet's workers would carry an idle checker for nothing. */
static void
apply_health_config (BfWorker       *self,
                     BfWorkerConfig *config)
{
  if (config->health_interval_usec == 0)
    {
      g_clear_pointer (&self->health, bf_health_free);
      if (bf_dbus_worker_get_unhealthy (iface (self)))
        health_result (self, TRUE, "");
      return;
    }
  if (self->health == NULL)
    {
      self->health = bf_health_new (&health_host, self);
      bf_health_set_config (self->health, config);
      if (self->connection != NULL)
        bf_health_attached (self->health, self->connection);
      return;
    }
  bf_health_set_config (self->health, config);
}

/**
 * bf_worker_set_config:
 *
 * Applies a (re)loaded configuration in place: connection, flags and
 * timers are kept; the missing timer is re-armed for a new timeout.
 */
void
bf_worker_set_config (BfWorker       *self,
                      BfWorkerConfig *config)
{
  BfDBusWorker *w = iface (self);
  g_autoptr(BfWorkerConfig) old = self->config;

  self->config = bf_worker_config_ref (config);

  /* Only what changes: each set is a GObject property set (a lookup, two
   * locks, a copy), and most values of a new worker are the defaults
   * already (a tenth of a 50,000-worker start-up went here). */
  g_object_freeze_notify (G_OBJECT (self));
  if (bf_dbus_worker_get_max_builds (w) != config->max_builds)
    bf_dbus_worker_set_max_builds (w, config->max_builds);
  if (!same_strv (bf_dbus_worker_get_builders (w), config->builders))
    bf_dbus_worker_set_builders (w, (const char * const *) config->builders);
  publish_labels (self);
  if (bf_dbus_worker_get_missing_timeout_usec (w) != config->missing_timeout_usec)
    bf_dbus_worker_set_missing_timeout_usec (w, config->missing_timeout_usec);
  if (!same_strv (bf_dbus_worker_get_notify_on_missing (w), config->notify_on_missing))
    bf_dbus_worker_set_notify_on_missing (w, (const char * const *) config->notify_on_missing);
  if (!same_dict (bf_dbus_worker_get_properties (w), config->properties))
    bf_dbus_worker_set_properties (w, config->properties);
  g_object_thaw_notify (G_OBJECT (self));

  if (self->latent)
    bf_latent_set_config (self->latent, config);
  apply_health_config (self, config);

  if (old == NULL || old->missing_timeout_usec != config->missing_timeout_usec)
    arm_missing_timer (self);
  if (old != NULL && old->max_builds != config->max_builds)
    emit_availability_changed (self);
}

/**
 * bf_worker_new:
 *
 * Creates the worker and restores its persisted admin state; a worker the
 * daemon has never seen counts as disconnected since now, so its missing
 * timer starts with the daemon and not at the epoch.
 */
BfWorker *
bf_worker_new (BfWorkerConfig *config,
               BfState        *state,
               BfMailer       *mailer,
               BfAuthority    *authority)
{
  BfWorker *self = g_object_new (BF_TYPE_WORKER, NULL);
  BfDBusWorker *w = iface (self);
  BfWorkerRecord ws = { 0 };
  gboolean known;

  self->state = g_object_ref (state);
  self->mailer = g_object_ref (mailer);
  self->authority = g_object_ref (authority);

  if (config->latent != BF_LATENT_NONE)
    self->latent = bf_latent_new (config, &latent_host, self, state, mailer, authority);

  known = bf_state_get_worker (state, config->name, &ws);
  /* Unset strings and dictionaries read as "" and {} on the bus; with
   * thousands of workers, not setting them saves time and memory. */
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_worker_set_name (w, config->name);

  if (known)
    {
      bf_dbus_worker_set_graceful (w, ws.graceful);
      bf_dbus_worker_set_paused (w, ws.paused);
      bf_dbus_worker_set_pause_reason (w, ws.paused && ws.pause_reason ? ws.pause_reason : "");
      bf_dbus_worker_set_paused_by (w, ws.paused && ws.paused_by ? ws.paused_by : "");
      bf_dbus_worker_set_paused_since_usec (w, ws.paused ? ws.paused_since_usec : 0);
      self->last_seen_usec = ws.last_seen_usec;
      bf_dbus_worker_set_last_seen_usec (w, ws.last_seen_usec);
      self->missing_notified = ws.missing_notified;
      bf_dbus_worker_set_missing (w, ws.missing_notified);
      /* 0 means the daemon stopped while the worker was connected. */
      set_disconnected_since (self, ws.disconnected_since_usec ? ws.disconnected_since_usec : now_usec ());
      bf_worker_record_clear (&ws);
    }
  else
    set_disconnected_since (self, now_usec ());

  bf_worker_set_config (self, config);
  g_object_thaw_notify (G_OBJECT (self));
  if (!known)
    save_state (self);
  return self;
}

const char *
bf_worker_get_name (BfWorker *self)
{
  return self->config->name;
}

BfWorkerConfig *
bf_worker_get_config (BfWorker *self)
{
  return self->config;
}

void
bf_worker_set_duplicate_ping_timeout (BfWorker *self,
                                      guint64   timeout_usec)
{
  self->duplicate_ping_timeout_usec = timeout_usec;
}

BfLatent *
bf_worker_get_latent (BfWorker *self)
{
  return self->latent;
}

BfWorkerLink *
bf_worker_get_link (BfWorker *self)
{
  return self->connection;
}

gboolean
bf_worker_is_missing (BfWorker *self)
{
  return self->missing_notified;
}

gboolean
bf_worker_is_connected (BfWorker *self)
{
  return self->connection != NULL;
}

/* The password this worker must present: configured, or generated for
 * the current instance of a latent worker; NULL when none is valid. */
static const char *
expected_password (BfWorker *self)
{
  if (self->config->password_generate)
    return self->latent ? bf_latent_get_password (self->latent) : NULL;
  return self->config->password;
}

/**
 * bf_worker_check_password:
 *
 * Compares in constant time: both sides are hashed first so neither the
 * content nor the length of the configured password leaks through timing.
 */
gboolean
bf_worker_check_password (BfWorker   *self,
                          const char *password)
{
  g_autoptr(GChecksum) a = g_checksum_new (G_CHECKSUM_SHA256);
  g_autoptr(GChecksum) b = g_checksum_new (G_CHECKSUM_SHA256);
  guint8 da[32], db[32];
  gsize la = sizeof da, lb = sizeof db;
  guint8 diff = 0;
  const char *expected = expected_password (self);

  if (expected == NULL || password == NULL)
    return FALSE;
  g_checksum_update (a, (const guchar *) expected, -1);
  g_checksum_update (b, (const guchar *) password, -1);
  g_checksum_get_digest (a, da, &la);
  g_checksum_get_digest (b, db, &lb);
  for (gsize i = 0; i < sizeof da; i++)
    diff |= da[i] ^ db[i];
  return diff == 0;
}

/**
 * bf_worker_check_pb_response:
 *
 * PB's login: was @response computed from @challenge with this worker's
 * password?  Constant time (bf_pb_auth_check()); the password stays here.
 */
gboolean
bf_worker_check_pb_response (BfWorker     *self,
                             const guint8 *challenge,
                             gsize         challenge_len,
                             const guint8 *response,
                             gsize         response_len)
{
  const char *expected = expected_password (self);

  if (expected == NULL)
    return FALSE;
  return bf_pb_auth_check (challenge, challenge_len, expected, strlen (expected),
                           response, response_len);
}
