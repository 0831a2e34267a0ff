/* test-config.c: the configuration parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <sys/stat.h>
#include <glib/gstdio.h>

#include "bf-config.h"
#include "config-test-util.h"

static void
test_defaults (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Worker a]\nPassword=p\n");
  BfWorkerConfig *w;

  g_assert_cmpstr (c->listen[0], ==, "*:9990");
  g_assert_null (c->listen[1]);
  g_assert_cmpstr (c->listen_pb[0], ==, "*:9989");
  g_assert_null (c->listen_pb[1]);
  g_assert_null (c->listen_pb_skipped);
  g_assert_cmpuint (c->keepalive_interval_usec, ==, 60 * G_USEC_PER_SEC);
  g_assert_cmpstr (c->mail_command, ==, "/usr/sbin/sendmail -t -oi");
  g_assert_null (c->tls_certificate);
  g_assert_cmpuint (c->workers->len, ==, 1);
  w = bf_config_lookup_worker (c, "a");
  g_assert_nonnull (w);
  g_assert_cmpstr (w->password, ==, "p");
  g_assert_cmpuint (w->max_builds, ==, 0);
  g_assert_cmpuint (g_strv_length (w->builders), ==, 0);
  g_assert_cmpuint (w->missing_timeout_usec, ==, 600 * G_USEC_PER_SEC);
  g_assert_cmpint (w->latent, ==, BF_LATENT_NONE);
  g_assert_true (g_variant_is_of_type (w->properties, G_VARIANT_TYPE_VARDICT));
}

/* Latent=docker: defaults, every key, and what is refused. */
static void
test_docker (void)
{
  g_autoptr(BfConfig) c = load_ok (
    "[Worker box]\n"
    "Password=generate\n"
    "Latent=docker\n"
    "Image=localhost/worker:1\n"
    "\n"
    "[Worker own]\n"
    "Password=p\n"
    "Latent=docker\n"
    "Image=buildbot/buildbot-worker\n"
    "Command=\n"
    "\n"
    "[Worker big]\n"
    "Password=p\n"
    "Latent=docker\n"
    "Image=buildbot/buildbot-worker:v3.7.0\n"
    "DockerHost=unix:///run/podman/podman.sock\n"
    "Volumes=/usr:/usr:ro; cache:/cache\n"
    "Network=host\n"
    "Ulimits=nofile=1024:20000;nproc=4096\n"
    "Command=sh -c 'exec buildbot-worker start --nodaemon /w'\n"
    "Pull=true\n"
    "Memory=2G\n"
    "CPUs=1.5\n"
    "AutoRemove=yes\n");
  BfWorkerConfig *box = bf_config_lookup_worker (c, "box");
  BfWorkerConfig *big = bf_config_lookup_worker (c, "big");
  g_autofree char *name = NULL;
  gint64 soft = 0, hard = 0;

  g_assert_cmpint (box->latent, ==, BF_LATENT_DOCKER);
  g_assert_cmpstr (bf_latent_kind_to_string (box->latent), ==, "docker");
  g_assert_cmpstr (box->docker_host, ==, "unix:///var/run/docker.sock");
  g_assert_null (box->volumes);
  g_assert_null (box->network);
  g_assert_null (box->command);
  g_assert_false (box->pull);
  g_assert_false (box->auto_remove);
  g_assert_cmpuint (box->memory_bytes, ==, 0);
  g_assert_cmpuint (box->nano_cpus, ==, 0);
  /* Command= empty: the image's own command. */
  g_assert_nonnull (bf_config_lookup_worker (c, "own")->command);
  g_assert_null (bf_config_lookup_worker (c, "own")->command[0]);

  g_assert_cmpstr (big->image, ==, "buildbot/buildbot-worker:v3.7.0");
  g_assert_cmpstr (big->docker_host, ==, "unix:///run/podman/podman.sock");
  g_assert_cmpuint (g_strv_length (big->volumes), ==, 2);
  g_assert_cmpstr (big->volumes[1], ==, "cache:/cache");
  g_assert_cmpstr (big->network, ==, "host");
  g_assert_cmpuint (g_strv_length (big->ulimits), ==, 2);
  g_assert_true (bf_config_parse_ulimit (big->ulimits[1], &name, &soft, &hard));
  g_assert_cmpstr (name, ==, "nproc");
  g_assert_cmpint (soft, ==, 4096);
  g_assert_cmpint (hard, ==, 4096);
  g_assert_cmpuint (g_strv_length (big->command), ==, 3);
  g_assert_cmpstr (big->command[2], ==, "exec buildbot-worker start --nodaemon /w");
  g_assert_true (big->pull);
  g_assert_true (big->auto_remove);
  g_assert_cmpuint (big->memory_bytes, ==, 2 * 1024 * 1024 * 1024ull);
  g_assert_cmpuint (big->nano_cpus, ==, 1500000000);

  assert_error ("[Worker a]\nPassword=p\nLatent=docker\n", "[Worker a]", "needs Image=", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nDockerHost=tcp://1.2.3.4:2375\n",
                "[Worker a] DockerHost", "not a unix socket", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nDockerHost=/run/docker.sock\n",
                "DockerHost", "unix:///PATH", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nVolumes=/usr\n",
                "test.conf:5:", "[Worker a] Volumes", "“/usr” is not a volume", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nVolumes=/a:relative\n", "Volumes", "not a volume", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nVolumes=/a:/b:rx\n", "Volumes", "not a volume", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nUlimits=nofile\n",
                "[Worker a] Ulimits", "“nofile” is not a limit", "NAME=SOFT:HARD", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nUlimits=nofile=20000:1024\n", "Ulimits", "not a limit", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nUlimits=nofile=a:b\n", "Ulimits", "not a limit", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nMemory=10%\n", "Memory", "not a memory limit", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nCPUs=many\n", "CPUs", "not a number of CPUs", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nPull=sometimes\n", "Pull", "not a boolean", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nCommand='unclosed\n", "Command", "cannot be split", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=local\nImage=x\n", "[Worker a] Image", "only Latent=docker", NULL);
  assert_error ("[Worker a]\nPassword=p\nImage=x\n", "[Worker a] Image", "only latent workers", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=docker\nImage=x\nUnit=u.service\n", "Unit", "only Latent=systemd", NULL);
}

static void
test_full (void)
{
  g_autoptr(BfConfig) c = load_ok (
    "[Daemon]\n"
    "Listen=127.0.0.1:9989;[::1]:9990     # worker endpoints\n"
    "KeepaliveInterval=0.5\n"
    "StateDirectory=/tmp/x\n"
    "MailFrom=me@example.com\n"
    "\n"
    "[Worker linux-01]\n"
    "Password=se#cret # kept whole: no comments in passwords\n"
    "MaxBuilds=2\n"
    "Builders=linux; docs ;\n"
    "MissingTimeout=0.25\n"
    "NotifyOnMissing=ops@example.com;dev@example.com\n"
    "Property.os=debian\n"
    "\n"
    "[Worker cloud-01]\n"
    "Password=generate\n"
    "Latent=command\n"
    "StartCommand=/usr/local/bin/start-vm %n\n"
    "BuildWaitTimeout=-1\n"
    "\n"
    "[Worker unit.1]\n"
    "Password=x\n"
    "Latent=systemd\n"
    "BuildWaitTimeout=0\n"
    "SubstantiationTimeout=12.5\n");
  BfWorkerConfig *w = bf_config_lookup_worker (c, "linux-01");
  BfWorkerConfig *l = bf_config_lookup_worker (c, "cloud-01");
  BfWorkerConfig *s = bf_config_lookup_worker (c, "unit.1");
  const char *os = NULL;

  g_assert_cmpstr (c->listen[0], ==, "127.0.0.1:9989");
  g_assert_cmpstr (c->listen[1], ==, "[::1]:9990");
  g_assert_cmpuint (c->keepalive_interval_usec, ==, 500000);
  g_assert_cmpstr (w->password, ==, "se#cret # kept whole: no comments in passwords");
  g_assert_cmpuint (w->max_builds, ==, 2);
  g_assert_cmpuint (g_strv_length (w->builders), ==, 2);
  g_assert_cmpstr (w->builders[1], ==, "docs");
  g_assert_true (bf_worker_config_serves (w, "docs"));
  g_assert_false (bf_worker_config_serves (w, "mac"));
  g_assert_cmpuint (w->missing_timeout_usec, ==, 250000);
  g_assert_cmpuint (g_strv_length (w->notify_on_missing), ==, 2);
  g_assert_true (g_variant_lookup (w->properties, "os", "&s", &os));
  g_assert_cmpstr (os, ==, "debian");

  g_assert_cmpint (l->latent, ==, BF_LATENT_COMMAND);
  g_assert_true (l->password_generate);
  g_assert_null (l->password);
  g_assert_cmpint (l->build_wait_timeout_usec, ==, -1);
  /* SubstantiationTimeout defaults to MissingTimeout. */
  g_assert_cmpuint (l->substantiation_timeout_usec, ==, 600 * G_USEC_PER_SEC);

  g_assert_cmpint (s->latent, ==, BF_LATENT_SYSTEMD);
  g_assert_cmpstr (s->unit, ==, "buildbot-worker@%n.service");
  g_assert_cmpint (s->build_wait_timeout_usec, ==, 0);
  g_assert_cmpuint (s->substantiation_timeout_usec, ==, 12500000);

  /* Workers stay in file order. */
  g_assert_cmpstr (((BfWorkerConfig *) g_ptr_array_index (c->workers, 2))->name, ==, "unit.1");
}

/* ListenPB=: default, empty, the default port taken by Listen=, overlaps. */
static void
test_listen_pb (void)
{
  {
    g_autoptr(BfConfig) c = load_ok ("[Daemon]\nListenPB=\n");
    g_assert_null (c->listen_pb[0]);
  }
  {
    g_autoptr(BfConfig) c = load_ok ("[Daemon]\nListen=*:9989\n");
    g_assert_null (c->listen_pb[0]);
    g_assert_cmpstr (c->listen_pb_skipped, ==, "*:9989");
  }
  {
    g_autoptr(BfConfig) c = load_ok ("[Daemon]\nListen=127.0.0.1:9989\n");
    g_assert_null (c->listen_pb[0]);
    g_assert_cmpstr (c->listen_pb_skipped, ==, "127.0.0.1:9989");
  }
  {
    g_autoptr(BfConfig) c = load_ok ("[Daemon]\nListen=127.0.0.1:0\nListenPB=127.0.0.1:0;[::1]:9989\n");
    g_assert_cmpstr (c->listen_pb[0], ==, "127.0.0.1:0");
    g_assert_cmpstr (c->listen_pb[1], ==, "[::1]:9989");
    g_assert_null (c->listen_pb_skipped);
  }
  {
    /* different addresses on one port do not overlap */
    g_autoptr(BfConfig) c = load_ok ("[Daemon]\nListen=127.0.0.1:7000\nListenPB=127.0.0.2:7000\n");
    g_assert_cmpstr (c->listen_pb[0], ==, "127.0.0.2:7000");
  }
  assert_error ("[Daemon]\nListen=127.0.0.1:7000\nListenPB=*:7000\n",
                "[Daemon] ListenPB", "*:7000 overlaps 127.0.0.1:7000 of Listen=", NULL);
  assert_error ("[Daemon]\nListenPB=0.0.0.0:9990\n",
                "[Daemon] ListenPB", "overlaps *:9990, the default of Listen=", NULL);
  assert_error ("[Daemon]\nListenPB=nowhere\n", "[Daemon] ListenPB", "HOST:PORT", NULL);
}

static void
test_errors (void)
{
  assert_error ("[Worker a]\nPassword=p\nColour=red\n", "test.conf:3:", "[Worker a] Colour", "unknown key", NULL);
  assert_error ("[Daemon]\nListen=nowhere\n", "test.conf:2:", "[Daemon] Listen", "HOST:PORT", NULL);
  assert_error ("[Daemon]\nListen=example.com:80\n", "not an IP address", NULL);
  assert_error ("[Daemon]\nListen=1.2.3.4:70000\n", "not a port number", NULL);
  assert_error ("[Daemon]\nKeepaliveInterval=0.01\n", "KeepaliveInterval", "at least 0.1", NULL);
  assert_error ("[Daemon]\nTlsCertificate=/x.pem\n", "TlsCertificate", "go together", NULL);
  assert_error ("[Worker a]\nPassword=p\nMaxBuilds=-1\n", "MaxBuilds", "not a whole number", NULL);
  assert_error ("[Worker a]\nPassword=p\nMaxBuilds=99999999999\n", "MaxBuilds", "too large", NULL);
  assert_error ("[Worker a]\nPassword=p\nMissingTimeout=1e12\n", "MissingTimeout", "ten years", NULL);
  assert_error ("[Worker a]\nPassword=p\nMissingTimeout=nan\n", "MissingTimeout", "not a number", NULL);
  assert_error ("[Worker a]\nPassword=p\n\n[Worker a]\nPassword=q\n", "test.conf:4:", "defined twice in this file (first at line 1)", NULL);
  assert_error ("[Worker a b]\nPassword=p\n", "test.conf:1:", "[Worker a b]", "not allowed", NULL);
  assert_error ("[Worker ]\nPassword=p\n", "not allowed", NULL);
  assert_error ("[Worker a]\nBuilders=x\n", "[Worker a]", "missing password", NULL);
  assert_error ("[Worker a]\nPassword=\n", "[Worker a] Password", "missing password", NULL);
  assert_error ("[Worker a]\nPassword=p\nPasswordFile=/x\n", "either Password or PasswordFile", NULL);
  assert_error ("[Worker a]\nPasswordFile=relative\n", "not an absolute path", NULL);
  assert_error ("[Worker a]\nPasswordFile=/nonexistent/pw\n", "[Worker a] PasswordFile", "cannot read the password file", NULL);
  assert_error ("[Worker a]\nPassword=generate\n", "only for latent workers", NULL);
  assert_error ("[Worker a]\nPassword=p\nBuildWaitTimeout=3\n", "BuildWaitTimeout", "only latent workers", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=kubernetes\n", "unknown latent driver", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=command\n", "needs StartCommand", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=local\nBuildWaitTimeout=-2\n", "BuildWaitTimeout", "negative", NULL);
  assert_error ("[Worker a]\nPassword=p\nNotifyOnMissing=not-an-address\n", "not a mail address", NULL);
  assert_error ("[Worker a]\nPassword=p\nNotifyOnMissing=-oQ@x\n", "not a mail address", NULL);
  assert_error ("[Workers]\nx=1\n", "[Workers]", "unknown group", NULL);
  assert_error ("[Worker a]\nno equals sign here\n", "test.conf", NULL);
  assert_error ("[Worker a]\nPassword=\xff\n", "not valid UTF-8", NULL);
}

/* [Worker] Protocol=: which protocol a latent worker's instances speak. */
static void
test_protocol (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Worker d]\nPassword=p\nLatent=local\n"
                                   "[Worker p]\nPassword=p\nLatent=local\nProtocol=pb\n"
                                   "[Worker m]\nPassword=p\nLatent=command\nStartCommand=/bin/true\n"
                                   "Protocol=msgpack   # a comment\n"
                                   "[Worker e]\nPassword=p\nLatent=systemd\nProtocol=\n"
                                   "[Worker s]\nPassword=p\n");

  /* Absent or empty: decided at start (PB when a PB endpoint is open). */
  g_assert_cmpint (bf_config_lookup_worker (c, "d")->protocol, ==, BF_WORKER_PROTOCOL_DEFAULT);
  g_assert_cmpint (bf_config_lookup_worker (c, "e")->protocol, ==, BF_WORKER_PROTOCOL_DEFAULT);
  g_assert_cmpint (bf_config_lookup_worker (c, "p")->protocol, ==, BF_WORKER_PROTOCOL_PB);
  g_assert_cmpint (bf_config_lookup_worker (c, "m")->protocol, ==, BF_WORKER_PROTOCOL_MSGPACK);
  g_assert_cmpint (bf_config_lookup_worker (c, "s")->protocol, ==, BF_WORKER_PROTOCOL_DEFAULT);
  g_assert_cmpstr (bf_worker_protocol_to_string (BF_WORKER_PROTOCOL_PB), ==, "pb");
  g_assert_cmpstr (bf_worker_protocol_to_string (BF_WORKER_PROTOCOL_MSGPACK), ==, "msgpack");
  g_assert_cmpstr (bf_worker_protocol_to_string (BF_WORKER_PROTOCOL_DEFAULT), ==, "");

  /* Anything else names the key, the value and the choices. */
  assert_error ("[Worker a]\nPassword=p\nLatent=local\nProtocol=websocket\n",
                "test.conf:4", "[Worker a] Protocol", "unknown protocol “websocket”", "pb", "msgpack", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=local\nProtocol=PB\n", "unknown protocol “PB”", NULL);
  assert_error ("[Worker a]\nPassword=p\nLatent=local\nProtocol=msgpack_experimental_v7\n",
                "unknown protocol", NULL);
  /* An attached worker speaks what it was created with: only latent
   * workers, whose instances the daemon creates, have the key. */
  assert_error ("[Worker a]\nPassword=p\nProtocol=pb\n", "[Worker a] Protocol", "only latent workers", NULL);
}

static void
test_names (void)
{
  g_assert_true (bf_worker_name_is_valid ("linux-01"));
  g_assert_true (bf_worker_name_is_valid ("a.b_c-D9"));
  g_assert_true (bf_worker_name_is_valid ("01234567890123456789012345678901234567890123456789"));
  g_assert_false (bf_worker_name_is_valid ("012345678901234567890123456789012345678901234567890"));
  g_assert_false (bf_worker_name_is_valid (""));
  g_assert_false (bf_worker_name_is_valid ("a/b"));
  g_assert_false (bf_worker_name_is_valid ("a b"));
  g_assert_false (bf_worker_name_is_valid ("ä"));
  g_assert_false (bf_worker_name_is_valid ("a:b"));
}

static void
test_durations (void)
{
  gint64 usec = 0;
  g_autoptr(GError) error = NULL;

  g_assert_true (bf_config_parse_duration ("0.5", FALSE, &usec, NULL));
  g_assert_cmpint (usec, ==, 500000);
  g_assert_true (bf_config_parse_duration ("3600", FALSE, &usec, NULL));
  g_assert_cmpint (usec, ==, (gint64) 3600 * G_USEC_PER_SEC);
  g_assert_true (bf_config_parse_duration ("-1", TRUE, &usec, NULL));
  g_assert_cmpint (usec, ==, -1);
  g_assert_false (bf_config_parse_duration ("-1", FALSE, &usec, &error));
  g_assert_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
  g_clear_error (&error);
  g_assert_false (bf_config_parse_duration ("1s", FALSE, &usec, &error));
  g_clear_error (&error);
  g_assert_false (bf_config_parse_duration ("", FALSE, &usec, &error));
  g_clear_error (&error);
  g_assert_false (bf_config_parse_duration ("inf", FALSE, &usec, &error));
}

static void
test_mail_digest_interval (void)
{
  g_autoptr(BfConfig) defaults = load_ok ("[Daemon]\n");
  g_autoptr(BfConfig) off = load_ok ("[Daemon]\nMailDigestInterval=0\n");
  g_autoptr(BfConfig) short_one = load_ok ("[Daemon]\nMailDigestInterval=0.5\n");

  g_assert_cmpuint (defaults->mail_digest_interval_usec, ==, 60 * G_USEC_PER_SEC);
  g_assert_cmpuint (off->mail_digest_interval_usec, ==, 0);
  g_assert_cmpuint (short_one->mail_digest_interval_usec, ==, G_USEC_PER_SEC / 2);
  assert_error ("[Daemon]\nMailDigestInterval=-1\n", "MailDigestInterval", NULL);
  assert_error ("[Daemon]\nMailDigestInterval=soon\n", "MailDigestInterval", NULL);
  assert_error ("[Daemon]\nMailDigestInterval=86401\n", "MailDigestInterval", "at most a day", NULL);
}

static void
test_endpoints (void)
{
  g_autofree char *host = NULL;
  guint16 port = 1;

  g_assert_true (bf_config_parse_endpoint ("[::1]:9989", &host, &port, NULL));
  g_assert_cmpstr (host, ==, "::1");
  g_assert_cmpuint (port, ==, 9989);
  g_clear_pointer (&host, g_free);
  g_assert_true (bf_config_parse_endpoint ("*:0", &host, &port, NULL));
  g_assert_cmpstr (host, ==, "*");
  g_assert_cmpuint (port, ==, 0);
  g_assert_false (bf_config_parse_endpoint ("::1:9989", NULL, NULL, NULL));
  g_assert_false (bf_config_parse_endpoint (":9989", NULL, NULL, NULL));
  g_assert_false (bf_config_parse_endpoint ("[::1]9989", NULL, NULL, NULL));
}

static void
test_dropins (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bf-config-XXXXXX", NULL);
  g_autofree char *main_path = g_build_filename (dir, "buildfleet.conf", NULL);
  g_autofree char *dropdir = g_build_filename (dir, "buildfleet.conf.d", NULL);
  g_autofree char *d1 = g_build_filename (dropdir, "10-a.conf", NULL);
  g_autofree char *d2 = g_build_filename (dropdir, "20-b.conf", NULL);
  g_autofree char *d3 = g_build_filename (dropdir, "30-c.conf.disabled", NULL);
  g_autofree char *pw = g_build_filename (dir, "pw", NULL);
  g_autofree char *text = NULL;
  g_autoptr(BfConfig) c = NULL;
  g_autoptr(GError) error = NULL;

  g_mkdir (dropdir, 0700);
  g_file_set_contents (pw, "from-file\r\nignored\n", -1, NULL);
  text = g_strdup_printf ("[Worker a]\nPasswordFile=%s\nMaxBuilds=1\nBuilders=x\n", pw);
  g_file_set_contents (main_path, text, -1, NULL);
  /* Lexical order: 20 overrides 10; 30 is not a .conf file. */
  g_file_set_contents (d2, "[Worker a]\nMaxBuilds=3\n\n[Worker b]\nPassword=q\n", -1, NULL);
  g_file_set_contents (d1, "[Worker a]\nMaxBuilds=2\n", -1, NULL);
  g_file_set_contents (d3, "[Worker c]\nPassword=q\n", -1, NULL);

  c = bf_config_load (main_path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (c->workers->len, ==, 2);
  g_assert_cmpuint (bf_config_lookup_worker (c, "a")->max_builds, ==, 3);
  g_assert_cmpstr (bf_config_lookup_worker (c, "a")->password, ==, "from-file");
  g_assert_cmpstr (bf_config_lookup_worker (c, "a")->builders[0], ==, "x");
  g_assert_nonnull (bf_config_lookup_worker (c, "b"));
  g_assert_null (bf_config_lookup_worker (c, "c"));
  g_assert_cmpuint (g_strv_length (c->files), ==, 3);

  /* An error in a drop-in names the drop-in and its line. */
  g_file_set_contents (d1, "[Worker a]\n\nMissingTimeout=many\n", -1, NULL);
  g_clear_pointer (&c, bf_config_unref);
  c = bf_config_load (main_path, &error);
  g_assert_null (c);
  g_assert_nonnull (strstr (error->message, "10-a.conf:3:"));
  g_assert_nonnull (strstr (error->message, "[Worker a] MissingTimeout"));

  g_unlink (d1);
  g_unlink (d2);
  g_unlink (d3);
  g_rmdir (dropdir);
  g_unlink (main_path);
  g_unlink (pw);
  g_rmdir (dir);
}

static void
assert_load_error (const char *path,
                   const char *first,
                   ...)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfConfig) c = bf_config_load (path, &error);
  va_list args;

  g_assert_null (c);
  g_assert_nonnull (error);
  va_start (args, first);
  for (const char *s = first; s; s = va_arg (args, const char *))
    if (strstr (error->message, s) == NULL)
      g_error ("expected “%s” in error “%s”", s, error->message);
  va_end (args);
}

/* A FIFO or a device among the files is refused at once (a read would
 * block or never end), and every file is bounded in size. */
static void
test_special_files (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bf-config-XXXXXX", NULL);
  g_autofree char *main_path = g_build_filename (dir, "buildfleet.conf", NULL);
  g_autofree char *dropdir = g_build_filename (dir, "buildfleet.conf.d", NULL);
  g_autofree char *fifo = g_build_filename (dropdir, "50-pipe.conf", NULL);
  g_autofree char *big = g_build_filename (dir, "big-password", NULL);
  g_autofree char *big_text = g_strnfill (5000, 'x');
  g_autofree char *text = NULL;

  g_mkdir (dropdir, 0700);
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_file_set_contents (main_path, "[Worker a]\nPassword=p\n", -1, NULL);
  assert_load_error (main_path, fifo, "not a regular file (a FIFO)", NULL);
  g_unlink (fifo);

  g_file_set_contents (main_path, "[Worker a]\nPasswordFile=/dev/zero\n", -1, NULL);
  assert_load_error (main_path, "/dev/zero", "not a regular file (a character device)", "PasswordFile", NULL);

  g_file_set_contents (big, big_text, -1, NULL);
  text = g_strdup_printf ("[Worker a]\nPasswordFile=%s\n", big);
  g_file_set_contents (main_path, text, -1, NULL);
  assert_load_error (main_path, big, "larger than 4096 bytes", NULL);

  /* A directory named like a drop-in. */
  g_mkdir (fifo, 0700);
  g_file_set_contents (main_path, "[Worker a]\nPassword=p\n", -1, NULL);
  assert_load_error (main_path, fifo, "not a regular file (a directory)", NULL);
  g_rmdir (fifo);

  g_unlink (big);
  g_rmdir (dropdir);
  g_unlink (main_path);
  g_rmdir (dir);
}

/* The digest changes with any byte of any file read, password files
 * included, and is there when loading fails too. */
static void
test_digest (void)
{
  g_autofree char *dir = g_dir_make_tmp ("bf-config-XXXXXX", NULL);
  g_autofree char *main_path = g_build_filename (dir, "buildfleet.conf", NULL);
  g_autofree char *pw = g_build_filename (dir, "pw", NULL);
  g_autofree char *text = NULL;
  g_autofree char *d1 = NULL, *d2 = NULL, *d3 = NULL, *d4 = NULL, *d5 = NULL;
  g_autoptr(BfConfig) c = NULL;
  g_autoptr(GError) error = NULL;

  g_file_set_contents (pw, "one\n", -1, NULL);
  text = g_strdup_printf ("[Worker a]\nPasswordFile=%s\n", pw);
  g_file_set_contents (main_path, text, -1, NULL);
  c = bf_config_load_full (main_path, &d1, &error);
  g_assert_no_error (error);
  g_clear_pointer (&c, bf_config_unref);
  c = bf_config_load_full (main_path, &d2, &error);
  g_assert_no_error (error);
  g_clear_pointer (&c, bf_config_unref);
  g_assert_cmpstr (d1, ==, d2);

  g_file_set_contents (pw, "two\n", -1, NULL);
  c = bf_config_load_full (main_path, &d3, &error);
  g_assert_no_error (error);
  g_clear_pointer (&c, bf_config_unref);
  g_assert_cmpstr (d1, !=, d3);
  g_assert_null (strstr (d3, "two"));

  g_file_set_contents (main_path, "[Worker a]\nPassw", -1, NULL);
  c = bf_config_load_full (main_path, &d4, &error);
  g_assert_null (c);
  g_assert_nonnull (d4);
  g_clear_error (&error);
  g_file_set_contents (main_path, "[Worker a]\nPasswo", -1, NULL);
  c = bf_config_load_full (main_path, &d5, &error);
  g_assert_null (c);
  g_clear_error (&error);
  g_assert_cmpstr (d4, !=, d5);

  g_unlink (pw);
  g_unlink (main_path);
  g_rmdir (dir);
}

static void
test_labels (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Worker a]\nPassword=x\nLabels=gpu;os=debian;arch=amd64\n"
                                "[Worker b]\nPassword=x\n");
  BfWorkerConfig *a = bf_config_lookup_worker (c, "a");
  BfWorkerConfig *b = bf_config_lookup_worker (c, "b");

  g_assert_cmpuint (g_strv_length (a->labels), ==, 3);
  g_assert_cmpstr (a->labels[1], ==, "os=debian");
  g_assert_cmpuint (g_strv_length (b->labels), ==, 0);
  assert_error ("[Worker a]\nPassword=x\nLabels=gpu;two words\n", "Labels", "two words", NULL);
  g_assert_true (bf_label_is_valid ("cpus=8"));
  g_assert_false (bf_label_is_valid (""));
  g_assert_false (bf_label_is_valid ("a,b"));
  g_assert_false (bf_label_is_valid ("tab\there"));
}

