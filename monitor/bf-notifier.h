/* bf-notifier.h: desktop notifications for fleet incidents
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "bf-fleet-model.h"

G_BEGIN_DECLS

#define BF_TYPE_NOTIFIER (bf_notifier_get_type ())
G_DECLARE_FINAL_TYPE (BfNotifier, bf_notifier, BF, NOTIFIER, GObject)

BfNotifier *bf_notifier_new (GApplication *application,
                             BfFleetModel *model);

void        bf_notifier_set_summarize_at_start (BfNotifier *self,
                                                gboolean    summarize);

G_END_DECLS
