#!/usr/bin/python3
# buildfleetctl against the built daemon on a private bus with real
# workers: every command's output (human and --json) and exit code, a
# polkit denial for a non-root caller, `run` as a remote executor (exit
# code, stdout and stderr intact from the first millisecond, Ctrl-C
# leaving no lease and no remote process), `events` following a kill -9,
# and the bash completion called the way bash calls it.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import json
import os
import pwd
import re
import signal
import subprocess
import time

import dbus
import dbusmock
from gi.repository import Gio, GLib

import bfharness
from bfharness import BUILD_IFACE, FLEET_PATH, WORKER_IFACE, worker_path

SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
CTL = os.path.join(bfharness.BUILD_ROOT, 'ctl', 'buildfleetctl')
COMPLETION = os.path.join(SOURCE_ROOT, 'ctl', 'buildfleetctl.bash-completion')

# The exit codes buildfleetctl(1) documents.
EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED, EXIT_UNAVAILABLE = 1, 2, 3, 4, 5
EXIT_RUN_FAILED, EXIT_INTERRUPTED = 125, 130


class CtlTestCase(bfharness.FleetTestCase):
    def ctl(self, *args, user=None, timeout=60, env=None):
        argv = [CTL] + list(args)
        if user is not None:
            argv = ['setpriv', '--reuid=%d' % user.pw_uid, '--regid=%d' % user.pw_gid,
                    '--clear-groups'] + argv
        e = dict(os.environ)
        e['LANG'] = 'C.UTF-8'
        e.update(env or {})
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, env=e, stdin=subprocess.DEVNULL)

    def ok(self, *args, **kw):
        p = self.ctl(*args, **kw)
        self.assertEqual(p.returncode, 0, 'buildfleetctl %s: %d\n%s%s' % (
            ' '.join(args), p.returncode, p.stdout, p.stderr))
        return p.stdout

    def ctl_json(self, *args):
        return json.loads(self.ok('--json', *args))

    def fleet(self, workers, extra='', labels=None):
        """workers: (name, builders, start?) tuples; returns the started ones."""
        text = self.daemon_section(FinishedBuildLifetime='30')
        for name, builders, _ in workers:
            text += '[Worker %s]\nPassword=pw-%s\nMaxBuilds=2\nBuilders=%s\nMissingTimeout=1\n' % (
                name, name, builders)
            if labels and name in labels:
                text += 'Labels=%s\n' % labels[name]
        self.write_config(text + extra)
        self.start_daemon()
        procs = {}
        for name, _, start in workers:
            if start:
                procs[name] = self.add_worker(name, 'pw-' + name).start()
        for name in procs:
            self.wait_connected(name)
        return procs

    def builds(self):
        return [p for p in self.managed_objects() if p.startswith(FLEET_PATH + '/builds/')
                and '/commands/' not in p]


