/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bf-loadgen: impersonate many Buildbot workers from one process.
 *
 * Every simulated worker is one WebSocket client connection speaking Buildbot's
 * msgpack protocol (msgpack_experimental_v7) and answering the master the way
 * an unmodified buildbot-worker 3.7 does (buildbot_worker/msgpack.py, pb.py,
 * base.py and commands/): print, keepalive, get_worker_info,
 * set_worker_settings, start_command, interrupt_command, shutdown, and the
 * responses to its own update/complete/transfer requests, whose seq_number it
 * counts from 0 per connection.  Commands are faked: nothing is executed and
 * nothing is written to disk (see "Commands" below).
 *
 * The same binary works against Buildbot's own master (tests/bench/buildbot-peer)
 * and against buildfleetd (Listen=127.0.0.1:PORT, one [Worker NAME] group per
 * simulated worker with the same Password=).  Only loopback targets are
 * accepted.
 *
 * What is measured
 * ----------------
 * t0 is the monotonic time at which the first connection attempt starts.
 *
 * A worker is *attached* when the master has completed its attach sequence
 * with it, observed from the worker side as:
 *   1. the response to the master's set_worker_settings request has been
 *      handed to the socket, and
 *   2. after that, --attach-prints further `print` requests have arrived and
 *      been answered.
 * Buildbot's master ends its sequence with one `print "attached"` per builder
 * the worker serves (after listdir/mkdir of the builder directories), so use
 * --attach-prints=<builders per worker> (1 with buildbot-peer's default
 * config).  buildfleetd considers a worker attached once it has the
 * set_worker_settings response, so use the default --attach-prints=0 there.
 *
 * The "attached" phase line reports:
 *   seconds   t(last worker attached) - t0
 *   rate      attached workers / seconds
 *   handshake_ms  per worker: start of the successful connection attempt
 *                 (TCP connect) -> HTTP 101 received
 *   attach_ms     per worker: start of its first attempt -> attached
 *                 (includes retries and the master's queueing)
 * with p50/p95/p99/max over all attached workers.
 *
 * --concurrency K bounds the connection attempts in flight: an attempt holds
 * a slot from TCP connect until the WebSocket handshake has completed or failed
 * (--in-flight-until=handshake, default), or until the worker is attached
 * (--in-flight-until=attached).
 *
 * Leaving, after the attach phase and --hold SECONDS:
 *   default / --stop-after-attach
 *       each worker leaves like a stopped buildbot-worker: Twisted drops the
 *       transport, i.e. a TCP FIN without a WebSocket close frame (with
 *       --close-frame: an orderly close frame 1001 instead).  The "stopped"
 *       line reports how long until the master had closed every connection.
 *   --kill-after-attach
 *       print the "killed" line and _exit(): the kernel closes every socket at
 *       once, exactly as SIGKILL of all worker processes would (no close frame,
 *       FIN/RST by the kernel).  Detection must be measured on the master side;
 *       the line carries realtime_usec (CLOCK_REALTIME, like the D-Bus
 *       timestamps) to correlate with.
 *   --silent-after-attach
 *       the workers hang for --hold seconds: the thread contexts that own
 *       every epoll set (and so the pong replies too) are simply
 *       not iterated, each thread waiting in a nested loop on an empty private
 *       context, while the main thread runs only the hold timer and the
 *       signal handlers.  The kernel keeps the TCP connections ESTABLISHED and
 *       ACKs data into the receive buffers, so the master sees neither FIN nor
 *       RST, no pongs and no msgpack responses: the same as a worker process
 *       stopped with SIGSTOP or a wedged host.  Afterwards the sockets are read
 *       again for --resume-grace seconds and the "resumed" line reports how
 *       many connections the master had dropped meanwhile.
 *
 * Commands
 * --------
 * shell emits the real worker's header lines, then --output-lines lines of
 * --line-bytes bytes (newline included) on stdout, spread over
 * --command-seconds, then rc 0, the elapsedTime header and `elapsed`, then
 * complete nil.  Output goes through a model of the worker's BufferManager:
 * consecutive chunks of one stream are joined into [text, [newline offsets],
 * [times]] and an update is sent when buffer_size (from set_worker_settings)
 * would be exceeded, buffer_timeout has passed, or the command ends.
 * interrupt_command flushes, then reports "command interrupted", signal 9 and
 * rc -1, as the real worker does.  mkdir/rmdir/cpdir/listdir/stat/glob/rmfile
 * work on an in-memory directory set per worker; upload_file sends a fake file
 * of --upload-bytes, upload_directory an empty tar archive, download_file reads
 * and discards what the master offers.  Unlike the real worker, at most
 * --update-window of one command's requests are in flight (0 = unbounded, like
 * the real worker) so that a fast fake command cannot queue unbounded memory.
 *
 * The wire
 * --------
 * The generator must cost less than the master it loads, so the transport is
 * its own (it is not the product): raw non-blocking sockets in one
 * edge-triggered epoll set per thread, which the thread's GMainContext watches
 * as a single fd, so a main-loop iteration costs O(ready sockets), not
 * O(sockets).  The master still gets the real thing: the upgrade request
 * libsoup 3 sent, header for header (Basic auth, a fresh Sec-WebSocket-Key,
 * whose Sec-WebSocket-Accept is checked), masked client frames, pongs for
 * pings, the close handshake, and the same msgpack answers.  Per message
 * there is no allocation: input is read into a per-thread buffer and parsed
 * in place (only a partial frame is copied to the worker), decoded into a
 * per-thread msgpack zone cleared after each message, and what a worker
 * answers while its input is parsed leaves in one send().  get_worker_info's
 * answer is packed once around the three per-worker strings.
 *
 * Threads
 * -------
 * The workers are split over --threads shards, each a thread with its own
 * GMainContext, epoll set, buffers and counters; a worker only ever runs in
 * its shard's thread.  There are never more threads than CPUs the process
 * may run on.  The main thread sequences the phases (g_main_context_invoke
 * to the shards, notes back to it) and collects figures by asking each shard
 * for a copy.
 *
 * Output: one JSON object per line on stdout per phase; diagnostics on stderr.
 * Exit status: 0 when every worker attached, 1 otherwise, 2 on usage errors.
 */

#define _GNU_SOURCE 1   /* memmem */

#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>
#include <gio/gio.h>
#include <msgpack.h>

#include "bf-bench-output.h"

#define DEFAULT_URL "ws://127.0.0.1:9989"
#define DEFAULT_WORKER_VERSION "3.7.0"
#define WORKER_COMMAND_VERSION "3.1"
#define MAX_LOGGED_ERRORS 10
#define EMPTY_TAR_SIZE 10240

/* The real worker's command registry, in its order. */
static const char * const worker_command_names[] = {
  "shell", "uploadFile", "upload_file", "uploadDirectory", "upload_directory",
  "downloadFile", "download_file", "mkdir", "rmdir", "cpdir", "stat", "glob",
  "listdir", "rmfile",
};

/* What create-worker leaves in a worker's base directory besides info/. */
static const char * const basedir_files[] = {
  "buildbot.tac", "twistd.hostname", "twistd.log",
};

typedef struct _Loadgen Loadgen;
typedef struct _Shard Shard;
typedef struct _Worker Worker;
typedef struct _FakeCommand FakeCommand;

typedef enum {
  PHASE_ATTACHING,
  PHASE_HOLDING,
  PHASE_SILENT,
  PHASE_RESUMED,
  PHASE_STOPPING,
} Phase;

typedef enum {
  WORKER_IDLE,        /* not started yet, or waiting to retry */
  WORKER_QUEUED,      /* waiting for a connection slot */
  WORKER_CONNECTING,
  WORKER_OPEN,
  WORKER_ATTACHED,
  WORKER_LEAVING,     /* we closed (FIN or close frame), waiting for the end */
  WORKER_DONE,        /* will not connect again */
} WorkerState;

/* Where a worker's connection is (Worker.conn). */
typedef enum {
  CONN_NONE,          /* no socket */
  CONN_TCP,           /* non-blocking connect() in progress */
  CONN_UPGRADE,       /* HTTP upgrade request sent, waiting for the 101 */
  CONN_WS,            /* WebSocket frames both ways */
} ConnState;

typedef enum {
  CMD_SHELL,
  CMD_MKDIR,
  CMD_RMDIR,
  CMD_CPDIR,
  CMD_STAT,
  CMD_GLOB,
  CMD_LISTDIR,
  CMD_RMFILE,
  CMD_UPLOAD_FILE,
  CMD_UPLOAD_DIRECTORY,
  CMD_DOWNLOAD_FILE,
} CommandKind;

typedef enum {
  PENDING_UPDATE,
  PENDING_COMPLETE,
  PENDING_UPLOAD_WRITE,
  PENDING_UPLOAD_CLOSE,
  PENDING_UPLOAD_UTIME,
  PENDING_DIRECTORY_WRITE,
  PENDING_DIRECTORY_UNPACK,
  PENDING_READ,
  PENDING_READ_CLOSE,
} PendingKind;

typedef enum {
  ENTRY_HEADER,
  ENTRY_STDOUT,
  ENTRY_STDERR,
  ENTRY_VALUE,        /* any other key with a pre-encoded msgpack value */
} EntryKind;

static const char * const entry_keys[] = { "header", "stdout", "stderr", NULL };

typedef struct {
  EntryKind kind;
  char *key;          /* ENTRY_VALUE only */
  GBytes *value;      /* ENTRY_VALUE only: msgpack-encoded */
  GString *text;      /* log entries */
  GArray *offsets;    /* gint64: index of every '\n' in text */
  GArray *times;      /* double: unix time of every line */
} OutEntry;

/* Model of buildbot_worker.util.buffer_manager.BufferManager. */
typedef struct {
  GPtrArray *entries;
  gint64 len;
} OutBuffer;

/* Reference counted with g_rc_box: held by the worker's table, by every
 * request awaiting a response, and while a step runs. */
struct _FakeCommand {
  Shard *shard;       /* whose thread runs it */
  Worker *worker;     /* NULL once its connection is gone */
  GBytes *id;         /* command_id exactly as the master sent it (msgpack) */
  char *id_text;
  CommandKind kind;
  OutBuffer out;
  gint64 start_usec;
  guint source_id;
  guint flush_id;     /* buffer_timeout */
  guint in_flight;    /* our requests for this command awaiting a response */
  gboolean paused;    /* producer waits for the update window */
  gboolean interrupted;
  gboolean completed;

  /* shell */
  gint64 lines_total;
  gint64 lines_done;
  gint line_bytes;
  gboolean want_stdout;
  gdouble seconds;
  gdouble max_time;   /* maxTime, 0 = none */
  gdouble io_timeout; /* timeout (seconds without output), 0 = none */
  char *max_time_text;
  char *io_timeout_text;
  char *argv_repr;    /* RunProcess.fake_command as the worker prints it */
  gint64 last_output_usec;

  /* transfers */
  char *path;
  gint64 blocksize;
  gint64 remaining;   /* maxsize left, -1 = unlimited */
  gint64 data_left;   /* fake payload still to send */
  gboolean keepstamp;
  gboolean exists;
  int rc;
  char *stderr_text;
  char *failure;      /* for `complete` */
  char *to_path;      /* cpdir */
  GBytes *payload;    /* upload_directory: the archive */
  gsize payload_offset;
};

typedef struct {
  FakeCommand *command;   /* owned reference, may be NULL */
  PendingKind kind;
} Pending;

struct _Worker {
  Loadgen *lg;
  Shard *shard;
  guint number;           /* the %d in the name */
  char *name;
  char *basedir;
  WorkerState state;
  int source_index;       /* --source-addresses: bind to 127.0.0.<1 + this>, -1 = no bind */
  char *auth;             /* base64 of NAME:PASSWORD for the Authorization header */

  guint connect_timeout_id;
  guint retry_id;
  guint leave_id;
  gboolean holds_slot;
  gboolean flapping;      /* --flap-cycles: we dropped it, it comes back at once */

  /* the connection: a non-blocking socket in the shard's epoll set */
  int fd;                 /* -1 = none */
  ConnState conn;
  gboolean write_shut;    /* we sent our FIN (leaving like a stopped worker) */
  gboolean close_sent;    /* we sent a close frame */
  guint16 close_code;     /* from the master's close frame, 0 = none */
  char ws_key[25];        /* Sec-WebSocket-Key of this attempt */
  guint8 *rbuf;           /* input not parsed yet (a partial frame), or NULL */
  gsize rlen, rcap;
  guint8 *wbuf;           /* output the socket did not take yet, or NULL */
  gsize wlen, wcap;
  GByteArray *frag;       /* a fragmented message being reassembled */
  guint8 frag_opcode;
  guint32 conn_serial;    /* tells this connection's epoll events from a closed one's */

  guint32 next_seq;
  GHashTable *pending;    /* seq + 1 -> Pending */
  GHashTable *commands;   /* GBytes id -> FakeCommand */
  GPtrArray *dirs;        /* absolute paths made by mkdir/cpdir */
  gboolean settings_done;
  guint prints_after_settings;
  gboolean ever_attached;
  gboolean shutdown_requested;

  guint attempts;         /* since the last attach */
  gint64 first_attempt_usec;
  gint64 attempt_usec;
  gdouble handshake_ms;

  gint64 buffer_size;
  gdouble buffer_timeout;
  gint64 max_line_length;
};

typedef struct {
  char *url;
  int workers;
  int first_index;
  char *name_format;
  char *password;
  int concurrency;
  char *in_flight_until;
  int attach_prints;
  gdouble attach_timeout;
  gdouble connect_timeout;
  int max_attempts;
  gdouble hold;
  gboolean stop_after_attach;
  gboolean kill_after_attach;
  gboolean silent_after_attach;
  gdouble resume_grace;
  gboolean close_frame;
  gdouble close_timeout;
  gboolean no_reconnect;
  int flap_cycles;
  gdouble flap_pause;
  gint64 output_lines;
  int line_bytes;
  gdouble command_seconds;
  int update_window;
  gint64 upload_bytes;
  char *basedir_prefix;
  char *worker_version;
  int source_addresses;
  int threads;
  int peer_pid;
  gboolean progress;
  gboolean verbose;
} Options;

typedef struct {
  guint64 attempts;
  guint64 retries;
  guint64 connect_errors;
  guint64 http_401;
  guint64 http_other;
  guint64 timeouts;
  guint64 closed_by_peer;
  guint64 closed_before_attach;
  guint64 reattached;
  guint64 messages_in;
  guint64 messages_out;
  guint64 bytes_in;
  guint64 bytes_out;
  guint64 text_frames;
  guint64 bad_messages;
  guint64 prints;
  guint64 keepalives;
  guint64 commands;
  guint64 commands_done;
  guint64 interrupts;
  guint64 shutdowns;
  guint64 updates;
  guint64 output_bytes;
  guint64 error_responses;
  guint64 unexpected_responses;
  guint64 unknown_ops;
  guint64 transfer_bytes;
} Stats;

/* One thread with its own main context, epoll set and a contiguous slice of
 * the workers.  Everything a worker does runs in its shard's thread; the
 * main thread only sequences the phases. */
struct _Shard {
  Loadgen *lg;
  guint index;
  GThread *thread;
  GMainContext *ctx;
  GMainLoop *loop;
  Phase phase;

  int epfd;                       /* every socket of the shard, edge-triggered */
  guint epoll_id;                 /* the one GSource watching epfd */
  guint8 *scratch;                /* read buffer shared by the shard's sockets */
  GByteArray *obuf;               /* frames for sh->batch */
  GByteArray *tbuf;               /* a frame for any other worker, sent at once */
  Worker *batch;                  /* frames for this worker wait in obuf until its input is parsed */
  GChecksum *sha1;                /* Sec-WebSocket-Accept */
  GString *request;               /* the upgrade request being written */
  guint32 mask_state;             /* xorshift for the frame masking keys */
  msgpack_zone zone;              /* decoded messages, cleared after each */
  Worker *workers;
  guint n_workers;
  GQueue queue;
  guint in_flight;
  guint concurrency;
  gint n_state[WORKER_DONE + 1];  /* atomic: the main thread reads them */
  gint n_attached_first;          /* atomic */
  gint64 t_last_attach;
  GArray *handshake_ms;
  GArray *attach_ms;
  gboolean told_attached;
  gboolean told_idle;
  gboolean told_stopped;

  msgpack_sbuffer sbuf;
  msgpack_packer pk;
  guint8 *block;                  /* fake upload data */
  gsize block_size;
  Stats stats;

  /* copies for the main thread, under lg->lock */
  Stats snap_stats;
  GArray *snap_handshake_ms;
  GArray *snap_attach_ms;
  gint64 snap_t_last_attach;
  gboolean snap_ready;

  /* --silent-after-attach */
  GMainContext *silent_ctx;
  GMainLoop *silent_loop;
};

struct _Loadgen {
  Options opt;
  GMainLoop *loop;                /* main thread: phases, signals, progress */
  Phase phase;
  gboolean interrupted;
  guint n_signals;
  int exit_status;

  struct sockaddr_storage target; /* --url's host and port */
  socklen_t target_len;
  char *request_path;             /* path?query of --url */
  char *request_host;             /* the Host header */
  char *user_agent;
  BfBenchNames names;            /* --name-format */
  gboolean in_flight_until_attached;
  guint n_sources;                /* source addresses per shard */

  Worker *workers;
  guint n_workers;
  Shard *shards;
  guint n_shards;
  guint shards_attached;          /* main thread only */
  guint shards_idle;
  guint shards_stopped;

  GMutex lock;
  GCond cond;

  gint64 t0;
  guint attach_timeout_id;
  guint phase_timeout_id;
  guint progress_id;
  guint sigint_id;
  guint sigterm_id;
  guint sigusr1_id;
  gboolean flap_requested;        /* SIGUSR1 */
  gint flaps_done;                /* atomic: shards that dropped their workers */
  gint flap_dropped;              /* atomic */

  char **environ;
  GPtrArray *os_release;          /* alternating key, value */
  GBytes *info_parts[4];          /* get_worker_info's answer around the per-worker strings */
  GBytes *empty_tar;
  gint logged_errors;             /* atomic */
};

static void worker_schedule_retry (Worker *w);
static void worker_check_attached (Worker *w);
static void command_flush (FakeCommand *c);
static void command_finish (FakeCommand *c, const char *failure);
static void command_kick (FakeCommand *c);
static void command_unref (FakeCommand *c);
static void shard_pump (Shard *sh);
static void shard_check (Shard *sh);

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static gdouble
now_unix (void)
{
  return (gdouble) g_get_real_time () / G_USEC_PER_SEC;
}

static void
lg_warn (Loadgen *lg, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
lg_warn (Loadgen *lg, const char *format, ...)
{
  va_list args;
  g_autofree char *text = NULL;
  gint n = g_atomic_int_add (&lg->logged_errors, 1);

  if (!lg->opt.verbose && n >= MAX_LOGGED_ERRORS)
    return;
  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("bf-loadgen: %s%s\n", text,
              (!lg->opt.verbose && n == MAX_LOGGED_ERRORS - 1) ?
              " (further messages suppressed; use --verbose)" : "");
}

/* Sources of a shard live in its context, not in the global default one. */
static guint
shard_attach (Shard *sh, GSource *source, GSourceFunc func, gpointer data, const char *name)
{
  guint id;

  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, name);
  id = g_source_attach (source, sh->ctx);
  g_source_unref (source);
  return id;
}

static guint
shard_timeout (Shard *sh, guint ms, GSourceFunc func, gpointer data, const char *name)
{
  return shard_attach (sh, g_timeout_source_new (ms), func, data, name);
}

static guint
shard_idle (Shard *sh, GSourceFunc func, gpointer data, const char *name)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  return shard_attach (sh, source, func, data, name);
}

static void
shard_clear_source (Shard *sh, guint *id)
{
  GSource *source;

  if (*id == 0)
    return;
  source = g_main_context_find_source_by_id (sh->ctx, *id);
  if (source != NULL)
    g_source_destroy (source);
  *id = 0;
}

