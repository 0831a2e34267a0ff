/* fuzz-websocket.c: libFuzzer target for the worker endpoint's byte stream
 *
 * The input is everything a peer sends on a fresh connection: the HTTP
 * upgrade request (the seed corpus starts with a valid one), then frames.
 * It is written into one end of a socket pair whose other end is a
 * BfWebsocket run by the main context, exactly as the daemon runs one,
 * until the connection has ended or nothing moves any more.  Whatever the
 * bytes, the connection must end in an orderly way or stay open: no crash,
 * no leak, no GLib warning, no message over the limit delivered.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib.h>

#include "bf-websocket.h"

#define MAX_MESSAGE 4096

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

typedef struct {
  gboolean done;
  gboolean upgraded;
  gboolean closed;
} State;

static BfWebsocketAuthResult
auth_cb (const char *username,
         const char *password,
         const char *peer,
         guint      *retry_after,
         gpointer    user_data)
{
  return g_str_equal (username, "w") && g_str_equal (password, "p")
         ? BF_WEBSOCKET_AUTH_ACCEPT : BF_WEBSOCKET_AUTH_REFUSE;
}

static void
message_cb (gpointer      user_data,
            gboolean      binary,
            const guint8 *data,
            gsize         len)
{
  State *s = user_data;

  g_assert_false (s->closed);
  g_assert_cmpuint (len, <=, MAX_MESSAGE);
}

static void
closed_cb (gpointer    user_data,
           const char *reason)
{
  State *s = user_data;

  g_assert_false (s->closed);
  g_assert_true (g_utf8_validate (reason, -1, NULL));
  s->closed = TRUE;
}

static const BfWebsocketHandler handler = {
  .message = message_cb,
  .closed = closed_cb,
};

static void
handshake_cb (BfWebsocket *ws,
              const char  *username,
              gpointer     user_data)
{
  State *s = user_data;

  s->done = TRUE;
  if (username == NULL)
    return;
  g_assert_cmpstr (username, ==, "w");
  s->upgraded = TRUE;
  bf_websocket_set_handler (ws, &handler, s, MAX_MESSAGE);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static gboolean initialized;
  g_autoptr(BfWebsocket) ws = NULL;
  State s = { 0 };
  int sv[2];
  gsize sent = 0;

  if (!initialized)
    {
      g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    g_error ("socketpair: %s", g_strerror (errno));

  ws = bf_websocket_new_for_fd (sv[1], "fuzz");
  bf_websocket_handshake (ws, 10 * G_USEC_PER_SEC, auth_cb, NULL, handshake_cb, &s);

  /* Feed it in the sizes the kernel takes, draining what comes back. */
  for (int idle = 0; idle < 4; )
    {
      char sink[65536];
      gboolean moved = FALSE;

      if (sent < size)
        {
          gssize n = send (sv[0], data + sent, size - sent, MSG_NOSIGNAL);
          if (n > 0)
            {
              sent += n;
              moved = TRUE;
            }
        }
      while (recv (sv[0], sink, sizeof sink, MSG_DONTWAIT) > 0)
        moved = TRUE;
      while (g_main_context_iteration (NULL, FALSE))
        moved = TRUE;
      idle = moved ? 0 : idle + 1;
      if (s.closed || (s.done && !s.upgraded))
        break;
    }

  if (s.upgraded && !s.closed)
    g_assert_true (bf_websocket_is_open (ws));
  g_clear_object (&ws);
  bf_websocket_close_all ();
  close (sv[0]);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  return 0;
}
