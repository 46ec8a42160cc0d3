#!/usr/bin/env bash
# Makes a Debian/Ubuntu host ready to run polykernel and its tests: installs what is missing from
# Debian's archive (Docker engine, Redis, debootstrap, gVisor, the Jupyter peers used by the
# compatibility tests, Chromium for the browser tests, docker-compose), and starts dockerd and redis-server on loopback when they are not running.
# Idempotent: every step checks first. Writes the PIDs of what it started to $STATE_DIR so that
# scripts/host-teardown.sh stops only what this script started.
set -euo pipefail
STATE_DIR=${POLYKERNEL_STATE_DIR:-/tmp/polykernel-host}
REDIS_PORT=${REDIS_PORT:-6379}
mkdir -p "$STATE_DIR"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v redis-server >/dev/null || need+=(redis-server)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v runsc >/dev/null || need+=(runsc)
# The browser tests (playground, Thebe) drive Debian's Chromium through playwright-core.
command -v chromium >/dev/null || need+=(chromium)
# The compose set-up's test (test/integration/deploy-compose.test.ts) runs it as a user would.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || need+=(docker-compose)
/usr/bin/python3 -c 'import jupyter_client, ipykernel, nbformat, jupyter_server' 2>/dev/null ||
  need+=(python3-jupyter-client python3-ipykernel python3-nbformat python3-jupyter-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "host-setup: installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# gVisor as an opt-in runtime. --network=none: runsc refuses --network none otherwise;
# --host-uds=all: lets the kernel create its ZMQ IPC sockets in the bind-mounted directory;
# --oci-seccomp: applies the container's seccomp profile inside the sandbox (without it runsc ignores it
# and a kernel can `unshare -r` to root in a user namespace; see src/runtime/gvisor.ts).
# Rewritten when an older registration lacks a flag.
mkdir -p /etc/docker
if [ ! -f /etc/docker/daemon.json ] || ! grep -q -- '--oci-seccomp' /etc/docker/daemon.json; then
  cat >/etc/docker/daemon.json <<'JSON'
{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=all", "--oci-seccomp"]}}}
JSON
  if pgrep -x dockerd >/dev/null; then kill -HUP "$(pgrep -x dockerd)"; fi
fi

DOCKER=/usr/bin/docker
[ -x $DOCKER ] || DOCKER=docker
if ! $DOCKER info >/dev/null 2>&1; then
  echo "host-setup: starting dockerd"
  dockerd --host=unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1 &
  echo $! >"$STATE_DIR/dockerd.pid"
  for _ in $(seq 1 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.5; done
  $DOCKER info >/dev/null
fi

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "host-setup: starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --pidfile "$STATE_DIR/redis.pid" >/dev/null
  for _ in $(seq 1 40); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.25; done
fi
echo "host-setup: ready"
