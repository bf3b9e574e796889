#!/usr/bin/env bash
# Benchmark: the CPU a running tenant's health probe costs, per tenant-hour, before and after
# `health.running_interval` and the `node:net` probe, on the real gateway image. Target: at
# most 0.2 % of a core.
#
#   MTP=target/release/mtp bench/probe_cpu.sh                  # DURATION=600 COUNT=2
#   DURATION=120 COUNT=1 IMAGE=mtp-openclaw-real:2026.9.6-605cec75 bench/probe_cpu.sh
#
# One throwaway fleet, applied by mtp, 4 x COUNT tenants of the same image and config, side
# by side on one engine:
#   p5-*    before: the `fetch` probe mtp rendered before (`OLD_PROBE`), run by the engine every 5 s
#           (`running_interval = "5s"`, what `health.interval` alone gave)
#   f30-*   the same `fetch` probe every 30 s (the default `running_interval`)
#   p30-*   after: what mtp renders now (its default `node:net` probe, every 30 s)
#   idle-*  the baseline: `running_interval = "24h"`, so the engine never probes it within
#           the window (on API 1.44+ engines too: its start interval ends with the start
#           period); the gateway's own idle CPU
# Every tenant passed apply's
# health gate. Once all are up, it waits SETTLE seconds, then reads each container's cgroup
# CPU (cpuacct.usage, user and system; a healthcheck exec runs in the container's cgroup)
# at the start and the end of DURATION seconds. Probe cost = a group's mean CPU - the idle
# group's mean CPU, per tenant-hour and as % of one core. Everything it made is removed at
# the end (its fleet's containers, networks and volumes only).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${DURATION:-600}
SETTLE=${SETTLE:-60}
COUNT=${COUNT:-2}
IMAGE=${IMAGE:-${MTP_REAL_IMAGE:-mtp-openclaw-real:2026.9.6-605cec75}}
FLEET=${FLEET:-benchpc}
PORT_BASE=${PORT_BASE:-31740}
PARALLEL=${PARALLEL:-1}  # gateways started at once

docker info >/dev/null 2>&1 || { echo "probe_cpu.sh: no Docker engine answers" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "probe_cpu.sh: no image $IMAGE" >&2; exit 1; }
MTP=$(mtp_binary)

work=$(mktemp -d)
cleanup() {
  remove_fleet "$FLEET"
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
export MTP_AGE_IDENTITY=$work/identity.txt MTP_FLEET=$work/fleet.toml NO_COLOR=1
port=$PORT_BASE
# next_port: sets $port to the next port from PORT_BASE no socket listens on
next_port() {
  port=$((port + 1))
  while ss -Hltn "sport = :$port" | grep -q .; do port=$((port + 1)); done
}
# the default probe mtp rendered before (`fetch`, which loads undici in each probe's node)
OLD_PROBE='["node", "-e", "Promise.all([fetch('"'"'http://127.0.0.1:18789/startupz'"'"'),fetch('"'"'http://127.0.0.1:18789/readyz'"'"').then(r=>r.json()).then(j=>console.log(JSON.stringify({ready:j.ready,failing:j.failing})),()=>{})]).then(([s])=>process.exit(s.ok?0:1),()=>process.exit(1))"]'
tenants=()
{
  printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$FLEET" "$work"
  printf '[hosts.local]\nendpoint = "%s"\nmemory = "%dg"\nsubnet_pool = "10.124.0.0/16"\nsubnet_size = 28\n\n' \
    "${DOCKER_HOST:-unix:///var/run/docker.sock}" $((4 * COUNT * 2 + 4))
  printf '[defaults]\nhost = "local"\nimage = "%s"\nmemory = "2g"\ncpus = 1.0\n' "$IMAGE"
  # a real gateway needs 20-60 s to start on an idle 2-core host, minutes on a busy one
  printf 'health = { start_period = "600s", gate_timeout = "900s" }\n\n'

  for i in $(seq 1 "$COUNT"); do
    for g in p5 f30 p30 idle; do
      t="$g-$i"
      tenants+=("$t")
      next_port
      printf '[tenants.%s]\nport = %d\n' "$t" "$port"
      case $g in
        p5) printf 'health = { command = %s, running_interval = "5s", start_period = "600s", gate_timeout = "900s" }\n' "$OLD_PROBE" ;;
        f30) printf 'health = { command = %s, start_period = "600s", gate_timeout = "900s" }\n' "$OLD_PROBE" ;;
        idle) printf 'health = { running_interval = "24h", start_period = "600s", gate_timeout = "900s" }\n' ;;
      esac
      printf '\n'
    done
  done
} > fleet.toml
"$MTP" secrets init >/dev/null 2>&1
for t in "${tenants[@]}"; do "$MTP" secrets gen "$t" >/dev/null 2>&1; done

