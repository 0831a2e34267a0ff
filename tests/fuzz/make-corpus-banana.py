#!/usr/bin/python3
# make-corpus-banana.py: writes the seeds of tests/fuzz/corpus-banana/
#
# Each seed is: a flags byte (bit 0: start in the pb dialect), a chunk-size
# byte (0: whole), then what a PB worker sends, encoded by Twisted's own
# banana and jelly (Debian's python3-twisted): a worker's session as
# buildbot-worker 3.7 speaks it, and hostile variations.
# SPDX-License-Identifier: LGPL-2.1-or-later

import io
import os
import sys

from twisted.spread import banana, jelly, pb


class Invoker:
    serializingPerspective = None

    def __init__(self):
        self.n = 0

    def registerReference(self, obj):
        self.n += 1
        return self.n


INVOKER = Invoker()


def enc(sexp, dialect=b'pb'):
    b = banana.Banana(isClient=1)
    b.setPrefixLimit(banana._PREFIX_LIMIT)
    b.currentDialect = dialect
    out = io.BytesIO()
    b._encode(sexp, out.write)
    return out.getvalue()


def j(value):
    return jelly.jelly(value, invoker=INVOKER)


def message(req, obj, name, *args, **kw):
    return enc([b'message', req, obj, name.encode(), 1, j(args), j(kw)])


def failure():
    try:
        raise RuntimeError('command failed')
    except RuntimeError:
        f = pb.CopyableFailure()
        f.unsafeTracebacks = True
        # what buildbot-worker's traceback looks like, without this machine's paths
        pb.CopyableFailure.getTraceback = lambda self, *a, **k: ('Traceback (most recent call last):\n'
                                  '  File "/usr/lib/python3/dist-packages/buildbot_worker/'
                                  'runprocess.py", line 540, in _spawnProcess\n'
                                  'builtins.RuntimeError: command failed\n')
        return f


def session():
    """What buildbot-worker sends from connect to a finished command."""
    out = enc(b'pb', dialect=None)                        # dialect choice
    out += enc([b'version', 6])
    out += message(1, 0, 'login', b'worker1')             # root.login(username)
    out += message(2, 1, 'respond', b'\x8f' * 16, pb.Referenceable())
    out += enc([b'answer', 1, j({'admin': 'Jo <jo@example.com>', 'host': 'build-01\n',
                                 'environ': {'PATH': '/usr/bin:/bin', 'HOME': '/home/bb'},
                                 'system': 'posix', 'basedir': '/var/lib/worker',
                                 'numcpus': 8, 'version': '3.7.0',
                                 'worker_commands': {'shell': '3.2', 'mkdir': '3.0'},
                                 'delete_leftover_dirs': False})])
    out += enc([b'answer', 2, j({'runtests': pb.Referenceable()})])   # setBuilderList
    out += enc([b'answer', 3, j(None)])                                   # print
    out += message(3, 5, 'update', [({'header': 'headers\n', 'stdout': 'make: ok\n'}, 0),
                                    ({'elapsed': 1.25, 'rc': 0}, 1)])
    out += message(4, 5, 'complete', None)
    out += message(5, 2, 'keepalive')
    out += enc([b'decref', 4])
    return out


def write(path, flags, chunk, data):
    with open(path, 'wb') as f:
        f.write(bytes([flags, chunk]) + data)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus-banana')
    os.makedirs(d, exist_ok=True)
    s = session()
    write(os.path.join(d, 'session'), 0, 0, s)
    write(os.path.join(d, 'session-split-7'), 0, 7, s)
    write(os.path.join(d, 'session-bytewise'), 0, 1, s)
    write(os.path.join(d, 'complete-failure'), 1, 0, message(6, 5, 'complete', failure()))
    write(os.path.join(d, 'error-failure'), 1, 3, enc([b'error', 7, j(failure())]))
    shared = [1, 'two']
    write(os.path.join(d, 'references'), 1, 0,
          enc(j([shared, (shared, {'k': shared})])) + enc(j(pb.RemoteReference(None, INVOKER, 9, 0))))
    write(os.path.join(d, 'scalars'), 1, 0,
          b''.join(enc(j(v)) for v in [0, -1, 2**31, -2**31 - 1, 2**63 - 1, -2**63, 1.5,
                                       float('nan'), b'', b'\xff', '\0\u20ac', True, None, (), {}]))
    write(os.path.join(d, 'version-mismatch'), 0, 0, enc(b'pb', dialect=None) + enc([b'version', 5]))
    # hostile
    write(os.path.join(d, 'dialect-unknown'), 0, 0, enc(b'xml', dialect=None))
    write(os.path.join(d, 'dialect-none-vocab'), 0, 0, enc(b'none', dialect=None) + b'\x13\x87')
    write(os.path.join(d, 'http-on-pb-port'), 0, 0,
          b'GET /ws HTTP/1.1\r\nHost: master:9989\r\nUpgrade: websocket\r\n\r\n')
    write(os.path.join(d, 'class-module-function'), 1, 0,
          enc([b'class', b'os.system']) + enc([b'module', b'os']) + enc([b'function', b'os.system']))
    write(os.path.join(d, 'instance-persistent'), 1, 0,
          enc([b'instance', b'os.X', [b'dictionary']]) + enc([b'persistent', b'x']) +
          enc(j({1, 2})))
    write(os.path.join(d, 'circular-reference'), 1, 0,
          enc([b'reference', 1, [b'list', [b'dereference', 1]]]))
    laughs = [b'unicode', b'lol' * 10]
    for i in range(30):
        laughs = [b'list', [b'reference', i, laughs], [b'dereference', i]]
    write(os.path.join(d, 'billion-laughs'), 1, 0, enc(laughs))
    deep = [b'None']
    for i in range(70):
        deep = [b'list', deep]
    write(os.path.join(d, 'too-deep'), 1, 0, enc(deep))
    write(os.path.join(d, 'prefix-65'), 1, 0, b'\x01' * 65 + b'\x81')
    write(os.path.join(d, 'string-too-long'), 1, 0, b'\x01\x00\x28\x82abc')
    write(os.path.join(d, 'list-too-long'), 1, 0, b'\x01\x00\x04\x80\x01\x81')
    write(os.path.join(d, 'int-too-big'), 1, 0, b'\x00' * 9 + b'\x02\x85')
    write(os.path.join(d, 'type-byte-ff'), 1, 0, b'\x01\xff')
    write(os.path.join(d, 'vocab-unknown'), 1, 0, b'\x7f\x87')
    write(os.path.join(d, 'dict-duplicate-key'), 1, 0,
          enc([b'dictionary', [b'k', 1], [b'k', 2]]))
    write(os.path.join(d, 'unicode-invalid'), 1, 0, enc([b'unicode', b'\xc3\x28']))


if __name__ == '__main__':
    main()
