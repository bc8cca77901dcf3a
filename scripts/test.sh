#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: set-up, build of the real binaries that the
# end-to-end tests start, then the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/setup.sh
scripts/setup-browser.sh
KESTREL_TEST_POSTGRES=$(scripts/setup-postgres.sh)
export KESTREL_TEST_POSTGRES
# an HTTP test holds 1,100 sockets open: the soft open-file limit up to the hard one
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
