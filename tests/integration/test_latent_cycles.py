#!/usr/bin/python3
# Latent workers through several start/stop cycles: every start must give
# a working instance, for a fresh instance per build (BuildWaitTimeout=0)
# as well as one kept for a while after its build (BuildWaitTimeout=2).
# A local worker used to start once and then fail on every later start
# (create-worker --force left the old buildbot.tac).
#
# Each cycle is a real build on a real buildbot-worker, and instances are
# counted from the engine: the processes the command driver's engine
# script leaves running, and for systemd the units and processes of
# systemd_units.py, a dbusmock template of systemd's manager that runs each
# unit's ExecStart and publishes template instances (buildbot-worker@NAME
# .service, the driver's default Unit=) at systemd's object paths.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import subprocess
import sys
import time

import bfharness
from bfharness import BUILD_IFACE, worker_path
import test_latent
from test_latent import LatentTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMD_TEMPLATE = os.path.join(HERE, 'systemd_units.py')
BUILDBOT_WORKER = '/usr/bin/buildbot-worker'
CYCLES = 3
KEEP = 2        # BuildWaitTimeout= of the "kept" cycles, in seconds


def alive(pid):
    """Whether @pid runs (a zombie has ended)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def worker_processes(basedir_prefix):
    """Pids of `buildbot-worker start` processes whose base directory lies
    under @basedir_prefix, found in /proc (the engine's view)."""
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                argv = f.read().decode(errors='replace').split('\0')
        except OSError:
            continue
        if (any(a.endswith('buildbot-worker') for a in argv[:2]) and 'start' in argv and
                any(a.startswith(basedir_prefix) for a in argv) and alive(int(entry))):
            pids.append(int(entry))
    return pids


class CycleTestCase(LatentTestCase):
    def instances(self):
        """The pids of the instances running now, as the engine sees them."""
        raise NotImplementedError

    def build_cycles(self, name, keep):
        """CYCLES builds on @name, each on an instance of its own: with
        @keep = 0 it is stopped once its build is released, with @keep > 0
        it is kept that many seconds, then stopped.  Returns the instance
        pids, one per cycle."""
        pids = []
        for i in range(CYCLES):
            build = self.request('b')
            self.wait_build(build, 'running', timeout=90)
            running = self.instances()
            self.assertEqual(len(running), 1, 'cycle %d: one instance runs: %r' % (i, running))
            self.assertTrue(alive(running[0]), 'cycle %d: instance %d runs' % (i, running[0]))
            pids.append(running[0])
            self.assertEqual(self.run_shell(build, 'echo cycle %d' % i), (0, ''), 'cycle %d' % i)
            released = time.monotonic()     # before the call: the timer starts after it
            self.call(build, BUILD_IFACE, 'Release')
            if keep:
                # Kept (and still running) for BuildWaitTimeout after the build ...
                self.assert_stays(lambda: (self.latent_prop(name, 'State') == 'substantiated' and
                                         alive(pids[-1])),
                                max(0, keep - 0.5 - (time.monotonic() - released)), 'cycle %d: kept' % i)
            # ... then stopped: no instance is left in the engine.
            self.wait_until(lambda: self.latent_prop(name, 'State') == 'not-substantiated', 60,
                            'cycle %d stopped' % i)
            if keep:
                self.assertGreaterEqual(time.monotonic() - released, keep, 'cycle %d: kept long enough' % i)
            self.wait_until(lambda: not self.instances() and not alive(pids[-1]), 30,
                            'cycle %d: instance %d gone' % (i, pids[-1]))
            self.wait_connected(name, value=False)
        self.assertEqual(len(set(pids)), CYCLES, 'a new instance per cycle: %r' % pids)
        self.assertFalse(self.worker_prop(name, 'Quarantined'))
        self.assertEqual(len(self.signals_named('Substantiated', worker_path(name))), CYCLES)
        self.assertEqual(len(self.signals_named('Insubstantiated', worker_path(name))), CYCLES)
        self.assertEqual(self.signals_named('SubstantiationFailed'), [])
        return pids


class CycleTest(CycleTestCase):
    """Latent=local (the instance's buildbot.tac is written afresh at each start)."""

    def local_worker(self, wait):
        return ('[Worker local-1]\nPassword=generate\nLatent=local\nBuilders=b\n'
                'BuildWaitTimeout=%s\nSubstantiationTimeout=60\n' % wait)

    def instances(self):
        return worker_processes(os.path.join(self.statedir, 'local', ''))

    def test_local_fresh_instance_per_build(self):
        self.write_config(self.daemon_section() + self.local_worker('0'))
        self.start_daemon()
        self.build_cycles('local-1', 0)

    def test_local_kept_instance(self):
        self.write_config(self.daemon_section() + self.local_worker(KEEP))
        self.start_daemon()
        self.build_cycles('local-1', KEEP)

    def test_local_substantiate_cycles(self):
        self.write_config(self.daemon_section() + self.local_worker('-1'))
        self.start_daemon()
        for i in range(CYCLES):
            self.substantiate('local-1')
            self.assertTrue(self.worker_prop('local-1', 'Connected'), 'cycle %d' % i)
            self.insubstantiate('local-1', i % 2 == 1)
            self.assertEqual(self.latent_prop('local-1', 'State'), 'not-substantiated')
        self.assertFalse(self.worker_prop('local-1', 'Quarantined'))


class CommandCycleTest(CycleTestCase):
    """Latent=command: latent/start-worker.sh creates a buildbot-worker under
    the engine directory and leaves it running; stop-worker.sh stops it."""

    def instances(self):
        return worker_processes(os.path.join(self.engine, ''))

    def labelling_script(self, script):
        """@script, after it logs the labels a command gets to ENGINE/labels.log."""
        wrapper = os.path.join(self.workdir, 'labels-' + os.path.basename(script))
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\necho "${0##*/} $BUILDFLEET_DAEMON_ID $BUILDFLEET_WORKER_NAME" >> %s\n'
                    'exec %s "$@"\n' % (os.path.join(self.engine, 'labels.log'), script))
        os.chmod(wrapper, 0o755)
        return wrapper

    def test_command_fresh_instance_per_build(self):
        start = '%s %s' % (self.labelling_script(test_latent.START), self.engine)
        stop = '%s %s %%n' % (self.labelling_script(test_latent.STOP), self.engine)
        self.write_config(self.daemon_section() + self.command_worker(wait='0', start=start, stop=stop))
        self.start_daemon()
        self.build_cycles('cloud', 0)
        self.assertEqual(self.engine_log(), ['start', 'stop'] * CYCLES)
        # Both commands are told the daemon's persistent id and the worker.
        with open(os.path.join(self.statedir, 'daemon-id')) as f:
            daemon_id = f.read().strip()
        with open(os.path.join(self.engine, 'labels.log')) as f:
            labels = [line.split() for line in f]
        self.assertEqual(labels, [['labels-start-worker.sh', daemon_id, 'cloud'],
                                  ['labels-stop-worker.sh', daemon_id, 'cloud']] * CYCLES)

    def test_command_kept_instance(self):
        self.write_config(self.daemon_section() + self.command_worker(wait=str(KEEP)))
        self.start_daemon()
        self.build_cycles('cloud', KEEP)
        self.assertEqual(self.engine_log(), ['start', 'stop'] * CYCLES)


