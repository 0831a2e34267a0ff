# bfharness.py: drive the built buildfleetd the way users do
#
# A private system bus (python-dbusmock's DBusTestCase), the built daemon
# under G_DEBUG=fatal-criticals, real buildbot-worker processes, and GDBus
# from python to read properties, call methods and record signals.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import base64
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import dbusmock
from gi.repository import Gio, GLib

BUS_NAME = 'org.buildfleet.Fleet1'
FLEET_PATH = '/org/buildfleet/Fleet1'
MANAGER_IFACE = 'org.buildfleet.Fleet1.Manager'
WORKER_IFACE = 'org.buildfleet.Fleet1.Worker'
LATENT_IFACE = 'org.buildfleet.Fleet1.LatentWorker'
BUILD_IFACE = 'org.buildfleet.Fleet1.Build'
COMMAND_IFACE = 'org.buildfleet.Fleet1.Command'

BUILD_ROOT = os.environ.get('MESON_BUILD_ROOT',
                            os.path.join(os.path.dirname(__file__), '..', '..', 'build'))
BUILDFLEETD = os.environ.get('BUILDFLEETD', os.path.join(BUILD_ROOT, 'daemon', 'buildfleetd'))
BUILDBOT_WORKER = shutil.which('buildbot-worker') or '/usr/bin/buildbot-worker'

# Buildbot's two worker protocols, as the daemon names them (Worker.Protocol).
PROTOCOLS = ('msgpack', 'pb')



def worker_path(name):
    escaped = ''.join(c if c.isalnum() and c.isascii() else '_%02x' % ord(c) for c in name)
    return FLEET_PATH + '/workers/' + escaped


