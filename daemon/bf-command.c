/* bf-command.c: one remote command, published as org.buildfleet.Fleet1.Command
 *
 * Turns the output a worker link delivers into Output signals, in order
 * and whole, and the command's completion into Completed.  Arguments from D-Bus are
 * checked and converted before anything is sent, so a wrong type is an
 * InvalidArgs error naming the argument, never a confused worker.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "bf-command.h"
#include "bf-error.h"
#include "bf-fd-writer.h"
#include "bf-variant-util.h"

#define MAX_ARG_BYTES (1024 * 1024)
/* timeout, maxTime, sigtermTime: at most 30 days */
#define MAX_SECONDS_ARG (30.0 * 24 * 3600)

/* Streams that may go to a caller's descriptor, and streams whose end is
 * kept for GetOutputTail(). */
static const char * const fd_streams[] = { "stdout", "stderr" };
#define N_FD_STREAMS G_N_ELEMENTS (fd_streams)
static const char * const tail_streams[] = { "stdout", "stderr", "header" };
#define N_TAIL_STREAMS G_N_ELEMENTS (tail_streams)
/* Per stream; whole characters, so a little less at times. */
#define TAIL_BYTES (64 * 1024)

struct _BfCommand
{
  BfDBusCommandSkeleton parent_instance;

  BfAuthority *authority;
  BfWorkerLink *link;
  char *command_id;
  char *builder;
  gboolean have_rc;
  int rc;
  gboolean finished;
  BfFdWriter *out_fds[N_FD_STREAMS];   /* the caller's stdout-fd, stderr-fd */
  GString *tails[N_TAIL_STREAMS];      /* the last output, NULL until some came */
};

enum {
  SIGNAL_FINISHED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void bf_command_iface_init (BfDBusCommandIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (BfCommand, bf_command, BF_DBUS_TYPE_COMMAND_SKELETON,
                               G_IMPLEMENT_INTERFACE (BF_DBUS_TYPE_COMMAND, bf_command_iface_init))

/* Arguments ------------------------------------------------------------------- */

typedef enum {
  ARG_STRING,
  ARG_STRING_OR_LIST,   /* s or as */
  ARG_PATH,             /* s, relative to the builder directory unless absolute */
  ARG_PATHS,            /* as (or s), each a path */
  ARG_BOOL,
  ARG_NUMBER,
  ARG_STRING_MAP,       /* a{ss} */
} ArgKind;

typedef struct {
  const char *name;
  ArgKind kind;
  gboolean required;
} ArgSpec;

typedef struct {
  const char *command;
  const ArgSpec *args;
} CommandSpec;

static const ArgSpec shell_args[] = {
  { "command", ARG_STRING_OR_LIST, TRUE },
  { "workdir", ARG_PATH, FALSE },
  { "env", ARG_STRING_MAP, FALSE },
  { "want_stdout", ARG_BOOL, FALSE },
  { "want_stderr", ARG_BOOL, FALSE },
  { "logfiles", ARG_STRING_MAP, FALSE },
  { "timeout", ARG_NUMBER, FALSE },
  { "maxTime", ARG_NUMBER, FALSE },
  { "sigtermTime", ARG_NUMBER, FALSE },
  { "usePTY", ARG_BOOL, FALSE },
  { "logEnviron", ARG_BOOL, FALSE },
  { "initial_stdin", ARG_STRING, FALSE },
  { "interruptSignal", ARG_STRING, FALSE },
  { NULL }
};
static const ArgSpec paths_args[] = { { "paths", ARG_PATHS, TRUE }, { NULL } };
static const ArgSpec path_args[] = { { "path", ARG_PATH, TRUE }, { NULL } };
static const ArgSpec cpdir_args[] = {
  { "from_path", ARG_PATH, TRUE }, { "to_path", ARG_PATH, TRUE }, { NULL }
};

static const CommandSpec command_specs[] = {
  { "shell", shell_args },
  { "mkdir", paths_args },
  { "rmdir", paths_args },
  { "stat", path_args },
  { "listdir", path_args },
  { "rmfile", path_args },
  { "glob", path_args },
  { "cpdir", cpdir_args },
};

static GVariant *
convert_one (const ArgSpec  *spec,
             GVariant       *v,
             GError        **error)
{
  const char *expected = NULL;

  switch (spec->kind)
    {
    case ARG_STRING:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
        return g_variant_ref (v);
      expected = "a string (s)";
      break;

    case ARG_STRING_OR_LIST:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
        return g_variant_ref (v);
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING_ARRAY))
        {
          if (g_variant_n_children (v) == 0)
            {
              g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS, "Argument “%s” is an empty list", spec->name);
              return NULL;
            }
          return g_variant_ref (v);
        }
      expected = "a string (s) or a list of strings (as)";
      break;

