#!/usr/bin/env bash
# Benchmark: `mtp plan` on a converged fleet of N stub gateway containers.
#
#   bench/plan.sh                                  # SIZES="10 100 1000", compose up to 100
#   MTP=target/release/mtp SIZES=1000 bench/plan.sh
#   COMPOSE_MAX=0 SIZES=1000 bench/plan.sh         # mtp only
#
# Targets: mtp plan under 0.5 s at 1,000 tenants, and at least 20x faster than compose.
# Timed with hyperfine (installed from Debian if missing). MTP names a prebuilt binary
# (default: `cargo build --release`).
#
# Up to RUN_MAX tenants (default 100) the fleet runs: `mtp apply --parallel` (Docker health
# only) makes it, and up to COMPOSE_MAX a compose project of the same services (same image,
# command, healthcheck, limits, labels, published ports) is timed doing nothing beside it
# (`docker-compose up -d --no-recreate`; compose v1 needs ~15 s per service past ~100).
# Past RUN_MAX the containers are created and not started (1,000 running gateways would
# load the machine more than the plan being timed): every tenant is declared disabled, and
# examples/bench_create.rs makes each container and network exactly as apply would (same
# specs, labels, subnets), so the plan is of a converged fleet and must say so (exit 0 with
# --detailed-exitcode). The fleets are 1g stubs on a host declaring memory for them
# (bench/lib.sh's host_table), their networks in a /16 pool of the bench's own (4096 /28s). Everything made is removed at the end, also on
# failure or Ctrl-C: containers, volumes, networks.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SIZES=${SIZES:-"10 100 1000"}
COMPOSE_MAX=${COMPOSE_MAX:-100}
RUN_MAX=${RUN_MAX:-100}
RUNS=${RUNS:-10}
PREFIX=${PREFIX:-benchpl}

docker info >/dev/null 2>&1 || { echo "plan.sh: no Docker engine answers" >&2; exit 1; }
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
MTP=$(mtp_binary)
CREATE=$(bench_create_binary)
scripts/build-stub-image.sh >/dev/null

