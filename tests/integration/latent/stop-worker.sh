#!/bin/sh
# StopCommand for the latent tests: stops what start-worker.sh started.
#   stop-worker.sh DIR NAME
set -u
root=$1
dir=$root/$2
echo "stop $2" >> "$root/engine.log"
[ -f "$dir/pid" ] || exit 0
pid=$(cat "$dir/pid")
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL -- "-$pid" 2>/dev/null || true
rm -f "$dir/pid"
