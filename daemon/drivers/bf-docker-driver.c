/* bf-docker-driver.c: Latent=docker, a container started through the Docker Engine API
 *
 * Speaks the Docker Engine HTTP API (v1.41) over the unix socket of
 * DockerHost= with libsoup, so it serves Docker and Podman's
 * Docker-compatible service (`podman system service`) alike.
 *
 * A start pulls Image= only with Pull=true, creates a container named
 * buildfleet-NAME-XXXXXXXX with the worker's name, password and master
 * address in its environment (bf_latent_driver_make_env(): the names
 * Buildbot's worker image reads, BUILDMASTER, BUILDMASTER_PORT, WORKERNAME,
 * WORKERPASS, BUILDMASTER_PROTOCOL, and the BUILDFLEET_* ones), the labels
 * BF_LATENT_LABEL_DAEMON (the daemon's id) and BF_LATENT_LABEL_WORKER, and
 * Volumes=, Network=, Ulimits=, Memory=, CPUs=, AutoRemove= in its
 * HostConfig, then starts it.  Its Cmd is Command= or, by default,
 * DEFAULT_SCRIPT: a buildbot.tac that reads those variables (the password
 * never on a command line) run by `buildbot-worker start --nodaemon`, which
 * works in any image with sh and buildbot-worker on PATH.
 *
 * The container id is the instance id.  Once started, the container is
 * watched with a long-polling POST /containers/ID/wait: a container that
 * exits without being asked to is reported with its exit status and the
 * last lines of its output (LOG_TAIL_LINES, LOG_TAIL_BYTES, with the
 * password blanked out), which ends up in LastError when it dies before its
 * worker attaches, and insubstantiates the worker when it was attached.
 * Stopping is POST /containers/ID/stop (STOP_GRACE_S, 0 when fast) then
 * DELETE /containers/ID?force=1; a container already gone counts as
 * stopped.
 *
 * The engine lists what carries our daemon id (engine_key /
 * list_instances / stop_instance), for the manager's orphan scan.
 *
 * Every call is asynchronous and honours its GCancellable; every response
 * body is bounded (MAX_JSON_BYTES for JSON, a tail or head for logs and
 * pull progress).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <gio/gunixsocketaddress.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "bf-docker-driver.h"

#define API_BASE "http://localhost/v1.41"
#define API_TIMEOUT_S 60
#define MAX_JSON_BYTES (4 * 1024 * 1024)
#define MAX_LOG_BYTES (256 * 1024)
#define LOG_TAIL_LINES 20
#define LOG_TAIL_BYTES 4096
#define PULL_TAIL_BYTES 4096
#define STOP_GRACE_S 10
#define READ_CHUNK 16384

/* The container's default Cmd (see the top of this file).  WORKERPASS and
 * BUILDFLEET_WORKER_PASSWORD are taken out of the environment before any
 * build step could see them. */
#define DEFAULT_SCRIPT \
  "set -e\n" \
  "d=/tmp/buildbot-worker\n" \
  "mkdir -p \"$d/info\"\n" \
  "cat > \"$d/buildbot.tac\" <<'EOF'\n" \
  "import os, sys\n" \
  "from twisted.application import service\n" \
  "from twisted.python.log import ILogObserver, FileLogObserver\n" \
  "from buildbot_worker.bot import Worker\n" \
  "basedir = os.path.abspath(os.path.dirname(__file__))\n" \
  "application = service.Application('buildbot-worker')\n" \
  "application.setComponent(ILogObserver, FileLogObserver(sys.stdout).emit)\n" \
  "e = os.environ\n" \
  "passwd = e.pop('WORKERPASS', '')\n" \
  "e.pop('BUILDFLEET_WORKER_PASSWORD', None)\n" \
  "tls = e.get('BUILDFLEET_MASTER_URL', '').startswith(('wss:', 'pbs:')) or None\n" \
  "s = Worker(e.get('BUILDMASTER', 'localhost'), int(e.get('BUILDMASTER_PORT', '9989')),\n" \
  "           e['WORKERNAME'], passwd, basedir, 0, maxdelay=30,\n" \
  "           protocol=e.get('BUILDMASTER_PROTOCOL', 'pb'), useTls=tls)\n" \
  "s.setServiceParent(application)\n" \
  "EOF\n" \
  "echo 'buildfleetd docker driver' > \"$d/info/admin\"\n" \
  "exec buildbot-worker start --nodaemon \"$d\"\n"

struct _BfDockerDriver
{
  BfLatentDriver parent_instance;

