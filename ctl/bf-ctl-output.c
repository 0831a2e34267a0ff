/* bf-ctl-output.c: JSON, human-readable times and values, tables,
 * colours and the pager
 *
 * JSON is stable: objects use the D-Bus property names, values are the
 * property values mechanically converted (numbers, booleans, strings,
 * arrays; a{s*} and a{o*} become objects), so the D-Bus contract is the
 * JSON contract.  Colours and the pager only on a terminal.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bf-ctl.h"

void
bf_ctl_json_append_string (GString    *out,
                           const char *text)
{
  g_string_append_c (out, '"');
  for (const char *p = text; *p; p++)
    {
      guchar c = (guchar) *p;

      switch (c)
        {
        case '"': g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        default:
          if (c < 0x20 || c == 0x7f)
            g_string_append_printf (out, "\\u%04x", c);
          else
            g_string_append_c (out, (char) c);
        }
    }
  g_string_append_c (out, '"');
}

void
bf_ctl_json_append (GString  *out,
                    GVariant *value)
{
  const GVariantType *type = g_variant_get_type (value);

  switch (g_variant_classify (value))
    {
    case G_VARIANT_CLASS_BOOLEAN:
      g_string_append (out, g_variant_get_boolean (value) ? "true" : "false");
      return;
    case G_VARIANT_CLASS_BYTE:
      g_string_append_printf (out, "%u", g_variant_get_byte (value));
      return;
    case G_VARIANT_CLASS_INT16:
      g_string_append_printf (out, "%d", g_variant_get_int16 (value));
      return;
    case G_VARIANT_CLASS_UINT16:
      g_string_append_printf (out, "%u", g_variant_get_uint16 (value));
      return;
    case G_VARIANT_CLASS_INT32:
      g_string_append_printf (out, "%d", g_variant_get_int32 (value));
      return;
    case G_VARIANT_CLASS_UINT32:
    case G_VARIANT_CLASS_HANDLE:
      g_string_append_printf (out, "%u", g_variant_get_uint32 (value));
      return;
    case G_VARIANT_CLASS_INT64:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, g_variant_get_int64 (value));
      return;
    case G_VARIANT_CLASS_UINT64:
      g_string_append_printf (out, "%" G_GUINT64_FORMAT, g_variant_get_uint64 (value));
      return;
    case G_VARIANT_CLASS_DOUBLE:
      {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        double d = g_variant_get_double (value);

        if (isfinite (d))
          g_string_append (out, g_ascii_dtostr (buf, sizeof buf, d));
        else
          g_string_append (out, "null");
        return;
      }
    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      bf_ctl_json_append_string (out, g_variant_get_string (value, NULL));
      return;
    case G_VARIANT_CLASS_VARIANT:
      {
        g_autoptr(GVariant) inner = g_variant_get_variant (value);
        bf_ctl_json_append (out, inner);
        return;
      }
    case G_VARIANT_CLASS_MAYBE:
      {
        g_autoptr(GVariant) inner = g_variant_get_maybe (value);
        if (inner)
          bf_ctl_json_append (out, inner);
        else
          g_string_append (out, "null");
        return;
      }
    case G_VARIANT_CLASS_ARRAY:
      {
        const GVariantType *element = g_variant_type_element (type);
        gboolean object = g_variant_type_is_dict_entry (element) &&
                          (g_variant_type_equal (g_variant_type_key (element), G_VARIANT_TYPE_STRING) ||
                           g_variant_type_equal (g_variant_type_key (element), G_VARIANT_TYPE_OBJECT_PATH));
        gsize n = g_variant_n_children (value);

        g_string_append_c (out, object ? '{' : '[');
        for (gsize i = 0; i < n; i++)
          {
            g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

            if (i > 0)
              g_string_append_c (out, ',');
            if (object)
              {
                g_autoptr(GVariant) k = g_variant_get_child_value (child, 0);
                g_autoptr(GVariant) v = g_variant_get_child_value (child, 1);

                bf_ctl_json_append_string (out, g_variant_get_string (k, NULL));
                g_string_append_c (out, ':');
                bf_ctl_json_append (out, v);
              }
            else
              bf_ctl_json_append (out, child);
          }
        g_string_append_c (out, object ? '}' : ']');
        return;
      }
    case G_VARIANT_CLASS_TUPLE:
    case G_VARIANT_CLASS_DICT_ENTRY:
      {
        gsize n = g_variant_n_children (value);

        g_string_append_c (out, '[');
        for (gsize i = 0; i < n; i++)
          {
            g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

            if (i > 0)
              g_string_append_c (out, ',');
            bf_ctl_json_append (out, child);
          }
        g_string_append_c (out, ']');
        return;
      }
    }
  g_string_append (out, "null");
}

char *
bf_ctl_format_time (guint64 usec)
{
  g_autoptr(GDateTime) dt = NULL;

  if (usec == 0)
    return g_strdup ("never");
  dt = g_date_time_new_from_unix_local ((gint64) (usec / G_USEC_PER_SEC));
  if (dt == NULL)
    return g_strdup ("(out of range)");
  return g_date_time_format (dt, "%a %Y-%m-%d %H:%M:%S %Z");
}

char *
bf_ctl_format_duration (guint64 usec)
{
  guint64 s = usec / G_USEC_PER_SEC;

  if (usec == G_MAXUINT64 || (gint64) usec == -1)
    return g_strdup ("never");
  if (usec < G_USEC_PER_SEC)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "ms", usec / 1000);
  if (s < 60)
    return g_strdup_printf ("%.3gs", usec / (double) G_USEC_PER_SEC);
  if (s < 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "min %" G_GUINT64_FORMAT "s", s / 60, s % 60);
  if (s < 86400)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "h %" G_GUINT64_FORMAT "min", s / 3600, (s % 3600) / 60);
  return g_strdup_printf ("%" G_GUINT64_FORMAT "d %" G_GUINT64_FORMAT "h", s / 86400, (s % 86400) / 3600);
}

/* "3min 2s ago" (or "in 5s" for a time to come) */
char *
bf_ctl_format_ago (guint64 usec)
{
  guint64 now = (guint64) g_get_real_time ();
  g_autofree char *d = NULL;

  if (usec == 0)
    return g_strdup ("never");
  if (usec > now)
    {
      d = bf_ctl_format_duration (usec - now);
      return g_strdup_printf ("in %s", d);
    }
  d = bf_ctl_format_duration (now - usec);
  return g_strdup_printf ("%s ago", d);
}

