#!/usr/bin/python3
# Real buildbot-worker processes attach: info, authentication, liveness,
# missing alerts, duplicates, shutdown, graceful, TLS and malformed input.
# The classes marked @for_both_protocols run twice: XxxTest with msgpack
# workers, XxxPbTest with PB workers (buildbot-worker's default protocol).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import subprocess
import time

import msgpack
from gi.repository import GLib

import bfharness
from bfharness import FLEET_PATH, MANAGER_IFACE, RawWebSocket, for_both_protocols, worker_path


# test_wrong_password_and_unknown_name talks to the WebSocket endpoint
# with a raw client; test_pb.py has PB's own.
@for_both_protocols(msgpack_only=('test_wrong_password_and_unknown_name',))
class AttachTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section() +
                          '[Worker w1]\nPassword=pw-one\nBuilders=b\nMissingTimeout=1\n'
                          'NotifyOnMissing=ops@example.com\n'
                          '[Worker w2]\nPassword=pw-two\nBuilders=b\n')
        self.start_daemon()

    def test_attach_with_info(self):
        before = time.time()
        self.add_worker('w1', 'pw-one', admin='Jane <jane@example.com>', host='rack 4').start()
        self.wait_connected('w1')
        self.wait_signal('Attached', worker_path('w1'))
        p = self.props(worker_path('w1'), bfharness.WORKER_IFACE)
        self.assertTrue(p['Connected'])
        self.assertEqual(p['Admin'], 'Jane <jane@example.com>')
        self.assertEqual(p['Host'], 'rack 4')
        self.assertTrue(p['Version'].startswith('3.7'))
        self.assertEqual(p['Info']['admin'], 'Jane <jane@example.com>')
        self.assertEqual(p['Info']['basedir'], self.workers[0].basedir)
        self.assertIn('numcpus', p['Info'])
        self.assertNotIn('environ', p['Info'])
        self.assertIn('shell', p['Commands'])
        self.assertIn('mkdir', p['Commands'])
        self.assertEqual(p['Protocol'], self.protocol)
        self.assertRegex(p['Peer'], r'^127\.0\.0\.1:\d+$')
        self.assertGreaterEqual(p['ConnectedSinceUSec'] / 1e6, before - 1)
        self.assertEqual(p['DisconnectedSinceUSec'], 0)
        self.assertGreater(p['LastMessageUSec'], 0)
        self.assertEqual(self.manager_prop('WorkersConnected'), 1)
        self.assertFalse(self.worker_prop('w2', 'Connected'))
        self.assertIn('attached', self.workers[0].log())

    def test_wrong_password_and_unknown_name(self):
        w = self.add_worker('w1', 'not-the-password').start()
        # As long as a buildbot-worker takes to start on a busy machine.
        self.wait_until(lambda: 'Authentication failed for worker “w1” from 127.0.0.1:' in self.daemon_log(),
                        timeout=30, message='auth failure logged')
        self.assertIn('wrong password', self.daemon_log())
        self.assertNotIn('not-the-password', self.daemon_log())
        self.assertFalse(self.worker_prop('w1', 'Connected'))
        w.stop()
        ws = RawWebSocket(self.port, 'nobody', 'x')
        self.assertEqual(ws.status, 401)
        ws.close()
        ws = RawWebSocket(self.port, 'w2', 'wrong')
        self.assertEqual(ws.status, 401)
        ws.close()
        self.wait_until(lambda: 'no such worker is configured' in self.daemon_log(),
                        message='unknown worker logged')
        self.assertEqual(self.manager_prop('WorkersConnected'), 0)

    def test_kill_missing_back_online(self):
        w = self.add_worker('w1', 'pw-one').start()
        self.wait_connected('w1')
        path = worker_path('w1')
        # A worker never seen counts as disconnected since the daemon's
        # start: one that takes longer than MissingTimeout (1 s) to start,
        # as on a busy machine, was rightly missing before it came.  Let
        # that incident finish, then count from here.  (Its Missing came
        # before the Connected we just read: dispatch what arrived first.)
        self.pump()
        if self.signals_named('Missing', path):
            self.wait_signal('BackOnline', path, timeout=15)
            self.wait_until(lambda: len(self.mails()) == 2, message='start-up incident mails')
        self.signals.clear()
        base = len(self.mails())
        w.kill(signal.SIGKILL)
        # Seen as the closed connection it is, not by keepalive two intervals
        # later (the reason says which, however slowly this machine runs).
        detached = self.wait_signal('Detached', path, timeout=10)
        self.assertEqual(detached[0][3][0], 'connection lost')
        self.assertFalse(self.worker_prop('w1', 'Connected'))
        since = self.worker_prop('w1', 'DisconnectedSinceUSec')
        self.assertGreater(since, 0)
        self.assertEqual(self.worker_prop('w1', 'Peer'), '')
        self.assertEqual(self.worker_prop('w1', 'Protocol'), '')
        # Missing comes once MissingTimeout (1 s) has passed since the
        # disconnect, never before: what the test sees it can only see
        # later than the daemon sent it, so seeing it early is a real bug.
        sig = self.wait_signal('Missing', path, timeout=10)
        self.assertGreaterEqual(time.time(), since / 1e6 + 1.0 - 0.005)
        self.assertEqual(sig[0][3][0], since)
        self.assertTrue(self.worker_prop('w1', 'Missing'))
        self.wait_until(lambda: len(self.mails()) == base + 1, message='missing mail')
        self.assertIn('is missing', self.mails()[base])
        # Back: BackOnline and a second mail.
        w.start()
        self.wait_signal('BackOnline', path, timeout=15)
        self.assertFalse(self.worker_prop('w1', 'Missing'))
        self.assertTrue(self.worker_prop('w1', 'Connected'))
        self.assert_protocol('w1')
        self.wait_until(lambda: len(self.mails()) == base + 2, message='back online mail')
        self.assertIn('back online', self.mails()[base + 1])
        self.assertEqual(self.manager_prop('WorkersMissing'), 0)

    def test_short_absence_raises_nothing(self):
        self.add_worker('w2', 'pw-two').start()
        self.wait_connected('w2')
        self.worker_call('w2', 'Disconnect')
        self.wait_signal('Detached', worker_path('w2'))
        # The worker reconnects by itself after its backoff.
        self.wait_connected('w2', timeout=10)
        self.assert_stays(lambda: not self.signals_named('Missing', worker_path('w2')) and
                          not self.signals_named('BackOnline', worker_path('w2')) and
                          not any('worker w2' in m for m in self.mails()), 1.2,
                          'no missing alarm for a short absence')
        self.assertEqual(self.signals_named('Detached', worker_path('w2'))[0][3][0],
                         'disconnected by administrator')


