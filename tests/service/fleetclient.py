#!/usr/bin/python3
# fleetclient.py: a D-Bus client of buildfleetd for test_service.py
#
# test_service.py runs it as an unprivileged user, since the bus and
# buildfleetd judge a caller by the credentials of its connection.  It talks
# to the bus in $DBUS_SYSTEM_BUS_ADDRESS and prints one JSON object: the
# connection's unique name and uid, then the result or the D-Bus error.
#
#   fleetclient.py read                        GetManagedObjects, Manager properties, Introspect
#   fleetclient.py call PATH IFACE METHOD ARGS ARGS is a GVariant tuple in text form
#   fleetclient.py own NAME                    RequestName
#   fleetclient.py watch PATH SECONDS          prints "ready", then the signals on PATH
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import json
import os
import sys
import time

from gi.repository import Gio, GLib

BUS_NAME = 'org.buildfleet.Fleet1'
FLEET_PATH = '/org/buildfleet/Fleet1'
TIMEOUT_MS = 10000


def call(bus, dest, path, iface, method, args=None):
    return bus.call_sync(dest, path, iface, method, args, None, Gio.DBusCallFlags.NONE,
                         TIMEOUT_MS, None)


def read(bus):
    objects = call(bus, BUS_NAME, FLEET_PATH, 'org.freedesktop.DBus.ObjectManager',
                   'GetManagedObjects').unpack()[0]
    manager = call(bus, BUS_NAME, FLEET_PATH, 'org.freedesktop.DBus.Properties', 'GetAll',
                   GLib.Variant('(s)', ('org.buildfleet.Fleet1.Manager',))).unpack()[0]
    xml = call(bus, BUS_NAME, FLEET_PATH, 'org.freedesktop.DBus.Introspectable',
               'Introspect').unpack()[0]
    call(bus, BUS_NAME, FLEET_PATH, 'org.freedesktop.DBus.Peer', 'Ping')
    return {
        'objects': {path: {iface: {k: repr(v) for k, v in props.items()}
                           for iface, props in ifaces.items()}
                    for path, ifaces in objects.items()},
        'manager': {k: repr(v) for k, v in manager.items()},
        'introspection': xml,
    }


def watch(bus, path, seconds):
    received = []

    def on_signal(conn, sender, obj_path, iface, name, params):
        received.append({'interface': iface, 'member': name, 'args': repr(params.unpack())})

    bus.signal_subscribe(BUS_NAME, None, None, path, None, Gio.DBusSignalFlags.NONE, on_signal)
    # A round trip to the bus: the match rule is in place before "ready".
    call(bus, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId')
    print('ready', flush=True)
    ctx = GLib.MainContext.default()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not received:
        ctx.iteration(False)
        time.sleep(0.01)
    # Whatever else arrives with the first signal.
    for _ in range(20):
        ctx.iteration(False)
    return received


def main(argv):
    bus = Gio.DBusConnection.new_for_address_sync(
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    out = {'unique_name': bus.get_unique_name(), 'uid': os.getuid()}
    try:
        if argv[1] == 'read':
            out['result'] = read(bus)
        elif argv[1] == 'call':
            path, iface, method, args = argv[2:6]
            reply = call(bus, BUS_NAME, path, iface, method, GLib.Variant.parse(None, args, None, None))
            out['result'] = reply.print_(False)
        elif argv[1] == 'own':
            reply = call(bus, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                         'RequestName', GLib.Variant('(su)', (argv[2], 4)))   # DO_NOT_QUEUE
            out['result'] = reply.unpack()[0]
        elif argv[1] == 'watch':
            out['result'] = watch(bus, argv[2], float(argv[3]))
        else:
            raise SystemExit('unknown command ' + argv[1])
    except GLib.Error as e:
        out['error'] = Gio.DBusError.get_remote_error(e)
        Gio.DBusError.strip_remote_error(e)
        out['message'] = e.message
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main(sys.argv)
