/* bf-heap.c: the heap grown in advance for a big fleet's start-up
 *
 * Creating 50,000 workers touches about 270 MB of fresh heap, and on a
 * virtual machine the first touch of each 4 KiB page is the expensive part
 * of it: 72,000 page faults were about a third of the start-up's CPU
 * (tests/bench/README.md, "Start-up").  With transparent huge pages for
 * the heap (the kernel's default mode, `madvise`, gives them only to
 * memory that asks) the same memory comes in 2 MiB pages: 140 times fewer
 * faults.  glibc can ask by itself (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)
 * but only from the environment, read before main().  So here: once the
 * daemon knows how much it is about to allocate, the heap is grown in one
 * step (M_TOP_PAD), the new range is marked MADV_HUGEPAGE, and glibc is
 * told not to give it back (M_TRIM_THRESHOLD) until start-up is over.
 * Pages are still only used when touched: this costs address space, and
 * memory only for what the start-up then uses.
 *
 * Any of these mallopt() calls also ends glibc's sliding mmap threshold
 * (which moves big buffers, once one was freed, from mmap() to the heap).
 * A fleet this big makes big buffers (the state file's text, listings of
 * the fleet), so bf_heap_reserve_end() sets where that threshold would
 * settle for them: up to 32 MiB from the heap, trimmed past 64 MiB free.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <malloc.h>
#include <unistd.h>
#include <sys/mman.h>

#include "bf-heap.h"

/* glibc's default top pad, and its sliding mmap threshold's ceiling
 * (DEFAULT_MMAP_THRESHOLD_MAX) with the trim threshold it goes with */
#define DEFAULT_TOP_PAD (128 * 1024)
#define MMAP_THRESHOLD_AFTER (32 * 1024 * 1024)
#define TRIM_THRESHOLD_AFTER (2 * MMAP_THRESHOLD_AFTER)
#define MAX_RESERVE ((gsize) 1 << 30)
#define STEP (64 * 1024)   /* below M_MMAP_THRESHOLD: taken from the heap */

static gboolean reserved;

/**
 * bf_heap_reserve:
 * @bytes: about how much the caller is going to allocate
 *
 * Makes room for @bytes at the top of the heap, backed by huge pages
 * where the kernel has them.  For big amounts only (a few MiB and up);
 * errors are ignored (the heap then grows as usual).
 */
void
bf_heap_reserve (gsize bytes)
{
  GSList *blocks = NULL;
  char *before, *after;
  long page = sysconf (_SC_PAGESIZE);

  bytes = MIN (bytes, MAX_RESERVE);
  reserved = TRUE;
  if (!mallopt (M_TRIM_THRESHOLD, (int) (bytes + TRIM_THRESHOLD_AFTER)) ||
      !mallopt (M_TOP_PAD, (int) bytes))
    {
      bf_heap_reserve_end ();
      return;
    }

  /* Allocate until the heap grows (by @bytes and what was asked, at
   * once), then give it all back: it stays as the heap's free top. */
  before = sbrk (0);
  after = before;
  for (guint i = 0; i < 64 && after == before; i++)
    {
      blocks = g_slist_prepend (blocks, malloc (STEP));
      after = sbrk (0);
    }
  g_slist_free_full (blocks, free);
  if (after == before || after == (char *) -1 || before == (char *) -1)
    {
      /* Not grown (no brk heap, or not this much memory to commit): a pad
       * this big must not make every later growth fail too. */
      bf_heap_reserve_end ();
      return;
    }

  before = (char *) (((guintptr) before + page - 1) & ~(guintptr) (page - 1));
  (void) madvise (before, after - before, MADV_HUGEPAGE);
}

/**
 * bf_heap_reserve_end:
 *
 * Start-up is over: glibc may shrink the heap again as usual.
 */
void
bf_heap_reserve_end (void)
{
  if (!reserved)
    return;
  reserved = FALSE;
  mallopt (M_TOP_PAD, DEFAULT_TOP_PAD);
  mallopt (M_MMAP_THRESHOLD, MMAP_THRESHOLD_AFTER);
  mallopt (M_TRIM_THRESHOLD, TRIM_THRESHOLD_AFTER);
}
