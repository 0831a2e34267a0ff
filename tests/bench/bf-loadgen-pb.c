/* bf-loadgen-pb: impersonates N buildbot-worker 3.7 instances speaking
 * Perspective Broker (the worker's default protocol) from one process.
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What one simulated worker says, in order, as Debian's buildbot-worker 3.7
 * created without --protocol does (buildbot_worker/pb.py, pbutil.py and
 * twisted/spread/pb.py, client side):
 *
 *   1. the master offers banana dialects ["pb", "none"]; we answer with the
 *      STRING "pb", then ["version", 6], then at once (PBClientFactory's
 *      clientConnectionMade, before the master's version arrives)
 *      ["message", 1, "root", "login", 1, ["tuple", NAME], ["dictionary"]];
 *   2. the answer is (challenge, challenger): we call
 *      challenger.respond(md5(md5(password) + challenge), mind) where mind is
 *      our bot, ["remote", 1];
 *      and drop the challenger at once (["decref", challenger], as CPython's
 *      refcounting makes Twisted do);
 *   3. the answer is the perspective, ["remote", id] (Buildbot's master sends
 *      it only after its whole attach sequence);
 *   4. we answer the master's calls: on the bot print -> None,
 *      getWorkerInfo -> the dict a real worker gives, setBuilderList ->
 *      {builder: ["remote", id]} (one WorkerForBuilder per builder, the same
 *      id for a builder seen before), getCommands, getVersion, shutdown; on a
 *      WorkerForBuilder print, startBuild, setMaster, startCommand (fake
 *      commands, below), interruptCommand; anything else gets the error a
 *      real worker gives (a CopyableFailure of NoSuchMethod).
 *
 * A worker is "attached" once it has the perspective (the answer to
 * respond), its answer to getWorkerInfo has been handed to the socket and
 * then --attach-prints more `print` calls have been answered. Buildbot's
 * master calls setBuilderList after getWorkerInfo and ends with one print
 * "attached" per builder, and sends the perspective last: use
 * --attach-prints 1 with buildbot-peer. buildfleetd sends the perspective
 * first, then print and getWorkerInfo: --attach-prints 0.
 *
 * Fake commands: `shell` answers startCommand, then sends the real worker's
 * update shapes on the master's command reference ([[{"header": ...}, 0]],
 * [[{"stdout": ...}, 0]], [[{"rc": 0}, 0]], [[{"header": "elapsedTime=..."},
 * 0]], [[{"elapsed": s}, 0]]) and complete(None), through a model of the
 * worker's output buffer (adjacent text of one key joined, up to 64 KiB).
 * The fake process prints --output-lines when it ends after
 * --command-seconds; maxTime and timeout kill it earlier, interruptCommand at
 * once (rc -1, "process killed by signal 9", no "elapsed" after an
 * interrupt). Every other command completes at once with rc 0.
 *
 * One thread, one epoll set, non-blocking sockets; every phase line is one
 * JSON object on stdout, with the same phase names and fields as bf-loadgen
 * where they mean the same (tests/bench/README.md).
 */

#define _GNU_SOURCE 1   /* memmem */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "bf-banana.h"
#include "bf-bench-output.h"
#include "bf-jelly.h"
#include "bf-pb-auth.h"

#define BOT_LUID 1

typedef enum
{
  W_IDLE,            /* waiting for a slot or a retry timer */
  W_CONNECTING,
  W_OFFER,           /* waiting for the dialect offer */
  W_LOGIN,           /* login sent */
  W_RESPOND,         /* respond sent */
  W_SERVING,         /* logged in: answering the master */
  W_LEAVING,         /* SHUT_WR sent, waiting for the master to close */
  W_CLOSED,          /* for good */
} WorkerState;

typedef enum
{
  T_NONE,
  T_RETRY,
  T_CONNECT_TIMEOUT,
  T_COMMAND,
} TimerKind;

typedef struct
{
  gint64 stream_id;          /* the master's command reference (remote id) */
  gint64 started;
  gint64 ends_at;
  gint64 kill_at;            /* maxTime or timeout, 0: none */
  char *kill_why;
  gboolean killed;
  gboolean interrupted;
  char *name;
  char *log_key;             /* the worker's buffer: adjacent log text of one */
  GString *log_text;         /* key goes out as one update */
} FakeCommand;

typedef struct
{
  guint index;
  char *name;
  WorkerState state;
  int fd;
  gboolean want_out;
  gboolean has_slot;
  BfBananaDecoder *dec;
  GByteArray *out;
  gint64 next_request;
  gint64 challenger;
  gint64 first_attempt;      /* monotonic usec */
  gint64 attempt_start;
  gint64 attached_at;        /* 0 until attached */
  gdouble handshake_ms;
  guint failures;            /* consecutive failed attempts */
  guint prints_after;        /* prints answered after getWorkerInfo */
  gboolean info_answered;      /* getWorkerInfo answered */
  gboolean dropped;          /* the master closed it after attach */
  GPtrArray *builders;       /* names; index + 2 is the luid */
  FakeCommand *command;
  TimerKind timer_kind;
  gint64 timer_when;
  guint timer_gen;
} Worker;

typedef struct
{
  gint64 when;
  guint worker;
  guint gen;
} Timer;

typedef struct
{
  guint64 attempts, retries, connect_errors, auth_errors, timeouts;
  guint64 closed_before_attach, bad_messages, prints, commands, updates;
  guint64 messages_in, messages_out, bytes_in, bytes_out, unknown_calls;
  guint64 shutdowns, closed_by_peer, errors_in;
} Stats;

typedef enum
{
  P_ATTACHING,
  P_HOLDING,
  P_SILENT,
  P_RESUMED,
  P_STOPPING,
} Phase;

typedef struct
{
  /* options */
  char *url;
  char *host;
  int port;
  int n_workers;
  char *name_format;
  BfBenchNames names;     /* name_format, parsed */
  int first_index;
  char *password;
  int concurrency;
  int attach_prints;
  gdouble attach_timeout;
  gdouble connect_timeout;
  gdouble hold;
  gboolean stop_after_attach;
  gboolean kill_after_attach;
  gboolean silent_after_attach;
  gdouble resume_grace;
  gboolean no_reconnect;
  int flap_cycles;
  gdouble flap_pause;
  gdouble close_timeout;
  int peer_pid;
  char *worker_version;
  char *basedir_prefix;
  gdouble command_seconds;
  int output_lines;
  int line_bytes;
  char *in_flight_until;

  /* state */
  struct sockaddr_in addr;
  int epfd;
  int sigfd;
  Worker *workers;
  GArray *timers;            /* a min-heap of Timer */
  GQueue waiting;            /* indexes (GUINT_TO_POINTER (i + 1)) waiting for a slot */
  int in_flight;
  guint n_attached;
  guint n_open;
  gint64 t0;
  gint64 t_last_attach;
  Phase phase;
  gboolean interrupted;
  gboolean flap_requested;   /* SIGUSR1 */
  Stats st;
  char **environ;
  GPtrArray *os_release;
  GBytes *info_parts[4];     /* getWorkerInfo's answer around host, access_uri, basedir */
  GString *info_scratch;
  GByteArray *spare_out;     /* lent to the worker being served (see out_borrow) */
  GRand *rand;
} Loadgen;

static gboolean debug;       /* BF_LOADGEN_DEBUG set: what each worker gets, on stderr */
static Loadgen lg_;
static Loadgen *lg = &lg_;

static gint64 now_usec (void) { return g_get_monotonic_time (); }

/* --- output ------------------------------------------------------------- */

static void
json_traffic (GString *s)
{
  bf_bench_json_int (s, "messages_in", lg->st.messages_in);
  bf_bench_json_int (s, "messages_out", lg->st.messages_out);
  bf_bench_json_int (s, "bytes_in", lg->st.bytes_in);
  bf_bench_json_int (s, "bytes_out", lg->st.bytes_out);
  bf_bench_json_int (s, "prints", lg->st.prints);
  bf_bench_json_int (s, "commands", lg->st.commands);
  bf_bench_json_int (s, "updates", lg->st.updates);
  bf_bench_json_int (s, "shutdowns", lg->st.shutdowns);
  bf_bench_json_int (s, "unknown_calls", lg->st.unknown_calls);
  bf_bench_json_int (s, "errors_in", lg->st.errors_in);
  bf_bench_json_int (s, "bad_messages", lg->st.bad_messages);
  bf_bench_json_int (s, "closed_by_peer", lg->st.closed_by_peer);
}

static void
json_end (GString *s)
{
  bf_bench_json_end (s, lg->n_open, lg->peer_pid);
}

