/* bf-pause-dialog.c: asks why a worker is paused
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include <glib/gi18n.h>

#include "bf-pause-dialog.h"

/* Worker.Pause() accepts at most this many bytes. */
#define BF_PAUSE_REASON_MAX_BYTES 1024

struct _BfPauseDialog
{
  AdwMessageDialog  parent_instance;

  GtkEntry         *reason_entry;
};

G_DEFINE_FINAL_TYPE (BfPauseDialog, bf_pause_dialog, ADW_TYPE_MESSAGE_DIALOG)

static void
on_reason_changed (BfPauseDialog *self,
                   GtkEditable   *editable)
{
  const char *text = gtk_editable_get_text (editable);
  gboolean too_long = strlen (text) > BF_PAUSE_REASON_MAX_BYTES;

  adw_message_dialog_set_response_enabled (ADW_MESSAGE_DIALOG (self), "pause", !too_long);
  if (too_long)
    gtk_widget_add_css_class (GTK_WIDGET (self->reason_entry), "error");
  else
    gtk_widget_remove_css_class (GTK_WIDGET (self->reason_entry), "error");
}

static void
bf_pause_dialog_class_init (BfPauseDialogClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/buildfleet/Monitor/bf-pause-dialog.ui");
  gtk_widget_class_bind_template_child (widget_class, BfPauseDialog, reason_entry);
  gtk_widget_class_bind_template_callback (widget_class, on_reason_changed);
}

static void
bf_pause_dialog_init (BfPauseDialog *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
bf_pause_dialog_new (GtkWindow  *parent,
                     const char *worker_name)
{
  g_autofree char *heading = NULL;

  g_return_val_if_fail (worker_name != NULL, NULL);

  /* Translators: dialog heading, %s is a worker name */
  heading = g_strdup_printf (_("Pause %s?"), worker_name);

  return g_object_new (BF_TYPE_PAUSE_DIALOG,
                       "transient-for", parent,
                       "modal", TRUE,
                       "heading", heading,
                       NULL);
}

const char *
bf_pause_dialog_get_reason (BfPauseDialog *self)
{
  g_return_val_if_fail (BF_IS_PAUSE_DIALOG (self), NULL);
  return gtk_editable_get_text (GTK_EDITABLE (self->reason_entry));
}
