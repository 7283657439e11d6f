#!/usr/bin/env bash
# Install what qsetup needs on a Debian machine (as root) into a virtualenv.
#   bash scripts/bootstrap.sh [--test]
# Debian packages: the sandbox's (debootstrap, systemd-container, tinyproxy, iproute2,
# openssh-client) and python3-venv. Python packages: qsetup and, with --test, its test tools.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${QSETUP_VENV:-/var/cache/qsetup/venv}"
extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"

debs=(debootstrap systemd-container tinyproxy iproute2 openssh-client ca-certificates)
python3 -c 'import venv, ensurepip' 2>/dev/null || debs+=(python3-venv)
missing=()
for pkg in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "qsetup: missing Debian packages; run as root: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "qsetup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q "${here}${extras}"
echo "qsetup: installed in $venv ($("$venv/bin/qsetup" --version))" >&2
