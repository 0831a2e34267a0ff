# Harness for the desktop monitor's tests.
#
# Each test gets: an X server (Xvfb), a private system bus with the BUILT
# buildfleetd on it, real buildbot-worker processes attached to the daemon, a
# private session bus with python-dbusmock's notification daemon, and the
# BUILT buildfleet-monitor in a real window.  The tests read what the window
# shows through the monitor's test-only "app.test-dump" action (registered
# when BUILDFLEET_MONITOR_TEST_DUMP is set), look at the notification server's
# recorded Notify calls, check the daemon's properties over D-Bus, drive the
# window with real key presses (xdotool), and save screenshots.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import dbus
import dbusmock

BUILDFLEETD = os.environ.get('BUILDFLEETD', '')
MONITOR = os.environ.get('BUILDFLEET_MONITOR', '')
SCREENSHOTS = os.environ.get('BUILDFLEET_SCREENSHOTS', os.path.join(tempfile.gettempdir(), 'buildfleet-monitor-screenshots'))
BUILDBOT_WORKER = shutil.which('buildbot-worker') or '/usr/bin/buildbot-worker'
TWISTD = shutil.which('twistd3') or shutil.which('twistd') or '/usr/bin/twistd3'

BUS_NAME = 'org.buildfleet.Fleet1'
MANAGER_PATH = '/org/buildfleet/Fleet1'
WORKER_IFACE = 'org.buildfleet.Fleet1.Worker'
LATENT_IFACE = 'org.buildfleet.Fleet1.LatentWorker'
APP_ID = 'org.buildfleet.Monitor'
APP_PATH = '/org/buildfleet/Monitor'
NOTIFY_IFACE = 'org.freedesktop.Notifications'


def wait_for(condition, timeout=20.0, interval=0.1, message='condition'):
    '''Polls condition() until it returns something true; returns that.'''
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (dbus.exceptions.DBusException, OSError, KeyError, ValueError) as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s waiting for {message}'
                         + (f' (last error: {last_error})' if last_error else ''))


def stays(condition, seconds, interval=0.2):
    '''A negative check: condition() holds now and for @seconds; False as
    soon as it does not.  Use as self.assertTrue(stays(...), why).'''
    deadline = time.monotonic() + seconds
    while True:
        if not condition():
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(interval)


