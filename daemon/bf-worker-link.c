/* bf-worker-link.c: what every worker link shares
 *
 * The interface itself (see bf-worker-link.h), and the two things both
 * protocols need after decoding: turning the worker's self-description
 * into a bounded BfWorkerInfo, and turning Buildbot's update keys (the
 * same names over PB and msgpack) into BfCommandSink calls.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-limits.h"
#include "bf-log.h"
#include "bf-variant-util.h"
#include "bf-worker-link.h"

G_DEFINE_INTERFACE (BfWorkerLink, bf_worker_link, G_TYPE_OBJECT)

static void
bf_worker_link_default_init (BfWorkerLinkInterface *iface)
{
  /**
   * BfWorkerLink::closed:
   * @reason: why, for the log and the Detached signal
   *
   * The link ended; emitted once, whichever side ended it.
   */
  g_signal_new ("closed", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST,
                0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
  /**
   * BfWorkerLink::activity:
   *
   * Something arrived from the worker (at most about once a second).
   */
  g_signal_new ("activity", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST,
                0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  /**
   * BfWorkerLink::shutdown-requested:
   *
   * The worker asked to be shut down gracefully (buildbot-worker's SIGHUP
   * or shutdown.stamp over PB): finish current builds, take no new ones.
   */
  g_signal_new ("shutdown-requested", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST,
                0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

#define LINK_IFACE(self) BF_WORKER_LINK_GET_IFACE (self)

const char *
bf_worker_link_get_worker_name (BfWorkerLink *self)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), NULL);
  return LINK_IFACE (self)->get_worker_name (self);
}

const char *
bf_worker_link_get_peer (BfWorkerLink *self)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), NULL);
  return LINK_IFACE (self)->get_peer (self);
}

/**
 * bf_worker_link_get_protocol:
 *
 * Returns: "pb" or "msgpack", as the Worker's Protocol property says.
 */
const char *
bf_worker_link_get_protocol (BfWorkerLink *self)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), NULL);
  return LINK_IFACE (self)->get_protocol (self);
}

/**
 * bf_worker_link_get_last_rx_usec:
 *
 * Returns: wall-clock time of the last thing received, for publishing.
 */
guint64
bf_worker_link_get_last_rx_usec (BfWorkerLink *self)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), 0);
  return LINK_IFACE (self)->get_last_rx_usec (self);
}

/**
 * bf_worker_link_get_info:
 *
 * Returns: (nullable): what the worker reported when it attached; %NULL
 *   before bf_worker_link_attach_finish() succeeded
 */
const BfWorkerInfo *
bf_worker_link_get_info (BfWorkerLink *self)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), NULL);
  return LINK_IFACE (self)->get_info (self);
}

/**
 * bf_worker_link_set_keepalive:
 * @interval_usec: how often to check the worker answers; 0 = never
 *
 * A worker that stays silent for two intervals is closed with
 * "keepalive timeout".
 */
void
bf_worker_link_set_keepalive (BfWorkerLink *self,
                              guint64       interval_usec)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->set_keepalive (self, interval_usec);
}

/**
 * bf_worker_link_attach_async:
 *
 * Runs the protocol's attach sequence; on success the worker's info is
 * known (bf_worker_link_get_info()) and keepalives run.
 */
void
bf_worker_link_attach_async (BfWorkerLink        *self,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->attach_async (self, cancellable, callback, user_data);
}

gboolean
bf_worker_link_attach_finish (BfWorkerLink  *self,
                              GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), FALSE);
  return LINK_IFACE (self)->attach_finish (self, result, error);
}

/**
 * bf_worker_link_ping_async:
 * @message: shown in the worker's log
 * @timeout_usec: how long the worker has to answer
 *
 * Succeeds when the worker answered in time: it is alive and reading.
 */
void
bf_worker_link_ping_async (BfWorkerLink        *self,
                           const char          *message,
                           guint64              timeout_usec,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->ping_async (self, message, timeout_usec, cancellable, callback, user_data);
}

