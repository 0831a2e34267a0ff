/* bf-pb-broker.c: Perspective Broker messages over banana + jelly, server side
 *
 * See bf-pb-broker.h for the wire and the bounds. Twisted's Broker
 * (twisted/spread/pb.py) was the reference: same expressions and ids, but
 * only what buildbot-worker sends is accepted and every table is bounded.
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "bf-pb-broker.h"

#include <string.h>

G_DEFINE_QUARK (bf-pb-broker-error-quark, bf_pb_broker_error)

typedef enum
{
  STATE_DIALECT,     /* offer sent, waiting for the peer's choice */
  STATE_VERSION,     /* our version sent, waiting for the peer's */
  STATE_READY,
  STATE_FAILED,
} State;

/* The three tables are arrays sorted by id, searched by bisection: an
 * attached, idle worker's broker holds one object of ours (the
 * perspective), one of the peer's (its mind) and no call, and three hash
 * tables with a key allocated per entry were a third of a kilobyte of
 * every PB worker (issue 20).  Our ids grow, so ours are appended; the
 * peer's are Twisted's, which grow too.  Bounded by the BF_PB_BROKER_MAX_
 * limits; empty tables hold no memory. */
typedef struct
{
  gint64 id;         /* first: see Table */
  guint kind;
  guint refs;        /* references the peer holds */
  gpointer data;
} Local;

typedef struct
{
  gint64 id;
  guint refs;        /* references we hold */
} Remote;

typedef struct
{
  gint64 id;
  gpointer tag;      /* NULL once forgotten */
} Outstanding;

/* Entries of one type, each starting with its gint64 id, in id order. */
typedef struct
{
  guint8 *items;
  guint len;
  guint alloc;
} Table;

struct _BfPbBroker
{
  const BfPbBrokerHandler *handler;
  gpointer user_data;
  State state;
  BfBananaDecoder *decoder;
  gchar *failure;               /* why the broker failed */

  Table local;                  /* Local */
  gint64 next_local_id;
  Table remote;                 /* Remote */
  Table outstanding;            /* Outstanding */
  gint64 next_request_id;
};

#define TABLE_ITEM(t, size, i) ((gpointer) ((t)->items + (gsize) (i) * (size)))

/* The entry with @id, or NULL and in *@index where it would go. */
static gpointer
table_find (const Table *t,
            gsize        size,
            gint64       id,
            guint       *index)
{
  guint lo = 0, hi = t->len;

  /* the common cases: the newest, or the only one */
  if (hi > 0 && *(const gint64 *) TABLE_ITEM (t, size, hi - 1) < id)
    lo = hi;
  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;
      gint64 mid_id = *(const gint64 *) TABLE_ITEM (t, size, mid);

      if (mid_id == id)
        {
          if (index)
            *index = mid;
          return TABLE_ITEM (t, size, mid);
        }
      if (mid_id < id)
        lo = mid + 1;
      else
        hi = mid;
    }
  if (index)
    *index = lo;
  return NULL;
}

/* A zeroed entry with @id at @index (from table_find()). */
static gpointer
table_insert (Table  *t,
              gsize   size,
              guint   index,
              gint64  id)
{
  gpointer item;

  if (t->len == t->alloc)
    {
      t->alloc = t->alloc ? 2 * t->alloc : 1;
      t->items = g_realloc_n (t->items, t->alloc, size);
    }
  memmove (TABLE_ITEM (t, size, index + 1), TABLE_ITEM (t, size, index), (t->len - index) * size);
  t->len++;
  item = TABLE_ITEM (t, size, index);
  memset (item, 0, size);
  *(gint64 *) item = id;
  return item;
}

/* Removes the entry at @index; what a table no longer needs goes back. */
static void
table_remove (Table *t,
              gsize  size,
              guint  index)
{
  t->len--;
  memmove (TABLE_ITEM (t, size, index), TABLE_ITEM (t, size, index + 1), (t->len - index) * size);
  if (t->len == 0)
    {
      g_clear_pointer (&t->items, g_free);
      t->alloc = 0;
    }
  else if (t->len <= t->alloc / 4)
    {
      t->alloc /= 2;
      t->items = g_realloc_n (t->items, t->alloc, size);
    }
}

