/* test-log.c: whatever text reaches the log stays on one readable line
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-log.h"

static void
check (const char *in,
       gsize       max,
       const char *expected)
{
  g_autofree char *out = bf_log_escape (in, max);

  g_assert_cmpstr (out, ==, expected);
  g_assert_true (g_utf8_validate (out, -1, NULL));
}

static void
test_plain_text_unchanged (void)
{
  check ("Worker w1 paused by :1.5: disk full", 4096, "Worker w1 paused by :1.5: disk full");
  check ("“Grüße” → 日本 C:\\dir", 4096, "“Grüße” → 日本 C:\\dir");
  check ("", 4096, "");
  check (NULL, 4096, "");
}

static void
test_controls_escaped (void)
{
  check ("a\nbuildfleetd-Message: forged", 4096, "a\\nbuildfleetd-Message: forged");
  check ("a\r\tb", 4096, "a\\r\\tb");
  check ("\x1b[2J\x07\x7f" "x", 4096, "\\x1b[2J\\x07\\x7fx");
  /* C1 NEL, line separator, right-to-left override */
  check ("a\xc2\x85" "b\xe2\x80\xa8" "c\xe2\x80\xae" "d", 4096, "a\\u0085b\\u2028c\\u202ed");
}

static void
test_invalid_utf8_escaped (void)
{
  check ("a\xff\xfe" "b", 4096, "a\\xff\\xfeb");
  check ("\xc3", 4096, "\\xc3");              /* truncated sequence */
  check ("\xc0\xaf", 4096, "\\xc0\\xaf");     /* overlong '/' */
  check ("\xed\xa0\x80", 4096, "\\xed\\xa0\\x80"); /* surrogate */
}

static void
test_bounded (void)
{
  g_autofree char *long_text = g_strnfill (10000, 'x');
  g_autofree char *out = bf_log_escape (long_text, 100);
  g_autofree char *head = g_strnfill (100, 'x');
  g_autofree char *expected = g_strconcat (head, "… [9900 more bytes]", NULL);

  g_assert_cmpstr (out, ==, expected);
  /* Cut between characters, never inside one. */
  check ("ab日本", 3, "ab日… [3 more bytes]");
}

static void
test_writer_escapes_message (void)
{
  if (g_test_subprocess ())
    {
      g_log_set_writer_func (bf_log_writer, NULL, NULL);
      g_message ("reason: %s", "one\nbuildfleetd-Message: two\x1b[0m");
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*reason: one\\nbuildfleetd-Message: two\\x1b[0m\n");
  g_test_trap_assert_stderr_unmatched ("*\nbuildfleetd-Message: two*");
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/log/plain", test_plain_text_unchanged);
  g_test_add_func ("/log/controls", test_controls_escaped);
  g_test_add_func ("/log/invalid-utf8", test_invalid_utf8_escaped);
  g_test_add_func ("/log/bounded", test_bounded);
  g_test_add_func ("/log/writer", test_writer_escapes_message);
  return g_test_run ();
}
