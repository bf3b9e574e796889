#!/usr/bin/env bash
# Benchmark, internet scale simulated: `mtp plan` of ENGINES x PER tenants (default 10 x 1,000)
# over ENGINES extra dockerds this script starts on this machine, each engine's Docker API
# requests counted against those of a one-engine fleet of PER tenants.
#
#   bench/sim10k.sh                               # 10 engines x 1,000 tenants
#   MTP=target/release/mtp ENGINES=10 PER=200 bench/sim10k.sh
#   HOLD=/tmp/hold bench/sim10k.sh                # engines kept up until /tmp/hold is removed
#
# Target: the 10,000-tenant plan under 1.5 s, and each engine answering as many requests as
# the engine of a one-engine fleet does. Timed side by side: the 10,000-tenant plan, the
# 1,000-tenant one-engine plan, and the engines' own container lists sent at once by curl
# (what the engines alone take to answer, on the cores they share with mtp here).
#
# Each engine is started as tests/common/second_engine.rs starts one: its own socket,
# --data-root, --exec-root, --pidfile, a bridge made with `ip link add` on a 10.X.255.0/24 of
# its own, --iptables=false (the machine's firewall is not touched), and --debug, whose log
# line per API request ("Calling GET /v1.41/containers/json") is what is counted. The stub
# image is loaded into each with `docker save | docker load`.
#
# The tenants' containers are created, never started (10,000 running gateways would be the
# benchmark instead of the plan), by examples/bench_create.rs: labelled exactly as apply
# labels them, without their networks (10,000 bridges in one network namespace would take
# longer to make than the rest together): so the plan reads every container and places
# every tenant's network in its host's pool. Each tenant is declared disabled, so the plan
# is of standing containers with nothing to start.
#
# Everything is removed at the end, also on failure or Ctrl-C: the engines' containers,
# the engines, their bridges and directories.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ENGINES=${ENGINES:-10}
PER=${PER:-1000}
RUNS=${RUNS:-10}
PARALLEL=${PARALLEL:-8}
# The second octet of engine k's bridge and pool: 10.(OCTET+k).0.0/16. Tests take 136-255
# (tests/common/second_engine.rs), the fleets' default subnet pool 10.112.0.0/16.
OCTET=${OCTET:-120}

for bin in dockerd docker ip hyperfine curl; do
  if ! command -v $bin >/dev/null; then
    [ $bin = hyperfine ] && apt-get install -y -q hyperfine >/dev/null || { echo "sim10k.sh: $bin is needed" >&2; exit 1; }
  fi
done
MTP=$(mtp_binary)
CREATE=$(bench_create_binary)
IMAGE=mtp-stub-gateway:dev
scripts/build-stub-image.sh >/dev/null