  char *host;                      /* the DockerHost= the sessions talk to */
  SoupSession *session;            /* API calls: I/O timeout API_TIMEOUT_S */
  SoupSession *long_session;       /* waits and pulls: no timeout */
  char *container;                 /* name of the current container, from start to stop */
  char *password;                  /* of the current container: blanked out of its output */
  GCancellable *wait_cancellable;  /* the wait on the current container */
  gboolean stopping;
};

G_DEFINE_FINAL_TYPE (BfDockerDriver, bf_docker_driver, BF_TYPE_LATENT_DRIVER)

/* Sessions --------------------------------------------------------------------- */

static void
ensure_sessions (BfDockerDriver *self)
{
  const char *host = bf_latent_driver_get_config (BF_LATENT_DRIVER (self))->docker_host;
  g_autoptr(GSocketAddress) address = NULL;

  if (self->session != NULL && g_strcmp0 (self->host, host) == 0)
    return;
  g_clear_object (&self->session);
  g_clear_object (&self->long_session);
  g_free (self->host);
  self->host = g_strdup (host);
  /* The configuration only lets unix:///PATH through. */
  address = g_unix_socket_address_new (host + strlen ("unix://"));
  self->session = soup_session_new_with_options ("remote-connectable", address,
                                                 "timeout", API_TIMEOUT_S, NULL);
  self->long_session = soup_session_new_with_options ("remote-connectable", address,
                                                      "timeout", 0, NULL);
}

/* One API call ------------------------------------------------------------------ */

typedef enum {
  BODY_JSON,      /* more than the limit is an error */
  BODY_HEAD,      /* keep the first bytes, stop reading at the limit */
  BODY_TAIL,      /* read to the end, keep the last bytes */
} BodyMode;

typedef struct {
  SoupSession *session;
  SoupMessage *message;
  GInputStream *stream;
  GByteArray *body;
  gsize limit;
  BodyMode mode;
  char *host;
} ApiCall;

static void
api_call_free (ApiCall *c)
{
  g_clear_object (&c->stream);
  g_clear_object (&c->message);
  g_clear_object (&c->session);
  g_byte_array_unref (c->body);
  g_free (c->host);
  g_free (c);
}

static void api_read_cb (GObject *source, GAsyncResult *result, gpointer user_data);

static void
api_read_more (GTask *task)
{
  ApiCall *c = g_task_get_task_data (task);

  g_input_stream_read_bytes_async (c->stream, READ_CHUNK, G_PRIORITY_DEFAULT,
                                   g_task_get_cancellable (task), api_read_cb, task);
}

static void
api_read_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;    /* the reference of the read in flight */
  ApiCall *c = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) chunk = g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result, &error);
  gsize len = chunk ? g_bytes_get_size (chunk) : 0;

  if (chunk == NULL)
    {
      g_task_return_new_error (task, error->domain, error->code,
                               "reading the container engine's answer at %s: %s", c->host, error->message);
      g_object_unref (task);
      return;
    }
  if (len > 0)
    {
      g_byte_array_append (c->body, g_bytes_get_data (chunk, NULL), len);
      if (c->body->len > c->limit)
        switch (c->mode)
          {
          case BODY_JSON:
            g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                                     "the container engine at %s answered with more than %zu bytes",
                                     c->host, c->limit);
            g_object_unref (task);
            return;
          case BODY_HEAD:
            g_byte_array_set_size (c->body, c->limit);
            len = 0;     /* enough: done */
            break;
          case BODY_TAIL:
            g_byte_array_remove_range (c->body, 0, c->body->len - c->limit);
            break;
          }
    }
  if (len == 0)
    {
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }
  api_read_more (task);
}

static void
api_sent_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;
  ApiCall *c = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  c->stream = soup_session_send_finish (SOUP_SESSION (source), result, &error);
  if (c->stream == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_task_return_error (task, g_steal_pointer (&error));
      else
        g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                                 "cannot reach the container engine at %s: %s", c->host, error->message);
      g_object_unref (task);
      return;
    }
  api_read_more (task);
}

/*
 * api_async:
 * @long_poll: on the session without an I/O timeout (wait, pull)
 * @path: below API_BASE, query included and escaped
 * @json: (nullable): the request body
 *
 * Sends one request and reads its answer, bounded by @limit and @mode.
 * The task has no source object: a wait in flight does not keep the
 * driver alive (its cancellable is cancelled at dispose).
 */
