#!/usr/bin/python3
# Durable admin state and safe reloads (issue 12, "Time and state"):
# a state-changing call is answered once it is on disk, a partly corrupt
# state file keeps what is readable, an unwritable state directory fails the
# call, a configuration rewritten in place is not acted on half-written, and
# FIFOs or devices among the configuration files are refused without
# blocking the daemon.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import subprocess
import sys
import threading
import time

from gi.repository import Gio, GLib

import bfharness
from bfharness import FLEET_PATH, MANAGER_IFACE, WORKER_IFACE, worker_path

FAILED = 'org.buildfleet.Fleet1.Error.Failed'
INVALID = 'org.buildfleet.Fleet1.Error.InvalidArgs'
BUSY = 'org.buildfleet.Fleet1.Error.Busy'


class DurabilityTestCase(bfharness.FleetTestCase):
    def restart_after_kill9(self):
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(10)
        self.daemon = None
        self.start_daemon()

    def responsive_meanwhile(self, seconds):
        """Reads a property every 50 ms for @seconds; returns the worst latency."""
        worst = 0.0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            self.manager_prop('Version')
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.05)
        return worst


class DurableAdminTest(DurabilityTestCase):
    def test_pause_then_kill9_is_remembered(self):
        # The reply comes once the state is on disk: kill -9 right after it
        # (no sleep) loses nothing, every time.
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n[Worker b]\nPassword=p\n')
        self.start_daemon()
        for i in range(20):
            self.worker_call('a', 'Pause', GLib.Variant('(s)', ('round %d' % i,)))
            self.restart_after_kill9()
            self.assertTrue(self.worker_prop('a', 'Paused'), 'round %d' % i)
            self.assertEqual(self.worker_prop('a', 'PauseReason'), 'round %d' % i)
            self.worker_call('a', 'Unpause')
            self.worker_call('b', 'SetGraceful', GLib.Variant('(b)', (i % 2 == 0,)))
            self.restart_after_kill9()
            self.assertFalse(self.worker_prop('a', 'Paused'), 'round %d' % i)
            self.assertEqual(self.worker_prop('b', 'Graceful'), i % 2 == 0, 'round %d' % i)

    def test_concurrent_calls_all_durable_and_in_order(self):
        # Calls that arrive while a write is in flight are answered by the
        # next write; calls on one worker take effect in the order sent.
        names = ['w%02d' % i for i in range(30)]
        self.write_config(self.daemon_section() +
                          ''.join('[Worker %s]\nPassword=p\n' % n for n in names))
        self.start_daemon()
        pending = []
        loop = GLib.MainLoop()

        def done(conn, res, name):
            try:
                conn.call_finish(res)
            except GLib.Error as e:
                self.fail('%s: %s' % (name, e.message))
            pending.remove(name)
            if not pending:
                loop.quit()

        for n in names:
            for method, args in (('Pause', GLib.Variant('(s)', ('first',))), ('Unpause', None),
                                 ('Pause', GLib.Variant('(s)', ('last of ' + n,)))):
                pending.append(n)
                self.bus.call(bfharness.BUS_NAME, worker_path(n), WORKER_IFACE, method, args,
                              None, 0, 10000, None, done, n)
        GLib.timeout_add_seconds(30, loop.quit)
        loop.run()
        self.assertEqual(pending, [])
        self.restart_after_kill9()
        for n in names:
            self.assertTrue(self.worker_prop(n, 'Paused'), n)
            self.assertEqual(self.worker_prop(n, 'PauseReason'), 'last of ' + n)


class CorruptStateTest(DurabilityTestCase):
    def test_one_bad_line_keeps_the_rest(self):
        os.makedirs(self.statedir)
        state = os.path.join(self.statedir, 'workers.state')
        with open(state, 'wb') as f:
            f.write(b'# buildfleetd admin state\n'
                    b'\n[Worker a]\nGraceful=false\nPaused=true\nPauseReason=disk swap\n'
                    b'\n[Worker b]\nGraceful=true\nPaused=false\n'
                    b'\x01\x02 this line is garbage\xff\n'
                    b'\n[Worker c]\nPaused=true\nPauseReason=kept too\nGraceful=maybe\n'
                    b'\n[Worker d\nPaused=true\n'
                    b'\n[Worker e]\nPaused=true\nPauseReason=after the damage\n'
                    b'\n[Instance e]\nDriver=local\nId=7\nPassword sekrit-123\n')
        self.write_config(self.daemon_section() +
                          ''.join('[Worker %s]\nPassword=p\n' % n for n in 'abcde'))
        self.start_daemon()
        self.assertTrue(self.worker_prop('a', 'Paused'))
        self.assertEqual(self.worker_prop('a', 'PauseReason'), 'disk swap')
        self.assertTrue(self.worker_prop('b', 'Graceful'))
        self.assertTrue(self.worker_prop('c', 'Paused'))
        self.assertEqual(self.worker_prop('c', 'PauseReason'), 'kept too')
        self.assertFalse(self.worker_prop('c', 'Graceful'))
        self.assertFalse(self.worker_prop('d', 'Paused'))   # its group header is broken
        self.assertTrue(self.worker_prop('e', 'Paused'))
        self.assertEqual(self.worker_prop('e', 'PauseReason'), 'after the damage')
        log = self.daemon_log()
        self.assertIn('line 11', log)     # the garbage line
        self.assertIn('Graceful', log)    # the unreadable value of c
        self.assertIn('line 18', log)     # the broken group header
        self.assertIn('line 28', log)     # the password line without "="
        self.assertNotIn('sekrit', log)   # not even a damaged password is logged
        aside = [n for n in os.listdir(self.statedir) if n.startswith('workers.state.corrupt-')]
        self.assertEqual(len(aside), 1)
        self.assertIn(aside[0], log)
        # What was kept is on disk again, cleanly: kill -9 and restart.
        self.restart_after_kill9()
        self.assertTrue(self.worker_prop('e', 'Paused'))
        self.assertTrue(self.worker_prop('a', 'Paused'))
        self.assertNotIn('corrupt', self.daemon_log())


