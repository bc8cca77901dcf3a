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
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
