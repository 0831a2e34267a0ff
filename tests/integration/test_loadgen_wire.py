#!/usr/bin/python3
# The msgpack load generator (tests/bench/bf-loadgen) speaks its own
# transport -- raw sockets and one epoll set per thread, no libsoup -- so
# that it costs less than the daemon it loads.  These tests hold it to what
# a WebSocket client and a buildbot-worker must do on the wire, seen from a
# raw peer (LoadgenWireTest): the upgrade request with Basic auth, a
# checked Sec-WebSocket-Accept, masked frames, answers split or joined in
# any TCP segmentation, fragmented messages, ping/pong and the close
# handshake.  LoadgenThreadsTest attaches workers to the real daemon with the
# generator pinned to one CPU, as the benches run it.  What it costs per attach
# is a benchmark's figure (tests/bench/attach-once), not a test's.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import base64
import hashlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import unittest

import msgpack

import bfharness

LOADGEN = os.path.join(bfharness.BUILD_ROOT, 'tests', 'bench', 'bf-loadgen')
GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def server_frame(opcode, payload, fin=True):
    """A master's frame: never masked."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n <= 0xffff:
        head += bytes([126]) + struct.pack('>H', n)
    else:
        head += bytes([127]) + struct.pack('>Q', n)
    return head + payload


def request(op, seq, **fields):
    return msgpack.packb(dict(op=op, seq_number=seq, **fields))


def stop_process(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


class Peer:
    """One accepted connection from bf-loadgen, read frame by frame."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b''

    def need(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.conn], [], [], left)[0]:
                raise AssertionError('bf-loadgen sent nothing for %d s' % timeout)
            chunk = self.conn.recv(65536)
            if not chunk:
                raise AssertionError('bf-loadgen closed the connection')
            self.buf += chunk

    def take(self, n):
        self.need(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_request(self):
        while b'\r\n\r\n' not in self.buf:
            self.need(len(self.buf) + 1)
        head, self.buf = self.buf.split(b'\r\n\r\n', 1)
        lines = head.decode().split('\r\n')
        headers = {}
        for line in lines[1:]:
            k, v = line.split(':', 1)
            headers[k.strip().lower()] = v.strip()
        return lines[0], headers

    def read_frame(self):
        """(fin, opcode, payload) of a client frame; asserts it is masked."""
        b0, b1 = self.take(2)
        if not b1 & 0x80:
            raise AssertionError('bf-loadgen sent an unmasked frame')
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack('>H', self.take(2))[0]
        elif n == 127:
            n = struct.unpack('>Q', self.take(8))[0]
        key = self.take(4)
        data = bytes(c ^ key[i % 4] for i, c in enumerate(self.take(n)))
        return bool(b0 & 0x80), b0 & 0x0f, data

    def read_message(self):
        fin, opcode, data = self.read_frame()
        if (fin, opcode) != (True, 2):
            raise AssertionError('expected one binary frame, got fin=%s opcode=%d' % (fin, opcode))
        return msgpack.unpackb(data, raw=False, strict_map_key=False)

    def send(self, data):
        self.conn.sendall(data)


class LoadgenWireTest(unittest.TestCase):
    def setUp(self):
        if not os.access(LOADGEN, os.X_OK):
            self.fail('%s is not built' % LOADGEN)
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.proc = None
        self.out = b''
        self.conns = []

    def tearDown(self):
        if self.proc is not None:
            stop_process(self.proc)
        for c in self.conns:
            c.close()
        self.listener.close()

    def start(self, *extra):
        self.proc = subprocess.Popen([LOADGEN, '--url', 'ws://127.0.0.1:%d/ws' % self.port, '--workers', '1',
                                      '--name-format', 'wire-%d', '--password', 's3cret',
                                      '--attach-timeout', '60', '--hold', '60'] + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def accept(self, timeout=30):
        if not select.select([self.listener], [], [], timeout)[0]:
            self.fail('bf-loadgen did not connect within %d s' % timeout)
        conn, _ = self.listener.accept()
        self.conns.append(conn)
        return Peer(conn)

    def upgrade(self, peer):
        line, headers = peer.read_request()
        peer.send(('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                   'Sec-WebSocket-Accept: %s\r\n\r\n' % accept_for(headers['sec-websocket-key'])).encode())
        return line, headers

    def phase(self, name, timeout=30):
        # Read the descriptor itself: a buffered readline() can take two
        # lines from the pipe at once and leave the second where select()
        # does not see it (which a loaded machine, writing both lines
        # before this reads, made happen).
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b'\n' in self.out:
                line, self.out = self.out.split(b'\n', 1)
                d = json.loads(line)
                if d.get('phase') == name:
                    return d
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.out += chunk
        self.fail('no %s line from bf-loadgen' % name)

    def test_handshake_answers_and_close(self):
        self.start()
        peer = self.accept()
        line, headers = self.upgrade(peer)
        # the request libsoup 3 sent, which the daemon has always seen
        self.assertEqual(line, 'GET /ws HTTP/1.1')
        self.assertEqual(headers['authorization'], 'Basic ' + base64.b64encode(b'wire-1:s3cret').decode())
        self.assertEqual(headers['upgrade'], 'websocket')
        self.assertEqual(headers['connection'], 'Upgrade')
        self.assertEqual(headers['sec-websocket-version'], '13')
        self.assertEqual(len(base64.b64decode(headers['sec-websocket-key'])), 16)
        self.assertEqual(headers['host'], '127.0.0.1:%d' % self.port)
        self.assertNotIn('sec-websocket-extensions', headers)

        peer.send(server_frame(2, request('get_worker_info', 1)))
        info = peer.read_message()
        self.assertEqual((info['op'], info['seq_number']), ('response', 1))
        self.assertNotIn('is_exception', info)
        r = info['result']
        self.assertEqual(list(r)[:3], ['admin', 'host', 'access_uri'])
        self.assertEqual(r['host'], 'bf-loadgen simulated worker wire-1')
        self.assertEqual(r['access_uri'], 'bf-loadgen://wire-1')
        self.assertEqual(r['basedir'], '/tmp/bf-loadgen/wire-1')
        self.assertEqual(r['version'], '3.7.0')
        self.assertEqual(r['system'], 'posix')
        self.assertEqual(r['environ'].get('PATH'), os.environ.get('PATH'))
        self.assertEqual(r['worker_commands']['shell'], '3.1')
        self.assertIs(r['delete_leftover_dirs'], False)

        # a ping is answered with its payload
        peer.send(server_frame(9, b'are you there'))
        self.assertEqual(peer.read_frame(), (True, 0xA, b'are you there'))

        # set_worker_settings in three fragments, the last one in two writes
        body = request('set_worker_settings', 2, args={'buffer_size': 1024, 'buffer_timeout': 1,
                                                       'newline_re': r'(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)',
                                                       'max_line_length': 4096})
        third = len(body) // 3
        last = server_frame(0, body[2 * third:])
        peer.send(server_frame(2, body[:third], fin=False) + server_frame(0, body[third:2 * third], fin=False)
                  + last[:3])
        time.sleep(0.2)     # the generator must keep the partial frame, not drop it
        peer.send(last[3:])
        settings = peer.read_message()
        self.assertEqual(settings, {'op': 'response', 'seq_number': 2, 'result': None})
        attached = self.phase('attached')
        self.assertEqual((attached['workers'], attached['attempts']), (1, 1), attached)

        # two requests in one segment, answered in order
        peer.send(server_frame(2, request('print', 3, message='hello')) +
                  server_frame(2, request('keepalive', 4)))
        self.assertEqual(peer.read_message(), {'op': 'response', 'seq_number': 3, 'result': None})
        self.assertEqual(peer.read_message(), {'op': 'response', 'seq_number': 4, 'result': None})
        # an unknown op gets the real worker's error
        peer.send(server_frame(2, request('frobnicate', 5)))
        self.assertEqual(peer.read_message(), {'op': 'response', 'seq_number': 5,
                                               'result': 'Command frobnicate does not exist.',
                                               'is_exception': True})

        # the close handshake: code and reason come back, masked
        peer.send(server_frame(8, struct.pack('>H', 1000) + b'bye'))
        self.assertEqual(peer.read_frame(), (True, 8, struct.pack('>H', 1000) + b'bye'))

    def test_bad_accept_and_401_are_failed_attempts(self):
        self.start('--max-attempts', '2', '--attach-timeout', '30')
        peer = self.accept()
        _, headers = peer.read_request()
        # a 101 whose Sec-WebSocket-Accept is for another key: not a WebSocket
        peer.send(('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                   'Sec-WebSocket-Accept: %s\r\n\r\n' % accept_for('x' + headers['sec-websocket-key'])).encode())
        peer.send(server_frame(2, request('print', 1, message='not to be answered')))
        # it hangs up without a word (read() sees the FIN) and tries again
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([peer.conn], [], [], 1)[0]:
                self.assertEqual(peer.conn.recv(65536), b'', 'bf-loadgen answered on a refused upgrade')
                break
        else:
            self.fail('bf-loadgen kept a connection whose upgrade was wrong')
        peer = self.accept()
        peer.read_request()
        peer.send(b'HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n')
        attached = self.phase('attached', 60)
        self.assertEqual((attached['workers'], attached['failed'], attached['attempts']), (0, 1, 2), attached)
        self.assertEqual((attached['http_other'], attached['http_401']), (1, 1), attached)


class LoadgenThreadsTest(bfharness.FleetTestCase):
    """Pinned to one CPU, the generator runs one thread whatever --threads
    asks (more cost CPU per attach without adding any).  Its cost is a
    benchmark figure (tests/bench/attach-once prints loadgen_us_per_attach),
    not asserted here: only printed."""
    N = 1000

    def test_one_thread_per_cpu(self):
        self.write_config(self.daemon_section(KeepaliveInterval='60') + ''.join(
            '[Worker cost-%05d]\nPassword=p\n' % i for i in range(1, self.N + 1)))
        self.start_daemon()
        cpu = sorted(os.sched_getaffinity(0))[-1]
        # pinned to one CPU and asked for 8 threads, as tests/bench does
        self.loadgen = subprocess.Popen(
            [LOADGEN, '--url', 'ws://127.0.0.1:%d' % self.worker_port('msgpack'), '--workers', str(self.N),
             '--name-format', 'cost-%05d', '--password', 'p', '--concurrency', '100', '--threads', '8',
             '--attach-timeout', '120', '--kill-after-attach', '--hold', '3600'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        self.addCleanup(stop_process, self.loadgen)
        line = None
        out = b''
        fd = self.loadgen.stdout.fileno()
        deadline = time.monotonic() + 150
        while line is None and time.monotonic() < deadline:
            self.pump()
            if select.select([fd], [], [], 0.05)[0]:
                out += os.read(fd, 65536)     # not readline(): see LoadgenWireTest.phase()
            while line is None and b'\n' in out:
                text, out = out.split(b'\n', 1)
                d = json.loads(text)
                if d.get('phase') == 'attached':
                    line = d
        self.assertIsNotNone(line, 'no attached line')
        with open('/proc/%d/stat' % self.loadgen.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        us = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK') / self.N * 1e6
        self.assertEqual(line['workers'], self.N, line)
        self.assertEqual(line['threads'], 1, 'one CPU, one thread: %s' % line)
        self.wait_until(lambda: self.manager_prop('WorkersConnected') == self.N, 60, 'all connected')
        sys.stderr.write('bf-loadgen: %.0f us of CPU per attach (start-up included)\n' % us)


if __name__ == '__main__':
    bfharness.main()