work=$(mktemp -d /tmp/mtp-sim10k.XXXX)
pids=()
cleanup() {
  set +e
  for k in $(seq 1 "$ENGINES"); do
    sock=$work/e$k/docker.sock
    if [ -S "$sock" ]; then
      ids=$(docker -H "unix://$sock" ps -aq 2>/dev/null)
      [ -n "$ids" ] && echo "$ids" | xargs -r -n 200 docker -H "unix://$sock" rm -f -v >/dev/null 2>&1
      docker -H "unix://$sock" network prune -f >/dev/null 2>&1
    fi
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  for k in $(seq 1 "$ENGINES"); do
    ip link del "mtpsim$k" 2>/dev/null
    umount -R "$work/e$k/exec" 2>/dev/null
    umount -R "$work/e$k/data" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== starting $ENGINES dockerds" >&2
for k in $(seq 1 "$ENGINES"); do
  d=$work/e$k
  mkdir -p "$d"
  o=$((OCTET + k))
  ip -4 route show | grep -q "^10\.$o\." && { echo "sim10k.sh: 10.$o.0.0/16 is routed here already; set OCTET" >&2; exit 1; }
  ip link del "mtpsim$k" 2>/dev/null || true
  ip link add name "mtpsim$k" type bridge
  ip addr add "10.$o.255.1/24" dev "mtpsim$k"
  ip link set "mtpsim$k" up
  dockerd -H "unix://$d/docker.sock" --data-root "$d/data" --exec-root "$d/exec" \
    --pidfile "$d/docker.pid" --bridge "mtpsim$k" --iptables=false --debug \
    --default-address-pool "base=10.$o.0.0/17,size=24" >/dev/null 2>"$d/dockerd.log" &
  pids+=($!)
done
for k in $(seq 1 "$ENGINES"); do
  for _ in $(seq 1 240); do docker -H "unix://$work/e$k/docker.sock" info >/dev/null 2>&1 && break; sleep 0.25; done
  docker -H "unix://$work/e$k/docker.sock" info >/dev/null 2>&1 || { tail -5 "$work/e$k/dockerd.log" >&2; exit 1; }
done
docker save "$IMAGE" > "$work/image.tar"
# Wait for the loads alone: a bare `wait` would also wait for the dockerds, started in the
# background from this shell, and never return.
loads=()
for k in $(seq 1 "$ENGINES"); do docker -H "unix://$work/e$k/docker.sock" load -q < "$work/image.tar" >/dev/null & loads+=($!); done
for p in "${loads[@]}"; do wait "$p"; done

# The fleet: PER tenants on each engine, ports per host (the same ports on every host), each
# host's subnet pool its own; and the one-engine fleet: PER tenants on engine 1 alone.
export MTP_AGE_IDENTITY=$work/identity.txt NO_COLOR=1
fleet_toml() { # NAME HOSTS
  local name=$1 hosts=$2
  printf '[fleet]\nname = "%s"\ndata_root = "%s/data-%s"\n\n' "$name" "$work" "$name"
  printf '[defaults]\nimage = "%s"\nmemory = "1g"\ncpus = 0.1\npids_limit = 64\nstop_timeout = "2s"\n' "$IMAGE"
  printf 'health = { interval = "60s", timeout = "10s", retries = 3, start_period = "0s", gate_timeout = "180s" }\n\n'
  if [ "$hosts" -gt 0 ]; then
    for k in $(seq 1 "$hosts"); do
      printf '[hosts.e%d]\nendpoint = "unix://%s/e%d/docker.sock"\nmemory = "%dg"\nsubnet_pool = "10.%d.0.0/16"\n\n' "$k" "$work" "$k" $((PER + 8)) $((OCTET + k))
    done
  fi
  python3 - "$hosts" "$PER" <<'PY'
import sys
hosts, per = int(sys.argv[1]), int(sys.argv[2])
out = []
for h in range(1, max(hosts, 1) + 1):
    for i in range(per):
        t = f"e{h}-t{i:04}" if hosts else f"t{i:04}"
        out.append(f"[tenants.{t}]\nport = {20000 + i}\nenabled = false\n" + (f'host = "e{h}"\n' if hosts else ""))
print("\n".join(out))
PY
}
mkdir -p "$work/big" "$work/one"
fleet_toml sim10k "$ENGINES" > "$work/big/fleet.toml"
fleet_toml sim1 0 > "$work/one/fleet.toml"

# Secrets: one gateway token per tenant, each with its `# review:` line, as `mtp secrets
# gen` sets it (in one process: the fingerprint key is decrypted once, not 11,000 times).
echo "== $((ENGINES * PER + PER)) gateway tokens" >&2
for f in big one; do
  (cd "$work/$f" && "$MTP" secrets init >/dev/null 2>&1 && "$CREATE" fleet.toml tokens) | sed 's/^/   /' >&2
done

echo "== creating $((ENGINES * PER)) + $PER containers (not started)" >&2
t0=$(date +%s)
(cd "$work/big" && "$CREATE" fleet.toml "$PARALLEL" no-networks) | sed 's/^/   /' >&2
(cd "$work/one" && DOCKER_HOST="unix://$work/e1/docker.sock" "$CREATE" fleet.toml "$PARALLEL" no-networks) | sed 's/^/   /' >&2
echo "   in $(( $(date +%s) - t0 )) s" >&2

# API requests of one plan, per engine, from the engines' debug logs.
calls() { grep -c 'Calling [A-Z]* /' "$1" || true; }
count_plan() { # DIR [DOCKER_HOST]
  local dir=$1 before=() k
  for k in $(seq 1 "$ENGINES"); do before[$k]=$(calls "$work/e$k/dockerd.log"); done
  (cd "$dir" && DOCKER_HOST=${2:-} "$MTP" plan --no-preflight >/dev/null)
  sleep 1
  for k in $(seq 1 "$ENGINES"); do echo -n "$(( $(calls "$work/e$k/dockerd.log") - before[$k] )) "; done
  echo
}
one_calls=$(count_plan "$work/one" "unix://$work/e1/docker.sock")
big_calls=$(count_plan "$work/big")
echo "Docker API requests of one plan, per engine (e1 .. e$ENGINES):" >&2
echo "   one-engine fleet of $PER tenants (on e1): $one_calls" >&2
echo "   $ENGINES-engine fleet of $((ENGINES * PER)) tenants:  $big_calls" >&2
[ "$(echo "$one_calls" | awk '{print $1}')" -gt 0 ] || { echo "no requests counted: is --debug logging?" >&2; exit 1; }
per_engine=$(echo "$big_calls" | tr ' ' '\n' | grep . | sort -u)
[ "$(echo "$per_engine" | wc -l)" = 1 ] && [ "$per_engine" = "$(echo "$one_calls" | awk '{print $1}')" ] \
  && echo "   each engine: $per_engine requests, as the one-engine fleet's engine" >&2 \
  || echo "   NOT EQUAL: see above" >&2

# HOLD=FILE: keep the engines up while FILE exists (to profile against them by hand).
if [ -n "${HOLD:-}" ]; then
  touch "$HOLD"
  echo "== holding while $HOLD exists: fleets in $work/big and $work/one" >&2
  while [ -e "$HOLD" ]; do sleep 2; done
fi
(cd "$work/big" && MTP_TIMINGS=1 "$MTP" plan --no-preflight >/dev/null) 2>&1 | sed 's/^/   /' >&2
# The engines' own share, side by side: the one request of a plan that grows with the fleet
# (each engine's list of the fleet's containers, as mtp asks for it), sent to every engine at
# once by curl, which does nothing with the answers. On one machine the engines share its
# cores with mtp, so this is a floor under the plan's time that no client can go below.
filter=$(python3 -c 'import json,urllib.parse; print(urllib.parse.quote(json.dumps({"label": ["mtp.fleet=sim10k"]})))')
for k in $(seq 1 "$ENGINES"); do
  echo "curl -sf --unix-socket $work/e$k/docker.sock 'http://engine/v1.41/containers/json?all=true&size=false&filters=$filter' -o /dev/null &"
done > "$work/lists.sh"
echo wait >> "$work/lists.sh"
hyperfine -N --warmup 2 --runs "$RUNS" \
  -n "mtp plan ($((ENGINES * PER)) tenants over $ENGINES engines)" "$MTP --fleet $work/big/fleet.toml plan --no-preflight" \
  -n "mtp plan ($PER tenants, one engine)" "env DOCKER_HOST=unix://$work/e1/docker.sock $MTP --fleet $work/one/fleet.toml plan --no-preflight" \
  -n "the $ENGINES engines' container lists alone, at once (curl)" "bash $work/lists.sh"