class ReadTest(CtlTestCase):
    """status, list, show: human and --json, names as users write them."""

    def setUp(self):
        super().setUp()
        self.fleet([('linux-01', 'linux;docs', True), ('linux-02', 'linux', True),
                    ('gone', 'linux', False)], labels={'linux-01': 'gpu;big'})
        self.wait_until(lambda: self.worker_prop('gone', 'Missing'), message='gone missing')

    def test_status(self):
        out = self.ok('status')
        self.assertIn('3 configured, 2 connected, 1 missing, 0 paused', out)
        self.assertIn('0 running, 0 pending', out)
        self.assertRegex(out, r'Missing: gone \(disconnected .* ago\)')
        self.assertNotIn('\033[', out, 'colour only on a terminal')
        st = self.ctl_json('status')
        self.assertEqual((st['Workers'], st['WorkersConnected'], st['WorkersMissing'], st['Missing']),
                         (3, 2, 1, ['gone']))
        self.assertEqual(st['Listen'], self.manager_prop('Listen'))
        self.assertEqual(st['ListenPB'], self.manager_prop('ListenPB'))
        self.assertEqual(st['WorkersFlapping'], 0)

    def test_list_and_filters(self):
        out = self.ok('list')
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['NAME', 'STATE', 'BUILDS', 'PROTOCOL', 'SINCE', 'BUILDERS'])
        row = {l.split()[0]: l.split() for l in lines[1:] if l.strip() and not l.endswith('listed.')}
        self.assertEqual(sorted(row), ['gone', 'linux-01', 'linux-02'])
        self.assertEqual(row['linux-01'][1], 'connected,idle')
        self.assertEqual(row['linux-01'][-1], 'linux,docs')
        self.assertEqual(row['gone'][1], 'disconnected,missing')
        self.assertIn('3 workers listed.', out)

        workers = self.ctl_json('list')
        self.assertEqual([w['Name'] for w in workers], ['gone', 'linux-01', 'linux-02'])
        w1 = workers[1]
        self.assertEqual((w1['Connected'], w1['Builders'], w1['MaxBuilds'], w1['States']),
                         (True, ['linux', 'docs'], 2, ['connected', 'idle']))
        self.assertEqual(w1['Path'], worker_path('linux-01'))
        self.assertIsInstance(w1['ConnectedSinceUSec'], int)

        self.assertEqual([w['Name'] for w in self.ctl_json('list', '--state=missing')], ['gone'])
        self.assertEqual([w['Name'] for w in self.ctl_json('list', '--builder=docs')], ['linux-01'])
        self.assertEqual([w['Name'] for w in self.ctl_json('list', '--label=gpu', '--label=big')], ['linux-01'])
        self.assertEqual([w['Name'] for w in self.ctl_json('list', '--label=gpu', '--label=tiny')], [])
        self.assertIn('gpu', workers[1]['Labels'])
        self.assertEqual(self.ctl_json('list', '--state=paused'), [])
        p = self.ctl('list', '--state=sleepy')
        self.assertEqual(p.returncode, EXIT_USAGE)
        self.assertIn('sleepy', p.stderr)
        out = self.ok('list', '--no-legend', '--state=missing')
        self.assertEqual(out.split()[0], 'gone')

    def test_show(self):
        out = self.ok('show', 'linux-01')
        self.assertTrue(out.startswith('linux-01 (connected, idle)'), out)
        fields = dict(l.strip().split(': ', 1) for l in out.splitlines()[1:])
        self.assertEqual(fields['Connected'], 'yes')
        self.assertEqual(fields['Builders'], 'linux, docs')
        self.assertEqual(fields['Path'], worker_path('linux-01'))
        # Times are for humans: a date and how long ago; durations in units.
        self.assertRegex(fields['ConnectedSinceUSec'], r'^\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d .* \(.* ago\)$')
        self.assertEqual(fields['MissingTimeoutUSec'], '1s')
        self.assertEqual(fields['DisconnectedSinceUSec'], 'never')
        # Every property of the interface is there.
        props = self.props(worker_path('linux-01'), WORKER_IFACE)
        self.assertEqual(sorted(set(props) - set(fields)), [])

        w = self.ctl_json('show', 'linux-01')
        self.assertEqual(w['Name'], 'linux-01')
        self.assertEqual(w['ConnectedSinceUSec'], props['ConnectedSinceUSec'])
        self.assertEqual(w['Info'], json.loads(json.dumps(props['Info'])))
        self.assertFalse(w['Latent'])

    def test_errors_and_exit_codes(self):
        p = self.ctl('show', 'nosuch')
        self.assertEqual(p.returncode, EXIT_NOT_FOUND)
        self.assertIn('No worker named “nosuch” is configured', p.stderr)
        self.assertEqual(p.stdout, '')
        for args in (['frobnicate'], [], ['show'], ['show', 'a', 'b'], ['status', '--bogus'],
                     ['pause', 'linux-01', '--', 'x']):
            p = self.ctl(*args)
            self.assertEqual(p.returncode, EXIT_USAGE, '%s: %s' % (args, p.stderr))
            self.assertTrue(p.stderr.startswith('buildfleetctl: '), p.stderr)
        p = self.ctl('substantiate', 'linux-01')
        self.assertEqual(p.returncode, EXIT_USAGE)
        self.assertIn('not a latent worker', p.stderr)
        p = self.ctl('shutdown', 'gone')
        self.assertEqual(p.returncode, EXIT_FAILED)
        self.assertIn('gone is not connected', p.stderr)
        # No daemon on the bus.
        self.stop_daemon()
        p = self.ctl('status')
        self.assertEqual(p.returncode, EXIT_UNAVAILABLE)
        self.assertIn('buildfleetd is not running on the system bus', p.stderr)
        p = self.ctl('--host=unix:path=/nonexistent/bus', 'list')
        self.assertEqual(p.returncode, EXIT_UNAVAILABLE)
        self.assertIn('Cannot connect', p.stderr)


