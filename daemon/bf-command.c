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

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <glib/gstdio.h>
#include <glib-unix.h>
#include <gio/gunixinputstream.h>

#include "bf-command.h"
#include "bf-error.h"
#include "bf-fd-writer.h"
#include "bf-util.h"
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
/* TransferredBytes changes at most this often. */
#define PROGRESS_PERIOD_MS 250

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

  /* A file transfer (upload_file, upload_directory, download_file): the
   * caller's descriptor, and at most one step of the worker's in flight. */
  gboolean transfer;
  gboolean upload;
  BfFdWriter *transfer_out;       /* uploads: the worker's blocks go here */
  int transfer_fd;                /* ... its descriptor (owned by the writer) */
  GInputStream *transfer_in;      /* download_file: read for the worker */
  GCancellable *transfer_cancel;  /* the read in flight */
  guint64 transfer_limit;
  guint64 transferred;
  guint progress_source_id;
  gboolean transfer_ended;        /* the worker said close / unpack, or read the end */
  char *transfer_failure;         /* why the transfer stopped: the Failure */
  BfTransferReply reply;          /* the step in flight; NULL if none */
  gpointer reply_data;
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
  ARG_SIZE,             /* bytes, any number type; normalised to t */
  ARG_COMPRESS,         /* "none", "gz" or "bz2" */
  ARG_MODE,             /* a file mode, 0 to 07777; normalised to i */
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

/* File transfers: the data goes through the descriptor "fd" (taken out
 * of the arguments by the build), never through a path we open. */
static const ArgSpec upload_file_args[] = {
  { "path", ARG_PATH, TRUE }, { "maxsize", ARG_SIZE, FALSE }, { "blocksize", ARG_SIZE, FALSE },
  { "keepstamp", ARG_BOOL, FALSE }, { NULL }
};
static const ArgSpec upload_directory_args[] = {
  { "path", ARG_PATH, TRUE }, { "maxsize", ARG_SIZE, FALSE }, { "blocksize", ARG_SIZE, FALSE },
  { "compress", ARG_COMPRESS, FALSE }, { NULL }
};
static const ArgSpec download_file_args[] = {
  { "path", ARG_PATH, TRUE }, { "maxsize", ARG_SIZE, FALSE }, { "blocksize", ARG_SIZE, FALSE },
  { "mode", ARG_MODE, FALSE }, { NULL }
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
  { "upload_file", upload_file_args },
  { "upload_directory", upload_directory_args },
  { "download_file", download_file_args },
};

/* Seconds, byte counts and mode bits: any D-Bus number type, range-checked
 * by bf_check_number; sizes and modes are normalised to t and i. */
static GVariant *
convert_number (const ArgSpec  *spec,
                GVariant       *v,
                GError        **error)
{
  g_autofree char *what = g_strdup_printf ("Argument “%s”", spec->name);
  double d;

  switch (spec->kind)
    {
    case ARG_NUMBER:
      /* The same rule for every number type: -1 and -1.0 alike. */
      if (!bf_check_number (v, what, "seconds", MAX_SECONDS_ARG, NULL, error))
        return NULL;
      return g_variant_ref (v);

    case ARG_SIZE:
      {
        double max = g_str_equal (spec->name, "blocksize") ? BF_TRANSFER_MAX_BLOCK : BF_TRANSFER_MAX_SIZE;

        if (!bf_check_number (v, what, "bytes", max, &d, error))
          return NULL;
        if (g_str_equal (spec->name, "blocksize") && d < 1)
          {
            g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                         "Argument “blocksize” must be at least 1 byte");
            return NULL;
          }
        return g_variant_ref_sink (g_variant_new_uint64 ((guint64) d));
      }

    case ARG_MODE:
      if (!bf_check_number (v, "Argument “mode”", "mode bits", 07777, &d, error))
        return NULL;
      return g_variant_ref_sink (g_variant_new_int32 ((gint32) d));

    default:
      g_assert_not_reached ();
    }
}

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

    case ARG_STRING_MAP:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE ("a{ss}")))
        return g_variant_ref (v);
      expected = "a string map (a{ss})";
      break;

    case ARG_COMPRESS:
      if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING) &&
          g_strv_contains ((const char * const[]) { "none", "gz", "bz2", NULL }, g_variant_get_string (v, NULL)))
        return g_variant_ref (v);
      expected = "\"none\", \"gz\" or \"bz2\" (s)";
      break;

    case ARG_NUMBER:
    case ARG_SIZE:
    case ARG_MODE:
      return convert_number (spec, v, error);
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
                   "Command “%s” is not supported (use shell, mkdir, rmdir, stat, listdir, rmfile, glob, cpdir, "
                   "upload_file, upload_directory or download_file)",
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
  /* Transfers: every argument the worker requires, so that each link only
   * renames them (mode -1 = the worker's umask). */
  if (bf_command_is_transfer (name))
    {
      if (!g_variant_lookup (args, "maxsize", "*", NULL))
        g_variant_builder_add (&b, "{sv}", "maxsize", g_variant_new_uint64 (BF_TRANSFER_MAX_SIZE));
      if (!g_variant_lookup (args, "blocksize", "*", NULL))
        g_variant_builder_add (&b, "{sv}", "blocksize", g_variant_new_uint64 (BF_TRANSFER_DEFAULT_BLOCK));
    }
  if (g_str_equal (name, "upload_file") && !g_variant_lookup (args, "keepstamp", "*", NULL))
    g_variant_builder_add (&b, "{sv}", "keepstamp", g_variant_new_boolean (FALSE));
  if (g_str_equal (name, "upload_directory") && !g_variant_lookup (args, "compress", "*", NULL))
    g_variant_builder_add (&b, "{sv}", "compress", g_variant_new_string ("none"));
  if (g_str_equal (name, "download_file") && !g_variant_lookup (args, "mode", "*", NULL))
    g_variant_builder_add (&b, "{sv}", "mode", g_variant_new_int32 (-1));
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

