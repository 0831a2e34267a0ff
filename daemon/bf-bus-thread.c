/* bf-bus-thread.c: the daemon's D-Bus output leaves once per main-loop pass
 *
 * See bf-bus-thread.h.  GDBus gives no handle on its thread, but a
 * connection's filter functions run in it, for every outgoing message
 * just before it is written, with no GDBus lock held.  The filter waits
 * there while the gate is closed.  Meanwhile GDBus counts its writer as
 * busy, so the main loop's further messages are only queued: no wake-up,
 * no lock contention.
 *
 * The gate is a GSource of the main context that is never dispatched:
 * its check() (right after the poll, before anything is dispatched)
 * closes the gate, its prepare() (before the next poll) opens it.  A
 * nested iteration only opens and closes it once more.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-bus-thread.h"

static GMutex gate_mutex;
static GCond gate_cond;
static gboolean gate_closed;
static gint64 gate_closed_until;  /* monotonic: the writer waits no longer */
static guint64 gate_pass;         /* main-loop passes that closed the gate */

static void
gate_set (gboolean closed)
{
  g_mutex_lock (&gate_mutex);
  if (gate_closed != closed)
    {
      gate_closed = closed;
      if (closed)
        {
          gate_closed_until = g_get_monotonic_time () + BF_BUS_THREAD_MAX_HOLD_USEC;
          gate_pass++;
        }
      else
        g_cond_broadcast (&gate_cond);
    }
  g_mutex_unlock (&gate_mutex);
}

static gboolean
gate_prepare (GSource *source,
              gint    *timeout)
{
  *timeout = -1;
  gate_set (FALSE);
  return FALSE;
}

static gboolean
gate_check (GSource *source)
{
  gate_set (TRUE);
  return FALSE;
}

static gboolean
gate_dispatch (GSource     *source,
               GSourceFunc  callback,
               gpointer     user_data)
{
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs gate_funcs = {
  .prepare = gate_prepare,
  .check = gate_check,
  .dispatch = gate_dispatch,
};

/* GDBus's thread, before it writes @message. */
static GDBusMessage *
gate_filter_cb (GDBusConnection *bus,
                GDBusMessage    *message,
                gboolean         incoming,
                gpointer         user_data)
{
  guint64 pass;

  if (incoming)
    return message;
  /* The hold is counted from the start of the pass, not per message: in
   * a pass longer than that, what it sends afterwards goes out at once,
   * and a queue never drains one message per hold.  And it ends with the
   * pass, even if the next one has closed the gate again before this
   * thread got to run. */
  g_mutex_lock (&gate_mutex);
  pass = gate_pass;
  while (gate_closed && gate_pass == pass)
    if (!g_cond_wait_until (&gate_cond, &gate_mutex, gate_closed_until))
      break;
  g_mutex_unlock (&gate_mutex);
  return message;
}

/**
 * bf_bus_thread_tune:
 * @bus: the daemon's bus connection
 *
 * Gates @bus's output on the thread-default main context's passes.  Call
 * once, from the main thread.
 */
void
bf_bus_thread_tune (GDBusConnection *bus)
{
  static GSource *gate;

  g_return_if_fail (G_IS_DBUS_CONNECTION (bus));
  g_dbus_connection_add_filter (bus, gate_filter_cb, NULL, NULL);
  if (gate != NULL)
    return;
  gate = g_source_new (&gate_funcs, sizeof (GSource));
  /* First in every pass, so its prepare() and check() always run. */
  g_source_set_priority (gate, G_MININT);
  g_source_set_static_name (gate, "[buildfleetd] D-Bus output gate");
  g_source_attach (gate, g_main_context_get_thread_default ());
}