/* --- timers ------------------------------------------------------------- */

static void
heap_push (Timer t)
{
  GArray *h = lg->timers;
  guint i;

  g_array_append_val (h, t);
  i = h->len - 1;
  while (i > 0)
    {
      guint p = (i - 1) / 2;
      Timer *a = &g_array_index (h, Timer, p), *b = &g_array_index (h, Timer, i);
      Timer tmp;

      if (a->when <= b->when)
        break;
      tmp = *a; *a = *b; *b = tmp;
      i = p;
    }
}

static Timer
heap_pop (void)
{
  GArray *h = lg->timers;
  Timer top = g_array_index (h, Timer, 0);
  guint i = 0;

  g_array_index (h, Timer, 0) = g_array_index (h, Timer, h->len - 1);
  g_array_set_size (h, h->len - 1);
  for (;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      Timer tmp;

      if (l < h->len && g_array_index (h, Timer, l).when < g_array_index (h, Timer, m).when)
        m = l;
      if (r < h->len && g_array_index (h, Timer, r).when < g_array_index (h, Timer, m).when)
        m = r;
      if (m == i)
        break;
      tmp = g_array_index (h, Timer, i);
      g_array_index (h, Timer, i) = g_array_index (h, Timer, m);
      g_array_index (h, Timer, m) = tmp;
      i = m;
    }
  return top;
}

static void
worker_set_timer (Worker *w, TimerKind kind, gint64 when)
{
  Timer t = { when, w->index, ++w->timer_gen };

  w->timer_kind = kind;
  w->timer_when = when;
  heap_push (t);
}

static void
worker_clear_timer (Worker *w)
{
  w->timer_kind = T_NONE;
  w->timer_gen++;
}

/* --- sending ------------------------------------------------------------ */

static void worker_fail (Worker *w, const char *why, gboolean before_attach_counts);

static void
worker_update_events (Worker *w)
{
  struct epoll_event ev = { 0 };
  gboolean want = w->out->len > 0 || w->state == W_CONNECTING;

  if (want == w->want_out)
    return;
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
  ev.data.u32 = w->index;
  epoll_ctl (lg->epfd, EPOLL_CTL_MOD, w->fd, &ev);
  w->want_out = want;
}

static gboolean
worker_flush (Worker *w)
{
  while (w->out->len > 0)
    {
      ssize_t n = send (w->fd, w->out->data, w->out->len, MSG_NOSIGNAL);

      if (n < 0)
        {
          if (errno == EAGAIN || errno == EINTR)
            break;
          worker_fail (w, g_strerror (errno), TRUE);
          return FALSE;
        }
      lg->st.bytes_out += n;
      g_byte_array_remove_range (w->out, 0, n);
    }
  worker_update_events (w);
  return TRUE;
}

static void
put_string (Worker *w, const char *s)
{
  bf_banana_write_string (w->out, BF_BANANA_DIALECT_PB, s, strlen (s));
}

static void
put_jelly (Worker *w, BfJellyValue *v)
{
  g_autoptr(GError) error = NULL;

  if (!bf_jelly_encode (w->out, BF_BANANA_DIALECT_PB, v, &error))
    g_error ("cannot encode: %s", error->message);
}

/* ["message", id, objid, name, 1, args, kw]; takes @args (a tuple) */
static gint64
send_call_obj (Worker *w, const char *objid_str, gint64 objid, const char *name, BfJellyValue *args)
{
  g_autoptr(BfJellyValue) a = args;
  g_autoptr(BfJellyValue) kw = bf_jelly_dict ();
  gint64 id = w->next_request++;

  bf_banana_write_list_header (w->out, 7);
  put_string (w, "message");
  bf_banana_write_int (w->out, id);
  if (objid_str)
    put_string (w, objid_str);
  else
    bf_banana_write_int (w->out, objid);
  put_string (w, name);
  bf_banana_write_int (w->out, 1);
  put_jelly (w, a);
  put_jelly (w, kw);
  lg->st.messages_out++;
  return id;
}

static void
send_answer (Worker *w, gint64 request, BfJellyValue *value)
{
  g_autoptr(BfJellyValue) v = value;

  bf_banana_write_list_header (w->out, 3);
  put_string (w, "answer");
  bf_banana_write_int (w->out, request);
  put_jelly (w, v);
  lg->st.messages_out++;
}

static void
send_decref (Worker *w, gint64 id)
{
  bf_banana_write_list_header (w->out, 2);
  put_string (w, "decref");
  bf_banana_write_int (w->out, id);
  lg->st.messages_out++;
}

static BfJellyValue *
ustr (const char *s)
{
  return bf_jelly_unicode (s, -1);
}

static void
dict_set_str (BfJellyValue *d, const char *k, const char *v)
{
  bf_jelly_dict_set (d, ustr (k), ustr (v));
}

/* what pb.CopyableFailure.getStateToCopy() gives for a NoSuchMethod */
static void
send_no_such_method (Worker *w, gint64 request, const char *name)
{
  g_autoptr(BfJellyValue) state = bf_jelly_dict ();
  g_autoptr(BfJellyValue) failure = NULL;
  BfJellyValue *parents = bf_jelly_list ();
  g_autofree char *value = g_strdup_printf ("No such method: remote_%s", name);

  dict_set_str (state, "type", "twisted.spread.flavors.NoSuchMethod");
  dict_set_str (state, "value", value);
  dict_set_str (state, "traceback", "Traceback unavailable\n");
  bf_jelly_dict_set (state, ustr ("frames"), bf_jelly_list ());
  bf_jelly_dict_set (state, ustr ("stack"), bf_jelly_list ());
  bf_jelly_append (parents, ustr ("twisted.spread.flavors.NoSuchMethod"));
  bf_jelly_append (parents, ustr ("builtins.AttributeError"));
  bf_jelly_append (parents, ustr ("builtins.Exception"));
  bf_jelly_append (parents, ustr ("builtins.BaseException"));
  bf_jelly_append (parents, ustr ("builtins.object"));
  bf_jelly_dict_set (state, ustr ("parents"), parents);
  bf_jelly_dict_set (state, ustr ("tb"), bf_jelly_none ());
  bf_jelly_dict_set (state, ustr ("count"), bf_jelly_int (0));
  failure = bf_jelly_failure (g_steal_pointer (&state));
  bf_banana_write_list_header (w->out, 3);
  put_string (w, "error");
  bf_banana_write_int (w->out, request);
  put_jelly (w, failure);
  lg->st.messages_out++;
  lg->st.unknown_calls++;
}

/* --- connection life ----------------------------------------------------- */

static void slot_release (Worker *w);
static void command_free (FakeCommand *c);
static void worker_start (Worker *w);
static void check_attached_phase (void);

static void
worker_close_fd (Worker *w)
{
  if (w->fd >= 0)
    {
      epoll_ctl (lg->epfd, EPOLL_CTL_DEL, w->fd, NULL);
      close (w->fd);
      w->fd = -1;
      lg->n_open--;
    }
  g_clear_pointer (&w->dec, bf_banana_decoder_free);
  g_byte_array_set_size (w->out, 0);
  w->want_out = FALSE;
  if (w->command)
    {
      g_clear_pointer (&w->command, command_free);
    }
  worker_clear_timer (w);
}

static gdouble
backoff_seconds (guint attempt)
{
  /* twisted.application.internet.backoffPolicy(): 1 s × 1.5^n up to 60 s, + jitter */
  gdouble d = MIN (pow (1.5, attempt), 60.0);

  return d + g_rand_double (lg->rand);
}

/* A failed attempt (or a connection lost): retry like the real worker. */
static void
worker_fail (Worker *w, const char *why, gboolean counts)
{
  gboolean was_attached = w->attached_at != 0;

  if (lg->phase == P_STOPPING && w->state == W_LEAVING)
    {
      worker_close_fd (w);
      w->state = W_CLOSED;
      return;
    }
  if (counts && !was_attached)
    lg->st.closed_before_attach++;
  if (was_attached)
    w->dropped = TRUE;
  if (debug)
    g_printerr ("%s: %s\n", w->name, why);
  worker_close_fd (w);
  slot_release (w);
  w->state = W_IDLE;
  if (lg->phase == P_SILENT || lg->phase == P_RESUMED || lg->phase == P_STOPPING ||
      lg->no_reconnect || (was_attached && lg->phase != P_ATTACHING && lg->phase != P_HOLDING))
    {
      w->state = W_CLOSED;
      return;
    }
  if (was_attached)
    {
      /* the master dropped an attached worker: it comes back, like the real one */
      w->attached_at = 0;
      lg->n_attached--;
    }
  w->failures++;
  lg->st.retries++;
  worker_set_timer (w, T_RETRY, now_usec () + (gint64) (backoff_seconds (w->failures) * G_USEC_PER_SEC));
}

