#!/usr/bin/python3
# Latent workers through several start/stop cycles: every start must give
# a working instance, for a fresh instance per build (BuildWaitTimeout=0)
# as well as a kept one.  A local worker used to start once and then fail
# on every later start (create-worker --force left the old buildbot.tac).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import sys

from gi.repository import GLib

import bfharness
from bfharness import BUILD_IFACE, LATENT_IFACE, worker_path
from test_latent import LatentTestCase

CYCLES = 3


class CycleTest(LatentTestCase):
    def local_worker(self, wait):
        return ('[Worker local-1]\nPassword=generate\nLatent=local\nBuilders=b\n'
                'BuildWaitTimeout=%s\nSubstantiationTimeout=60\n' % wait)

    def build_cycles(self, name):
        pids = set()
        for i in range(CYCLES):
            build = self.request('b')
            self.wait_build(build, 'running', timeout=90)
            self.assertEqual(self.run_shell(build, 'echo cycle %d' % i), (0, ''), 'cycle %d' % i)
            self.call(build, BUILD_IFACE, 'Release')
            # BuildWaitTimeout=0: the instance goes after each build.
            self.wait_until(lambda: self.latent_prop(name, 'State') == 'not-substantiated', 60,
                            'cycle %d stopped' % i)
            self.wait_connected(name, value=False)
        self.assertFalse(self.worker_prop(name, 'Quarantined'))
        self.assertEqual(len(self.signals_named('Substantiated', worker_path(name))), CYCLES)

    def test_local_fresh_instance_per_build(self):
        self.write_config(self.daemon_section() + self.local_worker('0'))
        self.start_daemon()
        self.build_cycles('local-1')

    def test_local_substantiate_cycles(self):
        self.write_config(self.daemon_section() + self.local_worker('-1'))
        self.start_daemon()
        for i in range(CYCLES):
            self.substantiate('local-1')
            self.assertTrue(self.worker_prop('local-1', 'Connected'), 'cycle %d' % i)
            self.insubstantiate('local-1', i % 2 == 1)
            self.assertEqual(self.latent_prop('local-1', 'State'), 'not-substantiated')
        self.assertFalse(self.worker_prop('local-1', 'Quarantined'))

    def test_command_fresh_instance_per_build(self):
        self.write_config(self.daemon_section() + self.command_worker(wait='0'))
        self.start_daemon()
        self.build_cycles('cloud')
        self.assertEqual(self.engine_log(), ['start', 'stop'] * CYCLES)


if __name__ == '__main__':
    bfharness.main()
