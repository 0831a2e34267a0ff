#!/usr/bin/python3
# test_flap_storm.py: the day the network blips, five times in a row
#
# Hundreds of workers attached; every connection drops at once and every
# worker reconnects at once, five times (the load generators'
# --flap-cycles, driven one cycle at a time with SIGUSR1).  After each
# cycle the fleet is whole again, and what the daemon promises holds: no
# Missing for an absence shorter than MissingTimeout, no mail, the same
# memory as after the first attach, the bus answering all along.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bfharness
from bfharness import WORKER_IFACE, worker_path

N = int(os.environ.get('BF_FLAP_WORKERS', '300'))
CYCLES = int(os.environ.get('BF_FLAP_CYCLES', '5'))
MISSING_TIMEOUT = 30      # seconds: far longer than any absence here
LOADGEN = {
    'msgpack': os.path.join(bfharness.BUILD_ROOT, 'tests', 'bench', 'bf-loadgen'),
    'pb': os.path.join(bfharness.BUILD_ROOT, 'tests', 'bench', 'bf-loadgen-pb'),
}


def vm_rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


@bfharness.for_both_protocols
class FlapStormTest(bfharness.FleetTestCase):
    """N workers dropped and reconnected at once, five times."""

    def setUp(self):
        super().setUp()
        self.loadgen = None
        self.buf = b''
        self.worst_get_s = 0.0

    def tearDown(self):
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.kill()
            self.loadgen.wait()
        super().tearDown()

    def start_fleet(self):
        names = ['flap-%04d' % i for i in range(1, N + 1)]
        text = self.daemon_section(KeepaliveInterval='10')
        for name in names:
            # FlapThreshold=3: five blips are more detaches than that, but
            # a network blip is not each worker flapping.
            text += ('[Worker %s]\nPassword=pass\nBuilders=flap\nMissingTimeout=%d\n'
                     'NotifyOnMissing=ops@test.invalid\nFlapThreshold=3\n\n' % (name, MISSING_TIMEOUT))
        self.write_config(text)
        self.start_daemon()
        port = self.worker_port()
        url = ('tcp://127.0.0.1:%d' if self.protocol == 'pb' else 'ws://127.0.0.1:%d') % port
        self.loadgen = subprocess.Popen(
            [LOADGEN[self.protocol], '--url', url, '--workers', str(N), '--name-format', 'flap-%04d',
             '--concurrency', '50', '--attach-timeout', '60', '--flap-cycles', str(CYCLES),
             '--flap-pause', '-1', '--hold', '-1'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return names

    def loadgen_line(self, phase, timeout=60):
        """The load generator's next JSON line of @phase, pumping the bus meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            while b'\n' in self.buf:
                line, self.buf = self.buf.split(b'\n', 1)
                d = json.loads(line)
                if d.get('phase') == phase:
                    return d
            self.pump()
            if time.monotonic() > deadline:
                self.fail('no "%s" line from the load generator within %d s\n--- daemon log ---\n%s' %
                          (phase, timeout, self.daemon_log()[-4000:]))
            r, _, _ = select.select([self.loadgen.stdout], [], [], 0.05)
            if r:
                chunk = os.read(self.loadgen.stdout.fileno(), 65536)
                if not chunk:
                    self.fail('the load generator exited (%s) before its "%s" line' %
                              (self.loadgen.wait(), phase))
                self.buf += chunk

    def timed_connected(self):
        """Manager.WorkersConnected, keeping the worst time a Get took."""
        t = time.monotonic()
        value = self.manager_prop('WorkersConnected')
        self.worst_get_s = max(self.worst_get_s, time.monotonic() - t)
        return value

    def wait_whole(self, what):
        self.wait_until(lambda: self.timed_connected() == N, 60,
                        '%d workers connected (%s)' % (N, what))

    def test_five_flaps(self):
        names = self.start_fleet()
        attached = self.loadgen_line('attached')
        self.assertEqual(attached['workers'], N, attached)
        self.wait_whole('first attach')
        self.pump(0.5)
        rss_steady = vm_rss_kib(self.daemon.pid)
        n_attached = len(self.signals_named('Attached'))

        rss = []
        for cycle in range(1, CYCLES + 1):
            self.loadgen.send_signal(signal.SIGUSR1)
            flapped = self.loadgen_line('flapped')
            self.assertEqual((flapped['cycle'], flapped['dropped'], flapped['workers']),
                             (cycle, N, N), flapped)
            self.wait_whole('after flap %d' % cycle)
            # Every drop was seen as one detach, every reconnect as one attach.
            self.wait_until(lambda: len(self.signals_named('Detached')) >= cycle * N and
                            len(self.signals_named('Attached')) >= n_attached + cycle * N, 30,
                            'the Detached and Attached signals of cycle %d' % cycle)
            self.pump(0.3)
            rss.append(vm_rss_kib(self.daemon.pid))

        # Absences of a second or so, all shorter than MissingTimeout: no
        # alarm, no mail; five detaches of every worker at once are five
        # network blips, not flapping (FlapThreshold=3).
        self.assertEqual(self.signals_named('Missing'), [])
        self.assertEqual(self.signals_named('BackOnline'), [])
        self.assertEqual(self.mails(), [])
        self.assertEqual(self.manager_prop('WorkersMissing'), 0)
        self.assertEqual(len(self.signals_named('Detached')), CYCLES * N)
        self.assertEqual(len(self.signals_named('Attached')), n_attached + CYCLES * N)
        self.assertEqual(self.signals_named('FlappingChanged'), [])
        self.assertIn('Network blip', self.daemon_log())

        # Every worker is whole: the properties of the last attach.
        for name in names:
            props = self.props(worker_path(name), WORKER_IFACE)
            self.assertTrue(props['Connected'], name)
            self.assertFalse(props['Missing'], name)
            self.assertFalse(props['Flapping'], name)
            self.assertEqual(props['Protocol'], self.protocol, name)
            self.assertEqual(props['DisconnectedSinceUSec'], 0, name)
            self.assertNotEqual(props['ConnectedSinceUSec'], 0, name)
            self.assertTrue(props['Peer'].startswith('127.0.0.1:'), (name, props['Peer']))
            self.assertEqual(props['Version'], '3.7.0', name)
            self.assertTrue(props['Host'], name)
            self.assertIn('basedir', props['Info'], name)

        print('%d %s workers, %d flaps: RSS %d KiB after the first attach, %s after each flap; '
              'worst Get %.3f s' % (N, self.protocol, CYCLES, rss_steady, rss, self.worst_get_s),
              file=sys.stderr)
        # No leak across cycles.  The first blip costs the daemon about a
        # megabyte once (its detach paths' first run: state and history
        # writes, missing timers); after it, a blip may only add what the
        # history keeps by design (two events per worker, a few hundred
        # bytes, bounded at BF_HISTORY_MAX_EVENTS).  A connection's state
        # left behind would be several KB per worker per blip (an attached
        # worker costs 5-7 KB).
        per_worker_cycle = (rss[-1] - rss[0]) / (CYCLES - 1) / N
        self.assertLess(per_worker_cycle, 2.0,
                        'RSS %d KiB after the first attach, then %s: %.2f KiB per worker per blip' %
                        (rss_steady, rss, per_worker_cycle))
        self.assertLess(rss[-1], rss_steady * 1.25, (rss_steady, rss))
        # The bus answered throughout (a promise, not a timing: seconds).
        self.assertLess(self.worst_get_s, 5.0)

        self.loadgen.send_signal(signal.SIGTERM)
        self.loadgen_line('stopped', 30)
        self.loadgen.wait(10)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == 0, 30, 'all detached')
        log = self.daemon_log()
        self.assertNotIn('CRITICAL', log)
        self.assertNotIn('WARNING', log)


if __name__ == '__main__':
    bfharness.main()
