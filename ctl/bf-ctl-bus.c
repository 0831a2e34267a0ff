/* bf-ctl-bus.c: the connection, errors and exit codes, the polkit agent,
 * and the lookups every command shares (workers by name, builds)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bf-ctl.h"

/* A page of GetWorkerPage: small enough to take a few tens of ms. */
#define WORKER_PAGE_LIMIT 1000
/* Calls that may wait for a password: as long as the user types. */
#define INTERACTIVE_TIMEOUT_MSEC G_MAXINT

gboolean
bf_ctl_connect (BfCtl   *ctl,
                GError **error)
{
  if (ctl->address)
    ctl->bus = g_dbus_connection_new_for_address_sync (ctl->address,
                                                       G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                       G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                       NULL, NULL, error);
  else
    ctl->bus = g_bus_get_sync (ctl->session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM, NULL, error);
  if (ctl->bus == NULL)
    {
      g_prefix_error (error, "Cannot connect to the %s: ",
                      ctl->address ? "bus at that address" : ctl->session ? "session bus" : "system bus");
      return FALSE;
    }
  g_dbus_connection_set_exit_on_close (ctl->bus, FALSE);
  return TRUE;
}

/* Prints what went wrong and returns the exit code for it. */
int
bf_ctl_error (BfCtl      *ctl,
              GError     *error,
              const char *doing)
{
  g_autofree char *remote = g_dbus_error_get_remote_error (error);
  int code = BF_CTL_EXIT_FAILED;
  const char *hint = NULL;

  g_dbus_error_strip_remote_error (error);
  if (remote == NULL)
    {
      if (error->domain == G_IO_ERROR || error->domain == G_DBUS_ERROR)
        code = BF_CTL_EXIT_UNAVAILABLE;
    }
  else if (g_str_equal (remote, "org.buildfleet.Fleet1.Error.NotFound") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.UnknownObject"))
    code = BF_CTL_EXIT_NOT_FOUND;
  else if (g_str_equal (remote, "org.buildfleet.Fleet1.Error.AccessDenied") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.AccessDenied") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"))
    {
      code = BF_CTL_EXIT_DENIED;
      if (ctl->no_ask_password || !isatty (STDIN_FILENO))
        hint = "run it as root, or where polkit can ask for a password (a terminal, without --no-ask-password)";
    }
  else if (g_str_equal (remote, "org.buildfleet.Fleet1.Error.InvalidArgs") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.InvalidArgs"))
    code = BF_CTL_EXIT_USAGE;
  else if (g_str_equal (remote, "org.freedesktop.DBus.Error.ServiceUnknown") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.NameHasNoOwner") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.NoReply") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.Disconnected"))
    {
      code = BF_CTL_EXIT_UNAVAILABLE;
      g_free (error->message);
      error->message = g_strdup_printf ("buildfleetd is not running on the %s (nobody owns %s)",
                                        ctl->address ? "bus at that address" :
                                        ctl->session ? "session bus" : "system bus",
                                        BF_CTL_BUS_NAME);
    }
  else if (g_str_equal (remote, "org.freedesktop.DBus.Error.UnknownMethod") ||
           g_str_equal (remote, "org.freedesktop.DBus.Error.UnknownInterface"))
    code = BF_CTL_EXIT_FAILED;

  g_printerr ("buildfleetctl: %s%s%s%s%s\n", doing ? doing : "", doing ? ": " : "", error->message,
              hint ? "; " : "", hint ? hint : "");
  return code;
}

/* Like systemctl: a text polkit agent on our terminal while we change
 * something, unless --no-ask-password or there is no terminal. */
void
bf_ctl_start_agent (BfCtl *ctl)
{
  int pipefd[2];
  g_autofree char *notify = NULL;
  char buf[1];
  GPid pid;

  if (ctl->no_ask_password || ctl->agent_pid != 0 || !isatty (STDIN_FILENO) ||
      geteuid () == 0 || ctl->session)
    return;
  if (!g_file_test ("/usr/bin/pkttyagent", G_FILE_TEST_IS_EXECUTABLE))
    return;
  if (pipe (pipefd) != 0)
    return;
  pid = fork ();
  if (pid < 0)
    {
      close (pipefd[0]);
      close (pipefd[1]);
      return;
    }
  if (pid == 0)
    {
      notify = g_strdup_printf ("%d", pipefd[1]);
      close (pipefd[0]);
      execl ("/usr/bin/pkttyagent", "pkttyagent", "--notify-fd", notify, "--fallback", NULL);
      _exit (127);
    }
  close (pipefd[1]);
  /* The agent closes the descriptor once it is registered. */
  while (read (pipefd[0], buf, 1) > 0)
    ;
  close (pipefd[0]);
  ctl->agent_pid = pid;
}

void
bf_ctl_stop_agent (BfCtl *ctl)
{
  if (ctl->agent_pid == 0)
    return;
  kill (ctl->agent_pid, SIGTERM);
  waitpid (ctl->agent_pid, NULL, 0);
  ctl->agent_pid = 0;
}

BfDBusManager *
bf_ctl_manager (BfCtl   *ctl,
                GError **error)
{
  BfDBusManager *manager;

  manager = bf_dbus_manager_proxy_new_sync (ctl->bus, G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                            BF_CTL_BUS_NAME, BF_CTL_FLEET_PATH, NULL, error);
  if (manager)
    g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (manager), INTERACTIVE_TIMEOUT_MSEC);
  return manager;
}