static void
api_async (BfDockerDriver      *self,
           gboolean             long_poll,
           const char          *method,
           const char          *path,
           JsonNode            *json,
           gsize                limit,
           BodyMode             mode,
           GCancellable        *cancellable,
           GAsyncReadyCallback  callback,
           gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  g_autofree char *uri = g_strconcat (API_BASE, path, NULL);
  ApiCall *c = g_new0 (ApiCall, 1);

  g_task_set_source_tag (task, api_async);
  ensure_sessions (self);
  c->session = g_object_ref (long_poll ? self->long_session : self->session);
  c->body = g_byte_array_new ();
  c->limit = limit;
  c->mode = mode;
  c->host = g_strdup (self->host);
  g_task_set_task_data (task, c, (GDestroyNotify) api_call_free);
  c->message = soup_message_new (method, uri);
  if (c->message == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad API path %s", path);
      return;
    }
  if (json != NULL)
    {
      char *text = json_to_string (json, FALSE);
      g_autoptr(GBytes) bytes = g_bytes_new_take (text, strlen (text));

      soup_message_set_request_body_from_bytes (c->message, "application/json", bytes);
    }
  else if (g_str_equal (method, "POST"))
    soup_message_set_request_body_from_bytes (c->message, NULL, NULL);
  soup_session_send_async (c->session, c->message, G_PRIORITY_DEFAULT, cancellable,
                           api_sent_cb, g_steal_pointer (&task));
}

/* Returns: the HTTP status (0 with @error set), the body in @out_body. */
static guint
api_finish (GAsyncResult  *result,
            GBytes       **out_body,
            GError       **error)
{
  GTask *task = G_TASK (result);
  ApiCall *c = g_task_get_task_data (task);

  if (!g_task_propagate_boolean (task, error))
    return 0;
  if (out_body)
    *out_body = g_bytes_new (c->body->data, c->body->len);
  return soup_message_get_status (c->message);
}

static JsonNode *
parse_json (GBytes  *body,
            GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);

  if (!json_parser_load_from_data (parser, data ? data : "", len, error))
    return NULL;
  return json_parser_steal_root (parser);
}

/* An error for a refused call: the engine's "message", else the status. */
static GError *
api_error (guint       status,
           GBytes     *body,
           const char *what)
{
  g_autoptr(JsonNode) root = body ? parse_json (body, NULL) : NULL;
  const char *message = NULL;

  if (root && JSON_NODE_HOLDS_OBJECT (root))
    message = json_object_get_string_member_with_default (json_node_get_object (root), "message", NULL);
  return g_error_new (G_IO_ERROR, status == 404 ? G_IO_ERROR_NOT_FOUND : G_IO_ERROR_FAILED,
                      "the container engine refused to %s: %s (HTTP %u)", what,
                      message ? message : soup_status_get_phrase (status), status);
}

/* Removing a container ------------------------------------------------------------ */

typedef struct {
  BfDockerDriver *self;   /* strong: the task's source object */
  char *target;           /* name or id */
} RemoveData;

static void
remove_data_free (RemoveData *d)
{
  g_free (d->target);
  g_free (d);
}

static void
removed_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  RemoveData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  guint status = api_finish (result, &body, &error);

  if (status == 0)
    g_task_return_error (task, g_steal_pointer (&error));
  else if (status == 200 || status == 204 || status == 404)
    g_task_return_boolean (task, TRUE);      /* 404: gone already, AutoRemove= perhaps */
  else
    {
      g_autofree char *what = g_strdup_printf ("remove the container %s", d->target);
      g_task_return_error (task, api_error (status, body, what));
    }
}

static void
stopped_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  RemoveData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autofree char *path = NULL;
  guint status = api_finish (result, &body, &error);

  if (status == 0)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  /* 304: not running; 404: gone; any other refusal: removing with force
   * still stops it. */
  path = g_strdup_printf ("/containers/%s?force=1&v=1", d->target);
  api_async (d->self, FALSE, "DELETE", path, NULL, MAX_JSON_BYTES, BODY_JSON,
             g_task_get_cancellable (task), removed_cb, g_object_ref (task));
}

/* Stops @target (SIGTERM, SIGKILL after @grace_s) and removes it. */
static void
remove_container_async (BfDockerDriver      *self,
                        const char          *target,
                        guint                grace_s,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  RemoveData *d = g_new0 (RemoveData, 1);
  g_autofree char *path = g_strdup_printf ("/containers/%s/stop?t=%u", target, grace_s);

  g_task_set_source_tag (task, remove_container_async);
  d->self = self;
  d->target = g_strdup (target);
  g_task_set_task_data (task, d, (GDestroyNotify) remove_data_free);
  api_async (self, FALSE, "POST", path, NULL, MAX_JSON_BYTES, BODY_JSON, cancellable,
             stopped_cb, g_steal_pointer (&task));
}

