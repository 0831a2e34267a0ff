/* bf-fd-writer.h: write a stream of text to a caller's file descriptor, never blocking
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* What may wait for a slow reader before output is dropped (and said so). */
#define BF_FD_WRITER_MAX_QUEUED (16 * 1024 * 1024)

typedef struct _BfFdWriter BfFdWriter;

/* @ok is FALSE when the descriptor failed or its reader went away. */
typedef void (*BfFdWriterDrained) (gpointer user_data,
                                   gboolean ok);

BfFdWriter *bf_fd_writer_new    (int          fd);
void        bf_fd_writer_write  (BfFdWriter  *self,
                                 const char  *data,
                                 gsize        len);
void        bf_fd_writer_finish (BfFdWriter  *self);
guint64     bf_fd_writer_get_dropped (BfFdWriter *self);
void        bf_fd_writer_when_drained (BfFdWriter        *self,
                                       BfFdWriterDrained  callback,
                                       gpointer           user_data);

G_END_DECLS
