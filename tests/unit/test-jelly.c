/* test-jelly.c: unit tests for the jelly subset of PB
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <time.h>
#include <glib.h>

#include "bf-jelly.h"

/* A tiny builder for banana s-expressions in tests:
 *   "[" opens a list of the given number of items: L(n), S("text"), I(n) */
typedef struct
{
  GByteArray *out;
} Sexp;

#define L(n) bf_banana_write_list_header (out, (n))
#define S(s) bf_banana_write_string (out, BF_BANANA_DIALECT_PB, (s), strlen (s))
#define I(n) bf_banana_write_int (out, (n))

static BfJellyValue *
decode_bytes (GByteArray *out,
              GError    **error)
{
  g_autoptr(BfBananaValue) sexp = NULL;
  g_autoptr(GError) banana_error = NULL;

  sexp = bf_banana_decode (out->data, out->len, BF_BANANA_DIALECT_PB, &banana_error);
  g_assert_no_error (banana_error);
  return bf_jelly_decode (sexp, error);
}

static void
assert_decodes (GByteArray  *out,
                const gchar *expected)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfJellyValue) value = decode_bytes (out, &error);
  g_autofree gchar *printed = NULL;

  g_assert_no_error (error);
  printed = bf_jelly_value_print (value);
  g_assert_cmpstr (printed, ==, expected);
  g_byte_array_set_size (out, 0);
}

static void
assert_refused (GByteArray   *out,
                BfJellyError  code,
                const gchar  *words)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfJellyValue) value = decode_bytes (out, &error);

  g_assert_null (value);
  g_assert_error (error, BF_JELLY_ERROR, (gint) code);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, words));
  g_byte_array_set_size (out, 0);
}

static void
test_decode (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();

  L (1); S ("None");
  assert_decodes (out, "None");
  L (2); S ("boolean"); S ("true");
  assert_decodes (out, "True");
  L (2); S ("boolean"); S ("false");
  assert_decodes (out, "False");
  I (-42);
  assert_decodes (out, "-42");
  bf_banana_write_float (out, 1.5);
  assert_decodes (out, "float:3ff8000000000000");
  L (2); S ("unicode"); S ("h\xc3\xa9");
  assert_decodes (out, "u\"h\\xc3\\xa9\"");
  S ("raw\x01");
  assert_decodes (out, "b\"raw\\x01\"");
  L (4); S ("list"); I (1); L (1); S ("list"); L (1); S ("tuple");
  assert_decodes (out, "[1, [], ()]");
  L (3); S ("dictionary");
  L (2); L (2); S ("unicode"); S ("stdout"); L (2); S ("unicode"); S ("hi\n");
  L (2); L (2); S ("unicode"); S ("rc"); I (0);
  assert_decodes (out, "{u\"stdout\": u\"hi\\x0a\", u\"rc\": 0}");
  L (2); S ("remote"); I (3);
  assert_decodes (out, "remote(3)");
  L (2); S ("local"); I (4);
  assert_decodes (out, "local(4)");
  L (2); S (BF_JELLY_COPYABLE_FAILURE);
  L (2); S ("dictionary"); L (2); S ("type"); S ("exceptions.RuntimeError");
  assert_decodes (out, "failure({b\"type\": b\"exceptions.RuntimeError\"})");
}

