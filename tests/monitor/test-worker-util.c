/* test-worker-util.c: the words the monitor uses for a worker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <locale.h>

#include "bf-worker-util.h"

#define MINUTE (G_GINT64_CONSTANT (60) * G_USEC_PER_SEC)

static void
test_state_classify (void)
{
  g_assert_cmpint (bf_worker_state_classify (TRUE, FALSE, NULL), ==, BF_WORKER_STATE_CONNECTED);
  g_assert_cmpint (bf_worker_state_classify (FALSE, FALSE, NULL), ==, BF_WORKER_STATE_DISCONNECTED);
  g_assert_cmpint (bf_worker_state_classify (FALSE, TRUE, NULL), ==, BF_WORKER_STATE_MISSING);
  /* a latent worker's instance state wins while it is changing */
  g_assert_cmpint (bf_worker_state_classify (FALSE, TRUE, "substantiating"), ==, BF_WORKER_STATE_SUBSTANTIATING);
  g_assert_cmpint (bf_worker_state_classify (TRUE, FALSE, "insubstantiating"), ==, BF_WORKER_STATE_INSUBSTANTIATING);
  g_assert_cmpint (bf_worker_state_classify (TRUE, FALSE, "substantiated"), ==, BF_WORKER_STATE_CONNECTED);
  g_assert_cmpint (bf_worker_state_classify (FALSE, FALSE, "not-substantiated"), ==, BF_WORKER_STATE_NOT_SUBSTANTIATED);
  g_assert_cmpint (bf_worker_state_classify (FALSE, TRUE, "not-substantiated"), ==, BF_WORKER_STATE_MISSING);

  /* the problems sort first */
  g_assert_cmpint (BF_WORKER_STATE_MISSING, <, BF_WORKER_STATE_DISCONNECTED);
  g_assert_cmpint (BF_WORKER_STATE_DISCONNECTED, <, BF_WORKER_STATE_CONNECTED);

  for (int state = BF_WORKER_STATE_MISSING; state <= BF_WORKER_STATE_CONNECTED; state++)
    {
      g_assert_nonnull (bf_worker_state_to_label (state));
      g_assert_nonnull (bf_worker_state_to_css_class (state));
      g_assert_cmpstr (bf_enum_to_nick (BF_TYPE_WORKER_STATE, state), !=, "");
    }
  g_assert_cmpstr (bf_enum_to_nick (BF_TYPE_WORKER_STATE, BF_WORKER_STATE_MISSING), ==, "missing");
}

static void
test_relative_time (void)
{
  gint64 now = G_GINT64_CONSTANT (1700000000) * G_USEC_PER_SEC;
  struct {
    gint64      ago;
    const char *text;
  } cases[] = {
    { 0, "Just now" },
    { 9 * G_USEC_PER_SEC, "Just now" },
    { 30 * G_USEC_PER_SEC, "30 seconds ago" },
    { 59 * G_USEC_PER_SEC, "59 seconds ago" },
    { MINUTE, "1 minute ago" },
    { 5 * MINUTE + 30 * G_USEC_PER_SEC, "5 minutes ago" },
    { 60 * MINUTE, "1 hour ago" },
    { 23 * 60 * MINUTE, "23 hours ago" },
    { 24 * 60 * MINUTE, "1 day ago" },
    { 10 * 24 * 60 * MINUTE, "10 days ago" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = bf_format_relative_time (now, now - cases[i].ago);
      g_assert_cmpstr (text, ==, cases[i].text);
    }

  {
    g_autofree char *never = bf_format_relative_time (now, 0);
    g_autofree char *connected = bf_format_last_seen (now, TRUE, 0);
    g_autofree char *seen = bf_format_last_seen (now, FALSE, now - 2 * MINUTE);

    g_assert_cmpstr (never, ==, "Never");
    g_assert_cmpstr (connected, ==, "Now");
    g_assert_cmpstr (seen, ==, "2 minutes ago");
  }
}

static void
test_builds_and_durations (void)
{
  struct {
    guint64     usec;
    const char *text;
  } durations[] = {
    { G_USEC_PER_SEC / 2, "0.5 seconds" },
    { G_USEC_PER_SEC, "1 second" },
    { 90 * G_USEC_PER_SEC, "90 seconds" },
    { 10 * MINUTE, "10 minutes" },
    { 60 * MINUTE, "1 hour" },
    { 150 * MINUTE, "150 minutes" },
  };
  g_autofree char *limited = bf_format_builds (1, 2);
  g_autofree char *unlimited = bf_format_builds (3, 0);
  g_autofree char *never = bf_format_timestamp (0);

  g_assert_cmpstr (limited, ==, "1 / 2");
  g_assert_cmpstr (unlimited, ==, "3 / ∞");
  g_assert_cmpstr (never, ==, "Never");

  for (guint i = 0; i < G_N_ELEMENTS (durations); i++)
    {
      g_autofree char *text = bf_format_duration (durations[i].usec);
      g_assert_cmpstr (text, ==, durations[i].text);
    }
}

int
main (int   argc,
      char *argv[])
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/monitor/worker-util/state", test_state_classify);
  g_test_add_func ("/monitor/worker-util/relative-time", test_relative_time);
  g_test_add_func ("/monitor/worker-util/builds-and-durations", test_builds_and_durations);

  return g_test_run ();
}
