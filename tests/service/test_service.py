#!/usr/bin/python3
# The installed system service, as a distribution would ship it
#
# `meson install` into a DESTDIR; the service user from the installed
# sysusers.d file; a real dbus-daemon configured as the system bus, with the
# distribution's default policy (system.conf) plus the installed
# org.buildfleet.Fleet1.conf; python-dbusmock's polkitd template as polkit;
# the installed buildfleetd running as the service user.  Clients run as
# `nobody` (fleetclient.py), since the bus and the daemon judge a caller by
# the credentials of its connection.
#
# Needs root, to switch users.  One meson test per class.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import configparser
import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET
from base64 import b64encode

import dbus
import dbusmock
from gi.repository import Gio, GLib

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_ROOT = os.environ['MESON_BUILD_ROOT']
MESON = os.environ.get('MESON', 'meson')
LIBEXECDIR = os.environ['BF_LIBEXECDIR']
DATADIR = os.environ['BF_DATADIR']
UNITDIR = os.environ['BF_UNITDIR']
SYSUSERSDIR = os.environ['BF_SYSUSERSDIR']
TMPFILESDIR = os.environ['BF_TMPFILESDIR']
DOCDIR = os.environ['BF_DOCDIR']
SERVICE_USER = os.environ.get('BF_SERVICE_USER', 'buildfleet')
PYTHON = '/usr/bin/python3'
DISTRO_BUS_CONFIG = '/usr/share/dbus-1/system.conf'

BUS_NAME = 'org.buildfleet.Fleet1'
FLEET_PATH = '/org/buildfleet/Fleet1'
WORKER_PATH = FLEET_PATH + '/workers/linux_2d01'
WORKER_IFACE = 'org.buildfleet.Fleet1.Worker'
MANAGER_IFACE = 'org.buildfleet.Fleet1.Manager'
ACCESS_DENIED = 'org.buildfleet.Fleet1.Error.AccessDenied'
MANAGE_WORKERS = 'org.buildfleet.Fleet1.manage-workers'
RUN_BUILDS = 'org.buildfleet.Fleet1.run-builds'
RELOAD = 'org.buildfleet.Fleet1.reload'
OUR_INTERFACES = [
    'org.buildfleet.Fleet1.Manager', 'org.buildfleet.Fleet1.Worker',
    'org.buildfleet.Fleet1.LatentWorker', 'org.buildfleet.Fleet1.Build',
    'org.buildfleet.Fleet1.Command', 'org.freedesktop.DBus.Properties',
    'org.freedesktop.DBus.Introspectable', 'org.freedesktop.DBus.Peer',
    'org.freedesktop.DBus.ObjectManager',
]