static void
table_clear (Table *t)
{
  g_clear_pointer (&t->items, g_free);
  t->len = t->alloc = 0;
}

static Local *
local_find (BfPbBroker *broker,
            gint64      id,
            guint      *index)
{
  return table_find (&broker->local, sizeof (Local), id, index);
}

static Remote *
remote_find (BfPbBroker *broker,
             gint64      id,
             guint      *index)
{
  return table_find (&broker->remote, sizeof (Remote), id, index);
}

static Outstanding *
outstanding_find (BfPbBroker *broker,
                  gint64      id,
                  guint      *index)
{
  return table_find (&broker->outstanding, sizeof (Outstanding), id, index);
}

BfPbBroker *
bf_pb_broker_new (const BfPbBrokerHandler *handler,
                  gpointer                 user_data)
{
  BfPbBroker *broker = g_new0 (BfPbBroker, 1);

  broker->handler = handler;
  broker->user_data = user_data;
  broker->state = STATE_DIALECT;
  broker->decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
  broker->next_local_id = 1;
  broker->next_request_id = 1;
  return broker;
}

void
bf_pb_broker_free (BfPbBroker *broker)
{
  if (broker == NULL)
    return;
  g_clear_pointer (&broker->decoder, bf_banana_decoder_free);
  table_clear (&broker->local);
  table_clear (&broker->remote);
  table_clear (&broker->outstanding);
  g_free (broker->failure);
  g_free (broker);
}

static void
send_bytes (BfPbBroker *broker,
            GByteArray *out)
{
  if (broker->state != STATE_FAILED && out->len > 0)
    broker->handler->send (broker->user_data, out->data, out->len);
}

/**
 * bf_pb_broker_start:
 *
 * Sends the dialect offer: the master speaks first in PB.
 */
void
bf_pb_broker_start (BfPbBroker *broker)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();

  bf_banana_write_offer (out);
  send_bytes (broker, out);
}

/**
 * bf_pb_broker_abort:
 *
 * Fails the broker: nothing more is decoded or sent.
 */
void
bf_pb_broker_abort (BfPbBroker  *broker,
                    const gchar *reason)
{
  if (broker->state == STATE_FAILED)
    return;
  broker->state = STATE_FAILED;
  broker->failure = g_strdup (reason);
}

static gboolean
fail (BfPbBroker  *broker,
      GError     **error,
      gint         code,
      const gchar *format,
      ...) G_GNUC_PRINTF (4, 5);

static gboolean
fail (BfPbBroker  *broker,
      GError     **error,
      gint         code,
      const gchar *format,
      ...)
{
  g_autofree gchar *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  bf_pb_broker_abort (broker, what);
  g_set_error_literal (error, BF_PB_BROKER_ERROR, code, what);
  return FALSE;
}

/* A peer's string, quoted safely and briefly in an error. */
static gchar *
shown (const BfBananaValue *v)
{
  g_autofree gchar *printed = bf_banana_value_print (v);

  if (strlen (printed) > 64)
    {
      printed[61] = '\0';
      return g_strconcat (printed, "...", NULL);
    }
  return g_steal_pointer (&printed);
}

static gboolean
is_string (const BfBananaValue *v)
{
  return v->type == BF_BANANA_STRING;
}

static gboolean
is_int (const BfBananaValue *v)
{
  return v->type == BF_BANANA_INT;
}

/* Object references inside a decoded value ------------------------------------ */

typedef struct
{
  BfPbBroker *broker;
  GHashTable *seen;      /* containers and REMOTE nodes already visited */
  GArray *remote_ids;    /* gint64: distinct REMOTE nodes, in order */
  gint64 bad_local;
  gboolean has_bad_local;
} RefWalk;