def keyfile_unescape(value):
    '''A GKeyFile string value as written (\\n, \\s, \\t, \\r, \\\\ escapes).'''
    return re.sub(r'\\(.)', lambda m: {'n': '\n', 's': ' ', 't': '\t', 'r': '\r'}.get(m.group(1), m.group(1)),
                  value)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_xvfb():
    '''Starts Xvfb on a free display; returns (process, ":N").'''
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(['Xvfb', '-displayfd', str(write_fd), '-screen', '0', '1400x860x24',
                             '-nolisten', 'tcp', '-noreset'],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        raise RuntimeError('Xvfb did not start')
    return xvfb, ':' + number


class Worker:
    '''A real buildbot-worker process (msgpack protocol) in its own directory.'''

    def __init__(self, tmpdir, name, password, port, admin, host):
        self.name = name
        self.basedir = os.path.join(tmpdir, 'worker-' + name)
        self.process = None
        subprocess.run([BUILDBOT_WORKER, 'create-worker', '--protocol=msgpack_experimental_v7',
                        '--keepalive=1', '--umask=0o22', self.basedir, f'127.0.0.1:{port}', name, password],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        with open(os.path.join(self.basedir, 'info', 'admin'), 'w') as f:
            f.write(admin + '\n')
        with open(os.path.join(self.basedir, 'info', 'host'), 'w') as f:
            f.write(host + '\n')

    def start(self):
        assert self.process is None
        self.process = subprocess.Popen([TWISTD, '--nodaemon', '--no_save', '--pidfile=',
                                         '--logfile', os.path.join(self.basedir, 'twistd.log'),
                                         '-y', os.path.join(self.basedir, 'buildbot.tac')],
                                        cwd=self.basedir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def kill(self):
        '''SIGKILL: the worker vanishes without saying goodbye.'''
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class MonitorTestCase(dbusmock.DBusTestCase):
    '''Base class: buses, X server, daemon, workers and monitor per test.'''

    # name -> dict(password, missing_timeout, admin, host, start, latent...)
    WORKERS = {}
    EXTRA_CONFIG = ''
    MONITOR_ARGS = []
    START_MONITOR = True

    @classmethod
    def setUpClass(cls):
        if not BUILDFLEETD or not os.access(BUILDFLEETD, os.X_OK):
            raise RuntimeError(f'the built daemon is required: BUILDFLEETD={BUILDFLEETD!r}')
        if not MONITOR or not os.access(MONITOR, os.X_OK):
            raise RuntimeError(f'the built monitor is required: BUILDFLEET_MONITOR={MONITOR!r}')
        cls.start_system_bus()
        cls.start_session_bus()
        cls.system_con = cls.get_dbus(system_bus=True)
        cls.session_con = cls.get_dbus(system_bus=False)
        cls.xvfb, cls.display = start_xvfb()
        os.makedirs(SCREENSHOTS, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.xvfb.terminate()
        cls.xvfb.wait()
        bus_pids = [getattr(cls, 'system_bus_pid', None), getattr(cls, 'session_bus_pid', None)]
        super().tearDownClass()
        # dbusmock does not always stop the system bus it started
        for pid in bus_pids:
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp(prefix='bf-monitor-test-')
        self.port = free_port()
        self.daemon = None
        self.monitor = None
        self.workers = {}

        # The notification server records every Notify call; it also
        # announces "actions" so that the default action is used.
        self.notifyd, self.notifyd_obj = self.spawn_server_template(
            'notification_daemon', {'capabilities': 'body body-markup actions persistence icon-static'},
            stdout=subprocess.DEVNULL)

        for name, spec in self.WORKERS.items():
            self.workers[name] = Worker(self.tmpdir, name, spec.get('password', 'pw-' + name), self.port,
                                        spec.get('admin', f'Admin of {name} <{name}@example.com>'),
                                        spec.get('host', f'{name}.example.com'))
        self.write_config()
        self.start_daemon()
        for name, spec in self.WORKERS.items():
            if spec.get('start', True):
                self.workers[name].start()
        for name, spec in self.WORKERS.items():
            if spec.get('start', True):
                self.wait_worker_property(name, 'Connected', True, timeout=30)

        if self.START_MONITOR:
            self.start_monitor(self.MONITOR_ARGS)

    def tearDown(self):
        self.stop_monitor()
        for worker in self.workers.values():
            worker.stop()
        self.stop_daemon()
        self.notifyd.terminate()
        self.notifyd.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- daemon ------------------------------------------------------------

    def write_config(self):
        lines = ['[Daemon]',
                 f'Listen=127.0.0.1:{self.port}',
                 f'StateDirectory={self.tmpdir}/state',
                 'KeepaliveInterval=1',
                 '']
        for name, spec in self.WORKERS.items():
            lines.append(f'[Worker {name}]')
            lines.append('Password=' + spec.get('password', 'pw-' + name))
            lines.append('Builders=' + spec.get('builders', 'linux'))
            lines.append('MaxBuilds=' + str(spec.get('max_builds', 2)))
            lines.append('MissingTimeout=' + str(spec.get('missing_timeout', 0.5)))
            for key, value in spec.get('extra', {}).items():
                lines.append(f'{key}={value}')
            lines.append('')
        lines.append(self.EXTRA_CONFIG)
        self.config = os.path.join(self.tmpdir, 'buildfleet.conf')
        with open(self.config, 'w') as f:
            f.write('\n'.join(lines))

    def start_daemon(self):
        self.daemon_log = open(os.path.join(self.tmpdir, 'buildfleetd.log'), 'w')
        env = dict(os.environ, G_DEBUG='fatal-criticals')
        self.daemon = subprocess.Popen([BUILDFLEETD, '--config', self.config, '--verbose'],
                                       env=env, stdout=self.daemon_log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.system_con.name_has_owner(BUS_NAME), message='buildfleetd on the bus')

    def stop_daemon(self):
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.daemon = None
            self.daemon_log.close()

    def worker_path(self, name):
        manager = self.system_con.get_object(BUS_NAME, MANAGER_PATH)
        return manager.GetWorker(name, dbus_interface='org.buildfleet.Fleet1.Manager')

    def worker_property(self, name, prop, iface=WORKER_IFACE):
        obj = self.system_con.get_object(BUS_NAME, self.worker_path(name))
        return obj.Get(iface, prop, dbus_interface=dbus.PROPERTIES_IFACE)

    def wait_worker_property(self, name, prop, value, timeout=20, iface=WORKER_IFACE):
        wait_for(lambda: self.worker_property(name, prop, iface) == value, timeout=timeout,
                 message=f'{name}.{prop} == {value!r}')

    # -- monitor -----------------------------------------------------------

    def monitor_env(self):
        return dict(os.environ,
                    DISPLAY=self.display,
                    GDK_BACKEND='x11',
                    # Xvfb has no GPU: GTK's GL renderer would run on llvmpipe and
                    # take the CPU from everything else; cairo is what it would cost
                    # the application itself.
                    GSK_RENDERER='cairo',
                    GTK_A11Y='none',
                    NO_AT_BRIDGE='1',
                    GSETTINGS_BACKEND='memory',
                    G_DEBUG='fatal-criticals',
                    BUILDFLEET_MONITOR_TEST_DUMP='1',
                    LANGUAGE='C', LC_ALL='C.UTF-8')

    def start_monitor(self, args=()):
        self.monitor_log_path = os.path.join(self.tmpdir, 'monitor.log')
        self.monitor_log = open(self.monitor_log_path, 'w')
        self.monitor = subprocess.Popen([MONITOR] + list(args), env=self.monitor_env(),
                                        stdout=self.monitor_log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.session_con.name_has_owner(APP_ID), message='the monitor on the session bus')

    def stop_monitor(self):
        if self.monitor is not None:
            if self.monitor.poll() is None:
                self.monitor.terminate()
                try:
                    self.monitor.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.monitor.kill()
                    self.monitor.wait()
            self.monitor_log.close()
            code = self.monitor.returncode
            self.monitor = None
            # A critical warning aborts the monitor (G_DEBUG=fatal-criticals).
            # SIGTERM quits the application cleanly; a critical warning would
            # have aborted it (G_DEBUG=fatal-criticals).
            self.assertEqual(code, 0, 'the monitor did not exit cleanly:\n' + self.monitor_output())

    def monitor_output(self):
        with open(self.monitor_log_path, errors='replace') as f:
            return f.read()

    def app_action(self, name, *params):
        app = self.session_con.get_object(APP_ID, APP_PATH)
        app.Activate(name, dbus.Array(params, signature='v'), dbus.Dictionary({}, signature='sv'),
                     dbus_interface='org.gtk.Actions')

    def dump(self):
        '''What the window shows, as a ConfigParser; the call returns after the file is written.'''
        path = os.path.join(self.tmpdir, 'dump.ini')
        self.app_action('test-dump', path)
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str
        parser.read(path, encoding='utf-8')
        return parser

    # What a row's cells show (read from the widgets) -> the key of rows().
    CELL_KEYS = {'Worker': 'name', 'State': 'status', 'State tooltip': 'status-tooltip',
                 'Builds': 'builds', 'Host': 'host', 'Admin': 'admin', 'Last Seen': 'last-seen'}

    def rows(self, dump=None):
        '''The list as the window shows it, top to bottom: for each row on
        screen, what its cells show, read from the cell widgets (name, status,
        status-tooltip, builds, host, admin, last-seen), beside the model's
        state, state-label, badges and pause-reason for that worker (shown
        only in tooltips and the details).  A worker in the model without a
        row on screen is not listed.'''
        dump = dump or self.dump()
        n = int(dump['window']['n-rows']) if dump.has_section('window') else 0
        model = {r['name']: r for r in (dict(dump[f'row {i}']) for i in range(min(n, 200)))}
        n_cells = int(dump['cells']['n-rows']) if dump.has_section('cells') else 0
        rows = []
        for i in range(n_cells):
            cells = {self.CELL_KEYS[k]: keyfile_unescape(v) for k, v in dump[f'cells {i}'].items()
                     if k in self.CELL_KEYS}
            row = {k: v for k, v in model.get(cells.get('name'), {}).items() if k not in self.CELL_KEYS.values()}
            row.update(cells)
            rows.append(row)
        return rows

    def row(self, name, dump=None):
        for row in self.rows(dump):
            if row['name'] == name:
                return row
        return None

    def wait_row(self, name, predicate, timeout=20, message=None):
        return wait_for(lambda: (lambda r: r if r is not None and predicate(r) else None)(self.row(name)),
                        timeout=timeout, message=message or f'row {name}')

    def screenshot(self, label, window=True):
        '''Saves the monitor's window (or the whole screen) into SCREENSHOTS.'''
        path = os.path.join(SCREENSHOTS, f'{self.id().split(".")[-1]}-{label}.png')
        time.sleep(0.5)  # let the last frame reach the X server
        target = self.monitor_window_id() if window else 'root'
        subprocess.run(['import', '-display', self.display, '-window', target, path], check=True)
        return path

    def monitor_window_id(self):
        def find():
            out = subprocess.run(['xdotool', 'search', '--onlyvisible', '--name', '^Build Fleet$'],
                                 env=dict(os.environ, DISPLAY=self.display),
                                 capture_output=True, text=True).stdout.split()
            return out[0] if out else None
        return wait_for(find, message='the monitor window on the X server')

    def focused_window(self):
        '''The X window with the keyboard focus (an id, as xdotool prints it).'''
        return subprocess.run(['xdotool', 'getwindowfocus'], env=dict(os.environ, DISPLAY=self.display),
                              capture_output=True, text=True).stdout.strip()

    def keys(self, *keys, text=None):
        '''Real key presses (XTEST), in order, into the monitor's window that
        has the focus (its main window unless a dialog of it holds the focus).
        With @text after keys, the keys open a dialog: the text is typed once
        the dialog has taken the focus, not after a pause; @text alone is
        typed into the window (type-to-search).  Key presses are queued in the
        X server in order, so nothing waits between keys for one window.'''
        env = dict(os.environ, DISPLAY=self.display)
        window = self.monitor_window_id()
        ours = subprocess.run(['xdotool', 'search', '--onlyvisible', '--pid', str(self.monitor.pid)],
                              env=env, capture_output=True, text=True).stdout.split()
        if self.focused_window() not in ours:
            subprocess.run(['xdotool', 'windowfocus', '--sync', window], env=env, stderr=subprocess.DEVNULL)
        before = self.focused_window()
        for key in keys:
            subprocess.run(['xdotool', 'key', '--clearmodifiers', key], env=env, check=True)
        if text is not None:
            if keys:
                wait_for(lambda: self.focused_window() not in ('', before), message='a dialog with the focus')
            subprocess.run(['xdotool', 'type', '--delay', '20', text], env=env, check=True)

    # -- notifications -----------------------------------------------------

    def notifications(self):
        '''Notify calls as dicts: app, replaces_id, summary, body, hints, actions.'''
        calls = self.notifyd_obj.GetMethodCalls('Notify', dbus_interface=dbusmock.MOCK_IFACE)
        result = []
        next_id = 1  # the mock numbers new notifications 1, 2, 3...
        for _timestamp, args in calls:
            if int(args[1]) != 0:
                notification_id = int(args[1])
            else:
                notification_id = next_id
                next_id += 1
            result.append({'id': notification_id,
                           'app': str(args[0]), 'replaces_id': int(args[1]), 'icon': str(args[2]),
                           'summary': str(args[3]), 'body': str(args[4]),
                           'actions': [str(a) for a in args[5]],
                           'hints': {str(k): v for k, v in args[6].items()}})
        return result

    def wait_notification(self, predicate, timeout=20, message='a notification'):
        return wait_for(lambda: next((n for n in self.notifications() if predicate(n)), None),
                        timeout=timeout, message=message)

    def invoke_default_action(self, notification_id):
        self.notifyd_obj.EmitSignal(NOTIFY_IFACE, 'ActionInvoked', 'us',
                                    [dbus.UInt32(notification_id), 'default'],
                                    dbus_interface=dbusmock.MOCK_IFACE)


def main():
    unittest.main(argv=sys.argv, testRunner=unittest.TextTestRunner(stream=sys.stdout, verbosity=2))