static void
test_references (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(BfJellyValue) value = NULL;
  g_autoptr(GByteArray) again = g_byte_array_new ();

  /* a = [1]; [a, a, (a,)] as Twisted jellies it */
  L (4); S ("list");
  L (3); S ("reference"); I (1); L (2); S ("list"); I (1);
  L (2); S ("dereference"); I (1);
  L (2); S ("tuple"); L (2); S ("dereference"); I (1);
  value = decode_bytes (out, &error);
  g_assert_no_error (error);
  g_assert_true (value->seq.items[0] == value->seq.items[1]);
  g_assert_true (value->seq.items[0] == value->seq.items[2]->seq.items[0]);
  {
    g_autofree gchar *printed = bf_jelly_value_print (value);
    g_assert_cmpstr (printed, ==, "[[1], [1], ([1])]");
  }

  /* we send it back with the sharing intact */
  g_assert_true (bf_jelly_encode (again, BF_BANANA_DIALECT_PB, value, &error));
  g_assert_cmpmem (again->data, again->len, out->data, out->len);
  g_byte_array_set_size (out, 0);

  /* forward, circular and repeated references */
  L (2); S ("dereference"); I (9);
  assert_refused (out, BF_JELLY_ERROR_REFERENCE, "forward references are refused");
  L (3); S ("reference"); I (1); L (2); S ("list"); L (2); S ("dereference"); I (1);
  assert_refused (out, BF_JELLY_ERROR_REFERENCE, "circular references are refused");
  L (3); S ("list"); L (3); S ("reference"); I (1); I (5); L (3); S ("reference"); I (1); I (6);
  assert_refused (out, BF_JELLY_ERROR_REFERENCE, "defined twice");

  /* too many references */
  L (BF_JELLY_MAX_REFERENCES + 2); S ("list");
  for (guint i = 0; i <= BF_JELLY_MAX_REFERENCES; i++)
    {
      L (3); S ("reference"); I (i); L (1); S ("list");
    }
  assert_refused (out, BF_JELLY_ERROR_REFERENCE, "more than 1024 references");

  /* a billion laughs: each level holds the previous one twice */
  L (3); S ("reference"); I (0); L (2); S ("unicode"); S ("lol lol lol lol lol lol lol lol");
  for (guint i = 1; i < 30; i++)
    {
      /* wrap: ["list", ["reference", i, ["list", deref(i-1), deref(i-1)]]] */
      g_autoptr(GByteArray) inner = g_steal_pointer (&out);
      out = g_byte_array_new ();
      L (3); S ("reference"); I (i); L (3); S ("list");
      g_byte_array_append (out, inner->data, inner->len);
      L (2); S ("dereference"); I (i - 1);
    }
  assert_refused (out, BF_JELLY_ERROR_LIMIT, "shared parts are counted each time");
}

static void
test_refusals (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  const gchar *named[] = { "class", "module", "function", "instance", "persistent",
                           "method", "unpersistable", "copy", "cached" };

  for (gsize i = 0; i < G_N_ELEMENTS (named); i++)
    {
      g_autofree gchar *words = g_strdup_printf ("refused '%s'", named[i]);

      L (2); S (named[i]); S ("os.system");
      assert_refused (out, BF_JELLY_ERROR_REFUSED, words);
    }
  L (2); S ("__main__.Evil"); L (1); S ("dictionary");
  assert_refused (out, BF_JELLY_ERROR_REFUSED, "refused type \"__main__.Evil\"");
  L (2); S ("datetime"); S ("2026 1 1 0 0 0 0");
  assert_refused (out, BF_JELLY_ERROR_REFUSED, "\"datetime\"");
  /* refused also deep inside plain data */
  L (3); S ("list"); I (1); L (2); S ("tuple"); L (2); S ("module"); S ("os");
  assert_refused (out, BF_JELLY_ERROR_REFUSED, "refused 'module'");

  L (0);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "empty list");
  L (2); I (1); I (2);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not a type name");
  L (2); S ("boolean"); S ("maybe");
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "neither");
  L (2); S ("unicode"); S ("\xff\xfe");
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not valid UTF-8");
  L (2); S ("None"); I (1);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "'None' takes 0 arguments, got 1");
  L (2); S ("remote"); S ("x");
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not an integer");
  L (2); S ("dictionary"); L (1); I (1);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not a [key, value] pair");
  L (3); S ("dictionary"); L (2); S ("k"); I (1); L (2); S ("k"); I (2);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "repeats the key b\"k\"");
  L (2); S ("dictionary"); L (2); L (1); S ("list"); I (1);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not a string, number, boolean or None");
  L (2); S ("dictionary"); L (2); L (2); S ("tuple"); I (1); I (1);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not a string, number, boolean or None");
  {
    g_autofree gchar *long_key = g_strnfill (BF_JELLY_MAX_KEY_LENGTH + 1, 'k');
    L (2); S ("dictionary"); L (2); S (long_key); I (1);
    assert_refused (out, BF_JELLY_ERROR_LIMIT, "longer than 1024 bytes");
  }
  /* the same bytes as unicode and as bytes, 1 and True, are different keys */
  L (5); S ("dictionary"); L (2); S ("k"); I (1); L (2); L (2); S ("unicode"); S ("k"); I (2);
  L (2); I (1); I (3); L (2); L (2); S ("boolean"); S ("true"); I (4);
  assert_decodes (out, "{b\"k\": 1, u\"k\": 2, 1: 3, True: 4}");
  L (3); S ("dictionary"); L (2); L (2); S ("unicode"); S ("k"); I (1); L (2); L (2); S ("unicode"); S ("k"); I (2);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "repeats the key u\"k\"");
  L (2); S (BF_JELLY_COPYABLE_FAILURE); I (1);
  assert_refused (out, BF_JELLY_ERROR_MALFORMED, "not a dictionary");
}

