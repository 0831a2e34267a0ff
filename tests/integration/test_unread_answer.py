#!/usr/bin/python3
# The keepalive verdict and a daemon that is behind: a worker whose answer
# waits unread in the daemon's socket buffer (the daemon was stopped,
# starved of CPU, busy) is alive, and is not dropped as silent.  The guard
# is bf_fd_has_unread() (FIONREAD) in both links' verdicts.
#
# The daemon is made "busy" the bluntest way: SIGSTOP for longer than two
# keepalive intervals while the worker's answer arrives, then SIGCONT; the
# overdue keepalive check then runs before the socket is read (the timer
# queue's source comes before the poller's in the main context).  Were that
# order to change, these tests would pass without reaching the guard: with
# the guard removed from either link they failed (2026-12-03), which is
# the check to repeat after touching bf-timer-queue.c or bf-poller.c.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import socket
import threading
import time

import msgpack

import bfharness
from bfharness import RawWebSocket, worker_path

INTERVAL = 1.0          # KeepaliveInterval
STOPPED = 3 * INTERVAL  # longer than the two intervals that make a worker silent


def assert_survives_stops(test, while_stopped):
    """Worker 'live' of @test stays attached through three stops of the
    daemon, each longer than two keepalive intervals, during which
    @while_stopped() has it speak (or it speaks by itself)."""
    path = worker_path('live')
    # alive while the daemon runs
    test.assert_stays(lambda: test.worker_prop('live', 'Connected'), 3 * INTERVAL, 'attached')
    for _ in range(3):
        os.kill(test.daemon.pid, signal.SIGSTOP)
        try:
            while_stopped()
            time.sleep(STOPPED)   # the scenario: the daemon stays stopped this long
        finally:
            os.kill(test.daemon.pid, signal.SIGCONT)
        test.assert_stays(lambda: test.signals_named('Detached', path) == [], 2 * INTERVAL,
                          'the worker is not dropped for what the daemon had not read')
    test.assertTrue(test.worker_prop('live', 'Connected'))
    test.assertNotIn('answered nothing', test.daemon_log())
    test.assertNotIn('did not answer a keepalive request', test.daemon_log())


class UnreadAnswerTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(KeepaliveInterval=str(INTERVAL)) +
                          '[Worker live]\nPassword=p\nMissingTimeout=60\n')
        self.start_daemon()

    def attached_raw(self):
        """A raw msgpack worker that answers the attach, every ping and
        every keepalive request, as a live worker does."""
        ws = RawWebSocket(self.port, 'live', 'p')
        self.assertEqual(ws.status, 101)
        ws.answer_attach({'admin': 'x', 'host': 'y', 'version': '3.7.0', 'basedir': self.workdir,
                          'worker_commands': {'shell': '3.1'}})
        self.wait_connected('live')
        lock = threading.Lock()

        def serve():
            ws.sock.settimeout(60)
            try:
                while True:
                    op, payload = ws.recv_frame()
                    with lock:
                        if op == 9:
                            ws.send_frame(payload, opcode=10)
                        elif op == 8:
                            return
                        elif op == 2:
                            msg = msgpack.unpackb(payload)
                            if msg.get('op') == 'keepalive':
                                ws.send_frame(msgpack.packb({'op': 'response', 'seq_number': msg['seq_number'],
                                                             'result': None}))
            except (EOFError, OSError, socket.timeout):
                return
        threading.Thread(target=serve, daemon=True).start()
        return ws, lock

    def test_answer_waiting_unread_is_not_silence(self):
        ws, lock = self.attached_raw()

        def speak():
            # The worker speaks while the daemon cannot read: an
            # unsolicited pong (RFC 6455 allows one), as its answer to a
            # ping would be.
            with lock:
                ws.send_frame(b'alive', opcode=10)
        assert_survives_stops(self, speak)
        ws.close()


class UnreadAnswerPbTest(bfharness.FleetTestCase):
    """The same with a real PB worker (the PB link's own guard): made with
    keepalive=1 in its buildbot.tac, it sends Buildbot's keepalive call
    every second, so while the daemon is stopped one waits unread."""

    protocol = 'pb'

    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(KeepaliveInterval=str(INTERVAL)) +
                          '[Worker live]\nPassword=p\nMissingTimeout=60\n')
        self.start_daemon()

    def test_answer_waiting_unread_is_not_silence(self):
        worker = self.add_worker('live', 'p')
        tac = os.path.join(worker.basedir, 'buildbot.tac')
        with open(tac) as f:
            text = f.read()
        self.assertIn('\nkeepalive = 0\n', text)
        with open(tac, 'w') as f:
            f.write(text.replace('\nkeepalive = 0\n', '\nkeepalive = 1\n'))
        worker.start()
        self.wait_connected('live')
        # the worker's own keepalive call arrives while the daemon is stopped
        assert_survives_stops(self, lambda: None)


if __name__ == '__main__':
    bfharness.main()
