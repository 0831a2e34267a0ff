/* bf-command-driver.h: Latent=command, StartCommand and StopCommand
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-latent-driver.h"

G_BEGIN_DECLS

#define BF_TYPE_COMMAND_DRIVER (bf_command_driver_get_type ())
G_DECLARE_FINAL_TYPE (BfCommandDriver, bf_command_driver, BF, COMMAND_DRIVER, BfLatentDriver)

G_END_DECLS
