#!/bin/sh
# StartCommand for the latent tests: an "engine" that creates a real
# buildbot-worker from its environment and runs it in the background, like
# a script that boots a VM would.  It reads the names Buildbot's worker
# image reads (BUILDMASTER, BUILDMASTER_PORT, WORKERNAME, WORKERPASS,
# BUILDMASTER_PROTOCOL), so the tests check those, and logs
# BUILDFLEET_PROTOCOL and BUILDFLEET_MASTER_URL.
#   start-worker.sh DIR
set -eu
root=$1
dir=$root/$WORKERNAME
echo "start $WORKERNAME $BUILDFLEET_PROTOCOL $BUILDFLEET_MASTER_URL" >> "$root/engine.log"
rm -rf "$dir"
buildbot-worker create-worker --quiet --protocol="$BUILDMASTER_PROTOCOL" --keepalive=0 \
  "$dir" "$BUILDMASTER:$BUILDMASTER_PORT" "$WORKERNAME" "$WORKERPASS"
setsid buildbot-worker start --nodaemon "$dir" > "$dir/out.log" 2>&1 < /dev/null &
echo $! > "$dir/pid"
