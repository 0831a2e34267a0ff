/* bf-build-list.h: running and pending builds, one line each, live
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gtk/gtk.h>

#include "bf-builds-model.h"

G_BEGIN_DECLS

#define BF_TYPE_BUILD_LIST (bf_build_list_get_type ())
G_DECLARE_FINAL_TYPE (BfBuildList, bf_build_list, BF, BUILD_LIST, GtkWidget)

GtkWidget *bf_build_list_new             (gboolean       all);
void       bf_build_list_set_model       (BfBuildList   *self,
                                          BfBuildsModel *model);
void       bf_build_list_set_worker_path (BfBuildList   *self,
                                          const char    *worker_path);
void       bf_build_list_refresh         (BfBuildList   *self);
void       bf_build_list_dump            (BfBuildList   *self,
                                          GKeyFile      *key_file,
                                          const char    *summary_group,
                                          const char    *prefix);

G_END_DECLS
