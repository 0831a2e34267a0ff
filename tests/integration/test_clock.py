#!/usr/bin/python3
# Liveness against a wall clock that jumps, and keepalive requests that are
# never answered (issue 12).
#
# The daemon runs under clockshim.so (LD_PRELOAD), which adds an offset to
# CLOCK_REALTIME, gettimeofday() and time(); the test steps the clock by
# overwriting the offset file.  CLOCK_MONOTONIC is untouched, as after an NTP
# step or a VM resumed from a snapshot.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import contextlib
import os
import signal
import socket
import struct
import threading
import time

import msgpack
from gi.repository import GLib

import bfharness
from bfharness import (BUILD_IFACE, COMMAND_IFACE, FLEET_PATH, MANAGER_IFACE, RawWebSocket,
                       worker_path)

CLOCKSHIM = os.path.join(bfharness.BUILD_ROOT, 'tests', 'integration', 'clockshim.so')
HOUR = 3600


class ClockTestCase(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.assertTrue(os.path.exists(CLOCKSHIM), CLOCKSHIM + ' is not built')
        self.offset_path = os.path.join(self.workdir, 'clock-offset')
        self.step_clock(0)

    def step_clock(self, seconds):
        """Sets the daemon's wall clock to the real one plus @seconds, at once."""
        # In place: the shim has this file mapped.
        mode = 'r+b' if os.path.exists(self.offset_path) else 'wb'
        with open(self.offset_path, mode) as f:
            f.write(struct.pack('<q', seconds))

    @contextlib.contextmanager
    def shim_env(self):
        # Only the daemon gets the shim: the harness copies os.environ when it
        # starts the daemon, and the workers were given their environment
        # when they were created.
        saved = {k: os.environ.get(k) for k in ('LD_PRELOAD', 'BF_CLOCK_SHIM_FILE', 'ASAN_OPTIONS')}
        os.environ['LD_PRELOAD'] = ' '.join(filter(None, [CLOCKSHIM, saved['LD_PRELOAD']]))
        os.environ['BF_CLOCK_SHIM_FILE'] = self.offset_path
        # An AddressSanitizer build wants its runtime first in the library list.
        os.environ['ASAN_OPTIONS'] = ':'.join(filter(None, [saved['ASAN_OPTIONS'],
                                                            'verify_asan_link_order=0']))
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def start_daemon(self, *args, **kw):
        with self.shim_env():
            return super().start_daemon(*args, **kw)

    def wall_offset(self, worker):
        """How far the daemon's published LastMessageUSec is from our clock, in s."""
        return self.worker_prop(worker, 'LastMessageUSec') / 1e6 - time.time()


# Each link keeps its own liveness timers, so the clock steps run with PB
# workers too; the missing alarm belongs to the worker object, once.
@bfharness.for_both_protocols(msgpack_only=('test_missing_timer_survives_step_and_reload',))
class ClockStepTest(ClockTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(KeepaliveInterval='1', QuarantineInitial='30') +
                          '[Worker w1]\nPassword=p\nMaxBuilds=1\nBuilders=b\nMissingTimeout=60\n'
                          '[Worker w2]\nPassword=p\nMissingTimeout=60\n'
                          '[Worker away]\nPassword=p\nMissingTimeout=8\n')
        self.start_daemon()

    def start_workers(self):
        procs = [self.add_worker(name, 'p').start() for name in ('w1', 'w2')]
        for name in ('w1', 'w2'):
            self.wait_connected(name)
        return procs

    def test_forward_step_keeps_workers_and_build(self):
        """An hour forward: nobody is dropped, the build's command finishes."""
        self.start_workers()
        build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                          GLib.Variant('(sa{sv})', ('b', {})))[0]
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running',
                        timeout=10, message='build running')
        cmd = self.call(build, BUILD_IFACE, 'RunCommand',
                        GLib.Variant('(sa{sv})', ('shell', {'command': GLib.Variant('as', ['sleep', '5'])})))[0]
        self.wait_until(lambda: self.prop(cmd, COMMAND_IFACE, 'State') == 'running',
                        timeout=10, message='command running')

        self.step_clock(HOUR)
        # Five keepalive intervals: the old daemon dropped every worker at the
        # first keepalive check after the step (within half a second).
        self.assert_stays(lambda: self.worker_prop('w1', 'Connected') and
                          self.worker_prop('w2', 'Connected') and not self.signals_named('Detached'),
                          5.0, 'a worker was dropped after the wall clock stepped forward')
        # The step did reach the daemon: what it publishes moved with it.
        self.wait_until(lambda: self.wall_offset('w2') > HOUR - 60, timeout=10,
                        message='LastMessageUSec an hour ahead')

        sig = self.wait_signal('Completed', cmd, timeout=20)
        self.assertEqual(sig[0][3], (0, ''))
        self.assertEqual(self.prop(build, BUILD_IFACE, 'State'), 'running')
        self.assertEqual(self.signals_named('Finished'), [])
        for name in ('w1', 'w2'):
            self.assertFalse(self.worker_prop(name, 'Quarantined'))
            self.assertFalse(self.worker_prop(name, 'Missing'))
        self.assertEqual(self.signals_named('Missing', worker_path('w1')), [])
        self.call(build, BUILD_IFACE, 'Release')
        self.wait_signal('Finished', build)
        self.assertTrue(self.worker_prop('w1', 'Connected'))

    def test_backward_step_still_detects_dead_worker(self):
        """An hour back: a worker that stops answering is still dropped in ~2 intervals."""
        procs = self.start_workers()
        procs[0].kill(signal.SIGSTOP)
        self.step_clock(-HOUR)
        stopped = time.monotonic()
        sig = self.wait_signal('Detached', worker_path('w1'), timeout=10)
        took = time.monotonic() - stopped
        self.assertEqual(sig[0][3][0], 'keepalive timeout')
        self.assertLess(took, 6.0)
        procs[0].kill(signal.SIGCONT)
        # The live worker stays, and the daemon does run an hour behind.
        self.assertTrue(self.worker_prop('w2', 'Connected'))
        self.assertEqual(self.signals_named('Detached', worker_path('w2')), [])
        self.wait_until(lambda: self.wall_offset('w2') < -(HOUR - 60), timeout=10,
                        message='LastMessageUSec an hour behind')
        # DisconnectedSinceUSec is published on the daemon's (stepped) clock.
        since = self.worker_prop('w1', 'DisconnectedSinceUSec') / 1e6
        self.assertLess(since, time.time() - (HOUR - 60))

    def test_missing_timer_survives_step_and_reload(self):
        """The missing alarm counts elapsed time, not wall-clock differences."""
        path = worker_path('away')
        started = time.monotonic()
        self.step_clock(HOUR)
        # A reload that changes the timeout re-arms the timer.
        self.write_config(open(self.config_path).read().replace('MissingTimeout=8', 'MissingTimeout=9'))
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')
        self.wait_until(lambda: self.worker_prop('away', 'MissingTimeoutUSec') == 9 * 1000000,
                        message='new MissingTimeout')
        # The old daemon raised Missing at once: "an hour" had passed.
        remaining = 9.0 - (time.monotonic() - started)
        self.assert_stays(lambda: not self.signals_named('Missing', path), remaining - 2.0,
                          'Missing raised before its timeout after a clock step')
        self.wait_signal('Missing', path, timeout=10)
        took = time.monotonic() - started
        self.assertGreaterEqual(took, 8.5)


