#!/usr/bin/env bash
# A local PostgreSQL server for the tests of the shared ground archive: installs Debian's
# postgresql when missing, starts its cluster, and makes the `kestrel` role and `kestrel_test`
# database. Prints the URL the tests use (KESTREL_TEST_POSTGRES).
set -euo pipefail

# Only the URL goes to stdout: the tools print notices there (pg_ctlcluster's "Removed stale pid
# file." once broke the URL), so all their output goes to stderr. Not through a saved descriptor:
# the server would inherit it and keep the caller's $(...) open forever.
{
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "setup-postgres: installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q postgresql >/dev/null
  fi
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
    pg_createcluster "$version" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
    pg_ctlcluster "$version" main start
  fi
  port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.2
  done
  pg_isready -q -h 127.0.0.1 -p "$port" || { echo "setup-postgres: the server does not answer" >&2; exit 1; }

  as_postgres() { su postgres -c "$1 -p $port"; }
  if [ "$(as_postgres "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='kestrel'\"")" != "1" ]; then
    as_postgres "psql -qc \"CREATE ROLE kestrel LOGIN PASSWORD 'kestrel'\""
  fi
  # the end-to-end tests make a database of their own for each run
  as_postgres "psql -qc \"ALTER ROLE kestrel CREATEDB\""
  # a fresh database each time: every test and benchmark run leaves its schemas behind, and an
  # archive grown over hundreds of runs is not the one the benchmarks mean to measure
  su postgres -c "dropdb -p $port --if-exists --force kestrel_test"
  su postgres -c "createdb -p $port -O kestrel kestrel_test"
} >&2
echo "postgres://kestrel:kestrel@127.0.0.1:$port/kestrel_test"
