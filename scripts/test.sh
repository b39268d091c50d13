#!/usr/bin/env bash
# The whole test suite: lint, then every test on SQLite and on a real PostgreSQL server.
# Extra arguments go to pytest (e.g. -k membership, --backends sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
XOS_TEST_PG_URL=$(bash scripts/postgres.sh)
export XOS_TEST_PG_URL
.venv/bin/ruff check vo_service ca xos_tokens xos_net xos_login xos_node pam_module nss_plugin web tests bench
.venv/bin/python -m pytest --cov=vo_service --cov-branch --cov-report=term:skip-covered --durations=30 "$@"