static void
walk_refs (RefWalk            *w,
           const BfJellyValue *v)
{
  switch (v->type)
    {
    case BF_JELLY_REMOTE:
      if (g_hash_table_add (w->seen, (gpointer) v))
        g_array_append_val (w->remote_ids, v->integer);
      break;
    case BF_JELLY_LOCAL:
      if (local_find (w->broker, v->integer, NULL) == NULL && !w->has_bad_local)
        {
          w->has_bad_local = TRUE;
          w->bad_local = v->integer;
        }
      break;
    case BF_JELLY_LIST:
    case BF_JELLY_TUPLE:
    case BF_JELLY_DICT:
      if (!g_hash_table_add (w->seen, (gpointer) v))
        break;
      for (guint i = 0; i < v->seq.len; i++)
        walk_refs (w, v->seq.items[i]);
      break;
    case BF_JELLY_FAILURE:
      walk_refs (w, v->state);
      break;
    default:
      break;
    }
}

/* Counts the references to the peer's objects that @v hands us (each
 * distinct ["remote", id] node is one reference the peer counted), and
 * checks that every ["local", id] names an object of ours. */
static gboolean
take_refs (BfPbBroker         *broker,
           const BfJellyValue *v,
           GError            **error)
{
  RefWalk w = { broker, NULL, NULL, 0, FALSE };
  gboolean ok = TRUE;

  /* Cheap exit for plain scalars. */
  if (v->type != BF_JELLY_LIST && v->type != BF_JELLY_TUPLE && v->type != BF_JELLY_DICT &&
      v->type != BF_JELLY_FAILURE && v->type != BF_JELLY_REMOTE && v->type != BF_JELLY_LOCAL)
    return TRUE;

  w.seen = g_hash_table_new (NULL, NULL);
  w.remote_ids = g_array_new (FALSE, FALSE, sizeof (gint64));
  walk_refs (&w, v);
  if (w.has_bad_local)
    ok = fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
               "pb: the peer sent back object %" G_GINT64_FORMAT ", which is not ours", w.bad_local);
  for (guint i = 0; ok && i < w.remote_ids->len; i++)
    {
      gint64 id = g_array_index (w.remote_ids, gint64, i);
      guint index;
      Remote *r = remote_find (broker, id, &index);

      if (r != NULL)
        {
          if (r->refs >= BF_PB_BROKER_MAX_REMOTE_REFS)
            ok = fail (broker, error, BF_PB_BROKER_ERROR_LIMIT,
                       "pb: more than %d references to one object of the peer", BF_PB_BROKER_MAX_REMOTE_REFS);
          else
            r->refs++;
        }
      else if (broker->remote.len >= BF_PB_BROKER_MAX_REMOTE)
        ok = fail (broker, error, BF_PB_BROKER_ERROR_LIMIT,
                   "pb: the peer handed over more than %d objects", BF_PB_BROKER_MAX_REMOTE);
      else
        ((Remote *) table_insert (&broker->remote, sizeof (Remote), index, id))->refs = 1;
    }
  g_hash_table_unref (w.seen);
  g_array_unref (w.remote_ids);
  return ok;
}

static BfJellyValue *
unjelly (BfPbBroker          *broker,
         const BfBananaValue *sexp,
         const gchar         *what,
         GError             **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autoptr(BfJellyValue) value = bf_jelly_decode (sexp, &local_error);

  if (value == NULL)
    {
      fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: %s: %s", what, local_error->message);
      return NULL;
    }
  if (!take_refs (broker, value, error))
    return NULL;
  return g_steal_pointer (&value);
}

/* Expressions ----------------------------------------------------------------- */

