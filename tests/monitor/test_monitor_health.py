#!/usr/bin/python3
# Health, flapping and labels in the monitor (issue 17): a worker whose
# HealthCommand starts failing reads "Unhealthy" in the list's State column,
# with the daemon's reason in the cell's tooltip and at the top of the
# details, and raises one desktop notification for the incident.  Under
# Xvfb, against the built daemon with a real worker; assertions read the
# labels the window shows (the test-dump action reads the widgets).
#   /usr/bin/python3 tests/monitor/test_monitor_health.py HealthTest
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from monitorharness import MonitorTestCase, main, stays, wait_for  # noqa: E402


def grid(dump):
    '''The details pane's rows as {key: value}, the first of each key.'''
    out = {}
    if dump.has_section('details-grid'):
        for text in dump['details-grid'].values():
            key, _sep, value = text.partition(': ')
            out.setdefault(key, value)
    return out


class HealthTest(MonitorTestCase):
    '''An unhealthy worker: the State cell, its tooltip, the details, one notification.'''

    WORKERS = {
        'alpha': {'missing_timeout': 3600},
        'bravo': {'missing_timeout': 3600},
    }

    def write_config(self):
        self.sick = os.path.join(self.tmpdir, 'sick')
        self.WORKERS = {
            'alpha': {'missing_timeout': 3600,
                      'extra': {'HealthInterval': '0.3', 'HealthCommand': f'test ! -e {self.sick}',
                                'Labels': 'gpu;big-disk'}},
            'bravo': {'missing_timeout': 3600},
        }
        super().write_config()

    def unhealthy_notifications(self):
        return [n for n in self.notifications() if 'unhealthy' in n['summary']]

    def test_unhealthy(self):
        wait_for(lambda: self.worker_property('alpha', 'ResponseTimeUSec') > 0,
                 timeout=30, message='a first health check')
        row = self.wait_row('alpha', lambda r: r['status'] == 'Connected', message='alpha connected')
        self.assertNotIn('Unhealthy', row['status-tooltip'])

        self.app_action('show-worker', 'alpha')
        # The pane reads all the worker's properties (GetAll) after it shows it.
        dump = wait_for(lambda: (lambda d: d if grid(d).get('Builders', '—') != '—' and
                                 grid(d).get('Response time', 'Not measured') != 'Not measured'
                                 else None)(self.dump()),
                        message='the details, read in full, with a response time')
        details = grid(dump)
        self.assertEqual(dump['details']['title'], 'alpha')
        self.assertEqual(details['Health'], 'Healthy')
        self.assertEqual(details['Flapping'], 'No')
        self.assertIn('gpu', details['Labels'].split(', '))
        self.assertIn('big-disk', details['Labels'].split(', '))
        self.assertRegex(details['Response time'], r'^\d+\.\d ms$')
        self.assertEqual(dump['details']['alert'], '')
        self.assertEqual(self.unhealthy_notifications(), [])

        with open(self.sick, 'w'):
            pass
        row = self.wait_row('alpha', lambda r: r['status'] == 'Unhealthy', timeout=30,
                            message='the State cell reads Unhealthy')
        reason = self.worker_property('alpha', 'HealthReason')
        self.assertIn('HealthCommand exited with 1', reason)
        self.assertIn('Unhealthy: ' + reason, row['status-tooltip'])
        self.assertIn('unhealthy', row['badges'])
        self.assertEqual(self.row('bravo')['status'], 'Connected')

        dump = wait_for(lambda: (lambda d: d if d['details']['alert'] else None)(self.dump()),
                        message='the alert at the top of the details')
        self.assertEqual(dump['details']['alert'], 'Unhealthy: ' + reason)
        self.assertEqual(grid(dump)['Health'], 'Unhealthy: ' + reason)

        note = self.wait_notification(lambda n: n['summary'] == 'Worker alpha is unhealthy',
                                      message='the unhealthy notification')
        self.assertEqual(note['body'], reason)
        self.assertIn('default', note['actions'])
        # Health checks keep failing every 0.3 s: still one notification.
        self.assertTrue(stays(lambda: len(self.unhealthy_notifications()) == 1, 2), self.notifications())
        self.screenshot('unhealthy')

        os.unlink(self.sick)
        self.wait_row('alpha', lambda r: r['status'] == 'Connected', timeout=30, message='alpha healthy again')
        wait_for(lambda: (lambda d: d if d['details']['alert'] == '' else None)(self.dump()),
                 message='the alert gone')
        self.assertEqual(len(self.unhealthy_notifications()), 1, self.notifications())


class FlappingTest(MonitorTestCase):
    '''A worker that keeps dropping: "Flapping" in its cell and details, one notification.'''

    WORKERS = {
        # Never Missing (that state would come first); flapping until the test ends.
        'alpha': {'missing_timeout': 3600,
                  'extra': {'FlapThreshold': '2', 'FlapWindow': '600', 'FlapRecovery': '3600'}},
        'bravo': {'missing_timeout': 3600},
    }

    def flapping_notifications(self):
        return [n for n in self.notifications() if 'flapping' in n['summary']]

    def test_flapping(self):
        self.wait_row('alpha', lambda r: r['status'] == 'Connected', message='alpha connected')
        self.app_action('show-worker', 'alpha')
        for i in range(5):
            if self.worker_property('alpha', 'Flapping'):
                break
            self.workers['alpha'].kill()
            self.wait_worker_property('alpha', 'Connected', False)
            self.workers['alpha'].start()
            self.wait_worker_property('alpha', 'Connected', True, timeout=30)
        self.assertTrue(self.worker_property('alpha', 'Flapping'), 'never marked flapping')

        row = self.wait_row('alpha', lambda r: r['status'] == 'Flapping', message='the State cell reads Flapping')
        self.assertIn('Flapping: gets no new builds until it stays attached', row['status-tooltip'])
        self.assertEqual(self.row('bravo')['status'], 'Connected')
        dump = wait_for(lambda: (lambda d: d if 'Flapping' in d['details']['alert'] else None)(self.dump()),
                        message='the alert at the top of the details')
        self.assertEqual(dump['details']['alert'], 'Flapping: gets no new builds until it stays attached')
        wait_for(lambda: grid(self.dump()).get('Flapping') == 'Yes', message='the Flapping row')

        note = self.wait_notification(lambda n: n['summary'] == 'Worker alpha is flapping',
                                      message='the flapping notification')
        self.assertIn('stays attached', note['body'])
        # One more drop within the episode: still one notification.
        self.workers['alpha'].kill()
        self.wait_worker_property('alpha', 'Connected', False)
        self.workers['alpha'].start()
        self.wait_worker_property('alpha', 'Connected', True, timeout=30)
        self.assertTrue(stays(lambda: len(self.flapping_notifications()) == 1, 2), self.notifications())
        self.screenshot('flapping')


if __name__ == '__main__':
    main()
