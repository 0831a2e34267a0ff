/* bf-config.h: the fleet configuration, parsed from a key file and drop-ins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define BF_WORKER_NAME_MAX 50
#define BF_DEFAULT_PORT 9989

typedef enum {
  BF_LATENT_NONE,
  BF_LATENT_COMMAND,
  BF_LATENT_LOCAL,
  BF_LATENT_SYSTEMD,
  BF_LATENT_DOCKER,
} BfLatentKind;

/**
 * BfWorkerProtocol:
 * @BF_WORKER_PROTOCOL_DEFAULT: Protocol= not set: PB when the daemon has a
 *   PB endpoint (ListenPB=), else msgpack
 * @BF_WORKER_PROTOCOL_PB: Perspective Broker (buildbot-worker's default)
 * @BF_WORKER_PROTOCOL_MSGPACK: msgpack over WebSocket (msgpack_experimental_v7)
 *
 * Which protocol a latent worker's new instances are asked to speak.
 */
typedef enum {
  BF_WORKER_PROTOCOL_DEFAULT,
  BF_WORKER_PROTOCOL_PB,
  BF_WORKER_PROTOCOL_MSGPACK,
} BfWorkerProtocol;

/**
 * BfWorkerConfig:
 *
 * One `[Worker NAME]` group.  Immutable once parsed and reference counted
 * (g_rc_box), so a worker can keep the configuration it runs with while a
 * reload builds the next one.  Durations are microseconds.
 */
#define BF_MAX_LABELS 64
#define BF_DEFAULT_FLAP_THRESHOLD 5
#define BF_MAX_FLAP_THRESHOLD 1000
#define BF_MAX_LABEL_BYTES 64

typedef struct {
  char *name;
  char *password;              /* never logged, never on the bus; NULL with password_generate */
  gboolean password_generate;  /* Password=generate: a fresh one per substantiation */
  guint max_builds;            /* 0 = unlimited */
  GStrv builders;
  GStrv labels;                /* Labels=: what builds may ask for */
  guint64 missing_timeout_usec;
  guint flap_threshold;        /* detaches within flap_window_usec that make it flapping; 0 = off */
  guint64 flap_window_usec;
  guint64 flap_recovery_usec;  /* attached this long: no longer flapping */
  guint64 health_interval_usec;     /* 0 = no health checks */
  guint64 min_free_disk_bytes;      /* 0 = not checked (or see the percent) */
  double min_free_disk_percent;     /* 0 = not checked */
  guint64 max_response_time_usec;   /* 0 = not checked */
  char *health_command;             /* NULL = none */
  GStrv notify_on_missing;
  GVariant *properties;        /* a{sv}, Property.KEY=VALUE */

  BfLatentKind latent;
  char *start_command;
  char *stop_command;
  char *unit;                  /* Latent=systemd */
  gint64 build_wait_timeout_usec;   /* -1 never */
  guint64 substantiation_timeout_usec;
  gboolean keep_on_shutdown;
  BfWorkerProtocol protocol;   /* Protocol=, latent workers only */
  char *pool;                  /* the [Pool NAME] this worker stands for, or NULL */
  guint max_builds_per_instance;  /* a pool's MaxBuildsPerInstance=; 0 = no limit */

  /* Latent=docker (see bf-docker-driver.c) */
  char *image;                 /* Image= */
  char *docker_host;           /* DockerHost=: "unix:///PATH" */
  GStrv volumes;               /* Volumes=: "SRC:DST[:ro|:rw]", HostConfig.Binds */
  char *network;               /* Network=: HostConfig.NetworkMode; NULL = the engine's default */
  GStrv ulimits;               /* Ulimits=: "NAME=SOFT:HARD", see bf_config_parse_ulimit() */
  GStrv command;               /* Command=: the container's Cmd; NULL = buildfleet's */
  gboolean pull;               /* Pull=: pull Image= before every start */
  guint64 memory_bytes;        /* Memory=: 0 = no limit */
  guint64 nano_cpus;           /* CPUs= x 1e9: 0 = no limit */
  gboolean auto_remove;        /* AutoRemove=: HostConfig.AutoRemove */
} BfWorkerConfig;

