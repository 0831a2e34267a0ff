/* bf-util.h: small helpers shared by the daemon's objects
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <gio/gio.h>

/* Every timer in the daemon is named, so that a main-loop profile (sysprof,
 * G_DEBUG) says whose it is.  The caller owns the returned id, zeroes it in
 * the callback and clears it with g_clear_handle_id() in dispose. */
static inline guint
bf_timeout_add_full (GSource     *source,
                     GSourceFunc  func,
                     gpointer     data,
                     const char  *static_name)
{
  guint id;

  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, static_name);
  id = g_source_attach (source, NULL);
  g_source_unref (source);
  return id;
}

static inline guint
bf_timeout_add (guint        interval_ms,
                GSourceFunc  func,
                gpointer     data,
                const char  *static_name)
{
  return bf_timeout_add_full (g_timeout_source_new (interval_ms), func, data, static_name);
}

static inline guint
bf_timeout_add_seconds (guint        interval_s,
                        GSourceFunc  func,
                        gpointer     data,
                        const char  *static_name)
{
  return bf_timeout_add_full (g_timeout_source_new_seconds (interval_s), func, data, static_name);
}

static inline guint
bf_usec_to_ms (guint64 usec)
{
  return (guint) MIN ((usec + 999) / 1000, G_MAXUINT);
}

/* TRUE when the kernel holds bytes from @fd's peer that the daemon has not
 * read yet.  Liveness checks ask before calling a worker silent: if its
 * answer is waiting, it is the daemon that is behind (busy with a flood,
 * starved of CPU), not the worker. */
static inline gboolean
bf_fd_has_unread (int fd)
{
  int n = 0;

  return fd >= 0 && ioctl (fd, FIONREAD, &n) == 0 && n > 0;
}

/* recv() (@sending FALSE) or send() without SIGPIPE (@sending TRUE) on a
 * non-blocking socket, as GIO's pollable streams do them: the bytes moved
 * (0 read: the end of the stream), or -1 with @error set,
 * G_IO_ERROR_WOULD_BLOCK when the socket is not ready. */
static inline gssize
bf_fd_io (int       fd,
          gboolean  sending,
          void     *buf,
          gsize     len,
          GError  **error)
{
  for (;;)
    {
      gssize n = sending ? send (fd, buf, len, MSG_NOSIGNAL) : recv (fd, buf, len, 0);
      int saved = errno;

      if (n >= 0)
        return n;
      if (saved == EINTR)
        continue;
      if (saved == EAGAIN || saved == EWOULDBLOCK)
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "would block");
      else
        g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved), g_strerror (saved));
      return -1;
    }
}

/* A token bucket: at most @rate events a second sustained, @burst at once.
 * Both worker links use it against peers that flood them with messages. */
typedef struct {
  double tokens;
  gint64 stamp;   /* monotonic */
} BfTokenBucket;

static inline void
bf_token_bucket_init (BfTokenBucket *bucket,
                      double         burst)
{
  bucket->tokens = burst;
  bucket->stamp = g_get_monotonic_time ();
}

/* Takes one token; FALSE when there was none left. */
static inline gboolean
bf_token_bucket_take (BfTokenBucket *bucket,
                      double         rate,
                      double         burst)
{
  gint64 now = g_get_monotonic_time ();

  bucket->tokens = MIN (bucket->tokens + (now - bucket->stamp) * (rate / G_USEC_PER_SEC), burst);
  bucket->stamp = now;
  bucket->tokens -= 1.0;
  return bucket->tokens >= 0;
}