    case ARG_PATH:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
        return g_variant_ref (v);
      expected = "a path string (s)";
      break;

    case ARG_PATHS:
      /* One path or several: the links always get a list. */
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
        {
          const char *single[2] = { g_variant_get_string (v, NULL), NULL };
          return g_variant_ref_sink (g_variant_new_strv (single, 1));
        }
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING_ARRAY))
        return g_variant_ref (v);
      expected = "a list of paths (as)";
      break;

    case ARG_BOOL:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN))
        return g_variant_ref (v);
      expected = "a boolean (b)";
      break;

    case ARG_NUMBER:
      {
        g_autofree char *what = g_strdup_printf ("Argument “%s”", spec->name);

        /* The same rule for every number type: -1 and -1.0 alike. */
        if (!bf_check_number (v, what, "seconds", MAX_SECONDS_ARG, NULL, error))
          return NULL;
        return g_variant_ref (v);
      }

    case ARG_STRING_MAP:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE ("a{ss}")))
        return g_variant_ref (v);
      expected = "a string map (a{ss})";
      break;
    }

  g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
               "Argument “%s” must be %s, not %s", spec->name, expected, g_variant_get_type_string (v));
  return NULL;
}

/**
 * bf_command_validate_args:
 * @name: the remote command
 * @args: a{sv} from the D-Bus caller
 *
 * Checks the D-Bus caller's arguments against the command's schema.
 * Paths stay as given (absolute, or relative to the builder's directory);
 * each worker link puts them in its protocol's form.
 *
 * Returns: (transfer full): the neutral arguments for
 *   bf_worker_link_prepare_command(), or %NULL with an InvalidArgs @error
 *   that names the argument.
 */
GVariant *
bf_command_validate_args (const char  *name,
                          GVariant    *args,
                          GError     **error)
{
  const CommandSpec *cs = NULL;
  GVariantBuilder b;
  GVariantIter iter;
  const char *key;
  GVariant *value;

  for (guint i = 0; i < G_N_ELEMENTS (command_specs); i++)
    if (g_str_equal (command_specs[i].command, name))
      cs = &command_specs[i];
  if (cs == NULL)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "Command “%s” is not supported (use shell, mkdir, rmdir, stat, listdir, rmfile, glob or cpdir)",
                   name);
      return NULL;
    }
  if (g_variant_get_size (args) > MAX_ARG_BYTES)
    {
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "The arguments are larger than %d bytes", MAX_ARG_BYTES);
      return NULL;
    }

  g_variant_iter_init (&iter, args);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      g_autoptr(GVariant) owned = value;
      gboolean known = FALSE;
      for (const ArgSpec *a = cs->args; a->name; a++)
        known |= g_str_equal (a->name, key);
      if (!known)
        {
          g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                       "Argument “%s” is not known to the %s command", key, name);
          return NULL;
        }
    }

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  for (const ArgSpec *a = cs->args; a->name; a++)
    {
      g_autoptr(GVariant) v = g_variant_lookup_value (args, a->name, NULL);
      g_autoptr(GVariant) converted = NULL;

      if (v == NULL)
        {
          if (a->required)
            {
              g_variant_builder_clear (&b);
              g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                           "Argument “%s” is required for the %s command", a->name, name);
              return NULL;
            }
          continue;
        }
      converted = convert_one (a, v, error);
      if (converted == NULL)
        {
          g_variant_builder_clear (&b);
          return NULL;
        }
      g_variant_builder_add (&b, "{sv}", a->name, converted);
    }

  /* The worker needs a workdir for shell; default to the builder directory. */
  if (g_str_equal (name, "shell") && !g_variant_lookup (args, "workdir", "&s", NULL))
    g_variant_builder_add (&b, "{sv}", "workdir", g_variant_new_string ("build"));
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

/* Wire -> signals ---------------------------------------------------------------- */

/* One update can carry as much text as a worker's message (after UTF-8
 * repair, three times that): it goes out as consecutive Output signals of
 * at most BF_LIMIT_OUTPUT_CHUNK_BYTES each, cut between characters and
 * preferably after a newline, so that their concatenation is the text. */
static void
emit_output_len (BfCommand  *self,
                 const char *stream,
                 const char *text,
                 gsize       len)
{
  g_autofree char *name = NULL;

  if (text == NULL || len == 0)
    return;
  /* The stream is a log name the worker chose. */
  if (strlen (stream) > BF_LIMIT_KEY_BYTES)
    stream = name = bf_utf8_truncate (stream, -1, BF_LIMIT_KEY_BYTES);
  while (len > 0)
    {
      gsize n = bf_utf8_chunk_len (text, len, BF_LIMIT_OUTPUT_CHUNK_BYTES);
      g_autofree char *chunk = n < len ? g_strndup (text, n) : NULL;

      bf_dbus_command_emit_output (BF_DBUS_COMMAND (self), stream, chunk ? chunk : text);
      text += n;
      len -= n;
    }
}

