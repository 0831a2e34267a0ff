#!/usr/bin/python3
# test_pb_memory.py: a PB connection that keeps little while idle still
# carries big traffic both ways (issue 20)
#
# A plain PB connection is a bare socket in the daemon's epoll set: what
# the kernel does not take waits in a buffer made when needed and freed
# once sent (with the socket watched for output only meanwhile); the banana
# decoder's list stack and the broker's tables exist only while in use.
# These classes check what that must not break:
#  - a worker that stops reading gets every answer, in order, once it reads
#    again, megabytes of them having waited in the daemon; then the
#    connection is as before, and the daemon idles (a socket left watched
#    for output after draining would wake it up all the time);
#  - a real worker idle since it attached sends a megabyte of output (64 KiB
#    expressions, each spanning several reads) and every byte arrives.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import random
import socket
import string
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bfharness  # noqa: E402
from bfharness import BUILD_IFACE, FLEET_PATH, MANAGER_IFACE  # noqa: E402
from gi.repository import GLib  # noqa: E402
from test_pb import PBTestCase, RawPB, banana, message  # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')


def unicode(s):
    return ['unicode', s.encode()]


def tcp_queues(local_port, remote_port):
    """(send queue, receive queue) in bytes of the established IPv4 TCP
    socket local_port -> remote_port, from /proc/net/tcp; None if there is
    none.  (Other tests' closed connections may have used the same ports.)"""
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            fields = line.split()
            if (fields[3] == '01' and int(fields[1].split(':')[1], 16) == local_port and
                    int(fields[2].split(':')[1], 16) == remote_port):
                tx, rx = fields[4].split(':')
                return int(tx, 16), int(rx, 16)
    return None


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class SmallWindowPB(RawPB):
    """A raw PB peer with a fixed receive buffer: once it stops reading, the
    kernel holds at most that (and the daemon's send buffer) of what the
    daemon sends it.  Not much smaller: with loopback's 64 KiB segments a
    4 KiB buffer drops every segment and TCP backs off for minutes."""

    def __init__(self, port, rcvbuf=65536, timeout=60):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(('127.0.0.1', port))
        self.buf = b''
        self.received = 0

    def _recv_more(self):
        before = len(self.buf)
        super()._recv_more()
        self.received += len(self.buf) - before

    def answer_calls(self, e):
        """Answers a call of the daemon's (print, getWorkerInfo) as a worker
        would; returns the method's name, or None if @e is no call."""
        if e[0] != b'message':
            return None
        req, method = e[1], e[3]
        if method == b'getWorkerInfo':
            result = ['dictionary'] + [[unicode(k), unicode(v)] for k, v in (
                ('admin', 'test'), ('host', 'raw'), ('version', '3.7.0'), ('basedir', '/nonexistent/raw'))]
        else:
            result = ['None']
        self.send(['answer', req, result])
        return method

    def attach(self):
        """Answers the daemon's attach: print and getWorkerInfo."""
        seen = set()
        while seen != {b'print', b'getWorkerInfo'}:
            seen.add(self.answer_calls(self.expr()))
            seen.discard(None)


