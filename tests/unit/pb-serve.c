/* pb-serve.c: one BfPbLink against a real PB worker, without the daemon
 *
 * pb-serve PORT-FILE PASSWORD [SHELL-COMMAND]: listens on 127.0.0.1 (port
 * 0, written to PORT-FILE), serves the login of the first worker that
 * comes with PASSWORD (wrong ones are refused and counted), attaches it,
 * prints its info as lines "info KEY=VALUE", runs SHELL-COMMAND (sh -c) on
 * builder "b1" and prints every output chunk as "out STREAM TEXT", the exit
 * code as "rc N" and the end as "complete FAILURE" ("-" on success); then
 * shuts the worker down ("shutdown ok") and exits 0.  With PB_SERVE_CERT and
 * PB_SERVE_KEY in the environment it speaks TLS (a worker made with
 * --use-tls).  With "interrupt" as
 * the second command word, interrupts the command after its first output.
 * Used by tests/unit/test_pb_link.py.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bf-pb-auth.h"
#include "bf-pb-link.h"
#include "bf-worker-link.h"

static GMainLoop *loop;
static const char *password;
static const char *command;
static gboolean interrupt_after_output;
static gboolean interrupted;
static BfPbLink *the_link;
static guint refused;
static int status = 1;

static BfPbAuthResult
auth_cb (const char   *name,
         const guint8 *challenge,
         gsize         challenge_len,
         const guint8 *response,
         gsize         response_len,
         const char   *peer,
         gpointer      user_data)
{
  if (bf_pb_auth_check (challenge, challenge_len, password, strlen (password), response, response_len))
    return BF_PB_AUTH_ACCEPT;
  printf ("refused %s %u\n", name, ++refused);
  fflush (stdout);
  return BF_PB_AUTH_REFUSE;
}

static void
sink_output (gpointer user_data, const char *stream, const char *text, gsize len)
{
  printf ("out %s %.*s\n", stream, (int) len, text);
  fflush (stdout);
  if (interrupt_after_output && !interrupted && g_str_equal (stream, "stdout"))
    {
      interrupted = TRUE;
      bf_worker_link_interrupt_command (BF_WORKER_LINK (the_link), "c1", "b1", "test interrupt");
    }
}

static void
sink_exit_code (gpointer user_data, int exit_code)
{
  printf ("rc %d\n", exit_code);
  fflush (stdout);
}

static void
shutdown_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr(GError) error = NULL;

  if (bf_worker_link_shutdown_finish (BF_WORKER_LINK (source), result, &error))
    printf ("shutdown ok\n");
  else
    printf ("shutdown failed %s\n", error->message);
  status = 0;
  g_main_loop_quit (loop);
}

static void
sink_complete (gpointer user_data, const char *failure, gboolean lost)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) busy_args = g_variant_ref_sink (g_variant_new_parsed ("{'paths': <['x']>}"));
  g_autoptr(GVariant) prepared = NULL;

  printf ("complete %s%s\n", failure ? failure : "-", lost ? " (lost)" : "");
  fflush (stdout);
  /* the builder is free again */
  prepared = bf_worker_link_prepare_command (BF_WORKER_LINK (the_link), "mkdir", busy_args, "b1", &error);
  printf ("free-after %s\n", prepared ? "yes" : error->message);
  bf_worker_link_shutdown_async (BF_WORKER_LINK (the_link), NULL, shutdown_cb, NULL);
}

static const BfCommandSink sink = { sink_output, sink_exit_code, sink_complete };

