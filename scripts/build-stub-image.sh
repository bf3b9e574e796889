#!/usr/bin/env bash
# Builds the stub gateway image (tests/stub-gateway) FROM scratch and prints its tag.
#
#   scripts/build-stub-image.sh          # -> mtp-stub-gateway:<content hash>
#
# The stub is linked statically (crt-static on the gnu target) and installed as both
# /usr/local/bin/node and /usr/local/bin/openclaw-stub, so the gateway's own start command
# (`node dist/index.js gateway --bind lan --port 18789`) and healthcheck (`node -e "fetch(...)"`)
# work unchanged. Like upstream's image it bundles the `codex` plugin, as a minimal
# `/app/dist/extensions/codex/`: the `openclaw.plugin.json` manifest (`"id": "codex"`) the
# gateway looks for, and a `package.json`. With an `openai/*` model the stub, like the real
# gateway, does not start without it (exit 78, `gateway.maintenance_required`).
# The image is cached by the hash of the binary and this script: a second run only re-checks
# the build. Besides the hash tag it tags:
#   mtp-stub-gateway:dev           the example fleet's image
#   mtp-stub-gateway:dev-b         the same files as another image id (tests switch images with it)
#   mtp-stub-gateway:dev-nocodex   without the codex plugin (as an image of the npm package
#                                  alone): `openai/*` models do not start in it
# Safe to run concurrently (test processes do): builds are serialised by a lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="$ROOT/target/stub-static"
mkdir -p "$CARGO_TARGET_DIR"

exec 9>"$CARGO_TARGET_DIR/build.lock"
flock 9

docker info >/dev/null 2>&1 || { echo "build-stub-image.sh: no Docker engine answers" >&2; exit 1; }

RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -q -p stub-gateway --bin openclaw-stub --target "$TARGET" >&2
BIN="$CARGO_TARGET_DIR/$TARGET/release/openclaw-stub"
VERSION=$("$BIN" --version)

HASH=$(cat "$BIN" "$0" | sha256sum | cut -c1-12)
TAG="mtp-stub-gateway:$HASH"
NOCODEX="mtp-stub-gateway:$HASH-nocodex"

# build_image <tag> <bundle codex: 1|0>
build_image() {
  local ctx
  ctx=$(mktemp -d)
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/app/dist/extensions" "$ctx/rootfs/home/node/.openclaw" "$ctx/rootfs/tmp"
  cp "$BIN" "$ctx/rootfs/usr/local/bin/openclaw-stub"
  ln "$ctx/rootfs/usr/local/bin/openclaw-stub" "$ctx/rootfs/usr/local/bin/node"
  echo "// the stub gateway stands in for the openclaw gateway; node is the stub" > "$ctx/rootfs/app/dist/index.js"
  printf '{"name":"openclaw","version":"%s","type":"module"}\n' "$VERSION" > "$ctx/rootfs/app/package.json"
  if [ "$2" = 1 ]; then
    local codex="$ctx/rootfs/app/dist/extensions/codex"
    mkdir -p "$codex"
    printf '{"id":"codex","name":"Codex","description":"Codex app-server harness (stand-in: the stub gateway checks only that it is here).","categories":["agent-runtimes"],"providers":["codex"]}\n' \
      > "$codex/openclaw.plugin.json"
    printf '{"name":"@openclaw/codex","version":"%s","type":"module"}\n' "$VERSION" > "$codex/package.json"
  fi
  chmod 1777 "$ctx/rootfs/tmp"
  cat > "$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY --chown=1000:1000 rootfs/ /
ENV PATH=/usr/local/bin HOME=/home/node OPENCLAW_DISABLE_BONJOUR=1
USER 1000:1000
WORKDIR /app
EXPOSE 18789
CMD ["node", "dist/index.js", "gateway", "--bind", "lan", "--port", "18789"]
EOF
  if ! DOCKER_BUILDKIT=0 docker build -q -t "$1" "$ctx" >/dev/null 2>"$ctx/err"; then
    cat "$ctx/err" >&2
    rm -rf "$ctx"
    exit 1
  fi
  rm -rf "$ctx"
}

docker image inspect "$TAG" >/dev/null 2>&1 || build_image "$TAG" 1
docker image inspect "$NOCODEX" >/dev/null 2>&1 || build_image "$NOCODEX" 0
docker tag "$TAG" mtp-stub-gateway:dev
docker tag "$NOCODEX" mtp-stub-gateway:dev-nocodex
if [ "$(docker image inspect mtp-stub-gateway:dev-b --format '{{index .Config.Labels "org.mtp.stub"}}' 2>/dev/null)" != "$HASH" ]; then
  printf 'FROM %s\nLABEL org.mtp.variant=b org.mtp.stub=%s\n' "$TAG" "$HASH" |
    DOCKER_BUILDKIT=0 docker build -q -t mtp-stub-gateway:dev-b - >/dev/null 2>/dev/null
fi
echo "$TAG"
