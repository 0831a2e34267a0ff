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
} Peer;

static void
peer_cb (int           fd,
         GIOCondition  condition,
         gpointer      user_data)
{
  Peer *peer = user_data;
  gint64 until = g_get_monotonic_time () + peer->burn_usec;

  peer->calls++;
  while (g_get_monotonic_time () < until)
    ;
}

/* A peer whose every wakeup uses up the dispatch's budget (a flood, or a
 * slow build) must not keep a quiet peer that became ready after it from
 * being served: the one left waiting goes first next time. */
static void
test_budget_is_fair (void)
{
  int flood[2], quiet[2], later[2];
  Peer flooder = { 0, 5000 }, answerer = { 0, 0 }, third = { 0, 0 };
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

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/poller/budget-is-fair", test_budget_is_fair);
  return g_test_run ();
}