@for_both_protocols
class LivenessTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(KeepaliveInterval='1') +
                          '[Worker w1]\nPassword=p\nMissingTimeout=60\n'
                          '[Worker w2]\nPassword=p\nMissingTimeout=60\n')
        self.start_daemon()

    def test_stopped_worker_dropped_by_keepalive(self):
        w = self.add_worker('w1', 'p').start()
        other = self.add_worker('w2', 'p').start()
        self.wait_connected('w1')
        self.wait_connected('w2')
        stopped = time.monotonic()
        w.kill(signal.SIGSTOP)
        sig = self.wait_signal('Detached', worker_path('w1'), timeout=15)
        seen = time.time()
        took = time.monotonic() - stopped
        self.assertEqual(sig[0][3][0], 'keepalive timeout')
        # Dropped after two intervals (2 s) of silence, never before.  The
        # silence began at the worker's last message, LastMessageUSec, which
        # the daemon publishes at most once a second: never later than the
        # message, so the bound holds whenever the drop was not early.
        last = self.worker_prop('w1', 'LastMessageUSec') / 1e6
        self.assertGreaterEqual(seen - last, 2.0 - 0.01)
        # Checked twice an interval: 2.5 s after the last message, plus a
        # busy machine's slack.
        self.assertLess(took, 10.0)
        # The other worker answers its pings and stays.
        self.assertTrue(self.worker_prop('w2', 'Connected'))
        self.assertEqual(self.signals_named('Detached', worker_path('w2')), [])
        # Its LastMessageUSec moves: within the 2.5 s a live worker is kept,
        # plus the second the published value may lag.
        last = self.worker_prop('w2', 'LastMessageUSec')
        self.assertLess(time.time() - last / 1e6, 4.0)
        # Resumed, it reconnects.
        w.kill(signal.SIGCONT)
        self.wait_connected('w1', timeout=20)


