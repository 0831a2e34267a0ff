/* bf-unit-name.c: systemd's rules for the unit names Latent=systemd starts
 *
 * A unit name is checked here as systemd checks it (unit_name_is_valid()
 * in src/basic/unit-name.c), so that a Unit= systemd would refuse fails
 * when the configuration is read, with the character that is wrong,
 * instead of at every start.
 *
 * %n is filled in as it is, not escaped as systemd-escape would: a worker
 * name (letters, digits, '-', '_', '.') is already a valid instance, and
 * Debian's buildbot-worker@.service finds the worker's directory with %i,
 * the instance exactly as written.  systemd-escape would turn "linux-x86"
 * into "linux\x2dx86", which %i would give back as is: the wrong directory.
 * ('/' and non-ASCII, the characters systemd-escape exists for, cannot be
 * in a worker name.)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "bf-unit-name.h"

/* systemd's UNIT_NAME_MAX counts the terminating NUL */
#define UNIT_NAME_MAX 255

static const char * const unit_types[] = {
  "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path",
  "slice", "scope", NULL,
};

static gboolean
fail (char      **why,
      const char *format,
      ...) G_GNUC_PRINTF (2, 3);

static gboolean
fail (char      **why,
      const char *format,
      ...)
{
  va_list args;

  if (why != NULL)
    {
      va_start (args, format);
      *why = g_strdup_vprintf (format, args);
      va_end (args);
    }
  return FALSE;
}

static gboolean
unit_char_is_valid (char c)
{
  return g_ascii_isalnum (c) || strchr (":-_.\\", c) != NULL;
}

/**
 * bf_unit_name_is_valid:
 * @name: a unit name, as StartUnit takes it
 * @why: (out) (optional): what is wrong with it
 *
 * Returns: whether systemd accepts @name as the name of a unit it can
 *   start: NAME.TYPE or TEMPLATE@INSTANCE.TYPE, at most 255 bytes of
 *   letters, digits, ':', '-', '_', '.' and '\', one '@' at most.
 */
gboolean
bf_unit_name_is_valid (const char  *name,
                       char       **why)
{
  const char *dot = strrchr (name, '.');
  const char *at = strchr (name, '@');
  gsize len = strlen (name);

  if (len == 0)
    return fail (why, "the unit name is empty");
  if (len > UNIT_NAME_MAX)
    return fail (why, "“%s” is longer than systemd allows for a unit name (%d bytes)", name, UNIT_NAME_MAX);
  if (dot == NULL || dot == name || !g_strv_contains (unit_types, dot + 1))
    return fail (why, "“%s” does not end in a unit type systemd knows (such as .service)", name);
  for (const char *c = name; c < dot; c++)
    {
      if (*c == '@' && c == at)
        continue;
      if (*c == '@')
        return fail (why, "“%s” has more than one '@'", name);
      if (!unit_char_is_valid (*c))
        {
          if ((guchar) *c < 0x80 && g_ascii_isprint (*c))
            return fail (why, "“%s” holds '%c', which systemd does not allow in a unit name "
                         "(only letters, digits, ':', '-', '_', '.', '\\' and one '@')", name, *c);
          return fail (why, "“%s” holds byte 0x%02x, which systemd does not allow in a unit name "
                       "(only ASCII letters, digits, ':', '-', '_', '.', '\\' and one '@')", name, (guchar) *c);
        }
    }
  if (at == name)
    return fail (why, "“%s” has no name before its '@'", name);
  if (at != NULL && at + 1 == dot)
    return fail (why, "“%s” is a template: it needs an instance after its '@' (such as %%n)", name);
  return TRUE;
}

/**
 * bf_unit_template_is_valid:
 * @template: Unit= as written: %n (the worker name), %r (pb or msgpack)
 *   and %% are filled in
 * @worker_name: the worker's name
 * @why: (out) (optional): what is wrong with it
 *
 * Returns: whether @template gives a unit name systemd accepts for
 *   @worker_name, whatever the protocol.  %p (the password), %u and %m
 *   (the master's address) are refused: they would put the password in
 *   systemd's journal, or a changing address in the unit's name.
 */
gboolean
bf_unit_template_is_valid (const char  *template,
                           const char  *worker_name,
                           char       **why)
{
  static const char * const protocols[] = { "pb", "msgpack" };

  for (const char *c = strchr (template, '%'); c != NULL; c = strchr (c + 2, '%'))
    {
      if (c[1] == '\0')
        return fail (why, "“%s” ends in a '%%' that fills in nothing (%%n is the worker name, "
                     "%%r the protocol)", template);
      if (c[1] != 'n' && c[1] != 'r' && c[1] != '%')
        return fail (why, "%%%c cannot be used in a unit name (only %%n, the worker name, "
                     "and %%r, the protocol)", c[1]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (protocols); i++)
    {
      g_autoptr(GString) name = g_string_new (NULL);

      for (const char *c = template; *c; c++)
        {
          if (*c != '%')
            g_string_append_c (name, *c);
          else if (*++c == 'n')
            g_string_append (name, worker_name);
          else if (*c == 'r')
            g_string_append (name, protocols[i]);
          else
            g_string_append_c (name, '%');
        }
      if (!bf_unit_name_is_valid (name->str, why))
        return FALSE;
    }
  return TRUE;
}
