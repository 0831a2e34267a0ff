/* bf-bus-thread.h: the daemon's D-Bus output leaves once per main-loop pass
 *
 * GDBus writes every outgoing message from its own thread.  Each message
 * sent while that thread is idle wakes it (an idle source, an eventfd, a
 * futex), and on a busy CPU the woken thread runs at once: a message then
 * costs two context switches besides its write, and the two threads
 * contend for the connection's locks.  An attach storm sends two messages
 * per worker (PropertiesChanged, Attached), one by one from the main loop,
 * which made GDBus's thread and the switches to it about a third of the
 * daemon's CPU (issue 20).
 *
 * bf_bus_thread_tune() holds GDBus's writer back while the main loop
 * dispatches, and lets it go when the main loop is about to wait: what one
 * main-loop pass sent is written in one go, with one wake-up.  Nothing is
 * reordered or merged; every message still goes out, as soon as the pass
 * that sent it ends, or BF_BUS_THREAD_MAX_HOLD_USEC after the pass began,
 * whichever comes first: a long pass sends the rest of its messages as
 * before, a reply is held back no longer than that, and nothing (a thread
 * other than the main one that sends, a nested main loop) can deadlock on
 * the gate.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BF_BUS_THREAD_MAX_HOLD_USEC 2000

void bf_bus_thread_tune (GDBusConnection *bus);

G_END_DECLS
