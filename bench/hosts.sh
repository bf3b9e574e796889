#!/usr/bin/env bash
# Benchmark: `mtp plan` on a converged fleet spread over two Docker engines, against `mtp plan`
# on a converged fleet of the same total tenants on one engine, timed side by side in one run
# with hyperfine (installed from Debian if missing).
#
#   bench/hosts.sh                 # SIZES=10 total tenants
#
# Every tenant has its own network, its subnet from the fleet's own pool on each host (host
# `a`: 10.126.0.0/16; host `b`: the upper half of its engine's 10.X.0.0/16), not Docker's
# default pools, so no daemon.json change is needed at any size:
#   SIZES=200 RUNS=50 PARALLEL=40 bench/hosts.sh
#   MTP=/path/to/mtp bench/hosts.sh   # a prebuilt binary (default: a release build)
#
# Target: the two-host plan costs at most 1.3x the one-host plan (the script fails otherwise).
#
# Host `a` is the machine's engine; host `b` a second dockerd this script starts beside it (its
# own socket, data root, exec root, pid file, a bridge it creates on a 10.248-255.x subnet
# nothing routes yet, --iptables=false), the stub image copied into it with docker save|load.
# At each size it makes two throwaway fleets with `mtp apply --parallel` (Docker health only):
# `one` with every tenant on host `a` ([hosts.a] only) and `two` with half its tenants on `a`
# and half on `b` ([hosts.a], [hosts.b]); both declare 1024g per host (the stub idles far
# below its 1g limit, and capacity is checked against the declared memory). The stub's healthcheck
# runs every 60 s so the idle containers do not load the machine. Everything it made (both
# fleets, the second engine, its bridge and directories) is removed at the end, also on
# failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SIZES=${SIZES:-10}
RUNS=${RUNS:-30}
PREFIX=${PREFIX:-benchho}
MAX_RATIO=${MAX_RATIO:-1.3}

docker info >/dev/null 2>&1 || { echo "hosts.sh: no Docker engine answers" >&2; exit 1; }
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
for bin in dockerd ip python3; do
  command -v "$bin" >/dev/null || { echo "hosts.sh: $bin is needed" >&2; exit 1; }
done
MTP=$(mtp_binary)
scripts/build-stub-image.sh >/dev/null

work=$(mktemp -d)
B_DIR=$work/b
B_BRIDGE=mtpbench$(( $$ % 100000 ))
B_PID=
B="docker -H unix://$B_DIR/docker.sock"

stop_second_engine() {
  [ -n "$B_PID" ] || return 0
  ids=$($B ps -aq 2>/dev/null || true)
  [ -n "$ids" ] && $B rm -f -v $ids >/dev/null 2>&1 || true
  # Its networks too: a stopped dockerd leaves their Linux bridges behind.
  $B network prune -f >/dev/null 2>&1 || true
  kill "$B_PID" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$B_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$B_PID" 2>/dev/null || true
  wait "$B_PID" 2>/dev/null || true
  B_PID=
  ip link del "$B_BRIDGE" 2>/dev/null || true
  # dockerd bind-mounts its data root onto itself.
  for _ in 1 2 3; do
    awk -v d="$B_DIR" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r m; do umount "$m" 2>/dev/null || true; done
  done
}

