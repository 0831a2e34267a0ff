#!/usr/bin/python3
"""Keys a reload cannot change (Listen, TlsCertificate, TlsPrivateKey,
StateDirectory) stay as the daemon started with them until it restarts,
whatever later files say, and each reload that asks for a change says so.

The daemon keeps the configuration it started with apart from the one in
force, instead of writing the old values into a freshly loaded (immutable)
configuration, so everything that depends on the listener (the master URL
handed to a latent worker) follows what the listener really does."""

import os
import subprocess

from gi.repository import GLib, Gio

import bfharness
from bfharness import FLEET_PATH, MANAGER_IFACE, worker_path

LATENT_IFACE = 'org.buildfleet.Fleet1.LatentWorker'
RESTART_WARNING = 'changes to Listen, TlsCertificate and TlsPrivateKey take effect when the daemon restarts'
STATE_WARNING = 'a new StateDirectory takes effect when the daemon restarts'


class RestartOnlyKeysTest(bfharness.FleetTestCase):
    def make_certificate(self):
        cert = os.path.join(self.workdir, 'cert.pem')
        key = os.path.join(self.workdir, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert],
                       check=True, capture_output=True)
        return cert, key

    def reload(self):
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')

    def test_latent_master_follows_the_listener_not_the_reloaded_file(self):
        self.write_config(self.daemon_section() + '[Worker static]\nPassword=p\n')
        self.start_daemon()

        # The file now asks for TLS and adds a latent worker whose start
        # command only writes down the master URL it is given.
        cert, key = self.make_certificate()
        urls = os.path.join(self.workdir, 'urls')
        self.write_config(self.daemon_section(TlsCertificate=cert, TlsPrivateKey=key) +
                          '[Worker static]\nPassword=p\n'
                          '[Worker cloud]\nPassword=generate\nLatent=command\nProtocol=msgpack\n'
                          'StartCommand=/bin/sh -c "echo %%u >> %s"\nSubstantiationTimeout=30\n' % urls)
        self.reload()
        self.wait_until(lambda: self.daemon_log().count(RESTART_WARNING) == 1, message='restart warning')
        self.assertIn(worker_path('cloud'), self.managed_objects())

        self.bus.call(bfharness.BUS_NAME, worker_path('cloud'), LATENT_IFACE, 'Substantiate', None, None,
                      Gio.DBusCallFlags.NONE, 60000, None, None)
        self.wait_until(lambda: os.path.exists(urls) and open(urls).read().strip(), timeout=20,
                        message='start command ran')
        # The listener still speaks plain WebSocket: a wss:// URL would send
        # the instance to a TLS handshake nobody answers.
        with open(urls) as f:
            self.assertEqual(f.read().split(), ['ws://127.0.0.1:%d' % self.port])

        # Still not in force, so a second reload of the same file says so again.
        self.reload()
        self.wait_until(lambda: self.daemon_log().count(RESTART_WARNING) == 2, message='second warning')
        self.assertIsNone(self.daemon.poll())

    def test_state_directory_stays_until_restart(self):
        other = os.path.join(self.workdir, 'other-state')
        self.write_config(self.daemon_section() + '[Worker a]\nPassword=p\n')
        self.start_daemon()

        self.write_config(self.daemon_section(StateDirectory=other) + '[Worker a]\nPassword=p\n')
        for n in (1, 2):
            self.reload()
            self.wait_until(lambda: self.daemon_log().count(STATE_WARNING) == n,
                            message='StateDirectory warning %d' % n)

        self.worker_call('a', 'Pause', GLib.Variant('(s)', ('after the reloads',)))
        self.assertEqual(self.stop_daemon(), 0)
        with open(os.path.join(self.statedir, 'workers.state')) as f:
            self.assertIn('after the reloads', f.read())
        self.assertFalse(os.path.exists(os.path.join(other, 'workers.state')))


if __name__ == '__main__':
    bfharness.main()
