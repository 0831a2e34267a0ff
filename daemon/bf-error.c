/* bf-error.c: the org.buildfleet.Fleet1.Error D-Bus error domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "bf-error.h"

static const GDBusErrorEntry bf_error_entries[] = {
  { BF_ERROR_NOT_FOUND, "org.buildfleet.Fleet1.Error.NotFound" },
  { BF_ERROR_INVALID_ARGS, "org.buildfleet.Fleet1.Error.InvalidArgs" },
  { BF_ERROR_ACCESS_DENIED, "org.buildfleet.Fleet1.Error.AccessDenied" },
  { BF_ERROR_NOT_CONNECTED, "org.buildfleet.Fleet1.Error.NotConnected" },
  { BF_ERROR_BUSY, "org.buildfleet.Fleet1.Error.Busy" },
  { BF_ERROR_FAILED, "org.buildfleet.Fleet1.Error.Failed" },
  { BF_ERROR_REPLY_TOO_LARGE, "org.buildfleet.Fleet1.Error.ReplyTooLarge" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (bf_error_entries) == BF_ERROR_REPLY_TOO_LARGE + 1);

GQuark
bf_error_quark (void)
{
  static gsize quark = 0;

  g_dbus_error_register_error_domain ("bf-error-quark",
                                      &quark,
                                      bf_error_entries,
                                      G_N_ELEMENTS (bf_error_entries));
  return (GQuark) quark;
}

/**
 * bf_check_number:
 * @value: a D-Bus argument or option
 * @what: how the message names it, e.g. "Option “timeout-usec”"
 * @unit: what it counts, e.g. "microseconds"
 * @max: the largest value allowed
 * @out: (out) (optional): the value
 *
 * One rule for every numeric argument, whatever the caller's type: any
 * D-Bus number (y n q i u x t d) from 0 to @max, so that -1 is refused the
 * same way as -1.0, NaN or 2^64-1.
 *
 * Returns: %FALSE with an InvalidArgs @error naming @what and the rule.
 */
gboolean
bf_check_number (GVariant    *value,
                 const char  *what,
                 const char  *unit,
                 double       max,
                 double      *out,
                 GError     **error)
{
  double d;

  switch (g_variant_classify (value))
    {
    case G_VARIANT_CLASS_BYTE:    d = g_variant_get_byte (value); break;
    case G_VARIANT_CLASS_INT16:   d = g_variant_get_int16 (value); break;
    case G_VARIANT_CLASS_UINT16:  d = g_variant_get_uint16 (value); break;
    case G_VARIANT_CLASS_INT32:   d = g_variant_get_int32 (value); break;
    case G_VARIANT_CLASS_UINT32:  d = g_variant_get_uint32 (value); break;
    case G_VARIANT_CLASS_INT64:   d = (double) g_variant_get_int64 (value); break;
    case G_VARIANT_CLASS_UINT64:  d = (double) g_variant_get_uint64 (value); break;
    case G_VARIANT_CLASS_DOUBLE:  d = g_variant_get_double (value); break;
    default:
      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "%s must be a number of %s (y, n, q, i, u, x, t or d), not of type %s",
                   what, unit, g_variant_get_type_string (value));
      return FALSE;
    }
  /* Written so that NaN fails too. */
  if (!(d >= 0 && d <= max))
    {
      g_autofree char *printed = g_variant_print (value, FALSE);

      g_set_error (error, BF_ERROR, BF_ERROR_INVALID_ARGS,
                   "%s must be a number of %s from 0 to %.0f, not %s", what, unit, max, printed);
      return FALSE;
    }
  if (out)
    *out = d;
  return TRUE;
}
