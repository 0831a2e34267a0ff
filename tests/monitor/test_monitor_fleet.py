#!/usr/bin/python3
# The monitor answers what runs where, what waits and what happened (issue
# 18): builds in the details and the Builds view, the history timeline,
# truthful times, and notifications for the daemon itself.  Under Xvfb,
# against the built daemon with real workers; assertions read the labels
# the window shows (the test-dump action reads the widgets).
#   /usr/bin/python3 tests/monitor/test_monitor_fleet.py DaemonNotificationTest
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from monitorharness import MonitorTestCase, main, wait_for  # noqa: E402


def stays(condition, seconds):
    '''condition() holds for the whole time (checked every 0.2 s).'''
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.2)
    return True


class DaemonNotificationTest(MonitorTestCase):
    '''The daemon's death and return raise one notification each.'''

    # not missing while the daemon restarts: only the daemon's own notifications
    WORKERS = {'alpha': {'missing_timeout': 3600}}

    def test_daemon_gone_and_back(self):
        self.wait_row('alpha', lambda r: r['state'] == 'connected')
        self.assertTrue(stays(lambda: self.notifications() == [], 1))

        self.stop_daemon()
        gone = self.wait_notification(lambda n: n['summary'] == 'The fleet daemon went away',
                                      message='the daemon-gone notification')
        self.assertEqual(int(gone['hints']['urgency']), 2)
        self.assertTrue(stays(lambda: len(self.notifications()) == 1, 2), self.notifications())

        self.start_daemon()
        back = self.wait_notification(lambda n: n['summary'] == 'The fleet daemon is back', timeout=30,
                                      message='the daemon-back notification')
        # it replaces the first bubble
        self.assertEqual(back['replaces_id'], gone['id'])
        self.wait_row('alpha', lambda r: r['state'] == 'connected', timeout=30)
        self.assertTrue(stays(lambda: len(self.notifications()) == 2, 2), self.notifications())
        self.screenshot('daemon-back')


class BackgroundSummaryTest(MonitorTestCase):
    '''--background with two workers missing already: one summary, not silence, not a storm.'''

    WORKERS = {
        'alpha': {},
        'bravo': {'start': False},
        'charlie': {'start': False},
    }
    START_MONITOR = False

    def test_summary_at_start(self):
        self.wait_worker_property('bravo', 'Missing', True)
        self.wait_worker_property('charlie', 'Missing', True)
        self.start_monitor(['--background'])
        summary = self.wait_notification(lambda n: 'missing' in n['summary'], message='the summary')
        self.assertEqual(summary['summary'], '2 workers are missing')
        self.assertEqual(summary['body'], 'bravo, charlie')
        self.assertTrue(stays(lambda: len(self.notifications()) == 1, 3), self.notifications())
        self.assertEqual(self.dump()['application']['n-windows'], '0')
        self.screenshot('summary', window=False)


if __name__ == '__main__':
    main()