static void
test_encode (void)
{
  g_autoptr(BfJellyValue) args = bf_jelly_tuple ();
  g_autoptr(BfJellyValue) kw = bf_jelly_dict ();
  g_autoptr(BfJellyValue) back = NULL;
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree gchar *printed = NULL;
  g_autofree gchar *printed_back = NULL;
  BfJellyValue *cmd;

  /* startCommand(stepref, stepId, command, args) as the master sends it */
  bf_jelly_append (args, bf_jelly_remote (7));
  bf_jelly_append (args, bf_jelly_unicode ("13", -1));
  bf_jelly_append (args, bf_jelly_unicode ("shell", -1));
  bf_jelly_dict_set (kw, bf_jelly_unicode ("workdir", -1), bf_jelly_unicode ("build", -1));
  cmd = bf_jelly_list ();
  bf_jelly_append (cmd, bf_jelly_unicode ("make", -1));
  bf_jelly_append (cmd, bf_jelly_bytes ("-j2", 3));
  bf_jelly_dict_set (kw, bf_jelly_unicode ("command", -1), cmd);
  bf_jelly_dict_set (kw, bf_jelly_unicode ("timeout", -1), bf_jelly_float (1200));
  bf_jelly_dict_set (kw, bf_jelly_unicode ("want_stdout", -1), bf_jelly_boolean (TRUE));
  bf_jelly_dict_set (kw, bf_jelly_unicode ("maxTime", -1), bf_jelly_none ());
  bf_jelly_dict_set (kw, bf_jelly_unicode ("ids", -1), bf_jelly_local (G_MININT64));
  bf_jelly_append (args, g_steal_pointer (&kw));
  g_assert_nonnull (bf_jelly_dict_lookup (args->seq.items[3], "workdir"));
  g_assert_null (bf_jelly_dict_lookup (args->seq.items[3], "nope"));

  g_assert_true (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, args, &error));
  g_assert_no_error (error);
  back = decode_bytes (out, &error);
  g_assert_no_error (error);
  printed = bf_jelly_value_print (args);
  printed_back = bf_jelly_value_print (back);
  g_assert_cmpstr (printed, ==, printed_back);
  g_assert_cmpstr (printed, ==,
                   "(remote(7), u\"13\", u\"shell\", {u\"workdir\": u\"build\", "
                   "u\"command\": [u\"make\", b\"-j2\"], u\"timeout\": float:4092c00000000000, "
                   "u\"want_stdout\": True, u\"maxTime\": None, u\"ids\": local(-9223372036854775808)})");

  /* the UTF-8 of a unicode string equal to a vocabulary word goes as VOCAB too, as Twisted does */
  {
    g_autoptr(BfJellyValue) word = bf_jelly_unicode ("list", -1);
    g_autoptr(GByteArray) w = g_byte_array_new ();

    g_assert_true (bf_jelly_encode (w, BF_BANANA_DIALECT_PB, word, &error));
    g_assert_cmpmem (w->data, w->len, "\x02\x80\x07\x82unicode\x08\x87", 13);
  }

  /* over the limits: refused, and nothing written */
  {
    g_autoptr(BfJellyValue) big = NULL;
    g_autofree gchar *text = g_malloc0 (BF_BANANA_SIZE_LIMIT + 1);
    guint len = out->len;

    big = bf_jelly_bytes (text, BF_BANANA_SIZE_LIMIT + 1);
    g_assert_false (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, big, &error));
    g_assert_error (error, BF_JELLY_ERROR, BF_JELLY_ERROR_LIMIT);
    g_assert_cmpuint (out->len, ==, len);
    g_clear_error (&error);
  }
  {
    g_autoptr(BfJellyValue) deep = bf_jelly_list ();
    BfJellyValue *inner = deep;

    for (guint i = 0; i < BF_BANANA_MAX_DEPTH; i++)
      {
        BfJellyValue *next = bf_jelly_list ();
        bf_jelly_append (inner, next);
        inner = next;
      }
    g_assert_false (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, deep, &error));
    g_assert_error (error, BF_JELLY_ERROR, BF_JELLY_ERROR_LIMIT);
  }
}

