# Shared by the benchmarks: removing everything a throwaway fleet made.

# remove_fleet FLEET: its containers (by label and by name), patch-record volumes, networks
# (the admin's and every tenant's, by label).
remove_fleet() {
  local fleet=$1 ids vols nets
  ids=$({ docker ps -aq --filter "label=mtp.fleet=$fleet"; docker ps -aq --filter "name=^/$fleet[-.]"; } | sort -u)
  [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
  vols=$(docker volume ls -q --filter "label=mtp.fleet=$fleet")
  [ -n "$vols" ] && docker volume rm -f $vols >/dev/null 2>&1
  nets=$(docker network ls -q --filter "label=mtp.fleet=$fleet")
  [ -n "$nets" ] && docker network rm $nets >/dev/null 2>&1
  docker network rm "$fleet-net" >/dev/null 2>&1 || true
}
