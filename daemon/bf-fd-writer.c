/* bf-fd-writer.c: write a stream of text to a caller's file descriptor, never blocking
 *
 * A D-Bus client can hand RunCommand a descriptor per stream (a pipe, a
 * file, a terminal) so that no output is missed the way a late signal
 * subscription misses it.  The client may read slowly or not at all: the
 * main loop never waits on it.  Writes are asynchronous, one at a time, in
 * order; what waits is bounded by BF_FD_WRITER_MAX_QUEUED, beyond which
 * output is dropped and a one-line marker says so where it happened.  A
 * reader that goes away (EPIPE) ends the writing quietly.
 *
 * Ownership: the creator calls bf_fd_writer_finish() once, after the last
 * write; the descriptor is closed (the reader sees end of file) when what
 * was queued has been written, and the writer frees itself then.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <gio/gio.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <sys/stat.h>

#include "bf-fd-writer.h"

#define DROP_MARKER "\n[buildfleetd: output dropped here: the reader of this descriptor is not keeping up]\n"

struct _BfFdWriter
{
  GOutputStream *stream;
  GQueue queue;            /* GBytes, in order */
  gsize queued;
  gboolean writing;        /* a write is in flight (it holds us) */
  gboolean finished;       /* the owner is done: close once drained */
  gboolean broken;         /* the reader went away or the fd failed */
  gboolean marked;         /* a drop marker is queued since the last drain */
  guint64 dropped;
  BfFdWriterDrained drained;   /* called once when the queue is empty */
  gpointer drained_data;
};

/**
 * bf_fd_writer_new:
 * @fd: (transfer full): a descriptor open for writing
 */
BfFdWriter *
bf_fd_writer_new (int fd)
{
  BfFdWriter *self = g_new0 (BfFdWriter, 1);
  struct stat st;

  /* Pipes and sockets would block the loop when full: make them
   * non-blocking so the pollable stream waits for room instead. */
  if (fstat (fd, &st) == 0 && (S_ISFIFO (st.st_mode) || S_ISSOCK (st.st_mode) || S_ISCHR (st.st_mode)))
    g_unix_set_fd_nonblocking (fd, TRUE, NULL);
  self->stream = g_unix_output_stream_new (fd, TRUE);
  g_queue_init (&self->queue);
  return self;
}

static void
destroy (BfFdWriter *self)
{
  g_queue_clear_full (&self->queue, (GDestroyNotify) g_bytes_unref);
  /* Closing a unix stream does not block. */
  g_output_stream_close (self->stream, NULL, NULL);
  g_object_unref (self->stream);
  g_free (self);
}

static void kick (BfFdWriter *self);

static void
notify_drained (BfFdWriter *self)
{
  BfFdWriterDrained drained = self->drained;

  if (drained == NULL || !g_queue_is_empty (&self->queue))
    return;
  self->drained = NULL;
  drained (self->drained_data, !self->broken);
}

static void
write_cb (GObject      *object,
          GAsyncResult *result,
          gpointer      user_data)
{
  BfFdWriter *self = user_data;
  g_autoptr(GError) error = NULL;
  gssize n = g_output_stream_write_bytes_finish (G_OUTPUT_STREAM (object), result, &error);

  self->writing = FALSE;
  if (n < 0)
    {
      g_debug ("Output descriptor: %s; dropping the rest", error->message);
      self->broken = TRUE;
      self->dropped += self->queued;
      g_queue_clear_full (&self->queue, (GDestroyNotify) g_bytes_unref);
      self->queued = 0;
    }
  else
    {
      GBytes *head = g_queue_pop_head (&self->queue);
      gsize size = g_bytes_get_size (head);

      if ((gsize) n < size)
        g_queue_push_head (&self->queue, g_bytes_new_from_bytes (head, n, size - n));
      g_bytes_unref (head);
      self->queued -= n;
      if (self->queued == 0)
        self->marked = FALSE;
    }

  if (self->finished && g_queue_is_empty (&self->queue))
    destroy (self);
  else
    {
      kick (self);
      if (!self->writing)
        notify_drained (self);
    }
}

static void
kick (BfFdWriter *self)
{
  if (self->writing || g_queue_is_empty (&self->queue))
    return;
  self->writing = TRUE;
  g_output_stream_write_bytes_async (self->stream, g_queue_peek_head (&self->queue),
                                     G_PRIORITY_DEFAULT, NULL, write_cb, self);
}

static void
enqueue (BfFdWriter *self,
         GBytes     *bytes)
{
  self->queued += g_bytes_get_size (bytes);
  g_queue_push_tail (&self->queue, bytes);
  kick (self);
}

/**
 * bf_fd_writer_write:
 *
 * Queues @len bytes of @data (copied) after what was written before.
 */
void
bf_fd_writer_write (BfFdWriter *self,
                    const char *data,
                    gsize       len)
{
  g_return_if_fail (!self->finished);

  if (len == 0)
    return;
  if (self->broken)
    {
      self->dropped += len;
      return;
    }
  if (self->queued + len > BF_FD_WRITER_MAX_QUEUED)
    {
      self->dropped += len;
      if (!self->marked)
        {
          self->marked = TRUE;
          enqueue (self, g_bytes_new_static (DROP_MARKER, sizeof DROP_MARKER - 1));
        }
      return;
    }
  enqueue (self, g_bytes_new (data, len));
}

/**
 * bf_fd_writer_finish:
 *
 * No more writes: the descriptor closes once the queue is written (at
 * once if it is empty or the reader went away).  @self is gone for the
 * caller after this.
 */
void
bf_fd_writer_finish (BfFdWriter *self)
{
  if (self == NULL)
    return;
  self->finished = TRUE;
  self->drained = NULL;
  if (!self->writing)
    destroy (self);
}

/**
 * bf_fd_writer_get_dropped:
 *
 * Returns: bytes not written because the reader was too slow or gone
 */
guint64
bf_fd_writer_get_dropped (BfFdWriter *self)
{
  return self->dropped;
}

/**
 * bf_fd_writer_when_drained:
 * @callback: (nullable): called once, when everything queued so far was
 *   written (at once if nothing waits), or when the descriptor failed;
 *   %NULL forgets an earlier callback
 *
 * How a writer of bounded blocks (a file transfer) waits for the reader
 * before it asks for the next block, so that nothing is ever dropped.
 * Not called after bf_fd_writer_finish().
 */
void
bf_fd_writer_when_drained (BfFdWriter        *self,
                           BfFdWriterDrained  callback,
                           gpointer           user_data)
{
  g_return_if_fail (!self->finished);

  self->drained = callback;
  self->drained_data = user_data;
  if (callback != NULL && !self->writing)
    notify_drained (self);
}
