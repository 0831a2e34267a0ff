'''A python-dbusmock template of systemd's manager whose units run real processes

dbusmock's own systemd template turns a unit "active" without running
anything, and cannot publish a unit whose name has an '@' (its object
paths only replace '.' and '-').  This one is closer to systemd for what
the daemon's Latent=systemd driver uses:

- unit names are checked as systemd checks them (unit_name_is_valid), and
  objects are published at systemd's paths (bus_label_escape: every byte
  but [A-Za-z0-9] becomes _XX), so template instances such as
  buildbot-worker@name.service exist;
- AddMockUnit(name, argv) adds a unit, or a template (foo@.service) whose
  instances are made on first use; in argv, %i is the instance as written
  and %I the instance unescaped (systemd's unit_name_unescape), as in a
  unit file's ExecStart=;
- StartUnit runs argv (Type=simple) in a session of its own, StopUnit sends
  it SIGTERM (SIGKILL after 5 s) and its job ends once the process has
  exited; a process that exits by itself leaves its unit inactive or
  failed, as systemd does;
- SetUnitProperties accepts only what systemd changes on a loaded unit at
  run time (Description, Markers), with runtime=true meaning a drop-in
  under /run that the unit keeps until reboot (here: until the mock ends);
- ListUnits and ListUnitsByPatterns list the units loaded, with their
  descriptions.

The engine's own view, for tests to count instances by: Spawned() lists
every process any StartUnit ran (unit, pid), Running() the processes alive.

SPDX-License-Identifier: LGPL-2.1-or-later
'''

import fnmatch
import os
import signal

import dbus
import dbus.service
from gi.repository import GLib

from dbusmock import MOCK_IFACE, mockobject

BUS_NAME = 'org.freedesktop.systemd1'
MAIN_OBJ = '/org/freedesktop/systemd1'
MAIN_IFACE = 'org.freedesktop.systemd1.Manager'
UNIT_IFACE = 'org.freedesktop.systemd1.Unit'
SERVICE_IFACE = 'org.freedesktop.systemd1.Service'
SYSTEM_BUS = True

UNIT_NAME_MAX = 255
VALID_CHARS = set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\')
UNIT_TYPES = ('service', 'socket', 'target', 'device', 'mount', 'automount', 'swap', 'timer',
              'path', 'slice', 'scope')
# systemd's TimeoutStopSec= (90 s by default), shorter: a buildbot-worker
# now and then takes long to act on SIGTERM (seen once in five daemon
# shutdowns on a busy machine), and the harness waits 15 s for the daemon,
# which waits for the stop job.
KILL_GRACE_MS = 5000
# What systemd lets SetUnitProperties change on a unit that is not transient.
LIVE_PROPERTIES = ('Description', 'Markers')


def unit_name_error(name):
    '''Why systemd would refuse @name (unit_name_is_valid), or None.'''
    if len(name) > UNIT_NAME_MAX:
        return 'longer than %d characters' % UNIT_NAME_MAX
    dot = name.rfind('.')
    if dot <= 0 or name[dot + 1:] not in UNIT_TYPES:
        return 'no known unit type suffix'
    prefix = name[:dot]
    if prefix.count('@') > 1 or prefix.startswith('@'):
        return 'misplaced @'
    bad = [c for c in prefix if c not in VALID_CHARS and c != '@']
    if bad:
        return 'character %r not allowed' % bad[0]
    return None


def bus_label_escape(name):
    out = ''
    for b in name.encode():
        c = chr(b)
        out += c if (c.isascii() and c.isalnum()) else '_%02x' % b
    return out or '_'


def unit_name_unescape(text):
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == '-':
            out += b'/'
        elif c == '\\' and text[i + 1:i + 2] == 'x' and len(text) >= i + 4:
            out.append(int(text[i + 2:i + 4], 16))
            i += 3
        else:
            out += c.encode()
        i += 1
    return out.decode('utf-8', 'replace')


def split_instance(name):
    '''("foo@bar.service") -> ("foo@.service", "bar"); (name, None) otherwise.'''
    dot = name.rfind('.')
    prefix, suffix = name[:dot], name[dot:]
    if '@' not in prefix:
        return name, None
    template, instance = prefix.split('@', 1)
    return template + '@' + suffix, instance


def load(mock, _parameters):
    mock.next_job_id = 1
    mock.units = {}         # name -> dict(path, argv, pid, description)
    mock.templates = {}     # "foo@.service" -> argv
    mock.spawned = []       # (unit, pid) of every process started
    mock.held = None        # jobs whose end waits for HoldJobs(false), or None
    mock.AddProperties(MAIN_IFACE, {'Version': 'v252'})


def no_such_unit(name):
    return dbus.exceptions.DBusException('Unit %s not found.' % name,
                                         name='org.freedesktop.systemd1.NoSuchUnit')


