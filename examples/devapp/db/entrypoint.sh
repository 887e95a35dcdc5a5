#!/bin/sh
# devapp's database: stagecraft/postgres plus first-start seeding.
#
# stagecraft/postgres creates the cluster, the superuser POSTGRES_USER and the
# database POSTGRES_DB when the data directory is empty, but runs no init scripts.
# This wrapper adds that: the *.sql files of /docker-entrypoint-initdb.d run once,
# in name order and all in one transaction, against a temporary server that listens
# on a private socket only (no TCP), so neither clients nor the healthcheck see the
# database before it is seeded. A marker file in the data directory records that
# they ran; a failed seed leaves no marker and runs again at the next start.
set -eu

BASE_ENTRYPOINT=/usr/local/bin/stagecraft-postgres
INITDB_DIR=/docker-entrypoint-initdb.d

# Any other command (psql, pg_isready, sh) runs as given.
if [ "${1:-postgres}" != "postgres" ]; then
    exec "$BASE_ENTRYPOINT" "$@"
fi
shift || true

: "${PGDATA:=/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
marker="$PGDATA/devapp-seeded"

# Started as root: hand the directories to postgres (as the base entrypoint does),
# then run this script again as postgres.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -e "$marker" ]; then
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        # The base entrypoint initialises the empty data directory, then runs
        # `postgres -D ... <our arguments>`; with -C, postgres prints one setting
        # and exits instead of serving. So this initialises and returns.
        "$BASE_ENTRYPOINT" postgres -C data_directory >/dev/null
    fi
    sockdir="$(mktemp -d)"
    stop_temporary_server() {
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$sockdir"
    }
    trap stop_temporary_server EXIT
    pg_ctl -D "$PGDATA" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories=$sockdir" start >&2
    files="$(find "$INITDB_DIR" -maxdepth 1 -name '*.sql' -type f | sort)"
    if [ -n "$files" ]; then
        echo "devapp-db: seeding $POSTGRES_DB from $(echo "$files" | tr '\n' ' ')" >&2
        # shellcheck disable=SC2086 # one file name per word (no spaces in them)
        cat $files | psql --no-psqlrc -q -v ON_ERROR_STOP=1 --single-transaction \
            -h "$sockdir" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f - >&2
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >&2
    trap - EXIT
    rm -rf "$sockdir"
    touch "$marker"
    echo "devapp-db: seeded $POSTGRES_DB" >&2
fi

exec "$BASE_ENTRYPOINT" postgres "$@"
