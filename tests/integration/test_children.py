#!/usr/bin/python3
# Child processes: an alarm storm with a hanging MailCommand, and hung
# latent commands, must not pile up processes or leak descriptors.
#
# Every command these tests give the daemon is a shell script that marks
# itself and all it forks with BF_CHILDREN_MARK=<token> in the environment
# (it re-executes itself with the mark), so the test can find each of its
# processes in /proc, grandchildren included, whatever group they are in.
# Zombies waiting for init do not count as running.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import glob
import os
import re
import secrets
import time

from gi.repository import Gio, GLib

import bfharness
from bfharness import LATENT_IFACE, worker_path

MAIL_BOUND = 4          # MailCommands the daemon runs at once
QUEUE_BOUND = 64        # mails that wait for one
KILL_GRACE = 5.0        # SIGTERM to SIGKILL

# The hanging part: a child left in the background holding our pipes, a
# foreground sleep, and SIGTERM ignored (inherited by both), like a stuck
# program; only SIGKILL to the whole group ends it.
HANG = 'trap "" TERM\nsleep 1000 &\nsleep 1000\n'


def marked_processes(token):
    """[(pid, ppid, argv)] of the live processes carrying the mark."""
    needle = ('BF_CHILDREN_MARK=%s' % token).encode()
    out = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
            fields = stat[stat.rindex(')') + 2:].split()
            if fields[0] in ('Z', 'X'):
                continue
            with open('/proc/%s/environ' % entry, 'rb') as f:
                env = f.read().split(b'\0')
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                argv = f.read().split(b'\0')
        except (OSError, ValueError, IndexError):
            continue
        if needle in env:
            out.append((int(entry), int(fields[1]), argv))
    return out