def load_unit(mock, name):
    '''The unit @name, loading a template's instance on first use.'''
    name = str(name)
    why = unit_name_error(name)
    if why:
        raise dbus.exceptions.DBusException('Unit name %s is not valid (%s).' % (name, why),
                                            name='org.freedesktop.DBus.Error.InvalidArgs')
    if name in mock.units:
        return mock.units[name]
    template, instance = split_instance(name)
    if instance is None or template not in mock.templates:
        raise no_such_unit(name)
    if instance == '':
        raise dbus.exceptions.DBusException('Unit %s is a template and cannot be started.' % name,
                                            name='org.freedesktop.DBus.Error.InvalidArgs')
    argv = [a.replace('%i', instance).replace('%I', unit_name_unescape(instance))
            for a in mock.templates[template]]
    return add_unit(mock, name, argv)


def add_unit(mock, name, argv):
    path = MAIN_OBJ + '/unit/' + bus_label_escape(name)
    unit = {'name': name, 'path': path, 'argv': argv, 'pid': 0, 'stopping': None}
    mock.units[name] = unit
    mock.AddObject(path, UNIT_IFACE, {
        'Id': name, 'Names': [name], 'Description': name, 'LoadState': 'loaded',
        'ActiveState': 'inactive', 'SubState': 'dead', 'Markers': dbus.Array([], signature='s'),
    }, [])
    mockobject.objects[path].AddProperties(SERVICE_IFACE, {'MainPID': dbus.UInt32(0)})
    return unit


def set_state(mock, unit, active, sub, pid=None):
    obj = mockobject.objects[unit['path']]
    obj.UpdateProperties(UNIT_IFACE, {'ActiveState': active, 'SubState': sub})
    if pid is not None:
        unit['pid'] = pid
        obj.UpdateProperties(SERVICE_IFACE, {'MainPID': dbus.UInt32(pid)})


def prop(mock, unit, name):
    return mockobject.objects[unit['path']].Get(UNIT_IFACE, name)


def new_job(mock, name):
    job_id = mock.next_job_id
    mock.next_job_id += 1
    path = '%s/job/%d' % (MAIN_OBJ, job_id)
    return job_id, path


def end_job(mock, job_id, job_path, name, result):
    if mock.held is not None:
        mock.held.append((job_id, job_path, name, result))
        return False
    mock.EmitSignal(MAIN_IFACE, 'JobRemoved', 'uoss', [job_id, job_path, name, result])
    return False


def announce_job(mock, job_id, job_path, name):
    mock.EmitSignal(MAIN_IFACE, 'JobNew', 'uos', [job_id, job_path, name])
    return False


def process_exited(mock, unit, pid, status):
    if unit['pid'] != pid:
        return
    stopping = unit['stopping']
    unit['stopping'] = None
    if stopping:
        GLib.source_remove(stopping['kill_id'])
    failed = not stopping and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    set_state(mock, unit, 'failed' if failed else 'inactive', 'failed' if failed else 'dead', 0)
    if stopping:
        for job_id, job_path in stopping['jobs']:
            end_job(mock, job_id, job_path, unit['name'], 'done')


def spawn(mock, unit):
    pid, _, _, _ = GLib.spawn_async([str(a) for a in unit['argv']], working_directory='/',
                                    flags=GLib.SpawnFlags.DO_NOT_REAP_CHILD | GLib.SpawnFlags.STDIN_FROM_DEV_NULL,
                                    child_setup=os.setsid)
    pid = int(pid)
    mock.spawned.append((unit['name'], pid))
    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, lambda p, status: process_exited(mock, unit, p, status))
    return pid


@dbus.service.method(MAIN_IFACE, in_signature='', out_signature='')
def Subscribe(self):
    pass


@dbus.service.method(MAIN_IFACE, in_signature='', out_signature='')
def Unsubscribe(self):
    pass


@dbus.service.method(MAIN_IFACE, in_signature='ss', out_signature='o')
def StartUnit(self, name, _mode):
    unit = load_unit(self, name)
    job_id, job_path = new_job(self, name)
    GLib.idle_add(announce_job, self, job_id, job_path, str(name))
    if unit['stopping'] is None and prop(self, unit, 'ActiveState') != 'active':
        if unit['argv'] is None:
            raise dbus.exceptions.DBusException('Unit %s has no ExecStart.' % name,
                                                name='org.freedesktop.DBus.Error.InvalidArgs')
        set_state(self, unit, 'active', 'running', spawn(self, unit))
    # (A start while a stop runs: "replace" would cancel the stop; the
    # daemon never does that, so neither does the mock.)
    GLib.idle_add(end_job, self, job_id, job_path, str(name), 'done')
    return job_path


def kill_now(mock, unit):
    if unit['pid']:
        try:
            os.killpg(unit['pid'], signal.SIGKILL)
        except ProcessLookupError:
            pass
    return False


