#!/usr/bin/python3
# The admin state file during an attach storm (issue 20: the D-Bus side
# answers within milliseconds while thousands of workers attach).  A state
# write no longer formats the file in the main loop: it copies the table's
# pointers, and its thread sorts and formats them, while the main loop keeps
# replacing records (bf-state.c, WorkerEntry).  This checks that what such a
# write puts on disk, while the storm still changes every worker, is whole:
# every worker, in order, with the values of its latest change, and that a
# restart reads it back.
#
# The latency itself is not asserted here (a shared 2-CPU machine measures
# its own load); tests/bench/attach-once prints the worst Get.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import time

from gi.repository import GLib

import bfharness
import test_attach_storm
from bfharness import worker_path

N = test_attach_storm.N
NAMES = ['storm-%05d' % i for i in range(1, N + 1)]
KEYS = ('Graceful', 'Paused', 'LastSeenUSec', 'DisconnectedSinceUSec', 'MissingNotified')


class StormStateTest(test_attach_storm.AttachStormTest):
    # the storm machinery, not its tests
    test_msgpack_storm = None
    test_pb_storm = None

    def state(self):
        """The state file as it is on disk now: {worker: {key: str}}, and
        the worker groups in file order ({} while there is none)."""
        kf = GLib.KeyFile()
        try:
            kf.load_from_file(os.path.join(self.statedir, 'workers.state'), GLib.KeyFileFlags.NONE)
        except GLib.Error:
            return {}, []
        groups = [g for g in kf.get_groups()[0] if g.startswith('Worker ')]
        out = {}
        for g in groups:
            out[g[len('Worker '):]] = {k: kf.get_value(g, k) for k in kf.get_keys(g)[0]}
        return out, [g[len('Worker '):] for g in groups]

    def all_in_file(self, predicate):
        workers, _ = self.state()
        return all(n in workers and predicate(workers[n]) for n in NAMES)

    def check_file_whole(self):
        workers, order = self.state()
        self.assertEqual(order, sorted(order), 'worker groups in name order')
        self.assertEqual(len(order), len(set(order)), 'each worker once')
        for n in NAMES:
            for k in KEYS:
                self.assertIn(k, workers[n], '%s: %s' % (n, k))
        return workers

    def storm_and_check(self, protocol):
        self.config_fleet()
        self.start_daemon()
        t0 = int(time.time() * 1e6)
        self.start_loadgen(protocol)
        attached = self.loadgen_phase('attached', 180)
        self.assertEqual(attached['workers'], N, attached)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == N, 60, 'all connected')
        # Written by the coalesced write (its thread), the daemon still running.
        self.wait_until(lambda: self.all_in_file(lambda w: int(w.get('LastSeenUSec', 0)) >= t0 and
                                                 w.get('DisconnectedSinceUSec') == '0'),
                        30, 'every attach in the state file')
        self.check_file_whole()

        # All drop at once: every record is replaced again while writes run.
        self.loadgen.send_signal(signal.SIGTERM)
        self.loadgen_phase('killed', 30)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == 0, 60, 'none connected')
        self.wait_until(lambda: self.all_in_file(lambda w: int(w.get('DisconnectedSinceUSec', 0)) >= t0),
                        30, 'every detach in the state file')
        workers = self.check_file_whole()
        for n in (NAMES[0], NAMES[N // 2], NAMES[-1]):
            self.assertEqual(self.worker_prop(n, 'DisconnectedSinceUSec'),
                             int(workers[n]['DisconnectedSinceUSec']), n)
            self.assertEqual(self.worker_prop(n, 'LastSeenUSec'), int(workers[n]['LastSeenUSec']), n)

        # A restart reads back what the writes left.
        self.stop_daemon()
        workers = self.check_file_whole()
        self.start_daemon()
        for n in NAMES:
            self.assertEqual(self.prop(worker_path(n), bfharness.WORKER_IFACE, 'LastSeenUSec'),
                             int(workers[n]['LastSeenUSec']), n)
            self.assertEqual(self.prop(worker_path(n), bfharness.WORKER_IFACE, 'DisconnectedSinceUSec'),
                             int(workers[n]['DisconnectedSinceUSec']), n)

    def test_msgpack_storm_state(self):
        self.storm_and_check('msgpack')

    def test_pb_storm_state(self):
        self.storm_and_check('pb')


if __name__ == '__main__':
    bfharness.main()
