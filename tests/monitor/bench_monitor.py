#!/usr/bin/python3
# Benchmark: the monitor with 10,000 workers from the real daemon.
#
# Prints the time from starting buildfleet-monitor to the first frame that
# shows the list with all workers loaded, then scrolls the list with the
# mouse wheel (real X events) and prints the frame rate and the longest gap
# between frames the window's frame clock saw.  Run with
#   meson test -C BUILDDIR --benchmark monitor-load-10000 -v
# or directly with BUILDFLEETD, BUILDFLEET_MONITOR set.  N comes from
# BUILDFLEET_BENCH_WORKERS (default 10000).  With BF_LOADGEN set to the built
# tests/bench/bf-loadgen, every worker is attached before the monitor starts
# (the monitor-load-10000-attached benchmark), so the daemon's reply carries
# each worker's Info, Commands, Host, Peer and so on.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from monitorharness import MonitorTestCase, main, wait_for  # noqa: E402

N = int(os.environ.get('BUILDFLEET_BENCH_WORKERS', '10000'))
LOADGEN = os.environ.get('BF_LOADGEN', '')


class LoadBenchmark(MonitorTestCase):
    # Two real workers attached; the others are configured but away.
    WORKERS = {'real-0': {}, 'real-1': {}}
    START_MONITOR = False

    def write_config(self):
        super().write_config()
        if LOADGEN:
            # A fleet at rest, with the default keepalive: the harness's
            # KeepaliveInterval=1 (for quick tests with two workers) would
            # make 10,000 attached workers a ping and a PropertiesChanged
            # each every second.
            with open(self.config) as f:
                text = f.read()
            with open(self.config, 'w') as f:
                f.write(text.replace('KeepaliveInterval=1\n', 'KeepaliveInterval=60\n'))
        with open(self.config, 'a') as f:
            for i in range(N - len(self.WORKERS)):
                f.write(f'\n[Worker bench-{i:05d}]\nPassword=pw\nBuilders=linux\nMissingTimeout=3600\n')

    def daemon_answer_time(self):
        '''How long the daemon takes to answer GetManagedObjects, unmarshalling aside.'''
        from gi.repository import Gio, GLib
        bus = Gio.DBusConnection.new_for_address_sync(
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        start = time.monotonic()
        bus.call_sync('org.buildfleet.Fleet1', '/org/buildfleet/Fleet1', 'org.freedesktop.DBus.ObjectManager',
                      'GetManagedObjects', None, None, Gio.DBusCallFlags.NONE, -1, None)
        elapsed = time.monotonic() - start
        bus.close_sync(None)
        return elapsed

    def attach_all(self):
        '''Attaches the bench-NNNNN workers with bf-loadgen; returns the process.'''
        n = N - len(self.WORKERS)
        loadgen = subprocess.Popen([LOADGEN, '--url', f'ws://127.0.0.1:{self.port}', '-n', str(n),
                                    '--first-index', '0', '--name-format', 'bench-%05d', '--password', 'pw',
                                    '--concurrency', '200', '--hold', '-1'],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: (loadgen.terminate(), loadgen.wait(30)))
        for line in loadgen.stdout:
            if '"phase":"attached"' in line:
                break
        else:
            self.fail('bf-loadgen did not attach the workers')
        wait_for(lambda: self.manager_connected() >= N, timeout=60, interval=0.2, message=f'{N} connected')
        return loadgen

    def manager_connected(self):
        out = subprocess.run(['busctl', '--system', 'get-property', 'org.buildfleet.Fleet1', '/org/buildfleet/Fleet1',
                              'org.buildfleet.Fleet1.Manager', 'WorkersConnected'],
                             capture_output=True, text=True).stdout.split()
        return int(out[1]) if len(out) == 2 else 0

    def test_load(self):
        if LOADGEN:
            self.attach_all()
        daemon_time = self.daemon_answer_time()
        start = time.monotonic()
        self.start_monitor()
        dump = wait_for(lambda: (lambda d: d if d.has_section('window') and d['window']['n-rows'] == str(N)
                                 and d['window']['page'] == 'list' and d['window']['list-shown-usec'] != '0'
                                 else None)(self.dump()),
                        timeout=120, interval=0.05, message=f'{N} rows')
        outside = time.monotonic() - start
        inside = (int(dump['window']['list-shown-usec']) - int(dump['application']['started-usec'])) / 1e6
        self.screenshot('loaded')

        # Scroll: 300 wheel steps into the list, as fast as xdotool sends them.
        env = dict(os.environ, DISPLAY=self.display)
        window = self.monitor_window_id()
        subprocess.run(['xdotool', 'mousemove', '--window', window, '400', '400'], env=env, check=True)
        frames_before = int(self.dump()['window']['frames'])
        scroll_start = time.monotonic()
        subprocess.run(['xdotool', 'click', '--repeat', '300', '--delay', '10', '5'], env=env, check=True)
        dump = self.dump()
        scroll_time = time.monotonic() - scroll_start
        frames = int(dump['window']['frames']) - frames_before
        self.screenshot('scrolled')

        print(f'workers: {N} ({"all" if LOADGEN else len(self.WORKERS)} attached)')
        print(f'daemon: GetManagedObjects answered in {daemon_time:.3f} s (part of the load time)')
        print(f'load: all rows on screen {inside:.3f} s after the application started '
              f'({outside:.3f} s from spawn, measured by the test)')
        print(f'scroll: {frames} frames in {scroll_time:.2f} s = {frames / scroll_time:.1f} fps; '
              f'frame clock fps {float(dump["window"]["fps"]):.1f}, longest recent frame gap '
              f'{int(dump["window"]["max-frame-interval-usec"]) / 1000:.1f} ms')
        print(f'scrolled by {float(dump["window"]["scroll-offset"]):.0f} px')
        self.assertGreater(float(dump['window']['scroll-offset']), 0, 'the list did not scroll')
        self.assertLess(inside, 10.0)


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]], testRunner=unittest.TextTestRunner(stream=sys.stdout, verbosity=2))
