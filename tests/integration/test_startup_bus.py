#!/usr/bin/python3
# What a client sees of the fleet after start-up (issue 20): the manager
# exports each worker's interfaces on the connection itself instead of
# through a GDBusObjectManagerServer object per worker (the third of the
# start-up's CPU it cost with 50,000 configured: tests/bench/README.md,
# "Start-up").  A client must not be able to tell: the same paths,
# interfaces and properties in GetManagedObjects and introspection, a
# GDBusObjectManagerClient that builds the same fleet, InterfacesAdded and
# InterfacesRemoved on reload with every interface, PropertiesChanged and
# method calls on each worker, and no InterfacesAdded for the workers the
# daemon starts with.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import xml.etree.ElementTree as ET

from gi.repository import Gio, GLib

import bfharness
from bfharness import FLEET_PATH, MANAGER_IFACE, WORKER_IFACE, worker_path

LATENT_IFACE = 'org.buildfleet.Fleet1.LatentWorker'
POOL_IFACE = 'org.buildfleet.Fleet1.Pool'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
STANDARD = ['org.freedesktop.DBus.Introspectable', 'org.freedesktop.DBus.Peer',
            'org.freedesktop.DBus.Properties']
N = 300


def name(i):
    return 'w-%03d' % i


class StartupBusTest(bfharness.FleetTestCase):
    def setUp(self):
        super().setUp()
        # From any sender, not only the name's owner: the daemon exports its
        # workers before the name is its own, and a signal sent then must
        # show here too.
        self.any_sender = []
        self.subscriptions.append(self.bus.signal_subscribe(
            None, OM_IFACE, None, FLEET_PATH, None, Gio.DBusSignalFlags.NONE,
            lambda conn, sender, path, iface, member, params:
                self.any_sender.append((member, params.unpack()))))

    def fleet(self, plain=N, extra=''):
        parts = [self.daemon_section()]
        for i in range(plain):
            parts.append('[Worker %s]\nPassword=p-%d\nBuilders=b;c%d\nMaxBuilds=%d\n' % (
                name(i), i, i % 5, i % 3 + 1))
        parts.append('[Worker lazy]\nPassword=lp\nLatent=command\nStartCommand=/bin/true\nBuilders=b\n')
        parts.append('[Pool spare]\nWorkers=spare-%02d\nCount=2\nPassword=generate\nLatent=command\n'
                     'StartCommand=/bin/true\nBuilders=b\n')
        parts.append(extra)
        return ''.join(parts)

    def introspect(self, path):
        xml = self.call(path, 'org.freedesktop.DBus.Introspectable', 'Introspect')[0]
        root = ET.fromstring(xml)
        return (sorted(i.get('name') for i in root.findall('interface')),
                sorted(n.get('name') for n in root.findall('node')))

    def assert_entry_is_live(self, path, entry):
        """@entry (a{sa{sv}}) holds what GetAll says of each interface."""
        for iface, props in entry.items():
            self.assertEqual(props, self.props(path, iface), '%s %s' % (path, iface))

    def test_fleet_as_a_client_sees_it(self):
        self.write_config(self.fleet())
        self.start_daemon()

        objects = self.managed_objects()
        workers = sorted(p for p in objects if p.startswith(FLEET_PATH + '/workers/'))
        self.assertEqual(workers, sorted([worker_path(name(i)) for i in range(N)] +
                                         [worker_path('lazy'), worker_path('spare-01'),
                                          worker_path('spare-02')]))
        for i in range(N):
            entry = objects[worker_path(name(i))]
            self.assertEqual(list(entry), [WORKER_IFACE])
            w = entry[WORKER_IFACE]
            self.assertEqual((w['Name'], w['MaxBuilds'], w['Builders']),
                             (name(i), i % 3 + 1, ['b', 'c%d' % (i % 5)]))
        for lazy in ('lazy', 'spare-01'):
            self.assertEqual(sorted(objects[worker_path(lazy)]), [LATENT_IFACE, WORKER_IFACE])
            self.assert_entry_is_live(worker_path(lazy), objects[worker_path(lazy)])
        self.assert_entry_is_live(worker_path(name(7)), objects[worker_path(name(7))])
        self.assertIn(POOL_IFACE, objects[FLEET_PATH + '/pools/spare'])

        # GetWorkers and GetWorkerPage list the same workers.
        listed = self.call(FLEET_PATH, MANAGER_IFACE, 'GetWorkers', GLib.Variant('(as)', ([],)))[0]
        self.assertEqual(sorted(listed), workers)
        self.assertEqual(listed[worker_path('lazy')], objects[worker_path('lazy')])
        page = self.call(FLEET_PATH, MANAGER_IFACE, 'GetWorkerPage',
                         GLib.Variant('(assu)', (['Name'], '', 0)))
        self.assertEqual(sorted(page[0]), workers)
        self.assertEqual(page[0][worker_path('lazy')], {WORKER_IFACE: {'Name': 'lazy'},
                                                        LATENT_IFACE: {}})

        # Introspection: each worker's interfaces, and the tree of nodes.
        self.assertEqual(self.introspect(worker_path(name(0))), (sorted(STANDARD + [WORKER_IFACE]), []))
        self.assertEqual(self.introspect(worker_path('lazy')),
                         (sorted(STANDARD + [LATENT_IFACE, WORKER_IFACE]), []))
        self.assertEqual(sorted(self.introspect(FLEET_PATH + '/workers')[1]),
                         sorted(p.rsplit('/', 1)[1] for p in workers))
        self.assertIn(OM_IFACE, self.introspect(FLEET_PATH)[0])

        # GLib's own object manager client builds the same fleet.
        client = Gio.DBusObjectManagerClient.new_sync(
            self.bus, Gio.DBusObjectManagerClientFlags.DO_NOT_AUTO_START, bfharness.BUS_NAME,
            FLEET_PATH, None, None, None)
        seen = {o.get_object_path(): sorted(i.get_interface_name() for i in o.get_interfaces())
                for o in client.get_objects()}
        self.assertEqual(seen, {p: sorted(e) for p, e in objects.items()})
        proxy = client.get_interface(worker_path(name(3)), WORKER_IFACE)
        self.assertEqual(proxy.get_cached_property('MaxBuilds').unpack(), 1)

        # Each worker still answers calls and sends PropertiesChanged.
        self.worker_call(name(3), 'Pause', GLib.Variant('(s)', ('disk full',)))
        self.wait_until(lambda: True in self.properties_changed(worker_path(name(3)), 'Paused'),
                        30, 'PropertiesChanged(Paused) from %s' % name(3))
        self.wait_until(lambda: proxy.get_cached_property('Paused').unpack(), 30,
                        'the object manager client\'s proxy sees Paused')
        self.call(worker_path('lazy'), LATENT_IFACE, 'Insubstantiate', GLib.Variant('(b)', (False,)))

        # Nothing was announced for the workers the daemon started with.
        self.assert_stays(lambda: self.any_sender == [], 1.0, 'no InterfacesAdded at start-up')

    def test_reload_announces_every_interface(self):
        self.write_config(self.fleet(plain=3))
        self.start_daemon()
        client = Gio.DBusObjectManagerClient.new_sync(
            self.bus, Gio.DBusObjectManagerClientFlags.DO_NOT_AUTO_START, bfharness.BUS_NAME,
            FLEET_PATH, None, None, None)
        added_seen, removed_seen = [], []
        client.connect('object-added', lambda c, o: added_seen.append(o.get_object_path()))
        client.connect('object-removed', lambda c, o: removed_seen.append(o.get_object_path()))

        # lazy and w-001 go, lazy-2 (latent) and w-010 come.
        text = self.fleet(plain=0, extra=(
            '[Worker %s]\nPassword=p\nBuilders=b\n[Worker %s]\nPassword=p\nBuilders=b\n'
            '[Worker lazy-2]\nPassword=lp\nLatent=command\nStartCommand=/bin/true\nBuilders=b\n' %
            (name(0), name(10))))
        text = text.replace('[Worker lazy]\nPassword=lp\nLatent=command\nStartCommand=/bin/true\nBuilders=b\n', '')
        self.write_config(text)
        self.call(FLEET_PATH, MANAGER_IFACE, 'Reload')

        added = self.wait_until(lambda: len(self.any_sender) >= 4 and self.any_sender, 30,
                                'InterfacesAdded and InterfacesRemoved after the reload')
        by_path = {}
        for member, (path, arg) in added:
            by_path.setdefault(member, {})[path] = arg
        self.assertEqual(sorted(by_path['InterfacesAdded']), [worker_path('lazy-2'), worker_path(name(10))])
        self.assertEqual(sorted(by_path['InterfacesRemoved']),
                         [worker_path('lazy'), worker_path(name(1)), worker_path(name(2))])
        self.assertEqual(sorted(by_path['InterfacesRemoved'][worker_path('lazy')]), [LATENT_IFACE, WORKER_IFACE])
        self.assertEqual(by_path['InterfacesRemoved'][worker_path(name(1))], [WORKER_IFACE])
        lazy2 = by_path['InterfacesAdded'][worker_path('lazy-2')]
        self.assertEqual(sorted(lazy2), [LATENT_IFACE, WORKER_IFACE])
        self.assertEqual(lazy2[WORKER_IFACE]['Name'], 'lazy-2')
        self.assert_entry_is_live(worker_path('lazy-2'), lazy2)
        self.assertEqual(list(by_path['InterfacesAdded'][worker_path(name(10))]), [WORKER_IFACE])

        objects = self.managed_objects()
        self.assertEqual(sorted(p for p in objects if '/workers/' in p),
                         sorted(worker_path(n) for n in (name(0), name(10), 'lazy-2', 'spare-01', 'spare-02')))
        self.assertEqual(self.introspect(worker_path('lazy-2')),
                         (sorted(STANDARD + [LATENT_IFACE, WORKER_IFACE]), []))
        # A removed worker's path is gone from the bus, not only from the list.
        name_, _ = self.call_error(worker_path(name(1)), 'org.freedesktop.DBus.Properties', 'GetAll',
                                   GLib.Variant('(s)', (WORKER_IFACE,)))
        self.assertIn(name_, ('org.freedesktop.DBus.Error.UnknownObject',
                              'org.freedesktop.DBus.Error.UnknownMethod',
                              'org.freedesktop.DBus.Error.UnknownInterface'))
        self.wait_until(lambda: sorted(added_seen) == [worker_path('lazy-2'), worker_path(name(10))] and
                        sorted(removed_seen) == [worker_path('lazy'), worker_path(name(1)), worker_path(name(2))],
                        30, 'the object manager client follows the reload')
        self.assertEqual(sorted(i.get_interface_name() for i in client.get_object(worker_path('lazy-2')).get_interfaces()),
                         [LATENT_IFACE, WORKER_IFACE])


if __name__ == '__main__':
    bfharness.main()
