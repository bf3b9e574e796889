#!/usr/bin/env bash
# Benchmark: `mtp backup` and `mtp restore` of one running stub tenant whose data directory
# holds SIZE_MB of data (incompressible random bytes in 8 MiB files, plus a session .jsonl),
# on the machine's engine. Prints the wall time and throughput of each, the method, and the
# tenant's downtime during the backup (mtp's own report) for the online backup and for one
# that stops the gateway (`--stop`).
#
#   bench/backup.sh                # SIZE_MB=500
#   SIZE_MB=2000 bench/backup.sh
#   MTP=/path/to/mtp bench/backup.sh  # a prebuilt binary (default: a release build)
#
# The fleet (container, network, data, archives) lives in a temp dir removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SIZE_MB=${SIZE_MB:-500}
docker info >/dev/null 2>&1 || { echo "backup.sh: no Docker engine answers" >&2; exit 1; }
MTP=$(mtp_binary)
IMAGE=$(scripts/build-stub-image.sh)
work=$(mktemp -d)
NAME=benchbk$(( $$ % 100000 ))
cleanup() {
  remove_fleet "$NAME"
  rm -rf "$work"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$work/fleet.toml" <<TOML
[fleet]
name = "$NAME"
data_root = "$work/data"
backup_dir = "backups"

[defaults]
image = "$IMAGE"
memory = "1g"
model = "anthropic/m1"
stop_timeout = "5s"
env = { STUB_STARTUP_MS = "200" }
health = { interval = "250ms", timeout = "2s", retries = 2, start_period = "0s", gate_timeout = "30s" }

[tenants.acme]
port = $PORT
TOML
cd "$work"
export MTP_AGE_IDENTITY=$work/identity.txt
"$MTP" secrets init >/dev/null 2>&1
"$MTP" secrets gen acme OPENCLAW_GATEWAY_TOKEN >/dev/null
"$MTP" apply --auto-approve >/dev/null
mkdir -p data/acme/media data/acme/agents/main/sessions
for i in $(seq 1 $(( SIZE_MB / 8 ))); do
  head -c $(( 8 << 20 )) /dev/urandom > "data/acme/media/blob-$i.bin"
done
for i in $(seq 1 20000); do echo "{\"role\":\"user\",\"n\":$i}"; done > data/acme/agents/main/sessions/s.jsonl
# Owned by the uid the tenant's gateway runs as: 200000 + its port.
chown -R $((200000 + PORT)):$((200000 + PORT)) data/acme
BYTES=$(du -sb data/acme | cut -f1)
mb() { python3 -c "print(f'{$1/1048576:.0f}')"; }
rate() { python3 -c "print(f'{$1/1048576/$2:.1f} MiB/s')"; }
now() { date +%s.%N; }
echo "data directory: $(mb "$BYTES") MiB"

t0=$(now); out=$("$MTP" backup --json); t1=$(now)
secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
echo "$out" | python3 -c "import json,sys;b=json.load(sys.stdin)['backups'][0];print(f\"backup (online): {$secs}s, $(rate "$BYTES" "$secs"), method {b['method']}, downtime {b['downtime_ms']} ms, archive {b['archive_bytes']/1048576:.0f} MiB\")"
ARCHIVE=$(echo "$out" | python3 -c "import json,sys;print(json.load(sys.stdin)['backups'][0]['path'])")

t0=$(now); out=$("$MTP" backup acme --stop --json); t1=$(now)
secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
echo "$out" | python3 -c "import json,sys;b=json.load(sys.stdin)['backups'][0];print(f\"backup (--stop): {$secs}s, $(rate "$BYTES" "$secs"), method {b['method']}, downtime {b['downtime_ms']} ms\")"

t0=$(now); "$MTP" restore acme "$ARCHIVE" --yes --json > restore.json; t1=$(now)
secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
python3 -c "import json;r=json.load(open('restore.json'));print(f\"restore: {$secs}s, $(rate "$BYTES" "$secs"), tenant down {r['downtime_ms']} ms, previous data {r['previous_data']}\")"