static void
test_to_variant (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(BfJellyValue) value = NULL;
  g_autoptr(GVariant) variant = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree gchar *printed = NULL;

  /* a worker's update, as buildbot-worker sends it */
  L (5); S ("list");
  L (3); S ("dictionary");
  L (2); L (2); S ("unicode"); S ("stdout"); L (2); S ("unicode"); bf_banana_write_string (out, BF_BANANA_DIALECT_PB, "a\0b", 3);
  L (2); S ("rc"); I (0);
  L (1); S ("None");
  L (3); S ("tuple"); bf_banana_write_float (out, 1.5); L (2); S ("boolean"); S ("true");
  S ("\xff");
  value = decode_bytes (out, &error);
  g_assert_no_error (error);
  variant = bf_jelly_value_to_variant (value, &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (variant));
  printed = g_variant_print (variant, TRUE);
  g_assert_cmpstr (printed, ==,
                   "[<{'stdout': <'a\xef\xbf\xbd" "b'>, 'rc': <int64 0>}>, <@mv nothing>, "
                   "<[<1.5>, <true>]>, <[byte 0xff]>]");
  g_byte_array_set_size (out, 0);

  /* not plain data */
  {
    const gchar *words[] = { "object reference", "object reference", "failure", "not a string", "occurs twice" };

    for (gsize i = 0; i < G_N_ELEMENTS (words); i++)
      {
        g_autoptr(BfJellyValue) v = NULL;
        g_autoptr(GVariant) none = NULL;

        L (2); S ("list");
        switch (i)
          {
          case 0: L (2); S ("remote"); I (1); break;
          case 1: L (2); S ("local"); I (1); break;
          case 2: L (2); S (BF_JELLY_COPYABLE_FAILURE); L (1); S ("dictionary"); break;
          case 3: L (2); S ("dictionary"); L (2); I (1); I (2); break;
          case 4: L (3); S ("dictionary"); L (2); S ("k"); I (1); L (2); L (2); S ("unicode"); S ("k"); I (2); break;
          }
        v = decode_bytes (out, &error);
        g_assert_no_error (error);
        none = bf_jelly_value_to_variant (v, &error);
        g_assert_null (none);
        g_assert_error (error, BF_JELLY_ERROR, BF_JELLY_ERROR_MALFORMED);
        g_assert_nonnull (strstr (error->message, words[i]));
        g_clear_error (&error);
        g_byte_array_set_size (out, 0);
      }
  }
}

/* getWorkerInfo's environ: left out unconverted, but still only plain data */
static void
test_to_variant_dropping (void)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(BfJellyValue) value = NULL;
  g_autoptr(GVariant) variant = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree gchar *printed = NULL;

  L (4); S ("dictionary");
  L (2); S ("host"); L (2); S ("unicode"); S ("h1");
  L (2); S ("environ"); L (3); S ("dictionary"); L (2); S ("PATH"); S ("/bin"); L (2); S ("HOME"); S ("/root");
  L (2); S ("numcpus"); I (4);
  value = decode_bytes (out, &error);
  g_assert_no_error (error);
  variant = bf_jelly_value_to_variant_dropping (value, "environ", &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (variant));
  printed = g_variant_print (variant, TRUE);
  g_assert_cmpstr (printed, ==, "{'host': <'h1'>, 'numcpus': <int64 4>}");
  g_byte_array_set_size (out, 0);

  /* an object reference inside what is dropped is still refused */
  {
    g_autoptr(BfJellyValue) v = NULL;
    g_autoptr(GVariant) none = NULL;

    L (2); S ("dictionary");
    L (2); S ("environ"); L (2); S ("dictionary"); L (2); S ("PATH"); L (2); S ("remote"); I (1);
    v = decode_bytes (out, &error);
    g_assert_no_error (error);
    none = bf_jelly_value_to_variant_dropping (v, "environ", &error);
    g_assert_null (none);
    g_assert_error (error, BF_JELLY_ERROR, BF_JELLY_ERROR_MALFORMED);
    g_assert_nonnull (strstr (error->message, "object reference"));
  }
}