/* One property for humans, by its type and its name's convention. */
char *
bf_ctl_format_value (const char *name,
                     GVariant   *value)
{
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN))
    return g_strdup (g_variant_get_boolean (value) ? "yes" : "no");
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64) && g_str_has_suffix (name, "TimeoutUSec"))
    return bf_ctl_format_duration (g_variant_get_uint64 (value));
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_INT64) && g_str_has_suffix (name, "USec"))
    {
      gint64 v = g_variant_get_int64 (value);
      return v < 0 ? g_strdup ("never") : bf_ctl_format_duration ((guint64) v);
    }
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64) && g_str_has_suffix (name, "USec"))
    {
      guint64 v = g_variant_get_uint64 (value);
      g_autofree char *t = NULL, *ago = NULL;

      if (v == 0)
        return g_strdup ("never");
      t = bf_ctl_format_time (v);
      ago = bf_ctl_format_ago (v);
      return g_strdup_printf ("%s (%s)", t, ago);
    }
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) ||
      g_variant_is_of_type (value, G_VARIANT_TYPE_OBJECT_PATH))
    {
      const char *s = g_variant_get_string (value, NULL);
      return g_strdup (*s ? s : "-");
    }
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING_ARRAY))
    {
      g_autofree const char **v = g_variant_get_strv (value, NULL);
      return v[0] ? g_strjoinv (", ", (char **) v) : g_strdup ("-");
    }
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_VARDICT) ||
      g_variant_is_of_type (value, G_VARIANT_TYPE ("a{ss}")))
    {
      GString *s = g_string_new (NULL);
      GVariantIter iter;
      const char *k;
      GVariant *v;

      g_variant_iter_init (&iter, value);
      while (g_variant_iter_next (&iter, "{&s@*}", &k, &v))
        {
          g_autoptr(GVariant) inner = g_variant_is_of_type (v, G_VARIANT_TYPE_VARIANT) ?
                                      g_variant_get_variant (v) : g_variant_ref (v);
          g_autofree char *text = g_variant_is_of_type (inner, G_VARIANT_TYPE_STRING) ?
                                  g_variant_dup_string (inner, NULL) : g_variant_print (inner, FALSE);

          g_string_append_printf (s, "%s%s=%s", s->len ? " " : "", k, text);
          g_variant_unref (v);
        }
      if (s->len == 0)
        g_string_append (s, "-");
      return g_string_free (s, FALSE);
    }
  return g_variant_print (value, FALSE);
}

const char *
bf_ctl_colour (BfCtl      *ctl,
               const char *which)
{
  if (!ctl->colour)
    return "";
  if (g_str_equal (which, "good"))
    return "\033[0;1;32m";
  if (g_str_equal (which, "bad"))
    return "\033[0;1;31m";
  if (g_str_equal (which, "warn"))
    return "\033[0;1;33m";
  if (g_str_equal (which, "bold"))
    return "\033[0;1;39m";
  return "\033[0m";
}

