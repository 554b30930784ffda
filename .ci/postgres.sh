# Start a local PostgreSQL server for the tests and export MESOSTATS_TEST_POSTGRES_URL.
# Sourced by .ci/run (`source .ci/postgres.sh`); also usable by hand on a developer machine.
# Debian's `postgresql` package is installed when missing; its default cluster is started as
# the `postgres` user and listens on localhost only. A role and a database named
# mesostats_test are (re)created with a random password made for this run (nothing secret is
# kept in the repository).
pg_start=$(date +%s)
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pg_version=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
if [ -z "$pg_version" ]; then
    pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_createcluster "$pg_version" main >/dev/null
fi
pg_cluster=$(pg_lsclusters --no-header | awk -v v="$pg_version" '$1 == v {print $2; exit}')
pg_port=$(pg_lsclusters --no-header | awk -v v="$pg_version" '$1 == v {print $3; exit}')
if ! pg_lsclusters --no-header | awk -v v="$pg_version" '$1 == v {print $4; exit}' | grep -q online; then
    pg_ctlcluster "$pg_version" "$pg_cluster" start -- -o "-c listen_addresses=localhost"
fi
pg_password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
su postgres -c "psql -q -p $pg_port -v ON_ERROR_STOP=1" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesostats_test') THEN
    CREATE ROLE mesostats_test LOGIN;
  END IF;
END \$\$;
ALTER ROLE mesostats_test PASSWORD '$pg_password';
SQL
if ! su postgres -c "psql -tA -p $pg_port -c \"SELECT 1 FROM pg_database WHERE datname = 'mesostats_test'\"" | grep -q 1; then
    su postgres -c "createdb -p $pg_port -O mesostats_test mesostats_test"
fi
export MESOSTATS_TEST_POSTGRES_URL="postgresql+psycopg://mesostats_test:${pg_password}@127.0.0.1:${pg_port}/mesostats_test"
echo "PostgreSQL $pg_version ready on 127.0.0.1:$pg_port in $(( $(date +%s) - pg_start )) s"
