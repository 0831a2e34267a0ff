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
import pwd
import re
import subprocess
import sys
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from monitorharness import MonitorTestCase, main, stays, wait_for  # noqa: E402


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


MANAGER_IFACE = 'org.buildfleet.Fleet1.Manager'
BUILD_IFACE = 'org.buildfleet.Fleet1.Build'
WORKER_IFACE = 'org.buildfleet.Fleet1.Worker'


def sections(dump, prefix):
    '''The dump's groups "PREFIX 0", "PREFIX 1"… as dicts.'''
    out = []
    while dump.has_section(f'{prefix} {len(out)}'):
        out.append(dict(dump[f'{prefix} {len(out)}']))
    return out


def history_events(dump):
    if not dump.has_section('history'):
        return []
    h = dump['history']
    return [h[f'event {i}'] for i in range(int(h.get('n-events', '0')))]


class BuildsTest(MonitorTestCase):
    '''Builds in the worker's details and in the Builds view, live.'''

    WORKERS = {
        'alpha': {'builders': 'linux', 'missing_timeout': 3600},
        'bravo': {'builders': 'docs', 'missing_timeout': 3600},
    }

    def request(self, builder, **options):
        manager = self.system_con.get_object('org.buildfleet.Fleet1', '/org/buildfleet/Fleet1')
        return manager.RequestBuild(builder, dbus.Dictionary(options, signature='sv'),
                                    dbus_interface=MANAGER_IFACE)

    def build_prop(self, path, name):
        obj = self.system_con.get_object('org.buildfleet.Fleet1', path)
        return obj.Get(BUILD_IFACE, name, dbus_interface=dbus.PROPERTIES_IFACE)

    def test_running_and_pending(self):
        user = pwd.getpwuid(os.getuid()).pw_name
        self.wait_row('alpha', lambda r: r['state'] == 'connected')
        self.app_action('show-worker', 'alpha')
        wait_for(lambda: self.dump()['window']['selected'] == 'alpha', message='alpha selected')
        self.assertEqual(self.dump()['details-builds']['summary'], 'No builds running.')
        # one primary action for the worker's state, the rest in the menu
        self.assertEqual(self.dump()['details']['primary-action'], '_Pause…')

        # A running build: in alpha's details and in the Builds view within a second
        # (measured from the daemon's StartedUSec to the first frame that
        # painted it, both CLOCK_REALTIME: the test's own polling is not in it)
        build = self.request('linux', worker='alpha')
        dump = wait_for(lambda: (lambda d: d if sections(d, 'details-build') and sections(d, 'build') and
                                 sections(d, 'build')[0]['worker'] == 'alpha' and
                                 int(sections(d, 'build')[0]['shown-usec']) and
                                 int(sections(d, 'details-build')[0]['shown-usec']) else None)(
            self.dump()), interval=0.05, message='the build in both views')
        started = int(self.build_prop(build, 'StartedUSec'))
        for view in ('build', 'details-build'):
            elapsed = (int(sections(dump, view)[0]['shown-usec']) - started) / 1e6
            print(f'running build painted in {view} {elapsed:.3f} s after StartedUSec', file=sys.stderr)
            self.assertLess(elapsed, 1.0)
        self.assertEqual(self.build_prop(build, 'State'), 'running')
        detail = sections(dump, 'details-build')[0]
        self.assertEqual(detail['builder'], 'linux')
        # the owner as a user name (asked of the bus once, shown as it comes)
        detail = wait_for(lambda: (lambda b: b[0] if b and b[0]['owner'] == user else None)(
            sections(self.dump(), 'details-build')), timeout=5, message='the owner as a user name')
        self.assertRegex(detail['time'], r'^for \d+ s$')
        self.assertEqual(detail['what'], 'no command yet')
        row = sections(self.dump(), 'build')[0]
        self.assertEqual((row['builder'], row['worker'], row['owner']), ('linux', 'alpha', user))
        self.assertEqual(dump['builds']['summary'], '1 running, 0 pending')

        # its current command, and the elapsed time ticks
        obj = self.system_con.get_object('org.buildfleet.Fleet1', build)
        obj.RunCommand('shell', dbus.Dictionary({'command': dbus.Array(['sleep', '60'], signature='s'),
                                                 'workdir': 'wd'}, signature='sv'),
                       dbus_interface=BUILD_IFACE)
        wait_for(lambda: sections(self.dump(), 'details-build')[0]['what'] == 'shell',
                 message='the command', timeout=10)
        first = sections(self.dump(), 'details-build')[0]['time']
        wait_for(lambda: sections(self.dump(), 'details-build')[0]['time'] != first, timeout=5,
                 message='the elapsed time to tick')

        # The details pane updates in place while the build runs and the
        # worker's LastMessageUSec ticks (KeepaliveInterval=1): no label is
        # made again, so a selection in one survives.
        created = self.dump()['details']['grid-labels-created']
        self.assertTrue(stays(lambda: self.dump()['details']['grid-labels-created'] == created, 3),
                        'the details grid was rebuilt')

        # A pending build: waits for a paused worker, and says so
        worker = self.system_con.get_object('org.buildfleet.Fleet1', self.worker_path('bravo'))
        worker.Pause('disk replacement', dbus_interface=WORKER_IFACE)
        self.app_action('show-worker', 'bravo')
        wait_for(lambda: self.dump()['details']['primary-action'] == '_Unpause', message='Unpause first for bravo')
        self.app_action('show-worker', 'alpha')
        wait_for(lambda: self.dump()['details']['title'] == 'alpha', message='alpha selected again')
        pending = self.request('docs')
        waiting_for = wait_for(lambda: self.build_prop(pending, 'WaitingFor'), message='WaitingFor')
        self.assertIn('bravo', waiting_for)
        self.assertIn('paused', waiting_for)
        dump = wait_for(lambda: (lambda d: d if len(sections(d, 'build')) == 2 else None)(self.dump()),
                        message='two builds in the Builds view')
        rows = sections(dump, 'build')
        self.assertEqual(rows[1]['builder'], 'docs')
        self.assertEqual(rows[1]['worker'], 'pending')
        self.assertEqual(rows[1]['what'], 'Waits for: ' + waiting_for)
        self.assertRegex(rows[1]['time'], r'^waiting \d+ s$')
        self.assertEqual(dump['builds']['summary'], '1 running, 1 pending')
        # alpha's details show only alpha's running build
        self.assertEqual(len(sections(dump, 'details-build')), 1)
        self.screenshot('builds')

        # Released: leaves both views within a second
        obj.Release(dbus_interface=BUILD_IFACE)
        dump = wait_for(lambda: (lambda d: d if not sections(d, 'details-build') and
                                 len(sections(d, 'build')) == 1 and d['builds']['gone-path'] == build and
                                 int(d['builds']['gone-usec']) else None)(self.dump()),
                        interval=0.05, message='the released build gone')
        finished = int(self.build_prop(build, 'FinishedUSec'))
        elapsed = (int(dump['builds']['gone-usec']) - finished) / 1e6
        print(f'released build gone {elapsed:.3f} s after FinishedUSec', file=sys.stderr)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(dump['details-builds']['summary'], 'No builds running.')

        # Unpaused: the pending build starts on bravo
        worker.Unpause(dbus_interface=WORKER_IFACE)
        row = wait_for(lambda: (lambda r: r[0] if r and r[0]['worker'] == 'bravo' else None)(
            sections(self.dump(), 'build')), message='the docs build running on bravo')
        self.assertEqual(row['what'], 'no command yet')


