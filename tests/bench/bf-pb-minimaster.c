/* bf-pb-minimaster: a minimal Perspective Broker master, only to measure
 * bf-loadgen-pb itself beyond what Buildbot's master can take.
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Listens on 127.0.0.1:PORT (backlog 4096), offers the banana dialects,
 * exchanges versions, answers login with a challenge and a challenger, checks
 * respond() against --password, and then runs Buildbot's PB attach sequence
 * on the worker's bot, one call after the other: print(message="attached"),
 * getWorkerInfo(), setBuilderList([(b, b)]), print(message="attached"); then
 * answers respond with the perspective, as Buildbot does. Prints one JSON
 * line "peer-attached" when --expect workers are attached, "peer-detached"
 * when they have all gone, and "peer-summary" at the end (--duration). One
 * thread, one epoll set. A test double, not a reference.
 */

#define _GNU_SOURCE 1
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "bf-banana.h"
#include "bf-jelly.h"
#include "bf-pb-auth.h"

typedef struct
{
  int fd;
  BfBananaDecoder *dec;
  gboolean version_sent;
  GByteArray *out;
  guint8 challenge[BF_PB_AUTH_CHALLENGE_SIZE];
  gint64 mind;
  gint64 respond_request;
  gint64 next_request;
  gint64 waiting;            /* request id of the call in progress */
  int step;                  /* attach sequence: 0..4, 5 attached */
} Conn;

static int expect = 1;
static char *password = "pass";
static guint attached, open_conns, bad, gone_after_attach;
static gboolean told_attached, told_detached;
static gint64 t_first;

static void
put (Conn *c, BfJellyValue *v)
{
  g_autoptr(BfJellyValue) value = v;

  bf_jelly_encode (c->out, BF_BANANA_DIALECT_PB, value, NULL);
}

static void
call (Conn *c, const char *method, BfJellyValue *args, BfJellyValue *kw)
{
  c->waiting = c->next_request++;
  bf_banana_write_list_header (c->out, 7);
  bf_banana_write_string (c->out, BF_BANANA_DIALECT_PB, "message", 7);
  bf_banana_write_int (c->out, c->waiting);
  bf_banana_write_int (c->out, c->mind);
  bf_banana_write_string (c->out, BF_BANANA_DIALECT_PB, method, strlen (method));
  bf_banana_write_int (c->out, 1);
  put (c, args);
  put (c, kw);
}

static void
answer (Conn *c, gint64 request, BfJellyValue *v)
{
  bf_banana_write_list_header (c->out, 3);
  bf_banana_write_string (c->out, BF_BANANA_DIALECT_PB, "answer", 6);
  bf_banana_write_int (c->out, request);
  put (c, v);
}

static void
print_attached (Conn *c)
{
  BfJellyValue *kw = bf_jelly_dict ();

  bf_jelly_dict_set (kw, bf_jelly_unicode ("message", -1), bf_jelly_unicode ("attached", -1));
  call (c, "print", bf_jelly_tuple (), kw);
}

static void
next_step (Conn *c)
{
  switch (c->step++)
    {
    case 0:
      print_attached (c);
      break;
    case 1:
      call (c, "getWorkerInfo", bf_jelly_tuple (), bf_jelly_dict ());
      break;
    case 2:
      {
        BfJellyValue *args = bf_jelly_tuple ();
        BfJellyValue *list = bf_jelly_list ();
        BfJellyValue *pair = bf_jelly_tuple ();

        bf_jelly_append (pair, bf_jelly_unicode ("b", -1));
        bf_jelly_append (pair, bf_jelly_unicode ("b", -1));
        bf_jelly_append (list, pair);
        bf_jelly_append (args, list);
        call (c, "setBuilderList", args, bf_jelly_dict ());
      }
      break;
    case 3:
      print_attached (c);
      break;
    case 4:
      answer (c, c->respond_request, bf_jelly_remote (2));
      c->waiting = 0;
      attached++;
      break;
    }
}

