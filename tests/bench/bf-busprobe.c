/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bf-busprobe: the D-Bus side of tests/bench/run, a small sd-bus client whose
 * own cost stays out of the figures (no GVariant, no Python).
 *
 *   bf-busprobe wait-listen [--timeout S]
 *       Prints {"phase":"waiting"} once connected, then waits until the
 *       Manager's Listen property carries a real port (PropertiesChanged, with
 *       a Get every 20 ms as a fallback) and prints when, on CLOCK_MONOTONIC
 *       (the same clock as Python's time.monotonic()), and when the name
 *       org.buildfleet.Fleet1 got its owner.
 *   bf-busprobe wait-prop --prop NAME --equals U [--timeout S] [--interval MS]
 *       Polls a u property of the Manager until it equals U.
 *   bf-busprobe watch [--detached N] [--reason R] [--missing M] [--timeout S] [--events]
 *       Prints {"phase":"watching"} once the match rules are in place, then
 *       counts Worker.Detached (only those with reason R, if given) and
 *       Worker.Missing signals until N and M arrived or S passed, and prints
 *       the arrival times (CLOCK_REALTIME, like the daemon's timestamps) of
 *       the first and last Detached, and of every Missing with its argument.
 *   bf-busprobe build-rtt [--builder B] [--count N] [--timeout S]
 *       N times: RequestBuild(B) -> Started -> RunCommand("shell", true) ->
 *       Completed -> Release, each step timed; prints percentiles.
 *   bf-busprobe throughput [--builder B] [--timeout S]
 *       One build on B, one shell command; counts the text of its Output
 *       signals until Completed and prints bytes, seconds and MB/s.
 *   bf-busprobe get-latency [--interval MS] [--timeout S]
 *       Prints {"phase":"probing"}, then calls Get(Manager.WorkersConnected)
 *       every MS (default 10) until SIGTERM/SIGINT or S, and prints the
 *       round-trip times: min/p50/p95/p99/max and how many took over 10 ms.
 *       The worst case is the figure: a client waits for the slowest call.
 *
 * All on the system bus (DBUS_SYSTEM_BUS_ADDRESS), or --session.  One JSON
 * object per line on stdout; exit status 0, 1 on failure or timeout, 2 on
 * usage errors.
 */

#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-bus.h>

#define BUS_NAME "org.buildfleet.Fleet1"
#define FLEET_PATH "/org/buildfleet/Fleet1"
#define MANAGER_IFACE "org.buildfleet.Fleet1.Manager"
#define WORKER_IFACE "org.buildfleet.Fleet1.Worker"
#define BUILD_IFACE "org.buildfleet.Fleet1.Build"
#define COMMAND_IFACE "org.buildfleet.Fleet1.Command"

typedef struct {
  const char *prop;
  const char *builder;
  const char *reason;
  double timeout;
  unsigned equals;
  unsigned interval_ms;
  unsigned detached_want;
  unsigned missing_want;
  unsigned count;
  int events;
  int session;
} Options;

static sd_bus *bus;

static uint64_t
clock_usec (clockid_t id)
{
  struct timespec ts;

  clock_gettime (id, &ts);
  return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t mono (void) { return clock_usec (CLOCK_MONOTONIC); }
static uint64_t real (void) { return clock_usec (CLOCK_REALTIME); }

static void
die (const char *fmt, ...)
{
  va_list ap;

  fputs ("bf-busprobe: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (1);
}

static void
check (int r, sd_bus_error *error, const char *what)
{
  if (r < 0)
    die ("%s: %s", what, error && error->message ? error->message : strerror (-r));
}

/* Runs the bus until *done or the deadline (monotonic usec); returns 0 on
 * timeout.  `tick`, if given, runs every `tick_usec`. */
static int
run_until (const int *done, uint64_t deadline, void (*tick) (void), uint64_t tick_usec)
{
  uint64_t next_tick = tick ? mono () + tick_usec : UINT64_MAX;

  while (!*done)
    {
      uint64_t now = mono (), until;
      int r;

      if (now >= deadline)
        return 0;
      if (now >= next_tick)
        {
          tick ();
          next_tick = now + tick_usec;
          continue;
        }
      r = sd_bus_process (bus, NULL);
      check (r, NULL, "processing the bus");
      if (r > 0)
        continue;
      until = deadline < next_tick ? deadline : next_tick;
      r = sd_bus_wait (bus, until - now);
      if (r < 0 && r != -EINTR)
        check (r, NULL, "waiting on the bus");
    }
  return 1;
}

static void
add_match (const char *rule, sd_bus_message_handler_t handler, void *data)
{
  check (sd_bus_add_match (bus, NULL, rule, handler, data), NULL, rule);
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

static void
print_stats (const char *name, uint64_t *v, unsigned n, int comma)
{
  qsort (v, n, sizeof *v, cmp_u64);
  if (n == 0)
    {
      printf ("\"%s\":null%s", name, comma ? "," : "");
      return;
    }
  printf ("\"%s\":{\"min\":%.3f,\"p50\":%.3f,\"p95\":%.3f,\"max\":%.3f}%s", name,
          v[0] / 1000.0, v[n / 2] / 1000.0, v[(n * 95) / 100 < n ? (n * 95) / 100 : n - 1] / 1000.0,
          v[n - 1] / 1000.0, comma ? "," : "");
}

/* --- wait-listen ---------------------------------------------------------- */

static struct {
  int done;
  uint64_t listen_mono, owner_mono;
  char listen[256];
} wl;

/* Looks at a Listen value (as); records the first real endpoint. */
static int
listen_value (sd_bus_message *m)
{
  const char *first = NULL;
  int r;

  r = sd_bus_message_enter_container (m, 'a', "s");
  if (r < 0)
    return r;
  r = sd_bus_message_read (m, "s", &first);
  if (r <= 0)
    return r;
  if (!wl.done)
    {
      size_t len = strlen (first);

      if (len >= 2 && strcmp (first + len - 2, ":0") != 0)
        {
          wl.listen_mono = mono ();
          snprintf (wl.listen, sizeof wl.listen, "%s", first);
          wl.done = 1;
        }
    }
  return 0;
}

static int
on_manager_changed (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  const char *iface, *key;
  int r;

  if (sd_bus_message_read (m, "s", &iface) < 0 || strcmp (iface, MANAGER_IFACE) != 0)
    return 0;
  if (sd_bus_message_enter_container (m, 'a', "{sv}") < 0)
    return 0;
  while ((r = sd_bus_message_enter_container (m, 'e', "sv")) > 0)
    {
      if (sd_bus_message_read (m, "s", &key) < 0)
        return 0;
      if (strcmp (key, "Listen") == 0)
        {
          if (sd_bus_message_enter_container (m, 'v', "as") < 0)
            return 0;
          listen_value (m);
          return 0;
        }
      if (sd_bus_message_skip (m, "v") < 0 || sd_bus_message_exit_container (m) < 0)
        return 0;
    }
  return 0;
}

static int
on_name_owner (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  const char *name, *old, *new;

  if (sd_bus_message_read (m, "sss", &name, &old, &new) >= 0 && *new && wl.owner_mono == 0)
    wl.owner_mono = mono ();
  return 0;
}

static void
poll_listen (void)
{
  sd_bus_message *m = NULL, *reply = NULL;

  if (sd_bus_message_new_method_call (bus, &m, BUS_NAME, FLEET_PATH,
                                      "org.freedesktop.DBus.Properties", "Get") < 0)
    return;
  sd_bus_message_set_auto_start (m, 0);
  sd_bus_message_append (m, "ss", MANAGER_IFACE, "Listen");
  if (sd_bus_call (bus, m, 2000000, NULL, &reply) >= 0 &&
      sd_bus_message_enter_container (reply, 'v', "as") >= 0)
    listen_value (reply);
  sd_bus_message_unref (reply);
  sd_bus_message_unref (m);
}

static int
cmd_wait_listen (Options *o)
{
  uint64_t deadline;
  const char *colon;

  add_match ("type='signal',path='" FLEET_PATH "',interface='org.freedesktop.DBus.Properties',"
             "member='PropertiesChanged',arg0='" MANAGER_IFACE "'", on_manager_changed, NULL);
  add_match ("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
             "member='NameOwnerChanged',arg0='" BUS_NAME "'", on_name_owner, NULL);
  printf ("{\"phase\":\"waiting\",\"monotonic_usec\":%llu}\n", (unsigned long long) mono ());
  fflush (stdout);
  deadline = mono () + (uint64_t) (o->timeout * 1e6);
  if (!run_until (&wl.done, deadline, poll_listen, 20000))
    die ("Listen has no real port after %.0f s", o->timeout);
  colon = strrchr (wl.listen, ':');
  printf ("{\"phase\":\"listening\",\"monotonic_usec\":%llu,\"name_owner_monotonic_usec\":%llu,"
          "\"listen\":\"%s\",\"port\":%s}\n",
          (unsigned long long) wl.listen_mono, (unsigned long long) wl.owner_mono, wl.listen,
          colon ? colon + 1 : "0");
  return 0;
}

/* --- wait-prop ------------------------------------------------------------ */

static int
cmd_wait_prop (Options *o)
{
  uint64_t start = mono (), deadline = start + (uint64_t) (o->timeout * 1e6);
  sd_bus_error error = SD_BUS_ERROR_NULL;
  uint32_t value = 0;
  unsigned polls = 0;

  if (!o->prop)
    die ("wait-prop needs --prop");
  for (;;)
    {
      int r = sd_bus_get_property_trivial (bus, BUS_NAME, FLEET_PATH, MANAGER_IFACE, o->prop,
                                           &error, 'u', &value);
      polls++;
      check (r, &error, o->prop);
      if (value == o->equals)
        break;
      if (mono () >= deadline)
        {
          printf ("{\"phase\":\"timeout\",\"prop\":\"%s\",\"value\":%u,\"seconds\":%.3f}\n",
                  o->prop, value, (mono () - start) / 1e6);
          return 1;
        }
      struct timespec ts = { 0, (long) o->interval_ms * 1000000L };
      nanosleep (&ts, NULL);
    }
  printf ("{\"phase\":\"reached\",\"prop\":\"%s\",\"value\":%u,\"seconds\":%.3f,\"polls\":%u,"
          "\"monotonic_usec\":%llu,\"realtime_usec\":%llu}\n",
          o->prop, value, (mono () - start) / 1e6, polls, (unsigned long long) mono (),
          (unsigned long long) real ());
  return 0;
}

/* --- watch ---------------------------------------------------------------- */

#define MAX_EVENTS 100000
#define MAX_REASONS 8

static struct {
  const Options *o;
  int done;
  unsigned detached, detached_other, missing;
  uint64_t first_real, last_real;
  uint64_t *arrivals;           /* Detached, with --events */
  struct { char path[200]; uint64_t since, arrival; } *missing_events;
  struct { char text[80]; unsigned n; } reasons[MAX_REASONS];
  unsigned n_reasons;
} w;

static void
watch_check_done (void)
{
  if (w.detached >= w.o->detached_want && w.missing >= w.o->missing_want)
    w.done = 1;
}

static int
on_detached (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  uint64_t t = real ();
  const char *reason = "";
  unsigned i;

  sd_bus_message_read (m, "s", &reason);
  for (i = 0; i < w.n_reasons; i++)
    if (strcmp (w.reasons[i].text, reason) == 0)
      break;
  if (i == w.n_reasons && w.n_reasons < MAX_REASONS)
    snprintf (w.reasons[w.n_reasons++].text, sizeof w.reasons[0].text, "%s", reason);
  if (i < MAX_REASONS)
    w.reasons[i].n++;
  if (w.o->reason && strcmp (reason, w.o->reason) != 0)
    {
      w.detached_other++;
      return 0;
    }
  if (w.detached == 0)
    w.first_real = t;
  w.last_real = t;
  if (w.arrivals && w.detached < MAX_EVENTS)
    w.arrivals[w.detached] = t;
  w.detached++;
  watch_check_done ();
  return 0;
}

static int
on_missing (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  uint64_t t = real (), since = 0;

  sd_bus_message_read (m, "t", &since);
  if (w.missing < MAX_EVENTS)
    {
      snprintf (w.missing_events[w.missing].path, sizeof w.missing_events[0].path, "%s",
                sd_bus_message_get_path (m));
      w.missing_events[w.missing].since = since;
      w.missing_events[w.missing].arrival = t;
    }
  w.missing++;
  watch_check_done ();
  return 0;
}

static int
cmd_watch (Options *o)
{
  uint64_t start, deadline;
  int complete;

  w.o = o;
  w.missing_events = calloc (MAX_EVENTS, sizeof *w.missing_events);
  if (o->events)
    w.arrivals = calloc (MAX_EVENTS, sizeof *w.arrivals);
  add_match ("type='signal',interface='" WORKER_IFACE "',member='Detached'", on_detached, NULL);
  add_match ("type='signal',interface='" WORKER_IFACE "',member='Missing'", on_missing, NULL);
  start = mono ();
  printf ("{\"phase\":\"watching\",\"realtime_usec\":%llu}\n", (unsigned long long) real ());
  fflush (stdout);
  deadline = start + (uint64_t) (o->timeout * 1e6);
  watch_check_done ();
  complete = run_until (&w.done, deadline, NULL, 0);

  printf ("{\"phase\":\"watched\",\"complete\":%s,\"detached\":%u,\"detached_other_reason\":%u,"
          "\"detached_first_realtime_usec\":%llu,\"detached_last_realtime_usec\":%llu,\"reasons\":{",
          complete ? "true" : "false", w.detached, w.detached_other,
          (unsigned long long) w.first_real, (unsigned long long) w.last_real);
  for (unsigned i = 0; i < w.n_reasons; i++)
    printf ("%s\"%s\":%u", i ? "," : "", w.reasons[i].text, w.reasons[i].n);
  printf ("},\"missing\":%u,\"missing_events\":[", w.missing);
  for (unsigned i = 0; i < w.missing && i < MAX_EVENTS; i++)
    printf ("%s{\"path\":\"%s\",\"since_usec\":%llu,\"arrival_realtime_usec\":%llu}", i ? "," : "",
            w.missing_events[i].path, (unsigned long long) w.missing_events[i].since,
            (unsigned long long) w.missing_events[i].arrival);
  printf ("]");
  if (w.arrivals)
    {
      printf (",\"detached_arrivals_realtime_usec\":[");
      for (unsigned i = 0; i < w.detached && i < MAX_EVENTS; i++)
        printf ("%s%llu", i ? "," : "", (unsigned long long) w.arrivals[i]);
      printf ("]");
    }
  printf ("}\n");
  return complete ? 0 : 1;
}

/* --- builds ---------------------------------------------------------------- */

static struct {
  char started[256];            /* last build path that sent Started */
  char cmd[256];                /* the command we wait for */
  int completed;
  int exit_code;
  char failure[256];
  uint64_t output_bytes, output_signals, first_output_mono, completed_mono;
} b;

static int
on_started (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  snprintf (b.started, sizeof b.started, "%s", sd_bus_message_get_path (m));
  return 0;
}

static int
on_output (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  const char *stream, *text;
  size_t len;

  if (strcmp (sd_bus_message_get_path (m), b.cmd) != 0)
    return 0;
  if (sd_bus_message_read (m, "ss", &stream, &text) < 0)
    return 0;
  len = strlen (text);
  if (b.output_signals++ == 0)
    b.first_output_mono = mono ();
  if (strcmp (stream, "stdout") == 0)
    b.output_bytes += len;
  return 0;
}

static int
on_completed (sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  const char *failure = "";

  if (strcmp (sd_bus_message_get_path (m), b.cmd) != 0)
    return 0;
  sd_bus_message_read (m, "is", &b.exit_code, &failure);
  snprintf (b.failure, sizeof b.failure, "%s", failure);
  b.completed_mono = mono ();
  b.completed = 1;
  return 0;
}

static void
build_matches (void)
{
  add_match ("type='signal',interface='" BUILD_IFACE "',member='Started'", on_started, NULL);
  add_match ("type='signal',interface='" COMMAND_IFACE "',member='Output'", on_output, NULL);
  add_match ("type='signal',interface='" COMMAND_IFACE "',member='Completed'", on_completed, NULL);
}

static char *
request_build (const char *builder)
{
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  const char *path;
  char *ret;

  check (sd_bus_call_method (bus, BUS_NAME, FLEET_PATH, MANAGER_IFACE, "RequestBuild", &error,
                             &reply, "sa{sv}", builder, 0), &error, "RequestBuild");
  check (sd_bus_message_read (reply, "o", &path), NULL, "RequestBuild reply");
  ret = strdup (path);
  sd_bus_message_unref (reply);
  return ret;
}

static int started_flag;

static void
wait_started (const char *build, uint64_t deadline)
{
  for (;;)
    {
      started_flag = strcmp (b.started, build) == 0;
      if (started_flag)
        return;
      if (mono () >= deadline)
        die ("build %s did not start", build);
      int r = sd_bus_process (bus, NULL);
      check (r, NULL, "processing the bus");
      if (r == 0)
        sd_bus_wait (bus, 100000);
    }
}

static void
run_shell (const char *build)
{
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  const char *path;

  b.completed = 0;
  b.cmd[0] = 0;
  b.output_bytes = b.output_signals = 0;
  /* Output may be queued before the reply: on_output compares with b.cmd,
   * which is set before those queued signals are dispatched. */
  check (sd_bus_call_method (bus, BUS_NAME, build, BUILD_IFACE, "RunCommand", &error, &reply,
                             "sa{sv}", "shell", 2,
                             "command", "as", 1, "true",
                             "workdir", "s", "build"), &error, "RunCommand");
  check (sd_bus_message_read (reply, "o", &path), NULL, "RunCommand reply");
  snprintf (b.cmd, sizeof b.cmd, "%s", path);
  sd_bus_message_unref (reply);
}

static void
release_build (const char *build)
{
  sd_bus_error error = SD_BUS_ERROR_NULL;

  check (sd_bus_call_method (bus, BUS_NAME, build, BUILD_IFACE, "Release", &error, NULL, ""),
         &error, "Release");
}

static int
cmd_build_rtt (Options *o)
{
  unsigned n = o->count;
  uint64_t *lease = calloc (n, sizeof *lease), *command = calloc (n, sizeof *command);
  uint64_t *total = calloc (n, sizeof *total), *release = calloc (n, sizeof *release);
  uint64_t run_start = mono ();

  build_matches ();
  for (unsigned i = 0; i < n; i++)
    {
      uint64_t t0 = mono (), deadline = t0 + (uint64_t) (o->timeout * 1e6), t1, t2, t3;
      char *build = request_build (o->builder);

      wait_started (build, deadline);
      t1 = mono ();
      run_shell (build);
      if (!run_until (&b.completed, deadline, NULL, 0))
        die ("command %s did not complete", b.cmd);
      if (b.exit_code != 0)
        die ("command %s: exit code %d %s", b.cmd, b.exit_code, b.failure);
      t2 = mono ();
      release_build (build);
      t3 = mono ();
      lease[i] = t1 - t0;
      command[i] = t2 - t1;
      total[i] = t2 - t0;
      release[i] = t3 - t2;
      free (build);
    }
  printf ("{\"phase\":\"build-rtt\",\"count\":%u,\"seconds\":%.3f,", n, (mono () - run_start) / 1e6);
  print_stats ("request_to_started_ms", lease, n, 1);
  print_stats ("run_command_to_completed_ms", command, n, 1);
  print_stats ("request_to_completed_ms", total, n, 1);
  print_stats ("release_ms", release, n, 0);
  printf ("}\n");
  return 0;
}

static int
cmd_throughput (Options *o)
{
  uint64_t t0 = mono (), deadline = t0 + (uint64_t) (o->timeout * 1e6), t1;
  char *build;
  double seconds;

  build_matches ();
  build = request_build (o->builder);
  wait_started (build, deadline);
  t1 = mono ();
  run_shell (build);
  if (!run_until (&b.completed, deadline, NULL, 0))
    die ("command %s did not complete within %.0f s (%llu bytes so far)", b.cmd, o->timeout,
         (unsigned long long) b.output_bytes);
  seconds = (b.completed_mono - t1) / 1e6;
  release_build (build);
  printf ("{\"phase\":\"throughput\",\"exit_code\":%d,\"stdout_bytes\":%llu,\"output_signals\":%llu,"
          "\"seconds\":%.3f,\"first_output_ms\":%.3f,\"mb_per_s\":%.2f}\n",
          b.exit_code, (unsigned long long) b.output_bytes, (unsigned long long) b.output_signals,
          seconds, b.output_signals ? (b.first_output_mono - t1) / 1000.0 : -1.0,
          seconds > 0 ? b.output_bytes / seconds / 1e6 : 0.0);
  free (build);
  return b.exit_code == 0 ? 0 : 1;
}

/* --- get-latency -------------------------------------------------------------- */

static volatile sig_atomic_t stop_probing;

static void
on_stop (int sig)
{
  stop_probing = 1;
}

static int
cmd_get_latency (Options *o)
{
  uint64_t t0 = mono (), deadline = t0 + (uint64_t) (o->timeout * 1e6);
  unsigned n = 0, cap = 4096, over = 0, failed = 0;
  uint64_t *v = malloc (cap * sizeof *v);
  uint64_t worst_at = 0, worst = 0;
  struct sigaction sa = { .sa_handler = on_stop };

  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  printf ("{\"phase\":\"probing\"}\n");
  fflush (stdout);
  while (!stop_probing && mono () < deadline)
    {
      sd_bus_error error = SD_BUS_ERROR_NULL;
      uint32_t value = 0;
      uint64_t a = mono (), d;
      int r = sd_bus_get_property_trivial (bus, BUS_NAME, FLEET_PATH, MANAGER_IFACE,
                                           "WorkersConnected", &error, 'u', &value);

      d = mono () - a;
      sd_bus_error_free (&error);
      if (r < 0)
        failed++;
      if (n == cap)
        v = realloc (v, (cap *= 2) * sizeof *v);
      v[n++] = d;
      if (d > 10000)
        over++;
      if (d > worst)
        {
          worst = d;
          worst_at = a - t0;
        }
      if (o->interval_ms)
        {
          struct timespec ts = { o->interval_ms / 1000, (long) (o->interval_ms % 1000) * 1000000L };
          nanosleep (&ts, NULL);
        }
    }
  printf ("{\"phase\":\"get-latency\",\"count\":%u,\"failed\":%u,\"over_10ms\":%u,"
          "\"seconds\":%.3f,\"worst_at_s\":%.3f,", n, failed, over, (mono () - t0) / 1e6, worst_at / 1e6);
  if (n > 0)
    {
      qsort (v, n, sizeof *v, cmp_u64);
      printf ("\"p99_ms\":%.3f,", v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0);
    }
  print_stats ("get_ms", v, n, 0);
  printf ("}\n");
  free (v);
  return failed ? 1 : 0;
}

/* --- main ------------------------------------------------------------------ */

static void
usage (FILE *f)
{
  fputs ("Usage: bf-busprobe wait-listen|wait-prop|watch|build-rtt|throughput|get-latency [OPTIONS]\n"
         "  --timeout S  --session\n"
         "  wait-prop: --prop NAME --equals U [--interval MS]\n"
         "  watch: [--detached N] [--reason R] [--missing M] [--events]\n"
         "  build-rtt: [--builder B] [--count N];  throughput: [--builder B]\n"
         "  get-latency: [--interval MS]\n", f);
}

int
main (int argc, char **argv)
{
  Options o = { .timeout = 60, .builder = "bench", .count = 50, .interval_ms = 10 };
  static const struct option options[] = {
    { "timeout", required_argument, NULL, 't' },
    { "prop", required_argument, NULL, 'p' },
    { "equals", required_argument, NULL, 'e' },
    { "interval", required_argument, NULL, 'i' },
    { "detached", required_argument, NULL, 'd' },
    { "reason", required_argument, NULL, 'r' },
    { "missing", required_argument, NULL, 'm' },
    { "events", no_argument, NULL, 'E' },
    { "builder", required_argument, NULL, 'b' },
    { "count", required_argument, NULL, 'n' },
    { "session", no_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *sub;
  int c, r;

  if (argc < 2)
    {
      usage (stderr);
      return 2;
    }
  sub = argv[1];
  optind = 2;
  while ((c = getopt_long (argc, argv, "t:p:e:i:d:r:m:Eb:n:sh", options, NULL)) != -1)
    switch (c)
      {
      case 't': o.timeout = atof (optarg); break;
      case 'p': o.prop = optarg; break;
      case 'e': o.equals = (unsigned) strtoul (optarg, NULL, 10); break;
      case 'i': o.interval_ms = (unsigned) strtoul (optarg, NULL, 10); break;
      case 'd': o.detached_want = (unsigned) strtoul (optarg, NULL, 10); break;
      case 'r': o.reason = optarg; break;
      case 'm': o.missing_want = (unsigned) strtoul (optarg, NULL, 10); break;
      case 'E': o.events = 1; break;
      case 'b': o.builder = optarg; break;
      case 'n': o.count = (unsigned) strtoul (optarg, NULL, 10); break;
      case 's': o.session = 1; break;
      case 'h': usage (stdout); return 0;
      default: usage (stderr); return 2;
      }
  if (o.timeout <= 0 || o.count == 0)
    {
      usage (stderr);
      return 2;
    }

  r = o.session ? sd_bus_open_user (&bus) : sd_bus_open_system (&bus);
  if (r < 0)
    die ("cannot connect to the bus: %s", strerror (-r));

  if (strcmp (sub, "wait-listen") == 0)
    r = cmd_wait_listen (&o);
  else if (strcmp (sub, "wait-prop") == 0)
    r = cmd_wait_prop (&o);
  else if (strcmp (sub, "watch") == 0)
    r = cmd_watch (&o);
  else if (strcmp (sub, "build-rtt") == 0)
    r = cmd_build_rtt (&o);
  else if (strcmp (sub, "throughput") == 0)
    r = cmd_throughput (&o);
  else if (strcmp (sub, "get-latency") == 0)
    r = cmd_get_latency (&o);
  else
    {
      usage (stderr);
      return 2;
    }
  fflush (stdout);
  sd_bus_flush_close_unref (bus);
  return r;
}
