#!/usr/bin/python3
# A hostile worker cannot push a D-Bus message over the bus's limit (32 MiB,
# dbus-daemon's default, which the private test bus keeps): what it says in
# get_worker_info, in command output, in unknown update keys and in failures
# is bounded or split (daemon/bf-limits.h), the daemon keeps running, and a
# real worker beside it stays attached and usable.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import struct
import time

import msgpack
from gi.repository import GLib

import bfharness
from bfharness import (BUILD_IFACE, COMMAND_IFACE, FLEET_PATH, MANAGER_IFACE, WORKER_IFACE,
                       RawWebSocket, worker_path)

# daemon/bf-limits.h
MARKER = '\u2026[truncated]'
STRING_BYTES = 4096
INFO_BYTES = 64 * 1024
COMMANDS = 512
OUTPUT_CHUNK_BYTES = 64 * 1024
UPDATE_TEXT_BYTES = 256 * 1024
FAILURE_BYTES = 16 * 1024
KEY_BYTES = 256

# Just under the daemon's default MaxMessageSize (16 MiB): after UTF-8
# repair (three bytes for every bad one) this is 45 MB of text.
BIG = 15 * 1000 * 1000


def raw_str(data):
    """A msgpack str holding @data as is, valid UTF-8 or not."""
    n = len(data)
    if n < 32:
        return bytes([0xa0 | n]) + data
    if n < 256:
        return b'\xd9' + bytes([n]) + data
    if n < 65536:
        return b'\xda' + struct.pack('>H', n) + data
    return b'\xdb' + struct.pack('>I', n) + data


def raw_map(pairs):
    """A msgpack map of already-encoded keys and values."""
    n = len(pairs)
    head = bytes([0x80 | n]) if n < 16 else b'\xde' + struct.pack('>H', n)
    return head + b''.join(k + v for k, v in pairs)


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


class HostileWorker:
    """A msgpack worker over a raw WebSocket that says what the test wants."""

    def __init__(self, test, name, password, info_map):
        self.test = test
        self.ws = RawWebSocket(test.port, name, password, timeout=60)
        test.assertEqual(self.ws.status, 101)
        self.info_map = info_map
        self.seq = 0

    def recv(self):
        while True:
            op, payload = self.ws.recv_frame()
            if op == 2:
                return msgpack.unpackb(payload, raw=False)
            if op == 9:   # ping
                self.send_raw(payload, opcode=10)

    def send_raw(self, payload, opcode=2):
        self.ws.send_frame(payload, opcode)

    def respond(self, seq, result_bytes=b'\xc0'):
        self.send_raw(raw_map([(pack('op'), pack('response')), (pack('seq_number'), pack(seq)),
                               (pack('result'), result_bytes)]))

    def attach(self):
        for _ in range(3):
            msg = self.recv()
            if msg['op'] == 'get_worker_info':
                self.respond(msg['seq_number'], self.info_map)
            else:
                self.respond(msg['seq_number'])

    def wait_op(self, op):
        while True:
            msg = self.recv()
            if msg['op'] == op:
                return msg
            self.respond(msg['seq_number'])

    def command_message(self, op, command_id, args_bytes):
        self.seq += 1
        self.send_raw(raw_map([(pack('op'), pack(op)), (pack('seq_number'), pack(self.seq)),
                               (pack('command_id'), pack(command_id)), (pack('args'), args_bytes)]))

    def close(self):
        self.ws.close()


