#!/usr/bin/python3
# Replies that grow with the fleet never exceed the bus's message limit,
# GetWorkerPage lists a fleet of any size, and losing the bus is a clean,
# logged exit that systemd can restart from.  The private bus has the
# system bus's limits (bfharness.SYSTEM_BUS_LIMITS).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import configparser
import os
import signal
import time

from gi.repository import Gio, GLib

import bfharness
from bfharness import FLEET_PATH, LATENT_IFACE, MANAGER_IFACE, WORKER_IFACE, worker_path

HERE = os.path.dirname(os.path.abspath(__file__))
OBJECT_MANAGER = 'org.freedesktop.DBus.ObjectManager'
TOO_LARGE = 'org.buildfleet.Fleet1.Error.ReplyTooLarge'


def wire_size(body):
    """Bytes of a method reply carrying @body, as GDBus marshals it."""
    message = Gio.DBusMessage.new_signal('/a', 'a.b', 'c')
    message.set_body(body)
    return len(message.to_blob(Gio.DBusCapabilityFlags.NONE))


class ListingTestCase(bfharness.FleetTestCase):
    def fleet(self, n, fmt='idle-%05d', **daemon):
        return self.daemon_section(**daemon) + ''.join(
            ('[Worker ' + fmt + ']\nPassword=p\nBuilders=b\n') % i for i in range(n))

    def call_error_long(self, path, iface, method, args=None, timeout=120000):
        try:
            self.call(path, iface, method, args, timeout=timeout)
        except GLib.Error as e:
            return Gio.DBusError.get_remote_error(e), e.message
        self.fail('%s.%s did not fail' % (iface, method))

    def page(self, properties, after, limit, timeout=60000):
        r = self.bus.call_sync(bfharness.BUS_NAME, FLEET_PATH, MANAGER_IFACE, 'GetWorkerPage',
                               GLib.Variant('(assu)', (properties, after, limit)),
                               GLib.VariantType('(a{oa{sa{sv}}}s)'), Gio.DBusCallFlags.NONE,
                               timeout, None)
        return r

    def all_pages(self, properties=(), limit=0):
        """Every page, as (entries dict, next, wire size of the reply)."""
        pages, after = [], ''
        while True:
            r = self.page(list(properties), after, limit)
            workers, after = r.unpack()
            pages.append((workers, after, wire_size(r)))
            self.assertLess(len(pages), 100000, 'paging does not end')
            if after == '':
                return pages

    def assert_alive(self):
        self.assertIsNone(self.daemon.poll(), 'the daemon exited:\n' + self.daemon_log()[-3000:])
        self.assertEqual(self.manager_prop('Version'), self.manager_prop('Version'))
        self.assertNotIn('lost the connection', self.daemon_log())


