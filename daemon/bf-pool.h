/* bf-pool.h: a [Pool NAME] of latent workers, published as org.buildfleet.Fleet1.Pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-config.h"
#include "bf-worker.h"

G_BEGIN_DECLS

#define BF_TYPE_POOL (bf_pool_get_type ())
G_DECLARE_FINAL_TYPE (BfPool, bf_pool, BF, POOL, BfDBusPoolSkeleton)

BfPool     *bf_pool_new            (BfPoolConfig *config);
void        bf_pool_set_config     (BfPool       *self,
                                    BfPoolConfig *config);
const char *bf_pool_get_name       (BfPool       *self);
void        bf_pool_add_member     (BfPool       *self,
                                    BfWorker     *worker);
void        bf_pool_retire_member  (BfPool       *self,
                                    BfWorker     *worker);
void        bf_pool_remove_member  (BfPool       *self,
                                    BfWorker     *worker);
void        bf_pool_start          (BfPool       *self);
void        bf_pool_clear          (BfPool       *self);

G_END_DECLS