gboolean
bf_worker_link_ping_finish (BfWorkerLink  *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), FALSE);
  return LINK_IFACE (self)->ping_finish (self, result, error);
}

/**
 * bf_worker_link_shutdown_async:
 *
 * Asks the worker process to exit.
 */
void
bf_worker_link_shutdown_async (BfWorkerLink        *self,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->shutdown_async (self, cancellable, callback, user_data);
}

gboolean
bf_worker_link_shutdown_finish (BfWorkerLink  *self,
                                GAsyncResult  *result,
                                GError       **error)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), FALSE);
  return LINK_IFACE (self)->shutdown_finish (self, result, error);
}

/**
 * bf_worker_link_prepare_command:
 * @name: the command (shell, mkdir, rmdir, stat, listdir, rmfile, glob, cpdir)
 * @args: `a{sv}` checked by bf_command_validate_args(): the D-Bus API's
 *   names (`paths`, `path`, `from_path`, `to_path`, `workdir`, ...), paths
 *   absolute or relative to the builder's directory on the worker
 * @builder: the build's builder
 *
 * Returns: (transfer full): the arguments in this protocol's form, for
 *   bf_worker_link_start_command(); or %NULL with an InvalidArgs or
 *   Busy @error the D-Bus caller can read
 */
GVariant *
bf_worker_link_prepare_command (BfWorkerLink  *self,
                                const char    *name,
                                GVariant      *args,
                                const char    *builder,
                                GError       **error)
{
  g_return_val_if_fail (BF_IS_WORKER_LINK (self), NULL);
  return LINK_IFACE (self)->prepare_command (self, name, args, builder, error);
}

/**
 * bf_worker_link_start_command:
 * @command_id: unique on this link
 * @prepared: (transfer full): from bf_worker_link_prepare_command()
 * @sink: where progress goes, until @sink->complete was called or
 *   bf_worker_link_forget_command()
 */
void
bf_worker_link_start_command (BfWorkerLink        *self,
                              const char          *command_id,
                              const char          *name,
                              GVariant            *prepared,
                              const char          *builder,
                              const BfCommandSink *sink,
                              gpointer             user_data)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->start_command (self, command_id, name, prepared, builder, sink, user_data);
}

/**
 * bf_worker_link_forget_command:
 *
 * The command's receiver is going away: nothing more reaches its sink,
 * and what the worker still sends about it is acknowledged and dropped.
 */
void
bf_worker_link_forget_command (BfWorkerLink *self,
                               const char   *command_id)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->forget_command (self, command_id);
}

void
bf_worker_link_interrupt_command (BfWorkerLink *self,
                                  const char   *command_id,
                                  const char   *builder,
                                  const char   *why)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->interrupt_command (self, command_id, builder, why);
}

/**
 * bf_worker_link_close:
 * @reason: told to the worker where the protocol can, and in "closed"
 *
 * Ends the link; "closed" is emitted at once, whatever the peer does.
 */
void
bf_worker_link_close (BfWorkerLink *self,
                      const char   *reason)
{
  g_return_if_fail (BF_IS_WORKER_LINK (self));
  LINK_IFACE (self)->close (self, reason);
}

/* Worker info ------------------------------------------------------------------ */

static gboolean
is_nil (GVariant *v)
{
  return v == NULL ||
         (g_variant_is_of_type (v, G_VARIANT_TYPE ("mv")) && g_variant_n_children (v) == 0);
}

/* Info values go on D-Bus: drop nils (D-Bus has no maybe type) and
 * flatten what nests deeper than D-Bus allows into its printed form.
 * Containers come back floating, leaves borrowed.  Called on values
 * already bounded (bounded_info()), so the walk is short. */
#define DBUS_SAFE_DEPTH 8

