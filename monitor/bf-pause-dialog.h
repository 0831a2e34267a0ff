/* bf-pause-dialog.h: asks why a worker is paused
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define BF_TYPE_PAUSE_DIALOG (bf_pause_dialog_get_type ())
G_DECLARE_FINAL_TYPE (BfPauseDialog, bf_pause_dialog, BF, PAUSE_DIALOG, AdwMessageDialog)

GtkWidget  *bf_pause_dialog_new        (GtkWindow     *parent,
                                        const char    *worker_name);
const char *bf_pause_dialog_get_reason (BfPauseDialog *self);

G_END_DECLS