static void
test_health_keys (void)
{
  g_autoptr(BfConfig) c = load_ok ("[Worker a]\nPassword=x\nHealthInterval=30\nMinFreeDisk=2G\n"
                                   "MaxResponseTime=0.5\nHealthCommand=test -w /tmp\n"
                                   "[Worker b]\nPassword=x\nMinFreeDisk=5%\n");
  BfWorkerConfig *a = bf_config_lookup_worker (c, "a");
  BfWorkerConfig *b = bf_config_lookup_worker (c, "b");

  g_assert_cmpuint (a->health_interval_usec, ==, 30 * G_USEC_PER_SEC);
  g_assert_cmpuint (a->min_free_disk_bytes, ==, G_GUINT64_CONSTANT (2) << 30);
  g_assert_cmpuint (a->max_response_time_usec, ==, G_USEC_PER_SEC / 2);
  g_assert_cmpstr (a->health_command, ==, "test -w /tmp");
  g_assert_cmpfloat (b->min_free_disk_percent, ==, 5.0);
  g_assert_cmpuint (b->health_interval_usec, ==, 0);
  assert_error ("[Worker a]\nPassword=x\nMinFreeDisk=lots\n", "MinFreeDisk", "lots", NULL);
  assert_error ("[Worker a]\nPassword=x\nMinFreeDisk=120%\n", "MinFreeDisk", NULL);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/full", test_full);
  g_test_add_func ("/config/docker", test_docker);
  g_test_add_func ("/config/errors", test_errors);
  g_test_add_func ("/config/mail-digest-interval", test_mail_digest_interval);
  g_test_add_func ("/config/protocol", test_protocol);
  g_test_add_func ("/config/listen-pb", test_listen_pb);
  g_test_add_func ("/config/names", test_names);
  g_test_add_func ("/config/durations", test_durations);
  g_test_add_func ("/config/endpoints", test_endpoints);
  g_test_add_func ("/config/dropins", test_dropins);
  g_test_add_func ("/config/special-files", test_special_files);
  g_test_add_func ("/config/digest", test_digest);
  g_test_add_func ("/config/labels", test_labels);
  g_test_add_func ("/config/health", test_health_keys);

  return g_test_run ();
}
