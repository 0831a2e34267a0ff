#!/bin/sh
# StartCommand for the latent tests: an "engine" that creates a real
# buildbot-worker from the BUILDFLEET_* environment and runs it in the
# background, like a script that boots a VM would.
#   start-worker.sh DIR
set -eu
root=$1
dir=$root/$BUILDFLEET_WORKER_NAME
echo "start $BUILDFLEET_WORKER_NAME $BUILDFLEET_MASTER_URL" >> "$root/engine.log"
rm -rf "$dir"
buildbot-worker create-worker --quiet --protocol=msgpack_experimental_v7 --keepalive=0 \
  "$dir" "$BUILDFLEET_MASTER" "$BUILDFLEET_WORKER_NAME" "$BUILDFLEET_WORKER_PASSWORD"
setsid buildbot-worker start --nodaemon "$dir" > "$dir/out.log" 2>&1 < /dev/null &
echo $! > "$dir/pid"