class HistoryTest(MonitorTestCase):
    '''A worker killed and restarted shows both events in its timeline, also after a daemon restart.'''

    WORKERS = {'alpha': {'missing_timeout': 1}}

    def test_timeline(self):
        self.wait_row('alpha', lambda r: r['state'] == 'connected')
        self.app_action('show-worker', 'alpha')
        wait_for(lambda: self.dump()['window']['selected'] == 'alpha', message='alpha selected')

        self.workers['alpha'].kill()
        self.wait_worker_property('alpha', 'Missing', True)
        self.workers['alpha'].start()
        self.wait_worker_property('alpha', 'Connected', True, timeout=30)

        def timeline_complete():
            # the worker's first attach may be a "back online" too (MissingTimeout=1)
            events = history_events(self.dump())
            return events if events and events[0].startswith('Back online') and \
                sum(e.startswith('Attached') for e in events) >= 2 else None
        events = wait_for(timeline_complete, message='the timeline')
        # oldest first, these in this order: attached, detached, missing, attached, back online
        wanted = [r'^Attached from 127\.0\.0\.1:\d+$', r'^Detached: connection', r'^Missing$',
                  r'^Attached from 127\.0\.0\.1:\d+$', r'^Back online after ']
        found = []
        for event in reversed(events):
            if len(found) < len(wanted) and re.search(wanted[len(found)], event):
                found.append(event)
        self.assertEqual(len(found), len(wanted), events)
        strip = self.dump()['history']['strip']
        self.assertRegex(strip, r'^Connected \d+% since .*, \d+ disconnects?$')
        events = found
        self.screenshot('timeline')

        # the daemon restarts: the events are still there
        self.stop_daemon()
        wait_for(lambda: self.dump()['window']['page'] == 'no-daemon', message='the no-daemon page')
        self.start_daemon()
        self.wait_row('alpha', lambda r: r['state'] == 'connected', timeout=30)
        self.app_action('show-worker', 'alpha')
        wait_for(lambda: self.dump()['window']['selected'] == 'alpha', message='alpha selected again')

        def restart_seen():
            events = history_events(self.dump())
            return events if any(e == 'Detached: daemon shutting down' for e in events) else None
        after = wait_for(restart_seen, timeout=30, message='the timeline after the restart')
        for event in events[:5]:
            self.assertIn(event, after)
        self.screenshot('timeline-after-restart')


