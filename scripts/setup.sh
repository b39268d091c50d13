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
command -v jq >/dev/null || missing+=(jq)
command -v openssl >/dev/null || missing+=(openssl)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)   # tests run their own sshd in a namespace
[ -x /usr/sbin/slapd ] || missing+=(slapd)           # tests run a throwaway slapd
command -v ldapsearch >/dev/null || missing+=(ldap-utils)
command -v pamtester >/dev/null || missing+=(pamtester)   # node PAM tests
command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
[ -x /usr/bin/chromium ] || missing+=(chromium)              # browser tests of the portal (headless)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)   # Selenium drives it, no download
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    # Packages must not start daemons here (openssh-server would listen on port 22):
    # a policy-rc.d that says "no" while we install, unless the machine has its own.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        own_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$own_policy" && chmod 755 "$own_policy"
        trap 'rm -f "$own_policy"' EXIT
    fi
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
