#!/usr/bin/env bash
# Benchmark: the keyless, engineless review of a pull request touching N tenants
# (`mtp plan --against base`, every tenant's image bumped: N recycles), against
# `mtp validate` of the same head (reading and checking the same files), side by side in one
# hyperfine run. No engine and no identity: DOCKER_HOST points at nothing, HOME is empty.
#
#   bench/review.sh            # N=1000
#   N=200 RUNS=5 bench/review.sh
#   MTP=target/release/mtp bench/review.sh   # a prebuilt binary (default: cargo build --release)
#
# The fleet is made once in a throwaway git repository: N tenants, each with a generated
# gateway token set through `mtp secrets gen` (so each has its `# review:` fingerprint).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
RUNS=${RUNS:-10}

command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
if [ -z "${MTP:-}" ]; then
  cargo build --release --bin mtp -q
  MTP=$PWD/target/release/mtp
fi
MTP=$(realpath "$MTP")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q -b main
mkdir -p secrets keys home
python3 - "$N" <<'EOF'
import sys
n = int(sys.argv[1])
out = ['[fleet]\nname = "benchrv"\ndata_root = "/srv/benchrv"\n\n[defaults]\nimage = "gw:1"\nsecrets = []\n']
for i in range(n):
    out.append(f'[tenants.customer-{i:04}]\nport = {20000 + i}\n')
open("fleet.toml", "w").write("\n".join(out))
EOF
# The setup's identity: the example's demo identity (public, never for real secrets). The
# review itself never sees it.
cp "$OLDPWD/demo-identity.txt" keys/id.txt
grep -m1 'public key:' keys/id.txt | sed 's/.*public key: //' > secrets/recipients.txt
export MTP_AGE_IDENTITY=$work/keys/id.txt
for i in $(seq -f '%04g' 0 $((N - 1))); do
  "$MTP" secrets gen "customer-$i" >/dev/null 2>&1
done
printf 'keys/\nhome/\nout/\n' > .gitignore
git add -A && git -c user.name=b -c user.email=b@b commit -q -m base && git tag base
sed -i 's/image = "gw:1"/image = "gw:2"/' fleet.toml
git -c user.name=b -c user.email=b@b commit -qam "everyone on gw:2"
unset MTP_AGE_IDENTITY

export DOCKER_HOST=unix:///nonexistent/docker.sock HOME=$work/home NO_COLOR=1
"$MTP" plan --against base --format markdown --markdown-dir out >/dev/null
echo "review of $N tenants: $(ls out | wc -l) comment part(s), $(cat out/*.md | wc -c) bytes" >&2
hyperfine -N --warmup 2 --runs "$RUNS" \
  -n "mtp plan --against base ($N tenants, markdown)" "$MTP plan --against base --format markdown --markdown-dir out" \
  -n "mtp plan --against base ($N tenants, human)" "$MTP plan --against base" \
  -n "mtp validate ($N tenants)" "$MTP validate"
