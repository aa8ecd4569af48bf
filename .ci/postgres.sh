#!/usr/bin/env bash
# Start a local PostgreSQL for tests/test_postgres.py and print its URL (nothing if impossible).
set -uo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 || exit 0
  else
    exit 0
  fi
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h 2>/dev/null | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null 2>&1
pg_ctlcluster "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null 2>&1 || exit 0
# CREATEDB: each test session creates (and drops) a database of its own (tests/conftest.py)
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='mdm'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE ROLE mdm LOGIN CREATEDB PASSWORD 'mdm'\"" >/dev/null
su postgres -c "psql -q -c 'ALTER ROLE mdm CREATEDB'" >/dev/null
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='mdm_test'\"" | grep -q 1 \
  || su postgres -c "psql -q -c 'CREATE DATABASE mdm_test OWNER mdm'" >/dev/null
echo "postgresql+psycopg://mdm:mdm@127.0.0.1/mdm_test"