static void
summary (const char *phase)
{
  printf ("{\"phase\":\"%s\",\"attached\":%u,\"open\":%u,\"bad\":%u,\"seconds\":%.3f,\"realtime_usec\":%" G_GINT64_FORMAT "}\n",
          phase, attached, open_conns, bad,
          t_first ? (g_get_monotonic_time () - t_first) / 1e6 : 0.0, g_get_real_time ());
  fflush (stdout);
}

/* FALSE: drop the connection */
static gboolean
on_expression (Conn *c, BfBananaValue *e)
{
  BfBananaValue **it = e->list.items;
  guint n = e->list.len;

  if (e->type != BF_BANANA_LIST || n < 1 || it[0]->type != BF_BANANA_STRING)
    return FALSE;
  if (bf_banana_value_is_string (it[0], "version"))
    return bf_banana_check_version (e, NULL);
  if (bf_banana_value_is_string (it[0], "decref"))
    return TRUE;
  if (bf_banana_value_is_string (it[0], "message") && n == 7 && it[1]->type == BF_BANANA_INT &&
      it[3]->type == BF_BANANA_STRING)
    {
      g_autoptr(BfJellyValue) args = bf_jelly_decode (it[5], NULL);

      if (args == NULL || args->type != BF_JELLY_TUPLE)
        return FALSE;
      if (bf_banana_value_is_string (it[3], "login") && it[2]->type == BF_BANANA_STRING)
        {
          BfJellyValue *v = bf_jelly_tuple ();

          bf_pb_auth_challenge (c->challenge);
          bf_jelly_append (v, bf_jelly_bytes (c->challenge, sizeof c->challenge));
          bf_jelly_append (v, bf_jelly_remote (1));
          answer (c, it[1]->integer, v);
          return TRUE;
        }
      if (bf_banana_value_is_string (it[3], "respond") && args->seq.len == 2 &&
          args->seq.items[0]->type == BF_JELLY_BYTES && args->seq.items[1]->type == BF_JELLY_REMOTE)
        {
          if (!bf_pb_auth_check (c->challenge, sizeof c->challenge, password, strlen (password),
                                 (const guint8 *) args->seq.items[0]->string.data,
                                 args->seq.items[0]->string.len))
            return FALSE;
          c->mind = args->seq.items[1]->integer;
          c->respond_request = it[1]->integer;
          next_step (c);
          return TRUE;
        }
      return FALSE;
    }
  if (bf_banana_value_is_string (it[0], "answer") && n == 3 && it[1]->type == BF_BANANA_INT)
    {
      if (c->waiting == 0 || it[1]->integer != c->waiting)
        return FALSE;
      next_step (c);
      return TRUE;
    }
  return FALSE;
}

static void
conn_close (int ep, Conn *c, GHashTable *conns)
{
  epoll_ctl (ep, EPOLL_CTL_DEL, c->fd, NULL);
  close (c->fd);
  if (c->step >= 5)
    gone_after_attach++;
  open_conns--;
  bf_banana_decoder_free (c->dec);
  g_byte_array_free (c->out, TRUE);
  g_hash_table_remove (conns, GINT_TO_POINTER (c->fd));
  g_free (c);
}

