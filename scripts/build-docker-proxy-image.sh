#!/usr/bin/env bash
# Builds the read-only Docker API proxy (tools/docker-proxy) FROM scratch and prints its tag:
# the image an admin with `docker_socket = "read-only"` talks to the engine through.
#
#   scripts/build-docker-proxy-image.sh      # -> mtp-docker-proxy:<content hash>, also :dev
#
# Statically linked (crt-static on the gnu target): the image holds the one binary. Cached by
# the hash of the binary and this script; safe to run concurrently (a lock file serialises it).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="$PWD/target/stub-static"
mkdir -p "$CARGO_TARGET_DIR"
exec 9>"$CARGO_TARGET_DIR/docker-proxy.lock"
flock 9

docker info >/dev/null 2>&1 || { echo "build-docker-proxy-image.sh: no Docker engine answers" >&2; exit 1; }

RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -q -p docker-proxy --bin mtp-docker-proxy --target "$TARGET" >&2
BIN="$CARGO_TARGET_DIR/$TARGET/release/mtp-docker-proxy"
HASH=$(cat "$BIN" "$0" | sha256sum | cut -c1-12)
TAG="mtp-docker-proxy:$HASH"
if ! docker image inspect "$TAG" >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rootfs"
  cp "$BIN" "$ctx/rootfs/mtp-docker-proxy"
  cat > "$ctx/Dockerfile" <<'EOF2'
FROM scratch
COPY rootfs/ /
EXPOSE 2375
ENTRYPOINT ["/mtp-docker-proxy"]
EOF2
  DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$ctx" >/dev/null 2>"$ctx/err" || { cat "$ctx/err" >&2; exit 1; }
fi
docker tag "$TAG" mtp-docker-proxy:dev
echo "$TAG"