class AdminTest(CtlTestCase):
    """The commands that change something, as root, and who did it."""

    def setUp(self):
        super().setUp()
        self.procs = self.fleet([('w1', 'b', True), ('w2', 'b', True)])

    def test_pause_records_who_and_since_and_persists(self):
        before = time.time()
        self.assertEqual(self.ok('pause', 'w1', 'disk full'), '')
        self.assertTrue(self.worker_prop('w1', 'Paused'))
        self.assertEqual(self.worker_prop('w1', 'PauseReason'), 'disk full')
        self.assertEqual(self.worker_prop('w1', 'PausedBy'), 'root')
        since = self.worker_prop('w1', 'PausedSinceUSec')
        self.assertLessEqual(before * 1e6 - 1e6, since)
        self.assertLessEqual(since, time.time() * 1e6 + 1e6)
        self.assertRegex(self.daemon_log(), r'Worker w1 paused by root \(uid 0, :[0-9.]+\): disk full')
        self.assertRegex(self.daemon_log(),
                         r'org\.buildfleet\.Fleet1\.Worker\.Pause on %s by root \(uid 0, :[0-9.]+\), allowed as root'
                         % re.escape(worker_path('w1')))

        out = self.ok('status')
        self.assertIn('Paused: w1 (by root: disk full)', out)
        w = self.ctl_json('show', 'w1')
        self.assertEqual((w['PausedBy'], w['PausedSinceUSec'], w['States']),
                         ('root', since, ['connected', 'idle', 'paused']))

        # Persisted like the reason.
        self.stop_daemon()
        self.start_daemon()
        self.assertEqual(self.worker_prop('w1', 'PausedBy'), 'root')
        self.assertEqual(self.worker_prop('w1', 'PausedSinceUSec'), since)

        self.assertEqual(self.ok('unpause', 'w1'), '')
        self.assertFalse(self.worker_prop('w1', 'Paused'))
        self.assertEqual(self.worker_prop('w1', 'PausedBy'), '')
        self.assertEqual(self.worker_prop('w1', 'PausedSinceUSec'), 0)
        self.assertFalse(self.worker_prop('w2', 'Paused'))

    def test_graceful_shutdown_disconnect_reload(self):
        self.ok('graceful', '--cancel', 'w2')
        self.assertFalse(self.worker_prop('w2', 'Graceful'))
        self.ok('disconnect', 'w1')
        self.wait_signal('Detached', worker_path('w1'))
        self.wait_connected('w1', timeout=30)      # the worker comes back
        self.ok('shutdown', 'w2')
        self.wait_until(lambda: not self.procs['w2'].running(), timeout=20, message='w2 exits')
        self.ok('graceful', 'w1')
        self.assertTrue(self.worker_prop('w1', 'Graceful'))
        self.ok('reload')
        # A broken configuration: reload fails, naming what is wrong.
        with open(self.config_path, 'a') as f:
            f.write('[Worker bad]\nPassword=p\nMaxBuilds=lots\n')
        p = self.ctl('reload')
        self.assertEqual(p.returncode, EXIT_USAGE)
        self.assertIn('MaxBuilds', p.stderr)