class UnwritableStateTest(DurabilityTestCase):
    def chattr(self, flag, path, check=True):
        subprocess.run(['chattr', flag, path], check=check, stderr=subprocess.DEVNULL)

    def tearDown(self):
        # Before the work directory goes, even when the test failed.
        self.chattr('-i', self.statedir, check=False)
        super().tearDown()

    def test_immutable_state_directory_fails_the_call(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.start_daemon()
        self.worker_call('a', 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.wait_signal('GracefulChanged', worker_path('a'))
        # Root can write anywhere except an immutable directory.
        self.chattr('+i', self.statedir)
        self.signals.clear()
        name, message = self.call_error(worker_path('a'), WORKER_IFACE, 'Pause',
                                        GLib.Variant('(s)', ('nope',)))
        self.assertEqual(name, FAILED)
        self.assertIn('cannot save the state to %s/workers.state' % self.statedir, message)
        self.assertIn('Operation not permitted', message)
        self.assertFalse(self.worker_prop('a', 'Paused'))
        self.assertEqual(self.worker_prop('a', 'PauseReason'), '')
        name, message = self.call_error(worker_path('a'), WORKER_IFACE, 'SetGraceful',
                                        GLib.Variant('(b)', (False,)))
        self.assertEqual(name, FAILED)
        self.assertTrue(self.worker_prop('a', 'Graceful'))
        self.assert_stays(lambda: self.properties_changed(worker_path('a'), 'Paused') == [] and
                          self.signals_named('GracefulChanged') == [], 0.3,
                          'no change announced for a change that was not saved')
        # Writable again: the failed change was not kept anywhere.
        self.chattr('-i', self.statedir)
        self.worker_call('a', 'Pause', GLib.Variant('(s)', ('now it works',)))
        self.restart_after_kill9()
        self.assertTrue(self.worker_prop('a', 'Paused'))
        self.assertEqual(self.worker_prop('a', 'PauseReason'), 'now it works')
        self.assertTrue(self.worker_prop('a', 'Graceful'))

    def test_permission_denied(self):
        # Not even root may create files in /sys.
        self.write_config(self.daemon_section(StateDirectory='/sys') + '[Worker a]\nPassword=p\n')
        self.start_daemon()
        name, message = self.call_error(worker_path('a'), WORKER_IFACE, 'Pause',
                                        GLib.Variant('(s)', ('x',)))
        self.assertEqual(name, FAILED)
        self.assertIn('cannot save the state to /sys/workers.state: Permission denied', message)
        self.assertFalse(self.worker_prop('a', 'Paused'))
        self.assertEqual(self.daemon.poll(), None)


class ReloadRaceTest(DurabilityTestCase):
    N = 400

    def config_text(self):
        return (self.daemon_section() + '[Worker real]\nPassword=secret\n' +
                ''.join('[Worker w%04d]\nPassword=p%04d\nMaxBuilds=2\n' % (i, i) for i in range(self.N)))

    def rewrite_in_place(self, text, chunks, pause):
        # Like `cat new > buildfleet.conf` from a slow writer: truncate, then
        # the text piece by piece.
        # Whole groups at a time, so that every moment's file parses.
        lines = [g if i == 0 else '[' + g for i, g in enumerate(text.split('\n['))]
        lines = [g + '\n' for g in lines[:-1]] + lines[-1:]
        step = len(lines) // chunks + 1
        with open(self.config_path, 'w') as f:
            for i in range(0, len(lines), step):
                f.write(''.join(lines[i:i + step]))
                f.flush()
                time.sleep(pause)

    def test_reload_during_in_place_rewrite_keeps_the_fleet(self):
        text = self.config_text()
        self.write_config(text)
        self.start_daemon()
        w = self.add_worker('real', 'secret').start()
        self.wait_connected('real')
        for attempt in range(3):
            writer = threading.Thread(target=self.rewrite_in_place, args=(text, 40, 0.03))
            writer.start()
            time.sleep(0.1 + 0.2 * attempt)
            try:
                self.call(FLEET_PATH, MANAGER_IFACE, 'Reload', timeout=30000)
            except GLib.Error as e:
                # Refusing is fine too, as long as it says why.
                self.assertIn('kept changing', e.message)
            writer.join()
        log = self.daemon_log()
        self.assertEqual(log.count('removed from the configuration'), 0,
                         [l for l in log.splitlines() if 'reloaded' in l])
        self.assertTrue(self.worker_prop('real', 'Connected'))
        self.assertEqual(len(self.managed_objects()), self.N + 1)
        self.assertIsNotNone(w)

    def test_stable_reload_still_applies(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n[Worker b]\nPassword=p\n')
        self.start_daemon()
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n[Worker c]\nPassword=p\n')
        t0 = time.monotonic()
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertIn('1 workers kept, 1 added, 1 removed', self.daemon_log())
        # SIGHUP goes the same way.
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.daemon.send_signal(signal.SIGHUP)
        self.wait_until(lambda: '1 workers kept, 0 added, 1 removed' in self.daemon_log(),
                        message='reload on SIGHUP')

    def test_mass_removal_is_applied_with_a_warning(self):
        self.write_config(self.daemon_section() +
                          ''.join('[Worker w%d]\nPassword=p\n' % i for i in range(10)))
        self.start_daemon()
        self.write_config(self.daemon_section() + '[Worker w0]\nPassword=p\n')
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload', timeout=30000)
        log = self.daemon_log()
        self.assertIn('would remove 9 of 10 workers', log)
        self.assertIn('1 workers kept, 0 added, 9 removed', log)

    def test_file_that_never_settles_is_refused(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.start_daemon()
        # A writer that never stops, in its own process: a new version of
        # the file every 10 ms.
        script = ('i=0; while :; do printf "%s# %%d\\n" $i > %s; i=$((i+1)); sleep 0.01; done' %
                  ((self.daemon_section() + '[Worker a]\nPassword=p\n').replace('\n', '\\n'),
                   self.config_path))
        churn = subprocess.Popen(['/bin/sh', '-c', script])
        try:
            t0 = time.monotonic()
            with self.assertRaises(GLib.Error) as caught:
                self.call(FLEET_PATH, MANAGER_IFACE, 'Reload', timeout=30000)
            took = time.monotonic() - t0
        finally:
            churn.kill()
            churn.wait()
        name = Gio.DBusError.get_remote_error(caught.exception)
        message = caught.exception.message
        self.assertEqual(name, BUSY)
        self.assertIn('kept changing', message)
        self.assertLess(took, 15)
        self.assertIn(self.config_path, message)
        self.assertEqual(self.worker_prop('a', 'Name'), 'a')


class SpecialFileTest(DurabilityTestCase):
    def test_fifo_dropin_at_start(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        os.makedirs(self.config_path + '.d')
        fifo = os.path.join(self.config_path + '.d', 'pipe.conf')
        os.mkfifo(fifo)
        code, out = self.run_daemon_expect_failure(timeout=10)
        self.assertNotEqual(code, 0)
        self.assertIn(fifo, out)
        self.assertIn('not a regular file', out)

    def test_password_file_dev_zero_at_start(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPasswordFile=/dev/zero\n')
        code, out = self.run_daemon_expect_failure(timeout=10)
        self.assertNotEqual(code, 0)
        self.assertIn('/dev/zero', out)
        self.assertIn('not a regular file', out)

    def test_big_password_file_at_start(self):
        big = os.path.join(self.workdir, 'big-password')
        with open(big, 'w') as f:
            f.write('x' * 100000)
        self.write_config(self.daemon_section() + '[Worker a]\nPasswordFile=%s\n' % big)
        code, out = self.run_daemon_expect_failure(timeout=10)
        self.assertNotEqual(code, 0)
        self.assertIn(big, out)
        self.assertIn('larger than', out)

    def reload_refused_while_responsive(self, expect):
        result = {}

        def reload():
            try:
                self.call(FLEET_PATH, MANAGER_IFACE, 'Reload', timeout=20000)
                result['ok'] = True
            except GLib.Error as e:
                result['error'] = e.message
        t = threading.Thread(target=reload)
        t.start()
        worst = self.responsive_meanwhile(1.0)
        t.join(20)
        self.assertFalse(t.is_alive(), 'Reload did not return')
        self.assertIn('error', result)
        for e in expect:
            self.assertIn(e, result['error'])
        self.assertLess(worst, 2.0)
        self.assertEqual(self.worker_prop('a', 'Name'), 'a')
        self.assertIsNone(self.daemon.poll())

    def test_fifo_dropin_at_reload(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.start_daemon()
        os.makedirs(self.config_path + '.d')
        fifo = os.path.join(self.config_path + '.d', 'pipe.conf')
        os.mkfifo(fifo)
        self.reload_refused_while_responsive([fifo, 'not a regular file'])

    def test_password_file_dev_zero_at_reload(self):
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.start_daemon()
        self.write_config(self.daemon_section() + '[Worker a]\nPasswordFile=/dev/zero\n')
        self.reload_refused_while_responsive(['/dev/zero', 'not a regular file'])


if __name__ == '__main__':
    bfharness.main()
