#!/usr/bin/python3
# Latent workers with real buildbot-worker instances started by the command
# and local drivers, and the systemd driver against python-dbusmock's
# systemd template.  The classes marked @for_both_protocols run twice:
# XxxTest has its instances speak msgpack (Protocol=msgpack), XxxPbTest
# leaves Protocol= out, so its instances speak PB, the default when the
# daemon has a PB endpoint.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import subprocess
import time

from gi.repository import Gio, GLib

import bfharness
from bfharness import (BUILD_IFACE, FLEET_PATH, LATENT_IFACE, MANAGER_IFACE, for_both_protocols,
                       worker_path)

HERE = os.path.dirname(os.path.abspath(__file__))
# python-dbusmock's systemd template, able to publish units named with '@'
SYSTEMD_TEMPLATE = os.path.join(HERE, 'latent', 'systemd_template.py')
START = os.path.join(HERE, 'latent', 'start-worker.sh')
STOP = os.path.join(HERE, 'latent', 'stop-worker.sh')


class LatentTestCase(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.engine = os.path.join(self.workdir, 'engine')
        os.makedirs(self.engine)

    # Substantiate() answers once the instance has attached and
    # Insubstantiate() once it has stopped: a real buildbot-worker's start
    # and stop, which take seconds on a busy machine, not the default 5 s.
    def substantiate(self, name):
        return self.call(worker_path(name), LATENT_IFACE, 'Substantiate', None, timeout=120000)

    def insubstantiate(self, name, fast):
        return self.call(worker_path(name), LATENT_IFACE, 'Insubstantiate',
                         GLib.Variant('(b)', (fast,)), timeout=120000)

    def protocol_key(self):
        """Protocol= for the class's protocol: msgpack says so, PB is the
        default (the harness's daemon has a PB endpoint)."""
        return 'Protocol=msgpack\n' if self.protocol == 'msgpack' else ''

    def command_worker(self, name='cloud', wait='1', extra='', start=None, stop=None, password='generate'):
        start = start or '%s %s' % (START, self.engine)
        stop = stop if stop is not None else '%s %s %%n' % (STOP, self.engine)
        text = ('[Worker %s]\nPassword=%s\nLatent=command\nStartCommand=%s\nBuilders=b\n'
                'BuildWaitTimeout=%s\nSubstantiationTimeout=20\nNotifyOnMissing=ops@example.com\n'
                % (name, password, start, wait)) + self.protocol_key()
        if stop:
            text += 'StopCommand=%s\n' % stop
        return text + extra

    def engine_lines(self):
        try:
            with open(os.path.join(self.engine, 'engine.log')) as f:
                return [line.split() for line in f]
        except FileNotFoundError:
            return []

    def engine_log(self):
        return [words[0] for words in self.engine_lines()]

    def assert_started_with_protocol(self, name):
        """The engine was asked for the class's protocol, at the endpoint of
        that protocol, and the instance attached speaking it."""
        start = [words for words in self.engine_lines() if words[0] == 'start'][-1]
        scheme = 'pb' if self.protocol == 'pb' else 'ws'
        self.assertEqual(start[1:], [name, self.protocol,
                                     '%s://127.0.0.1:%d' % (scheme, self.worker_port())])
        self.assert_protocol(name)

    def state_file(self):
        try:
            with open(os.path.join(self.statedir, 'workers.state')) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def latent_prop(self, name, prop):
        return self.prop(worker_path(name), LATENT_IFACE, prop)

    def request(self, builder, **opts):
        o = {k: GLib.Variant('s', v) for k, v in opts.items()}
        return self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                         GLib.Variant('(sa{sv})', (builder, o)))[0]

    def build_state(self, build):
        return self.prop(build, BUILD_IFACE, 'State')

    def wait_build(self, build, state, timeout=30):
        self.wait_until(lambda: self.build_state(build) == state, timeout, '%s %s' % (build, state))

    def run_shell(self, build, command):
        cmd = self.call(build, BUILD_IFACE, 'RunCommand',
                        GLib.Variant('(sa{sv})', ('shell', {'command': GLib.Variant('s', command)})))[0]
        return self.wait_signal('Completed', cmd, timeout=20)[0][3]

    def substantiate_async(self, name, results):
        def done(conn, res):
            try:
                conn.call_finish(res)
                results.append('ok')
            except GLib.Error as e:
                results.append(e.message)
        self.bus.call(bfharness.BUS_NAME, worker_path(name), LATENT_IFACE, 'Substantiate', None, None,
                      Gio.DBusCallFlags.NONE, 60000, None, done)