static gboolean
remove_container_finish (GAsyncResult  *result,
                         GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
cleanup_done_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!remove_container_finish (result, &error))
    g_message ("Cannot remove the container %s after a failed or cancelled start: %s",
               (char *) user_data, error->message);
  g_free (user_data);
}

/* After a failed or cancelled start: nothing must be left running.  Not
 * cancellable; the orphan scan catches what this misses. */
static void
cleanup_container (BfDockerDriver *self,
                   const char     *name)
{
  remove_container_async (self, name, 0, NULL, cleanup_done_cb, g_strdup (name));
}

/* The container's end ----------------------------------------------------------------- */

/* Docker's log stream, when the container has no TTY, is frames of an
 * 8-byte header (stream, 0, 0, 0, big-endian size) and the data. */
static GString *
demultiplex (GBytes *body)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (body, &len);
  GString *out = g_string_new (NULL);
  gsize at = 0;

  if (len >= 8 && data[0] <= 2 && data[1] == 0 && data[2] == 0 && data[3] == 0)
    {
      while (at + 8 <= len)
        {
          guint32 size = ((guint32) data[at + 4] << 24) | ((guint32) data[at + 5] << 16) |
                         ((guint32) data[at + 6] << 8) | data[at + 7];
          gsize take = MIN ((gsize) size, len - at - 8);

          g_string_append_len (out, (const char *) data + at + 8, take);
          at += 8 + take;
        }
    }
  else
    g_string_append_len (out, (const char *) data, len);
  return out;
}

/* The last LOG_TAIL_LINES lines, at most LOG_TAIL_BYTES, valid UTF-8, with
 * @password blanked out. */
static char *
log_tail (GBytes     *body,
          const char *password)
{
  g_autoptr(GString) raw = demultiplex (body);
  g_autofree char *text = NULL;
  g_autoptr(GString) out = NULL;
  const char *start;
  guint lines = 0;

  if (password && *password)
    g_string_replace (raw, password, "********", 0);
  text = g_utf8_make_valid (raw->str, raw->len);
  g_strchomp (text);
  start = text + strlen (text);
  while (start > text)
    {
      if (start[-1] == '\n' && ++lines == LOG_TAIL_LINES)
        break;
      start--;
    }
  if (strlen (start) > LOG_TAIL_BYTES)
    {
      start += strlen (start) - LOG_TAIL_BYTES;
      while ((*start & 0xc0) == 0x80)
        start++;
    }
  out = g_string_new (start);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

typedef struct {
  GWeakRef driver;
  char *name;
  gint64 status_code;
} WaitData;

static void
wait_data_free (WaitData *w)
{
  g_weak_ref_clear (&w->driver);
  g_free (w->name);
  g_free (w);
}

/* Is @w still about the container the driver runs, and not being stopped? */
static BfDockerDriver *
wait_target (WaitData *w)
{
  BfDockerDriver *self = g_weak_ref_get (&w->driver);

  if (self && (self->stopping || g_strcmp0 (self->container, w->name) != 0))
    g_clear_object (&self);
  return self;
}

static void
logs_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  WaitData *w = user_data;
  g_autoptr(BfDockerDriver) self = wait_target (w);
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *tail = NULL;
  g_autofree char *message = NULL;
  guint status = api_finish (result, &body, &error);

  if (self != NULL)
    {
      if (status >= 200 && status < 300)
        tail = log_tail (body, self->password);
      if (tail && *tail)
        message = g_strdup_printf ("the container %s exited with status %" G_GINT64_FORMAT "; its last output:\n%s",
                                   w->name, w->status_code, tail);
      else
        message = g_strdup_printf ("the container %s exited with status %" G_GINT64_FORMAT " (no output left)",
                                   w->name, w->status_code);
      /* The id stays: the stop that follows removes the container. */
      bf_latent_driver_emit_instance_exited (BF_LATENT_DRIVER (self), message);
    }
  wait_data_free (w);
}

