/* bf-cell-dump.h: what the cells of a column view show, read from the widgets
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

void bf_cell_dump (GtkColumnView *view,
                   GKeyFile      *key_file);

G_END_DECLS
