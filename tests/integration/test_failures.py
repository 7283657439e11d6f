"""Hosts that go away, on a sandbox of the module's own (issue 6).

A host powered off before a deploy, or killed in the middle of one, is named in the
result while the other hosts finish; after ``sandbox up`` rebuilds it, the next deploy
converges it and the one after changes nothing. ``qsetup status`` names a powered-off
host unreachable within its timeout. These tests power hosts off and kill them, so the
module boots its own hosts (``harness.SEPARATE["failures"]``) and never touches the
shared ones; every test starts from all hosts up and deployed.
"""

from __future__ import annotations

import json
import secrets as pyrandom
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    SandboxHosts,
    Site,
    changed_by_host,
    deployed_site,
    edit_app_code,
    own_sandbox,
    wait_for,
    wait_for_ping,
)

from qsetup.artifacts.render import code_dir

pytestmark = pytest.mark.integration

DEPLOY_TIMEOUT = 900


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    with own_sandbox("failures", Path(tmp_path_factory.mktemp("failures-hosts"))) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def deployed(hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return deployed_site(hosts, Path(tmp_path_factory.mktemp("failures")))


@pytest.fixture
def site(hosts: SandboxHosts, deployed: Site) -> Site:
    """The module's site with every host up and deployed, whatever a test before left."""
    if "nothing changed" not in hosts.up_again().stdout:
        code, data = deployed.deploy()
        assert code == 0, data["failures"]
        wait_for_ping(deployed)
    return deployed


def converges_again(site: Site, victim: str, unit: str) -> None:
    """After the victim came back: a deploy succeeds, the next changes nothing, all answer."""
    rc, data = site.deploy()
    assert rc == 0, data["failures"]
    rc, data = site.deploy()
    assert rc == 0, data["failures"]
    assert changed_by_host(data) == dict.fromkeys(data["hosts"], 0)
    wait_for_ping(site)
    assert site.unit(victim, unit)["ActiveState"] == "active"


def test_a_host_down_at_deploy_start_is_named_and_converges_later(
    site: Site, hosts: SandboxHosts
) -> None:
    _, victim, unit = site.worker_units()[-1]
    others = [h for h in hosts.names if h != victim]
    edit_app_code(site, f"while {victim} is down {pyrandom.token_hex(4)}")
    hosts.power_off(victim)
    try:
        rc, data = site.deploy()
        assert rc == 3, data
        assert data["hosts"][victim]["unreachable"] is True, data
        assert any(f["host"] == victim for f in data["failures"]), data["failures"]
        for h in others:
            assert data["hosts"][h]["failed"] == 0 and not data["hosts"][h]["unreachable"], data
        marker = (site.app_dir / "proj" / "tasks.py").read_text().splitlines()[-1]
        other_worker = next(h for _, h, _ in site.worker_units() if h != victim)
        tasks_py = f"{code_dir(site.loaded().inventory)}/proj/tasks.py"
        assert marker in site.ssh(other_worker, f"cat {tasks_py}", check=True).stdout
    finally:
        hosts.up_again()
    # `sandbox up` rebuilds a dead host from scratch: nothing of the deploy is left.
    fresh = site.ssh(victim, "ls /etc/systemd/system/ | grep -c '^qsetup-' || true").stdout
    print(f"{victim} after `sandbox up`: {fresh.strip()} qsetup unit files (0 = rebuilt fresh)")
    converges_again(site, victim, unit)


def newest_run_stdout(site: Site, after: set[Path]) -> Path | None:
    runs = site.inventory.parent / ".qsetup" / "runs"
    new = sorted(p for p in runs.iterdir() if p.is_dir() and p not in after)
    return new[-1] / "artifacts" / "run" / "stdout" if new else None


def test_a_host_lost_mid_deploy_is_named_the_others_finish_and_it_converges(
    site: Site, hosts: SandboxHosts
) -> None:
    from qsetup.sandbox.procs import signal_recorded

    _, victim, unit = site.worker_units()[-1]
    others = [h for h in hosts.names if h != victim]
    edit_app_code(site, f"lost mid-deploy {pyrandom.token_hex(4)}")
    before = site.main_pids()
    runs = site.inventory.parent / ".qsetup" / "runs"
    old_runs = set(runs.iterdir())
    rec = hosts.record(victim)
    deploy = site.popen("deploy", "--json")
    try:
        # Kill the host once the run has read the hosts (the preflight passed everywhere
        # and the configure play began: it is between tasks).
        wait_for(
            "the deploy to reach the code",
            lambda: (
                (p := newest_run_stdout(site, old_runs)) is not None
                and p.exists()
                and "Install and configure every host" in p.read_text(errors="replace")
            ),
            120,
            every=0.2,
        )
        assert signal_recorded(rec["leader_pid"], rec["leader_start"], signal.SIGKILL)
        out, err = deploy.communicate(timeout=DEPLOY_TIMEOUT)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    data = json.loads(out)
    try:
        assert deploy.returncode == 3, (data, err)
        assert data["hosts"][victim]["unreachable"] or data["hosts"][victim]["failed"], data
        assert any(f["host"] == victim for f in data["failures"]), data["failures"]
        for h in others:
            assert data["hosts"][h]["failed"] == 0 and not data["hosts"][h]["unreachable"], data
        # The surviving worker host got the new code and was restarted onto it.
        after = {
            f"{u}@{h}": site.unit(h, u)["MainPID"] for _, h, u in site.worker_units() if h != victim
        }
        assert after and all(before[u] != after[u] for u in after), (before, after)
    finally:
        hosts.up_again()
    converges_again(site, victim, unit)


def test_a_powered_off_host_is_unreachable_within_its_timeout(
    site: Site, hosts: SandboxHosts
) -> None:
    # (The next test's `site` fixture boots and deploys the host again.)
    inv = site.loaded().inventory
    victim = inv.workers[-1].hosts[-1]
    assert victim != inv.broker.host
    hosts.power_off(victim)
    wait_for(
        f"{victim} to stop answering SSH",
        lambda: site.ssh(victim, "true", timeout=30).returncode != 0,
        60,
        every=1,
    )
    timeout = 3.0
    code, data, wall = site.status("--timeout", str(timeout))
    assert code == 3
    assert data["hosts"][victim]["reachable"] is False
    assert data["hosts"][victim]["error"]
    assert any(p.startswith(f"{victim}: unreachable") for p in data["problems"]), data["problems"]
    # The check itself is bounded by the timeout (plus the 1 s worker ping running alongside).
    assert data["elapsed_seconds"] <= timeout + 1.5, data["elapsed_seconds"]
    print(f"status with {victim} powered off: {wall:.2f} s wall, {data['elapsed_seconds']} s check")
    for name, host in data["hosts"].items():
        if name == victim:
            continue
        assert host["reachable"] is True, name
        assert host["units"] and all(u["ok"] for u in host["units"].values()), host["units"]
    assert data["broker"]["error"] is None