static void
waited_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  WaitData *w = user_data;
  g_autoptr(BfDockerDriver) self = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *path = NULL;
  guint status = api_finish (result, &body, &error);

  self = wait_target (w);
  if (self == NULL || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      wait_data_free (w);
      return;
    }
  if (status == 0 || (status != 200 && status != 404))
    {
      /* Not the container's end, the engine's trouble: the worker's
       * connection tells whether the instance lives. */
      g_autoptr(GError) refused = status ? api_error (status, body, "wait for the container") : NULL;
      g_warning ("Cannot watch the container %s: %s", w->name, (refused ? refused : error)->message);
      wait_data_free (w);
      return;
    }
  if (status == 404)
    {
      g_autofree char *message = g_strdup_printf ("the container %s is gone", w->name);
      bf_latent_driver_emit_instance_exited (BF_LATENT_DRIVER (self), message);
      wait_data_free (w);
      return;
    }
  root = parse_json (body, NULL);
  w->status_code = root && JSON_NODE_HOLDS_OBJECT (root)
                     ? json_object_get_int_member_with_default (json_node_get_object (root), "StatusCode", -1)
                     : -1;
  path = g_strdup_printf ("/containers/%s/logs?stdout=1&stderr=1&tail=%d", w->name, LOG_TAIL_LINES);
  api_async (self, FALSE, "GET", path, NULL, MAX_LOG_BYTES, BODY_HEAD, NULL, logs_cb, w);
}

static void
watch_container (BfDockerDriver *self,
                 const char     *name)
{
  g_autofree char *path = g_strdup_printf ("/containers/%s/wait", name);
  WaitData *w = g_new0 (WaitData, 1);

  g_weak_ref_init (&w->driver, self);
  w->name = g_strdup (name);
  if (self->wait_cancellable)
    g_cancellable_cancel (self->wait_cancellable);
  g_clear_object (&self->wait_cancellable);
  self->wait_cancellable = g_cancellable_new ();
  api_async (self, TRUE, "POST", path, NULL, MAX_JSON_BYTES, BODY_JSON, self->wait_cancellable, waited_cb, w);
}

/* Starting ------------------------------------------------------------------------ */

typedef struct {
  char *name;
  JsonNode *create;
} StartData;

static void
start_data_free (StartData *d)
{
  g_free (d->name);
  g_clear_pointer (&d->create, json_node_unref);
  g_free (d);
}

static void
add_string_member (JsonBuilder *b,
                   const char  *name,
                   const char  *value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, value);
}

static JsonNode *
create_body (BfWorkerConfig          *config,
             const BfLatentStartInfo *info)
{
  g_autoptr(JsonBuilder) b = json_builder_new_immutable ();
  g_auto(GStrv) env = bf_latent_driver_make_env (info);

  json_builder_begin_object (b);
  add_string_member (b, "Image", config->image);
  json_builder_set_member_name (b, "Env");
  json_builder_begin_array (b);
  for (guint i = 0; env[i]; i++)
    json_builder_add_string_value (b, env[i]);
  json_builder_end_array (b);
  /* An empty Command= keeps the image's own (no Cmd at all). */
  if (config->command == NULL || config->command[0] != NULL)
    {
      json_builder_set_member_name (b, "Cmd");
      json_builder_begin_array (b);
      for (guint i = 0; config->command && config->command[i]; i++)
        {
          /* No %p: the password stays in the environment. */
          BfLatentStartInfo public_info = { .name = info->name, .master = info->master,
                                            .master_url = info->master_url, .protocol = info->protocol };
          g_autofree char *word = bf_latent_expand (config->command[i], &public_info);

          json_builder_add_string_value (b, word);
        }
      if (config->command == NULL)
        {
          json_builder_add_string_value (b, "sh");
          json_builder_add_string_value (b, "-c");
          json_builder_add_string_value (b, DEFAULT_SCRIPT);
        }
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "Labels");
  json_builder_begin_object (b);
  if (info->daemon_id)
    add_string_member (b, BF_LATENT_LABEL_DAEMON, info->daemon_id);
  add_string_member (b, BF_LATENT_LABEL_WORKER, info->name);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "HostConfig");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Binds");
  json_builder_begin_array (b);
  for (guint i = 0; config->volumes && config->volumes[i]; i++)
    json_builder_add_string_value (b, config->volumes[i]);
  json_builder_end_array (b);
  if (config->network)
    add_string_member (b, "NetworkMode", config->network);
  json_builder_set_member_name (b, "Ulimits");
  json_builder_begin_array (b);
  for (guint i = 0; config->ulimits && config->ulimits[i]; i++)
    {
      g_autofree char *name = NULL;
      gint64 soft = 0, hard = 0;

      if (!bf_config_parse_ulimit (config->ulimits[i], &name, &soft, &hard))
        continue;     /* the configuration checked them */
      json_builder_begin_object (b);
      add_string_member (b, "Name", name);
      json_builder_set_member_name (b, "Soft");
      json_builder_add_int_value (b, soft);
      json_builder_set_member_name (b, "Hard");
      json_builder_add_int_value (b, hard);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  if (config->memory_bytes)
    {
      json_builder_set_member_name (b, "Memory");
      json_builder_add_int_value (b, (gint64) config->memory_bytes);
    }
  if (config->nano_cpus)
    {
      json_builder_set_member_name (b, "NanoCpus");
      json_builder_add_int_value (b, (gint64) config->nano_cpus);
    }
  json_builder_set_member_name (b, "AutoRemove");
  json_builder_add_boolean_value (b, config->auto_remove);
  json_builder_end_object (b);

  json_builder_end_object (b);
  return json_builder_get_root (b);
}

