/* test-variant-util.c: bounded text from values a worker controls
 *
 * Every result stays within its bound, never splits a character, says it
 * was cut, and costs time in proportion to the bound, not to the input.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include <glib.h>

#include "bf-variant-util.h"

#define MARKER BF_TRUNCATION_MARKER

static void
test_prefix_len (void)
{
  const char *euro = "\xe2\x82\xac\xe2\x82\xac";   /* two 3-byte characters */

  g_assert_cmpuint (bf_utf8_prefix_len ("abc", 3, 10), ==, 3);
  g_assert_cmpuint (bf_utf8_prefix_len ("abc", 3, 2), ==, 2);
  g_assert_cmpuint (bf_utf8_prefix_len (euro, 6, 5), ==, 3);
  g_assert_cmpuint (bf_utf8_prefix_len (euro, 6, 4), ==, 3);
  g_assert_cmpuint (bf_utf8_prefix_len (euro, 6, 3), ==, 3);
  g_assert_cmpuint (bf_utf8_prefix_len (euro, 6, 2), ==, 0);
  g_assert_cmpuint (bf_utf8_prefix_len (euro, 6, 0), ==, 0);
}

static void
test_truncate (void)
{
  g_autoptr(GString) big = g_string_new (NULL);
  g_autofree char *same = bf_utf8_truncate ("short", -1, 100);
  g_autofree char *cut = NULL;

  g_assert_cmpstr (same, ==, "short");

  for (int i = 0; i < 10000; i++)
    g_string_append (big, "\xef\xbf\xbd");   /* U+FFFD, what repair produces */
  for (gsize max = 0; max < 40; max++)
    {
      g_autofree char *t = bf_utf8_truncate (big->str, big->len, max);
      g_assert_cmpuint (strlen (t), <=, max);
      g_assert_true (g_utf8_validate (t, -1, NULL));
      if (max >= strlen (MARKER))
        g_assert_true (g_str_has_suffix (t, MARKER));
    }
  cut = bf_utf8_truncate (big->str, big->len, 4096);
  g_assert_cmpuint (strlen (cut), <=, 4096);
  g_assert_cmpuint (strlen (cut), >, 4096 - strlen (MARKER) - 3);
  g_assert_true (g_str_has_suffix (cut, MARKER));
  g_assert_true (g_utf8_validate (cut, -1, NULL));
}

/* Splitting any text with bf_utf8_chunk_len() gives chunks within the
 * bound, each valid UTF-8, whose concatenation is the text. */
static void
check_chunks (const char *text,
              gsize       max)
{
  g_autoptr(GString) joined = g_string_new (NULL);
  gsize len = strlen (text);
  const char *p = text;

  while (len > 0)
    {
      gsize n = bf_utf8_chunk_len (p, len, max);
      g_assert_cmpuint (n, >, 0);
      g_assert_cmpuint (n, <=, max);
      g_assert_true (g_utf8_validate (p, n, NULL));
      g_string_append_len (joined, p, n);
      p += n;
      len -= n;
    }
  g_assert_cmpstr (joined->str, ==, text);
}

static void
test_chunks (void)
{
  g_autoptr(GString) t = g_string_new (NULL);

  g_assert_cmpuint (bf_utf8_chunk_len ("abc", 3, 64), ==, 3);
  /* A newline in the second half of the window ends the chunk. */
  g_assert_cmpuint (bf_utf8_chunk_len ("aaaaaa\nbbbbbbbbb", 16, 8), ==, 7);
  /* One in the first half does not: chunks stay large. */
  g_assert_cmpuint (bf_utf8_chunk_len ("a\nbbbbbbbbbbbbbb", 16, 8), ==, 8);

  for (int i = 0; i < 3000; i++)
    g_string_append (t, i % 7 == 0 ? "line\n" : i % 2 ? "\xef\xbf\xbd" : "\xf0\x9f\x98\x80x");
  for (gsize max = 4; max < 40; max++)
    check_chunks (t->str, max);
  check_chunks (t->str, 1000);
}

static void
test_print_small (void)
{
  g_autoptr(GVariant) v = g_variant_ref_sink (
    g_variant_new_parsed ("{'a': <int64 1>, 'b': <['x', \"it's\"]>, 'c': <@mv nothing>, "
                          "'d': <(true, 2.5)>, 'e': <@ay [1, 122]>}"));
  g_autofree char *text = bf_variant_print_bounded (v, 1000);

  g_assert_cmpstr (text, ==,
                   "{'a': <1>, 'b': <['x', 'it\\'s']>, 'c': <nothing>, "
                   "'d': <(true, 2.5)>, 'e': <b'\\x01z'>}");
}

