#!/usr/bin/python3
# The desktop monitor in a real window (Xvfb) against the built daemon with
# real buildbot workers, a private system bus and a session bus with a
# notification server.  Run one class per meson test:
#   /usr/bin/python3 tests/monitor/test_monitor.py ListTest
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from monitorharness import MonitorTestCase, main, stays, wait_for  # noqa: E402

THREE_WORKERS = {
    'alpha': {'admin': 'Alice Admin <alice@example.com>', 'host': 'alpha.example.com, Debian 12'},
    'bravo': {'admin': 'Bob Builder <bob@example.com>', 'host': 'bravo.example.com, Debian 12'},
    'charlie': {'start': False, 'missing_timeout': 3600},
}


class ListTest(MonitorTestCase):
    '''The window lists the daemon's workers with their state, live.'''

    WORKERS = THREE_WORKERS

    def test_list_shows_workers(self):
        dump = wait_for(lambda: (lambda d: d if len(self.rows(d)) == 3 else None)(self.dump()),
                        message='three rows on screen')
        self.assertEqual(dump['application']['status'], 'ready')
        self.assertEqual(dump['window']['page'], 'list')
        rows = self.rows(dump)
        # sorted by name, ascending
        self.assertEqual([r['name'] for r in rows], ['alpha', 'bravo', 'charlie'])

        alpha = self.wait_row('alpha', lambda r: r['admin'] == 'Alice Admin <alice@example.com>')
        self.assertEqual(alpha['state'], 'connected')
        self.assertEqual(alpha['host'], 'alpha.example.com, Debian 12')
        self.assertEqual(alpha['builds'], '0 / 2')
        self.assertEqual(alpha['last-seen'], 'Now')
        charlie = self.row('charlie', dump)
        self.assertEqual(charlie['state'], 'disconnected')
        self.assertEqual(charlie['last-seen'], 'Never')

        # the summary in the header
        dump = wait_for(lambda: (lambda d: d if d['window']['connected'] == '2' else None)(self.dump()),
                        message='two connected in the summary')
        self.assertEqual(dump['window']['missing'], '0')
        self.assertEqual(dump['window']['subtitle'], '3 workers')
        self.screenshot('list')

        # a change in the daemon reaches the row (PropertiesChanged), and the
        # details pane follows the selection
        self.app_action('show-worker', 'bravo')
        wait_for(lambda: self.dump()['window']['selected'] == 'bravo', message='bravo selected')
        worker = self.system_con.get_object('org.buildfleet.Fleet1', self.worker_path('bravo'))
        worker.Pause('from the test', dbus_interface='org.buildfleet.Fleet1.Worker')
        row = self.wait_row('bravo', lambda r: 'paused' in r['badges'], message='bravo paused in the list')
        self.assertEqual(row['pause-reason'], 'from the test')
        wait_for(lambda: self.dump()['window']['paused'] == '1', message='the paused count')
        self.screenshot('details')


    def test_bursts_of_changes(self):
        # Many changes to one worker between two flushes of the list (they
        # are at least 100 ms apart): each must leave the row intact.
        self.wait_row('charlie', lambda r: r['state'] == 'disconnected')
        worker = self.system_con.get_object('org.buildfleet.Fleet1', self.worker_path('charlie'))
        for i in range(40):
            worker.Pause('burst %d' % i, dbus_interface='org.buildfleet.Fleet1.Worker')
            worker.Unpause(dbus_interface='org.buildfleet.Fleet1.Worker')
        worker.Pause('after the burst', dbus_interface='org.buildfleet.Fleet1.Worker')
        row = self.wait_row('charlie', lambda r: r['pause-reason'] == 'after the burst',
                            message='the last reason in the list')
        self.assertIn('paused', row['badges'])
        self.assertEqual([r['name'] for r in self.rows(self.dump())], ['alpha', 'bravo', 'charlie'])
        self.assertIsNone(self.monitor.poll(), 'the monitor died')