static void
slot_release (Worker *w)
{
  if (!w->has_slot)
    return;
  w->has_slot = FALSE;
  lg->in_flight--;
  while (lg->in_flight < lg->concurrency && !g_queue_is_empty (&lg->waiting))
    {
      Worker *n = &lg->workers[GPOINTER_TO_UINT (g_queue_pop_head (&lg->waiting)) - 1];
      worker_start (n);
    }
}

static void
worker_start (Worker *w)
{
  struct epoll_event ev = { 0 };
  int fd;

  if (lg->in_flight >= lg->concurrency)
    {
      g_queue_push_tail (&lg->waiting, GUINT_TO_POINTER (w->index + 1));
      return;
    }
  w->has_slot = TRUE;
  lg->in_flight++;
  lg->st.attempts++;
  w->attempt_start = now_usec ();
  if (w->first_attempt == 0)
    w->first_attempt = w->attempt_start;
  fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    g_error ("socket: %s", g_strerror (errno));
  {
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* as bf-loadgen: one loopback source address per 10,000 workers, the
     * port chosen by connect() for the 4-tuple (connect() takes even ports
     * first, and past ~14,000 to one destination it walks the used ones) */
    if (lg->n_workers > 10000)
      {
        guint n_sources = MIN ((lg->n_workers + 9999) / 10000, 254);
        struct sockaddr_in local = { .sin_family = AF_INET,
                                     .sin_addr.s_addr = htonl (0x7f000001 + w->index % n_sources) };

        setsockopt (fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind (fd, (struct sockaddr *) &local, sizeof local) != 0)
          g_printerr ("bf-loadgen-pb: bind %s: %s\n", inet_ntoa (local.sin_addr), g_strerror (errno));
      }
  }
  w->fd = fd;
  lg->n_open++;
  w->state = W_CONNECTING;
  w->next_request = 1;
  w->prints_after = 0;
  w->info_answered = FALSE;
  w->dec = bf_banana_decoder_new (BF_BANANA_DIALECT_NONE);
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = w->index;
  w->want_out = TRUE;
  epoll_ctl (lg->epfd, EPOLL_CTL_ADD, fd, &ev);
  if (connect (fd, (struct sockaddr *) &lg->addr, sizeof lg->addr) < 0 && errno != EINPROGRESS)
    {
      lg->st.connect_errors++;
      worker_fail (w, g_strerror (errno), FALSE);
      return;
    }
  worker_set_timer (w, T_CONNECT_TIMEOUT, w->attempt_start + (gint64) (lg->connect_timeout * G_USEC_PER_SEC));
}

static void
worker_mark_attached (Worker *w)
{
  if (w->attached_at != 0)
    return;
  w->attached_at = now_usec ();
  lg->t_last_attach = w->attached_at;
  lg->n_attached++;
  w->failures = 0;
  if (g_strcmp0 (lg->in_flight_until, "attached") == 0)
    slot_release (w);
  check_attached_phase ();
}

static void
maybe_attached (Worker *w)
{
  if (w->info_answered && (int) w->prints_after >= lg->attach_prints)
    worker_mark_attached (w);
}

/* --- the bot: what the master calls ----------------------------------------- */

static BfJellyValue *
worker_info_for (const char *host, const char *uri, const char *basedir)
{
  static const char * const command_names[] = {
    "shell", "uploadFile", "upload_file", "uploadDirectory", "upload_directory",
    "downloadFile", "download_file", "mkdir", "rmdir", "cpdir", "stat", "glob",
    "listdir", "rmfile",
  };
  static BfJellyValue *env, *cmds;   /* the same for every worker: built once, shared */
  BfJellyValue *d = bf_jelly_dict ();

  if (env == NULL)
    {
      env = bf_jelly_dict ();
      for (char **e = lg->environ; *e; e++)
        {
          const char *eq = strchr (*e, '=');
          g_autofree char *k = eq ? g_strndup (*e, eq - *e) : g_strdup (*e);

          if (!g_utf8_validate (*e, -1, NULL) || strlen (k) > BF_JELLY_MAX_KEY_LENGTH ||
              bf_jelly_dict_lookup (env, k))
            continue;
          bf_jelly_dict_set (env, ustr (k), ustr (eq ? eq + 1 : ""));
        }
      cmds = bf_jelly_dict ();
      for (guint i = 0; i < G_N_ELEMENTS (command_names); i++)
        dict_set_str (cmds, command_names[i], "3.1");
    }
  /* info/ files, os-release, then what remote_getWorkerInfo() adds */
  dict_set_str (d, "admin", "bf-loadgen <bf-loadgen@localhost>");
  dict_set_str (d, "host", host);
  dict_set_str (d, "access_uri", uri);
  for (guint i = 0; i + 1 < lg->os_release->len; i += 2)
    dict_set_str (d, g_ptr_array_index (lg->os_release, i), g_ptr_array_index (lg->os_release, i + 1));
  bf_jelly_dict_set (d, ustr ("environ"), bf_jelly_value_ref (env));
  dict_set_str (d, "system", "posix");
  dict_set_str (d, "basedir", basedir);
  bf_jelly_dict_set (d, ustr ("numcpus"), bf_jelly_int (g_get_num_processors ()));
  dict_set_str (d, "version", lg->worker_version);
  bf_jelly_dict_set (d, ustr ("worker_commands"), bf_jelly_value_ref (cmds));
  /* create-worker writes delete_leftover_dirs = 0 into buildbot.tac: an int */
  bf_jelly_dict_set (d, ustr ("delete_leftover_dirs"), bf_jelly_int (0));
  return d;
}

static BfJellyValue *
worker_info (Worker *w)
{
  g_autofree char *host = g_strdup_printf ("bf-loadgen simulated worker %s", w->name);
  g_autofree char *uri = g_strdup_printf ("bf-loadgen://%s", w->name);
  g_autofree char *basedir = g_build_filename (lg->basedir_prefix, w->name, NULL);

  return worker_info_for (host, uri, basedir);
}

/* getWorkerInfo's answer is the same bytes for every worker but for three
 * strings: encoded once with markers in their place and cut at the
 * markers (banana has no outer lengths, so the parts splice). */
static void
pack_worker_info_parts (void)
{
  static const char * const markers[3] = {
    "\001bf-loadgen-host\001", "\001bf-loadgen-uri\001", "\001bf-loadgen-basedir\001",
  };
  g_autoptr(BfJellyValue) d = worker_info_for (markers[0], markers[1], markers[2]);
  g_autoptr(GByteArray) all = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  gsize last = 0;

  if (!bf_jelly_encode (all, BF_BANANA_DIALECT_PB, d, &error))
    g_error ("cannot encode: %s", error->message);
  for (guint i = 0; i < G_N_ELEMENTS (markers); i++)
    {
      g_autoptr(GByteArray) m = g_byte_array_new ();
      const guint8 *at;

      bf_banana_write_string (m, BF_BANANA_DIALECT_PB, markers[i], strlen (markers[i]));
      at = memmem (all->data + last, all->len - last, m->data, m->len);
      g_assert (at != NULL);
      lg->info_parts[i] = g_bytes_new (all->data + last, at - (all->data + last));
      last = at - all->data + m->len;
    }
  lg->info_parts[3] = g_bytes_new (all->data + last, all->len - last);
}

static void
put_bytes (Worker *w, GBytes *b)
{
  gsize n;
  const guint8 *data = g_bytes_get_data (b, &n);

  g_byte_array_append (w->out, data, n);
}

static void
put_info_string (Worker *w, const char *a, const char *b)
{
  g_string_assign (lg->info_scratch, a);
  g_string_append (lg->info_scratch, b);
  bf_banana_write_string (w->out, BF_BANANA_DIALECT_PB, lg->info_scratch->str, lg->info_scratch->len);
}

static void
send_worker_info_answer (Worker *w, gint64 request)
{
  if (lg->info_parts[0] == NULL)
    pack_worker_info_parts ();
  bf_banana_write_list_header (w->out, 3);
  put_string (w, "answer");
  bf_banana_write_int (w->out, request);
  put_bytes (w, lg->info_parts[0]);
  put_info_string (w, "bf-loadgen simulated worker ", w->name);
  put_bytes (w, lg->info_parts[1]);
  put_info_string (w, "bf-loadgen://", w->name);
  put_bytes (w, lg->info_parts[2]);
  {
    g_autofree char *basedir = g_build_filename (lg->basedir_prefix, w->name, NULL);

    put_info_string (w, basedir, "");
  }
  put_bytes (w, lg->info_parts[3]);
  lg->st.messages_out++;
}