static guint lg_open (Loadgen *lg);

static void
json_end (Loadgen *lg, GString *s)
{
  bf_bench_json_end (s, lg_open (lg), lg->opt.peer_pid);
}

static void
json_traffic (const Stats *st, GString *s)
{

  bf_bench_json_int (s, "messages_in", st->messages_in);
  bf_bench_json_int (s, "messages_out", st->messages_out);
  bf_bench_json_int (s, "bytes_in", st->bytes_in);
  bf_bench_json_int (s, "bytes_out", st->bytes_out);
  bf_bench_json_int (s, "commands", st->commands);
  bf_bench_json_int (s, "commands_done", st->commands_done);
  bf_bench_json_int (s, "updates", st->updates);
  bf_bench_json_int (s, "output_bytes", st->output_bytes);
  bf_bench_json_int (s, "transfer_bytes", st->transfer_bytes);
  bf_bench_json_int (s, "interrupts", st->interrupts);
  bf_bench_json_int (s, "shutdowns", st->shutdowns);
  bf_bench_json_int (s, "prints", st->prints);
  bf_bench_json_int (s, "keepalives", st->keepalives);
  bf_bench_json_int (s, "error_responses", st->error_responses);
  bf_bench_json_int (s, "unexpected_responses", st->unexpected_responses);
  bf_bench_json_int (s, "unknown_ops", st->unknown_ops);
  bf_bench_json_int (s, "bad_messages", st->bad_messages);
  bf_bench_json_int (s, "closed_by_peer", st->closed_by_peer);
  bf_bench_json_int (s, "reattached", st->reattached);
}

/* ------------------------------------------------------------------------ */
/* msgpack helpers                                                          */

static void
pk_str (msgpack_packer *pk, const char *s)
{
  size_t n = strlen (s);

  msgpack_pack_str (pk, n);
  msgpack_pack_str_body (pk, s, n);
}

static void
pk_strn (msgpack_packer *pk, const char *s, size_t n)
{
  msgpack_pack_str (pk, n);
  msgpack_pack_str_body (pk, s, n);
}

static void
pk_raw (Shard *sh, GBytes *encoded)
{
  gsize n;
  const char *data = g_bytes_get_data (encoded, &n);

  msgpack_sbuffer_write (&sh->sbuf, data, n);
}

static GBytes *
encode_object (const msgpack_object *o)
{
  msgpack_sbuffer sb;
  msgpack_packer pk;
  GBytes *bytes;

  msgpack_sbuffer_init (&sb);
  msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_object (&pk, *o);
  bytes = g_bytes_new (sb.data, sb.size);
  msgpack_sbuffer_destroy (&sb);
  return bytes;
}

static GBytes *
encode_int (gint64 v)
{
  msgpack_object o = { .type = v >= 0 ? MSGPACK_OBJECT_POSITIVE_INTEGER : MSGPACK_OBJECT_NEGATIVE_INTEGER };

  o.via.i64 = v;
  return encode_object (&o);
}

static GBytes *
encode_double (gdouble v)
{
  msgpack_object o = { .type = MSGPACK_OBJECT_FLOAT64 };

  o.via.f64 = v;
  return encode_object (&o);
}

static const msgpack_object *
mp_get (const msgpack_object *map, const char *key)
{
  size_t n = strlen (key);

  if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
    return NULL;
  for (uint32_t i = 0; i < map->via.map.size; i++)
    {
      const msgpack_object *k = &map->via.map.ptr[i].key;

      if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
          memcmp (k->via.str.ptr, key, n) == 0)
        return &map->via.map.ptr[i].val;
    }
  return NULL;
}

static char *
mp_dup_str (const msgpack_object *o)
{
  if (o == NULL)
    return NULL;
  if (o->type == MSGPACK_OBJECT_STR)
    return g_strndup (o->via.str.ptr, o->via.str.size);
  if (o->type == MSGPACK_OBJECT_BIN)
    return g_strndup (o->via.bin.ptr, o->via.bin.size);
  return NULL;
}

static gboolean
mp_int (const msgpack_object *o, gint64 *out)
{
  if (o == NULL)
    return FALSE;
  switch (o->type)
    {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      *out = o->via.u64 > G_MAXINT64 ? G_MAXINT64 : (gint64) o->via.u64;
      return TRUE;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      *out = o->via.i64;
      return TRUE;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      *out = (gint64) o->via.f64;
      return TRUE;
    default:
      return FALSE;
    }
}

static gboolean
mp_double (const msgpack_object *o, gdouble *out)
{
  gint64 i;

  if (o != NULL && (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64))
    {
      *out = o->via.f64;
      return TRUE;
    }
  if (mp_int (o, &i))
    {
      *out = i;
      return TRUE;
    }
  return FALSE;
}

/* Python truthiness, as the worker applies it to want_stdout and friends. */
static gboolean
mp_truthy (const msgpack_object *o, gboolean absent)
{
  if (o == NULL)
    return absent;
  switch (o->type)
    {
    case MSGPACK_OBJECT_NIL:
      return FALSE;
    case MSGPACK_OBJECT_BOOLEAN:
      return o->via.boolean;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      return o->via.i64 != 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      return o->via.f64 != 0;
    case MSGPACK_OBJECT_STR:
      return o->via.str.size > 0;
    case MSGPACK_OBJECT_BIN:
      return o->via.bin.size > 0;
    case MSGPACK_OBJECT_ARRAY:
      return o->via.array.size > 0;
    case MSGPACK_OBJECT_MAP:
      return o->via.map.size > 0;
    default:
      return TRUE;
    }
}

/* A rough Python repr() of a str (or of bytes, with the b prefix the worker's
 * argv line shows), for the argv/logfiles header lines. */
static void
append_py_repr_full (GString *s, const char *text, gboolean bytes)
{
  if (bytes)
    g_string_append_c (s, 'b');
  g_string_append_c (s, '\'');
  for (const char *p = text; *p; p++)
    {
      if (*p == '\'' || *p == '\\')
        g_string_append_c (s, '\\');
      if (*p == '\n')
        g_string_append (s, "\\n");
      else
        g_string_append_c (s, *p);
    }
  g_string_append_c (s, '\'');
}

static void
append_py_repr (GString *s, const char *text)
{
  append_py_repr_full (s, text, FALSE);
}

/* ------------------------------------------------------------------------ */
/* sending                                                                  */

static gboolean
worker_can_send (Worker *w)
{
  return w->conn == CONN_WS && !w->write_shut && !w->close_sent;
}

static void
buf_append (guint8 **buf, gsize *len, gsize *cap, const void *data, gsize n)
{
  if (*len + n > *cap)
    {
      *cap = MAX (MAX (*cap * 2, *len + n), 4096);
      *buf = g_realloc (*buf, *cap);
    }
  memcpy (*buf + *len, data, n);
  *len += n;
}

/* A socket that failed a write is shut down both ways: the epoll loop then
 * sees the end of the connection and conn_closed() runs from there, never
 * from under a caller that still holds the worker's state. */
static void
conn_break (Worker *w)
{
  if (w->fd >= 0)
    shutdown (w->fd, SHUT_RDWR);
}

/* Hands bytes to the socket in order; what it does not take waits in wbuf
 * for EPOLLOUT. */
static void
conn_write (Worker *w, const guint8 *data, gsize n)
{
  if (w->fd < 0 || n == 0)
    return;
  if (w->wlen == 0)
    {
      ssize_t k;

      do
        k = send (w->fd, data, n, MSG_NOSIGNAL);
      while (k < 0 && errno == EINTR);
      if (k < 0 && errno != EAGAIN)
        {
          conn_break (w);
          return;
        }
      if (k > 0)
        {
          data += k;
          n -= k;
        }
      if (n == 0)
        return;
    }
  buf_append (&w->wbuf, &w->wlen, &w->wcap, data, n);
}

/* EPOLLOUT: the rest of wbuf. */
static void
conn_flush (Worker *w)
{
  gsize done = 0;

  while (done < w->wlen)
    {
      ssize_t k = send (w->fd, w->wbuf + done, w->wlen - done, MSG_NOSIGNAL);

      if (k < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno != EAGAIN)
            {
              conn_break (w);
              w->wlen = 0;
            }
          break;
        }
      done += k;
    }
  if (done > 0 && done < w->wlen)
    memmove (w->wbuf, w->wbuf + done, w->wlen - done);
  w->wlen -= MIN (done, w->wlen);
  if (w->wlen == 0)
    {
      g_clear_pointer (&w->wbuf, g_free);
      w->wcap = 0;
    }
}

/* Appends one client frame (FIN set, masked as RFC 6455 requires of a
 * client, with a fresh key) to sh->obuf; sent at once unless the worker's
 * input is being parsed, in which case everything it answers goes out in
 * one send() afterwards. */
static void
conn_send_frame (Worker *w, guint8 opcode, const guint8 *payload, gsize n)
{
  Shard *sh = w->shard;
  guint8 head[14];
  gsize h = 0, at;
  guint32 x = sh->mask_state;
  guint8 key[4];
  guint8 *out;
  GByteArray *buf;

  /* xorshift32: unpredictable enough for a mask, and no syscall */
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  sh->mask_state = x;
  memcpy (key, &x, 4);

  head[h++] = 0x80 | opcode;
  if (n < 126)
    head[h++] = 0x80 | n;
  else if (n <= 0xffff)
    {
      head[h++] = 0x80 | 126;
      head[h++] = n >> 8;
      head[h++] = n & 0xff;
    }
  else
    {
      head[h++] = 0x80 | 127;
      for (int i = 7; i >= 0; i--)
        head[h++] = (guint8) ((guint64) n >> (8 * i));
    }
  memcpy (head + h, key, 4);
  h += 4;

  buf = sh->batch == w ? sh->obuf : sh->tbuf;
  at = buf->len;
  g_byte_array_set_size (buf, at + h + n);
  out = buf->data + at;
  memcpy (out, head, h);
  out += h;
  for (gsize i = 0; i < n; i++)
    out[i] = payload[i] ^ key[i & 3];
  if (buf == sh->tbuf)
    {
      conn_write (w, buf->data, buf->len);
      g_byte_array_set_size (buf, 0);
    }
}

/* Sends what has been packed into sh->sbuf and clears it. */
static void
worker_send_packed (Worker *w)
{
  Shard *sh = w->shard;

  if (worker_can_send (w))
    {
      conn_send_frame (w, 0x2, (const guint8 *) sh->sbuf.data, sh->sbuf.size);
      sh->stats.messages_out++;
      sh->stats.bytes_out += sh->sbuf.size;
    }
  msgpack_sbuffer_clear (&sh->sbuf);
}

/* {op: 'response', seq_number: <request's>, result: ..., [is_exception: True]}
 * in the worker's key order.  The caller packs the result between head and
 * tail. */
static void
response_head (Shard *sh, const msgpack_object *seq, gboolean is_exception)
{
  msgpack_sbuffer_clear (&sh->sbuf);
  msgpack_pack_map (&sh->pk, is_exception ? 4 : 3);
  pk_str (&sh->pk, "op");
  pk_str (&sh->pk, "response");
  pk_str (&sh->pk, "seq_number");
  msgpack_pack_object (&sh->pk, *seq);
  pk_str (&sh->pk, "result");
}

static void
response_tail (Worker *w, gboolean is_exception)
{
  if (is_exception)
    {
      pk_str (&w->shard->pk, "is_exception");
      msgpack_pack_true (&w->shard->pk);
    }
  worker_send_packed (w);
}

static void
worker_respond (Worker *w, const msgpack_object *seq, const char *error)
{
  response_head (w->shard, seq, error != NULL);
  if (error != NULL)
    pk_str (&w->shard->pk, error);
  else
    msgpack_pack_nil (&w->shard->pk);
  response_tail (w, error != NULL);
}

/* Worker -> master requests: {op, <fields...>, seq_number}. */
static void
request_head (Worker *w, const char *op, guint n_fields)
{
  Shard *sh = w->shard;

  msgpack_sbuffer_clear (&sh->sbuf);
  msgpack_pack_map (&sh->pk, n_fields + 2);
  pk_str (&sh->pk, "op");
  pk_str (&sh->pk, op);
}

static void
pending_free (gpointer data)
{
  Pending *p = data;

  g_clear_pointer (&p->command, command_unref);
  g_free (p);
}

static void
request_tail (Worker *w, FakeCommand *c, PendingKind kind)
{
  Shard *sh = w->shard;
  Pending *p;
  guint32 seq = w->next_seq++;

  pk_str (&sh->pk, "seq_number");
  msgpack_pack_uint32 (&sh->pk, seq);
  if (!worker_can_send (w))
    {
      msgpack_sbuffer_clear (&sh->sbuf);
      return;
    }
  if (w->pending == NULL)
    w->pending = g_hash_table_new_full (NULL, NULL, NULL, pending_free);
  p = g_new0 (Pending, 1);
  p->kind = kind;
  if (c != NULL)
    {
      p->command = g_rc_box_acquire (c);
      c->in_flight++;
    }
  g_hash_table_insert (w->pending, GUINT_TO_POINTER (seq + 1), p);
  worker_send_packed (w);
}

/* ------------------------------------------------------------------------ */
/* the worker's output buffer                                               */

static void
out_entry_free (gpointer data)
{
  OutEntry *e = data;

  g_free (e->key);
  g_clear_pointer (&e->value, g_bytes_unref);
  if (e->text != NULL)
    g_string_free (e->text, TRUE);
  g_clear_pointer (&e->offsets, g_array_unref);
  g_clear_pointer (&e->times, g_array_unref);
  g_free (e);
}

static gint64
command_buffer_size (FakeCommand *c)
{
  return c->worker != NULL ? c->worker->buffer_size : 64 * 1024;
}

static gboolean
command_flush_timeout (gpointer data)
{
  FakeCommand *c = data;

  c->flush_id = 0;
  command_flush (c);
  return G_SOURCE_REMOVE;
}

/* BufferManager.setup_timeout(): the first append after a send starts the
 * buffer_timeout clock. */
static void
out_note_append (FakeCommand *c)
{
  if (c->flush_id != 0 || c->worker == NULL)
    return;
  c->flush_id = shard_timeout (c->shard, (guint) (c->worker->buffer_timeout * 1000),
                               command_flush_timeout, c, "bf-loadgen buffer timeout");
}

/* Appends stream text (complete lines) like BufferManager.append() */
static void
out_append_log (FakeCommand *c, EntryKind kind, const char *text, gsize len, gdouble t)
{
  OutBuffer *b = &c->out;
  OutEntry *last = NULL;
  gint64 n_lines = 0, data_len, buffer_size = command_buffer_size (c);
  gsize base;

  for (gsize i = 0; i < len; i++)
    if (text[i] == '\n')
      n_lines++;
  data_len = len + 8 * (2 * n_lines);
  if (data_len > buffer_size - b->len)
    command_flush (c);

  if (b->entries->len > 0)
    last = g_ptr_array_index (b->entries, b->entries->len - 1);
  if (last == NULL || last->kind != kind)
    {
      last = g_new0 (OutEntry, 1);
      last->kind = kind;
      last->text = g_string_sized_new (len);
      last->offsets = g_array_new (FALSE, FALSE, sizeof (gint64));
      last->times = g_array_new (FALSE, FALSE, sizeof (gdouble));
      g_ptr_array_add (b->entries, last);
    }
  base = last->text->len;
  g_string_append_len (last->text, text, len);
  for (gsize i = 0; i < len; i++)
    if (text[i] == '\n')
      {
        gint64 offset = base + i;

        g_array_append_val (last->offsets, offset);
        g_array_append_val (last->times, t);
      }
  b->len += data_len;
  if (data_len > buffer_size)
    command_flush (c);
  else
    out_note_append (c);
}

static void
out_append_text (FakeCommand *c, EntryKind kind, const char *text)
{
  out_append_log (c, kind, text, strlen (text), now_unix ());
}

static void
out_append_value (FakeCommand *c, const char *key, GBytes *value)
{
  OutBuffer *b = &c->out;
  OutEntry *e;

  if (20 > command_buffer_size (c) - b->len)
    command_flush (c);
  e = g_new0 (OutEntry, 1);
  e->kind = ENTRY_VALUE;
  e->key = g_strdup (key);
  e->value = value;
  g_ptr_array_add (b->entries, e);
  b->len += 20;
  out_note_append (c);
}

/* The worker's doStart() sends `elapsed` when the command's deferred fires. */
static void
command_append_elapsed (FakeCommand *c)
{
  out_append_value (c, "elapsed",
                    encode_double ((g_get_monotonic_time () - c->start_usec) /
                                   (gdouble) G_USEC_PER_SEC));
}

static void
command_flush (FakeCommand *c)
{
  OutBuffer *b = &c->out;
  Worker *w = c->worker;
  Shard *sh = c->shard;
  msgpack_packer *pk;

  shard_clear_source (c->shard, &c->flush_id);
  if (b->entries->len == 0)
    return;
  if (w == NULL)
    {
      g_ptr_array_set_size (b->entries, 0);
      b->len = 0;
      return;
    }
  pk = &sh->pk;
  request_head (w, "update", 2);
  pk_str (pk, "args");
  msgpack_pack_array (pk, b->entries->len);
  for (guint i = 0; i < b->entries->len; i++)
    {
      OutEntry *e = g_ptr_array_index (b->entries, i);

      msgpack_pack_array (pk, 2);
      if (e->kind == ENTRY_VALUE)
        {
          pk_str (pk, e->key);
          pk_raw (sh, e->value);
          continue;
        }
      pk_str (pk, entry_keys[e->kind]);
      msgpack_pack_array (pk, 3);
      pk_strn (pk, e->text->str, e->text->len);
      msgpack_pack_array (pk, e->offsets->len);
      for (guint j = 0; j < e->offsets->len; j++)
        msgpack_pack_int64 (pk, g_array_index (e->offsets, gint64, j));
      msgpack_pack_array (pk, e->times->len);
      for (guint j = 0; j < e->times->len; j++)
        msgpack_pack_double (pk, g_array_index (e->times, gdouble, j));
      sh->stats.output_bytes += e->text->len;
    }
  pk_str (pk, "command_id");
  pk_raw (sh, c->id);
  request_tail (w, c, PENDING_UPDATE);
  sh->stats.updates++;
  g_ptr_array_set_size (b->entries, 0);
  b->len = 0;
}

/* ------------------------------------------------------------------------ */
/* fake commands                                                            */

static FakeCommand *
command_new (Worker *w, const msgpack_object *id, CommandKind kind)
{
  FakeCommand *c = g_rc_box_new0 (FakeCommand);

  c->shard = w->shard;
  c->worker = w;
  c->id = encode_object (id);
  c->id_text = mp_dup_str (id);
  if (c->id_text == NULL)
    {
      gint64 n = 0;

      c->id_text = mp_int (id, &n) ? g_strdup_printf ("%" G_GINT64_FORMAT, n) : g_strdup ("?");
    }
  c->kind = kind;
  c->out.entries = g_ptr_array_new_with_free_func (out_entry_free);
  c->start_usec = g_get_monotonic_time ();
  c->remaining = -1;
  return c;
}

static void
command_clear (gpointer data)
{
  FakeCommand *c = data;

  shard_clear_source (c->shard, &c->source_id);
  shard_clear_source (c->shard, &c->flush_id);
  g_bytes_unref (c->id);
  g_free (c->id_text);
  g_ptr_array_unref (c->out.entries);
  g_free (c->path);
  g_free (c->stderr_text);
  g_free (c->failure);
  g_free (c->to_path);
  g_free (c->max_time_text);
  g_free (c->io_timeout_text);
  g_free (c->argv_repr);
  g_clear_pointer (&c->payload, g_bytes_unref);
}

static void
command_unref (FakeCommand *c)
{
  g_rc_box_release_full (c, command_clear);
}

