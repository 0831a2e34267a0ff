/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bf-gmo: time org.freedesktop.DBus.ObjectManager.GetManagedObjects on
 * buildfleetd with a client that costs next to nothing itself.
 *
 *   bf-gmo [--count N] [--dest NAME] [--path PATH] [--timeout SECONDS]
 *
 * Uses libsystemd's sd-bus on the system bus (DBUS_SYSTEM_BUS_ADDRESS points
 * it at a private bus), or the session bus with --session.  Each call is
 * sd_bus_call_method() timed with CLOCK_MONOTONIC: request written, the
 * daemon builds the reply, the bus daemon forwards it, sd-bus reads it (sd-bus
 * checks the header, not the body, so almost nothing is spent parsing; a GDBus
 * client spends most of its time turning the reply into GVariants).
 *
 * The first call is reported apart (it is the one a fresh client such as
 * busctl or a monitor pays, and it may fill caches in the daemon), then N
 * more calls (default 5) give min/median/max.  Afterwards the last reply is
 * walked once, outside the timing, to count objects and interfaces.
 *
 * Output: one JSON line on stdout.  Exit status 0 on success, 1 on a D-Bus
 * error, 2 on usage errors.
 */

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-bus.h>

static uint64_t
now_usec (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* Objects and interfaces in a GetManagedObjects reply. */
static int
count_reply (sd_bus_message *reply, unsigned *objects, unsigned *interfaces)
{
  int r;

  *objects = *interfaces = 0;
  r = sd_bus_message_rewind (reply, 1);
  if (r < 0)
    return r;
  r = sd_bus_message_enter_container (reply, 'a', "{oa{sa{sv}}}");
  if (r < 0)
    return r;
  while ((r = sd_bus_message_enter_container (reply, 'e', "oa{sa{sv}}")) > 0)
    {
      const char *path;

      (*objects)++;
      r = sd_bus_message_read (reply, "o", &path);
      if (r < 0)
        return r;
      r = sd_bus_message_enter_container (reply, 'a', "{sa{sv}}");
      if (r < 0)
        return r;
      while ((r = sd_bus_message_enter_container (reply, 'e', "sa{sv}")) > 0)
        {
          (*interfaces)++;
          r = sd_bus_message_skip (reply, "sa{sv}");
          if (r < 0)
            return r;
          r = sd_bus_message_exit_container (reply);
          if (r < 0)
            return r;
        }
      if (r < 0)
        return r;
      r = sd_bus_message_exit_container (reply);
      if (r < 0)
        return r;
      r = sd_bus_message_exit_container (reply);
      if (r < 0)
        return r;
    }
  if (r < 0)
    return r;
  return sd_bus_message_exit_container (reply);
}

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage: bf-gmo [--count N] [--dest NAME] [--path PATH] [--timeout SECONDS] [--session]\n"
           "              [--get-workers NAME,NAME,...]\n"
           "Times GetManagedObjects (or Manager.GetWorkers with these property names):\n"
           "the first call, then N more (default 5); one JSON line.\n");
}

int
main (int argc, char **argv)
{
  const char *dest = "org.buildfleet.Fleet1";
  const char *path = "/org/buildfleet/Fleet1";
  int count = 5, session = 0, r;
  double timeout = 60;
  sd_bus *bus = NULL;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  uint64_t first = 0, *times;
  unsigned objects = 0, interfaces = 0;
  const char *get_workers = NULL;
  static const struct option options[] = {
    { "get-workers", required_argument, NULL, 'w' },
    { "count", required_argument, NULL, 'n' },
    { "dest", required_argument, NULL, 'd' },
    { "path", required_argument, NULL, 'p' },
    { "timeout", required_argument, NULL, 't' },
    { "session", no_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "n:d:p:t:shw:", options, NULL)) != -1)
    switch (c)
      {
      case 'w': get_workers = optarg; break;
      case 'n': count = atoi (optarg); break;
      case 'd': dest = optarg; break;
      case 'p': path = optarg; break;
      case 't': timeout = atof (optarg); break;
      case 's': session = 1; break;
      case 'h': usage (stdout); return 0;
      default: usage (stderr); return 2;
      }
  if (count < 1 || count > 10000 || timeout <= 0)
    {
      usage (stderr);
      return 2;
    }

  r = session ? sd_bus_open_user (&bus) : sd_bus_open_system (&bus);
  if (r < 0)
    {
      fprintf (stderr, "bf-gmo: cannot connect to the bus: %s\n", strerror (-r));
      return 1;
    }
  times = calloc ((size_t) count, sizeof *times);

  for (int i = 0; i <= count; i++)
    {
      sd_bus_message *m = NULL;
      uint64_t t0, t1;

      if (get_workers == NULL)
        r = sd_bus_message_new_method_call (bus, &m, dest, path,
                                            "org.freedesktop.DBus.ObjectManager",
                                            "GetManagedObjects");
      else
        r = sd_bus_message_new_method_call (bus, &m, dest, path,
                                            "org.buildfleet.Fleet1.Manager", "GetWorkers");
      if (r >= 0 && get_workers != NULL)
        {
          /* the comma-separated names as an array of strings */
          char *copy = strdup (get_workers), *save = NULL;

          r = sd_bus_message_open_container (m, 'a', "s");
          for (char *tok = strtok_r (copy, ",", &save); r >= 0 && tok; tok = strtok_r (NULL, ",", &save))
            r = sd_bus_message_append (m, "s", tok);
          if (r >= 0)
            r = sd_bus_message_close_container (m);
          free (copy);
        }
      if (r >= 0)
        r = sd_bus_message_set_auto_start (m, 0);
      if (r < 0)
        {
          fprintf (stderr, "bf-gmo: %s\n", strerror (-r));
          return 1;
        }
      sd_bus_message_unref (reply);
      reply = NULL;
      t0 = now_usec ();
      r = sd_bus_call (bus, m, (uint64_t) (timeout * 1e6), &error, &reply);
      t1 = now_usec ();
      sd_bus_message_unref (m);
      if (r < 0)
        {
          fprintf (stderr, "bf-gmo: %s: %s\n", get_workers ? "GetWorkers" : "GetManagedObjects",
                   error.message ? error.message : strerror (-r));
          return 1;
        }
      if (i == 0)
        first = t1 - t0;
      else
        times[i - 1] = t1 - t0;
    }

  r = count_reply (reply, &objects, &interfaces);
  if (r < 0)
    fprintf (stderr, "bf-gmo: cannot walk the reply: %s\n", strerror (-r));

  qsort (times, (size_t) count, sizeof *times, cmp_u64);
  printf ("{\"first_ms\":%.3f,\"count\":%d,\"min_ms\":%.3f,\"median_ms\":%.3f,\"max_ms\":%.3f,"
          "\"objects\":%u,\"interfaces\":%u}\n",
          first / 1000.0, count, times[0] / 1000.0, times[count / 2] / 1000.0,
          times[count - 1] / 1000.0, objects, interfaces);
  fflush (stdout);
  sd_bus_message_unref (reply);
  sd_bus_flush_close_unref (bus);
  free (times);
  return 0;
}