class SystemdTestCase(CycleTestCase):
    """Latent=systemd with the default Unit=buildbot-worker@%n.service: a
    template unit whose ExecStart runs `buildbot-worker start --nodaemon
    ENGINE/%i`, as Debian's buildbot-worker@.service does for
    /var/lib/buildbot/workers/%i.  The worker's base directory is made
    once, as an administrator would, and serves every cycle."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        (cls.systemd, cls.systemd_obj) = cls.spawn_server_template(SYSTEMD_TEMPLATE, {},
                                                                   stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        cls.systemd.terminate()
        cls.systemd.wait()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.systemd_obj.AddMockUnit('buildbot-worker@.service',
                                     [BUILDBOT_WORKER, 'start', '--nodaemon', os.path.join(self.engine, '%i')])

    def tearDown(self):
        self.systemd_obj.HoldJobs(False)
        super().tearDown()
        # The daemon stops its units when it exits; a failed test may leave one.
        for unit, _ in self.systemd_obj.Running():
            self.systemd_obj.StopUnit(unit, 'replace')

    def instances(self):
        """The main processes of the units that run."""
        return [int(pid) for unit, pid in self.systemd_obj.Running()]

    def fixed_ports(self):
        """[Daemon] keys for endpoints whose ports are known before the
        daemon starts (and kept across its restarts)."""
        return test_latent.LocalDriverTest.fixed_ports(self)

    def unit_worker(self, name, wait, protocol, ports):
        """[Worker NAME] with the default Unit=, and its base directory made
        for the endpoint of @protocol among @ports."""
        port = ports['ListenPB' if protocol == 'pb' else 'Listen'].rsplit(':', 1)[1]
        args = [BUILDBOT_WORKER, 'create-worker', '--quiet', '--keepalive=0']
        if protocol == 'msgpack':
            args.append('--protocol=msgpack_experimental_v7')
        args += [os.path.join(self.engine, name), '127.0.0.1:' + port, name, 'unit-pw']
        subprocess.run(args, check=True)
        return (
            '[Worker %s]\nPassword=unit-pw\nLatent=systemd\nBuilders=b\nBuildWaitTimeout=%s\n'
            'SubstantiationTimeout=60\nProtocol=%s\n' % (name, wait, protocol))

    def systemd_cycles(self, name, wait, protocol):
        ports = self.fixed_ports()
        self.write_config(self.daemon_section(**ports) + self.unit_worker(name, wait, protocol, ports))
        self.start_daemon()
        pids = self.build_cycles(name, wait)
        unit = 'buildbot-worker@%s.service' % name
        self.assertEqual([tuple(s) for s in self.systemd_obj.Spawned() if s[1] in pids],
                         [(unit, pid) for pid in pids])
        # Stopped by the driver, not only by the worker it asks to exit.
        for method in ('StartUnit', 'StopUnit'):
            calls = [str(c[2][0]) for c in self.systemd_obj.GetCalls() if c[1] == method]
            self.assertEqual(calls.count(unit), CYCLES, method)


class SystemdCycleTest(SystemdTestCase):
    def test_systemd_fresh_instance_per_build(self):
        self.systemd_cycles('sd-0.fresh_1', 0, 'pb')

    def test_systemd_kept_instance(self):
        self.systemd_cycles('sd-2.kept_1', KEEP, 'msgpack')


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))


class SystemdJobsTest(SystemdTestCase):
    """The driver follows its jobs among all those systemd announces."""

    FOREIGN = 100000
    BATCH = 5000

    def emit_foreign(self, count):
        for _ in range(count // self.BATCH):
            self.systemd_obj.EmitForeignJobs(self.BATCH, timeout=600)
            self.manager_prop('Version')    # answered after the signals before it

    def settled_rss(self):
        """The daemon's RSS once it has read what was sent to it so far (a
        call behind the signals on the bus) and stopped growing."""
        last = None
        while True:
            self.manager_prop('Version')
            rss = rss_kib(self.daemon.pid)
            if rss == last:
                return rss
            last = rss
            self.pump(0.2)

    def test_foreign_jobs_are_not_kept(self):
        # A start job that stays queued: the driver waits for its JobRemoved
        # while the machine runs many other jobs.
        ports = self.fixed_ports()
        self.write_config(self.daemon_section(**ports) + self.unit_worker('sd-jobs', '-1', 'msgpack', ports))
        self.start_daemon()
        self.systemd_obj.HoldJobs(True)
        results = []
        self.substantiate_async('sd-jobs', results)
        self.wait_until(lambda: any(c[1] == 'StartUnit' for c in self.systemd_obj.GetCalls()),
                        message='StartUnit called')
        # In batches the daemon reads before the next: a backlog of queued
        # messages would grow the heap whatever the driver keeps.  The first
        # batch warms the heap up to that size.
        self.emit_foreign(self.BATCH)
        before = self.settled_rss()
        self.emit_foreign(self.FOREIGN)
        after = self.settled_rss()
        print('daemon RSS %d KiB before, %d KiB after %d foreign JobRemoved' % (before, after, self.FOREIGN),
              file=sys.stderr)
        self.assertLess(after - before, 2048)
        # Its own job still ends the start.
        self.systemd_obj.HoldJobs(False)
        self.wait_until(lambda: results, 60, 'Substantiate answered')
        self.assertEqual(results, ['ok'])


class SystemdMarkTest(SystemdTestCase):
    """Units carry the daemon's id while it runs them; a restarted daemon
    adopts the units its workers own, stops those that carry its id and
    that no worker owns, and leaves every other unit alone."""

    def daemon_id(self):
        with open(os.path.join(self.statedir, 'daemon-id')) as f:
            return f.read().strip()

    def description(self, unit):
        return {str(u[0]): str(u[1]) for u in self.systemd_obj.ListUnits()}[unit]

    def running(self):
        return {str(unit): int(pid) for unit, pid in self.systemd_obj.Running()}

    def test_marked_adopted_orphan_stopped_others_untouched(self):
        ports = self.fixed_ports()
        workers = self.unit_worker('sd-a', '-1', 'msgpack', ports) + self.unit_worker('sd-b', '-1', 'msgpack', ports)
        self.write_config(self.daemon_section(**ports) + workers)
        self.start_daemon()
        our_id = self.daemon_id()
        for name in ('sd-a', 'sd-b'):
            self.substantiate(name)
            unit = 'buildbot-worker@%s.service' % name
            mark = ' (org.buildfleet.daemon=%s org.buildfleet.worker=%s)' % (our_id, name)
            self.assertEqual(self.description(unit), unit + mark)
            # Set as systemd keeps it: a runtime drop-in (gone at reboot).
            self.assertEqual([(bool(r), {str(k): str(v) for k, v in c.items()})
                              for r, c in self.systemd_obj.DropIns(unit)],
                             [(True, {'Description': unit + mark})])
        # Units that are not ours: one unmarked, one of another daemon (the
        # same worker name, even).
        self.systemd_obj.AddMockUnit('unrelated.service', ['/bin/sleep', '600'])
        self.systemd_obj.AddMockUnit('other-daemon.service', ['/bin/sleep', '600'])
        self.systemd_obj.SetUnitProperties('other-daemon.service', True, [(
            'Description', 'x (org.buildfleet.daemon=%s org.buildfleet.worker=sd-b)' % ('f' * 32))])
        for unit in ('unrelated.service', 'other-daemon.service'):
            self.systemd_obj.StartUnit(unit, 'replace')
        before = self.running()
        self.assertEqual(len(before), 4, before)

        # Killed: nothing is stopped.  The next daemon has no sd-b.
        self.stop_daemon(signal.SIGKILL)
        self.assertEqual(self.running(), before)
        self.signals.clear()
        self.write_config(self.daemon_section(**ports) + self.unit_worker('sd-a', '-1', 'msgpack', ports))
        self.start_daemon()
        self.assertEqual(self.daemon_id(), our_id)
        # sd-a reconnects by itself and is adopted; sd-b's unit carries our
        # id, and no worker owns it: stopped, and its mark taken off.
        self.wait_signal('Substantiated', worker_path('sd-a'), timeout=60)
        self.wait_until(lambda: 'buildbot-worker@sd-b.service' not in self.running(), 60, 'orphan stopped')
        self.wait_until(lambda: self.description('buildbot-worker@sd-b.service') ==
                        'buildbot-worker@sd-b.service', 30, 'orphan unmarked')
        self.assert_stays(lambda: all(self.running().get(u) == before[u] for u in
                                      ('buildbot-worker@sd-a.service', 'unrelated.service',
                                       'other-daemon.service')), 2, 'the others untouched')
        self.assertIn('no such latent worker is configured', self.daemon_log())
        # A clean stop stops sd-a's unit, and unmarks it.
        self.assertEqual(self.stop_daemon(), 0)
        self.wait_until(lambda: 'buildbot-worker@sd-a.service' not in self.running(), 30, 'sd-a stopped')
        self.assertEqual(self.description('buildbot-worker@sd-a.service'), 'buildbot-worker@sd-a.service')
        self.assertEqual(sorted(self.running()), ['other-daemon.service', 'unrelated.service'])
        for unit in ('unrelated.service', 'other-daemon.service'):
            self.systemd_obj.StopUnit(unit, 'replace')


if __name__ == '__main__':
    bfharness.main()
