/* test-pb-broker.c: the broker's tables of objects and calls (issue 20)
 *
 * The broker keeps our objects, the peer's objects and our calls in arrays
 * sorted by id (not hash tables).  These tests drive one broker through its
 * wire, with ids arriving and leaving in every order, and check that each
 * lookup still finds the right entry: messages reach the object they name
 * with its data, decrefs release exactly at zero, answers reach their
 * call's tag, forgotten calls stay answerable, the peer's references are
 * counted and given back, and the bounds still hold.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <glib.h>

#include "bf-pb-broker.h"

typedef struct
{
  BfPbBroker *broker;
  GByteArray *sent;           /* everything the broker wrote */
  gboolean ready;
  /* the last message */
  guint messages;
  gint64 msg_request_id;
  guint msg_kind;
  gpointer msg_data;
  gint64 msg_object_id;
  /* answers and releases, in order */
  GPtrArray *answer_tags;
  GArray *released_ids;
  GPtrArray *released_data;
} Peer;

static void
send_cb (gpointer user_data, const guint8 *data, gsize len)
{
  Peer *p = user_data;

  g_byte_array_append (p->sent, data, len);
}

static void
ready_cb (gpointer user_data)
{
  ((Peer *) user_data)->ready = TRUE;
}

static void
message_cb (gpointer user_data, gint64 request_id, guint kind, gpointer object_data, gint64 object_id,
            const gchar *method, BfJellyValue *args, BfJellyValue *kw)
{
  Peer *p = user_data;

  p->messages++;
  p->msg_request_id = request_id;
  p->msg_kind = kind;
  p->msg_data = object_data;
  p->msg_object_id = object_id;
}

static void
answer_cb (gpointer user_data, gpointer tag, BfJellyValue *result, BfJellyValue *failure)
{
  g_ptr_array_add (((Peer *) user_data)->answer_tags, tag);
}

static void
released_cb (gpointer user_data, guint kind, gpointer object_data, gint64 object_id)
{
  Peer *p = user_data;

  g_array_append_val (p->released_ids, object_id);
  g_ptr_array_add (p->released_data, object_data);
}

static const BfPbBrokerHandler handler = {
  .send = send_cb,
  .ready = ready_cb,
  .message = message_cb,
  .answer = answer_cb,
  .released = released_cb,
};

static void
peer_init (Peer *p)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;

  memset (p, 0, sizeof *p);
  p->sent = g_byte_array_new ();
  p->answer_tags = g_ptr_array_new ();
  p->released_ids = g_array_new (FALSE, FALSE, sizeof (gint64));
  p->released_data = g_ptr_array_new ();
  p->broker = bf_pb_broker_new (&handler, p);
  bf_pb_broker_start (p->broker);
  /* the dialect, then the version */
  bf_banana_write_string (out, BF_BANANA_DIALECT_UNSET, "pb", 2);
  bf_banana_write_version (out, BF_BANANA_DIALECT_PB);
  g_assert_true (bf_pb_broker_feed (p->broker, out->data, out->len, &error));
  g_assert_no_error (error);
  g_assert_true (p->ready);
}

static void
peer_clear (Peer *p)
{
  bf_pb_broker_free (p->broker);
  g_byte_array_unref (p->sent);
  g_ptr_array_unref (p->answer_tags);
  g_array_unref (p->released_ids);
  g_ptr_array_unref (p->released_data);
}

/* Feeds one expression; returns what bf_pb_broker_feed() did. */
static gboolean
feed (Peer *p, GByteArray *out, GError **error)
{
  gboolean ok = bf_pb_broker_feed (p->broker, out->data, out->len, error);

  g_byte_array_set_size (out, 0);
  return ok;
}

/* ["message", req, obj, "m", 1, args, ["dictionary"]] */
static void
write_message (GByteArray *out, gint64 request_id, gint64 object_id, BfJellyValue *args)
{
  g_autoptr(BfJellyValue) kw = bf_jelly_dict ();
  g_autoptr(BfJellyValue) no_args = NULL;

  if (args == NULL)
    args = no_args = bf_jelly_tuple ();
  bf_banana_write_list_header (out, 7);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "message", 7);
  bf_banana_write_int (out, request_id);
  if (object_id == BF_PB_BROKER_ROOT_ID)
    bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "root", 4);
  else
    bf_banana_write_int (out, object_id);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "m", 1);
  bf_banana_write_int (out, 1);
  g_assert_true (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, args, NULL));
  g_assert_true (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, kw, NULL));
}

