#!/usr/bin/python3
# test_pb.py: workers speaking Perspective Broker (issue 13)
#
# Debian's buildbot-worker 3.7 created WITHOUT --protocol (Buildbot's
# default, PB) attaches on the ListenPB= endpoint with its info, runs
# commands with streamed output and exit codes, can be interrupted, and a
# second concurrent command of one builder is refused with Busy.  Raw
# hostile PB peers (a socket speaking banana) are dropped with a reason
# while another worker stays attached; peers on the wrong endpoint are
# told where to go.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bfharness  # noqa: E402
from bfharness import BUILD_IFACE, COMMAND_IFACE, FLEET_PATH, MANAGER_IFACE, worker_path  # noqa: E402
from gi.repository import GLib  # noqa: E402

# Twisted's pb vocabulary (twisted.spread.banana.Banana.incomingVocabulary)
VOCAB = [None, 'None', 'class', 'dereference', 'reference', 'dictionary', 'function', 'instance',
         'list', 'module', 'persistent', 'tuple', 'unpersistable', 'copy', 'cache', 'cached',
         'remote', 'local', 'lcache', 'version', 'login', 'password', 'challenge', 'logged_in',
         'not_logged_in', 'cachemessage', 'message', 'answer', 'error', 'decref', 'decache',
         'uncache']


def b128(n):
    out = bytearray()
    while True:
        out.append(n & 0x7f)
        n >>= 7
        if not n:
            return bytes(out)


def banana(v):
    """Encodes lists, ints, floats, str/bytes (as STRING) the way Twisted does."""
    if isinstance(v, list):
        return b128(len(v)) + b'\x80' + b''.join(banana(x) for x in v)
    if isinstance(v, bool):
        raise TypeError('jelly booleans are ["boolean", ...]')
    if isinstance(v, int):
        return b128(v) + b'\x81' if v >= 0 else b128(-v) + b'\x83'
    if isinstance(v, float):
        return b'\x84' + struct.pack('>d', v)
    if isinstance(v, str):
        v = v.encode()
    return b128(len(v)) + b'\x82' + v


def unicode(s):
    return ['unicode', s.encode()]


def message(req, obj, name, args, kw=None):
    return ['message', req, obj, name, 1, ['tuple'] + list(args), ['dictionary'] + (kw or [])]


class RawPB:
    """One hand-made PB peer: banana bytes out, decoded expressions in."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.buf = b''

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else banana(data))

    def _recv_more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _item(self):
        # one banana item from self.buf (raises IndexError when incomplete)
        i = 0
        n = 0
        shift = 0
        while self.buf[i] < 0x80:
            n |= self.buf[i] << shift
            shift += 7
            i += 1
        t = self.buf[i]
        i += 1
        if t == 0x80:
            self.buf = self.buf[i:]
            return ('list', n)
        if t in (0x81, 0x85):
            val = n
        elif t in (0x83, 0x86):
            val = -n
        elif t == 0x82:
            if len(self.buf) < i + n:
                raise IndexError
            val = self.buf[i:i + n]
            i += n
        elif t == 0x84:
            if len(self.buf) < i + 8:
                raise IndexError
            val = struct.unpack('>d', self.buf[i:i + 8])[0]
            i += 8
        elif t == 0x87:
            val = VOCAB[n].encode()
        else:
            raise ValueError('type byte %#x' % t)
        self.buf = self.buf[i:]
        return val

    def expr(self):
        """The next top-level expression (lists as Python lists)."""
        while True:
            saved = self.buf
            try:
                return self._expr()
            except IndexError:
                self.buf = saved
                self._recv_more()

    def _expr(self):
        item = self._item()
        if isinstance(item, tuple):
            return [self._expr() for _ in range(item[1])]
        return item

    def closed_by_peer(self, timeout=10):
        """Whether the daemon closes the connection within @timeout."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def negotiate(self):
        offer = self.expr()
        assert offer == [b'pb', b'none'], offer
        self.send(banana(b'pb'))
        self.send(['version', 6])
        assert self.expr() == [b'version', 6]

    def login(self, name, password):
        """Twisted's login: returns the perspective's id."""
        self.send(message(1, 'root', 'login', [name.encode()]))
        answer = self.expr()
        assert answer[0] == b'answer' and answer[1] == 1, answer
        challenge, challenger = answer[2][1], answer[2][2][1]
        response = hashlib.md5(hashlib.md5(password.encode()).digest() + challenge).digest()
        self.send(message(2, challenger, 'respond', [response, ['remote', 1]]))
        while True:
            e = self.expr()
            if e[0] == b'answer' and e[1] == 2:
                return e[2][1]
            if e[0] == b'error':
                raise PermissionError(e)

    def close(self):
        self.sock.close()


