/* bf-worker-link.h: one attached worker, whatever protocol it speaks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/**
 * BfWorkerInfo:
 * @admin: the worker's info/admin file, stripped; "" when not reported
 * @host: the worker's info/host file, stripped; "" when not reported
 * @version: buildbot-worker's version; "" when not reported
 * @basedir: the worker's base directory; %NULL when not reported
 * @details: `a{sv}`, everything the worker reported (the Info property),
 *   every value bounded (see bf-limits.h)
 * @commands: `a{ss}`, command name -> version
 *
 * What a worker said about itself when it attached.  Immutable once made.
 */
typedef struct {
  char *admin;
  char *host;
  char *version;
  char *basedir;
  GVariant *details;
  GVariant *commands;
} BfWorkerInfo;

BfWorkerInfo *bf_worker_info_new_from_vardict (GVariant     *reported,
                                               const char   *worker_name,
                                               const char   *peer);
void          bf_worker_info_free             (BfWorkerInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfWorkerInfo, bf_worker_info_free)

/**
 * BfTransferOp:
 * @BF_TRANSFER_WRITE: the next block of the uploaded file or tar stream
 *   (@data)
 * @BF_TRANSFER_CLOSE: the worker is done with the file it read or wrote
 * @BF_TRANSFER_UTIME: the uploaded file's times (@atime, @mtime; seconds)
 * @BF_TRANSFER_UNPACK: the directory's tar stream is complete
 * @BF_TRANSFER_READ: the worker asks for up to @length bytes of the file
 *   it downloads; answered with fewer, or none at the end
 *
 * The steps of a file transfer, whatever the protocol calls them
 * (msgpack's update_upload_file_write..., PB's remote_write...).
 */
typedef enum {
  BF_TRANSFER_WRITE,
  BF_TRANSFER_CLOSE,
  BF_TRANSFER_UTIME,
  BF_TRANSFER_UNPACK,
  BF_TRANSFER_READ,
} BfTransferOp;

typedef struct {
  BfTransferOp op;
  GBytes *data;
  gsize length;
  double atime;
  double mtime;
} BfTransferStep;

/**
 * BfTransferReply:
 * @reply_data: the link's, given with the step
 * @data: (nullable): for %BF_TRANSFER_READ, the bytes read (empty at the
 *   end of the file); %NULL otherwise and on failure
 * @failure: (nullable): %NULL when the step was done, else why the
 *   transfer stops (the link answers the worker with an error)
 *
 * The answer to one transfer step, called exactly once per step, possibly
 * before the step function returns.  The link answers the worker only
 * then: a block is acknowledged when it was written, which is what holds
 * the worker's next block back (back-pressure).
 */
typedef void (*BfTransferReply) (gpointer    reply_data,
                                 GBytes     *data,
                                 const char *failure);

/**
 * BfCommandSink:
 * @output: text the command printed on @stream (`stdout`, `stderr`,
 *   `header`, a log file's name, or `files` for a listing); @text is valid
 *   UTF-8 of @len bytes, possibly large (the receiver splits it)
 * @exit_code: the command's exit code (-1 when killed by a signal)
 * @complete: the command ended: @failure is %NULL on success, else a
 *   bounded description; @lost is %TRUE when the link ended before the
 *   worker said the command completed.  Called exactly once per started
 *   command, never from inside bf_worker_link_start_command().
 * @transfer: a step of a file transfer (upload_file, upload_directory,
 *   download_file), answered through @reply; one step at a time
 *
 * How a link hands a running command's progress to the command object.
 */
typedef struct {
  void (*output)    (gpointer    user_data,
                     const char *stream,
                     const char *text,
                     gsize       len);
  void (*exit_code) (gpointer    user_data,
                     int         exit_code);
  void (*complete)  (gpointer    user_data,
                     const char *failure,
                     gboolean    lost);
  void (*transfer)  (gpointer              user_data,
                     const BfTransferStep *step,
                     BfTransferReply       reply,
                     gpointer              reply_data);
} BfCommandSink;

void bf_command_sink_update (const BfCommandSink *sink,
                             gpointer             user_data,
                             const char          *key,
                             GVariant            *value);

#define BF_TYPE_WORKER_LINK (bf_worker_link_get_type ())
G_DECLARE_INTERFACE (BfWorkerLink, bf_worker_link, BF, WORKER_LINK, GObject)

/**
 * BfWorkerLinkInterface:
 *
 * One connection from a worker that authenticated as a configured worker
 * name.  Only an implementation knows its wire format; the rest of the
 * daemon sees this interface.  Signals: "closed" (reason, emitted once,
 * whoever closed), "activity" (something arrived; rate-limited),
 * "shutdown-requested" (the worker asked for a graceful shutdown).
 */
struct _BfWorkerLinkInterface
{
  GTypeInterface g_iface;