class ChildrenTestCase(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        self.token = secrets.token_hex(6)
        self.flag = os.path.join(self.workdir, 'mail-works')

    def script(self, name, body):
        path = os.path.join(self.workdir, name)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n')
            f.write('if [ "$BF_CHILDREN_MARK" != %s ]; then\n'
                    '  BF_CHILDREN_MARK=%s exec /bin/sh "$0" "$@"\n'
                    'fi\n' % (self.token, self.token))
            f.write(body)
        return path

    def mail_command(self):
        """Delivers like the harness's once self.flag exists; hangs before."""
        path = self.script('hanging-sendmail.sh',
                           'if [ -e "$2" ]; then\n'
                           '  t=$(mktemp -p "$1" part-XXXXXX) && cat > "$t" && mv "$t" "$t.mail"\n'
                           '  exit $?\n'
                           'fi\n' + HANG)
        return '/bin/sh %s %s %s' % (path, self.maildir, self.flag)

    def marked(self):
        return marked_processes(self.token)

    def fds(self):
        """The daemon's descriptors, but for the history journal: the one
        file it keeps open for good, opened with the first event."""
        count = 0
        for fd in os.listdir('/proc/%d/fd' % self.daemon.pid):
            try:
                target = os.readlink('/proc/%d/fd/%s' % (self.daemon.pid, fd))
            except OSError:
                continue
            if not target.endswith('/history/journal.log'):
                count += 1
        return count

    def fd_targets(self):
        out = []
        for fd in sorted(os.listdir('/proc/%d/fd' % self.daemon.pid), key=int):
            try:
                out.append('%s=%s' % (fd, os.readlink('/proc/%d/fd/%s' % (self.daemon.pid, fd))))
            except OSError:
                pass
        return ', '.join(out)

    def mailed_workers(self):
        out = []
        for m in self.mails():
            found = re.search(r'^X-Buildfleet-Worker: (\S+)', m, re.M)
            out.append(found.group(1))
        return out

    def failed_workers(self):
        return re.findall(r'Mail about worker (\S+) to \S+ failed: (.*)', self.daemon_log())


class MailStormTest(ChildrenTestCase):
    N = 32

    def test_storm_with_hanging_mail_command(self):
        names = ['storm%02d' % i for i in range(self.N)]
        # One admin per worker: alerts to the same recipients would be
        # combined into a digest (MailDigestTest); here every one is a mail.
        self.write_config(self.daemon_section(MailCommand=self.mail_command(), MailTimeout='2') +
                          ''.join('[Worker %s]\nPassword=p\nMissingTimeout=3\n'
                                  'NotifyOnMissing=ops-%s@example.com\n' % (n, n) for n in names))
        self.start_daemon()
        baseline = self.fds()
        # Taken before any alarm: nothing has been mailed yet.
        self.assertEqual(self.signals_named('Missing'), [])
        self.assertEqual(self.marked(), [])

        peak = {'commands': 0, 'processes': 0}

        def sample():
            procs = self.marked()
            commands = [p for p in procs if p[1] == self.daemon.pid]
            peak['commands'] = max(peak['commands'], len(commands))
            peak['processes'] = max(peak['processes'], len(procs))
            # Never more than the bound of MailCommands, each with its two sleeps.
            self.assertLessEqual(len(commands), MAIL_BOUND, procs)
            self.assertLessEqual(len(procs), MAIL_BOUND * 3, procs)
            return procs

        # The storm: every worker goes missing at once; the first four
        # mails hang, the others wait.
        self.wait_until(lambda: self.manager_prop('WorkersMissing') == self.N, timeout=15,
                        message='all workers missing')
        first = self.wait_until(lambda: len([p for p in sample() if p[1] == self.daemon.pid]) == MAIL_BOUND
                                and len(self.marked()) == MAIL_BOUND * 3 and self.marked(),
                                timeout=10, message='four hanging MailCommands with their children')
        # Until their timeout (2 s) and the SIGKILL grace, no fifth one starts.
        self.wait_until(lambda: (sample(), len(self.failed_workers()) >= MAIL_BOUND)[1],
                        timeout=2 + KILL_GRACE + 15, message='the first mails given up')
        # All of the first four's processes are gone, the background ones included.
        alive = {p[0] for p in self.marked()}
        self.assertEqual(alive & {p[0] for p in first}, set())
        for _, reason in self.failed_workers()[:MAIL_BOUND]:
            self.assertIn('did not finish within 2.0 s; its processes were stopped (SIGKILL was needed)',
                          reason)

        # The mail system works again: what waited is delivered.
        open(self.flag, 'w').close()
        self.wait_until(lambda: (sample(), len(self.mails()) + len(self.failed_workers()) == self.N)[1],
                        timeout=60, message='every mail delivered or failed')
        mailed = self.mailed_workers()
        failed = [w for w, _ in self.failed_workers()]
        # Each mail exactly once: delivered, or one line saying it failed.
        self.assertEqual(sorted(mailed + failed), names)
        self.assertGreaterEqual(len(mailed), self.N - 3 * MAIL_BOUND)
        # The mail lands before the daemon has seen its command exit and
        # logged it: wait for the log line of each.
        mailed_lines = lambda: re.findall(r'Mailed ops-\S+@example.com about worker', self.daemon_log())
        self.wait_until(lambda: len(mailed_lines()) >= len(mailed),
                        timeout=15, message='a log line for every mail delivered')
        self.assertEqual(len(mailed_lines()), len(mailed))

        # Nothing is left running, and every pipe is closed.
        self.wait_until(lambda: self.marked() == [], timeout=10, message='no mail process left')
        self.wait_until(lambda: self.fds() == baseline, timeout=10,
                        message='descriptors back to %d (now %d: %s)' % (baseline, self.fds(), self.fd_targets()))
        self.assertLessEqual(peak['commands'], MAIL_BOUND)
        print('peak: %(commands)d MailCommands, %(processes)d processes' % peak)
        self.assertIsNone(self.daemon.poll())


class MailQueueTest(ChildrenTestCase):
    N = QUEUE_BOUND + 16

    def test_full_queue_drops_oldest_and_says_so_once(self):
        names = ['q%03d' % i for i in range(self.N)]
        self.write_config(self.daemon_section(MailCommand=self.mail_command(), MailTimeout='2') +
                          ''.join('[Worker %s]\nPassword=p\nMissingTimeout=1\n'
                                  'NotifyOnMissing=ops-%s@example.com\n' % (n, n) for n in names))
        self.start_daemon()
        self.wait_until(lambda: self.manager_prop('WorkersMissing') == self.N, timeout=15,
                        message='all workers missing')
        # The alarms come within a few main-loop iterations: 64 mails wait,
        # up to four have started (and hang), the oldest waiting are dropped.
        # Each with its two sleeps: past the point where it could see the flag.
        self.wait_until(lambda: len(self.marked()) == MAIL_BOUND * 3, timeout=10,
                        message='four hanging MailCommands')
        open(self.flag, 'w').close()
        summary = self.wait_until(lambda: re.search(r'The mail queue has drained: (\d+) alert mails were '
                                                    r'dropped because it was full', self.daemon_log()),
                                  timeout=60, message='the overflow summary')
        dropped = int(summary.group(1))
        self.assertTrue(self.N - QUEUE_BOUND - MAIL_BOUND <= dropped <= self.N - QUEUE_BOUND, dropped)
        self.wait_until(lambda: len(self.mails()) + len(self.failed_workers()) == self.N - dropped,
                        timeout=60, message='the queued mails delivered or failed')
        # A mail lands before the daemon has seen its command exit.
        self.wait_until(lambda: 'The mail queue has drained' in self.daemon_log(), timeout=15,
                        message='the queue drained')
        log = self.daemon_log()
        self.assertEqual(log.count('Too many alert mails at once'), 1, log)
        self.assertEqual(log.count('The mail queue has drained'), 1)
        # The four hanging ones failed, everything that waited was mailed.
        self.assertEqual(len(self.failed_workers()), MAIL_BOUND)
        self.assertEqual(len(self.mails()), self.N - dropped - MAIL_BOUND)
        # Each mail that was kept went out or failed once; the first dropped
        # (the oldest waiting) is not among them.
        done = self.mailed_workers() + [w for w, _ in self.failed_workers()]
        self.assertEqual(len(set(done)), self.N - dropped)
        first_dropped = re.search(r'starting with the one about worker (\S+) ', log).group(1)
        self.assertIn(first_dropped, names)
        self.assertNotIn(first_dropped, done)
        self.wait_until(lambda: self.marked() == [], timeout=10, message='no mail process left')

    def test_mail_timeout_is_checked(self):
        for value, expected in (('0', 'must be at least 0.1 seconds'), ('soon', 'MailTimeout')):
            self.write_config(self.daemon_section(MailTimeout=value))
            code, out = self.run_daemon_expect_failure()
            self.assertEqual(code, 1, out)
            self.assertIn('MailTimeout', out)
            self.assertIn(expected, out)


class LatentCommandTest(ChildrenTestCase):
    def check_nothing_left(self, name, config):
        self.write_config(self.daemon_section() + config)
        self.start_daemon()
        baseline = self.fds()
        results = []

        def done(conn, res):
            try:
                conn.call_finish(res)
                results.append('ok')
            except GLib.Error as e:
                results.append(e.message)
        self.bus.call(bfharness.BUS_NAME, worker_path(name), LATENT_IFACE, 'Substantiate', None, None,
                      Gio.DBusCallFlags.NONE, 60000, None, done)
        # The command hangs with a child of its own.
        self.wait_until(lambda: len(self.marked()) == 3, timeout=10, message='the hung command and its children')
        sig = self.wait_signal('SubstantiationFailed', worker_path(name), timeout=15)
        self.assertIn('did not connect within 2.0 s', sig[0][3][0])
        self.wait_until(lambda: results, message='Substantiate answered')
        # After the failure, no process the command started is left.
        self.wait_until(lambda: self.marked() == [], timeout=KILL_GRACE + 10,
                        message='no process of the failed start left: %s' % self.marked())
        self.wait_until(lambda: self.latent_state(name) == 'not-substantiated', message='stopped')
        self.wait_until(lambda: self.fds() == baseline, timeout=10,
                        message='descriptors back to %d (now %d: %s)' % (baseline, self.fds(), self.fd_targets()))
        self.assertIsNone(self.daemon.poll())

    def latent_state(self, name):
        return self.prop(worker_path(name), LATENT_IFACE, 'State')

    def test_hung_start_command(self):
        start = self.script('hung-start.sh', HANG)
        self.check_nothing_left('hung', '[Worker hung]\nPassword=generate\nLatent=command\n'
                                'StartCommand=/bin/sh %s %%n\nBuilders=b\nSubstantiationTimeout=2\n' % start)

    def test_hung_create_worker_of_local_driver(self):
        fake = self.script('hung-buildbot-worker.sh', HANG)
        os.chmod(fake, 0o755)
        os.environ['BUILDFLEET_BUILDBOT_WORKER'] = fake
        try:
            self.check_nothing_left('local', '[Worker local]\nPassword=generate\nLatent=local\n'
                                    'Builders=b\nSubstantiationTimeout=2\n')
        finally:
            del os.environ['BUILDFLEET_BUILDBOT_WORKER']



class MailDigestTest(ChildrenTestCase):
    """A rack going missing at once: each set of recipients gets its first
    alerts one by one, then one digest with the rest, never a mail storm;
    other recipients are not held up by it."""

    BURST = 10          # BF_MAIL_DIGEST_BURST
    INTERVAL = 3.0      # MailDigestInterval in this test

    def test_storm_becomes_one_digest(self):
        rack = ['rack%02d' % i for i in range(25)]
        self.write_config(self.daemon_section(MailDigestInterval=str(self.INTERVAL)) +
                          ''.join('[Worker %s]\nPassword=p\nMissingTimeout=0.5\n'
                                  'NotifyOnMissing=ops@example.com\n' % n for n in rack) +
                          '[Worker lone]\nPassword=p\nMissingTimeout=0.5\nNotifyOnMissing=dev@example.com\n')
        self.start_daemon()
        to = lambda who: [m for m in self.mails() if re.search(r'^To: %s\r?$' % re.escape(who), m, re.M)]
        self.wait_until(lambda: len(to('ops@example.com')) >= self.BURST and len(to('dev@example.com')) == 1,
                        timeout=20, message='the first alerts, one by one')
        digest = self.wait_until(lambda: [m for m in to('ops@example.com') if 'X-Buildfleet-Digest:' in m],
                                 timeout=self.INTERVAL + 20, message='the digest')[0]
        singles = [m for m in to('ops@example.com') if 'X-Buildfleet-Worker:' in m]
        self.assertEqual(len(singles), self.BURST)
        held = len(rack) - self.BURST
        self.assertIn('X-Buildfleet-Digest: %d' % held, digest)
        self.assertRegex(digest, r'Subject: Buildfleet worker rack\d\d is missing, and %d more alerts' % (held - 1))
        # Every worker of the rack is named exactly once: in its own mail or in the digest.
        named = [re.search(r'^X-Buildfleet-Worker: (\S+)', m, re.M).group(1) for m in singles]
        named += re.findall(r'^--- Buildfleet worker (\S+) is missing ---$', digest, re.M)
        self.assertEqual(sorted(named), rack)
        # and the digest says why it came
        self.assertIn('MailDigestInterval (3.0 s)', digest)
        # each alert's text once, without its signature
        self.assertIn('--- Buildfleet worker rack24 is missing ---\nThe worker rack24 has been disconnected since', digest)
        self.assertEqual(digest.count('\n-- \n'), 0, digest)
        self.assertIn('More than %d alerts for ops@example.com within MailDigestInterval' % self.BURST,
                      self.daemon_log())
        self.wait_until(lambda: 'Mailed ops@example.com about %d alerts (a digest)' % held in self.daemon_log(),
                        timeout=15, message='the digest logged')
        # Nothing more: a storm is one digest per interval, and this one is over.
        self.assert_stays(lambda: len(self.mails()) == self.BURST + 2, 2 * self.INTERVAL,
                          'no further mail after the digest')

    def test_digest_interval_is_checked(self):
        for value, expected in (('-1', 'MailDigestInterval'), ('86401', 'at most a day')):
            self.write_config(self.daemon_section(MailDigestInterval=value))
            code, out = self.run_daemon_expect_failure()
            self.assertEqual(code, 1, out)
            self.assertIn('MailDigestInterval', out)
            self.assertIn(expected, out)


class MailDigestRestartTest(ChildrenTestCase):
    """Alerts held for a digest survive the daemon: stopped (SIGTERM) or
    killed (SIGKILL) before the digest is due, the next daemon sends it when
    it is due, once, naming every held worker, and never again."""

    BURST = 10          # BF_MAIL_DIGEST_BURST
    INTERVAL = 12.0     # MailDigestInterval: the stop and restart fit in it on a busy machine
    RACK = ['rack%02d' % i for i in range(16)]

    def setUp(self):
        super().setUp()
        self.write_config(self.daemon_section(MailDigestInterval=str(self.INTERVAL)) +
                          ''.join('[Worker %s]\nPassword=p\nMissingTimeout=0.5\n'
                                  'NotifyOnMissing=ops@example.com\n' % n for n in self.RACK))
        self.held_file = os.path.join(self.statedir, 'mail-digest.state')

    def mail_files(self):
        return sorted(glob.glob(os.path.join(self.maildir, '*.mail')), key=os.path.getmtime)

    def digests(self):
        return [m for m in self.mails() if 'X-Buildfleet-Digest:' in m]

    def hold_alerts(self):
        """Starts the daemon until the rack is missing: the first BURST
        alerts mailed, the rest held.  Returns when the first was mailed."""
        self.start_daemon()
        self.wait_until(lambda: len(self.signals_named('Missing')) >= len(self.RACK), timeout=20,
                        message='every worker of the rack missing')
        self.wait_until(lambda: len(self.mails()) >= self.BURST, timeout=20, message='the first alerts')
        first = os.path.getmtime(self.mail_files()[0])
        self.assertEqual(self.digests(), [])
        return first

    def assert_one_digest(self, first):
        held = len(self.RACK) - self.BURST
        digest = self.wait_until(self.digests, timeout=self.INTERVAL + 30, message='the digest')[0]
        arrived = os.path.getmtime(self.mail_files()[-1])
        # when it was due: an interval after the first alert, not at start-up
        self.assertGreaterEqual(arrived - first, self.INTERVAL - 2.0)
        self.assertIn('X-Buildfleet-Digest: %d' % held, digest)
        singles = [re.search(r'^X-Buildfleet-Worker: (\S+)', m, re.M).group(1)
                   for m in self.mails() if 'X-Buildfleet-Worker:' in m]
        named = re.findall(r'^--- Buildfleet worker (\S+) is missing ---$', digest, re.M)
        self.assertEqual(len(named), held, digest)
        self.assertEqual(sorted(singles + named), self.RACK)
        self.assertIn('Took back the alerts held for mail digests', self.daemon_log())
        # once: not again in this run ...
        self.assert_stays(lambda: len(self.mails()) == self.BURST + 1, 3.0, 'no second digest')
        # ... nor after another restart (the digest that went cleared the file)
        self.stop_daemon()
        self.start_daemon()
        self.assert_stays(lambda: len(self.mails()) == self.BURST + 1, self.INTERVAL + 2.0,
                          'no digest after the next restart')
        self.assertNotIn('Took back', self.daemon_log())

    def test_sigterm(self):
        first = self.hold_alerts()
        self.assertEqual(self.stop_daemon(), 0)
        self.assertEqual(self.digests(), [])
        self.start_daemon()
        self.assert_one_digest(first)

    def test_sigkill(self):
        """Covered once the file is written (HELD_SAVE_DELAY_MS after the
        last held alert): the test waits for that, not for a time."""
        first = self.hold_alerts()
        held = self.RACK[self.BURST:]

        def saved():
            try:
                with open(self.held_file) as f:
                    text = f.read()
                with open(os.path.join(self.statedir, 'workers.state')) as f:
                    notified = f.read().count('MissingNotified=true')
            except OSError:
                return False
            named = set(re.findall(r'Buildfleet worker (rack\d\d) is missing', text))
            return len(named) == len(held) and notified == len(self.RACK)
        self.wait_until(saved, timeout=10, message='the held alerts on disk')
        self.daemon.kill()
        self.daemon.wait()
        self.daemon = None
        self.start_daemon()
        self.assert_one_digest(first)

    def test_corrupt_file(self):
        os.makedirs(self.statedir, exist_ok=True)
        with open(self.held_file, 'wb') as f:
            f.write(b'\x00\x01 this is no key file\n[Held 0\n')
        self.start_daemon()
        self.wait_until(lambda: 'Mail digest file %s is corrupt' % self.held_file in self.daemon_log(),
                        timeout=10, message='the warning')
        aside = glob.glob(self.held_file + '.corrupt-*')
        self.assertEqual(len(aside), 1)
        with open(aside[0], 'rb') as f:
            self.assertIn(b'this is no key file', f.read())
        # the daemon runs, and alerts are held and sent as ever
        self.wait_until(lambda: len(self.signals_named('Missing')) >= len(self.RACK), timeout=20,
                        message='every worker of the rack missing')
        self.wait_until(self.digests, timeout=self.INTERVAL + 30, message='the digest')
        self.assertIsNone(self.daemon.poll())


if __name__ == '__main__':
    bfharness.main()