static gboolean
handle_message (BfPbBroker          *broker,
                const BfBananaValue *sexp,
                GError             **error)
{
  const BfBananaValue *req, *obj, *name, *answer;
  g_autoptr(BfJellyValue) args = NULL;
  g_autoptr(BfJellyValue) kw = NULL;
  g_autofree gchar *method = NULL;
  guint kind = 0;
  gpointer data = NULL;
  gint64 object_id = BF_PB_BROKER_ROOT_ID;
  gint64 request_id;

  if (sexp->list.len != 7)
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: a message has 7 elements, not %u", sexp->list.len);
  req = sexp->list.items[1];
  obj = sexp->list.items[2];
  name = sexp->list.items[3];
  answer = sexp->list.items[4];
  if (!is_int (req) || req->integer < 0 || !is_int (answer) ||
      (answer->integer != 0 && answer->integer != 1) || !is_string (name))
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: malformed message (request id, method name or answer flag)");
  if (name->string.len == 0 || name->string.len > BF_PB_BROKER_MAX_NAME ||
      strlen (name->string.data) != name->string.len ||
      !g_utf8_validate (name->string.data, name->string.len, NULL))
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: a method name must be 1 to %d bytes of UTF-8", BF_PB_BROKER_MAX_NAME);
  method = g_strndup (name->string.data, name->string.len);
  request_id = answer->integer ? req->integer : 0;
  if (answer->integer && request_id == 0)
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: request id 0 is not used");

  if (is_string (obj) && bf_banana_value_is_string (obj, "root"))
    ;
  else if (is_int (obj))
    {
      Local *l = local_find (broker, obj->integer, NULL);

      if (l == NULL)
        return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                     "pb: the peer called %s on object %" G_GINT64_FORMAT ", which it was never given",
                     method, obj->integer);
      kind = l->kind;
      data = l->data;
      object_id = obj->integer;
    }
  else
    {
      g_autofree gchar *o = shown (obj);
      return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: no object %s", o);
    }

  args = unjelly (broker, sexp->list.items[5], "arguments", error);
  if (args == NULL)
    return FALSE;
  kw = unjelly (broker, sexp->list.items[6], "keyword arguments", error);
  if (kw == NULL)
    return FALSE;
  if (args->type != BF_JELLY_TUPLE && args->type != BF_JELLY_LIST)
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: the arguments of a message are not a tuple");
  if (kw->type != BF_JELLY_DICT)
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: the keyword arguments of a message are not a dictionary");

  broker->handler->message (broker->user_data, request_id, kind, data, object_id, method, args, kw);
  return broker->state != STATE_FAILED;
}

static gboolean
handle_answer (BfPbBroker          *broker,
               const BfBananaValue *sexp,
               gboolean             is_error,
               GError             **error)
{
  const BfBananaValue *req;
  g_autoptr(BfJellyValue) value = NULL;
  Outstanding *o;
  gpointer tag;
  guint index;

  if (sexp->list.len != 3 || !is_int (sexp->list.items[1]))
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: malformed %s",
                 is_error ? "error" : "answer");
  req = sexp->list.items[1];
  if (outstanding_find (broker, req->integer, NULL) == NULL)
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: %s to call %" G_GINT64_FORMAT ", which was never made",
                 is_error ? "error" : "answer", req->integer);
  value = unjelly (broker, sexp->list.items[2], is_error ? "error" : "answer", error);
  if (value == NULL)
    return FALSE;
  /* again, for its index: unjelly() changed the peer's table, not this one,
   * but an index is never kept across a call */
  o = outstanding_find (broker, req->integer, &index);
  tag = o->tag;
  table_remove (&broker->outstanding, sizeof (Outstanding), index);
  if (tag != NULL)
    broker->handler->answer (broker->user_data, tag, is_error ? NULL : value, is_error ? value : NULL);
  return broker->state != STATE_FAILED;
}

