#!/usr/bin/python3
# jelly-twisted.py: compares our banana + jelly codec with Twisted's own.
#
#   jelly-twisted.py JELLY-PEER [COUNT]
#
# Generates values of the kinds buildbot-worker exchanges (None, booleans,
# 64-bit ints, floats, str, bytes, lists, tuples, dicts, shared containers,
# Referenceables, RemoteReferences, CopyableFailures), jellies and encodes
# each with Twisted (pb dialect, so the vocabulary is used) and feeds it to
# JELLY-PEER (tests/unit/jelly-peer.c), which decodes it with our codec,
# prints it canonically and encodes it again. Checks, for every value:
#   Twisted -> us: our canonical form equals the Python value's;
#   us -> Twisted: Twisted decodes and unjellies our bytes to the same value,
#                  and for values without sharing our bytes equal Twisted's.
# Then types outside the subset, jellied by Twisted, must be refused by name.
# SPDX-License-Identifier: LGPL-2.1-or-later

import datetime
import decimal
import io
import os
import random
import struct
import subprocess
import sys

from twisted.spread import banana, jelly, pb
from twisted.python import failure


class Invoker:
    """Enough of a pb.Broker for jelly and unjelly of object references."""
    serializingPerspective = None
    unserializingPerspective = None

    def __init__(self):
        self.luids = {}

    def registerReference(self, obj):
        return self.luids.setdefault(id(obj), (len(self.luids) + 1, obj))[0]

    def localObjectForID(self, luid):
        return Local(luid)


class Local:
    def __init__(self, luid):
        self.luid = luid


class Referenceable(pb.Referenceable):
    pass


def esc(b):
    return ''.join(chr(c) if 0x20 <= c < 0x7f and c not in (0x22, 0x5c) else '\\x%02x' % c
                   for c in b)


def canon(v, invoker):
    """The canonical form bf_jelly_value_print() writes."""
    if v is None:
        return 'None'
    if v is True:
        return 'True'
    if v is False:
        return 'False'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return 'float:%016x' % struct.unpack('>Q', struct.pack('>d', v))[0]
    if isinstance(v, str):
        return 'u"%s"' % esc(v.encode('utf-8'))
    if isinstance(v, bytes):
        return 'b"%s"' % esc(v)
    if isinstance(v, list):
        return '[%s]' % ', '.join(canon(x, invoker) for x in v)
    if isinstance(v, tuple):
        return '(%s)' % ', '.join(canon(x, invoker) for x in v)
    if isinstance(v, dict):
        return '{%s}' % ', '.join('%s: %s' % (canon(k, invoker), canon(x, invoker))
                                  for k, x in v.items())
    if isinstance(v, pb.Referenceable):           # ours, sent: remote(luid)
        return 'remote(%d)' % invoker.registerReference(v)
    if isinstance(v, pb.RemoteReference):         # received: remote, or theirs sent back: local
        return ('local(%d)' if v.broker is invoker and v.perspective == 'theirs'
                else 'remote(%d)') % v.luid
    if isinstance(v, Local):
        return 'local(%d)' % v.luid
    if isinstance(v, pb.CopiedFailure):
        return 'failure(%s)' % canon(v.__dict__, invoker)
    if isinstance(v, pb.CopyableFailure):
        return 'failure(%s)' % canon(v.getStateToCopy(), invoker)
    raise TypeError(repr(v))


VOCAB_WORDS = ['None', 'list', 'tuple', 'dictionary', 'remote', 'local', 'message',
               'version', 'unicode', 'reference', 'dereference', 'class']


class Generator:
    def __init__(self, seed, invoker):
        self.r = random.Random(seed)
        self.invoker = invoker
        self.pool = []      # finished containers, shared again sometimes

    def integer(self):
        r = self.r
        edge = [0, 1, -1, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, -2**63,
                127, 128, 16383, 16384]
        if r.random() < 0.3:
            return r.choice(edge)
        bits = r.randint(1, 63)
        return r.randint(-2**bits, 2**bits - 1)

    def text(self):
        r = self.r
        if r.random() < 0.2:
            return r.choice(VOCAB_WORDS)
        alphabet = ['a', 'Z', ' ', '\n', '\0', '"', '\\', '\u00e9', '\u20ac', '\U0001f600', '\u0800']
        return ''.join(r.choice(alphabet) for _ in range(r.randint(0, 12)))

    def raw(self):
        r = self.r
        if r.random() < 0.2:
            return r.choice(VOCAB_WORDS).encode()
        return bytes(r.randint(0, 255) for _ in range(r.randint(0, 12)))

    def scalar(self):
        r = self.r
        kind = r.randrange(9)
        if kind == 0:
            return None
        if kind == 1:
            return r.random() < 0.5
        if kind == 2:
            return self.integer()
        if kind == 3:
            if r.random() < 0.5:
                return struct.unpack('>d', struct.pack('>Q', r.getrandbits(64)))[0]
            return r.choice([0.0, -0.0, 1.5, 1e300, float('inf'), -float('inf'), 0.1])
        if kind == 4:
            return self.text()
        if kind == 5:
            return self.raw()
        if kind == 6:
            ref = Referenceable()
            return ref
        if kind == 7:
            return pb.RemoteReference('theirs', self.invoker, r.randint(1, 2**40), 0)
        try:
            raise ValueError('step failed: %s' % self.text())
        except ValueError:
            f = pb.CopyableFailure()
            f.unsafeTracebacks = r.random() < 0.5
            return f

    def value(self, depth=0):
        r = self.r
        if depth > 4 or r.random() < 0.35:
            return self.scalar()
        if self.pool and r.random() < 0.15:
            return r.choice(self.pool)
        kind = r.randrange(3)
        n = r.randint(0, 6)
        if kind == 0:
            v = [self.value(depth + 1) for _ in range(n)]
        elif kind == 1:
            v = tuple(self.value(depth + 1) for _ in range(n))
        else:
            v = {}
            for _ in range(n):
                key = r.choice([self.text, self.raw, self.integer])()
                v[key] = self.value(depth + 1)
        self.pool.append(v)
        return v