/* The worker dropped the command (connection gone, or replaced). */
static void
command_detach (gpointer data)
{
  FakeCommand *c = data;

  shard_clear_source (c->shard, &c->source_id);
  shard_clear_source (c->shard, &c->flush_id);
  c->worker = NULL;
  command_unref (c);
}

static gboolean
command_window_full (FakeCommand *c)
{
  int window = c->worker != NULL ? c->worker->lg->opt.update_window : 0;

  return window > 0 && c->in_flight >= (guint) window;
}

/* protocol_complete(): flush the buffer, then {op: complete, args: failure}. */
static void
command_finish (FakeCommand *c, const char *failure)
{
  Worker *w = c->worker;

  if (c->completed)
    return;
  c->completed = TRUE;
  shard_clear_source (c->shard, &c->source_id);
  if (w == NULL)
    return;

  g_rc_box_acquire (c);
  command_flush (c);
  request_head (w, "complete", 2);
  pk_str (&w->shard->pk, "args");
  if (failure != NULL)
    pk_str (&w->shard->pk, failure);
  else
    msgpack_pack_nil (&w->shard->pk);
  pk_str (&w->shard->pk, "command_id");
  pk_raw (w->shard, c->id);
  request_tail (w, c, PENDING_COMPLETE);
  w->shard->stats.commands_done++;
  if (w->commands != NULL && g_hash_table_lookup (w->commands, c->id) == c)
    g_hash_table_remove (w->commands, c->id);
  command_unref (c);
}

/* ---- shell ---- */

/* RunProcess.finished(), then Command.doStart()'s `elapsed`, which is
 * skipped when the master interrupted the command (it is no longer .running) */
static void
shell_end (FakeCommand *c, gboolean killed, gboolean send_elapsed)
{
  gdouble elapsed = (g_get_monotonic_time () - c->start_usec) / (gdouble) G_USEC_PER_SEC;
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_autofree char *line = NULL;

  if (killed)
    out_append_text (c, ENTRY_HEADER, "process killed by signal 9\n");
  out_append_value (c, "rc", encode_int (killed ? -1 : 0));
  line = g_strdup_printf ("elapsedTime=%s\n", g_ascii_formatd (buf, sizeof buf, "%0.6f", elapsed));
  out_append_text (c, ENTRY_HEADER, line);
  if (send_elapsed)
    command_append_elapsed (c);
  command_finish (c, NULL);
}

/* RunProcess.kill(): the header now, the process dies asynchronously */
static gboolean shell_killed (gpointer data);

static void
shell_kill (FakeCommand *c, const char *why)
{
  g_autofree char *header = g_strdup_printf ("\n%s, attempting to kill\n", why);

  shard_clear_source (c->shard, &c->source_id);
  out_append_text (c, ENTRY_HEADER, header);
  c->source_id = shard_idle (c->shard, shell_killed, c, "bf-loadgen shell kill");
}

/* doMaxTimeout() / doTimeout() */
static gboolean
shell_check_timeouts (FakeCommand *c)
{
  gint64 now = g_get_monotonic_time ();
  g_autofree char *why = NULL;

  if (c->max_time > 0 && now - c->start_usec >= c->max_time * G_USEC_PER_SEC)
    why = g_strdup_printf ("command timed out: %s seconds elapsed running %s",
                           c->max_time_text, c->argv_repr);
  else if (c->io_timeout > 0 && now - c->last_output_usec >= c->io_timeout * G_USEC_PER_SEC)
    why = g_strdup_printf ("command timed out: %s seconds without output running %s",
                           c->io_timeout_text, c->argv_repr);
  if (why == NULL)
    return FALSE;
  shell_kill (c, why);
  return TRUE;
}

static void
shell_emit_line (FakeCommand *c, GString *scratch)
{
  Worker *w = c->worker;
  gsize want = c->line_bytes;

  g_string_printf (scratch, "%s %s line %07" G_GINT64_FORMAT " ",
                   w->name, c->id_text, c->lines_done + 1);
  if (want == 0)
    want = 1;
  if (scratch->len > want - 1)
    g_string_truncate (scratch, want - 1);
  while (scratch->len < want - 1)
    g_string_append_c (scratch, 'x');
  g_string_append_c (scratch, '\n');
  out_append_log (c, ENTRY_STDOUT, scratch->str, scratch->len, now_unix ());
  c->lines_done++;
  c->last_output_usec = g_get_monotonic_time ();
}

static gboolean
shell_tick (gpointer data)
{
  FakeCommand *c = data;
  Worker *w = c->worker;
  g_autoptr(GString) scratch = NULL;
  guint64 updates_before;
  gint64 due = c->lines_total;

  if (w == NULL || c->completed)
    {
      c->source_id = 0;
      return G_SOURCE_REMOVE;
    }
  if (shell_check_timeouts (c))
    return G_SOURCE_REMOVE;   /* shell_kill() replaced this source */
  if (c->seconds > 0)
    {
      gdouble frac = (g_get_monotonic_time () - c->start_usec) / (c->seconds * G_USEC_PER_SEC);

      if (frac < 1)
        due = MIN (c->lines_total, (gint64) (frac * c->lines_total));
    }
  if (!c->want_stdout)
    c->lines_done = due;

  scratch = g_string_sized_new (c->line_bytes + 64);
  updates_before = w->shard->stats.updates;
  while (c->lines_done < due)
    {
      if (command_window_full (c))
        {
          c->paused = TRUE;
          c->source_id = 0;
          return G_SOURCE_REMOVE;
        }
      /* one update per dispatch, so that every worker gets its turn */
      if (w->shard->stats.updates != updates_before)
        return G_SOURCE_CONTINUE;
      shell_emit_line (c, scratch);
    }
  if (c->lines_done >= c->lines_total && (c->seconds <= 0 ||
      g_get_monotonic_time () - c->start_usec >= c->seconds * G_USEC_PER_SEC))
    {
      c->source_id = 0;
      shell_end (c, FALSE, TRUE);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
command_kick (FakeCommand *c)
{
  if (c->source_id != 0 || c->completed || c->worker == NULL)
    return;
  c->paused = FALSE;
  if (c->seconds > 0)
    c->source_id = shard_timeout (c->shard, 50, shell_tick, c, "bf-loadgen shell output");
  else
    c->source_id = shard_idle (c->shard, shell_tick, c, "bf-loadgen shell output");
}

static void
append_command_display (GString *s, const msgpack_object *cmd, gboolean argv_repr)
{
  if (cmd->type == MSGPACK_OBJECT_STR || cmd->type == MSGPACK_OBJECT_BIN)
    {
      g_autofree char *text = mp_dup_str (cmd);

      if (argv_repr)
        append_py_repr_full (s, text, TRUE);
      else
        g_string_append (s, text);
      return;
    }
  if (cmd->type != MSGPACK_OBJECT_ARRAY)
    return;
  if (argv_repr)
    g_string_append_c (s, '[');
  for (uint32_t i = 0; i < cmd->via.array.size; i++)
    {
      const msgpack_object *arg = &cmd->via.array.ptr[i];
      g_autofree char *text = NULL;

      /* ['obfuscated', real, shown] */
      if (arg->type == MSGPACK_OBJECT_ARRAY && arg->via.array.size == 3)
        arg = &arg->via.array.ptr[2];
      text = mp_dup_str (arg);
      if (text == NULL)
        text = g_strdup ("?");
      if (i > 0)
        g_string_append (s, argv_repr ? ", " : " ");
      if (argv_repr)
        append_py_repr_full (s, text, TRUE);
      else
        {
          gboolean plain = *text != '\0';

          for (const char *p = text; *p && plain; p++)
            plain = g_ascii_isalnum (*p) || strchr ("@%+=:,./-_", *p) != NULL;
          if (plain)
            g_string_append (s, text);
          else
            {
              g_autofree char *quoted = g_shell_quote (text);
              g_string_append (s, quoted);
            }
        }
    }
  if (argv_repr)
    g_string_append_c (s, ']');
}

/* str() of a Python int or float */
static char *
py_number_text (const msgpack_object *o)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  gint64 i;

  if (o != NULL && (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64))
    {
      g_ascii_dtostr (buf, sizeof buf, o->via.f64);
      if (strpbrk (buf, ".eEn") == NULL)
        g_strlcat (buf, ".0", sizeof buf);
      return g_strdup (buf);
    }
  if (mp_int (o, &i))
    return g_strdup_printf ("%" G_GINT64_FORMAT, i);
  return g_strdup ("None");
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char * const *) a, *(char * const *) b);
}

/* RunProcess._startCommand()'s header lines. */
static void
shell_headers (FakeCommand *c, const msgpack_object *args)
{
  Worker *w = c->worker;
  const msgpack_object *cmd = mp_get (args, "command");
  const msgpack_object *env = mp_get (args, "env");
  const msgpack_object *logfiles = mp_get (args, "logfiles");
  g_autoptr(GString) h = g_string_new (NULL);
  g_autofree char *workdir = mp_dup_str (mp_get (args, "workdir"));
  g_auto(GStrv) environ = g_strdupv (w->lg->environ);
  gdouble timeout = 0, max_time = 0;

  append_command_display (h, cmd, FALSE);
  g_string_append_printf (h, "\n in dir %s", workdir ? workdir : "");
  if (mp_double (mp_get (args, "timeout"), &timeout) && timeout > 0)
    {
      g_autofree char *t = py_number_text (mp_get (args, "timeout"));
      g_string_append_printf (h, " (timeout %s %s)", t, timeout == 1 ? "sec" : "secs");
    }
  else
    timeout = 0;
  if (mp_double (mp_get (args, "maxTime"), &max_time) && max_time > 0)
    {
      g_autofree char *t = py_number_text (mp_get (args, "maxTime"));
      g_string_append_printf (h, " (maxTime %s %s)", t, max_time == 1 ? "sec" : "secs");
    }
  else
    max_time = 0;
  g_string_append (h, "\n watching logfiles {");
  if (logfiles != NULL && logfiles->type == MSGPACK_OBJECT_MAP)
    for (uint32_t i = 0; i < logfiles->via.map.size; i++)
      {
        g_autofree char *k = mp_dup_str (&logfiles->via.map.ptr[i].key);
        g_autofree char *v = mp_dup_str (&logfiles->via.map.ptr[i].val);

        if (i > 0)
          g_string_append (h, ", ");
        append_py_repr (h, k ? k : "?");
        g_string_append (h, ": ");
        append_py_repr (h, v ? v : "?");
      }
  g_string_append (h, "}\n argv: ");
  {
    g_autoptr(GString) argv = g_string_new (NULL);

    if (cmd != NULL && (cmd->type == MSGPACK_OBJECT_STR || cmd->type == MSGPACK_OBJECT_BIN))
      {
        g_string_append (argv, "[b'/bin/sh', b'-c', ");
        append_command_display (argv, cmd, TRUE);
        g_string_append (argv, "]");
      }
    else if (cmd != NULL)
      append_command_display (argv, cmd, TRUE);
    g_string_append (h, argv->str);
    c->argv_repr = g_string_free (g_steal_pointer (&argv), FALSE);
  }
  g_string_append_c (h, '\n');
  c->max_time = max_time;
  c->io_timeout = timeout;
  c->max_time_text = py_number_text (mp_get (args, "maxTime"));
  c->io_timeout_text = py_number_text (mp_get (args, "timeout"));

  if (mp_truthy (mp_get (args, "logEnviron"), TRUE))
    {
      g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);

      if (env != NULL && env->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < env->via.map.size; i++)
          {
            g_autofree char *k = mp_dup_str (&env->via.map.ptr[i].key);
            const msgpack_object *v = &env->via.map.ptr[i].val;

            if (k == NULL)
              continue;
            if (v->type == MSGPACK_OBJECT_NIL)
              environ = g_environ_unsetenv (environ, k);
            else if (v->type == MSGPACK_OBJECT_ARRAY)
              {
                g_autoptr(GString) joined = g_string_new (NULL);

                for (uint32_t j = 0; j < v->via.array.size; j++)
                  {
                    g_autofree char *part = mp_dup_str (&v->via.array.ptr[j]);

                    if (j > 0)
                      g_string_append_c (joined, ':');
                    g_string_append (joined, part ? part : "");
                  }
                environ = g_environ_setenv (environ, k, joined->str, TRUE);
              }
            else
              {
                g_autofree char *s = mp_dup_str (v);

                environ = g_environ_setenv (environ, k, s ? s : "", TRUE);
              }
          }
      environ = g_environ_setenv (environ, "PWD", workdir ? workdir : "", TRUE);
      for (char **e = environ; *e; e++)
        g_ptr_array_add (lines, g_strdup_printf ("  %s\n", *e));
      g_ptr_array_sort (lines, compare_strings);
      g_string_append (h, " environment:\n");
      for (guint i = 0; i < lines->len; i++)
        g_string_append (h, g_ptr_array_index (lines, i));
    }
  g_string_append (h, " using PTY: False\n");
  out_append_log (c, ENTRY_HEADER, h->str, h->len, now_unix ());
}

static gboolean
shell_killed (gpointer data)
{
  FakeCommand *c = data;

  c->source_id = 0;
  shell_end (c, TRUE, !c->interrupted);
  return G_SOURCE_REMOVE;
}

/* ---- directory set ---- */

static char *
normalize_path (const char *path)
{
  return g_canonicalize_filename (path, "/");
}

static gboolean
vfs_is_dir (Worker *w, const char *path)
{
  g_autofree char *info = g_build_filename (w->basedir, "info", NULL);

  if (g_str_equal (path, w->basedir) || g_str_equal (path, info) || g_str_equal (path, "/"))
    return TRUE;
  if (g_str_has_prefix (w->basedir, path) && w->basedir[strlen (path)] == '/')
    return TRUE;   /* an ancestor of the base directory */
  for (guint i = 0; w->dirs != NULL && i < w->dirs->len; i++)
    {
      const char *d = g_ptr_array_index (w->dirs, i);

      if (g_str_equal (d, path) ||
          (g_str_has_prefix (d, path) && d[strlen (path)] == '/'))
        return TRUE;
    }
  return FALSE;
}

static gboolean
vfs_is_file (Worker *w, const char *path)
{
  for (guint i = 0; i < G_N_ELEMENTS (basedir_files); i++)
    {
      g_autofree char *f = g_build_filename (w->basedir, basedir_files[i], NULL);

      if (g_str_equal (f, path))
        return TRUE;
    }
  return FALSE;
}

static void
vfs_add (Worker *w, const char *path)
{
  if (vfs_is_dir (w, path))
    return;
  if (w->dirs == NULL)
    w->dirs = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (w->dirs, g_strdup (path));
}

static void
vfs_remove (Worker *w, const char *path)
{
  for (guint i = 0; w->dirs != NULL && i < w->dirs->len;)
    {
      const char *d = g_ptr_array_index (w->dirs, i);

      if (g_str_equal (d, path) || (g_str_has_prefix (d, path) && d[strlen (path)] == '/'))
        g_ptr_array_remove_index_fast (w->dirs, i);
      else
        i++;
    }
}

static void
add_child (GPtrArray *names, const char *dir, const char *path)
{
  g_autofree char *parent = NULL;
  g_autofree char *base = NULL;
  const char *rest;

  if (!g_str_has_prefix (path, dir))
    return;
  rest = path + strlen (dir);
  if (!g_str_equal (dir, "/"))
    {
      if (*rest != '/')
        return;
      rest++;
    }
  if (*rest == '\0')
    return;
  base = g_strndup (rest, strcspn (rest, "/"));
  if (!g_ptr_array_find_with_equal_func (names, base, g_str_equal, NULL))
    g_ptr_array_add (names, g_steal_pointer (&base));
}

static GPtrArray *
vfs_list (Worker *w, const char *dir)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *info = g_build_filename (w->basedir, "info", NULL);

  add_child (names, dir, w->basedir);
  add_child (names, dir, info);
  for (guint i = 0; i < G_N_ELEMENTS (basedir_files); i++)
    {
      g_autofree char *f = g_build_filename (w->basedir, basedir_files[i], NULL);
      add_child (names, dir, f);
    }
  for (guint i = 0; w->dirs != NULL && i < w->dirs->len; i++)
    add_child (names, dir, g_ptr_array_index (w->dirs, i));
  return names;
}

static GBytes *
encode_string_list (GPtrArray *names)
{
  msgpack_sbuffer sb;
  msgpack_packer pk;
  GBytes *bytes;

  msgpack_sbuffer_init (&sb);
  msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array (&pk, names->len);
  for (guint i = 0; i < names->len; i++)
    pk_str (&pk, g_ptr_array_index (names, i));
  bytes = g_bytes_new (sb.data, sb.size);
  msgpack_sbuffer_destroy (&sb);
  return bytes;
}

static GBytes *
encode_stat (gboolean is_dir)
{
  msgpack_sbuffer sb;
  msgpack_packer pk;
  GBytes *bytes;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  /* os.stat_result: mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime */
  gint64 fields[10] = { is_dir ? 040755 : 0100644, 4242, 2049, is_dir ? 2 : 1,
                        getuid (), getgid (), is_dir ? 4096 : 1024, now, now, now };

  msgpack_sbuffer_init (&sb);
  msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array (&pk, 10);
  for (guint i = 0; i < 10; i++)
    msgpack_pack_int64 (&pk, fields[i]);
  bytes = g_bytes_new (sb.data, sb.size);
  msgpack_sbuffer_destroy (&sb);
  return bytes;
}

static GPtrArray *
string_list (const msgpack_object *o)
{
  GPtrArray *list = g_ptr_array_new_with_free_func (g_free);

  if (o != NULL && o->type == MSGPACK_OBJECT_ARRAY)
    {
      for (uint32_t i = 0; i < o->via.array.size; i++)
        {
          char *s = mp_dup_str (&o->via.array.ptr[i]);

          if (s != NULL)
            g_ptr_array_add (list, normalize_path (s));
          g_free (s);
        }
    }
  else
    {
      g_autofree char *s = mp_dup_str (o);

      if (s != NULL)
        g_ptr_array_add (list, normalize_path (s));
    }
  return list;
}

/* A failed os call: the worker sends ('header', msg) without a newline and
 * ('rc', errno).  The header is a partial line for the LineBoundaryFinder, so
 * it only leaves at protocol_complete(), after `elapsed`. */
static void
fs_fail_and_finish (FakeCommand *c, const char *what, const char *path)
{
  g_autofree char *header = g_strdup_printf ("%s: No such file or directory: %s\n", what, path);

  out_append_value (c, "rc", encode_int (ENOENT));
  command_append_elapsed (c);
  out_append_text (c, ENTRY_HEADER, header);
  command_finish (c, NULL);
}

static void
fs_succeed (FakeCommand *c)
{
  out_append_value (c, "rc", encode_int (0));
  command_append_elapsed (c);
  command_finish (c, NULL);
}

/* rm -rf / cp -R run through RunProcess: header lines, rc, elapsedTime. */
static void
fs_run_process (FakeCommand *c, const char * const *argv, gboolean send_rc)
{
  Worker *w = c->worker;
  g_autoptr(GString) h = g_string_new (NULL);
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  for (guint i = 0; argv[i]; i++)
    g_string_append_printf (h, "%s%s", i ? " " : "", argv[i]);
  g_string_append_printf (h, "\n in dir %s (timeout 120 secs)\n watching logfiles {}\n argv: [", w->basedir);
  for (guint i = 0; argv[i]; i++)
    {
      if (i > 0)
        g_string_append (h, ", ");
      append_py_repr_full (h, argv[i], TRUE);
    }
  g_string_append (h, "]\n using PTY: False\n");
  out_append_text (c, ENTRY_HEADER, h->str);
  if (send_rc)
    out_append_value (c, "rc", encode_int (0));
  g_string_printf (h, "elapsedTime=%s\n",
                   g_ascii_formatd (buf, sizeof buf, "%0.6f",
                                    (g_get_monotonic_time () - c->start_usec) / (gdouble) G_USEC_PER_SEC));
  out_append_text (c, ENTRY_HEADER, h->str);
}

