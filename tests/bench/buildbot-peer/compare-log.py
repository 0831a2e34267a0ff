#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Compare what two workers said to a Buildbot master, from its twistd.log.

Buildbot's msgpack protocol logs every message ("MASTER -> WORKER message:",
"WORKER -> MASTER message:"); for Perspective Broker, master.cfg logs every
banana expression when the master was created with `--protocol pb --pb-log`
("PB broker ID MASTER -> WORKER: ..."), and the log is read that way.  This reduces each worker's conversation to
message shapes (op, command, update keys, result kind; no values or timing),
prints them side by side, and the build and step results of both.

usage: compare-log.py [--ignore-stdout] TWISTD_LOG REAL_WORKER_NAME LOADGEN_WORKER_NAME
--ignore-stdout drops stdout from update shapes (bf-loadgen's fake commands
print --output-lines whatever the command is).  Exit status 1 when the shapes
differ.
"""

import ast
import difflib
import re
import sys

LINE = re.compile(r'^\S+ \S+ \[(?P<ctx>[^\]]*)\] (?P<text>.*)$')
MSG = re.compile(r'(?P<dir>MASTER -> WORKER|WORKER -> MASTER) message:  (?P<msg>.*)$')


def result_shape(result):
    if result is None:
        return 'nil'
    if isinstance(result, dict):
        return 'map'
    if isinstance(result, (bytes, bytearray)):
        return 'bin'
    return type(result).__name__


IGNORE_STDOUT = False


def update_keys(args):
    keys = [k for k, _ in args if not (IGNORE_STDOUT and k == 'stdout')]
    # joining adjacent entries of one stream is what the worker's buffer does
    return [k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1] or k in ('rc', 'elapsed')]


def shape(direction, msg, commands):
    op = msg.get('op')
    if direction == 'MASTER -> WORKER':
        if op == 'start_command':
            commands[msg.get('command_id')] = msg.get('command_name')
            return 'M> start_command %s' % msg.get('command_name')
        if op == 'response':
            return 'M> response %s%s' % (result_shape(msg.get('result')),
                                         ' exception' if 'is_exception' in msg else '')
        return 'M> %s' % op
    name = commands.get(msg.get('command_id'), '')
    if op == 'response':
        res = msg.get('result')
        kind = result_shape(res)
        if isinstance(res, dict):
            kind = 'map{%s}' % ','.join(sorted(k for k in res if not k.startswith('os_')))
        return 'W> response %s%s' % (kind, ' exception' if 'is_exception' in msg else '')
    if op == 'update':
        return 'W> update %s [%s]' % (name, ' '.join(update_keys(msg.get('args', []))))
    if op == 'complete':
        return 'W> complete %s %s' % (name, 'nil' if msg.get('args') is None else 'failure')
    return 'W> %s %s' % (op, name)


# --- Perspective Broker ---------------------------------------------------------
# With `create --protocol pb --pb-log`, master.cfg logs every banana expression
# of every broker: "PB broker ID MASTER -> WORKER: EXPR" (see master.cfg).

PB_MSG = re.compile(r'PB broker (?P<broker>[0-9a-f]+) (?P<dir>MASTER -> WORKER|WORKER -> MASTER): (?P<msg>.*)$')


def jelly_shape(v, depth=0):
    """A jelly s-expression reduced to its types (and dictionary keys)."""
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], bytes):
        head = v[0].decode('ascii', 'replace')
        if head == 'dictionary':
            if depth >= 1:
                return 'dictionary'
            keys = []
            for k, val in v[1:]:
                key = k[1].decode('utf-8', 'replace') if isinstance(k, list) else repr(k)
                if key.startswith('os_'):
                    continue
                keys.append('%s:%s' % (key, jelly_shape(val, depth + 1)))
            return 'dictionary{%s}' % ','.join(sorted(keys))
        if head in ('list', 'tuple'):
            inner = [jelly_shape(x, depth + 1) for x in v[1:]]
            # n alike items are one shape
            return '%s[%s]' % (head, ','.join(sorted(set(inner))))
        if head in ('unicode', 'boolean', 'None', 'remote', 'local'):
            return head
        return head
    if isinstance(v, bytes):
        return 'bytes'
    return type(v).__name__


def pb_shape(direction, msg, calls):
    """calls: (direction, request id) -> method, to name what an answer answers."""
    d = 'M>' if direction == 'MASTER -> WORKER' else 'W>'
    kind = msg[0].decode('ascii', 'replace') if isinstance(msg[0], bytes) else repr(msg[0])
    if kind == 'message' and len(msg) == 7:
        method = msg[3].decode('utf-8', 'replace')
        calls[(direction, msg[1])] = method
        args = msg[5][1:] if isinstance(msg[5], list) else []
        if method == 'update' and args:
            keys = []
            for upd in args[0][1:]:
                for k, _ in upd[1][1:]:
                    key = k[1].decode('utf-8', 'replace')
                    if not (IGNORE_STDOUT and key == 'stdout'):
                        keys.append(key)
            return '%s update [%s]' % (d, ' '.join(keys)) if keys else None
        if method == 'complete':
            return '%s complete %s' % (d, 'nil' if args and args[0] == [b'None'] else 'failure')
        if method == 'startCommand' and len(args) >= 3:
            return '%s startCommand %s' % (d, args[2][1].decode('utf-8', 'replace'))
        return '%s message %s(%s)' % (d, method, ','.join(jelly_shape(a, 1) for a in args))
    if kind in ('answer', 'error') and len(msg) == 3:
        other = 'WORKER -> MASTER' if direction == 'MASTER -> WORKER' else 'MASTER -> WORKER'
        method = calls.get((other, msg[1]), '?')
        if kind == 'error':
            return '%s error to %s' % (d, method)
        if method == 'update':
            return None     # one per update, already counted
        return '%s answer to %s: %s' % (d, method, jelly_shape(msg[2]))
    if kind == 'version':
        return '%s version %s' % (d, msg[1])
    if kind == 'decref':
        return '%s decref' % d
    if kind == 'pb':
        return '%s dialect offer' % d
    return '%s %s' % (d, kind)


def pb_conversations(path, names):
    owner = {}       # broker -> worker name
    pending = {}     # broker -> lines before the login
    calls = {}       # broker -> (direction, request id) -> method
    convo = {n: [] for n in names}
    results = {n: [] for n in names}
    with open(path, encoding='utf-8', errors='replace') as f:
        for raw in f:
            for n in names:
                if re.search(r'<Build b-%s number:\d+ results:\w+>: build finished' % re.escape(n), raw):
                    results[n].append(raw.split('] ', 1)[-1].strip())
            m = PB_MSG.search(raw.rstrip('\n'))
            if not m:
                continue
            try:
                msg = ast.literal_eval(m.group('msg'))
            except (ValueError, SyntaxError):
                continue
            if isinstance(msg, (bytes, str)):
                continue
            b = m.group('broker')
            msg = list(msg)
            if b not in owner and msg and msg[0] == b'message' and len(msg) == 7 and msg[3] == b'login':
                owner[b] = msg[5][1].decode('utf-8', 'replace')
            if b not in owner:
                pending.setdefault(b, []).append((m.group('dir'), msg))
                continue
            name = owner[b]
            if name not in convo:
                continue
            for d, pm in pending.pop(b, []) + [(m.group('dir'), msg)]:
                sh = pb_shape(d, pm, calls.setdefault(b, {}))
                if not sh:
                    continue
                # the builder is named after the worker
                sh = sh.replace(name, 'NAME')
                same_dir = [x for x in convo[name] if x[:2] == sh[:2]]
                if sh.endswith(' decref') and any(x.endswith(' decref') for x in same_dir):
                    # After the challenger (dropped at once after respond),
                    # a worker's decrefs come when CPython's garbage
                    # collector runs: timing, not protocol.
                    continue
                if (IGNORE_STDOUT and same_dir and sh == same_dir[-1] and
                        re.match(r'W> update \[(header|stderr)\]$', sh)):
                    # without stdout between them, adjacent log text of one
                    # key is what the worker's buffer joins
                    continue
                convo[name].append(sh)
    return convo, results


def conversations(path, names):
    by_ctx = {}      # log context (protocol instance) -> worker name
    pending = {}     # context -> messages seen before the name was known
    convo = {n: [] for n in names}
    commands = {n: {} for n in names}
    results = {n: [] for n in names}
    with open(path, encoding='utf-8', errors='replace') as f:
        for raw in f:
            m = LINE.match(raw.rstrip('\n'))
            if not m:
                continue
            ctx, text = m.group('ctx'), m.group('text')
            got = re.search(r"Got workerinfo from '([^']+)'", text)
            if got and ctx != '-':
                by_ctx[ctx] = got.group(1)
                if got.group(1) in convo:
                    for d, msg in pending.pop(ctx, []):
                        convo[got.group(1)].append(shape(d, msg, commands[got.group(1)]))
                continue
            for n in names:
                if re.search(r'<Build b-%s number:\d+ results:\w+>: build finished' % re.escape(n), text):
                    results[n].append(text.strip())
            mm = MSG.search(text)
            if not mm:
                continue
            try:
                msg = ast.literal_eval(mm.group('msg'))
            except (ValueError, SyntaxError):
                continue
            owner = by_ctx.get(ctx)
            if owner is None and ctx == '-':
                # requests sent from timers carry no connection context
                builder = msg.get('builder_name', '')
                owner = builder[2:] if builder.startswith('b-') else None
                if owner is None:
                    continue
            if owner is None:
                pending.setdefault(ctx, []).append((mm.group('dir'), msg))
                continue
            if owner in convo:
                convo[owner].append(shape(mm.group('dir'), msg, commands[owner]))
    return convo, results


def main():
    global IGNORE_STDOUT
    args = sys.argv[1:]
    if args and args[0] == '--ignore-stdout':
        IGNORE_STDOUT = True
        args = args[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    path, real, fake = args
    with open(path, encoding='utf-8', errors='replace') as f:
        pb = any(PB_MSG.search(line) for line in f)
    convo, results = (pb_conversations if pb else conversations)(path, [real, fake])
    # the worker's own request/response interleaving depends on timing; compare
    # each direction's sequence separately
    status = 0
    for prefix, title in (('W>', 'worker -> master'), ('M>', 'master -> worker')):
        a = [s for s in convo[real] if s.startswith(prefix)]
        b = [s for s in convo[fake] if s.startswith(prefix)]
        diff = list(difflib.unified_diff(a, b, real, fake, lineterm='', n=1))
        print('== %s: %d messages from %s, %d from %s: %s' % (
            title, len(a), real, len(b), fake, 'same shapes' if not diff else 'DIFFERENT'))
        for line in diff:
            print('   ' + line)
        if diff:
            status = 1
    for n in (real, fake):
        print('== builds of %s:' % n)
        for r in results[n]:
            print('   ' + r)
    return status


if __name__ == '__main__':
    sys.exit(main())