static gboolean
handle_decref (BfPbBroker          *broker,
               const BfBananaValue *sexp,
               GError             **error)
{
  const BfBananaValue *obj;
  Local *l;
  guint index;

  if (sexp->list.len != 2 || !is_int (sexp->list.items[1]))
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: malformed decref");
  obj = sexp->list.items[1];
  l = local_find (broker, obj->integer, &index);
  if (l == NULL || l->refs == 0)
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: decref of object %" G_GINT64_FORMAT ", which the peer does not hold", obj->integer);
  if (--l->refs == 0)
    {
      Local gone = *l;
      gint64 id = obj->integer;

      table_remove (&broker->local, sizeof (Local), index);
      if (broker->handler->released)
        broker->handler->released (broker->user_data, gone.kind, gone.data, id);
    }
  return broker->state != STATE_FAILED;
}

static gboolean
handle_expression (BfPbBroker          *broker,
                   const BfBananaValue *sexp,
                   GError             **error)
{
  const BfBananaValue *head;

  if (sexp->type != BF_BANANA_LIST || sexp->list.len == 0 || !is_string (sexp->list.items[0]))
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: every expression must be a list starting with its name");
  head = sexp->list.items[0];

  if (broker->state == STATE_VERSION)
    {
      g_autoptr(GError) local_error = NULL;

      if (!bf_banana_check_version (sexp, &local_error))
        return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "%s", local_error->message);
      broker->state = STATE_READY;
      if (broker->handler->ready)
        broker->handler->ready (broker->user_data);
      return broker->state != STATE_FAILED;
    }

  if (bf_banana_value_is_string (head, "message"))
    return handle_message (broker, sexp, error);
  if (bf_banana_value_is_string (head, "answer"))
    return handle_answer (broker, sexp, FALSE, error);
  if (bf_banana_value_is_string (head, "error"))
    return handle_answer (broker, sexp, TRUE, error);
  if (bf_banana_value_is_string (head, "decref"))
    return handle_decref (broker, sexp, error);
  if (bf_banana_value_is_string (head, "didNotUnderstand"))
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "pb: the peer did not understand what we sent");
  {
    g_autofree gchar *h = shown (head);
    return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                 "pb: %s is not part of the protocol buildfleetd speaks", h);
  }
}

/**
 * bf_pb_broker_feed:
 *
 * Decodes @data and handles every complete expression (the handler's
 * callbacks run from here).
 *
 * Returns: %FALSE with @error set when the peer broke a rule: drop it
 */
gboolean
bf_pb_broker_feed (BfPbBroker    *broker,
                   const guint8  *data,
                   gsize          len,
                   GError       **error)
{
  while (TRUE)
    {
      g_autoptr(BfBananaValue) sexp = NULL;
      g_autoptr(GError) local_error = NULL;
      gsize consumed = 0;

      if (broker->state == STATE_FAILED)
        {
          g_set_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_CLOSED, "%s",
                       broker->failure ? broker->failure : "closed");
          return FALSE;
        }
      if (!bf_banana_decoder_feed (broker->decoder, data, len, &consumed, &sexp, &local_error))
        return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL, "%s", local_error->message);
      data += consumed;
      len -= consumed;

      if (broker->state == STATE_DIALECT)
        {
          BfBananaDialect dialect = bf_banana_decoder_get_dialect (broker->decoder);

          if (dialect == BF_BANANA_DIALECT_NONE)
            return fail (broker, error, BF_PB_BROKER_ERROR_PROTOCOL,
                         "pb: the peer chose the banana dialect \"none\"; buildfleetd needs \"pb\"");
          if (dialect == BF_BANANA_DIALECT_PB)
            {
              g_autoptr(GByteArray) out = g_byte_array_new ();

              broker->state = STATE_VERSION;
              bf_banana_write_version (out, BF_BANANA_DIALECT_PB);
              send_bytes (broker, out);
            }
        }
      if (sexp != NULL)
        {
          if (!handle_expression (broker, sexp, error))
            {
              if (error != NULL && *error == NULL)
                g_set_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_CLOSED, "%s",
                             broker->failure ? broker->failure : "closed");
              return FALSE;
            }
          continue;
        }
      if (len == 0)
        return TRUE;
    }
}

/* Our objects ------------------------------------------------------------------- */

