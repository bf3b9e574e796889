#!/usr/bin/env bash
# Benchmark: the time of one tenant's create (its network and its container, as apply makes
# them) on an engine that already holds 0, 99 and 249 of the fleet's tenants (moby#53466:
# container create slows down with the number of published ports on the engine).
#
#   MTP=target/release/mtp bench/create.sh                   # SIZES="1 100 250" REPS=20
#   SIZES="1 50" REPS=5 RUNNING=0 bench/create.sh
#
# A throwaway fleet of stub tenants (scripts/build-stub-image.sh), each with its own network
# and one published port. For each size S the engine is brought to S-1 tenants, running
# (`mtp apply --parallel`, health-gated; RUNNING=0: created and not started, by
# examples/bench_create.rs), then the tenant `timed` is created REPS times
# (`bench_create fleet.toml time timed REPS`: its network and container exactly as apply
# makes them, both removed after each create, untimed), and the median and p95 of the create
# are printed, with the network's and the container's share. Running tenants are probed by
# the engine every 300 s (not 30 s), so 249 probes do not load the machine while timing.
# Everything it made is removed at the end (its fleet's containers, networks and volumes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SIZES=${SIZES:-"1 100 250"}
REPS=${REPS:-20}
RUNNING=${RUNNING:-1}
PARALLEL=${PARALLEL:-8}
FLEET=${FLEET:-benchcr}
PORT_BASE=${PORT_BASE:-27000}

docker info >/dev/null 2>&1 || { echo "create.sh: no Docker engine answers" >&2; exit 1; }
MTP=$(mtp_binary)
CREATE=$(bench_create_binary)
max=0
for s in $SIZES; do [ "$s" -gt "$max" ] && max=$s; done

work=$(mktemp -d)
cleanup() {
  remove_fleet "$FLEET"
  rm -rf "$work"
}
trap cleanup EXIT

scripts/build-stub-image.sh >/dev/null 2>&1
cd "$work"
export MTP_AGE_IDENTITY=$work/identity.txt MTP_FLEET=$work/fleet.toml NO_COLOR=1
{
  printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$FLEET" "$work"
  host_table local "$max" 125
  printf '[defaults]\nhost = "local"\nimage = "mtp-stub-gateway:dev"\nmemory = "1g"\ncpus = 0.25\nstop_timeout = "5s"\nenv = { STUB_STARTUP_MS = "200" }\n'
  printf 'health = { interval = "500ms", running_interval = "300s", timeout = "5s", retries = 3, start_period = "0s", gate_timeout = "60s" }\n\n'
  for i in $(seq 1 $((max - 1))); do printf '[tenants.t%03d]\nport = %d\n\n' "$i" $((PORT_BASE + i)); done
  printf '[tenants.timed]\nport = %d\n' "$PORT_BASE"
} > fleet.toml
"$MTP" secrets init >/dev/null 2>&1
"$CREATE" fleet.toml tokens >/dev/null

have=0
for s in $SIZES; do
  want=$((s - 1))
  if [ "$want" -gt "$have" ]; then
    t0=$(date +%s.%N)
    if [ "$RUNNING" = 1 ]; then
      targets=()
      for i in $(seq $((have + 1)) "$want"); do targets+=(--target "$(printf 't%03d' "$i")"); done
      "$MTP" apply --auto-approve --parallel "$PARALLEL" "${targets[@]}" >"apply-$s.log" 2>&1 || { tail -20 "apply-$s.log" >&2; exit 1; }
    else
      # bench_create makes every declared tenant it finds missing: `timed` too, removed again
      "$CREATE" fleet.toml "$PARALLEL" >"create-$s.log" 2>&1 || { tail -5 "create-$s.log" >&2; exit 1; }
      docker rm -f "$FLEET-timed" >/dev/null
      docker network rm "$FLEET-timed-net" >/dev/null
    fi
    echo "engine brought to $want tenants ($([ "$RUNNING" = 1 ] && echo running || echo created)) in $(echo "$(date +%s.%N) - $t0" | bc) s" >&2
    have=$want
  fi
  n=$(docker ps -a -q --filter "label=mtp.fleet=$FLEET" | wc -l)
  up=$(docker ps -q --filter "label=mtp.fleet=$FLEET" | wc -l)
  echo "size $s: $n of the fleet's containers on the engine ($up running), $(docker ps -aq | wc -l) in all, $(docker network ls -q | wc -l) networks; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$CREATE" fleet.toml time timed "$REPS" | sed "s/^/$s /" >>times
done

python3 - "$RUNNING" <<'PY'
import statistics, sys
rows = {}
for line in open("times"):
    size, _, net, ctr = line.split()
    rows.setdefault(int(size), []).append((float(net), float(ctr)))
def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
state = "running" if sys.argv[1] == "1" else "created, not started"
print(f"| tenants on the engine ({state}) | creates | create median | p95 | network median | container median |")
print("| --- | --- | --- | --- | --- | --- |")
for size, r in sorted(rows.items()):
    tot = [n + c for n, c in r]
    print(f"| {size - 1} | {len(r)} | {statistics.median(tot):.1f} ms | {p95(tot):.1f} ms | "
          f"{statistics.median(n for n, _ in r):.1f} ms | {statistics.median(c for _, c in r):.1f} ms |")
PY
