#!/usr/bin/env bash
# Benchmark: `mtp watch` — time from `git push` to applied (minus the gateway's own start and
# health gate), and the idle daemon's resident memory and CPU.
#
#   bench/watch.sh                 # INTERVAL=5s, PUSHES=5, IDLE_S=120
#   IDLE_S=300 bench/watch.sh
#   MTP=/path/to/mtp bench/watch.sh  # a prebuilt binary (default: a release build)
#
# Targets: a push applied within the poll interval + 2 s (excluding the gateway's start);
# idle under 30 MiB resident and near-zero CPU.
#
# A throwaway fleet repository (a bare repo on disk as the remote) with two stub gateway
# tenants; watch follows it. Each push adds a tenant; the latency is from the push to
# /status showing the commit applied, and the tenant's own create time (container start and
# health gate, from watch's log) is subtracted. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
INTERVAL=${INTERVAL:-5s}
PUSHES=${PUSHES:-5}
IDLE_S=${IDLE_S:-120}
FLEET=${FLEET:-benchwt}
PORT=${PORT:-19469}

docker info >/dev/null 2>&1 || { echo "watch.sh: no Docker engine answers" >&2; exit 1; }
MTP=$(mtp_binary)
scripts/build-stub-image.sh >/dev/null

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  remove_fleet "$FLEET"
  cp "$work/watch.log" "${KEEP_LOG:-/dev/null}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

export MTP_AGE_IDENTITY=$work/identity.txt NO_COLOR=1 GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@x
repo=$work/fleet
mkdir -p "$repo" && cd "$repo"
git init -q -b main && git init -q --bare -b main "$work/remote.git" && git remote add origin "$work/remote.git"
printf 'data/\n' > .gitignore
manifest() {
  {
    printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$FLEET" "$work"
    host_table local $((2 + PUSHES)) 124
    printf '[defaults]\nhost = "local"\nimage = "mtp-stub-gateway:dev"\nmemory = "1g"\ncpus = 0.25\nstop_timeout = "5s"\nenv = { STUB_STARTUP_MS = "200" }\n'
    printf 'health = { interval = "500ms", timeout = "5s", retries = 3, start_period = "0s", gate_timeout = "60s" }\n\n'
    for i in $(seq 1 "$1"); do printf '[tenants.t%02d]\nport = %d\n\n' "$i" $((29500 + i)); done
  } > fleet.toml
}
n=2
# The manifest first: `secrets init` writes the recipients it names.
manifest $n
"$MTP" secrets init >/dev/null
for i in $(seq 1 $((n + PUSHES))); do "$MTP" secrets gen "$(printf 't%02d' "$i")" >/dev/null; done
git add -A && git commit -qm "two tenants" && git push -q origin main

"$MTP" watch --repo "$work/remote.git" --state-dir "$work/state" --interval "$INTERVAL" \
  --recheck 5m --listen "127.0.0.1:$PORT" --log-format json 2>"$work/watch.log" &
pid=$!
status() { curl -s "127.0.0.1:$PORT/status"; }
commit_applied() { status | python3 -c "import json,sys; s=json.load(sys.stdin); print(s.get('commit') or '')" 2>/dev/null || true; }
until [ "$(commit_applied)" = "$(git rev-parse HEAD)" ]; do sleep 0.2; done
echo "watch converged the first commit" >&2

echo "push -> applied, $PUSHES pushes, poll interval $INTERVAL:" >&2
lat=()
for k in $(seq 1 "$PUSHES"); do
  n=$((n + 1))
  manifest $n
  git add -A && git commit -qm "tenant $n"
  t0=$(date +%s.%N)
  git push -q origin main
  head=$(git rev-parse HEAD)
  until [ "$(commit_applied)" = "$head" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  tenant=$(printf 't%02d' "$n")
  own=$(python3 - "$work/watch.log" "$tenant" <<'PY'
import json, sys
ms = 0
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("message") == "tenant done" and e.get("tenant") == sys.argv[2]:
        ms = e.get("elapsed_ms", 0)
print(ms)
PY
)
  total=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  excl=$(python3 -c "print(f'{$t1 - $t0 - $own / 1000:.2f}')")
  lat+=("$excl")
  printf '  push %d: %s s total, tenant create (start + health gate) %.2f s, rest %s s\n' "$k" "$total" "$(python3 -c "print($own/1000)")" "$excl" >&2
done

echo "idle for $IDLE_S s..." >&2
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }   # utime + stime, in clock ticks
cpu0=$(ticks)
sleep "$IDLE_S"
cpu1=$(ticks)
rss1=$(ps -o rss= -p "$pid")
python3 - "$INTERVAL" "$IDLE_S" "$rss1" "$cpu0" "$cpu1" "${lat[@]}" <<'PY'
import statistics, sys
import os
hz = os.sysconf("SC_CLK_TCK")
interval, idle, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu = (float(sys.argv[5]) - float(sys.argv[4])) / hz
lat = [float(x) for x in sys.argv[6:]]
print(f"push -> applied minus the tenant's start and gate: mean {statistics.mean(lat):.2f} s, max {max(lat):.2f} s (poll interval {interval})")
print(f"idle watch daemon: {rss / 1024:.1f} MiB resident, {cpu:.2f} s CPU over {idle} s ({100 * cpu / idle:.2f} % of a core)")
PY