@for_both_protocols
class DuplicateTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        # Keepalive slow enough that a stopped worker is noticed by the
        # duplicate check, not by keepalive, however long the second
        # buildbot-worker takes to start on a busy machine.
        self.write_config(self.daemon_section(DuplicatePingTimeout='0.5', KeepaliveInterval='30') +
                          '[Worker w1]\nPassword=p\nMissingTimeout=60\n')
        self.start_daemon()

    def test_live_old_connection_wins(self):
        first = self.add_worker('w1', 'p').start()
        self.wait_connected('w1')
        peer = self.worker_prop('w1', 'Peer')
        second = self.add_worker('w1', 'p').start()
        self.wait_until(lambda: 'Refused a second connection for worker w1' in self.daemon_log(),
                        timeout=30, message='duplicate refused')
        log = self.daemon_log()
        self.assertIn('the connection from %s still answers' % peer, log)
        self.assertEqual(self.worker_prop('w1', 'Peer'), peer)
        self.assertEqual(self.signals_named('Detached'), [])
        self.assertTrue(first.running())
        second.stop()

    def test_dead_old_connection_is_replaced(self):
        first = self.add_worker('w1', 'p').start()
        self.wait_connected('w1')
        old_peer = self.worker_prop('w1', 'Peer')
        first.kill(signal.SIGSTOP)
        self.add_worker('w1', 'p').start()
        # As long as a second buildbot-worker takes to start on this machine.
        sig = self.wait_signal('Detached', worker_path('w1'), timeout=30)
        self.assertTrue(sig[0][3][0].startswith('replaced by a new connection from 127.0.0.1:'))
        self.wait_signal('Attached', worker_path('w1'), count=2, timeout=30)
        self.assertNotEqual(self.worker_prop('w1', 'Peer'), old_peer)
        self.assertTrue(self.worker_prop('w1', 'Connected'))
        self.assert_protocol('w1')
        self.assertIn('did not answer', self.daemon_log())
        self.assertEqual(self.manager_prop('WorkersConnected'), 1)


@for_both_protocols
class ShutdownTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section() + '[Worker w1]\nPassword=p\n[Worker w2]\nPassword=p\n')
        self.start_daemon()

    def test_shutdown_ends_worker_process(self):
        w = self.add_worker('w1', 'p').start()
        self.wait_connected('w1')
        self.worker_call('w1', 'Shutdown')
        self.wait_until(lambda: not w.running(), timeout=10, message='worker process exits')
        self.wait_connected('w1', value=False)

    def test_graceful_idle_worker_shuts_down(self):
        w = self.add_worker('w2', 'p').start()
        self.wait_connected('w2')
        self.worker_call('w2', 'SetGraceful', GLib.Variant('(b)', (True,)))
        self.wait_until(lambda: not w.running(), timeout=10, message='graceful worker exits')
        self.assertTrue(self.worker_prop('w2', 'Graceful'))


# test_plain_worker_refused waits for the WebSocket endpoint's words for
# a peer that does not start a TLS handshake.
@for_both_protocols(msgpack_only=('test_plain_worker_refused',))
class TlsTest(bfharness.FleetTestCase):
    def start_tls_daemon(self):
        cert = os.path.join(self.workdir, 'cert.pem')
        key = os.path.join(self.workdir, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
                        '-keyout', key, '-out', cert], check=True, capture_output=True)
        self.write_config(self.daemon_section(TlsCertificate=cert, TlsPrivateKey=key) +
                          '[Worker w1]\nPassword=p\n[Worker plain]\nPassword=p\n')
        self.start_daemon()
        return cert

    def test_tls_attach(self):
        cert = self.start_tls_daemon()
        self.add_worker('w1', 'p', tls_ca=cert).start()
        self.wait_connected('w1', timeout=20)
        self.assert_protocol('w1')

    def test_plain_worker_refused(self):
        self.start_tls_daemon()
        # A worker without TLS cannot talk to a TLS endpoint.
        w = self.add_worker('plain', 'p').start()
        # Once it has really tried (not merely not started yet): refused.
        self.wait_until(lambda: 'does not start a TLS handshake' in self.daemon_log(), timeout=30,
                        message='the plain worker tried the TLS endpoint')
        # ... and not merely slow to attach: it stays out (an attach takes
        # well under a second once connected).
        self.assert_stays(lambda: not self.worker_prop('plain', 'Connected'), 3.0,
                          'a plain worker attached to a TLS endpoint')
        w.stop()


