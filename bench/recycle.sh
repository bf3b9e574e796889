#!/usr/bin/env bash
# Benchmark: mtp's own time per recycled tenant, excluding the container's start and health
# wait, over N tenants (default 50). Target: under 100 ms per tenant.
#
#   bench/recycle.sh            # N=50
#   N=10 bench/recycle.sh
#   MTP=/path/to/mtp bench/recycle.sh   # a prebuilt binary (default: a release build)
#
# It builds mtp (release) and the stub gateway image (scripts/build-stub-image.sh: tags
# mtp-stub-gateway:dev and :dev-b, two image ids), creates a throwaway fleet of N tenants, applies it, switches the image (so every
# tenant is recycled), applies again with `--report`, and summarises the per-tenant timings
# apply measures itself: elapsed, and the waits in `docker start`, the health gate and
# `docker stop` (the old gateway's drain). mtp's own time = elapsed - start - health - stop
# (the container's start, its health wait and the old gateway's shutdown are the gateway's
# time, not mtp's); the figure counting the stop wait as mtp's is shown beside it, and so is
# the whole rollout's wall time minus every wait, divided by N, which also counts the plan,
# the lock and the work apply does ahead of a tenant (its `.next` container) or behind it
# (removing the replaced container). Everything it made is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${N:-50}
FLEET=${FLEET:-benchrc}

docker info >/dev/null 2>&1 || { echo "recycle.sh: no Docker engine answers" >&2; exit 1; }
MTP=$(mtp_binary)

work=$(mktemp -d)
cleanup() {
  remove_fleet "$FLEET"
  rm -rf "$work"
}
trap cleanup EXIT

# The stub gateway image (tests/stub-gateway), tagged mtp-stub-gateway:dev and :dev-b.
scripts/build-stub-image.sh >/dev/null

cd "$work"
export MTP_AGE_IDENTITY=$work/identity.txt MTP_FLEET=$work/fleet.toml NO_COLOR=1
write_manifest() {
  {
    printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$FLEET" "$work"
    host_table local "$N" 123
    printf '[defaults]\nhost = "local"\nimage = "%s"\nmemory = "1g"\ncpus = 0.25\nstop_timeout = "10s"\nenv = { STUB_STARTUP_MS = "200" }\n' "$1"
    printf 'health = { interval = "500ms", timeout = "5s", retries = 3, start_period = "0s", gate_timeout = "30s" }\n\n'
    for i in $(seq 1 "$N"); do printf '[tenants.t%03d]\nport = %d\n\n' "$i" $((29000 + i)); done
  } > fleet.toml
}
write_manifest mtp-stub-gateway:dev
"$MTP" secrets init >/dev/null 2>&1
for i in $(seq 1 "$N"); do "$MTP" secrets gen "$(printf 't%03d' "$i")" >/dev/null 2>&1; done

echo "creating $N tenants..."
"$MTP" apply --auto-approve --parallel 2 >create.log 2>&1 || { cat create.log >&2; exit 1; }
write_manifest mtp-stub-gateway:dev-b
echo "recycling $N tenants (sequential, health-gated)..."
start=$(date +%s.%N)
"$MTP" apply --auto-approve --report report.json >apply.log 2>&1 || { cat apply.log >&2; exit 1; }
end=$(date +%s.%N)
"$MTP" plan --detailed-exitcode >/dev/null 2>&1 || { echo "plan after apply is not empty" >&2; exit 1; }

python3 - "$N" "$start" "$end" <<'PY'
import json, statistics, sys
n, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
r = json.load(open("report.json"))
rows = [o for o in r["outcomes"] if o["action"] == "recycle" and o["status"] == "done"]
assert len(rows) == n, f"{len(rows)} of {n} recycled"
def stats(name, xs):
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    print(f"  {name:<44} mean {statistics.mean(xs):7.1f}  p50 {statistics.median(xs):7.1f}  p95 {p95:7.1f}  max {xs[-1]:7.1f}")
print(f"recycled {n} tenants in {end - start:.1f} s wall (mtp process, including plan and lock)")
print("per tenant, ms:")
stats("elapsed", [o["elapsed_ms"] for o in rows])
stats("waiting: docker start", [o["waits"]["start_ms"] for o in rows])
stats("waiting: health gate", [o["waits"]["health_ms"] for o in rows])
stats("waiting: docker stop (gateway drain)", [o["waits"]["stop_ms"] for o in rows])
own = [o["own_ms"] for o in rows]
stats("mtp's own (elapsed - start - health - stop)", own)
stats("the same, counting the stop wait as mtp's", [o["elapsed_ms"] - o["waits"]["start_ms"] - o["waits"]["health_ms"] for o in rows])
waits = sum(o["waits"]["start_ms"] + o["waits"]["health_ms"] + o["waits"]["stop_ms"] for o in rows)
print(f"  {'whole rollout: (wall - all waits) / tenants':<44} {((end - start) * 1000 - waits) / n:7.1f}  (everything else mtp did: plan, lock, audit, work done ahead or behind)")
steps = {}
for o in rows:
    for name, ms in o["steps"]:
        if name.startswith("creating "):
            key = "creating <container>.next"
        elif name.endswith("created ahead"):
            key = "<container>.next created ahead (while the tenant before was gated)"
        else:
            key = name
        steps.setdefault(key, []).append(ms)
print("steps of a recycle, mean ms (over the tenants that took the step):")
for name, xs in steps.items():
    print(f"  {name:<44} {statistics.mean(xs):7.1f}  ({len(xs)} tenants)")
print(f"target: mtp's own < 100 ms per tenant: {'met' if statistics.mean(own) < 100 else 'NOT met'} (mean {statistics.mean(own):.1f} ms)")
PY
