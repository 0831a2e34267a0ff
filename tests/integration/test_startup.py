#!/usr/bin/python3
# Start-up of a big fleet (issue 20): with thousands of configured workers
# the daemon comes up with every worker published and counted, and the
# state it writes for them at once reads back after a restart.  What
# start-up costs is measured by tests/bench/startup; this checks that what
# was made cheaper (the heap grown once, the manager's counters fed without
# signal handlers, the state file written without a key file per worker)
# still gives a client the same fleet.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import re

from gi.repository import Gio, GLib

import bfharness
from bfharness import FLEET_PATH, MANAGER_IFACE, WORKER_IFACE, worker_path

# Enough configuration (over 256 KB) for the daemon to grow its heap in
# advance (daemon/bf-heap.c); few enough to start in seconds.
N = 6000
MISSING = 5


def name(i):
    return 'w-%05d' % i


class BigStartupTest(bfharness.FleetTestCase):
    def fleet(self):
        parts = [self.daemon_section()]
        for i in range(N):
            parts.append('[Worker %s]\nPassword=p-%d\nBuilders=b;c%d\nMaxBuilds=%d\n%s\n' % (
                name(i), i, i % 7, i % 3 + 1, 'MissingTimeout=1\n' if i < MISSING else ''))
        parts.append('[Worker real]\nPassword=secret\nBuilders=b\n')
        return ''.join(parts)

    def start_big(self):
        self.start_daemon(wait=False)
        self.wait_for_daemon(timeout=120)

    def managed_objects_long(self):
        r = self.bus.call_sync(bfharness.BUS_NAME, FLEET_PATH, 'org.freedesktop.DBus.ObjectManager',
                               'GetManagedObjects', None, None, Gio.DBusCallFlags.NONE, 120000, None)
        return r.unpack()[0]

    def state_text(self):
        try:
            with open(os.path.join(self.statedir, 'workers.state')) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def test_every_worker_published_and_counted(self):
        self.write_config(self.fleet())
        self.start_big()

        objects = self.managed_objects_long()
        self.assertEqual(len(objects), N + 1)
        for i in range(N):
            w = objects[worker_path(name(i))][WORKER_IFACE]
            self.assertEqual((w['Name'], w['MaxBuilds'], w['Builders'], w['Connected']),
                             (name(i), i % 3 + 1, ['b', 'c%d' % (i % 7)], False))
            self.assertEqual(w['MissingTimeoutUSec'] == 1000000, i < MISSING)
        self.assertEqual(self.manager_prop('WorkersConnected'), 0)

        # The manager's counters follow its workers (BfWorkerObserver).
        self.wait_until(lambda: self.manager_prop('WorkersMissing') == MISSING, 60,
                        'WorkersMissing == %d' % MISSING)
        self.assertEqual([i for i in range(MISSING + 3) if self.worker_prop(name(i), 'Missing')],
                         list(range(MISSING)))
        worker = self.add_worker('real', 'secret')
        worker.start()
        self.wait_connected('real', timeout=90)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == 1, 30, 'WorkersConnected == 1')
        worker.stop()
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == 0, 30, 'WorkersConnected == 0')
        self.assertEqual(self.manager_prop('WorkersMissing'), MISSING)

        # A worker removed by a reload leaves the counters too.
        self.write_config(self.fleet().replace('[Worker %s]' % name(0), '[Worker gone-0]'))
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload', timeout=120000)
        self.wait_until(lambda: self.manager_prop('WorkersMissing') == MISSING - 1, 30,
                        'WorkersMissing == %d after the reload' % (MISSING - 1))
        self.assertEqual(self.daemon.poll(), None)

    def test_state_written_and_read_back(self):
        self.write_config(self.fleet())
        self.start_big()

        # Every new worker is recorded as disconnected since the start.
        text = self.wait_until(lambda: self.state_text().count('[Worker ') == N + 1 and self.state_text(),
                               60, 'a state file with %d workers' % (N + 1))
        since = dict(re.findall(r'\[Worker (w-\d+)\]\n(?:.*\n)*?DisconnectedSinceUSec=(\d+)\n', text))
        self.assertEqual(len(since), N)
        published = {i: self.worker_prop(name(i), 'DisconnectedSinceUSec') for i in (0, 1, 2999, N - 1)}
        for i, usec in published.items():
            self.assertEqual(int(since[name(i)]), usec)

        # Free text still goes through GKeyFile's escaping.
        reason = ' disk\nfull \\ 50%\t!'
        self.worker_call(name(7), 'Pause', GLib.Variant('(s)', (reason,)))
        self.wait_until(lambda: 'PauseReason=\\sdisk\\nfull \\\\ 50%\t!\n' in self.state_text(), 30,
                        'the escaped reason in the state file')

        self.stop_daemon()
        self.start_big()
        self.assertTrue(self.worker_prop(name(7), 'Paused'))
        self.assertEqual(self.worker_prop(name(7), 'PauseReason'), reason)
        self.assertFalse(self.worker_prop(name(8), 'Paused'))
        for i, usec in published.items():
            self.assertEqual(self.worker_prop(name(i), 'DisconnectedSinceUSec'), usec)


if __name__ == '__main__':
    bfharness.main()
