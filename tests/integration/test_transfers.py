#!/usr/bin/python3
# File transfers with real buildbot-worker processes: upload_file,
# upload_directory and download_file through descriptors the caller sends
# with RunCommand.  Streamed (the daemon's memory stays flat while 50 MB go
# through), bounded by the caller's limit, ended by Interrupt, and a slow
# reader on one transfer does not hold up other workers.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import hashlib
import io
import os
import stat
import tarfile
import threading
import time

from gi.repository import Gio, GLib

import bfharness
from bfharness import BUILD_IFACE, COMMAND_IFACE, FLEET_PATH, MANAGER_IFACE

MB = 1024 * 1024


class Drain(threading.Thread):
    """Reads a pipe to its end on a thread (the test's main loop keeps
    pumping D-Bus), hashing it and optionally keeping it."""

    def __init__(self, fd, keep=False, start_event=None):
        super().__init__(daemon=True)
        self.fd = fd
        self.keep = keep
        self.start_event = start_event
        self.sha = hashlib.sha256()
        self.size = 0
        self.data = io.BytesIO() if keep else None
        self.eof = False

    def run(self):
        if self.start_event is not None:
            self.start_event.wait()
        with os.fdopen(self.fd, 'rb', buffering=0) as f:
            while True:
                chunk = f.read(256 * 1024)
                if not chunk:
                    break
                self.size += len(chunk)
                self.sha.update(chunk)
                if self.keep:
                    self.data.write(chunk)
        self.eof = True


class Feed(threading.Thread):
    """Writes a file into a pipe on a thread, then closes it."""

    def __init__(self, fd, path, start_event=None):
        super().__init__(daemon=True)
        self.fd = fd
        self.path = path
        self.start_event = start_event
        self.error = None

    def run(self):
        if self.start_event is not None:
            self.start_event.wait()
        try:
            with os.fdopen(self.fd, 'wb', buffering=0) as out, open(self.path, 'rb') as f:
                while True:
                    chunk = f.read(256 * 1024)
                    if not chunk:
                        break
                    out.write(chunk)
        except OSError as e:
            self.error = e


def write_random(path, size):
    sha = hashlib.sha256()
    with open(path, 'wb') as f:
        left = size
        while left:
            chunk = os.urandom(min(left, MB))
            sha.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def sha_of(path):
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(MB), b''):
            sha.update(chunk)
    return sha.hexdigest()