/* CPU time of this process: the machine is shared, wall time is not ours */
static gdouble
cpu_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* -m perf: what a worker's getWorkerInfo answer costs to decode and encode */
static void
test_perf_worker_info (void)
{
  g_autoptr(BfJellyValue) info = bf_jelly_dict ();
  g_autoptr(BfJellyValue) environ = bf_jelly_dict ();
  g_autoptr(BfJellyValue) commands = bf_jelly_dict ();
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  const guint n = 20000;
  gdouble decode_s, encode_s;

  for (guint i = 0; i < 40; i++)
    {
      g_autofree gchar *key = g_strdup_printf ("VARIABLE_%u", i);
      g_autofree gchar *value = g_strdup_printf ("/usr/local/lib/something/%u:/usr/lib", i);
      bf_jelly_dict_set (environ, bf_jelly_unicode (key, -1), bf_jelly_unicode (value, -1));
    }
  for (guint i = 0; i < 20; i++)
    {
      g_autofree gchar *key = g_strdup_printf ("command%u", i);
      bf_jelly_dict_set (commands, bf_jelly_unicode (key, -1), bf_jelly_unicode ("3.1", -1));
    }
  bf_jelly_dict_set (info, bf_jelly_unicode ("admin", -1), bf_jelly_unicode ("Jo <jo@example.com>", -1));
  bf_jelly_dict_set (info, bf_jelly_unicode ("host", -1), bf_jelly_unicode ("build-01.example.com", -1));
  bf_jelly_dict_set (info, bf_jelly_unicode ("environ", -1), g_steal_pointer (&environ));
  bf_jelly_dict_set (info, bf_jelly_unicode ("worker_commands", -1), g_steal_pointer (&commands));
  bf_jelly_dict_set (info, bf_jelly_unicode ("numcpus", -1), bf_jelly_int (8));
  bf_jelly_dict_set (info, bf_jelly_unicode ("version", -1), bf_jelly_unicode ("3.7.0", -1));
  bf_jelly_dict_set (info, bf_jelly_unicode ("delete_leftover_dirs", -1), bf_jelly_boolean (FALSE));
  g_assert_true (bf_jelly_encode (bytes, BF_BANANA_DIALECT_PB, info, &error));

  decode_s = cpu_seconds ();
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(BfBananaValue) sexp = bf_banana_decode (bytes->data, bytes->len,
                                                        BF_BANANA_DIALECT_PB, &error);
      g_autoptr(BfJellyValue) value = bf_jelly_decode (sexp, &error);
      g_assert_nonnull (value);
    }
  decode_s = cpu_seconds () - decode_s;

  encode_s = cpu_seconds ();
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GByteArray) out = g_byte_array_sized_new (bytes->len);
      g_assert_true (bf_jelly_encode (out, BF_BANANA_DIALECT_PB, info, &error));
    }
  encode_s = cpu_seconds () - encode_s;

  g_test_minimized_result (decode_s * 1e6 / n, "decode (banana + jelly) of a %u-byte worker info: %.1f us CPU, %.0f MB/s",
                           bytes->len, decode_s * 1e6 / n, bytes->len * (gdouble) n / decode_s / 1e6);
  g_test_minimized_result (encode_s * 1e6 / n, "encode of the same: %.1f us CPU, %.0f MB/s",
                           encode_s * 1e6 / n, bytes->len * (gdouble) n / encode_s / 1e6);
  g_test_message ("node sizes: BfBananaValue %" G_GSIZE_FORMAT " bytes, BfJellyValue %" G_GSIZE_FORMAT " bytes",
                  sizeof (BfBananaValue), sizeof (BfJellyValue));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/jelly/decode", test_decode);
  g_test_add_func ("/jelly/references", test_references);
  g_test_add_func ("/jelly/refusals", test_refusals);
  g_test_add_func ("/jelly/encode", test_encode);
  g_test_add_func ("/jelly/to-variant", test_to_variant);
  g_test_add_func ("/jelly/to-variant-dropping", test_to_variant_dropping);
  if (g_test_perf ())
    g_test_add_func ("/jelly/perf/worker-info", test_perf_worker_info);

  return g_test_run ();
}