class MalformedInputTest(bfharness.FleetTestCase):
    """Bad bytes close the offending connection with a reason; the daemon and
    the other workers carry on."""

    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(MaxMessageSize='65536') +
                          '[Worker good]\nPassword=p\n[Worker evil]\nPassword=p\nMissingTimeout=60\n')
        self.start_daemon()
        self.add_worker('good', 'p').start()
        self.wait_connected('good')

    def raw(self):
        ws = RawWebSocket(self.port, 'evil', 'p')
        self.assertEqual(ws.status, 101)
        return ws

    def attached_raw(self):
        """A raw client that answers the attach sequence like a worker."""
        ws = self.raw()
        ws.answer_attach()
        self.wait_connected('evil')
        return ws

    def assert_closed(self, ws, words, log_words=()):
        closed = ws.close_reason()
        if words:
            self.assertIsNotNone(closed, 'no close frame')
        # While a client is still sending, the close frame can be lost to a
        # TCP reset; then the daemon's log says why.
        code, reason = closed or (None, '')
        for w in words:
            self.assertIn(w, reason)
        for w in log_words:
            self.wait_until(lambda: w in self.daemon_log(), message='%r in the log' % w)
        ws.close()
        self.assertIsNone(self.daemon.poll())
        self.assertTrue(self.worker_prop('good', 'Connected'))
        return code, reason

    def test_text_frame(self):
        ws = self.raw()
        ws.send_frame(b'hello', opcode=1)
        self.assert_closed(ws, ['text frame'])

    def test_not_msgpack(self):
        ws = self.raw()
        ws.send_frame(b'\xc1\xc1\xc1')
        self.assert_closed(ws, ['undecodable'])

    def test_truncated_msgpack(self):
        ws = self.raw()
        ws.send_frame(msgpack.packb({'op': 'update', 'seq_number': 1})[:-3])
        self.assert_closed(ws, ['undecodable'])

    def test_not_a_map(self):
        ws = self.raw()
        ws.send_frame(msgpack.packb([1, 2, 3]))
        self.assert_closed(ws, ['not a map'])

    def test_missing_keys(self):
        ws = self.raw()
        ws.send_frame(msgpack.packb({'seq_number': 1}))
        self.assert_closed(ws, ['"op"'])
        ws = self.raw()
        ws.send_frame(msgpack.packb({'op': 'update'}))
        self.assert_closed(ws, ['seq_number'])

    def test_unknown_op_gets_error_response(self):
        ws = self.attached_raw()
        ws.send_frame(msgpack.packb({'op': 'teleport', 'seq_number': 0}))
        ws.sock.settimeout(5)
        while True:
            op, payload = ws.recv_frame()
            msg = msgpack.unpackb(payload) if op == 2 else {}
            if msg.get('op') == 'response':
                break
        self.assertEqual(msg['seq_number'], 0)
        self.assertTrue(msg['is_exception'])
        self.assertIn('teleport', msg['result'])
        self.assertTrue(self.worker_prop('evil', 'Connected'))
        ws.close()

    def test_response_never_requested(self):
        ws = self.attached_raw()
        ws.send_frame(msgpack.packb({'op': 'response', 'seq_number': 999, 'result': None}))
        self.assert_closed(ws, ['never sent'])
        sig = self.wait_signal('Detached', worker_path('evil'))
        self.assertIn('never sent', sig[0][3][0])

    def test_oversized_message(self):
        ws = self.raw()
        ws.send_frame(msgpack.packb({'op': 'update', 'seq_number': 0, 'args': 'x' * 200000}))
        code, _ = self.assert_closed(ws, [], ['evil', 'failed to attach'])
        self.assertIn(code, (None, 1009))

    def test_deeply_nested(self):
        ws = self.raw()
        ws.send_frame(b'\x91' * 60000 + b'\xc0')
        self.assert_closed(ws, ['undecodable', 'deep'])

    def test_flood(self):
        ws = self.attached_raw()
        msg = msgpack.packb({'op': 'teleport', 'seq_number': 0})
        # 100,000 frames in one write: past the burst of 20,000, more than
        # 5,000 a second unless the daemon took over 16 s to read them,
        # however slowly this process runs.
        mask = b'\x01\x02\x03\x04'
        frame = bytes([0x82, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg))
        try:
            ws.sock.sendall(frame * 100000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.wait_until(lambda: 'messages per second' in self.daemon_log(), timeout=30,
                        message='the flood named in the log')
        self.assert_closed(ws, [], ['messages per second'])
        self.wait_signal('Detached', worker_path('evil'))

    def test_garbage_http(self):
        import socket
        s = socket.create_connection(('127.0.0.1', self.port))
        s.sendall(b'\x00\x01\x02 garbage \r\n\r\n' * 100)
        s.settimeout(5)
        try:
            s.recv(100)
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        self.assertIsNone(self.daemon.poll())
        self.assertTrue(self.worker_prop('good', 'Connected'))


class ManyWorkersTest(bfharness.FleetTestCase):
    """Several real worker processes at once; counters stay right.  Half of
    them speak PB: one daemon, both protocols (run once, not per
    protocol)."""

    def test_twenty_workers(self):
        n = 20
        self.write_config(self.daemon_section() +
                          ''.join('[Worker w%02d]\nPassword=p%d\n' % (i, i) for i in range(n)))
        self.start_daemon()
        protocols = bfharness.PROTOCOLS
        workers = [self.add_worker('w%02d' % i, 'p%d' % i, protocol=protocols[i % len(protocols)])
                   for i in range(n)]
        start = time.monotonic()
        for w in workers:
            w.start()
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == n, timeout=60,
                        message='%d workers connected' % n)
        took = time.monotonic() - start
        print('%d real workers attached in %.1f s' % (n, took))
        for w in workers:
            self.assert_protocol(w.name, w.protocol)
        for w in workers[:5]:
            w.kill(signal.SIGKILL)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == n - 5, timeout=5,
                        message='counter after kills')


if __name__ == '__main__':
    bfharness.main()
