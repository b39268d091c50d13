#!/usr/bin/env bash
# Install everything XOS identity needs on a Debian machine (run as root). Safe to re-run:
# system packages only when missing, the virtual environment only when pyproject changed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

stamp=.venv/.xos-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip >&2
    .venv/bin/pip install -q -e '.[test]' >&2
    echo "$want" > "$stamp"
fi