static int
stream_index (const char * const *streams,
              guint               n,
              const char         *stream)
{
  for (guint i = 0; i < n; i++)
    if (g_str_equal (streams[i], stream))
      return (int) i;
  return -1;
}

/* Keeps the last TAIL_BYTES of @text's stream, cut between characters. */
static void
append_tail (BfCommand  *self,
             int         i,
             const char *text,
             gsize       len)
{
  GString *tail;

  if (len >= TAIL_BYTES)
    {
      text += len - TAIL_BYTES;
      len = TAIL_BYTES;
    }
  if (self->tails[i] == NULL)
    self->tails[i] = g_string_sized_new (MIN (len, TAIL_BYTES));
  tail = self->tails[i];
  g_string_append_len (tail, text, len);
  if (tail->len > TAIL_BYTES)
    {
      gsize cut = tail->len - TAIL_BYTES;

      /* Start on a character: skip continuation bytes. */
      while (cut < tail->len && (tail->str[cut] & 0xc0) == 0x80)
        cut++;
      g_string_erase (tail, 0, cut);
    }
}

static void
sink_output (gpointer    user_data,
             const char *stream,
             const char *text,
             gsize       len)
{
  BfCommand *self = user_data;
  int i;

  if (self->finished)
    return;
  if ((i = stream_index (fd_streams, N_FD_STREAMS, stream)) >= 0 && self->out_fds[i] != NULL)
    bf_fd_writer_write (self->out_fds[i], text, len);
  if ((i = stream_index (tail_streams, N_TAIL_STREAMS, stream)) >= 0)
    append_tail (self, i, text, len);
  emit_output_len (self, stream, text, len);
}

static void
finish_fds (BfCommand *self)
{
  for (guint i = 0; i < N_FD_STREAMS; i++)
    g_clear_pointer (&self->out_fds[i], bf_fd_writer_finish);
}

/**
 * bf_command_set_output_fd:
 * @stream: "stdout" or "stderr"
 * @fd: (transfer full): where that stream's output is written as it
 *   arrives; closed once the command finished and all was written
 *
 * Returns: %FALSE (and closes @fd) if @stream cannot go to a descriptor
 */
gboolean
bf_command_set_output_fd (BfCommand  *self,
                          const char *stream,
                          int         fd)
{
  int i = stream_index (fd_streams, N_FD_STREAMS, stream);

  if (i < 0 || self->finished)
    {
      g_close (fd, NULL);
      return FALSE;
    }
  g_clear_pointer (&self->out_fds[i], bf_fd_writer_finish);
  self->out_fds[i] = bf_fd_writer_new (fd);
  return TRUE;
}

static void
sink_exit_code (gpointer user_data,
                int      exit_code)
{
  BfCommand *self = user_data;

  self->have_rc = TRUE;
  self->rc = exit_code;
}

static void
finish (BfCommand  *self,
        int         exit_code,
        const char *failure)
{
  BfDBusCommand *c = BF_DBUS_COMMAND (self);

  if (self->finished)
    return;
  self->finished = TRUE;
  g_object_freeze_notify (G_OBJECT (self));
  bf_dbus_command_set_exit_code (c, exit_code);
  bf_dbus_command_set_failure (c, failure);
  bf_dbus_command_set_state (c, "finished");
  g_object_thaw_notify (G_OBJECT (self));
  bf_dbus_command_emit_completed (c, exit_code, failure);
  finish_fds (self);
  g_clear_object (&self->link);
  g_signal_emit (self, signals[SIGNAL_FINISHED], 0);
}

static void
sink_complete (gpointer    user_data,
               const char *failure,
               gboolean    lost)
{
  BfCommand *self = user_data;

  /* The failure goes into a property and a signal: bounded. */
  if (failure != NULL)
    {
      g_autofree char *text = bf_utf8_truncate (failure, -1, BF_LIMIT_FAILURE_BYTES);
      finish (self, self->have_rc ? self->rc : -1, text);
    }
  else
    finish (self, self->have_rc ? self->rc : 0, "");
}

/* A command abandoned with its build stays registered until disposed:
 * what the worker still sends for it is dropped (sink_output() checks). */
static const BfCommandSink command_sink = {
  .output = sink_output,
  .exit_code = sink_exit_code,
  .complete = sink_complete,
};

/**
 * bf_command_start:
 * @prepared: (transfer full): from bf_worker_link_prepare_command()
 */
void
bf_command_start (BfCommand    *self,
                  BfWorkerLink *link,
                  GVariant     *prepared)
{
  g_return_if_fail (self->link == NULL);

  self->link = g_object_ref (link);
  bf_worker_link_start_command (link, self->command_id,
                                bf_dbus_command_get_name (BF_DBUS_COMMAND (self)),
                                prepared, self->builder, &command_sink, self);
}

