#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas up to
# this admin-tools version; safe to run again (what exists is kept).
set -eu
export SQL_PLUGIN=postgres12 SQL_HOST="${SQL_HOST:-postgresql}" SQL_PORT="${SQL_PORT:-5432}"
schema="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12"   # the admin-tools image's copy
for db in temporal temporal_visibility; do
  # An existing database is fine (PostgreSQL says "already exists"); any
  # other failure (sign-in, connection) is shown as it is and stops here.
  if ! out=$(SQL_DATABASE=$db temporal-sql-tool create-database 2>&1); then
    case "$out" in
      *"already exists"*) echo "database $db exists" ;;
      *) printf 'create database %s: %s\n' "$db" "$out" >&2; exit 1 ;;
    esac
  fi
done
SQL_DATABASE=temporal temporal-sql-tool setup-schema -v 0.0
SQL_DATABASE=temporal temporal-sql-tool update-schema -d "$schema/temporal/versioned"
SQL_DATABASE=temporal_visibility temporal-sql-tool setup-schema -v 0.0
SQL_DATABASE=temporal_visibility temporal-sql-tool update-schema -d "$schema/visibility/versioned"