static gboolean
fs_async_done (gpointer data)
{
  FakeCommand *c = data;

  c->source_id = 0;
  if (c->worker == NULL)
    return G_SOURCE_REMOVE;
  if (c->kind == CMD_RMDIR)
    {
      const char *argv[] = { "rm", "-rf", c->path, NULL };

      vfs_remove (c->worker, c->path);
      fs_run_process (c, argv, FALSE);
      /* RemoveDirectory sends its own rc after all paths */
      out_append_value (c, "rc", encode_int (0));
    }
  else
    {
      const char *argv[] = { "cp", "-R", "-P", "-p", "-v", c->path, c->to_path, NULL };

      vfs_add (c->worker, c->to_path);
      fs_run_process (c, argv, TRUE);
    }
  command_append_elapsed (c);
  command_finish (c, NULL);
  return G_SOURCE_REMOVE;
}

/* ---- transfers ---- */

static void transfer_step (FakeCommand *c);

static const guint8 *
fake_data (Shard *sh, gsize n)
{
  if (n > sh->block_size)
    {
      g_free (sh->block);
      sh->block = g_malloc (n);
      memset (sh->block, 'x', n);
      sh->block_size = n;
    }
  return sh->block;
}

/* TransferCommand.finished(): rc (and stderr, a partial line flushed last). */
static void
transfer_finished (FakeCommand *c, const char *failure)
{
  g_autofree char *stderr_line = NULL;

  out_append_value (c, "rc", encode_int (c->rc));
  if (!c->interrupted)
    command_append_elapsed (c);
  if (c->stderr_text != NULL)
    {
      stderr_line = g_strconcat (c->stderr_text, "\n", NULL);
      out_append_text (c, ENTRY_STDERR, stderr_line);
    }
  command_finish (c, failure);
}

static void
transfer_send_simple (FakeCommand *c, const char *op, PendingKind kind)
{
  Worker *w = c->worker;

  request_head (w, op, 1);
  pk_str (&w->shard->pk, "command_id");
  pk_raw (w->shard, c->id);
  request_tail (w, c, kind);
}

static void
transfer_write_block (FakeCommand *c, const char *op, PendingKind kind)
{
  Worker *w = c->worker;
  Shard *sh = w->shard;
  gint64 length = c->blocksize;
  gint64 n;
  const guint8 *data;

  if (c->remaining >= 0 && length > c->remaining)
    length = c->remaining;
  if (length <= 0 && c->data_left > 0)
    {
      if (c->stderr_text == NULL)
        {
          c->stderr_text = g_strdup_printf ("Maximum filesize reached, truncating file '%s'", c->path);
          c->rc = 1;
        }
      length = 0;
    }
  n = MIN (length, c->data_left);
  if (n <= 0)
    {
      /* EOF: close the remote writer */
      if (c->kind == CMD_UPLOAD_FILE)
        transfer_send_simple (c, "update_upload_file_close", PENDING_UPLOAD_CLOSE);
      else
        transfer_send_simple (c, "update_upload_directory_unpack", PENDING_DIRECTORY_UNPACK);
      return;
    }
  if (c->payload != NULL)
    data = (const guint8 *) g_bytes_get_data (c->payload, NULL) + c->payload_offset;
  else
    data = fake_data (sh, n);
  request_head (w, op, 2);
  pk_str (&sh->pk, "args");
  msgpack_pack_bin (&sh->pk, n);
  msgpack_pack_bin_body (&sh->pk, data, n);
  pk_str (&sh->pk, "command_id");
  pk_raw (sh, c->id);
  request_tail (w, c, kind);
  c->payload_offset += n;
  c->data_left -= n;
  if (c->remaining >= 0)
    c->remaining -= n;
  sh->stats.transfer_bytes += n;
}

static void
transfer_step (FakeCommand *c)
{
  Worker *w = c->worker;
  Shard *sh = c->shard;

  if (w == NULL || c->completed)
    return;
  switch (c->kind)
    {
    case CMD_UPLOAD_FILE:
      if (c->interrupted || !c->exists)
        c->data_left = 0;
      transfer_write_block (c, "update_upload_file_write", PENDING_UPLOAD_WRITE);
      break;

    case CMD_UPLOAD_DIRECTORY:
      if (c->interrupted)
        c->data_left = 0;
      transfer_write_block (c, "update_upload_directory_write", PENDING_DIRECTORY_WRITE);
      break;

    case CMD_DOWNLOAD_FILE:
      {
        gint64 length = c->blocksize;

        if (c->remaining >= 0 && length > c->remaining)
          length = c->remaining;
        if (c->interrupted || length <= 0)
          {
            if (!c->interrupted && c->stderr_text == NULL)
              {
                c->stderr_text = g_strdup_printf ("Maximum filesize reached, truncating file '%s'", c->path);
                c->rc = 1;
              }
            transfer_send_simple (c, "update_read_file_close", PENDING_READ_CLOSE);
            break;
          }
        request_head (w, "update_read_file", 2);
        pk_str (&sh->pk, "length");
        msgpack_pack_int64 (&sh->pk, length);
        pk_str (&sh->pk, "command_id");
        pk_raw (sh, c->id);
        request_tail (w, c, PENDING_READ);
      }
      break;

    default:
      g_assert_not_reached ();
    }
}

static gboolean
transfer_start_idle (gpointer data)
{
  FakeCommand *c = data;

  c->source_id = 0;
  transfer_step (c);
  return G_SOURCE_REMOVE;
}

/* The master answered one of our requests for command c. */
static void
command_on_response (FakeCommand *c, PendingKind kind, const msgpack_object *result,
                     const char *error)
{
  if (c->in_flight > 0)
    c->in_flight--;
  if (c->worker == NULL || c->completed)
    return;

  switch (kind)
    {
    case PENDING_UPDATE:
      if (c->paused && !command_window_full (c))
        command_kick (c);
      break;

    case PENDING_COMPLETE:
      break;

    case PENDING_UPLOAD_WRITE:
      if (error != NULL)
        {
          /* _close_err(): close the remote writer, keep the failure */
          c->rc = 1;
          c->data_left = 0;
          g_free (c->failure);
          c->failure = g_strdup (error);
          transfer_send_simple (c, "update_upload_file_close", PENDING_UPLOAD_CLOSE);
          break;
        }
      transfer_step (c);
      break;

    case PENDING_DIRECTORY_WRITE:
      if (error != NULL)
        {
          c->rc = 1;
          transfer_finished (c, error);
          break;
        }
      transfer_step (c);
      break;

    case PENDING_UPLOAD_CLOSE:
      if (c->failure == NULL && error == NULL && c->keepstamp && c->exists)
        {
          Worker *w = c->worker;
          gdouble t = now_unix ();

          request_head (w, "update_upload_file_utime", 3);
          pk_str (&w->shard->pk, "access_time");
          msgpack_pack_double (&w->shard->pk, t);
          pk_str (&w->shard->pk, "modified_time");
          msgpack_pack_double (&w->shard->pk, t);
          pk_str (&w->shard->pk, "command_id");
          pk_raw (w->shard, c->id);
          request_tail (w, c, PENDING_UPLOAD_UTIME);
          break;
        }
      if (error != NULL)
        c->rc = 1;
      transfer_finished (c, c->failure != NULL ? c->failure : error);
      break;

    case PENDING_UPLOAD_UTIME:
    case PENDING_DIRECTORY_UNPACK:
      if (error != NULL)
        c->rc = 1;
      transfer_finished (c, error);
      break;

    case PENDING_READ:
      {
        gsize n = 0;

        if (error != NULL)
          {
            /* the loop fails; _close() still closes the reader */
            c->rc = 1;
            g_free (c->failure);
            c->failure = g_strdup (error);
            transfer_send_simple (c, "update_read_file_close", PENDING_READ_CLOSE);
            break;
          }
        if (result != NULL && result->type == MSGPACK_OBJECT_BIN)
          n = result->via.bin.size;
        else if (result != NULL && result->type == MSGPACK_OBJECT_STR)
          n = result->via.str.size;
        if (n == 0)
          {
            transfer_send_simple (c, "update_read_file_close", PENDING_READ_CLOSE);
            break;
          }
        if (c->remaining >= 0)
          c->remaining = MAX (0, c->remaining - (gint64) n);
        c->shard->stats.transfer_bytes += n;
        transfer_step (c);
      }
      break;

    case PENDING_READ_CLOSE:
      transfer_finished (c, c->failure);
      break;

    default:
      break;
    }
}

/* ------------------------------------------------------------------------ */
/* start_command                                                            */

typedef struct {
  const char *name;
  CommandKind kind;
  const char *class_name;
  const char *required[4];    /* Command.requiredArgs, in order */
  const char *setup_keys[3];  /* read by setup() with args[key] */
  gboolean sync;              /* done before start_command is answered */
} CommandSpec;

static const CommandSpec command_specs[] = {
  { "shell", CMD_SHELL, "WorkerShellCommand", { "workdir", "command" }, { NULL }, FALSE },
  { "upload_file", CMD_UPLOAD_FILE, "WorkerFileUploadCommand", { "path", "writer", "blocksize" }, { "maxsize" }, FALSE },
  { "uploadFile", CMD_UPLOAD_FILE, "WorkerFileUploadCommand", { "path", "writer", "blocksize" }, { "maxsize" }, FALSE },
  { "upload_directory", CMD_UPLOAD_DIRECTORY, "WorkerDirectoryUploadCommand", { "path", "writer", "blocksize" }, { "maxsize", "compress" }, FALSE },
  { "uploadDirectory", CMD_UPLOAD_DIRECTORY, "WorkerDirectoryUploadCommand", { "path", "writer", "blocksize" }, { "maxsize", "compress" }, FALSE },
  { "download_file", CMD_DOWNLOAD_FILE, "WorkerFileDownloadCommand", { "path", "reader", "blocksize" }, { "maxsize", "mode" }, FALSE },
  { "downloadFile", CMD_DOWNLOAD_FILE, "WorkerFileDownloadCommand", { "path", "reader", "blocksize" }, { "maxsize", "mode" }, FALSE },
  { "mkdir", CMD_MKDIR, "MakeDirectory", { "paths" }, { NULL }, TRUE },
  { "rmdir", CMD_RMDIR, "RemoveDirectory", { "paths" }, { NULL }, FALSE },
  { "cpdir", CMD_CPDIR, "CopyDirectory", { "to_path", "from_path" }, { NULL }, FALSE },
  { "stat", CMD_STAT, "StatFile", { NULL }, { NULL }, TRUE },
  { "glob", CMD_GLOB, "GlobPath", { "path" }, { NULL }, TRUE },
  { "listdir", CMD_LISTDIR, "ListDir", { NULL }, { NULL }, TRUE },
  { "rmfile", CMD_RMFILE, "RemoveFile", { "path" }, { NULL }, TRUE },
};

/* The msgpack worker's protocol_args_setup() adds writer/reader = None for the
 * snake_case transfer names only. */
static gboolean
arg_present (const CommandSpec *spec, const msgpack_object *args, const char *key)
{
  if (mp_get (args, key) != NULL)
    return TRUE;
  if (g_str_equal (key, "writer"))
    return g_str_equal (spec->name, "upload_file") || g_str_equal (spec->name, "upload_directory");
  if (g_str_equal (key, "reader"))
    return g_str_equal (spec->name, "download_file");
  return FALSE;
}

/* What the worker's errback turns a KeyError inside start() into. */
static char *
key_error_failure (const char *key)
{
  return g_strdup_printf ("[Failure instance: Traceback (failure with no frames): "
                          "<class 'KeyError'>: '%s'\n]", key);
}

static void
command_run_sync (FakeCommand *c, const msgpack_object *args)
{
  Worker *w = c->worker;
  g_autofree char *path = NULL;
  const msgpack_object *path_o = mp_get (args, "path");

  if (path_o != NULL)
    {
      g_autofree char *raw = mp_dup_str (path_o);
      path = raw ? normalize_path (raw) : g_strdup ("");
    }

  switch (c->kind)
    {
    case CMD_MKDIR:
      {
        g_autoptr(GPtrArray) paths = string_list (mp_get (args, "paths"));

        for (guint i = 0; i < paths->len; i++)
          vfs_add (w, g_ptr_array_index (paths, i));
        fs_succeed (c);
      }
      break;

    case CMD_STAT:
    case CMD_LISTDIR:
      if (path == NULL)
        {
          g_autofree char *failure = key_error_failure ("path");

          command_append_elapsed (c);
          command_finish (c, failure);
          break;
        }
      if (c->kind == CMD_STAT && (vfs_is_dir (w, path) || vfs_is_file (w, path)))
        {
          out_append_value (c, "stat", encode_stat (vfs_is_dir (w, path)));
          fs_succeed (c);
        }
      else if (c->kind == CMD_LISTDIR && vfs_is_dir (w, path))
        {
          g_autoptr(GPtrArray) names = vfs_list (w, path);

          out_append_value (c, "files", encode_string_list (names));
          fs_succeed (c);
        }
      else
        fs_fail_and_finish (c, c->kind == CMD_STAT ? "stat" : "listdir", path);
      break;

    case CMD_GLOB:
      {
        g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
        g_autoptr(GPatternSpec) pattern = g_pattern_spec_new (path ? path : "");
        g_autofree char *info = g_build_filename (w->basedir, "info", NULL);
        const char *fixed[] = { w->basedir, info };

        /* glob.glob() over the directories this worker has */
        for (guint i = 0; i < G_N_ELEMENTS (fixed); i++)
          if (g_pattern_spec_match_string (pattern, fixed[i]))
            g_ptr_array_add (found, g_strdup (fixed[i]));
        for (guint i = 0; w->dirs != NULL && i < w->dirs->len; i++)
          if (g_pattern_spec_match_string (pattern, g_ptr_array_index (w->dirs, i)))
            g_ptr_array_add (found, g_strdup (g_ptr_array_index (w->dirs, i)));
        out_append_value (c, "files", encode_string_list (found));
        fs_succeed (c);
      }
      break;

    case CMD_RMFILE:
      if (path != NULL && vfs_is_file (w, path))
        fs_succeed (c);
      else
        fs_fail_and_finish (c, "rmfile", path ? path : "");
      break;

    default:
      g_assert_not_reached ();
    }
}

static GBytes *
make_empty_tar (void)
{
  /* one ustar directory entry "./", end-of-archive blocks, padded to a
   * 10240-byte record like Python's tarfile writes */
  guint8 *tar = g_malloc0 (EMPTY_TAR_SIZE);
  char *h = (char *) tar;
  guint sum = 0;

  strcpy (h, "./");
  strcpy (h + 100, "0000755");
  strcpy (h + 108, "0000000");
  strcpy (h + 116, "0000000");
  strcpy (h + 124, "00000000000");
  g_snprintf (h + 136, 12, "%011o", (guint) (g_get_real_time () / G_USEC_PER_SEC));
  memset (h + 148, ' ', 8);
  h[156] = '5';
  memcpy (h + 257, "ustar", 6);
  memcpy (h + 263, "00", 2);
  for (guint i = 0; i < 512; i++)
    sum += tar[i];
  g_snprintf (h + 148, 8, "%06o", sum);
  h[155] = ' ';
  return g_bytes_new_take (tar, EMPTY_TAR_SIZE);
}

static GBytes *
gzip_bytes (GBytes *in)
{
  g_autoptr(GZlibCompressor) z = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, -1);
  g_autoptr(GInputStream) mem = g_memory_input_stream_new_from_bytes (in);
  g_autoptr(GInputStream) conv = g_converter_input_stream_new (mem, G_CONVERTER (z));
  g_autoptr(GOutputStream) out = g_memory_output_stream_new_resizable ();

  /* memory streams only: nothing here can block */
  if (g_output_stream_splice (out, conv,
                              G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
                              G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET, NULL, NULL) < 0)
    return g_bytes_ref (in);
  return g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (out));
}

static void
command_start_transfer (FakeCommand *c, const msgpack_object *args)
{
  Worker *w = c->worker;
  Loadgen *lg = w->lg;
  g_autofree char *path = mp_dup_str (mp_get (args, "path"));
  g_autofree char *header = NULL;

  c->path = g_strdup (path ? path : "");
  if (!mp_int (mp_get (args, "blocksize"), &c->blocksize) || c->blocksize <= 0)
    c->blocksize = 16 * 1024;
  if (!mp_int (mp_get (args, "maxsize"), &c->remaining))
    c->remaining = -1;

  switch (c->kind)
    {
    case CMD_UPLOAD_FILE:
      c->keepstamp = mp_truthy (mp_get (args, "keepstamp"), FALSE);
      c->exists = lg->opt.upload_bytes >= 0;
      c->data_left = MAX (lg->opt.upload_bytes, 0);
      if (!c->exists)
        {
          c->stderr_text = g_strdup_printf ("Cannot open file '%s' for upload", c->path);
          c->rc = 1;
        }
      break;

    case CMD_UPLOAD_DIRECTORY:
      {
        g_autofree char *compress = mp_dup_str (mp_get (args, "compress"));

        c->exists = TRUE;
        if (compress != NULL && g_str_equal (compress, "gz"))
          c->payload = gzip_bytes (lg->empty_tar);
        else if (compress != NULL && g_str_equal (compress, "bz2"))
          {
            c->payload = g_bytes_new (NULL, 0);
            c->stderr_text = g_strdup ("bf-loadgen cannot produce bz2 archives");
            c->rc = 1;
          }
        else
          c->payload = g_bytes_ref (lg->empty_tar);
        c->data_left = g_bytes_get_size (c->payload);
      }
      break;

    case CMD_DOWNLOAD_FILE:
      c->exists = TRUE;
      break;

    default:
      g_assert_not_reached ();
    }

  if (c->kind != CMD_DOWNLOAD_FILE)
    {
      header = g_strdup_printf ("sending %s\n", c->path);
      out_append_text (c, ENTRY_HEADER, header);
    }
  c->source_id = shard_idle (c->shard, transfer_start_idle, c, "bf-loadgen transfer");
}

static void
worker_on_start_command (Worker *w, const msgpack_object *msg, const msgpack_object *seq)
{
  static const char * const keys[] = { "command_id", "command_name", "args" };
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  const msgpack_object *id = mp_get (msg, "command_id");
  const msgpack_object *args = mp_get (msg, "args");
  g_autofree char *name = NULL;
  const CommandSpec *spec = NULL;
  g_autoptr(GString) missing = NULL;
  FakeCommand *c;

  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    if (mp_get (msg, keys[i]) == NULL)
      {
        g_autofree char *error = g_strdup_printf ("'message did not contain obligatory \"%s\" key'", keys[i]);
        worker_respond (w, seq, error);
        return;
      }

  name = mp_dup_str (mp_get (msg, "command_name"));
  for (guint i = 0; name != NULL && i < G_N_ELEMENTS (command_specs); i++)
    if (g_str_equal (command_specs[i].name, name))
      spec = &command_specs[i];
  if (spec == NULL)
    {
      g_autofree char *error = g_strdup_printf ("unrecognized WorkerCommand '%s'", name ? name : "?");
      worker_respond (w, seq, error);
      return;
    }
  if (args->type != MSGPACK_OBJECT_MAP)
    {
      worker_respond (w, seq, "argument of type 'NoneType' is not iterable");
      return;
    }
  for (guint i = 0; spec->required[i] != NULL; i++)
    if (!arg_present (spec, args, spec->required[i]))
      {
        if (missing == NULL)
          missing = g_string_new (NULL);
        else
          g_string_append (missing, ", ");
        g_string_append (missing, spec->required[i]);
      }
  if (missing != NULL)
    {
      g_autofree char *error = g_strdup_printf ("%s is missing args: %s", spec->class_name, missing->str);
      worker_respond (w, seq, error);
      return;
    }
  for (guint i = 0; spec->setup_keys[i] != NULL; i++)
    if (mp_get (args, spec->setup_keys[i]) == NULL)
      {
        g_autofree char *error = g_strdup_printf ("'%s'", spec->setup_keys[i]);
        worker_respond (w, seq, error);
        return;
      }

  sh->stats.commands++;
  c = command_new (w, id, spec->kind);
  if (w->commands == NULL)
    w->commands = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, NULL, command_detach);
  /* the key is owned by the command, which the table owns */
  g_hash_table_replace (w->commands, c->id, c);

  if (spec->sync)
    {
      g_rc_box_acquire (c);
      command_run_sync (c, args);
      command_unref (c);
      worker_respond (w, seq, NULL);
      return;
    }

  worker_respond (w, seq, NULL);
  switch (spec->kind)
    {
    case CMD_SHELL:
      c->want_stdout = mp_truthy (mp_get (args, "want_stdout"), TRUE);
      c->lines_total = lg->opt.output_lines;
      c->line_bytes = (gint) MIN ((gint64) lg->opt.line_bytes, w->max_line_length);
      c->seconds = lg->opt.command_seconds;
      c->last_output_usec = c->start_usec;
      shell_headers (c, args);
      command_kick (c);
      break;

    case CMD_RMDIR:
    case CMD_CPDIR:
      {
        g_autoptr(GPtrArray) paths = string_list (mp_get (args, spec->kind == CMD_RMDIR ? "paths" : "from_path"));
        g_autofree char *to = mp_dup_str (mp_get (args, "to_path"));

        for (guint i = 1; spec->kind == CMD_RMDIR && i < paths->len; i++)
          vfs_remove (w, g_ptr_array_index (paths, i));
        c->path = g_strdup (paths->len > 0 ? (char *) g_ptr_array_index (paths, 0) : "");
        c->to_path = to ? normalize_path (to) : g_strdup ("");
        c->source_id = shard_idle (c->shard, fs_async_done, c, "bf-loadgen fs command");
      }
      break;

    case CMD_UPLOAD_FILE:
    case CMD_UPLOAD_DIRECTORY:
    case CMD_DOWNLOAD_FILE:
      command_start_transfer (c, args);
      break;

    default:
      g_assert_not_reached ();
    }
}