/**
 * bf_pb_broker_export:
 * @kind: what the object is, for the handler (not 0, which is the root)
 *
 * Returns: a new object id, with no reference held by the peer yet; 0 when
 *   %BF_PB_BROKER_MAX_LOCAL objects are in the table
 */
gint64
bf_pb_broker_export (BfPbBroker *broker,
                     guint       kind,
                     gpointer    object_data)
{
  Local *l;
  gint64 id;

  g_return_val_if_fail (kind != 0, 0);
  if (broker->local.len >= BF_PB_BROKER_MAX_LOCAL)
    return 0;
  id = broker->next_local_id++;
  /* the biggest id yet: the end of the table */
  l = table_insert (&broker->local, sizeof (Local), broker->local.len, id);
  l->kind = kind;
  l->data = object_data;
  return id;
}

/**
 * bf_pb_broker_reference:
 *
 * Returns: (transfer full): `["remote", id]` to send the object; the peer
 *   now holds one more reference
 */
BfJellyValue *
bf_pb_broker_reference (BfPbBroker *broker,
                        gint64      object_id)
{
  Local *l = local_find (broker, object_id, NULL);

  g_return_val_if_fail (l != NULL, NULL);
  l->refs++;
  return bf_jelly_remote (object_id);
}

/**
 * bf_pb_broker_unexport:
 *
 * Removes an object the peer does not hold (never sent, or released).
 *
 * Returns: %FALSE if the peer holds it (it stays; calls on it still come)
 */
gboolean
bf_pb_broker_unexport (BfPbBroker *broker,
                       gint64      object_id)
{
  guint index;
  Local *l = local_find (broker, object_id, &index);

  if (l == NULL)
    return TRUE;
  if (l->refs > 0)
    return FALSE;
  table_remove (&broker->local, sizeof (Local), index);
  return TRUE;
}

/* Our calls --------------------------------------------------------------------- */

static gboolean
write_message (BfPbBroker   *broker,
               GByteArray   *out,
               gint64        request_id,
               gint64        remote_id,
               const gchar  *method,
               BfJellyValue *args,
               BfJellyValue *kw,
               GError      **error)
{
  bf_banana_write_list_header (out, 7);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "message", 7);
  bf_banana_write_int (out, request_id);
  bf_banana_write_int (out, remote_id);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, method, strlen (method));
  bf_banana_write_int (out, 1);
  if (!bf_jelly_encode (out, BF_BANANA_DIALECT_PB, args, error))
    return FALSE;
  return bf_jelly_encode (out, BF_BANANA_DIALECT_PB, kw, error);
}

/**
 * bf_pb_broker_call:
 * @remote_id: an object the peer gave us
 * @args: (transfer none): a TUPLE
 * @kw: (transfer none) (nullable): a DICT, or %NULL for none
 * @tag: (not nullable): handed back to #BfPbBrokerHandler.answer
 * @request_id: (out) (optional): to forget the call later
 *
 * Returns: %FALSE when the broker failed, @remote_id is not an object the
 *   peer gave us, %BF_PB_BROKER_MAX_OUTSTANDING calls are unanswered, or
 *   the arguments are over the limits of banana
 */
gboolean
bf_pb_broker_call (BfPbBroker   *broker,
                   gint64        remote_id,
                   const gchar  *method,
                   BfJellyValue *args,
                   BfJellyValue *kw,
                   gpointer      tag,
                   gint64       *request_id,
                   GError      **error)
{
  g_autoptr(GByteArray) out = NULL;
  g_autoptr(BfJellyValue) no_kw = NULL;
  gint64 id;

  g_return_val_if_fail (tag != NULL, FALSE);

  if (broker->state != STATE_READY)
    {
      g_set_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_CLOSED, "the PB connection is %s",
                   broker->state == STATE_FAILED ? "closed" : "not ready");
      return FALSE;
    }
  if (remote_find (broker, remote_id, NULL) == NULL)
    {
      g_set_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_PROTOCOL,
                   "no object %" G_GINT64_FORMAT " of the peer", remote_id);
      return FALSE;
    }
  if (broker->outstanding.len >= BF_PB_BROKER_MAX_OUTSTANDING)
    {
      g_set_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_LIMIT,
                   "%u calls left unanswered; the worker does not keep up",
                   broker->outstanding.len);
      return FALSE;
    }
  if (kw == NULL)
    kw = no_kw = bf_jelly_dict ();
  id = broker->next_request_id++;
  out = g_byte_array_new ();
  if (!write_message (broker, out, id, remote_id, method, args, kw, error))
    return FALSE;
  /* the biggest request id yet: the end of the table */
  ((Outstanding *) table_insert (&broker->outstanding, sizeof (Outstanding), broker->outstanding.len, id))->tag = tag;
  if (request_id)
    *request_id = id;
  send_bytes (broker, out);
  return TRUE;
}

