#!/usr/bin/env bash
# A multi-node Docker Swarm simulated on one machine, for the scale-out tests and for trying the stack.
#
#   scripts/sim-swarm.sh up [NODES]      NODES (default 3) engines joined into one Swarm, images loaded
#   scripts/sim-swarm.sh down            stops and removes everything `up` made
#   scripts/sim-swarm.sh env NODE        prints DOCKER_HOST=... for a node (e.g. `eval "$(... env 0)"`)
#   scripts/sim-swarm.sh link NODE up|down   cuts or restores a node's network link
#
# Each node is one dockerd in network, UTS and mount namespaces of its own, so that it looks like a host:
# its own address (10.77.0.1X on a bridge that lives in a namespace of its own, since the main engine's
# FORWARD policy drops bridged traffic in the root namespace), its own hostname, and its own /run and
# /var/lib/polykernel. The private mounts matter: a stack mounts /var/run/docker.sock and the agent's
# state directory by host path, and on a real Swarm every node has its own. The root namespace reaches
# the nodes through one more veth (10.77.0.1), so tests talk to published ports directly.
# Facts and pitfalls: ../shared/ENVIRONMENT.md ("Docker Swarm, and several simulated hosts").
set -euo pipefail

ROOT=${PK_SIM_DIR:-/var/lib/polykernel-sim}
IMAGES=${PK_SIM_IMAGES:-"polykernel/base:latest polykernel/python:latest polykernel/service:latest polykernel/redis:latest"}
LAN_NS=pk-sw
BRIDGE=pk-lan
SUBNET=10.77.0
DOCKER=/usr/bin/docker; [ -x $DOCKER ] || DOCKER=docker

node_ip() { echo "$SUBNET.$((10 + $1))"; }
node_dir() { echo "$ROOT/pk-n$1"; }
node_sock() { echo "unix://$(node_dir "$1")/run/docker.sock"; }
ndocker() { local n=$1; shift; $DOCKER -H "$(node_sock "$n")" "$@"; }
node_count() { ls -d "$ROOT"/pk-n* 2>/dev/null | wc -l; }

make_lan() {
  ip netns add $LAN_NS
  ip -n $LAN_NS link add $BRIDGE type bridge
  ip -n $LAN_NS link set $BRIDGE up
  ip -n $LAN_NS link set lo up
  # The root namespace's own port on the LAN.
  ip link add pk-host type veth peer name pk-host-p
  ip link set pk-host-p netns $LAN_NS
  ip -n $LAN_NS link set pk-host-p master $BRIDGE up
  ip addr add $SUBNET.1/24 dev pk-host
  ip link set pk-host up
}

make_node() {
  local n=$1 dir ns=pk-n$1
  dir=$(node_dir "$n")
  mkdir -p "$dir"/{data,exec,run,state}
  ip netns add "$ns"
  ip link add "$ns-p" type veth peer name "$ns-e"
  ip link set "$ns-p" netns $LAN_NS
  ip -n $LAN_NS link set "$ns-p" master $BRIDGE up
  ip link set "$ns-e" netns "$ns"
  ip -n "$ns" link set "$ns-e" name eth0
  ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via $SUBNET.1
  # The key file path set here, or every node gets the same engine id (the flag does not exist).
  printf '{"deprecated-key-path": "%s/key.json"}\n' "$dir" >"$dir/daemon.json"
  # `nsenter --net`, not `ip netns exec`: the latter remounts /sys and hides /sys/fs/cgroup.
  nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private sh -c "
    hostname $ns
    mount --bind '$dir/run' /run
    mkdir -p /var/lib/polykernel && mount --bind '$dir/state' /var/lib/polykernel
    exec env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 dockerd --config-file '$dir/daemon.json' \
      --data-root '$dir/data' --exec-root '$dir/exec' --pidfile '$dir/dockerd.pid' \
      -H unix:///run/docker.sock --bip 172.31.1$n.1/24 --iptables=false --ip6tables=false \
      --containerd-namespace $ns --containerd-plugins-namespace $ns-plugins \
      --cgroup-parent $ns --shutdown-timeout 2
  " >"$dir/dockerd.log" 2>&1 &
}

