/* test-unit-name.c: the unit names Latent=systemd starts, checked as systemd checks them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-config.h"
#include "bf-unit-name.h"

static void
assert_valid (const char *name)
{
  g_autofree char *why = NULL;

  if (!bf_unit_name_is_valid (name, &why))
    g_error ("“%s” refused: %s", name, why);
  g_assert_null (why);
}

static void
assert_invalid (const char *name,
                const char *expected)
{
  g_autofree char *why = NULL;

  g_assert_false (bf_unit_name_is_valid (name, &why));
  g_assert_nonnull (why);
  if (strstr (why, expected) == NULL)
    g_error ("“%s”: expected “%s” in “%s”", name, expected, why);
}

/* The names systemd itself starts: a worker name, with its '-', '_' and
 * '.', is a valid instance as it is (systemd-escape is for paths and
 * arbitrary strings, and Debian's unit reads the instance with %i). */
static void
test_valid (void)
{
  assert_valid ("buildbot-worker@linux-x86_64.debian.service");
  assert_valid ("buildbot-worker@a.service");
  assert_valid ("bfworker-pb-unit-1.service");
  assert_valid ("getty@tty1.service");
  assert_valid ("systemd-fsck@dev-disk-by\\x2duuid-1234.service");
  assert_valid ("foo:bar.socket");
}

/* What systemd-escape would have to escape, and systemd refuses raw. */
static void
test_invalid (void)
{
  g_autofree char *longest = g_strconcat ("w@", g_strnfill (255 - strlen ("w@.service"), 'x'), ".service", NULL);
  g_autofree char *too_long = g_strconcat ("w@", g_strnfill (256 - strlen ("w@.service"), 'x'), ".service", NULL);

  assert_invalid ("buildbot-worker@team/linux.service", "holds '/'");
  assert_invalid ("buildbot-worker@wörker.service", "byte 0xc3");
  assert_invalid ("buildbot worker@a.service", "holds ' '");
  assert_invalid ("buildbot-worker@a%.service", "holds '%'");
  assert_invalid ("buildbot-worker@a@b.service", "more than one '@'");
  assert_invalid ("@a.service", "no name before its '@'");
  assert_invalid ("buildbot-worker@.service", "is a template");
  assert_invalid ("buildbot-worker@a", "unit type");
  assert_invalid ("buildbot-worker@a.daemon", "unit type");
  assert_invalid (".service", "unit type");
  assert_invalid ("", "empty");
  assert_valid (longest);
  assert_invalid (too_long, "longer than");
}

static void
assert_template (const char *template,
                 const char *worker,
                 const char *expected)
{
  g_autofree char *why = NULL;
  gboolean ok = bf_unit_template_is_valid (template, worker, &why);

  if (expected == NULL && !ok)
    g_error ("Unit=%s for %s refused: %s", template, worker, why);
  if (expected != NULL && (ok || strstr (why, expected) == NULL))
    g_error ("Unit=%s for %s: expected “%s” in “%s”", template, worker, expected, ok ? "(accepted)" : why);
}

static void
test_template (void)
{
  assert_template ("buildbot-worker@%n.service", "linux-x86_64.b_1", NULL);
  assert_template ("buildbot-worker-%r@%n.service", "w", NULL);
  assert_template ("bfworker-%r-%n.service", "unit-1", NULL);
  assert_template ("worker-%p.service", "w", "%p cannot be used");
  assert_template ("worker@%u.service", "w", "%u cannot be used");
  assert_template ("worker@%m.service", "w", "%m cannot be used");
  assert_template ("worker@%n.service%", "w", "ends in a '%'");
  assert_template ("100%%@%n.service", "w", "holds '%'");
  assert_template ("team/%n.service", "w", "holds '/'");
  assert_template ("buildbot-worker@%n", "w", "unit type");
}

/* The configuration refuses a Unit= that systemd would refuse, naming the
 * key; the default one is accepted for every valid worker name. */
static void
test_config (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfConfig) ok = bf_config_load_data ("[Worker linux-x86_64.b_1]\nPassword=p\nLatent=systemd\n",
                                                "test.conf", &error);
  g_autoptr(BfConfig) bad = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (bf_config_lookup_worker (ok, "linux-x86_64.b_1")->unit, ==, "buildbot-worker@%n.service");
  bad = bf_config_load_data ("[Worker w]\nPassword=p\nLatent=systemd\nUnit=team/%n.service\n",
                             "test.conf", &error);
  g_assert_null (bad);
  g_assert_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
  g_assert_nonnull (strstr (error->message, "[Worker w] Unit: “team/w.service” holds '/'"));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/unit-name/valid", test_valid);
  g_test_add_func ("/unit-name/invalid", test_invalid);
  g_test_add_func ("/unit-name/template", test_template);
  g_test_add_func ("/unit-name/config", test_config);
  return g_test_run ();
}
