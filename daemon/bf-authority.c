/* bf-authority.c: polkit authorisation of mutating D-Bus methods
 *
 * Like systemd: callers with uid 0 (and, on the session bus, the daemon's
 * own user) are allowed without asking polkit; everybody else is asked
 * about asynchronously, with interaction allowed, using the caller's
 * unique bus name as the subject.  The main loop never waits: the uid
 * comes from the bus asynchronously, its user name from a worker thread
 * (NSS may ask the network).  Every decision is logged with the caller's
 * user name and uid, and the caller is attached to the invocation for the
 * method to record (bf_authority_get_caller()).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <pwd.h>
#include <unistd.h>
#include <polkit/polkit.h>

#include "bf-authority.h"
#include "bf-error.h"
#include "bf-log.h"

struct _BfAuthority
{
  GObject parent_instance;

  gboolean session_bus;
  PolkitAuthority *polkit;     /* NULL until first needed */
  GCancellable *cancellable;
  GQueue lookups;              /* Check: waiting for their user name, in call order; the
                                * head's lookup runs while looking_up */
  gboolean looking_up;
};

G_DEFINE_FINAL_TYPE (BfAuthority, bf_authority, G_TYPE_OBJECT)

typedef struct {
  BfAuthority *authority;
  GObject *object;
  GDBusMethodInvocation *invocation;
  char *action_id;
  BfAuthorizedFunc func;
  guint32 uid;
  char *user;                  /* user name, or the uid as a number */
} Check;

typedef struct {
  char *user;
  guint32 uid;
} Caller;

static void
caller_free (Caller *caller)
{
  g_free (caller->user);
  g_free (caller);
}

#define CALLER_KEY "bf-authority-caller"

/**
 * bf_authority_get_caller:
 * @invocation: a call that bf_authority_check() authorised
 * @uid: (out) (optional): the caller's uid
 *
 * Returns: (nullable): the caller's user name (the uid as a number when
 *   the user has no name), NULL for a call that was not checked
 */
const char *
bf_authority_get_caller (GDBusMethodInvocation *invocation,
                         guint32               *uid)
{
  Caller *caller = g_object_get_data (G_OBJECT (invocation), CALLER_KEY);

  if (uid)
    *uid = caller ? caller->uid : (guint32) -1;
  return caller ? caller->user : NULL;
}

/* "Pause on /org/buildfleet/Fleet1/workers/w" */
static char *
describe_call (GDBusMethodInvocation *invocation)
{
  return g_strdup_printf ("%s.%s on %s",
                          g_dbus_method_invocation_get_interface_name (invocation),
                          g_dbus_method_invocation_get_method_name (invocation),
                          g_dbus_method_invocation_get_object_path (invocation));
}

static void
check_free (Check *c)
{
  g_clear_object (&c->authority);
  g_clear_object (&c->object);
  g_clear_object (&c->invocation);
  g_free (c->action_id);
  g_free (c->user);
  g_free (c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Check, check_free)

static void
bf_authority_dispose (GObject *object)
{
  BfAuthority *self = BF_AUTHORITY (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->polkit);
  G_OBJECT_CLASS (bf_authority_parent_class)->dispose (object);
}

static void
bf_authority_finalize (GObject *object)
{
  BfAuthority *self = BF_AUTHORITY (object);

  g_clear_object (&self->cancellable);
  G_OBJECT_CLASS (bf_authority_parent_class)->finalize (object);
}

static void
bf_authority_class_init (BfAuthorityClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bf_authority_dispose;
  object_class->finalize = bf_authority_finalize;
}

static void
bf_authority_init (BfAuthority *self)
{
  self->cancellable = g_cancellable_new ();
}

BfAuthority *
bf_authority_new (gboolean session_bus)
{
  BfAuthority *self = g_object_new (BF_TYPE_AUTHORITY, NULL);

  self->session_bus = session_bus;
  return self;
}

static void
deny (Check      *c,
      const char *detail)
{
  g_autofree char *what = describe_call (c->invocation);

  g_message ("Denied %s to %s (uid %d, %s): %s", what, c->user ? c->user : "an unknown user",
             c->user ? (int) c->uid : -1, g_dbus_method_invocation_get_sender (c->invocation),
             detail ? detail : "not authorised by polkit");
  g_dbus_method_invocation_return_error (c->invocation, BF_ERROR, BF_ERROR_ACCESS_DENIED,
                                         "Not authorised: %s needs the polkit action %s%s%s",
                                         g_dbus_method_invocation_get_method_name (c->invocation),
                                         c->action_id,
                                         detail ? "; " : "", detail ? detail : "");
}

/* Logs who did it, tells the method who called, and runs it. */
static void
allow (Check      *c,
       const char *how)
{
  g_autofree char *what = describe_call (c->invocation);
  Caller *caller = g_new0 (Caller, 1);

  caller->user = g_strdup (c->user);
  caller->uid = c->uid;
  g_object_set_data_full (G_OBJECT (c->invocation), CALLER_KEY, caller, (GDestroyNotify) caller_free);
  g_message ("%s by %s (uid %u, %s), %s", what, c->user, c->uid,
             g_dbus_method_invocation_get_sender (c->invocation), how);
  c->func (c->object, c->invocation);
}

static void
check_authorization_cb (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(Check) c = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(PolkitAuthorizationResult) res = NULL;

  res = polkit_authority_check_authorization_finish (POLKIT_AUTHORITY (source), result, &error);
  if (res == NULL)
    {
      g_autofree char *why = g_strdup_printf ("polkit could not be asked: %s", error->message);
      deny (c, why);
      return;
    }
  if (!polkit_authorization_result_get_is_authorized (res))
    {
      deny (c, polkit_authorization_result_get_dismissed (res) ? "the authentication dialog was dismissed" : NULL);
      return;
    }
  allow (c, "authorised by polkit");
}

static void
ask_polkit (Check *c)
{
  g_autoptr(PolkitSubject) subject = NULL;

  subject = polkit_system_bus_name_new (g_dbus_method_invocation_get_sender (c->invocation));
  polkit_authority_check_authorization (c->authority->polkit, subject, c->action_id, NULL,
                                        POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION,
                                        c->authority->cancellable,
                                        check_authorization_cb, c);
}

static void
get_authority_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  Check *c = user_data;
  g_autoptr(GError) error = NULL;
  PolkitAuthority *polkit;

  polkit = polkit_authority_get_finish (result, &error);
  if (polkit == NULL)
    {
      g_autofree char *why = g_strdup_printf ("polkit is not available: %s", error->message);
      deny (c, why);
      check_free (c);
      return;
    }
  if (c->authority->polkit == NULL)
    c->authority->polkit = polkit;
  else
    g_object_unref (polkit);
  ask_polkit (c);
}

