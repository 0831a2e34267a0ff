/* bf-poller.c: thousands of sockets, one main-loop source
 *
 * GLib 2.74 keeps a main context's file descriptors in a linked list
 * sorted by number: adding or removing one walks the list, and every
 * iteration walks and poll()s all of them.  With 10,000 worker sockets that
 * walk was a third of the daemon's CPU during an attach storm.  Worker
 * sockets therefore live in one epoll set whose descriptor is the only
 * thing the main context polls: an iteration costs what is ready, not what
 * is open.
 *
 * Level-triggered, so a callback may read only part of what is there and
 * be called again.  Sockets left waiting when a dispatch used up its budget
 * go first in the next one: epoll reports ready sockets in the same order
 * again, and without that a flooding peer at the head of the list would
 * have every dispatch to itself while the others' keepalive answers sat
 * unread.  A watch removed while a batch of events is being
 * dispatched is freed after the batch, so a later event of the same batch
 * never reaches freed memory (it is skipped).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bf-poller.h"

#define MAX_EVENTS 256
/* One dispatch handles ready sockets for at most this long; the rest are
 * reported again by the next epoll_wait() (level-triggered), after the
 * main loop has run what else is due -- a D-Bus call waits at most about
 * this long behind an attach storm, not 256 attaches. */
#define DISPATCH_BUDGET_USEC 2000

struct _BfPollerWatch
{
  int fd;
  gboolean dead;
  gboolean deferred;        /* ready, not dispatched: the budget ran out */
  BfPollerFunc func;
  gpointer user_data;
};

typedef struct {
  GSource source;
  int epfd;
  gpointer tag;
  gboolean dispatching;
  GPtrArray *graveyard;     /* BfPollerWatch*, removed during a dispatch */
} PollerSource;

static PollerSource *default_poller;

static guint32
to_epoll (GIOCondition events)
{
  guint32 e = 0;

  if (events & G_IO_IN)
    e |= EPOLLIN;
  if (events & G_IO_OUT)
    e |= EPOLLOUT;
  return e;
}

static GIOCondition
from_epoll (guint32 e)
{
  GIOCondition c = 0;

  if (e & EPOLLIN)
    c |= G_IO_IN;
  if (e & EPOLLOUT)
    c |= G_IO_OUT;
  if (e & EPOLLHUP)
    c |= G_IO_HUP;
  if (e & EPOLLERR)
    c |= G_IO_ERR;
  return c;
}

static gboolean
poller_dispatch (GSource     *source,
                 GSourceFunc  callback,
                 gpointer     user_data)
{
  PollerSource *p = (PollerSource *) source;
  struct epoll_event events[MAX_EVENTS];
  gint64 now = g_get_monotonic_time ();
  gint64 until = now + DISPATCH_BUDGET_USEC;
  gint64 longest = 0;
  int n;

  n = epoll_wait (p->epfd, events, MAX_EVENTS, 0);
  if (n < 0 && errno != EINTR)
    g_warning ("epoll_wait: %s", g_strerror (errno));

  /* the ones the last dispatch had no time for first, in their order */
  for (int i = 0, first = 0; i < n; i++)
    {
      BfPollerWatch *w = events[i].data.ptr;

      if (w->deferred)
        {
          struct epoll_event e = events[i];

          memmove (&events[first + 1], &events[first], (i - first) * sizeof e);
          events[first++] = e;
        }
    }

  p->dispatching = TRUE;
  for (int i = 0; i < n; i++)
    {
      BfPollerWatch *w = events[i].data.ptr;
      gint64 before = now;

      w->deferred = FALSE;
      if (!w->dead)
        w->func (w->fd, from_epoll (events[i].events), w->user_data);
      /* Stop when the next callback, if it is as long as the longest so
       * far (a PB attach is a millisecond), would overrun the budget;
       * the ones not served go first next time. */
      now = g_get_monotonic_time ();
      longest = MAX (longest, now - before);
      if (now + longest >= until)
        {
          for (int j = i + 1; j < n; j++)
            ((BfPollerWatch *) events[j].data.ptr)->deferred = TRUE;
          break;
        }
    }
  p->dispatching = FALSE;
  g_ptr_array_set_size (p->graveyard, 0);
  return G_SOURCE_CONTINUE;
}

static void
poller_finalize (GSource *source)
{
  PollerSource *p = (PollerSource *) source;

  g_clear_pointer (&p->graveyard, g_ptr_array_unref);
  if (p->epfd >= 0)
    close (p->epfd);
}

static GSourceFuncs poller_funcs = {
  .dispatch = poller_dispatch,
  .finalize = poller_finalize,
};

static PollerSource *
get_default (void)
{
  PollerSource *p;
  int epfd;

  if (default_poller != NULL)
    return default_poller;

  epfd = epoll_create1 (EPOLL_CLOEXEC);
  if (epfd < 0)
    g_error ("epoll_create1: %s", g_strerror (errno));
  p = (PollerSource *) g_source_new (&poller_funcs, sizeof (PollerSource));
  p->epfd = epfd;
  p->graveyard = g_ptr_array_new_with_free_func (g_free);
  p->tag = g_source_add_unix_fd ((GSource *) p, epfd, G_IO_IN);
  g_source_set_static_name ((GSource *) p, "[buildfleetd] worker sockets");
  g_source_attach ((GSource *) p, NULL);
  default_poller = p;
  return p;
}

/**
 * bf_poller_watch:
 * @fd: a non-blocking socket; it stays the caller's
 *
 * Calls @func whenever @fd is ready for @events (or hung up / in error),
 * from the default main context.
 *
 * Returns: (transfer full): the watch, for bf_poller_watch_update() and
 *   bf_poller_unwatch(); unwatch it before closing @fd.
 */
BfPollerWatch *
bf_poller_watch (int           fd,
                 GIOCondition  events,
                 BfPollerFunc  func,
                 gpointer      user_data)
{
  PollerSource *p = get_default ();
  BfPollerWatch *w = g_new0 (BfPollerWatch, 1);
  struct epoll_event ev = { .events = to_epoll (events), .data.ptr = w };

  w->fd = fd;
  w->func = func;
  w->user_data = user_data;
  if (epoll_ctl (p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    g_error ("epoll_ctl(ADD, %d): %s", fd, g_strerror (errno));
  return w;
}

void
bf_poller_watch_update (BfPollerWatch *w,
                        GIOCondition   events)
{
  PollerSource *p = get_default ();
  struct epoll_event ev = { .events = to_epoll (events), .data.ptr = w };

  g_return_if_fail (w != NULL && !w->dead);
  if (epoll_ctl (p->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
    g_warning ("epoll_ctl(MOD, %d): %s", w->fd, g_strerror (errno));
}

void
bf_poller_unwatch (BfPollerWatch **slot)
{
  BfPollerWatch *w = g_steal_pointer (slot);
  PollerSource *p = default_poller;

  if (w == NULL)
    return;
  g_return_if_fail (p != NULL);
  epoll_ctl (p->epfd, EPOLL_CTL_DEL, w->fd, NULL);
  w->dead = TRUE;
  if (p->dispatching)
    g_ptr_array_add (p->graveyard, w);
  else
    g_free (w);
}

/* For leak checkers at exit: every watch must be gone by then. */
void
bf_poller_shutdown (void)
{
  PollerSource *p = g_steal_pointer (&default_poller);

  if (p == NULL)
    return;
  g_source_destroy ((GSource *) p);
  g_source_unref ((GSource *) p);
}
