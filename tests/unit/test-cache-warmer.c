/* test-cache-warmer.c: the background rebuild of dropped caches
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-cache-warmer.h"

typedef struct {
  int warmed;     /* times warm() ran for it */
} Item;

static void
warm (gpointer item)
{
  ((Item *) item)->warmed++;
}

static gboolean
set_flag (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Runs the main loop for @ms milliseconds. */
static void
run_for (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, set_flag, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

static void
test_nothing_until_wanted (void)
{
  g_autoptr(BfCacheWarmer) warmer = bf_cache_warmer_new (warm);
  Item a = { 0 };

  bf_cache_warmer_mark_cold (warmer, &a);
  run_for (100);
  g_assert_cmpint (a.warmed, ==, 0);

  bf_cache_warmer_set_wanted (warmer);
  bf_cache_warmer_mark_cold (warmer, &a);
  while (a.warmed == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (a.warmed, ==, 1);
}

static void
test_each_once (void)
{
  g_autoptr(BfCacheWarmer) warmer = bf_cache_warmer_new (warm);
  Item items[500] = { 0 };

  bf_cache_warmer_set_wanted (warmer);
  /* a burst of changes to the same items warms each once */
  for (guint round = 0; round < 3; round++)
    for (guint i = 0; i < G_N_ELEMENTS (items); i++)
      bf_cache_warmer_mark_cold (warmer, &items[i]);
  while (items[G_N_ELEMENTS (items) - 1].warmed == 0 || items[0].warmed == 0)
    g_main_context_iteration (NULL, TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (items); i++)
    {
      while (items[i].warmed == 0)
        g_main_context_iteration (NULL, TRUE);
      g_assert_cmpint (items[i].warmed, ==, 1);
    }
  run_for (100);
  for (guint i = 0; i < G_N_ELEMENTS (items); i++)
    g_assert_cmpint (items[i].warmed, ==, 1);
}

static void
test_forget (void)
{
  g_autoptr(BfCacheWarmer) warmer = bf_cache_warmer_new (warm);
  Item *gone = g_new0 (Item, 1);
  Item kept = { 0 };

  bf_cache_warmer_set_wanted (warmer);
  bf_cache_warmer_mark_cold (warmer, gone);
  bf_cache_warmer_mark_cold (warmer, &kept);
  /* freed before the warmer ran: never touched (ASan would say so) */
  bf_cache_warmer_forget (warmer, gone);
  g_free (gone);
  while (kept.warmed == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (kept.warmed, ==, 1);
}

static void
test_stop (void)
{
  g_autoptr(BfCacheWarmer) warmer = bf_cache_warmer_new (warm);
  Item a = { 0 };

  bf_cache_warmer_set_wanted (warmer);
  bf_cache_warmer_mark_cold (warmer, &a);
  bf_cache_warmer_stop (warmer);
  run_for (100);
  g_assert_cmpint (a.warmed, ==, 0);
  /* and nothing is queued afterwards */
  bf_cache_warmer_mark_cold (warmer, &a);
  run_for (100);
  g_assert_cmpint (a.warmed, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cache-warmer/nothing-until-wanted", test_nothing_until_wanted);
  g_test_add_func ("/cache-warmer/each-once", test_each_once);
  g_test_add_func ("/cache-warmer/forget", test_forget);
  g_test_add_func ("/cache-warmer/stop", test_stop);
  return g_test_run ();
}
