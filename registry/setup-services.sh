#!/usr/bin/env bash
# Services the full test suite needs, from Debian's packages: PostgreSQL (for the team
# registry server tests) and chromium + chromium-driver (for the headless UI test).
# Idempotent and fast when already done: installs only what is missing, starts the
# cluster only when it is down, creates the role/database zoo/zoo only when absent.
# Run as root (Debian's pg_ctlcluster then runs the server as the postgres user).
set -euo pipefail

PG_USER="${ZOO_PG_USER:-zoo}"
PG_PASSWORD="${ZOO_PG_PASSWORD:-zoo}"
PG_DB="${ZOO_PG_DB:-zoo}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-services: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The newest installed PostgreSQL major version and its first cluster.
PG_VERSION="$(ls /usr/lib/postgresql | sort -n | tail -1)"
PG_CLUSTER="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v {print $2; exit}')"
if [ -z "$PG_CLUSTER" ]; then
    PG_CLUSTER=main
    as_root pg_createcluster "$PG_VERSION" "$PG_CLUSTER"
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c {print $4}' | grep -q online; then
    echo "setup-services: starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
fi

psql_root() { as_root su postgres -c "psql -v ON_ERROR_STOP=1 -qAt -c \"$1\""; }
for _ in $(seq 1 30); do psql_root "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
if [ "$(psql_root "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != "1" ]; then
    # CREATEDB: the test suite creates and drops a fresh database per session.
    psql_root "CREATE USER $PG_USER WITH PASSWORD '$PG_PASSWORD' CREATEDB;"
fi
if [ "$(psql_root "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
    psql_root "CREATE DATABASE $PG_DB OWNER $PG_USER;"
fi
echo "setup-services: PostgreSQL $PG_VERSION/$PG_CLUSTER up (postgresql://$PG_USER:***@127.0.0.1:5432/$PG_DB); chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')"