void
bf_command_interrupt (BfCommand  *self,
                      const char *why)
{
  if (self->finished || self->link == NULL)
    return;
  bf_worker_link_interrupt_command (self->link, self->command_id, self->builder, why);
}

/**
 * bf_command_abandon:
 * @why: sent to the worker with interrupt_command
 * @failure: the Failure the command completes with
 *
 * Ends the command now, for a build that ended: the worker is asked to
 * interrupt it, and whatever the worker sends about it later is
 * acknowledged and changes nothing.  Completed(-1, @failure) is emitted unless
 * the command had completed already, so no command outlives its build,
 * whether or not the worker ever answers.
 */
void
bf_command_abandon (BfCommand  *self,
                    const char *why,
                    const char *failure)
{
  g_autoptr(BfWorkerLink) link = NULL;

  if (self->finished)
    return;
  if (self->link != NULL)
    bf_worker_link_interrupt_command (self->link, self->command_id, self->builder, why);
  link = self->link ? g_object_ref (self->link) : NULL;
  finish (self, -1, failure);
  /* Stay registered until disposed, so that the worker's late output and
   * completion are acknowledged (a real worker logs a traceback for an
   * error response) and dropped by the sink. */
  g_set_object (&self->link, link);
}

/* D-Bus ------------------------------------------------------------------------- */

static void
interrupt_authorized (GObject               *object,
                      GDBusMethodInvocation *invocation)
{
  BfCommand *self = BF_COMMAND (object);
  const char *why;

  if (self->finished)
    {
      g_dbus_method_invocation_return_error (invocation, BF_ERROR, BF_ERROR_FAILED,
                                             "The command already finished");
      return;
    }
  g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(&s)", &why);
  bf_command_interrupt (self, why);
  bf_dbus_command_complete_interrupt (BF_DBUS_COMMAND (self), invocation);
}

static gboolean
handle_interrupt (BfDBusCommand         *object,
                  GDBusMethodInvocation *invocation,
                  const char            *why)
{
  bf_authority_check (BF_COMMAND (object)->authority, G_OBJECT (object), invocation,
                      BF_ACTION_RUN_BUILDS, interrupt_authorized);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* Reading what is published anyway (the Output signals): no
 * authorisation beyond the bus policy, like reading properties. */
static gboolean
handle_get_output_tail (BfDBusCommand         *object,
                        GDBusMethodInvocation *invocation)
{
  BfCommand *self = BF_COMMAND (object);
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{ss}"));
  for (guint i = 0; i < N_TAIL_STREAMS; i++)
    if (self->tails[i] != NULL)
      g_variant_builder_add (&b, "{ss}", tail_streams[i], self->tails[i]->str);
  bf_dbus_command_complete_get_output_tail (object, invocation, g_variant_builder_end (&b));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
bf_command_iface_init (BfDBusCommandIface *iface)
{
  iface->handle_interrupt = handle_interrupt;
  iface->handle_get_output_tail = handle_get_output_tail;
}

static void
bf_command_dispose (GObject *object)
{
  BfCommand *self = BF_COMMAND (object);

  if (self->link != NULL)
    {
      bf_worker_link_forget_command (self->link, self->command_id);
      g_clear_object (&self->link);
    }
  G_OBJECT_CLASS (bf_command_parent_class)->dispose (object);
}

static void
bf_command_finalize (GObject *object)
{
  BfCommand *self = BF_COMMAND (object);

  g_clear_object (&self->authority);
  finish_fds (self);
  for (guint i = 0; i < N_TAIL_STREAMS; i++)
    if (self->tails[i] != NULL)
      g_string_free (self->tails[i], TRUE);
  g_free (self->command_id);
  g_free (self->builder);
  G_OBJECT_CLASS (bf_command_parent_class)->finalize (object);
}

static void
bf_command_class_init (BfCommandClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_command_dispose;
  object_class->finalize = bf_command_finalize;

  signals[SIGNAL_FINISHED] =
    g_signal_new ("finished", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
bf_command_init (BfCommand *self)
{
}

BfCommand *
bf_command_new (const char  *name,
                const char  *command_id,
                const char  *builder,
                BfAuthority *authority)
{
  BfCommand *self = g_object_new (BF_TYPE_COMMAND, NULL);
  BfDBusCommand *c = BF_DBUS_COMMAND (self);

  self->authority = g_object_ref (authority);
  self->command_id = g_strdup (command_id);
  self->builder = g_strdup (builder);
  bf_dbus_command_set_name (c, name);
  bf_dbus_command_set_state (c, "running");
  bf_dbus_command_set_exit_code (c, -1);
  bf_dbus_command_set_failure (c, "");
  return self;
}
