/* mail-digest-due.c: the digest's bookkeeping in an alert storm to many
 * sets of recipients (README.md, "Mail digest").
 *
 * SETS sets of recipients each get BURST + EXTRA alerts, and every alert
 * does what bf_mailer_send() does with the digest: offer it, and when it is
 * held, ask for the next due time.  Prints the CPU time.  Built by hand
 * against one version of bf-mail-digest.c (DIGEST_C), for A/B runs:
 *
 *   gcc -O2 -DDIGEST_C='"daemon/bf-mail-digest.c"' -I. -Idaemon -Ibuild \
 *       tests/bench/mail-digest-due.c $(pkg-config --cflags --libs glib-2.0) -o /tmp/due
 *   /tmp/due 2000 10
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include DIGEST_C

int
main (int    argc,
      char **argv)
{
  guint sets = argc > 1 ? atoi (argv[1]) : 2000;
  guint extra = argc > 2 ? atoi (argv[2]) : 10;
  BfMailDigest *d = bf_mail_digest_new ();
  char **names = g_new0 (char *, sets + 1);
  struct timespec a, b;
  gint64 check = 0;

  bf_mail_digest_set_interval (d, 60 * G_USEC_PER_SEC);
  for (guint i = 0; i < sets; i++)
    names[i] = g_strdup_printf ("team%u@example.com", i);
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &a);
  for (guint k = 0; k < BF_MAIL_DIGEST_BURST + extra; k++)
    for (guint i = 0; i < sets; i++)
      if (bf_mail_digest_offer (d, names[i], "w", "Worker w is missing", "body\n", 1000 + k) > 0)
        check += bf_mail_digest_next_due (d) & 1;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &b);
  printf ("%u sets x %u alerts: %.1f ms CPU (%" G_GINT64_FORMAT ")\n", sets, BF_MAIL_DIGEST_BURST + extra,
          (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6, check);
  bf_mail_digest_free (d);
  g_strfreev (names);
  return 0;
}
