#!/usr/bin/python3
# Latent=docker against a real container engine: Podman's Docker-compatible
# service, started by each class in a directory of its own
# (bfharness.PodmanService; what the set-up needs is in CONTAINERS.md).
# The containers run the host's buildbot-worker (the image is a tiny local
# one that binds the host's /usr and /etc).  What runs is always counted
# from the engine, never from the daemon's own bookkeeping.
#
# The classes marked @for_both_protocols run twice: XxxTest with
# Protocol=msgpack, XxxPbTest with PB (the default).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import signal
import time

from gi.repository import GLib

import bfharness
import test_latent
from bfharness import BUILD_IFACE, FLEET_PATH, LATENT_IFACE, MANAGER_IFACE, for_both_protocols, worker_path

PASSWORD = 'sekrit-docker-pw-4711'
DAEMON_LABEL = 'org.buildfleet.daemon'
WORKER_LABEL = 'org.buildfleet.worker'


class DockerTestCase(bfharness.FleetTestCase):
    podman = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = bfharness.PodmanService.unavailable()
        if reason:
            raise bfharness.unittest.SkipTest(reason)
        cls.podman = bfharness.PodmanService()
        try:
            cls.podman.start()
        except Exception:
            cls.podman.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.podman:
            cls.podman.stop()
        super().tearDownClass()

    def tearDown(self):
        super().tearDown()
        # Every container of the test, ours or not, for the next test.
        self.podman.podman('rm', '--all', '--force', '--time', '0', check=False)

    # Configuration -------------------------------------------------------------

    def daemon_section(self, **extra):
        # A worker in a container on a loaded machine (two Podman services
        # copying root file systems on two shared CPUs) has been seen silent
        # for the harness's 2 s (KeepaliveInterval=1) on its first command;
        # liveness is not what these tests are about.
        extra.setdefault('KeepaliveInterval', '5')
        return super().daemon_section(**extra)

    def protocol_key(self):
        return 'Protocol=msgpack\n' if self.protocol == 'msgpack' else ''

    def docker_worker(self, name='box', wait='2', password=PASSWORD, extra='', **keys):
        return ('[Worker %s]\nPassword=%s\nLatent=docker\nBuilders=b\nBuildWaitTimeout=%s\n'
                'SubstantiationTimeout=60\n' % (name, password, wait) +
                self.protocol_key() + self.podman.worker_keys(**keys) + extra)

    def daemon_id(self):
        with open(os.path.join(self.statedir, 'daemon-id')) as f:
            return f.read().strip()

    # The engine's view ------------------------------------------------------------

    def ours(self, worker=None, running_only=False):
        """Containers labelled with this daemon's id (and @worker's name)."""
        found = self.podman.containers('%s=%s' % (DAEMON_LABEL, self.daemon_id()), running_only)
        if worker:
            found = [c for c in found if c['Labels'].get(WORKER_LABEL) == worker]
        return found

    def running_ids(self, worker=None):
        return sorted(c['Id'] for c in self.ours(worker, running_only=True))

    def exists(self, container_id):
        return self.podman.api('GET', '/containers/%s/json' % container_id)[0] == 200

    def is_running(self, container_id):
        status, data = self.podman.api('GET', '/containers/%s/json' % container_id)
        return status == 200 and data['State']['Running']

    # D-Bus ----------------------------------------------------------------------------

    def substantiate(self, name):
        return self.call(worker_path(name), LATENT_IFACE, 'Substantiate', None, timeout=120000)

    def substantiate_error(self, name):
        """Substantiate() that must fail; its error message.  With the same
        long deadline as a start: the engine is slow on a loaded machine."""
        try:
            self.substantiate(name)
        except GLib.Error as e:
            return e.message
        self.fail('Substantiate %s did not fail' % name)

    def latent_prop(self, name, prop):
        return self.prop(worker_path(name), LATENT_IFACE, prop)

    def request(self, builder):
        return self.call(FLEET_PATH, MANAGER_IFACE, 'RequestBuild', GLib.Variant('(sa{sv})', (builder, {})))[0]

    def wait_build(self, build, state, timeout=90):
        self.wait_until(lambda: self.prop(build, BUILD_IFACE, 'State') == state, timeout,
                        '%s %s' % (build, state))

    def run_shell(self, build, command):
        cmd = self.call(build, BUILD_IFACE, 'RunCommand',
                        GLib.Variant('(sa{sv})', ('shell', {'command': GLib.Variant('s', command)})))[0]
        result = self.wait_signal('Completed', cmd, timeout=60)[0][3]
        if result[0] != 0:
            print('command %r: %r' % (command, result))
        return result

    def stays(self, predicate, seconds, message):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertTrue(predicate(), message)
            self.pump(0.2)


