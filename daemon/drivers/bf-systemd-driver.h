/* bf-systemd-driver.h: Latent=systemd, a unit started through systemd's D-Bus API
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-latent-driver.h"

G_BEGIN_DECLS

#define BF_TYPE_SYSTEMD_DRIVER (bf_systemd_driver_get_type ())
G_DECLARE_FINAL_TYPE (BfSystemdDriver, bf_systemd_driver, BF, SYSTEMD_DRIVER, BfLatentDriver)

G_END_DECLS