  const char         *(*get_worker_name)   (BfWorkerLink        *self);
  const char         *(*get_peer)          (BfWorkerLink        *self);
  const char         *(*get_protocol)      (BfWorkerLink        *self);
  guint64             (*get_last_rx_usec)  (BfWorkerLink        *self);
  const BfWorkerInfo *(*get_info)          (BfWorkerLink        *self);
  void                (*set_keepalive)     (BfWorkerLink        *self,
                                            guint64              interval_usec);

  void                (*attach_async)      (BfWorkerLink        *self,
                                            GCancellable        *cancellable,
                                            GAsyncReadyCallback  callback,
                                            gpointer             user_data);
  gboolean            (*attach_finish)     (BfWorkerLink        *self,
                                            GAsyncResult        *result,
                                            GError             **error);
  void                (*ping_async)        (BfWorkerLink        *self,
                                            const char          *message,
                                            guint64              timeout_usec,
                                            GCancellable        *cancellable,
                                            GAsyncReadyCallback  callback,
                                            gpointer             user_data);
  gboolean            (*ping_finish)       (BfWorkerLink        *self,
                                            GAsyncResult        *result,
                                            GError             **error);
  void                (*shutdown_async)    (BfWorkerLink        *self,
                                            GCancellable        *cancellable,
                                            GAsyncReadyCallback  callback,
                                            gpointer             user_data);
  gboolean            (*shutdown_finish)   (BfWorkerLink        *self,
                                            GAsyncResult        *result,
                                            GError             **error);

  GVariant           *(*prepare_command)   (BfWorkerLink        *self,
                                            const char          *name,
                                            GVariant            *args,
                                            const char          *builder,
                                            GError             **error);
  void                (*start_command)     (BfWorkerLink        *self,
                                            const char          *command_id,
                                            const char          *name,
                                            GVariant            *prepared,
                                            const char          *builder,
                                            const BfCommandSink *sink,
                                            gpointer             user_data);
  void                (*forget_command)    (BfWorkerLink        *self,
                                            const char          *command_id);
  void                (*interrupt_command) (BfWorkerLink        *self,
                                            const char          *command_id,
                                            const char          *builder,
                                            const char          *why);
  void                (*close)             (BfWorkerLink        *self,
                                            const char          *reason);
};

const char         *bf_worker_link_get_worker_name   (BfWorkerLink        *self);
const char         *bf_worker_link_get_peer          (BfWorkerLink        *self);
const char         *bf_worker_link_get_protocol      (BfWorkerLink        *self);
guint64             bf_worker_link_get_last_rx_usec  (BfWorkerLink        *self);
const BfWorkerInfo *bf_worker_link_get_info          (BfWorkerLink        *self);
void                bf_worker_link_set_keepalive     (BfWorkerLink        *self,
                                                      guint64              interval_usec);

void                bf_worker_link_attach_async      (BfWorkerLink        *self,
                                                      GCancellable        *cancellable,
                                                      GAsyncReadyCallback  callback,
                                                      gpointer             user_data);
gboolean            bf_worker_link_attach_finish     (BfWorkerLink        *self,
                                                      GAsyncResult        *result,
                                                      GError             **error);
void                bf_worker_link_ping_async        (BfWorkerLink        *self,
                                                      const char          *message,
                                                      guint64              timeout_usec,
                                                      GCancellable        *cancellable,
                                                      GAsyncReadyCallback  callback,
                                                      gpointer             user_data);
gboolean            bf_worker_link_ping_finish       (BfWorkerLink        *self,
                                                      GAsyncResult        *result,
                                                      GError             **error);
void                bf_worker_link_shutdown_async    (BfWorkerLink        *self,
                                                      GCancellable        *cancellable,
                                                      GAsyncReadyCallback  callback,
                                                      gpointer             user_data);
gboolean            bf_worker_link_shutdown_finish   (BfWorkerLink        *self,
                                                      GAsyncResult        *result,
                                                      GError             **error);

GVariant           *bf_worker_link_prepare_command   (BfWorkerLink        *self,
                                                      const char          *name,
                                                      GVariant            *args,
                                                      const char          *builder,
                                                      GError             **error);
void                bf_worker_link_start_command     (BfWorkerLink        *self,
                                                      const char          *command_id,
                                                      const char          *name,
                                                      GVariant            *prepared,
                                                      const char          *builder,
                                                      const BfCommandSink *sink,
                                                      gpointer             user_data);
void                bf_worker_link_forget_command    (BfWorkerLink        *self,
                                                      const char          *command_id);
void                bf_worker_link_interrupt_command (BfWorkerLink        *self,
                                                      const char          *command_id,
                                                      const char          *builder,
                                                      const char          *why);
void                bf_worker_link_close             (BfWorkerLink        *self,
                                                      const char          *reason);

G_END_DECLS