/**
 * bf_pb_broker_forget_call:
 *
 * The caller gave up on @request_id (a timeout): its answer, when it comes,
 * is accepted and dropped. It still counts as outstanding until then.
 */
void
bf_pb_broker_forget_call (BfPbBroker *broker,
                          gint64      request_id)
{
  Outstanding *o = outstanding_find (broker, request_id, NULL);

  if (o != NULL)
    o->tag = NULL;
}

/* Our answers --------------------------------------------------------------------- */

void
bf_pb_broker_answer (BfPbBroker   *broker,
                     gint64        request_id,
                     BfJellyValue *result)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(BfJellyValue) none = NULL;
  g_autoptr(GError) error = NULL;

  if (request_id == 0 || broker->state != STATE_READY)
    return;
  if (result == NULL)
    result = none = bf_jelly_none ();
  bf_banana_write_list_header (out, 3);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "answer", 6);
  bf_banana_write_int (out, request_id);
  if (!bf_jelly_encode (out, BF_BANANA_DIALECT_PB, result, &error))
    {
      g_critical ("pb: cannot encode an answer: %s", error->message);
      return;
    }
  send_bytes (broker, out);
}

/**
 * bf_pb_make_failure:
 * @type: the exception's qualified Python name, e.g.
 *   "twisted.cred.error.UnauthorizedLogin" (what the peer's
 *   Failure.check() compares)
 *
 * Returns: a CopyableFailure Twisted unjellies into a CopiedFailure
 */
BfJellyValue *
bf_pb_make_failure (const gchar *type,
                    const gchar *text)
{
  BfJellyValue *state = bf_jelly_dict ();
  BfJellyValue *parents = bf_jelly_list ();
  const gchar *bases[] = { type, "builtins.Exception", "builtins.BaseException", "builtins.object" };

  for (guint i = 0; i < G_N_ELEMENTS (bases); i++)
    bf_jelly_append (parents, bf_jelly_unicode (bases[i], -1));
  bf_jelly_dict_set (state, bf_jelly_unicode ("type", -1), bf_jelly_bytes (type, strlen (type)));
  bf_jelly_dict_set (state, bf_jelly_unicode ("value", -1), bf_jelly_unicode (text, -1));
  bf_jelly_dict_set (state, bf_jelly_unicode ("traceback", -1), bf_jelly_unicode ("Traceback unavailable\n", -1));
  bf_jelly_dict_set (state, bf_jelly_unicode ("parents", -1), parents);
  bf_jelly_dict_set (state, bf_jelly_unicode ("tb", -1), bf_jelly_none ());
  bf_jelly_dict_set (state, bf_jelly_unicode ("frames", -1), bf_jelly_list ());
  bf_jelly_dict_set (state, bf_jelly_unicode ("stack", -1), bf_jelly_list ());
  return bf_jelly_failure (state);
}

/**
 * bf_pb_broker_error:
 * @type: see bf_pb_make_failure()
 * @text: valid UTF-8
 *
 * Answers @request_id with a failure.
 */