class SlowPeerTest(PBTestCase):
    def setUp(self):
        super().setUp()
        # no keepalive call during the test: the peer answers none while it does not read
        self.fleet('w1', 'w2', KeepaliveInterval='120')
        self.add_pb_worker('w1').start()
        self.wait_connected('w1')

    def test_answers_wait_for_a_worker_that_does_not_read(self):
        raw = SmallWindowPB(self.pb_port)
        raw.negotiate()
        perspective = raw.login('w2', 'pw-w2')
        raw.attach()
        self.wait_connected('w2')
        ours = raw.sock.getsockname()[1]

        # Small calls answered with a NoSuchMethod failure of about 500
        # bytes each: megabytes of answers the peer does not read for now
        # (the kernel takes up to about 4 MB of them: the daemon's send
        # buffer grows to tcp_wmem's 4 MB, ours stays at 128 KiB).  Sent in
        # batches, each read by the daemon before the next: a peer pushing
        # megabytes while its own window is shut can stall TCP itself.
        n, batch = 15000, 1500
        method = 'no_such_method_' + 'x' * 40

        def stuck():
            """The daemon read every call sent (its receive queue and our
            send queue are empty) and its answers wait."""
            theirs = tcp_queues(self.pb_port, ours)
            mine = tcp_queues(ours, self.pb_port)
            return theirs is not None and mine is not None and theirs[1] == 0 and mine[0] == 0 and theirs[0] > 0
        for first in range(0, n, batch):
            raw.send(b''.join(banana(message(100 + i, perspective, method, []))
                              for i in range(first, first + batch)))
            self.wait_until(stuck, timeout=60, message='the daemon read calls up to %d' % (first + batch))
        self.wait_until(stuck, timeout=10, message='the answers wait', keep_checking=1.0)
        in_kernel = tcp_queues(self.pb_port, ours)[0] + tcp_queues(ours, self.pb_port)[1]
        self.assertTrue(self.worker_prop('w2', 'Connected'))
        self.assertTrue(self.worker_prop('w1', 'Connected'))

        # Now it reads: every answer, in order.
        got = 0
        start = raw.received - len(raw.buf)
        while got < n:
            e = raw.expr()
            if raw.answer_calls(e):
                continue
            self.assertEqual(e[:2], [b'error', 100 + got])
            got += 1
        total = raw.received - len(raw.buf) - start
        print('%d answers, %.1f MB; at most %.2f MB of them were in the kernel, the rest waited in the daemon'
              % (n, total / 1e6, in_kernel / 1e6))
        self.assertGreater(total - in_kernel, 2_000_000, 'the daemon never buffered: the test proves nothing')

        # Drained: the daemon idles (no wake-up for a writable socket) ...
        start = cpu_seconds(self.daemon.pid)
        self.assert_stays(lambda: cpu_seconds(self.daemon.pid) - start < 0.3, 4.0,
                          'the daemon idles once the answers are out')
        # ... and the connection works as before.
        raw.send(message(99999, perspective, 'keepalive', []))
        while True:
            e = raw.expr()
            if not raw.answer_calls(e):
                break
        self.assertEqual(e[:2], [b'answer', 99999])
        self.assertTrue(self.worker_prop('w2', 'Connected'))
        self.assertTrue(self.worker_prop('w1', 'Connected'))
        raw.close()
        self.wait_connected('w2', value=False)
        self.assertIsNone(self.daemon.poll())


class OutputAfterIdleTest(PBTestCase):
    def setUp(self):
        super().setUp()
        self.fleet('w1', FinishedBuildLifetime='30')
        self.add_pb_worker('w1').start()
        self.wait_connected('w1')

    def test_megabyte_of_output_after_idle_arrives_whole(self):
        # idle since the attach: nothing kept for reading or decoding
        build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant('(sa{sv})', ('b', {})))[0]
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running', timeout=20,
                        message='build running')
        rng = random.Random(20)
        text = ''.join(''.join(rng.choice(string.ascii_letters) for _ in range(99)) + '\n'
                       for _ in range(10000))
        path = os.path.join(self.workdir, 'big.txt')
        with open(path, 'w') as f:
            f.write(text)
        cmd = self.call(build, BUILD_IFACE, 'RunCommand', GLib.Variant('(sa{sv})', (
            'shell', {'command': GLib.Variant('as', ['cat', path])})))[0]
        code, failure = self.wait_signal('Completed', cmd, timeout=60)[0][3]
        self.assertEqual((code, failure), (0, ''))
        got = ''.join(s[3][1] for s in self.signals_named('Output', cmd) if s[3][0] == 'stdout')
        self.assertEqual(len(got), len(text))
        self.assertEqual(got, text)
        self.assertTrue(self.worker_prop('w1', 'Connected'))


if __name__ == '__main__':
    bfharness.main()
