/* bf-slowcb.c: how long buildfleetd's main thread goes without polling
 *
 * An LD_PRELOAD shim for benchmarks (issue 20: a D-Bus Get waits for the
 * main-loop iteration it arrives in).  In a program whose name ends in
 * buildfleetd it
 * measures, on the main thread:
 *
 *  - every main-loop iteration: from poll() returning to the next poll()
 *    call, in wall time and in the thread's CPU time (the CPU figure hardly
 *    depends on what else the machine runs);
 *  - every GSource dispatch of a source attached from outside GLib (the
 *    daemon's and GIO's sources, g_idle_add() and g_timeout_add*()), by
 *    source name.
 *
 * At exit it appends a summary to $BF_SLOWCB_OUT (default stderr): counts of
 * iterations over 2, 5 and 10 ms, the longest, and the dispatches over
 * 2 ms by source; with BF_SLOWCB_LOG=1 also one line per iteration over
 * 2 ms.  Iterations in the first $BF_SLOWCB_SKIP_MS (default 0) after the
 * first poll are not counted (start-up), nor is anything after
 * g_main_loop_run() returns (shutdown).
 *
 *   BF_SLOWCB_OUT=/tmp/x LD_PRELOAD=build/tests/bench/bf-slowcb.so \
 *     tests/bench/attach-once 10000 msgpack
 *
 * Not for production: it costs two clock reads per iteration and dispatch.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#define N_NAMES 64

typedef struct {
  GSourceFuncs funcs;        /* first: what the source points at */
  const GSourceFuncs *orig;
} Wrapped;

typedef struct {
  char name[64];
  guint64 count;
  guint64 over2;             /* CPU time over 2 ms */
  gint64 max_cpu;
  gint64 max_wall;
} NameStat;

static gboolean active, stopped;
static pid_t main_tid;
static gint64 skip_ns, first_poll;
static gboolean log_slow;
static gboolean in_iteration;
static gint64 it_wall, it_cpu;
static guint64 iterations;
static guint64 over_wall[3], over_cpu[3], dispatch_over_cpu[3];
static const gint64 limits[3] = { 2000000, 5000000, 10000000 };
static gint64 max_wall, max_cpu;
static NameStat names[N_NAMES];
static char longest_in_iteration[64];
static gint64 longest_in_iteration_cpu;
static GMutex lock;
static GHashTable *wrapped;   /* orig GSourceFuncs* -> Wrapped* */