int
main (int argc, char **argv)
{
  int port = 19990, duration = 300;
  int lfd, ep, one = 1;
  struct sockaddr_in a = { 0 };
  struct epoll_event ev = { 0 }, evs[256];
  struct rlimit rl;
  g_autoptr(GHashTable) conns = g_hash_table_new (NULL, NULL);
  g_autoptr(GOptionContext) ctx = g_option_context_new ("- a minimal PB master for bf-loadgen-pb");
  GOptionEntry entries[] = {
    { "port", 0, 0, G_OPTION_ARG_INT, &port, "Port on 127.0.0.1 (default 19990)", "PORT" },
    { "expect", 0, 0, G_OPTION_ARG_INT, &expect, "Workers to wait for (default 1)", "N" },
    { "password", 0, 0, G_OPTION_ARG_STRING, &password, "Every worker's password (default pass)", "PW" },
    { "duration", 0, 0, G_OPTION_ARG_INT, &duration, "Exit after S seconds (default 300)", "S" },
    { NULL },
  };
  gint64 end;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, NULL))
    return 2;
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
  lfd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt (lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  a.sin_family = AF_INET;
  a.sin_port = htons (port);
  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (bind (lfd, (struct sockaddr *) &a, sizeof a) < 0 || listen (lfd, 4096) < 0)
    {
      g_printerr ("bf-pb-minimaster: cannot listen on 127.0.0.1:%d: %s\n", port, g_strerror (errno));
      return 1;
    }
  ep = epoll_create1 (EPOLL_CLOEXEC);
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  epoll_ctl (ep, EPOLL_CTL_ADD, lfd, &ev);
  printf ("{\"phase\":\"peer-listening\",\"port\":%d}\n", port);
  fflush (stdout);
  end = g_get_monotonic_time () + (gint64) duration * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < end)
    {
      int n = epoll_wait (ep, evs, G_N_ELEMENTS (evs), 1000);

      for (int i = 0; i < n; i++)
        {
          Conn *c = evs[i].data.ptr;
          guint8 buf[65536];
          ssize_t r;

          if (c == NULL)
            {
              for (int k = 0; k < 256; k++)
                {
                  int fd = accept4 (lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                  struct epoll_event cev = { 0 };

                  if (fd < 0)
                    break;
                  if (t_first == 0)
                    t_first = g_get_monotonic_time ();
                  c = g_new0 (Conn, 1);
                  c->fd = fd;
                  c->dec = bf_banana_decoder_new (BF_BANANA_DIALECT_UNSET);
                  c->out = g_byte_array_new ();
                  c->next_request = 1;
                  bf_banana_write_offer (c->out);
                  send (fd, c->out->data, c->out->len, MSG_NOSIGNAL);
                  g_byte_array_set_size (c->out, 0);
                  cev.events = EPOLLIN;
                  cev.data.ptr = c;
                  epoll_ctl (ep, EPOLL_CTL_ADD, fd, &cev);
                  g_hash_table_add (conns, GINT_TO_POINTER (fd));
                  open_conns++;
                }
              continue;
            }
          r = recv (c->fd, buf, sizeof buf, 0);
          if (r <= 0)
            {
              if (r < 0 && errno == EAGAIN)
                continue;
              conn_close (ep, c, conns);
              continue;
            }
          {
            gsize off = 0;
            gboolean ok = TRUE;

            while (ok && off < (gsize) r)
              {
                g_autoptr(BfBananaValue) e = NULL;
                gsize used = 0;

                if (!bf_banana_decoder_feed (c->dec, buf + off, r - off, &used, &e, NULL))
                  ok = FALSE;
                off += used;
                if (!c->version_sent && bf_banana_decoder_get_dialect (c->dec) == BF_BANANA_DIALECT_PB)
                  {
                    bf_banana_write_version (c->out, BF_BANANA_DIALECT_PB);
                    c->version_sent = TRUE;
                  }
                if (e == NULL)
                  {
                    if (used == 0)
                      break;
                    continue;
                  }
                ok = on_expression (c, e);
              }
            if (c->out->len)
              {
                /* small messages on an idle socket: one send suffices here */
                send (c->fd, c->out->data, c->out->len, MSG_NOSIGNAL);
                g_byte_array_set_size (c->out, 0);
              }
            if (!ok)
              {
                bad++;
                conn_close (ep, c, conns);
                continue;
              }
          }
        }
      if (!told_attached && attached >= (guint) expect)
        {
          told_attached = TRUE;
          summary ("peer-attached");
        }
      if (told_attached && !told_detached && open_conns == 0)
        {
          told_detached = TRUE;
          summary ("peer-detached");
          break;
        }
    }
  summary ("peer-summary");
  return 0;
}
