#!/usr/bin/env bash
# Install everything, then run the VO service on its SQLite default with a demo VO.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XOS_INSTANCE_PATH=${XOS_INSTANCE_PATH:-$PWD/instance}
port=${PORT:-8080}
.venv/bin/xos-vo db upgrade 2>/dev/null
key=$(.venv/bin/xos-vo demo)
cat <<TXT

XOS identity VO service (demo VO "demo", SQLite at $XOS_INSTANCE_PATH/xos.sqlite3)
  URL:       http://127.0.0.1:$port/api/v1/   (OpenAPI: /api/v1/openapi.json)
  admin:     xosadmin (service admin)
  API key:   $key
  try:       curl -H "Authorization: Bearer $key" http://127.0.0.1:$port/api/v1/vos/demo
Stop with Ctrl-C.
TXT
exec .venv/bin/gunicorn --bind "127.0.0.1:$port" --workers 1 --access-logfile - \
    'vo_service:create_app()'