static GVariant *
dbus_safe_at (GVariant *v,
              guint     depth)
{
  if (depth >= DBUS_SAFE_DEPTH &&
      (g_variant_is_container (v) && !g_variant_is_of_type (v, G_VARIANT_TYPE_BYTESTRING)))
    return g_variant_new_take_string (bf_variant_print_bounded (v, BF_LIMIT_INFO_VALUE_BYTES - 1));
  /* By index, not with g_variant_iter_loop()/g_variant_builder_add():
   * parsing their format strings for every entry was a tenth of the
   * daemon's time in an attach storm. */
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_VARDICT))
    {
      GVariantBuilder b;
      gsize n = g_variant_n_children (v);

      g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) entry = g_variant_get_child_value (v, i);
          g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
          g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
          g_autoptr(GVariant) value = g_variant_get_variant (boxed);

          if (is_nil (value))
            continue;
          g_variant_builder_add_value (&b, g_variant_new_dict_entry (key,
                                       g_variant_new_variant (dbus_safe_at (value, depth + 1))));
        }
      return g_variant_builder_end (&b);
    }
  if (g_variant_is_of_type (v, G_VARIANT_TYPE ("av")))
    {
      GVariantBuilder b;
      gsize n = g_variant_n_children (v);

      g_variant_builder_init (&b, G_VARIANT_TYPE ("av"));
      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) boxed = g_variant_get_child_value (v, i);
          g_autoptr(GVariant) value = g_variant_get_variant (boxed);

          g_variant_builder_add_value (&b, g_variant_new_variant (is_nil (value) ? g_variant_new_string ("")
                                                                               : dbus_safe_at (value, depth + 1)));
        }
      return g_variant_builder_end (&b);
    }
  /* Borrowed: the caller adds it to a builder, which takes its own ref. */
  return v;
}

typedef struct {
  guint dropped;      /* entries left out */
  guint truncated;    /* values cut or printed */
} InfoCuts;

/* worker_commands as Commands' `a{ss}`, bounded as bf-limits.h says:
 * string values (printed if they were not strings), at most
 * BF_LIMIT_COMMANDS entries and BF_LIMIT_COMMANDS_BYTES. */
static GVariant *
bounded_commands (GVariant *v,
                  InfoCuts *cuts)
{
  GVariantBuilder b;
  gsize n = g_variant_n_children (v);
  gsize used = 0;
  guint count = 0;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{ss}"));
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (v, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) value = g_variant_get_variant (boxed);
      g_autoptr(GVariant) text = NULL;
      gsize size;

      if (count >= BF_LIMIT_COMMANDS || used >= BF_LIMIT_COMMANDS_BYTES)
        {
          cuts->dropped += n - i;
          break;
        }
      if (g_variant_get_size (key) > BF_LIMIT_KEY_BYTES)
        {
          cuts->dropped++;
          continue;
        }
      if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
        text = bf_variant_bound (value, BF_LIMIT_STRING_BYTES);
      else
        text = g_variant_ref_sink (g_variant_new_take_string (bf_variant_print_bounded (value, BF_LIMIT_STRING_BYTES - 1)));
      if (text != value && g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
        cuts->truncated++;
      /* As an a{ss} entry: key, alignment and an offset. */
      size = g_variant_get_size (key) + g_variant_get_size (text) + 7 + 4;
      if (used + size > BF_LIMIT_COMMANDS_BYTES)
        {
          cuts->dropped += n - i;
          break;
        }
      used += size;
      count++;
      g_variant_builder_add_value (&b, g_variant_new_dict_entry (key, text));
    }
  return g_variant_builder_end (&b);
}

/* Every worker of one buildbot-worker version reports the same commands:
 * they are kept once, not a few hundred bytes per attached worker.  At
 * most SHARED_COMMANDS_MAX different sets are remembered (a fleet has a
 * handful of versions; a peer that invents new ones gets its own copy). */
#define SHARED_COMMANDS_MAX 32

