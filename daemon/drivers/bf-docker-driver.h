/* bf-docker-driver.h: Latent=docker, a container started through the Docker Engine API
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-latent-driver.h"

G_BEGIN_DECLS

#define BF_TYPE_DOCKER_DRIVER (bf_docker_driver_get_type ())
G_DECLARE_FINAL_TYPE (BfDockerDriver, bf_docker_driver, BF, DOCKER_DRIVER, BfLatentDriver)

G_END_DECLS
