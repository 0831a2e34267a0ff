#!/usr/bin/python3
# The fleet on D-Bus: objects, admin methods, reload, persistence, config
# errors and exit codes, driven through D-Bus only.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import subprocess
import time

from gi.repository import GLib

import bfharness
from bfharness import (FLEET_PATH, LATENT_IFACE, MANAGER_IFACE, WORKER_IFACE, BUILDFLEETD,
                       worker_path)


class ObjectsTest(bfharness.FleetTestCase):
    def write_fleet(self):
        self.write_config(self.daemon_section() + '''
[Worker linux-01]
Password=secret   # a comment after a value
MaxBuilds=2
Builders=linux;docs
MissingTimeout=3600
NotifyOnMissing=ops@example.com;dev@example.com
Property.os=debian
Property.arch=amd64

[Worker mac.02]
Password=other
Builders=mac

[Worker cloud-01]
Password=generate
Latent=command
StartCommand=/bin/true %n
BuildWaitTimeout=-1
SubstantiationTimeout=30.5
''')
        os.makedirs(self.config_path + '.d')
        # Drop-ins: later files override earlier keys, and can add workers.
        self.write_config('[Worker linux-01]\nMaxBuilds=3\n',
                          os.path.join(self.config_path + '.d', '10-more.conf'))
        self.write_config('[Worker linux-01]\nMaxBuilds=4\n\n[Worker extra_3]\nPassword=x\n',
                          os.path.join(self.config_path + '.d', '20-last.conf'))
        self.write_config('[Worker ignored]\nPassword=x\n',
                          os.path.join(self.config_path + '.d', 'not-a-conf.txt'))

    def test_objects_and_properties(self):
        self.write_fleet()
        self.start_daemon()

        objects = self.managed_objects()
        paths = sorted(objects)
        self.assertEqual(paths, sorted(worker_path(n) for n in
                                       ('linux-01', 'mac.02', 'cloud-01', 'extra_3')))
        self.assertEqual(worker_path('linux-01'), FLEET_PATH + '/workers/linux_2d01')

        w = objects[worker_path('linux-01')][WORKER_IFACE]
        self.assertEqual(w['Name'], 'linux-01')
        self.assertEqual(w['MaxBuilds'], 4)
        self.assertEqual(w['Builders'], ['linux', 'docs'])
        self.assertEqual(w['MissingTimeoutUSec'], 3600 * 1000000)
        self.assertEqual(w['NotifyOnMissing'], ['ops@example.com', 'dev@example.com'])
        self.assertEqual(w['Properties'], {'os': 'debian', 'arch': 'amd64'})
        self.assertFalse(w['Connected'])
        self.assertFalse(w['Graceful'])
        self.assertFalse(w['Paused'])
        self.assertFalse(w['Missing'])
        self.assertFalse(w['Quarantined'])
        self.assertEqual(w['ActiveBuilds'], 0)
        self.assertEqual(w['Peer'], '')
        self.assertEqual(w['ConnectedSinceUSec'], 0)
        # Never seen: disconnected since the daemon started, not since 1970.
        self.assertLess(abs(w['DisconnectedSinceUSec'] / 1e6 - time.time()), 30)
        self.assertNotIn(LATENT_IFACE, objects[worker_path('linux-01')])
        for key in ('Password', 'password'):
            self.assertNotIn(key, w)

        latent = objects[worker_path('cloud-01')]
        self.assertIn(LATENT_IFACE, latent)
        self.assertEqual(latent[LATENT_IFACE]['Driver'], 'command')
        self.assertEqual(latent[LATENT_IFACE]['BuildWaitTimeoutUSec'], -1)
        self.assertEqual(latent[LATENT_IFACE]['SubstantiationTimeoutUSec'], 30500000)
        self.assertEqual(latent[LATENT_IFACE]['State'], 'not-substantiated')

        self.assertEqual(self.manager_prop('WorkersConnected'), 0)
        self.assertEqual(self.manager_prop('WorkersMissing'), 0)
        self.assertEqual(self.manager_prop('BuildsActive'), 0)
        self.assertRegex(self.manager_prop('Version'), r'^\d+\.\d+')
        self.assertEqual(self.manager_prop('Listen'), ['127.0.0.1:%d' % self.port])

        # Nothing on the bus says a password.
        introspection = str(objects)
        for secret in ('secret', 'other'):
            self.assertNotIn(secret, introspection)
        self.assertNotIn('secret', self.daemon_log())

    def test_get_worker(self):
        self.write_fleet()
        self.start_daemon()
        self.assertEqual(self.call(FLEET_PATH, MANAGER_IFACE, 'GetWorker',
                                   GLib.Variant('(s)', ('mac.02',))), (worker_path('mac.02'),))
        name, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'GetWorker',
                                    GLib.Variant('(s)', ('nope',)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.NotFound')
        self.assertIn('nope', msg)


    def test_get_workers(self):
        """GetWorkers is GetManagedObjects for workers, cut to the names asked."""
        self.write_fleet()
        self.start_daemon()
        objects = self.managed_objects()

        def get_workers(names):
            return self.call(FLEET_PATH, MANAGER_IFACE, 'GetWorkers', GLib.Variant('(as)', (names,)))[0]

        self.assertEqual(get_workers([]), objects)
        some = get_workers(['Name', 'Connected', 'State'])
        self.assertEqual(sorted(some), sorted(objects))
        self.assertEqual(some[worker_path('linux-01')], {WORKER_IFACE: {'Name': 'linux-01', 'Connected': False}})
        self.assertEqual(some[worker_path('cloud-01')],
                         {WORKER_IFACE: {'Name': 'cloud-01', 'Connected': False},
                          LATENT_IFACE: {'State': 'not-substantiated'}})
        # A change shows in both at once (they share the property cache).
        self.call(worker_path('mac.02'), WORKER_IFACE, 'Pause', GLib.Variant('(s)', ('disk full',)))
        self.assertEqual(get_workers(['PauseReason'])[worker_path('mac.02')][WORKER_IFACE],
                         {'PauseReason': 'disk full'})
        self.assertEqual(self.managed_objects()[worker_path('mac.02')][WORKER_IFACE]['PauseReason'], 'disk full')

        name, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'GetWorkers',
                                    GLib.Variant('(as)', (['Name', 'Password'],)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('Password', msg)
        name, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'GetWorkers',
                                    GLib.Variant('(as)', (['Name'] * 65,)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.InvalidArgs')


class AdminTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section() + '[Worker w1]\nPassword=p\nBuilders=b\n'
                          '[Worker w2]\nPassword=p\nBuilders=b\n')
        self.start_daemon()

    def test_graceful(self):
        path = worker_path('w1')
        self.worker_call('w1', 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.assertTrue(self.worker_prop('w1', 'Graceful'))
        self.assertEqual(self.wait_signal('GracefulChanged', path)[0][3], (True,))
        self.wait_until(lambda: self.properties_changed(path, 'Graceful') == [True],
                        message='PropertiesChanged Graceful')
        # Setting the same value again changes nothing and says nothing.
        self.worker_call('w1', 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.assert_stays(lambda: len(self.signals_named('GracefulChanged', path)) == 1, 0.3,
                          'no GracefulChanged for the same value')
        self.worker_call('w1', 'SetGraceful', GLib.Variant('(b)', (False,)))
        self.assertEqual(self.wait_signal('GracefulChanged', path, count=2)[1][3], (False,))
        self.assertFalse(self.worker_prop('w1', 'Graceful'))
        # The other worker is untouched.
        self.assertFalse(self.worker_prop('w2', 'Graceful'))

    def test_pause_unpause(self):
        path = worker_path('w2')
        self.worker_call('w2', 'Pause', GLib.Variant('(s)', ('disk full',)))
        self.assertTrue(self.worker_prop('w2', 'Paused'))
        self.assertEqual(self.worker_prop('w2', 'PauseReason'), 'disk full')
        self.wait_until(lambda: self.properties_changed(path, 'PauseReason') == ['disk full'],
                        message='PropertiesChanged PauseReason')
        self.worker_call('w2', 'Pause', GLib.Variant('(s)', ('still full',)))
        self.assertEqual(self.worker_prop('w2', 'PauseReason'), 'still full')
        self.worker_call('w2', 'Unpause')
        self.assertFalse(self.worker_prop('w2', 'Paused'))
        self.assertEqual(self.worker_prop('w2', 'PauseReason'), '')
        self.wait_until(lambda: self.properties_changed(path, 'Paused') == [True, False],
                        message='PropertiesChanged Paused')

    def test_bad_arguments(self):
        name, msg = self.call_error(worker_path('w1'), WORKER_IFACE, 'Pause',
                                    GLib.Variant('(s)', ('x' * 5000,)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('reason', msg)
        self.assertFalse(self.worker_prop('w1', 'Paused'))
        for method in ('Shutdown', 'Disconnect'):
            name, msg = self.call_error(worker_path('w1'), WORKER_IFACE, method)
            self.assertEqual(name, 'org.buildfleet.Fleet1.Error.NotConnected')
            self.assertIn('w1', msg)
        # Wrong signature: GDBus rejects it before our code runs.
        name, _ = self.call_error(worker_path('w1'), WORKER_IFACE, 'Pause',
                                  GLib.Variant('(i)', (3,)))
        self.assertEqual(name, 'org.freedesktop.DBus.Error.InvalidArgs')
        self.assertEqual(self.daemon.poll(), None)


class ReloadTest(bfharness.FleetTestCase):
    def fleet(self, workers):
        return self.daemon_section() + ''.join(
            '[Worker %s]\nPassword=p\nMaxBuilds=%d\nBuilders=b\n' % (n, m) for n, m in workers)

    def test_reload_in_place_add_remove(self):
        self.write_config(self.fleet([('keep', 1), ('gone', 1)]))
        self.start_daemon()
        self.worker_call('keep', 'Pause', GLib.Variant('(s)', ('by hand',)))

        self.write_config(self.fleet([('keep', 5), ('new-one', 2)]))
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')

        objects = self.managed_objects()
        self.assertEqual(sorted(objects), sorted([worker_path('keep'), worker_path('new-one')]))
        # Updated in place: same object, admin flags kept, new values.
        self.assertEqual(self.worker_prop('keep', 'MaxBuilds'), 5)
        self.assertTrue(self.worker_prop('keep', 'Paused'))
        self.assertEqual(self.worker_prop('keep', 'PauseReason'), 'by hand')
        added = self.wait_signal('InterfacesAdded')
        self.assertEqual([s[3][0] for s in added], [worker_path('new-one')])
        removed = self.wait_signal('InterfacesRemoved')
        self.assertEqual([s[3][0] for s in removed], [worker_path('gone')])
        self.assertEqual(self.worker_prop('new-one', 'MaxBuilds'), 2)

        # SIGHUP does the same.
        self.write_config(self.fleet([('keep', 7)]))
        self.daemon.send_signal(signal.SIGHUP)
        self.wait_until(lambda: sorted(self.managed_objects()) == [worker_path('keep')],
                        message='SIGHUP reload')
        self.assertEqual(self.worker_prop('keep', 'MaxBuilds'), 7)

    def test_broken_reload_changes_nothing(self):
        self.write_config(self.fleet([('keep', 1)]))
        self.start_daemon()
        self.write_config(self.fleet([('keep', 3), ('other', 1)]) + '\n[Worker bad]\nPassword=p\nMaxBuilds=lots\n')
        name, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'Reload')
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn(self.config_path, msg)
        self.assertIn('[Worker bad]', msg)
        self.assertIn('MaxBuilds', msg)
        self.assertIn('lots', msg)
        self.assertEqual(sorted(self.managed_objects()), [worker_path('keep')])
        self.assertEqual(self.worker_prop('keep', 'MaxBuilds'), 1)
        # A broken file on SIGHUP is logged and changes nothing either.
        self.daemon.send_signal(signal.SIGHUP)
        self.wait_until(lambda: 'lots' in self.daemon_log(), message='reload error logged')
        self.assertIsNone(self.daemon.poll())
        self.assertEqual(self.worker_prop('keep', 'MaxBuilds'), 1)


class PersistenceTest(bfharness.FleetTestCase):
    def test_state_survives_restart(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n[Worker b]\nPassword=p\n')
        self.start_daemon()
        since_a = self.worker_prop('a', 'DisconnectedSinceUSec')
        self.worker_call('a', 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.worker_call('b', 'Pause', GLib.Variant('(s)', ('maintenance\nwindow "2"',)))
        self.assertEqual(self.stop_daemon(), 0)

        state_file = os.path.join(self.statedir, 'workers.state')
        self.assertTrue(os.path.exists(state_file))
        self.assertEqual(os.stat(state_file).st_mode & 0o777, 0o600)

        self.start_daemon()
        self.assertTrue(self.worker_prop('a', 'Graceful'))
        self.assertFalse(self.worker_prop('a', 'Paused'))
        self.assertTrue(self.worker_prop('b', 'Paused'))
        self.assertEqual(self.worker_prop('b', 'PauseReason'), 'maintenance\nwindow "2"')
        self.assertEqual(self.worker_prop('a', 'DisconnectedSinceUSec'), since_a)

    def test_corrupt_state_is_set_aside(self):
        os.makedirs(self.statedir)
        with open(os.path.join(self.statedir, 'workers.state'), 'w') as f:
            f.write('this is [not a key file\n\x01')
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.start_daemon()
        self.assertFalse(self.worker_prop('a', 'Paused'))
        aside = [n for n in os.listdir(self.statedir) if n.startswith('workers.state.corrupt-')]
        self.assertEqual(len(aside), 1)
        self.assertIn('corrupt', self.daemon_log())
        # And state is written afresh.
        self.worker_call('a', 'Pause', GLib.Variant('(s)', ('x',)))
        self.assertEqual(self.stop_daemon(), 0)
        self.start_daemon()
        self.assertTrue(self.worker_prop('a', 'Paused'))


class MissingTest(bfharness.FleetTestCase):
    def test_missing_once_across_restarts(self):
        self.write_config(self.daemon_section() +
                          '[Worker away]\nPassword=p\nMissingTimeout=0.5\nNotifyOnMissing=ops@example.com\n'
                          '[Worker quiet]\nPassword=p\nMissingTimeout=0\n')
        start = time.time()
        self.start_daemon()
        path = worker_path('away')
        sig = self.wait_signal('Missing', path, timeout=5)
        elapsed = time.time() - start
        self.assertGreaterEqual(elapsed, 0.45)
        since = sig[0][3][0]
        self.assertEqual(since, self.worker_prop('away', 'DisconnectedSinceUSec'))
        self.assertTrue(self.worker_prop('away', 'Missing'))
        self.assertEqual(self.manager_prop('WorkersMissing'), 1)
        self.wait_until(lambda: len(self.mails()) == 1, message='one missing mail')
        mail = self.mails()[0]
        self.assertIn('To: ops@example.com', mail)
        self.assertIn('Subject: Buildfleet worker away is missing', mail)
        self.assertIn('From: buildfleet@test.invalid', mail)
        # MissingTimeout=0 disables the alarm.
        self.assertFalse(self.worker_prop('quiet', 'Missing'))

        # Restart: still missing, no new signal, no new mail (Buildbot's issue 4234).
        self.assertEqual(self.stop_daemon(), 0)
        self.signals.clear()
        self.start_daemon()
        self.assertTrue(self.worker_prop('away', 'Missing'))
        self.assertEqual(self.manager_prop('WorkersMissing'), 1)
        # Twice MissingTimeout: no second alarm for the same incident.
        self.assert_stays(lambda: self.signals_named('Missing') == [] and len(self.mails()) == 1, 1.0,
                          'no new Missing signal or mail after the restart')

    def test_timer_resumes_after_restart(self):
        self.write_config(self.daemon_section() +
                          '[Worker away]\nPassword=p\nMissingTimeout=4\nNotifyOnMissing=ops@example.com\n')
        self.start_daemon()
        since_usec = self.worker_prop('away', 'DisconnectedSinceUSec')
        since = since_usec / 1e6
        # Restarted half-way through the timeout.
        self.wait_until(lambda: time.time() >= since + 2.0, message='half of MissingTimeout passed')
        self.assertEqual(self.stop_daemon(), 0)
        self.start_daemon()
        up = time.time()
        self.assertEqual(self.worker_prop('away', 'DisconnectedSinceUSec'), since_usec)
        self.wait_signal('Missing', worker_path('away'), timeout=10)
        fired = time.time()
        # Due 4 s after the original disconnect (or at once if that passed
        # while the daemon was down), never 4 s after the restart, which is
        # at least 2 s later; never early.
        self.assertGreaterEqual(fired, since + 4.0 - 0.01)
        self.assertLess(fired, max(since + 4.0, up) + 1.5)
        self.wait_until(lambda: len(self.mails()) == 1, message='one mail')


class ConfigErrorTest(bfharness.FleetTestCase):
    def check(self, text, *expected, dropin=None):
        self.write_config(self.daemon_section() + text)
        if dropin:
            os.makedirs(self.config_path + '.d', exist_ok=True)
            self.write_config(dropin, os.path.join(self.config_path + '.d', '50-x.conf'))
        code, out = self.run_daemon_expect_failure()
        self.assertEqual(code, 1, out)
        for e in expected:
            self.assertIn(e, out)
        return out

    def test_unknown_key(self):
        out = self.check('[Worker a]\nPassword=p\nMaxBuild=2\n',
                         'buildfleet.conf:', '[Worker a]', 'MaxBuild', 'unknown key')
        # The line number of the offending key.
        line = self.daemon_section().count('\n') + 3
        self.assertIn('buildfleet.conf:%d:' % line, out)

    def test_bad_number(self):
        self.check('[Worker a]\nPassword=p\nMaxBuilds=two\n', '[Worker a] MaxBuilds', '“two” is not a whole number')
        self.check('[Worker a]\nPassword=p\nMissingTimeout=-3\n', 'MissingTimeout', 'negative')
        self.check('[Worker a]\nPassword=p\nMissingTimeout=soon\n', 'MissingTimeout', 'not a number of seconds')

    def test_duplicate_worker(self):
        self.check('[Worker a]\nPassword=p\n[Worker a]\nPassword=q\n', '[Worker a]', 'defined twice')

    def test_name_not_allowed(self):
        self.check('[Worker bad/name]\nPassword=p\n', '[Worker bad/name]', 'not allowed as a worker name')
        self.check('[Worker %s]\nPassword=p\n' % ('x' * 51), 'not allowed as a worker name')

    def test_missing_password(self):
        self.check('[Worker a]\nBuilders=b\n', '[Worker a]', 'missing password')

    def test_password_file_unreadable(self):
        self.check('[Worker a]\nPasswordFile=%s/nope\n' % self.workdir,
                   '[Worker a] PasswordFile', 'cannot read the password file')

    def test_error_in_dropin_names_the_dropin(self):
        self.check('[Worker a]\nPassword=p\n', '50-x.conf:2', '[Worker a] MaxBuilds',
                   dropin='[Worker a]\nMaxBuilds=x\n')

    def test_unknown_group_and_syntax(self):
        self.check('[Workers a]\nPassword=p\n', '[Workers a]', 'unknown group')
        self.check('[Worker a]\nthis line is wrong\n', 'buildfleet.conf')

    def test_password_file_works(self):
        pw = os.path.join(self.workdir, 'pw')
        with open(pw, 'w') as f:
            f.write('from-file\nsecond line ignored\n')
        self.write_config(self.daemon_section() + '[Worker a]\nPasswordFile=%s\n' % pw)
        self.start_daemon()
        self.assertEqual(self.worker_prop('a', 'Name'), 'a')

    def test_missing_config_file(self):
        code, out = self.run_daemon_expect_failure()
        self.assertEqual(code, 1)
        self.assertIn(self.config_path, out)


class LifecycleTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')

    def test_sigterm_and_sigint_exit_zero(self):
        self.start_daemon()
        self.assertEqual(self.stop_daemon(signal.SIGTERM), 0)
        self.start_daemon()
        self.assertEqual(self.stop_daemon(signal.SIGINT), 0)

    def test_second_instance_fails_and_first_survives(self):
        first = self.start_daemon()
        port = self.port
        env = dict(os.environ, G_DEBUG='fatal-criticals')
        second = subprocess.run([BUILDFLEETD, '--config', self.config_path], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertNotEqual(second.returncode, 0)
        self.assertIn(b'--replace', second.stdout)
        self.assertIsNone(first.poll())
        self.assertEqual(self.manager_prop('Listen'), ['127.0.0.1:%d' % port])

    def test_replace(self):
        first = self.start_daemon()
        self.daemon = None
        try:
            self.start_daemon(args=['--replace'])
            first.wait(10)
            self.assertNotEqual(first.returncode, None)
            self.assertEqual(self.worker_prop('a', 'Name'), 'a')
        finally:
            if first.poll() is None:
                first.kill()

    def test_version_and_bad_option(self):
        out = subprocess.run([BUILDFLEETD, '--version'], stdout=subprocess.PIPE, check=True)
        self.assertRegex(out.stdout.decode(), r'^buildfleetd \d')
        bad = subprocess.run([BUILDFLEETD, '--no-such-option'], stderr=subprocess.PIPE)
        self.assertEqual(bad.returncode, 1)


if __name__ == '__main__':
    bfharness.main()
