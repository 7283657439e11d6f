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

# qsetup as the README's first command installs it (`pip install .`, no extras): the
# integration tier drives that installed `qsetup`, so a dependency missing from
# [project.dependencies] fails here as it would for a user.
bash scripts/bootstrap.sh
export QSETUP_BIN="$venv/bin/qsetup"

# Test tools (pytest, hypothesis, ruff, mypy, ...) in their own virtualenv, with this
# checkout importable for the unit tier.
test_venv="${QSETUP_TEST_VENV:-/var/cache/qsetup/test-venv}"
[[ -x "$test_venv/bin/python" ]] || python3 -m venv "$test_venv"
"$test_venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$test_venv/bin/python" -m pip install -q -e ".[test]"
export PATH="$test_venv/bin:$PATH"

echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
# The Python under playbooks/, strict too; action_plugins/ apart (its modules share
# their names with library/'s).
mypy playbooks/filter_plugins playbooks/library playbooks/module_utils \
    playbooks/vars_plugins playbooks/strategy_plugins
mypy playbooks/action_plugins
echo "== ansible-lint"; ansible-lint playbooks/site.yml playbooks/restart.yml
echo "== yamllint"; yamllint --strict playbooks

run_pytest() {
    # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
    local rc=0
    pytest "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then echo "no tests collected for: $*" >&2; return 1; fi
    return $rc
}

echo "== unit tests"; run_pytest tests/unit -q
if [[ "$tier" == "all" ]]; then
    # Two sandboxes at once: test_cluster and test_tls boot hosts of their own
    # (harness.SEPARATE: own names, subnet, bridge), so a second pytest runs them beside
    # the rest, with its own temporary directory. Much of their time is waiting (a node
    # powered off, a task stream, a beat lock's timeout), so on 2 cores this cuts the
    # tier's wall time; its output follows the main run's.
    side_log="$(mktemp)"
    side_tmp="$(mktemp -d)"
    side=(tests/integration/test_cluster.py tests/integration/test_tls.py)
    # A background job of a non-interactive bash starts with SIGINT ignored, and Python
    # keeps an ignored SIGINT: neither Ctrl-C nor the trap below reached the side run,
    # whose fixtures then never brought its hosts down. So it is pytest itself (no
    # subshell between), with Python's own SIGINT handler put back.
    "$(dirname "$(command -v pytest)")/python" -c 'import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.main(sys.argv[1:]))' "${side[@]}" -m integration -q -p no:cacheprovider \
        --basetemp="$side_tmp/t" --durations=20 >"$side_log" 2>&1 &
    side_pid=$!
    # Interrupted: the side run gets SIGINT too, so its fixtures bring its hosts down.
    trap 'kill -INT "$side_pid" 2>/dev/null || true' INT TERM
    rc=0
    # --durations: where CI's minutes go (fixtures that boot and deploy count with their first test).
    echo "== integration tests (sandbox hosts; ${side[*]} beside them)"
    run_pytest tests/integration -m integration -q --durations=30 \
        --ignore="${side[0]}" --ignore="${side[1]}" || rc=1
    # The core behaviours again on Debian 13 hosts (first deploy, what the inventory drops
    # leaving hosts and broker, a bad push, the rolling gate, self-healing units);
    # test_trixie and test_cluster already run their own Debian 13 hosts.
    echo "== integration tests on Debian 13 hosts (core modules)"
    QSETUP_TEST_RELEASE=trixie run_pytest -m integration -q tests/integration/test_deploy.py \
        tests/integration/test_converge.py tests/integration/test_self_healing.py || rc=1
    side_rc=0
    wait "$side_pid" || side_rc=$?
    echo "== integration tests run beside: ${side[*]} (exit $side_rc)"
    # pytest exits 5 when it collected nothing: a failure here too.
    [[ $side_rc -ne 5 ]] || echo "no tests collected for: ${side[*]}" >&2
    cat "$side_log"
    rm -rf "$side_log" "$side_tmp"
    [[ $side_rc -eq 0 ]] || rc=1
    exit $rc
fi
