/* config-test-util.h: loading configuration text in the parser's unit tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <string.h>

#include "bf-config.h"

/* @text must load; the caller owns the result. */
static inline BfConfig *
load_ok (const char *text)
{
  g_autoptr(GError) error = NULL;
  BfConfig *config = bf_config_load_data (text, "test.conf", &error);

  g_assert_no_error (error);
  g_assert_nonnull (config);
  return config;
}

/* @text must be refused with an error holding every string given (a
 * NULL-terminated list). */
static inline void
assert_error (const char *text,
              const char *first,
              ...)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfConfig) config = bf_config_load_data (text, "test.conf", &error);
  va_list args;

  g_assert_null (config);
  g_assert_nonnull (error);
  va_start (args, first);
  for (const char *s = first; s; s = va_arg (args, const char *))
    {
      if (strstr (error->message, s) == NULL)
        g_error ("expected “%s” in error “%s”", s, error->message);
    }
  va_end (args);
}