class PBTestCase(bfharness.FleetTestCase):
    def fleet(self, *workers, **daemon):
        text = self.daemon_section(**daemon)
        for name in workers:
            text += '[Worker %s]\nPassword=pw-%s\nMaxBuilds=4\nBuilders=b;c\nMissingTimeout=60\n' % (name, name)
        self.write_config(text)
        self.start_daemon()
        self.assertIsNotNone(self.pb_port)

    def add_pb_worker(self, name, password=None, **kw):
        return self.add_worker(name, password or 'pw-' + name, port=self.pb_port, protocol='pb', **kw)

    def add_worker(self, name, password, port=None, **kw):
        w = bfharness.Worker(self, name, password, port or self.port, **kw)
        return w

    def log_has(self, text):
        return text in self.daemon_log()


class AttachTest(PBTestCase):
    def setUp(self):
        super().setUp()
        self.fleet('w1', 'w2')

    def test_default_worker_attaches_with_info(self):
        self.assertEqual(len(self.manager_prop('ListenPB')), 1)
        self.add_pb_worker('w1', admin='Jane <jane@example.com>', host='rack 4').start()
        self.wait_connected('w1')
        self.wait_signal('Attached', worker_path('w1'))
        p = self.props(worker_path('w1'), bfharness.WORKER_IFACE)
        self.assertEqual(p['Protocol'], 'pb')
        self.assertEqual(p['Admin'], 'Jane <jane@example.com>')
        self.assertEqual(p['Host'], 'rack 4')
        self.assertTrue(p['Version'].startswith('3.7'))
        self.assertEqual(p['Info']['basedir'], self.workers[0].basedir)
        self.assertIn('numcpus', p['Info'])
        self.assertNotIn('environ', p['Info'])
        self.assertIn('shell', p['Commands'])
        self.assertIn('mkdir', p['Commands'])
        self.assertRegex(p['Peer'], r'^127\.0\.0\.1:\d+$')
        self.wait_until(lambda: 'attached to buildfleetd' in self.workers[0].log(), message='hello printed')

    def test_wrong_password_refused_then_reload_lets_it_in(self):
        w = self.add_pb_worker('w1', 'not-the-password').start()
        self.wait_until(lambda: self.log_has('Authentication failed for worker “w1” from 127.0.0.1:'),
                        timeout=15, message='auth failure logged')
        self.assertIn('wrong password', self.daemon_log())
        self.assertNotIn('not-the-password', self.daemon_log())
        self.wait_until(lambda: 'unauthorized login; check worker name and password' in w.log(),
                        timeout=15, message='worker told unauthorized')
        # It keeps retrying (a refusal that is not UnauthorizedLogin would
        # stop its reactor) ...
        self.wait_until(lambda: w.log().count('unauthorized login') >= 2, timeout=30,
                        message='second attempt')
        self.assertTrue(w.running())
        self.assertFalse(self.worker_prop('w1', 'Connected'))
        # ... so once the password is right, it attaches by itself.
        with open(self.config_path) as f:
            text = f.read().replace('Password=pw-w1', 'Password=not-the-password')
        self.write_config(text)
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')
        self.wait_connected('w1', timeout=60)
        self.assertEqual(self.worker_prop('w1', 'Protocol'), 'pb')

    def test_unknown_name_looks_like_wrong_password(self):
        raw = RawPB(self.pb_port)
        raw.negotiate()
        with self.assertRaises(PermissionError) as e1:
            raw.login('nobody', 'x')
        raw.close()
        raw = RawPB(self.pb_port)
        raw.negotiate()
        with self.assertRaises(PermissionError) as e2:
            raw.login('w2', 'wrong')
        raw.close()
        # The same failure either way: type and text
        self.assertEqual(e1.exception.args[0][2], e2.exception.args[0][2])
        self.assertIn(b'twisted.cred.error.UnauthorizedLogin', repr(e1.exception.args[0]).encode())
        self.wait_until(lambda: self.log_has('no such worker is configured'), message='unknown logged')


    def test_guessing_is_throttled_per_address(self):
        # The same guard as the WebSocket endpoint: after 5 failures in a
        # row the address is refused unchecked for a while.
        texts = []
        for _ in range(8):
            raw = RawPB(self.pb_port)
            raw.negotiate()
            try:
                raw.login('w2', 'guess')
            except PermissionError as e:
                texts.append(repr(e.args[0]))
            raw.close()
        self.assertEqual(len(texts), 8)
        self.assertTrue(all('unauthorized login' in t for t in texts[:5]), texts[:5])
        self.assertIn('retry later', texts[-1])
        self.wait_until(lambda: self.log_has('refused unchecked while throttled'), timeout=15,
                        message='throttling summarised')


