/* bf-worker-actions.c: the worker.* actions of the window, as one table
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * Every action on a worker is one D-Bus method of the Worker or LatentWorker
 * interface that returns nothing: one row of the table below says which,
 * with which arguments, what to ask first (a pause reason, a confirmation
 * for what cannot be undone), when the action is enabled and how a failure
 * is worded.  Calls go through the worker row's generated proxies, which
 * exist once bf_worker_row_ensure_proxies_async() made them; until then the
 * actions are disabled.  Every call is asynchronous and its error goes to
 * the host's show_error() in the daemon's words.
 */

#include "config.h"

#include <glib/gi18n.h>

#include "bf-pause-dialog.h"
#include "bf-worker-actions.h"
#include "bf-worker-row.h"
#include "bf-worker-util.h"

typedef enum
{
  BF_ASK_NOTHING,
  BF_ASK_PAUSE_REASON,  /* the reason given is the call's argument */
  BF_ASK_CONFIRM,       /* a destructive action: confirm first */
} BfAsk;

typedef struct
{
  const char *name;              /* the widget action */
  const char *parameter_type;    /* the action's parameter, passed on as the call's argument */
  gboolean    latent;            /* a method of the LatentWorker interface */
  const char *method;
  const char *fixed_args;        /* the call's arguments as GVariant text, if always the same */
  int         timeout_msec;
  BfAsk       ask;
  const char *failure;           /* %s is the worker's name */
  const char *failure_if_false;  /* the same for a boolean parameter that is false */
  const char *confirm_heading;   /* BF_ASK_CONFIRM: %s is the worker's name */
  const char *confirm_body;
  const char *confirm_label;
  gboolean  (*enabled) (BfDBusWorker *worker,
                        const char   *latent_state);
} BfWorkerAction;

static gboolean
always (BfDBusWorker *worker,
        const char   *latent_state)
{
  return TRUE;
}

static gboolean
if_paused (BfDBusWorker *worker,
           const char   *latent_state)
{
  return bf_dbus_worker_get_paused (worker);
}

static gboolean
if_connected (BfDBusWorker *worker,
              const char   *latent_state)
{
  return bf_dbus_worker_get_connected (worker);
}

static gboolean
if_not_substantiated (BfDBusWorker *worker,
                      const char   *latent_state)
{
  return g_strcmp0 (latent_state, "not-substantiated") == 0;
}

static gboolean
if_substantiated (BfDBusWorker *worker,
                  const char   *latent_state)
{
  return g_strcmp0 (latent_state, "substantiated") == 0 ||
         g_strcmp0 (latent_state, "substantiating") == 0;
}

static const BfWorkerAction actions[] = {
  { "worker.pause", NULL, FALSE, "Pause", NULL, -1, BF_ASK_PAUSE_REASON,
    /* Translators: %s is a worker name */
    N_("Could not pause %s"), NULL, NULL, NULL, NULL, always },
  { "worker.unpause", NULL, FALSE, "Unpause", NULL, -1, BF_ASK_NOTHING,
    /* Translators: %s is a worker name */
    N_("Could not unpause %s"), NULL, NULL, NULL, NULL, if_paused },
  { "worker.set-graceful", "b", FALSE, "SetGraceful", NULL, -1, BF_ASK_NOTHING,
    /* Translators: %s is a worker name */
    N_("Could not shut %s down gracefully"),
    /* Translators: %s is a worker name */
    N_("Could not cancel the graceful shutdown of %s"), NULL, NULL, NULL, always },
  { "worker.shutdown", NULL, FALSE, "Shutdown", NULL, -1, BF_ASK_CONFIRM,
    /* Translators: %s is a worker name */
    N_("Could not shut down %s"), NULL,
    /* Translators: dialog heading, %s is a worker name */
    N_("Shut Down %s?"),
    N_("The worker process exits once the daemon asks it to. "
       "Builds running on it are lost, and it does not come back by itself."),
    N_("_Shut Down"), if_connected },
  { "worker.disconnect", NULL, FALSE, "Disconnect", NULL, -1, BF_ASK_NOTHING,
    /* Translators: %s is a worker name */
    N_("Could not disconnect %s"), NULL, NULL, NULL, NULL, if_connected },
  /* Substantiate() returns only once the instance attached, which may take
   * the whole SubstantiationTimeoutUSec: wait as long as the daemon does
   * rather than the default 25 s. */
  { "worker.substantiate", NULL, TRUE, "Substantiate", NULL, G_MAXINT, BF_ASK_NOTHING,
    /* Translators: %s is a latent worker's name */
    N_("Could not start %s"), NULL, NULL, NULL, NULL, if_not_substantiated },
  { "worker.insubstantiate", NULL, TRUE, "Insubstantiate", "(false,)", -1, BF_ASK_NOTHING,
    /* Translators: %s is a latent worker's name */
    N_("Could not stop %s"), NULL, NULL, NULL, NULL, if_substantiated },
};