/* File transfers ---------------------------------------------------------------- */

gboolean
bf_command_is_transfer (const char *name)
{
  return g_str_equal (name, "upload_file") || g_str_equal (name, "upload_directory") ||
         g_str_equal (name, "download_file");
}

/* What the transfer moves, for messages. */
static const char *
transfer_what (BfCommand *self)
{
  const char *name = bf_dbus_command_get_name (BF_DBUS_COMMAND (self));

  if (g_str_equal (name, "upload_directory"))
    return "the directory's tar stream";
  return self->upload ? "the uploaded file" : "the file read from the descriptor";
}

/* Answers the step in flight, if any: the link tells the worker. */
static void
answer_step (BfCommand  *self,
             GBytes     *data,
             const char *failure)
{
  BfTransferReply reply = self->reply;
  gpointer reply_data = self->reply_data;

  if (reply == NULL)
    return;
  self->reply = NULL;
  self->reply_data = NULL;
  reply (reply_data, data, failure);
}

static gboolean
publish_progress_cb (gpointer user_data)
{
  BfCommand *self = user_data;

  self->progress_source_id = 0;
  bf_dbus_command_set_transferred_bytes (BF_DBUS_COMMAND (self), self->transferred);
  return G_SOURCE_REMOVE;
}

/* TransferredBytes follows at most every PROGRESS_PERIOD_MS. */
static void
add_transferred (BfCommand *self,
                 gsize      n)
{
  self->transferred += n;
  if (self->progress_source_id == 0 && n > 0)
    self->progress_source_id = bf_timeout_add (PROGRESS_PERIOD_MS, publish_progress_cb, self,
                                               "[buildfleetd] transfer progress");
}

/* Stops the transfer for good: the first @failure is what Completed says;
 * the worker's step in flight is refused, which ends its command. */
static void
stop_transfer (BfCommand  *self,
               const char *failure)
{
  if (self->transfer_failure == NULL)
    self->transfer_failure = bf_utf8_truncate (failure, -1, BF_LIMIT_FAILURE_BYTES);
  if (self->transfer_out != NULL)
    bf_fd_writer_when_drained (self->transfer_out, NULL, NULL);
  if (self->transfer_cancel != NULL)
    g_cancellable_cancel (self->transfer_cancel);
  answer_step (self, NULL, self->transfer_failure);
}

static void
limit_exceeded (BfCommand *self)
{
  g_autofree char *failure = NULL;

  if (self->upload)
    failure = g_strdup_printf ("%s is larger than the limit of %" G_GUINT64_FORMAT " bytes (maxsize): "
                               "the descriptor got only its first %" G_GUINT64_FORMAT " bytes and is incomplete",
                               transfer_what (self), self->transfer_limit, self->transferred);
  else
    failure = g_strdup_printf ("%s is larger than the limit of %" G_GUINT64_FORMAT " bytes (maxsize): "
                               "the worker's file is incomplete",
                               transfer_what (self), self->transfer_limit);
  stop_transfer (self, failure);
}

/* A block went out to the caller's descriptor: the worker may send the next. */
static void
written_cb (gpointer user_data,
            gboolean ok)
{
  BfCommand *self = user_data;

  if (ok)
    answer_step (self, NULL, NULL);
  else
    {
      g_autofree char *failure =
        g_strdup_printf ("writing %s to the descriptor failed (its reader went away?) after %" G_GUINT64_FORMAT
                         " bytes: the transfer is incomplete", transfer_what (self), self->transferred);
      stop_transfer (self, failure);
    }
}

