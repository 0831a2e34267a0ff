/* jelly-peer.c: our banana + jelly codec as a filter, for jelly-twisted.py
 *
 * Copyright The buildfleet authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reads lines of hex, each one jellied value as Twisted encodes it in the
 * "pb" dialect. For each it writes one line: the canonical form of what we
 * decoded (bf_jelly_value_print()), a tab, and the hex of our encoding of
 * that value; or "ERROR", a tab and the error message.
 */

#include <stdio.h>
#include <string.h>
#include <glib.h>

#include "bf-jelly.h"

static gboolean
parse_hex (const gchar *line,
           GByteArray  *out)
{
  for (const gchar *p = line; *p != '\0' && *p != '\n'; p += 2)
    {
      gint hi = g_ascii_xdigit_value (p[0]);
      gint lo = p[1] != '\0' ? g_ascii_xdigit_value (p[1]) : -1;
      guint8 byte;

      if (hi < 0 || lo < 0)
        return FALSE;
      byte = (guint8) (hi << 4 | lo);
      g_byte_array_append (out, &byte, 1);
    }
  return TRUE;
}

static void
handle (const gchar *line)
{
  g_autoptr(GByteArray) in = g_byte_array_new ();
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(BfBananaValue) sexp = NULL;
  g_autoptr(BfJellyValue) value = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree gchar *printed = NULL;

  if (!parse_hex (line, in))
    {
      printf ("ERROR\tinput is not hex\n");
      return;
    }
  sexp = bf_banana_decode (in->data, in->len, BF_BANANA_DIALECT_PB, &error);
  if (sexp != NULL)
    value = bf_jelly_decode (sexp, &error);
  if (value != NULL && !bf_jelly_encode (out, BF_BANANA_DIALECT_PB, value, &error))
    g_clear_pointer (&value, bf_jelly_value_unref);
  if (value == NULL)
    {
      printf ("ERROR\t%s\n", error->message);
      return;
    }
  printed = bf_jelly_value_print (value);
  printf ("%s\t", printed);
  for (guint i = 0; i < out->len; i++)
    printf ("%02x", out->data[i]);
  printf ("\n");
}

int
main (void)
{
  g_autofree gchar *line = NULL;
  size_t size = 0;

  while (getline (&line, &size, stdin) > 0)
    {
      handle (line);
      fflush (stdout);
    }
  return 0;
}
