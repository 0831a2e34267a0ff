/* bf-builds-model.h: the daemon's running and pending builds
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "bf-fleet-model.h"

G_BEGIN_DECLS

#define BF_TYPE_BUILD_ITEM (bf_build_item_get_type ())
G_DECLARE_FINAL_TYPE (BfBuildItem, bf_build_item, BF, BUILD_ITEM, GObject)

const char *bf_build_item_get_path         (BfBuildItem *self);
const char *bf_build_item_get_builder      (BfBuildItem *self);
const char *bf_build_item_get_worker_path  (BfBuildItem *self);
const char *bf_build_item_get_state        (BfBuildItem *self);
const char *bf_build_item_get_owner        (BfBuildItem *self);
const char *bf_build_item_get_owner_user   (BfBuildItem *self);
guint64     bf_build_item_get_created_usec (BfBuildItem *self);
guint64     bf_build_item_get_started_usec (BfBuildItem *self);
const char *bf_build_item_get_waiting_for  (BfBuildItem *self);
char       *bf_build_item_dup_command      (BfBuildItem *self);

#define BF_TYPE_BUILDS_MODEL (bf_builds_model_get_type ())
G_DECLARE_FINAL_TYPE (BfBuildsModel, bf_builds_model, BF, BUILDS_MODEL, GObject)

BfBuildsModel *bf_builds_model_new        (BfFleetModel  *fleet);
BfFleetModel  *bf_builds_model_get_fleet  (BfBuildsModel *self);

G_END_DECLS