class MissingTest(MonitorTestCase):
    '''A killed worker raises one "missing" notification, its return a "back online" one.'''

    WORKERS = THREE_WORKERS

    def test_missing_then_back_online(self):
        self.wait_row('alpha', lambda r: r['state'] == 'connected')
        # nothing is notified for the state found at start-up
        self.assertTrue(stays(lambda: self.notifications() == [], 1), self.notifications())

        started = time.monotonic()
        self.workers['alpha'].kill()
        missing = self.wait_notification(lambda n: 'alpha' in n['summary'] and 'missing' in n['summary'],
                                         message='the missing notification')
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.5, 'notified before MissingTimeout=0.5')
        self.assertEqual(missing['summary'], 'Worker alpha is missing')
        self.assertIn('Not seen since', missing['body'])
        self.assertIn('Alice Admin <alice@example.com>', missing['body'])
        self.assertEqual(int(missing['hints']['urgency']), 2)  # critical
        self.assertEqual(str(missing['hints']['desktop-entry']), 'org.buildfleet.Monitor')
        self.assertIn('default', missing['actions'])

        row = self.wait_row('alpha', lambda r: r['state'] == 'missing')
        wait_for(lambda: self.dump()['window']['missing'] == '1', message='the missing count')
        self.screenshot('missing')

        self.workers['alpha'].start()
        back = self.wait_notification(lambda n: 'back online' in n['summary'], timeout=30,
                                      message='the back-online notification')
        self.assertEqual(back['summary'], 'Worker alpha is back online')
        # it replaces the "missing" bubble instead of stacking a new one
        self.assertEqual(back['replaces_id'], missing['id'])
        self.assertEqual(int(back['hints']['urgency']), 1)
        self.wait_row('alpha', lambda r: r['state'] == 'connected')

        # exactly one notification per incident
        kinds = [n['summary'] for n in self.notifications()]
        self.assertEqual(kinds, ['Worker alpha is missing', 'Worker alpha is back online'])

        # the default action opens the window on that worker
        self.invoke_default_action(back['id'])
        wait_for(lambda: self.dump()['window']['selected'] == 'alpha', message='alpha selected')
        self.screenshot('back-online')


class ActionTest(MonitorTestCase):
    '''Key presses in the window reach the daemon; its errors are shown.'''

    WORKERS = THREE_WORKERS

    def test_pause_from_the_window(self):
        self.wait_row('bravo', lambda r: r['state'] == 'connected')
        self.app_action('show-worker', 'bravo')
        wait_for(lambda: self.dump()['window']['selected'] == 'bravo', message='bravo selected')

        # Ctrl+P opens the pause dialog; type a reason; Return confirms
        self.keys('ctrl+p', text='disk replacement')
        self.screenshot('pause-dialog')
        self.keys('Return')

        self.wait_worker_property('bravo', 'Paused', True)
        self.assertEqual(self.worker_property('bravo', 'PauseReason'), 'disk replacement')
        self.wait_row('bravo', lambda r: 'paused' in r['badges'])
        self.screenshot('paused')

        # Shift+Ctrl+P resumes
        self.keys('ctrl+shift+p')
        self.wait_worker_property('bravo', 'Paused', False)
        self.wait_row('bravo', lambda r: 'paused' not in r['badges'])
        self.assertEqual(self.dump()['window']['last-error'], '')