/* getpwuid_r() may block on NSS (LDAP, sssd): never on the main loop. */
static void
lookup_user_thread (GTask        *task,
                    gpointer      source_object,
                    gpointer      task_data,
                    GCancellable *cancellable)
{
  guint32 uid = GPOINTER_TO_UINT (task_data);
  struct passwd pw, *found = NULL;
  char buf[4096];

  if (getpwuid_r (uid, &pw, buf, sizeof buf, &found) == 0 && found != NULL && found->pw_name[0])
    g_task_return_pointer (task, g_strdup (found->pw_name), g_free);
  else
    g_task_return_pointer (task, g_strdup_printf ("%u", uid), g_free);
}

static void lookup_user_cb (GObject      *source,
                            GAsyncResult *result,
                            gpointer      user_data);
static void lookup_next    (BfAuthority  *self);
static void decide         (Check        *c);

static void
get_unix_user_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  Check *c = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = NULL;
  guint32 uid;

  reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (reply == NULL)
    {
      g_autofree char *why = g_strdup_printf ("the caller's user is unknown: %s", error->message);
      deny (c, why);
      check_free (c);
      return;
    }
  g_variant_get (reply, "(u)", &uid);
  c->uid = uid;
  /* One lookup at a time, so that calls are decided in the order they
   * came (one worker's admin calls take effect in that order). */
  g_queue_push_tail (&c->authority->lookups, c);
  lookup_next (c->authority);
}

static void
lookup_next (BfAuthority *self)
{
  g_autoptr(GTask) task = NULL;
  Check *c;

  if (self->looking_up || g_queue_is_empty (&self->lookups))
    return;
  c = g_queue_peek_head (&self->lookups);
  self->looking_up = TRUE;
  task = g_task_new (self, NULL, lookup_user_cb, g_object_ref (self));
  g_task_set_source_tag (task, lookup_next);
  g_task_set_task_data (task, GUINT_TO_POINTER (c->uid), NULL);
  g_task_run_in_thread (task, lookup_user_thread);
}

static void
lookup_user_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(BfAuthority) self = user_data;
  Check *c = g_queue_pop_head (&self->lookups);
  guint32 uid = c->uid;

  self->looking_up = FALSE;
  c->user = g_task_propagate_pointer (G_TASK (result), NULL);
  if (c->user == NULL)
    c->user = g_strdup_printf ("%u", uid);
  decide (c);
  lookup_next (self);
}

static void
decide (Check *c)
{
  guint32 uid = c->uid;

  if (uid == 0 || (c->authority->session_bus && uid == getuid ()))
    {
      allow (c, uid == 0 ? "allowed as root" : "allowed as the daemon's own user");
      check_free (c);
      return;
    }
  if (c->authority->session_bus)
    {
      deny (c, "on the session bus only the daemon's own user may change things");
      check_free (c);
      return;
    }
  if (c->authority->polkit == NULL)
    polkit_authority_get_async (c->authority->cancellable, get_authority_cb, c);
  else
    ask_polkit (c);
}

/**
 * bf_authority_check:
 * @object: kept alive until @func ran or the call was denied
 * @invocation: the call; denied with org.buildfleet.Fleet1.Error.AccessDenied
 *   naming @action_id when the caller is not authorised
 * @action_id: a polkit action id
 * @func: what to do once authorised
 */
void
bf_authority_check (BfAuthority           *self,
                    GObject               *object,
                    GDBusMethodInvocation *invocation,
                    const char            *action_id,
                    BfAuthorizedFunc       func)
{
  Check *c = g_new0 (Check, 1);
  const char *sender = g_dbus_method_invocation_get_sender (invocation);

  c->authority = g_object_ref (self);
  c->object = g_object_ref (object);
  c->invocation = g_object_ref (invocation);
  c->action_id = g_strdup (action_id);
  c->func = func;

  if (sender == NULL)
    {
      deny (c, "the call did not come through a message bus");
      check_free (c);
      return;
    }

  g_dbus_connection_call (g_dbus_method_invocation_get_connection (invocation),
                          "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "GetConnectionUnixUser",
                          g_variant_new ("(s)", sender), G_VARIANT_TYPE ("(u)"),
                          G_DBUS_CALL_FLAGS_NONE, -1, self->cancellable,
                          get_unix_user_cb, c);
}
