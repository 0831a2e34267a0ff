/* bf-timer-queue.h: many timers, one main-loop source
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _BfTimer BfTimer;

void bf_timer_start (BfTimer     **slot,
                     guint64       interval_usec,
                     GSourceFunc   func,
                     gpointer      data);
void bf_timer_stop  (BfTimer     **slot);
void bf_timer_queue_shutdown (void);

G_END_DECLS
