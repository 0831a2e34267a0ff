/* bf-log.h: structured log lines about one worker
 *
 * `journalctl BUILDFLEET_WORKER=linux-01` finds every line about that
 * worker.  The daemon logs through bf_log_writer(), which puts every
 * message on one line (control characters escaped, bounded length), so
 * call sites may pass text from workers and callers as it is.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#define bf_log_worker(level, worker_name, ...) \
  g_log_structured (G_LOG_DOMAIN, (level), \
                    "BUILDFLEET_WORKER", (worker_name), \
                    "MESSAGE", __VA_ARGS__)

#define bf_worker_message(name, ...) bf_log_worker (G_LOG_LEVEL_MESSAGE, name, __VA_ARGS__)
#define bf_worker_info(name, ...)    bf_log_worker (G_LOG_LEVEL_INFO, name, __VA_ARGS__)
#define bf_worker_debug(name, ...)   bf_log_worker (G_LOG_LEVEL_DEBUG, name, __VA_ARGS__)
#define bf_worker_warning(name, ...) bf_log_worker (G_LOG_LEVEL_WARNING, name, __VA_ARGS__)

/* Longest MESSAGE the log gets; longer ones are cut with a marker. */
#define BF_LOG_MESSAGE_MAX 4096

char             *bf_log_escape (const char      *text,
                                 gsize            max_bytes);
GLogWriterOutput  bf_log_writer (GLogLevelFlags   log_level,
                                 const GLogField *fields,
                                 gsize            n_fields,
                                 gpointer         user_data);
