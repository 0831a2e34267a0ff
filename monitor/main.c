/* main.c: buildfleet-monitor, the desktop monitor of buildfleetd
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <locale.h>

#include <glib/gi18n.h>

#include "bf-monitor-application.h"

int
main (int   argc,
      char *argv[])
{
  g_autoptr(BfMonitorApplication) app = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  g_set_application_name (_("Build Fleet Monitor"));

  app = bf_monitor_application_new ();

  return g_application_run (G_APPLICATION (app), argc, argv);
}