class BuildTest(PBTestCase):
    def setUp(self):
        super().setUp()
        self.fleet('w1', FinishedBuildLifetime='30')
        self.add_pb_worker('w1').start()
        self.wait_connected('w1')
        self.build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                               GLib.Variant('(sa{sv})', ('b', {})))[0]
        self.wait_until(lambda: self.prop(self.build, BUILD_IFACE, 'State') == 'running',
                        timeout=20, message='build running')

    def shell(self, command, **extra):
        args = {'command': GLib.Variant('as', command)}
        args.update(extra)
        return self.call(self.build, BUILD_IFACE, 'RunCommand', GLib.Variant('(sa{sv})', ('shell', args)))[0]

    def output(self, command, stream):
        return ''.join(s[3][1] for s in self.signals_named('Output', command) if s[3][0] == stream)

    def test_streams_and_exit_code(self):
        workdir = os.path.join(self.workdir, 'wd')
        cmd = self.shell(['sh', '-c', 'echo out; echo err >&2; pwd; echo "$FOO"; exit 3'],
                         workdir=GLib.Variant('s', workdir),
                         env=GLib.Variant('a{ss}', {'FOO': 'bar baz'}))
        code, failure = self.wait_signal('Completed', cmd, timeout=30)[0][3]
        self.assertEqual((code, failure), (3, ''))
        self.assertEqual(self.output(cmd, 'stdout'), 'out\n%s\nbar baz\n' % workdir)
        self.assertEqual(self.output(cmd, 'stderr'), 'err\n')
        self.assertIn('sh -c', self.output(cmd, 'header'))
        # relative paths are under the builder directory
        rel = self.shell(['pwd'], workdir=GLib.Variant('s', 'src'))
        self.assertEqual(self.wait_signal('Completed', rel, timeout=30)[0][3][0], 0)
        self.assertEqual(self.output(rel, 'stdout'),
                         os.path.join(self.workers[0].basedir, 'b', 'src') + '\n')

    def test_interrupt(self):
        cmd = self.shell(['sh', '-c', 'echo started; sleep 60'])
        self.wait_until(lambda: 'started' in self.output(cmd, 'stdout'), timeout=20, message='output')
        self.call(cmd, COMMAND_IFACE, 'Interrupt', GLib.Variant('(s)', ('enough',)))
        code, failure = self.wait_signal('Completed', cmd, timeout=30)[0][3]
        self.assertNotEqual(code, 0)

    def test_second_command_of_builder_is_busy(self):
        cmd = self.shell(['sh', '-c', 'echo started; sleep 60'])
        self.wait_until(lambda: 'started' in self.output(cmd, 'stdout'), timeout=20, message='output')
        err, msg = self.call_error(self.build, BUILD_IFACE, 'RunCommand',
                                   GLib.Variant('(sa{sv})', ('shell', {'command': GLib.Variant('s', 'true')})))
        self.assertIn('Busy', err)
        self.assertIn('one command per builder', msg)
        # the first one is untouched
        self.assertEqual(self.prop(cmd, COMMAND_IFACE, 'State'), 'running')
        self.assertNotIn('leftover command', self.workers[0].log())

    def test_mkdir_of_several_paths_is_refused_clearly(self):
        err, msg = self.call_error(self.build, BUILD_IFACE, 'RunCommand',
                                   GLib.Variant('(sa{sv})', ('mkdir', {'paths': GLib.Variant('as', ['a', 'b'])})))
        self.assertIn('InvalidArgs', err)
        self.assertIn('once per path', msg)
        one = self.call(self.build, BUILD_IFACE, 'RunCommand',
                        GLib.Variant('(sa{sv})', ('mkdir', {'paths': GLib.Variant('as', ['made'])})))[0]
        self.assertEqual(self.wait_signal('Completed', one, timeout=30)[0][3], (0, ''))
        self.assertTrue(os.path.isdir(os.path.join(self.workers[0].basedir, 'b', 'made')))


