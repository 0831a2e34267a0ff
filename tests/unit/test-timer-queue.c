/* test-timer-queue.c: the shared queue of timers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-timer-queue.h"

#define N_TIMERS 2000

typedef struct {
  BfTimer *slot;
  int index;
  int *fired;       /* indices in firing order */
  int *n_fired;
} Entry;

static gboolean
burn_cb (gpointer data)
{
  Entry *e = data;
  gint64 until = g_get_monotonic_time () + 20;

  e->fired[(*e->n_fired)++] = e->index;
  while (g_get_monotonic_time () < until)
    ;
  return G_SOURCE_REMOVE;
}

/* Thousands of timers due at once (40 ms of callbacks) do not run in one
 * dispatch: the main loop gets back between slices of about 2 ms, and
 * every timer still fires, once. */
static void
test_many_due_at_once (void)
{
  g_autofree Entry *entries = g_new0 (Entry, N_TIMERS);
  g_autofree int *fired = g_new0 (int, N_TIMERS);
  g_autofree int *times = g_new0 (int, N_TIMERS);
  int n_fired = 0, iterations = 0, most = 0;

  for (int i = 0; i < N_TIMERS; i++)
    {
      entries[i] = (Entry) { NULL, i, fired, &n_fired };
      bf_timer_start (&entries[i].slot, 0, burn_cb, &entries[i]);
    }
  while (n_fired < N_TIMERS && iterations < 10000)
    {
      int before = n_fired;

      g_main_context_iteration (NULL, TRUE);
      most = MAX (most, n_fired - before);
      iterations++;
    }
  g_assert_cmpint (n_fired, ==, N_TIMERS);
  /* 20 µs each: about 100 fit in a 2 ms slice; before, all 2,000 in one */
  g_assert_cmpint (most, <, N_TIMERS / 2);
  for (int i = 0; i < N_TIMERS; i++)
    times[fired[i]]++;
  for (int i = 0; i < N_TIMERS; i++)
    {
      g_assert_cmpint (times[i], ==, 1);
      g_assert_null (entries[i].slot);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/timer-queue/many-due-at-once", test_many_due_at_once);
  return g_test_run ();
}
