/* bf-pb-broker.h: Perspective Broker messages over banana + jelly, server side
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "bf-banana.h"
#include "bf-jelly.h"

G_BEGIN_DECLS

/**
 * SECTION:bf-pb-broker
 * @title: BfPbBroker
 * @short_description: PB's broker (message, answer, error, decref) as a pure state machine
 *
 * A broker turns bytes from a PB peer into calls on our objects and answers
 * to our calls, and our calls and answers into bytes; it does no I/O (bytes
 * go out through #BfPbBrokerHandler.send) and keeps no clock, so the whole
 * session can be driven from a test or a fuzzer.
 *
 * Wire, as Twisted's twisted.spread.pb.Broker speaks it (every expression a
 * banana list, every argument and result jelly):
 *
 * | expression                                              | meaning |
 * |---------------------------------------------------------|---------|
 * | `["version", 6]`                                        | first expression each way, after the dialect |
 * | `["message", req, obj, name, answer?, args, kw]`        | call method @name of object @obj (an integer id, or "root"); args a jelly tuple, kw a jelly dictionary; answered when answer? is 1 |
 * | `["answer", req, result]`                               | the result of call @req |
 * | `["error", req, failure]`                               | call @req failed (usually a CopyableFailure) |
 * | `["decref", obj]`                                       | the peer dropped one reference to our object @obj |
 *
 * Objects: ours ("local": root, the login challenger, the perspective, one
 * per running command) have integer ids numbered from 1; each time one is
 * sent as `["remote", id]` its count goes up, each `decref` brings it down,
 * and at zero it leaves the table (#BfPbBrokerHandler.released). The peer's
 * (its mind and WorkerForBuilders) arrive as `["remote", id]`: the broker
 * counts how many references it holds and gives them back with
 * bf_pb_broker_release_remote().
 *
 * Everything outside this subset fails the broker with a #BF_PB_BROKER_ERROR
 * naming what: a caching message (`cachemessage`, `decache`, `uncache`), an
 * unknown expression, a message to an object that is not ours, a decref of
 * an object not referenced, an answer to a call never made, a malformed
 * expression, and every banana and jelly refusal. Bounds:
 * %BF_PB_BROKER_MAX_LOCAL and %BF_PB_BROKER_MAX_REMOTE objects,
 * %BF_PB_BROKER_MAX_OUTSTANDING calls of ours unanswered (the caller sees
 * %FALSE from bf_pb_broker_call()), method names of
 * %BF_PB_BROKER_MAX_NAME bytes; sizes and nesting by banana and jelly.
 */

#define BF_PB_BROKER_MAX_LOCAL 1024
#define BF_PB_BROKER_MAX_REMOTE 4096
/* references held to one remote object */
#define BF_PB_BROKER_MAX_REMOTE_REFS 65536
#define BF_PB_BROKER_MAX_OUTSTANDING 256
#define BF_PB_BROKER_MAX_NAME 256

/* The id of the object every PB client calls first (login). */
#define BF_PB_BROKER_ROOT_ID 0

#define BF_PB_BROKER_ERROR (bf_pb_broker_error_quark ())

/**
 * BfPbBrokerError:
 * @BF_PB_BROKER_ERROR_PROTOCOL: an expression outside the subset or malformed
 * @BF_PB_BROKER_ERROR_LIMIT: a table or a count over its bound
 * @BF_PB_BROKER_ERROR_CLOSED: the broker failed before
 */
typedef enum
{
  BF_PB_BROKER_ERROR_PROTOCOL,
  BF_PB_BROKER_ERROR_LIMIT,
  BF_PB_BROKER_ERROR_CLOSED,
} BfPbBrokerError;

GQuark bf_pb_broker_error_quark (void);

typedef struct _BfPbBroker BfPbBroker;

/**
 * BfPbBrokerHandler:
 * @send: bytes to write to the peer, in order
 * @ready: the dialect and the version were exchanged
 * @message: the peer calls @method on our object @object_id (of @kind,
 *   with @object_data as given to bf_pb_broker_export(); @kind 0 and
 *   @object_id %BF_PB_BROKER_ROOT_ID for the root); @args is a TUPLE, @kw a
 *   DICT; answer with bf_pb_broker_answer() or bf_pb_broker_error() when
 *   @request_id is not 0, now or later. May call bf_pb_broker_abort().
 * @answer: the peer answered our call: @result, or @failure (a FAILURE or
 *   whatever the peer sent as the error); @tag as given to
 *   bf_pb_broker_call() (never called for a forgotten call)
 * @released: the peer dropped its last reference to one of our objects,
 *   which has left the table
 */
typedef struct
{
  void (*send)     (gpointer      user_data,
                    const guint8 *data,
                    gsize         len);
  void (*ready)    (gpointer      user_data);
  void (*message)  (gpointer      user_data,
                    gint64        request_id,
                    guint         kind,
                    gpointer      object_data,
                    gint64        object_id,
                    const gchar  *method,
                    BfJellyValue *args,
                    BfJellyValue *kw);
  void (*answer)   (gpointer      user_data,
                    gpointer      tag,
                    BfJellyValue *result,
                    BfJellyValue *failure);
  void (*released) (gpointer      user_data,
                    guint         kind,
                    gpointer      object_data,
                    gint64        object_id);
} BfPbBrokerHandler;

BfPbBroker   *bf_pb_broker_new            (const BfPbBrokerHandler *handler,
                                           gpointer                 user_data);
void          bf_pb_broker_free           (BfPbBroker              *broker);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfPbBroker, bf_pb_broker_free)

void          bf_pb_broker_start          (BfPbBroker              *broker);
gboolean      bf_pb_broker_feed           (BfPbBroker              *broker,
                                           const guint8            *data,
                                           gsize                    len,
                                           GError                 **error);
void          bf_pb_broker_abort          (BfPbBroker              *broker,
                                           const gchar             *reason);

gint64        bf_pb_broker_export         (BfPbBroker              *broker,
                                           guint                    kind,
                                           gpointer                 object_data);
BfJellyValue *bf_pb_broker_reference      (BfPbBroker              *broker,
                                           gint64                   object_id);
gboolean      bf_pb_broker_unexport       (BfPbBroker              *broker,
                                           gint64                   object_id);

gboolean      bf_pb_broker_call           (BfPbBroker              *broker,
                                           gint64                   remote_id,
                                           const gchar             *method,
                                           BfJellyValue            *args,
                                           BfJellyValue            *kw,
                                           gpointer                 tag,
                                           gint64                  *request_id,
                                           GError                 **error);
void          bf_pb_broker_forget_call    (BfPbBroker              *broker,
                                           gint64                   request_id);
void          bf_pb_broker_answer         (BfPbBroker              *broker,
                                           gint64                   request_id,
                                           BfJellyValue            *result);
void          bf_pb_broker_error          (BfPbBroker              *broker,
                                           gint64                   request_id,
                                           const gchar             *type,
                                           const gchar             *text);
void          bf_pb_broker_release_remote (BfPbBroker              *broker,
                                           gint64                   remote_id,
                                           guint                    keep);

BfJellyValue *bf_pb_make_failure          (const gchar             *type,
                                           const gchar             *text);
gchar        *bf_pb_failure_text          (const BfJellyValue      *failure,
                                           gsize                    max_bytes);

G_END_DECLS