# Left out of PB: tests where no instance ever attaches, or where the
# attaching worker is a static one; the driver does the same for both.
@for_both_protocols(msgpack_only=('test_failing_start_command', 'test_start_that_never_connects',
                                  'test_cancel_while_starting', 'test_leak_reconciliation_stops_leftover',
                                  'test_fresh_instance_per_build'))
class CommandDriverTest(LatentTestCase):
    def test_on_demand_then_idle_stop(self):
        self.write_config(self.daemon_section() + self.command_worker(wait='3'))
        self.start_daemon()
        self.assertEqual(self.latent_prop('cloud', 'State'), 'not-substantiated')
        self.assertFalse(self.worker_prop('cloud', 'Connected'))
        build = self.request('b')
        self.wait_until(lambda: self.latent_prop('cloud', 'State') == 'substantiating',
                        message='substantiating')
        self.wait_build(build, 'running')
        self.wait_signal('Substantiated', worker_path('cloud'))
        self.assertTrue(self.latent_prop('cloud', 'Substantiated'))
        self.assert_started_with_protocol('cloud')
        self.assertEqual(self.run_shell(build, 'echo hi'), (0, ''))
        self.call(build, BUILD_IFACE, 'Release')
        released = time.monotonic()
        # Kept for BuildWaitTimeout (3 s) after the last build, not less ...
        self.assert_stays(lambda: self.latent_prop('cloud', 'State') == 'substantiated',
                          2.0 - (time.monotonic() - released), 'kept for BuildWaitTimeout')
        # ... a new build in that window reuses the instance and resets the timer.
        b2 = self.request('b')
        self.wait_build(b2, 'running')
        self.call(b2, BUILD_IFACE, 'Release')
        released = time.monotonic()
        self.wait_signal('Insubstantiated', worker_path('cloud'), timeout=15)
        self.assertGreaterEqual(time.monotonic() - released, 2.9)
        self.assertEqual(self.engine_log(), ['start', 'stop'])
        self.assertEqual(self.latent_prop('cloud', 'State'), 'not-substantiated')
        self.wait_connected('cloud', value=False)
        # The generated password never shows on the bus or in the log.
        self.assertNotIn('Password', str(self.props(worker_path('cloud'), LATENT_IFACE)))

    def test_fresh_instance_per_build(self):
        self.write_config(self.daemon_section() + self.command_worker(wait='0'))
        self.start_daemon()
        for i in range(3):
            build = self.request('b')
            self.wait_build(build, 'running')
            self.assertEqual(self.run_shell(build, 'true'), (0, ''))
            self.call(build, BUILD_IFACE, 'Release')
            self.wait_signal('Insubstantiated', worker_path('cloud'), count=i + 1, timeout=15)
        self.assertEqual(self.engine_log(), ['start', 'stop'] * 3)

    def test_failing_start_command(self):
        fail = os.path.join(self.workdir, 'fail.sh')
        with open(fail, 'w') as f:
            f.write('#!/bin/sh\necho "no capacity in region $1" >&2\nexit 3\n')
        os.chmod(fail, 0o755)
        self.write_config(self.daemon_section(QuarantineInitial='30') +
                          self.command_worker(start='%s eu-1' % fail) +
                          '[Worker static]\nPassword=p\nBuilders=b\n')
        self.start_daemon()
        build = self.request('b')
        sig = self.wait_signal('SubstantiationFailed', worker_path('cloud'), timeout=10)
        message = sig[0][3][0]
        self.assertIn('StartCommand exited with status 3', message)
        self.assertIn('no capacity in region eu-1', message)
        self.assertEqual(self.latent_prop('cloud', 'LastError'), message)
        self.assertTrue(self.worker_prop('cloud', 'Quarantined'))
        self.wait_until(lambda: self.latent_prop('cloud', 'State') == 'not-substantiated',
                        message='stopped after failure')
        self.wait_until(lambda: any('failed to start' in m for m in self.mails()), message='mail')
        # The build is not lost: it waits, and another worker takes it.
        self.assertEqual(self.build_state(build), 'pending')
        self.add_worker('static', 'p').start()
        self.wait_build(build, 'running')
        self.assertEqual(self.prop(build, BUILD_IFACE, 'Worker'), worker_path('static'))
        err, msg = self.call_error(worker_path('cloud'), LATENT_IFACE, 'Substantiate')
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.Busy')
        self.assertIn('quarantined', msg)

    def test_start_that_never_connects(self):
        self.write_config(self.daemon_section() +
                          self.command_worker(start='/bin/true', extra='').replace(
                              'SubstantiationTimeout=20', 'SubstantiationTimeout=1'))
        self.start_daemon()
        start = time.monotonic()
        results = []
        self.substantiate_async('cloud', results)
        sig = self.wait_signal('SubstantiationFailed', worker_path('cloud'), timeout=10)
        took = time.monotonic() - start
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 5)
        self.assertIn('did not connect within 1.0 s', sig[0][3][0])
        self.wait_until(lambda: results, message='Substantiate answered')
        self.assertIn('did not connect', results[0])
        self.wait_until(lambda: self.engine_log() == ['stop'], message='StopCommand ran')

    def test_cancel_while_starting(self):
        slow = os.path.join(self.workdir, 'slow.sh')
        started = os.path.join(self.workdir, 'slow-started')
        with open(slow, 'w') as f:
            f.write('#!/bin/sh\ntouch %s\nsleep 5\n' % started)
        os.chmod(slow, 0o755)
        self.write_config(self.daemon_section() + self.command_worker(start=slow))
        self.start_daemon()
        results = []
        self.substantiate_async('cloud', results)
        self.wait_until(lambda: self.latent_prop('cloud', 'State') == 'substantiating', message='starting')
        self.wait_until(lambda: os.path.exists(started), message='StartCommand running')
        start = time.monotonic()
        self.worker_call('cloud', 'Insubstantiate', GLib.Variant('(b)', (True,)), iface=LATENT_IFACE)
        self.assertEqual(self.latent_prop('cloud', 'State'), 'not-substantiated')
        self.assertLess(time.monotonic() - start, 3)
        self.wait_until(lambda: results, message='Substantiate answered')
        self.assertIn('cancelled', results[0])
        self.assertEqual(self.engine_log(), ['stop'])
        self.assert_stays(lambda: not self.worker_prop('cloud', 'Quarantined') and
                          not self.signals_named('SubstantiationFailed'), 1.0,
                          'a cancelled start is no failure')

    def test_connection_refused_when_not_substantiating(self):
        self.write_config(self.daemon_section() + self.command_worker(password='fixed-pw'))
        self.start_daemon()
        w = self.add_worker('cloud', 'fixed-pw').start()
        self.wait_until(lambda: 'latent worker cloud is not being substantiated' in self.daemon_log(),
                        timeout=15, message='refused')
        self.assertFalse(self.worker_prop('cloud', 'Connected'))
        w.stop()

    def test_graceful_insubstantiates_when_idle(self):
        self.write_config(self.daemon_section() + self.command_worker(wait='-1'))
        self.start_daemon()
        build = self.request('b')
        self.wait_build(build, 'running')
        self.worker_call('cloud', 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.assert_stays(lambda: self.latent_prop('cloud', 'State') == 'substantiated', 1.0,
                          'a graceful instance kept while it runs a build')
        self.call(build, BUILD_IFACE, 'Release')
        self.wait_signal('Insubstantiated', worker_path('cloud'), timeout=10)

    def test_leak_reconciliation_stops_leftover(self):
        slow = os.path.join(self.workdir, 'never.sh')
        with open(slow, 'w') as f:
            f.write('#!/bin/sh\nexit 0\n')
        os.chmod(slow, 0o755)
        self.write_config(self.daemon_section() + self.command_worker(start=slow).replace(
            'SubstantiationTimeout=20', 'SubstantiationTimeout=3'))
        self.start_daemon()
        results = []
        self.substantiate_async('cloud', results)
        self.wait_until(lambda: self.latent_prop('cloud', 'State') == 'substantiating', message='starting')
        # The instance is on disk before its start is under way: what the next daemon reconciles.
        self.wait_until(lambda: '[Instance cloud]' in self.state_file(), message='the instance in the state file')
        self.stop_daemon(signal.SIGKILL)
        self.assertEqual(self.engine_log(), [])
        self.start_daemon()
        # Not adopted (nothing connects): stopped, quietly, before anything else.
        self.wait_until(lambda: self.engine_log() == ['stop'], timeout=10, message='leftover stopped')
        self.wait_until(lambda: self.latent_prop('cloud', 'State') == 'not-substantiated',
                        message='not substantiated')
        self.assertFalse(self.worker_prop('cloud', 'Quarantined'))
        self.assertEqual(self.signals_named('SubstantiationFailed'), [])
        self.stop_daemon()
        with open(os.path.join(self.statedir, 'workers.state')) as f:
            self.assertNotIn('[Instance cloud]', f.read())


@for_both_protocols
class LocalDriverTest(LatentTestCase):
    def local_worker(self, extra=''):
        return ('[Worker local-1]\nPassword=generate\nLatent=local\nBuilders=b\nBuildWaitTimeout=-1\n'
                'SubstantiationTimeout=30\n' + self.protocol_key() + extra)

    def fixed_ports(self):
        """[Daemon] keys for endpoints on the same ports across restarts, so
        that an orphaned instance finds the next daemon."""
        import socket
        ports = []
        for _ in bfharness.PROTOCOLS:
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            ports.append(s)
        keys = {'Listen': '127.0.0.1:%d' % ports[0].getsockname()[1],
                'ListenPB': '127.0.0.1:%d' % ports[1].getsockname()[1]}
        for s in ports:
            s.close()
        return keys

    def assert_local_protocol(self):
        """The instance was created for the class's protocol and speaks it."""
        import re
        with open(os.path.join(self.statedir, 'local', 'local-1', 'buildbot.tac')) as f:
            tac = f.read()

        def setting(name):      # (not the whole file in a failure: it holds the password)
            m = re.search(r'^%s = (.*)$' % name, tac, re.M)
            return m and m.group(1)
        self.assertEqual(setting('protocol'), repr('pb' if self.protocol == 'pb' else 'msgpack_experimental_v7'))
        self.assertEqual(setting('port'), str(self.worker_port()))
        self.assert_protocol('local-1')

    def local_pid(self):
        for line in self.state_file().splitlines():
            if line.startswith('Id='):
                return int(line.split('=', 1)[1])
        return None

    def test_substantiate_and_insubstantiate(self):
        self.write_config(self.daemon_section() + self.local_worker())
        self.start_daemon()
        self.substantiate('local-1')
        self.assertTrue(self.worker_prop('local-1', 'Connected'))
        self.assertEqual(self.latent_prop('local-1', 'State'), 'substantiated')
        self.assertIn('local latent worker', self.worker_prop('local-1', 'Host'))
        self.assert_local_protocol()
        basedir = os.path.join(self.statedir, 'local', 'local-1')
        self.assertEqual(self.worker_prop('local-1', 'Info')['basedir'], basedir)
        # The generated password went into buildbot.tac (0600), not onto a command line.
        tac = os.path.join(basedir, 'buildbot.tac')
        self.assertEqual(os.stat(tac).st_mode & 0o777, 0o600)
        with open(tac) as f:
            self.assertNotIn('placeholder', f.read())
        pid = self.wait_until(self.local_pid, message='the instance\'s pid in the state file')
        self.assertTrue(os.path.exists('/proc/%d' % pid))
        # Substantiate again: nothing new starts.
        self.substantiate('local-1')
        self.assertEqual(len(self.signals_named('Substantiated')), 1)
        self.insubstantiate('local-1', False)
        self.assertEqual(self.latent_prop('local-1', 'State'), 'not-substantiated')
        self.assertFalse(os.path.exists('/proc/%d' % pid))
        self.wait_connected('local-1', value=False)

    def test_build_on_local_worker(self):
        self.write_config(self.daemon_section() + self.local_worker())
        self.start_daemon()
        build = self.request('b')
        self.wait_build(build, 'running')
        self.assertEqual(self.run_shell(build, 'test -n "$PWD"'), (0, ''))
        self.call(build, BUILD_IFACE, 'Release')

    def test_adopted_after_daemon_kill(self):
        # The same ports across restarts, so the orphaned instance finds us again.
        self.write_config(self.daemon_section(**self.fixed_ports()) + self.local_worker())
        self.start_daemon()
        self.substantiate('local-1')
        pid = self.wait_until(self.local_pid, message='the instance\'s pid in the state file')
        self.stop_daemon(signal.SIGKILL)
        self.assertTrue(os.path.exists('/proc/%d' % pid))
        self.signals.clear()
        self.start_daemon()
        # The instance reconnects by itself (with its persisted password) and is adopted.
        self.wait_signal('Substantiated', worker_path('local-1'), timeout=30)
        self.assertTrue(self.worker_prop('local-1', 'Connected'))
        self.assert_protocol('local-1')
        self.assertEqual(self.local_pid(), pid)
        # SIGTERM stops running instances before the daemon exits.
        self.assertEqual(self.stop_daemon(), 0)
        self.wait_until(lambda: not os.path.exists('/proc/%d' % pid) or
                        open('/proc/%d/stat' % pid).read().split(')')[1].split()[0] == 'Z',
                        timeout=5, message='instance stopped on shutdown')

    def test_keep_on_shutdown(self):
        self.write_config(self.daemon_section(**self.fixed_ports()) +
                          self.local_worker('KeepOnShutdown=true\n'))
        self.start_daemon()
        self.substantiate('local-1')
        pid = self.wait_until(self.local_pid, message='the instance\'s pid in the state file')
        self.assertEqual(self.stop_daemon(), 0)
        self.assert_stays(lambda: os.path.exists('/proc/%d' % pid), 0.5, 'the instance outlives the daemon')
        self.start_daemon()
        self.wait_signal('Substantiated', worker_path('local-1'), timeout=30)
        self.insubstantiate('local-1', True)


# test_unknown_unit_fails: no worker attaches.
@for_both_protocols(msgpack_only=('test_unknown_unit_fails',))
class SystemdDriverTest(LatentTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        (cls.systemd, cls.systemd_obj) = cls.spawn_server_template(SYSTEMD_TEMPLATE, {}, stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        cls.systemd.terminate()
        cls.systemd.wait()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.systemd_obj.ClearCalls()     # those of the class's earlier tests

    def test_default_unit_is_a_template_instance(self):
        # No Unit=: buildbot-worker@NAME.service, one instance of a template unit.
        unit = 'buildbot-worker@unit-3.service'
        self.systemd_obj.AddMockUnit(unit)
        self.write_config(self.daemon_section() +
                          '[Worker unit-3]\nPassword=unit-pw\nLatent=systemd\n'
                          'Builders=b\nBuildWaitTimeout=-1\nSubstantiationTimeout=20\n' + self.protocol_key())
        self.start_daemon()
        results = []
        self.substantiate_async('unit-3', results)
        self.wait_until(lambda: any(c[1] == 'StartUnit' for c in self.systemd_obj.GetCalls()),
                        message='StartUnit called')
        call = [c for c in self.systemd_obj.GetCalls() if c[1] == 'StartUnit'][0]
        self.assertEqual([str(a) for a in call[2]], [unit, 'replace'])
        self.add_worker('unit-3', 'unit-pw').start()
        self.wait_until(lambda: results, timeout=30, message='Substantiate answered')
        self.assertEqual(results, ['ok'])
        self.insubstantiate('unit-3', False)
        stops = [c for c in self.systemd_obj.GetCalls() if c[1] == 'StopUnit']
        self.assertEqual([str(a) for a in stops[0][2]], [unit, 'replace'])
        self.assertEqual(self.latent_prop('unit-3', 'State'), 'not-substantiated')

    def test_systemd_units(self):
        # %r: one unit template per protocol.
        unit = 'bfworker-%s-unit-1.service' % self.protocol
        self.systemd_obj.AddMockUnit(unit)
        self.write_config(self.daemon_section() +
                          '[Worker unit-1]\nPassword=unit-pw\nLatent=systemd\nUnit=bfworker-%r-%n.service\n'
                          'Builders=b\nBuildWaitTimeout=-1\nSubstantiationTimeout=20\n' + self.protocol_key())
        self.start_daemon()
        results = []
        self.substantiate_async('unit-1', results)
        # The mock unit turns active; the worker "in" it is started by the test.
        self.wait_until(lambda: any(c[1] == 'StartUnit' for c in self.systemd_obj.GetCalls()),
                        message='StartUnit called')
        call = [c for c in self.systemd_obj.GetCalls() if c[1] == 'StartUnit'][0]
        self.assertEqual([str(a) for a in call[2]], [unit, 'replace'])
        self.add_worker('unit-1', 'unit-pw').start()
        self.wait_until(lambda: results, timeout=30, message='Substantiate answered')
        self.assertEqual(results, ['ok'])
        self.assert_protocol('unit-1')
        self.assertEqual(self.latent_prop('unit-1', 'Driver'), 'systemd')
        self.worker_call('unit-1', 'Insubstantiate', GLib.Variant('(b)', (False,)), iface=LATENT_IFACE)
        stops = [c for c in self.systemd_obj.GetCalls() if c[1] == 'StopUnit']
        self.assertEqual([str(a) for a in stops[0][2]], [unit, 'replace'])
        self.assertEqual(self.latent_prop('unit-1', 'State'), 'not-substantiated')

    def test_unknown_unit_fails(self):
        self.write_config(self.daemon_section() +
                          '[Worker unit-2]\nPassword=x\nLatent=systemd\nUnit=missing-%n.service\n'
                          'Builders=b\nSubstantiationTimeout=20\n')
        self.start_daemon()
        err, msg = self.call_error(worker_path('unit-2'), LATENT_IFACE, 'Substantiate')
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.Failed')
        self.assertIn('systemd refused to start missing-unit-2.service', msg)


if __name__ == '__main__':
    bfharness.main()
