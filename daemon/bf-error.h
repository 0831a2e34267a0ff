/* bf-error.h: the org.buildfleet.Fleet1.Error D-Bus error domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BF_ERROR (bf_error_quark ())

/**
 * BfError:
 * @BF_ERROR_NOT_FOUND: no such worker, builder or object
 * @BF_ERROR_INVALID_ARGS: an argument, option or configuration value is wrong
 * @BF_ERROR_ACCESS_DENIED: the caller is not authorised
 * @BF_ERROR_NOT_CONNECTED: the worker has no attached connection
 * @BF_ERROR_BUSY: the object cannot do this right now
 * @BF_ERROR_FAILED: anything else, with a message that says what
 * @BF_ERROR_REPLY_TOO_LARGE: the reply would be larger than a message on
 *   the bus may be (MaxBusMessageSize); the message names the call to use
 *   instead
 *
 * Each code maps to `org.buildfleet.Fleet1.Error.<Name>` on the bus.
 */
typedef enum {
  BF_ERROR_NOT_FOUND,
  BF_ERROR_INVALID_ARGS,
  BF_ERROR_ACCESS_DENIED,
  BF_ERROR_NOT_CONNECTED,
  BF_ERROR_BUSY,
  BF_ERROR_FAILED,
  BF_ERROR_REPLY_TOO_LARGE,
} BfError;

GQuark   bf_error_quark  (void);
gboolean bf_check_number (GVariant    *value,
                          const char  *what,
                          const char  *unit,
                          double       max,
                          double      *out,
                          GError     **error);

G_END_DECLS
