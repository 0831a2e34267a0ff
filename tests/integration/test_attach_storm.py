#!/usr/bin/python3
# An attach storm as a client sees it: hundreds of workers attaching at
# once (the bench's load generators, both protocols), each announced on
# D-Bus once and in order: the PropertiesChanged that shows it Connected,
# then Attached, then (when they all drop) Detached.  The daemon sends the
# announcements of one main-loop iteration together (bf-worker.c, "Attach
# announcements"); this checks that batching loses, repeats and reorders
# nothing.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import json
import os
import select
import signal
import subprocess
import time

import bfharness
from bfharness import WORKER_IFACE, worker_path

BUILD = os.environ.get('MESON_BUILD_ROOT', os.path.join(os.path.dirname(__file__), '..', '..', 'build'))
N = 300


class AttachStormTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.loadgen = None

    def tearDown(self):
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.kill()
            self.loadgen.wait()
        super().tearDown()

    def config_fleet(self):
        self.write_config(self.daemon_section(KeepaliveInterval='60') + ''.join(
            '[Worker storm-%05d]\nPassword=p\nBuilders=b\n' % i for i in range(1, N + 1)))

    def start_loadgen(self, protocol):
        if protocol == 'pb':
            argv = [os.path.join(BUILD, 'tests', 'bench', 'bf-loadgen-pb'),
                    '--url', 'tcp://127.0.0.1:%d' % self.worker_port('pb')]
        else:
            argv = [os.path.join(BUILD, 'tests', 'bench', 'bf-loadgen'),
                    '--url', 'ws://127.0.0.1:%d' % self.worker_port('msgpack')]
        if not os.access(argv[0], os.X_OK):
            self.skipTest('%s is not built' % argv[0])
        argv += ['--workers', str(N), '--name-format', 'storm-%05d', '--password', 'p',
                 '--concurrency', '100', '--attach-timeout', '120', '--kill-after-attach',
                 '--hold', '3600']
        self.loadgen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def loadgen_phase(self, phase, timeout):
        """Reads the load generator's JSON lines (pumping D-Bus) until @phase."""
        buf = b''
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            r, _, _ = select.select([self.loadgen.stdout], [], [], 0.05)
            if r:
                chunk = os.read(self.loadgen.stdout.fileno(), 65536)
                if not chunk:
                    self.fail('the load generator exited (%s) before %s' % (self.loadgen.wait(), phase))
                buf += chunk
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    d = json.loads(line)
                    if d.get('phase') == phase:
                        return d
            if time.monotonic() > deadline:
                self.fail('no %s line from the load generator within %d s' % (phase, timeout))

    def events(self, path):
        """What a client saw of one worker, in arrival order: 'connected' /
        'disconnected' (PropertiesChanged with Connected), signal names."""
        out = []
        for s in self.signals:
            if s[0] != path:
                continue
            if s[2] == 'PropertiesChanged' and s[3][0] == WORKER_IFACE and 'Connected' in s[3][1]:
                out.append('connected' if s[3][1]['Connected'] else 'disconnected')
            elif s[2] in ('Attached', 'Detached'):
                out.append(s[2])
        return out

    def storm(self, protocol):
        self.config_fleet()
        self.start_daemon()
        self.start_loadgen(protocol)
        attached = self.loadgen_phase('attached', 180)
        self.assertEqual(attached['workers'], N, attached)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == N, 60, 'all connected')
        self.wait_until(lambda: len(self.signals_named('Attached')) >= N, 60, '%d Attached signals' % N)

        for i in range(1, N + 1):
            name = 'storm-%05d' % i
            path = worker_path(name)
            # Connected is already true when Attached arrives (a client's
            # property cache is up to date), and each is sent once.
            self.assertEqual(self.events(path), ['connected', 'Attached'], name)
            changed = {}
            for s in self.signals:
                if s[0] == path and s[2] == 'PropertiesChanged':
                    changed.update(s[3][1])
            self.assertEqual(changed.get('Protocol'), protocol, name)
            self.assertRegex(changed.get('Peer', ''), r'^127\.0\.0\.1:\d+$', name)
            self.assertEqual(changed.get('Version'), '3.7.0', name)
            self.assertGreater(changed.get('ConnectedSinceUSec', 0), 0, name)
        # and the properties themselves, for a sample
        for i in (1, N // 2, N):
            name = 'storm-%05d' % i
            self.assertTrue(self.worker_prop(name, 'Connected'))
            self.assertEqual(self.worker_prop(name, 'Version'), '3.7.0')

        # All N drop at once: each one Detached, after its Attached.
        self.loadgen.send_signal(signal.SIGTERM)
        self.loadgen_phase('killed', 30)
        self.wait_until(lambda: len(self.signals_named('Detached')) >= N, 60, '%d Detached signals' % N)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == 0, 30, 'none connected')
        self.pump(0.5)   # (nothing more should come; a stray late signal fails below)
        for i in range(1, N + 1):
            path = worker_path('storm-%05d' % i)
            self.assertEqual(self.events(path), ['connected', 'Attached', 'disconnected', 'Detached'], path)

    def test_msgpack_storm(self):
        self.storm('msgpack')

    def test_pb_storm(self):
        self.storm('pb')


if __name__ == '__main__':
    bfharness.main()
