/* bf-ctl-builds.c: builds — the running and pending builds (--all:
 * the finished ones still on the bus too)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-ctl.h"

static const char *
lookup_string (GVariant   *build,
               const char *key)
{
  const char *s = "";

  if (!g_variant_lookup (build, key, "&s", &s))
    g_variant_lookup (build, key, "&o", &s);
  return s;
}

int
bf_ctl_cmd_builds (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) builds = bf_ctl_fetch_builds (ctl, &error);
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  guint shown = 0;

  if (builds == NULL)
    return bf_ctl_error (ctl, error, "Cannot list the builds");
  /* Finished builds stay on the bus for a while: only with --all. */
  for (guint i = builds->len; i > 0 && !ctl->all; i--)
    if (g_str_equal (lookup_string (g_ptr_array_index (builds, i - 1), "State"), "finished"))
      g_ptr_array_remove_index (builds, i - 1);

  if (ctl->json)
    {
      g_autoptr(GString) out = g_string_new ("[");

      for (guint i = 0; i < builds->len; i++)
        {
          GVariant *b = g_ptr_array_index (builds, i);
          const char *worker = lookup_string (b, "Worker");
          g_autofree char *worker_name = g_str_equal (worker, "/") ? g_strdup ("") : bf_ctl_name_from_path (worker);
          g_autofree char *id = bf_ctl_name_from_path (lookup_string (b, "Path"));
          g_autoptr(GString) obj = g_string_new (NULL);

          bf_ctl_json_append (obj, b);
          /* the a{sv} as an object, plus the names a script wants */
          g_string_truncate (obj, obj->len - 1);
          g_string_append (obj, ",\"Id\":");
          bf_ctl_json_append_string (obj, id);
          g_string_append (obj, ",\"WorkerName\":");
          bf_ctl_json_append_string (obj, worker_name);
          g_string_append_c (obj, '}');
          if (i > 0)
            g_string_append_c (out, ',');
          g_string_append (out, obj->str);
        }
      g_string_append (out, "]\n");
      bf_ctl_write_all (1, out->str, out->len);
      return BF_CTL_EXIT_OK;
    }

  g_ptr_array_add (rows, g_strsplit ("BUILD|BUILDER|STATE|WORKER|OWNER|SINCE|WAITING FOR", "|", -1));
  for (guint i = 0; i < builds->len; i++)
    {
      GVariant *b = g_ptr_array_index (builds, i);
      const char *state = lookup_string (b, "State");
      const char *worker = lookup_string (b, "Worker");
      const char *waiting = lookup_string (b, "WaitingFor");
      guint64 created = 0, started = 0;
      char **row;

      g_variant_lookup (b, "CreatedUSec", "t", &created);
      g_variant_lookup (b, "StartedUSec", "t", &started);
      row = g_new0 (char *, 8);
      row[0] = bf_ctl_name_from_path (lookup_string (b, "Path"));
      row[1] = g_strdup (lookup_string (b, "Builder"));
      row[2] = g_str_equal (state, "running") ? g_strdup_printf ("\x01good\x02%s", state) :
               g_str_equal (state, "pending") ? g_strdup_printf ("\x01warn\x02%s", state) :
               *lookup_string (b, "Result") ? g_strdup_printf ("%s (%s)", state, lookup_string (b, "Result")) :
               g_strdup (state);
      row[3] = g_str_equal (worker, "/") || *worker == '\0' ? g_strdup ("-") : bf_ctl_name_from_path (worker);
      row[4] = g_strdup (lookup_string (b, "Owner"));
      row[5] = bf_ctl_format_ago (started ? started : created);
      row[6] = g_strdup (*waiting ? waiting : g_str_equal (state, "pending") ? "a free worker" : "-");
      g_ptr_array_add (rows, row);
      shown++;
    }
  bf_ctl_pager_start (ctl);
  bf_ctl_print_table (ctl, rows, 7);
  if (!ctl->no_legend)
    g_print ("\n%u build%s listed.\n", shown, shown == 1 ? "" : "s");
  bf_ctl_pager_end (ctl);
  return BF_CTL_EXIT_OK;
}
