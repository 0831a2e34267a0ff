#!/usr/bin/python3
# make-corpus-pb-session.py: writes the seeds of tests/fuzz/corpus-pb-session/
#
# Each seed is what a PB peer sends from its first byte (see
# fuzz-pb-session.c for the ids the harness uses), encoded with Twisted's
# own banana (Debian's python3-twisted, vocabulary and all): a whole
# session of buildbot-worker 3.7 and hostile variations of it.
# SPDX-License-Identifier: LGPL-2.1-or-later

import io
import os
import sys

from twisted.spread import banana


def enc(sexp, dialect=b'pb'):
    b = banana.Banana(isClient=1)
    b.setPrefixLimit(banana._PREFIX_LIMIT)
    b.currentDialect = dialect
    out = io.BytesIO()
    b._encode(sexp, out.write)
    return out.getvalue()


def u(s):
    return [b'unicode', s.encode()]


def msg(req, obj, name, *args):
    return [b'message', req, obj, name.encode(), 1, [b'tuple'] + list(args), [b'dictionary']]


def answer(req, value):
    return [b'answer', req, value]


NONE = [b'None']
HELLO = enc(b'pb', dialect=None) + enc([b'version', 6])
LOGIN = [msg(1, b'root', 'login', b'w1'),
         msg(2, 1, 'respond', b'0123456789abcdef', [b'remote', 1])]
ATTACH = [answer(1, NONE),
          answer(2, [b'dictionary',
                     [u('admin'), u('me <me@example.com>\n')],
                     [u('host'), u('a host')],
                     [u('version'), u('3.7.0')],
                     [u('basedir'), u('/srv/w1')],
                     [u('numcpus'), 4],
                     [u('environ'), [b'dictionary', [u('SECRET'), u('x')]]],
                     [u('worker_commands'), [b'dictionary', [u('shell'), u('3.1')],
                                             [u('mkdir'), u('3.1')]]]]),
          answer(3, [b'dictionary', [u('b'), [b'remote', 2]]]),
          answer(4, NONE)]
COMMAND = [msg(3, 3, 'update', [b'list', [b'list', [b'dictionary', [u('header'), u('sh -c true\n')]], 0]]),
           msg(4, 3, 'update', [b'list', [b'list', [b'dictionary', [u('stdout'), u('hello\n')]], 0],
                                [b'list', [b'dictionary', [u('stderr'), u('oops\n')]], 0]]),
           msg(5, 3, 'update', [b'list', [b'list', [b'dictionary',
                                                   [u('log'), [b'tuple', u('log.txt'), u('text\n')]]], 0]]),
           msg(6, 3, 'update', [b'list', [b'list', [b'dictionary', [u('rc'), 0]], 0]]),
           msg(7, 3, 'update', [b'list', [b'list', [b'dictionary', [u('elapsed'), 0.25]], 0]])]
FAILURE = [b'twisted.spread.pb.CopyableFailure',
           [b'dictionary', [u('type'), b'buildbot_worker.exceptions.AbandonChain'],
            [u('value'), u('boom')], [u('traceback'), u('Traceback unavailable\n')],
            [u('parents'), [b'list', u('buildbot_worker.exceptions.AbandonChain')]]]]


def session(*parts):
    return HELLO + b''.join(enc(p) for part in parts for p in part)


SEEDS = {
    'whole-session': session(LOGIN, ATTACH, COMMAND,
                             [msg(8, 3, 'complete', NONE), [b'decref', 3],
                              msg(9, 2, 'keepalive'), msg(10, 2, 'shutdown')]),
    'complete-with-failure': session(LOGIN, ATTACH, COMMAND[:2], [msg(8, 3, 'complete', FAILURE)]),
    'start-refused': session(LOGIN, ATTACH[:3], [[b'error', 4, FAILURE]]),
    'builder-list-refused': session(LOGIN, ATTACH[:2], [[b'error', 3, FAILURE]]),
    'builder-list-not-ours': session(LOGIN, ATTACH[:2],
                                     [answer(3, [b'dictionary', [u('zz'), [b'remote', 5]]])]),
    'info-not-a-dict': session(LOGIN, [answer(1, NONE), answer(2, [b'list', 1, 2])]),
    'login-only': session(LOGIN),
    'login-name-not-utf8': session([msg(1, b'root', 'login', b'w\xff'),
                                    msg(2, 1, 'respond', b'0123456789abcdef', [b'remote', 1])],
                                   [answer(1, NONE)]),
    'wrong-response-length': session([msg(1, b'root', 'login', b'w1'),
                                      msg(2, 1, 'respond', b'short', [b'remote', 1])]),
    'respond-without-mind': session([msg(1, b'root', 'login', b'w1'),
                                     msg(2, 1, 'respond', b'0123456789abcdef', NONE)]),
    'login-twice': session(LOGIN, [msg(3, b'root', 'login', b'w1')]),
    'call-before-login': session([msg(1, b'root', 'keepalive')]),
    'unknown-object': session([msg(1, 9, 'keepalive')]),
    'decref-unknown': session(LOGIN, [[b'decref', 42]]),
    'answer-never-asked': session([answer(7, NONE)]),
    'cachemessage': session(LOGIN, [[b'cachemessage', 3, 2, b'x', 1, [b'tuple'], [b'dictionary']]]),
    'class-in-update': session(LOGIN, ATTACH, [msg(3, 3, 'update', [b'class', b'os.system'])]),
    'update-bad-shape': session(LOGIN, ATTACH, [msg(3, 3, 'update', [b'list', 1, 2])]),
    'unknown-method-on-command': session(LOGIN, ATTACH, [msg(3, 3, 'write', u('data'))]),
    'unknown-method-on-perspective': session(LOGIN, [msg(3, 2, 'perspective_x')]),
    'keyword-arguments': session([[b'message', 1, b'root', b'login', 1, [b'tuple'],
                                   [b'dictionary', [u('username'), b'w1']]]]),
    'didnotunderstand': session([[b'didNotUnderstand', b'message']]),
    'wrong-version': enc(b'pb', dialect=None) + enc([b'version', 5]),
    'dialect-none': enc(b'none', dialect=None),
    'http-request': b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    'tls-client-hello': b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + bytes(32),
    'empty': b'',
}


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus-pb-session')
    os.makedirs(outdir, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(outdir, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