wait_engine() {
  local n=$1
  for _ in $(seq 1 120); do
    ndocker "$n" info >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  echo "sim-swarm: node $n's engine did not answer; its log:" >&2
  tail -20 "$(node_dir "$n")/dockerd.log" >&2
  return 1
}

up() {
  local nodes=${1:-3} n
  [ "$(node_count)" -eq 0 ] || { echo "sim-swarm: already up ($ROOT); run 'down' first" >&2; exit 1; }
  for image in $IMAGES; do
    $DOCKER image inspect "$image" >/dev/null 2>&1 || { echo "sim-swarm: image $image is missing (npm run images; npm run service-images)" >&2; exit 1; }
  done
  mkdir -p "$ROOT"
  make_lan
  for n in $(seq 0 $((nodes - 1))); do make_node "$n"; done
  for n in $(seq 0 $((nodes - 1))); do wait_engine "$n"; done
  # One save, loaded into every node side by side.
  $DOCKER save $IMAGES -o "$ROOT/images.tar"
  local loads=()
  for n in $(seq 0 $((nodes - 1))); do
    ndocker "$n" load -q -i "$ROOT/images.tar" >/dev/null &
    loads+=($!)
  done
  # Only the loads: a bare `wait` would also wait for the daemons.
  for pid in "${loads[@]}"; do wait "$pid"; done
  rm -f "$ROOT/images.tar"
  ndocker 0 swarm init --advertise-addr "$(node_ip 0)" --listen-addr "$(node_ip 0):2377" >/dev/null
  local manager_token worker_token
  manager_token=$(ndocker 0 swarm join-token -q manager)
  worker_token=$(ndocker 0 swarm join-token -q worker)
  # Node 1 is a second manager where there are three nodes or more: a Swarm keeps working when one goes.
  for n in $(seq 1 $((nodes - 1))); do
    local token=$worker_token
    [ "$n" -eq 1 ] && [ "$nodes" -ge 3 ] && token=$manager_token
    ndocker "$n" swarm join --token "$token" --advertise-addr "$(node_ip "$n")" "$(node_ip 0):2377" >/dev/null
  done
  echo "sim-swarm: $nodes nodes up; node N's engine: DOCKER_HOST=$(node_sock N)"
}

down() {
  local dir pid n
  for dir in "$ROOT"/pk-n*; do
    [ -d "$dir" ] || continue
    pid=$(cat "$dir/dockerd.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for dir in "$ROOT"/pk-n*; do
    [ -d "$dir" ] || continue
    pid=$(cat "$dir/dockerd.pid" 2>/dev/null || true)
    for _ in $(seq 1 60); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  # Shims and containers left in a node's namespace outlive its daemon.
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pk-n[0-9]+$' || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  sleep 0.5
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pk-(n[0-9]+|sw)$' || true); do ip netns del "$ns"; done
  ip link del pk-host 2>/dev/null || true
  # The memory controller nests each node's cgroup under the caller's; remove the deepest first.
  find /sys/fs/cgroup -depth -type d -regex '.*/pk-n[0-9]+\(-[^/]*\)?\(/.*\)?' -exec rmdir {} \; 2>/dev/null || true
  for dir in "$ROOT"/pk-n*; do
    [ -d "$dir" ] || continue
    # Mounts a node's containers left (overlay, shm) must go before the directory does.
    { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf "$dir"
  done
  rm -f "$ROOT/images.tar"
  rmdir "$ROOT" 2>/dev/null || true
}

link() {
  local n=$1 state=$2
  ip -n $LAN_NS link set "pk-n$n-p" "$state"
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  env) echo "DOCKER_HOST=$(node_sock "$2")" ;;
  link) link "$2" "$3" ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
