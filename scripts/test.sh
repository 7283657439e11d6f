#!/usr/bin/env bash
# The test command: installs everything it needs, then runs lint, types, unit and
# integration tiers. Run as root on Debian (the integration tier boots sandbox hosts).
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh unit       # only the fast tier (no root, no hosts)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${QSETUP_VENV:-/var/cache/qsetup/venv}"
tier="${1:-all}"
cd "$here"

bash scripts/bootstrap.sh --test
# The tests run against this checkout (editable), not a copy of it.
"$venv/bin/python" -m pip install -q --no-deps -e . >/dev/null
export PATH="$venv/bin:$PATH"

echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy

run_pytest() {
    # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
    local rc=0
    pytest "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then echo "no tests collected for: $*" >&2; return 1; fi
    return $rc
}

echo "== unit tests"; run_pytest tests/unit -q
if [[ "$tier" == "all" ]]; then
    echo "== integration tests (sandbox hosts)"; run_pytest tests/integration -m integration -q
fi
