#!/bin/sh
# validate-unit.sh: checks of the service's systemd files, run by meson test
#
#   verify UNIT DAEMON      systemd-analyze verify on a copy of UNIT whose
#                           ExecStart= runs DAEMON (the installed path need
#                           not exist yet); any diagnostic is a failure
#   security UNIT TENTHS    systemd-analyze security --offline: the exposure
#                           score must be at most TENTHS/10
#   sysusers-tmpfiles SYSUSERS TMPFILES USER SYSCONFDIR
#                           creates the user and the configuration directory
#                           in an empty root and checks owner and mode
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$1" in
verify)
  unit="$tmp/$(basename "$2")"
  sed "s|^ExecStart=[^ ]*|ExecStart=$3|" "$2" > "$unit"
  grep -q "^ExecStart=$3\$" "$unit"
  out=$(systemd-analyze verify "$unit" 2>&1) || { printf '%s\n' "$out"; exit 1; }
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    exit 1
  fi
  echo "systemd-analyze verify: no complaints about $(basename "$2")"
  ;;
security)
  systemd-analyze security --offline=yes --threshold="$3" "$2"
  ;;
sysusers-tmpfiles)
  user=$4
  confdir="$5/buildfleet"
  # Both tools want their arguments inside --root.
  mkdir "$tmp/in" "$tmp/etc"
  cp "$2" "$tmp/in/sysusers.conf"
  cp "$3" "$tmp/in/tmpfiles.conf"
  systemd-sysusers --root="$tmp" "$tmp/in/sysusers.conf"
  grep "^$user:" "$tmp/etc/passwd"
  systemd-tmpfiles --root="$tmp" --create "$tmp/in/tmpfiles.conf"
  for d in "$confdir" "$confdir/buildfleet.conf.d"; do
    mode=$(stat -c %a "$tmp$d")
    owner=$(stat -c %u "$tmp$d")
    group=$(stat -c %g "$tmp$d")
    gid=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$tmp/etc/group")
    echo "$d: mode $mode, uid $owner, gid $group ($user is $gid)"
    [ "$mode" = 750 ] && [ "$owner" = 0 ] && [ "$group" = "$gid" ] || {
      echo "$d should be 0750 root:$user" >&2
      exit 1
    }
  done
  ;;
*)
  echo "usage: $0 verify|security|sysusers-tmpfiles ..." >&2
  exit 2
  ;;
esac