class HostileValuesTestCase(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(KeepaliveInterval='30', FinishedBuildLifetime='60') +
                          '[Worker good]\nPassword=pg\nBuilders=gb\n'
                          '[Worker evil]\nPassword=pe\nBuilders=eb\nMissingTimeout=60\n')
        self.start_daemon()
        self.add_worker('good', 'pg').start()
        self.wait_connected('good')

    def request(self, builder, worker, wait=True):
        build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                          GLib.Variant('(sa{sv})', (builder, {'worker': GLib.Variant('s', worker)})))[0]
        if wait:
            self.wait_running(build)
        return build

    def wait_running(self, build):
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running', 20,
                        'build %s running' % build)
        return build

    def shell(self, build, argv):
        return self.call(build, BUILD_IFACE, 'RunCommand',
                         GLib.Variant('(sa{sv})', ('shell', {'command': GLib.Variant('as', argv)})))[0]

    def outputs(self, command):
        return [s[3] for s in self.signals_named('Output', command)]

    def assert_fleet_fine(self):
        """The daemon runs, answers, and the real worker still builds."""
        self.assertIsNone(self.daemon.poll(), 'the daemon exited:\n' + self.daemon_log()[-4000:])
        self.assertTrue(self.worker_prop('good', 'Connected'))
        build = self.request('gb', 'good')
        cmd = self.shell(build, ['echo', 'still here'])
        code, failure = self.wait_signal('Completed', cmd, timeout=30)[0][3]
        self.assertEqual((code, failure), (0, ''))
        self.assertEqual(''.join(t for s, t in self.outputs(cmd) if s == 'stdout'), 'still here\n')
        self.call(build, BUILD_IFACE, 'Release')
        # Listing the whole fleet still fits in one message.
        self.assertIn(worker_path('evil'), self.managed_objects())


class HostileInfoTest(HostileValuesTestCase):
    """get_worker_info: every property within its bound, after UTF-8 repair."""

    def attach_evil(self, info_map):
        evil = HostileWorker(self, 'evil', 'pe', info_map)
        evil.attach()
        self.wait_connected('evil', timeout=60)
        return evil

    def prop_size(self, worker, name):
        """Bytes of a worker's property as it travels on the bus."""
        r = self.bus.call_sync(bfharness.BUS_NAME, worker_path(worker), 'org.freedesktop.DBus.Properties',
                               'Get', GLib.Variant('(ss)', (WORKER_IFACE, name)), None, 0, 5000, None)
        return r.get_child_value(0).get_variant().get_size()

    def check_worker_props(self):
        props = self.props(worker_path('evil'), WORKER_IFACE)
        for name in ('Admin', 'Host', 'Version'):
            self.assertLessEqual(len(props[name].encode()), STRING_BYTES, name)
        self.assertLessEqual(self.prop_size('evil', 'Info'), INFO_BYTES)
        self.assertLessEqual(len(props['Commands']), COMMANDS)
        self.assertLessEqual(self.prop_size('evil', 'Commands'), 64 * 1024)
        return props

    def test_invalid_utf8_strings(self):
        # 15 MB of bytes that are not UTF-8: 45 MB once repaired.
        bad = b'\xff' * BIG
        info = raw_map([(pack('admin'), raw_str(bad)),
                        (pack('host'), raw_str(b'rack \xfe 4\n')),
                        (pack('version'), raw_str(b'3.7.0')),
                        (pack('worker_commands'), pack({'shell': '3.7', 'mkdir': '3.7'}))])
        start = time.monotonic()
        evil = self.attach_evil(info)
        self.assertLess(time.monotonic() - start, 60)
        props = self.check_worker_props()
        self.assertTrue(props['Admin'].startswith('\ufffd\ufffd\ufffd'))
        self.assertTrue(props['Admin'].endswith(MARKER))
        self.assertEqual(props['Info']['admin'], props['Admin'])
        self.assertEqual(props['Host'], 'rack \ufffd 4')
        self.assertEqual(props['Version'], '3.7.0')
        self.assertEqual(props['Commands'], {'shell': '3.7', 'mkdir': '3.7'})
        self.wait_until(lambda: 'its info was over buildfleetd\'s limits' in self.daemon_log(),
                        message='a log line about the cut info')
        self.assert_fleet_fine()
        evil.close()

    def test_info_with_many_entries_and_commands(self):
        # As many entries as the decoder's budget lets through (8x the
        # message; invalid UTF-8 triples, every entry costs instances):
        # far more than Info and Commands may hold.
        entries = [(pack('k%06d' % i), raw_str(b'\xff' * 100)) for i in range(5000)]
        entries.append((pack('x' * 5000), pack('long key')))
        entries.append((pack('deep'), pack([[[[[[[[[[[[1]]]]]]]]]]]])))
        entries.append((pack('worker_commands'),
                        pack({'c%06d' % i: 'v' * 100 for i in range(2000)})))
        head = b'\xdf' + struct.pack('>I', len(entries))
        evil = self.attach_evil(head + b''.join(k + v for k, v in entries))
        props = self.check_worker_props()
        self.assertGreater(props['Info']['buildfleet-dropped-entries'], 4700)
        self.assertEqual(props['Info']['k000000'], '\ufffd' * 100)
        self.assertNotIn('x' * 5000, props['Info'])
        self.assertGreater(len(props['Commands']), 100)
        self.assert_fleet_fine()
        evil.close()

    def test_large_non_string_values(self):
        # Within the decoder's budget (a child costs it 16 bytes, an
        # integer in an array of scalars 20), printed far over the bounds.
        info = raw_map([(pack('admin'), pack('a')),
                        (pack('blob'), pack([{}] * 30000)),
                        (pack('numbers'), pack(list(range(30000)))),
                        (pack('worker_commands'), pack({'shell': [{}] * 30000}))])
        evil = self.attach_evil(info)
        props = self.check_worker_props()
        self.assertTrue(props['Info']['blob'].endswith(MARKER))
        self.assertTrue(props['Info']['numbers'].startswith('[<0>, <1>, <2>'))
        self.assertTrue(props['Commands']['shell'].endswith(MARKER))
        self.assert_fleet_fine()
        evil.close()

    def test_prepare_failure_in_the_log_is_bounded(self):
        evil = self.attach_evil(pack({'basedir': '/nonexistent/evil', 'worker_commands': {'mkdir': '3.7'}}))
        self.request('eb', 'evil', wait=False)
        msg = evil.wait_op('start_command')
        evil.respond(msg['seq_number'])
        evil.command_message('complete', msg['command_id'], raw_str(b'\xff' * BIG))
        self.wait_until(lambda: self.worker_prop('evil', 'Quarantined'), 30, 'evil quarantined')
        lines = [l for l in self.daemon_log().splitlines() if 'could not prepare builder' in l]
        self.assertTrue(lines)
        for line in lines:
            self.assertLess(len(line.encode()), 2048)
            self.assertIn(MARKER, line)
        self.assert_fleet_fine()
        evil.close()