static void
test_print_bounded (void)
{
  g_autoptr(GVariant) v = NULL;
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("av"));
  for (int i = 0; i < 1000; i++)
    g_variant_builder_add (&b, "v", g_variant_new_string ("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"));
  v = g_variant_ref_sink (g_variant_builder_end (&b));

  for (gsize max = 0; max < 200; max++)
    {
      g_autofree char *t = bf_variant_print_bounded (v, max);
      g_assert_cmpuint (strlen (t), <=, max);
      g_assert_true (g_utf8_validate (t, -1, NULL));
      if (max > strlen (MARKER))
        g_assert_true (g_str_has_suffix (t, MARKER));
    }
}

/* An update whose value is millions of empty maps: printing it must cost
 * what printing the bound costs. */
static GVariant *
many_empty_maps (guint n)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("av"));
  for (guint i = 0; i < n; i++)
    g_variant_builder_add (&b, "v", g_variant_new ("a{sv}", NULL));
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

/* The best of ROUNDS: the work's cost, not a busy machine's preemptions. */
#define ROUNDS 10

static double
time_print (GVariant *v,
            gsize     max,
            gsize    *out_len)
{
  gint64 start = g_get_monotonic_time ();
  double best = G_MAXDOUBLE;

  for (int round = 0; round < ROUNDS; round++)
    {
      g_autofree char *t = NULL;

      start = g_get_monotonic_time ();
      t = bf_variant_print_bounded (v, max);
      best = MIN (best, (g_get_monotonic_time () - start) / 1e6);
      *out_len = strlen (t);
    }
  return best;
}

static double
time_bound (GVariant *v,
            gsize     max)
{
  double best = G_MAXDOUBLE;

  for (int round = 0; round < ROUNDS; round++)
    {
      gint64 start = g_get_monotonic_time ();
      g_autoptr(GVariant) bounded = bf_variant_bound (v, max);

      best = MIN (best, (g_get_monotonic_time () - start) / 1e6);
      g_assert_true (g_variant_is_of_type (bounded, G_VARIANT_TYPE_STRING));
      g_assert_cmpuint (g_variant_get_size (bounded), <=, max);
    }
  return best;
}

static void
test_print_cost (void)
{
  g_autoptr(GVariant) small = many_empty_maps (3000);
  g_autoptr(GVariant) huge = many_empty_maps (1000000);
  gsize len_small, len_huge;
  double t_small = time_print (small, 4096, &len_small);
  double t_huge = time_print (huge, 4096, &len_huge);
  g_autofree char *t = bf_variant_print_bounded (huge, 4096);
  double t_bound;

  g_test_message ("3000 maps: %.6f s, 1000000 maps: %.6f s", t_small, t_huge);
  g_assert_cmpuint (len_small, ==, 4096);
  g_assert_cmpuint (len_huge, ==, 4096);
  g_assert_true (g_str_has_prefix (t, "[<{}>, <{}>"));
  g_assert_true (g_str_has_suffix (t, MARKER));
  /* Same bound, same work: generous slack for a busy machine. */
  g_assert_cmpfloat (t_huge, <, 20 * t_small + 0.01);

  /* Timed like the printing (the best of ROUNDS), not once: one
   * preemption of a busy machine took a single run past the bound. */
  t_bound = time_bound (huge, 4096);
  g_test_message ("bf_variant_bound on 1000000 maps: %.6f s", t_bound);
  g_assert_cmpfloat (t_bound, <, 20 * t_small + 0.01);
}

static void
test_bound (void)
{
  g_autoptr(GVariant) small = g_variant_ref_sink (g_variant_new_parsed ("[<1>, <'two'>]"));
  g_autoptr(GVariant) same = bf_variant_bound (small, 4096);
  g_autofree char *long_text = g_strnfill (10000, 'x');
  g_autoptr(GVariant) str = g_variant_ref_sink (g_variant_new_string (long_text));
  g_autoptr(GVariant) cut = bf_variant_bound (str, 4096);
  g_autoptr(GVariant) list = many_empty_maps (5000);
  g_autoptr(GVariant) printed = bf_variant_bound (list, 4096);

  g_assert_true (same == small);
  g_assert_true (g_variant_is_of_type (cut, G_VARIANT_TYPE_STRING));
  g_assert_cmpuint (g_variant_get_size (cut), ==, 4096);
  g_assert_true (g_str_has_suffix (g_variant_get_string (cut, NULL), MARKER));
  g_assert_true (g_variant_is_of_type (printed, G_VARIANT_TYPE_STRING));
  g_assert_cmpuint (g_variant_get_size (printed), <=, 4096);
  g_assert_true (g_str_has_suffix (g_variant_get_string (printed, NULL), MARKER));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/variant-util/prefix-len", test_prefix_len);
  g_test_add_func ("/variant-util/truncate", test_truncate);
  g_test_add_func ("/variant-util/chunks", test_chunks);
  g_test_add_func ("/variant-util/print-small", test_print_small);
  g_test_add_func ("/variant-util/print-bounded", test_print_bounded);
  g_test_add_func ("/variant-util/print-cost", test_print_cost);
  g_test_add_func ("/variant-util/bound", test_bound);
  return g_test_run ();
}
