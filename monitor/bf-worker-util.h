/* bf-worker-util.h: how the monitor describes a worker in words
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

/* Ordered so that sorting ascending puts the workers that need attention first. */
typedef enum
{
  BF_WORKER_STATE_MISSING,
  BF_WORKER_STATE_DISCONNECTED,
  BF_WORKER_STATE_SUBSTANTIATING,
  BF_WORKER_STATE_INSUBSTANTIATING,
  BF_WORKER_STATE_NOT_SUBSTANTIATED,
  BF_WORKER_STATE_CONNECTED,
} BfWorkerState;

#define BF_TYPE_WORKER_STATE (bf_worker_state_get_type ())
GType               bf_worker_state_get_type          (void) G_GNUC_CONST;

BfDBusLatentWorker *bf_worker_dup_latent              (BfDBusWorker  *worker);
BfWorkerState       bf_worker_get_state               (BfDBusWorker  *worker);
BfWorkerState       bf_worker_state_classify          (gboolean       connected,
                                                       gboolean       missing,
                                                       const char    *latent_state);
const char         *bf_worker_state_to_label          (BfWorkerState  state);
const char         *bf_worker_state_to_css_class      (BfWorkerState  state);
guint64             bf_worker_get_last_seen_usec      (BfDBusWorker  *worker);
const char         *bf_enum_to_nick                   (GType          enum_type,
                                                       int            value);
char               *bf_format_builds                  (guint          active,
                                                       guint          max);
char               *bf_format_relative_time           (gint64         now_usec,
                                                       guint64        then_usec);
char               *bf_format_last_seen               (gint64         now_usec,
                                                       gboolean       connected,
                                                       guint64        disconnected_since_usec);
char               *bf_format_timestamp               (guint64        usec);
char               *bf_format_duration                (guint64        usec);

char               *bf_format_elapsed                 (gint64         usec);

G_END_DECLS
