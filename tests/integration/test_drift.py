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


def _status_lines(site: Site) -> tuple[int, list[str]]:
    code, data, _ = site.status()
    return code, list(data["problems"])


def test_status_and_check_name_the_same_hand_made_drifts_and_one_deploy_fixes_them(
    site: Site,
) -> None:
    """Each kind of hand-made drift: status exits 3 naming it, ``deploy --check`` lists the
    same difference, one deploy fixes it, status is healthy again. A ``qsetup-*`` unit
    qsetup never installed is named by both and left by the deploy."""
    inv = site.loaded().inventory
    (apt_group, apt_host, apt_unit), (pip_group, pip_host, pip_unit) = [
        next(w for w in site.worker_units() if w[0] == g.name)
        for g in sorted(inv.workers, key=lambda g: g.install)
    ]
    assert (inv.workers[0].install, inv.workers[1].install) in (("apt", "pip"), ("pip", "apt"))
    broker = inv.broker.host
    app_user = inv.app.broker_user
    env_file = f"/etc/qsetup/worker-{apt_group}.env"
    venv = f"/opt/qsetup/venvs/{pip_group}"
    stray = "qsetup-stray.service"
    site.ssh(apt_host, f"echo 'X_HAND=1' >> {env_file}", check=True)
    site.ssh(apt_host, f"systemctl stop {apt_unit}", check=True)
    site.ssh(pip_host, f"systemctl disable -q {pip_unit} && rm -rf {venv}", check=True)
    site.ssh(
        pip_host,
        f"printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/{stray}"
        f" && systemctl daemon-reload && systemctl start {stray}",
        check=True,
    )
    site.ssh(broker, f"rabbitmqctl -q change_password {app_user} changed-by-hand", check=True)
    site.ssh(broker, "rabbitmqctl -q delete_user flower-monitor", check=True)
    site.ssh(
        broker,
        "rabbitmqctl -q set_policy -p proj celery-limits '^celery' '{\"max-length\":5}' "
        "--apply-to queues",
        check=True,
    )
    expected = {
        f"{apt_host}: {env_file}: content differs",
        f"{apt_host}: unit {apt_unit}: inactive (dead)",
        f"{pip_host}: unit {pip_unit}: disabled",
        f"{pip_host}: {venv}: missing",
        f"{pip_host}: unit {stray}: unexpected",
        f"{broker}: broker password '{app_user}': differs",
        f"{broker}: broker user 'flower-monitor': missing",
        f"{broker}: broker policy 'proj/celery-limits': differs",
    }

    code, problems = _status_lines(site)
    assert code == 3
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)

    rc, check = site.deploy("--check")
    assert rc == 0, check["failures"]
    lines = {f"{d['host']}: {d['object']}: {d['detail']}": d["fix"] for d in check["differences"]}
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, sorted(lines))
    # status and --check agree line for line on what the hosts hold
    host_lines = {p for p in problems if "worker node" not in p and "cannot broadcast" not in p}
    assert host_lines <= set(lines), sorted(host_lines - set(lines))
    assert [f for line, f in lines.items() if stray in line] == ["leave"]
    assert site.unit(pip_host, pip_unit)["UnitFileState"] == "disabled"  # --check changed nothing

    rc, data = site.deploy()
    assert rc == 0, data["failures"]
    wait_for_ping(site)
    code, problems = _status_lines(site)
    assert [p for p in problems if stray not in p] == [], problems
    assert any(stray in p for p in problems), problems  # left, and still named
    assert site.unit(pip_host, stray)["ActiveState"] == "active"

    site.ssh(
        pip_host,
        f"systemctl stop {stray}; rm /etc/systemd/system/{stray}; systemctl daemon-reload",
        check=True,
    )
    code, problems = _status_lines(site)
    assert (code, problems) == (0, [])
    rc, data = site.deploy()
    assert rc == 0 and data["ansible_ran"] is False, data