class KeepaliveRequestTest(ClockTestCase):
    """A worker whose WebSocket layer answers pings but whose protocol layer
    never answers our keepalive requests is dead to Buildbot: it is dropped
    with a reason, and the unanswered requests do not pile up."""

    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(KeepaliveInterval='1') +
                          '[Worker good]\nPassword=p\nMissingTimeout=60\n'
                          '[Worker mute]\nPassword=p\nMissingTimeout=60\nBuilders=b\n')
        self.start_daemon()
        self.add_worker('good', 'p').start()
        self.wait_connected('good')

    def attached_raw(self):
        """A raw client that answers the attach sequence like a worker."""
        ws = RawWebSocket(self.port, 'mute', 'p')
        self.assertEqual(ws.status, 101)
        for _ in range(3):
            op, payload = ws.recv_frame()
            msg = msgpack.unpackb(payload)
            result = {'admin': 'x', 'host': 'y', 'version': '3.7.0', 'basedir': self.workdir,
                      'worker_commands': {'shell': '3.1'}} \
                if msg['op'] == 'get_worker_info' else None
            ws.send_frame(msgpack.packb({'op': 'response', 'seq_number': msg['seq_number'],
                                         'result': result}))
        self.wait_connected('mute')
        return ws

    def test_pings_without_keepalive_answers_is_dropped(self):
        ws = self.attached_raw()
        attached = time.monotonic()

        seen = {'pings': 0, 'keepalives': 0, 'close': None}

        def serve():
            ws.sock.settimeout(30)
            try:
                while True:
                    op, payload = ws.recv_frame()
                    if op == 9:
                        seen['pings'] += 1
                        ws.send_frame(payload, opcode=10)
                    elif op == 8:
                        seen['close'] = payload[2:].decode(errors='replace')
                        return
                    elif op == 2 and msgpack.unpackb(payload).get('op') == 'keepalive':
                        seen['keepalives'] += 1
            except (EOFError, OSError, socket.timeout):
                return

        reader = threading.Thread(target=serve, daemon=True)
        reader.start()
        sig = self.wait_signal('Detached', worker_path('mute'), timeout=15)
        took = time.monotonic() - attached
        reason = sig[0][3][0]
        self.assertIn('keepalive', reason)
        self.assertIn('not answered', reason)
        # Quiet for one interval, then the request has the two-interval
        # liveness window: about three intervals in all.
        self.assertGreaterEqual(took, 2.0)
        self.assertLess(took, 8.0)
        reader.join(10)
        self.assertGreaterEqual(seen['pings'], 1)
        # One keepalive request at a time, not one per check.
        self.assertEqual(seen['keepalives'], 1)
        self.assertIsNotNone(seen['close'])
        self.assertIn('keepalive', seen['close'])
        self.assertIn('Worker mute from 127.0.0.1', self.daemon_log())
        ws.close()
        self.assertTrue(self.worker_prop('good', 'Connected'))
        self.assertEqual(self.signals_named('Detached', worker_path('good')), [])
        self.assertIsNone(self.daemon.poll())

    def test_unanswered_requests_are_bounded(self):
        """A worker that answers keepalives but never start_command cannot make
        the daemon hold an unbounded number of pending requests."""
        ws = self.attached_raw()
        seen = {'starts': 0, 'close': None}

        def serve():
            ws.sock.settimeout(30)
            try:
                while True:
                    op, payload = ws.recv_frame()
                    if op == 9:
                        ws.send_frame(payload, opcode=10)
                    elif op == 8:
                        seen['close'] = payload[2:].decode(errors='replace')
                        return
                    elif op == 2:
                        msg = msgpack.unpackb(payload)
                        if msg.get('op') == 'start_command' and msg['command_name'] == 'shell':
                            seen['starts'] += 1
                            continue
                        ws.send_frame(msgpack.packb({'op': 'response', 'result': None,
                                                     'seq_number': msg['seq_number']}))
                        if msg.get('op') == 'start_command':
                            # Preparing the builder's directory succeeds.
                            ws.send_frame(msgpack.packb({'op': 'complete', 'seq_number': 0,
                                                         'command_id': msg['command_id'],
                                                         'args': None}))
            except (EOFError, OSError, socket.timeout):
                return

        reader = threading.Thread(target=serve, daemon=True)
        reader.start()
        build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                          GLib.Variant('(sa{sv})', ('b', {})))[0]
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running',
                        timeout=10, message='build running')
        args = GLib.Variant('(sa{sv})', ('shell', {'command': GLib.Variant('s', 'true')}))
        for _ in range(300):
            try:
                self.call(build, BUILD_IFACE, 'RunCommand', args)
            except GLib.Error:
                break       # the build lost its worker
        sig = self.wait_signal('Detached', worker_path('mute'), timeout=10)
        self.assertIn('256 requests left unanswered', sig[0][3][0])
        reader.join(10)
        self.assertEqual(seen['starts'], 256)
        self.assertIn('unanswered', seen['close'] or '')
        self.assertTrue(self.worker_prop('good', 'Connected'))
        self.assertIsNone(self.daemon.poll())


if __name__ == '__main__':
    bfharness.main()
