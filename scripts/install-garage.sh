#!/usr/bin/env bash
# Garage, the S3-compatible store the backup repository tests start on loopback (tests whose
# name holds `_s3_`): built from crates.io once per machine, skipped when one is installed
# (`garage` on PATH, cargo's bin dir, or $MTP_GARAGE).
#
#   scripts/install-garage.sh              # installs it (waits for a build already running)
#   scripts/install-garage.sh --background # starts the build and returns; callers then wait
#                                          # with a plain `scripts/install-garage.sh`
#
# The build takes minutes (363 s here, niced, beside a test run; a release build took 44 min
# beside other builds), so it runs niced and, from .ci/run and scripts/test.sh, in the
# background while the other tests run. A debug build: it compiles far faster than a release
# one and is fast enough for a test's few megabytes. One
# build per machine at a time (flock); its log is /tmp/mtp-garage-install.log.
set -euo pipefail
VERSION=2.5.0
LOCK=/tmp/mtp-garage-install.lock
LOG=/tmp/mtp-garage-install.log

have() {
  [ -n "${MTP_GARAGE:-}" ] && [ -x "$MTP_GARAGE" ] && return 0
  command -v garage >/dev/null && return 0
  [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]
}

build() {
  exec 9>"$LOCK"
  flock 9
  have && return 0
  echo "install-garage.sh: building garage $VERSION from crates.io (once per machine; log $LOG)" >&2
  nice -n 19 cargo install garage --version "$VERSION" --locked --debug --no-default-features \
    --features bundled-libs,lmdb >"$LOG" 2>&1 || { tail -20 "$LOG" >&2; return 1; }
}

if have; then exit 0; fi
if [ "${1:-}" = --background ]; then
  ( build ) </dev/null >/dev/null 2>&1 &
  exit 0
fi
build
