#!/usr/bin/python3
# test_pb_link.py: one BfPbLink (pb-serve) against Debian's real
# buildbot-worker 3.7 created without --protocol (Twisted's PB client):
# login, attach with info, a command's output and exit code, Busy for a
# second command of the builder, interrupt, shutdown; a wrong password is
# refused in a way the worker retries after.
#
#   test_pb_link.py PB-SERVE
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

PB_SERVE = None
WORKER = shutil.which('buildbot-worker') or '/usr/bin/buildbot-worker'


class PbLinkTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='bf-pb-link-')
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self, command, *extra, env=None):
        port_file = os.path.join(self.dir, 'port')
        self.out_path = os.path.join(self.dir, 'serve.out')
        env = dict(os.environ, G_DEBUG='fatal-criticals', **(env or {}))
        self.serve_proc = subprocess.Popen([PB_SERVE, port_file, 'secret', command] + list(extra),
                                           stdout=open(self.out_path, 'w'), stderr=subprocess.STDOUT,
                                           env=env)
        self.procs.append(self.serve_proc)
        deadline = time.monotonic() + 10
        while not (os.path.exists(port_file) and open(port_file).read()):
            self.assertLess(time.monotonic(), deadline, 'pb-serve did not start')
            time.sleep(0.05)
        return int(open(port_file).read())

    def worker(self, port, password, tls_ca=None):
        basedir = os.path.join(self.dir, 'w')
        subprocess.run([WORKER, 'create-worker', '--keepalive=0'] + (['--use-tls'] if tls_ca else []) +
                       [basedir, '127.0.0.1:%d' % port, 'wk1', password],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(basedir, 'info', 'admin'), 'w') as f:
            f.write('Jane <jane@example.com>\n')
        env = dict(os.environ)
        if tls_ca:
            env['SSL_CERT_FILE'] = tls_ca
        p = subprocess.Popen([WORKER, 'start', '--nodaemon', basedir], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.procs.append(p)
        self.basedir = basedir
        return p

    def output(self):
        with open(self.out_path) as f:
            return f.read()

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail('timed out waiting for %s\n--- pb-serve ---\n%s' % (what, self.output()))
            time.sleep(0.1)

    def test_session(self):
        port = self.serve('echo hello; echo oops >&2; exit 3')
        w = self.worker(port, 'secret')
        self.assertEqual(self.serve_proc.wait(60), 0, self.output())
        out = self.output()
        self.assertIn('logged-in wk1\n', out)
        self.assertIn('info admin=Jane <jane@example.com>\n', out)
        self.assertIn('info version=3.7', out)
        self.assertIn('info basedir=%s\n' % self.basedir, out)
        self.assertIn('command shell=', out)
        self.assertIn('protocol pb\n', out)
        self.assertIn('second Builder b1 already runs a command', out)
        self.assertIn('out stdout hello\n', out)
        self.assertIn('out stderr oops\n', out)
        self.assertIn('\nrc 3\n', out)
        self.assertIn('\ncomplete -\n', out)
        self.assertIn('free-after yes\n', out)
        self.assertIn('shutdown ok\n', out)
        # the worker ran it in BASEDIR/BUILDER/WORKDIR and then stopped
        self.assertIn(' in dir %s\n' % os.path.join(self.basedir, 'b1', 'wd'), out)
        self.assertEqual(w.wait(30), 0)

    def test_tls(self):
        cert = os.path.join(self.dir, 'cert.pem')
        key = os.path.join(self.dir, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
                        '-keyout', key, '-out', cert], check=True, capture_output=True)
        port = self.serve('echo over tls', env={'PB_SERVE_CERT': cert, 'PB_SERVE_KEY': key})
        self.worker(port, 'secret', tls_ca=cert)
        self.assertEqual(self.serve_proc.wait(60), 0, self.output())
        self.assertIn('out stdout over tls\n', self.output())
        self.assertIn('shutdown ok\n', self.output())

    def test_interrupt(self):
        port = self.serve('echo start; sleep 60; echo never', 'interrupt')
        self.worker(port, 'secret')
        self.assertEqual(self.serve_proc.wait(60), 0, self.output())
        out = self.output()
        self.assertIn('rc -1\n', out)
        self.assertNotIn('never', out.split('out stdout start', 1)[1])

    def test_wrong_password_is_retried(self):
        port = self.serve('true')
        w = self.worker(port, 'wrong')
        self.wait_for(lambda: 'refused wk1 2' in self.output(), 40, 'a second attempt')
        log = open(os.path.join(self.basedir, 'twistd.log')).read()
        self.assertIn('unauthorized login; check worker name and password', log)
        self.assertIsNone(w.poll(), 'the worker gave up')
        self.assertNotIn('logged-in', self.output())


if __name__ == '__main__':
    PB_SERVE = sys.argv.pop(1)
    unittest.main(verbosity=2)
