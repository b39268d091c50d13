#!/usr/bin/env bash
# Make sure a PostgreSQL server runs here (install, create or start a cluster as needed),
# that root may connect over the local socket, and print an SQLAlchemy URL for it.
# The test suite creates (and drops) its own databases through that URL.
set -euo pipefail

if ! command -v pg_lsclusters >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
fi
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    pg_createcluster "$version" main >&2
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n1)
if [ "$status" != "online" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2 \
        || pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 50); do
    pg_isready -q -h /var/run/postgresql -p "$port" && break
    sleep 0.2
done
if ! runuser -u postgres -- psql -p "$port" -Atqc \
        "SELECT 1 FROM pg_roles WHERE rolname = 'root'" postgres | grep -q 1; then
    runuser -u postgres -- createuser -p "$port" --superuser root >&2
fi
echo "postgresql+psycopg://root@/postgres?host=/var/run/postgresql&port=$port"
