/* bf-dbus-size.h: how many bytes a value takes in a D-Bus message
 *
 * The bus drops a connection that sends a message over its limit
 * (max_message_size, 32 MiB on the system bus), and with the connection
 * the daemon's name and every client.  So a reply whose size depends on
 * the fleet is measured before it is sent.
 *
 * bf_dbus_size_end() follows the D-Bus marshalling rules (the alignment of
 * every basic type, 4-byte lengths of strings and arrays, 8-byte aligned
 * structs and dict entries, the signature in front of a variant's value):
 * the result is exact, the same number of bytes GDBus writes for the
 * value, in either byte order.  The walk stops as soon as it passes
 * @limit, so measuring something far too large costs no more than the
 * limit.  It allocates nothing for tree-form values (such as the
 * daemon's cached property dictionaries).  Maybe types do not exist on
 * D-Bus and count as nothing.  Any thread.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* What bf_dbus_size_end() returns once it has passed its limit. */
#define BF_DBUS_SIZE_OVER G_MAXSIZE

gsize       bf_dbus_size_end      (GVariant   *value,
                                   gsize       offset,
                                   gsize       limit);
GHashTable *bf_dbus_size_new_memo (void);
gsize       bf_dbus_size_end_memo (GVariant   *value,
                                   gsize       offset,
                                   gsize       limit,
                                   GHashTable *memo);

G_END_DECLS
