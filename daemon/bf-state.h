/* bf-state.h: admin state persisted across daemon restarts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/**
 * BfWorkerRecord:
 *
 * What the daemon remembers of a worker between runs.
 */
typedef struct {
  gboolean graceful;
  gboolean paused;
  char *pause_reason;
  char *paused_by;                  /* user name of whoever paused it */
  guint64 paused_since_usec;        /* when it was paused; 0 when not paused */
  guint64 last_seen_usec;           /* last attach or detach */
  guint64 disconnected_since_usec;  /* 0 while connected */
  gboolean missing_notified;        /* Missing already raised for this incident */
} BfWorkerRecord;

void bf_worker_record_clear (BfWorkerRecord *ws);

/**
 * BfInstanceRecord:
 *
 * A latent instance that was started and not yet stopped: what the next
 * daemon needs to adopt or stop it after a crash.
 */
typedef struct {
  char *driver;     /* "command", "local", "systemd" */
  char *id;         /* the driver's instance id */
  char *password;   /* a generated password, for adoption; NULL otherwise */
} BfInstanceRecord;

void bf_instance_record_free (BfInstanceRecord *record);

#define BF_TYPE_STATE (bf_state_get_type ())
G_DECLARE_FINAL_TYPE (BfState, bf_state, BF, STATE, GObject)

BfState    *bf_state_new           (const char          *directory);
const char *bf_state_get_directory (BfState             *self);
const char *bf_state_get_daemon_id (BfState             *self);
void        bf_state_load          (BfState             *self);
gboolean    bf_state_get_worker    (BfState             *self,
                                    const char          *name,
                                    BfWorkerRecord      *out);
void        bf_state_set_worker    (BfState             *self,
                                    const char          *name,
                                    const BfWorkerRecord *ws);
void        bf_state_save_worker_async  (BfState             *self,
                                         const char          *name,
                                         const BfWorkerRecord *ws,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data);
gboolean    bf_state_save_worker_finish (BfState             *self,
                                         GAsyncResult        *result,
                                         GError             **error);
void        bf_state_remove_worker (BfState             *self,
                                    const char          *name);
void        bf_state_flush         (BfState             *self);

void        bf_state_set_instance  (BfState             *self,
                                    const char          *name,
                                    const char          *driver,
                                    const char          *id,
                                    const char          *password);
void        bf_state_remove_instance (BfState           *self,
                                    const char          *name);
GHashTable *bf_state_get_instances (BfState             *self);

gboolean    bf_state_write_file    (const char          *directory,
                                    const char          *path,
                                    GBytes              *bytes,
                                    GError             **error);
void        bf_state_set_aside     (const char          *path,
                                    const char          *what,
                                    const char          *why);

G_END_DECLS