/* Worker names as the user writes them: never object paths. */
char *
bf_ctl_worker_path (BfCtl      *ctl,
                    const char *name,
                    GError    **error)
{
  g_autoptr(BfDBusManager) manager = bf_ctl_manager (ctl, error);
  char *path = NULL;

  if (manager == NULL)
    return NULL;
  if (!bf_dbus_manager_call_get_worker_sync (manager, name, &path, NULL, error))
    return NULL;
  return path;
}

/* The last element of @path, unescaped: a worker's name or a build's number. */
char *
bf_ctl_name_from_path (const char *path)
{
  const char *slash = strrchr (path, '/');
  g_autofree guint8 *raw = NULL;

  if (slash == NULL || slash[1] == '\0')
    return g_strdup (path);
  raw = g_dbus_unescape_object_path (slash + 1);
  if (raw == NULL || !g_utf8_validate ((const char *) raw, -1, NULL))
    return g_strdup (slash + 1);
  return g_strdup ((const char *) raw);
}

/* Every interface's properties in one a{sv}, with "Path" and "Latent". */
static GVariant *
merge_interfaces (const char *path,
                  GVariant   *interfaces)
{
  GVariantBuilder b;
  GVariantIter iter;
  const char *iface;
  GVariant *props;
  gboolean latent = FALSE;

  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "Path", g_variant_new_object_path (path));
  g_variant_iter_init (&iter, interfaces);
  while (g_variant_iter_next (&iter, "{&s@a{sv}}", &iface, &props))
    {
      GVariantIter piter;
      const char *key;
      GVariant *value;

      if (g_str_equal (iface, "org.buildfleet.Fleet1.LatentWorker"))
        latent = TRUE;
      g_variant_iter_init (&piter, props);
      while (g_variant_iter_next (&piter, "{&sv}", &key, &value))
        {
          g_variant_builder_add (&b, "{sv}", key, value);
          g_variant_unref (value);
        }
      g_variant_unref (props);
    }
  g_variant_builder_add (&b, "{sv}", "Latent", g_variant_new_boolean (latent));
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

/* The cursor just before the first name that starts with @prefix: names
 * are letters, digits, '-', '_' and '.', all below '~' (strcmp order). */
static char *
cursor_before (const char *prefix)
{
  gsize len = strlen (prefix);
  GString *s;

  if (len == 0)
    return g_strdup ("");
  s = g_string_new_len (prefix, (gssize) len - 1);
  g_string_append_c (s, (char) (prefix[len - 1] - 1));
  for (guint i = 0; i < 64; i++)
    g_string_append_c (s, '~');
  return g_string_free (s, FALSE);
}

/**
 * bf_ctl_fetch_workers:
 * @properties: property names (NULL for all); with @prefix, "Name" among them
 * @prefix: (nullable): only the workers whose names start with it
 *
 * Every worker (or those starting with @prefix), in name order, a page at a
 * time (GetWorkerPage), so that a fleet of any size can be listed; with a
 * prefix only the pages that hold it are read.
 *
 * Returns: (element-type GVariant): a{sv} per worker
 */
