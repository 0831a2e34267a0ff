#!/usr/bin/python3
# Worker.GetHistory: a bounded, persisted event history per worker.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import time

from gi.repository import GLib

import bfharness
from bfharness import worker_path


def history(test, name, since=0, until=0, limit=0):
    return test.worker_call(name, 'GetHistory', GLib.Variant('(ttu)', (since, until, limit)))[0]


def events(test, name):
    return [e[1] for e in history(test, name)]


class HistoryTest(bfharness.FleetTestCase):
    def config(self):
        self.write_config(self.daemon_section() +
                          '[Worker w]\nPassword=p\nMissingTimeout=0.5\n'
                          '[Worker idle]\nPassword=p\n')

    def test_kill_and_restart_survive_daemon_restart(self):
        self.config()
        self.start_daemon()
        # never seen: missing MissingTimeout after the daemon's start
        self.wait_signal('Missing', worker_path('w'), timeout=10)
        self.assertEqual(events(self, 'w'), ['missing'])
        worker = self.add_worker('w', 'p').start()
        self.wait_connected('w')
        worker.kill()
        self.wait_connected('w', value=False)
        self.wait_signal('Missing', worker_path('w'), timeout=10, count=2)
        worker.start()
        self.wait_connected('w')
        self.wait_signal('BackOnline', worker_path('w'), timeout=10, count=2)
        self.worker_call('w', 'Pause', GLib.Variant('(s)', ('disk\treplacement',)))
        self.worker_call('w', 'Unpause')

        got = self.wait_until(lambda: (lambda h: h if [e[1] for e in h][-1:] == ['unpaused'] else None)(
            history(self, 'w')), message='the unpause in the history')
        self.assertEqual([e[1] for e in got],
                         ['missing', 'attached', 'back-online', 'detached', 'missing', 'attached', 'back-online',
                          'paused', 'unpaused'])
        times = [e[0] for e in got]
        self.assertEqual(times, sorted(times))
        now = time.time() * 1e6
        self.assertTrue(all(now - 120e6 < t <= now + 1e6 for t in times), times)
        attached, detached = got[1], got[3]
        self.assertRegex(attached[2], r'^127\.0\.0\.1:\d+$')
        # the reason, in the words of the Detached signal
        self.assertEqual(detached[2], self.signals_named('Detached', worker_path('w'))[0][3][0])
        self.assertIn('connection', detached[2])
        self.assertEqual(got[7][2], 'disk\treplacement')
        # who did it, as the log says it ("root (uid 0, :1.5)"); the daemon's own events have none
        self.assertIn(self.bus.get_unique_name(), got[7][3])
        self.assertIn(self.bus.get_unique_name(), got[8][3])
        self.assertEqual(detached[3], '')
        # another worker's history is its own
        self.assertEqual(history(self, 'idle'), [])
        # LastSeenUSec: 0 for a worker never seen, the attach time while connected
        self.assertEqual(self.worker_prop('idle', 'LastSeenUSec'), 0)
        self.assertEqual(self.worker_prop('w', 'LastSeenUSec'), self.worker_prop('w', 'ConnectedSinceUSec'))

        self.assertEqual(self.stop_daemon(), 0)
        # one journal for every worker, no file per worker
        history_dir = os.path.join(self.statedir, 'history')
        self.assertEqual(sorted(os.listdir(history_dir)), ['journal.log'])
        self.start_daemon()
        self.assertEqual(self.worker_prop('idle', 'LastSeenUSec'), 0)
        self.assertGreater(self.worker_prop('w', 'LastSeenUSec'), got[-1][0])
        after = history(self, 'w')
        # everything from before, then the daemon's own shutdown
        self.assertEqual(after[:9], got)
        self.assertEqual([e[1:3] for e in after[9:10]], [('detached', 'daemon shutting down')])

    def test_range_and_limit(self):
        self.config()
        self.start_daemon()
        for i in range(5):
            self.worker_call('idle', 'Pause', GLib.Variant('(s)', ('p%d' % i,)))
        got = history(self, 'idle')
        self.assertEqual([e[2] for e in got], ['p0', 'p1', 'p2', 'p3', 'p4'])
        # the limit keeps the newest, oldest first
        self.assertEqual([e[2] for e in history(self, 'idle', limit=2)], ['p3', 'p4'])
        # the range is inclusive at both ends
        t1, t3 = got[1][0], got[3][0]
        self.assertEqual([e[2] for e in history(self, 'idle', since=t1, until=t3)], ['p1', 'p2', 'p3'])
        self.assertEqual(history(self, 'idle', since=got[4][0] + 1), [])
        name, message = self.call_error(worker_path('idle'), bfharness.WORKER_IFACE, 'GetHistory',
                                        GLib.Variant('(ttu)', (10, 5, 0)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('until_usec', message)

    def test_bounded_and_corrupt_file_set_aside(self):
        # a worker's file of an older version: folded into the journal
        os.makedirs(os.path.join(self.statedir, 'history'))
        now = int(time.time() * 1e6)
        lines = []
        # 50 events older than 30 days, 600 recent ones, and garbage
        for i in range(50):
            lines.append('%d\tattached\told %d\t' % (now - 40 * 86400 * 10**6 + i, i))
        for i in range(600):
            lines.append('%d\tdetached\trecent %d\t' % (now - 3600 * 10**6 + i, i))
            if i == 300:
                lines.append('this is not an event')
                lines.append('12\t\t\t')
        with open(os.path.join(self.statedir, 'history', 'w.log'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        self.config()
        self.start_daemon()
        got = history(self, 'w')
        self.assertEqual(len(got), 500)
        self.assertEqual(got[0][2], 'recent 100')
        self.assertEqual(got[-1][2], 'recent 599')
        self.assertIn('History file', self.daemon_log())
        aside = [n for n in os.listdir(os.path.join(self.statedir, 'history')) if '.corrupt-' in n]
        self.assertEqual(len(aside), 1, aside)
        # folded into the journal clean, bounded, and the old file gone
        journal = os.path.join(self.statedir, 'history', 'journal.log')
        self.assertFalse(os.path.exists(os.path.join(self.statedir, 'history', 'w.log')))
        self.assertEqual(self.stop_daemon(), 0)
        text = open(journal).read()
        self.assertNotIn('this is not', text)
        self.assertEqual(len([l for l in text.splitlines() if l.startswith('w\t')]), 500)
        self.start_daemon()
        self.assertEqual(history(self, 'w'), got)

    def test_flapping_in_history(self):
        self.write_config(self.daemon_section() +
                          '[Worker f]\nPassword=p\nFlapThreshold=1\nFlapWindow=600\nFlapRecovery=1\n')
        self.start_daemon()
        worker = self.add_worker('f', 'p').start()
        self.wait_connected('f')
        for _ in range(2):
            worker.kill()
            self.wait_connected('f', value=False)
            worker.start()
            self.wait_connected('f', timeout=30)
        self.wait_signal('FlappingChanged', worker_path('f'), timeout=15, count=2)
        got = history(self, 'f')
        kinds = [e[1] for e in got]
        self.assertIn('flapping', kinds)
        self.assertIn('flapping-ended', kinds)
        self.assertLess(kinds.index('flapping'), kinds.index('flapping-ended'))
        self.assertEqual(kinds.count('detached'), 2)


if __name__ == '__main__':
    bfharness.main()