echo "starting ${#tenants[@]} real gateways ($IMAGE), $PARALLEL at a time..."
"$MTP" apply --auto-approve --parallel "$PARALLEL" >apply.log 2>&1 || { cat apply.log >&2; exit 1; }

cgroup_of() { echo "/sys/fs/cgroup/cpuacct/docker/$(docker inspect -f '{{.Id}}' "$FLEET-$1")"; }
for t in "${tenants[@]}"; do
  [ -r "$(cgroup_of "$t")/cpuacct.usage" ] || { echo "probe_cpu.sh: no cgroup v1 cpuacct for $FLEET-$t" >&2; exit 1; }
done
# usage (ns), user and system (USER_HZ ticks) of each tenant, one line each
read_cpu() {
  for t in "${tenants[@]}"; do
    cg=$(cgroup_of "$t")
    printf '%s %s %s\n' "$t" "$(cat "$cg/cpuacct.usage")" "$(awk '{printf "%s ", $2}' "$cg/cpuacct.stat")"
  done
}
echo "all healthy; settling ${SETTLE}s, then measuring ${DURATION}s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
sleep "$SETTLE"
read_cpu >t0
load0=$(cut -d' ' -f1-3 /proc/loadavg)
sleep "$DURATION"
read_cpu >t1
load1=$(cut -d' ' -f1-3 /proc/loadavg)
for t in "${tenants[@]}"; do
  printf '%s %s\n' "$t" "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}} {{len .State.Health.Log}}{{else}}none{{end}}' "$FLEET-$t")"
done >health

python3 - "$DURATION" "$(getconf CLK_TCK)" "$load0" "$load1" <<'PY'
import statistics, sys
dur, hz = float(sys.argv[1]), float(sys.argv[2])
def read(p):
    return {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(p)}
t0, t1 = read("t0"), read("t1")
health = {l.split()[0]: l.split()[1] for l in open("health")}
per = {}
print(f"window {dur:.0f} s, load {sys.argv[3]} at its start, {sys.argv[4]} at its end")
print(f"{'tenant':<8} {'health':<9} {'CPU s':>7} {'user':>6} {'sys':>6} {'CPU s/h':>8}")
for t in t0:
    cpu = (t1[t][0] - t0[t][0]) / 1e9
    user, sys_ = (t1[t][1] - t0[t][1]) / hz, (t1[t][2] - t0[t][2]) / hz
    per.setdefault(t.split("-")[0], []).append(cpu)
    print(f"{t:<8} {health.get(t, '?'):<9} {cpu:7.2f} {user:6.2f} {sys_:6.2f} {cpu * 3600 / dur:8.1f}")
idle = statistics.mean(per["idle"]) * 3600 / dur
print()
print(f"idle gateway (no probe in the window): {idle:.1f} CPU s per tenant-hour ({idle / 36:.3f} % of a core)")
print()
print("| probe | CPU s per tenant-hour (all) | probe cost, CPU s per tenant-hour | probe cost, % of a core | per probe |")
print("| --- | --- | --- | --- | --- |")
for g, what, interval in (("p5", "fetch, every 5 s (before)", 5), ("f30", "fetch, every 30 s", 30), ("p30", "node:net, every 30 s (now)", 30)):
    tot = statistics.mean(per[g]) * 3600 / dur
    probe = tot - idle
    print(f"| {what} | {tot:.1f} | {probe:.1f} | {probe / 36:.3f} % | {probe / (3600 / interval) * 1000:.0f} ms |")
PY
