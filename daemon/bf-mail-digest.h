/* bf-mail-digest.h: alert mails that never storm
 *
 * The bookkeeping behind MailDigestInterval=, without processes or timers
 * (the mailer owns those): per set of recipients (the To: line), the first
 * BF_MAIL_DIGEST_BURST alerts of an interval go out at once; the others
 * are held and go out together, as one digest mail, when the interval
 * ends.  A digest starts a new interval, so a storm that lasts costs each
 * set of recipients one mail per interval.  A set that had nothing for a
 * whole interval starts afresh.
 *
 * Bounded: a digest lists at most BF_MAIL_DIGEST_MAX_LISTED alerts in full
 * and BF_MAIL_DIGEST_MAX_BODY bytes of their text; past that it counts
 * them and names their workers up to BF_MAIL_DIGEST_MAX_NAMES bytes.
 *
 * Nothing held is lost to a restart: bf_mail_digest_save() gives what is
 * held (and the caller's digests that are due but not sent yet) as key-file
 * text with wall-clock times, bf_mail_digest_load() takes it back; the
 * mailer keeps it in StateDirectory.  Loading is as bounded as holding:
 * every value is checked against the limits above.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define BF_MAIL_DIGEST_BURST 10
#define BF_MAIL_DIGEST_MAX_LISTED 200
#define BF_MAIL_DIGEST_MAX_BODY (64 * 1024)
#define BF_MAIL_DIGEST_MAX_NAMES (8 * 1024)
#define BF_MAIL_DIGEST_MAX_INTERVAL (G_GINT64_CONSTANT (86400) * G_USEC_PER_SEC)

typedef struct _BfMailDigest BfMailDigest;

/**
 * BfMailDigestMail:
 * @recipients: the To: line it is for
 * @subject: "N more alerts: ..."
 * @body: the held alerts, in order
 * @n_alerts: how many alerts it stands for
 */
typedef struct {
  char  *recipients;
  char  *subject;
  char  *body;
  guint  n_alerts;
} BfMailDigestMail;

void              bf_mail_digest_mail_free  (BfMailDigestMail *mail);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfMailDigestMail, bf_mail_digest_mail_free)

BfMailDigest     *bf_mail_digest_new        (void);
void              bf_mail_digest_free       (BfMailDigest     *self);
void              bf_mail_digest_set_interval (BfMailDigest   *self,
                                             gint64            interval_usec);
guint             bf_mail_digest_offer      (BfMailDigest     *self,
                                             const char       *recipients,
                                             const char       *worker,
                                             const char       *subject,
                                             const char       *body,
                                             gint64            now_usec);
GPtrArray        *bf_mail_digest_take_due   (BfMailDigest     *self,
                                             gint64            now_usec);
gint64            bf_mail_digest_next_due   (BfMailDigest     *self);
GBytes           *bf_mail_digest_save       (BfMailDigest     *self,
                                             GPtrArray        *unsent,
                                             gint64            now_usec,
                                             gint64            real_now_usec);
gboolean          bf_mail_digest_load       (BfMailDigest     *self,
                                             const char       *data,
                                             gsize             len,
                                             gint64            now_usec,
                                             gint64            real_now_usec,
                                             GPtrArray        *unsent,
                                             GPtrArray        *dropped,
                                             GError          **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfMailDigest, bf_mail_digest_free)

G_END_DECLS
