#!/usr/bin/python3
# Builds over D-Bus with real buildbot-worker processes: leases, remote
# commands with streamed output, limits, fairness, graceful, owner death,
# worker death and quarantine.  The classes marked @for_both_protocols run
# twice: XxxTest with msgpack workers, XxxPbTest with PB workers.  A PB
# worker runs one command per builder at a time; no test here runs two
# commands of one builder at once (test_pb.py checks PB's Busy for that).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import select
import signal
import subprocess
import sys
import tempfile
import time

from gi.repository import Gio, GLib

import bfharness
from bfharness import (BUILD_IFACE, COMMAND_IFACE, FLEET_PATH, MANAGER_IFACE, for_both_protocols,
                       worker_path)


class BuildTestCase(bfharness.FleetTestCase):
    def fleet(self, workers, **daemon):
        keys = {'FinishedBuildLifetime': '30', 'QuarantineInitial': '0.5'}
        keys.update(daemon)
        text = self.daemon_section(**keys)
        for name, max_builds, builders in workers:
            text += '[Worker %s]\nPassword=pw-%s\nMaxBuilds=%d\nBuilders=%s\nMissingTimeout=60\n' % (
                name, name, max_builds, builders)
        self.write_config(text)
        self.start_daemon()
        procs = {}
        for name, _, _ in workers:
            procs[name] = self.add_worker(name, 'pw-' + name).start()
        for name in procs:
            self.wait_connected(name)
            self.assert_protocol(name)
        return procs

    def request(self, builder, **options):
        opts = {}
        for k, v in options.items():
            k = k.replace('_', '-')
            if isinstance(v, bool):
                opts[k] = GLib.Variant('b', v)
            elif isinstance(v, int):
                opts[k] = GLib.Variant('t', v)
            else:
                opts[k] = GLib.Variant('s', v)
        return self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                         GLib.Variant('(sa{sv})', (builder, opts)))[0]

    def build_prop(self, build, name):
        return self.prop(build, BUILD_IFACE, name)

    def wait_build_state(self, build, state, timeout=10):
        return self.wait_until(lambda: self.build_prop(build, 'State') == state, timeout,
                               'build %s %s' % (build, state))

    def run_command(self, build, name, args):
        return self.call(build, BUILD_IFACE, 'RunCommand',
                         GLib.Variant('(sa{sv})', (name, args)))[0]

    def shell(self, build, command, **extra):
        args = {'command': GLib.Variant('as' if isinstance(command, list) else 's', command)}
        for k, v in extra.items():
            args[k] = v
        return self.run_command(build, "shell", args)

    def start_sleeper(self, build):
        """A shell command that runs for 30 s, returned once it runs on the
        worker (it made its marker file), not merely once asked for.  Not its
        output: a worker sends that after up to 5 s of buffering."""
        marker = tempfile.mktemp(prefix='running-', dir=self.workdir)
        cmd = self.shell(build, ['sh', '-c', 'touch "$0"; exec sleep 30', marker])
        self.wait_until(lambda: os.path.exists(marker), 20, 'command %s running on the worker' % cmd)
        return cmd

    def wait_completed(self, command, timeout=20):
        sig = self.wait_signal('Completed', command, timeout=timeout)
        return sig[0][3]

    def output(self, command, stream=None):
        return ''.join(s[3][1] for s in self.signals_named('Output', command)
                       if stream is None or s[3][0] == stream)

    def release(self, build):
        self.call(build, BUILD_IFACE, 'Release')


