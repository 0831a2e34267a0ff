/* bf-mailer.h: alert mails through the configured MailCommand
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BF_TYPE_MAILER (bf_mailer_get_type ())
G_DECLARE_FINAL_TYPE (BfMailer, bf_mailer, BF, MAILER, GObject)

BfMailer *bf_mailer_new        (const char         *command,
                                const char         *from);
void      bf_mailer_set_config (BfMailer           *self,
                                const char         *command,
                                const char         *from);
void      bf_mailer_send       (BfMailer           *self,
                                const char * const *to,
                                const char         *worker,
                                const char         *subject,
                                const char         *body);
void      bf_mailer_set_timeout (BfMailer          *self,
                                 guint64            timeout_usec);
void      bf_mailer_set_digest_interval (BfMailer  *self,
                                         guint64    interval_usec);
guint     bf_mailer_get_in_flight (BfMailer        *self);
void      bf_mailer_load_held  (BfMailer           *self,
                                const char         *state_directory);
void      bf_mailer_flush      (BfMailer           *self);

G_END_DECLS
