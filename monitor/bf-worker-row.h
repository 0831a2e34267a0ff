/* bf-worker-row.h: one worker of the list, read from GetWorkers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "bf-dbus-generated.h"

G_BEGIN_DECLS

/* The base of both rows: the values of one D-Bus interface, implemented by
 * the subclass as the generated GInterface (see bf-worker-row.c). */
#define BF_TYPE_PROPERTY_ROW (bf_property_row_get_type ())
G_DECLARE_DERIVABLE_TYPE (BfPropertyRow, bf_property_row, BF, PROPERTY_ROW, GObject)

struct _BfPropertyRowClass
{
  GObjectClass parent_class;

  /*< private >*/
  gpointer     interface_data;
};

#define BF_TYPE_WORKER_ROW (bf_worker_row_get_type ())
G_DECLARE_FINAL_TYPE (BfWorkerRow, bf_worker_row, BF, WORKER_ROW, BfPropertyRow)

#define BF_TYPE_LATENT_WORKER_ROW (bf_latent_worker_row_get_type ())
G_DECLARE_FINAL_TYPE (BfLatentWorkerRow, bf_latent_worker_row, BF, LATENT_WORKER_ROW, BfPropertyRow)

BfWorkerRow        *bf_worker_row_new                    (GDBusConnection     *connection,
                                                          const char          *name_owner,
                                                          const char          *object_path,
                                                          GVariant            *properties);
const char         *bf_worker_row_get_object_path        (BfWorkerRow         *self);
const char         *bf_worker_row_get_name_key           (BfWorkerRow         *self);
GDBusConnection    *bf_worker_row_get_connection         (BfWorkerRow         *self);
const char         *bf_worker_row_get_name_owner         (BfWorkerRow         *self);
void                bf_worker_row_update                 (BfWorkerRow         *self,
                                                          const char          *interface_name,
                                                          GVariant            *changed,
                                                          const char * const  *invalidated);
BfLatentWorkerRow  *bf_worker_row_get_latent             (BfWorkerRow         *self);
void                bf_worker_row_set_latent             (BfWorkerRow         *self,
                                                          GVariant            *properties);
void                bf_worker_row_set_partial            (BfWorkerRow         *self);

void                bf_worker_row_fetch_all_async        (BfWorkerRow         *self,
                                                          GCancellable        *cancellable,
                                                          GAsyncReadyCallback  callback,
                                                          gpointer             user_data);
gboolean            bf_worker_row_fetch_all_finish       (BfWorkerRow         *self,
                                                          GAsyncResult        *result,
                                                          GError             **error);

void                bf_worker_row_ensure_proxies_async   (BfWorkerRow         *self,
                                                          GCancellable        *cancellable,
                                                          GAsyncReadyCallback  callback,
                                                          gpointer             user_data);
gboolean            bf_worker_row_ensure_proxies_finish  (BfWorkerRow         *self,
                                                          GAsyncResult        *result,
                                                          GError             **error);
BfDBusWorker       *bf_worker_row_get_proxy              (BfWorkerRow         *self);
BfDBusLatentWorker *bf_worker_row_get_latent_proxy       (BfWorkerRow         *self);

G_END_DECLS
