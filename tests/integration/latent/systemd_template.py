'''python-dbusmock's systemd template, able to publish the unit names systemd
itself accepts: AddMockUnit encodes the unit's object path as systemd does
(sd_bus_path_encode: every byte but [A-Za-z0-9] becomes _XX), where the
stock template only replaces '.' and '-' and so cannot publish a template
instance such as buildbot-worker@w1.service (the driver's default Unit=).
Loaded by path: spawn_server_template(THIS_FILE, ...).

SPDX-License-Identifier: LGPL-2.1-or-later
'''

import dbus
from dbusmock import MOCK_IFACE
from dbusmock.templates.systemd import *  # noqa: F401,F403 (the stock template's methods and names)
from dbusmock.templates.systemd import PATH_PREFIX, UNIT_IFACE


def path_encode(name):
    return ''.join(c if c.isascii() and c.isalnum() else ''.join('_%02x' % b for b in c.encode())
                   for c in name)


@dbus.service.method(MOCK_IFACE, in_signature='s')
def AddMockUnit(self, name):
    unit_path = f'{PATH_PREFIX}/unit/{path_encode(name)}'
    self.units[str(name)] = unit_path
    self.AddObject(unit_path, UNIT_IFACE,
                   {'Id': name, 'Names': [name], 'LoadState': 'loaded', 'ActiveState': 'inactive'},
                   [])