@for_both_protocols
class DockerTest(DockerTestCase):
    """On-demand start, a build inside the container, idle stop, and a fresh
    container per build (BuildWaitTimeout=0) three times over."""

    def test_build_then_idle_stop(self):
        # Three cycles of on-demand start, build, idle stop (BuildWaitTimeout=2).
        self.write_config(self.daemon_section() + self.docker_worker(wait='2'))
        self.start_daemon()
        self.assertEqual(self.latent_prop('box', 'Driver'), 'docker')
        self.assertEqual(self.running_ids(), [])
        seen = []
        for cycle in range(3):
            self.signals.clear()
            build = self.request('b')
            self.wait_build(build, 'running')
            self.assert_protocol('box')
            [container] = self.ours('box', running_only=True)
            seen.append(container['Id'])
            self.assertTrue(container['Names'][0].lstrip('/').startswith('buildfleet-box-'))
            # The build step runs inside the container (Podman marks it with
            # /run/.containerenv), without the password in its environment.
            self.assertEqual(self.run_shell(build, 'test -e /run/.containerenv')[0], 0)
            self.assertEqual(self.run_shell(build, 'test "$WORKERNAME" = box && test -z "$WORKERPASS" && '
                                                   '! env | grep -q %s' % PASSWORD)[0], 0)
            self.call(build, BUILD_IFACE, 'Release')

            # Idle for BuildWaitTimeout=2: stopped and removed, as the engine says.
            self.wait_signal('Insubstantiated', worker_path('box'), timeout=60)
            self.wait_until(lambda: self.ours() == [], timeout=30, message='cycle %d: removed' % cycle)
            self.assertEqual(self.latent_prop('box', 'State'), 'not-substantiated')
        self.assertEqual(len(set(seen)), 3, seen)
        self.assertEqual(self.latent_prop('box', 'LastError'), '')
        self.assertNotIn(PASSWORD, self.daemon_log())

    def test_fresh_container_per_build(self):
        self.write_config(self.daemon_section() + self.docker_worker(wait='0'))
        self.start_daemon()
        seen = []
        for cycle in range(3):
            build = self.request('b')
            self.wait_build(build, 'running')
            running = self.running_ids('box')
            self.assertEqual(len(running), 1, 'cycle %d: %r' % (cycle, running))
            seen.append(running[0])
            self.assertEqual(self.run_shell(build, 'true')[0], 0)
            self.call(build, BUILD_IFACE, 'Release')
            # One build per instance: stopped and removed right after it.
            self.wait_until(lambda: self.ours() == [], timeout=60, message='cycle %d: removed' % cycle)
            self.wait_until(lambda: self.latent_prop('box', 'State') == 'not-substantiated', timeout=30,
                            message='cycle %d: not substantiated' % cycle)
        self.assertEqual(len(set(seen)), 3, seen)
        self.assertEqual(self.latent_prop('box', 'LastError'), '')
        self.assertFalse(self.worker_prop('box', 'Quarantined'))


