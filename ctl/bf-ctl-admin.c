/* bf-ctl-admin.c: the commands that change something — pause, unpause,
 * graceful, shutdown, disconnect, substantiate, insubstantiate, reload
 *
 * Each is one authorised method call; a polkit agent runs on the terminal
 * meanwhile (bf_ctl_start_agent()).  Quiet on success, like systemctl.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-ctl.h"

/* Long enough for a password prompt, or a latent worker's start. */
#define ADMIN_TIMEOUT_MSEC G_MAXINT

int
bf_ctl_cmd_admin (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  const char *name = ctl->args[0];
  g_autofree char *path = bf_ctl_worker_path (ctl, name, &error);
  g_autofree char *doing = NULL;
  gboolean ok;

  if (path == NULL)
    return bf_ctl_error (ctl, error, NULL);

  bf_ctl_start_agent (ctl);
  if (g_str_equal (ctl->command, "substantiate") || g_str_equal (ctl->command, "insubstantiate"))
    {
      g_autoptr(BfDBusLatentWorker) latent = NULL;
      g_auto(GStrv) names = NULL;

      latent = bf_dbus_latent_worker_proxy_new_sync (ctl->bus, G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                                     BF_CTL_BUS_NAME, path, NULL, &error);
      if (latent == NULL)
        return bf_ctl_error (ctl, error, NULL);
      names = g_dbus_proxy_get_cached_property_names (G_DBUS_PROXY (latent));
      if (names == NULL || names[0] == NULL)
        {
          g_printerr ("buildfleetctl: Cannot %s %s: it is not a latent worker (no Latent= in its section)\n",
                      ctl->command, name);
          return BF_CTL_EXIT_USAGE;
        }
      g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (latent), ADMIN_TIMEOUT_MSEC);
      if (g_str_equal (ctl->command, "substantiate"))
        ok = bf_dbus_latent_worker_call_substantiate_sync (latent, NULL, &error);
      else
        ok = bf_dbus_latent_worker_call_insubstantiate_sync (latent, ctl->fast, NULL, &error);
    }
  else
    {
      g_autoptr(BfDBusWorker) worker = NULL;

      worker = bf_dbus_worker_proxy_new_sync (ctl->bus,
                                              G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS |
                                              G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES,
                                              BF_CTL_BUS_NAME, path, NULL, &error);
      if (worker == NULL)
        return bf_ctl_error (ctl, error, NULL);
      g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (worker), ADMIN_TIMEOUT_MSEC);
      if (g_str_equal (ctl->command, "pause"))
        ok = bf_dbus_worker_call_pause_sync (worker, ctl->args[1] ? ctl->args[1] : "", NULL, &error);
      else if (g_str_equal (ctl->command, "unpause"))
        ok = bf_dbus_worker_call_unpause_sync (worker, NULL, &error);
      else if (g_str_equal (ctl->command, "graceful"))
        ok = bf_dbus_worker_call_set_graceful_sync (worker, !ctl->cancel, NULL, &error);
      else if (g_str_equal (ctl->command, "shutdown"))
        ok = bf_dbus_worker_call_shutdown_sync (worker, NULL, &error);
      else if (g_str_equal (ctl->command, "disconnect"))
        ok = bf_dbus_worker_call_disconnect_sync (worker, NULL, &error);
      else
        g_assert_not_reached ();
    }
  bf_ctl_stop_agent (ctl);
  if (!ok)
    {
      doing = g_strdup_printf ("Cannot %s %s", ctl->command, name);
      return bf_ctl_error (ctl, error, doing);
    }
  return BF_CTL_EXIT_OK;
}

int
bf_ctl_cmd_reload (BfCtl *ctl)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(BfDBusManager) manager = bf_ctl_manager (ctl, &error);
  gboolean ok;

  if (manager == NULL)
    return bf_ctl_error (ctl, error, NULL);
  bf_ctl_start_agent (ctl);
  ok = bf_dbus_manager_call_reload_sync (manager, NULL, &error);
  bf_ctl_stop_agent (ctl);
  if (!ok)
    return bf_ctl_error (ctl, error, "Cannot reload");
  return BF_CTL_EXIT_OK;
}