/* The pager: like systemctl, $PAGER or less -FRSXMK, only on a terminal. */
static GPid pager_pid;

void
bf_ctl_pager_start (BfCtl *ctl)
{
  const char *pager = g_getenv ("BUILDFLEET_PAGER");
  int fds[2];
  GPid pid;

  if (ctl->no_pager || ctl->json || !isatty (STDOUT_FILENO))
    return;
  if (pager == NULL)
    pager = g_getenv ("PAGER");
  if (pager == NULL)
    pager = "less";
  if (*pager == '\0' || g_str_equal (pager, "cat"))
    return;
  if (pipe (fds) != 0)
    return;
  fflush (stdout);
  pid = fork ();
  if (pid < 0)
    {
      close (fds[0]);
      close (fds[1]);
      return;
    }
  if (pid == 0)
    {
      dup2 (fds[0], STDIN_FILENO);
      close (fds[0]);
      close (fds[1]);
      setenv ("LESS", "FRSXMK", 0);
      execl ("/bin/sh", "sh", "-c", pager, NULL);
      _exit (127);
    }
  dup2 (fds[1], STDOUT_FILENO);
  close (fds[0]);
  close (fds[1]);
  pager_pid = pid;
}

void
bf_ctl_pager_end (BfCtl *ctl)
{
  if (pager_pid == 0)
    return;
  fflush (stdout);
  close (STDOUT_FILENO);
  waitpid (pager_pid, NULL, 0);
  pager_pid = 0;
}

static int
terminal_width (void)
{
  struct winsize ws;
  const char *columns = g_getenv ("COLUMNS");

  if (columns && atoi (columns) > 0)
    return atoi (columns);
  if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

/**
 * bf_ctl_print_table:
 * @rows: (element-type GStrv): the header first, then one row each; a
 *   cell may start with "\x01good", "\x01bad" or "\x01warn" + "\x02" to
 *   be coloured on a terminal
 *
 * Columns are as wide as their widest cell; on a terminal the last column
 * is cut to fit the width.
 */
void
bf_ctl_print_table (BfCtl     *ctl,
                    GPtrArray *rows,
                    guint      n_columns)
{
  g_autofree guint *width = g_new0 (guint, n_columns);
  gboolean tty = isatty (STDOUT_FILENO);
  guint used = 0;

  for (guint r = ctl->no_legend ? 1 : 0; r < rows->len; r++)
    {
      char **row = g_ptr_array_index (rows, r);

      for (guint c = 0; c < n_columns; c++)
        {
          const char *cell = row[c];

          if (cell[0] == '\x01')
            cell = strchr (cell, '\x02') + 1;
          width[c] = MAX (width[c], (guint) g_utf8_strlen (cell, -1));
        }
    }
  for (guint c = 0; c + 1 < n_columns; c++)
    used += width[c] + 2;

  for (guint r = ctl->no_legend ? 1 : 0; r < rows->len; r++)
    {
      char **row = g_ptr_array_index (rows, r);
      GString *line = g_string_new (NULL);

      for (guint c = 0; c < n_columns; c++)
        {
          const char *cell = row[c];
          g_autofree char *colour = NULL;
          guint len;

          if (cell[0] == '\x01')
            {
              const char *end = strchr (cell, '\x02');
              colour = g_strndup (cell + 1, (gsize) (end - cell - 1));
              cell = end + 1;
            }
          if (r == 0 && !ctl->no_legend)
            g_string_append (line, bf_ctl_colour (ctl, "bold"));
          else if (colour)
            g_string_append (line, bf_ctl_colour (ctl, colour));
          len = (guint) g_utf8_strlen (cell, -1);
          if (c + 1 == n_columns && tty && used + len > (guint) terminal_width () &&
              (guint) terminal_width () > used + 3)
            {
              guint room = (guint) terminal_width () - used - 1;
              const char *cut = g_utf8_offset_to_pointer (cell, room);

              g_string_append_len (line, cell, cut - cell);
              g_string_append (line, "…");
            }
          else
            g_string_append (line, cell);
          if ((r == 0 && !ctl->no_legend) || colour)
            g_string_append (line, bf_ctl_colour (ctl, "normal"));
          if (c + 1 < n_columns)
            for (guint i = len; i < width[c] + 2; i++)
              g_string_append_c (line, ' ');
        }
      while (line->len > 0 && line->str[line->len - 1] == ' ')
        g_string_truncate (line, line->len - 1);
      g_print ("%s\n", line->str);
      g_string_free (line, TRUE);
    }
}

gboolean
bf_ctl_write_all (int         fd,
                  const char *data,
                  gsize       len)
{
  while (len > 0)
    {
      gssize n = write (fd, data, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      data += n;
      len -= (gsize) n;
    }
  return TRUE;
}
