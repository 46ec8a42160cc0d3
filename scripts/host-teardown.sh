#!/usr/bin/env bash
# Stops what scripts/host-setup.sh started (and nothing else): redis-server, then dockerd after removing
# any kernel container a test left behind.
set -uo pipefail
STATE_DIR=${POLYKERNEL_STATE_DIR:-/tmp/polykernel-host}
DOCKER=/usr/bin/docker; [ -x $DOCKER ] || DOCKER=docker
leftovers=$($DOCKER ps -aq --filter label=org.polykernel.managed=true 2>/dev/null)
[ -n "$leftovers" ] && $DOCKER rm -f $leftovers >/dev/null 2>&1
if [ -f "$STATE_DIR/redis.pid" ]; then
  kill "$(cat "$STATE_DIR/redis.pid")" 2>/dev/null; rm -f "$STATE_DIR/redis.pid"
fi
if [ -f "$STATE_DIR/dockerd.pid" ]; then
  pid=$(cat "$STATE_DIR/dockerd.pid"); kill "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  rm -f "$STATE_DIR/dockerd.pid"
fi
exit 0
