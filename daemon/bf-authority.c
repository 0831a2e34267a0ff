/* bf-authority.c: polkit authorisation of mutating D-Bus methods
 *
 * Like systemd: callers with uid 0 (and, on the session bus, the daemon's
 * own user) are allowed without asking polkit; everybody else is asked
 * about asynchronously, with interaction allowed, using the caller's
 * unique bus name as the subject.  The main loop never waits.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <unistd.h>
#include <polkit/polkit.h>

#include "bf-authority.h"
#include "bf-error.h"

struct _BfAuthority
{
  GObject parent_instance;

  gboolean session_bus;
  PolkitAuthority *polkit;     /* NULL until first needed */
  GCancellable *cancellable;
};

G_DEFINE_FINAL_TYPE (BfAuthority, bf_authority, G_TYPE_OBJECT)

typedef struct {
  BfAuthority *authority;
  GObject *object;
  GDBusMethodInvocation *invocation;
  char *action_id;
  BfAuthorizedFunc func;
} Check;

static void
check_free (Check *c)
{
  g_clear_object (&c->authority);
  g_clear_object (&c->object);
  g_clear_object (&c->invocation);
  g_free (c->action_id);
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
  g_dbus_method_invocation_return_error (c->invocation, BF_ERROR, BF_ERROR_ACCESS_DENIED,
                                         "Not authorised: %s needs the polkit action %s%s%s",
                                         g_dbus_method_invocation_get_method_name (c->invocation),
                                         c->action_id,
                                         detail ? "; " : "", detail ? detail : "");
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
  c->func (c->object, c->invocation);
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
  if (uid == 0 || (c->authority->session_bus && uid == getuid ()))
    {
      c->func (c->object, c->invocation);
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
