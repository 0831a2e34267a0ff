/* fuzz-pb-session.c: libFuzzer target for a whole PB session, server side
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Input: the bytes a peer sends on a PB endpoint, from its first byte.
 * They go through a real BfPbLink (the daemon's code: banana, jelly, the
 * broker, the login, the session) over an in-memory stream.  The login
 * check accepts any 16-byte response, so inputs that get through the login
 * reach the session: as soon as the link logs in, the harness attaches it
 * (print = call 1, getWorkerInfo = call 2) and starts a shell command on
 * builder "b" (setBuilderList = call 3, then startCommand = call 4 on the
 * WorkerForBuilder the answer names); our objects are the challenger (1),
 * the perspective (2) and the command (3).  The input ends with EOF.
 *
 * Properties checked: no crash, leak, sanitizer report or GLib critical;
 * the link ends closed, with "closed" emitted once, and is finalized once
 * the harness lets go; the command's sink
 * completes exactly once if the command was started; everything the link
 * sent is bounded by what was asked (at most 64 MiB).
 *
 * Linked with fuzz-replay.c it replays files and directories of inputs
 * (tests/fuzz/corpus-pb-session, made by make-corpus-pb-session.py).
 */

#include "config.h"

#include <stdint.h>
#include <string.h>
#include <gio/gio.h>

#include "bf-error.h"
#include "bf-pb-link.h"
#include "bf-worker-link.h"

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

typedef struct {
  guint closed;
  guint completed;
  gboolean started;
  gboolean attached;
  gboolean lost;
} Session;

static BfPbAuthResult
auth_cb (const char   *name,
         const guint8 *challenge,
         gsize         challenge_len,
         const guint8 *response,
         gsize         response_len,
         const char   *peer,
         gpointer      user_data)
{
  return response_len == 16 ? BF_PB_AUTH_ACCEPT : BF_PB_AUTH_REFUSE;
}

static void
sink_output (gpointer user_data, const char *stream, const char *text, gsize len)
{
  g_assert_true (g_utf8_validate (text, len, NULL));
}

static void
sink_exit_code (gpointer user_data, int exit_code)
{
}

static void
sink_complete (gpointer user_data, const char *failure, gboolean lost)
{
  Session *s = user_data;

  g_assert_true (failure == NULL || g_utf8_validate (failure, -1, NULL));
  s->completed++;
  s->lost = lost;
}

static const BfCommandSink sink = { sink_output, sink_exit_code, sink_complete };

static void
attach_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Session *s = user_data;
  g_autoptr(GError) error = NULL;

  s->attached = bf_worker_link_attach_finish (BF_WORKER_LINK (source), result, &error);
  if (s->attached)
    g_assert_nonnull (bf_worker_link_get_info (BF_WORKER_LINK (source)));
  else
    g_assert_nonnull (error);
}

static void
logged_in_cb (BfPbLink *link, Session *s)
{
  BfWorkerLink *wl = BF_WORKER_LINK (link);
  g_autoptr(GVariant) args = g_variant_ref_sink (g_variant_new_parsed ("{'command': <['true']>}"));
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) prepared = NULL;

  bf_worker_link_attach_async (wl, NULL, attach_cb, s);
  prepared = bf_worker_link_prepare_command (wl, "shell", args, "b", &error);
  g_assert_no_error (error);
  s->started = TRUE;
  bf_worker_link_start_command (wl, "c1", "shell", g_steal_pointer (&prepared), "b", &sink, s);
  /* a second one of the same builder is Busy */
  prepared = bf_worker_link_prepare_command (wl, "shell", args, "b", &error);
  g_assert_null (prepared);
  g_assert_error (error, BF_ERROR, BF_ERROR_BUSY);
}

static void
closed_cb (BfPbLink *link, const char *reason, Session *s)
{
  g_assert_nonnull (reason);
  s->closed++;
  if (g_getenv ("FUZZ_PB_VERBOSE"))
    g_printerr ("closed: %s\n", reason);
}

static GLogWriterOutput
quiet_writer (GLogLevelFlags   level,
              const GLogField *fields,
              gsize            n_fields,
              gpointer         user_data)
{
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_WARNING))
    return g_log_writer_default (level, fields, n_fields, user_data);
  return G_LOG_WRITER_HANDLED;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static gboolean initialised;
  Session s = { 0, };
  g_autoptr(GInputStream) in = NULL;
  g_autoptr(GOutputStream) out = NULL;
  g_autoptr(GIOStream) stream = NULL;
  BfPbLink *link;

  if (!initialised)
    {
      g_log_set_writer_func (quiet_writer, NULL, NULL);
      g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_WARNING);
      initialised = TRUE;
    }

  in = g_memory_input_stream_new_from_data (g_memdup2 (data, size), size, g_free);
  out = g_memory_output_stream_new_resizable ();
  stream = g_simple_io_stream_new (in, out);
  link = bf_pb_link_new (stream, "fuzz:1", FALSE, 60 * G_USEC_PER_SEC, auth_cb, NULL);
  g_signal_connect (link, "logged-in", G_CALLBACK (logged_in_cb), &s);
  g_signal_connect (link, "closed", G_CALLBACK (closed_cb), &s);
  bf_pb_link_start (link, 30 * G_USEC_PER_SEC, 9990);

  /* The memory stream is always readable: the link reads it to EOF, which
   * closes it. */
  while (s.closed == 0)
    g_main_context_iteration (NULL, TRUE);
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);

  /* FUZZ_PB_VERBOSE=1: how far each input got, for seeding */
  if (g_getenv ("FUZZ_PB_VERBOSE"))
    g_printerr ("  attached %d, command %s\n", s.attached,
                s.started ? (s.completed ? (s.lost ? "lost" : "completed") : "running") : "not started");
  g_assert_cmpuint (s.closed, ==, 1);
  if (s.started)
    g_assert_cmpuint (s.completed, ==, 1);
  else
    g_assert_cmpuint (s.completed, ==, 0);
  g_assert_cmpuint (g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (out)), <=, 64 * 1024 * 1024);

  g_signal_handlers_disconnect_by_data (link, &s);
  g_object_add_weak_pointer (G_OBJECT (link), (gpointer *) &link);
  g_object_unref (link);
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
  /* nothing keeps a closed link alive */
  g_assert_null (link);
  return 0;
}
