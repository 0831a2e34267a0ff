#!/usr/bin/python3
# A worker that may take builds again (unpaused here) says so with its own
# signal, availability-changed, which is no longer an active-builds-changed
# with a delta of 0: the pool that keeps MinIdle spares must still hear it
# and start a spare on the worker it could not use while it was paused.
# Instances are counted from the engine, as in test_pools.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

from gi.repository import GLib

import bfharness
from test_pools import PoolTestCase


class AvailabilityTest(PoolTestCase):
    def test_unpaused_member_becomes_a_spare_again(self):
        self.write_config(self.daemon_section() + self.pool(1, MinIdle='1'))
        self.start_daemon()
        self.wait_until(lambda: self.idle_attached(['cloud-01']) == {'cloud-01'}, 90, 'the spare')

        # Paused, its instance stopped: the pool has no member it may start.
        self.worker_call('cloud-01', 'Pause', GLib.Variant('(s)', ('maintenance',)))
        self.insubstantiate('cloud-01', True)
        self.wait_until(lambda: not self.engine_instances(), 60, 'instance stopped')
        self.stays(lambda: not self.engine_instances(), 2, 'no spare while paused')

        # Unpaused: nothing but availability-changed tells the pool.
        self.worker_call('cloud-01', 'Unpause')
        self.wait_until(lambda: self.idle_attached(['cloud-01']) == {'cloud-01'}, 90, 'the spare again')
        self.assertEqual(self.engine_instances(), {'cloud-01'})


if __name__ == '__main__':
    bfharness.main()
