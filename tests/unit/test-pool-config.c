/* test-pool-config.c: [Pool NAME] groups in the configuration parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-config.h"
#include "config-test-util.h"

#define LATENT "Password=p\nLatent=command\nStartCommand=/bin/true\nBuilders=b\n"

static void
test_expand (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Worker solo]\nPassword=p\n"
                                   "[Pool cloud]\nWorkers=cloud-%02d\nCount=3\nMinIdle=1\nMaxInstances=2\n"
                                   "MaxBuildsPerInstance=4\nProperty.os=debian\nLabels=big\n" LATENT);
  BfPoolConfig *pc = bf_config_lookup_pool (c, "cloud");
  BfWorkerConfig *w;

  g_assert_nonnull (pc);
  g_assert_cmpuint (c->pools->len, ==, 1);
  g_assert_cmpuint (pc->count, ==, 3);
  g_assert_cmpuint (pc->min_idle, ==, 1);
  g_assert_cmpuint (pc->max_instances, ==, 2);
  g_assert_cmpuint (pc->max_builds_per_instance, ==, 4);
  g_assert_cmpuint (g_strv_length (pc->members), ==, 3);
  g_assert_cmpstr (pc->members[0], ==, "cloud-01");
  g_assert_cmpstr (pc->members[2], ==, "cloud-03");
  g_assert_cmpuint (c->workers->len, ==, 4);
  g_assert_null (bf_config_lookup_worker (c, "solo")->pool);
  for (guint i = 1; i <= 3; i++)
    {
      g_autofree char *name = g_strdup_printf ("cloud-%02u", i);

      w = bf_config_lookup_worker (c, name);
      g_assert_nonnull (w);
      g_assert_cmpstr (w->pool, ==, "cloud");
      g_assert_cmpint (w->latent, ==, BF_LATENT_COMMAND);
      g_assert_cmpstr (w->builders[0], ==, "b");
      g_assert_cmpstr (w->labels[0], ==, "big");
      g_assert_cmpuint (w->max_builds_per_instance, ==, 4);
      g_assert_true (g_variant_lookup (w->properties, "os", "&s", NULL));
    }
  g_assert_null (bf_config_lookup_worker (c, "cloud-04"));
}

static void
test_defaults (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Pool p]\nWorkers=w%d\nCount=12\n" LATENT);
  BfPoolConfig *pc = bf_config_lookup_pool (c, "p");

  g_assert_cmpuint (pc->max_instances, ==, 12);
  g_assert_cmpuint (pc->min_idle, ==, 0);
  g_assert_cmpuint (pc->max_builds_per_instance, ==, 0);
  g_assert_cmpstr (pc->members[0], ==, "w1");
  g_assert_cmpstr (pc->members[11], ==, "w12");
  g_assert_null (bf_config_lookup_pool (c, "q"));
}

static void
test_patterns (void)
{
  struct { const char *pattern; const char *first; const char *last; } good[] = {
    { "a%d", "a1", "a10" },
    { "%03d-x", "001-x", "010-x" },
    { "n%2d", NULL, NULL },          /* a space: not a valid name */
    { "x.%02d.y", "x.01.y", "x.10.y" },
  };
  const char *bad[] = { "plain", "a%d%d", "a%s", "a%%d", "a%x", "a%100d", "%-2d", "a%", NULL };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr(GError) error = NULL;
      g_auto(GStrv) names = bf_pool_expand_pattern (good[i].pattern, 10, &error);

      if (good[i].first == NULL)
        {
          g_assert_null (names);
          g_assert_nonnull (strstr (error->message, "not allowed as a worker name"));
          continue;
        }
      g_assert_no_error (error);
      g_assert_cmpstr (names[0], ==, good[i].first);
      g_assert_cmpstr (names[9], ==, good[i].last);
      g_assert_null (names[10]);
    }
  for (guint i = 0; bad[i]; i++)
    {
      g_autoptr(GError) error = NULL;
      g_auto(GStrv) names = bf_pool_expand_pattern (bad[i], 3, &error);

      if (names != NULL)
        g_error ("pattern “%s” was taken", bad[i]);
      g_assert_nonnull (strstr (error->message, bad[i]));
    }
}