static BfJellyValue *
builder_list_answer (Worker *w, BfJellyValue *args)
{
  BfJellyValue *d = bf_jelly_dict ();
  BfJellyValue *wanted;

  if (args->seq.len < 1 || (args->seq.items[0]->type != BF_JELLY_LIST && args->seq.items[0]->type != BF_JELLY_TUPLE))
    return d;
  wanted = args->seq.items[0];
  for (guint i = 0; i < wanted->seq.len; i++)
    {
      BfJellyValue *pair = wanted->seq.items[i];
      BfJellyValue *name;
      guint j;

      if ((pair->type != BF_JELLY_LIST && pair->type != BF_JELLY_TUPLE) || pair->seq.len < 1)
        continue;
      name = pair->seq.items[0];
      if (name->type != BF_JELLY_UNICODE && name->type != BF_JELLY_BYTES)
        continue;
      for (j = 0; j < w->builders->len; j++)
        if (g_str_equal (g_ptr_array_index (w->builders, j), name->string.data))
          break;
      if (j == w->builders->len)
        g_ptr_array_add (w->builders, g_strdup (name->string.data));
      if (bf_jelly_dict_lookup (d, name->string.data) == NULL)
        bf_jelly_dict_set (d, bf_jelly_value_ref (name), bf_jelly_remote (BOT_LUID + 1 + j));
    }
  return d;
}

/* an update call on the master's command reference: [[{key: value}, 0]] */
static void
send_update (Worker *w, gint64 ref, const char *key, BfJellyValue *value)
{
  BfJellyValue *args = bf_jelly_tuple ();
  BfJellyValue *updates = bf_jelly_list ();
  BfJellyValue *update = bf_jelly_list ();
  BfJellyValue *d = bf_jelly_dict ();

  bf_jelly_dict_set (d, ustr (key), value);
  bf_jelly_append (update, d);
  bf_jelly_append (update, bf_jelly_int (0));
  bf_jelly_append (updates, update);
  bf_jelly_append (args, updates);
  send_call_obj (w, NULL, ref, "update", args);
  lg->st.updates++;
}

/* The worker's output buffer (ProtocolCommandBase.buffer): header, stdout
 * and stderr text is held and joined while the key stays the same; another
 * key, a value update (rc, elapsed) or the end sends it as one update. */
static void
log_flush (Worker *w)
{
  FakeCommand *c = w->command;

  if (c->log_key == NULL)
    return;
  send_update (w, c->stream_id, c->log_key, bf_jelly_unicode (c->log_text->str, c->log_text->len));
  g_clear_pointer (&c->log_key, g_free);
  g_string_truncate (c->log_text, 0);
}

static void
log_update (Worker *w, const char *key, const char *text, gsize len)
{
  FakeCommand *c = w->command;

  if (c->log_key && !g_str_equal (c->log_key, key))
    log_flush (w);
  if (c->log_key == NULL)
    c->log_key = g_strdup (key);
  g_string_append_len (c->log_text, text, len);
  if (c->log_text->len >= 64 * 1024)      /* buffer_size */
    log_flush (w);
}

static void
value_update (Worker *w, const char *key, BfJellyValue *value)
{
  log_flush (w);
  send_update (w, w->command->stream_id, key, value);
}

static void
command_free (FakeCommand *c)
{
  g_free (c->name);
  g_free (c->kill_why);
  g_free (c->log_key);
  g_string_free (c->log_text, TRUE);
  g_free (c);
}

static void
command_finish (Worker *w)
{
  FakeCommand *c = w->command;
  BfJellyValue *args;
  gdouble elapsed = MAX ((now_usec () - c->started) / 1e6, 0);
  g_autofree char *hdr = g_strdup_printf ("elapsedTime=%f\n", elapsed);

  /* the fake process prints its output when it ends, unless killed */
  if (g_str_equal (c->name, "shell") && !c->killed)
    {
      g_autofree char *line = g_malloc (lg->line_bytes);

      for (int i = 0; i < lg->output_lines; i++)
        {
          for (int k = 0; k < lg->line_bytes - 1; k++)
            line[k] = 'a' + (i + k) % 26;
          line[lg->line_bytes - 1] = '\n';
          log_update (w, "stdout", line, lg->line_bytes);
        }
    }
  /* RunProcess.finished(), then Command's "elapsed" (not after an interrupt) */
  if (c->killed)
    log_update (w, "header", "process killed by signal 9\n", strlen ("process killed by signal 9\n"));
  value_update (w, "rc", bf_jelly_int (c->killed ? -1 : 0));
  if (g_str_equal (c->name, "shell"))
    log_update (w, "header", hdr, strlen (hdr));
  if (!c->interrupted)
    value_update (w, "elapsed", bf_jelly_float (elapsed));
  log_flush (w);
  args = bf_jelly_tuple ();
  bf_jelly_append (args, bf_jelly_none ());
  send_call_obj (w, NULL, c->stream_id, "complete", args);
  g_clear_pointer (&w->command, command_free);
  worker_clear_timer (w);
}

/* RunProcess.kill(): the header now, the end when the fake process "dies" */
static void
command_kill (Worker *w, const char *why)
{
  FakeCommand *c = w->command;
  g_autofree char *hdr = g_strdup_printf ("\n%s, attempting to kill\n", why);

  log_update (w, "header", hdr, strlen (hdr));
  c->killed = TRUE;
  command_finish (w);
}

static gdouble
arg_seconds (BfJellyValue *a, const char *key)
{
  BfJellyValue *v = a->type == BF_JELLY_DICT ? bf_jelly_dict_lookup (a, key) : NULL;

  if (v == NULL)
    return 0;
  if (v->type == BF_JELLY_INT)
    return v->integer;
  if (v->type == BF_JELLY_FLOAT)
    return v->number;
  return 0;
}

static void
command_start (Worker *w, BfJellyValue *args)
{
  BfJellyValue *ref = args->seq.len >= 4 ? args->seq.items[0] : NULL;
  BfJellyValue *name = args->seq.len >= 4 ? args->seq.items[2] : NULL;
  FakeCommand *c;
  gdouble max_time = 0, timeout = 0;

  if (ref == NULL || ref->type != BF_JELLY_REMOTE || name == NULL ||
      (name->type != BF_JELLY_UNICODE && name->type != BF_JELLY_BYTES))
    {
      lg->st.bad_messages++;
      return;
    }
  if (w->command)
    command_finish (w);   /* "leftover command, dropping it" */
  lg->st.commands++;
  c = g_new0 (FakeCommand, 1);
  c->stream_id = ref->integer;
  c->name = g_strdup (name->string.data);
  c->log_text = g_string_new (NULL);
  c->started = now_usec ();
  c->ends_at = c->started + (gint64) (lg->command_seconds * G_USEC_PER_SEC);
  w->command = c;
  if (g_str_equal (c->name, "shell"))
    {
      BfJellyValue *a = args->seq.items[3];
      BfJellyValue *wd = a->type == BF_JELLY_DICT ? bf_jelly_dict_lookup (a, "workdir") : NULL;
      g_autofree char *hdr = g_strdup_printf ("fake command\n in dir %s/%s\n",
                                              lg->basedir_prefix,
                                              wd && wd->type == BF_JELLY_UNICODE ? wd->string.data : "");

      log_update (w, "header", hdr, strlen (hdr));
      /* maxTime and timeout (silence) kill the fake process like RunProcess */
      max_time = arg_seconds (a, "maxTime");
      timeout = arg_seconds (a, "timeout");
      if (max_time > 0 && max_time < lg->command_seconds)
        {
          c->kill_at = c->started + (gint64) (max_time * G_USEC_PER_SEC);
          c->kill_why = g_strdup_printf ("command timed out: %g seconds elapsed running [fake]", max_time);
        }
      else if (timeout > 0 && timeout < lg->command_seconds)
        {
          c->kill_at = c->started + (gint64) (timeout * G_USEC_PER_SEC);
          c->kill_why = g_strdup_printf ("command timed out: %g seconds without output running [fake]", timeout);
        }
    }
  if (lg->command_seconds > 0)
    worker_set_timer (w, T_COMMAND, c->kill_at ? c->kill_at : c->ends_at);
  else
    command_finish (w);
}