# Each hostile peer: what it sends after the dialect and version (and a
# login when `login` is set), and the reason the daemon logs.
HOSTILE = [
    ('jelly class', False,
     banana(message(1, 'root', 'login', [['class', 'os.system']])), "refused 'class'"),
    ('jelly instance', False,
     banana(message(1, 'root', 'login', [['instance', 'os.Foo', ['dictionary']]])), "refused 'instance'"),
    ('oversize string', False, b128(700 * 1024) + b'\x82', 'string longer than'),
    ('too deep lists', False, b'\x01\x80' * 100 + b'\x00\x81', 'nested deeper than'),
    ('unknown vocabulary', False, b128(99) + b'\x87', 'unknown vocabulary index'),
    ('a call before login', False,
     banana(message(1, 'root', 'keepalive', [])), 'only login is offered'),
    ('a call to an object never given', False,
     banana(message(1, 7, 'keepalive', [])), 'never given'),
    ('a caching message', True,
     banana(['cachemessage', 5, 1, 'x', 1, ['tuple'], ['dictionary']]), 'not part of the protocol'),
    ('jelly class after login', True,
     banana(message(5, 'PERSPECTIVE', 'keepalive', [['class', 'os.system']])), "refused 'class'"),
]


class HostilePeerTest(PBTestCase):
    def setUp(self):
        super().setUp()
        self.fleet('w1', 'w2')
        self.add_pb_worker('w1').start()
        self.wait_connected('w1')

    def assert_dropped(self, raw, reason, what):
        self.assertTrue(raw.closed_by_peer(15), '%s: not dropped' % what)
        self.wait_until(lambda: any('Closing the PB connection' in line and reason in line
                                    for line in self.daemon_log().splitlines()),
                        timeout=10, message='%s: reason “%s” logged' % (what, reason))

    def test_hostile_peers_are_dropped_and_others_carry_on(self):
        for what, login, payload, reason in HOSTILE:
            with self.subTest(what):
                raw = RawPB(self.pb_port)
                raw.negotiate()
                if login:
                    perspective = raw.login('w2', 'pw-w2')
                    payload = payload.replace(banana('PERSPECTIVE'), banana(perspective))
                raw.send(payload)
                self.assert_dropped(raw, reason, what)
                raw.close()
        self.assertIsNone(self.daemon.poll())
        self.assertTrue(self.worker_prop('w1', 'Connected'))
        self.assertEqual(self.worker_prop('w1', 'Protocol'), 'pb')

    def test_flood_of_calls(self):
        from test_hostile_endpoints import sanitized
        raw = RawPB(self.pb_port)
        raw.negotiate()
        perspective = raw.login('w2', 'pw-w2')
        one = banana(message(9, perspective, 'keepalive', []))
        try:
            raw.send(one * 40000)
        except OSError:
            pass
        if sanitized(self.daemon.pid):
            # A sanitizer build handles fewer calls a second than the
            # limit (5000/s, bursts of 20000): the flood is then only slow.
            # What must hold either way: the daemon and w1 carry on.
            raw.closed_by_peer(5)
        else:
            self.assert_dropped(raw, 'calls per second', 'flood')
        raw.close()
        self.assertIsNone(self.daemon.poll())
        self.assertTrue(self.worker_prop('w1', 'Connected'))

    def test_silent_peer_times_out(self):
        raw = RawPB(self.pb_port)
        self.assertTrue(raw.closed_by_peer(60))
        self.wait_until(lambda: self.log_has('nothing received before the login deadline'),
                        message='login deadline logged')
        self.assertTrue(self.worker_prop('w1', 'Connected'))