static void
test_errors (void)
{
  assert_error ("[Pool p]\nCount=2\n" LATENT, "test.conf:1:", "[Pool p]", "needs Workers=", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\n" LATENT, "[Pool p]", "needs Count=", NULL);
  assert_error ("[Pool p]\nWorkers=p\nCount=2\n" LATENT, "test.conf:2:", "[Pool p] Workers", "no %d", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d-%d\nCount=2\n" LATENT, "[Pool p] Workers", "more than one", NULL);
  assert_error ("[Pool p]\nWorkers=p-%s\nCount=2\n" LATENT, "[Pool p] Workers", "only %d", NULL);
  assert_error ("[Pool p]\nWorkers=p %d\nCount=2\n" LATENT, "[Pool p] Workers", "“p 1”", "not allowed as a worker name", NULL);
  assert_error ("[Pool p]\nWorkers=%055d\nCount=2\n" LATENT, "[Pool p] Workers", "not allowed", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=1001\n" LATENT, "test.conf:3:", "[Pool p] Count", "at most 1000", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=-1\n" LATENT, "[Pool p] Count", "not a whole number", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=2\nMaxInstances=0\n" LATENT, "[Pool p] MaxInstances", "at least 1", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=4\nMaxInstances=2\nMinIdle=3\n" LATENT,
                "[Pool p] MinIdle", "3 idle instances cannot be kept with MaxInstances=2", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=2\nMinIdle=3\n" LATENT,
                "[Pool p] MinIdle", "with Count=2", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=2\nMaxBuildsPerInstance=x\n" LATENT,
                "[Pool p] MaxBuildsPerInstance", "not a whole number", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=2\nPassword=p\n", "[Pool p]", "latent", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=2\nColour=red\n" LATENT, "[Pool p] Colour", "unknown key", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=2\nLatent=command\nBuilders=b\n",
                "[Pool p]", "missing password", NULL);
  assert_error ("[Pool p q]\nWorkers=p-%d\nCount=2\n" LATENT, "[Pool p q]", "not allowed as a pool name", NULL);
  /* pool keys stay in pools */
  assert_error ("[Worker a]\nPassword=p\nCount=2\n", "[Worker a] Count", "unknown key", NULL);
  /* names are unique over workers and pools, whichever group comes first */
  assert_error ("[Worker p-2]\nPassword=p\n[Pool p]\nWorkers=p-%d\nCount=3\n" LATENT,
                "[Pool p] Workers", "p-2", "[Worker p-2] has already", NULL);
  assert_error ("[Pool p]\nWorkers=p-%d\nCount=3\n" LATENT "[Worker p-3]\nPassword=p\n",
                "[Worker p-3]", "taken by [Pool p]", NULL);
  assert_error ("[Pool p]\nWorkers=x%d\nCount=3\n" LATENT "[Pool q]\nWorkers=x%01d\nCount=5\n" LATENT,
                "[Pool q] Workers", "x1", "[Pool p] has already", NULL);
}

static void
test_empty_pool (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Pool p]\nWorkers=p-%d\nCount=0\n" LATENT);

  g_assert_cmpuint (c->workers->len, ==, 0);
  g_assert_cmpuint (g_strv_length (bf_config_lookup_pool (c, "p")->members), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/pool-config/expand", test_expand);
  g_test_add_func ("/pool-config/defaults", test_defaults);
  g_test_add_func ("/pool-config/patterns", test_patterns);
  g_test_add_func ("/pool-config/errors", test_errors);
  g_test_add_func ("/pool-config/empty", test_empty_pool);
  return g_test_run ();
}
