#!/bin/sh
# Start PostgreSQL; on an empty data directory, first create the cluster with the
# superuser POSTGRES_USER (password POSTGRES_PASSWORD) and the database POSTGRES_DB.
# Any other command (psql, pg_isready, sh) runs as given.
set -eu

if [ "${1:-postgres}" != "postgres" ]; then
    exec "$@"
fi
shift || true

: "${PGDATA:=/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

# Started as root (a volume mounted over the data directory may belong to root):
# hand the directories to postgres, then run this script again as postgres.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "stagecraft-postgres: POSTGRES_PASSWORD is empty: set it to initialise $PGDATA" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    # Local (socket) connections are trusted: only processes inside this container
    # reach the socket. Over TCP every client gives the password.
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >&2
    rm -f "$pwfile"
    trap - EXIT
    {
        echo "host all all 0.0.0.0/0 scram-sha-256"
        echo "host all all ::/0 scram-sha-256"
    } >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != "postgres" ]; then
        # Single-user mode: nothing listens while the database is created, so a
        # healthcheck cannot pass before initialisation is complete.
        quoted="$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')"
        echo "CREATE DATABASE \"$quoted\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "stagecraft-postgres: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)" >&2
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -c port=5432 "$@"