static void
read_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr(BfCommand) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) bytes = g_input_stream_read_bytes_finish (G_INPUT_STREAM (object), result, &error);
  gsize n;

  if (self->reply == NULL || self->transfer_failure != NULL)
    return;   /* stopped meanwhile: the step was answered */
  if (bytes == NULL)
    {
      g_autofree char *failure = g_strdup_printf ("reading the descriptor failed: %s", error->message);
      stop_transfer (self, failure);
      return;
    }
  n = g_bytes_get_size (bytes);
  if (n > self->transfer_limit - self->transferred)
    {
      limit_exceeded (self);
      return;
    }
  if (n == 0)
    self->transfer_ended = TRUE;
  add_transferred (self, n);
  answer_step (self, bytes, NULL);
}

/* The transfer steps, one function each.  Each returns NULL once the step is
 * taken (answered now or when its I/O completes), or the step's name when
 * this command does not take it. */

static const char *
transfer_write (BfCommand            *self,
                const BfTransferStep *step)
{
  gsize len = step->data ? g_bytes_get_size (step->data) : 0;

  if (!self->upload || self->transfer_ended)
    return "data";
  if (len > self->transfer_limit - self->transferred)
    {
      limit_exceeded (self);
      return NULL;
    }
  add_transferred (self, len);
  bf_fd_writer_write (self->transfer_out, g_bytes_get_data (step->data, NULL), len);
  /* Acknowledged once written: that holds the worker's next block. */
  bf_fd_writer_when_drained (self->transfer_out, written_cb, self);
  return NULL;
}

static const char *
transfer_close (BfCommand  *self,
                const char *name)
{
  if (self->upload && g_str_equal (name, "upload_directory"))
    return "close";
  if (self->upload)
    self->transfer_ended = TRUE;
  answer_step (self, NULL, NULL);
  return NULL;
}

static const char *
transfer_utime (BfCommand            *self,
                const char           *name,
                const BfTransferStep *step)
{
  struct stat st;

  if (!g_str_equal (name, "upload_file"))
    return "utime";
  /* keepstamp: the times go onto the caller's file if it is one. */
  if (fstat (self->transfer_fd, &st) == 0 && S_ISREG (st.st_mode) &&
      isfinite (step->atime) && isfinite (step->mtime))
    {
      struct timespec times[2] = {
        { (time_t) step->atime, (long) ((step->atime - (time_t) step->atime) * 1e9) },
        { (time_t) step->mtime, (long) ((step->mtime - (time_t) step->mtime) * 1e9) },
      };
      if (times[0].tv_nsec < 0 || times[0].tv_nsec >= 1000000000)
        times[0].tv_nsec = 0;
      if (times[1].tv_nsec < 0 || times[1].tv_nsec >= 1000000000)
        times[1].tv_nsec = 0;
      (void) futimens (self->transfer_fd, times);
    }
  answer_step (self, NULL, NULL);
  return NULL;
}

static const char *
transfer_unpack (BfCommand  *self,
                 const char *name)
{
  if (!g_str_equal (name, "upload_directory"))
    return "unpack";
  self->transfer_ended = TRUE;
  answer_step (self, NULL, NULL);
  return NULL;
}

static const char *
transfer_read (BfCommand            *self,
               const BfTransferStep *step)
{
  gsize want;

  if (self->upload)
    return "read";
  if (self->transfer_ended || self->transfer_in == NULL)
    {
      g_autoptr(GBytes) empty = g_bytes_new_static ("", 0);
      answer_step (self, empty, NULL);
      return NULL;
    }
  /* One byte past the limit tells a bigger file from one that fits. */
  want = MIN (step->length, BF_TRANSFER_MAX_BLOCK);
  want = MIN (want, self->transfer_limit + 1 - self->transferred);
  g_input_stream_read_bytes_async (self->transfer_in, want, G_PRIORITY_DEFAULT,
                                   self->transfer_cancel, read_cb, g_object_ref (self));
  return NULL;
}

static void
sink_transfer (gpointer              user_data,
               const BfTransferStep *step,
               BfTransferReply       reply,
               gpointer              reply_data)
{
  BfCommand *self = user_data;
  const char *name = bf_dbus_command_get_name (BF_DBUS_COMMAND (self));
  const char *wrong = "unknown";

  if (self->reply != NULL)
    {
      /* A worker waits for each answer; a second step is a broken peer. */
      reply (reply_data, NULL, "a transfer step arrived before the previous one was answered");
      stop_transfer (self, "the worker sent a transfer step before the previous one was answered");
      return;
    }
  if (self->finished || !self->transfer || self->transfer_failure != NULL)
    {
      reply (reply_data, NULL, self->transfer_failure ? self->transfer_failure : "this command transfers no file");
      return;
    }
  self->reply = reply;
  self->reply_data = reply_data;

  switch (step->op)
    {
    case BF_TRANSFER_WRITE:
      wrong = transfer_write (self, step);
      break;
    case BF_TRANSFER_CLOSE:
      wrong = transfer_close (self, name);
      break;
    case BF_TRANSFER_UTIME:
      wrong = transfer_utime (self, name, step);
      break;
    case BF_TRANSFER_UNPACK:
      wrong = transfer_unpack (self, name);
      break;
    case BF_TRANSFER_READ:
      wrong = transfer_read (self, step);
      break;
    }
  if (wrong == NULL)
    return;

  {
    g_autofree char *failure = g_strdup_printf ("the worker sent a transfer step (%s) that the %s command does not take",
                                                wrong, name);
    stop_transfer (self, failure);
  }
}

