/* bf-health.c: health checks run on an idle worker
 *
 * Every HealthInterval=, while the worker is attached and runs no build,
 * one round of checks runs, one after the other:
 *
 *  1. a ping (the link's own: print over PB, a request over msgpack); its
 *     round trip is the worker's ResponseTimeUSec, over MaxResponseTime=
 *     is unhealthy;
 *  2. MinFreeDisk=: `df -Pk BASEDIR` on the worker, its available space
 *     against the limit (bytes, or percent of the filesystem);
 *  3. HealthCommand=: `sh -c COMMAND` in BASEDIR; a non-zero exit is
 *     unhealthy, its output the reason.
 *
 * The round's outcome goes to the host (the worker), which publishes
 * transitions only.  Commands run through the worker link like any
 * other, under a builder of their own (BF_HEALTH_BUILDER).  Output kept
 * for a reason is bounded.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bf-health.h"
#include "bf-limits.h"
#include "bf-timer-queue.h"
#include "bf-variant-util.h"

/* How much of a check's output is kept for its reason. */
#define OUTPUT_BYTES 2048
/* A check's command may run this long on the worker (shell maxTime). */
#define COMMAND_MAX_SECONDS 120
#define PING_TIMEOUT_USEC (30 * G_USEC_PER_SEC)
/* Not idle: look again this soon rather than a whole interval later. */
#define BUSY_RETRY_USEC (5 * G_USEC_PER_SEC)

typedef enum {
  STEP_NONE,
  STEP_PING,
  STEP_DISK,
  STEP_COMMAND,
} Step;

struct _BfHealth
{
  const BfHealthHost *host;
  gpointer host_data;
  BfWorkerConfig *config;

  BfWorkerLink *link;          /* while attached */
  BfTimer *timer;
  GCancellable *cancellable;   /* the ping in flight */
  Step step;
  gint64 ping_started;
  guint seq;
  char *command_id;            /* the command in flight, NULL if none */
  GString *output;
  int exit_code;
  gboolean have_exit_code;
  GString *reasons;            /* this round's failures */
};

static void run_step (BfHealth *self,
                      Step      step);
static gboolean timer_cb (gpointer data);

static void
arm (BfHealth *self,
     guint64   delay_usec)
{
  bf_timer_stop (&self->timer);
  if (self->link == NULL || self->config == NULL || self->config->health_interval_usec == 0)
    return;
  bf_timer_start (&self->timer, delay_usec, timer_cb, self);
}

static void
add_reason (BfHealth   *self,
            const char *format,
            ...) G_GNUC_PRINTF (2, 3);

static void
add_reason (BfHealth   *self,
            const char *format,
            ...)
{
  va_list args;

  if (self->reasons->len > 0)
    g_string_append (self->reasons, "; ");
  va_start (args, format);
  g_string_append_vprintf (self->reasons, format, args);
  va_end (args);
}

static void
finish_round (BfHealth *self)
{
  g_autofree char *reason = bf_utf8_truncate (self->reasons->str, -1, BF_LIMIT_MESSAGE_BYTES);

  self->step = STEP_NONE;
  self->host->result (self->host_data, self->reasons->len == 0, reason);
  arm (self, self->config->health_interval_usec);
}

/* Commands ----------------------------------------------------------------------- */

static void
sink_output (gpointer    data,
             const char *stream,
             const char *text,
             gsize       len)
{
  BfHealth *self = data;

  if (!g_str_equal (stream, "stdout") && !g_str_equal (stream, "stderr"))
    return;
  /* Keep the end: that is where a failing command says why. */
  g_string_append_len (self->output, text, len);
  if (self->output->len > 2 * OUTPUT_BYTES)
    g_string_erase (self->output, 0, self->output->len - OUTPUT_BYTES);
}

static void
sink_exit_code (gpointer data,
                int      exit_code)
{
  BfHealth *self = data;

  self->exit_code = exit_code;
  self->have_exit_code = TRUE;
}

