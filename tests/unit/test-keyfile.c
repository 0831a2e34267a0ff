/* test-keyfile.c: BfKeyFile reads what GKeyFile reads, merged as setting each value in turn would
 *
 * Every text is read by BfKeyFile and by GKeyFile (one GKeyFile per
 * sequence of files, each later file's values set over the earlier ones),
 * and the two must agree on the groups, keys and values, raw and decoded,
 * and on which texts are errors (with GKeyFile's message).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-keyfile.h"

/* GKeyFile as bf-config.c used it: the files in turn, later keys set
 * over earlier ones.  A key twice in one file is listed once (BfKeyFile's
 * contract; GKeyFile lists it twice). */
static GKeyFile *
reference (const char * const *texts,
           GError             **error)
{
  g_autoptr(GKeyFile) merged = g_key_file_new ();

  for (guint f = 0; texts[f]; f++)
    {
      g_autoptr(GKeyFile) kf = g_key_file_new ();
      g_auto(GStrv) groups = NULL;

      if (!g_key_file_load_from_data (kf, texts[f], strlen (texts[f]), G_KEY_FILE_NONE, error))
        return NULL;
      groups = g_key_file_get_groups (kf, NULL);
      for (guint i = 0; groups[i]; i++)
        {
          g_auto(GStrv) keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);

          /* An empty group is a group too. */
          if (!g_key_file_has_group (merged, groups[i]))
            {
              g_key_file_set_value (merged, groups[i], "placeholder", "");
              g_key_file_remove_key (merged, groups[i], "placeholder", NULL);
            }
          for (guint j = 0; keys && keys[j]; j++)
            {
              g_autofree char *raw = g_key_file_get_value (kf, groups[i], keys[j], NULL);
              g_key_file_set_value (merged, groups[i], keys[j], raw);
            }
        }
    }
  return g_steal_pointer (&merged);
}

static void
assert_same (const char * const *texts)
{
  g_autoptr(GError) ref_error = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GKeyFile) ref = reference (texts, &ref_error);
  g_autoptr(BfKeyFile) kf = bf_key_file_new ();
  g_auto(GStrv) ref_groups = NULL;
  const char * const *groups;
  gboolean ok = TRUE;

  for (guint f = 0; texts[f] && ok; f++)
    ok = bf_key_file_load (kf, texts[f], strlen (texts[f]), &error);
  if (ref == NULL)
    {
      g_assert_false (ok);
      g_assert_error (error, ref_error->domain, ref_error->code);
      g_assert_cmpstr (error->message, ==, ref_error->message);
      return;
    }
  g_assert_no_error (error);
  g_assert_true (ok);

  ref_groups = g_key_file_get_groups (ref, NULL);
  groups = bf_key_file_get_groups (kf);
  if (!g_strv_equal ((const char * const *) ref_groups, groups))
    {
      g_autofree char *want = g_strjoinv ("|", ref_groups);
      g_autofree char *got = g_strjoinv ("|", (char **) groups);

      g_error ("groups: GKeyFile %s, BfKeyFile %s, for %s", want, got, texts[0]);
    }
  for (guint i = 0; groups[i]; i++)
    {
      g_auto(GStrv) ref_keys = g_key_file_get_keys (ref, groups[i], NULL, NULL);
      g_auto(GStrv) keys = bf_key_file_get_keys (kf, groups[i]);

      g_assert_true (g_strv_equal ((const char * const *) ref_keys, (const char * const *) keys));
      for (guint j = 0; keys[j]; j++)
        {
          g_autofree char *ref_raw = g_key_file_get_value (ref, groups[i], keys[j], NULL);
          g_autofree char *ref_string = g_key_file_get_string (ref, groups[i], keys[j], NULL);
          g_autofree char *string = bf_key_file_get_string (kf, groups[i], keys[j]);

          g_assert_cmpstr (bf_key_file_get_value (kf, groups[i], keys[j]), ==, ref_raw);
          g_assert_cmpstr (string, ==, ref_string);
          g_assert_true (bf_key_file_has_key (kf, groups[i], keys[j]));
        }
      g_assert_false (bf_key_file_has_key (kf, groups[i], "Absent"));
      g_assert_null (bf_key_file_get_value (kf, groups[i], "Absent"));
    }
  g_assert_null (bf_key_file_get_keys (kf, "No such group"));
  g_assert_null (bf_key_file_get_string (kf, "No such group", "Key"));
}