/* A start that did not complete: the error, and the container removed. */
static void
start_failed (GTask  *task,
              GError *error)
{
  BfDockerDriver *self = g_task_get_source_object (task);
  StartData *d = g_task_get_task_data (task);

  cleanup_container (self, d->name);
  if (g_strcmp0 (self->container, d->name) == 0)
    {
      g_clear_pointer (&self->container, g_free);
      bf_latent_driver_set_instance_id (BF_LATENT_DRIVER (self), NULL);
    }
  g_task_return_error (task, error);
}

static void
started_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfDockerDriver *self = g_task_get_source_object (task);
  StartData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  guint status = api_finish (result, &body, &error);

  if (status == 0)
    {
      start_failed (task, g_steal_pointer (&error));
      return;
    }
  if (status != 204 && status != 304)
    {
      start_failed (task, api_error (status, body, "start the container"));
      return;
    }
  if (g_cancellable_is_cancelled (g_task_get_cancellable (task)))
    {
      start_failed (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "start cancelled"));
      return;
    }
  watch_container (self, d->name);
  g_task_return_boolean (task, TRUE);
}

static void
created_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  BfDockerDriver *self = g_task_get_source_object (task);
  StartData *d = g_task_get_task_data (task);
  BfWorkerConfig *config = bf_latent_driver_get_config (BF_LATENT_DRIVER (self));
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *path = NULL;
  const char *id = NULL;
  guint status = api_finish (result, &body, &error);

  if (status == 0)
    {
      /* Cancelled or lost: the engine may have made it all the same. */
      start_failed (task, g_steal_pointer (&error));
      return;
    }
  if (status == 404)
    {
      start_failed (task, g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                                       "the container engine at %s has no image “%s” (Pull=true pulls it before each start)",
                                       config->docker_host, config->image));
      return;
    }
  if (status != 201 && status != 200)
    {
      start_failed (task, api_error (status, body, "create the container"));
      return;
    }
  root = parse_json (body, NULL);
  if (root && JSON_NODE_HOLDS_OBJECT (root))
    id = json_object_get_string_member_with_default (json_node_get_object (root), "Id", NULL);
  if (id == NULL || *id == '\0' || strchr (id, '/') || strchr (id, '?'))
    {
      start_failed (task, g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                       "the container engine at %s created the container without saying its id",
                                       config->docker_host));
      return;
    }
  if (g_strcmp0 (self->container, d->name) == 0)
    bf_latent_driver_set_instance_id (BF_LATENT_DRIVER (self), id);
  if (g_cancellable_is_cancelled (g_task_get_cancellable (task)))
    {
      start_failed (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "start cancelled"));
      return;
    }
  path = g_strdup_printf ("/containers/%s/start", d->name);
  /* Not cancellable: the answer must be seen to clean up after it. */
  api_async (self, FALSE, "POST", path, NULL, MAX_JSON_BYTES, BODY_JSON, NULL,
             started_cb, g_steal_pointer (&task));
}

static void
create_container (GTask *task)
{
  BfDockerDriver *self = g_task_get_source_object (task);
  StartData *d = g_task_get_task_data (task);
  g_autofree char *path = g_strdup_printf ("/containers/create?name=%s", d->name);

  /* Not cancellable: a container the engine made must be known to be
   * removed; created_cb checks the cancellable. */
  api_async (self, FALSE, "POST", path, d->create, MAX_JSON_BYTES, BODY_JSON, NULL,
             created_cb, task);
}

