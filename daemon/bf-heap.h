/* bf-heap.h: the heap grown in advance for a big fleet's start-up
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

void bf_heap_reserve (gsize bytes);
void bf_heap_reserve_end (void);