cleanup() {
  for n in $SIZES; do
    for f in "${PREFIX}1x$n" "${PREFIX}2x$n"; do
      remove_fleet "$f"
    done
  done
  stop_second_engine
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The second engine: the first of 10.248-255 that nothing on the machine routes yet (the
# tests' second engines use 10.136-191).
octet=
for o in $(seq 248 255); do
  ip -4 route show | grep -q "10\.$o\." || { octet=$o; break; }
done
[ -n "$octet" ] || { echo "hosts.sh: every 10.248-255 subnet is in use" >&2; exit 1; }
mkdir -p "$B_DIR"
ip link add name "$B_BRIDGE" type bridge
ip addr add "10.$octet.255.1/24" dev "$B_BRIDGE"
ip link set "$B_BRIDGE" up
dockerd -H "unix://$B_DIR/docker.sock" --data-root "$B_DIR/data" --exec-root "$B_DIR/exec" \
  --pidfile "$B_DIR/docker.pid" --bridge "$B_BRIDGE" --iptables=false \
  --default-address-pool "base=10.$octet.0.0/17,size=24" >"$B_DIR/dockerd.log" 2>&1 &
B_PID=$!
for i in $(seq 1 240); do
  $B info >/dev/null 2>&1 && break
  [ "$i" = 240 ] && { tail -20 "$B_DIR/dockerd.log" >&2; exit 1; }
  sleep 0.25
done
docker save mtp-stub-gateway:dev | $B load >/dev/null
echo "== second engine: pid $B_PID, unix://$B_DIR/docker.sock, bridge $B_BRIDGE (10.$octet.0.0/16)" >&2

export MTP_AGE_IDENTITY=$work/identity.txt NO_COLOR=1
printf '%-7s  %-22s  %-22s  %s\n' tenants "one host (s)" "two hosts (s)" "two / one" > "$work/table.txt"
failed=

# make_fleet DIR FLEET N HOSTS: N tenants; HOSTS=1: all on host a (the machine's engine);
# HOSTS=2: the first half on a, the rest on b. Ports differ between fleets and hosts (every
# engine publishes on this machine's loopback).
make_fleet() {
  local dir=$1 fleet=$2 n=$3 hosts=$4 base
  mkdir -p "$dir"
  base=$(( hosts == 1 ? 20000 : 25000 ))   # below the kernel's ephemeral ports
  {
    printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$fleet" "$dir"
    printf '[defaults]\nimage = "mtp-stub-gateway:dev"\nmemory = "1g"\ncpus = 0.1\npids_limit = 64\nstop_timeout = "2s"\n'
    printf 'env = { STUB_STARTUP_MS = "100" }\n'
    printf 'health = { interval = "1s", running_interval = "60s", timeout = "10s", retries = 3, start_period = "0s", gate_timeout = "180s" }\n\n'
    # The stub idles far below its 1g limit: room declared for every size run here.
    host_table a "$n" 126 unix:///var/run/docker.sock
    if [ "$hosts" = 2 ]; then
      # Its bridges live in this machine's kernel too: a pool apart from every other's.
      printf '[hosts.b]\nendpoint = "unix://%s/docker.sock"\nmemory = "%dg"\ndata_root = "%s/data-b"\nsubnet_pool = "10.%d.128.0/17"\n\n' \
        "$B_DIR" $((n + 8)) "$dir" "$octet"
    fi
    for i in $(seq 1 "$n"); do
      printf '[tenants.t%04d]\nport = %d\n' "$i" $((base + i))
      if [ "$hosts" = 2 ] && [ "$i" -gt $((n / 2)) ]; then echo 'host = "b"'; else echo 'host = "a"'; fi
      echo
    done
  } > "$dir/fleet.toml"
  (
    export MTP_FLEET=$dir/fleet.toml
    "$MTP" secrets init >/dev/null 2>&1
    for i in $(seq 1 "$n"); do "$MTP" secrets gen "$(printf 't%04d' "$i")" >/dev/null 2>&1; done
    t0=$(date +%s)
    ok=
    for round in 1 2 3; do
      if (cd "$dir" && "$MTP" apply --auto-approve --docker-health-only --parallel "${PARALLEL:-25}" --lock-ttl 2h >"$dir/apply.log" 2>&1); then ok=1; break; fi
    done
    [ -n "$ok" ] || { cp "$dir/apply.log" "/tmp/$fleet-apply.log"; echo "apply of $fleet did not finish (log: /tmp/$fleet-apply.log):" >&2; grep -m5 FAILED "$dir/apply.log" >&2; tail -3 "$dir/apply.log" >&2; exit 1; }
    echo "   $fleet: $n tenants on $hosts host(s), created in $(( $(date +%s) - t0 )) s" >&2
    (cd "$dir" && "$MTP" plan --detailed-exitcode >/dev/null) || { echo "plan of $fleet is not empty after apply" >&2; exit 1; }
  )
}

for N in $SIZES; do
  echo "== $N tenants ($(free -g | awk '/Mem:/ {print $7}') GiB available)" >&2
  make_fleet "$work/1x$N" "${PREFIX}1x$N" "$N" 1
  make_fleet "$work/2x$N" "${PREFIX}2x$N" "$N" 2
  # Let the creation storm settle before timing.
  for _ in $(seq 1 "${SETTLE_S:-120}"); do
    awk '{ exit !($1 < 2) }' /proc/loadavg && break
    sleep 1
  done
  echo "   machine before timing: load average $(cut -d' ' -f1-3 /proc/loadavg), $(docker ps -q | wc -l) containers running on a, $($B ps -q | wc -l) on b" >&2
  hyperfine --warmup 5 --runs "$RUNS" --export-json "$work/$N.json" \
    -n "one host ($N)" "cd $work/1x$N && $MTP plan --detailed-exitcode" \
    -n "two hosts ($N)" "cd $work/2x$N && $MTP plan --detailed-exitcode" >&2
  python3 - "$N" "$work/$N.json" "$MAX_RATIO" >> "$work/table.txt" <<'PY' || failed=1
import json, sys
n, path, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
one, two = json.load(open(path))["results"]
fmt = lambda x: f"{x['mean']:.3f} ± {x['stddev']:.3f}"
ratio = two["mean"] / one["mean"]
print(f"{n:<7}  {fmt(one):<22}  {fmt(two):<22}  {ratio:.2f}x{'' if ratio <= limit else f'  OVER {limit}x'}")
sys.exit(0 if ratio <= limit else 1)
PY
  # Free the machine for the next size.
  remove_fleet "${PREFIX}1x$N"
  remove_fleet "${PREFIX}2x$N"
  ids=$($B ps -aq --filter "label=mtp.fleet=${PREFIX}2x$N")
  [ -n "$ids" ] && $B rm -f -v $ids >/dev/null 2>&1 || true
  $B network prune -f >/dev/null 2>&1 || true
done

echo
cat "$work/table.txt"
[ -z "$failed" ] || { echo "the two-host plan cost more than ${MAX_RATIO}x the one-host plan" >&2; exit 1; }