def twisted_encode(sexp):
    """Banana-encode as a PB broker does after choosing the pb dialect."""
    b = banana.Banana(isClient=0)
    b.connectionMade = lambda: None
    b.setPrefixLimit(banana._PREFIX_LIMIT)
    b.currentDialect = b'pb'
    out = io.BytesIO()
    b._encode(sexp, out.write)
    return out.getvalue()


def twisted_decode(data):
    b = banana.Banana(isClient=0)
    b.setPrefixLimit(banana._PREFIX_LIMIT)
    b.currentDialect = b'pb'
    got = []
    b.expressionReceived = got.append
    b.dataReceived(data)
    assert len(got) == 1, got
    return got[0]


def has_sharing(sexp):
    if isinstance(sexp, list):
        if sexp and sexp[0] in (b'reference', b'dereference'):
            return True
        return any(has_sharing(x) for x in sexp)
    return False


def main():
    peer = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    invoker = Invoker()
    gen = Generator(13, invoker)

    values, inputs = [], []
    for i in range(count):
        gen.pool = []
        v = gen.value()
        sexp = jelly.jelly(v, invoker=invoker)
        values.append((v, sexp))
        inputs.append(twisted_encode(sexp).hex())

    # types outside the subset, as Twisted jellies them
    class Plain:
        def __init__(self):
            self.x = 1
    refused = [
        ('class', Plain), ('module', os), ('function', main),
        ('set', {1, 2}), ('datetime', datetime.datetime(2026, 12, 2, 18, 0)),
        ('decimal', decimal.Decimal('1.5')), ('Plain', Plain()),
        ('method', Invoker().registerReference),
    ]
    for name, v in refused:
        sexp = jelly.jelly(v)
        # Twisted jellies module and function names as str, which banana
        # cannot send: write those the way an old Twisted did, as bytes
        sexp = [x.encode() if isinstance(x, str) else x for x in sexp]
        inputs.append(twisted_encode(sexp).hex())
    # and the old-style atoms no jelly of Python 3 writes
    for name, sexp in [('instance', [b'instance', b'os.Foo', [b'dictionary']]),
                       ('persistent', [b'persistent', b'x'])]:
        refused.append((name, None))
        inputs.append(twisted_encode(sexp).hex())

    proc = subprocess.run([peer], input='\n'.join(inputs) + '\n', capture_output=True,
                          text=True, check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(inputs), (len(lines), len(inputs), proc.stderr)

    failures = 0
    same_bytes = shared = 0
    for i, ((v, sexp), line) in enumerate(zip(values, lines)):
        printed, _, ours = line.partition('\t')
        expected = canon(v, invoker)
        if printed != expected:
            failures += 1
            print('value %d: Twisted -> us\n  expected %s\n  got      %s\n  sexp %r'
                  % (i, expected, printed, sexp))
            continue
        ours = bytes.fromhex(ours)
        back = jelly.unjelly(twisted_decode(ours), invoker=invoker)
        back_printed = canon(back, invoker)
        if back_printed != expected:
            failures += 1
            print('value %d: us -> Twisted\n  expected %s\n  got      %s' % (i, expected, back_printed))
            continue
        if has_sharing(sexp):
            shared += 1
        elif ours != bytes.fromhex(inputs[i]):
            failures += 1
            print('value %d: our bytes differ from Twisted\'s\n  %s\n  %s'
                  % (i, ours.hex(), inputs[i]))
        else:
            same_bytes += 1

    for (name, v), line in zip(refused, lines[len(values):]):
        if not line.startswith('ERROR\tjelly: refused'):
            failures += 1
            print('%s: expected a refusal, got %s' % (name, line))
        else:
            print('refused %s: %s' % (name, line.split('\t', 1)[1]))

    print('%d values: %d identical bytes, %d with shared containers; %d refusals; %d failures'
          % (len(values), same_bytes, shared, len(refused), failures))
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