/* One class installs them (the window's); set once in its class_init. */
static const BfWorkerActionHost *action_host;

static const BfWorkerAction *
find_action (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (actions); i++)
    if (g_str_equal (actions[i].name, name))
      return &actions[i];
  g_return_val_if_reached (NULL);
}

/* The generated proxy that the action's method is called on, or NULL until
 * it exists. */
static GDBusProxy *
action_proxy (const BfWorkerAction *action,
              BfDBusWorker         *worker)
{
  if (!BF_IS_WORKER_ROW (worker))
    return NULL;
  if (action->latent)
    return (GDBusProxy *) bf_worker_row_get_latent_proxy (BF_WORKER_ROW (worker));
  return (GDBusProxy *) bf_worker_row_get_proxy (BF_WORKER_ROW (worker));
}

typedef struct
{
  GtkWidget *widget;
  char      *failure;
} BfCall;

static void
bf_call_free (BfCall *call)
{
  g_object_unref (call->widget);
  g_free (call->failure);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BfCall, bf_call_free)

static void
call_done_cb (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(BfCall) call = user_data;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (object), result, &error);
  if (reply == NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    action_host->show_error (call->widget, call->failure, error);
}

/* @parameter: (nullable): the action's; @reason: (nullable): the pause reason */
static void
action_call (GtkWidget            *widget,
             const BfWorkerAction *action,
             BfDBusWorker         *worker,
             GVariant             *parameter,
             const char           *reason)
{
  GDBusProxy *proxy = action_proxy (action, worker);
  const char *failure = action->failure;
  BfCall *call;
  GVariant *args = NULL;

  if (proxy == NULL)
    return;

  if (parameter != NULL)
    {
      args = g_variant_new_tuple (&parameter, 1);
      if (action->failure_if_false != NULL && !g_variant_get_boolean (parameter))
        failure = action->failure_if_false;
    }
  else if (action->fixed_args != NULL)
    args = g_variant_new_parsed (action->fixed_args);
  else if (action->ask == BF_ASK_PAUSE_REASON)
    args = g_variant_new ("(s)", reason != NULL ? reason : "");

  call = g_new0 (BfCall, 1);
  call->widget = g_object_ref (widget);
  call->failure = g_strdup_printf (_(failure), bf_dbus_worker_get_name (worker));
  g_dbus_proxy_call (proxy, action->method, args, G_DBUS_CALL_FLAGS_NONE, action->timeout_msec,
                     action_host->get_cancellable (widget), call_done_cb, call);
}

