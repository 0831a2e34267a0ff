/* bf-poller.h: thousands of sockets, one main-loop source
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _BfPollerWatch BfPollerWatch;

/* @events and the condition passed back are G_IO_IN / G_IO_OUT / G_IO_HUP /
 * G_IO_ERR. */
typedef void (*BfPollerFunc) (int           fd,
                              GIOCondition  condition,
                              gpointer      user_data);

BfPollerWatch *bf_poller_watch        (int             fd,
                                       GIOCondition    events,
                                       BfPollerFunc    func,
                                       gpointer        user_data);
void           bf_poller_watch_update (BfPollerWatch  *watch,
                                       GIOCondition    events);
void           bf_poller_watch_set_pending (BfPollerWatch *watch);
void           bf_poller_unwatch      (BfPollerWatch **watch);
void           bf_poller_shutdown     (void);

G_END_DECLS