static void
pulled_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  GTask *task = user_data;
  BfDockerDriver *self = g_task_get_source_object (task);
  BfWorkerConfig *config = bf_latent_driver_get_config (BF_LATENT_DRIVER (self));
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  guint status = api_finish (result, &body, &error);
  gsize len = 0;
  const char *data = body ? g_bytes_get_data (body, &len) : NULL;
  g_autofree char *text = data ? g_utf8_make_valid (data, len) : NULL;
  const char *last_error = text ? g_strrstr (text, "\"error\"") : NULL;

  if (status == 0)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      g_object_unref (task);
      return;
    }
  if (status != 200)
    {
      g_autofree char *what = g_strdup_printf ("pull the image “%s”", config->image);
      g_task_return_error (task, api_error (status, body, what));
      g_object_unref (task);
      return;
    }
  /* The progress stream ends with an "error" object when the pull failed. */
  if (last_error != NULL)
    {
      g_autofree char *line = g_strndup (last_error, strcspn (last_error, "\r\n"));
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "pulling the image “%s” failed: %s", config->image, line);
      g_object_unref (task);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }
  create_container (task);
}

static void
bf_docker_driver_start_async (BfLatentDriver          *driver,
                              const BfLatentStartInfo *info,
                              GCancellable            *cancellable,
                              GAsyncReadyCallback      callback,
                              gpointer                 user_data)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (driver);
  BfWorkerConfig *config = bf_latent_driver_get_config (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  StartData *d = g_new0 (StartData, 1);

  g_task_set_source_tag (task, bf_docker_driver_start_async);
  d->name = g_strdup_printf ("buildfleet-%s-%08x", info->name, g_random_int ());
  d->create = create_body (config, info);
  g_task_set_task_data (task, d, (GDestroyNotify) start_data_free);

  if (self->wait_cancellable)
    g_cancellable_cancel (self->wait_cancellable);
  g_free (self->container);
  self->container = g_strdup (d->name);
  g_free (self->password);
  self->password = g_strdup (info->password);
  self->stopping = FALSE;
  bf_latent_driver_set_instance_id (driver, NULL);

  if (config->pull)
    {
      g_autofree char *image = g_uri_escape_string (config->image, NULL, FALSE);
      g_autofree char *path = g_strdup_printf ("/images/create?fromImage=%s", image);

      api_async (self, TRUE, "POST", path, NULL, PULL_TAIL_BYTES, BODY_TAIL, cancellable,
                 pulled_cb, g_steal_pointer (&task));
      return;
    }
  create_container (g_steal_pointer (&task));
}

static gboolean
bf_docker_driver_start_finish (BfLatentDriver  *driver,
                               GAsyncResult    *result,
                               GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Stopping -------------------------------------------------------------------------- */

static void
stop_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;

  if (!remove_container_finish (result, &error))
    g_task_return_error (task, g_steal_pointer (&error));
  else
    g_task_return_boolean (task, TRUE);
}

static void
bf_docker_driver_stop_async (BfLatentDriver      *driver,
                             gboolean             fast,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  const char *id = bf_latent_driver_get_instance_id (driver);
  const char *target = id ? id : self->container;

  g_task_set_source_tag (task, bf_docker_driver_stop_async);
  self->stopping = TRUE;
  if (self->wait_cancellable)
    g_cancellable_cancel (self->wait_cancellable);
  if (target == NULL)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  remove_container_async (self, target, fast ? 0 : STOP_GRACE_S, cancellable,
                          stop_done_cb, g_steal_pointer (&task));
}

static gboolean
bf_docker_driver_stop_finish (BfLatentDriver  *driver,
                              GAsyncResult    *result,
                              GError         **error)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (driver);

  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  bf_latent_driver_set_instance_id (driver, NULL);
  g_clear_pointer (&self->container, g_free);
  g_clear_pointer (&self->password, g_free);
  return TRUE;
}

/* The engine's view ---------------------------------------------------------------- */

static char *
bf_docker_driver_engine_key (BfLatentDriver *driver)
{
  return g_strconcat ("docker ", bf_latent_driver_get_config (driver)->docker_host, NULL);
}

