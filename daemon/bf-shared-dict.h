/* bf-shared-dict.h: property dictionaries that share their repeated entries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

GVariant *bf_shared_dict_new (GVariant *dict);

G_END_DECLS