# Output descriptors and tails are fed by the command object whatever the
# link: once is enough (test_fifty_thousand_lines_arrive_whole is PB's
# long output).
@for_both_protocols(msgpack_only=('test_output_to_descriptors_and_tail', 'test_reader_gone_or_bad_handle'))
class CommandTest(BuildTestCase):
    def setUp(self):
        super().setUp()
        self.procs = self.fleet([('w1', 2, 'b')])
        self.build = self.request('b')
        self.wait_build_state(self.build, 'running')

    def test_exit_code_streams_workdir_env(self):
        workdir = os.path.join(self.workdir, 'wd')
        cmd = self.shell(self.build, ['sh', '-c', 'echo out; echo err >&2; pwd; echo "$FOO"; exit 3'],
                         workdir=GLib.Variant('s', workdir),
                         env=GLib.Variant('a{ss}', {'FOO': 'bar baz'}))
        self.assertTrue(cmd.startswith(self.build + '/commands/'))
        code, failure = self.wait_completed(cmd)
        self.assertEqual((code, failure), (3, ''))
        self.assertEqual(self.output(cmd, 'stdout'), 'out\n%s\nbar baz\n' % workdir)
        self.assertEqual(self.output(cmd, 'stderr'), 'err\n')
        self.assertIn('sh -c', self.output(cmd, 'header'))
        p = self.props(cmd, COMMAND_IFACE)
        self.assertEqual((p['Name'], p['State'], p['ExitCode'], p['Failure']), ('shell', 'finished', 3, ''))
        self.assertTrue(os.path.isdir(workdir))

        ok = self.shell(self.build, 'true')
        self.assertEqual(self.wait_completed(ok), (0, ''))

    def run_with_fds(self, command, stdout_fd, stderr_fd):
        fds = Gio.UnixFDList.new()
        args = {'command': GLib.Variant('as', command),
                'stdout-fd': GLib.Variant('h', fds.append(stdout_fd)),
                'stderr-fd': GLib.Variant('h', fds.append(stderr_fd))}
        r, _ = self.bus.call_with_unix_fd_list_sync(
            bfharness.BUS_NAME, self.build, BUILD_IFACE, 'RunCommand',
            GLib.Variant('(sa{sv})', ('shell', args)), None, Gio.DBusCallFlags.NONE, 5000, fds, None)
        return r.unpack()[0]

    @staticmethod
    def read_all(fd, deadline):
        data = b''
        os.set_blocking(fd, False)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError('no end of file on the output descriptor')
                select.select([fd], [], [], 0.2)
                continue
            if not chunk:
                return data
            data += chunk

    def test_output_to_descriptors_and_tail(self):
        # A command that ends in a millisecond: nothing subscribed late can
        # miss its output in the descriptors or in the tail.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cmd = self.run_with_fds(['sh', '-c', 'echo fast; echo slow >&2; exit 4'], out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        deadline = time.monotonic() + 30
        self.assertEqual(self.read_all(out_r, deadline), b'fast\n')
        self.assertEqual(self.read_all(err_r, deadline), b'slow\n')
        self.assertEqual(self.wait_completed(cmd), (4, ''))
        tails = self.call(cmd, COMMAND_IFACE, 'GetOutputTail')[0]
        self.assertEqual(tails['stdout'], 'fast\n')
        self.assertEqual(tails['stderr'], 'slow\n')
        self.assertIn('sh -c', tails['header'])

        # The tail keeps the end of a long output, whole characters.
        cmd = self.shell(self.build, ['sh', '-c', 'seq 1 100000; printf "\\303\\251nd\\n"'])
        self.assertEqual(self.wait_completed(cmd, timeout=60), (0, ''))
        tail = self.call(cmd, COMMAND_IFACE, 'GetOutputTail')[0]['stdout']
        self.assertLessEqual(len(tail.encode()), 64 * 1024)
        self.assertGreater(len(tail.encode()), 60 * 1024)
        self.assertTrue(tail.endswith('99999\n100000\n\u00e9nd\n'), tail[-40:])

    def test_reader_gone_or_bad_handle(self):
        # A reader that closed its end: the daemon carries on, the command
        # completes, its output is still in signals and tail.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.close(out_r)
        cmd = self.run_with_fds(['sh', '-c', 'seq 1 20000; echo done'], out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        self.assertEqual(self.wait_completed(cmd, timeout=60), (0, ''))
        self.assertTrue(self.output(cmd, 'stdout').endswith('20000\ndone\n'))
        self.assertEqual(self.read_all(err_r, time.monotonic() + 30), b'')
        err, msg = self.call_error(self.build, BUILD_IFACE, 'RunCommand', GLib.Variant(
            '(sa{sv})', ('shell', {'command': GLib.Variant('s', 'true'),
                                   'stdout-fd': GLib.Variant('h', 7)})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('stdout-fd', msg)
        err, msg = self.call_error(self.build, BUILD_IFACE, 'RunCommand', GLib.Variant(
            '(sa{sv})', ('shell', {'command': GLib.Variant('s', 'true'),
                                   'stderr-fd': GLib.Variant('s', '/tmp/x')})))
        self.assertIn('file descriptor', msg)

    def test_relative_workdir_is_under_builder_dir(self):
        cmd = self.shell(self.build, ['pwd'], workdir=GLib.Variant('s', 'src'))
        self.wait_completed(cmd)
        basedir = self.workers[0].basedir
        self.assertEqual(self.output(cmd, 'stdout'), os.path.join(basedir, 'b', 'src') + '\n')

    def test_fifty_thousand_lines_arrive_whole(self):
        cmd = self.shell(self.build, ['seq', '1', '50000'])
        self.assertEqual(self.wait_completed(cmd, timeout=60), (0, ''))
        expected = ''.join('%d\n' % i for i in range(1, 50001))
        got = self.output(cmd, 'stdout')
        self.assertEqual(len(got), len(expected))
        self.assertEqual(got, expected)

    def test_interrupt(self):
        cmd = self.start_sleeper(self.build)
        start = time.monotonic()
        self.call(cmd, COMMAND_IFACE, 'Interrupt', GLib.Variant('(s)', ('enough',)))
        code, failure = self.wait_completed(cmd, timeout=15)
        self.assertLess(time.monotonic() - start, 10)
        self.assertNotEqual(code, 0)
        name, _ = self.call_error(cmd, COMMAND_IFACE, 'Interrupt', GLib.Variant('(s)', ('again',)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.Failed')

    def test_file_commands(self):
        d = os.path.join(self.workdir, 'made', 'deep')
        mk = self.run_command(self.build, 'mkdir', {'paths': GLib.Variant('as', [d])})
        self.assertEqual(self.wait_completed(mk), (0, ''))
        self.assertTrue(os.path.isdir(d))
        open(os.path.join(d, 'f1'), 'w').close()
        ls = self.run_command(self.build, 'listdir', {'path': GLib.Variant('s', d)})
        self.assertEqual(self.wait_completed(ls), (0, ''))
        self.assertEqual(self.output(ls, 'files'), 'f1\n')
        rm = self.run_command(self.build, 'rmdir', {'paths': GLib.Variant('as', [os.path.join(self.workdir, 'made')])})
        self.assertEqual(self.wait_completed(rm), (0, ''))
        self.assertFalse(os.path.exists(d))
        st = self.run_command(self.build, 'stat', {'path': GLib.Variant('s', d)})
        code, failure = self.wait_completed(st)
        self.assertNotEqual(code, 0)

    def test_bad_arguments(self):
        cases = [
            ('shell', {'command': GLib.Variant('i', 3)}, 'command'),
            ('shell', {}, 'command'),
            ('shell', {'command': GLib.Variant('s', 'x'), 'env': GLib.Variant('as', ['A=1'])}, 'env'),
            ('shell', {'command': GLib.Variant('s', 'x'), 'timeout': GLib.Variant('s', 'soon')}, 'timeout'),
            ('shell', {'command': GLib.Variant('s', 'x'), 'colour': GLib.Variant('s', 'red')}, 'colour'),
            ('mkdir', {'paths': GLib.Variant('i', 1)}, 'paths'),
            ('teleport', {}, 'teleport'),
        ]
        for name, args, word in cases:
            err, msg = self.call_error(self.build, BUILD_IFACE, 'RunCommand',
                                       GLib.Variant('(sa{sv})', (name, args)))
            self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs', msg)
            self.assertIn(word, msg)
        self.assertEqual([p for p in self.managed_objects() if '/commands/' in p], [])


class SchedulingTest(BuildTestCase):
    def test_max_builds_queue_and_order(self):
        self.fleet([('w1', 1, 'b')])
        builds = [self.request('b') for _ in range(3)]
        self.wait_build_state(builds[0], 'running')
        self.assert_stays(lambda: self.build_prop(builds[1], 'State') == 'pending', 0.5,
                          'a second build on a worker with MaxBuilds=1')
        self.assertEqual(self.build_prop(builds[1], 'Worker'), '/')
        self.assertEqual(self.worker_prop('w1', 'ActiveBuilds'), 1)
        self.assertEqual(self.manager_prop('BuildsActive'), 1)
        self.release(builds[0])
        self.wait_build_state(builds[1], 'running')
        self.assertEqual(self.build_prop(builds[2], 'State'), 'pending')
        self.release(builds[1])
        self.wait_build_state(builds[2], 'running')
        self.wait_signal('Started', count=3)
        started = [s[0] for s in self.signals_named('Started')]
        self.assertEqual(started, builds)
        finished = self.wait_signal('Finished', count=2)
        self.assertEqual([(s[0], s[3][0]) for s in finished],
                         [(builds[0], 'released'), (builds[1], 'released')])
        self.release(builds[2])
        self.wait_until(lambda: self.worker_prop('w1', 'ActiveBuilds') == 0, message='slots free')

    def test_one_build_per_builder_per_worker(self):
        # MaxBuilds=2 leaves room for two builds, but not of one builder:
        # both would use BASEDIR/b.
        self.fleet([('w1', 2, 'b;c')])
        b1 = self.request('b')
        b2 = self.request('b')
        c1 = self.request('c')
        self.wait_build_state(b1, 'running')
        self.wait_build_state(c1, 'running')
        self.assert_stays(lambda: self.build_prop(b2, 'State') == 'pending', 1.0,
                          'two builds of one builder on one worker')
        self.assertEqual(self.worker_prop('w1', 'ActiveBuilds'), 2)
        self.release(b1)
        self.wait_build_state(b2, 'running')
        self.release(b2)
        self.release(c1)
        self.wait_until(lambda: self.worker_prop('w1', 'ActiveBuilds') == 0, message='slots free')

    def test_spread_over_workers(self):
        self.fleet([('w1', 2, 'b'), ('w2', 2, 'b')])
        b1 = self.request('b')
        b2 = self.request('b')
        self.wait_build_state(b1, 'running')
        self.wait_build_state(b2, 'running')
        self.assertNotEqual(self.build_prop(b1, 'Worker'), self.build_prop(b2, 'Worker'))

    def test_only_paused_and_unknown(self):
        self.fleet([('w1', 2, 'b;c'), ('w2', 2, 'b')])
        self.worker_call('w2', 'Pause', GLib.Variant('(s)', ('no',)))
        b = self.request('b', worker='w2')
        self.assert_stays(lambda: self.build_prop(b, 'State') == 'pending', 0.5, 'a build on a paused worker')
        self.worker_call('w2', 'Unpause')
        self.wait_build_state(b, 'running')
        self.assertEqual(self.build_prop(b, 'Worker'), worker_path('w2'))

        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                                   GLib.Variant('(sa{sv})', ('nobody-builds-this', {})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.NotFound')
        self.assertIn('nobody-builds-this', msg)
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                                   GLib.Variant('(sa{sv})', ('c', {'worker': GLib.Variant('s', 'w2')})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                                   GLib.Variant('(sa{sv})', ('b', {'worker': GLib.Variant('s', 'zz')})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.NotFound')
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                                   GLib.Variant('(sa{sv})', ('b', {'detached': GLib.Variant('s', 'yes')})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('detached', msg)
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild',
                                   GLib.Variant('(sa{sv})', ('b', {'priority': GLib.Variant('i', 1)})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')

    def test_pending_builds_say_what_they_wait_for(self):
        procs = self.fleet([('w1', 1, 'b'), ('w2', 1, 'b')])
        self.assertEqual(self.manager_prop('BuildsPending'), 0)
        first = self.request('b', worker='w1')
        self.wait_build_state(first, 'running')
        self.assertEqual(self.build_prop(first, 'WaitingFor'), '')
        self.worker_call('w2', 'Pause', GLib.Variant('(s)', ('disk full',)))
        waiting = self.request('b')
        self.wait_until(lambda: self.build_prop(waiting, 'WaitingFor') == 'w1: busy; w2: paused'
                        or self.build_prop(waiting, 'WaitingFor') == 'w2: paused; w1: busy',
                        message='WaitingFor names both workers')
        self.assertEqual(self.manager_prop('BuildsPending'), 1)
        only = self.request('b', worker='w2')
        self.wait_until(lambda: self.build_prop(only, 'WaitingFor') == 'w2: paused', message='only w2')
        self.assertEqual(self.manager_prop('BuildsPending'), 2)
        # The reason follows the worker: kill it, it is "not connected".
        procs['w2'].kill()
        self.wait_connected('w2', value=False)
        self.worker_call('w2', 'Unpause')
        self.wait_until(lambda: self.build_prop(only, 'WaitingFor') == 'w2: not connected',
                        message='reason follows the worker')
        self.release(first)
        self.wait_build_state(waiting, 'running')
        self.assertEqual(self.build_prop(waiting, 'WaitingFor'), '')
        self.wait_until(lambda: self.manager_prop('BuildsPending') == 1, message='one left')

    def request_labels(self, builder, labels, **extra):
        opts = {'labels': GLib.Variant('as', labels)}
        opts.update(extra)
        return self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant('(sa{sv})', (builder, opts)))[0]

    def test_labels_choose_the_worker(self):
        text = self.daemon_section(FinishedBuildLifetime='30')
        text += '[Worker w1]\nPassword=pw-w1\nMaxBuilds=2\nBuilders=b;c\nLabels=gpu;big\n'
        text += '[Worker w2]\nPassword=pw-w2\nMaxBuilds=2\nBuilders=b;c\n'
        self.write_config(text)
        self.start_daemon()
        for name in ('w1', 'w2'):
            self.add_worker(name, 'pw-' + name).start()
            self.wait_connected(name)
        labels = self.worker_prop('w1', 'Labels')
        self.assertIn('gpu', labels)
        self.assertIn('big', labels)
        self.assertIn('cpus=%d' % os.cpu_count(), labels)
        self.assertEqual(labels, sorted(labels))
        with open('/etc/os-release') as f:
            os_id = [l.split('=', 1)[1].strip().strip('"') for l in f if l.startswith('ID=')][0]
        self.assertIn('os=' + os_id, self.worker_prop('w2', 'Labels'))
        self.assertNotIn('gpu', self.worker_prop('w2', 'Labels'))

        # A label only w1 has: never w2, even while w1 cannot take it.
        b1 = self.request_labels('b', ['gpu'])
        self.wait_build_state(b1, 'running')
        self.assertEqual(self.build_prop(b1, 'Worker'), worker_path('w1'))
        self.assertEqual(self.build_prop(b1, 'Labels'), ['gpu'])
        self.worker_call('w1', 'Pause', GLib.Variant('(s)', ('maintenance',)))
        c1 = self.request_labels('c', ['gpu', 'big'])
        self.wait_until(lambda: self.build_prop(c1, 'WaitingFor') == 'w1: paused', message='waits for w1')
        self.assert_stays(lambda: self.build_prop(c1, 'State') == 'pending', 1.0,
                          'a gpu build on a worker without the label')
        self.worker_call('w1', 'Unpause')
        self.wait_build_state(c1, 'running')
        self.assertEqual(self.build_prop(c1, 'Worker'), worker_path('w1'))

        # A reported label any worker has; an impossible one fails at once.
        d = self.request_labels('b', ['os=' + os_id])
        self.wait_build_state(d, 'running')
        self.assertEqual(self.build_prop(d, 'Worker'), worker_path('w2'))
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant(
            '(sa{sv})', ('b', {'labels': GLib.Variant('as', ['gpu', 'fpga'])})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.NotFound')
        self.assertIn('fpga', msg)
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant(
            '(sa{sv})', ('b', {'labels': GLib.Variant('as', ['gpu']), 'worker': GLib.Variant('s', 'w2')})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.NotFound')
        err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant(
            '(sa{sv})', ('b', {'labels': GLib.Variant('as', ['two words'])})))
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('two words', msg)

    def test_wait_timeout(self):
        self.fleet([('w1', 1, 'b')])
        first = self.request('b')
        self.wait_build_state(first, 'running')
        self.assertEqual(self.build_prop(first, 'Result'), '')
        waiting = self.request('b', timeout_usec=300000)
        sig = self.wait_signal('Finished', waiting, timeout=5)
        self.assertEqual(sig[0][3], ('timeout',))
        self.assertEqual(self.build_prop(waiting, 'State'), 'finished')
        self.assertEqual(self.build_prop(waiting, 'Result'), 'timeout')
        self.assertEqual(self.build_prop(first, 'State'), 'running')
        self.release(first)
        self.wait_until(lambda: self.build_prop(first, 'Result') == 'released', message='Result released')

    def test_finished_builds_leave_the_bus(self):
        self.fleet([('w1', 1, 'b')], FinishedBuildLifetime='0.3')
        b = self.request('b')
        self.wait_build_state(b, 'running')
        cmd = self.shell(b, 'true')
        self.wait_completed(cmd)
        self.release(b)
        self.assertIn(b, self.managed_objects())
        self.wait_until(lambda: b not in self.managed_objects() and cmd not in self.managed_objects(),
                        message='finished build removed')


@for_both_protocols
class GracefulTest(BuildTestCase):
    def test_graceful_shutdown_after_last_build(self):
        # Two builders: a worker runs one build of a builder at a time.
        procs = self.fleet([('w1', 2, 'b;c')])
        b1 = self.request('b')
        b2 = self.request('c')
        self.wait_build_state(b1, 'running')
        self.wait_build_state(b2, 'running')
        self.worker_call('w1', 'SetGraceful', GLib.Variant('(b)', (True,)))
        # No new builds on a graceful worker (b's slot is free below) ...
        b3 = self.request('b')
        self.release(b1)
        self.assert_stays(lambda: self.build_prop(b3, 'State') == 'pending' and procs['w1'].running(), 0.5,
                          'no new build on a graceful worker, which stays up while it has one')
        # ... and it shuts down once its last build is released.
        self.release(b2)
        self.wait_until(lambda: not procs['w1'].running(), timeout=10, message='worker exits')


# A detached build that survives its owner runs no command: once is enough.
@for_both_protocols(msgpack_only=('test_detached_build_survives_owner',))
class OwnerTest(BuildTestCase):
    CLIENT = '''
import sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
opts = {'detached': GLib.Variant('b', sys.argv[1] == 'detached')}
r = bus.call_sync('org.buildfleet.Fleet1', '/org/buildfleet/Fleet1', 'org.buildfleet.Fleet1.Manager',
                  'RequestBuild', GLib.Variant('(sa{sv})', ('b', opts)), None, 0, 5000, None)
print(r.unpack()[0], flush=True)
sys.stdin.readline()
'''

    def client(self, mode):
        p = subprocess.Popen(['/usr/bin/python3', '-c', self.CLIENT, mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=os.environ)
        return p, p.stdout.readline().strip()

    def test_owner_death_releases(self):
        self.fleet([('w1', 2, 'b')])
        p, build = self.client('attached')
        self.wait_build_state(build, 'running')
        cmd = self.start_sleeper(build)
        p.kill()
        p.wait()
        sig = self.wait_signal('Finished', build, timeout=5)
        self.assertEqual(sig[0][3], ('owner-gone',))
        code, _ = self.wait_completed(cmd, timeout=15)
        self.assertNotEqual(code, 0)
        self.wait_until(lambda: self.worker_prop('w1', 'ActiveBuilds') == 0, message='slot freed')

    def test_detached_build_survives_owner(self):
        self.fleet([('w1', 2, 'b')])
        p, build = self.client('detached')
        self.wait_build_state(build, 'running')
        p.kill()
        p.wait()
        self.assert_stays(lambda: self.build_prop(build, 'State') == 'running', 1.0,
                          'a detached build survives its owner')
        self.release(build)
        self.assertEqual(self.build_prop(build, 'State'), 'finished')


@for_both_protocols
class LostWorkerTest(BuildTestCase):
    def test_worker_death_mid_command_and_quarantine(self):
        procs = self.fleet([('w1', 2, 'b')])
        build = self.request('b')
        self.wait_build_state(build, 'running')
        cmd = self.start_sleeper(build)
        procs['w1'].kill(signal.SIGKILL)
        code, failure = self.wait_completed(cmd, timeout=5)
        self.assertEqual(code, -1)
        self.assertIn('worker was lost', failure)
        sig = self.wait_signal('Finished', build, timeout=5)
        self.assertEqual(sig[0][3], ('lost',))
        self.assertEqual(self.prop(cmd, COMMAND_IFACE, 'State'), 'finished')
        self.assertEqual(self.worker_prop('w1', 'ActiveBuilds'), 0)
        self.assertEqual(self.manager_prop('BuildsActive'), 0)
        self.assertTrue(self.worker_prop('w1', 'Quarantined'))
        until = self.worker_prop('w1', 'QuarantineUntilUSec')
        self.assertGreater(until / 1e6, time.time())
        self.assertFalse(self.worker_prop('w1', 'Paused'))

        # Back, but quarantined: a new build waits until the quarantine ends.
        procs['w1'].start()
        self.wait_connected('w1')
        b2 = self.request('b')
        self.wait_until(lambda: not self.worker_prop('w1', 'Quarantined'), timeout=10,
                        message='quarantine over')
        self.assertGreaterEqual(time.time() + 0.1, until / 1e6)
        self.wait_build_state(b2, 'running')
        self.assertEqual(self.worker_prop('w1', 'QuarantineUntilUSec'), 0)
        ok = self.shell(b2, 'true')
        self.wait_completed(ok)
        self.release(b2)

        # The good build reset the backoff: the next loss quarantines for the
        # initial 0.5 s again, not 1 s.
        b3 = self.request('b')
        self.wait_build_state(b3, 'running')
        procs['w1'].kill(signal.SIGKILL)
        self.wait_signal('Finished', b3)
        until = self.worker_prop('w1', 'QuarantineUntilUSec')
        self.assertLess(until / 1e6 - time.time(), 0.6)


if __name__ == '__main__':
    bfharness.main()