class BigFleetTest(ListingTestCase):
    """50,000 configured idle workers on a bus with the system bus's 32 MiB limit."""

    def test_50000_idle_workers(self):
        n = 50000
        self.write_config(self.fleet(n))
        self.start_daemon(wait=False)
        self.wait_for_daemon(timeout=120)

        # All properties of 50,000 workers are about 38 MB: refused, with
        # the size and the call to use instead, and the daemon stays.
        start = time.monotonic()
        name, message = self.call_error_long(FLEET_PATH, OBJECT_MANAGER, 'GetManagedObjects')
        print('GetManagedObjects refused in %.2f s: %s' % (time.monotonic() - start, message))
        self.assertEqual(name, TOO_LARGE)
        self.assertIn('GetWorkerPage', message)
        self.assertIn('50000 objects', message)
        self.assertRegex(message, r'about \d+\.\d MB')
        self.assertIn('MaxBusMessageSize=33554432', message)
        self.assert_alive()

        name, message = self.call_error_long(FLEET_PATH, MANAGER_IFACE, 'GetWorkers',
                                             GLib.Variant('(as)', ([],)))
        self.assertEqual(name, TOO_LARGE)
        self.assertIn('GetWorkerPage', message)
        self.assert_alive()

        # A few properties of every worker still fit in one GetWorkers.
        few = self.bus.call_sync(bfharness.BUS_NAME, FLEET_PATH, MANAGER_IFACE, 'GetWorkers',
                                 GLib.Variant('(as)', (['Name', 'Connected'],)), None,
                                 Gio.DBusCallFlags.NONE, 120000, None)
        self.assertEqual(few.get_child_value(0).n_children(), n)

        # GetWorkerPage lists all of them, in name order, every page under
        # the limit.  (Read with the GVariant API: unpacking 50,000 entries
        # into Python dicts would take longer than the daemon.)
        start = time.monotonic()
        pages, after = [], ''
        while True:
            reply = self.page([], after, 0, timeout=120000)
            after = reply.get_child_value(1).get_string()
            pages.append((reply.get_child_value(0), after, wire_size(reply)))
            self.assertLess(len(pages), 100)
            if after == '':
                break
        took = time.monotonic() - start
        sizes = [p[2] for p in pages]
        paths = [workers.get_child_value(i).get_child_value(0).get_string()
                 for workers, _, _ in pages for i in range(workers.n_children())]
        print('GetWorkerPage: %d workers in %d pages of %s bytes in %.2f s' %
              (len(paths), len(pages), sizes, took))
        self.assertGreater(len(pages), 1)
        self.assertLessEqual(max(sizes), bfharness.SYSTEM_BUS_LIMITS['max_message_size'])
        self.assertEqual(paths, [worker_path('idle-%05d' % i) for i in range(n)])
        index = {p: i for i, p in enumerate(paths)}
        for workers, nxt, _ in pages[:-1]:
            last = workers.get_child_value(workers.n_children() - 1).get_child_value(0).get_string()
            self.assertEqual(last, worker_path(nxt))
        # A few values.
        flat = [(workers, i) for workers, _, _ in pages for i in range(workers.n_children())]
        for i in (0, 1, 12345, 49999):
            workers, j = flat[index[worker_path('idle-%05d' % i)]]
            w = workers.get_child_value(j).get_child_value(1).unpack()[WORKER_IFACE]
            self.assertEqual(w['Name'], 'idle-%05d' % i)
            self.assertFalse(w['Connected'])
            self.assertEqual(w['Builders'], ['b'])
        self.assert_alive()

        # Bounded pages from a cursor in the middle.
        workers, nxt = self.page(['Name'], 'idle-49990', 5).unpack()
        self.assertEqual(sorted(w[WORKER_IFACE]['Name'] for w in workers.values()),
                         ['idle-%05d' % i for i in range(49991, 49996)])
        self.assertEqual(nxt, 'idle-49995')
        workers, nxt = self.page(['Name'], nxt, 5).unpack()
        self.assertEqual(len(workers), 4)
        self.assertEqual(nxt, '')

        # Stopping 50,000 workers takes longer than the harness waits on a
        # busy machine; that is not what this test is about.
        self.daemon.terminate()
        self.daemon.wait(120)
        self.assertEqual(self.daemon.returncode, 0)
        self.daemon = None