@dbus.service.method(MAIN_IFACE, in_signature='ss', out_signature='o')
def StopUnit(self, name, _mode):
    unit = load_unit(self, name)
    job_id, job_path = new_job(self, name)
    GLib.idle_add(announce_job, self, job_id, job_path, str(name))
    if unit['pid'] == 0:
        GLib.idle_add(end_job, self, job_id, job_path, str(name), 'done')
        return job_path
    if unit['stopping'] is None:
        set_state(self, unit, 'deactivating', 'stop-sigterm')
        unit['stopping'] = {'jobs': [], 'kill_id': GLib.timeout_add(KILL_GRACE_MS, kill_now, self, unit)}
        try:
            os.killpg(unit['pid'], signal.SIGTERM)
        except ProcessLookupError:
            pass
    unit['stopping']['jobs'].append((job_id, job_path))
    return job_path


@dbus.service.method(MAIN_IFACE, in_signature='s', out_signature='o')
def GetUnit(self, name):
    if str(name) not in self.units:
        raise dbus.exceptions.DBusException('Unit %s not loaded.' % name,
                                            name='org.freedesktop.systemd1.NoSuchUnit')
    return self.units[str(name)]['path']


@dbus.service.method(MAIN_IFACE, in_signature='s', out_signature='o')
def LoadUnit(self, name):
    return load_unit(self, name)['path']


@dbus.service.method(MAIN_IFACE, in_signature='sba(sv)', out_signature='')
def SetUnitProperties(self, name, runtime, properties):
    unit = load_unit(self, name)
    changes = {}
    for key, value in properties:
        if key not in LIVE_PROPERTIES:
            raise dbus.exceptions.DBusException('Cannot set property %s, or unknown property.' % key,
                                                name='org.freedesktop.DBus.Error.PropertyReadOnly')
        changes[str(key)] = value
    unit.setdefault('dropins', []).append((bool(runtime), changes))
    mockobject.objects[unit['path']].UpdateProperties(UNIT_IFACE, changes)


def unit_row(mock, unit):
    return (unit['name'], prop(mock, unit, 'Description'), 'loaded', prop(mock, unit, 'ActiveState'),
            prop(mock, unit, 'SubState'), '', dbus.ObjectPath(unit['path']), dbus.UInt32(0), '',
            dbus.ObjectPath('/'))


@dbus.service.method(MAIN_IFACE, in_signature='', out_signature='a(ssssssouso)')
def ListUnits(self):
    return dbus.Array([unit_row(self, u) for u in self.units.values()], signature='(ssssssouso)')


@dbus.service.method(MAIN_IFACE, in_signature='asas', out_signature='a(ssssssouso)')
def ListUnitsByPatterns(self, states, patterns):
    rows = []
    for u in self.units.values():
        if states and prop(self, u, 'ActiveState') not in states and prop(self, u, 'SubState') not in states:
            continue
        if patterns and not any(fnmatch.fnmatchcase(u['name'], p) for p in patterns):
            continue
        rows.append(unit_row(self, u))
    return dbus.Array(rows, signature='(ssssssouso)')


@dbus.service.method(MOCK_IFACE, in_signature='sas', out_signature='')
def AddMockUnit(self, name, argv):
    '''A unit (or a template, "foo@.service") running @argv when started.'''
    name = str(name)
    argv = [str(a) for a in argv] or None
    template, instance = split_instance(name)
    if instance == '':
        self.templates[name] = argv
    else:
        add_unit(self, name, argv)


@dbus.service.method(MOCK_IFACE, in_signature='b', out_signature='')
def HoldJobs(self, hold):
    '''While held, jobs do their work but end (JobRemoved) only once released.'''
    held, self.held = self.held, ([] if hold else None)
    for job in (held or []):
        end_job(self, *job)


@dbus.service.method(MOCK_IFACE, in_signature='u', out_signature='')
def EmitForeignJobs(self, count):
    '''JobNew and JobRemoved of @count jobs of other units, as a busy machine
    sends to every subscriber.'''
    for _ in range(count):
        job_id, job_path = new_job(self, 'other.service')
        self.EmitSignal(MAIN_IFACE, 'JobRemoved', 'uoss', [job_id, job_path, 'other.service', 'done'])


@dbus.service.method(MOCK_IFACE, in_signature='', out_signature='a(si)')
def Spawned(self):
    return dbus.Array([(n, p) for n, p in self.spawned], signature='(si)')


@dbus.service.method(MOCK_IFACE, in_signature='', out_signature='a(si)')
def Running(self):
    return dbus.Array([(u['name'], u['pid']) for u in self.units.values() if u['pid']], signature='(si)')


@dbus.service.method(MOCK_IFACE, in_signature='s', out_signature='a(ba{sv})')
def DropIns(self, name):
    unit = self.units.get(str(name))
    return dbus.Array([(r, c) for r, c in (unit or {}).get('dropins', [])], signature='(ba{sv})')
