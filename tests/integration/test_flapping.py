#!/usr/bin/python3
# A worker that keeps dropping and coming back is marked Flapping once per
# episode, with one mail, gets no new builds while it flaps, and takes
# builds again after it stayed attached for FlapRecovery.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

from gi.repository import GLib

import bfharness
from bfharness import BUILD_IFACE, FLEET_PATH, MANAGER_IFACE, worker_path

RESTARTS = 6


class FlappingTest(bfharness.FleetTestCase):
    def test_flapping_episode(self):
        self.write_config(self.daemon_section() +
                          '[Worker w1]\nPassword=pw\nBuilders=b\nMissingTimeout=0.3\n'
                          'NotifyOnMissing=ops@example.com\n'
                          'FlapThreshold=3\nFlapWindow=600\nFlapRecovery=2\n'
                          '[Worker w2]\nPassword=pw2\nBuilders=c\nFlapThreshold=3\n')
        self.start_daemon()
        w1 = self.add_worker('w1', 'pw').start()
        w2 = self.add_worker('w2', 'pw2').start()
        self.wait_connected('w1')
        self.wait_connected('w2')
        self.assertFalse(self.worker_prop('w1', 'Flapping'))

        flapping_at_mail = None
        for i in range(RESTARTS):
            w1.kill()
            self.wait_connected('w1', value=False)
            # Long enough away to be Missing: its mail is an alert too.
            self.wait_until(lambda: self.worker_prop('w1', 'Missing'), 10, 'missing %d' % i)
            if self.worker_prop('w1', 'Flapping') and flapping_at_mail is None:
                self.wait_until(lambda: any('is flapping' in m for m in self.mails()), 10, 'flapping mail')
                flapping_at_mail = len(self.mails())
            w1.start()
            self.wait_connected('w1', timeout=30)
        self.assertIsNotNone(flapping_at_mail, 'never marked flapping')
        # One FlappingChanged(true), one flapping mail, and nothing mailed
        # about w1 after it (the Missing signals still came).
        changed = self.signals_named('FlappingChanged', worker_path('w1'))
        self.assertEqual([s[3] for s in changed], [(True,)])
        self.assertEqual(sum('is flapping' in m for m in self.mails()), 1)
        self.assertEqual(len(self.mails()), flapping_at_mail)
        self.assertGreaterEqual(len(self.signals_named('Missing', worker_path('w1'))), RESTARTS)
        self.assertFalse(self.worker_prop('w2', 'Flapping'))

        # No new builds while flapping; it takes them after FlapRecovery.
        opts = {'worker': GLib.Variant('s', 'w1')}
        build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant('(sa{sv})', ('b', opts)))[0]
        if self.worker_prop('w1', 'Flapping'):
            self.assertEqual(self.prop(build, BUILD_IFACE, 'WaitingFor'), 'w1: flapping')
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running', 30, 'build runs')
        self.assertFalse(self.worker_prop('w1', 'Flapping'))
        changed = self.wait_signal('FlappingChanged', worker_path('w1'), count=2)
        self.assertEqual([s[3] for s in changed], [(True,), (False,)])

        # Shutdown and Disconnect are not flaps.
        for _ in range(4):
            self.worker_call('w2', 'Disconnect')
            self.wait_connected('w2', value=False)
            self.wait_connected('w2', timeout=30)
        self.assertFalse(self.worker_prop('w2', 'Flapping'))


if __name__ == '__main__':
    bfharness.main()
