#!/usr/bin/python3
# test_hostile_endpoints.py: what a network peer can exhaust (issue 12)
#
# Hostile peers on the worker endpoint: idle and stalled TLS handshakes
# (memory, handshake threads), descriptor exhaustion (accept failing with
# EMFILE), and password guessing.  Each test checks that the daemon stays
# cheap and responsive and that a legitimate worker still gets in.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import base64
import os
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bfharness  # noqa: E402
from gi.repository import GLib  # noqa: E402


def proc_status(pid, key):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return proc_status(pid, 'VmRSS')


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime + stime


def sanitized(pid):
    """Whether the daemon is a sanitizer build (./check runs one), whose
    allocator keeps freed memory and thread stacks around."""
    with open('/proc/%d/maps' % pid) as f:
        return 'libasan' in f.read()


def open_fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def make_cert(workdir):
    cert = os.path.join(workdir, 'cert.pem')
    key = os.path.join(workdir, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
                    '-keyout', key, '-out', cert], check=True, capture_output=True)
    return cert, key


def client_hello():
    """The bytes of a real TLS ClientHello (from Python's ssl module)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def connect(port, source='127.0.0.1'):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(('127.0.0.1', port))
    return s


class EndpointTestCase(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.sockets = []

    def tearDown(self):
        for s in self.sockets:
            s.close()
        super().tearDown()

    def open_many(self, n, payload=b'', source='127.0.0.1'):
        """Opens @n connections that send @payload and then nothing."""
        out = []
        for _ in range(n):
            s = connect(self.port, source)
            if payload:
                s.sendall(payload)
            out.append(s)
        self.sockets += out
        return out

    def get_latency(self):
        t = time.monotonic()
        self.manager_prop('Listen')
        return time.monotonic() - t

    def state_has(self, text):
        try:
            with open(os.path.join(self.statedir, 'workers.state')) as f:
                return text in f.read()
        except FileNotFoundError:
            return False


class TlsCostTest(EndpointTestCase):
    """An idle or half-done TLS connection costs about what a plain one does."""

    N = int(os.environ.get('BF_TLS_CONNECTIONS', '100'))

    def upgrade(self, i, tls):
        """A connection that completes TLS and the upgrade as worker u<i>."""
        s = connect(self.port)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        key = base64.b64encode(os.urandom(16)).decode()
        auth = base64.b64encode(('u%d:p' % i).encode()).decode()
        s.sendall(('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                   'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n'
                   'Authorization: Basic %s\r\n\r\n' % (key, auth)).encode())
        head = b''
        while b'\r\n\r\n' not in head:
            chunk = s.recv(1)
            if not chunk:
                break
            head += chunk
        self.assertIn(b' 101 ', head)
        self.sockets.append(s)
        return [s]

    def rss_delta(self, payload, tls, authenticated=False):
        # Upgraded connections never answer: no keepalive may drop them.
        extra = dict(KeepaliveInterval='600')
        if tls:
            cert, key = make_cert(self.workdir)
            extra.update(TlsCertificate=cert, TlsPrivateKey=key)
        self.write_config(self.daemon_section(**extra) +
                          ''.join('[Worker u%d]\nPassword=p\nMissingTimeout=600\n' % i
                                  for i in range(self.N + 1)))
        self.start_daemon()
        pid = self.daemon.pid
        if authenticated:
            def open_one(i):
                return self.upgrade(i, tls)
        else:
            def open_one(i):
                return self.open_many(1, payload)
        # Warm up: one connection through the whole path, so that what is
        # loaded once (the TLS backend, its priorities) is not counted.
        warm = open_one(self.N)
        self.pump(0.5)
        warm[0].close()
        self.pump(0.5)
        fds = open_fds(pid)
        before = rss_kb(pid)
        for i in range(self.N):
            open_one(i)
        self.wait_until(lambda: open_fds(pid) >= fds + self.N, timeout=20,
                        message='%d connections accepted' % self.N)
        self.pump(1.0)
        after = rss_kb(pid)
        self.sanitized = sanitized(pid)
        self.stop_daemon()
        for s in self.sockets:
            s.close()
        self.sockets = []
        delta = max(after - before, 0)
        print('%s %s: %d connections cost %d KB RSS' %
              ('TLS' if tls else 'plain', 'upgraded' if authenticated else repr(payload[:5]),
               self.N, delta), file=sys.stderr)
        return delta

    def test_idle_connections(self):
        plain = self.rss_delta(b'', tls=False)
        tls = self.rss_delta(b'', tls=True)
        # Within 2x of plain, with 1 MB of slack for allocator noise.
        self.assertLessEqual(tls, 2 * plain + 1024,
                             'idle TLS: %d KB vs plain %d KB for %d connections' % (tls, plain, self.N))

    def test_client_hello_then_silence(self):
        plain = self.rss_delta(b'GET / HTTP/1.1\r\n', tls=False)
        tls = self.rss_delta(client_hello(), tls=True)
        self.assertLessEqual(tls, 2 * plain + 4096,
                             'stalled TLS: %d KB vs plain %d KB for %d connections' % (tls, plain, self.N))


    def test_authenticated_connections(self):
        plain = self.rss_delta(b'', tls=False, authenticated=True)
        tls = self.rss_delta(b'', tls=True, authenticated=True)
        # What remains is GnuTLS's own session (record buffers, keys): about
        # 30 KB a connection, against 3.7 MB when each loaded the CA store.
        # Under AddressSanitizer (quarantine, fake stacks) only the latter is
        # told apart.
        per_connection = 1024 if self.sanitized else 48
        self.assertLessEqual(tls, 2 * plain + per_connection * self.N,
                             'upgraded TLS: %d KB vs plain %d KB for %d connections' % (tls, plain, self.N))


class StalledHandshakeTest(EndpointTestCase):
    """Hundreds of stalled TLS handshakes keep neither a real TLS worker nor
    D-Bus waiting, and are closed after the handshake deadline."""

    def setUp(self):
        super().setUp()
        self.cert, key = make_cert(self.workdir)
        self.write_config(self.daemon_section(TlsCertificate=self.cert, TlsPrivateKey=key) +
                          '[Worker w1]\nPassword=p\n')
        self.start_daemon()

    def check(self, payload, n, source):
        started = time.monotonic()
        hostile = self.open_many(n, payload, source)
        # State writes (GIO's thread pool, which handshakes also use) are not delayed.
        t0 = time.monotonic()
        self.worker_call('w1', 'Pause', GLib.Variant('(s)', ('tls storm',)))
        self.wait_until(lambda: self.state_has('PauseReason=tls storm'), timeout=10,
                        message='the pause saved during the storm')
        saved = time.monotonic() - t0
        self.assertLess(saved, 3.0)
        worst = 0.0
        w = self.add_worker('w1', 'p', tls_ca=self.cert).start()
        t0 = time.monotonic()
        while not self.worker_prop('w1', 'Connected'):
            worst = max(worst, self.get_latency())
            self.pump(0.05)
            if time.monotonic() - t0 > 30:
                self.fail('TLS worker not attached after 30 s among %d stalled handshakes:\n%s' %
                          (n, self.daemon_log()[-3000:]))
        attach = time.monotonic() - t0
        for _ in range(20):
            worst = max(worst, self.get_latency())
        print('%d stalled handshakes (%d bytes each) from %s: worker attached in %.1f s, '
              'worst D-Bus Get %.3f s, pause saved in %.2f s' %
              (n, len(payload), source, attach, worst, saved), file=sys.stderr)
        # buildbot-worker itself needs a few seconds to start on a busy machine.
        self.assertLess(attach, 15.0)
        self.assertLess(worst, 1.0)

        # Every stalled handshake is closed by the deadline (10 s).
        def all_closed():
            for s in hostile:
                s.setblocking(False)
                try:
                    if s.recv(65536) != b'':
                        continue
                except BlockingIOError:
                    return False
                except OSError:
                    pass
            return True
        self.wait_until(all_closed, timeout=max(0.0, started + 25 - time.monotonic()),
                        message='stalled handshakes closed by the deadline')
        self.assertTrue(self.worker_prop('w1', 'Connected'))
        w.stop()

    def test_partial_client_hellos(self):
        # Even from the worker's own address: they never reach the TLS code.
        self.check(client_hello()[:20], 400, '127.0.0.1')

    def test_client_hellos_then_silence(self):
        # Whole ClientHellos start handshakes, a few at a time per address.
        self.check(client_hello(), 200, '127.0.0.2')

    def test_client_hellos_from_the_workers_address(self):
        # Same address: the worker, newest in the queue, gets the next turn
        # (a stalled one ends after 4 s).
        self.check(client_hello(), 200, '127.0.0.1')


class DescriptorExhaustionTest(EndpointTestCase):
    """Running out of descriptors pauses accepting: no busy loop, one log line
    per episode, and workers get in once descriptors are free again."""

    LIMIT = 64

    def accept_lines(self):
        return [line for line in self.daemon_log().splitlines()
                if 'Too many open files' in line or 'Cannot accept worker connections' in line or
                'Accepting connections again' in line]

    def test_emfile(self):
        self.write_config(self.daemon_section() + '[Worker w1]\nPassword=p\n')
        os.environ['BF_DAEMON_WRAPPER'] = 'prlimit --nofile=%d:%d' % (self.LIMIT, self.LIMIT)
        try:
            self.start_daemon()
        finally:
            del os.environ['BF_DAEMON_WRAPPER']
        pid = self.daemon.pid
        # More connections than the daemon has descriptors: the rest wait in
        # the kernel's backlog while accept() fails with EMFILE.
        self.open_many(self.LIMIT + 40, b'GET / HTTP/1.1\r\n')
        self.wait_until(lambda: 'Cannot accept worker connections' in self.daemon_log(), timeout=10,
                        message='a log line about running out of descriptors')
        ticks = cpu_ticks(pid)
        t0 = time.monotonic()
        self.pump(2.0)
        hz = os.sysconf('SC_CLK_TCK')
        cpu = (cpu_ticks(pid) - ticks) / hz / (time.monotonic() - t0)
        lines = self.accept_lines()
        print('EMFILE: CPU %.0f %%, %d log lines about descriptors' % (cpu * 100, len(lines)),
              file=sys.stderr)
        self.assertLess(cpu, 0.25, 'the daemon spins while accept() fails')
        self.assertLessEqual(len(lines), 2, '\n'.join(lines[:10]))
        self.assertLess(self.get_latency(), 1.0)
        # The reserve keeps the daemon's own files writable: Pause persists.
        self.worker_call('w1', 'Pause', GLib.Variant('(s)', ('maintenance',)))
        self.wait_until(lambda: self.state_has('PauseReason=maintenance'), timeout=10, message='the pause saved while descriptors are short')
        self.assertNotIn('Cannot save', self.daemon_log())

        # Descriptors free up: the pending connections are served (and time
        # out), and a real worker attaches.
        for s in self.sockets:
            s.close()
        self.sockets = []
        self.add_worker('w1', 'p').start()
        self.wait_connected('w1', timeout=30)
        self.wait_until(lambda: 'Accepting connections again' in self.daemon_log(), timeout=10,
                        message='the end of the episode in the log')
        lines = self.accept_lines()
        print('EMFILE: %d log lines in all' % len(lines), file=sys.stderr)
        self.assertLessEqual(len(lines), 6, '\n'.join(lines[:10]))


class PasswordGuessingTest(EndpointTestCase):
    """Wrong passwords from one address are throttled and summarised in the
    log; a worker from another address is not affected."""

    GUESSES = 300

    def request(self, source, name, password):
        s = connect(self.port, source)
        key = base64.b64encode(os.urandom(16)).decode()
        auth = base64.b64encode(('%s:%s' % (name, password)).encode()).decode()
        s.sendall(('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                   'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n'
                   'Authorization: Basic %s\r\n\r\n' % (key, auth)).encode())
        s.settimeout(10)
        head = b''
        while b'\r\n' not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        s.close()
        return int(head.split(b' ', 2)[1]) if head else 0

    def test_guessing(self):
        self.write_config(self.daemon_section() + '[Worker w1]\nPassword=right\n')
        self.start_daemon()
        statuses = {}
        t0 = time.monotonic()
        for i in range(self.GUESSES):
            st = self.request('127.0.0.2', 'w1', 'guess%d' % i)
            statuses[st] = statuses.get(st, 0) + 1
        elapsed = time.monotonic() - t0
        checked = statuses.get(401, 0)
        print('%d guesses in %.1f s: %r' % (self.GUESSES, elapsed, statuses), file=sys.stderr)
        self.assertEqual(checked + statuses.get(429, 0), self.GUESSES, statuses)
        self.assertLessEqual(checked, 10, 'passwords checked: %r' % statuses)

        # Even the right password is refused from the throttled address
        # (the guesses ended with the address blocked for a second or more).
        self.assertEqual(self.request('127.0.0.2', 'w1', 'right'), 429)

        # The right password from another address is accepted at once ...
        self.assertEqual(self.request('127.0.0.1', 'w1', 'right'), 101)
        # ... and a real worker from there attaches.
        t = time.monotonic()
        self.add_worker('w1', 'right').start()
        self.wait_connected('w1', timeout=15)
        print('worker from 127.0.0.1 attached in %.1f s' % (time.monotonic() - t), file=sys.stderr)

        # The log summarises instead of one line per guess.
        self.wait_until(lambda: 'failed logins from 127.0.0.2' in self.daemon_log(), timeout=20,
                        message='a summary of the failed logins')
        lines = [line for line in self.daemon_log().splitlines()
                 if '127.0.0.2' in line and 'debug' not in line.lower()]
        print('log lines naming 127.0.0.2: %d' % len(lines), file=sys.stderr)
        # The first five failures one by one, then summaries.
        self.assertLessEqual(len(lines), 8, '\n'.join(lines[:20]))


if __name__ == '__main__':
    bfharness.main()
