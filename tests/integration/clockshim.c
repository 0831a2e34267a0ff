/* clockshim.c: an LD_PRELOAD shim that steps the wall clock for tests
 *
 * Adds an offset to CLOCK_REALTIME (and its _COARSE variant),
 * gettimeofday() and time(); every other clock passes through untouched, so
 * CLOCK_MONOTONIC keeps running as the kernel says.  The offset, in seconds,
 * is the little-endian int64 at the start of the file named by
 * $BF_CLOCK_SHIM_FILE.  The shim maps that file shared, so a test steps the
 * clock by overwriting those 8 bytes in place and the very next clock read
 * sees it.  No variable, or no file yet: offset 0 (the open is retried at
 * most every 50 ms).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RETRY_NSEC (50 * 1000 * 1000LL)

typedef int (*clock_gettime_fn) (clockid_t, struct timespec *);

static int64_t *offset_map;           /* accessed with __atomic builtins */
static long long next_try_nsec;

/* The real clock_gettime: resolved lazily (another library's constructor
 * may ask for the time before ours could run); the raw syscall until then. */
static int
real_clock_gettime (clockid_t clk, struct timespec *ts)
{
  static clock_gettime_fn real;
  clock_gettime_fn fn = __atomic_load_n (&real, __ATOMIC_ACQUIRE);

  if (fn == NULL)
    {
      fn = (clock_gettime_fn) dlsym (RTLD_NEXT, "clock_gettime");
      if (fn == NULL)
        return (int) syscall (SYS_clock_gettime, clk, ts);
      __atomic_store_n (&real, fn, __ATOMIC_RELEASE);
    }
  return fn (clk, ts);
}

static int64_t
current_offset (void)
{
  int64_t *map = __atomic_load_n (&offset_map, __ATOMIC_ACQUIRE);
  struct timespec now;
  long long now_nsec, due;
  const char *path;
  void *m;
  int fd;

  if (map != NULL)
    return __atomic_load_n (map, __ATOMIC_RELAXED);

  if (real_clock_gettime (CLOCK_MONOTONIC, &now) != 0)
    return 0;
  now_nsec = now.tv_sec * 1000000000LL + now.tv_nsec;
  due = __atomic_load_n (&next_try_nsec, __ATOMIC_RELAXED);
  /* One thread tries; the others go on with no offset meanwhile. */
  if (now_nsec < due ||
      !__atomic_compare_exchange_n (&next_try_nsec, &due, now_nsec + RETRY_NSEC, 0,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return 0;

  path = getenv ("BF_CLOCK_SHIM_FILE");
  if (path == NULL)
    return 0;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  m = mmap (NULL, sizeof (int64_t), PROT_READ, MAP_SHARED, fd, 0);
  close (fd);
  if (m == MAP_FAILED)
    return 0;
  __atomic_store_n (&offset_map, (int64_t *) m, __ATOMIC_RELEASE);
  return __atomic_load_n ((int64_t *) m, __ATOMIC_RELAXED);
}

int
clock_gettime (clockid_t clk, struct timespec *ts)
{
  int r = real_clock_gettime (clk, ts);

  if (r == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE))
    ts->tv_sec += current_offset ();
  return r;
}

int
gettimeofday (struct timeval *tv, void *tz)
{
  struct timespec ts;

  (void) tz;
  if (clock_gettime (CLOCK_REALTIME, &ts) != 0)
    return -1;
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = ts.tv_nsec / 1000;
  return 0;
}

time_t
time (time_t *out)
{
  struct timespec ts;
  time_t t = (time_t) -1;

  if (clock_gettime (CLOCK_REALTIME, &ts) == 0)
    t = ts.tv_sec;
  if (out != NULL)
    *out = t;
  return t;
}