GPtrArray *
bf_ctl_fetch_workers (BfCtl              *ctl,
                      const char * const *properties,
                      const char         *prefix,
                      GError            **error)
{
  g_autoptr(BfDBusManager) manager = bf_ctl_manager (ctl, error);
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autofree char *after = cursor_before (prefix ? prefix : "");
  const char * const none[] = { NULL };
  gboolean past_prefix = FALSE;

  if (manager == NULL)
    return NULL;
  for (;;)
    {
      g_autoptr(GVariant) page = NULL;
      g_autofree char *next = NULL;
      GVariantIter iter;
      const char *path;
      GVariant *ifaces;

      if (!bf_dbus_manager_call_get_worker_page_sync (manager, properties ? properties : none,
                                                      after, prefix ? WORKER_PAGE_LIMIT / 10 : WORKER_PAGE_LIMIT,
                                                      &page, &next,
                                                      NULL, error))
        return NULL;
      g_variant_iter_init (&iter, page);
      while (!past_prefix && g_variant_iter_next (&iter, "{&o@a{sa{sv}}}", &path, &ifaces))
        {
          GVariant *worker = merge_interfaces (path, ifaces);
          const char *name = "";

          g_variant_unref (ifaces);
          g_variant_lookup (worker, "Name", "&s", &name);
          if (prefix && !g_str_has_prefix (name, prefix))
            {
              past_prefix = TRUE;
              g_variant_unref (worker);
              break;
            }
          g_ptr_array_add (out, worker);
        }
      if (past_prefix || next == NULL || *next == '\0')
        break;
      g_free (after);
      after = g_steal_pointer (&next);
    }
  return g_steal_pointer (&out);
}

static gint
compare_build_numbers (gconstpointer a,
                       gconstpointer b)
{
  const char *pa = strrchr (*(const char **) a, '/');
  const char *pb = strrchr (*(const char **) b, '/');

  return (int) (g_ascii_strtoull (pa + 1, NULL, 10) > g_ascii_strtoull (pb + 1, NULL, 10)) -
         (int) (g_ascii_strtoull (pa + 1, NULL, 10) < g_ascii_strtoull (pb + 1, NULL, 10));
}

/**
 * bf_ctl_fetch_builds:
 *
 * Every build on the bus (children of /org/buildfleet/Fleet1/builds, found
 * by introspection, so that listing builds never transfers every worker).
 *
 * Returns: (element-type GVariant): a{sv} of each build's properties, with "Path"
 */
GPtrArray *
bf_ctl_fetch_builds (BfCtl   *ctl,
                     GError **error)
{
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GDBusNodeInfo) node = NULL;
  g_autoptr(GError) local_error = NULL;
  const char *xml;

  reply = g_dbus_connection_call_sync (ctl->bus, BF_CTL_BUS_NAME, BF_CTL_BUILDS_PATH,
                                       "org.freedesktop.DBus.Introspectable", "Introspect",
                                       NULL, G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE,
                                       -1, NULL, error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(&s)", &xml);
  node = g_dbus_node_info_new_for_xml (xml, error);
  if (node == NULL)
    return NULL;
  for (guint i = 0; node->nodes && node->nodes[i]; i++)
    g_ptr_array_add (paths, g_strconcat (BF_CTL_BUILDS_PATH "/", node->nodes[i]->path, NULL));
  g_ptr_array_sort (paths, compare_build_numbers);

  for (guint i = 0; i < paths->len; i++)
    {
      const char *path = g_ptr_array_index (paths, i);
      g_autoptr(GVariant) all = NULL;
      g_autoptr(GVariant) props = NULL;
      GVariantBuilder b;
      GVariantIter iter;
      const char *key;
      GVariant *value;

      all = g_dbus_connection_call_sync (ctl->bus, BF_CTL_BUS_NAME, path,
                                         "org.freedesktop.DBus.Properties", "GetAll",
                                         g_variant_new ("(s)", "org.buildfleet.Fleet1.Build"),
                                         G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE,
                                         -1, NULL, &local_error);
      if (all == NULL)
        {
          /* Gone between the two calls: a finished build's time was up. */
          g_clear_error (&local_error);
          continue;
        }
      props = g_variant_get_child_value (all, 0);
      g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
      g_variant_builder_add (&b, "{sv}", "Path", g_variant_new_object_path (path));
      g_variant_iter_init (&iter, props);
      while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
        {
          g_variant_builder_add (&b, "{sv}", key, value);
          g_variant_unref (value);
        }
      g_ptr_array_add (out, g_variant_ref_sink (g_variant_builder_end (&b)));
    }
  return g_steal_pointer (&out);
}
