/* bf-unit-name.h: systemd's rules for the unit names Latent=systemd starts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean bf_unit_name_is_valid       (const char  *name,
                                      char       **why);
gboolean bf_unit_template_is_valid   (const char  *template,
                                      const char  *worker_name,
                                      char       **why);

G_END_DECLS
