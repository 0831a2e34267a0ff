/* bf-timer-queue.c: many timers, one main-loop source
 *
 * GLib's main loop walks every attached source on every iteration, so a
 * GSource per worker (missing timer) and per connection (keepalive) makes
 * every iteration cost O(fleet size): with 10,000 workers that dominated
 * the daemon's CPU during an attach storm.  Here all of them share one
 * source, "[buildfleetd] timers", whose ready time is the earliest due
 * timer, kept in a GSequence ordered by due time (O(log n) to add and
 * remove).
 *
 * Each timer lives in a slot owned by the object whose state it changes:
 * bf_timer_start() arms (or re-arms) it, bf_timer_stop() clears it and is
 * what dispose calls; the slot is zeroed before the callback runs, so the
 * callback may arm it again.  A callback returning G_SOURCE_CONTINUE is
 * re-armed with the same interval.  Timers run on the default main
 * context's thread, as every daemon object does.
 *
 * One dispatch runs due timers for at most DISPATCH_BUDGET_USEC: thousands
 * due at once (keepalive checks armed by an attach storm, deadlines of a
 * mass disconnect) run over several main-loop iterations, in due order,
 * with D-Bus calls and sockets served in between.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-timer-queue.h"

#define DISPATCH_BUDGET_USEC 2000

struct _BfTimer {
  gint64 due;                 /* monotonic usec */
  guint64 interval;
  GSourceFunc func;
  gpointer data;
  BfTimer **slot;
  GSequenceIter *iter;
};

typedef struct {
  GSource source;
  GSequence *timers;
} QueueSource;

static QueueSource *queue;    /* the default main context's */

static gint
compare_due (gconstpointer a,
             gconstpointer b,
             gpointer      user_data)
{
  const BfTimer *ta = a, *tb = b;

  if (ta->due != tb->due)
    return ta->due < tb->due ? -1 : 1;
  return ta < tb ? -1 : ta > tb;
}

static void
update_ready_time (QueueSource *q)
{
  GSequenceIter *first = g_sequence_get_begin_iter (q->timers);

  if (g_sequence_iter_is_end (first))
    g_source_set_ready_time ((GSource *) q, -1);
  else
    g_source_set_ready_time ((GSource *) q, ((BfTimer *) g_sequence_get (first))->due);
}

static void insert (BfTimer *timer);

static gboolean
queue_dispatch (GSource     *source,
                GSourceFunc  callback,
                gpointer     user_data)
{
  QueueSource *q = (QueueSource *) source;
  gint64 now = g_source_get_time (source);
  gint64 until = g_get_monotonic_time () + DISPATCH_BUDGET_USEC;

  /* Only what is due now: callbacks that arm new timers for "now" run on
   * the next iteration, so the loop cannot starve. */
  for (guint budget = g_sequence_get_length (q->timers); budget > 0; budget--)
    {
      GSequenceIter *first = g_sequence_get_begin_iter (q->timers);
      BfTimer *timer;

      if (g_sequence_iter_is_end (first))
        break;
      timer = g_sequence_get (first);
      if (timer->due > now)
        break;
      g_sequence_remove (first);
      timer->iter = NULL;
      *timer->slot = NULL;
      if (timer->func (timer->data) == G_SOURCE_CONTINUE && *timer->slot == NULL)
        {
          timer->due = now + (gint64) timer->interval;
          *timer->slot = timer;
          insert (timer);
        }
      else
        g_free (timer);
      /* the rest are still due: the ready time below brings them back
       * next iteration */
      if (g_get_monotonic_time () >= until)
        break;
    }
  update_ready_time (q);
  return G_SOURCE_CONTINUE;
}

static void
queue_finalize (GSource *source)
{
  QueueSource *q = (QueueSource *) source;

  g_sequence_free (q->timers);
}

static GSourceFuncs queue_funcs = {
  .dispatch = queue_dispatch,
  .finalize = queue_finalize,
};

static QueueSource *
get_queue (void)
{
  if (queue == NULL)
    {
      queue = (QueueSource *) g_source_new (&queue_funcs, sizeof (QueueSource));
      queue->timers = g_sequence_new (NULL);
      g_source_set_static_name ((GSource *) queue, "[buildfleetd] timers");
      g_source_set_ready_time ((GSource *) queue, -1);
      g_source_attach ((GSource *) queue, NULL);
    }
  return queue;
}

static void
insert (BfTimer *timer)
{
  QueueSource *q = get_queue ();

  timer->iter = g_sequence_insert_sorted (q->timers, timer, compare_due, NULL);
  if (g_sequence_iter_is_begin (timer->iter))
    g_source_set_ready_time ((GSource *) q, timer->due);
}

/**
 * bf_timer_start:
 * @slot: where the owner keeps the timer; an armed timer there is replaced
 * @interval_usec: from now; also the period when @func continues
 * @func: called once due; %G_SOURCE_CONTINUE re-arms it
 */
void
bf_timer_start (BfTimer     **slot,
                guint64       interval_usec,
                GSourceFunc   func,
                gpointer      data)
{
  BfTimer *timer;

  bf_timer_stop (slot);
  timer = g_new0 (BfTimer, 1);
  timer->due = g_get_monotonic_time () + (gint64) interval_usec;
  timer->interval = interval_usec;
  timer->func = func;
  timer->data = data;
  timer->slot = slot;
  *slot = timer;
  insert (timer);
}

/**
 * bf_timer_stop:
 *
 * Disarms the timer in @slot, if any, and zeroes the slot.
 */
void
bf_timer_stop (BfTimer **slot)
{
  BfTimer *timer = *slot;

  if (timer == NULL)
    return;
  *slot = NULL;
  if (timer->iter != NULL && queue != NULL)
    {
      gboolean was_first = g_sequence_iter_is_begin (timer->iter);
      g_sequence_remove (timer->iter);
      if (was_first)
        update_ready_time (queue);
    }
  g_free (timer);
}

/**
 * bf_timer_queue_shutdown:
 *
 * Detaches the shared source; for a clean exit after every owner stopped
 * its timers.
 */
void
bf_timer_queue_shutdown (void)
{
  if (queue == NULL)
    return;
  g_source_destroy ((GSource *) queue);
  g_source_unref ((GSource *) queue);
  queue = NULL;
}
