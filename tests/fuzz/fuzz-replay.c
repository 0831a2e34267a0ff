/* fuzz-replay.c: runs inputs through a fuzz target without libFuzzer
 *
 *   fuzz-TARGET-replay FILE|DIRECTORY...
 *
 * Each file, and each file of each directory (in name order), is one
 * input; normal builds regression-test the corpora this way.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdint.h>
#include <string.h>
#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

static gboolean
replay_file (const gchar *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree gchar *contents = NULL;
  gsize len;

  if (!g_file_get_contents (path, &contents, &len, &error))
    {
      g_printerr ("%s\n", error->message);
      return FALSE;
    }
  LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
  g_print ("ok %s (%" G_GSIZE_FORMAT " bytes)\n", path, len);
  return TRUE;
}

static gint
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const gchar * const *) a, *(const gchar * const *) b);
}

int
main (int    argc,
      char **argv)
{
  guint n_inputs = 0;

  if (argc < 2)
    {
      g_printerr ("Usage: %s FILE|DIRECTORY...\n"
                  "Runs each file, and each file in each directory, through the fuzz target.\n",
                  argv[0]);
      return 2;
    }

  for (int i = 1; i < argc; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
      g_autoptr(GDir) dir = NULL;
      const gchar *name;

      if (!g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          if (!replay_file (argv[i]))
            return 1;
          n_inputs++;
          continue;
        }

      dir = g_dir_open (argv[i], 0, &error);
      if (dir == NULL)
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
      while ((name = g_dir_read_name (dir)) != NULL)
        g_ptr_array_add (paths, g_build_filename (argv[i], name, NULL));
      g_ptr_array_sort (paths, compare_strings);

      for (guint j = 0; j < paths->len; j++)
        {
          if (!replay_file (g_ptr_array_index (paths, j)))
            return 1;
          n_inputs++;
        }
    }

  if (n_inputs == 0)
    {
      g_printerr ("No inputs found\n");
      return 1;
    }
  g_print ("%u inputs replayed\n", n_inputs);
  return 0;
}