static void
assert_same_1 (const char *text)
{
  const char *texts[] = { text, NULL };

  assert_same (texts);
}

/* The lines a configuration is made of: read without GKeyFile. */
static void
test_plain (void)
{
  assert_same_1 ("");
  assert_same_1 ("# only a comment\n\n");
  assert_same_1 ("[Daemon]\nListen=127.0.0.1:0\nStateDirectory=/var/lib/x\n\n"
                 "[Worker a]\nPassword=p\nBuilders=b;c\n\n[Worker b.c_d-e]\nPassword=q\n");
  assert_same_1 ("  [Worker a]\n\tPassword = spaced out  \nBuilders =\nLabels=\t x;y \n# c\n  # c\n");
  assert_same_1 ("[Worker a]\nPassword=a=b=c\nProperty.x.y=1\nEmpty=\nNoNewline=at the end");
  assert_same_1 ("[Worker é]\nPassword=ünïcödé\n[Empty]\n[Worker last]\n");
  assert_same_1 ("[Worker a]\nPassword=one\nPassword=two\nBuilders=b\n");
  assert_same_1 ("[A]\nx=1\n[B]\ny=2\n");
}

/* Values with escapes: kept raw, decoded as GKeyFile decodes them. */
static void
test_escapes (void)
{
  assert_same_1 ("[Worker a]\nPassword=tab\\there\nReason=\\sleading space\nPath=C:\\\\dir\nNewline=a\\nb\n");
  assert_same_1 ("[Worker a]\nBad=unknown \\q escape\nEnd=trailing \\\n");
  assert_same_1 ("[Worker a]\nList=a\\;b;c\n");
}

/* Every other line: read by GKeyFile, with its errors. */
static void
test_other_lines (void)
{
  assert_same_1 ("[Worker a]\r\nPassword=crlf\r\n");
  assert_same_1 ("[Worker a]\nPassword=crlf\r\n");
  assert_same_1 ("[Worker a]  \nPassword=space after the bracket\n");
  assert_same_1 ("[Worker a]\nName[de]=locale key\nName=plain\n");
  assert_same_1 ("[Worker a]\nKey with space=1\n");
  assert_same_1 ("[Worker a]\nEncoding=UTF-8\n");
  assert_same_1 ("[Worker a]\nEncoding=latin1\n");
  assert_same_1 ("Password=before any group\n[Worker a]\n");
  assert_same_1 ("[Worker a]\nnot a key value pair\n");
  assert_same_1 ("[Worker a]\n=no key\n");
  assert_same_1 ("[Worker [a]]\nPassword=p\n");
  assert_same_1 ("[]\nPassword=p\n");
  assert_same_1 ("[Worker a\nPassword=p\n");
  assert_same_1 ("[Worker a]\nPassword=p\n[Worker a]\nBuilders=merged\n");
  assert_same_1 ("[A]\nx=1\n[B]\nbad line\n");
}

/* Later files set their keys over the earlier ones, group by group. */
static void
test_merge (void)
{
  const char *two[] = { "[Daemon]\nListen=a\n[Worker a]\nPassword=p\nMaxBuilds=1\n",
                        "[Worker a]\nMaxBuilds=2\nLabels=x\n[Worker b]\n[Daemon]\nListen=b\n", NULL };
  const char *other_second[] = { "[Worker a]\nPassword=p\nMaxBuilds=1\n",
                                 "[Worker a]\r\nMaxBuilds=3\r\n[Worker c]\r\nPassword=q\r\n", NULL };
  const char *other_first[] = { "[Worker a]\nName[de]=x\nMaxBuilds=1\n", "[Worker a]\nMaxBuilds=4\n", NULL };
  const char *broken_second[] = { "[Worker a]\nPassword=p\n", "[Worker a]\nbroken\n", NULL };
  /* Read in part before the line that needs GKeyFile: then in full. */
  const char *late_other[] = { "[Worker a]\nPassword=p\n", "[Worker a]\nMaxBuilds=5\n[Worker b]\nName[fr]=y\nP=1\n", NULL };

  assert_same (two);
  assert_same (other_second);
  assert_same (other_first);
  assert_same (broken_second);
  assert_same (late_other);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/keyfile/plain", test_plain);
  g_test_add_func ("/keyfile/escapes", test_escapes);
  g_test_add_func ("/keyfile/other-lines", test_other_lines);
  g_test_add_func ("/keyfile/merge", test_merge);
  return g_test_run ();
}