static void
ask_response_cb (AdwMessageDialog *dialog,
                 const char       *response,
                 gpointer          user_data)
{
  g_autoptr(BfDBusWorker) worker = user_data;
  const BfWorkerAction *action = g_object_get_data (G_OBJECT (dialog), "bf-worker-action");
  GtkWindow *parent = gtk_window_get_transient_for (GTK_WINDOW (dialog));

  /* BfPauseDialog answers "pause", the confirmation "confirm". */
  if (parent == NULL || g_strcmp0 (response, BF_IS_PAUSE_DIALOG (dialog) ? "pause" : "confirm") != 0)
    return;

  action_call (GTK_WIDGET (parent), action, worker, NULL,
               BF_IS_PAUSE_DIALOG (dialog) ? bf_pause_dialog_get_reason (BF_PAUSE_DIALOG (dialog)) : NULL);
}

/* A dialog transient for @widget's window whose positive response makes
 * the call. */
static void
action_ask (GtkWidget            *widget,
            const BfWorkerAction *action,
            BfDBusWorker         *worker)
{
  GtkWindow *window = GTK_WINDOW (gtk_widget_get_root (widget));
  const char *name = bf_dbus_worker_get_name (worker);
  AdwMessageDialog *dialog;

  if (action->ask == BF_ASK_PAUSE_REASON)
    {
      dialog = ADW_MESSAGE_DIALOG (bf_pause_dialog_new (window, name));
    }
  else
    {
      g_autofree char *heading = g_strdup_printf (_(action->confirm_heading), name);

      dialog = ADW_MESSAGE_DIALOG (adw_message_dialog_new (window, heading, _(action->confirm_body)));
      adw_message_dialog_add_responses (dialog,
                                        "cancel", _("_Cancel"),
                                        "confirm", _(action->confirm_label),
                                        NULL);
      adw_message_dialog_set_response_appearance (dialog, "confirm", ADW_RESPONSE_DESTRUCTIVE);
      adw_message_dialog_set_default_response (dialog, "cancel");
      adw_message_dialog_set_close_response (dialog, "cancel");
    }
  g_object_set_data (G_OBJECT (dialog), "bf-worker-action", (gpointer) action);
  g_signal_connect (dialog, "response", G_CALLBACK (ask_response_cb), g_object_ref (worker));
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
action_activate (GtkWidget  *widget,
                 const char *action_name,
                 GVariant   *parameter)
{
  const BfWorkerAction *action = find_action (action_name);
  BfDBusWorker *worker = action_host->get_worker (widget);

  if (action == NULL || worker == NULL || action_proxy (action, worker) == NULL)
    return;

  if (action->ask != BF_ASK_NOTHING)
    action_ask (widget, action, worker);
  else
    action_call (widget, action, worker, parameter, NULL);
}

/**
 * bf_worker_actions_install:
 * @widget_class: the class of the widget that shows the worker
 * @host: (not nullable): how the actions reach the worker; static
 *
 * Installs every worker.* action of the table.
 */
void
bf_worker_actions_install (GtkWidgetClass           *widget_class,
                           const BfWorkerActionHost *host)
{
  g_return_if_fail (action_host == NULL || action_host == host);

  action_host = host;
  for (guint i = 0; i < G_N_ELEMENTS (actions); i++)
    gtk_widget_class_install_action (widget_class, actions[i].name, actions[i].parameter_type,
                                     action_activate);
}

/**
 * bf_worker_actions_update:
 * @widget: the widget the actions are installed on
 * @worker: (nullable): the worker they act on
 *
 * Enables the actions that make sense for the worker's state, once the
 * proxies they call exist.
 */
void
bf_worker_actions_update (GtkWidget    *widget,
                          BfDBusWorker *worker)
{
  g_autoptr(BfDBusLatentWorker) latent = NULL;
  const char *latent_state = NULL;

  if (worker != NULL && (latent = bf_worker_dup_latent (worker)) != NULL)
    latent_state = bf_dbus_latent_worker_get_state (latent);

  for (guint i = 0; i < G_N_ELEMENTS (actions); i++)
    gtk_widget_action_set_enabled (widget, actions[i].name,
                                   worker != NULL &&
                                   action_proxy (&actions[i], worker) != NULL &&
                                   actions[i].enabled (worker, latent_state));
}
