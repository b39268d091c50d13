#!/usr/bin/env bash
# Install everything, then run the VO service on its SQLite default with a demo VO.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XOS_INSTANCE_PATH=${XOS_INSTANCE_PATH:-$PWD/instance}
port=${PORT:-8080}
export XOS_PUBLIC_URL=${XOS_PUBLIC_URL:-http://127.0.0.1:$port}
# The demo CA's key passphrase: a random one in a 0600 file (give your own in production).
export XOS_CA_PASSPHRASE_FILE=${XOS_CA_PASSPHRASE_FILE:-$XOS_INSTANCE_PATH/ca-passphrase}
mkdir -p "$XOS_INSTANCE_PATH" && chmod 700 "$XOS_INSTANCE_PATH"
if [ ! -s "$XOS_CA_PASSPHRASE_FILE" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 > "$XOS_CA_PASSPHRASE_FILE")
fi
if [ -z "${XOS_SECRET_KEY:-}" ]; then
    # The demo's form-signing secret, made once (every service process must share it).
    [ -s "$XOS_INSTANCE_PATH/secret-key" ] || \
        (umask 077 && head -c 32 /dev/urandom | base64 > "$XOS_INSTANCE_PATH/secret-key")
    XOS_SECRET_KEY=$(cat "$XOS_INSTANCE_PATH/secret-key")
    export XOS_SECRET_KEY
fi
if [ ! -f "$XOS_INSTANCE_PATH/ca/root.pem" ]; then
    .venv/bin/xos-ca init --dir "$XOS_INSTANCE_PATH/ca" --name "XOS Demo" \
        --passphrase-file "$XOS_CA_PASSPHRASE_FILE" >/dev/null
fi
.venv/bin/xos-vo db upgrade 2>/dev/null
key=$(.venv/bin/xos-vo demo)
# The demo researchers' VO password, made once and kept (0600) beside the database.
if [ ! -s "$XOS_INSTANCE_PATH/demo-password" ]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$XOS_INSTANCE_PATH/demo-password")
    for user in alice bob carol; do
        .venv/bin/xos-vo user password "$user" --stdin < "$XOS_INSTANCE_PATH/demo-password" >/dev/null
    done
fi
password=$(cat "$XOS_INSTANCE_PATH/demo-password")
cat <<TXT

XOS identity VO service (demo VO "demo", SQLite at $XOS_INSTANCE_PATH/xos.sqlite3)
  URL:       http://127.0.0.1:$port/api/v1/   (OpenAPI: /api/v1/openapi.json)
  admin:     xosadmin (service admin)
  API key:   $key
  try:       curl -H "Authorization: Bearer $key" http://127.0.0.1:$port/api/v1/vos/demo
  CA:        $XOS_INSTANCE_PATH/ca (root: http://127.0.0.1:$port/ca/root.pem, OCSP: /ocsp)
  portal:    http://127.0.0.1:$port/signin   (alice, bob or carol with the password below)
  login:     .venv/bin/xos-login --url http://127.0.0.1:$port login   (device flow; or --password)
             researchers alice and bob (carol is still pending), password: $password
Stop with Ctrl-C.
TXT
exec .venv/bin/gunicorn --bind "127.0.0.1:$port" --workers 1 --access-logfile - \
    'vo_service:create_app()'
