/* test-poller.c: the shared epoll set of worker sockets
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <sys/socket.h>
#include <unistd.h>

#include "bf-poller.h"

typedef struct {
  int calls;
  gint64 burn_usec;   /* each call takes this long, reading nothing */
  int order;          /* when it was last called (of every callback here) */
} Peer;

static int order;

static void
burn (gint64 usec)
{
  gint64 until = g_get_monotonic_time () + usec;

  while (g_get_monotonic_time () < until)
    ;
}

static void
peer_cb (int           fd,
         GIOCondition  condition,
         gpointer      user_data)
{
  Peer *peer = user_data;

  peer->calls++;
  peer->order = ++order;
  burn (peer->burn_usec);
}

/* A peer whose every wakeup uses up the dispatch's budget (a flood, or a
 * slow build) must not keep a quiet peer that became ready after it from
 * being served: the one left waiting goes first next time. */
static void
test_budget_is_fair (void)
{
  int flood[2], quiet[2], later[2];
  Peer flooder = { 0, 5000, 0 }, answerer = { 0, 0, 0 }, third = { 0, 0, 0 };
  BfPollerWatch *wf, *wq, *wl;

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, flood));
  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, quiet));
  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, later));
  wf = bf_poller_watch (flood[0], G_IO_IN, peer_cb, &flooder);
  wq = bf_poller_watch (quiet[0], G_IO_IN, peer_cb, &answerer);
  wl = bf_poller_watch (later[0], G_IO_IN, peer_cb, &third);

  /* Ready in this order, and they stay ready (nothing is read). */
  g_assert_cmpint (write (flood[1], "x", 1), ==, 1);
  g_assert_cmpint (write (quiet[1], "x", 1), ==, 1);
  g_assert_cmpint (write (later[1], "x", 1), ==, 1);

  for (int i = 0; i < 20 && (answerer.calls == 0 || third.calls == 0); i++)
    g_main_context_iteration (NULL, FALSE);
  /* the flooder uses up the first dispatch's budget; the others are
   * served next (before: never, epoll reporting the flooder first again) */
  g_assert_cmpint (answerer.calls, >=, 1);
  g_assert_cmpint (third.calls, >=, 1);

  bf_poller_unwatch (&wf);
  bf_poller_unwatch (&wq);
  bf_poller_unwatch (&wl);
  for (int i = 0; i < 2; i++)
    {
      close (flood[i]);
      close (quiet[i]);
      close (later[i]);
    }
}

/* A callback that stops with work left (a slice of a flood) is called
 * again although the kernel has nothing new, once per dispatch, until it
 * stops asking. */
typedef struct {
  int calls;
  int rounds;         /* asks to be called again this many times */
  gint64 burn_usec;
  BfPollerWatch *watch;
  GIOCondition last;
  int order;
  gboolean drained;
} Slicer;

static void
slicer_cb (int           fd,
           GIOCondition  condition,
           gpointer      user_data)
{
  Slicer *s = user_data;
  char c;

  s->calls++;
  s->order = ++order;
  s->last = condition;
  if (!s->drained)
    g_assert_cmpint (read (fd, &c, 1), ==, 1);   /* the kernel holds nothing from now on */
  s->drained = TRUE;
  burn (s->burn_usec);
  if (s->rounds > 0)
    {
      s->rounds--;
      bf_poller_watch_set_pending (s->watch);
    }
}

static gboolean
flag_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
test_pending_comes_back (void)
{
  int sv[2];
  Slicer s = { 0, 3, 0, NULL, 0, 0, FALSE };
  gboolean timed_out = FALSE;
  guint guard = g_timeout_add_seconds (10, flag_cb, &timed_out);

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, sv));
  s.watch = bf_poller_watch (sv[0], G_IO_IN, slicer_cb, &s);
  g_assert_cmpint (write (sv[1], "x", 1), ==, 1);

  /* blocking iterations: they return only if the poller wakes without
   * anything in the kernel (before: the guard's timeout, 1 call) */
  while (s.calls < 4 && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (timed_out);
  g_assert_cmpint (s.calls, ==, 4);
  g_assert_cmpint (s.last, ==, G_IO_IN);

  /* it stopped asking and nothing is there: no more calls */
  for (int i = 0; i < 50; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpint (s.calls, ==, 4);

  g_source_remove (guard);
  bf_poller_unwatch (&s.watch);
  close (sv[0]);
  close (sv[1]);
}

/* A socket that has just become ready goes before one that only has work
 * left over from its last slice, so a flood that always asks for more
 * cannot keep the others waiting. */
static void
test_pending_after_ready (void)
{
  int flood[2], quiet[2];
  Slicer flooder = { 0, G_MAXINT, 3000, NULL, 0, 0, FALSE };
  Peer answerer = { 0, 0, 0 };
  BfPollerWatch *wq;

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, flood));
  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, quiet));
  flooder.watch = bf_poller_watch (flood[0], G_IO_IN, slicer_cb, &flooder);
  wq = bf_poller_watch (quiet[0], G_IO_IN, peer_cb, &answerer);
  g_assert_cmpint (write (flood[1], "x", 1), ==, 1);
  while (flooder.calls < 3)
    g_main_context_iteration (NULL, FALSE);

  /* each of the flooder's calls uses up a dispatch's budget: the quiet
   * socket that became ready meanwhile is served by the very next one */
  g_assert_cmpint (write (quiet[1], "x", 1), ==, 1);
  flooder.calls = 0;
  while (answerer.calls == 0 && flooder.calls < 10)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpint (answerer.calls, ==, 1);
  g_assert_true (flooder.calls == 0 || flooder.order > answerer.order);

  /* and the flood goes on, a slice per dispatch */
  flooder.calls = 0;
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpint (flooder.calls, >=, 3);

  /* removed while pending: never called again, nothing leaks (ASan) */
  bf_poller_unwatch (&flooder.watch);
  flooder.calls = 0;
  bf_poller_unwatch (&wq);
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpint (flooder.calls, ==, 0);
  for (int i = 0; i < 2; i++)
    {
      close (flood[i]);
      close (quiet[i]);
    }
}

typedef struct {
  int calls;
  int with_in;
  BfPollerWatch *watch;
} Writer;

static void
writer_cb (int           fd,
           GIOCondition  condition,
           gpointer      user_data)
{
  Writer *w = user_data;

  w->calls++;
  if (condition & G_IO_IN)
    w->with_in++;
  if (w->calls == 1)
    bf_poller_watch_set_pending (w->watch);
}

/* A watch waiting for output (a PB link whose socket was full) that also
 * has input left over: epoll reports it writable, and the call must still
 * say readable, or what is left waits until the worker sends more. */
static void
test_pending_and_writable (void)
{
  int sv[2];
  Writer w = { 0, 0, NULL };

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM, 0, sv));
  w.watch = bf_poller_watch (sv[0], G_IO_IN | G_IO_OUT, writer_cb, &w);
  while (w.calls < 2)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpint (w.with_in, ==, 1);   /* the second call, not the first */

  bf_poller_unwatch (&w.watch);
  close (sv[0]);
  close (sv[1]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/poller/budget-is-fair", test_budget_is_fair);
  g_test_add_func ("/poller/pending-comes-back", test_pending_comes_back);
  g_test_add_func ("/poller/pending-after-ready", test_pending_after_ready);
  g_test_add_func ("/poller/pending-and-writable", test_pending_and_writable);
  return g_test_run ();
}
