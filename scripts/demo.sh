#!/usr/bin/env bash
# mtp's main job on the example fleet, from a fresh clone: build mtp and the local gateway
# image, then validate, plan, apply, and plan again (which must be empty).
# The example's secrets are encrypted to the committed DEMO-ONLY identity demo-identity.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  if [ -f ../shared/docker-up.sh ]; then bash ../shared/docker-up.sh; fi
fi
docker info >/dev/null 2>&1 || { echo "demo.sh: no Docker engine answers (docker info)" >&2; exit 1; }

cargo build --release --bin mtp
scripts/build-stub-image.sh >/dev/null   # tags mtp-stub-gateway:dev, the example fleet's image

export MTP_FLEET=fleet.example.toml
export MTP_AGE_IDENTITY=demo-identity.txt
mtp=target/release/mtp

set -x
$mtp validate
$mtp plan || true
$mtp apply --auto-approve
$mtp plan --detailed-exitcode
docker ps --filter label=mtp.fleet=example --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
set +x
echo
echo "The example fleet runs. To remove what this made (containers, networks, records; each"
echo "tenant is backed up first into backups/ and its data directory is kept):"
echo "  MTP_FLEET=fleet.example.toml MTP_AGE_IDENTITY=demo-identity.txt $mtp destroy"