static void
worker_on_call (Worker *w, gint64 request, gint64 objid, const char *name, gboolean answer,
                BfJellyValue *args)
{
  BfJellyValue *result = NULL;
  gboolean known = TRUE;
  gboolean is_print = FALSE, is_info = FALSE, after_answer_command = FALSE;
  gboolean interrupt = FALSE;

  if (objid == BOT_LUID)
    {
      if (g_str_equal (name, "print"))
        is_print = TRUE, result = bf_jelly_none ();
      else if (g_str_equal (name, "getWorkerInfo"))
        is_info = TRUE;
      else if (g_str_equal (name, "setBuilderList"))
        result = builder_list_answer (w, args);
      else if (g_str_equal (name, "getVersion"))
        result = ustr (lg->worker_version);
      else if (g_str_equal (name, "getCommands"))
        {
          BfJellyValue *info = worker_info (w);
          result = bf_jelly_value_ref (bf_jelly_dict_lookup (info, "worker_commands"));
          bf_jelly_value_unref (info);
        }
      else if (g_str_equal (name, "shutdown"))
        {
          lg->st.shutdowns++;
          result = bf_jelly_none ();
        }
      else
        known = FALSE;
    }
  else if (objid > BOT_LUID && objid <= BOT_LUID + (gint64) w->builders->len)
    {
      if (g_str_equal (name, "print"))
        is_print = TRUE, result = bf_jelly_none ();
      else if (g_str_equal (name, "startBuild") || g_str_equal (name, "setMaster"))
        result = bf_jelly_none ();
      else if (g_str_equal (name, "startCommand"))
        after_answer_command = TRUE, result = bf_jelly_none ();
      else if (g_str_equal (name, "interruptCommand"))
        {
          result = bf_jelly_none ();
          interrupt = w->command != NULL;
        }
      else
        known = FALSE;
    }
  else
    known = FALSE;

  if (!known)
    {
      if (answer)
        send_no_such_method (w, request, name);
      return;
    }
  if (is_print)
    lg->st.prints++;
  if (is_info && answer)
    send_worker_info_answer (w, request);
  else if (answer && result != NULL)
    send_answer (w, request, result);
  else
    g_clear_pointer (&result, bf_jelly_value_unref);
  if (after_answer_command)
    command_start (w, args);
  if (interrupt && w->command)
    {
      w->command->interrupted = TRUE;
      command_kill (w, "command interrupted");
    }
  if (is_info)
    w->info_answered = TRUE;
  else if (is_print && w->info_answered)
    w->prints_after++;
}

/* --- receiving -------------------------------------------------------------- */

static gboolean
item_int (BfBananaValue *v, gint64 *out)
{
  if (v->type != BF_BANANA_INT)
    return FALSE;
  *out = v->integer;
  return TRUE;
}

/* one top-level expression in the pb dialect; FALSE: the worker was dropped */
static gboolean
worker_on_expression (Worker *w, BfBananaValue *e)
{
  BfBananaValue **it;
  guint n;
  gint64 request;
  g_autoptr(GError) error = NULL;

  lg->st.messages_in++;
  if (debug)
    {
      g_autofree char *text = bf_banana_value_print (e);
      g_printerr ("%s <- %.300s\n", w->name, text);
    }
  if (e->type != BF_BANANA_LIST || e->list.len < 1 || e->list.items[0]->type != BF_BANANA_STRING)
    {
      lg->st.bad_messages++;
      return TRUE;
    }
  it = e->list.items;
  n = e->list.len;
  if (bf_banana_value_is_string (it[0], "version"))
    {
      if (!bf_banana_check_version (e, &error))
        {
          worker_fail (w, error->message, TRUE);
          return FALSE;
        }
      return TRUE;
    }
  if (bf_banana_value_is_string (it[0], "answer") && n == 3 && item_int (it[1], &request))
    {
      g_autoptr(BfJellyValue) v = bf_jelly_decode (it[2], &error);

      if (v == NULL)
        {
          lg->st.bad_messages++;
          worker_fail (w, error->message, TRUE);
          return FALSE;
        }
      if (w->state == W_LOGIN && request == 1)
        {
          guint8 response[BF_PB_AUTH_RESPONSE_SIZE];
          BfJellyValue *args;

          if (v->type != BF_JELLY_TUPLE || v->seq.len != 2 || v->seq.items[0]->type != BF_JELLY_BYTES ||
              v->seq.items[1]->type != BF_JELLY_REMOTE)
            {
              lg->st.bad_messages++;
              worker_fail (w, "login answer is not (challenge, challenger)", TRUE);
              return FALSE;
            }
          w->challenger = v->seq.items[1]->integer;
          bf_pb_auth_respond ((const guint8 *) v->seq.items[0]->string.data, v->seq.items[0]->string.len,
                              lg->password, strlen (lg->password), response);
          args = bf_jelly_tuple ();
          bf_jelly_append (args, bf_jelly_bytes (response, sizeof response));
          bf_jelly_append (args, bf_jelly_remote (BOT_LUID));
          send_call_obj (w, NULL, w->challenger, "respond", args);
          /* the real worker drops the challenger right after respond() */
          send_decref (w, w->challenger);
          w->state = W_RESPOND;
          return worker_flush (w);
        }
      if (w->state == W_RESPOND && request == 2)
        {
          if (v->type != BF_JELLY_REMOTE)
            {
              lg->st.bad_messages++;
              worker_fail (w, "respond answer is not a perspective", TRUE);
              return FALSE;
            }
          w->state = W_SERVING;
          worker_clear_timer (w);
          w->handshake_ms = (now_usec () - w->attempt_start) / 1000.0;
          if (g_strcmp0 (lg->in_flight_until, "attached") != 0)
            slot_release (w);
          return worker_flush (w);
        }
      return TRUE;   /* answers to update / complete */
    }
  if (bf_banana_value_is_string (it[0], "error") && n == 3 && item_int (it[1], &request))
    {
      lg->st.errors_in++;
      if (w->state == W_LOGIN || w->state == W_RESPOND)
        {
          lg->st.auth_errors++;
          worker_fail (w, "login refused", TRUE);
          return FALSE;
        }
      return TRUE;
    }
  if (bf_banana_value_is_string (it[0], "message") && n == 7 && item_int (it[1], &request) &&
      it[3]->type == BF_BANANA_STRING)
    {
      gint64 objid = -1, answer = 1;
      g_autoptr(BfJellyValue) args = NULL;
      g_autoptr(BfJellyValue) kw = NULL;
      g_autoptr(BfJellyValue) all = NULL;

      item_int (it[2], &objid);
      item_int (it[4], &answer);
      args = bf_jelly_decode (it[5], &error);
      if (args != NULL)
        kw = bf_jelly_decode (it[6], &error);
      if (args == NULL || kw == NULL || (args->type != BF_JELLY_TUPLE && args->type != BF_JELLY_LIST))
        {
          lg->st.bad_messages++;
          worker_fail (w, error ? error->message : "arguments are not a tuple", TRUE);
          return FALSE;
        }
      /* keyword arguments (print(message=...)) go after the positional ones */
      all = bf_jelly_tuple ();
      for (guint i = 0; i < args->seq.len; i++)
        bf_jelly_append (all, bf_jelly_value_ref (args->seq.items[i]));
      if (kw->type == BF_JELLY_DICT)
        for (guint i = 1; i < kw->seq.len; i += 2)
          bf_jelly_append (all, bf_jelly_value_ref (kw->seq.items[i]));
      worker_on_call (w, request, objid, it[3]->string.data, answer != 0, all);
      return worker_flush (w);
    }
  if (bf_banana_value_is_string (it[0], "decref"))
    return TRUE;
  lg->st.bad_messages++;
  return TRUE;
}

static void
worker_on_offer (Worker *w, BfBananaValue *e)
{
  gboolean pb = FALSE;
  BfJellyValue *args;
  g_autofree char *name = NULL;

  if (e->type == BF_BANANA_LIST)
    for (guint i = 0; i < e->list.len; i++)
      if (bf_banana_value_is_string (e->list.items[i], "pb"))
        pb = TRUE;
  if (!pb)
    {
      lg->st.bad_messages++;
      worker_fail (w, "the peer offers no pb dialect", TRUE);
      return;
    }
  bf_banana_write_string (w->out, BF_BANANA_DIALECT_NONE, "pb", 2);
  bf_banana_decoder_free (w->dec);
  w->dec = bf_banana_decoder_new (BF_BANANA_DIALECT_PB);
  bf_banana_write_version (w->out, BF_BANANA_DIALECT_PB);
  args = bf_jelly_tuple ();
  bf_jelly_append (args, bf_jelly_bytes (w->name, strlen (w->name)));
  send_call_obj (w, "root", 0, "login", args);
  w->state = W_LOGIN;
  worker_flush (w);
}