class DockerFailureTest(DockerTestCase):
    """Containers that die: before attaching (their output in LastError, the
    password blanked out), while attached, and an image the engine lacks.
    Protocol-independent: the driver never gets as far as the protocol."""

    def test_exit_before_attaching(self):
        script = ('echo starting; i=0; while [ $i -lt 30 ]; do echo line-$i; i=$((i+1)); done; '
                  'echo "password=$WORKERPASS" >&2; echo the-very-end >&2; exit 7')
        self.write_config(self.daemon_section() + self.docker_worker(Command="sh -c '%s'" % script))
        self.start_daemon()
        error = self.substantiate_error('box')
        last = self.latent_prop('box', 'LastError')
        self.assertIn('exited with status 7', last)
        self.assertIn('the-very-end', last)
        self.assertIn('password=********', last)
        self.assertNotIn(PASSWORD, last)
        self.assertNotIn(PASSWORD, str(error))
        # The tail: the last lines only, bounded.
        self.assertIn('line-29', last)
        self.assertNotIn('line-5\n', last)
        self.assertNotIn('starting', last)
        self.assertLessEqual(len(last.encode()), 4096 + 200)
        self.assertTrue(self.worker_prop('box', 'Quarantined'))
        # Removed all the same.
        self.wait_until(lambda: self.ours() == [], timeout=30, message='container removed')
        self.assertNotIn(PASSWORD, self.daemon_log())

    def test_missing_image(self):
        self.write_config(self.daemon_section() + self.docker_worker(Image='localhost/no-such-image:1'))
        self.start_daemon()
        self.substantiate_error('box')
        last = self.latent_prop('box', 'LastError')
        self.assertIn('no image “localhost/no-such-image:1”', last)
        self.assertIn('Pull=true', last)
        self.assertEqual(self.ours(), [])

    def test_pull_only_when_asked(self):
        # Without Pull= a missing image fails (test_missing_image); with it
        # the engine is asked to pull, and its failure (no registry here)
        # is what LastError says.
        self.write_config(self.daemon_section() +
                          self.docker_worker(Image='localhost/no-such-image:1', Pull='true'))
        self.start_daemon()
        self.substantiate_error('box')
        last = self.latent_prop('box', 'LastError')
        self.assertIn('localhost/no-such-image:1', last)
        self.assertIn('pull', last)
        self.assertEqual(self.ours(), [])

    def test_engine_unreachable(self):
        self.write_config(self.daemon_section() +
                          self.docker_worker(DockerHost='unix://%s/nothing.sock' % self.workdir))
        self.start_daemon()
        self.substantiate_error('box')
        self.assertIn('cannot reach the container engine at unix://', self.latent_prop('box', 'LastError'))
        self.assertIsNone(self.daemon.poll())

    def test_exit_while_attached(self):
        self.write_config(self.daemon_section() + self.docker_worker(wait='-1'))
        self.start_daemon()
        self.substantiate('box')
        [container] = self.running_ids('box')
        self.signals.clear()
        status, _ = self.podman.api('POST', '/containers/%s/kill?signal=KILL' % container)
        self.assertEqual(status, 204)
        self.wait_signal('Insubstantiated', worker_path('box'), timeout=60)
        self.wait_until(lambda: not self.exists(container), timeout=30, message='container removed')
        self.assertFalse(self.worker_prop('box', 'Connected'))
        # On demand again: a new container.
        self.substantiate('box')
        self.assertNotEqual(self.running_ids('box'), [container])
        self.assertEqual(len(self.running_ids('box')), 1)


class DockerReconcileTest(DockerTestCase):
    """A daemon killed with -9 and started again: the container its state
    file knows is adopted; what carries its id but no worker owns is
    stopped; what does not carry its id is never touched."""

    def test_adopt_and_clean_up_after_kill(self):
        ports = test_latent.LocalDriverTest.fixed_ports(self)
        keep = self.docker_worker('keep', wait='-1', password='generate')
        gone = self.docker_worker('gone', wait='-1')
        self.write_config(self.daemon_section(**ports) + keep + gone)
        self.start_daemon()
        self.substantiate('keep')
        self.substantiate('gone')
        [kept] = self.running_ids('keep')
        [orphan] = self.running_ids('gone')
        our_id = self.daemon_id()

        # Not ours: no label, and another daemon's.
        foreign = self.podman.run_container('foreign')
        other = self.podman.run_container('other-daemon', labels={DAEMON_LABEL: '0' * 32,
                                                                  WORKER_LABEL: 'keep'})
        # Ours, for a configured worker, but unknown to the state file.
        stray = self.podman.run_container('stray', labels={DAEMON_LABEL: our_id, WORKER_LABEL: 'keep'})

        self.stop_daemon(signal.SIGKILL)
        self.assertTrue(self.is_running(kept))
        # The next daemon no longer has worker "gone".
        self.write_config(self.daemon_section(**ports) + keep)
        self.signals.clear()
        self.start_daemon()
        self.assertEqual(self.daemon_id(), our_id)

        # Adopted: the same container reconnects (with its generated password).
        self.wait_until(lambda: self.worker_prop('keep', 'Connected'), timeout=60, message='keep reconnected')
        self.assertEqual(self.latent_prop('keep', 'State'), 'substantiated')
        self.assertEqual(self.running_ids('keep'), [kept])
        # Ours but unknown: stopped and removed.
        self.wait_until(lambda: not self.exists(orphan) and not self.exists(stray), timeout=60,
                        message='orphans removed')
        self.assertIn('Stopping instance %s' % orphan, self.daemon_log())
        # Not ours: left alone.
        self.stays(lambda: self.is_running(foreign) and self.is_running(other), 3, 'foreign containers run')
        self.assertTrue(self.is_running(kept))

        # A clean stop stops what the daemon runs, and still nothing else.
        self.assertEqual(self.stop_daemon(), 0)
        self.assertFalse(self.exists(kept))
        self.assertTrue(self.is_running(foreign) and self.is_running(other))


if __name__ == '__main__':
    bfharness.main()
