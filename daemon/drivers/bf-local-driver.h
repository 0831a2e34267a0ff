/* bf-local-driver.h: Latent=local, a buildbot-worker run by the daemon itself
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-latent-driver.h"

G_BEGIN_DECLS

#define BF_TYPE_LOCAL_DRIVER (bf_local_driver_get_type ())
G_DECLARE_FINAL_TYPE (BfLocalDriver, bf_local_driver, BF, LOCAL_DRIVER, BfLatentDriver)

G_END_DECLS