static void
worker_on_readable (Worker *w)
{
  guint8 buf[65536];

  for (;;)
    {
      ssize_t n = recv (w->fd, buf, sizeof buf, 0);
      gsize off = 0;

      if (n < 0)
        {
          if (errno == EAGAIN || errno == EINTR)
            return;
          worker_fail (w, g_strerror (errno), TRUE);
          return;
        }
      if (n == 0)
        {
          if (w->state != W_LEAVING)
            lg->st.closed_by_peer++;
          worker_fail (w, "closed by the master", TRUE);
          return;
        }
      lg->st.bytes_in += n;
      if (w->state == W_LEAVING)
        continue;
      while (off < (gsize) n)
        {
          g_autoptr(BfBananaValue) e = NULL;
          g_autoptr(GError) error = NULL;
          gsize used = 0;

          if (!bf_banana_decoder_feed (w->dec, buf + off, n - off, &used, &e, &error))
            {
              lg->st.bad_messages++;
              worker_fail (w, error->message, TRUE);
              return;
            }
          off += used;
          if (e == NULL)
            break;
          if (w->state == W_OFFER)
            {
              worker_on_offer (w, e);
              if (w->fd < 0)
                return;
            }
          else if (!worker_on_expression (w, e) || w->fd < 0)
            return;
          if (w->state == W_SERVING && w->attached_at == 0)
            maybe_attached (w);
        }
      if (n < (ssize_t) sizeof buf)
        return;
    }
}

static void
worker_on_event (Worker *w, guint32 events)
{
  if (w->fd < 0)
    return;
  if (w->state == W_CONNECTING)
    {
      int err = 0;
      socklen_t len = sizeof err;

      getsockopt (w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0)
        {
          lg->st.connect_errors++;
          worker_fail (w, g_strerror (err ? err : ECONNRESET), FALSE);
          return;
        }
      if ((events & EPOLLOUT) == 0)
        return;
      /* the connect timeout keeps running until the perspective arrives */
      w->state = W_OFFER;
      worker_update_events (w);
    }
  if (events & EPOLLOUT)
    if (!worker_flush (w))
      return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
    worker_on_readable (w);
}

static void
worker_on_timer (Worker *w)
{
  TimerKind kind = w->timer_kind;

  w->timer_kind = T_NONE;
  switch (kind)
    {
    case T_RETRY:
      if (lg->phase == P_ATTACHING || lg->phase == P_HOLDING)
        worker_start (w);
      else
        w->state = W_CLOSED;
      break;
    case T_CONNECT_TIMEOUT:
      if (w->state == W_CONNECTING || w->state == W_OFFER || w->state == W_LOGIN || w->state == W_RESPOND)
        {
          lg->st.timeouts++;
          worker_fail (w, "timed out", FALSE);
        }
      break;
    case T_COMMAND:
      if (w->command && w->fd >= 0)
        {
          if (w->command->kill_at)
            command_kill (w, w->command->kill_why);
          else
            command_finish (w);
          worker_flush (w);
        }
      break;
    case T_NONE:
      break;
    }
}

/* --- phases --------------------------------------------------------------- */

static gboolean attached_reported;

static void
report_attached (void)
{
  g_autoptr(GArray) handshake = g_array_new (FALSE, FALSE, sizeof (gdouble));
  g_autoptr(GArray) attach = g_array_new (FALSE, FALSE, sizeof (gdouble));
  gint64 end;
  gdouble seconds;
  GString *s;

  if (attached_reported)
    return;
  attached_reported = TRUE;
  for (int i = 0; i < lg->n_workers; i++)
    {
      Worker *w = &lg->workers[i];
      gdouble ms;

      if (w->attached_at == 0)
        continue;
      ms = (w->attached_at - w->first_attempt) / 1000.0;
      g_array_append_val (attach, ms);
      g_array_append_val (handshake, w->handshake_ms);
    }
  end = lg->n_attached == (guint) lg->n_workers ? lg->t_last_attach : now_usec ();
  seconds = (end - lg->t0) / (gdouble) G_USEC_PER_SEC;
  s = bf_bench_json_begin ("attached", "pb");
  bf_bench_json_int (s, "workers", lg->n_attached);
  bf_bench_json_number (s, "seconds", seconds);
  bf_bench_json_number (s, "rate", seconds > 0 ? lg->n_attached / seconds : 0);
  bf_bench_json_int (s, "target", lg->n_workers);
  bf_bench_json_int (s, "failed", lg->n_workers - lg->n_attached);
  bf_bench_json_int (s, "concurrency", lg->concurrency);
  bf_bench_json_int (s, "threads", 1);
  bf_bench_json_int (s, "attach_prints", lg->attach_prints);
  bf_bench_json_int (s, "attempts", lg->st.attempts);
  bf_bench_json_int (s, "retries", lg->st.retries);
  bf_bench_json_int (s, "connect_errors", lg->st.connect_errors);
  bf_bench_json_int (s, "auth_errors", lg->st.auth_errors);
  bf_bench_json_int (s, "timeouts", lg->st.timeouts);
  bf_bench_json_int (s, "closed_before_attach", lg->st.closed_before_attach);
  bf_bench_json_distribution (s, "handshake_ms", handshake);
  bf_bench_json_distribution (s, "attach_ms", attach);
  if (lg->n_attached < (guint) lg->n_workers)
    {
      /* where the others are: waiting for a slot or a retry, connecting, for
       * the offer, the login answer, the perspective, or logged in */
      static const char * const names[] = { "idle", "connecting", "offer", "login", "respond", "serving", "leaving", "closed" };
      guint counts[G_N_ELEMENTS (names)] = { 0 };
      guint no_info = 0;

      for (int i = 0; i < lg->n_workers; i++)
        if (lg->workers[i].attached_at == 0)
          {
            counts[lg->workers[i].state]++;
            no_info += lg->workers[i].state == W_SERVING && !lg->workers[i].info_answered;
          }
      g_string_append (s, ",\"not_attached\":{");
      for (guint i = 0, first = 1; i < G_N_ELEMENTS (names); i++)
        if (counts[i])
          {
            g_string_append_printf (s, "%s\"%s\":%u", first ? "" : ",", names[i], counts[i]);
            first = 0;
          }
      g_string_append_printf (s, "},\"serving_without_info\":%u", no_info);
    }
  if (lg->interrupted)
    g_string_append (s, ",\"interrupted\":true");
  json_end (s);
}

static void
check_attached_phase (void)
{
  if (lg->phase == P_ATTACHING && lg->n_attached == (guint) lg->n_workers)
    {
      report_attached ();
      lg->phase = P_HOLDING;
    }
}

static void
kill_now (void)
{
  GString *s = bf_bench_json_begin ("killed", "pb");

  bf_bench_json_int (s, "workers", lg->n_open);
  json_end (s);
  _exit (lg->n_attached == (guint) lg->n_workers ? 0 : 1);
}

/* Runs the loop until @deadline (monotonic usec; 0: none) or until @done()
 * says so; FALSE when a signal arrived. @silent: watch only the signal fd. */
/* A worker with nothing queued writes into lg->spare_out while it is served
 * and gives it back if it all went out: the buffers that grow to hold an
 * answer are not one per worker, and not grown again for every worker.
 * Any array will do for any worker, so a worker that kept output simply
 * keeps the big one and the spare becomes its old one. */
static gboolean
out_borrow (Worker *w)
{
  GByteArray *own = w->out;

  if (own->len > 0)
    return FALSE;
  w->out = lg->spare_out;
  lg->spare_out = own;
  return TRUE;
}

static void
out_return (Worker *w, gboolean lent)
{
  GByteArray *big = w->out;

  if (!lent || big->len > 0)
    return;
  w->out = lg->spare_out;
  lg->spare_out = big;
}

