/* test-history.c: the workers' event history, one journal for all of them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "bf-history.h"

static char *
make_dir (void)
{
  char *dir = g_dir_make_tmp ("bf-history-XXXXXX", NULL);

  g_assert_nonnull (dir);
  return dir;
}

static void
remove_dir (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_assert_cmpint (g_unlink (path), ==, 0);
    }
  g_rmdir (dir);
}

static guint
count_files (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  guint n = 0;

  while (d != NULL && g_dir_read_name (d) != NULL)
    n++;
  return n;
}

static gboolean
has_file_with (const char *dir,
               const char *part)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    if (strstr (name, part) != NULL)
      return TRUE;
  return FALSE;
}

static char *
journal_text (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "journal.log", NULL);
  char *text = NULL;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  return text;
}

static void
write_file (const char *dir,
            const char *name,
            const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);

  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

/* The events' details, oldest first, comma-separated. */
static char *
details (BfHistory  *history,
         const char *worker,
         guint       limit)
{
  g_autoptr(GVariant) events = bf_history_query (history, worker, 0, 0, limit);
  g_autoptr(GString) out = g_string_new (NULL);
  GVariantIter iter;
  const char *event, *detail, *actor;
  guint64 time;

  g_variant_iter_init (&iter, events);
  while (g_variant_iter_next (&iter, "(t&s&s&s)", &time, &event, &detail, &actor))
    g_string_append_printf (out, "%s%s", out->len > 0 ? "," : "", detail);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

#define assert_details(history, worker, limit, expected) \
  G_STMT_START { \
    g_autofree char *_got = details (history, worker, limit); \
    g_assert_cmpstr (_got, ==, expected); \
  } G_STMT_END

static guint
count_lines (const char *text,
             const char *prefix)
{
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  guint n = 0;

  for (guint i = 0; lines[i] != NULL; i++)
    if (lines[i][0] != '\0' && g_str_has_prefix (lines[i], prefix))
      n++;
  return n;
}

static void
got_cb (GObject      *source,
        GAsyncResult *result,
        gpointer      user_data)
{
  GVariant **out = user_data;

  *out = bf_history_query_finish (BF_HISTORY (source), result, NULL);
  g_assert_nonnull (*out);
}

/* Appended to one journal, kept across a restart, each worker its own. */
static void
test_append_and_restart (void)
{
  g_autofree char *dir = make_dir ();
  guint64 now = (guint64) g_get_real_time ();
  g_autoptr(GVariant) async = NULL;
  g_autofree char *text = NULL;
  BfHistory *history = bf_history_new (dir);

  bf_history_add (history, "a", now, "attached", "1.2.3.4:5", NULL);
  bf_history_add (history, "b\twith tab", now + 1, "paused", "disk\nfull", ":1.5");
  bf_history_add (history, "a", now + 2, "detached", "gone", NULL);
  /* The async query sees what was added before it, even not written yet. */
  bf_history_query_async (history, "a", 0, 0, 0, got_cb, &async);
  while (async == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (g_variant_n_children (async), ==, 2);
  g_clear_object (&history);

  /* One file for every worker. */
  g_assert_cmpuint (count_files (dir), ==, 1);
  text = journal_text (dir);
  g_assert_cmpuint (count_lines (text, "a\t"), ==, 2);

  history = bf_history_new (dir);
  assert_details (history, "a", 0, "1.2.3.4:5,gone");
  assert_details (history, "a", 1, "gone");
  assert_details (history, "b\twith tab", 0, "disk\nfull");
  assert_details (history, "b", 0, "");
  assert_details (history, "nobody", 0, "");
  g_clear_object (&history);
  remove_dir (dir);
}

/* A crash during an append leaves a torn last line: dropped, and the next
 * append starts a line of its own. */
static void
test_torn_last_line (void)
{
  g_autofree char *dir = make_dir ();
  guint64 now = (guint64) g_get_real_time ();
  g_autofree char *journal = g_strdup_printf ("w\t%" G_GUINT64_FORMAT "\tattached\tone\t\n"
                                              "w\t%" G_GUINT64_FORMAT "\tdetached\ttwo\t\n"
                                              "w\t%" G_GUINT64_FORMAT "\tatta",
                                              now - 3, now - 2, now - 1);
  g_autofree char *text = NULL;
  BfHistory *history;

  write_file (dir, "journal.log", journal);
  history = bf_history_new (dir);
  assert_details (history, "w", 0, "one,two");
  bf_history_add (history, "w", now, "attached", "three", NULL);
  assert_details (history, "w", 0, "one,two,three");
  g_clear_object (&history);
  text = journal_text (dir);
  g_assert_null (strstr (text, "atta\n"));
  g_assert_cmpuint (count_lines (text, "w\t"), ==, 3);
  /* Not corrupt: nothing set aside. */
  g_assert_false (has_file_with (dir, ".corrupt-"));
  remove_dir (dir);
}

/* Unreadable lines: the readable ones kept, a copy set aside, rewritten clean. */
static void
test_corrupt_journal (void)
{
  g_autofree char *dir = make_dir ();
  guint64 now = (guint64) g_get_real_time ();
  g_autofree char *journal = g_strdup_printf ("w\t%" G_GUINT64_FORMAT "\tattached\tone\t\n"
                                              "this is not an event\n"
                                              "w\tnot a time\tattached\tx\t\n"
                                              "w\t%" G_GUINT64_FORMAT "\tdetached\ttwo\t\n",
                                              now - 2, now - 1);
  g_autofree char *text = NULL;
  BfHistory *history;

  write_file (dir, "journal.log", journal);
  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*journal.log is corrupt (2 unreadable lines left out)*");
  history = bf_history_new (dir);
  assert_details (history, "w", 0, "one,two");
  g_test_assert_expected_messages ();
  g_clear_object (&history);
  g_assert_true (has_file_with (dir, ".corrupt-"));
  text = journal_text (dir);
  g_assert_null (strstr (text, "this is not"));
  g_assert_cmpuint (count_lines (text, "w\t"), ==, 2);
  remove_dir (dir);
}

/* The journal is compacted to what the bounds keep: the newest
 * BF_HISTORY_MAX_EVENTS of each worker, none past the maximum age. */
static void
test_compaction_bounds (void)
{
  g_autofree char *dir = make_dir ();
  guint64 now = (guint64) g_get_real_time ();
  g_autoptr(GString) old = g_string_new (NULL);
  g_autofree char *text = NULL;
  g_autofree char *got = NULL;
  BfHistory *history;

  /* Events past the maximum age are dropped when the journal is opened. */
  g_string_append_printf (old, "aged\t%" G_GUINT64_FORMAT "\tattached\told\t\n", now - BF_HISTORY_MAX_AGE_USEC - 1000);
  g_string_append_printf (old, "aged\t%" G_GUINT64_FORMAT "\tattached\tnew\t\n", now - 1000);
  write_file (dir, "journal.log", old->str);
  history = bf_history_new (dir);
  assert_details (history, "aged", 0, "new");
  text = journal_text (dir);
  g_assert_null (strstr (text, "\told\t"));
  g_clear_pointer (&text, g_free);

  /* A flapping worker: 20,000 events, then one of another worker. */
  for (guint i = 0; i < 20000; i++)
    {
      g_autofree char *detail = g_strdup_printf ("%u", i);
      bf_history_add (history, "flappy", now + i, i % 2 ? "detached" : "attached", detail, NULL);
      if (i == 10000)
        bf_history_flush (history);
    }
  bf_history_add (history, "other", now, "attached", "x", NULL);
  got = details (history, "flappy", 0);
  g_assert_true (g_str_has_prefix (got, "19500,19501,"));
  g_assert_true (g_str_has_suffix (got, ",19999"));
  assert_details (history, "flappy", 2, "19998,19999");
  text = journal_text (dir);
  /* Never more than twice the kept lines plus the slack (8192). */
  g_assert_cmpuint (count_lines (text, "flappy\t"), <=, 2 * BF_HISTORY_MAX_EVENTS + 8192);
  g_assert_cmpuint (count_lines (text, "flappy\t"), >=, BF_HISTORY_MAX_EVENTS);
  g_assert_cmpuint (count_lines (text, "other\t"), ==, 1);
  g_assert_cmpuint (count_lines (text, "aged\t"), ==, 1);
  g_clear_object (&history);
  /* Nothing left over from the compaction. */
  g_assert_cmpuint (count_files (dir), ==, 1);
  remove_dir (dir);
}

/* An older version's files, one per worker, are folded into the journal. */
static void
test_migration (void)
{
  g_autofree char *dir = make_dir ();
  guint64 now = (guint64) g_get_real_time ();
  g_autofree char *long_name = g_strnfill (70, '/');
  g_autofree char *escaped = g_uri_escape_string (long_name, NULL, FALSE);
  g_autofree char *plain_path = g_build_filename (dir, "w%2F1.log", NULL);
  g_autofree char *long_sum = NULL;
  g_autofree char *long_file = NULL;
  g_autofree char *plain = g_strdup_printf ("%" G_GUINT64_FORMAT "\tattached\tone\t\n"
                                            "garbage\n"
                                            "%" G_GUINT64_FORMAT "\tpaused\ttwo\\tthree\t:1.7\n",
                                            now - 2, now - 1);
  g_autofree char *hashed = g_strdup_printf ("%" G_GUINT64_FORMAT "\tattached\tlong\t\n", now - 1);
  g_autofree char *text = NULL;
  BfHistory *history;

  /* A long name (URI-escaped over 200 bytes) was known by its checksum. */
  g_assert_cmpuint (strlen (escaped), >, 200);
  long_sum = g_compute_checksum_for_string (G_CHECKSUM_SHA256, long_name, -1);
  long_file = g_strconcat ("sha256-", long_sum, ".log", NULL);
  write_file (dir, "w%2F1.log", plain);
  write_file (dir, long_file, hashed);
  write_file (dir, "journal.log", "");

  g_test_expect_message ("buildfleetd", G_LOG_LEVEL_WARNING, "*w%2F1.log is corrupt (1 unreadable line left out)*");
  history = bf_history_new (dir);
  assert_details (history, "w/1", 0, "one,two\tthree");
  g_test_assert_expected_messages ();
  g_assert_false (g_file_test (plain_path, G_FILE_TEST_EXISTS));
  g_assert_true (has_file_with (dir, "w%2F1.log.corrupt-"));
  /* Folded when its worker is first written. */
  bf_history_add (history, long_name, now, "detached", "later", NULL);
  assert_details (history, long_name, 0, "long,later");
  g_assert_false (has_file_with (dir, "sha256-"));
  g_clear_object (&history);

  /* Once only, across a restart. */
  history = bf_history_new (dir);
  assert_details (history, "w/1", 0, "one,two\tthree");
  assert_details (history, long_name, 0, "long,later");
  g_clear_object (&history);
  text = journal_text (dir);
  g_assert_cmpuint (count_lines (text, "w/1\t"), ==, 2);
  remove_dir (dir);
}

/* A crash after an old file was folded but before it was removed: the mark
 * says so, the file goes without being folded twice. */
static void
test_migration_once (void)
{
  g_autofree char *dir = make_dir ();
  guint64 now = (guint64) g_get_real_time ();
  g_autofree char *line = g_strdup_printf ("%" G_GUINT64_FORMAT "\tattached\tone\t\n", now - 1);
  g_autofree char *journal = g_strdup_printf ("w\t%s#migrated\tw.log\n", line);
  BfHistory *history;

  write_file (dir, "w.log", line);
  write_file (dir, "journal.log", journal);
  history = bf_history_new (dir);
  assert_details (history, "w", 0, "one");
  g_clear_object (&history);
  g_assert_cmpuint (count_files (dir), ==, 1);
  remove_dir (dir);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/history/append-and-restart", test_append_and_restart);
  g_test_add_func ("/history/torn-last-line", test_torn_last_line);
  g_test_add_func ("/history/corrupt-journal", test_corrupt_journal);
  g_test_add_func ("/history/compaction-bounds", test_compaction_bounds);
  g_test_add_func ("/history/migration", test_migration);
  g_test_add_func ("/history/migration-once", test_migration_once);
  return g_test_run ();
}
