#!/usr/bin/env bash
# Benchmark: backups into a restic repository (`[backup] repository`) of one running tenant
# whose data directory holds SIZE_MB of data (incompressible random bytes in 8 MiB files, plus
# a session .jsonl): the first backup, a second after a 1 KiB change (incremental), and
# `mtp restore TENANT latest`. Prints for each the wall time, throughput, what the repository
# grew by (the bytes sent to the store) and mtp's peak resident memory (/usr/bin/time).
#
#   bench/backup_repo.sh                                   # SIZE_MB=500, the stub gateway
#   MTP=target/release/mtp SIZE_MB=500 bench/backup_repo.sh
#   REAL=1 bench/backup_repo.sh                            # the real gateway's image
#                                                          # ($MTP_REAL_IMAGE, else built)
#
# The repository is a local path (the store's own speed left out: what is measured is mtp
# reading the tenant, chunking, deduplicating, compressing and encrypting). The fleet
# (container, network, data, repository) lives in a temp dir removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SIZE_MB=${SIZE_MB:-500}
docker info >/dev/null 2>&1 || { echo "backup_repo.sh: no Docker engine answers" >&2; exit 1; }
MTP=$(mtp_binary)
if [ -n "${REAL:-}" ]; then
  IMAGE=${MTP_REAL_IMAGE:-$(scripts/build-real-gateway-image.sh)}
  DEFAULTS='memory = "2g"
cpus = 1.0
stop_timeout = "30s"
model = "anthropic/claude-sonnet-4-5"'
else
  IMAGE=$(scripts/build-stub-image.sh)
  DEFAULTS='memory = "1g"
model = "anthropic/m1"
stop_timeout = "5s"
env = { STUB_STARTUP_MS = "200" }
health = { interval = "250ms", timeout = "2s", retries = 2, start_period = "0s", gate_timeout = "30s" }'
fi
work=$(mktemp -d)
NAME=benchrp$(( $$ % 100000 ))
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

[defaults]
image = "$IMAGE"
$DEFAULTS

[backup]
repository = "$work/repo"

[tenants.acme]
port = $PORT
TOML
cd "$work"
export MTP_AGE_IDENTITY=$work/identity.txt
"$MTP" secrets init >/dev/null 2>&1
"$MTP" secrets gen acme OPENCLAW_GATEWAY_TOKEN >/dev/null
"$MTP" secrets gen _fleet BACKUP_PASSWORD >/dev/null
"$MTP" apply --auto-approve >/dev/null
mkdir -p data/acme/media data/acme/agents/main/sessions
for i in $(seq 1 $(( SIZE_MB / 8 ))); do
  head -c $(( 8 << 20 )) /dev/urandom > "data/acme/media/blob-$i.bin"
done
for i in $(seq 1 20000); do echo "{\"role\":\"user\",\"n\":$i}"; done > data/acme/agents/main/sessions/s.jsonl
# Owned by the uid the tenant's gateway runs as: 200000 + its port.
chown -R $((200000 + PORT)):$((200000 + PORT)) data/acme
BYTES=$(du -sb data/acme | cut -f1)
repo_bytes() { du -sb repo 2>/dev/null | cut -f1 || echo 0; }
# timed LABEL CMD...: runs CMD under /usr/bin/time, prints the line for LABEL.
timed() {
  local label=$1; shift
  local before after
  before=$(repo_bytes)
  /usr/bin/time -f "%e %M %U %S" -o time.txt "$@" > out.txt
  after=$(repo_bytes)
  read -r secs rss user sys < time.txt
  python3 - "$label" "$secs" "$rss" "$user" "$sys" "$BYTES" "$before" "$after" <<'PY'
import sys
label, secs, rss, user, sys_, data, before, after = sys.argv[1:]
secs, data = float(secs), int(data)
grew = int(after) - int(before)
print(f"{label}: {secs:.2f} s, {data / 1048576 / secs:.1f} MiB/s of the tenant's "
      f"{data / 1048576:.0f} MiB, repository +{grew:,} bytes, mtp peak RSS "
      f"{int(rss) / 1024:.1f} MiB, CPU {float(user):.2f} s user + {float(sys_):.2f} s sys")
PY
}
echo "image $IMAGE; data directory $(( BYTES / 1048576 )) MiB; load $(cut -d' ' -f1-3 /proc/loadavg)"
timed "first backup" "$MTP" backup acme
printf 'a 1 KiB note: %1000s\n' x >> data/acme/agents/main/sessions/s.jsonl
timed "second backup (1 KiB changed)" "$MTP" backup acme
"$MTP" backup --list | tail -n +1 | head -5
timed "restore latest" "$MTP" restore acme latest --yes
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