static gboolean
run_loop (gint64 deadline, gboolean (*done) (void), gboolean silent)
{
  struct epoll_event events[256];
  int sil_ep = -1;

  if (silent)
    {
      struct epoll_event ev = { .events = EPOLLIN, .data.u32 = G_MAXUINT32 };

      sil_ep = epoll_create1 (EPOLL_CLOEXEC);
      epoll_ctl (sil_ep, EPOLL_CTL_ADD, lg->sigfd, &ev);
    }
  for (;;)
    {
      gint64 now = now_usec ();
      gint64 next = deadline;
      int timeout, n;

      if (done && done ())
        break;
      if (!silent)
        while (lg->timers->len > 0 && g_array_index (lg->timers, Timer, 0).when <= now)
          {
            Timer t = heap_pop ();
            Worker *w = &lg->workers[t.worker];

            if (t.gen == w->timer_gen && w->timer_kind != T_NONE)
              {
                gboolean lent = out_borrow (w);

                worker_on_timer (w);
                out_return (w, lent);
              }
          }
      if (done && done ())
        break;
      if (deadline > 0 && now >= deadline)
        break;
      if (!silent && lg->timers->len > 0 && (next == 0 || g_array_index (lg->timers, Timer, 0).when < next))
        next = g_array_index (lg->timers, Timer, 0).when;
      timeout = next == 0 ? 1000 : (int) MAX (MIN ((next - now + 999) / 1000, 1000), 0);
      n = epoll_wait (silent ? sil_ep : lg->epfd, events, G_N_ELEMENTS (events), timeout);
      if (n < 0 && errno == EINTR)
        continue;
      for (int i = 0; i < n; i++)
        {
          if (events[i].data.u32 == G_MAXUINT32)
            {
              struct signalfd_siginfo si;

              if (read (lg->sigfd, &si, sizeof si) <= 0)
                continue;
              if (si.ssi_signo == SIGUSR1)
                lg->flap_requested = TRUE;
              else
                {
                  if (sil_ep >= 0)
                    close (sil_ep);
                  lg->interrupted = TRUE;
                  return FALSE;
                }
              continue;
            }
          {
            Worker *w = &lg->workers[events[i].data.u32];
            gboolean lent = out_borrow (w);

            worker_on_event (w, events[i].events);
            out_return (w, lent);
          }
        }
    }
  if (sil_ep >= 0)
    close (sil_ep);
  return TRUE;
}

static gboolean all_attached (void) { return lg->n_attached == (guint) lg->n_workers; }
static gboolean flap_requested (void) { return lg->flap_requested; }

/* --flap-cycles N: N times, the network goes away under every attached
 * worker at once (each socket closed: the master gets a FIN, as when the
 * kernel closes a killed worker's socket) and all reconnect at once, with
 * no backoff; one "flapped" line per cycle once all are attached again.
 * Before each cycle: --flap-pause seconds, or (< 0) a SIGUSR1, so that a
 * script can look at the master in between. */
static gboolean
run_flaps (void)
{
  for (int cycle = 1; cycle <= lg->flap_cycles; cycle++)
    {
      Stats before;
      gint64 start, realtime;
      guint dropped = 0;
      gboolean done;
      GString *s;

      if (lg->flap_pause < 0)
        {
          if (!run_loop (0, flap_requested, FALSE))
            return FALSE;
          lg->flap_requested = FALSE;
        }
      else if (lg->flap_pause > 0 && !run_loop (now_usec () + (gint64) (lg->flap_pause * G_USEC_PER_SEC), NULL, FALSE))
        return FALSE;
      before = lg->st;
      start = now_usec ();
      realtime = g_get_real_time ();
      for (int i = 0; i < lg->n_workers; i++)
        {
          Worker *w = &lg->workers[i];

          if (w->attached_at == 0 || w->state != W_SERVING)
            continue;
          worker_close_fd (w);
          slot_release (w);
          w->attached_at = 0;
          lg->n_attached--;
          w->state = W_IDLE;
          dropped++;
        }
      for (int i = 0; i < lg->n_workers; i++)
        if (lg->workers[i].state == W_IDLE && lg->workers[i].fd < 0 && lg->workers[i].timer_kind == T_NONE)
          worker_start (&lg->workers[i]);
      done = run_loop (start + (gint64) (lg->attach_timeout * G_USEC_PER_SEC), all_attached, FALSE) &&
             all_attached ();
      s = bf_bench_json_begin ("flapped", "pb");
      bf_bench_json_int (s, "cycle", cycle);
      bf_bench_json_int (s, "dropped", dropped);
      bf_bench_json_int (s, "workers", lg->n_attached);
      bf_bench_json_number (s, "seconds", (now_usec () - start) / (gdouble) G_USEC_PER_SEC);
      bf_bench_json_int (s, "dropped_realtime_usec", realtime);
      bf_bench_json_int (s, "attempts", lg->st.attempts - before.attempts);
      bf_bench_json_int (s, "retries", lg->st.retries - before.retries);
      bf_bench_json_int (s, "auth_errors", lg->st.auth_errors - before.auth_errors);
      bf_bench_json_int (s, "closed_by_peer", lg->st.closed_by_peer - before.closed_by_peer);
      json_end (s);
      if (!done)
        return FALSE;
    }
  return TRUE;
}
static gboolean none_open (void) { return lg->n_open == 0; }

static void
leave_all (void)
{
  gint64 t = now_usec ();
  GString *s;
  guint left_open;

  lg->phase = P_STOPPING;
  /* a stopped buildbot-worker: Twisted drops the transport (FIN) */
  for (int i = 0; i < lg->n_workers; i++)
    {
      Worker *w = &lg->workers[i];

      worker_clear_timer (w);
      if (w->fd < 0)
        {
          w->state = W_CLOSED;
          continue;
        }
      w->state = W_LEAVING;
      g_byte_array_set_size (w->out, 0);
      worker_update_events (w);
      shutdown (w->fd, SHUT_WR);
    }
  run_loop (t + (gint64) (lg->close_timeout * G_USEC_PER_SEC), none_open, FALSE);
  left_open = lg->n_open;
  s = bf_bench_json_begin ("stopped", "pb");
  bf_bench_json_number (s, "seconds", (now_usec () - t) / (gdouble) G_USEC_PER_SEC);
  bf_bench_json_int (s, "left_open", left_open);
  g_string_append (s, ",\"mode\":\"fin\"");
  json_traffic (s);
  json_end (s);
}

/* --- set-up ----------------------------------------------------------------- */

