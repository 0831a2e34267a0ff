/* bf-log.c: every log line is one line of readable text
 *
 * Pause reasons, builder names, worker versions, failure texts and close
 * reasons come from D-Bus callers and workers.  Written verbatim, a newline
 * in them starts a line that looks like the daemon's own ("Worker x
 * attached from ..."), and escape sequences repaint the terminal of whoever
 * reads the log.  bf_log_writer() escapes the MESSAGE of every record before
 * GLib's default writer (journal or stderr) sees it, so no call site can
 * forget to.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-log.h"

/* C1 controls (NEL is a line break for some viewers), the Unicode line and
 * paragraph separators, and the bidirectional overrides and isolates that
 * make text display in another order than it reads. */
static gboolean
is_hidden_control (gunichar c)
{
  return (c >= 0x80 && c <= 0x9f) ||
         c == 0x2028 || c == 0x2029 ||
         (c >= 0x202a && c <= 0x202e) ||
         (c >= 0x2066 && c <= 0x2069);
}

/* Printable ASCII only: what needs no second look. */
static gboolean
is_plain (const char *text,
          gsize       length)
{
  for (gsize i = 0; i < length; i++)
    {
      guchar b = (guchar) text[i];
      if (b < 0x20 || b >= 0x7f)
        return FALSE;
    }
  return TRUE;
}

/**
 * bf_log_escape:
 * @text: (nullable): text from anywhere, not necessarily UTF-8
 * @max_bytes: at most this many bytes of output before the marker
 *
 * Returns: (transfer full): @text on one line: newline, carriage return and
 *   tab as `\n`, `\r`, `\t`, every other control character (C0, DEL) and
 *   every byte that is not valid UTF-8 as `\xNN`, C1 controls, line and
 *   paragraph separators and bidirectional overrides as `\uNNNN`; longer
 *   than @max_bytes: cut there (between characters) and followed by
 *   "… [N more bytes]".  Backslashes stay as they are.
 */
char *
bf_log_escape (const char *text,
               gsize       max_bytes)
{
  const char *p = text ? text : "";
  const char *end = p + strlen (p);
  GString *out = g_string_sized_new (MIN ((gsize) (end - p), max_bytes) + 16);

  while (p < end)
    {
      guchar b = (guchar) *p;
      gunichar c;
      const char *next;

      if (out->len >= max_bytes)
        {
          g_string_append_printf (out, "… [%" G_GSIZE_FORMAT " more bytes]", (gsize) (end - p));
          break;
        }
      if (b < 0x80)
        {
          if (b == '\n')
            g_string_append (out, "\\n");
          else if (b == '\r')
            g_string_append (out, "\\r");
          else if (b == '\t')
            g_string_append (out, "\\t");
          else if (b < 0x20 || b == 0x7f)
            g_string_append_printf (out, "\\x%02x", b);
          else
            g_string_append_c (out, (char) b);
          p++;
          continue;
        }
      c = g_utf8_get_char_validated (p, end - p);
      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          g_string_append_printf (out, "\\x%02x", b);
          p++;
          continue;
        }
      next = g_utf8_next_char (p);
      if (is_hidden_control (c))
        g_string_append_printf (out, "\\u%04x", c);
      else
        g_string_append_len (out, p, next - p);
      p = next;
    }
  return g_string_free (out, FALSE);
}

/**
 * bf_log_writer:
 *
 * A #GLogWriterFunc: the record goes to g_log_writer_default() (journal or
 * stderr, G_MESSAGES_DEBUG, fatal levels: all as usual) with its MESSAGE
 * passed through bf_log_escape() and bounded to %BF_LOG_MESSAGE_MAX bytes.
 * Install it with g_log_set_writer_func() before the first message.
 */
GLogWriterOutput
bf_log_writer (GLogLevelFlags   log_level,
               const GLogField *fields,
               gsize            n_fields,
               gpointer         user_data)
{
  for (gsize i = 0; i < n_fields; i++)
    {
      g_autofree GLogField *copy = NULL;
      g_autofree char *raw = NULL;
      g_autofree char *escaped = NULL;
      const char *text;
      gsize length;

      if (strcmp (fields[i].key, "MESSAGE") != 0)
        continue;
      text = fields[i].value;
      length = fields[i].length < 0 ? strlen (text) : (gsize) fields[i].length;
      if (length <= BF_LOG_MESSAGE_MAX && is_plain (text, length))
        break;
      if (fields[i].length >= 0)
        text = raw = g_strndup (text, length);
      escaped = bf_log_escape (text, BF_LOG_MESSAGE_MAX);
      copy = g_memdup2 (fields, n_fields * sizeof *fields);
      copy[i].value = escaped;
      copy[i].length = -1;
      return g_log_writer_default (log_level, copy, n_fields, user_data);
    }
  return g_log_writer_default (log_level, fields, n_fields, user_data);
}