class SmallLimitTest(ListingTestCase):
    """MaxBusMessageSize=65536: the same refusals and pages with a few hundred workers."""

    LIMIT = 65536

    def test_refused_and_paged(self):
        n = 300
        self.write_config(self.fleet(n, MaxBusMessageSize=str(self.LIMIT)))
        self.start_daemon()

        name, message = self.call_error(FLEET_PATH, OBJECT_MANAGER, 'GetManagedObjects')
        self.assertEqual(name, TOO_LARGE)
        self.assertIn('%d objects' % n, message)
        self.assertIn('MaxBusMessageSize=%d' % self.LIMIT, message)
        self.assertIn('org.buildfleet.Fleet1.Manager.GetWorkerPage', message)
        name, message = self.call_error(FLEET_PATH, MANAGER_IFACE, 'GetWorkers', GLib.Variant('(as)', ([],)))
        self.assertEqual(name, TOO_LARGE)
        self.assert_alive()

        pages = self.all_pages()
        self.assertGreater(len(pages), 2)
        for workers, nxt, size in pages:
            self.assertLessEqual(size, self.LIMIT)
            self.assertGreater(len(workers), 0)
        names = [w[WORKER_IFACE]['Name'] for p in pages for w in p[0].values()]
        self.assertEqual(sorted(names), ['idle-%05d' % i for i in range(n)])

        # A count limit, and the properties asked for only.
        pages = self.all_pages(['Name', 'Paused'], limit=7)
        self.assertEqual([len(p[0]) for p in pages], [7] * (n // 7) + [n % 7])
        self.assertEqual(set(pages[0][0][worker_path('idle-00000')][WORKER_IFACE]), {'Name', 'Paused'})

        # Bad arguments.
        name, message = self.call_error(FLEET_PATH, MANAGER_IFACE, 'GetWorkerPage',
                                        GLib.Variant('(assu)', (['NoSuch'], '', 0)))
        self.assertEqual(name, 'org.buildfleet.Fleet1.Error.InvalidArgs')
        self.assertIn('NoSuch', message)

        # Under the limit GetManagedObjects answers as before.
        self.write_config(self.fleet(20, MaxBusMessageSize=str(self.LIMIT)))
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')
        objects = self.wait_until(lambda: len(self.managed_objects()) == 20 and self.managed_objects(),
                                  timeout=10, message='20 workers after the reload')
        w = objects[worker_path('idle-00003')][WORKER_IFACE]
        self.assertEqual(w['Name'], 'idle-00003')
        self.assertEqual(w, self.props(worker_path('idle-00003'), WORKER_IFACE))
        self.assert_alive()

    def test_cursor_while_workers_come_and_go(self):
        self.write_config(self.fleet(30, 'w-%02d', MaxBusMessageSize=str(self.LIMIT)))
        self.start_daemon()
        workers, nxt = self.page(['Name'], '', 10).unpack()
        self.assertEqual(nxt, 'w-09')
        # w-05 (already listed) and w-12 go, w-10a (after the cursor) and
        # w-00a (before it) come.
        text = self.fleet(30, 'w-%02d', MaxBusMessageSize=str(self.LIMIT))
        text = text.replace('[Worker w-05]', '[Worker w-00a]').replace('[Worker w-12]', '[Worker w-10a]')
        self.write_config(text)
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')
        workers, nxt = self.page(['Name'], nxt, 4).unpack()
        self.assertEqual(sorted(w[WORKER_IFACE]['Name'] for w in workers.values()),
                         ['w-10', 'w-10a', 'w-11', 'w-13'])
        self.assertEqual(nxt, 'w-13')

    def test_one_worker_larger_than_the_limit(self):
        # A worker whose properties alone would not fit in a message.
        text = self.fleet(3, 'w-%d', MaxBusMessageSize=str(self.LIMIT))
        text = text.replace('[Worker w-1]\n', '[Worker w-1]\nProperty.big=%s\n' % ('x' * 70000))
        self.write_config(text)
        self.start_daemon()
        name, message = self.call_error(FLEET_PATH, MANAGER_IFACE, 'GetWorkerPage',
                                        GLib.Variant('(assu)', ([], 'w-0', 0)))
        self.assertEqual(name, TOO_LARGE)
        self.assertIn('Worker w-1 alone', message)
        # The page before it ends before it; fewer properties, or skipping it, work.
        workers, nxt = self.page([], '', 0).unpack()
        self.assertEqual(list(workers), [worker_path('w-0')])
        self.assertEqual(nxt, 'w-0')
        workers, nxt = self.page(['Name', 'Connected'], 'w-0', 0).unpack()
        self.assertEqual(len(workers), 2)
        workers, nxt = self.page([], 'w-1', 0).unpack()
        self.assertEqual(list(workers), [worker_path('w-2')])
        self.assertEqual(nxt, '')
        self.assert_alive()

    def test_config_bounds(self):
        for value, words in (('1000', 'at least 65536'), ('999999999999', 'too large'),
                             ('lots', 'not a whole number')):
            self.write_config(self.fleet(1, MaxBusMessageSize=value))
            code, out = self.run_daemon_expect_failure()
            self.assertNotEqual(code, 0)
            self.assertIn('MaxBusMessageSize', out)
            self.assertIn(words, out)


class NameTest(ListingTestCase):
    """The three ways to end up without the name say which one happened."""

    def test_another_instance_takes_the_name(self):
        self.write_config(self.fleet(2, 'w-%d'))
        first = self.start_daemon()
        first_log = self.daemon_log_path
        second = self.start_daemon(args=['--replace'], wait=False)
        try:
            first.wait(15)
            with open(first_log) as f:
                log = f.read()
            self.assertNotEqual(first.returncode, 0)
            self.assertIn('another instance took over the name org.buildfleet.Fleet1', log)
            self.assertNotIn('lost the connection', log)
            self.assertNotIn('cannot connect', log)
            self.wait_until(lambda: self.manager_prop('Version'), message='the second instance')
            self.assertIsNone(second.poll())
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()

    def test_no_bus_at_all(self):
        self.write_config(self.fleet(1))
        env = dict(os.environ, G_DEBUG='fatal-criticals',
                   DBUS_SYSTEM_BUS_ADDRESS='unix:path=%s/no-such-socket' % self.workdir)
        import subprocess
        p = subprocess.run([bfharness.BUILDFLEETD, '--config', self.config_path], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode(errors='replace')
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('cannot connect to the system bus', out)
        self.assertNotIn('lost the connection', out)


class BusLossTest(ListingTestCase):
    """The bus goes away under a running daemon: a clean, logged, restartable exit.

    Kills this class's private bus, so it is the only test here."""

    @classmethod
    def tearDownClass(cls):
        try:
            cls.bus.close_sync(None)
        except GLib.Error:
            pass
        bfharness.dbusmock.DBusTestCase.tearDownClass.__func__(cls)

    def tearDown(self):
        stop = os.path.join(HERE, 'latent', 'stop-worker.sh')
        os.system('%s %s cloud >/dev/null 2>&1' % (stop, os.path.join(self.workdir, 'engine')))
        super().tearDown()

    def test_bus_killed(self):
        engine = os.path.join(self.workdir, 'engine')
        os.makedirs(engine)
        start = '%s %s' % (os.path.join(HERE, 'latent', 'start-worker.sh'), engine)
        stop = '%s %s %%n' % (os.path.join(HERE, 'latent', 'stop-worker.sh'), engine)
        self.write_config(self.fleet(3, 'w-%d') +
                          '[Worker cloud]\nPassword=generate\nLatent=command\nStartCommand=%s\n'
                          'StopCommand=%s\nBuilders=b\nBuildWaitTimeout=-1\nSubstantiationTimeout=30\n'
                          % (start, stop))
        self.start_daemon()
        self.worker_call('w-1', 'Pause', GLib.Variant('(s)', ('disk replaced',)))
        self.call(worker_path('cloud'), LATENT_IFACE, 'Substantiate', timeout=60000)
        state = os.path.join(self.statedir, 'workers.state')
        self.wait_until(lambda: os.path.exists(state) and 'Instance cloud' in open(state).read(),
                        timeout=10, message='the instance recorded')

        os.kill(self.system_bus_pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while self.daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        code = self.daemon.poll()
        log = self.daemon_log()
        self.assertIsNotNone(code, 'the daemon kept running without its bus:\n' + log[-3000:])
        self.assertNotEqual(code, 0)
        self.assertIn('lost the connection to the system bus', log)
        self.assertIn('exiting so that systemd restarts the service', log)
        self.assertNotIn('cannot connect', log)
        self.assertNotIn('termination signal', log)
        self.assertEqual(log.count('lost the connection'), 1, log)
        print('exit code %d: %s' % (code, [line for line in log.splitlines() if 'lost the' in line][0]))

        # The state is whole: the pause, and the instance left running for
        # the next daemon to adopt (not stopped).
        kf = configparser.ConfigParser(interpolation=None, strict=False)
        kf.optionxform = str
        kf.read(state)
        self.assertEqual(kf['Worker w-1']['Paused'], 'true')
        self.assertEqual(kf['Worker w-1']['PauseReason'], 'disk replaced')
        self.assertIn('Instance cloud', kf)
        with open(os.path.join(engine, 'engine.log')) as f:
            self.assertNotIn('stop cloud', f.read())
        with open(os.path.join(engine, 'cloud', 'pid')) as f:
            pid = int(f.read())
        self.assertTrue(os.path.exists('/proc/%d' % pid), 'the instance was stopped')
        self.daemon = None


if __name__ == '__main__':
    bfharness.main()