static void
attach_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  BfWorkerLink *link = BF_WORKER_LINK (source);
  g_autoptr(GError) error = NULL;
  const BfWorkerInfo *info;
  g_autoptr(GVariant) args = NULL;
  g_autoptr(GVariant) prepared = NULL;
  g_autoptr(GVariant) second = NULL;
  GVariantIter iter;
  const char *k, *v;

  if (!bf_worker_link_attach_finish (link, result, &error))
    {
      printf ("attach failed %s\n", error->message);
      g_main_loop_quit (loop);
      return;
    }
  info = bf_worker_link_get_info (link);
  printf ("info admin=%s\ninfo host=%s\ninfo version=%s\ninfo basedir=%s\n",
          info->admin, info->host, info->version, info->basedir ? info->basedir : "");
  g_variant_iter_init (&iter, info->commands);
  while (g_variant_iter_next (&iter, "{&s&s}", &k, &v))
    printf ("command %s=%s\n", k, v);
  printf ("protocol %s\n", bf_worker_link_get_protocol (link));
  fflush (stdout);

  args = g_variant_ref_sink (g_variant_new_parsed ("{'command': <['sh', '-c', %s]>, 'workdir': <'wd'>}", command));
  prepared = bf_worker_link_prepare_command (link, "shell", args, "b1", &error);
  g_assert_no_error (error);
  bf_worker_link_start_command (link, "c1", "shell", g_steal_pointer (&prepared), "b1", &sink, NULL);
  second = bf_worker_link_prepare_command (link, "shell", args, "b1", &error);
  printf ("second %s\n", second ? "accepted" : error->message);
  fflush (stdout);
}

static void
logged_in_cb (BfPbLink *link, gpointer user_data)
{
  the_link = link;
  printf ("logged-in %s\n", bf_worker_link_get_worker_name (BF_WORKER_LINK (link)));
  fflush (stdout);
  bf_worker_link_attach_async (BF_WORKER_LINK (link), NULL, attach_cb, NULL);
}

static void
closed_cb (BfPbLink *link, const char *reason, gpointer user_data)
{
  printf ("closed %s\n", reason);
  fflush (stdout);
  if (link == the_link && status != 0)
    g_main_loop_quit (loop);
}

static GTlsCertificate *certificate;

static gboolean
incoming_cb (GSocketService    *service,
             GSocketConnection *connection,
             GObject           *source,
             gpointer           user_data)
{
  g_autoptr(GIOStream) stream = G_IO_STREAM (g_object_ref (connection));
  BfPbLink *link;

  if (certificate != NULL)
    {
      g_autoptr(GError) error = NULL;

      g_object_unref (stream);
      stream = G_IO_STREAM (g_tls_server_connection_new (G_IO_STREAM (connection), certificate, &error));
      g_assert_no_error (error);
    }
  link = bf_pb_link_new (stream, "peer", certificate != NULL, 10 * G_USEC_PER_SEC, auth_cb, NULL);

  g_signal_connect (link, "logged-in", G_CALLBACK (logged_in_cb), NULL);
  g_signal_connect (link, "closed", G_CALLBACK (closed_cb), NULL);
  /* every link lives until the program ends */
  bf_pb_link_start (link, 30 * G_USEC_PER_SEC, 9990);
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(GSocketService) service = g_socket_service_new ();
  g_autoptr(GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (lo, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *port = NULL;

  if (argc < 4)
    {
      fprintf (stderr, "usage: pb-serve PORT-FILE PASSWORD SHELL-COMMAND [interrupt]\n");
      return 2;
    }
  password = argv[2];
  command = argv[3];
  interrupt_after_output = argc > 4 && g_str_equal (argv[4], "interrupt");
  /* PB_SERVE_CERT and PB_SERVE_KEY: serve TLS */
  if (g_getenv ("PB_SERVE_CERT"))
    {
      certificate = g_tls_certificate_new_from_files (g_getenv ("PB_SERVE_CERT"), g_getenv ("PB_SERVE_KEY"), &error);
      if (certificate == NULL)
        g_error ("%s", error->message);
    }
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (service), address, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error))
    g_error ("%s", error->message);
  port = g_strdup_printf ("%u", g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  g_file_set_contents (argv[1], port, -1, NULL);
  g_signal_connect (service, "incoming", G_CALLBACK (incoming_cb), NULL);
  loop = g_main_loop_new (NULL, FALSE);
  g_main_loop_run (loop);
  return status;
}