static guint
serialised_hash (gconstpointer v)
{
  const guint8 *data = g_variant_get_data ((GVariant *) v);
  gsize n = g_variant_get_size ((GVariant *) v);
  guint h = 5381;

  for (gsize i = 0; i < n; i++)
    h = h * 33 + data[i];
  return h;
}

static GVariant *
share_commands (GVariant *commands)
{
  static GHashTable *shared;   /* GVariant a{ss} (owned), in normal form */
  GVariant *known;

  if (shared == NULL)
    shared = g_hash_table_new_full (serialised_hash, (GEqualFunc) g_variant_equal,
                                    (GDestroyNotify) g_variant_unref, NULL);
  known = g_hash_table_lookup (shared, commands);
  if (known != NULL)
    {
      g_variant_unref (commands);
      return g_variant_ref (known);
    }
  if (g_hash_table_size (shared) < SHARED_COMMANDS_MAX && g_variant_is_normal_form (commands))
    g_hash_table_add (shared, g_variant_ref (commands));
  return commands;
}

/**
 * bf_worker_info_new_from_vardict:
 * @reported: `a{sv}`, what the worker answered to getWorkerInfo /
 *   get_worker_info (both protocols use the same keys)
 * @worker_name: for the log line when something was cut
 * @peer: likewise
 *
 * Bounds it as bf-limits.h says for Info and Commands, drops the worker's
 * environment (it can hold secrets), strips admin and host (read from
 * info/ files, trailing newline and all).
 *
 * The reply is walked once, straight into what is kept; the budget stops
 * the work whatever the size of the reply.  (An intermediate bounded
 * dictionary, walked again, was a tenth of an attach storm's CPU.)
 */
BfWorkerInfo *
bf_worker_info_new_from_vardict (GVariant   *reported,
                                 const char *worker_name,
                                 const char *peer)
{
  InfoCuts cuts = { 0, };
  GVariantBuilder info_b;
  g_autoptr(GVariant) commands = NULL;
  BfWorkerInfo *info;
  /* Room for the dropped-entries count at the end. */
  gsize budget = BF_LIMIT_INFO_BYTES - 64;
  gsize used = 0;
  gsize n;

  g_return_val_if_fail (g_variant_is_of_type (reported, G_VARIANT_TYPE_VARDICT), NULL);

  info = g_new0 (BfWorkerInfo, 1);
  n = g_variant_n_children (reported);
  commands = g_variant_lookup_value (reported, "worker_commands", G_VARIANT_TYPE_VARDICT);
  g_variant_builder_init (&info_b, G_VARIANT_TYPE_VARDICT);
  /* By index rather than g_variant_iter_loop(): format strings parsed for
   * every entry showed in an attach storm's profile. */
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (reported, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) boxed = g_variant_get_child_value (entry, 1);
      g_autoptr(GVariant) value = g_variant_get_variant (boxed);
      const char *name = g_variant_get_string (key, NULL);
      g_autoptr(GVariant) bounded = NULL;
      gboolean is_string;
      GVariant *out;
      gsize size;

      /* The worker's environment can hold secrets and is the bulk of the
       * reply: it is never kept. */
      if (is_nil (value) || g_str_equal (name, "environ") || g_str_equal (name, "worker_commands"))
        continue;
      if (g_variant_get_size (key) > BF_LIMIT_KEY_BYTES)
        {
          cuts.dropped++;
          continue;
        }
      bounded = bf_variant_bound (value, BF_LIMIT_INFO_VALUE_BYTES);
      if (bounded != value)
        cuts.truncated++;
      out = g_variant_ref_sink (g_variant_new_dict_entry (key, g_variant_new_variant (dbus_safe_at (bounded, 1))));
      /* Alignment (8) and an offset (at most 4) per entry in the array. */
      size = g_variant_get_size (out) + 7 + 4;
      if (used + size > budget)
        {
          g_variant_unref (out);
          cuts.dropped += n - i;
          break;
        }
      used += size;
      is_string = g_variant_is_of_type (bounded, G_VARIANT_TYPE_STRING);
      if (is_string && (g_str_equal (name, "admin") || g_str_equal (name, "host")))
        {
          /* Read from info/ files, trailing newline and all. */
          g_autofree char *text = g_strstrip (g_variant_dup_string (bounded, NULL));
          char **field = g_str_equal (name, "admin") ? &info->admin : &info->host;

          g_variant_unref (out);
          out = g_variant_ref_sink (g_variant_new_dict_entry (key, g_variant_new_variant (g_variant_new_string (text))));
          g_free (*field);
          *field = g_steal_pointer (&text);
        }
      else if (is_string && g_str_equal (name, "version"))
        { g_free (info->version); info->version = g_variant_dup_string (bounded, NULL); }
      else if (is_string && g_str_equal (name, "basedir"))
        { g_free (info->basedir); info->basedir = g_variant_dup_string (bounded, NULL); }
      g_variant_builder_add_value (&info_b, out);
      g_variant_unref (out);
    }
  info->commands = g_variant_ref_sink (commands != NULL ? bounded_commands (commands, &cuts)
                                                        : g_variant_new ("a{ss}", NULL));
  if (cuts.dropped > 0)
    g_variant_builder_add (&info_b, "{sv}", BF_INFO_DROPPED_KEY, g_variant_new_uint32 (cuts.dropped));

  if (info->admin == NULL)
    info->admin = g_strdup ("");
  if (info->host == NULL)
    info->host = g_strdup ("");
  if (info->version == NULL)
    info->version = g_strdup ("");
  /* Kept serialised: a tree of small GVariants costs several times more
   * memory per worker. */
  info->details = g_variant_ref_sink (g_variant_builder_end (&info_b));
  (void) g_variant_get_data (info->details);
  info->commands = share_commands (info->commands);
  if (cuts.truncated > 0 || cuts.dropped > 0)
    bf_worker_message (worker_name,
                       "Worker %s from %s: its info was over buildfleetd's limits: "
                       "%u values cut short, %u entries left out",
                       worker_name, peer, cuts.truncated, cuts.dropped);
  return info;
}