static gint64
now_ns (clockid_t clock)
{
  struct timespec ts;

  clock_gettime (clock, &ts);
  return (gint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static gboolean
on_main_thread (void)
{
  return active && !stopped && gettid () == main_tid;
}

/* After the main loop: shutdown, not counted. */
void
g_main_loop_run (GMainLoop *loop)
{
  static void (*real) (GMainLoop *);

  if (real == NULL)
    real = dlsym (RTLD_NEXT, "g_main_loop_run");
  real (loop);
  if (on_main_thread ())
    stopped = TRUE;
}

__attribute__((constructor)) static void
slowcb_init (void)
{
  const char *s = getenv ("BF_SLOWCB_SKIP_MS");
  char exe[256];
  ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);

  if (n <= 0)
    return;
  exe[n] = '\0';
  if (!g_str_has_suffix (exe, "buildfleetd"))
    return;
  active = TRUE;
  main_tid = getpid ();
  skip_ns = s ? atoll (s) * 1000000 : 0;
  log_slow = g_strcmp0 (getenv ("BF_SLOWCB_LOG"), "1") == 0;
}

static NameStat *
stat_for (const char *name)
{
  for (int i = 0; i < N_NAMES; i++)
    {
      if (names[i].name[0] == '\0')
        g_strlcpy (names[i].name, name, sizeof names[i].name);
      if (strcmp (names[i].name, name) == 0)
        return &names[i];
    }
  return &names[N_NAMES - 1];
}

static FILE *
out_file (void)
{
  const char *path = getenv ("BF_SLOWCB_OUT");
  FILE *f = path ? fopen (path, "a") : NULL;

  return f ? f : stderr;
}

int
poll (struct pollfd *fds, nfds_t nfds, int timeout)
{
  static int (*real) (struct pollfd *, nfds_t, int);
  int r, saved;

  if (real == NULL)
    real = dlsym (RTLD_NEXT, "poll");
  if (!on_main_thread ())
    return real (fds, nfds, timeout);

  if (in_iteration)
    {
      gint64 wall = now_ns (CLOCK_MONOTONIC) - it_wall;
      gint64 cpu = now_ns (CLOCK_THREAD_CPUTIME_ID) - it_cpu;

      if (it_wall - first_poll >= skip_ns)
        {
          iterations++;
          for (int i = 0; i < 3; i++)
            {
              over_wall[i] += wall > limits[i];
              over_cpu[i] += cpu > limits[i];
            }
          max_wall = MAX (max_wall, wall);
          max_cpu = MAX (max_cpu, cpu);
          if (log_slow && (wall > limits[0] || cpu > limits[0]))
            {
              FILE *f = out_file ();
              fprintf (f, "slow iteration at %.3f s: wall %.2f ms cpu %.2f ms, longest dispatch %s %.2f ms\n",
                       (it_wall - first_poll) / 1e9, wall / 1e6, cpu / 1e6, longest_in_iteration,
                       longest_in_iteration_cpu / 1e6);
              if (f != stderr)
                fclose (f);
            }
        }
    }
  longest_in_iteration[0] = '\0';
  longest_in_iteration_cpu = 0;
  r = real (fds, nfds, timeout);
  saved = errno;
  it_wall = now_ns (CLOCK_MONOTONIC);
  if (!in_iteration)
    first_poll = it_wall;
  in_iteration = TRUE;
  it_cpu = now_ns (CLOCK_THREAD_CPUTIME_ID);
  errno = saved;
  return r;
}

static gboolean
wrapped_dispatch (GSource     *source,
                  GSourceFunc  callback,
                  gpointer     user_data)
{
  Wrapped *w = (Wrapped *) source->source_funcs;
  gint64 wall0, cpu0, cpu;
  gboolean r;
  const char *name;
  NameStat *st;

  if (!on_main_thread ())
    return w->orig->dispatch (source, callback, user_data);
  wall0 = now_ns (CLOCK_MONOTONIC);
  cpu0 = now_ns (CLOCK_THREAD_CPUTIME_ID);
  name = g_source_get_name (source);
  name = name ? name : "(unnamed)";
  st = stat_for (name);   /* before: the source may be gone after */
  r = w->orig->dispatch (source, callback, user_data);
  cpu = now_ns (CLOCK_THREAD_CPUTIME_ID) - cpu0;
  if (in_iteration && wall0 - first_poll >= skip_ns)
    {
      st->count++;
      st->over2 += cpu > limits[0];
      for (int i = 0; i < 3; i++)
        dispatch_over_cpu[i] += cpu > limits[i];
      st->max_cpu = MAX (st->max_cpu, cpu);
      st->max_wall = MAX (st->max_wall, now_ns (CLOCK_MONOTONIC) - wall0);
    }
  if (cpu > longest_in_iteration_cpu)
    {
      longest_in_iteration_cpu = cpu;
      g_strlcpy (longest_in_iteration, st->name, sizeof longest_in_iteration);
    }
  return r;
}

static void
wrap (GSource *source)
{
  Wrapped *w;

  if (!active || source->source_funcs == NULL || source->source_funcs->dispatch == wrapped_dispatch)
    return;
  g_mutex_lock (&lock);
  if (wrapped == NULL)
    wrapped = g_hash_table_new (NULL, NULL);
  w = g_hash_table_lookup (wrapped, source->source_funcs);
  if (w == NULL)
    {
      w = g_new0 (Wrapped, 1);
      w->funcs = *source->source_funcs;
      w->funcs.dispatch = wrapped_dispatch;
      w->orig = source->source_funcs;
      g_hash_table_insert (wrapped, (gpointer) source->source_funcs, w);
    }
  source->source_funcs = &w->funcs;
  g_mutex_unlock (&lock);
}

guint
g_source_attach (GSource      *source,
                 GMainContext *context)
{
  static guint (*real) (GSource *, GMainContext *);

  if (real == NULL)
    real = dlsym (RTLD_NEXT, "g_source_attach");
  if (context == NULL || context == g_main_context_default ())
    wrap (source);
  return real (source, context);
}

static guint
add (GSource        *source,
     gint            priority,
     GSourceFunc     function,
     gpointer        data,
     GDestroyNotify  notify)
{
  guint id;

  if (priority != G_PRIORITY_DEFAULT)
    g_source_set_priority (source, priority);
  g_source_set_callback (source, function, data, notify);
  id = g_source_attach (source, NULL);
  g_source_unref (source);
  return id;
}

guint
g_idle_add_full (gint priority, GSourceFunc function, gpointer data, GDestroyNotify notify)
{
  GSource *s = g_idle_source_new ();

  g_source_set_priority (s, G_PRIORITY_DEFAULT_IDLE);
  return add (s, priority, function, data, notify);
}

guint
g_idle_add (GSourceFunc function, gpointer data)
{
  return g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, function, data, NULL);
}

guint
g_timeout_add_full (gint priority, guint interval, GSourceFunc function, gpointer data,
                    GDestroyNotify notify)
{
  return add (g_timeout_source_new (interval), priority, function, data, notify);
}

guint
g_timeout_add (guint interval, GSourceFunc function, gpointer data)
{
  return g_timeout_add_full (G_PRIORITY_DEFAULT, interval, function, data, NULL);
}

guint
g_timeout_add_seconds_full (gint priority, guint interval, GSourceFunc function, gpointer data,
                            GDestroyNotify notify)
{
  return add (g_timeout_source_new_seconds (interval), priority, function, data, notify);
}

guint
g_timeout_add_seconds (guint interval, GSourceFunc function, gpointer data)
{
  return g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, interval, function, data, NULL);
}

__attribute__((destructor)) static void
slowcb_report (void)
{
  FILE *f;

  if (!active)
    return;
  f = out_file ();
  fprintf (f, "slowcb pid %d: %" G_GUINT64_FORMAT " iterations; wall >2/>5/>10 ms %" G_GUINT64_FORMAT
           "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " max %.2f ms; cpu >2/>5/>10 ms %" G_GUINT64_FORMAT
           "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " max %.2f ms\n",
           (int) getpid (), iterations, over_wall[0], over_wall[1], over_wall[2], max_wall / 1e6,
           over_cpu[0], over_cpu[1], over_cpu[2], max_cpu / 1e6);
  fprintf (f, "  dispatches cpu >2/>5/>10 ms %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "\n",
           dispatch_over_cpu[0], dispatch_over_cpu[1], dispatch_over_cpu[2]);
  for (int i = 0; i < N_NAMES && names[i].name[0]; i++)
    if (names[i].max_cpu > 1000000)
      fprintf (f, "  dispatch %-40s n %" G_GUINT64_FORMAT " cpu>2ms %" G_GUINT64_FORMAT
               " max cpu %.2f ms wall %.2f ms\n", names[i].name, names[i].count, names[i].over2,
               names[i].max_cpu / 1e6, names[i].max_wall / 1e6);
  if (f != stderr)
    fclose (f);
}