static void
write_pair (GByteArray *out, const char *head, gint64 id)
{
  bf_banana_write_list_header (out, 2);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, head, strlen (head));
  bf_banana_write_int (out, id);
}

static void
write_answer (GByteArray *out, gint64 request_id)
{
  g_autoptr(BfJellyValue) none = bf_jelly_none ();

  bf_banana_write_list_header (out, 3);
  bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "answer", 6);
  bf_banana_write_int (out, request_id);
  g_assert_true (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, none, NULL));
}

/* A shuffled copy of 0 .. n-1, the same on every run. */
static guint *
shuffled (guint n, guint32 seed)
{
  guint *order = g_new (guint, n);
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);

  for (guint i = 0; i < n; i++)
    order[i] = i;
  for (guint i = n; i > 1; i--)
    {
      guint j = g_rand_int_range (rand, 0, i);
      guint t = order[i - 1];

      order[i - 1] = order[j];
      order[j] = t;
    }
  return order;
}

#define N_OBJECTS 200

/* Our objects: exported, referenced (some twice), called and released in
 * shuffled orders; every call reaches its own object's data. */
static void
test_local_objects (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autofree guint *call_order = shuffled (N_OBJECTS, 1);
  g_autofree guint *decref_order = shuffled (N_OBJECTS, 2);
  gint64 ids[N_OBJECTS];
  guint data[N_OBJECTS];
  gint64 unsent;
  Peer p;

  peer_init (&p);
  for (guint i = 0; i < N_OBJECTS; i++)
    {
      data[i] = i;
      ids[i] = bf_pb_broker_export (p.broker, 1 + i % 3, &data[i]);
      g_assert_cmpint (ids[i], >, 0);
      bf_jelly_value_unref (bf_pb_broker_reference (p.broker, ids[i]));
      if (i % 2 == 0)
        bf_jelly_value_unref (bf_pb_broker_reference (p.broker, ids[i]));
    }
  /* never sent: it goes at once */
  unsent = bf_pb_broker_export (p.broker, 1, NULL);
  g_assert_true (bf_pb_broker_unexport (p.broker, unsent));
  /* one the peer holds stays */
  g_assert_false (bf_pb_broker_unexport (p.broker, ids[7]));

  for (guint k = 0; k < N_OBJECTS; k++)
    {
      guint i = call_order[k];
      g_autoptr(GError) error = NULL;

      write_message (out, 100 + k, ids[i], NULL);
      g_assert_true (feed (&p, out, &error));
      g_assert_no_error (error);
      g_assert_cmpint (p.msg_object_id, ==, ids[i]);
      g_assert_cmpuint (p.msg_kind, ==, 1 + i % 3);
      g_assert_true (p.msg_data == &data[i]);
      g_assert_cmpint (p.msg_request_id, ==, 100 + k);
    }

  /* decrefs in another order: an object goes at its last reference */
  for (guint k = 0; k < N_OBJECTS; k++)
    {
      guint i = decref_order[k];
      guint before = p.released_ids->len;
      g_autoptr(GError) error = NULL;

      write_pair (out, "decref", ids[i]);
      g_assert_true (feed (&p, out, &error));
      if (i % 2 == 0)
        {
          g_assert_cmpuint (p.released_ids->len, ==, before);
          write_pair (out, "decref", ids[i]);
          g_assert_true (feed (&p, out, &error));
        }
      g_assert_no_error (error);
      g_assert_cmpuint (p.released_ids->len, ==, before + 1);
      g_assert_cmpint (g_array_index (p.released_ids, gint64, before), ==, ids[i]);
      g_assert_true (g_ptr_array_index (p.released_data, before) == &data[i]);
    }

  /* all gone: a new one still works, a call to an old one is refused */
  {
    g_autoptr(GError) error = NULL;
    guint extra = 42;
    gint64 id = bf_pb_broker_export (p.broker, 2, &extra);

    g_assert_cmpint (id, >, ids[N_OBJECTS - 1]);
    bf_jelly_value_unref (bf_pb_broker_reference (p.broker, id));
    write_message (out, 1, id, NULL);
    g_assert_true (feed (&p, out, &error));
    g_assert_true (p.msg_data == &extra);
    write_message (out, 2, ids[N_OBJECTS / 2], NULL);
    g_assert_false (feed (&p, out, &error));
    g_assert_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_PROTOCOL);
    g_assert_nonnull (strstr (error->message, "never given"));
  }
  peer_clear (&p);
}