void
bf_worker_info_free (BfWorkerInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->admin);
  g_free (info->host);
  g_free (info->version);
  g_free (info->basedir);
  g_clear_pointer (&info->details, g_variant_unref);
  g_clear_pointer (&info->commands, g_variant_unref);
  g_free (info);
}

/* Command updates ---------------------------------------------------------------- */

/* stdout/stderr/header come as [text, [offsets], [times]] or plain text.
 * Returns the string's GVariant, not a copy: output can be tens of MB. */
static GVariant *
text_of (GVariant *v)
{
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
    return g_variant_ref (v);
  if (g_variant_is_of_type (v, G_VARIANT_TYPE ("av")) && g_variant_n_children (v) >= 1)
    {
      g_autoptr(GVariant) first = g_variant_get_child_value (v, 0);
      g_autoptr(GVariant) inner = g_variant_get_variant (first);
      if (g_variant_is_of_type (inner, G_VARIANT_TYPE_STRING))
        return g_steal_pointer (&inner);
    }
  return NULL;
}

/* The content of the n-th element of an av. */
static GVariant *
child_variant (GVariant *av,
               gsize     n)
{
  g_autoptr(GVariant) child = g_variant_get_child_value (av, n);
  return g_variant_get_variant (child);
}

/* Items of a list value (file lists, unknown keys), each followed by
 * @separator; at most BF_LIMIT_UPDATE_TEXT_BYTES.  Every item adds at
 * least its separator, so only as many items as fit are visited. */