static void
worker_on_interrupt_command (Worker *w, const msgpack_object *msg, const msgpack_object *seq)
{
  static const char * const keys[] = { "command_id", "why" };
  g_autoptr(GBytes) id = NULL;
  FakeCommand *c = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    if (mp_get (msg, keys[i]) == NULL)
      {
        g_autofree char *error = g_strdup_printf ("'message did not contain obligatory \"%s\" key'", keys[i]);
        worker_respond (w, seq, error);
        return;
      }
  id = encode_object (mp_get (msg, "command_id"));
  if (w->commands != NULL)
    c = g_hash_table_lookup (w->commands, id);
  if (c == NULL || c->completed)
    {
      /* " .. but none was running" */
      worker_respond (w, seq, NULL);
      return;
    }

  w->shard->stats.interrupts++;
  command_flush (c);
  if (c->kind == CMD_SHELL && !c->interrupted)
    {
      c->interrupted = TRUE;
      shell_kill (c, "command interrupted");
    }
  else if (c->kind == CMD_UPLOAD_FILE || c->kind == CMD_UPLOAD_DIRECTORY ||
           c->kind == CMD_DOWNLOAD_FILE)
    {
      /* TransferCommand.interrupt(): rc 1, the loop stops at its next turn */
      c->interrupted = TRUE;
      c->rc = 1;
    }
  worker_respond (w, seq, NULL);
}

/* ------------------------------------------------------------------------ */
/* other master requests                                                    */

static void
pack_kv_str (msgpack_packer *pk, const char *key, const char *value)
{
  pk_str (pk, key);
  pk_str (pk, value);
}

/* A str made of two parts, packed without building it first. */
static void
pk_str2 (msgpack_packer *pk, const char *a, const char *b)
{
  size_t na = strlen (a), nb = strlen (b);

  msgpack_pack_str (pk, na + nb);
  msgpack_pack_str_body (pk, a, na);
  msgpack_pack_str_body (pk, b, nb);
}

/* get_worker_info's answer is the same for every worker but for the name in
 * host and access_uri and the basedir: the constant stretches are packed
 * once (lg->info_parts), and each answer is those bytes with the three
 * strings packed in between. */
static void
pack_worker_info_parts (Loadgen *lg)
{
  msgpack_sbuffer sb;
  msgpack_packer pk;
  guint n_environ = g_strv_length (lg->environ);
  gsize last = 0;
  guint part = 0;

#define INFO_PART_END() \
  G_STMT_START { \
    lg->info_parts[part++] = g_bytes_new (sb.data + last, sb.size - last); \
    last = sb.size; \
  } G_STMT_END

  msgpack_sbuffer_init (&sb);
  msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
  /* info/ files, os-release, then what remote_getWorkerInfo() adds */
  msgpack_pack_map (&pk, 3 + lg->os_release->len / 2 + 7);
  pack_kv_str (&pk, "admin", "bf-loadgen <bf-loadgen@localhost>");
  pk_str (&pk, "host");
  INFO_PART_END ();     /* host: "bf-loadgen simulated worker NAME" */
  pk_str (&pk, "access_uri");
  INFO_PART_END ();     /* access_uri: "bf-loadgen://NAME" */
  for (guint i = 0; i + 1 < lg->os_release->len; i += 2)
    pack_kv_str (&pk, g_ptr_array_index (lg->os_release, i), g_ptr_array_index (lg->os_release, i + 1));
  pk_str (&pk, "environ");
  msgpack_pack_map (&pk, n_environ);
  for (guint i = 0; i < n_environ; i++)
    {
      const char *e = lg->environ[i];
      const char *eq = strchr (e, '=');

      if (eq == NULL)
        {
          pk_str (&pk, e);
          pk_str (&pk, "");
          continue;
        }
      pk_strn (&pk, e, eq - e);
      pk_str (&pk, eq + 1);
    }
  pack_kv_str (&pk, "system", "posix");
  pk_str (&pk, "basedir");
  INFO_PART_END ();     /* basedir: PREFIX/NAME */
  pk_str (&pk, "numcpus");
  msgpack_pack_int (&pk, g_get_num_processors ());
  pack_kv_str (&pk, "version", lg->opt.worker_version);
  pk_str (&pk, "worker_commands");
  msgpack_pack_map (&pk, G_N_ELEMENTS (worker_command_names));
  for (guint i = 0; i < G_N_ELEMENTS (worker_command_names); i++)
    pack_kv_str (&pk, worker_command_names[i], WORKER_COMMAND_VERSION);
  pk_str (&pk, "delete_leftover_dirs");
  msgpack_pack_false (&pk);
  INFO_PART_END ();
  g_assert (part == G_N_ELEMENTS (lg->info_parts));
  msgpack_sbuffer_destroy (&sb);
#undef INFO_PART_END
}

static void
worker_on_get_worker_info (Worker *w, const msgpack_object *seq)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  msgpack_packer *pk = &sh->pk;

  response_head (sh, seq, FALSE);
  pk_raw (sh, lg->info_parts[0]);
  pk_str2 (pk, "bf-loadgen simulated worker ", w->name);
  pk_raw (sh, lg->info_parts[1]);
  pk_str2 (pk, "bf-loadgen://", w->name);
  pk_raw (sh, lg->info_parts[2]);
  pk_str (pk, w->basedir);
  pk_raw (sh, lg->info_parts[3]);
  response_tail (w, FALSE);
}

static void
worker_on_set_worker_settings (Worker *w, const msgpack_object *msg, const msgpack_object *seq)
{
  static const char * const settings[] = { "buffer_size", "buffer_timeout", "newline_re", "max_line_length" };
  const msgpack_object *args = mp_get (msg, "args");
  gint64 i;
  gdouble d;

  if (args == NULL)
    {
      worker_respond (w, seq, "'message did not contain obligatory \"args\" key'");
      return;
    }
  for (guint k = 0; k < G_N_ELEMENTS (settings); k++)
    if (mp_get (args, settings[k]) == NULL)
      {
        worker_respond (w, seq, "'message did not contain obligatory settings for worker'");
        return;
      }
  if (mp_int (mp_get (args, "buffer_size"), &i) && i > 0)
    w->buffer_size = i;
  if (mp_double (mp_get (args, "buffer_timeout"), &d) && d >= 0)
    w->buffer_timeout = d;
  if (mp_int (mp_get (args, "max_line_length"), &i) && i > 1)
    w->max_line_length = i;
  worker_respond (w, seq, NULL);
  w->settings_done = TRUE;
  w->prints_after_settings = 0;
  worker_check_attached (w);
}

static void
worker_leave (Worker *w);

static gboolean
worker_shutdown_timeout (gpointer data)
{
  Worker *w = data;

  w->leave_id = 0;
  worker_leave (w);
  return G_SOURCE_REMOVE;
}

static void
worker_on_response (Worker *w, const msgpack_object *msg, const msgpack_object *seq)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  const msgpack_object *result = mp_get (msg, "result");
  g_autofree char *error = NULL;
  gpointer key, value;
  gint64 n;
  Pending *p;

  if (!mp_int (seq, &n) || n < 0 || n >= G_MAXUINT32 || w->pending == NULL ||
      !g_hash_table_steal_extended (w->pending, GUINT_TO_POINTER ((guint32) n + 1), &key, &value))
    {
      sh->stats.unexpected_responses++;
      lg_warn (lg, "%s: response to a request we did not send (seq_number %" G_GINT64_FORMAT ")",
               w->name, n);
      return;
    }
  p = value;
  /* the worker only checks for the key */
  if (mp_get (msg, "is_exception") != NULL)
    {
      error = mp_dup_str (result);
      if (error == NULL)
        error = g_strdup ("(no message)");
      sh->stats.error_responses++;
      lg_warn (lg, "%s: the master failed our request %" G_GINT64_FORMAT ": %s", w->name, n, error);
    }
  if (p->command != NULL)
    command_on_response (p->command, p->kind, result, error);
  pending_free (p);
}

/* One whole message from the master.  Decoded into the shard's zone, which
 * is cleared afterwards: no allocation per message once the zone has grown. */
static void
worker_on_message (Worker *w, gboolean binary, const char *data, gsize len)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  msgpack_object root;
  size_t off = 0;
  const msgpack_object *msg, *seq, *op_obj;
  char op_short[64];
  g_autofree char *op_long = NULL;
  const char *op = "?";

  sh->stats.messages_in++;
  sh->stats.bytes_in += len;
  if (!binary)
    {
      sh->stats.text_frames++;
      lg_warn (lg, "%s: text frame from the master ignored", w->name);
      return;
    }

  if (msgpack_unpack (data, len, &off, &sh->zone, &root) != MSGPACK_UNPACK_SUCCESS ||
      root.type != MSGPACK_OBJECT_MAP)
    {
      sh->stats.bad_messages++;
      lg_warn (lg, "%s: undecodable message from the master (%" G_GSIZE_FORMAT " bytes)", w->name, len);
      msgpack_zone_clear (&sh->zone);
      return;
    }
  msg = &root;
  seq = mp_get (msg, "seq_number");
  op_obj = mp_get (msg, "op");
  if (seq == NULL || op_obj == NULL)
    {
      sh->stats.bad_messages++;
      lg_warn (lg, "%s: invalid message from the master (no op or seq_number)", w->name);
      msgpack_zone_clear (&sh->zone);
      return;
    }
  /* str and bin share the layout of via.str */
  if ((op_obj->type == MSGPACK_OBJECT_STR || op_obj->type == MSGPACK_OBJECT_BIN) &&
      op_obj->via.str.size < sizeof op_short)
    {
      memcpy (op_short, op_obj->via.str.ptr, op_obj->via.str.size);
      op_short[op_obj->via.str.size] = '\0';
      op = op_short;
    }
  else if (op_obj->type == MSGPACK_OBJECT_STR || op_obj->type == MSGPACK_OBJECT_BIN)
    op = op_long = g_strndup (op_obj->via.str.ptr, op_obj->via.str.size);

  if (g_str_equal (op, "response"))
    worker_on_response (w, msg, seq);
  else if (g_str_equal (op, "print"))
    {
      sh->stats.prints++;
      if (mp_get (msg, "message") == NULL)
        worker_respond (w, seq, "'message did not contain obligatory \"message\" key'");
      else
        {
          worker_respond (w, seq, NULL);
          if (w->settings_done)
            {
              w->prints_after_settings++;
              worker_check_attached (w);
            }
        }
    }
  else if (g_str_equal (op, "keepalive"))
    {
      sh->stats.keepalives++;
      worker_respond (w, seq, NULL);
    }
  else if (g_str_equal (op, "get_worker_info"))
    worker_on_get_worker_info (w, seq);
  else if (g_str_equal (op, "set_worker_settings"))
    worker_on_set_worker_settings (w, msg, seq);
  else if (g_str_equal (op, "start_command"))
    worker_on_start_command (w, msg, seq);
  else if (g_str_equal (op, "interrupt_command"))
    worker_on_interrupt_command (w, msg, seq);
  else if (g_str_equal (op, "shutdown"))
    {
      /* remote_shutdown(): answer, then the process stops 0.2 s later */
      sh->stats.shutdowns++;
      worker_respond (w, seq, NULL);
      w->shutdown_requested = TRUE;
      if (w->leave_id == 0)
        {
          w->leave_id = shard_timeout (w->shard, 200, worker_shutdown_timeout, w,
                                       "bf-loadgen shutdown");
        }
    }
  else
    {
      g_autofree char *error = g_strdup_printf ("Command %s does not exist.", op);

      sh->stats.unknown_ops++;
      worker_respond (w, seq, error);
    }
  msgpack_zone_clear (&sh->zone);
}

/* ------------------------------------------------------------------------ */
/* connections                                                              */

static void
worker_set_state (Worker *w, WorkerState state)
{
  Shard *sh = w->shard;

  g_atomic_int_add (&sh->n_state[w->state], -1);
  g_atomic_int_add (&sh->n_state[state], 1);
  w->state = state;
}

static void
worker_release_slot (Worker *w)
{
  if (!w->holds_slot)
    return;
  w->holds_slot = FALSE;
  w->shard->in_flight--;
}

static void
worker_drop_connection_state (Worker *w)
{
  g_clear_pointer (&w->commands, g_hash_table_unref);
  g_clear_pointer (&w->pending, g_hash_table_unref);
  w->next_seq = 0;
  w->settings_done = FALSE;
  w->prints_after_settings = 0;
  w->buffer_size = 64 * 1024;
  w->buffer_timeout = 5;
  w->max_line_length = 4096;
}

static void
worker_check_attached (Worker *w)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  gint64 now;

  if (w->state != WORKER_OPEN || !w->settings_done ||
      w->prints_after_settings < (guint) lg->opt.attach_prints)
    return;

  now = g_get_monotonic_time ();
  worker_set_state (w, WORKER_ATTACHED);
  if (!w->ever_attached)
    {
      gdouble ms = (now - w->first_attempt_usec) / 1000.0;

      w->ever_attached = TRUE;
      g_atomic_int_inc (&sh->n_attached_first);
      sh->t_last_attach = now;
      g_array_append_val (sh->attach_ms, ms);
      g_array_append_val (sh->handshake_ms, w->handshake_ms);
    }
  else
    sh->stats.reattached++;
  w->attempts = 0;
  if (lg->in_flight_until_attached)
    {
      worker_release_slot (w);
      shard_pump (sh);
    }
  shard_check (sh);
}

static gboolean
worker_retry_timeout (gpointer data)
{
  Worker *w = data;

  w->retry_id = 0;
  worker_set_state (w, WORKER_QUEUED);
  g_queue_push_tail (&w->shard->queue, w);
  shard_pump (w->shard);
  return G_SOURCE_REMOVE;
}

/* The real worker's Twisted ClientService: 1 s x 1.5 per attempt up to 60 s,
 * plus up to 1 s of jitter. */
static void
worker_schedule_retry (Worker *w)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  gboolean allowed;
  gdouble delay = 1.0;

  allowed = sh->phase == PHASE_ATTACHING ||
            (sh->phase == PHASE_HOLDING && !lg->opt.no_reconnect);
  if (!allowed || w->shutdown_requested ||
      (lg->opt.max_attempts > 0 && w->attempts >= (guint) lg->opt.max_attempts))
    {
      if (allowed && !w->shutdown_requested)
        lg_warn (lg, "%s: giving up after %u attempts", w->name, w->attempts);
      worker_set_state (w, WORKER_DONE);
      return;
    }
  for (guint i = 1; i < w->attempts && delay < 60; i++)
    delay *= 1.5;
  delay = MIN (delay, 60.0) + g_random_double ();
  sh->stats.retries++;
  worker_set_state (w, WORKER_IDLE);
  w->retry_id = shard_timeout (w->shard, (guint) (delay * 1000), worker_retry_timeout, w,
                               "bf-loadgen retry");
}

#define READ_CHUNK 65536

/* The connection is gone (EOF, reset, or after the close handshake): the
 * worker retries, reconnects at once (a flap), or is done. */
static void
conn_closed (Worker *w)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  gboolean we_left = w->state == WORKER_LEAVING;
  gboolean was_attached = w->state == WORKER_ATTACHED;

  shard_clear_source (w->shard, &w->leave_id);
  worker_drop_connection_state (w);
  worker_release_slot (w);

  if (w->flapping && sh->phase == PHASE_HOLDING)
    {
      /* --flap-cycles: dropped on purpose; reconnect now, no backoff */
      w->flapping = FALSE;
      worker_set_state (w, WORKER_QUEUED);
      g_queue_push_tail (&sh->queue, w);
      shard_pump (sh);
      shard_check (sh);
      return;
    }
  if (!we_left && !w->flapping)
    {
      sh->stats.closed_by_peer++;
      if (!was_attached)
        {
          sh->stats.closed_before_attach++;
          lg_warn (lg, "%s: the master closed the connection before the attach completed "
                   "(code %u)", w->name, w->close_code ? w->close_code : 1006);
        }
    }

  w->flapping = FALSE;
  if (we_left || w->shutdown_requested || sh->phase == PHASE_STOPPING ||
      sh->phase == PHASE_SILENT || sh->phase == PHASE_RESUMED)
    worker_set_state (w, WORKER_DONE);
  else
    {
      if (was_attached)
        w->attempts = 0;
      worker_schedule_retry (w);
    }
  shard_pump (sh);
  shard_check (sh);
}

/* Closes the socket and forgets everything about the connection. */
static void
conn_reset (Worker *w)
{
  if (w->fd >= 0)
    close (w->fd);      /* also leaves the epoll set */
  w->fd = -1;
  w->conn = CONN_NONE;
  w->write_shut = FALSE;
  w->close_sent = FALSE;
  w->close_code = 0;
  w->rlen = 0;
  w->wlen = 0;
  g_clear_pointer (&w->rbuf, g_free);
  g_clear_pointer (&w->wbuf, g_free);
  w->rcap = w->wcap = 0;
  g_clear_pointer (&w->frag, g_byte_array_unref);
}

/* A failed attempt: no connection, no HTTP 101 (status 0 = none). */
static void
conn_attempt_failed (Worker *w, guint status, const char *why)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;

  shard_clear_source (sh, &w->connect_timeout_id);
  conn_reset (w);
  if (status == 401)
    sh->stats.http_401++;
  else if (status >= 100)
    sh->stats.http_other++;
  if (sh->phase != PHASE_STOPPING)
    lg_warn (lg, "%s: connection attempt %u failed: %s%s%.0u", w->name, w->attempts,
             why, status >= 100 ? ", HTTP " : "", status);
  worker_release_slot (w);
  if (sh->phase == PHASE_STOPPING)
    worker_set_state (w, WORKER_DONE);
  else
    worker_schedule_retry (w);
  shard_pump (sh);
  shard_check (sh);
}

static gboolean
worker_connect_timeout (gpointer data)
{
  Worker *w = data;

  w->connect_timeout_id = 0;
  w->shard->stats.timeouts++;
  conn_attempt_failed (w, 0, "timed out");
  return G_SOURCE_REMOVE;
}

