/* bf-history.h: a bounded, persisted event history per worker, one
 * journal for all of them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

#include "bf-dbus-generated.h"
#include "bf-state.h"

G_BEGIN_DECLS

#define BF_TYPE_HISTORY (bf_history_get_type ())
G_DECLARE_FINAL_TYPE (BfHistory, bf_history, BF, HISTORY, GObject)

/* At most this many events per worker, none older than BF_HISTORY_MAX_AGE_USEC. */
#define BF_HISTORY_MAX_EVENTS   500
#define BF_HISTORY_MAX_AGE_USEC ((guint64) 30 * 24 * 3600 * G_USEC_PER_SEC)

BfHistory *bf_history_new        (const char  *directory);
BfHistory *bf_history_for_state  (BfState     *state);

void       bf_history_add        (BfHistory   *self,
                                  const char  *worker,
                                  guint64      time_usec,
                                  const char  *event,
                                  const char  *detail,
                                  const char  *actor);
GVariant  *bf_history_query      (BfHistory   *self,
                                  const char  *worker,
                                  guint64      since_usec,
                                  guint64      until_usec,
                                  guint        limit);
void       bf_history_query_async (BfHistory          *self,
                                   const char         *worker,
                                   guint64             since_usec,
                                   guint64             until_usec,
                                   guint               limit,
                                   GAsyncReadyCallback callback,
                                   gpointer            user_data);
GVariant  *bf_history_query_finish (BfHistory        *self,
                                    GAsyncResult     *result,
                                    GError          **error);
void       bf_history_flush      (BfHistory   *self);

/* The one-line hooks of bf-worker.c, bf-latent.c and bf-manager.c. */
void       bf_history_record     (BfState     *state,
                                  const char  *worker,
                                  const char  *event,
                                  const char  *detail,
                                  const char  *actor);
void       bf_history_flush_state (BfState    *state);
gboolean   bf_history_handle_get_history (BfState               *state,
                                          BfDBusWorker          *worker,
                                          GDBusMethodInvocation *invocation,
                                          guint64                since_usec,
                                          guint64                until_usec,
                                          guint                  limit);

G_END_DECLS