static char *
list_text (GVariant *v,
           const char *separator)
{
  const gsize limit = BF_LIMIT_UPDATE_TEXT_BYTES - strlen (BF_TRUNCATION_MARKER);
  gsize sep = strlen (separator);
  g_autoptr(GString) s = NULL;
  gsize n;

  if (!g_variant_is_of_type (v, G_VARIANT_TYPE ("av")))
    return bf_variant_print_bounded (v, BF_LIMIT_UPDATE_TEXT_BYTES);
  s = g_string_new (NULL);
  n = g_variant_n_children (v);
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) boxed = g_variant_get_child_value (v, i);
      g_autoptr(GVariant) item = g_variant_get_variant (boxed);
      g_autofree char *printed = NULL;
      gsize room = limit - s->len;
      const char *text;
      gsize len;

      if (g_variant_is_of_type (item, G_VARIANT_TYPE_STRING))
        text = g_variant_get_string (item, &len);
      else
        {
          printed = bf_variant_print_bounded (item, BF_LIMIT_UPDATE_TEXT_BYTES);
          text = printed;
          len = strlen (printed);
        }
      if (len + sep > room)
        {
          g_string_append_len (s, text, bf_utf8_prefix_len (text, len, room));
          g_string_append (s, BF_TRUNCATION_MARKER);
          break;
        }
      g_string_append_len (s, text, len);
      g_string_append_len (s, separator, sep);
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}


static void
output_variant (const BfCommandSink *sink,
                gpointer             user_data,
                const char          *stream,
                GVariant            *text)
{
  gsize len;
  const char *s;

  if (text == NULL)
    return;
  s = g_variant_get_string (text, &len);
  if (len > 0)
    sink->output (user_data, stream, s, len);
}

static void
output_text (const BfCommandSink *sink,
             gpointer             user_data,
             const char          *stream,
             const char          *text)
{
  if (text != NULL && *text != '\0')
    sink->output (user_data, stream, text, strlen (text));
}

/**
 * bf_command_sink_update:
 * @key: one of Buildbot's update keys
 * @value: its value, decoded (`av` for lists and tuples)
 *
 * Both protocols send the same keys: `stdout`, `stderr`, `header` (the
 * text, or msgpack's [text, offsets, times]), `log` ([name, text] or
 * [name, [text, offsets, times]]), `rc`, `elapsed`, `files`, `stat`, ...
 * Output keys become @sink->output, `rc` @sink->exit_code; `files` and
 * keys not known here are shown as bounded text under their own name.
 */
void
bf_command_sink_update (const BfCommandSink *sink,
                        gpointer             user_data,
                        const char          *key,
                        GVariant            *value)
{
  if (g_str_equal (key, "stdout") || g_str_equal (key, "stderr") || g_str_equal (key, "header"))
    {
      g_autoptr(GVariant) text = text_of (value);
      output_variant (sink, user_data, key, text);
    }
  else if (g_str_equal (key, "log"))
    {
      if (g_variant_is_of_type (value, G_VARIANT_TYPE ("av")) && g_variant_n_children (value) == 2)
        {
          g_autoptr(GVariant) name = child_variant (value, 0);
          g_autoptr(GVariant) data = child_variant (value, 1);
          g_autoptr(GVariant) text = text_of (data);
          if (g_variant_is_of_type (name, G_VARIANT_TYPE_STRING))
            output_variant (sink, user_data, g_variant_get_string (name, NULL), text);
        }
    }
  else if (g_str_equal (key, "rc"))
    {
      if (g_variant_is_of_type (value, G_VARIANT_TYPE_INT64))
        sink->exit_code (user_data, (int) CLAMP (g_variant_get_int64 (value), G_MININT, G_MAXINT));
    }
  else if (g_str_equal (key, "elapsed"))
    ;
  else if (g_str_equal (key, "files"))
    {
      g_autofree char *text = list_text (value, "\n");
      output_text (sink, user_data, key, text);
    }
  else
    {
      g_autofree char *text = g_variant_is_of_type (value, G_VARIANT_TYPE ("av"))
        ? list_text (value, " ") : bf_variant_print_bounded (value, BF_LIMIT_UPDATE_TEXT_BYTES);
      output_text (sink, user_data, key, text);
    }
}