/* The bound on our objects holds, and frees up as they leave. */
static void
test_local_limit (void)
{
  gint64 ids[BF_PB_BROKER_MAX_LOCAL];
  Peer p;

  peer_init (&p);
  for (guint i = 0; i < BF_PB_BROKER_MAX_LOCAL; i++)
    {
      ids[i] = bf_pb_broker_export (p.broker, 1, NULL);
      g_assert_cmpint (ids[i], ==, i + 1);
    }
  g_assert_cmpint (bf_pb_broker_export (p.broker, 1, NULL), ==, 0);
  g_assert_true (bf_pb_broker_unexport (p.broker, ids[500]));
  g_assert_cmpint (bf_pb_broker_export (p.broker, 1, NULL), ==, BF_PB_BROKER_MAX_LOCAL + 1);
  for (guint i = 0; i < BF_PB_BROKER_MAX_LOCAL; i++)
    g_assert_true (bf_pb_broker_unexport (p.broker, ids[i]));
  g_assert_true (bf_pb_broker_unexport (p.broker, BF_PB_BROKER_MAX_LOCAL + 1));
  g_assert_cmpint (bf_pb_broker_export (p.broker, 1, NULL), ==, BF_PB_BROKER_MAX_LOCAL + 2);
  peer_clear (&p);
}

/* Counts the decrefs in what the broker sent since @from. */
static guint
decrefs_sent (Peer *p, gsize from, gint64 id)
{
  g_autoptr(BfBananaDecoder) decoder = bf_banana_decoder_new (BF_BANANA_DIALECT_PB);
  const guint8 *data = p->sent->data + from;
  gsize len = p->sent->len - from;
  guint n = 0;

  while (len > 0)
    {
      g_autoptr(BfBananaValue) e = NULL;
      gsize used = 0;

      g_assert_true (bf_banana_decoder_feed (decoder, data, len, &used, &e, NULL));
      data += used;
      len -= used;
      if (e != NULL && bf_banana_value_is_string (e->list.items[0], "decref"))
        {
          g_assert_cmpint (e->list.items[1]->integer, ==, id);
          n++;
        }
    }
  return n;
}

/* The peer's objects: ids handed over out of order and repeatedly are
 * counted each, callable, and given back with as many decrefs. */
static void
test_remote_objects (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autofree guint *order = shuffled (N_OBJECTS, 3);
  g_autoptr(BfJellyValue) args = bf_jelly_tuple ();
  g_autoptr(GError) error = NULL;
  Peer p;

  peer_init (&p);
  /* one message hands over every id (times 1..3), shuffled, sparse */
  for (guint k = 0; k < N_OBJECTS; k++)
    {
      guint i = order[k];

      for (guint r = 0; r <= i % 3; r++)
        bf_jelly_append (args, bf_jelly_remote (1000 + 7 * (gint64) i));
    }
  write_message (out, 1, BF_PB_BROKER_ROOT_ID, args);
  g_assert_true (feed (&p, out, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < N_OBJECTS; i++)
    {
      g_autoptr(BfJellyValue) call_args = bf_jelly_tuple ();
      gint64 req = 0;

      g_assert_true (bf_pb_broker_call (p.broker, 1000 + 7 * (gint64) i, "m", call_args, NULL,
                                        GUINT_TO_POINTER (i + 1), &req, &error));
      g_assert_no_error (error);
      /* between the ids: not an object of the peer */
      g_assert_false (bf_pb_broker_call (p.broker, 1001 + 7 * (gint64) i, "m", call_args, NULL,
                                         GUINT_TO_POINTER (1), NULL, &error));
      g_assert_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_PROTOCOL);
      g_clear_error (&error);
      write_answer (out, req);
      g_assert_true (feed (&p, out, &error));
    }
  /* given back in another order: keep one of each, then none */
  for (guint k = 0; k < N_OBJECTS; k++)
    {
      guint i = order[(k * 7) % N_OBJECTS];
      gint64 id = 1000 + 7 * (gint64) i;
      gsize from = p.sent->len;
      g_autoptr(BfJellyValue) call_args = bf_jelly_tuple ();

      bf_pb_broker_release_remote (p.broker, id, 1);
      g_assert_cmpuint (decrefs_sent (&p, from, id), ==, i % 3);
      from = p.sent->len;
      bf_pb_broker_release_remote (p.broker, id, 0);
      g_assert_cmpuint (decrefs_sent (&p, from, id), ==, 1);
      g_assert_false (bf_pb_broker_call (p.broker, id, "m", call_args, NULL, GUINT_TO_POINTER (1), NULL, &error));
      g_assert_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_PROTOCOL);
      g_clear_error (&error);
    }
  peer_clear (&p);
}

