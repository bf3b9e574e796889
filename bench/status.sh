#!/usr/bin/env bash
# Benchmark: `mtp status` on a fleet of N running stub gateway containers (one list call,
# then one inspect and one stats read per running container, 8 at a time), against the seed
# status.sh's way, `docker ps` + `docker stats --no-stream` on the same containers, side by
# side in one hyperfine run; and mtp's peak memory (GNU time's maximum resident set size).
#
#   bench/status.sh            # N=200
#   N=50 RUNS=5 bench/status.sh
#
# The fleet is made with `mtp apply --parallel` on a dockerd the script starts (see below),
# and removed with it at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${N:-200}
RUNS=${RUNS:-5}
FLEET=${PREFIX:-benchst}$N

docker info >/dev/null 2>&1 || { echo "status.sh: no Docker engine answers" >&2; exit 1; }
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
[ -x /usr/bin/time ] || apt-get install -y -q time >/dev/null
cargo build --release --bin mtp -q
MTP=$PWD/target/release/mtp
scripts/build-stub-image.sh >/dev/null

work=$(mktemp -d)
# Each tenant has its own network, and Docker's default address pools hold about 30: the
# fleet runs on a dockerd of its own with larger pools (its own socket, data and exec roots,
# pid file and bridge, no iptables), stopped and removed at the end.
BR=mtpbst$$
cleanup() {
  if [ -S "$work/d.sock" ]; then
    DOCKER_HOST=unix://$work/d.sock docker rm -f $(DOCKER_HOST=unix://$work/d.sock docker ps -aq) >/dev/null 2>&1 || true
    # Its networks' bridges live in this machine's namespace: removed before the engine stops.
    DOCKER_HOST=unix://$work/d.sock docker network prune -f >/dev/null 2>&1 || true
    kill "$(cat "$work/d.pid")" 2>/dev/null || true
    sleep 3
  fi
  ip link del "$BR" 2>/dev/null || true
  umount -R "$work/root" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
ip link add "$BR" type bridge && ip addr add 10.159.255.1/24 dev "$BR" && ip link set "$BR" up
dockerd -H "unix://$work/d.sock" --data-root "$work/root" --exec-root "$work/exec" \
  --pidfile "$work/d.pid" --bridge "$BR" --iptables=false \
  --default-address-pool base=10.160.0.0/11,size=24 >"$work/dockerd.log" 2>&1 &
for _ in $(seq 60); do DOCKER_HOST=unix://$work/d.sock docker info >/dev/null 2>&1 && break; sleep 0.5; done
docker save mtp-stub-gateway:dev | DOCKER_HOST=unix://$work/d.sock docker load >/dev/null
export DOCKER_HOST=unix://$work/d.sock
export MTP_AGE_IDENTITY=$work/identity.txt NO_COLOR=1 MTP_FLEET=$work/fleet.toml
{
  printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$FLEET" "$work"
  # The stubs idle at a few MiB: the host's declared memory lets 1g limits add up past the
  # machine's.
  printf '[hosts.a]\nendpoint = "unix://%s/d.sock"\nmemory = "512g"\n\n' "$work"
  printf '[defaults]\nhost = "a"\nimage = "mtp-stub-gateway:dev"\nmemory = "1g"\ncpus = 0.1\npids_limit = 64\nstop_timeout = "2s"\n'
  printf 'env = { STUB_STARTUP_MS = "100" }\n'
  printf 'health = { interval = "60s", timeout = "10s", retries = 3, start_period = "0s", gate_timeout = "180s" }\n\n'
  for i in $(seq 1 "$N"); do printf '[tenants.t%04d]\nport = %d\n\n' "$i" $((34000 + i)); done
} > "$MTP_FLEET"
"$MTP" secrets init >/dev/null 2>&1
for i in $(seq 1 "$N"); do "$MTP" secrets gen "$(printf 't%04d' "$i")" >/dev/null 2>&1; done
echo "== creating $N tenants" >&2
for round in 1 2 3; do
  (cd "$work" && "$MTP" apply --auto-approve --docker-health-only --parallel "${PARALLEL:-40}" --lock-ttl 2h >"$work/apply.log" 2>&1) && break
done
running=$(docker ps -q --filter "label=mtp.fleet=$FLEET" --filter status=running | wc -l)
echo "   $running running" >&2

/usr/bin/time -v "$MTP" status --json 2>"$work/time.txt" >"$work/status.json"
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
echo "mtp status at $N tenants: peak memory $((rss / 1024)) MiB ($rss KiB)" >&2
hyperfine -N --warmup 1 --runs "$RUNS" \
  -n "mtp status ($N tenants)" "$MTP status" \
  -n "docker ps + docker stats --no-stream ($N containers)" \
  "sh -c 'docker ps --filter label=mtp.fleet=$FLEET >/dev/null && docker stats --no-stream \$(docker ps -q --filter label=mtp.fleet=$FLEET) >/dev/null'"
