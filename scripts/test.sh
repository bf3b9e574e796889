#!/usr/bin/env bash
# The test suite: unit, property, snapshot and CLI tests, and end-to-end tests against the
# real Docker engine with the stub gateway image. Fails loudly when no engine answers.
# Extra arguments go to `cargo nextest run` (e.g. `scripts/test.sh --test apply_actions`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1 && [ -f ../shared/docker-up.sh ]; then
  bash ../shared/docker-up.sh
fi
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: no Docker engine answers (docker info failed); the end-to-end tests need one." >&2
  exit 1
fi

# What the tests use besides Docker: an sshd and ssh-agent on loopback (the ssh:// host tests),
# openssl (TLS certificates for the tcp:// host tests), restic (reads back what the backup
# repository tests wrote), cargo-nextest (the runner), garage (below). Installed when this machine can (root
# with apt-get), else named.
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-agent >/dev/null || missing+=(openssh-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v restic >/dev/null || missing+=(restic)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  else
    echo "test.sh: the tests need ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: cargo-nextest is missing; installing it (cargo install cargo-nextest --locked)" >&2
  cargo install cargo-nextest --locked >&2
fi

# Garage, the S3-compatible store the backup repository tests start on loopback: built from
# crates.io once per machine (scripts/install-garage.sh), in the background while the other
# tests run; the tests that need it (`_s3_` in their name) run after it is there.
scripts/install-garage.sh --background

# Build the stub gateway and Docker proxy images once, up front (tests would otherwise race
# to build them).
MTP_STUB_IMAGE=$(scripts/build-stub-image.sh)
MTP_PROXY_IMAGE=$(scripts/build-docker-proxy-image.sh)
export MTP_STUB_IMAGE MTP_PROXY_IMAGE
echo "stub gateway image: $MTP_STUB_IMAGE, docker proxy image: $MTP_PROXY_IMAGE" >&2

if [ $# -gt 0 ]; then
  # A chosen subset: garage first, in case the subset needs it.
  scripts/install-garage.sh
  cargo nextest run --workspace --no-fail-fast "$@"
  exit
fi
status=0
cargo nextest run --workspace --no-fail-fast -E 'not test(/_s3_/)' || status=$?
# MTP_S3_TESTS=later (set by .ci/run): the caller runs them itself, later, so the garage build
# overlaps more of its run.
if [ "${MTP_S3_TESTS:-}" != later ]; then
  scripts/install-garage.sh
  cargo nextest run --workspace --no-fail-fast -E 'test(/_s3_/)' || status=$?
fi
exit $status