def install(destdir):
    """meson install into @destdir; concurrent test processes take turns."""
    lockdir = os.path.join(BUILD_ROOT, 'tests', 'service')
    os.makedirs(lockdir, exist_ok=True)
    with open(os.path.join(lockdir, 'install.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.run([MESON, 'install', '-C', BUILD_ROOT, '--destdir', destdir, '--quiet'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise RuntimeError('meson install failed:\n' + p.stdout.decode(errors='replace'))


def parse_ini(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(path)
    return parser


class InstalledTestCase(unittest.TestCase):
    """Installs the project into a fresh DESTDIR once per class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = tempfile.mkdtemp(prefix='bf-service-')
        # The service user and nobody must reach what lies below.
        os.chmod(cls.workdir, 0o755)
        cls.destdir = os.path.join(cls.workdir, 'destdir')
        install(cls.destdir)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get('BF_KEEP_TMP'):
            print('kept', cls.workdir, file=sys.stderr)
        else:
            shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def path(cls, path):
        """@path as installed below the DESTDIR."""
        return cls.destdir + path


class InstallTest(InstalledTestCase):
    """What `meson install` puts where, and that it fits together."""

    def test_layout(self):
        for path in [LIBEXECDIR + '/buildfleetd',
                     DATADIR + '/dbus-1/system.d/org.buildfleet.Fleet1.conf',
                     DATADIR + '/dbus-1/system-services/org.buildfleet.Fleet1.service',
                     DATADIR + '/dbus-1/interfaces/org.buildfleet.Fleet1.Manager.xml',
                     DATADIR + '/polkit-1/actions/org.buildfleet.Fleet1.policy',
                     UNITDIR + '/buildfleet.service',
                     SYSUSERSDIR + '/buildfleet.conf',
                     TMPFILESDIR + '/buildfleet.conf',
                     DOCDIR + '/buildfleet.conf.example',
                     DOCDIR + '/README.md']:
            self.assertTrue(os.path.isfile(self.path(path)), path + ' is not installed')
        self.assertTrue(os.access(self.path(LIBEXECDIR + '/buildfleetd'), os.X_OK))

    def test_unit(self):
        unit = parse_ini(self.path(UNITDIR + '/buildfleet.service'))
        service = unit['Service']
        self.assertEqual(service['Type'], 'notify')
        self.assertEqual(service['BusName'], BUS_NAME)
        self.assertEqual(service['ExecStart'], LIBEXECDIR + '/buildfleetd')
        self.assertEqual(service['ExecReload'], '/bin/kill -HUP $MAINPID')
        self.assertEqual(service['User'], SERVICE_USER)
        self.assertEqual(service['StateDirectory'], 'buildfleet')
        self.assertEqual(service['ConfigurationDirectory'], 'buildfleet')
        self.assertIn('WatchdogSec', service)
        # The daemon's own bound on stopping latent instances is 20 s.
        self.assertGreater(int(service['TimeoutStopSec'].rstrip('s')), 20)
        p = subprocess.run(['systemd-analyze', 'security', '--offline=yes', '--threshold=25',
                            self.path(UNITDIR + '/buildfleet.service')],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(p.stdout.strip().splitlines()[-1])
        self.assertEqual(p.returncode, 0, p.stdout)

    def test_activation_file(self):
        service = parse_ini(self.path(DATADIR + '/dbus-1/system-services/org.buildfleet.Fleet1.service'))
        entry = service['D-BUS Service']
        self.assertEqual(entry['Name'], BUS_NAME)
        self.assertEqual(entry['User'], SERVICE_USER)
        self.assertEqual(entry['SystemdService'], 'buildfleet.service')
        self.assertEqual(entry['Exec'], '/bin/false')

    def test_bus_policy(self):
        root = ET.parse(self.path(DATADIR + '/dbus-1/system.d/org.buildfleet.Fleet1.conf')).getroot()
        owners = [(p.attrib, rule.attrib['own']) for p in root.iter('policy')
                  for rule in p if 'own' in rule.attrib or 'own_prefix' in rule.attrib]
        self.assertEqual(owners, [({'user': SERVICE_USER}, BUS_NAME)])
        default = [p for p in root.iter('policy') if p.attrib == {'context': 'default'}]
        self.assertEqual(len(default), 1)
        sends = [r.attrib for r in default[0] if r.tag == 'allow' and 'send_destination' in r.attrib]
        self.assertTrue(all(r['send_destination'] == BUS_NAME for r in sends))
        self.assertEqual(sorted(r.get('send_interface') for r in sends), sorted(OUR_INTERFACES))
        self.assertEqual([r for r in root.iter('deny')], [])

    def test_polkit_actions(self):
        root = ET.parse(self.path(DATADIR + '/polkit-1/actions/org.buildfleet.Fleet1.policy')).getroot()
        lang = '{http://www.w3.org/XML/1998/namespace}lang'
        actions = {a.attrib['id']: a for a in root.iter('action')}
        self.assertEqual(sorted(actions), sorted([MANAGE_WORKERS, RUN_BUILDS, RELOAD]))
        for action_id, action in actions.items():
            for tag in ('description', 'message'):
                texts = {e.get(lang): e.text for e in action.iter(tag)}
                self.assertIn(None, texts, action_id)
                self.assertIn('de', texts, '%s has no German %s' % (action_id, tag))
                self.assertNotEqual(texts['de'], texts[None])
            defaults = {d.tag: d.text for d in action.find('defaults')}
            # Nobody gets in without authenticating as an administrator.
            self.assertEqual(defaults, {'allow_any': 'auth_admin', 'allow_inactive': 'auth_admin',
                                        'allow_active': 'auth_admin_keep'})

    def test_sysusers(self):
        with open(self.path(SYSUSERSDIR + '/buildfleet.conf')) as f:
            lines = [line.split() for line in f if line.strip() and not line.startswith('#')]
        self.assertEqual(lines[0][:3], ['u', SERVICE_USER, '-'])
        self.assertEqual(lines[0][-1], '/var/lib/buildfleet')


class SystemBusTestCase(InstalledTestCase, dbusmock.DBusTestCase):
    """The installed daemon as its service user on a system bus with mocked polkit."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ensure_service_user()
        cls.nobody = pwd.getpwnam('nobody')

        cls.bus_dir = os.path.join(cls.workdir, 'bus')
        os.makedirs(cls.bus_dir)
        os.chmod(cls.bus_dir, 0o755)
        conf = os.path.join(cls.bus_dir, 'system.conf')
        with open(conf, 'w') as f:
            f.write(cls.bus_config(os.path.join(cls.bus_dir, 'system_bus_socket')))
        cls.bus_pid, cls.bus_address = cls.start_dbus(conf=conf)
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = cls.bus_address

        cls.polkit_log = open(os.path.join(cls.workdir, 'polkitd.log'), 'w')
        cls.polkitd, cls.polkit = cls.spawn_server_template('polkitd', {}, stdout=cls.polkit_log)
        cls.bus = Gio.DBusConnection.new_for_address_sync(
            cls.bus_address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)

        # Where nobody can read it: the client runs as nobody.
        cls.client_script = os.path.join(cls.workdir, 'fleetclient.py')
        shutil.copy(os.path.join(HERE, 'fleetclient.py'), cls.client_script)
        os.chmod(cls.client_script, 0o755)

    @classmethod
    def tearDownClass(cls):
        cls.bus.close_sync(None)
        cls.polkitd.terminate()
        cls.polkitd.wait(10)
        cls.polkit_log.close()
        cls.stop_dbus(cls.bus_pid)
        del os.environ['DBUS_SYSTEM_BUS_ADDRESS']
        super().tearDownClass()

    @classmethod
    def ensure_service_user(cls):
        """Creates the service user the way the package would: systemd-sysusers."""
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            conf = cls.path(SYSUSERSDIR + '/buildfleet.conf')
            if shutil.which('systemd-sysusers'):
                subprocess.run(['systemd-sysusers', conf], check=True)
            else:
                subprocess.run(['useradd', '--system', '--home-dir', '/var/lib/buildfleet',
                                '--no-create-home', '--shell', '/usr/sbin/nologin', SERVICE_USER],
                               check=True)
        cls.service_user = pwd.getpwnam(SERVICE_USER)

    @classmethod
    def bus_config(cls, socket_path):
        """The distribution's system bus policy plus the installed one and a mock polkit."""
        distro = ET.parse(DISTRO_BUS_CONFIG).getroot()
        policies = ''.join(ET.tostring(e, encoding='unicode') for e in distro
                           if e.tag in ('policy', 'limit'))
        return '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <!-- From %s -->
  %s
  <include>%s</include>
  <!-- python-dbusmock plays polkitd, as root; like polkit's own policy,
       everybody may ask it. -->
  <policy user="root">
    <allow own="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>
</busconfig>
''' % (socket_path, DISTRO_BUS_CONFIG, policies,
       cls.path(DATADIR + '/dbus-1/system.d/org.buildfleet.Fleet1.conf'))

    # Per test: a configuration and the daemon ----------------------------------

    def setUp(self):
        self.allow()
        self.polkit.ClearCalls(dbus_interface=dbusmock.MOCK_IFACE)
        self.password = 'pw-' + secrets.token_hex(12)
        self.testdir = tempfile.mkdtemp(prefix='test-', dir=self.workdir)
        os.chmod(self.testdir, 0o755)
        self.config_path = self.write_config(os.path.join(self.testdir, 'etc'), self.service_user)
        self.statedir = os.path.join(self.testdir, 'state')
        os.makedirs(self.statedir, mode=0o700)
        os.chown(self.statedir, self.service_user.pw_uid, self.service_user.pw_gid)
        self.daemon = None
        self.daemon_log_path = os.path.join(self.testdir, 'daemon.log')

    def tearDown(self):
        code = self.stop_daemon()
        if code is not None:
            self.assertEqual(code, 0, 'buildfleetd did not exit cleanly on SIGTERM:\n' + self.daemon_log())

    def write_config(self, etc, user, mode=0o640):
        """The installed example plus a drop-in, owned like /etc/buildfleet (tmpfiles.d)."""
        confdir = os.path.join(etc, 'buildfleet')
        dropins = os.path.join(confdir, 'buildfleet.conf.d')
        os.makedirs(dropins)
        path = os.path.join(confdir, 'buildfleet.conf')
        shutil.copy(self.path(DOCDIR + '/buildfleet.conf.example'), path)
        with open(os.path.join(dropins, 'test.conf'), 'w') as f:
            f.write('[Daemon]\nListen=127.0.0.1:0\nStateDirectory=%s\nMailCommand=/bin/true\n'
                    '[Worker linux-01]\nPassword=%s\n'
                    % (os.path.join(os.path.dirname(etc), 'state'), self.password))
        for d in (confdir, dropins):
            os.chown(d, 0, user.pw_gid)
            os.chmod(d, 0o750)
        for f in (path, os.path.join(dropins, 'test.conf')):
            os.chown(f, 0, user.pw_gid)
            os.chmod(f, mode)
        return path

    def as_user(self, user, argv):
        return ['setpriv', '--reuid=%d' % user.pw_uid, '--regid=%d' % user.pw_gid, '--clear-groups',
                '--inh-caps=-all'] + argv

    def user_env(self, user):
        return {'PATH': '/usr/bin:/bin', 'HOME': user.pw_dir, 'LANG': 'C.UTF-8',
                'DBUS_SYSTEM_BUS_ADDRESS': self.bus_address, 'PYTHONDONTWRITEBYTECODE': '1'}

    def start_daemon(self, user=None, config=None, args=None, log_path=None):
        user = user or self.service_user
        env = self.user_env(user)
        env['G_DEBUG'] = 'fatal-criticals'
        log = open(log_path or self.daemon_log_path, 'wb')
        argv = self.as_user(user, [self.path(LIBEXECDIR + '/buildfleetd'), '--verbose',
                                   '--config', config or self.config_path] + (args or []))
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return process

    def start_service(self):
        self.daemon = self.start_daemon()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                self.fail('buildfleetd exited with %d:\n%s' % (self.daemon.returncode, self.daemon_log()))
            try:
                listen = self.manager_prop('Listen')
                if listen and not listen[0].endswith(':0'):
                    self.port = int(listen[0].rsplit(':', 1)[1])
                    return
            except GLib.Error:
                pass
            time.sleep(0.05)
        self.fail('buildfleetd did not come up:\n' + self.daemon_log())

    def stop_daemon(self):
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(25)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        code, self.daemon = self.daemon.returncode, None
        return code

    def daemon_log(self, path=None):
        with open(path or self.daemon_log_path, errors='replace') as f:
            return f.read()

    # D-Bus as root and as nobody -------------------------------------------------

    def root_call(self, path, iface, method, args=None, dest=BUS_NAME):
        return self.bus.call_sync(dest, path, iface, method, args, None, Gio.DBusCallFlags.NONE,
                                  10000, None).unpack()

    def manager_prop(self, name):
        return self.root_call(FLEET_PATH, 'org.freedesktop.DBus.Properties', 'Get',
                              GLib.Variant('(ss)', (MANAGER_IFACE, name)))[0]

    def worker_prop(self, name):
        return self.root_call(WORKER_PATH, 'org.freedesktop.DBus.Properties', 'Get',
                              GLib.Variant('(ss)', (WORKER_IFACE, name)))[0]

    def name_owner(self):
        return self.root_call('/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetNameOwner',
                              GLib.Variant('(s)', (BUS_NAME,)), dest='org.freedesktop.DBus')[0]

    def client(self, *args, user=None):
        """Runs fleetclient.py as @user (default nobody); returns its JSON."""
        user = user or self.nobody
        p = subprocess.run(self.as_user(user, [PYTHON, self.client_script] + list(args)),
                           env=self.user_env(user), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, 'fleetclient %s failed:\n%s' % (args, p.stderr))
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(out['uid'], user.pw_uid)
        return out

    def set_graceful(self, value):
        return self.client('call', WORKER_PATH, WORKER_IFACE, 'SetGraceful',
                           '(%s,)' % ('true' if value else 'false'))

    def request_build(self):
        return self.client('call', FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                           "('linux', @a{sv} {})")

    def allow(self, *actions):
        """What the mock polkit says yes to, from now on."""
        self.polkit.SetAllowed(dbus.Array(actions, signature='s'))

    def polkit_calls(self):
        return [call[1] for call in self.polkit.GetMethodCalls('CheckAuthorization',
                                                               dbus_interface=dbusmock.MOCK_IFACE)]


class PolkitTest(SystemBusTestCase):
    """Everyone may look; only those polkit allows may change things."""

    def test_unprivileged_reads_the_fleet(self):
        self.start_service()
        out = self.client('read')
        self.assertNotIn('error', out, out)
        objects = out['result']['objects']
        self.assertIn(WORKER_PATH, objects)
        self.assertIn("'linux-01'", objects[WORKER_PATH][WORKER_IFACE]['Name'])
        self.assertIn('Version', out['result']['manager'])
        self.assertIn('org.buildfleet.Fleet1.Manager', out['result']['introspection'])
        # Reading asks nobody.
        self.assertEqual(self.polkit_calls(), [])

    def test_denied_until_polkit_allows(self):
        self.start_service()

        out = self.set_graceful(True)
        self.assertEqual(out.get('error'), ACCESS_DENIED, out)
        self.assertIn(MANAGE_WORKERS, out['message'])
        self.assertIn('SetGraceful', out['message'])
        self.assertFalse(self.worker_prop('Graceful'))
        # Asked about the caller's bus name, with interaction allowed.
        calls = self.polkit_calls()
        self.assertEqual(len(calls), 1, calls)
        subject, action_id, details, flags, cancellation_id = calls[0]
        self.assertEqual(str(subject[0]), 'system-bus-name')
        self.assertEqual(str(subject[1]['name']), out['unique_name'])
        self.assertEqual(str(action_id), MANAGE_WORKERS)
        self.assertEqual(int(flags) & 1, 1)

        out = self.request_build()
        self.assertEqual(out.get('error'), ACCESS_DENIED, out)
        self.assertIn(RUN_BUILDS, out['message'])
        self.assertEqual(self.manager_prop('BuildsActive'), 0)

        out = self.client('call', FLEET_PATH, MANAGER_IFACE, 'Reload', '()')
        self.assertEqual(out.get('error'), ACCESS_DENIED, out)
        self.assertIn(RELOAD, out['message'])

        # Allowing one action allows only that one.
        self.allow(RUN_BUILDS)
        out = self.set_graceful(True)
        self.assertEqual(out.get('error'), ACCESS_DENIED, out)

        self.allow(MANAGE_WORKERS, RUN_BUILDS)
        out = self.set_graceful(True)
        self.assertNotIn('error', out, out)
        self.assertTrue(self.worker_prop('Graceful'))
        out = self.request_build()
        self.assertNotIn('error', out, out)
        self.assertRegex(out['result'], r"^\('/org/buildfleet/Fleet1/builds/\d+',\)$")

        self.allow()
        out = self.set_graceful(False)
        self.assertEqual(out.get('error'), ACCESS_DENIED, out)
        self.assertTrue(self.worker_prop('Graceful'))

    def test_root_needs_no_polkit(self):
        self.start_service()
        self.root_call(WORKER_PATH, WORKER_IFACE, 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.assertTrue(self.worker_prop('Graceful'))
        self.root_call(FLEET_PATH, MANAGER_IFACE, 'Reload')
        self.assertEqual(self.polkit_calls(), [])

    def test_unprivileged_receives_signals(self):
        self.start_service()
        user = self.nobody
        watcher = subprocess.Popen(self.as_user(user, [PYTHON, self.client_script, 'watch', WORKER_PATH, '10']),
                                   env=self.user_env(user), stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(watcher.stdout.readline().strip(), 'ready')
            self.root_call(WORKER_PATH, WORKER_IFACE, 'SetGraceful', GLib.Variant('(b)', (True,)))
            out = json.loads(watcher.stdout.readline())
        finally:
            watcher.wait(15)
        members = [s['member'] for s in out['result']]
        self.assertIn('PropertiesChanged', members)


class BusPolicyTest(SystemBusTestCase):
    """Only the service user may own the name; only our interfaces may be called."""

    def test_service_user_owns_the_name(self):
        self.start_service()
        owner = self.name_owner()
        creds = self.root_call('/org/freedesktop/DBus', 'org.freedesktop.DBus',
                               'GetConnectionUnixUser', GLib.Variant('(s)', (owner,)),
                               dest='org.freedesktop.DBus')[0]
        self.assertEqual(creds, self.service_user.pw_uid)

    def test_others_cannot_own_the_name(self):
        out = self.client('own', BUS_NAME)
        self.assertEqual(out.get('error'), 'org.freedesktop.DBus.Error.AccessDenied', out)
        # Not even root: the name is the service user's alone.
        with self.assertRaises(GLib.Error) as caught:
            self.root_call('/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName',
                           GLib.Variant('(su)', (BUS_NAME, 4)), dest='org.freedesktop.DBus')
        self.assertEqual(Gio.DBusError.get_remote_error(caught.exception),
                         'org.freedesktop.DBus.Error.AccessDenied')

    def test_second_instance_as_nobody_is_refused(self):
        self.start_service()
        owner = self.name_owner()
        config = self.write_config(os.path.join(self.testdir, 'nobody', 'etc'), self.nobody)
        state = os.path.join(self.testdir, 'nobody', 'state')
        os.makedirs(state)
        os.chown(state, self.nobody.pw_uid, self.nobody.pw_gid)
        for args in ([], ['--replace']):
            log = os.path.join(self.testdir, 'nobody', 'daemon%s.log' % ''.join(args))
            intruder = self.start_daemon(user=self.nobody, config=config, args=args, log_path=log)
            try:
                code = intruder.wait(15)
            except subprocess.TimeoutExpired:
                intruder.kill()
                intruder.wait()
                self.fail('buildfleetd as nobody %s kept running:\n%s' % (args, self.daemon_log(log)))
            self.assertNotEqual(code, 0, self.daemon_log(log))
            self.assertIn(BUS_NAME, self.daemon_log(log))
            self.assertEqual(self.name_owner(), owner)
        self.assertEqual(self.client('read')['result']['objects'][WORKER_PATH][WORKER_IFACE]['Name'],
                         "'linux-01'")

    def test_other_interfaces_are_refused_by_the_bus(self):
        self.start_service()
        out = self.client('call', FLEET_PATH, 'org.example.NotOurs', 'Frobnicate', '()')
        self.assertEqual(out.get('error'), 'org.freedesktop.DBus.Error.AccessDenied', out)
        out = self.client('call', FLEET_PATH, 'org.freedesktop.DBus.Peer', 'Ping', '()')
        self.assertNotIn('error', out, out)


class SecretsTest(SystemBusTestCase):
    """Passwords are never logged or published; a readable configuration is flagged."""

    def raw_login(self, password):
        """A WebSocket upgrade with Basic credentials; returns the HTTP status line."""
        auth = b64encode(('linux-01:' + password).encode()).decode()
        request = ('GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n'
                   'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n'
                   'Authorization: Basic %s\r\n\r\n'
                   % (self.port, b64encode(os.urandom(16)).decode(), auth))
        with socket.create_connection(('127.0.0.1', self.port), timeout=5) as s:
            s.sendall(request.encode())
            head = b''
            while b'\r\n' not in head:
                chunk = s.recv(1)
                if not chunk:
                    break
                head += chunk
            time.sleep(0.2)
        return head.decode(errors='replace').strip()

    def assert_secret_nowhere(self, secret):
        log = self.daemon_log()
        self.assertNotIn(secret, log)
        published = json.dumps(self.client('read')['result'])
        self.assertNotIn(secret, published)
        for dirpath, _, files in os.walk(self.statedir):
            for name in files:
                with open(os.path.join(dirpath, name), 'rb') as f:
                    self.assertNotIn(secret.encode(), f.read(), name)

    def test_passwords_stay_secret(self):
        self.start_service()
        wrong = 'wrong-' + secrets.token_hex(8)
        self.assertIn(' 401', self.raw_login(wrong))
        self.raw_login(self.password)
        self.root_call(WORKER_PATH, WORKER_IFACE, 'Pause', GLib.Variant('(s)', ('maintenance',)))
        self.assertIn('linux-01', self.daemon_log())
        self.assert_secret_nowhere(self.password)
        self.assert_secret_nowhere(wrong)
        self.assertNotIn('readable by every user', self.daemon_log())

    def test_readable_configuration_is_flagged(self):
        os.chmod(self.config_path, 0o644)
        self.start_service()
        log = self.daemon_log()
        self.assertIn(self.config_path, log)
        self.assertIn('readable by every user', log)
        self.assertNotIn(self.password, log)


def main():
    if os.geteuid() != 0:
        print('test_service.py runs the daemon and its clients as other users: it needs root')
        sys.exit(77)
    unittest.main(testRunner=unittest.TextTestRunner(stream=sys.stdout, verbosity=2))


if __name__ == '__main__':
    main()