work=$(mktemp -d)
cleanup() {
  for n in $SIZES; do
    [ -f "$work/$n/compose.yml" ] && docker-compose -p "${PREFIX}c$n" -f "$work/$n/compose.yml" down -v -t 1 >/dev/null 2>&1 || true
    remove_fleet "$PREFIX$n"
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

export MTP_AGE_IDENTITY=$work/identity.txt NO_COLOR=1
HEALTH='["CMD", "node", "-e", "fetch('"'"'http://127.0.0.1:18789/readyz'"'"').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]'
printf '%-6s  %-22s  %-22s  %s\n' size "mtp plan (s)" "compose no-op (s)" "compose / mtp" > "$work/table.txt"

for N in $SIZES; do
  dir=$work/$N
  mkdir -p "$dir"
  fleet=$PREFIX$N
  {
    printf '[fleet]\nname = "%s"\ndata_root = "%s/data"\n\n' "$fleet" "$dir"
    host_table local "$N" 125
    printf '[defaults]\nhost = "local"\nimage = "mtp-stub-gateway:dev"\nmemory = "1g"\ncpus = 0.1\npids_limit = 64\nstop_timeout = "2s"\n'
    printf 'env = { STUB_STARTUP_MS = "100" }\n'
    printf 'health = { interval = "60s", timeout = "10s", retries = 3, start_period = "0s", gate_timeout = "180s" }\n\n'
    enabled=true
    if [ "$N" -gt "$RUN_MAX" ]; then enabled=false; fi
    for i in $(seq 1 "$N"); do printf '[tenants.t%04d]\nport = %d\nenabled = %s\n\n' "$i" $((30000 + i)) "$enabled"; done
  } > "$dir/fleet.toml"
  export MTP_FLEET=$dir/fleet.toml
  "$MTP" secrets init >/dev/null 2>&1
  # Each tenant's gateway token with its `# review:` line, as `mtp secrets gen` sets it.
  (cd "$dir" && "$CREATE" fleet.toml tokens >/dev/null)

  echo "== $N tenants: creating the mtp fleet ($(free -g | awk '/Mem:/ {print $7}') GiB available)" >&2
  t0=$(date +%s)
  if [ "$N" -gt "$RUN_MAX" ]; then
    # Created, not started: the tenants are disabled, so this is the converged fleet.
    (cd "$dir" && "$CREATE" fleet.toml "${PARALLEL:-8}" >"$dir/create.log" 2>&1) || { tail -5 "$dir/create.log" >&2; exit 1; }
    sed 's/^/   /' "$dir/create.log" >&2
  else
    # A bounded number of starts at once: dockerd times out when hundreds start together on
    # two cores. A tenant that failed anyway is created by the next round.
    ok=
    for round in 1 2 3; do
      if (cd "$dir" && "$MTP" apply --auto-approve --docker-health-only --parallel "${PARALLEL:-40}" --lock-ttl 2h >"$dir/apply.log" 2>&1); then ok=1; break; fi
    done
    if [ -z "$ok" ]; then
      echo "apply at $N did not finish; the machine held $(docker ps -q --filter "label=mtp.fleet=$fleet" --filter status=running | wc -l) running containers" >&2
      tail -5 "$dir/apply.log" >&2
      break
    fi
  fi
  echo "   created in $(( $(date +%s) - t0 )) s" >&2
  (cd "$dir" && "$MTP" plan --detailed-exitcode >/dev/null) || { echo "plan at $N is not empty after apply" >&2; exit 1; }
  (cd "$dir" && MTP_TIMINGS=1 "$MTP" plan >/dev/null) 2>&1 | sed 's/^/   /' >&2

  cmds=("cd $dir && $MTP plan --detailed-exitcode")
  names=("mtp plan")
  if [ "$N" -le "$COMPOSE_MAX" ] && [ "$N" -le "$RUN_MAX" ]; then
    # The same services as a compose file, as the seed's generator writes them.
    {
      echo 'version: "2.4"'
      echo 'services:'
      for i in $(seq 1 "$N"); do
        t=$(printf 't%04d' "$i")
        mkdir -p "$dir/cdata/$t" && echo '{ gateway: { mode: "local", bind: "lan", auth: { mode: "token" } } }' > "$dir/cdata/$t/openclaw.json"
        cat <<EOF
  $t:
    image: mtp-stub-gateway:dev
    command: ["node", "dist/index.js", "gateway", "--bind", "lan", "--port", "18789"]
    environment: { OPENCLAW_GATEWAY_TOKEN: "bench-$t", STUB_STARTUP_MS: "100" }
    ports: ["127.0.0.1:$((32000 + i)):18789"]
    volumes: ["$dir/cdata/$t:/home/node/.openclaw"]
    user: "1000:1000"
    init: true
    cap_drop: [ALL]
    security_opt: [no-new-privileges]
    mem_limit: 128m
    cpus: 0.1
    pids_limit: 64
    restart: unless-stopped
    labels: { tenant: "$t" }
    healthcheck: { test: $HEALTH, interval: 60s, timeout: 10s, retries: 3 }
EOF
      done
    } > "$dir/compose.yml"
    chown -R 1000:1000 "$dir/cdata"
    echo "   creating the compose project" >&2
    t0=$(date +%s)
    # Compose v1 (1.29, Python 3.11) was seen to deadlock for good (every thread on a futex)
    # creating ~100 services in one `up`; it is created ten services at a time instead, each
    # batch retried after a timeout. The timed no-op below is one plain `up` of everything.
    services=$(seq -f 't%04g' 1 "$N")
    for batch in $(echo $services | xargs -n 10 | tr ' ' ','); do
      ok=
      for attempt in 1 2 3; do
        if timeout 180 docker-compose -p "${PREFIX}c$N" -f "$dir/compose.yml" up -d ${batch//,/ } >>"$dir/compose.log" 2>&1; then ok=1; break; fi
      done
      [ -n "$ok" ] || { tail -5 "$dir/compose.log" >&2; exit 1; }
    done
    echo "   created in $(( $(date +%s) - t0 )) s" >&2
    cmds+=("docker-compose -p ${PREFIX}c$N -f $dir/compose.yml up -d --no-recreate")
    names+=("compose no-op")
  fi

  # Let the creation storm settle (dockerd, shims, the kernel's network setup) before timing.
  for _ in $(seq 1 "${SETTLE_S:-120}"); do
    awk '{ exit !($1 < 4) }' /proc/loadavg && break
    sleep 1
  done
  echo "   machine before timing: load average $(cut -d' ' -f1-3 /proc/loadavg), $(docker ps -q | wc -l) containers running" >&2
  args=()
  for k in "${!cmds[@]}"; do args+=(-n "${names[$k]} ($N)" "${cmds[$k]}"); done
  hyperfine --warmup 2 --runs "$RUNS" --export-json "$dir/hyperfine.json" "${args[@]}" >&2
  python3 - "$N" "$dir/hyperfine.json" >> "$work/table.txt" <<'PY'
import json, sys
n, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))["results"]
fmt = lambda x: f"{x['mean']:.3f} ± {x['stddev']:.3f}"
mtp = r[0]
if len(r) > 1:
    c = r[1]
    print(f"{n:<6}  {fmt(mtp):<22}  {fmt(c):<22}  {c['mean'] / mtp['mean']:.0f}x")
else:
    print(f"{n:<6}  {fmt(mtp):<22}  {'(not run)':<22}  -")
PY
  # Free the machine for the next size.
  [ -f "$dir/compose.yml" ] && docker-compose -p "${PREFIX}c$N" -f "$dir/compose.yml" down -v -t 1 >/dev/null 2>&1 || true
  remove_fleet "$fleet"
done

echo
cat "$work/table.txt"
