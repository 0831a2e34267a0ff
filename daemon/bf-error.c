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