void
bf_pb_broker_error (BfPbBroker  *broker,
                    gint64       request_id,
                    const gchar *type,
                    const gchar *text)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(BfJellyValue) failure = NULL;
  g_autoptr(GError) error = NULL;

  if (request_id == 0 || broker->state != STATE_READY)
    return;
  failure = bf_pb_make_failure (type, text);
  bf_banana_write_list_header (out, 3);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "error", 5);
  bf_banana_write_int (out, request_id);
  if (!bf_jelly_encode (out, BF_BANANA_DIALECT_PB, failure, &error))
    {
      g_critical ("pb: cannot encode an error: %s", error->message);
      return;
    }
  send_bytes (broker, out);
}

/**
 * bf_pb_broker_release_remote:
 * @keep: how many references to keep (0: forget the object)
 *
 * Sends a decref for every reference to the peer's @remote_id we hold
 * beyond @keep.
 */
void
bf_pb_broker_release_remote (BfPbBroker *broker,
                             gint64      remote_id,
                             guint       keep)
{
  guint index;
  Remote *r = remote_find (broker, remote_id, &index);
  guint held;
  g_autoptr(GByteArray) out = NULL;

  if (r == NULL)
    return;
  held = r->refs;
  if (held <= keep)
    return;
  out = g_byte_array_new ();
  for (guint i = keep; i < held; i++)
    {
      bf_banana_write_list_header (out, 2);
      bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "decref", 6);
      bf_banana_write_int (out, remote_id);
    }
  if (keep == 0)
    table_remove (&broker->remote, sizeof (Remote), index);
  else
    r->refs = keep;
  if (broker->state == STATE_READY)
    send_bytes (broker, out);
}

/* Failures ------------------------------------------------------------------------ */

static const gchar *
state_text (const BfJellyValue *state,
            const gchar        *key,
            gsize              *len)
{
  const BfJellyValue *v = bf_jelly_dict_lookup (state, key);

  if (v == NULL || (v->type != BF_JELLY_UNICODE && v->type != BF_JELLY_BYTES))
    return NULL;
  *len = v->string.len;
  return v->string.data;
}

/**
 * bf_pb_failure_text:
 * @failure: what the peer sent as an error (a FAILURE, a string, anything)
 * @max_bytes: the longest result, in bytes
 *
 * Returns: "type: value" of a CopyableFailure, or the printed value;
 *   valid UTF-8 without NULs, at most @max_bytes
 */
gchar *
bf_pb_failure_text (const BfJellyValue *failure,
                    gsize               max_bytes)
{
  GString *s = g_string_new (NULL);
  g_autofree gchar *valid = NULL;
  gsize len;

  if (failure->type == BF_JELLY_FAILURE)
    {
      const gchar *type = state_text (failure->state, "type", &len);

      if (type)
        g_string_append_len (s, type, MIN (len, max_bytes));
      const gchar *value = state_text (failure->state, "value", &len);
      if (value)
        {
          if (s->len > 0)
            g_string_append (s, ": ");
          g_string_append_len (s, value, MIN (len, max_bytes));
        }
    }
  else if (failure->type == BF_JELLY_UNICODE || failure->type == BF_JELLY_BYTES)
    g_string_append_len (s, failure->string.data, MIN (failure->string.len, max_bytes));
  else
    {
      g_autofree gchar *printed = bf_jelly_value_print (failure);
      g_string_append_len (s, printed, MIN (strlen (printed), max_bytes));
    }
  if (s->len == 0)
    g_string_append (s, "failed");

  for (gsize i = 0; i < s->len; i++)
    if (s->str[i] == '\0')
      s->str[i] = '?';
  valid = g_utf8_make_valid (s->str, s->len);
  g_string_free (s, TRUE);
  len = strlen (valid);
  if (len > max_bytes)
    {
      const gchar *end = valid + max_bytes;
      /* back to a character boundary */
      while (end > valid && (((guchar) *end) & 0xc0) == 0x80)
        end--;
      valid[end - valid] = '\0';
    }
  return g_steal_pointer (&valid);
}