/* The same request libsoup 3 sent, header for header. */
static void
conn_send_upgrade (Worker *w)
{
  Loadgen *lg = w->lg;
  guint8 nonce[16];

  for (guint i = 0; i < sizeof nonce; i += 4)
    {
      guint32 r = g_random_int ();

      memcpy (nonce + i, &r, 4);
    }
  {
    int state = 0, save = 0;
    gsize k = g_base64_encode_step (nonce, sizeof nonce, FALSE, w->ws_key, &state, &save);

    k += g_base64_encode_close (FALSE, w->ws_key + k, &state, &save);
    w->ws_key[k] = '\0';
  }
  g_string_truncate (w->shard->request, 0);
  g_string_append_printf (w->shard->request,
                          "GET %s HTTP/1.1\r\n"
                          "Authorization: Basic %s\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Accept-Encoding: gzip, deflate\r\n"
                          "User-Agent: %s\r\n"
                          "Host: %s\r\n"
                          "\r\n",
                          lg->request_path, w->auth, w->ws_key, lg->user_agent, lg->request_host);
  w->conn = CONN_UPGRADE;
  conn_write (w, (const guint8 *) w->shard->request->str, w->shard->request->len);
}

/* The value of header NAME in an HTTP head, or NULL. */
static const char *
http_header (const char *head, const char *name, gsize *len)
{
  gsize n = strlen (name);

  for (const char *line = strstr (head, "\r\n"); line != NULL; line = strstr (line, "\r\n"))
    {
      const char *end;

      line += 2;
      if (g_ascii_strncasecmp (line, name, n) != 0 || line[n] != ':')
        continue;
      line += n + 1;
      while (*line == ' ' || *line == '\t')
        line++;
      end = strstr (line, "\r\n");
      if (end == NULL)
        return NULL;
      while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
      *len = end - line;
      return line;
    }
  return NULL;
}

/* The master's answer to the upgrade.  Returns how many bytes it took,
 * 0 when the head is not complete yet, -1 when the attempt failed. */
static gssize
conn_on_upgrade_reply (Worker *w, const guint8 *data, gsize len)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  const guint8 *end = memmem (data, len, "\r\n\r\n", 4);
  g_autofree char *head = NULL;
  const char *accept;
  gsize accept_len = 0, digest_len = 20, head_len;
  guint8 digest[20];
  char expected[32];
  guint status = 0;

  if (end == NULL)
    {
      if (len > 16384)
        {
          conn_attempt_failed (w, 0, "the upgrade reply's head is longer than 16 KiB");
          return -1;
        }
      return 0;
    }
  head_len = end + 4 - data;
  head = g_strndup ((const char *) data, head_len);
  if (sscanf (head, "HTTP/1.%*[01] %u", &status) != 1)
    {
      conn_attempt_failed (w, 0, "not an HTTP reply to the upgrade request");
      return -1;
    }
  if (status != 101)
    {
      conn_attempt_failed (w, status, status == 401 ? "Unauthorized" : "the master refused the upgrade");
      return -1;
    }
  g_checksum_reset (sh->sha1);
  g_checksum_update (sh->sha1, (const guchar *) w->ws_key, strlen (w->ws_key));
  g_checksum_update (sh->sha1, (const guchar *) "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  g_checksum_get_digest (sh->sha1, digest, &digest_len);
  {
    int state = 0, save = 0;
    gsize k = g_base64_encode_step (digest, digest_len, FALSE, expected, &state, &save);

    k += g_base64_encode_close (FALSE, expected + k, &state, &save);
    expected[k] = '\0';
  }
  accept = http_header (head, "Sec-WebSocket-Accept", &accept_len);
  if (accept == NULL || accept_len != strlen (expected) || memcmp (accept, expected, accept_len) != 0)
    {
      conn_attempt_failed (w, status, "the master's Sec-WebSocket-Accept is wrong");
      return -1;
    }

  shard_clear_source (sh, &w->connect_timeout_id);
  w->conn = CONN_WS;
  w->handshake_ms = (g_get_monotonic_time () - w->attempt_usec) / 1000.0;
  worker_drop_connection_state (w);
  worker_set_state (w, WORKER_OPEN);
  if (!lg->in_flight_until_attached)
    worker_release_slot (w);
  if (sh->phase == PHASE_STOPPING)
    worker_leave (w);
  shard_pump (sh);
  return head_len;
}

/* One frame from the master. */
static void
conn_on_frame (Worker *w, gboolean fin, guint8 opcode, const guint8 *payload, gsize n)
{
  switch (opcode)
    {
    case 0x8:           /* close: echo code and reason, then wait for the FIN */
      w->close_code = n >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
      if (!w->close_sent && !w->write_shut)
        {
          conn_send_frame (w, 0x8, payload, MIN (n, 125));
          w->close_sent = TRUE;
        }
      break;

    case 0x9:           /* ping: pong with the same payload */
      if (worker_can_send (w))
        conn_send_frame (w, 0xA, payload, n);
      break;

    case 0xA:
      break;

    case 0x1:
    case 0x2:
      if (fin)
        {
          worker_on_message (w, opcode == 0x2, (const char *) payload, n);
          break;
        }
      g_clear_pointer (&w->frag, g_byte_array_unref);
      w->frag = g_byte_array_new ();
      w->frag_opcode = opcode;
      g_byte_array_append (w->frag, payload, n);
      break;

    case 0x0:
      if (w->frag == NULL)
        {
          w->shard->stats.bad_messages++;
          lg_warn (w->lg, "%s: continuation frame without a first fragment", w->name);
          break;
        }
      g_byte_array_append (w->frag, payload, n);
      if (fin)
        {
          g_autoptr(GByteArray) whole = g_steal_pointer (&w->frag);

          worker_on_message (w, w->frag_opcode == 0x2, (const char *) whole->data, whole->len);
        }
      break;

    default:
      w->shard->stats.bad_messages++;
      lg_warn (w->lg, "%s: frame with unknown opcode %u ignored", w->name, opcode);
      break;
    }
}

/* Parses what arrived; returns the bytes taken (the rest is a partial frame
 * or head), -1 when the connection attempt failed. */
static gssize
conn_parse (Worker *w, guint8 *data, gsize len)
{
  gsize off = 0;

  if (w->conn == CONN_UPGRADE)
    {
      gssize k = conn_on_upgrade_reply (w, data, len);

      if (k <= 0)
        return k;
      off = k;
    }
  while (w->conn == CONN_WS && len - off >= 2)
    {
      guint8 *f = data + off;
      gsize avail = len - off, h = 2;
      guint64 n = f[1] & 0x7f;
      gboolean masked = (f[1] & 0x80) != 0;

      if (n == 126)
        {
          if (avail < 4)
            break;
          n = (f[2] << 8) | f[3];
          h = 4;
        }
      else if (n == 127)
        {
          if (avail < 10)
            break;
          n = 0;
          for (int i = 2; i < 10; i++)
            n = (n << 8) | f[i];
          h = 10;
        }
      if (masked)
        h += 4;
      if (avail < h || avail - h < n)
        break;
      if (masked)   /* the master must not mask, but a mask is easy to undo */
        for (guint64 i = 0; i < n; i++)
          f[h + i] ^= f[h - 4 + (i & 3)];
      off += h + n;
      conn_on_frame (w, (f[0] & 0x80) != 0, f[0] & 0x0f, f + h, n);
    }
  return off;
}

/* Reads until EAGAIN (the epoll set is edge-triggered).  Input goes to the
 * shard's scratch buffer and is parsed in place; only a partial frame is
 * copied to the worker's own buffer.  Everything the worker answers while
 * its input is parsed leaves in one send(). */
