#!/usr/bin/python3
# The small items of issue 12: a released build leaves no command running even
# when its worker never completes it; a reattach resets every info-derived
# property; user-supplied text cannot forge log lines; numeric options of
# RequestBuild and RunCommand are validated by one rule whatever their type.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import re
import socket
import subprocess
import sys
import threading
import time

import msgpack
from gi.repository import GLib

import bfharness
from bfharness import (BUILD_IFACE, COMMAND_IFACE, FLEET_PATH, MANAGER_IFACE, WORKER_IFACE,
                       RawWebSocket, worker_path)


class ScriptedWorker:
    """A hostile worker on a raw WebSocket: it attaches like buildbot-worker,
    acknowledges start_command and interrupt_command, answers pings and
    keepalives, and never completes a command unless told to."""

    def __init__(self, test, name, password, info=None):
        self.ws = RawWebSocket(test.port, name, password)
        test.assertEqual(self.ws.status, 101)
        self.info = info if info is not None else {
            'admin': 'x', 'host': 'y', 'version': '3.7.0',
            'worker_commands': {'shell': '3.1', 'stat': '3.1'}}
        self.received = []          # every request from the daemon, in order
        self.responses = []         # responses to our own requests
        self.lock = threading.Lock()
        self.seq = 1000
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def _send(self, msg):
        with self.lock:
            self.ws.send_frame(msgpack.packb(msg))

    def _run(self):
        self.ws.sock.settimeout(None)
        try:
            while True:
                op, payload = self.ws.recv_frame()
                if op == 9:         # ping
                    with self.lock:
                        self.ws.send_frame(payload, opcode=10)
                    continue
                if op == 8:
                    break
                if op != 2:
                    continue
                msg = msgpack.unpackb(payload)
                if msg.get('op') == 'response':
                    self.responses.append(msg)
                    continue
                self.received.append(msg)
                result = self.info if msg['op'] == 'get_worker_info' else None
                self._send({'op': 'response', 'seq_number': msg['seq_number'], 'result': result})
        except (EOFError, OSError):
            pass
        self.closed = True

    def requests(self, op):
        return [m for m in list(self.received) if m['op'] == op]

    def send_for_command(self, op, command_id, args):
        self.seq += 1
        self._send({'op': op, 'seq_number': self.seq, 'command_id': command_id, 'args': args})
        return self.seq

    def response_to(self, seq):
        return next((r for r in list(self.responses) if r['seq_number'] == seq), None)

    def close(self):
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.close()
        self.thread.join(5)


class SmallTestCase(bfharness.FleetTestCase):
    def start(self, workers, **daemon):
        keys = {'FinishedBuildLifetime': '30'}
        keys.update(daemon)
        text = self.daemon_section(**keys)
        for name in workers:
            text += '[Worker %s]\nPassword=pw-%s\nBuilders=b\nMaxBuilds=4\nMissingTimeout=60\n' % (name, name)
        self.write_config(text)
        self.start_daemon()

    def request(self, builder='b', **options):
        return self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                         GLib.Variant('(sa{sv})', (builder, options)))[0]

    def wait_build_state(self, build, state, timeout=15):
        return self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == state, timeout,
                               'build %s %s' % (build, state))

    def run_command(self, build, name, args):
        return self.call(build, BUILD_IFACE, 'RunCommand', GLib.Variant('(sa{sv})', (name, args)))[0]


    def assert_alive(self):
        self.assertIsNone(self.daemon.poll(), 'daemon exited:\n' + self.daemon_log()[-4000:])
        self.assertNotIn('CRITICAL', self.daemon_log())