static void
listed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  const char *daemon_id = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GPtrArray) instances = g_ptr_array_new_with_free_func ((GDestroyNotify) bf_latent_instance_free);
  guint status = api_finish (result, &body, &error);
  JsonArray *array;

  if (status == 0)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (status != 200)
    {
      g_task_return_error (task, api_error (status, body, "list the containers"));
      return;
    }
  root = parse_json (body, &error);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root))
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                               "the container list is not a JSON array%s%s",
                               error ? ": " : "", error ? error->message : "");
      return;
    }
  array = json_node_get_array (root);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *node = json_array_get_element (array, i);
      JsonObject *container, *labels;
      const char *id, *ours, *worker;
      BfLatentInstance *instance;

      if (!JSON_NODE_HOLDS_OBJECT (node))
        continue;
      container = json_node_get_object (node);
      id = json_object_get_string_member_with_default (container, "Id", NULL);
      labels = json_object_has_member (container, "Labels") &&
               JSON_NODE_HOLDS_OBJECT (json_object_get_member (container, "Labels"))
                 ? json_object_get_object_member (container, "Labels") : NULL;
      if (id == NULL || labels == NULL)
        continue;
      ours = json_object_get_string_member_with_default (labels, BF_LATENT_LABEL_DAEMON, NULL);
      worker = json_object_get_string_member_with_default (labels, BF_LATENT_LABEL_WORKER, "");
      /* The engine filtered by label; whatever else slipped through is
       * not ours to touch. */
      if (g_strcmp0 (ours, daemon_id) != 0 || strchr (id, '/') || strchr (id, '?'))
        continue;
      instance = g_new0 (BfLatentInstance, 1);
      instance->id = g_strdup (id);
      instance->worker = g_strdup (worker);
      g_ptr_array_add (instances, instance);
    }
  g_task_return_pointer (task, g_steal_pointer (&instances), (GDestroyNotify) g_ptr_array_unref);
}

static void
bf_docker_driver_list_instances_async (BfLatentDriver      *driver,
                                       const char          *daemon_id,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *filters = g_strdup_printf ("{\"label\":[\"%s=%s\"]}", BF_LATENT_LABEL_DAEMON, daemon_id);
  g_autofree char *escaped = g_uri_escape_string (filters, NULL, FALSE);
  g_autofree char *path = g_strdup_printf ("/containers/json?all=1&filters=%s", escaped);

  g_task_set_source_tag (task, bf_docker_driver_list_instances_async);
  g_task_set_task_data (task, g_strdup (daemon_id), g_free);
  api_async (self, FALSE, "GET", path, NULL, MAX_JSON_BYTES, BODY_JSON, cancellable,
             listed_cb, g_steal_pointer (&task));
}

static GPtrArray *
bf_docker_driver_list_instances_finish (BfLatentDriver  *driver,
                                        GAsyncResult    *result,
                                        GError         **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
bf_docker_driver_stop_instance_async (BfLatentDriver      *driver,
                                      const char          *id,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (driver);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, bf_docker_driver_stop_instance_async);
  remove_container_async (self, id, STOP_GRACE_S, cancellable, stop_done_cb, g_steal_pointer (&task));
}

static gboolean
bf_docker_driver_stop_instance_finish (BfLatentDriver  *driver,
                                       GAsyncResult    *result,
                                       GError         **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Object --------------------------------------------------------------------------- */

static void
bf_docker_driver_dispose (GObject *object)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (object);

  if (self->wait_cancellable)
    g_cancellable_cancel (self->wait_cancellable);
  g_clear_object (&self->wait_cancellable);
  g_clear_object (&self->session);
  g_clear_object (&self->long_session);
  G_OBJECT_CLASS (bf_docker_driver_parent_class)->dispose (object);
}

static void
bf_docker_driver_finalize (GObject *object)
{
  BfDockerDriver *self = BF_DOCKER_DRIVER (object);

  g_free (self->host);
  g_free (self->container);
  g_free (self->password);
  G_OBJECT_CLASS (bf_docker_driver_parent_class)->finalize (object);
}

static void
bf_docker_driver_class_init (BfDockerDriverClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  BfLatentDriverClass *driver_class = BF_LATENT_DRIVER_CLASS (klass);

  object_class->dispose = bf_docker_driver_dispose;
  object_class->finalize = bf_docker_driver_finalize;
  driver_class->start_async = bf_docker_driver_start_async;
  driver_class->start_finish = bf_docker_driver_start_finish;
  driver_class->stop_async = bf_docker_driver_stop_async;
  driver_class->stop_finish = bf_docker_driver_stop_finish;
  driver_class->engine_key = bf_docker_driver_engine_key;
  driver_class->list_instances_async = bf_docker_driver_list_instances_async;
  driver_class->list_instances_finish = bf_docker_driver_list_instances_finish;
  driver_class->stop_instance_async = bf_docker_driver_stop_instance_async;
  driver_class->stop_instance_finish = bf_docker_driver_stop_instance_finish;
}

static void
bf_docker_driver_init (BfDockerDriver *self)
{
}