class NeverSeenTest(MonitorTestCase):
    '''"Never" for a worker never seen; a live countdown to missing while a worker is away.'''

    WORKERS = {
        'alpha': {'missing_timeout': 120},
        'charlie': {'start': False, 'missing_timeout': 3600},
    }

    def presence(self):
        return self.dump()['details']['presence']

    def test_never_and_countdown(self):
        charlie = self.wait_row('charlie', lambda r: r['state'] == 'disconnected')
        self.assertEqual(charlie['last-seen'], 'Never')
        self.app_action('show-worker', 'charlie')
        wait_for(lambda: self.dump()['window']['selected'] == 'charlie', message='charlie selected')
        text = wait_for(lambda: (lambda p: p if p.startswith('Last seen: Never') else None)(self.presence()),
                        message='Never in the details')
        # An hour's timeout: "1 h 0 min" in its first second, then minutes and seconds.
        self.assertRegex(text, r'^Last seen: Never\. Missing in (59 min \d+ s|1 h 0 min)\.$')
        self.screenshot('never')

        # alpha goes away: it was seen, and the countdown runs live
        self.workers['alpha'].kill()
        self.wait_row('alpha', lambda r: r['state'] == 'disconnected')
        self.app_action('show-worker', 'alpha')
        wait_for(lambda: self.dump()['window']['selected'] == 'alpha', message='alpha selected')
        first = wait_for(lambda: (lambda p: p if 'Missing in' in p else None)(self.presence()),
                         message='the countdown')
        self.assertRegex(first, r'^Last seen \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((Just now|\d+ seconds? ago)\)\. '
                                r'Missing in [12] min \d+ s\.$')
        seconds = lambda p: (lambda m: int(m.group(1)) * 60 + int(m.group(2)))(
            re.search(r'Missing in (\d+) min (\d+) s', p))
        second = wait_for(lambda: (lambda p: p if seconds(p) < seconds(first) else None)(self.presence()),
                          timeout=5, message='the countdown to tick')
        self.assertLess(seconds(second), seconds(first))
        self.assertEqual(self.row('alpha')['last-seen'], 'Just now')
        self.screenshot('countdown')


class CardsFilterTest(MonitorTestCase):
    '''The summary cards act as filters: a real click on "missing" shows the missing workers.'''

    WORKERS = {
        'alpha': {'missing_timeout': 3600},
        'charlie': {'start': False, 'missing_timeout': 0.5},
    }

    def click(self, x, y):
        env = dict(os.environ, DISPLAY=self.display)
        window = self.monitor_window_id()
        subprocess.run(['xdotool', 'mousemove', '--window', window, str(x), str(y), 'click', '1'],
                       env=env, check=True)

    def test_missing_card_filters(self):
        self.wait_row('charlie', lambda r: r['state'] == 'missing')
        wait_for(lambda: self.dump()['window']['n-rows'] == '2', message='two rows')
        # the "missing" card: the second of four across the list's width
        self.click(343, 95)
        dump = wait_for(lambda: (lambda d: d if d['window']['n-rows'] == '1' else None)(self.dump()),
                        message='only the missing worker')
        self.assertEqual(self.rows(dump)[0]['name'], 'charlie')
        self.assertEqual(dump['window']['filter'], '3')
        self.screenshot('missing-only')
        self.click(343, 95)
        wait_for(lambda: self.dump()['window']['n-rows'] == '2', message='all workers again')


if __name__ == '__main__':
    main()
