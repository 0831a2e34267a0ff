#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Compare what two workers said to a Buildbot master, from its twistd.log.

Buildbot's msgpack protocol logs every message ("MASTER -> WORKER message:",
"WORKER -> MASTER message:").  This reduces each worker's conversation to
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
    convo, results = conversations(path, [real, fake])
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
