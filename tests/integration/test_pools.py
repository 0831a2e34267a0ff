#!/usr/bin/python3
# Pools ([Pool NAME]) of latent workers started by the command driver: real
# buildbot-worker processes, counted from the engine (the processes running
# with the engine's directory on their command line, read from /proc), not
# from the daemon's own bookkeeping.  The instances speak msgpack, and PB
# in SparePbTest.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import threading
import time

from gi.repository import GLib

import bfharness
from bfharness import BUILD_IFACE, FLEET_PATH, LATENT_IFACE, MANAGER_IFACE, for_both_protocols, worker_path
from test_latent import START, STOP, LatentTestCase
from test_docker import DockerTestCase

POOL_IFACE = 'org.buildfleet.Fleet1.Pool'


def pool_path(name):
    return FLEET_PATH + '/pools/' + name


def names(pattern, count):
    return [pattern % i for i in range(1, count + 1)]


class EngineSampler(threading.Thread):
    """Samples the engine's instance count every few milliseconds, from
    its own thread so that no moment between two main-loop turns of the
    test is missed."""

    def __init__(self, test):
        super().__init__(daemon=True)
        self.test = test
        self.max = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.max = max(self.max, len(self.test.engine_instances()))
            self.samples += 1
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.join()


class PoolTestCase(LatentTestCase):
    def daemon_section(self, **extra):
        # Liveness is not what these tests are about: several instances
        # starting at once on a busy machine may miss a 1 s keepalive.
        extra.setdefault('KeepaliveInterval', '10')
        return super().daemon_section(**extra)

    def pool(self, count, wait='600', name='cloud', **keys):
        text = ('[Pool %s]\nWorkers=%s-%%02d\nCount=%d\nPassword=generate\nLatent=command\n'
                'StartCommand=%s %s\nStopCommand=%s %s %%n\nBuilders=b\nBuildWaitTimeout=%s\n'
                'SubstantiationTimeout=60\n' % (name, name, count, START, self.engine, STOP, self.engine, wait))
        text += ''.join('%s=%s\n' % kv for kv in keys.items())
        return text + self.protocol_key()

    # The engine ------------------------------------------------------------

    def engine_instances(self):
        """Names of the instances the engine runs: every process (not a
        zombie) with an argument under the engine's directory, i.e.
        create-worker and the running buildbot-worker of start-worker.sh,
        and every instance whose pid file is there (start-worker.sh writes
        it once the worker runs, stop-worker.sh removes it when the worker
        is gone).  The pid file keeps an instance counted while its process
        exits (its arguments read empty then) until the stop is over."""
        prefix = self.engine + '/'
        found = set()
        try:
            entries = os.listdir(self.engine)
        except FileNotFoundError:
            entries = []
        for name in entries:
            if os.path.exists(os.path.join(self.engine, name, 'pid')):
                found.add(name)
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    args = f.read().decode(errors='replace').split('\0')
                with open('/proc/%s/stat' % pid) as f:
                    state = f.read().rsplit(')', 1)[1].split()[0]
            except OSError:
                continue
            if state == 'Z':
                continue
            for a in args:
                if a.startswith(prefix):
                    found.add(a[len(prefix):].split('/')[0])
        return found

    def engine_processes(self):
        """pid, state and arguments of every process under the engine's
        directory, for failure messages."""
        prefix = self.engine + '/'
        found = []
        for pid in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    args = f.read().decode(errors='replace').split('\0')
                with open('/proc/%s/stat' % pid) as f:
                    state = f.read().rsplit(')', 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if any(a.startswith(prefix) for a in args):
                found.append((int(pid), state, ' '.join(args)[:120]))
        return found

    def engine_pid(self, name):
        with open(os.path.join(self.engine, name, 'pid')) as f:
            return int(f.read())

    def starts(self):
        return [words[1] for words in self.engine_lines() if words[0] == 'start']

    def pool_prop(self, prop, name='cloud'):
        return self.prop(pool_path(name), POOL_IFACE, prop)

    def idle_attached(self, members):
        return {n for n in members if self.latent_prop(n, 'State') == 'substantiated'
                and self.worker_prop(n, 'ActiveBuilds') == 0 and self.worker_prop(n, 'Connected')}

    def stays(self, predicate, seconds, message):
        """@predicate holds the whole time (checked every few ms)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump(0.05)
            if not predicate():
                self.fail('%s: no longer true after %.1f s (engine: %s, processes: %s)\n--- daemon log ---\n%s' %
                          (message, seconds - (deadline - time.monotonic()), sorted(self.engine_instances()),
                           self.engine_processes(), self.daemon_log()[-6000:]))

    def reload(self):
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload', timeout=30000)



# A class per few tests: each of them starts several real workers, which
# takes a while on a busy machine.

@for_both_protocols
class SpareTest(PoolTestCase):
    def test_min_idle_keeps_two_idle_through_a_burst(self):
        members = names('cloud-%02d', 4)
        self.write_config(self.daemon_section() + self.pool(4, wait='1', MinIdle='2'))
        self.start_daemon()
        # Two spares come up by themselves, and stay well past their
        # BuildWaitTimeout of 1 s; nothing else starts.
        self.wait_until(lambda: len(self.idle_attached(members)) == 2, 90, 'two spares')
        spares = self.idle_attached(members)
        self.assertEqual(self.engine_instances(), spares)
        self.assertEqual(self.pool_prop('Idle'), 2)
        self.stays(lambda: self.engine_instances() == spares and self.idle_attached(members) == spares,
                   3, 'the two spares are kept, and only them')

        # A burst: the first two builds take the spares at once (no start
        # for them), and the pool starts two new spares.
        pids = {n: self.engine_pid(n) for n in spares}
        burst = [self.request('b') for _ in range(2)]
        for b in burst:
            self.wait_build(b, 'running', timeout=10)
        self.assertEqual({self.prop(b, BUILD_IFACE, 'Worker') for b in burst},
                         {worker_path(n) for n in spares})
        self.assertEqual({n: self.engine_pid(n) for n in spares}, pids, 'ran on the spares')
        self.wait_until(lambda: len(self.idle_attached(members)) == 2, 90, 'two spares again')
        self.assertEqual(len(self.engine_instances()), 4)
        # The next build again runs on a spare without waiting for a start.
        n_starts = len(self.starts())
        spares = self.idle_attached(members)
        third = self.request('b')
        self.wait_build(third, 'running', timeout=10)
        self.assertIn(self.prop(third, BUILD_IFACE, 'Worker'), {worker_path(n) for n in spares})
        self.assertEqual(len(self.starts()), n_starts)
        self.assertEqual(self.run_shell(third, 'echo on a spare'), (0, ''))
        # Count=4: three busy and one idle is all the pool can do now.
        self.stays(lambda: len(self.engine_instances()) == 4, 1, 'never more than Count')

        # Builds over: the instances beyond the two spares go after their
        # BuildWaitTimeout, the spares stay.
        for b in burst + [third]:
            self.call(b, BUILD_IFACE, 'Release')
        self.wait_until(lambda: len(self.engine_instances()) == 2 and
                        len(self.idle_attached(members)) == 2, 60, 'back to two spares')
        self.stays(lambda: len(self.engine_instances()) == 2, 2.5, 'two spares stay')



class FreshInstanceTest(PoolTestCase):
    def test_max_builds_per_instance_gives_fresh_instances(self):
        members = names('cloud-%02d', 2)
        self.write_config(self.daemon_section() +
                          self.pool(2, MinIdle='1', MaxBuildsPerInstance='1'))
        self.start_daemon()
        seen = []
        for i in range(4):
            build = self.request('b')
            self.wait_build(build, 'running', timeout=90)
            name = self.prop(build, BUILD_IFACE, 'Worker').rsplit('/', 1)[1].replace('_2d', '-')
            pid = self.engine_pid(name)
            self.assertNotIn(pid, [p for _, p in seen], 'build %d got a used instance' % i)
            seen.append((name, pid))
            self.assertEqual(self.run_shell(build, 'true'), (0, ''))
            self.call(build, BUILD_IFACE, 'Release')
            # The used instance goes although BuildWaitTimeout is 600 s.
            self.wait_until(lambda: not os.path.exists('/proc/%d' % pid) or
                            name not in self.engine_instances(), 60, 'instance %d stopped' % i)
        self.assertEqual(len(set(p for _, p in seen)), 4, 'every build on a fresh instance: %s' % seen)
        # MinIdle=1: a fresh spare waits for the next build.
        self.wait_until(lambda: len(self.idle_attached(members)) == 1, 90, 'a fresh spare')
        self.assertNotIn(self.engine_pid(self.idle_attached(members).pop()), [p for _, p in seen])


class LimitTest(PoolTestCase):
    def test_max_instances_under_load(self):
        # A fresh instance per build (BuildWaitTimeout=0), so instances
        # start and stop all the time; 3x as many builds as MaxInstances
        # allows at once.
        self.write_config(self.daemon_section() + self.pool(6, wait='0', MaxInstances='2'))
        self.start_daemon()
        sampler = EngineSampler(self)
        sampler.start()
        try:
            builds = [self.request('b') for _ in range(6)]
            done = set()
            while len(done) < len(builds):
                running = self.wait_until(
                    lambda: [b for b in builds if b not in done and self.build_state(b) == 'running'],
                    120, 'a build running')
                self.assertLessEqual(self.pool_prop('Instances'), 2)
                waiting = [b for b in builds if self.build_state(b) == 'pending']
                if waiting:
                    self.assertIn('its pool runs MaxInstances instances',
                                  self.prop(waiting[-1], BUILD_IFACE, 'WaitingFor'))
                self.assertGreaterEqual(self.manager_prop('BuildsPending'), len(builds) - len(done) - 2)
                for b in running:
                    self.assertEqual(self.run_shell(b, 'sleep 0.3'), (0, ''))
                    self.call(b, BUILD_IFACE, 'Release')
                    done.add(b)
            self.wait_until(lambda: not self.engine_instances(), 60, 'every instance stopped')
        finally:
            sampler.stop()
        self.assertGreater(sampler.samples, 50)
        self.assertEqual(sampler.max, 2, 'instances running at once, counted from the engine')
        self.assertEqual(len(self.starts()), 6)
        self.assertFalse(any(self.worker_prop(n, 'Quarantined') for n in names('cloud-%02d', 6)))

    def test_substantiate_beyond_max_instances(self):
        self.write_config(self.daemon_section() + self.pool(3, MaxInstances='1'))
        self.start_daemon()
        self.substantiate('cloud-01')
        err, msg = self.call_error(worker_path('cloud-02'), LATENT_IFACE, 'Substantiate')
        self.assertEqual(err, 'org.buildfleet.Fleet1.Error.Busy')
        self.assertIn('MaxInstances', msg)
        self.assertEqual(self.engine_instances(), {'cloud-01'})



class ShutdownTest(PoolTestCase):
    def test_shutdown_leaves_no_instance(self):
        # Stopping the spares at exit must not make the pool start others.
        self.write_config(self.daemon_section() + self.pool(3, MinIdle='2'))
        self.start_daemon()
        members = names('cloud-%02d', 3)
        self.wait_until(lambda: len(self.idle_attached(members)) == 2, 90, 'two spares')
        started = len(self.starts())
        self.assertEqual(self.stop_daemon(), 0)
        self.wait_until(lambda: not self.engine_instances(), 30, 'every instance stopped')
        self.stays(lambda: not self.engine_instances(), 2, 'nothing started after the exit')
        self.assertEqual(len(self.starts()), started, self.engine_lines())


class ReloadTest(PoolTestCase):
    def test_reload_shrinks_idle_first(self):
        members = names('cloud-%02d', 5)
        self.write_config(self.daemon_section() + self.pool(5, MinIdle='5'))
        self.start_daemon()
        self.wait_until(lambda: len(self.idle_attached(members)) == 5, 120, 'five instances')
        busy = {}
        for n in ('cloud-04', 'cloud-05'):
            busy[n] = self.request('b', worker=n)
            self.wait_build(busy[n], 'running', timeout=10)

        self.write_config(self.daemon_section() + self.pool(2, MinIdle='2'))
        self.reload()
        # The idle instance of the removed cloud-03 stops now; the busy
        # ones of cloud-04 and cloud-05 keep running their builds.
        self.wait_until(lambda: 'cloud-03' not in self.engine_instances(), 30, 'cloud-03 stopped')
        self.assertEqual(self.pool_prop('Workers'), ['cloud-01', 'cloud-02'])
        self.assertEqual(self.pool_prop('Count'), 2)
        self.stays(lambda: self.engine_instances() == {'cloud-01', 'cloud-02', 'cloud-04', 'cloud-05'},
                   2, 'busy instances kept while their builds run')
        self.assertEqual(self.run_shell(busy['cloud-04'], 'echo still here'), (0, ''))
        self.assertEqual(self.pool_prop('Instances'), 4)

        self.call(busy['cloud-04'], BUILD_IFACE, 'Release')
        self.wait_until(lambda: 'cloud-04' not in self.engine_instances(), 30, 'cloud-04 stopped')
        self.stays(lambda: 'cloud-05' in self.engine_instances(), 1, 'cloud-05 still busy')
        self.call(busy['cloud-05'], BUILD_IFACE, 'Release')
        self.wait_until(lambda: self.engine_instances() == {'cloud-01', 'cloud-02'}, 30, 'two left')
        self.wait_until(lambda: worker_path('cloud-05') not in self.managed_objects(), 10, 'cloud-05 gone')
        self.assertNotIn(worker_path('cloud-03'), self.managed_objects())

        # Growing adds workers; MinIdle=2 is met already, so nothing starts.
        self.write_config(self.daemon_section() + self.pool(3, MinIdle='2'))
        self.reload()
        self.assertEqual(self.pool_prop('Workers'), ['cloud-01', 'cloud-02', 'cloud-03'])
        self.assertEqual(self.latent_prop('cloud-03', 'Pool'), 'cloud')
        self.stays(lambda: self.engine_instances() == {'cloud-01', 'cloud-02'}, 1, 'no start')

    def test_bad_pool_config(self):
        self.write_config(self.daemon_section() + self.pool(2) + '[Worker solo]\nPassword=p\nBuilders=b\n')
        self.start_daemon()
        self.assertEqual(self.latent_prop('cloud-01', 'Pool'), 'cloud')
        self.assertEqual(self.latent_prop('cloud-02', 'Pool'), 'cloud')
        props = self.props(pool_path('cloud'), POOL_IFACE)
        self.assertEqual(props['Workers'], ['cloud-01', 'cloud-02'])
        self.assertEqual((props['Count'], props['MinIdle'], props['MaxInstances'], props['MaxBuildsPerInstance'],
                          props['Instances']), (2, 0, 2, 0, 0))
        bad = [
            (self.pool(2).replace('cloud-%02d', 'cloud-%s'), '[Pool cloud] Workers', 'only %d'),
            (self.pool(2).replace('cloud-%02d', 'cloud'), '[Pool cloud] Workers', 'no %d'),
            (self.pool(2) + 'MinIdle=3\n', '[Pool cloud] MinIdle', 'Count=2'),
            (self.pool(5000), '[Pool cloud] Count', 'at most 1000'),
            (self.pool(2) + '[Worker cloud-02]\nPassword=p\n', '[Worker cloud-02]', 'taken by [Pool cloud]'),
            (self.pool(2).replace('Latent=command\n', '').replace('StartCommand', 'X-Start')
             .replace('StopCommand', 'X-Stop'), '[Pool cloud] X-Start', 'unknown key'),
        ]
        for text, where, what in bad:
            self.write_config(self.daemon_section() + text)
            err, msg = self.call_error(FLEET_PATH, MANAGER_IFACE, 'Reload')
            self.assertIn(where, msg)
            self.assertIn(what, msg)
        # The old configuration stays in force, and the daemon runs on.
        self.assertEqual(self.pool_prop('Workers'), ['cloud-01', 'cloud-02'])
        self.assertIn(worker_path('solo'), self.managed_objects())
        self.assertIsNone(self.daemon.poll())

        # An always-on worker whose name a grown pool takes stays what it
        # is until the daemon restarts (Latent= needs a restart).
        self.write_config(self.daemon_section() + self.pool(2) + '[Worker cloud-03]\nPassword=p\nBuilders=b\n')
        self.reload()
        self.write_config(self.daemon_section() + self.pool(3))
        self.reload()
        self.assertEqual(self.pool_prop('Workers'), ['cloud-01', 'cloud-02'])
        self.assertIn('not latent until the daemon restarts', self.daemon_log())
        self.assertIsNone(self.daemon.poll())


class DockerPoolTest(DockerTestCase):
    """A pool of Latent=docker workers in Podman's Docker-compatible
    service (see test_docker.py): containers counted by the engine."""

    def test_docker_pool(self):
        self.write_config(self.daemon_section(KeepaliveInterval='10') +
                          '[Pool dock]\nWorkers=dock-%d\nCount=3\nMinIdle=1\nMaxInstances=2\n'
                          'Password=generate\nLatent=docker\nBuilders=b\nBuildWaitTimeout=2\n'
                          'SubstantiationTimeout=60\n' + self.protocol_key() + self.podman.worker_keys())
        self.start_daemon()
        spare = 'dock-1'
        self.wait_until(lambda: len(self.running_ids()) == 1 and
                        self.prop(pool_path('dock'), POOL_IFACE, 'Idle') == 1, 120, 'one spare container')
        self.assertEqual(self.running_ids(spare), self.running_ids())
        self.stays(lambda: len(self.running_ids()) == 1, 3, 'the spare is kept past BuildWaitTimeout')

        builds = [self.request('b') for _ in range(3)]
        done = set()
        while len(done) < len(builds):
            running = self.wait_until(
                lambda: len(self.running_ids()) <= 2 and
                [b for b in builds if b not in done and self.prop(b, BUILD_IFACE, 'State') == 'running'],
                120, 'a build running')
            self.assertLessEqual(len(self.running_ids()), 2, 'MaxInstances=2, as the engine says')
            for b in running:
                self.assertEqual(self.run_shell(b, 'test -e /run/.containerenv')[0], 0)
                self.call(b, BUILD_IFACE, 'Release')
                done.add(b)
        # Back to the one spare: the other container goes after BuildWaitTimeout.
        self.wait_until(lambda: len(self.running_ids()) == 1, 90, 'one container left')
        self.stays(lambda: len(self.running_ids()) == 1, 3, 'the spare stays')


if __name__ == '__main__':
    bfharness.main()
