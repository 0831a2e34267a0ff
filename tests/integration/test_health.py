#!/usr/bin/python3
# Health checks: an unhealthy worker is taken out of rotation by itself,
# with one signal, one log line and one mail per transition, comes back
# when it passes again, and never lifts an admin's pause.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import shutil
import signal
import subprocess

from gi.repository import GLib

import bfharness
from bfharness import BUILD_IFACE, FLEET_PATH, MANAGER_IFACE, worker_path


class HealthTest(bfharness.FleetTestCase):
    def request(self, builder, worker):
        opts = {'worker': GLib.Variant('s', worker)}
        return self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant('(sa{sv})', (builder, opts)))[0]


    def test_health_command_pauses_and_releases(self):
        sick = os.path.join(self.workdir, 'sick')
        check = 'if [ -e %s ]; then echo checking; echo "scratch disk is failing"; exit 3; fi' % sick
        self.write_config(self.daemon_section() +
                          '[Worker w1]\nPassword=pw\nBuilders=b\nHealthInterval=0.3\n'
                          'NotifyOnMissing=ops@example.com\nHealthCommand=%s\n' % check +
                          '[Worker w2]\nPassword=pw2\nBuilders=b\nHealthInterval=0.3\n'
                          'HealthCommand=%s\n' % check)
        self.start_daemon()
        for name, pw in (('w1', 'pw'), ('w2', 'pw2')):
            self.add_worker(name, pw).start()
            self.wait_connected(name)
        self.wait_until(lambda: self.worker_prop('w1', 'ResponseTimeUSec') > 0, 20, 'a first check')
        self.assertFalse(self.worker_prop('w1', 'Unhealthy'))
        self.worker_call('w2', 'Pause', GLib.Variant('(s)', ('admin says no',)))

        with open(sick, 'w'):
            pass
        self.wait_until(lambda: self.worker_prop('w1', 'Unhealthy'), 20, 'w1 unhealthy')
        reason = self.worker_prop('w1', 'HealthReason')
        self.assertIn('HealthCommand exited with 3', reason)
        self.assertIn('scratch disk is failing', reason)
        build = self.request('b', 'w1')
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'WaitingFor') == 'w1: unhealthy', 10, 'waits')
        # Several more rounds: still one signal and one mail.
        self.assert_stays(lambda: self.prop(build, BUILD_IFACE, 'State') == 'pending', 1.5, 'no build while unhealthy')
        changed = self.signals_named('HealthChanged', worker_path('w1'))
        self.assertEqual(len(changed), 1)
        self.assertEqual(changed[0][3][0], True)
        self.assertEqual(sum('w1 is unhealthy' in m for m in self.mails()), 1)
        self.assertEqual(self.daemon_log().count('Worker w1 failed its health checks'), 1)

        os.unlink(sick)
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running', 20, 'build runs')
        self.assertFalse(self.worker_prop('w1', 'Unhealthy'))
        self.assertEqual(self.worker_prop('w1', 'HealthReason'), '')
        changed = self.wait_signal('HealthChanged', worker_path('w1'), count=2)
        self.assertEqual([s[3] for s in changed], [(True, reason), (False, '')])
        # w2 was unhealthy and healthy again meanwhile; its admin pause stays.
        self.assertTrue(self.worker_prop('w2', 'Paused'))
        self.assertEqual(self.worker_prop('w2', 'PauseReason'), 'admin says no')

    def test_response_time_rises_for_a_slowed_worker(self):
        self.write_config(self.daemon_section(KeepaliveInterval='5') +
                          '[Worker w1]\nPassword=pw\nBuilders=b\nHealthInterval=0.2\n'
                          'MaxResponseTime=0.3\n')
        self.start_daemon()
        w = self.add_worker('w1', 'pw').start()
        self.wait_connected('w1')
        self.wait_until(lambda: self.worker_prop('w1', 'ResponseTimeUSec') > 0, 20, 'a first check')
        self.assert_stays(lambda: not self.worker_prop('w1', 'Unhealthy'), 1.0, 'healthy while quick')
        quick = self.worker_prop('w1', 'ResponseTimeUSec')
        # Every value it took, not only the last (quick rounds follow).
        seen = lambda: self.properties_changed(worker_path('w1'), 'ResponseTimeUSec')

        # Bursts of SIGSTOP, each twice MaxResponseTime, until the daemon
        # has published a slow answer: a ping sent meanwhile waits for the
        # SIGCONT (how many bursts that takes depends on the machine).
        def burst():
            w.kill(signal.SIGSTOP)
            self.pump(0.6)
            w.kill(signal.SIGCONT)
            self.pump(0.2)
            return max(seen() or [0]) > 300000
        self.wait_until(burst, 30, 'slow answers seen')
        self.assertGreater(max(seen()), quick)
        # Too slow was unhealthy (perhaps only until the next quick round).
        changed = self.wait_signal('HealthChanged', worker_path('w1'))
        self.assertEqual(changed[0][3][0], True)
        self.assertIn('MaxResponseTime', changed[0][3][1])
        self.wait_until(lambda: not self.worker_prop('w1', 'Unhealthy'), 30, 'quick again')

    def test_min_free_disk_on_a_small_filesystem(self):
        if os.geteuid() != 0 or shutil.which('mount') is None:
            self.skipTest('mounting a tmpfs needs root')
        basedir = os.path.join(self.workdir, 'worker-w1-0')   # the harness's name for it
        os.makedirs(basedir)
        mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', basedir],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if mounted.returncode != 0:
            self.skipTest('cannot mount a tmpfs here: %s' % mounted.stderr.strip())
        self.addCleanup(subprocess.run, ['umount', '-l', basedir])
        self.write_config(self.daemon_section() +
                          '[Worker w1]\nPassword=pw\nBuilders=b\nHealthInterval=0.3\nMinFreeDisk=8M\n')
        self.start_daemon()
        w = self.add_worker('w1', 'pw')
        self.assertEqual(w.basedir, basedir)
        w.start()
        self.wait_connected('w1')
        self.wait_until(lambda: self.worker_prop('w1', 'ResponseTimeUSec') > 0, 20, 'a first check')
        self.assert_stays(lambda: not self.worker_prop('w1', 'Unhealthy'), 1.0, 'healthy with space')

        ballast = os.path.join(basedir, 'ballast')
        with open(ballast, 'wb') as f:
            f.write(b'\0' * (12 * 1024 * 1024))
        self.wait_until(lambda: self.worker_prop('w1', 'Unhealthy'), 20, 'unhealthy on a full disk')
        self.assertRegex(self.worker_prop('w1', 'HealthReason'), r'MiB free in its base directory \(MinFreeDisk=8.0.MiB\)')
        build = self.request('b', 'w1')
        self.assert_stays(lambda: self.prop(build, BUILD_IFACE, 'State') == 'pending', 1.0, 'no build on a full disk')
        os.unlink(ballast)
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running', 20, 'back by itself')
        self.assertFalse(self.worker_prop('w1', 'Paused'))


if __name__ == '__main__':
    bfharness.main()
