# Shared by the benchmarks: the mtp binary they time, a host table that passes the capacity
# check, and removing everything a throwaway fleet made.

# mtp_binary: the binary to time, printed as an absolute path: $MTP when given (a prebuilt
# binary: `MTP=target/release/mtp bench/plan.sh`), else a release build of this tree.
mtp_binary() {
  if [ -n "${MTP:-}" ]; then
    [ -x "$MTP" ] || { echo "MTP=$MTP is not an executable" >&2; return 1; }
    realpath "$MTP"
  else
    cargo build --release --bin mtp -q >&2
    echo "$PWD/target/release/mtp"
  fi
}

# bench_create_binary: examples/bench_create (creates a fleet's containers as apply would,
# without starting them), $CREATE when given, else a release build of this tree.
bench_create_binary() {
  if [ -n "${CREATE:-}" ]; then
    realpath "$CREATE"
  else
    cargo build --release --example bench_create -q >&2
    echo "$PWD/target/release/examples/bench_create"
  fi
}

# host_table NAME N OCTET [ENDPOINT]: a `[hosts.NAME]` table for N stub tenants of 1g on
# ENDPOINT (default: the engine the docker CLI uses): memory declared for them (a stub idles
# at a few MiB), and a subnet pool of the bench's own, 10.OCTET.0.0/16 in /28s (4,096
# networks), so the capacity check passes and no other fleet's pool is drawn on.
host_table() {
  local name=$1 n=$2 octet=$3 endpoint=${4:-${DOCKER_HOST:-unix:///var/run/docker.sock}}
  [ "$n" -le 4000 ] || { echo "host_table: $n tenants need more networks than a /16 holds in /28s" >&2; return 1; }
  printf '[hosts.%s]\nendpoint = "%s"\nmemory = "%dg"\nsubnet_pool = "10.%d.0.0/16"\nsubnet_size = 28\n\n' \
    "$name" "$endpoint" $((n + 8)) "$octet"
}

# remove_fleet FLEET: its containers (by label and by name), patch-record volumes, networks
# (the admin's and every tenant's, by label, a hundred at a time); says what it could not
# remove.
remove_fleet() {
  local fleet=$1 ids vols left
  ids=$({ docker ps -aq --filter "label=mtp.fleet=$fleet"; docker ps -aq --filter "name=^/$fleet[-.]"; } | sort -u)
  [ -z "$ids" ] || echo "$ids" | xargs -r -n 100 docker rm -f -v >/dev/null 2>&1 || true
  vols=$(docker volume ls -q --filter "label=mtp.fleet=$fleet")
  [ -z "$vols" ] || echo "$vols" | xargs -r -n 100 docker volume rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=mtp.fleet=$fleet" | xargs -r -n 100 docker network rm >/dev/null 2>&1 || true
  docker network rm "$fleet-net" >/dev/null 2>&1 || true
  left=$(docker network ls --format '{{.Name}}' --filter "label=mtp.fleet=$fleet" | wc -l)
  [ "$left" -eq 0 ] || echo "remove_fleet: $left network(s) of $fleet left on the engine" >&2
  return 0
}