/**
 * bf_command_set_transfer:
 * @fd: (transfer full): the caller's descriptor: written with an upload,
 *   read for a download
 * @args: the neutral arguments (for "maxsize")
 *
 * Makes this command a file transfer; before bf_command_start().
 */
void
bf_command_set_transfer (BfCommand *self,
                         int        fd,
                         GVariant  *args)
{
  const char *name = bf_dbus_command_get_name (BF_DBUS_COMMAND (self));
  struct stat st;

  g_return_if_fail (!self->transfer && self->link == NULL);

  self->transfer = TRUE;
  self->upload = !g_str_equal (name, "download_file");
  self->transfer_limit = BF_TRANSFER_MAX_SIZE;
  g_variant_lookup (args, "maxsize", "t", &self->transfer_limit);
  self->transfer_cancel = g_cancellable_new ();
  bf_dbus_command_set_transferred_bytes (BF_DBUS_COMMAND (self), 0);
  if (self->upload)
    {
      self->transfer_fd = fd;
      self->transfer_out = bf_fd_writer_new (fd);
    }
  else
    {
      /* Pipes and sockets: poll instead of blocking the loop.  Regular
       * files are read on GIO's worker threads. */
      if (fstat (fd, &st) == 0 && (S_ISFIFO (st.st_mode) || S_ISSOCK (st.st_mode) || S_ISCHR (st.st_mode)))
        g_unix_set_fd_nonblocking (fd, TRUE, NULL);
      self->transfer_in = g_unix_input_stream_new (fd, TRUE);
    }
}

/* Completion ------------------------------------------------------------------- */

static void
finish (BfCommand  *self,
        int         exit_code,
        const char *failure)
{
  BfDBusCommand *c = BF_DBUS_COMMAND (self);

  if (self->finished)
    return;
  self->finished = TRUE;
  if (self->transfer)
    {
      /* Whatever the worker still waits for is refused. */
      if (self->transfer_failure == NULL)
        self->transfer_failure = g_strdup (failure && *failure ? failure : "the command ended");
      stop_transfer (self, NULL);
      g_clear_handle_id (&self->progress_source_id, g_source_remove);
      bf_dbus_command_set_transferred_bytes (c, self->transferred);
      /* The caller reads its end of file; Completed says whether it is whole. */
      g_clear_pointer (&self->transfer_out, bf_fd_writer_finish);
      g_clear_object (&self->transfer_in);
    }
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
  g_autofree char *transfer_failure = NULL;

  /* A transfer completes only if all of it went through. */
  if (self->transfer && !self->finished)
    {
      if (self->transfer_failure != NULL)
        {
          transfer_failure = g_strdup (self->transfer_failure);
          finish (self, self->have_rc && self->rc != 0 ? self->rc : -1, transfer_failure);
          return;
        }
      if (failure == NULL && self->have_rc && self->rc != 0)
        {
          GString *err = self->tails[1];
          g_autofree char *said = err ? g_strstrip (g_strdup (err->str)) : NULL;

          failure = transfer_failure =
            g_strdup_printf ("the worker could not transfer %s (exit code %d)%s%s", transfer_what (self),
                             self->rc, said && *said ? ": " : "", said ? said : "");
        }
      else if (failure == NULL && self->upload && !self->transfer_ended)
        failure = transfer_failure = g_strdup_printf ("the worker ended without finishing %s", transfer_what (self));
    }

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
  .transfer = sink_transfer,
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
  /* A worker that waits for our answer to a block hears of it at once. */
  if (self->transfer)
    {
      g_autofree char *failure = g_strdup_printf ("interrupted: %s; the transfer is incomplete", why);
      stop_transfer (self, failure);
    }
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

  g_clear_handle_id (&self->progress_source_id, g_source_remove);
  if (self->transfer)
    stop_transfer (self, "the command was removed");
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
  g_clear_pointer (&self->transfer_out, bf_fd_writer_finish);
  g_clear_object (&self->transfer_in);
  g_clear_object (&self->transfer_cancel);
  g_free (self->transfer_failure);
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
