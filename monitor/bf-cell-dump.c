/* bf-cell-dump.c: what the cells of a column view show, read from the widgets
 *
 * For the tests (the "app.test-dump" action): each row on screen, top to
 * bottom, as the text its cells' visible labels and inscriptions show
 * (joined by a space) and the tooltip a pointer over the cell would get,
 * keyed by the column's title.  Nothing is recomputed from the model, so a
 * cell that shows the wrong thing fails a test even when the model is
 * right.  Only rows GTK has made (the visible ones and a few more) exist.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bf-cell-dump.h"

/* The visible text of @widget and its visible descendants, in order. */
static void
append_text (GtkWidget *widget,
             GString   *out)
{
  const char *text = NULL;

  if (!gtk_widget_get_visible (widget))
    return;
  if (GTK_IS_LABEL (widget))
    text = gtk_label_get_text (GTK_LABEL (widget));
  else if (GTK_IS_INSCRIPTION (widget))
    text = gtk_inscription_get_text (GTK_INSCRIPTION (widget));
  if (text != NULL && *text != '\0')
    {
      if (out->len > 0)
        g_string_append_c (out, ' ');
      g_string_append (out, text);
    }
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    append_text (child, out);
}

/* The first tooltip set on @widget or a visible descendant. */
static const char *
find_tooltip (GtkWidget *widget)
{
  const char *tooltip;

  if (!gtk_widget_get_visible (widget))
    return NULL;
  tooltip = gtk_widget_get_tooltip_text (widget);
  if (tooltip != NULL)
    return tooltip;
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    if ((tooltip = find_tooltip (child)) != NULL)
      return tooltip;
  return NULL;
}

/* The row widgets under @widget: those whose children are cells. */
static void
collect_rows (GtkWidget *widget,
              GPtrArray *rows)
{
  GtkWidget *first = gtk_widget_get_first_child (widget);

  if (first != NULL && g_str_equal (G_OBJECT_TYPE_NAME (first), "GtkColumnViewCell"))
    {
      if (gtk_widget_get_mapped (widget))
        g_ptr_array_add (rows, widget);
      return;
    }
  for (GtkWidget *child = first; child != NULL; child = gtk_widget_get_next_sibling (child))
    collect_rows (child, rows);
}

static GtkWidget *sort_relative_to;

static int
compare_rows (gconstpointer a,
              gconstpointer b)
{
  graphene_rect_t ra, rb;

  if (!gtk_widget_compute_bounds (*(GtkWidget **) a, sort_relative_to, &ra) ||
      !gtk_widget_compute_bounds (*(GtkWidget **) b, sort_relative_to, &rb))
    return 0;
  return (ra.origin.y > rb.origin.y) - (ra.origin.y < rb.origin.y);
}

/**
 * bf_cell_dump:
 * @view: the column view
 * @key_file: where to write
 *
 * Writes group "cells" with n-rows, then groups "cells N" (N from 0, top
 * to bottom), each with one key per visible column, its title, for what
 * the cell shows, and "TITLE tooltip" where the cell has a tooltip.
 */
void
bf_cell_dump (GtkColumnView *view,
              GKeyFile      *key_file)
{
  GListModel *columns = gtk_column_view_get_columns (view);
  g_autoptr(GPtrArray) titles = g_ptr_array_new ();
  g_autoptr(GPtrArray) rows = g_ptr_array_new ();

  for (guint i = 0; i < g_list_model_get_n_items (columns); i++)
    {
      g_autoptr(GtkColumnViewColumn) column = g_list_model_get_item (columns, i);

      if (gtk_column_view_column_get_visible (column))
        g_ptr_array_add (titles, (gpointer) gtk_column_view_column_get_title (column));
    }

  collect_rows (GTK_WIDGET (view), rows);
  sort_relative_to = GTK_WIDGET (view);
  g_ptr_array_sort (rows, compare_rows);
  sort_relative_to = NULL;

  g_key_file_set_uint64 (key_file, "cells", "n-rows", rows->len);
  for (guint r = 0; r < rows->len; r++)
    {
      g_autofree char *group = g_strdup_printf ("cells %u", r);
      guint c = 0;

      for (GtkWidget *cell = gtk_widget_get_first_child (rows->pdata[r]); cell != NULL && c < titles->len;
           cell = gtk_widget_get_next_sibling (cell), c++)
        {
          g_autoptr(GString) text = g_string_new (NULL);
          const char *tooltip = find_tooltip (cell);

          append_text (cell, text);
          g_key_file_set_string (key_file, group, titles->pdata[c], text->str);
          if (tooltip != NULL)
            {
              g_autofree char *key = g_strdup_printf ("%s tooltip", (const char *) titles->pdata[c]);
              g_key_file_set_string (key_file, group, key, tooltip);
            }
        }
    }
}
