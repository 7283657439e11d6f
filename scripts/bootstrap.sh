#!/usr/bin/env bash
# Install what qsetup needs on a Debian machine (as root) into a virtualenv.
#   bash scripts/bootstrap.sh
# Debian packages: the sandbox's (debootstrap, systemd-container, tinyproxy, iproute2,
# openssh-client) and python3-venv. Python packages: qsetup exactly as a user installs it
# (`pip install .`, no extras); the test tools live in another virtualenv (scripts/test.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${QSETUP_VENV:-/var/cache/qsetup/venv}"

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
# A local directory is always rebuilt and reinstalled, so the venv holds this checkout.
"$venv/bin/python" -m pip install -q "$here"
echo "qsetup: installed in $venv ($("$venv/bin/qsetup" --version))" >&2
