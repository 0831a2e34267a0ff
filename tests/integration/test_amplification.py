#!/usr/bin/python3
# test_amplification.py: a worker's big or amplifying msgpack messages cost
# the daemon a bounded amount of memory and never stall its main loop.
#
# Before: one 16 MB message of 5.3 M small integers made the decoder allocate
# about 1.4 GB and froze the main loop (D-Bus, timers, every other worker)
# for 4 to 11 s, repeatable at will.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import struct
import threading
import time

import msgpack

import bfharness
from bfharness import RawWebSocket

# What a worker's message may cost the daemon's peak RSS: the codec's budget
# is 8x the message plus 1 MiB, plus the receive buffer and the copy handed
# to the decoding thread.  Before the fix one message took 1.4 GB; the bound leaves
# room for a sanitizer build's quarantine.
PEAK_GROWTH_LIMIT_MB = 600
# CPU time the daemon's main thread may spend on two 16 MB messages
# (receiving, unmasking, handing over: 0.15 s each measured, more under a
# sanitizer): the decoding itself runs on a thread, so the main loop stays free for D-Bus, timers and other workers.
# Before: 3 to 11 s per message, all of it on the main thread.  CPU time,
# not wall time, so that a busy machine cannot make the test fail.
MAIN_THREAD_CPU_LIMIT_S = 2.0


def thread_cpu_s(pid, tid):
    with open('/proc/%d/task/%d/stat' % (pid, tid)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def vm_kb(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def unknown_op(seq, junk):
    """{op: no_such_op, seq_number: seq, junk: <junk, already msgpack>}"""
    return (b'\x83' + msgpack.packb('op') + msgpack.packb('no_such_op') +
            msgpack.packb('seq_number') + msgpack.packb(seq) + msgpack.packb('junk') + junk)


def small_ints_message(seq, size=16 * 1000 * 1000):
    """An unknown op whose extra key holds ~size/3 integers of 3 bytes (uint 16)."""
    count = size // 3
    return unknown_op(seq, b'\xdd' + struct.pack('>I', count) + b'\xcd\x81\x02' * count)


def tiny_keys_message(seq, size=16 * 1000 * 1000):
    """A map of distinct 6-byte keys to fixints: 8 bytes an entry."""
    count = size // 8
    return unknown_op(seq, b'\xdf' + struct.pack('>I', count) +
                      b''.join(b'\xa6%06x\x01' % i for i in range(count)))


class AmplificationTest(bfharness.FleetTestCase):

    def setUp(self):
        super().setUp()
        # The raw worker answers no keepalives while the test sends.
        self.write_config(self.daemon_section(MaxMessageSize=str(17 * 1024 * 1024),
                                              KeepaliveInterval='60') +
                          '[Worker good]\nPassword=p\n[Worker evil]\nPassword=p\nMissingTimeout=60\n')
        self.start_daemon()
        self.add_worker('good', 'p').start()
        self.wait_connected('good')

    def attached_raw(self):
        ws = RawWebSocket(self.port, 'evil', 'p', timeout=30)
        self.assertEqual(ws.status, 101)
        ws.answer_attach()
        self.wait_connected('evil')
        return ws

    def responses(self, ws, count, timeout=60):
        ws.sock.settimeout(timeout)
        got = []
        while len(got) < count:
            op, payload = ws.recv_frame()
            if op != 2:
                continue
            msg = msgpack.unpackb(payload)
            if msg.get('op') == 'response':
                got.append(msg)
        return got

    def watch_latency(self, stop, worst):
        """Times D-Bus Gets on the daemon until @stop is set."""
        bus = bfharness.Gio.DBusConnection.new_for_address_sync(
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
            bfharness.Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            bfharness.Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                bus.call_sync(bfharness.BUS_NAME, bfharness.worker_path('good'),
                              'org.freedesktop.DBus.Properties', 'Get',
                              bfharness.GLib.Variant('(ss)', (bfharness.WORKER_IFACE, 'Connected')),
                              None, bfharness.Gio.DBusCallFlags.NONE, 30000, None)
                worst[0] = max(worst[0], time.monotonic() - t0)
                time.sleep(0.02)
        finally:
            bus.close_sync(None)

    def test_small_integers_bounded_and_in_order(self):
        """Two 16 MB messages of small integers and a small one behind them:
        each decodes within the budget, off the main loop, answered in order."""
        big = [small_ints_message(seq) for seq in (10, 11)]
        small = msgpack.packb({'op': 'no_such_op', 'seq_number': 13})
        ws = self.attached_raw()
        pid = self.daemon.pid
        hwm_before = vm_kb(pid, 'VmHWM')
        cpu_before = thread_cpu_s(pid, pid)

        stop = threading.Event()
        worst = [0.0]
        watcher = threading.Thread(target=self.watch_latency, args=(stop, worst))
        watcher.start()
        try:
            for m in big:
                ws.send_frame(m)
            ws.send_frame(small)
            got = self.responses(ws, len(big) + 1)
        finally:
            stop.set()
            watcher.join()

        self.assertEqual([m['seq_number'] for m in got], [10, 11, 13])
        for m in got:
            self.assertTrue(m['is_exception'])
            self.assertIn('no_such_op', m['result'])
        main_cpu = thread_cpu_s(pid, pid) - cpu_before
        growth_mb = (vm_kb(pid, 'VmHWM') - hwm_before) / 1024
        print('%d x %.1f MB: peak RSS growth %.0f MB, main thread CPU %.3f s, worst D-Bus Get %.3f s'
              % (len(big), len(big[0]) / 1e6, growth_mb, main_cpu, worst[0]))
        self.assertLess(growth_mb, PEAK_GROWTH_LIMIT_MB)
        self.assertLess(main_cpu, MAIN_THREAD_CPU_LIMIT_S)
        self.assertIsNone(self.daemon.poll())
        self.assertTrue(self.worker_prop('good', 'Connected'))
        self.assertTrue(self.worker_prop('evil', 'Connected'))

    def test_tiny_keys_refused(self):
        """A map of millions of tiny keys would take more than the budget:
        the connection is closed with the codec's reason, quickly."""
        message = tiny_keys_message(20)
        ws = self.attached_raw()
        pid = self.daemon.pid
        hwm_before = vm_kb(pid, 'VmHWM')
        ws.send_frame(message)
        closed = ws.close_reason(timeout=60)
        self.assertIsNotNone(closed, 'no close frame')
        self.assertIn('undecodable', closed[1])
        self.wait_until(lambda: 'times the input' in self.daemon_log(), timeout=30,
                        message='the budget named in the log')
        growth_mb = (vm_kb(pid, 'VmHWM') - hwm_before) / 1024
        print('peak RSS growth %.0f MB' % growth_mb)
        self.assertLess(growth_mb, PEAK_GROWTH_LIMIT_MB)
        self.wait_connected('evil', value=False)
        self.assertIsNone(self.daemon.poll())
        self.assertTrue(self.worker_prop('good', 'Connected'))


if __name__ == '__main__':
    bfharness.main()