static void
conn_on_readable (Worker *w, gboolean peer_closed)
{
  Shard *sh = w->shard;

  for (;;)
    {
      guint8 *buf;
      gsize len, cap;
      gssize n, used;
      gboolean drained;

      if (w->rlen == 0)
        {
          buf = sh->scratch;
          len = 0;
          cap = READ_CHUNK;
        }
      else
        {
          if (w->rcap - w->rlen < READ_CHUNK / 4)
            {
              w->rcap = MAX (w->rcap * 2, w->rlen + READ_CHUNK);
              w->rbuf = g_realloc (w->rbuf, w->rcap);
            }
          buf = w->rbuf;
          len = w->rlen;
          cap = w->rcap;
        }
      n = recv (w->fd, buf + len, cap - len, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        return;
      if (n <= 0)
        {
          /* EOF or an error: the connection is over */
          if (w->conn == CONN_WS)
            {
              conn_reset (w);
              conn_closed (w);
            }
          else
            conn_attempt_failed (w, 0, n == 0 ? "the master closed the connection during the upgrade"
                                              : g_strerror (errno));
          return;
        }
      /* a short read drained the socket: the next data is a new edge, so no
       * recv() just to hear EAGAIN (unless the FIN is there to be read) */
      drained = (gsize) n < cap - len && !peer_closed;
      len += n;
      sh->batch = w;
      g_byte_array_set_size (sh->obuf, 0);
      used = conn_parse (w, buf, len);
      sh->batch = NULL;
      if (used < 0)
        return;     /* the attempt failed and the socket is closed */
      conn_write (w, sh->obuf->data, sh->obuf->len);
      g_byte_array_set_size (sh->obuf, 0);
      if (buf == sh->scratch)
        {
          if ((gsize) used < len)
            buf_append (&w->rbuf, &w->rlen, &w->rcap, buf + used, len - used);
        }
      else
        {
          memmove (w->rbuf, w->rbuf + used, len - used);
          w->rlen = len - used;
          if (w->rlen == 0)
            {
              g_clear_pointer (&w->rbuf, g_free);
              w->rcap = 0;
            }
        }
      if (drained)
        return;
    }
}

static void
conn_on_event (Worker *w, guint32 events)
{
  if (w->conn == CONN_TCP)
    {
      int err = 0;
      socklen_t err_len = sizeof err;

      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return;
      if ((events & (EPOLLERR | EPOLLHUP)) &&
          getsockopt (w->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
        err = errno;
      if (err != 0)
        {
          w->shard->stats.connect_errors++;
          conn_attempt_failed (w, 0, g_strerror (err));
          return;
        }
      conn_send_upgrade (w);
    }
  if ((events & EPOLLOUT) && w->wlen > 0)
    conn_flush (w);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    conn_on_readable (w, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
}

/* The shard's one GSource: dispatches what epoll reports. */
static gboolean
shard_on_epoll (gint fd, GIOCondition condition, gpointer data)
{
  Shard *sh = data;
  struct epoll_event events[256];
  int n = epoll_wait (sh->epfd, events, G_N_ELEMENTS (events), 0);

  for (int i = 0; i < n; i++)
    {
      guint64 tag = events[i].data.u64;
      Worker *w = &sh->workers[(guint32) tag];

      /* an earlier event of this batch may have closed the connection and
       * started another one for the same worker */
      if (w->fd >= 0 && w->conn_serial == (guint32) (tag >> 32))
        conn_on_event (w, events[i].events);
    }
  return G_SOURCE_CONTINUE;
}

static void
worker_start_attempt (Worker *w)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
  int one = 1;

  w->holds_slot = TRUE;
  sh->in_flight++;
  w->attempts++;
  sh->stats.attempts++;
  w->attempt_usec = g_get_monotonic_time ();
  if (w->first_attempt_usec == 0)
    w->first_attempt_usec = w->attempt_usec;
  worker_set_state (w, WORKER_CONNECTING);

  conn_reset (w);
  w->conn_serial++;
  ev.data.u64 = ((guint64) w->conn_serial << 32) | (guint64) (w - sh->workers);
  w->fd = socket (lg->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (w->fd < 0)
    {
      sh->stats.connect_errors++;
      conn_attempt_failed (w, 0, g_strerror (errno));
      return;
    }
  setsockopt (w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (w->source_index >= 0)
    {
      struct sockaddr_in local = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl (0x7f000001 + w->source_index) };

      /* the port is then chosen by connect() for the whole 4-tuple, not
       * reserved by bind() against every other socket of the machine */
      setsockopt (w->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      if (bind (w->fd, (struct sockaddr *) &local, sizeof local) != 0)
        {
          sh->stats.connect_errors++;
          conn_attempt_failed (w, 0, g_strerror (errno));
          return;
        }
    }
  w->conn = CONN_TCP;
  if (lg->opt.connect_timeout > 0)
    {
      w->connect_timeout_id = shard_timeout (w->shard, (guint) (lg->opt.connect_timeout * 1000),
                                             worker_connect_timeout, w, "bf-loadgen connect timeout");
    }
  if (connect (w->fd, (struct sockaddr *) &lg->target, lg->target_len) != 0 && errno != EINPROGRESS)
    {
      sh->stats.connect_errors++;
      conn_attempt_failed (w, 0, g_strerror (errno));
      return;
    }
  /* edge-triggered: the first EPOLLOUT says the connect() finished */
  if (epoll_ctl (sh->epfd, EPOLL_CTL_ADD, w->fd, &ev) != 0)
    {
      sh->stats.connect_errors++;
      conn_attempt_failed (w, 0, g_strerror (errno));
    }
}

static void
shard_pump (Shard *sh)
{
  if (sh->phase != PHASE_ATTACHING && sh->phase != PHASE_HOLDING)
    return;
  while (sh->in_flight < (guint) sh->concurrency && !g_queue_is_empty (&sh->queue))
    worker_start_attempt (g_queue_pop_head (&sh->queue));
}

/* Leave like a stopped worker (TCP FIN, or a close frame with --close-frame),
 * or stop trying to connect. */
static void
worker_leave (Worker *w)
{
  Loadgen *lg = w->lg;
  Shard *sh = w->shard;

  switch (w->state)
    {
    case WORKER_IDLE:
      shard_clear_source (w->shard, &w->retry_id);
      worker_set_state (w, WORKER_DONE);
      break;

    case WORKER_QUEUED:
      g_queue_remove (&sh->queue, w);
      worker_set_state (w, WORKER_DONE);
      break;

    case WORKER_CONNECTING:
      conn_attempt_failed (w, 0, "cancelled");
      break;

    case WORKER_OPEN:
    case WORKER_ATTACHED:
      worker_set_state (w, WORKER_LEAVING);
      if (lg->opt.close_frame)
        {
          if (!w->close_sent && !w->write_shut)
            {
              static const guint8 going_away[2] = { 1001 >> 8, 1001 & 0xff };

              conn_send_frame (w, 0x8, going_away, 2);
              w->close_sent = TRUE;
            }
        }
      else if (!w->write_shut)
        {
          w->write_shut = TRUE;
          if (shutdown (w->fd, SHUT_WR) != 0)
            {
              lg_warn (lg, "%s: shutdown: %s", w->name, g_strerror (errno));
              conn_break (w);
            }
        }
      break;

    case WORKER_LEAVING:
    case WORKER_DONE:
      break;
    }
}

/* ------------------------------------------------------------------------ */
/* shards: what runs in each worker thread                                  */

static guint
shard_open (Shard *sh)
{
  return sh->n_state[WORKER_OPEN] + sh->n_state[WORKER_ATTACHED] + sh->n_state[WORKER_LEAVING];
}

typedef enum {
  NOTE_ATTACHED,     /* every worker of the shard is attached */
  NOTE_IDLE,         /* every worker gave up or left for good */
  NOTE_STOPPED,      /* stopping: no connection left */
} NoteKind;

typedef struct {
  Shard *sh;
  NoteKind kind;
} Note;

static gboolean main_on_note (gpointer data);

static void
shard_tell_main (Shard *sh, NoteKind kind)
{
  Note *n = g_new (Note, 1);

  n->sh = sh;
  n->kind = kind;
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, main_on_note, n, g_free);
}

static void
shard_check (Shard *sh)
{
  if (sh->phase == PHASE_ATTACHING && !sh->told_attached &&
      (guint) sh->n_attached_first == sh->n_workers)
    {
      sh->told_attached = TRUE;
      shard_tell_main (sh, NOTE_ATTACHED);
    }
  if ((sh->phase == PHASE_ATTACHING || sh->phase == PHASE_HOLDING) && !sh->told_idle &&
      (guint) sh->n_state[WORKER_DONE] == sh->n_workers)
    {
      sh->told_idle = TRUE;
      shard_tell_main (sh, NOTE_IDLE);
    }
  if (sh->phase == PHASE_STOPPING && !sh->told_stopped &&
      shard_open (sh) == 0 && sh->n_state[WORKER_CONNECTING] == 0)
    {
      sh->told_stopped = TRUE;
      shard_tell_main (sh, NOTE_STOPPED);
    }
}

typedef struct {
  Shard *sh;
  Phase phase;
} PhaseChange;

static gboolean
shard_on_phase (gpointer data)
{
  PhaseChange *pc = data;
  Shard *sh = pc->sh;

  sh->phase = pc->phase;
  if (pc->phase == PHASE_ATTACHING)
    {
      for (guint i = 0; i < sh->n_workers; i++)
        {
          worker_set_state (&sh->workers[i], WORKER_QUEUED);
          g_queue_push_tail (&sh->queue, &sh->workers[i]);
        }
    }
  else if (pc->phase == PHASE_STOPPING)
    {
      while (!g_queue_is_empty (&sh->queue))
        worker_set_state (g_queue_pop_head (&sh->queue), WORKER_DONE);
      for (guint i = 0; i < sh->n_workers; i++)
        worker_leave (&sh->workers[i]);
    }
  shard_pump (sh);
  shard_check (sh);
  return G_SOURCE_REMOVE;
}

/* --flap-cycles: the network goes away under every attached worker at
 * once.  Each socket is shut down both ways (the master gets a FIN, as
 * when the kernel closes a killed worker's socket); the epoll loop then
 * reads the end of the connection and on_ws_closed() queues the worker again at
 * once, without the real worker's backoff. */
static gboolean
shard_on_flap (gpointer data)
{
  Shard *sh = data;
  Loadgen *lg = sh->lg;
  gint dropped = 0;

  for (guint i = 0; i < sh->n_workers; i++)
    {
      Worker *w = &sh->workers[i];

      if (w->state != WORKER_ATTACHED || w->fd < 0)
        continue;
      w->flapping = TRUE;
      w->settings_done = FALSE;
      worker_set_state (w, WORKER_OPEN);
      if (shutdown (w->fd, SHUT_RDWR) != 0)
        lg_warn (lg, "%s: shutdown: %s", w->name, g_strerror (errno));
      dropped++;
    }
  g_atomic_int_add (&lg->flap_dropped, dropped);
  g_atomic_int_inc (&lg->flaps_done);
  return G_SOURCE_REMOVE;
}

static gboolean
shard_on_snapshot (gpointer data)
{
  Shard *sh = data;
  Loadgen *lg = sh->lg;

  g_mutex_lock (&lg->lock);
  sh->snap_stats = sh->stats;
  g_array_set_size (sh->snap_handshake_ms, 0);
  g_array_append_vals (sh->snap_handshake_ms, sh->handshake_ms->data, sh->handshake_ms->len);
  g_array_set_size (sh->snap_attach_ms, 0);
  g_array_append_vals (sh->snap_attach_ms, sh->attach_ms->data, sh->attach_ms->len);
  sh->snap_t_last_attach = sh->t_last_attach;
  sh->snap_ready = TRUE;
  g_cond_broadcast (&lg->cond);
  g_mutex_unlock (&lg->lock);
  return G_SOURCE_REMOVE;
}

static gboolean
quit_loop_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

/* --silent-after-attach: runs inside a dispatch of sh->ctx, so while the
 * nested loop below runs on a private context nothing iterates sh->ctx,
 * which owns the shard's epoll set (and so every read and pong).  The kernel keeps the connections up and ACKs into the receive
 * buffers; the workers hang like a process stopped with SIGSTOP. */
static gboolean
shard_on_silent (gpointer data)
{
  Shard *sh = data;
  Loadgen *lg = sh->lg;
  g_autoptr(GMainContext) ctx = g_main_context_new ();
  g_autoptr(GMainLoop) loop = g_main_loop_new (ctx, FALSE);

  sh->phase = PHASE_SILENT;
  g_mutex_lock (&lg->lock);
  sh->silent_ctx = ctx;
  sh->silent_loop = loop;
  g_cond_broadcast (&lg->cond);
  g_mutex_unlock (&lg->lock);

  g_main_loop_run (loop);   /* until the main thread invokes quit_loop_cb here */

  g_mutex_lock (&lg->lock);
  sh->silent_ctx = NULL;
  sh->silent_loop = NULL;
  g_mutex_unlock (&lg->lock);
  return G_SOURCE_REMOVE;
}

/* Last call in the shard thread: release what belongs to its context. */
static gboolean
shard_on_finish (gpointer data)
{
  Shard *sh = data;

  for (guint i = 0; i < sh->n_workers; i++)
    {
      Worker *w = &sh->workers[i];

      shard_clear_source (sh, &w->retry_id);
      shard_clear_source (sh, &w->leave_id);
      shard_clear_source (sh, &w->connect_timeout_id);
      worker_drop_connection_state (w);
      conn_reset (w);
    }
  shard_clear_source (sh, &sh->epoll_id);
  g_main_loop_quit (sh->loop);
  return G_SOURCE_REMOVE;
}

static gpointer
shard_thread (gpointer data)
{
  Shard *sh = data;

  g_main_context_push_thread_default (sh->ctx);
  g_main_loop_run (sh->loop);
  g_main_context_pop_thread_default (sh->ctx);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* main thread: phases                                                      */

typedef struct {
  Stats stats;
  GArray *handshake_ms;
  GArray *attach_ms;
  gint64 t_last_attach;
} Totals;

static void
totals_clear (Totals *t)
{
  g_clear_pointer (&t->handshake_ms, g_array_unref);
  g_clear_pointer (&t->attach_ms, g_array_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Totals, totals_clear)

G_STATIC_ASSERT (sizeof (Stats) % sizeof (guint64) == 0);

/* Sums every shard's counters, asking each shard thread for a copy.  Called
 * from main() between phases, never from a callback. */
static void
lg_collect (Loadgen *lg, Totals *t)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  memset (&t->stats, 0, sizeof t->stats);
  t->handshake_ms = g_array_new (FALSE, FALSE, sizeof (gdouble));
  t->attach_ms = g_array_new (FALSE, FALSE, sizeof (gdouble));
  t->t_last_attach = 0;

  g_mutex_lock (&lg->lock);
  for (guint i = 0; i < lg->n_shards; i++)
    lg->shards[i].snap_ready = FALSE;
  g_mutex_unlock (&lg->lock);
  for (guint i = 0; i < lg->n_shards; i++)
    g_main_context_invoke (lg->shards[i].ctx, shard_on_snapshot, &lg->shards[i]);

  g_mutex_lock (&lg->lock);
  for (guint i = 0; i < lg->n_shards; i++)
    {
      Shard *sh = &lg->shards[i];
      guint64 *sum = (guint64 *) &t->stats;
      const guint64 *add = (const guint64 *) &sh->snap_stats;

      while (!sh->snap_ready)
        if (!g_cond_wait_until (&lg->cond, &lg->lock, deadline))
          break;
      if (!sh->snap_ready)
        {
          g_printerr ("bf-loadgen: thread %u does not answer; its figures are missing\n", i);
          continue;
        }
      for (gsize k = 0; k < sizeof (Stats) / sizeof (guint64); k++)
        sum[k] += add[k];
      g_array_append_vals (t->handshake_ms, sh->snap_handshake_ms->data, sh->snap_handshake_ms->len);
      g_array_append_vals (t->attach_ms, sh->snap_attach_ms->data, sh->snap_attach_ms->len);
      t->t_last_attach = MAX (t->t_last_attach, sh->snap_t_last_attach);
    }
  g_mutex_unlock (&lg->lock);
}

static guint
lg_count (Loadgen *lg, WorkerState state)
{
  guint n = 0;

  for (guint i = 0; i < lg->n_shards; i++)
    n += g_atomic_int_get (&lg->shards[i].n_state[state]);
  return n;
}

static guint
lg_open (Loadgen *lg)
{
  return lg_count (lg, WORKER_OPEN) + lg_count (lg, WORKER_ATTACHED) + lg_count (lg, WORKER_LEAVING);
}

static guint
lg_attached_first (Loadgen *lg)
{
  guint n = 0;

  for (guint i = 0; i < lg->n_shards; i++)
    n += g_atomic_int_get (&lg->shards[i].n_attached_first);
  return n;
}

static gboolean
lg_phase_done (Loadgen *lg)
{
  switch (lg->phase)
    {
    case PHASE_ATTACHING:
      return lg->shards_attached + lg->shards_idle >= lg->n_shards;
    case PHASE_HOLDING:
      return lg->shards_idle == lg->n_shards;
    case PHASE_STOPPING:
      return lg->shards_stopped == lg->n_shards;
    case PHASE_SILENT:
    case PHASE_RESUMED:
    default:
      return FALSE;
    }
}

static gboolean
main_on_note (gpointer data)
{
  Note *n = data;
  Loadgen *lg = n->sh->lg;

  switch (n->kind)
    {
    case NOTE_ATTACHED:
      lg->shards_attached++;
      break;
    case NOTE_IDLE:
      lg->shards_idle++;
      break;
    case NOTE_STOPPED:
      lg->shards_stopped++;
      break;
    }
  if (lg_phase_done (lg))
    g_main_loop_quit (lg->loop);
  return G_SOURCE_REMOVE;
}

static void
lg_enter_phase (Loadgen *lg, Phase phase)
{
  lg->phase = phase;
  for (guint i = 0; i < lg->n_shards; i++)
    {
      PhaseChange *pc = g_new (PhaseChange, 1);

      pc->sh = &lg->shards[i];
      pc->phase = phase;
      g_main_context_invoke_full (lg->shards[i].ctx, G_PRIORITY_DEFAULT, shard_on_phase, pc, g_free);
    }
}

static gboolean
quit_loop_timeout (gpointer data)
{
  Loadgen *lg = data;

  lg->phase_timeout_id = 0;
  g_main_loop_quit (lg->loop);
  return G_SOURCE_REMOVE;
}

/* Runs the main loop until the phase is done, `seconds` passed (< 0: no
 * limit) or a signal came. */
static void
lg_wait (Loadgen *lg, gdouble seconds)
{
  if (lg->interrupted || lg_phase_done (lg))
    return;
  if (seconds >= 0)
    {
      lg->phase_timeout_id = g_timeout_add ((guint) (seconds * 1000), quit_loop_timeout, lg);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, lg->phase_timeout_id),
                                "bf-loadgen phase timer");
    }
  g_main_loop_run (lg->loop);
  g_clear_handle_id (&lg->phase_timeout_id, g_source_remove);
}

static gboolean
on_signal (gpointer data)
{
  Loadgen *lg = data;

  if (++lg->n_signals > 1)
    {
      g_printerr ("bf-loadgen: second signal, exiting at once\n");
      _exit (130);
    }
  g_printerr ("bf-loadgen: interrupted, stopping\n");
  lg->interrupted = TRUE;
  g_main_loop_quit (lg->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_progress (gpointer data)
{
  Loadgen *lg = data;

  g_printerr ("bf-loadgen: %.1f s: attached %u/%u, open %u, connecting %u, queued %u, "
              "waiting to retry %u\n",
              (g_get_monotonic_time () - lg->t0) / (gdouble) G_USEC_PER_SEC,
              lg_count (lg, WORKER_ATTACHED), lg->n_workers, lg_open (lg),
              lg_count (lg, WORKER_CONNECTING), lg_count (lg, WORKER_QUEUED),
              lg_count (lg, WORKER_IDLE));
  return G_SOURCE_CONTINUE;
}

static gboolean
on_attach_timeout (gpointer data)
{
  Loadgen *lg = data;

  lg->attach_timeout_id = 0;
  g_printerr ("bf-loadgen: attach timeout: %u of %u workers attached\n",
              lg_attached_first (lg), lg->n_workers);
  g_main_loop_quit (lg->loop);
  return G_SOURCE_REMOVE;
}

static void
lg_print_attached (Loadgen *lg)
{
  g_auto(Totals) t = { 0 };
  guint attached;
  gint64 end;
  gdouble seconds;
  GString *s;

  lg_collect (lg, &t);
  attached = t.attach_ms->len;
  end = attached == lg->n_workers ? t.t_last_attach : g_get_monotonic_time ();
  seconds = (end - lg->t0) / (gdouble) G_USEC_PER_SEC;

  s = bf_bench_json_begin ("attached", NULL);
  bf_bench_json_int (s, "workers", attached);
  bf_bench_json_number (s, "seconds", seconds);
  bf_bench_json_number (s, "rate", seconds > 0 ? attached / seconds : 0);
  bf_bench_json_int (s, "target", lg->n_workers);
  bf_bench_json_int (s, "failed", lg->n_workers - attached);
  bf_bench_json_int (s, "concurrency", lg->opt.concurrency);
  bf_bench_json_int (s, "threads", lg->n_shards);
  bf_bench_json_int (s, "attach_prints", lg->opt.attach_prints);
  bf_bench_json_int (s, "attempts", t.stats.attempts);
  bf_bench_json_int (s, "retries", t.stats.retries);
  bf_bench_json_int (s, "connect_errors", t.stats.connect_errors);
  bf_bench_json_int (s, "http_401", t.stats.http_401);
  bf_bench_json_int (s, "http_other", t.stats.http_other);
  bf_bench_json_int (s, "timeouts", t.stats.timeouts);
  bf_bench_json_int (s, "closed_before_attach", t.stats.closed_before_attach);
  bf_bench_json_distribution (s, "handshake_ms", t.handshake_ms);
  bf_bench_json_distribution (s, "attach_ms", t.attach_ms);
  if (lg->interrupted)
    g_string_append (s, ",\"interrupted\":true");
  json_end (lg, s);
}

static void
lg_print_traffic (Loadgen *lg, GString *s)
{
  g_auto(Totals) t = { 0 };

  lg_collect (lg, &t);
  json_traffic (&t.stats, s);
  json_end (lg, s);
}

static guint64
lg_closed_by_peer (Loadgen *lg)
{
  g_auto(Totals) t = { 0 };

  lg_collect (lg, &t);
  return t.stats.closed_by_peer;
}

static void
lg_run_silent (Loadgen *lg)
{
  guint64 closed_before = lg_closed_by_peer (lg);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  gint64 start, end;
  GString *s;

  s = bf_bench_json_begin ("silent", NULL);
  bf_bench_json_number (s, "hold", lg->opt.hold);
  json_end (lg, s);

  lg->phase = PHASE_SILENT;
  for (guint i = 0; i < lg->n_shards; i++)
    g_main_context_invoke (lg->shards[i].ctx, shard_on_silent, &lg->shards[i]);
  g_mutex_lock (&lg->lock);
  for (guint i = 0; i < lg->n_shards; i++)
    while (lg->shards[i].silent_loop == NULL)
      if (!g_cond_wait_until (&lg->cond, &lg->lock, deadline))
        break;
  g_mutex_unlock (&lg->lock);

  start = g_get_monotonic_time ();
  lg_wait (lg, lg->opt.hold);       /* only the main thread's timers run */
  end = g_get_monotonic_time ();

  g_mutex_lock (&lg->lock);
  for (guint i = 0; i < lg->n_shards; i++)
    if (lg->shards[i].silent_ctx != NULL)
      g_main_context_invoke (lg->shards[i].silent_ctx, quit_loop_cb, lg->shards[i].silent_loop);
  g_mutex_unlock (&lg->lock);

  lg_enter_phase (lg, PHASE_RESUMED);
  lg_wait (lg, lg->opt.resume_grace);
  s = bf_bench_json_begin ("resumed", NULL);
  bf_bench_json_number (s, "silent_seconds", (end - start) / (gdouble) G_USEC_PER_SEC);
  bf_bench_json_int (s, "workers", lg_open (lg));
  bf_bench_json_int (s, "dropped_by_master", lg_closed_by_peer (lg) - closed_before);
  json_end (lg, s);
}

static gboolean
on_flap_signal (gpointer data)
{
  Loadgen *lg = data;

  lg->flap_requested = TRUE;
  g_main_loop_quit (lg->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean
flap_poll (gpointer data)
{
  Loadgen *lg = data;

  if ((guint) g_atomic_int_get (&lg->flaps_done) == lg->n_shards &&
      lg_count (lg, WORKER_ATTACHED) == lg->n_workers)
    {
      g_main_loop_quit (lg->loop);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

/* --flap-cycles N: N times, drop every attached worker at once and
 * reconnect them all at once; one "flapped" line per cycle once all are
 * attached again.  Before each cycle: --flap-pause seconds, or (< 0) a
 * SIGUSR1, so that a script can look at the master in between. */
static gboolean
lg_run_flaps (Loadgen *lg)
{
  lg_enter_phase (lg, PHASE_HOLDING);
  for (int cycle = 1; cycle <= lg->opt.flap_cycles && !lg->interrupted; cycle++)
    {
      g_auto(Totals) before = { 0 };
      g_auto(Totals) after = { 0 };
      gint64 start, realtime;
      guint poll_id, attached;
      gboolean done;
      GString *s;

      if (lg->opt.flap_pause < 0)
        {
          while (!lg->flap_requested && !lg->interrupted)
            lg_wait (lg, -1);
          lg->flap_requested = FALSE;
        }
      else if (lg->opt.flap_pause > 0)
        lg_wait (lg, lg->opt.flap_pause);
      if (lg->interrupted)
        break;
      lg_collect (lg, &before);
      g_atomic_int_set (&lg->flaps_done, 0);
      g_atomic_int_set (&lg->flap_dropped, 0);
      start = g_get_monotonic_time ();
      realtime = g_get_real_time ();
      for (guint i = 0; i < lg->n_shards; i++)
        g_main_context_invoke (lg->shards[i].ctx, shard_on_flap, &lg->shards[i]);
      poll_id = g_timeout_add (2, flap_poll, lg);
      lg_wait (lg, lg->opt.attach_timeout);
      attached = lg_count (lg, WORKER_ATTACHED);
      done = (guint) g_atomic_int_get (&lg->flaps_done) == lg->n_shards && attached == lg->n_workers;
      if (!done)
        g_source_remove (poll_id);
      lg_collect (lg, &after);

      s = bf_bench_json_begin ("flapped", NULL);
      bf_bench_json_int (s, "cycle", cycle);
      bf_bench_json_int (s, "dropped", g_atomic_int_get (&lg->flap_dropped));
      bf_bench_json_int (s, "workers", attached);
      bf_bench_json_number (s, "seconds", (g_get_monotonic_time () - start) / (gdouble) G_USEC_PER_SEC);
      bf_bench_json_int (s, "dropped_realtime_usec", realtime);
      bf_bench_json_int (s, "attempts", after.stats.attempts - before.stats.attempts);
      bf_bench_json_int (s, "retries", after.stats.retries - before.stats.retries);
      bf_bench_json_int (s, "http_401", after.stats.http_401 - before.stats.http_401);
      bf_bench_json_int (s, "http_other", after.stats.http_other - before.stats.http_other);
      bf_bench_json_int (s, "closed_by_peer", after.stats.closed_by_peer - before.stats.closed_by_peer);
      if (lg->interrupted)
        g_string_append (s, ",\"interrupted\":true");
      json_end (lg, s);
      if (!done)
        return FALSE;
    }
  return !lg->interrupted;
}

static void
lg_stop (Loadgen *lg)
{
  gint64 start = g_get_monotonic_time ();
  guint open_before = lg_open (lg);
  guint64 peer_before = lg_closed_by_peer (lg);
  gboolean was_interrupted = lg->interrupted;
  GString *s;

  lg_enter_phase (lg, PHASE_STOPPING);
  /* bounded: a master that never closes its side is not waited for */
  lg->interrupted = FALSE;
  lg_wait (lg, lg->opt.close_timeout);
  lg->interrupted = lg->interrupted || was_interrupted;

  s = bf_bench_json_begin ("stopped", NULL);
  bf_bench_json_int (s, "workers", open_before);
  bf_bench_json_number (s, "seconds", (g_get_monotonic_time () - start) / (gdouble) G_USEC_PER_SEC);
  bf_bench_json_int (s, "closed_by_master_first", lg_closed_by_peer (lg) - peer_before);
  bf_bench_json_int (s, "left_open", lg_open (lg));
  bf_bench_json_string (s, "mode", lg->opt.close_frame ? "close-frame" : "fin");
  lg_print_traffic (lg, s);
}

/* ------------------------------------------------------------------------ */
/* set-up                                                                   */

static gboolean
parse_name_format (Loadgen *lg, const char *format, GError **error)
{
  if (!bf_bench_names_parse (&lg->names, format, error))
    return FALSE;
  if (strchr (lg->names.prefix, ':') != NULL || strchr (lg->names.suffix, ':') != NULL)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--name-format %s: worker names cannot contain ':' (HTTP Basic auth)", format);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_url (Loadgen *lg, GError **error)
{
  g_autoptr(GUri) uri = NULL;
  g_autoptr(GInetAddress) addr = NULL;
  g_autoptr(GSocketAddress) sa = NULL;
  const char *scheme, *host, *path, *query;
  int port;

  uri = g_uri_parse (lg->opt.url, G_URI_FLAGS_NONE, error);
  if (uri == NULL)
    return FALSE;
  scheme = g_uri_get_scheme (uri);
  host = g_uri_get_host (uri);
  if (g_ascii_strcasecmp (scheme, "ws") != 0)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--url %s: the scheme must be ws (bf-loadgen speaks plain WebSocket only)",
                   lg->opt.url);
      return FALSE;
    }
  if (host != NULL)
    addr = g_ascii_strcasecmp (host, "localhost") == 0 ? g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4)
                                                       : g_inet_address_new_from_string (host);
  if (addr == NULL || !g_inet_address_get_is_loopback (addr))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--url %s: bf-loadgen only connects to loopback addresses "
                   "(127.0.0.0/8, ::1, localhost)", lg->opt.url);
      return FALSE;
    }
  port = g_uri_get_port (uri);
  if (port < 0)
    port = 80;
  sa = g_inet_socket_address_new (addr, port);
  lg->target_len = g_socket_address_get_native_size (sa);
  if (!g_socket_address_to_native (sa, &lg->target, sizeof lg->target, error))
    return FALSE;
  path = g_uri_get_path (uri);
  query = g_uri_get_query (uri);
  lg->request_path = g_strconcat ((path == NULL || *path == '\0') ? "/" : path,
                                  query != NULL ? "?" : "", query != NULL ? query : "", NULL);
  /* as libsoup wrote it: the port unless it is the default one */
  lg->request_host = port == 80 ? g_strdup (host) : g_strdup_printf (strchr (host, ':') ? "[%s]:%d" : "%s:%d", host, port);
  lg->user_agent = g_strdup_printf ("bf-loadgen/%s (buildbot-worker 3.7 emulation)", PACKAGE_VERSION);
  return TRUE;
}

static gboolean
raise_nofile_limit (Loadgen *lg, GError **error)
{
  struct rlimit rl;
  rlim_t need = (rlim_t) lg->n_workers + 64;

  if (getrlimit (RLIMIT_NOFILE, &rl) != 0)
    return TRUE;
  if (rl.rlim_cur != rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      if (setrlimit (RLIMIT_NOFILE, &rl) != 0)
        g_printerr ("bf-loadgen: cannot raise RLIMIT_NOFILE: %s\n", g_strerror (errno));
      getrlimit (RLIMIT_NOFILE, &rl);
    }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES,
                   "%u workers need %lu file descriptors but RLIMIT_NOFILE allows %lu "
                   "(raise the hard limit, e.g. ulimit -Hn, or split the load over processes "
                   "with --first-index)",
                   lg->n_workers, (unsigned long) need, (unsigned long) rl.rlim_cur);
      return FALSE;
    }
  return TRUE;
}

static void
loadgen_free (Loadgen *lg)
{
  g_clear_handle_id (&lg->attach_timeout_id, g_source_remove);
  g_clear_handle_id (&lg->phase_timeout_id, g_source_remove);
  g_clear_handle_id (&lg->progress_id, g_source_remove);
  g_clear_handle_id (&lg->sigint_id, g_source_remove);
  g_clear_handle_id (&lg->sigterm_id, g_source_remove);
  g_clear_handle_id (&lg->sigusr1_id, g_source_remove);

  for (guint i = 0; i < lg->n_shards; i++)
    {
      Shard *sh = &lg->shards[i];

      if (sh->thread != NULL)
        {
          g_main_context_invoke (sh->ctx, shard_on_finish, sh);
          g_thread_join (sh->thread);
        }
      g_queue_clear (&sh->queue);
      if (sh->epfd >= 0)
        close (sh->epfd);
      g_clear_pointer (&sh->obuf, g_byte_array_unref);
      g_clear_pointer (&sh->tbuf, g_byte_array_unref);
      g_clear_pointer (&sh->sha1, g_checksum_free);
      if (sh->request != NULL)
        g_string_free (sh->request, TRUE);
      if (sh->scratch != NULL)
        msgpack_zone_destroy (&sh->zone);
      g_free (sh->scratch);
      g_clear_pointer (&sh->handshake_ms, g_array_unref);
      g_clear_pointer (&sh->attach_ms, g_array_unref);
      g_clear_pointer (&sh->snap_handshake_ms, g_array_unref);
      g_clear_pointer (&sh->snap_attach_ms, g_array_unref);
      g_clear_pointer (&sh->loop, g_main_loop_unref);
      g_clear_pointer (&sh->ctx, g_main_context_unref);
      msgpack_sbuffer_destroy (&sh->sbuf);
      g_free (sh->block);
    }
  if (lg->workers != NULL)
    {
      for (guint i = 0; i < lg->n_workers; i++)
        {
          g_clear_pointer (&lg->workers[i].dirs, g_ptr_array_unref);
          g_free (lg->workers[i].name);
          g_free (lg->workers[i].auth);
          g_free (lg->workers[i].basedir);
        }
      g_free (lg->workers);
      g_free (lg->shards);
    }
  g_mutex_clear (&lg->lock);
  g_cond_clear (&lg->cond);
  g_free (lg->request_path);
  g_free (lg->request_host);
  g_free (lg->user_agent);
  g_clear_pointer (&lg->loop, g_main_loop_unref);
  g_clear_pointer (&lg->environ, g_strfreev);
  g_clear_pointer (&lg->os_release, g_ptr_array_unref);
  g_clear_pointer (&lg->empty_tar, g_bytes_unref);
  for (guint i = 0; i < G_N_ELEMENTS (lg->info_parts); i++)
    g_clear_pointer (&lg->info_parts[i], g_bytes_unref);
  bf_bench_names_clear (&lg->names);
  g_free (lg->opt.url);
  g_free (lg->opt.name_format);
  g_free (lg->opt.password);
  g_free (lg->opt.in_flight_until);
  g_free (lg->opt.basedir_prefix);
  g_free (lg->opt.worker_version);
  g_free (lg);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Loadgen, loadgen_free)

static gboolean
lg_setup (Loadgen *lg, GError **error)
{
  Options *o = &lg->opt;
  guint n_threads, next = 0;

  if (o->workers < 1)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--workers must be at least 1");
      return FALSE;
    }
  if (o->concurrency < 1 || o->attach_prints < 0 || o->line_bytes < 1 || o->output_lines < 0 ||
      o->update_window < 0 || o->first_index < 0 || o->attach_timeout <= 0 || o->threads < 0 ||
      o->flap_cycles < 0)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--concurrency and --line-bytes must be positive; --attach-prints, "
                   "--output-lines, --update-window, --first-index, --threads, --flap-cycles must not be "
                   "negative; --attach-timeout must be positive");
      return FALSE;
    }
  if ((o->stop_after_attach + o->kill_after_attach + o->silent_after_attach) > 1)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--stop-after-attach, --kill-after-attach and --silent-after-attach "
                   "exclude each other");
      return FALSE;
    }
  if (g_str_equal (o->in_flight_until, "attached"))
    lg->in_flight_until_attached = TRUE;
  else if (!g_str_equal (o->in_flight_until, "handshake"))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--in-flight-until must be handshake or attached");
      return FALSE;
    }
  if (!parse_url (lg, error) || !parse_name_format (lg, o->name_format, error))
    return FALSE;
  if (strchr (o->password, '\n') != NULL)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--password cannot contain a newline");
      return FALSE;
    }

  lg->n_workers = o->workers;
  if (!raise_nofile_limit (lg, error))
    return FALSE;

  /* ~28000 ephemeral ports per source address, and connect() tries the
   * even half first: past ~14000 connections to one destination every
   * connect() walks the used even ports.  With IP_BIND_ADDRESS_NO_PORT each
   * source address has the whole range for itself. */
  lg->n_sources = o->source_addresses > 0 ? (guint) o->source_addresses : (lg->n_workers + 9999) / 10000;
  lg->n_sources = MIN (lg->n_sources, 254);
  if (lg->n_sources > 1)
    {
      if (lg->target.ss_family != AF_INET)
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "several source addresses need an IPv4 loopback --url (127.x.y.z)");
          return FALSE;
        }
    }

  lg->environ = g_get_environ ();
  lg->os_release = bf_bench_read_os_release ();
  lg->empty_tar = make_empty_tar ();
  pack_worker_info_parts (lg);

  lg->workers = g_new0 (Worker, lg->n_workers);
  for (guint i = 0; i < lg->n_workers; i++)
    {
      Worker *w = &lg->workers[i];

      w->lg = lg;
      w->number = o->first_index + i;
      w->name = bf_bench_names_format (&lg->names, w->number);
      w->basedir = g_build_filename (o->basedir_prefix, w->name, NULL);
      w->state = WORKER_IDLE;
      w->fd = -1;
      {
        g_autofree char *userpass = g_strdup_printf ("%s:%s", w->name, o->password);

        w->auth = g_base64_encode ((const guchar *) userpass, strlen (userpass));
      }
      worker_drop_connection_state (w);
    }

  /* auto: one thread up to 1000 workers, then one per CPU (at most 4).
   * Never more threads than CPUs this process may run on (its affinity):
   * with one epoll set per thread a second thread on the same CPU only adds
   * context switches. */
  n_threads = o->threads > 0 ? (guint) o->threads :
              lg->n_workers < 1000 ? 1 : MIN (g_get_num_processors (), 4);
  {
    cpu_set_t cpus;

    if (sched_getaffinity (0, sizeof cpus, &cpus) == 0 && CPU_COUNT (&cpus) > 0)
      n_threads = MIN (n_threads, (guint) CPU_COUNT (&cpus));
  }
  lg->n_shards = MIN (n_threads, lg->n_workers);
  lg->shards = g_new0 (Shard, lg->n_shards);
  for (guint i = 0; i < lg->n_shards; i++)
    lg->shards[i].epfd = -1;
  for (guint i = 0; i < lg->n_shards; i++)
    {
      Shard *sh = &lg->shards[i];
      guint n = lg->n_workers / lg->n_shards + (i < lg->n_workers % lg->n_shards ? 1 : 0);

      sh->lg = lg;
      sh->index = i;
      sh->ctx = g_main_context_new ();
      sh->loop = g_main_loop_new (sh->ctx, FALSE);
      sh->phase = PHASE_ATTACHING;
      sh->workers = &lg->workers[next];
      sh->n_workers = n;
      next += n;
      sh->concurrency = MAX (1, o->concurrency / lg->n_shards +
                                (i < (guint) o->concurrency % lg->n_shards ? 1 : 0));
      sh->n_state[WORKER_IDLE] = n;
      sh->handshake_ms = g_array_sized_new (FALSE, FALSE, sizeof (gdouble), n);
      sh->attach_ms = g_array_sized_new (FALSE, FALSE, sizeof (gdouble), n);
      sh->snap_handshake_ms = g_array_new (FALSE, FALSE, sizeof (gdouble));
      sh->snap_attach_ms = g_array_new (FALSE, FALSE, sizeof (gdouble));
      msgpack_sbuffer_init (&sh->sbuf);
      msgpack_packer_init (&sh->pk, &sh->sbuf, msgpack_sbuffer_write);
      msgpack_zone_init (&sh->zone, MSGPACK_ZONE_CHUNK_SIZE);
      sh->scratch = g_malloc (READ_CHUNK);
      sh->obuf = g_byte_array_sized_new (4096);
      sh->tbuf = g_byte_array_sized_new (4096);
      sh->sha1 = g_checksum_new (G_CHECKSUM_SHA1);
      sh->request = g_string_sized_new (512);
      sh->mask_state = g_random_int () | 1;
      sh->epfd = epoll_create1 (EPOLL_CLOEXEC);
      if (sh->epfd < 0)
        {
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "epoll_create1: %s",
                       g_strerror (errno));
          return FALSE;
        }
      sh->epoll_id = shard_attach (sh, g_unix_fd_source_new (sh->epfd, G_IO_IN),
                                   (GSourceFunc) (void (*) (void)) shard_on_epoll, sh, "bf-loadgen epoll");
      for (guint k = 0; k < n; k++)
        {
          sh->workers[k].shard = sh;
          /* one source address per slice of the shard, as the sessions were */
          sh->workers[k].source_index = lg->n_sources > 1 ? (int) (k % lg->n_sources) : -1;
        }
    }
  for (guint i = 0; i < lg->n_shards; i++)
    {
      g_autofree char *name = g_strdup_printf ("bf-loadgen-%u", i);

      lg->shards[i].thread = g_thread_new (name, shard_thread, &lg->shards[i]);
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(Loadgen) lg = g_new0 (Loadgen, 1);
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  Options *o = &lg->opt;
  GString *s;
  gboolean complete;
  const GOptionEntry entries[] = {
    { "url", 0, 0, G_OPTION_ARG_STRING, &o->url, "Master endpoint, loopback only (default " DEFAULT_URL ")", "URL" },
    { "workers", 'n', 0, G_OPTION_ARG_INT, &o->workers, "Number of simulated workers (default 1)", "N" },
    { "first-index", 0, 0, G_OPTION_ARG_INT, &o->first_index, "Number of the first worker (default 1)", "I" },
    { "name-format", 0, 0, G_OPTION_ARG_STRING, &o->name_format, "Worker names: one %d with optional 0 flag and width, or a prefix (default worker-%05d)", "FMT" },
    { "password", 0, 0, G_OPTION_ARG_STRING, &o->password, "Password of every worker (default pass)", "PW" },
    { "concurrency", 'c', 0, G_OPTION_ARG_INT, &o->concurrency, "Connection attempts in flight (default 50)", "K" },
    { "in-flight-until", 0, 0, G_OPTION_ARG_STRING, &o->in_flight_until, "An attempt holds its slot until the handshake completes (handshake, default) or until attached", "WHEN" },
    { "attach-prints", 0, 0, G_OPTION_ARG_INT, &o->attach_prints, "print requests after set_worker_settings that complete the attach: builders per worker for Buildbot, 0 for buildfleetd (default 0)", "K" },
    { "attach-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->attach_timeout, "Give up attaching after this many seconds (default 300)", "SECONDS" },
    { "connect-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->connect_timeout, "Abandon one connection attempt after this many seconds, 0 = never (default 60)", "SECONDS" },
    { "max-attempts", 0, 0, G_OPTION_ARG_INT, &o->max_attempts, "Connection attempts per worker before giving up, 0 = until --attach-timeout (default 0)", "N" },
    { "hold", 0, 0, G_OPTION_ARG_DOUBLE, &o->hold, "Stay attached (or silent) this long, < 0 = until SIGINT/SIGTERM (default -1)", "SECONDS" },
    { "stop-after-attach", 0, 0, G_OPTION_ARG_NONE, &o->stop_after_attach, "Leave as soon as all workers are attached (like --hold 0)", NULL },
    { "kill-after-attach", 0, 0, G_OPTION_ARG_NONE, &o->kill_after_attach, "After --hold (default 0 here), drop every socket at once without close frames by exiting", NULL },
    { "silent-after-attach", 0, 0, G_OPTION_ARG_NONE, &o->silent_after_attach, "Stall every worker for --hold seconds: nothing is read or answered, not even pings", NULL },
    { "resume-grace", 0, 0, G_OPTION_ARG_DOUBLE, &o->resume_grace, "After a silent phase, read the sockets this long before reporting (default 2)", "SECONDS" },
    { "close-frame", 0, 0, G_OPTION_ARG_NONE, &o->close_frame, "Leave with a WebSocket close frame (1001) instead of a TCP FIN like a stopped worker", NULL },
    { "close-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->close_timeout, "Wait this long for the master to close its side when leaving (default 10)", "SECONDS" },
    { "no-reconnect", 0, 0, G_OPTION_ARG_NONE, &o->no_reconnect, "Do not reconnect workers the master disconnects after the attach phase", NULL },
    { "flap-cycles", 0, 0, G_OPTION_ARG_INT, &o->flap_cycles, "After attaching, N times: drop every connection at once (FIN) and reconnect all at once; a \"flapped\" line each time all are attached again (default 0)", "N" },
    { "flap-pause", 0, 0, G_OPTION_ARG_DOUBLE, &o->flap_pause, "Before each flap cycle wait this long, < 0 = until SIGUSR1 (default 0)", "SECONDS" },
    { "output-lines", 0, 0, G_OPTION_ARG_INT64, &o->output_lines, "Lines of stdout per shell command (default 10)", "N" },
    { "line-bytes", 0, 0, G_OPTION_ARG_INT, &o->line_bytes, "Bytes per output line, newline included (default 80)", "B" },
    { "command-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &o->command_seconds, "Spread a shell command's output over this many seconds (default 0: as fast as possible)", "SECONDS" },
    { "update-window", 0, 0, G_OPTION_ARG_INT, &o->update_window, "Unanswered requests per command before output pauses, 0 = unbounded like the real worker (default 16)", "N" },
    { "upload-bytes", 0, 0, G_OPTION_ARG_INT64, &o->upload_bytes, "Size of the fake file upload_file sends, < 0 = files are missing (default 4096)", "N" },
    { "basedir-prefix", 0, 0, G_OPTION_ARG_STRING, &o->basedir_prefix, "Reported basedir is PREFIX/NAME (default /tmp/bf-loadgen)", "DIR" },
    { "worker-version", 0, 0, G_OPTION_ARG_STRING, &o->worker_version, "Version reported in get_worker_info (default " DEFAULT_WORKER_VERSION ")", "VERSION" },
    { "source-addresses", 0, 0, G_OPTION_ARG_INT, &o->source_addresses, "Spread connections over 127.0.0.1..K, 0 = one per 10000 workers (default 0)", "K" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &o->threads, "Threads, each with its own epoll set and share of the workers, at most one per CPU the process may run on; 0 = 1 below 1000 workers, else one per CPU up to 4 (default 0)", "T" },
    { "peer-pid", 0, 0, G_OPTION_ARG_INT, &o->peer_pid, "Report this process's VmRSS (the master) in every phase line", "PID" },
    { "progress", 0, 0, G_OPTION_ARG_NONE, &o->progress, "Print progress to stderr every second", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &o->verbose, "Report every error, not only the first ones", NULL },
    { NULL }
  };

  *o = (Options) {
    .workers = 1,
    .first_index = 1,
    .concurrency = 50,
    .attach_prints = 0,
    .attach_timeout = 300,
    .connect_timeout = 60,
    .hold = -1,
    .resume_grace = 2,
    .close_timeout = 10,
    .output_lines = 10,
    .line_bytes = 80,
    .update_window = 16,
    .upload_bytes = 4096,
  };

  signal (SIGPIPE, SIG_IGN);
  g_mutex_init (&lg->lock);
  g_cond_init (&lg->cond);
  context = g_option_context_new ("- impersonate many Buildbot workers (msgpack protocol)");
  g_option_context_set_summary (context,
    "Connects N simulated buildbot-worker 3.7 instances to a loopback master and prints one\n"
    "JSON line per phase on stdout: start, attached, then held/silent+resumed/killed, stopped.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bf-loadgen: %s\n", error->message);
      return 2;
    }
  if (o->url == NULL)
    o->url = g_strdup (DEFAULT_URL);
  if (o->name_format == NULL)
    o->name_format = g_strdup ("worker-%05d");
  if (o->password == NULL)
    o->password = g_strdup ("pass");
  if (o->in_flight_until == NULL)
    o->in_flight_until = g_strdup ("handshake");
  if (o->basedir_prefix == NULL)
    o->basedir_prefix = g_strdup ("/tmp/bf-loadgen");
  if (o->worker_version == NULL)
    o->worker_version = g_strdup (DEFAULT_WORKER_VERSION);
  if (o->kill_after_attach && o->hold < 0)
    o->hold = 0;
  if (o->stop_after_attach)
    o->hold = 0;

  lg->loop = g_main_loop_new (NULL, FALSE);
  if (!lg_setup (lg, &error))
    {
      g_printerr ("bf-loadgen: %s\n", error->message);
      return 2;
    }
  lg->sigint_id = g_unix_signal_add (SIGINT, on_signal, lg);
  lg->sigterm_id = g_unix_signal_add (SIGTERM, on_signal, lg);
  lg->sigusr1_id = g_unix_signal_add (SIGUSR1, on_flap_signal, lg);
  if (o->progress)
    {
      lg->progress_id = g_timeout_add_seconds (1, on_progress, lg);
      g_source_set_static_name (g_main_context_find_source_by_id (NULL, lg->progress_id),
                                "bf-loadgen progress");
    }

  s = bf_bench_json_begin ("start", NULL);
  bf_bench_json_int (s, "workers", lg->n_workers);
  bf_bench_json_int (s, "concurrency", o->concurrency);
  bf_bench_json_int (s, "threads", lg->n_shards);
  bf_bench_json_int (s, "source_addresses", lg->n_sources);
  bf_bench_json_int (s, "pid", getpid ());
  json_end (lg, s);

  /* attach phase */
  lg->t0 = g_get_monotonic_time ();
  lg->attach_timeout_id = g_timeout_add ((guint) (o->attach_timeout * 1000), on_attach_timeout, lg);
  g_source_set_static_name (g_main_context_find_source_by_id (NULL, lg->attach_timeout_id),
                            "bf-loadgen attach timeout");
  lg_enter_phase (lg, PHASE_ATTACHING);
  lg_wait (lg, -1);
  g_clear_handle_id (&lg->attach_timeout_id, g_source_remove);
  lg_print_attached (lg);
  complete = lg_attached_first (lg) == lg->n_workers;
  lg->exit_status = complete ? 0 : 1;

  if (complete && o->flap_cycles > 0 && !lg_run_flaps (lg))
    lg->exit_status = 1;

  if (o->kill_after_attach)
    {
      if (complete && o->hold > 0)
        {
          lg_enter_phase (lg, PHASE_HOLDING);
          lg_wait (lg, o->hold);
        }
      s = bf_bench_json_begin ("killed", NULL);
      bf_bench_json_int (s, "workers", lg_open (lg));
      lg_print_traffic (lg, s);
      /* the kernel closes every socket, as for SIGKILL */
      _exit (lg->exit_status);
    }

  if (complete && !lg->interrupted)
    {
      if (o->silent_after_attach)
        lg_run_silent (lg);
      else if (o->hold != 0)
        {
          gint64 start = g_get_monotonic_time ();

          lg_enter_phase (lg, PHASE_HOLDING);
          lg_wait (lg, o->hold);
          s = bf_bench_json_begin ("held", NULL);
          bf_bench_json_number (s, "seconds", (g_get_monotonic_time () - start) / (gdouble) G_USEC_PER_SEC);
          bf_bench_json_int (s, "workers", lg_count (lg, WORKER_ATTACHED));
          lg_print_traffic (lg, s);
        }
    }

  lg_stop (lg);
  return lg->exit_status;
}