class TransferTestCase(bfharness.FleetTestCase):
    protocol = 'msgpack'

    def fleet(self, names):
        text = self.daemon_section(FinishedBuildLifetime='60')
        for name in names:
            text += '[Worker %s]\nPassword=pw-%s\nMaxBuilds=2\nBuilders=b\nMissingTimeout=60\n' % (name, name)
        self.write_config(text)
        # A sanitizer build keeps 256 MB of freed memory by default: with a
        # small quarantine its RSS says what the daemon holds.
        saved = os.environ.get('ASAN_OPTIONS')
        os.environ['ASAN_OPTIONS'] = ':'.join(filter(None, [saved, 'quarantine_size_mb=4']))
        try:
            self.start_daemon()
        finally:
            if saved is None:
                del os.environ['ASAN_OPTIONS']
            else:
                os.environ['ASAN_OPTIONS'] = saved
        for name in names:
            port = self.pb_port if self.protocol == 'pb' else self.port
            bfharness.Worker(self, name, 'pw-' + name, port, protocol=self.protocol).start()
        for name in names:
            self.wait_connected(name)
            self.assertEqual(self.worker_prop(name, 'Protocol'), self.protocol)

    def new_build(self, worker=None):
        opts = {'worker': GLib.Variant('s', worker)} if worker else {}
        build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                          GLib.Variant('(sa{sv})', ('b', opts)))[0]
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == 'running', 20,
                        'build %s running' % build)
        return build

    def builder_dir(self, worker_index=0):
        return os.path.join(self.workers[worker_index].basedir, 'b')

    def transfer(self, build, name, fd, **args):
        """RunCommand(name) with @fd as "fd"; our copy of @fd is closed."""
        fds = Gio.UnixFDList.new()
        a = {'fd': GLib.Variant('h', fds.append(fd))}
        os.close(fd)
        for k, v in args.items():
            a[k] = v if isinstance(v, GLib.Variant) else GLib.Variant(
                'b' if isinstance(v, bool) else 't' if isinstance(v, int) else 's', v)
        r, _ = self.bus.call_with_unix_fd_list_sync(
            bfharness.BUS_NAME, build, BUILD_IFACE, 'RunCommand',
            GLib.Variant('(sa{sv})', (name, a)), None, Gio.DBusCallFlags.NONE, 5000, fds, None)
        return r.unpack()[0]

    def transfer_error(self, build, name, fd, **args):
        try:
            self.transfer(build, name, fd, **args)
        except GLib.Error as e:
            return Gio.DBusError.get_remote_error(e), e.message
        self.fail('RunCommand(%s) succeeded' % name)

    def rss_kb(self):
        with open('/proc/%d/status' % self.daemon.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return 0

    def wait_completed(self, command, timeout=60, sample=None):
        def done():
            if sample:
                sample()
            return self.signals_named('Completed', command)
        return self.wait_until(done, timeout, 'Completed of %s' % command)[0][3]


class TransferTest(TransferTestCase):
    def setUp(self):
        super().setUp()
        self.fleet(['w1'])
        self.build = self.new_build()

    def test_fifty_megabytes_round_trip_with_flat_memory(self):
        size = 50 * MB
        src = os.path.join(self.builder_dir(), 'big.bin')
        digest = write_random(src, size)
        peak = [0]

        def sample():
            peak[0] = max(peak[0], self.rss_kb())

        before = self.rss_kb()

        # Worker -> caller.  The caller starts reading only after two
        # seconds: meanwhile the worker is held back (a block or two in
        # flight), nothing piles up in the daemon and nothing is dropped.
        r, w = os.pipe()
        go = threading.Event()
        drain = Drain(r, start_event=go)
        drain.start()
        up = self.transfer(self.build, 'upload_file', w, path='big.bin')
        self.wait_until(lambda: self.prop(up, COMMAND_IFACE, 'TransferredBytes') > 0, 30,
                        'the upload started')
        self.assert_stays(lambda: (sample(), self.prop(up, COMMAND_IFACE, 'TransferredBytes') <= 1 * MB)[1],
                          2.0, 'the worker was not held back while nobody read')
        go.set()
        t0 = time.monotonic()
        self.assertEqual(self.wait_completed(up, timeout=120, sample=sample), (0, ''))
        up_seconds = time.monotonic() - t0
        drain.join(30)
        self.assertTrue(drain.eof)
        self.assertEqual((drain.size, drain.sha.hexdigest()), (size, digest))
        self.assertEqual(self.prop(up, COMMAND_IFACE, 'TransferredBytes'), size)
        # Progress was published on the way, not 800 times.
        progress = self.properties_changed(up, 'TransferredBytes')
        self.assertLess(len(progress), 200)

        # Caller -> worker, with the mode honoured.
        r, w = os.pipe()
        feed = Feed(w, src)
        feed.start()
        t0 = time.monotonic()
        down = self.transfer(self.build, 'download_file', r, path='sub/copy.bin',
                             mode=GLib.Variant('i', 0o640))
        self.assertEqual(self.wait_completed(down, timeout=120, sample=sample), (0, ''))
        down_seconds = time.monotonic() - t0
        feed.join(30)
        copy = os.path.join(self.builder_dir(), 'sub', 'copy.bin')
        self.assertEqual(sha_of(copy), digest)
        self.assertEqual(stat.S_IMODE(os.stat(copy).st_mode), 0o640)
        self.assertEqual(self.prop(down, COMMAND_IFACE, 'TransferredBytes'), size)

        growth_kb = peak[0] - before
        print('daemon VmRSS before %d kB, peak %d kB, growth %d kB for 2 x %d MB '
              '(%s: upload %.1f s after its reader started, download %.1f s)' %
              (before, peak[0], growth_kb, size // MB, self.protocol, up_seconds, down_seconds))
        self.assertLess(growth_kb, 10 * 1024, 'the daemon held the file in memory')

    def test_keepstamp_onto_a_regular_file(self):
        src = os.path.join(self.builder_dir(), 'stamped.txt')
        with open(src, 'w') as f:
            f.write('stamped\n')
        os.utime(src, (1000000000, 1200000000))
        dest = os.path.join(self.workdir, 'stamped.out')
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        cmd = self.transfer(self.build, 'upload_file', fd, path='stamped.txt', keepstamp=True)
        self.assertEqual(self.wait_completed(cmd), (0, ''))
        with open(dest) as f:
            self.assertEqual(f.read(), 'stamped\n')
        self.assertEqual(int(os.stat(dest).st_mtime), 1200000000)

    def test_directory_upload_unpacks_to_the_same_tree(self):
        top = os.path.join(self.builder_dir(), 'tree')
        files = {
            'a.txt': b'alpha\n',
            'sub/b.bin': os.urandom(300000),
            'sub/deeper/c.txt': b'\xc3\xa9t\xc3\xa9\n',
            'empty': b'',
        }
        for rel, content in files.items():
            os.makedirs(os.path.dirname(os.path.join(top, rel)), exist_ok=True)
            with open(os.path.join(top, rel), 'wb') as f:
                f.write(content)
        os.makedirs(os.path.join(top, 'emptydir'))
        os.chmod(os.path.join(top, 'a.txt'), 0o751)

        for compress, mode in (('none', 'r|'), ('gz', 'r|gz'), ('bz2', 'r|bz2')):
            r, w = os.pipe()
            drain = Drain(r, keep=True)
            drain.start()
            cmd = self.transfer(self.build, 'upload_directory', w, path='tree', compress=compress)
            self.assertEqual(self.wait_completed(cmd), (0, ''), compress)
            drain.join(30)
            out = os.path.join(self.workdir, 'unpacked-' + compress)
            drain.data.seek(0)
            with tarfile.open(fileobj=drain.data, mode=mode) as tar:
                tar.extractall(out)
            got = {}
            for dirpath, dirnames, filenames in os.walk(out):
                for name in filenames:
                    p = os.path.join(dirpath, name)
                    with open(p, 'rb') as f:
                        got[os.path.relpath(p, out)] = f.read()
            self.assertEqual(got, files, compress)
            self.assertTrue(os.path.isdir(os.path.join(out, 'emptydir')))
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(out, 'a.txt')).st_mode), 0o751)
            self.assertEqual(self.prop(cmd, COMMAND_IFACE, 'TransferredBytes'), drain.size)

    def test_limit_exceeded_fails_clearly(self):
        src = os.path.join(self.builder_dir(), 'big.bin')
        write_random(src, 300000)

        # Upload: the caller gets at most the limit, and a failure saying so.
        r, w = os.pipe()
        drain = Drain(r)
        drain.start()
        cmd = self.transfer(self.build, 'upload_file', w, path='big.bin', maxsize=100000,
                            blocksize=16384)
        code, failure = self.wait_completed(cmd)
        drain.join(30)
        self.assertNotEqual(code, 0)
        self.assertIn('larger than the limit of 100000 bytes', failure)
        self.assertIn('incomplete', failure)
        self.assertLessEqual(drain.size, 100000)
        self.assertEqual(self.prop(cmd, COMMAND_IFACE, 'Failure'), failure)

        # A file exactly at the limit is fine.
        r, w = os.pipe()
        drain = Drain(r)
        drain.start()
        cmd = self.transfer(self.build, 'upload_file', w, path='big.bin', maxsize=300000)
        self.assertEqual(self.wait_completed(cmd), (0, ''))
        drain.join(30)
        self.assertEqual(drain.size, 300000)

        # Directory: the tar stream counts.
        r, w = os.pipe()
        drain = Drain(r)
        drain.start()
        cmd = self.transfer(self.build, 'upload_directory', w, path='.', maxsize=50000)
        code, failure = self.wait_completed(cmd)
        drain.join(30)
        self.assertNotEqual(code, 0)
        self.assertIn('tar stream is larger than the limit of 50000 bytes', failure)

        # Download: the worker is told, the command fails.
        r, w = os.pipe()
        feed = Feed(w, src)
        feed.start()
        cmd = self.transfer(self.build, 'download_file', r, path='down.bin', maxsize=1000)
        code, failure = self.wait_completed(cmd)
        self.assertNotEqual(code, 0)
        self.assertIn('larger than the limit of 1000 bytes', failure)
        feed.join(30)

        # Limits out of range, a missing or stray descriptor: refused up front.
        r, w = os.pipe()
        err, msg = self.transfer_error(self.build, 'upload_file', w, path='big.bin', maxsize=2 * 1024 * MB)
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('maxsize', msg)
        err, msg = self.transfer_error(self.build, 'download_file', r, path='x', blocksize=0)
        self.assertIn('blocksize', msg)
        err, msg = self.call_error(self.build, BUILD_IFACE, 'RunCommand', GLib.Variant(
            '(sa{sv})', ('upload_file', {'path': GLib.Variant('s', 'big.bin')})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('“fd”', msg)
        r, w = os.pipe()
        os.close(r)
        err, msg = self.transfer_error(self.build, 'shell', w, command='true')
        self.assertIn('“fd” is not known', msg)

    def test_missing_worker_file_fails(self):
        r, w = os.pipe()
        drain = Drain(r)
        drain.start()
        cmd = self.transfer(self.build, 'upload_file', w, path='no-such-file')
        code, failure = self.wait_completed(cmd)
        drain.join(30)
        self.assertNotEqual(code, 0)
        self.assertIn('Cannot open file', failure)
        self.assertEqual(drain.size, 0)

    def test_interrupt_ends_a_stalled_transfer(self):
        # Upload into a pipe nobody reads: the worker waits for our answer
        # to its block; Interrupt ends the command anyway.
        src = os.path.join(self.builder_dir(), 'big.bin')
        write_random(src, 8 * MB)
        r, w = os.pipe()
        cmd = self.transfer(self.build, 'upload_file', w, path='big.bin')
        self.wait_until(lambda: self.prop(cmd, COMMAND_IFACE, 'TransferredBytes') > 0, 30,
                        'some bytes transferred')
        self.assert_stays(lambda: not self.signals_named('Completed', cmd), 1.0, 'the stalled upload ended')
        start = time.monotonic()
        self.call(cmd, COMMAND_IFACE, 'Interrupt', GLib.Variant('(s)', ('enough',)))
        code, failure = self.wait_completed(cmd, timeout=20)
        self.assertLess(time.monotonic() - start, 10)
        self.assertNotEqual(code, 0)
        self.assertIn('interrupted: enough', failure)
        os.close(r)

        # Download from a pipe nobody writes: the same.
        r, w = os.pipe()
        cmd = self.transfer(self.build, 'download_file', r, path='never.bin')
        self.assert_stays(lambda: not self.signals_named('Completed', cmd), 1.0, 'the starved download ended')
        self.call(cmd, COMMAND_IFACE, 'Interrupt', GLib.Variant('(s)', ('stop',)))
        code, failure = self.wait_completed(cmd, timeout=20)
        self.assertNotEqual(code, 0)
        self.assertIn('interrupted: stop', failure)
        os.close(w)

        # The worker is fine afterwards.
        r, w = os.pipe()
        drain = Drain(r)
        drain.start()
        cmd = self.transfer(self.build, 'upload_file', w, path='big.bin')
        self.assertEqual(self.wait_completed(cmd), (0, ''))
        drain.join(30)
        self.assertEqual(drain.size, 8 * MB)

    def test_worker_lost_mid_transfer(self):
        src = os.path.join(self.builder_dir(), 'big.bin')
        write_random(src, 8 * MB)
        r, w = os.pipe()
        cmd = self.transfer(self.build, 'upload_file', w, path='big.bin')
        self.wait_until(lambda: self.prop(cmd, COMMAND_IFACE, 'TransferredBytes') > 0, 30,
                        'some bytes transferred')
        self.workers[0].kill()
        code, failure = self.wait_completed(cmd, timeout=30)
        self.assertNotEqual(code, 0)
        self.assertIn('lost', failure)
        os.close(r)

    def test_reader_gone_fails_the_upload(self):
        src = os.path.join(self.builder_dir(), 'big.bin')
        write_random(src, 4 * MB)
        r, w = os.pipe()
        os.close(r)
        cmd = self.transfer(self.build, 'upload_file', w, path='big.bin')
        code, failure = self.wait_completed(cmd)
        self.assertNotEqual(code, 0)
        self.assertIn('incomplete', failure)


class SlowReaderTest(TransferTestCase):
    def setUp(self):
        super().setUp()
        self.fleet(['w1', 'w2'])

    def test_slow_reader_does_not_stall_other_workers(self):
        b1 = self.new_build('w1')
        b2 = self.new_build('w2')
        src = os.path.join(self.builder_dir(0), 'big.bin')
        stuck_digest = write_random(src, 16 * MB)
        stuck_r, stuck_w = os.pipe()
        stuck = self.transfer(b1, 'upload_file', stuck_w, path='big.bin')
        self.wait_until(lambda: self.prop(stuck, COMMAND_IFACE, 'TransferredBytes') > 0, 30,
                        'the stuck upload started')
        self.assert_stays(lambda: self.prop(stuck, COMMAND_IFACE, 'TransferredBytes') <= 1 * MB, 2.0,
                          'the stuck upload went on without its reader')

        # w2 works at full speed meanwhile: output and a transfer.
        start = time.monotonic()
        r, w = os.pipe()
        drain = Drain(r)
        drain.start()
        dst = os.path.join(self.builder_dir(1), 'small.bin')
        digest = write_random(dst, 2 * MB)
        up = self.transfer(b2, 'upload_file', w, path='small.bin')
        self.assertEqual(self.wait_completed(up, timeout=30), (0, ''))
        drain.join(30)
        self.assertEqual(drain.sha.hexdigest(), digest)
        cmd = self.call(b2, BUILD_IFACE, 'RunCommand', GLib.Variant(
            '(sa{sv})', ('shell', {'command': GLib.Variant('as', ['seq', '1', '1000'])})))[0]
        self.assertEqual(self.wait_completed(cmd, timeout=30), (0, ''))
        elapsed = time.monotonic() - start
        print('w2: 2 MB upload and a shell command in %.2f s while w1 upload is stalled' % elapsed)
        self.assertLess(elapsed, 15)
        self.assertFalse(self.signals_named('Completed', stuck))

        # The stalled one resumes once its reader reads.
        drain = Drain(stuck_r)
        drain.start()
        self.assertEqual(self.wait_completed(stuck, timeout=60), (0, ''))
        drain.join(30)
        self.assertEqual((drain.size, drain.sha.hexdigest()), (16 * MB, stuck_digest))


# The same with PB workers: our writer / reader objects instead of
# msgpack's update_upload_* messages.
class TransferPbTest(TransferTest):
    protocol = 'pb'


class SlowReaderPbTest(SlowReaderTest):
    protocol = 'pb'


class HostileTransferTest(TransferTestCase):
    """A raw msgpack worker that breaks the transfer rules: the daemon
    refuses, bounds what it gives, and carries on."""

    def setUp(self):
        super().setUp()
        import msgpack
        from test_hostile_values import HostileWorker, pack
        self.pack = pack
        self.write_config(self.daemon_section(KeepaliveInterval='30', FinishedBuildLifetime='60') +
                          '[Worker evil]\nPassword=pe\nBuilders=b\nMissingTimeout=60\n')
        self.start_daemon()
        self.evil = HostileWorker(self, 'evil', 'pe', pack({
            'admin': 'a', 'host': 'h', 'version': '3.7.0', 'basedir': '/nonexistent/evil',
            'worker_commands': {'shell': '3.7', 'upload_file': '3.7', 'download_file': '3.7'}}))
        self.addCleanup(self.evil.close)
        self.evil.attach()
        self.wait_connected('evil', timeout=30)
        self.build = self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                               GLib.Variant('(sa{sv})', ('b', {})))[0]
        msg = self.evil.wait_op('start_command')
        self.evil.respond(msg['seq_number'])
        self.evil.command_message('complete', msg['command_id'], b'\xc0')
        self.wait_until(lambda: self.prop(self.build, BUILD_IFACE, 'State') == 'running', 20, 'running')

    def wait_op(self, op):
        """The daemon's next request @op; other requests are answered,
        the daemon's responses to our messages skipped."""
        while True:
            msg = self.evil.recv()
            if msg['op'] == op:
                return msg
            if msg['op'] != 'response':
                self.evil.respond(msg['seq_number'])

    def start(self, name, fd, **args):
        cmd = self.transfer(self.build, name, fd, **args)
        msg = self.wait_op('start_command')
        self.assertEqual(msg['command_name'], name)
        self.evil.respond(msg['seq_number'])
        return cmd, msg

    def step(self, op, command_id, **fields):
        """Sends a transfer step; returns its seq_number."""
        self.evil.seq += 1
        m = {'op': op, 'seq_number': self.evil.seq, 'command_id': command_id}
        m.update(fields)
        self.evil.send_raw(self.pack(m))
        return self.evil.seq

    def answer(self, seq):
        """The daemon's response to our message @seq (pumping D-Bus meanwhile
        is not needed: the daemon answers on its own)."""
        while True:
            msg = self.evil.recv()
            if msg['op'] == 'response' and msg['seq_number'] == seq:
                return msg
            if msg['op'] != 'response':
                self.evil.respond(msg['seq_number'])

    def test_rule_breaking_steps(self):
        # Two blocks without waiting for the answer to the first (nobody
        # reads the pipe, so the first cannot be answered yet).
        r, w = os.pipe()
        cmd, msg = self.start('upload_file', w, path='x')
        cid = msg['command_id']
        first = self.step('update_upload_file_write', cid, args=b'a' * 200000)
        second = self.step('update_upload_file_write', cid, args=b'b' * 10)
        self.assertTrue(self.answer(second).get('is_exception'))
        self.assertTrue(self.answer(first).get('is_exception'))
        self.evil.command_message('complete', cid, b'\xc0')
        code, failure = self.wait_completed(cmd)
        self.assertIn('before the previous one was answered', failure)
        os.close(r)

        # A download step on an upload, data that is not bytes: refused.
        r, w = os.pipe()
        cmd, msg = self.start('upload_file', w, path='x')
        cid = msg['command_id']
        self.assertTrue(self.answer(self.step('update_upload_file_write', cid, args='text')).get('is_exception'))
        self.assertTrue(self.answer(self.step('update_read_file', cid, length=10)).get('is_exception'))
        self.evil.command_message('complete', cid, b'\xc0')
        code, failure = self.wait_completed(cmd)
        self.assertNotEqual(failure, '')
        os.close(r)

        # Asking for 2^62 bytes gets at most a megabyte.
        src = os.path.join(self.workdir, 'three.bin')
        write_random(src, 3 * MB)
        r, w = os.pipe()
        feed = Feed(w, src)
        feed.start()
        cmd, msg = self.start('download_file', r, path='y')
        cid = msg['command_id']
        got = 0
        while True:
            data = self.answer(self.step('update_read_file', cid, length=2 ** 62))['result']
            self.assertLessEqual(len(data), 1024 * 1024)
            if not data:
                break
            got += len(data)
        self.assertEqual(got, 3 * MB)
        self.assertFalse(self.answer(self.step('update_read_file_close', cid)).get('is_exception'))
        self.evil.command_message('complete', cid, b'\xc0')
        self.assertEqual(self.wait_completed(cmd), (0, ''))

        # Transfer steps for a shell command: refused, the command unharmed.
        cmd = self.call(self.build, BUILD_IFACE, 'RunCommand', GLib.Variant(
            '(sa{sv})', ('shell', {'command': GLib.Variant('s', 'true')})))[0]
        msg = self.wait_op('start_command')
        self.evil.respond(msg['seq_number'])
        reply = self.answer(self.step('update_upload_file_write', msg['command_id'], args=b'zz'))
        self.assertTrue(reply.get('is_exception'))
        self.assertIn('transfers no file', reply['result'])
        self.evil.command_message('complete', msg['command_id'], b'\xc0')
        self.assertEqual(self.wait_completed(cmd), (0, ''))
        self.assertIsNone(self.daemon.poll())


if __name__ == '__main__':
    bfharness.main()