/* Our calls: answered in any order, each reaches its own tag; a forgotten
 * one's answer is taken and dropped; the bound holds and frees up. */
static void
test_outstanding_calls (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autofree guint *order = shuffled (BF_PB_BROKER_MAX_OUTSTANDING, 4);
  g_autoptr(BfJellyValue) mind = bf_jelly_tuple ();
  g_autoptr(BfJellyValue) call_args = bf_jelly_tuple ();
  gint64 reqs[BF_PB_BROKER_MAX_OUTSTANDING];
  g_autoptr(GError) error = NULL;
  guint expected = 0;
  Peer p;

  peer_init (&p);
  bf_jelly_append (mind, bf_jelly_remote (1));
  write_message (out, 1, BF_PB_BROKER_ROOT_ID, mind);
  g_assert_true (feed (&p, out, &error));

  for (guint i = 0; i < BF_PB_BROKER_MAX_OUTSTANDING; i++)
    g_assert_true (bf_pb_broker_call (p.broker, 1, "m", call_args, NULL, GUINT_TO_POINTER (i + 1), &reqs[i], &error));
  g_assert_false (bf_pb_broker_call (p.broker, 1, "m", call_args, NULL, GUINT_TO_POINTER (1), NULL, &error));
  g_assert_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_LIMIT);
  g_clear_error (&error);
  for (guint i = 0; i < BF_PB_BROKER_MAX_OUTSTANDING; i += 5)
    bf_pb_broker_forget_call (p.broker, reqs[i]);

  for (guint k = 0; k < BF_PB_BROKER_MAX_OUTSTANDING; k++)
    {
      guint i = order[k];

      write_answer (out, reqs[i]);
      g_assert_true (feed (&p, out, &error));
      g_assert_no_error (error);
      if (i % 5 != 0)   /* else forgotten: no callback */
        {
          expected++;
          g_assert_true (g_ptr_array_index (p.answer_tags, expected - 1) == GUINT_TO_POINTER (i + 1));
        }
      g_assert_cmpuint (p.answer_tags->len, ==, expected);
      /* room again */
      if (k == 0)
        {
          gint64 req;

          g_assert_true (bf_pb_broker_call (p.broker, 1, "m", call_args, NULL, GUINT_TO_POINTER (9999), &req, &error));
          g_assert_cmpint (req, >, reqs[BF_PB_BROKER_MAX_OUTSTANDING - 1]);
          write_answer (out, req);
          g_assert_true (feed (&p, out, &error));
          expected++;
          g_assert_true (g_ptr_array_index (p.answer_tags, expected - 1) == GUINT_TO_POINTER (9999));
        }
    }
  /* answered twice: a call never made (any more) */
  write_answer (out, reqs[3]);
  g_assert_false (feed (&p, out, &error));
  g_assert_error (error, BF_PB_BROKER_ERROR, BF_PB_BROKER_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "never made"));
  peer_clear (&p);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/pb-broker/local-objects", test_local_objects);
  g_test_add_func ("/pb-broker/local-limit", test_local_limit);
  g_test_add_func ("/pb-broker/remote-objects", test_remote_objects);
  g_test_add_func ("/pb-broker/outstanding-calls", test_outstanding_calls);

  return g_test_run ();
}