class Worker:
    """A real buildbot-worker process in its own base directory.

    @protocol 'msgpack' creates it with --protocol=msgpack_experimental_v7,
    'pb' with no --protocol at all (buildbot-worker's default, Perspective
    Broker); @port must be an endpoint of that protocol."""

    def __init__(self, test, name, password, port, tls_ca=None, admin='ops@example.com',
                 host='integration test host', protocol='msgpack'):
        if protocol not in PROTOCOLS:
            raise ValueError('unknown protocol %r' % protocol)
        self.test = test
        self.name = name
        self.protocol = protocol
        self.basedir = os.path.join(test.workdir, 'worker-' + name + '-' + str(len(test.workers)))
        self.process = None
        args = [BUILDBOT_WORKER, 'create-worker', '--keepalive=0', '--maxretries=1000']
        if protocol == 'msgpack':
            args.append('--protocol=msgpack_experimental_v7')
        if tls_ca:
            args.append('--use-tls')
        args += [self.basedir, '127.0.0.1:%d' % port, name, password]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.basedir, 'info', 'admin'), 'w') as f:
            f.write(admin + '\n')
        with open(os.path.join(self.basedir, 'info', 'host'), 'w') as f:
            f.write(host + '\n')
        self.env = dict(os.environ)
        if tls_ca:
            self.env['SSL_CERT_FILE'] = tls_ca
        test.workers.append(self)

    def start(self):
        log = open(os.path.join(self.basedir, 'stdout.log'), 'ab')
        self.process = subprocess.Popen([BUILDBOT_WORKER, 'start', '--nodaemon', self.basedir],
                                        stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        log.close()
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.kill(signal.SIGKILL)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        try:
            with open(os.path.join(self.basedir, 'twistd.log'), errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''


# A Debian system bus's limits (dbus-daemon's built-in defaults, listed in
# /usr/share/dbus-1/system.conf), stated so that every test runs against
# them: above all max_message_size, over which the bus drops the sender.
SYSTEM_BUS_LIMITS = {
    'max_incoming_bytes': 133169152,
    'max_incoming_unix_fds': 64,
    'max_outgoing_bytes': 133169152,
    'max_outgoing_unix_fds': 64,
    'max_message_size': 33554432,
    'max_message_unix_fds': 16,
    'service_start_timeout': 25000,
    'auth_timeout': 5000,
    'pending_fd_timeout': 150000,
    'max_completed_connections': 2048,
    'max_incomplete_connections': 64,
    'max_connections_per_user': 256,
    'max_pending_service_starts': 512,
    'max_names_per_connection': 512,
    'max_match_rules_per_connection': 512,
    'max_replies_per_connection': 128,
}


def start_system_bus_with_limits(cls):
    """dbusmock's private system bus, with SYSTEM_BUS_LIMITS."""
    services = cls.get_services_dir(True)
    conf = os.path.join(os.path.dirname(services), 'bf_system_bus.conf')
    with open(conf, 'w') as f:
        f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
                ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                '<busconfig>\n  <type>system</type>\n  <keep_umask/>\n'
                '  <listen>unix:tmpdir=/tmp</listen>\n  <servicedir>%s</servicedir>\n'
                '  <policy context="default">\n    <allow send_destination="*" eavesdrop="true"/>\n'
                '    <allow eavesdrop="true"/>\n    <allow own="*"/>\n  </policy>\n%s</busconfig>\n' %
                (services,
                 ''.join('  <limit name="%s">%d</limit>\n' % kv for kv in SYSTEM_BUS_LIMITS.items())))
    pid, address = cls.start_dbus(conf=conf)
    os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
    cls.system_bus_pid = pid      # stopped by DBusTestCase.tearDownClass


class FleetTestCase(dbusmock.DBusTestCase):
    """Base class: one private system bus per test class, one daemon per test.

    @protocol is the protocol of the workers add_worker() creates; see
    for_both_protocols() for running one class with each."""

    protocol = 'msgpack'

    @classmethod
    def setUpClass(cls):
        start_system_bus_with_limits(cls)
        # A connection of our own, not GLib's shared singleton: each test
        # class gets a new private bus.
        cls.bus = Gio.DBusConnection.new_for_address_sync(
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)

    @classmethod
    def tearDownClass(cls):
        cls.bus.close_sync(None)
        super().tearDownClass()

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix='bf-test-')
        self.statedir = os.path.join(self.workdir, 'state')
        self.maildir = os.path.join(self.workdir, 'mail')
        os.makedirs(self.maildir)
        self.config_path = os.path.join(self.workdir, 'buildfleet.conf')
        self.daemon = None
        self.daemon_log_path = None
        self.port = None
        self.pb_port = None
        self.workers = []
        self.signals = []
        self.subscriptions = []
        self.subscriptions.append(self.bus.signal_subscribe(
            BUS_NAME, None, None, None, None, Gio.DBusSignalFlags.NONE, self._on_signal))

    # What a sanitizer build of the daemon (README, "Tests") prints on a finding
    SANITIZER_REPORTS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:')

    def tearDown(self):
        for w in self.workers:
            w.stop()
        self.stop_daemon()
        for s in self.subscriptions:
            self.bus.signal_unsubscribe(s)
        log = self.daemon_log()
        reports = [r for r in self.SANITIZER_REPORTS if r in log]
        if os.environ.get('BF_KEEP_TMP') or reports:
            print('kept', self.workdir, file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if reports:
            self.fail('sanitizer report in the daemon\'s log:\n' + log[-4000:])

    # Configuration ----------------------------------------------------------

    def daemon_section(self, **extra):
        # Each mail lands whole in its own file (written aside, then renamed).
        script = os.path.join(self.workdir, 'sendmail.sh')
        with open(script, 'w') as f:
            f.write('t=$(mktemp -p "$1" part-XXXXXX) && cat > "$t" && mv "$t" "$t.mail"\n')
        mail_cmd = '/bin/sh %s %s' % (script, self.maildir)
        keys = {
            'Listen': '127.0.0.1:0',
            'ListenPB': '127.0.0.1:0',
            'StateDirectory': self.statedir,
            'KeepaliveInterval': '1',
            'DuplicatePingTimeout': '0.5',
            'MailCommand': mail_cmd,
            'MailFrom': 'buildfleet@test.invalid',
        }
        keys.update(extra)
        return '[Daemon]\n' + ''.join('%s=%s\n' % kv for kv in keys.items())

    def write_config(self, text, path=None):
        path = path or self.config_path
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    # Daemon -----------------------------------------------------------------

    def start_daemon(self, args=None, wait=True, config=None):
        self.daemon_log_path = os.path.join(self.workdir, 'daemon-%d.log' % time.monotonic_ns())
        log = open(self.daemon_log_path, 'wb')
        env = dict(os.environ)
        env['G_DEBUG'] = 'fatal-criticals'
        env['G_MESSAGES_DEBUG'] = 'buildfleetd'
        argv = [BUILDFLEETD, '--config', config or self.config_path] + (args or [])
        wrapper = os.environ.get('BF_DAEMON_WRAPPER')
        if wrapper:
            argv = wrapper.split() + argv
        self.daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        if wait:
            self.wait_for_daemon(config=config)
        return self.daemon

    def _expects_pb_endpoint(self, config):
        """Whether @config's [Daemon] group names PB endpoints (the harness
        always does; the default *:9989 may be skipped, so it is not awaited)."""
        kf = GLib.KeyFile()
        try:
            kf.load_from_file(config or self.config_path, GLib.KeyFileFlags.NONE)
            return kf.get_string('Daemon', 'ListenPB').split('#')[0].strip() != ''
        except GLib.Error:
            return False

    @staticmethod
    def _first_port(endpoints):
        if endpoints and not endpoints[0].endswith(':0'):
            return int(endpoints[0].rsplit(':', 1)[1])
        return None

    def wait_for_daemon(self, timeout=10, config=None):
        want_pb = self._expects_pb_endpoint(config)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                self.fail('daemon exited with %d:\n%s' % (self.daemon.returncode, self.daemon_log()))
            try:
                port = self._first_port(self.manager_prop('Listen'))
                pb_port = self._first_port(self.manager_prop('ListenPB'))
                if port and (pb_port or not want_pb):
                    self.port, self.pb_port = port, pb_port
                    return
            except GLib.Error:
                pass
            time.sleep(0.05)
        self.fail('daemon did not come up:\n' + self.daemon_log())

    def worker_port(self, protocol=None):
        """The port of the first endpoint for @protocol (default: the class's)."""
        protocol = protocol or self.protocol
        port = self.pb_port if protocol == 'pb' else self.port
        if port is None:
            self.fail('the daemon has no %s endpoint' % protocol)
        return port

    def assert_protocol(self, name, protocol=None):
        """Worker @name is attached and its Protocol is @protocol (default: the class's)."""
        self.assertEqual(self.worker_prop(name, 'Protocol'), protocol or self.protocol)

    def stop_daemon(self, sig=signal.SIGTERM):
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(sig)
            try:
                self.daemon.wait(15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
                self.fail('daemon did not exit on %s' % sig)
        code = self.daemon.returncode
        self.daemon = None
        return code

    def daemon_log(self):
        if not self.daemon_log_path:
            return ''
        with open(self.daemon_log_path, errors='replace') as f:
            return f.read()

    def run_daemon_expect_failure(self, timeout=10):
        """Runs the daemon on the current config; returns (exit code, output)."""
        env = dict(os.environ)
        env['G_DEBUG'] = 'fatal-criticals'
        p = subprocess.run([BUILDFLEETD, '--config', self.config_path], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode(errors='replace')

    # D-Bus ------------------------------------------------------------------

    def _on_signal(self, conn, sender, path, iface, name, params):
        self.signals.append((path, iface, name, params.unpack()))

    def call(self, path, iface, method, args=None, timeout=5000):
        r = self.bus.call_sync(BUS_NAME, path, iface, method, args, None,
                               Gio.DBusCallFlags.NONE, timeout, None)
        return r.unpack() if r is not None else None

    def call_error(self, path, iface, method, args=None):
        """Calls and expects a D-Bus error; returns (error name, message)."""
        try:
            self.call(path, iface, method, args)
        except GLib.Error as e:
            name = Gio.DBusError.get_remote_error(e)
            message = e.message
            if message.startswith('GDBus.Error:'):
                message = message.split(': ', 1)[1]
            return name, message
        self.fail('%s.%s did not fail' % (iface, method))

    def prop(self, path, iface, name):
        return self.call(path, 'org.freedesktop.DBus.Properties', 'Get',
                         GLib.Variant('(ss)', (iface, name)))[0]

    def props(self, path, iface):
        return self.call(path, 'org.freedesktop.DBus.Properties', 'GetAll',
                         GLib.Variant('(s)', (iface,)))[0]

    def manager_prop(self, name):
        return self.prop(FLEET_PATH, MANAGER_IFACE, name)

    def worker_prop(self, worker, name):
        return self.prop(worker_path(worker), WORKER_IFACE, name)

    def worker_call(self, worker, method, args=None, iface=WORKER_IFACE):
        return self.call(worker_path(worker), iface, method, args)

    def managed_objects(self):
        return self.call(FLEET_PATH, 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects')[0]

    def pump(self, seconds=0.0):
        ctx = GLib.MainContext.default()
        deadline = time.monotonic() + seconds
        while True:
            while ctx.iteration(False):
                pass
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def wait_until(self, predicate, timeout=5.0, message='condition', keep_checking=0.0):
        """Waits until @predicate() is true and returns its value; with
        @keep_checking, it must then stay true that many seconds too (as
        power-profiles-daemon's assert_eventually(keep_checking=))."""
        deadline = time.monotonic() + timeout
        ctx = GLib.MainContext.default()
        while True:
            while ctx.iteration(False):
                pass
            value = predicate()
            if value:
                if keep_checking > 0:
                    self.assert_stays(predicate, keep_checking, message)
                return value
            if time.monotonic() > deadline:
                self.fail('timed out after %.1f s waiting for %s\n--- daemon log ---\n%s' %
                          (timeout, message, self.daemon_log()[-6000:]))
            time.sleep(0.01)

    def assert_stays(self, predicate, seconds, message='condition'):
        """A negative check: @predicate() is true now and stays true for
        @seconds while D-Bus signals keep arriving; fails the moment it is
        not.  Give it as long as the thing it rules out would take to
        show, not a pump that merely happens to be long enough."""
        start = time.monotonic()
        ctx = GLib.MainContext.default()
        while True:
            while ctx.iteration(False):
                pass
            if not predicate():
                self.fail('no longer true after %.2f s of the %.1f s checked: %s\n--- daemon log ---\n%s' %
                          (time.monotonic() - start, seconds, message, self.daemon_log()[-6000:]))
            if time.monotonic() - start >= seconds:
                return
            time.sleep(0.02)

    def signals_named(self, name, path=None):
        return [s for s in self.signals if s[2] == name and (path is None or s[0] == path)]

    def wait_signal(self, name, path=None, timeout=5.0, count=1):
        return self.wait_until(lambda: len(self.signals_named(name, path)) >= count and
                               self.signals_named(name, path), timeout,
                               'signal %s on %s' % (name, path))

    def properties_changed(self, path, prop):
        out = []
        for s in self.signals:
            if s[0] == path and s[2] == 'PropertiesChanged' and prop in s[3][1]:
                out.append(s[3][1][prop])
        return out

    # Workers ------------------------------------------------------------------

    def add_worker(self, name, password, protocol=None, **kw):
        """A real worker speaking @protocol (default: the class's) to our endpoint of it."""
        protocol = protocol or self.protocol
        return Worker(self, name, password, self.worker_port(protocol), protocol=protocol, **kw)

    # A real buildbot-worker takes seconds to start, more on a busy machine.
    def wait_connected(self, name, timeout=30.0, value=True):
        return self.wait_until(lambda: self.worker_prop(name, 'Connected') == value, timeout,
                               'worker %s Connected=%s' % (name, value))

    # Mail ---------------------------------------------------------------------

    def mails(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.maildir, '*.mail')), key=os.path.getmtime):
            with open(path, errors='replace') as f:
                out.append(f.read())
        return out


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class PodmanService:
    """Podman's Docker-compatible API, all of it in a directory of its own.

    What it needs on this kind of machine (Debian 12, root, cgroup v1
    hybrid, no systemd as PID 1, no registry; see CONTAINERS.md):
    the packages podman, runc and uidmap (tools/install-deps); storage
    driver vfs with runroot and graphroot set; runtime runc (crun refuses
    the hybrid cgroup layout); cgroup manager cgroupfs; file locks and
    tmp_dir in the directory, so that two services never share a lock; an
    image imported from a tiny tarball (IMAGE: empty top folders and the
    merged-/usr links), whose containers run the host's buildbot-worker
    by binding the host's /usr and /etc read-only (VOLUMES); host
    networking, to reach the daemon on loopback; explicit ULIMITS (the
    default open-files limit fails without CAP_SYS_RESOURCE).

    The machine's /etc/containers is never read or written.

        podman = PodmanService()      # skip the test if podman.unavailable()
        podman.start()                # the service, the image
        ...'[Worker c]\\nLatent=docker\\n' + podman.worker_keys() ...
        podman.containers()           # what the engine says runs
        podman.stop()                 # every container, the service, the directory
    """

    IMAGE = 'localhost/bf-host:latest'
    VOLUMES = '/usr:/usr:ro;/etc:/etc:ro'
    ULIMITS = 'nofile=1024:20000;nproc=4096:4096'

    def __init__(self):
        self.directory = None
        self.process = None
        self.socket = None

    @staticmethod
    def unavailable():
        """Why containers cannot run here, or None."""
        for tool in ('podman', 'runc'):
            if shutil.which(tool) is None:
                return '%s is not installed (tools/install-deps installs podman, runc, uidmap)' % tool
        return None

    def _env(self):
        env = dict(os.environ)
        env['CONTAINERS_CONF'] = os.path.join(self.directory, 'containers.conf')
        env['CONTAINERS_STORAGE_CONF'] = os.path.join(self.directory, 'storage.conf')
        return env

    def podman(self, *args, check=True, timeout=120):
        argv = ['podman', '--root', os.path.join(self.directory, 'root'),
                '--runroot', os.path.join(self.directory, 'runroot')] + list(args)
        return subprocess.run(argv, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=check)

    def start(self, timeout=60):
        self.directory = tempfile.mkdtemp(prefix='bf-podman-')
        d = self.directory
        with open(os.path.join(d, 'storage.conf'), 'w') as f:
            f.write('[storage]\ndriver = "vfs"\nrunroot = "%s/runroot"\ngraphroot = "%s/root"\n' % (d, d))
        with open(os.path.join(d, 'containers.conf'), 'w') as f:
            f.write('[containers]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                    'lock_type = "file"\ntmp_dir = "%s/tmp"\n'
                    'volume_path = "%s/volumes"\nstatic_dir = "%s/libpod"\n' % (d, d, d))
        rootfs = os.path.join(d, 'image')
        for sub in ('proc', 'sys', 'dev', 'etc', 'tmp', 'usr', 'var', 'run', 'root'):
            os.makedirs(os.path.join(rootfs, sub))
        for link in ('bin', 'lib', 'lib64', 'sbin'):
            os.symlink('usr/' + link, os.path.join(rootfs, link))
        subprocess.run(['tar', '-C', rootfs, '-cf', os.path.join(d, 'image.tar'), '.'], check=True)
        self.podman('import', os.path.join(d, 'image.tar'), self.IMAGE)
        self.socket = os.path.join(d, 'api.sock')
        self.log_path = os.path.join(d, 'service.log')
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen(
                ['podman', '--root', os.path.join(d, 'root'), '--runroot', os.path.join(d, 'runroot'),
                 'system', 'service', '--time=0', 'unix://' + self.socket],
                env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('podman system service exited: ' + self.service_log())
            try:
                if self.api('GET', '/_ping')[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError('podman system service did not answer: ' + self.service_log())

    def service_log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()[-4000:]
        except OSError:
            return ''

    @property
    def docker_host(self):
        return 'unix://' + self.socket

    def worker_keys(self, **extra):
        """The keys of a Latent=docker worker that runs in this service."""
        keys = {'Image': self.IMAGE, 'DockerHost': self.docker_host, 'Volumes': self.VOLUMES,
                'Network': 'host', 'Ulimits': self.ULIMITS}
        keys.update(extra)
        return ''.join('%s=%s\n' % kv for kv in keys.items() if kv[1] is not None)

    def api(self, method, path, body=None, timeout=30):
        """One Docker API call: (status, parsed JSON or raw bytes)."""
        conn = _UnixHTTPConnection(self.socket, timeout)
        try:
            headers = {'Content-Type': 'application/json'} if body is not None else {}
            conn.request(method, '/v1.41' + path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
            response = conn.getresponse()
            data = response.read()
            try:
                return response.status, json.loads(data) if data else None
            except ValueError:
                return response.status, data
        finally:
            conn.close()

    def containers(self, label=None, running_only=False):
        """The engine's containers (with @label "KEY=VALUE" if given)."""
        query = '' if running_only else '?all=1'
        if label:
            query += ('&' if query else '?') + 'filters=' + \
                urllib.parse.quote(json.dumps({'label': [label]}))
        status, data = self.api('GET', '/containers/json' + query)
        if status != 200:
            raise RuntimeError('listing containers: %s %r' % (status, data))
        return data

    def run_container(self, name, labels=None,
                      command=('sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait')):
        """Starts a container of our own (not the daemon's); returns its id."""
        status, data = self.api('POST', '/containers/create?name=' + name, {
            'Image': self.IMAGE, 'Cmd': list(command), 'Labels': labels or {},
            'HostConfig': {'Binds': self.VOLUMES.split(';'), 'NetworkMode': 'host',
                           'Ulimits': [{'Name': 'nofile', 'Soft': 1024, 'Hard': 20000},
                                       {'Name': 'nproc', 'Soft': 4096, 'Hard': 4096}]}})
        if status != 201:
            raise RuntimeError('creating %s: %s %r' % (name, status, data))
        status, data = self.api('POST', '/containers/%s/start' % name)
        if status not in (204, 304):
            raise RuntimeError('starting %s: %s %r' % (name, status, data))
        return self.api('GET', '/containers/%s/json' % name)[1]['Id']

    def _processes_using_directory(self):
        """Pids whose command line names this service's directory."""
        found = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    if self.directory.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
        return found

    def stop(self):
        if self.directory is None:
            return
        if self.process is not None and self.process.poll() is None:
            self.podman('rm', '--all', '--force', '--time', '0', check=False)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Once more without the service: a stop it had in hand when it
        # was told to exit may have left a container (and its conmon) behind.
        self.podman('rm', '--all', '--force', '--time', '0', check=False)
        # conmon runs `podman container cleanup` on this directory after a
        # container ends: wait for those, or they make it again after rmtree.
        deadline = time.monotonic() + 15
        while self._processes_using_directory() and time.monotonic() < deadline:
            time.sleep(0.1)
        if os.environ.get('BF_KEEP_TMP'):
            print('kept', self.directory, file=sys.stderr)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None


def for_both_protocols(cls=None, msgpack_only=()):
    """Class decorator: @cls runs with msgpack workers under its own name
    (so the history of a test stays comparable), and a subclass named
    with "Pb" before its final "Test" (AttachTest -> AttachPbTest) runs
    the same tests with PB workers.  The test methods named in
    @msgpack_only are left out of the PB class (say why where it is used).

    Use as @for_both_protocols or @for_both_protocols(msgpack_only=(...)).
    """
    def make(cls):
        base = cls.__name__[:-len('Test')] if cls.__name__.endswith('Test') else cls.__name__
        name = base + 'PbTest'
        attrs = {'protocol': 'pb', '__module__': cls.__module__,
                 '__qualname__': name,
                 '__doc__': (cls.__doc__ or '') + '\n(With PB workers.)'}
        for method in msgpack_only:
            if not callable(getattr(cls, method, None)):
                raise AttributeError('%s has no test %s' % (cls.__name__, method))
            attrs[method] = None      # not callable: unittest's loader skips it
        module = sys.modules[cls.__module__]
        if hasattr(module, name):
            raise AttributeError('%s already defines %s' % (cls.__module__, name))
        setattr(module, name, type(cls)(name, (cls,), attrs))
        return cls
    return make(cls) if cls is not None else make


class RawWebSocket:
    """A minimal RFC 6455 client for feeding the daemon bad input."""

    def __init__(self, port, name, password, timeout=5.0):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        auth = base64.b64encode(('%s:%s' % (name, password)).encode()).decode()
        req = ('GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n'
               'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n'
               'Authorization: Basic %s\r\n\r\n' % (port, key, auth))
        self.sock.sendall(req.encode())
        head = b''
        while b'\r\n\r\n' not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b' ', 2)[1]) if head else 0
        self.buffer = b''

    def send_frame(self, payload, opcode=2):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack('>H', n)
        else:
            header += bytes([0x80 | 127]) + struct.pack('>Q', n)
        mask = os.urandom(4)
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, 'little') ^ int.from_bytes(key, 'little')).to_bytes(n, 'little')
        self.sock.sendall(header + mask + masked)

    def answer_attach(self, info=None):
        """Answers the daemon's three attach requests like a worker, with
        @info (a dict) as the worker info."""
        import msgpack
        for _ in range(3):
            op, payload = self.recv_frame()
            msg = msgpack.unpackb(payload)
            result = (info if info is not None else {'admin': 'x', 'host': 'y', 'version': '3.7.0'}) \
                if msg['op'] == 'get_worker_info' else None
            self.send_frame(msgpack.packb({'op': 'response', 'seq_number': msg['seq_number'],
                                           'result': result}))

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('connection closed')
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv_frame(self):
        """Returns (opcode, payload); raises EOFError or socket.timeout."""
        b0, b1 = self._read(2)
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack('>H', self._read(2))[0]
        elif n == 127:
            n = struct.unpack('>Q', self._read(8))[0]
        return b0 & 0x0f, self._read(n)

    def close_reason(self, timeout=5.0):
        """Reads until a close frame; returns (code, reason) or None on EOF."""
        self.sock.settimeout(timeout)
        try:
            while True:
                op, payload = self.recv_frame()
                if op == 8:
                    code = struct.unpack('>H', payload[:2])[0] if len(payload) >= 2 else 0
                    return code, payload[2:].decode(errors='replace')
        except (EOFError, ConnectionResetError):
            return None

    def close(self):
        self.sock.close()


def main():
    program = unittest.main(testRunner=unittest.TextTestRunner(stream=sys.stdout, verbosity=2),
                            exit=False)
    result = program.result
    if not result.wasSuccessful():
        sys.exit(1)
    # Everything skipped (a PB class before the daemon has PB): meson's SKIP.
    if result.skipped and len(result.skipped) >= result.testsRun:
        sys.exit(77)
    sys.exit(0)
