#!/usr/bin/env bash
# Benchmark: `mtp status` on a fleet of N running stub gateway containers, against the seed
# status.sh's way, `docker ps` + `docker stats --no-stream` on the same containers, side by
# side in one hyperfine run; and mtp's peak memory (GNU time's maximum resident set size).
#
#   bench/status.sh                      # N=200
#   N=50 RUNS=5 bench/status.sh
#   MTP=/path/to/mtp N=50 bench/status.sh   # a prebuilt binary (default: a release build)
#   KEEP=1 N=200 bench/status.sh          # leave the fleet up (its directory is printed)
#
# The fleet is made with `mtp apply --parallel` on the machine's engine (its host declared
# with memory for N tenants of 1g and a subnet pool of its own, 10.122.0.0/16, so neither the
# capacity check nor Docker's default pools stop it), and removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${N:-200}
RUNS=${RUNS:-5}
FLEET=${PREFIX:-benchst}$N

docker info >/dev/null 2>&1 || { echo "status.sh: no Docker engine answers" >&2; exit 1; }
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
[ -x /usr/bin/time ] || apt-get install -y -q time >/dev/null
MTP=$(mtp_binary)
scripts/build-stub-image.sh >/dev/null

work=$(mktemp -d)
cleanup() {
  if [ -n "${KEEP:-}" ]; then echo "kept: $work (fleet $FLEET)" >&2; return; fi
  remove_fleet "$FLEET"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
export MTP_AGE_IDENTITY=$work/identity.txt NO_COLOR=1 MTP_FLEET=$work/fleet.toml
{
  printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$FLEET" "$work"
  host_table a "$N" 122
  printf '[defaults]\nhost = "a"\nimage = "mtp-stub-gateway:dev"\nmemory = "1g"\ncpus = 0.1\npids_limit = 64\nstop_timeout = "2s"\n'
  printf 'env = { STUB_STARTUP_MS = "100" }\n'
  printf 'health = { interval = "1s", running_interval = "60s", timeout = "10s", retries = 3, start_period = "0s", gate_timeout = "180s" }\n\n'
  for i in $(seq 1 "$N"); do printf '[tenants.t%04d]\nport = %d\n\n' "$i" $((34000 + i)); done
} > "$MTP_FLEET"
"$MTP" secrets init >/dev/null
for i in $(seq 1 "$N"); do "$MTP" secrets gen "$(printf 't%04d' "$i")" >/dev/null; done
echo "== creating $N tenants" >&2
for round in 1 2 3; do
  (cd "$work" && "$MTP" apply --auto-approve --docker-health-only --parallel "${PARALLEL:-40}" --lock-ttl 2h >"$work/apply.log" 2>&1) && break
done
running=$(docker ps -q --filter "label=mtp.fleet=$FLEET" --filter status=running | wc -l)
echo "   $running running" >&2
[ "$running" -eq "$N" ] || { tail -5 "$work/apply.log" >&2; exit 1; }

/usr/bin/time -v "$MTP" status --json 2>"$work/time.txt" >"$work/status.json"
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u + s}' "$work/time.txt")
echo "mtp status at $N tenants: peak memory $((rss / 1024)) MiB ($rss KiB), CPU ${cpu} s" >&2
# Every running tenant's figures were read: the engine took the reads issued together.
python3 - "$work/status.json" "$N" <<'PY' >&2
import json, sys
rows = json.load(open(sys.argv[1]))["tenants"]
missing = [r["tenant"] for r in rows if r["memory_used"] is None or r["uptime_s"] is None]
print(f"   figures read for {len(rows) - len(missing)} of {len(rows)} tenants")
sys.exit(1 if missing or len(rows) != int(sys.argv[2]) else 0)
PY
hyperfine -N --warmup 1 --runs "$RUNS" \
  -n "mtp status ($N tenants)" "$MTP status" \
  -n "docker ps + docker stats --no-stream ($N containers)" \
  "sh -c 'docker ps --filter label=mtp.fleet=$FLEET >/dev/null && docker stats --no-stream \$(docker ps -q --filter label=mtp.fleet=$FLEET) >/dev/null'"
