/* bf-bench-output.h: what the load generators share
 *
 * bf-loadgen (msgpack) and bf-loadgen-pb (Perspective Broker) print the
 * same one-line JSON phase records that tests/bench/run reads, name their
 * workers from the same --name-format, and describe the same operating
 * system to the master.  Bench code only: never part of the daemon.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* RSS in KiB of @pid, or of this process when @pid <= 0; -1 if unknown. */
gint64     bf_bench_read_vmrss_kib   (int          pid);

/* qsort/g_array_sort comparator of gdouble, and the nearest-rank
 * percentile @p (0–100) of an array sorted with it (0 when empty). */
int        bf_bench_compare_doubles  (gconstpointer a,
                                      gconstpointer b);
gdouble    bf_bench_percentile       (GArray     *sorted,
                                      gdouble     p);

/* A phase record: {"phase":PHASE[,"protocol":PROTOCOL], ...fields...,
 * "open":N, "loadgen_rss_kib":N[, "peer_rss_kib":N], "realtime_usec":N}
 * on one line of stdout.  Keys and string values are our own identifiers
 * (not escaped). */
GString   *bf_bench_json_begin       (const char *phase,
                                      const char *protocol);
void       bf_bench_json_number      (GString    *s,
                                      const char *key,
                                      gdouble     value);
void       bf_bench_json_int         (GString    *s,
                                      const char *key,
                                      gint64      value);
void       bf_bench_json_string      (GString    *s,
                                      const char *key,
                                      const char *value);
/* {"p50","p95","p99","max"} of @values, which it sorts. */
void       bf_bench_json_distribution (GString   *s,
                                       const char *key,
                                       GArray    *values);
void       bf_bench_json_end         (GString    *s,
                                      guint       n_open,
                                      int         peer_pid);

/* /etc/os-release as Buildbot's worker reports it in its info: pairs of
 * "os_KEY", VALUE (quotes stripped as Python's str.strip('"')). */
GPtrArray *bf_bench_read_os_release  (void);

/* --name-format: text with one %d, %Nd or %0Nd (%% for a '%'). */
typedef struct {
  char    *prefix;
  char    *suffix;
  int      width;
  gboolean zero;
} BfBenchNames;

gboolean   bf_bench_names_parse      (BfBenchNames *names,
                                      const char   *format,
                                      GError      **error);
char      *bf_bench_names_format     (const BfBenchNames *names,
                                      guint               number);
void       bf_bench_names_clear      (BfBenchNames *names);

G_END_DECLS
