"""Drift on real sandbox hosts: ``deploy --check`` names the hand-edited host and changes
nothing, ``--diff`` shows the edit, and a deploy puts the file back.

The module deploys its own copy of the shared sandbox inventory; its deploy at the end
leaves the hosts as that copy wants them.
"""

from __future__ import annotations

import secrets as pyrandom
from pathlib import Path

import pytest
from harness import SandboxHosts, Site, changed_by_host, deployed_site, wait_for_ping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return deployed_site(sandbox_hosts, Path(tmp_path_factory.mktemp("drift")))


def test_check_reports_a_hand_edit_per_host_and_changes_nothing(site: Site) -> None:
    group, host, _ = site.worker_units()[0]
    unit_file = f"/etc/systemd/system/qsetup-worker-{group}@.service"
    line = f"# hand edit {pyrandom.token_hex(4)}"
    site.ssh(host, f"echo '{line}' >> {unit_file}", check=True)
    edited = site.ssh(host, f"cat {unit_file}", check=True).stdout

    rc, data = site.deploy("--check")
    assert rc == 0, data["failures"]
    changed = changed_by_host(data)
    assert changed[host] > 0, changed
    assert {h: c for h, c in changed.items() if h != host} == dict.fromkeys(
        set(changed) - {host}, 0
    ), changed
    assert site.ssh(host, f"cat {unit_file}", check=True).stdout == edited

    diff = site.qsetup("deploy", "--check", "--diff")
    assert diff.returncode == 0, diff.stdout
    assert f"-{line}" in diff.stdout, diff.stdout[-3000:]
    assert site.ssh(host, f"cat {unit_file}", check=True).stdout == edited

    rc, data = site.deploy()
    assert rc == 0, data["failures"]
    assert line not in site.ssh(host, f"cat {unit_file}", check=True).stdout
    wait_for_ping(site)