class DaemonRestartTest(MonitorTestCase):
    '''The daemon going away is a normal state; the monitor comes back by itself.'''

    WORKERS = {'alpha': {'admin': 'Alice Admin <alice@example.com>'}}

    def test_daemon_restart(self):
        self.wait_row('alpha', lambda r: r['state'] == 'connected')
        self.stop_daemon()
        dump = wait_for(lambda: (lambda d: d if d['window']['page'] == 'no-daemon' else None)(self.dump()),
                        message='the empty-state page')
        self.assertEqual(dump['application']['status'], 'no-daemon')
        self.assertEqual(dump['window']['n-rows'], '0')
        self.screenshot('no-daemon')

        self.start_daemon()
        self.wait_row('alpha', lambda r: r['state'] in ('connected', 'disconnected'), timeout=30)
        self.assertEqual(self.dump()['window']['page'], 'list')
        self.wait_row('alpha', lambda r: r['state'] == 'connected', timeout=30)
        self.assertIsNone(self.monitor.poll())


class BackgroundTest(MonitorTestCase):
    '''--background: no window, notifications all the same, a click opens the window.'''

    WORKERS = {'alpha': {'admin': 'Alice Admin <alice@example.com>'}}
    MONITOR_ARGS = ['--background']

    def test_background(self):
        dump = wait_for(lambda: (lambda d: d if d['application']['status'] == 'ready' else None)(self.dump()),
                        message='the fleet loaded')
        self.assertEqual(dump['application']['n-windows'], '0')
        self.assertFalse(dump.has_section('window'))
        self.screenshot('no-window', window=False)

        self.workers['alpha'].kill()
        missing = self.wait_notification(lambda n: n['summary'] == 'Worker alpha is missing',
                                         message='the missing notification')
        self.assertEqual(int(missing['hints']['urgency']), 2)

        # still no window: a notification alone does not open one
        self.assertEqual(self.dump()['application']['n-windows'], '0')

        self.invoke_default_action(missing['id'])
        dump = wait_for(lambda: (lambda d: d if d.has_section('window') and d['window']['selected'] == 'alpha'
                                 else None)(self.dump()),
                        message='a window on alpha')
        self.assertEqual(dump['application']['n-windows'], '1')
        self.wait_row('alpha', lambda r: r['state'] == 'missing')
        self.screenshot('opened-from-notification')


LATENT_WORKERS = {
    'cloud': {'start': False, 'missing_timeout': 3600,
              'extra': {'Latent': 'command',
                        'StartCommand': '/bin/sh -c "echo no quota left for %n >&2; exit 3"',
                        'StopCommand': '/bin/true',
                        'SubstantiationTimeout': '20'}},
}


class LatentTest(MonitorTestCase):
    '''A latent worker that cannot start: the window says why, in the daemon's words.'''

    WORKERS = LATENT_WORKERS

    def substantiate_from_window(self):
        self.wait_row('cloud', lambda r: r['state'] == 'not-substantiated')
        self.app_action('show-worker', 'cloud')
        wait_for(lambda: self.dump()['window']['selected'] == 'cloud', message='cloud selected')
        # Alt+S: the mnemonic of the "Substantiate" button in the details pane
        self.keys('alt+s')

    def test_error_in_window(self):
        self.substantiate_from_window()
        # the method call's error is shown in the window, in the daemon's words
        error = wait_for(lambda: self.dump()['window']['last-error'], timeout=30, message='the error in the window')
        self.assertTrue(error.startswith('Could not start cloud: '), error)
        self.assertGreater(len(error), len('Could not start cloud: '))
        self.screenshot('error')


class LatentNotificationTest(LatentTest):
    '''SubstantiationFailed raises a notification with the daemon's message.

    The failing StartCommand makes the daemon emit SubstantiationFailed.
    '''

    test_error_in_window = None   # LatentTest's case, not run again here

    def test_substantiation_failed(self):
        self.substantiate_from_window()
        failed = self.wait_notification(lambda n: n['summary'] == 'Worker cloud failed to start', timeout=30,
                                        message='the substantiation-failed notification')
        self.assertEqual(failed['body'], str(self.worker_property('cloud', 'LastError',
                                                                  iface='org.buildfleet.Fleet1.LatentWorker')))
        self.assertNotEqual(failed['body'], '')
        self.screenshot('failed')


if __name__ == '__main__':
    main()