/**
 * BfPoolConfig:
 *
 * One `[Pool NAME]` group: @count interchangeable latent workers named
 * from the pattern of Workers= (index 1 to @count), each also in
 * BfConfig.workers with every key of the group.  Immutable, reference
 * counted.
 */
#define BF_POOL_MAX_COUNT 1000

typedef struct {
  char *name;
  char *pattern;               /* Workers=, e.g. "cloud-%02d" */
  guint count;                 /* Count= */
  guint min_idle;              /* MinIdle=: instances kept started and idle */
  guint max_instances;         /* MaxInstances=: instances at once (default Count) */
  guint max_builds_per_instance;  /* MaxBuildsPerInstance=; 0 = no limit */
  GStrv members;               /* the workers' names, index order */
} BfPoolConfig;

/**
 * BfConfig:
 *
 * The whole configuration: the `[Daemon]` group and every worker in file
 * order.  Immutable and reference counted.
 */
typedef struct {
  char *path;                  /* the main file */
  GStrv files;                 /* every file read, main first */
  GStrv listen;                /* "host:port", "*:port" = every address */
  GStrv listen_pb;             /* ListenPB: the same for PB; may be empty */
  char *listen_pb_skipped;     /* the Listen endpoint that took the default PB port, or NULL */
  gboolean listen_pb_default;  /* ListenPB= absent: *:9989, not opening it is a warning */
  char *tls_certificate;
  char *tls_private_key;
  guint64 keepalive_interval_usec;
  guint64 duplicate_ping_timeout_usec;
  char *state_directory;
  char *mail_command;
  char *mail_from;
  guint64 mail_timeout_usec;   /* MailTimeout: one MailCommand's limit */
  guint64 mail_digest_interval_usec; /* MailDigestInterval: 0 = every alert on its own */
  gsize max_message_size;      /* bytes of one WebSocket message */
  gsize max_bus_message_size;  /* bytes of one D-Bus message (the bus's limit) */
  guint64 quarantine_initial_usec;
  guint64 quarantine_max_usec;
  guint64 finished_build_lifetime_usec;
  GPtrArray *workers;          /* BfWorkerConfig, in order */
  GHashTable *workers_by_name; /* name -> BfWorkerConfig (borrowed from workers) */
  GPtrArray *pools;            /* BfPoolConfig, in order */
} BfConfig;

BfConfig       *bf_config_load            (const char  *path,
                                           GError     **error);
BfConfig       *bf_config_load_full       (const char  *path,
                                           char       **out_digest,
                                           GError     **error);
BfConfig       *bf_config_load_data       (const char  *data,
                                           const char  *name,
                                           GError     **error);
BfConfig       *bf_config_ref             (BfConfig    *config);
void            bf_config_unref           (BfConfig    *config);
BfWorkerConfig *bf_config_lookup_worker   (BfConfig    *config,
                                           const char  *name);

BfPoolConfig   *bf_config_lookup_pool     (BfConfig    *config,
                                           const char  *name);
BfPoolConfig   *bf_pool_config_ref        (BfPoolConfig *pc);
void            bf_pool_config_unref      (BfPoolConfig *pc);
GStrv           bf_pool_expand_pattern    (const char  *pattern,
                                           guint        count,
                                           GError     **error);

BfWorkerConfig *bf_worker_config_ref      (BfWorkerConfig *wc);
void            bf_worker_config_unref    (BfWorkerConfig *wc);
gboolean        bf_worker_config_serves   (BfWorkerConfig *wc,
                                           const char     *builder);
const char     *bf_latent_kind_to_string  (BfLatentKind    kind);
const char     *bf_worker_protocol_to_string (BfWorkerProtocol protocol);

gboolean        bf_worker_name_is_valid   (const char  *name);
gboolean        bf_config_parse_ulimit    (const char  *text,
                                           char       **out_name,
                                           gint64      *out_soft,
                                           gint64      *out_hard);
gboolean        bf_label_is_valid         (const char  *label);
gboolean        bf_config_parse_duration  (const char  *text,
                                           gboolean     allow_never,
                                           gint64      *out_usec,
                                           GError     **error);
gboolean        bf_config_parse_endpoint  (const char  *text,
                                           char       **out_host,
                                           guint16     *out_port,
                                           GError     **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfConfig, bf_config_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfWorkerConfig, bf_worker_config_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfPoolConfig, bf_pool_config_unref)

G_END_DECLS