class ReleaseTest(SmallTestCase):
    """Release ends every command of the build at once, on the bus and on the
    worker, whether or not the worker ever completes it."""

    def test_release_completes_a_command_the_worker_never_completes(self):
        self.start(['good', 'evil'], KeepaliveInterval='1')
        self.add_worker('good', 'pw-good').start()
        self.wait_connected('good')
        evil = ScriptedWorker(self, 'evil', 'pw-evil')
        self.wait_connected('evil')

        build = self.request(worker=GLib.Variant('s', 'evil'), detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        cmd = self.run_command(build, 'shell', {'command': GLib.Variant('s', 'sleep 600'),
                                                'workdir': GLib.Variant('s', '/')})
        self.wait_until(lambda: evil.requests('start_command'), message='start_command at the worker')
        command_id = evil.requests('start_command')[0]['command_id']
        # The worker never completes it: it stays running, however long.
        self.assert_stays(lambda: self.prop(cmd, COMMAND_IFACE, 'State') == 'running', 1.0,
                          'command running before Release')

        start = time.monotonic()
        self.call(build, BUILD_IFACE, 'Release')
        # Completed arrives promptly: at most a short grace, not "never".
        code, failure = self.wait_signal('Completed', cmd, timeout=10)[0][3]
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, 5.0)
        self.assertEqual(code, -1)
        self.assertEqual(failure, 'interrupted: the build was released')
        p = self.props(cmd, COMMAND_IFACE)
        self.assertEqual((p['State'], p['ExitCode'], p['Failure']),
                         ('finished', -1, 'interrupted: the build was released'))
        self.wait_build_state(build, 'finished')
        finished = self.wait_signal('Finished', build)
        self.assertEqual(finished[0][3], ('released',))
        # Every command is final before the build says it finished.
        order = [(s[0], s[2]) for s in self.signals if s[2] in ('Completed', 'Finished')]
        self.assertLess(order.index((cmd, 'Completed')), order.index((build, 'Finished')))
        # The worker was asked to interrupt it.
        self.wait_until(lambda: [m for m in evil.requests('interrupt_command')
                                 if m['command_id'] == command_id], message='interrupt_command sent')
        self.assertEqual(self.prop(worker_path('evil'), WORKER_IFACE, 'ActiveBuilds'), 0)

        # Late output and completion from the worker are acknowledged (a real
        # worker logs a traceback for an error) and change nothing.
        completed_before = len(self.signals_named('Completed', cmd))
        s1 = evil.send_for_command('update', command_id, [['stdout', 'late\n'], ['rc', 0]])
        s2 = evil.send_for_command('complete', command_id, None)
        self.wait_until(lambda: evil.response_to(s1) and evil.response_to(s2), message='responses')
        self.assertNotIn('is_exception', evil.response_to(s1))
        self.assertNotIn('is_exception', evil.response_to(s2))
        # Once completed by the worker, the command is forgotten.
        s3 = evil.send_for_command('update', command_id, [['stdout', 'later\n']])
        self.wait_until(lambda: evil.response_to(s3), message='response')
        self.assertTrue(evil.response_to(s3).get('is_exception'))
        self.assert_stays(lambda: len(self.signals_named('Completed', cmd)) == completed_before and
                          not [s for s in self.signals_named('Output', cmd) if 'late' in s[3][1]], 0.3,
                          'late output or completion published')
        self.assertEqual(self.prop(cmd, COMMAND_IFACE, 'ExitCode'), -1)
        self.assertTrue(self.worker_prop('evil', 'Connected'))
        self.assertTrue(self.worker_prop('good', 'Connected'))
        self.assert_alive()

    def test_late_messages_after_the_build_left_the_bus(self):
        # Run under the ASan build too: the connection must not call into a
        # command that is gone, nor keep one alive forever.
        self.start(['evil'], KeepaliveInterval='0', FinishedBuildLifetime='0.5')
        evil = ScriptedWorker(self, 'evil', 'pw-evil')
        self.wait_connected('evil')
        build = self.request(worker=GLib.Variant('s', 'evil'), detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        cmds = [self.run_command(build, 'stat', {'path': GLib.Variant('s', '/%d' % i)}) for i in range(2)]
        self.wait_until(lambda: len(evil.requests('start_command')) == 2, message='both commands started')
        ids = [m['command_id'] for m in evil.requests('start_command')]
        self.call(build, BUILD_IFACE, 'Release')
        for c in cmds:
            self.assertEqual(self.wait_signal('Completed', c)[0][3][0], -1)
        self.wait_until(lambda: build not in self.managed_objects(), message='build left the bus')
        seqs = [evil.send_for_command('update', ids[0], [['stdout', 'late\n']]),
                evil.send_for_command('complete', ids[0], None)]
        self.wait_until(lambda: all(evil.response_to(s) for s in seqs), message='responses')
        for s in seqs:
            self.assertTrue(evil.response_to(s).get('is_exception'))
            self.assertIn('no command', evil.response_to(s)['result'])
        self.assert_alive()

        # A second build's abandoned command is still registered when the
        # worker goes away: nothing happens twice.
        build = self.request(worker=GLib.Variant('s', 'evil'), detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        cmd = self.run_command(build, 'stat', {'path': GLib.Variant('s', '/')})
        self.wait_until(lambda: len(evil.requests('start_command')) == 3, message='third command started')
        self.call(build, BUILD_IFACE, 'Release')
        self.wait_signal('Completed', cmd)
        evil.close()
        self.wait_connected('evil', value=False)
        self.wait_until(lambda: build not in self.managed_objects(), message='build left the bus')
        self.assertEqual(len(self.signals_named('Completed', cmd)), 1)
        self.assert_alive()

    def test_release_with_a_real_worker(self):
        self.start(['w1'])
        w = self.add_worker('w1', 'pw-w1').start()
        self.wait_connected('w1')
        build = self.request(detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        cmd = self.run_command(build, 'shell', {'command': GLib.Variant('as', ['sleep', '600'])})
        self.wait_until(lambda: self.signals_named('Output', cmd), timeout=15, message='header output')
        self.call(build, BUILD_IFACE, 'Release')
        code, failure = self.wait_signal('Completed', cmd, timeout=5)[0][3]
        self.assertEqual((code, failure), (-1, 'interrupted: the build was released'))
        self.assertEqual(self.prop(build, BUILD_IFACE, 'State'), 'finished')
        # The worker's own late completion does not disturb it: it is
        # acknowledged, the worker stays attached and takes the next build.
        self.wait_until(lambda: 'command_complete (success) <buildbot_worker.commands.shell' in w.log(),
                        timeout=15, message='the worker completed the interrupted command')
        build2 = self.request(detached=GLib.Variant('b', True))
        self.wait_build_state(build2, 'running')
        ok = self.run_command(build2, 'shell', {'command': GLib.Variant('s', 'true')})
        self.assertEqual(self.wait_signal('Completed', ok, timeout=20)[0][3], (0, ''))
        self.assertNotIn('RemoteWorkerError', w.log())
        self.assertEqual([s for s in self.signals_named('Output', cmd) if 'killed' in s[3][1]], [])
        self.assertTrue(self.worker_prop('w1', 'Connected'))
        self.assert_alive()

    CLIENT = '''
import sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
def call(path, iface, method, args):
    return bus.call_sync('org.buildfleet.Fleet1', path, 'org.buildfleet.Fleet1.' + iface, method,
                         args, None, 0, 5000, None).unpack()[0]
build = call('/org/buildfleet/Fleet1', 'Manager', 'RequestBuild',
             GLib.Variant('(sa{sv})', ('b', {'worker': GLib.Variant('s', 'evil')})))
for attempt in range(500):
    try:
        cmd = call(build, 'Build', 'RunCommand', GLib.Variant('(sa{sv})', (
            'stat', {'path': GLib.Variant('s', '/')})))
        break
    except GLib.Error as e:
        if 'NotConnected' not in str(e) or attempt == 499:
            raise
        GLib.usleep(20000)
print(build, cmd, flush=True)
sys.stdin.readline()
'''

    def test_owner_gone_completes_commands_at_once(self):
        self.start(['evil'], KeepaliveInterval='0')
        evil = ScriptedWorker(self, 'evil', 'pw-evil')
        self.wait_connected('evil')
        client = subprocess.Popen(['/usr/bin/python3', '-c', self.CLIENT], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=os.environ)
        self.addCleanup(client.wait)
        self.addCleanup(client.kill)
        build, cmd = client.stdout.readline().split()
        self.wait_until(lambda: evil.requests('start_command'), message='start_command at the worker')
        client.kill()
        code, failure = self.wait_signal('Completed', cmd, timeout=10)[0][3]
        self.assertEqual((code, failure), (-1, "interrupted: the build's owner left the bus"))
        self.assertEqual(self.wait_signal('Finished', build)[0][3], ('owner-gone',))
        self.assert_alive()


class ReattachInfoTest(SmallTestCase):
    def test_reattach_without_admin_and_host_clears_them(self):
        self.start(['w1'])
        w = self.add_worker('w1', 'pw-w1', admin='Jane <jane@example.com>', host='rack 4').start()
        self.wait_connected('w1')
        p = self.props(worker_path('w1'), WORKER_IFACE)
        self.assertEqual((p['Admin'], p['Host']), ('Jane <jane@example.com>', 'rack 4'))
        self.assertEqual(p['Info']['host'], 'rack 4')

        w.stop()
        self.wait_connected('w1', value=False)
        os.unlink(os.path.join(w.basedir, 'info', 'admin'))
        os.unlink(os.path.join(w.basedir, 'info', 'host'))
        w.start()
        self.wait_connected('w1')
        p = self.props(worker_path('w1'), WORKER_IFACE)
        self.assertEqual((p['Admin'], p['Host']), ('', ''))
        self.assertNotIn('admin', p['Info'])
        self.assertNotIn('host', p['Info'])
        self.assertTrue(p['Version'].startswith('3.7'))

    def test_scripted_reattach_resets_every_info_property(self):
        self.start(['evil'], KeepaliveInterval='0')
        first = ScriptedWorker(self, 'evil', 'pw-evil',
                               info={'admin': 'a', 'host': 'h', 'version': '9.9',
                                     'worker_commands': {'shell': '3.1'}, 'basedir': '/srv'})
        self.wait_connected('evil')
        p = self.props(worker_path('evil'), WORKER_IFACE)
        self.assertEqual((p['Admin'], p['Host'], p['Version']), ('a', 'h', '9.9'))
        self.assertEqual(p['Commands'], {'shell': '3.1'})
        first.close()
        self.wait_connected('evil', value=False)
        ScriptedWorker(self, 'evil', 'pw-evil', info={})
        self.wait_connected('evil')
        p = self.props(worker_path('evil'), WORKER_IFACE)
        self.assertEqual((p['Admin'], p['Host'], p['Version'], p['Info'], p['Commands']),
                         ('', '', '', {}, {}))


class LogInjectionTest(SmallTestCase):
    FORGED = 'buildfleetd-Message: 12:00:00.000: Worker w1 attached from 10.0.0.1:1 (buildbot-worker 3.7.0)'

    def log_lines(self, needle):
        return [l for l in self.daemon_log().splitlines() if needle in l]

    def test_multi_line_pause_reason_is_one_escaped_line(self):
        self.start(['w1'])
        reason = 'disk full\n' + self.FORGED + '\r\x1b[2Jcleared\ttab\\'
        self.worker_call('w1', 'Pause', GLib.Variant('(s)', (reason,)))
        self.wait_until(lambda: self.log_lines('paused by'), message='pause logged')
        lines = self.log_lines('paused by')
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].endswith(
            'disk full\\n' + self.FORGED + '\\r\\x1b[2Jcleared\\ttab\\'), lines[0])
        self.assertEqual([l for l in self.daemon_log().splitlines() if l.startswith(self.FORGED)], [])
        self.assertNotIn('\x1b', self.daemon_log())
        # The bus keeps the reason as given.
        self.assertEqual(self.worker_prop('w1', 'PauseReason'), reason)

        # Bounded at the method: over 1 KiB is refused, naming the limit.
        err, msg = self.call_error(worker_path('w1'), WORKER_IFACE, 'Pause',
                                   GLib.Variant('(s)', ('x' * 1025,)))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('1024', msg)
        self.assertEqual(self.worker_prop('w1', 'PauseReason'), reason)

    def test_worker_supplied_version_cannot_forge_lines(self):
        self.start(['evil'], KeepaliveInterval='0')
        ScriptedWorker(self, 'evil', 'pw-evil', info={'version': '3.7\n' + self.FORGED + 'v' * 100000})
        self.wait_connected('evil')
        self.wait_until(lambda: self.log_lines('Worker evil attached'), message='attach logged')
        self.assertEqual([l for l in self.daemon_log().splitlines() if l.startswith(self.FORGED)], [])
        line = self.log_lines('Worker evil attached')[0]
        self.assertIn('3.7\\n' + self.FORGED, line)
        # Bounded too: 4 KiB of message and a marker, not 100 KB.
        self.assertLess(len(line.encode()), 4300)
        self.assertRegex(line, r'… \[\d+ more bytes\]$')


class NumericOptionsTest(SmallTestCase):
    def setUp(self):
        super().setUp()
        self.start(['w1'])
        self.add_worker('w1', 'pw-w1').start()
        self.wait_connected('w1')

    def request_error(self, options):
        return self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                               GLib.Variant('(sa{sv})', ('b', options)))

    def test_request_build_timeout(self):
        errors = {}
        for v in (GLib.Variant('x', -1), GLib.Variant('i', -5), GLib.Variant('d', -1.0),
                  GLib.Variant('d', float('nan')), GLib.Variant('d', float('inf')),
                  GLib.Variant('t', 2 ** 64 - 1)):
            err, msg = self.request_error({'timeout-usec': v})
            self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs', (v, msg))
            errors[v.print_(True)] = msg
        rule = re.sub(r', not .*$', '', errors['int64 -1'])
        self.assertIn('timeout-usec', rule)
        for printed, msg in errors.items():
            self.assertTrue(msg.startswith(rule), (printed, msg, rule))
        self.assertEqual([p for p in self.managed_objects() if '/builds/' in p], [])

        # Every non-negative number within the limit is taken, whatever its type.
        for v in (GLib.Variant('t', 0), GLib.Variant('u', 20000000), GLib.Variant('i', 20000000),
                  GLib.Variant('x', 20000000), GLib.Variant('d', 20000000.5)):
            b = self.request(detached=GLib.Variant('b', True), **{'timeout-usec': v})
            self.wait_build_state(b, 'running')
            self.call(b, BUILD_IFACE, 'Release')
        # ... and means what it says: a build nobody takes times out.
        self.worker_call('w1', 'Pause', GLib.Variant('(s)', ('hold',)))
        b = self.request(detached=GLib.Variant('b', True), **{'timeout-usec': GLib.Variant('i', 300000)})
        self.assertEqual(self.wait_signal('Finished', b, timeout=10)[0][3], ('timeout',))

        err, msg = self.request_error({'detached': GLib.Variant('i', 1)})
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('detached', msg)

    def test_run_command_timeouts(self):
        build = self.request(detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        for arg in ('timeout', 'maxTime', 'sigtermTime'):
            messages = []
            for v in (GLib.Variant('i', -5), GLib.Variant('x', -5), GLib.Variant('d', -5.0),
                      GLib.Variant('d', float('nan')), GLib.Variant('d', float('inf'))):
                err, msg = self.call_error(build, BUILD_IFACE, 'RunCommand', GLib.Variant(
                    '(sa{sv})', ('shell', {'command': GLib.Variant('s', 'true'), arg: v})))
                self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs', (arg, v, msg))
                self.assertIn('“%s”' % arg, msg)
                messages.append(re.sub(r', not .*$', '', msg))
            self.assertEqual(len(set(messages)), 1, messages)
        self.assertEqual([p for p in self.managed_objects() if '/commands/' in p], [])
        for v in (GLib.Variant('i', 30), GLib.Variant('d', 30.5), GLib.Variant('t', 0)):
            ok = self.run_command(build, 'shell', {'command': GLib.Variant('s', 'true'), 'timeout': v})
            self.assertEqual(self.wait_signal('Completed', ok, timeout=20)[0][3], (0, ''))


class Figures(SmallTestCase):
    """Not a test (not in meson.build): prints the before/after figures of
    the report.  BUILDFLEETD=path/to/buildfleetd python3 test_small_hardening.py Figures"""

    def report(self, what, value):
        print('FIGURE %s: %s' % (what, value), file=sys.stderr, flush=True)

    def test_figures(self):
        self.start(['evil', 'w1'], KeepaliveInterval='0')
        evil = ScriptedWorker(self, 'evil', 'pw-evil',
                              info={'admin': 'a', 'host': 'h', 'version': '3.7\n' + LogInjectionTest.FORGED,
                                    'worker_commands': {'shell': '3.1'}})
        self.wait_connected('evil')

        # Release with a worker that never completes its command.
        build = self.request(worker=GLib.Variant('s', 'evil'), detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        cmd = self.run_command(build, 'shell', {'command': GLib.Variant('s', 'x'),
                                                'workdir': GLib.Variant('s', '/')})
        self.wait_until(lambda: evil.requests('start_command'), message='start_command')
        start = time.monotonic()
        self.call(build, BUILD_IFACE, 'Release')
        try:
            self.wait_signal('Completed', cmd, timeout=10)
            self.report('Release -> Completed (scripted worker never completes)',
                        '%.0f ms' % ((time.monotonic() - start) * 1000))
        except AssertionError:
            self.report('Release -> Completed (scripted worker never completes)', 'none within 10 s')
        p = self.props(cmd, COMMAND_IFACE)
        self.report('Command after Release', 'State=%s ExitCode=%d Failure=%r'
                    % (p['State'], p['ExitCode'], p['Failure']))

        # Log lines.
        self.worker_call('evil', 'Pause', GLib.Variant('(s)', ('disk full\n' + LogInjectionTest.FORGED,)))
        self.wait_until(lambda: 'paused by' in self.daemon_log(), message='pause logged')
        forged = [l for l in self.daemon_log().splitlines() if l.startswith(LogInjectionTest.FORGED)]
        self.report('forged log lines (1 pause reason + 1 worker version)', len(forged))
        ScriptedWorker(self, 'w1', 'pw-w1', info={'version': 'v' * 100000})
        self.wait_until(lambda: 'Worker w1 attached from 127' in self.daemon_log(), message='w1 attached')
        line = [l for l in self.daemon_log().splitlines() if 'Worker w1 attached from 127' in l][0]
        self.report('log line for a worker reporting a 100,000-byte version', '%d bytes' % len(line.encode()))

        # Numbers.
        for opts in ({'timeout-usec': GLib.Variant('x', -1)}, {'timeout-usec': GLib.Variant('d', -1.0)},
                     {'timeout-usec': GLib.Variant('t', 2 ** 64 - 1)}):
            self.worker_call('evil', 'Pause', GLib.Variant('(s)', ('busy',)))
            try:
                b = self.request(worker=GLib.Variant('s', 'evil'), detached=GLib.Variant('b', True), **opts)
                start = time.monotonic()
                try:
                    self.wait_signal('Finished', b, timeout=2)
                    result = 'accepted; Finished(timeout) after %.0f ms' % ((time.monotonic() - start) * 1000)
                except AssertionError:
                    result = 'accepted; still pending after 2 s'
                    self.call(b, BUILD_IFACE, 'Release')
            except GLib.Error as e:
                result = 'refused: ' + e.message.split(': ', 1)[-1]
            self.report('RequestBuild %s' % list(opts.values())[0].print_(True), result)
        self.worker_call('evil', 'Unpause')
        build = self.request(worker=GLib.Variant('s', 'evil'), detached=GLib.Variant('b', True))
        self.wait_build_state(build, 'running')
        for v in (GLib.Variant('i', -5), GLib.Variant('d', -5.0)):
            try:
                self.run_command(build, 'shell', {'command': GLib.Variant('s', 'x'),
                                                  'workdir': GLib.Variant('s', '/'), 'timeout': v})
                result = 'accepted (sent to the worker)'
            except GLib.Error as e:
                result = 'refused: ' + e.message.split(': ', 1)[-1]
            self.report('RunCommand shell timeout=%s' % v.print_(True), result)

        # Reattach without admin/host.
        evil.close()
        self.wait_connected('evil', value=False)
        ScriptedWorker(self, 'evil', 'pw-evil', info={'version': '3.7.0'})
        self.wait_connected('evil')
        p = self.props(worker_path('evil'), WORKER_IFACE)
        self.report('Admin/Host after reattach without them', '%r/%r' % (p['Admin'], p['Host']))


if __name__ == '__main__':
    bfharness.main()