/* The last non-empty line of what the command printed. */
static char *
last_line (GString *output)
{
  g_autofree char *copy = g_strdup (output->str);
  char *end = copy + strlen (copy);
  char *start;

  while (end > copy && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    *--end = '\0';
  start = strrchr (copy, '\n');
  return bf_utf8_truncate (start ? start + 1 : copy, -1, 512);
}

static void
disk_done (BfHealth   *self,
           const char *failure)
{
  g_auto(GStrv) lines = g_strsplit (self->output->str, "\n", -1);
  g_auto(GStrv) fields = NULL;
  guint n = g_strv_length (lines);
  const char *data = NULL;
  guint64 total_kb, avail_kb;
  guint64 limit = self->config->min_free_disk_bytes;
  double percent;

  /* `df -Pk`: a header, then FS 1024-blocks Used Available Capacity Mount. */
  for (guint i = n; i > 0 && data == NULL; i--)
    if (*g_strstrip (lines[i - 1]) != '\0')
      data = lines[i - 1];
  if (failure != NULL || data == NULL || !self->have_exit_code || self->exit_code != 0)
    {
      g_autofree char *why = last_line (self->output);
      add_reason (self, "could not measure free disk space: %s", failure ? failure : why);
      return;
    }
  fields = g_strsplit_set (data, " \t", -1);
  {
    g_autoptr(GPtrArray) words = g_ptr_array_new ();
    for (guint i = 0; fields[i]; i++)
      if (*fields[i] != '\0')
        g_ptr_array_add (words, fields[i]);
    if (words->len < 4 || !g_ascii_isdigit (*(char *) words->pdata[1]) ||
        !g_ascii_isdigit (*(char *) words->pdata[3]))
      {
        add_reason (self, "could not read df's output: %.200s", data);
        return;
      }
    total_kb = g_ascii_strtoull (words->pdata[1], NULL, 10);
    avail_kb = g_ascii_strtoull (words->pdata[3], NULL, 10);
  }
  percent = total_kb ? 100.0 * avail_kb / total_kb : 0;
  if (self->config->min_free_disk_percent > 0 && percent < self->config->min_free_disk_percent)
    add_reason (self, "%.1f%% of its base directory's filesystem is free (MinFreeDisk=%g%%)",
                percent, self->config->min_free_disk_percent);
  else if (limit > 0 && avail_kb * 1024 < limit)
    {
      g_autofree char *have = g_format_size_full (avail_kb * 1024, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *want = g_format_size_full (limit, G_FORMAT_SIZE_IEC_UNITS);
      add_reason (self, "%s free in its base directory (MinFreeDisk=%s)", have, want);
    }
}

static void
command_done (BfHealth   *self,
              const char *failure)
{
  g_autofree char *why = last_line (self->output);

  if (failure != NULL && !self->have_exit_code)
    add_reason (self, "HealthCommand could not run: %s", failure);
  else if (!self->have_exit_code || self->exit_code != 0)
    add_reason (self, "HealthCommand exited with %d%s%s", self->have_exit_code ? self->exit_code : -1,
                *why ? ": " : "", why);
}

static void
sink_complete (gpointer    data,
               const char *failure,
               gboolean    lost)
{
  BfHealth *self = data;
  Step step = self->step;

  g_clear_pointer (&self->command_id, g_free);
  if (lost)
    {
      /* The worker went away: no verdict from half a round. */
      self->step = STEP_NONE;
      return;
    }
  if (step == STEP_DISK)
    {
      disk_done (self, failure);
      run_step (self, STEP_COMMAND);
    }
  else
    {
      command_done (self, failure);
      finish_round (self);
    }
}

static const BfCommandSink health_sink = {
  .output = sink_output,
  .exit_code = sink_exit_code,
  .complete = sink_complete,
};

static gboolean
start_shell (BfHealth           *self,
             const char * const *argv,
             const char         *what)
{
  const BfWorkerInfo *info = bf_worker_link_get_info (self->link);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) prepared = NULL;
  GVariantBuilder b;

  if (info == NULL || info->basedir == NULL)
    {
      add_reason (self, "cannot run %s: the worker did not report its base directory", what);
      return FALSE;
    }
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "command", g_variant_new_strv (argv, -1));
  g_variant_builder_add (&b, "{sv}", "workdir", g_variant_new_string (info->basedir));
  g_variant_builder_add (&b, "{sv}", "maxTime", g_variant_new_double (COMMAND_MAX_SECONDS));
  g_variant_builder_add (&b, "{sv}", "logEnviron", g_variant_new_boolean (FALSE));
  prepared = bf_worker_link_prepare_command (self->link, "shell", g_variant_builder_end (&b),
                                             BF_HEALTH_BUILDER, &error);
  if (prepared == NULL)
    {
      add_reason (self, "cannot run %s: %s", what, error->message);
      return FALSE;
    }
  g_string_truncate (self->output, 0);
  self->have_exit_code = FALSE;
  self->command_id = g_strdup_printf ("health-%u", ++self->seq);
  bf_worker_link_start_command (self->link, self->command_id, "shell", g_steal_pointer (&prepared),
                                BF_HEALTH_BUILDER, &health_sink, self);
  return TRUE;
}

