#!/usr/bin/python3
# check-man.py: the man page tests (meson suite 'man')
#
#   check-man.py render PAGE.scd   scdoc renders it and groff -ww finds nothing to warn about
#   check-man.py keys CONFIG.c PAGE.scd
#                                  every key the configuration parser knows (its *_keys[]
#                                  tables and key prefixes) is documented as *Key=* in the page
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import re
import subprocess
import sys


def render(scd):
    with open(scd, 'rb') as f:
        p = subprocess.run(['scdoc'], stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0 or p.stderr:
        sys.exit('%s: scdoc failed:\n%s' % (scd, p.stderr.decode(errors='replace')))
    g = subprocess.run(['groff', '-man', '-Tutf8', '-ww', '-z'], input=p.stdout,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if g.returncode != 0 or g.stderr:
        sys.exit('%s: groff warns:\n%s' % (scd, g.stderr.decode(errors='replace')))
    print('%s: renders without warnings (%d bytes of troff)' % (scd, len(p.stdout)))


def parser_keys(source):
    """The keys bf-config.c accepts: its `static const char * const *_keys[]` tables."""
    with open(source) as f:
        text = f.read()
    keys = set()
    tables = re.findall(r'static const char \* const (\w+_keys)\[\] = \{(.*?)\};', text, re.S)
    if not tables:
        sys.exit('%s: found no *_keys[] table: has the parser changed?' % source)
    for _, body in tables:
        keys.update(re.findall(r'"([A-Za-z][A-Za-z0-9.]*)"', body))
    # Prefixes: check_keys (p, group, table, "Property.", error)
    prefixes = set(re.findall(r'check_keys \([^;]*?"([A-Za-z]+\.)"', text))
    # Keys read outside the tables (get_string (p, g, "Key", ...)) count too.
    keys.update(re.findall(r'get_\w+ \(p, \w+, "([A-Za-z][A-Za-z0-9]*)"', text))
    return keys, prefixes


def documented(scd):
    with open(scd) as f:
        text = f.read()
    return set(re.findall(r'\*([A-Za-z][A-Za-z0-9]*)=\*', text)), text


def check_keys(source, scd):
    keys, prefixes = parser_keys(source)
    page_keys, text = documented(scd)
    missing = sorted(k for k in keys if k not in page_keys)
    missing += sorted(p for p in prefixes if '*%s*' % p not in text)
    if missing:
        sys.exit('%s does not document %s, which %s accepts' % (scd, ', '.join(missing), source))
    print('%s documents all %d keys and %d prefixes of %s' % (scd, len(keys), len(prefixes), source))


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'render':
        render(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == 'keys':
        check_keys(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__ if __doc__ else 'usage: check-man.py render PAGE | keys CONFIG.c PAGE')
