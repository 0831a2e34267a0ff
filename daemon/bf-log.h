/* bf-log.h: structured log lines about one worker
 *
 * `journalctl BUILDFLEET_WORKER=linux-01` finds every line about that
 * worker.
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