static gboolean
parse_url (const char *url)
{
  const char *p = url;
  const char *colon;
  g_autofree char *host = NULL;

  if (g_str_has_prefix (p, "tcp://"))
    p += 6;
  else if (g_str_has_prefix (p, "pb://"))
    p += 5;
  else if (g_str_has_prefix (p, "tcp:"))
    p += 4;
  colon = strrchr (p, ':');
  if (colon == NULL)
    return FALSE;
  host = g_strndup (p, colon - p);
  lg->port = atoi (colon + 1);
  if (lg->port <= 0 || lg->port > 65535)
    return FALSE;
  memset (&lg->addr, 0, sizeof lg->addr);
  lg->addr.sin_family = AF_INET;
  lg->addr.sin_port = htons (lg->port);
  if (g_str_equal (host, "localhost"))
    {
      g_free (host);
      host = g_strdup ("127.0.0.1");
    }
  if (inet_pton (AF_INET, host, &lg->addr.sin_addr) != 1)
    return FALSE;
  /* loopback only: this is a load generator */
  if ((ntohl (lg->addr.sin_addr.s_addr) >> 24) != 127)
    {
      g_printerr ("bf-loadgen-pb: %s is not on loopback (127.0.0.0/8); refusing\n", host);
      exit (2);
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(GOptionContext) ctx = NULL;
  g_autoptr(GError) error = NULL;
  struct rlimit rl;
  sigset_t mask;
  struct epoll_event ev = { 0 };
  GString *s;

  lg->n_workers = 1;
  lg->name_format = g_strdup ("worker-%05d");
  lg->first_index = 1;
  lg->password = g_strdup ("pass");
  lg->concurrency = 50;
  lg->attach_timeout = 120;
  lg->connect_timeout = 60;
  lg->hold = -2;
  lg->resume_grace = 2;
  lg->close_timeout = 10;
  lg->worker_version = g_strdup ("3.7.0");
  lg->output_lines = 10;
  lg->line_bytes = 80;
  {
    GOptionEntry entries[] = {
      { "url", 0, 0, G_OPTION_ARG_STRING, &lg->url, "The master's PB port: tcp://127.0.0.1:PORT (also pb:// or HOST:PORT)", "URL" },
      { "workers", 'n', 0, G_OPTION_ARG_INT, &lg->n_workers, "Simulated workers (default 1)", "N" },
      { "name-format", 0, 0, G_OPTION_ARG_STRING, &lg->name_format, "Worker names (default worker-%05d)", "FMT" },
      { "first-index", 0, 0, G_OPTION_ARG_INT, &lg->first_index, "First worker number (default 1)", "I" },
      { "password", 0, 0, G_OPTION_ARG_STRING, &lg->password, "Password of every worker (default pass)", "PW" },
      { "concurrency", 0, 0, G_OPTION_ARG_INT, &lg->concurrency, "Connection attempts in flight (default 50)", "K" },
      { "in-flight-until", 0, 0, G_OPTION_ARG_STRING, &lg->in_flight_until, "An attempt holds its slot until login (default) or attached", "WHEN" },
      { "attach-prints", 0, 0, G_OPTION_ARG_INT, &lg->attach_prints, "print calls answered after getWorkerInfo before a worker counts as attached (default 0; 1 for buildbot-peer)", "B" },
      { "attach-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &lg->attach_timeout, "Give up attaching after S seconds (default 120)", "S" },
      { "connect-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &lg->connect_timeout, "One attempt: connect to login answered within S seconds (default 60)", "S" },
      { "hold", 0, 0, G_OPTION_ARG_DOUBLE, &lg->hold, "Stay attached S seconds, then leave (default: until SIGINT/SIGTERM; 0 with --kill-after-attach)", "S" },
      { "stop-after-attach", 0, 0, G_OPTION_ARG_NONE, &lg->stop_after_attach, "Leave at once after attaching (= --hold 0)", NULL },
      { "kill-after-attach", 0, 0, G_OPTION_ARG_NONE, &lg->kill_after_attach, "After --hold (or SIGTERM), print \"killed\" and _exit(): every socket closes at once", NULL },
      { "silent-after-attach", 0, 0, G_OPTION_ARG_NONE, &lg->silent_after_attach, "Read and answer nothing for --hold seconds, then report how many the master dropped", NULL },
      { "resume-grace", 0, 0, G_OPTION_ARG_DOUBLE, &lg->resume_grace, "After silence, read for S seconds (default 2)", "S" },
      { "no-reconnect", 0, 0, G_OPTION_ARG_NONE, &lg->no_reconnect, "Do not retry after a failure", NULL },
      { "flap-cycles", 0, 0, G_OPTION_ARG_INT, &lg->flap_cycles, "After attaching, N times: drop every connection at once and reconnect all at once; a \"flapped\" line each time all are attached again (default 0)", "N" },
      { "flap-pause", 0, 0, G_OPTION_ARG_DOUBLE, &lg->flap_pause, "Before each flap cycle wait S seconds, < 0 = until SIGUSR1 (default 0)", "S" },
      { "close-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &lg->close_timeout, "Leaving: wait S seconds for the master to close (default 10)", "S" },
      { "peer-pid", 0, 0, G_OPTION_ARG_INT, &lg->peer_pid, "Report this process's VmRSS too", "PID" },
      { "worker-version", 0, 0, G_OPTION_ARG_STRING, &lg->worker_version, "Reported version (default 3.7.0)", "V" },
      { "basedir-prefix", 0, 0, G_OPTION_ARG_STRING, &lg->basedir_prefix, "Reported basedir is PREFIX/NAME (default /tmp/bf-loadgen)", "DIR" },
      { "command-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &lg->command_seconds, "Fake commands take S seconds (default 0)", "S" },
      { "output-lines", 0, 0, G_OPTION_ARG_INT, &lg->output_lines, "Lines of stdout from a fake shell (default 10)", "N" },
      { "line-bytes", 0, 0, G_OPTION_ARG_INT, &lg->line_bytes, "Bytes per line, newline included (default 80)", "B" },
      { NULL },
    };
    ctx = g_option_context_new ("- N simulated Buildbot workers speaking Perspective Broker");
    g_option_context_add_main_entries (ctx, entries, NULL);
    if (!g_option_context_parse (ctx, &argc, &argv, &error))
      {
        g_printerr ("bf-loadgen-pb: %s\n", error->message);
        return 2;
      }
  }
  if (lg->url == NULL || !parse_url (lg->url))
    {
      g_printerr ("bf-loadgen-pb: --url tcp://127.0.0.1:PORT is needed\n");
      return 2;
    }
  if (lg->n_workers < 1 || lg->concurrency < 1 || lg->line_bytes < 1 || lg->output_lines < 0 ||
      lg->attach_prints < 0 || lg->flap_cycles < 0 ||
      (lg->in_flight_until && !g_str_equal (lg->in_flight_until, "login") && !g_str_equal (lg->in_flight_until, "attached")))
    {
      g_printerr ("bf-loadgen-pb: bad option value\n");
      return 2;
    }
  if (!bf_bench_names_parse (&lg->names, lg->name_format, &error))
    {
      g_printerr ("bf-loadgen-pb: %s\n", error->message);
      return 2;
    }
  if (lg->basedir_prefix == NULL)
    lg->basedir_prefix = g_strdup ("/tmp/bf-loadgen");
  if (lg->stop_after_attach)
    lg->hold = 0;
  if (lg->hold == -2)
    lg->hold = lg->kill_after_attach ? 0 : -1;

  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t) lg->n_workers + 64)
    g_printerr ("bf-loadgen-pb: warning: RLIMIT_NOFILE %lu < %d workers + 64\n",
                (unsigned long) rl.rlim_cur, lg->n_workers);

  debug = g_getenv ("BF_LOADGEN_DEBUG") != NULL;
  lg->environ = g_get_environ ();
  lg->os_release = bf_bench_read_os_release ();
  lg->info_scratch = g_string_new (NULL);
  lg->spare_out = g_byte_array_sized_new (16384);
  lg->rand = g_rand_new ();
  lg->timers = g_array_new (FALSE, FALSE, sizeof (Timer));
  g_queue_init (&lg->waiting);
  lg->epfd = epoll_create1 (EPOLL_CLOEXEC);
  sigemptyset (&mask);
  sigaddset (&mask, SIGINT);
  sigaddset (&mask, SIGTERM);
  sigaddset (&mask, SIGUSR1);
  sigprocmask (SIG_BLOCK, &mask, NULL);
  lg->sigfd = signalfd (-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  ev.events = EPOLLIN;
  ev.data.u32 = G_MAXUINT32;
  epoll_ctl (lg->epfd, EPOLL_CTL_ADD, lg->sigfd, &ev);

  lg->workers = g_new0 (Worker, lg->n_workers);
  for (int i = 0; i < lg->n_workers; i++)
    {
      Worker *w = &lg->workers[i];

      w->index = i;
      w->fd = -1;
      w->name = bf_bench_names_format (&lg->names, lg->first_index + i);
      w->out = g_byte_array_new ();
      w->builders = g_ptr_array_new_with_free_func (g_free);
    }

  s = bf_bench_json_begin ("start", "pb");
  bf_bench_json_int (s, "workers", lg->n_workers);
  bf_bench_json_int (s, "threads", 1);
  bf_bench_json_int (s, "concurrency", lg->concurrency);
  bf_bench_json_int (s, "pid", getpid ());
  json_end (s);

  lg->t0 = now_usec ();
  lg->phase = P_ATTACHING;
  for (int i = 0; i < lg->n_workers; i++)
    worker_start (&lg->workers[i]);
  if (!run_loop (lg->t0 + (gint64) (lg->attach_timeout * G_USEC_PER_SEC), all_attached, FALSE))
    {
      report_attached ();
      if (lg->kill_after_attach)
        kill_now ();
      leave_all ();
      return 1;
    }
  report_attached ();
  lg->phase = P_HOLDING;
  if (lg->flap_cycles > 0 && !run_flaps ())
    {
      if (lg->kill_after_attach)
        kill_now ();
      leave_all ();
      return 1;
    }

  if (lg->silent_after_attach)
    {
      gint64 t;
      guint dropped = 0;

      lg->phase = P_SILENT;
      s = bf_bench_json_begin ("silent", "pb");
      bf_bench_json_number (s, "silent_seconds", MAX (lg->hold, 0));
      json_end (s);
      run_loop (now_usec () + (gint64) (MAX (lg->hold, 0) * G_USEC_PER_SEC), NULL, TRUE);
      lg->phase = P_RESUMED;
      t = now_usec ();
      run_loop (t + (gint64) (lg->resume_grace * G_USEC_PER_SEC), NULL, FALSE);
      for (int i = 0; i < lg->n_workers; i++)
        dropped += lg->workers[i].dropped;
      s = bf_bench_json_begin ("resumed", "pb");
      bf_bench_json_int (s, "dropped_by_master", dropped);
      json_end (s);
      leave_all ();
      return 0;
    }

  if (lg->hold != 0)
    {
      gboolean signalled = !run_loop (lg->hold < 0 ? 0 : now_usec () + (gint64) (lg->hold * G_USEC_PER_SEC), NULL, FALSE);

      s = bf_bench_json_begin ("held", "pb");
      bf_bench_json_int (s, "attached", lg->n_attached);
      json_traffic (s);
      json_end (s);
      (void) signalled;
    }
  if (lg->kill_after_attach)
    kill_now ();
  leave_all ();
  return lg->n_attached == (guint) lg->n_workers ? 0 : 1;
}