class PolkitTest(CtlTestCase):
    """A non-root caller without polkit's yes: a clear message, exit 4."""

    @classmethod
    def setUpClass(cls):
        # The harness's bus, also open to other users (nobody connects).
        services = cls.get_services_dir(True)
        conf = os.path.join(os.path.dirname(services), 'bf_ctl_system_bus.conf')
        with open(conf, 'w') as f:
            f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
                    ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                    '<busconfig>\n  <type>system</type>\n  <keep_umask/>\n'
                    '  <listen>unix:tmpdir=/tmp</listen>\n  <servicedir>%s</servicedir>\n'
                    '  <auth>EXTERNAL</auth>\n'
                    '  <policy context="default">\n    <allow user="*"/>\n'
                    '    <allow send_destination="*" eavesdrop="true"/>\n'
                    '    <allow eavesdrop="true"/>\n    <allow own="*"/>\n  </policy>\n%s</busconfig>\n' %
                    (services, ''.join('  <limit name="%s">%d</limit>\n' % kv
                                       for kv in bfharness.SYSTEM_BUS_LIMITS.items())))
        pid, address = cls.start_dbus(conf=conf)
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
        cls.system_bus_pid = pid
        cls.bus = Gio.DBusConnection.new_for_address_sync(
            address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        cls.polkitd, cls.polkit = cls.spawn_server_template('polkitd', {}, stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        cls.polkitd.terminate()
        cls.polkitd.wait(10)
        super().tearDownClass()

    def test_denied_and_allowed(self):
        self.fleet([('w1', 'b', True)])
        nobody = pwd.getpwnam('nobody')
        self.polkit.SetAllowed(dbus.Array([], signature='s'))
        # Reading is open to everyone.
        self.assertEqual(self.ctl_json('list')[0]['Name'], 'w1')
        p = self.ctl('--json', 'list', user=nobody)
        self.assertEqual(p.returncode, 0, p.stderr)
        for args in (['pause', 'w1', 'mine'], ['reload'], ['run', 'b', '--', 'true']):
            p = self.ctl(*args, user=nobody)
            expected = EXIT_RUN_FAILED if args[0] == 'run' else EXIT_DENIED
            self.assertEqual(p.returncode, expected, '%s: %s' % (args, p.stderr))
            self.assertIn('Not authorised', p.stderr)
            self.assertIn('org.buildfleet.Fleet1.', p.stderr)     # the polkit action
            self.assertIn('without --no-ask-password', p.stderr)  # what to do about it
        self.assertFalse(self.worker_prop('w1', 'Paused'))
        self.assertRegex(self.daemon_log(), r'Denied org\.buildfleet\.Fleet1\.Worker\.Pause on %s to nobody '
                         r'\(uid %d, :[0-9.]+\)' % (re.escape(worker_path('w1')), nobody.pw_uid))

        self.polkit.SetAllowed(dbus.Array(['org.buildfleet.Fleet1.manage-workers'], signature='s'))
        self.ok('pause', 'w1', 'mine', user=nobody)
        self.assertEqual(self.worker_prop('w1', 'PausedBy'), 'nobody')
        self.assertRegex(self.daemon_log(), r'Worker w1 paused by nobody \(uid %d, ' % nobody.pw_uid)


class RunTest(CtlTestCase):
    """The fleet as a remote executor."""

    def setUp(self):
        super().setUp()
        self.procs = self.fleet([('w1', 'b', True)], labels={'w1': 'fast'})

    def test_exit_code_and_streams(self):
        p = self.ctl('run', 'b', '--', 'sh', '-c', 'echo out; echo err >&2; echo "$FOO"; pwd; exit 7',
                     '--env=FOO=bar baz', '--workdir', os.path.join(self.workdir, 'wd'))
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertEqual(p.stderr, 'err\n')
        # After "--" everything is the command's ($0 and $1 here), not an option.
        self.assertEqual(p.stdout, 'out\n\n%s\n' % os.path.join(self.procs['w1'].basedir, 'b', 'build'))
        p = self.ctl('run', 'b', '--env=FOO=bar baz', '--workdir', os.path.join(self.workdir, 'wd'),
                     '--', 'sh', '-c', 'echo "$FOO"; pwd; exit 0')
        self.assertEqual((p.returncode, p.stdout), (0, 'bar baz\n%s\n' % os.path.join(self.workdir, 'wd')))
        # The lease is released: no build is left on the worker.
        self.wait_until(lambda: self.worker_prop('w1', 'ActiveBuilds') == 0, message='builds released')
        for b in self.builds():
            self.assertEqual(self.prop(b, BUILD_IFACE, 'State'), 'finished')

    def test_first_millisecond_output_and_many_lines(self):
        # Output written the moment the command starts, and a lot of it.
        # (Buildbot's workers send output in lines: a last line without its
        # newline arrives with one, so every line here has one.)
        script = 'printf "first\\n"; printf "e1\\n" >&2; seq 1 20000; printf "last\\n" >&2; exit 3'
        for _ in range(3):
            p = self.ctl('run', 'b', '--worker=w1', '--', 'sh', '-c', script)
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertEqual(p.stdout, 'first\n' + ''.join('%d\n' % i for i in range(1, 20001)))
            self.assertEqual(p.stderr, 'e1\nlast\n')

    def test_errors(self):
        p = self.ctl('run', 'nosuchbuilder', '--', 'true')
        self.assertEqual(p.returncode, EXIT_RUN_FAILED)
        self.assertIn('No configured worker serves builder “nosuchbuilder”', p.stderr)
        p = self.ctl('run', 'b', '--label=fast', '--label=slow', '--', 'true')
        self.assertEqual(p.returncode, EXIT_RUN_FAILED)
        self.assertIn('has the labels fast, slow', p.stderr)
        p = self.ctl('run', 'b', '--label=fast', '--', 'sh', '-c', 'exit 4')
        self.assertEqual(p.returncode, 4, p.stderr)
        p = self.ctl('run', 'b')
        self.assertEqual(p.returncode, EXIT_USAGE)
        self.assertIn('after “--”', p.stderr)
        p = self.ctl('run', 'b', '--env=NOEQUALS', '--', 'true')
        self.assertEqual(p.returncode, EXIT_RUN_FAILED)
        p = self.ctl('run', 'b', '--', '/nonexistent/program')
        self.assertNotEqual(p.returncode, 0)

    def test_ctrl_c_leaves_no_lease_and_no_process(self):
        marker = 'sleep 1000.%d' % os.getpid()     # what the remote process is called
        proc = subprocess.Popen([CTL, 'run', 'b', '--', 'sh', '-c', 'echo started; exec %s' % marker],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(proc.stdout.readline(), 'started\n')
        self.assertEqual(self.worker_prop('w1', 'ActiveBuilds'), 1)
        self.assertTrue(self.remote_processes(marker))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, EXIT_INTERRUPTED, err)
        self.assertIn('Interrupted', err)
        # Released before buildfleetctl exited: nothing waits for the owner to vanish.
        self.assertEqual(self.worker_prop('w1', 'ActiveBuilds'), 0)
        finished = self.signals_named('Finished')
        self.wait_until(lambda: self.signals_named('Finished'), message='Finished')
        self.assertEqual(self.signals_named('Finished')[0][3], ('released',))
        self.wait_until(lambda: not self.remote_processes(marker), timeout=20,
                        message='the remote sleep ends')
        del finished

    def test_builds_running_and_pending(self):
        running = subprocess.Popen([CTL, 'run', 'b', '--', 'sh', '-c', 'echo started; exec sleep 600'],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.assertEqual(running.stdout.readline(), 'started\n')
        self.ok('pause', 'w1', 'hold the next one')
        pending = subprocess.Popen([CTL, '-v', 'run', 'b', '--', 'true'],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.assertIn('Waiting for a worker of b', pending.stderr.readline())
        try:
            out = self.ok('builds')
            lines = out.splitlines()
            self.assertEqual(lines[0].split(), ['BUILD', 'BUILDER', 'STATE', 'WORKER', 'OWNER', 'SINCE',
                                                'WAITING', 'FOR'])
            rows = [l.split() for l in lines[1:] if l.strip() and 'listed' not in l]
            self.assertEqual([(r[1], r[2], r[3]) for r in rows], [('b', 'running', 'w1'), ('b', 'pending', '-')])
            self.assertIn('2 builds listed.', out)
            builds = self.ctl_json('builds')
            self.assertEqual([(b['State'], b['WorkerName'], b['Worker']) for b in builds],
                             [('running', 'w1', worker_path('w1')), ('pending', '', '/')])
            self.assertEqual(builds[0]['Builder'], 'b')
            self.assertEqual(builds[0]['Path'], FLEET_PATH + '/builds/' + builds[0]['Id'])
            self.assertEqual(self.ctl_json('status')['BuildsRunning'], 1)
            self.assertEqual(self.ctl_json('status')['BuildsPending'], 1)
        finally:
            for p in (running, pending):
                p.send_signal(signal.SIGINT)
                p.communicate(timeout=30)
        self.assertEqual((running.returncode, pending.returncode), (EXIT_INTERRUPTED, EXIT_INTERRUPTED))
        self.assertEqual(self.ctl_json('builds'), [])
        self.assertEqual(sorted(b['State'] for b in self.ctl_json('builds', '--all')), ['finished', 'finished'])

    def test_daemon_gone(self):
        marker = 'sleep 600.%d' % os.getpid()
        proc = subprocess.Popen([CTL, 'run', 'b', '--', 'sh', '-c', 'echo started; exec %s' % marker],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(proc.stdout.readline(), 'started\n')
            self.stop_daemon(signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            self.assertEqual(proc.returncode, EXIT_RUN_FAILED)
            self.assertIn('buildfleetd left the bus', err)
        finally:
            # The worker outlives the daemon; so may its command.
            for pid in self.remote_processes(marker):
                os.kill(int(pid), signal.SIGKILL)

    @staticmethod
    def remote_processes(marker):
        found = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
            except OSError:
                continue
            if marker in cmd and CTL not in cmd:
                found.append(pid)
        return found


class EventsTest(CtlTestCase):
    """events: a kill -9 shows as detached, then missing."""

    def test_kill9_detached_then_missing(self):
        procs = self.fleet([('w1', 'b', True)])
        out_path = os.path.join(self.workdir, 'events.jsonl')
        human_path = os.path.join(self.workdir, 'events.txt')
        with open(out_path, 'w') as out, open(human_path, 'w') as human:
            ev = subprocess.Popen([CTL, '--json', 'events'], stdout=out, stderr=subprocess.PIPE)
            ev2 = subprocess.Popen([CTL, 'events'], stdout=human, stderr=subprocess.DEVNULL)
        try:
            # Subscribed once the pause shows.
            def seen(event):
                with open(out_path) as f:
                    return [json.loads(l) for l in f if l.strip() and json.loads(l)['Event'] == event]
            self.wait_until(lambda: self.ok('pause', 'w1', 'probe') == '' and seen('paused'),
                            timeout=10, message='events subscribed')
            self.ok('unpause', 'w1')
            self.ok('run', 'b', '--', 'true')
            self.wait_until(lambda: seen('build-finished'), message='build events')
            self.assertEqual(seen('build-requested')[0]['Builder'], 'b')
            self.assertEqual(seen('build-started')[0]['WorkerName'], 'w1')
            self.assertEqual(seen('build-finished')[0]['Result'], 'released')
            procs['w1'].kill(signal.SIGKILL)
            self.wait_until(lambda: seen('missing'), timeout=15, message='missing event')
            with open(out_path) as f:
                events = [json.loads(l) for l in f if l.strip()]
            names = [(e['Event'], e.get('Worker')) for e in events]
            self.assertLess(names.index(('detached', 'w1')), names.index(('missing', 'w1')))
            paused = seen('paused')[0]
            self.assertEqual((paused['PausedBy'], paused['PauseReason']), ('root', 'probe'))
            detached = [e for e in events if e['Event'] == 'detached'][0]
            self.assertTrue(detached['Reason'])
            missing = seen('missing')[0]
            self.assertEqual(int(missing['DisconnectedSinceUSec']),
                             self.worker_prop('w1', 'DisconnectedSinceUSec'))
            self.assertGreaterEqual(missing['TimeUSec'], detached['TimeUSec'])
        finally:
            for p in (ev, ev2):
                p.send_signal(signal.SIGINT)
                p.wait(10)
        self.assertEqual(ev.returncode, 0)
        with open(human_path) as f:
            text = f.read()
        self.assertRegex(text, r'\d\d:\d\d:\d\d\.\d{3} w1: detached: ')
        self.assertRegex(text, r'w1: missing \(disconnected since ')
        self.assertLess(text.index('w1: detached'), text.index('w1: missing'))


class LatentTest(CtlTestCase):
    """substantiate and insubstantiate a latent worker (Latent=local)."""

    def test_substantiate_insubstantiate_and_their_events(self):
        self.write_config(self.daemon_section() +
                          '[Worker local-1]\nPassword=generate\nLatent=local\nBuilders=b\n'
                          'BuildWaitTimeout=-1\nSubstantiationTimeout=60\n')
        self.start_daemon()
        events_path = os.path.join(self.workdir, 'events.jsonl')
        with open(events_path, 'w') as out:
            ev = subprocess.Popen([CTL, '--json', 'events'], stdout=out, stderr=subprocess.DEVNULL)

        def seen(event):
            with open(events_path) as f:
                return [json.loads(l) for l in f if l.strip() and json.loads(l)['Event'] == event]
        try:
            self.wait_until(lambda: self.ok('pause', 'local-1', 'probe') == '' and seen('paused'),
                            timeout=10, message='events subscribed')
            self.ok('unpause', 'local-1')
            self.assertEqual([w['States'] for w in self.ctl_json('list', '--state=latent')],
                             [['disconnected', 'latent']])
            # Returns once the instance is connected.
            self.assertEqual(self.ok('substantiate', 'local-1'), '')
            self.assertTrue(self.worker_prop('local-1', 'Connected'))
            w = self.ctl_json('show', 'local-1')
            self.assertEqual((w['Latent'], w['State'], w['Driver']), (True, 'substantiated', 'local'))
            self.assertIn('BuildWaitTimeoutUSec', self.ok('show', 'local-1'))
            self.assertRegex(self.ok('show', 'local-1'), r'BuildWaitTimeoutUSec: never')
            self.ok('insubstantiate', '--fast', 'local-1')
            self.wait_until(lambda: not self.worker_prop('local-1', 'Connected'), timeout=30,
                            message='instance stopped')
            self.wait_until(lambda: seen('insubstantiated'), timeout=30, message='insubstantiated event')
            self.assertTrue(seen('substantiated'))
            self.assertEqual([e['Worker'] for e in seen('attached')], ['local-1'])
        finally:
            ev.send_signal(signal.SIGTERM)
            ev.wait(10)
        self.assertEqual(ev.returncode, 0)


class CompletionTest(CtlTestCase):
    """The bash completion, called the way bash calls it."""

    def complete(self, line):
        words = line.split(' ')
        script = ('source %s\nCOMP_LINE=%s\nCOMP_POINT=%d\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n'
                  '_buildfleetctl\nprintf "%%s\\n" "${COMPREPLY[@]}"\n' % (
                      COMPLETION, shquote(line), len(line), ' '.join(shquote(w) for w in words),
                      len(words) - 1))
        env = dict(os.environ)
        env['PATH'] = os.path.dirname(CTL) + ':' + env['PATH']
        p = subprocess.run(['bash', '--norc', '--noprofile', '-c', script], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return sorted(l for l in p.stdout.splitlines() if l)

    def test_commands_options_workers_builders(self):
        self.fleet([('linux-01', 'linux;docs', False), ('linux-02', 'linux', False),
                    ('mac-01', 'mac', False), ('linux-1', 'linux', False), ('lin', 'linux', False)],
                   extra='[Worker cloud-01]\nPassword=generate\nLatent=local\nBuilders=linux\n')
        self.assertEqual(self.complete('buildfleetctl un'), ['unpause'])
        self.assertIn('substantiate', self.complete('buildfleetctl '))
        self.assertEqual(self.complete('buildfleetctl pause linux'), ['linux-01', 'linux-02', 'linux-1'])
        self.assertEqual(self.complete('buildfleetctl pause linux-0'), ['linux-01', 'linux-02'])
        self.assertEqual(self.complete('buildfleetctl pause lin'), ['lin', 'linux-01', 'linux-02', 'linux-1'])
        self.assertEqual(self.complete('buildfleetctl show '),
                         ['cloud-01', 'lin', 'linux-01', 'linux-02', 'linux-1', 'mac-01'])
        self.assertEqual(self.complete('buildfleetctl show x'), [])
        self.assertEqual(self.complete('buildfleetctl substantiate '), ['cloud-01'])
        self.assertEqual(self.complete('buildfleetctl run '), ['docs', 'linux', 'mac'])
        self.assertEqual(self.complete('buildfleetctl run linux --worker=m'), ['mac-01'])
        self.assertEqual(self.complete('buildfleetctl list --state=mi'), ['missing'])
        self.assertIn('--builder=', self.complete('buildfleetctl list --'))
        self.assertEqual(self.complete('buildfleetctl --no-p'), ['--no-pager'])
        # Without a daemon: commands still complete, workers quietly do not.
        self.stop_daemon()
        self.assertEqual(self.complete('buildfleetctl show '), [])
        self.assertEqual(self.complete('buildfleetctl stat'), ['status'])


def shquote(s):
    return "'" + s.replace("'", "'\\''") + "'"


if __name__ == '__main__':
    bfharness.main()
