/* bf-command.h: one remote command, published as org.buildfleet.Fleet1.Command
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bf-dbus-generated.h"
#include "bf-authority.h"
#include "bf-worker-link.h"

G_BEGIN_DECLS

#define BF_TYPE_COMMAND (bf_command_get_type ())
G_DECLARE_FINAL_TYPE (BfCommand, bf_command, BF, COMMAND, BfDBusCommandSkeleton)

/* File transfers: the largest limit ("maxsize", also the default), the
 * block the worker sends or asks for by default and at most. */
#define BF_TRANSFER_MAX_SIZE (G_GUINT64_CONSTANT (1) << 30)
#define BF_TRANSFER_DEFAULT_BLOCK (64 * 1024)
#define BF_TRANSFER_MAX_BLOCK (1024 * 1024)

gboolean   bf_command_is_transfer   (const char  *name);
GVariant  *bf_command_validate_args (const char  *name,
                                     GVariant    *args,
                                     GError     **error);
BfCommand *bf_command_new          (const char   *name,
                                    const char   *command_id,
                                    const char   *builder,
                                    BfAuthority  *authority);
void       bf_command_start        (BfCommand    *self,
                                    BfWorkerLink *link,
                                    GVariant     *prepared);
gboolean   bf_command_set_output_fd (BfCommand    *self,
                                     const char   *stream,
                                     int           fd);
void       bf_command_set_transfer (BfCommand    *self,
                                    int           fd,
                                    GVariant     *args);
void       bf_command_interrupt    (BfCommand    *self,
                                    const char   *why);
void       bf_command_abandon      (BfCommand    *self,
                                    const char   *why,
                                    const char   *failure);

G_END_DECLS