class HostileOutputTest(HostileValuesTestCase):
    """Command output is split, never lost; other texts are bounded."""

    def setUp(self):
        super().setUp()
        self.evil = None
        try:
            self.evil = HostileWorker(self, 'evil', 'pe',
                                      pack({'admin': 'a', 'host': 'h', 'version': '3.7.0',
                                            'basedir': '/nonexistent/evil',
                                            'worker_commands': {'shell': '3.7'}}))
            self.evil.attach()
            self.wait_connected('evil', timeout=30)
            self.build = self.request('eb', 'evil', wait=False)
            # The build first creates its directory on the worker.
            msg = self.evil.wait_op('start_command')
            self.assertEqual(msg['command_name'], 'mkdir')
            self.evil.respond(msg['seq_number'])
            self.evil.command_message('complete', msg['command_id'], b'\xc0')
            self.wait_running(self.build)
            self.cmd = self.shell(self.build, ['anything'])
            msg = self.evil.wait_op('start_command')
            self.command_id = msg['command_id']
            self.evil.respond(msg['seq_number'])
        except BaseException:
            self.tearDown()   # unittest does not call it when setUp fails
            raise

    def tearDown(self):
        if self.evil is not None:
            self.evil.close()
            self.evil = None
        super().tearDown()

    def complete(self, failure_bytes=b'\xc0'):
        self.evil.command_message('complete', self.command_id, failure_bytes)
        return self.wait_signal('Completed', self.cmd, timeout=60)[0][3]

    def test_invalid_utf8_output_arrives_whole_in_chunks(self):
        line = b'\xff' * 200 + b' line \xe2\x82\xac\n'
        data = line * (BIG // len(line))
        expected = data.decode('utf-8', 'replace')
        self.assertGreater(len(expected.encode()), 32 * 1024 * 1024)
        start = time.monotonic()
        self.evil.command_message('update', self.command_id,
                                  b'\x91' + b'\x92' + pack('stdout') + raw_str(data))
        self.assertEqual(self.complete(), (0, ''))
        elapsed = time.monotonic() - start
        chunks = [t for s, t in self.outputs(self.cmd) if s == 'stdout']
        biggest = max(len(t.encode()) for t in chunks)
        print('%d MB of output in %d signals, largest %d bytes, %.1f s' %
              (len(expected.encode()) // 1000000, len(chunks), biggest, elapsed))
        self.assertLessEqual(biggest, OUTPUT_CHUNK_BYTES)
        self.assertEqual(len(''.join(chunks)), len(expected))
        self.assertTrue(''.join(chunks) == expected, 'the chunks do not add up to the output')
        self.assert_fleet_fine()

    def test_millions_of_empty_maps_refused_by_the_decoder(self):
        self.evil.command_message('update', self.command_id,
                                  b'\x91' + b'\x92' + pack('weird') + pack({'x': [{}] * 3000000}))
        self.wait_connected('evil', value=False, timeout=60)
        self.assertIn('times the input', self.daemon_log())
        self.assertEqual(self.outputs(self.cmd), [])
        self.assert_fleet_fine()

    def test_log_name_and_failure_are_bounded(self):
        name = b'\xff' * 1000000
        self.evil.command_message('update', self.command_id,
                                  b'\x91' + b'\x92' + pack('log') +
                                  b'\x92' + raw_str(name) + pack('log text\n'))
        self.wait_signal('Output', self.cmd, timeout=30)
        stream, text = self.outputs(self.cmd)[0]
        self.assertLessEqual(len(stream.encode()), KEY_BYTES)
        self.assertTrue(stream.endswith(MARKER))
        self.assertEqual(text, 'log text\n')
        code, failure = self.complete(raw_str(b'\xff' * BIG))
        self.assertEqual(code, -1)
        self.assertLessEqual(len(failure.encode()), FAILURE_BYTES)
        self.assertTrue(failure.endswith(MARKER))
        self.assertEqual(self.prop(self.cmd, COMMAND_IFACE, 'Failure'), failure)
        self.assert_fleet_fine()

    def test_unknown_key_with_millions_of_empty_maps(self):
        # Millions of them are more than the decoder's budget (16 bytes a
        # child for one byte of input: refused, see the next test); 100,000
        # fit, and print to 700 KB, over the bound.
        value = pack({'x': [{}] * 100000})
        start = time.monotonic()
        self.evil.command_message('update', self.command_id,
                                  b'\x91' + b'\x92' + pack('weird') + value)
        self.wait_signal('Output', self.cmd, timeout=60)
        elapsed = time.monotonic() - start
        self.assertEqual(self.complete(), (0, ''))
        texts = [t for s, t in self.outputs(self.cmd) if s == 'weird']
        total = sum(len(t.encode()) for t in texts)
        print('unknown key: %d signals, %d bytes, first after %.1f s' % (len(texts), total, elapsed))
        self.assertLessEqual(total, UPDATE_TEXT_BYTES)
        self.assertLessEqual(max(len(t.encode()) for t in texts), OUTPUT_CHUNK_BYTES)
        self.assertTrue(texts[0].startswith("{'x': <[<{}>, <{}>"))
        self.assertTrue(texts[-1].endswith(MARKER))
        self.assert_fleet_fine()

    def test_exception_response_text_is_bounded(self):
        # The worker refuses a second command with a huge exception text,
        # which becomes that command's Failure.
        second = self.shell(self.build, ['again'])
        msg = self.evil.wait_op('start_command')
        self.evil.send_raw(raw_map([(pack('op'), pack('response')),
                                    (pack('seq_number'), pack(msg['seq_number'])),
                                    (pack('result'), raw_str(b'\xff' * BIG)),
                                    (pack('is_exception'), pack(True))]))
        code, failure = self.wait_signal('Completed', second, timeout=60)[0][3]
        self.assertIn('refused start_command', failure)
        self.assertLessEqual(len(failure.encode()), 2048)
        self.assertTrue(failure.endswith(MARKER))
        # Unknown ops are echoed back to the worker: bounded as well.
        self.evil.send_raw(raw_map([(pack('op'), raw_str(b'\xff' * BIG)), (pack('seq_number'), pack(99))]))
        reply = self.evil.wait_op('response')
        self.assertLess(len(reply['result'].encode()), 2048)
        self.assertTrue(self.worker_prop('evil', 'Connected'))
        self.assertEqual(self.complete(), (0, ''))
        self.assert_fleet_fine()


if __name__ == '__main__':
    bfharness.main()