class LooksLikeTest(PBTestCase):
    def setUp(self):
        super().setUp()
        self.fleet('w1')

    def test_http_on_pb_endpoint(self):
        s = socket.create_connection(('127.0.0.1', self.pb_port), timeout=10)
        s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n')
        self.wait_until(lambda: self.log_has('this looks like a WebSocket (msgpack) worker'),
                        message='looks-like logged')
        line = [l for l in self.daemon_log().splitlines() if 'looks like a WebSocket' in l]
        self.assertEqual(len(line), 1)
        self.assertIn('point it at the Listen= port %d' % self.port, line[0])
        s.close()

    def test_tls_on_pb_endpoint_without_certificate(self):
        s = socket.create_connection(('127.0.0.1', self.pb_port), timeout=10)
        s.sendall(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + b'\x00' * 64)
        self.wait_until(lambda: self.log_has('this looks like a TLS ClientHello'), message='TLS logged')
        s.close()

    def test_silent_peer_on_websocket_endpoint(self):
        # What a PB worker pointed at the msgpack port does: wait for us.
        s = socket.create_connection(('127.0.0.1', self.port), timeout=30)
        self.wait_until(lambda: self.log_has('this looks like a PB worker'), timeout=20,
                        message='looks-like-PB logged')
        line = [l for l in self.daemon_log().splitlines() if 'looks like a PB worker' in l]
        self.assertEqual(len(line), 1)
        self.assertIn('point it at the ListenPB= port %d' % self.pb_port, line[0])
        s.close()


class TlsTest(PBTestCase):
    def tls_fleet(self):
        from test_hostile_endpoints import make_cert
        cert, key = make_cert(self.workdir)
        self.fleet('w1', TlsCertificate=cert, TlsPrivateKey=key)
        return cert

    def test_use_tls_worker_attaches(self):
        cert = self.tls_fleet()
        self.add_pb_worker('w1', tls_ca=cert).start()
        self.wait_connected('w1', timeout=30)
        self.assertEqual(self.worker_prop('w1', 'Protocol'), 'pb')

    def test_stalled_tls_logins_are_bounded_per_address(self):
        # Each TLS login holds a handshake thread: at most 8 from one
        # address are under way; the 9th and later are closed at once.
        self.tls_fleet()
        socks = [socket.create_connection(('127.0.0.1', self.pb_port), timeout=5) for _ in range(12)]
        closed = []
        for s in socks:
            s.settimeout(0.5)
            try:
                closed.append(s.recv(1) == b'')
            except socket.timeout:
                closed.append(False)
            except ConnectionResetError:
                closed.append(True)
        self.assertEqual(closed.count(False), 8, closed)
        self.assertEqual(closed[:8], [False] * 8)
        for s in socks:
            s.close()


if __name__ == '__main__':
    bfharness.main()
