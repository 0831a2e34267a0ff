/* bf-latent.h: a latent worker's instance, published as org.buildfleet.Fleet1.LatentWorker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-config.h"

G_BEGIN_DECLS

#define BF_TYPE_LATENT (bf_latent_get_type ())
G_DECLARE_FINAL_TYPE (BfLatent, bf_latent, BF, LATENT, BfDBusLatentWorkerSkeleton)

BfLatent *bf_latent_new        (BfWorkerConfig *config);
void      bf_latent_set_config (BfLatent       *self,
                                BfWorkerConfig *config);

G_END_DECLS
