#!/usr/bin/env bash
# The test suite: unit, property, snapshot and CLI tests, and end-to-end tests against the
# real Docker engine with the stub gateway image. Fails loudly when no engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x ../shared/docker-up.sh ]; then
  bash ../shared/docker-up.sh
fi
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: no Docker engine answers (docker info failed); the end-to-end tests need one." >&2
  exit 1
fi

cargo nextest run --workspace --no-fail-fast "$@"
