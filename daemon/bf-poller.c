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
 * unread.  A callback that stops before it has used what it already read
 * (its own slice of about a millisecond ran out, see
 * bf_poller_watch_set_pending()) marks its watch pending: the next
 * dispatch calls it again although the kernel has nothing new, after the
 * sockets that are merely ready, so that a flood is handled a slice at a
 * time, in order, between everything else.  A watch removed while a batch of events is being
 * dispatched is freed after the batch, so a later event of the same batch
 * never reaches freed memory (it is skipped).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
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
  gboolean pending;         /* in PollerSource.pending: has work without new input */
  gboolean in_batch;        /* in the batch being put together */
  BfPollerFunc func;
  gpointer user_data;
};

typedef struct {
  GSource source;
  int epfd;
  gpointer tag;
  gboolean dispatching;
  GPtrArray *graveyard;     /* BfPollerWatch*, removed during a dispatch */
  GPtrArray *pending;       /* BfPollerWatch*, bf_poller_watch_set_pending() */
  GArray *batch;            /* Ready, reused by every dispatch */
  gint64 slow_usec;         /* BF_DEBUG_SLOW_CALLBACK_USEC; 0: off */
} PollerSource;

typedef struct {
  BfPollerWatch *watch;
  GIOCondition condition;
} Ready;

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

/* Where a watch goes in a dispatch: the ones the last dispatch had no time
 * for first, then the ready ones, then those that only have work left over
 * from their own last call (they were just served). */
static int
rank (const BfPollerWatch *w)
{
  return w->deferred ? 0 : w->pending ? 2 : 1;
}

static gint64
thread_cpu_usec (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (gint64) ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

/* BF_DEBUG_SLOW_CALLBACK_USEC=N logs every socket callback that used more
 * than N microseconds of the main thread's CPU (CPU, not wall time: a busy
 * machine does not make a callback look slow).  Costs a branch when unset. */
static void
call_watch (PollerSource  *p,
            BfPollerWatch *w,
            GIOCondition   condition)
{
  gint64 cpu;

  if (p->slow_usec == 0)
    {
      w->func (w->fd, condition, w->user_data);
      return;
    }
  cpu = thread_cpu_usec ();
  w->func (w->fd, condition, w->user_data);
  cpu = thread_cpu_usec () - cpu;
  if (cpu > p->slow_usec)
    g_message ("Slow socket callback: %.1f ms of CPU for descriptor %d (BF_DEBUG_SLOW_CALLBACK_USEC=%"
               G_GINT64_FORMAT ")", cpu / 1000.0, w->fd, p->slow_usec);
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
  Ready *ready;
  guint n_ready;
  int n;

  n = epoll_wait (p->epfd, events, MAX_EVENTS, 0);
  if (n < 0 && errno != EINTR)
    g_warning ("epoll_wait: %s", g_strerror (errno));

  g_array_set_size (p->batch, 0);
  for (int r = 0; r <= 2; r++)
    {
      for (int i = 0; i < n; i++)
        {
          BfPollerWatch *w = events[i].data.ptr;
          /* a pending watch that is also writable is still readable */
          Ready e = { w, from_epoll (events[i].events) | (w->pending ? G_IO_IN : 0) };

          if (rank (w) == r && !w->in_batch)
            {
              w->in_batch = TRUE;
              g_array_append_val (p->batch, e);
            }
        }
      for (guint i = 0; i < p->pending->len; i++)
        {
          BfPollerWatch *w = g_ptr_array_index (p->pending, i);
          Ready e = { w, G_IO_IN };

          if (rank (w) == r && !w->in_batch)
            {
              w->in_batch = TRUE;
              g_array_append_val (p->batch, e);
            }
        }
    }
  ready = (Ready *) p->batch->data;
  n_ready = p->batch->len;
  for (guint i = 0; i < n_ready; i++)
    ready[i].watch->in_batch = FALSE;

  p->dispatching = TRUE;
  for (guint i = 0; i < n_ready; i++)
    {
      BfPollerWatch *w = ready[i].watch;
      gint64 before = now;

      w->deferred = FALSE;
      if (w->pending)
        {
          w->pending = FALSE;
          g_ptr_array_remove_fast (p->pending, w);
        }
      if (!w->dead)
        call_watch (p, w, ready[i].condition);
      /* Stop when the next callback, if it is as long as the longest so
       * far (a PB attach is a millisecond), would overrun the budget;
       * the ones not served go first next time. */
      now = g_get_monotonic_time ();
      longest = MAX (longest, now - before);
      if (now + longest >= until)
        {
          for (guint j = i + 1; j < n_ready; j++)
            ready[j].watch->deferred = TRUE;
          break;
        }
    }
  p->dispatching = FALSE;
  g_ptr_array_set_size (p->graveyard, 0);
  g_source_set_ready_time (source, p->pending->len > 0 ? 0 : -1);
  return G_SOURCE_CONTINUE;
}

static void
poller_finalize (GSource *source)
{
  PollerSource *p = (PollerSource *) source;

  g_clear_pointer (&p->graveyard, g_ptr_array_unref);
  g_clear_pointer (&p->pending, g_ptr_array_unref);
  g_clear_pointer (&p->batch, g_array_unref);
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
  p->pending = g_ptr_array_new ();
  p->batch = g_array_new (FALSE, FALSE, sizeof (Ready));
  p->slow_usec = g_ascii_strtoll (g_getenv ("BF_DEBUG_SLOW_CALLBACK_USEC") ?: "0", NULL, 10);
  p->slow_usec = MAX (p->slow_usec, 0);
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

/**
 * bf_poller_watch_set_pending:
 *
 * Tells the poller that the watch's callback stopped with work left (input
 * it has read but not handled yet): it is called again (with %G_IO_IN) in
 * the next dispatch, whether or not the kernel has anything new, after
 * the sockets that are ready.  The flag lasts until that call: a callback
 * that stops early again sets it again.
 */
void
bf_poller_watch_set_pending (BfPollerWatch *w)
{
  PollerSource *p = get_default ();

  g_return_if_fail (w != NULL && !w->dead);
  if (w->pending)
    return;
  w->pending = TRUE;
  g_ptr_array_add (p->pending, w);
  if (!p->dispatching)
    g_source_set_ready_time ((GSource *) p, 0);
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
  if (w->pending)
    {
      w->pending = FALSE;
      g_ptr_array_remove_fast (p->pending, w);
    }
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
