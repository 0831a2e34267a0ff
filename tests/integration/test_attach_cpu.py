#!/usr/bin/python3
# What an attach costs the daemon besides its work (issue 20), checked
# from outside: the WebSocket handshake's 101 response and the master's
# three pipelined attach requests (print, get_worker_info,
# set_worker_settings) reach the worker in one TCP segment: one write, not
# four.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import socket
import struct

import msgpack

import bfharness
from bfharness import RawWebSocket

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, segments received
# that carried data (Linux 4.6).
TCPI_DATA_SEGS_IN = 152


def data_segments_in(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from('I', info, TCPI_DATA_SEGS_IN)[0]


class AttachWriteTest(bfharness.FleetTestCase):
    def test_handshake_and_attach_requests_in_one_segment(self):
        self.write_config(self.daemon_section(KeepaliveInterval='0') + '[Worker w1]\nPassword=pw\n')
        self.start_daemon()
        ws = RawWebSocket(self.port, 'w1', 'pw')
        self.assertEqual(ws.status, 101)
        ops = []
        for _ in range(3):
            _, payload = ws.recv_frame()
            ops.append(msgpack.unpackb(payload)['op'])
        self.assertEqual(ops, ['print', 'get_worker_info', 'set_worker_settings'])
        self.assertEqual(data_segments_in(ws.sock), 1,
                         'the 101 response and the attach requests came in several writes')
        ws.close()


if __name__ == '__main__':
    bfharness.main()