/* Steps ----------------------------------------------------------------------------- */

static void
ping_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      data)
{
  BfHealth *self = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = bf_worker_link_ping_finish (BF_WORKER_LINK (source), result, &error);
  guint64 rtt;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;   /* detached: self may be gone with it */
  g_clear_object (&self->cancellable);
  if (!ok)
    {
      /* Liveness deals with a worker that does not answer. */
      self->step = STEP_NONE;
      arm (self, self->config->health_interval_usec);
      return;
    }
  rtt = (guint64) (g_get_monotonic_time () - self->ping_started);
  self->host->response_time (self->host_data, rtt);
  if (self->config->max_response_time_usec > 0 && rtt > self->config->max_response_time_usec)
    add_reason (self, "answered a ping in %.3f s (MaxResponseTime=%.3g s)",
                rtt / (double) G_USEC_PER_SEC, self->config->max_response_time_usec / (double) G_USEC_PER_SEC);
  run_step (self, STEP_DISK);
}

static void
run_step (BfHealth *self,
          Step      step)
{
  self->step = step;
  switch (step)
    {
    case STEP_NONE:
      break;

    case STEP_PING:
      self->cancellable = g_cancellable_new ();
      self->ping_started = g_get_monotonic_time ();
      bf_worker_link_ping_async (self->link, "buildfleetd: health check", PING_TIMEOUT_USEC,
                                 self->cancellable, ping_cb, self);
      return;

    case STEP_DISK:
      if (self->config->min_free_disk_bytes > 0 || self->config->min_free_disk_percent > 0)
        {
          const BfWorkerInfo *info = bf_worker_link_get_info (self->link);
          const char *argv[] = { "df", "-Pk", info && info->basedir ? info->basedir : ".", NULL };

          if (start_shell (self, argv, "the free disk check"))
            return;
        }
      run_step (self, STEP_COMMAND);
      return;

    case STEP_COMMAND:
      if (self->config->health_command != NULL)
        {
          const char *argv[] = { "sh", "-c", self->config->health_command, NULL };

          if (start_shell (self, argv, "HealthCommand"))
            return;
        }
      finish_round (self);
      return;
    }
}

static gboolean
timer_cb (gpointer data)
{
  BfHealth *self = data;

  if (self->link == NULL || self->step != STEP_NONE)
    return G_SOURCE_REMOVE;
  if (!self->host->idle (self->host_data))
    {
      arm (self, MIN (BUSY_RETRY_USEC, self->config->health_interval_usec));
      return G_SOURCE_REMOVE;
    }
  g_string_truncate (self->reasons, 0);
  run_step (self, STEP_PING);
  return G_SOURCE_REMOVE;
}

/* Object ----------------------------------------------------------------------------- */

BfHealth *
bf_health_new (const BfHealthHost *host,
               gpointer            host_data)
{
  BfHealth *self = g_new0 (BfHealth, 1);

  self->host = host;
  self->host_data = host_data;
  self->output = g_string_new (NULL);
  self->reasons = g_string_new (NULL);
  return self;
}

void
bf_health_set_config (BfHealth       *self,
                      BfWorkerConfig *config)
{
  gboolean was_on = self->config && self->config->health_interval_usec > 0;

  if (self->config)
    bf_worker_config_unref (self->config);
  self->config = bf_worker_config_ref (config);
  /* Checks just turned on run at once; a new interval counts from now. */
  if (self->step == STEP_NONE)
    arm (self, was_on ? config->health_interval_usec : 0);
}

/**
 * bf_health_attached:
 *
 * A round runs at once (the worker should not take builds on a full disk
 * for a whole interval), then every HealthInterval.
 */
void
bf_health_attached (BfHealth     *self,
                    BfWorkerLink *link)
{
  bf_health_detached (self);
  self->link = g_object_ref (link);
  arm (self, 0);
}

void
bf_health_detached (BfHealth *self)
{
  bf_timer_stop (&self->timer);
  if (self->cancellable)
    {
      g_cancellable_cancel (self->cancellable);
      g_clear_object (&self->cancellable);
    }
  if (self->command_id != NULL && self->link != NULL)
    bf_worker_link_forget_command (self->link, self->command_id);
  g_clear_pointer (&self->command_id, g_free);
  g_clear_object (&self->link);
  self->step = STEP_NONE;
}

void
bf_health_free (BfHealth *self)
{
  if (self == NULL)
    return;
  bf_health_detached (self);
  if (self->config)
    bf_worker_config_unref (self->config);
  g_string_free (self->output, TRUE);
  g_string_free (self->reasons, TRUE);
  g_free (self);
}
