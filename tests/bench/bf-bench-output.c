/* bf-bench-output.c: what the load generators share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bf-bench-output.h"

gint64
bf_bench_read_vmrss_kib (int pid)
{
  g_autofree char *path = NULL;
  g_autofree char *contents = NULL;
  const char *line;

  path = pid > 0 ? g_strdup_printf ("/proc/%d/status", pid) : g_strdup ("/proc/self/status");
  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return -1;
  line = strstr (contents, "\nVmRSS:");
  if (line == NULL)
    return -1;
  return g_ascii_strtoll (line + strlen ("\nVmRSS:"), NULL, 10);
}

int
bf_bench_compare_doubles (gconstpointer a,
                          gconstpointer b)
{
  gdouble x = *(const gdouble *) a, y = *(const gdouble *) b;

  return (x > y) - (x < y);
}

gdouble
bf_bench_percentile (GArray  *sorted,
                     gdouble  p)
{
  gsize i;

  if (sorted->len == 0)
    return 0;
  i = (gsize) (p / 100.0 * (sorted->len - 1) + 0.5);
  return g_array_index (sorted, gdouble, MIN (i, sorted->len - 1));
}

GString *
bf_bench_json_begin (const char *phase,
                     const char *protocol)
{
  GString *s = g_string_new (NULL);

  g_string_append_printf (s, "{\"phase\":\"%s\"", phase);
  if (protocol != NULL)
    g_string_append_printf (s, ",\"protocol\":\"%s\"", protocol);
  return s;
}

void
bf_bench_json_number (GString    *s,
                      const char *key,
                      gdouble     value)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  g_string_append_printf (s, ",\"%s\":%s", key,
                          g_ascii_formatd (buf, sizeof buf, "%.3f", value));
}

void
bf_bench_json_int (GString    *s,
                   const char *key,
                   gint64      value)
{
  g_string_append_printf (s, ",\"%s\":%" G_GINT64_FORMAT, key, value);
}

void
bf_bench_json_string (GString    *s,
                      const char *key,
                      const char *value)
{
  g_string_append_printf (s, ",\"%s\":\"%s\"", key, value);
}

void
bf_bench_json_distribution (GString    *s,
                            const char *key,
                            GArray     *values)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  const gdouble ps[] = { 50, 95, 99, 100 };
  const char * const names[] = { "p50", "p95", "p99", "max" };

  g_array_sort (values, bf_bench_compare_doubles);
  g_string_append_printf (s, ",\"%s\":{", key);
  for (guint i = 0; i < G_N_ELEMENTS (ps); i++)
    g_string_append_printf (s, "%s\"%s\":%s", i ? "," : "", names[i],
                            g_ascii_formatd (buf, sizeof buf, "%.3f",
                                             bf_bench_percentile (values, ps[i])));
  g_string_append_c (s, '}');
}

/* Prints the record and frees @s. */
void
bf_bench_json_end (GString *s,
                   guint    n_open,
                   int      peer_pid)
{
  bf_bench_json_int (s, "open", n_open);
  bf_bench_json_int (s, "loadgen_rss_kib", bf_bench_read_vmrss_kib (0));
  if (peer_pid > 0)
    bf_bench_json_int (s, "peer_rss_kib", bf_bench_read_vmrss_kib (peer_pid));
  bf_bench_json_int (s, "realtime_usec", g_get_real_time ());
  g_string_append (s, "}\n");
  fputs (s->str, stdout);
  fflush (stdout);
  g_string_free (s, TRUE);
}

GPtrArray *
bf_bench_read_os_release (void)
{
  GPtrArray *pairs = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents ("/etc/os-release", &contents, NULL, NULL))
    return pairs;
  lines = g_strsplit (contents, "\n", -1);
  for (char **l = lines; *l; l++)
    {
      char *eq = strchr (*l, '=');
      g_autofree char *value = NULL;
      g_autofree char *key = NULL;

      if (**l == '\0' || **l == '#' || eq == NULL)
        continue;
      value = g_strdup (eq + 1);
      /* Python's str.strip('"') */
      while (*value == '"')
        memmove (value, value + 1, strlen (value));
      while (*value && value[strlen (value) - 1] == '"')
        value[strlen (value) - 1] = '\0';
      if (*value == '\0')
        continue;
      *eq = '\0';
      key = g_ascii_strdown (*l, -1);
      g_ptr_array_add (pairs, g_strconcat ("os_", key, NULL));
      g_ptr_array_add (pairs, g_steal_pointer (&value));
    }
  return pairs;
}

gboolean
bf_bench_names_parse (BfBenchNames *names,
                      const char   *format,
                      GError      **error)
{
  g_autoptr(GString) prefix = g_string_new (NULL);
  g_autoptr(GString) suffix = g_string_new (NULL);
  gboolean found = FALSE;

  memset (names, 0, sizeof *names);
  for (const char *p = format; *p;)
    {
      GString *target = found ? suffix : prefix;

      if (*p != '%')
        {
          g_string_append_c (target, *p++);
          continue;
        }
      if (p[1] == '%')
        {
          g_string_append_c (target, '%');
          p += 2;
          continue;
        }
      if (found)
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "--name-format %s: only one %%d is allowed", format);
          return FALSE;
        }
      p++;
      if (*p == '0')
        {
          names->zero = TRUE;
          p++;
        }
      while (g_ascii_isdigit (*p) && names->width < 100)
        names->width = names->width * 10 + (*p++ - '0');
      if (*p != 'd')
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "--name-format %s: only %%d, %%0Nd or %%Nd conversions are allowed", format);
          return FALSE;
        }
      p++;
      found = TRUE;
    }
  names->prefix = g_string_free (g_steal_pointer (&prefix), FALSE);
  names->suffix = g_string_free (g_steal_pointer (&suffix), FALSE);
  return TRUE;
}

char *
bf_bench_names_format (const BfBenchNames *names,
                       guint               number)
{
  if (names->zero)
    return g_strdup_printf ("%s%0*u%s", names->prefix, names->width, number, names->suffix);
  return g_strdup_printf ("%s%*u%s", names->prefix, names->width, number, names->suffix);
}

void
bf_bench_names_clear (BfBenchNames *names)
{
  g_clear_pointer (&names->prefix, g_free);
  g_clear_pointer (&names->suffix, g_free);
}
