"""qsetup status reads each host with the one read and judges it with the one comparison.

The targets are the deploy's own plan (rendered files, checksums, plan variables); the
facts are what the read returns from a host holding exactly that plan, then changed
the way a person changes a host by hand. Status must be healthy exactly when the
comparison finds nothing, and name each hand-made change in one line.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import py_compile
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from unitdata import (
    BASE_INVENTORY,
    BASE_SECRETS,
    FULL_INVENTORY,
    FULL_SECRETS,
    WriteInventory,
    as_deployed,
    playbook_module,
    rabbit_hash,
)

from qsetup.artifacts.targets import (
    HostPlans,
    host_targets,
    plan_hosts,
    read_params,
    secret_values,
)
from qsetup.artifacts.tls import prepare
from qsetup.converge.target import HostTarget
from qsetup.desired.state import ADMIN_SECRET
from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.status import prefetch
from qsetup.status.hosts import Outcome, assemble_hosts, beat_problems, host_problems
from qsetup.status.model import HostStatus
from qsetup.status.ssh import BOOT, MARK, read_command, read_preamble, ssh_targets


@pytest.fixture
def full(write_inventory: WriteInventory, tmp_path: Path) -> LoadedInventory:
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))


def _plan(loaded: LoadedInventory, tmp_path: Path) -> tuple[HostPlans, dict[str, HostTarget]]:
    material = prepare(loaded.path, loaded.inventory, None, write=False)
    plans = plan_hosts(loaded, material, tmp_path / "app.tar")
    return plans, host_targets(plans)


def _status(
    loaded: LoadedInventory,
    targets: dict[str, HostTarget],
    reads: dict[str, dict[str, Any]],
    same: tuple[str, ...] = (),
) -> dict[str, HostStatus]:
    outcomes = {
        h: Outcome(h, reads.get(h), None if h in reads else "no route to host", same)
        for h in loaded.inventory.hosts
    }
    return assemble_hosts(loaded.inventory, outcomes, targets, secret_values(loaded))


def _problems(hosts: dict[str, HostStatus]) -> list[str]:
    return [p for h in hosts.values() for p in host_problems(h)]


def _deployed(loaded: LoadedInventory, targets: dict[str, HostTarget]) -> dict[str, Any]:
    secrets = secret_values(loaded)
    return {h: as_deployed(t, secrets) for h, t in targets.items()}


def test_a_fleet_as_planned_is_healthy(full: LoadedInventory, tmp_path: Path) -> None:
    _, targets = _plan(full, tmp_path)
    hosts = _status(full, targets, _deployed(full, targets))
    assert _problems(hosts) == []
    assert all(h.differences == () and h.reachable for h in hosts.values())
    assert hosts["mq"].broker_drift == ()
    # the apt group whose app has requirements runs <venv>/bin/python -m celery: status
    # looks for that, never for a <venv>/bin/celery pip does not install there
    assert [b for b, _ in hosts["w1"].celery_versions] == ["/opt/qsetup/venvs/orders/bin/python"]
    assert [u.name for u in hosts["w2"].units] == [
        "qsetup-worker-orders@1.service",
        "qsetup-worker-orders@2.service",
        "qsetup-worker-orders@3.service",
        "qsetup-worker-reports@1.service",
    ]


def _unit(read: dict[str, Any], unit: str, **props: str) -> None:
    read["units"][unit].update(props)


def _file(read: dict[str, Any], path: str) -> dict[str, Any]:
    return next(f for f in read["found"]["files"] if f["path"] == path)


def test_each_change_by_hand_is_one_line_naming_host_and_object(
    full: LoadedInventory, tmp_path: Path
) -> None:
    _, targets = _plan(full, tmp_path)
    reads = _deployed(full, targets)
    w2 = reads["w2"]
    unit_file = next(f.dest for f in targets["w2"].files if f.dest.endswith("@.service"))
    _file(w2, unit_file)["checksum"] = "edited"
    _unit(w2, "qsetup-worker-orders@1.service", UnitFileState="disabled")
    _unit(w2, "qsetup-worker-orders@2.service", ActiveState="inactive", SubState="dead")
    venv = targets["w2"].venvs[0]
    w2["found"]["files"] = [f for f in w2["found"]["files"] if f["path"] != venv.marker]
    env_file = next(f.dest for f in targets["w1"].files if f.dest.endswith(".env"))
    _file(reads["w1"], env_file)["mode"] = "0644"
    problems = _problems(_status(full, targets, reads))
    assert problems == [
        f"w1: {env_file}: mode 0644 owner {_file(reads['w1'], env_file)['pw_name']}:"
        f"{_file(reads['w1'], env_file)['gr_name']}, expected mode "
        f"{next(f.mode for f in targets['w1'].files if f.dest == env_file)} owner "
        f"{_file(reads['w1'], env_file)['pw_name']}:{_file(reads['w1'], env_file)['gr_name']}",
        f"w2: {unit_file}: content differs from what qsetup renders; run qsetup deploy",
        f"w2: {venv.path}: missing; run qsetup deploy",
        "w2: unit qsetup-worker-orders@1.service: disabled; expected enabled (started at boot)",
        "w2: unit qsetup-worker-orders@2.service: inactive (dead); expected active (running)",
    ]


def test_broker_drift_comes_from_the_read_with_passwords_checked(
    full: LoadedInventory, tmp_path: Path
) -> None:
    _, targets = _plan(full, tmp_path)
    reads = _deployed(full, targets)
    defs = reads["mq"]["definitions"]
    shop = next(u for u in defs["users"] if u["name"] == "Shop")
    shop["password_hash"] = rabbit_hash("changed-by-hand")
    defs["policies"][0]["definition"]["message-ttl"] = 1
    hosts = _status(full, targets, reads)
    drift = hosts["mq"].broker_drift
    assert drift is not None
    assert [(d.kind, d.name, d.state) for d in drift] == [
        ("password", "Shop", "differs"),
        ("policy", "shop/ttl", "differs"),
    ]
    # said once, as the broker's lines (check_status puts them in broker.drift)
    assert [p for p in host_problems(hosts["mq"]) if "broker" in p] == []
    assert all(d.fixable for d in hosts["mq"].differences if d.kind == "broker")
    assert FULL_SECRETS["rabbitmq-user-shop"] not in repr(hosts)


def test_units_the_inventory_does_not_put_there(full: LoadedInventory, tmp_path: Path) -> None:
    _, targets = _plan(full, tmp_path)
    reads = _deployed(full, targets)
    w2 = reads["w2"]
    # a beat qsetup never put there (not in its manifest): named and left alone
    w2["discovered"].append("qsetup-beat.service")
    w2["units"]["qsetup-beat.service"] = {
        "Id": "qsetup-beat.service", "LoadState": "loaded", "ActiveState": "active",
        "SubState": "running", "UnitFileState": "enabled",
    }  # fmt: skip
    # a removed unit systemd still lists (not-found): a leftover, how to clear it said
    w2["discovered"].append("qsetup-worker-old@2.service")
    w2["units"]["qsetup-worker-old@2.service"] = {
        "Id": "qsetup-worker-old@2.service", "LoadState": "not-found",
        "ActiveState": "inactive", "SubState": "dead", "UnitFileState": "",
    }  # fmt: skip
    hosts = _status(full, targets, reads)
    kinds = {d.obj: (d.kind, d.fixable) for d in hosts["w2"].differences}
    assert kinds == {
        "unit qsetup-beat.service": ("unmanaged", False),
        "unit qsetup-worker-old@2.service": ("leftover", False),
    }
    lines = host_problems(hosts["w2"])
    assert any("qsetup-beat.service: unexpected" in p and "deploy leaves it" in p for p in lines)
    assert (
        "w2: unit qsetup-worker-old@2.service: left in systemd (not-found, inactive (dead)) "
        "though its unit file is gone and the inventory does not put it on w2; run "
        "`systemctl daemon-reload` and `systemctl reset-failed qsetup-worker-old@2.service` there"
    ) in lines
    assert [(u.name, u.load_state) for u in hosts["w2"].unexpected_units] == [
        ("qsetup-beat.service", "loaded"),
        ("qsetup-worker-old@2.service", "not-found"),
    ]
    assert beat_problems(full.inventory, hosts) == [
        "w1: beat qsetup-beat.service: active on 2 hosts (w1, w2); exactly one may run "
        "(the inventory puts it on w1)"
    ]


def test_hosts_on_one_machine_expect_each_others_units(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded = load_inventory(write_inventory(BASE_INVENTORY, BASE_SECRETS))
    _, targets = _plan(loaded, tmp_path)
    reads = _deployed(loaded, targets)
    # one machine: each read sees every unit of both inventory hosts
    union = {**reads["rabbit1"]["units"], **reads["worker1"]["units"]}
    for read in reads.values():
        read["units"] = dict(union)
        read["discovered"] = sorted(u for u in union if u.startswith("qsetup-"))
    hosts = _status(loaded, targets, reads, same=("rabbit1", "worker1"))
    assert [(h.name, h.unexpected_units) for h in hosts.values()] == [
        ("rabbit1", ()),
        ("worker1", ()),
    ]
    assert not any(
        d.kind in ("unmanaged", "leftover") for h in hosts.values() for d in h.differences
    )


def test_an_unreachable_host_is_one_line(full: LoadedInventory, tmp_path: Path) -> None:
    _, targets = _plan(full, tmp_path)
    reads = _deployed(full, targets)
    del reads["w1"]
    hosts = _status(full, targets, reads)
    assert host_problems(hosts["w1"]) == ["w1: unreachable (w1): no route to host"]


def test_the_read_params_come_from_the_plan_and_hold_the_password_only_on_brokers(
    full: LoadedInventory, tmp_path: Path
) -> None:
    plans, _ = _plan(full, tmp_path)
    admin = secret_values(full)[ADMIN_SECRET]
    mq = read_params(plans.hostvars("mq"), plans.common, admin)
    w1 = read_params(plans.hostvars("w1"), plans.common, admin)
    assert mq["broker_api"] == {"port": 15673, "user": "qsetup-admin", "password": admin}
    assert "broker_api" not in w1 and w1["check_candidates"] is False
    assert w1["discover"] == "qsetup-"
    assert w1["executables"] == ["/opt/qsetup/venvs/orders/bin/python"]
    assert "qsetup-beat.service" in w1["units"]
    assert mq["units"][-1] == "rabbitmq-server.service"


def test_the_command_holds_no_secret_and_uses_sudo_for_become(full: LoadedInventory) -> None:
    targets = {t.name: t for t in ssh_targets(full)}
    assert read_command(targets["mq"]).startswith("sudo -n python3 -S -c ")
    assert read_command(targets["w1"]).startswith("python3 -S -c ")
    for t in targets.values():
        assert not any(v in read_command(t) for v in FULL_SECRETS.values())


FAKE_SYSTEMCTL = r"""#!/bin/sh
case "$1" in
  show)
    shift
    for a in "$@"; do
      case "$a" in
        'qsetup-*')
          printf 'Id=qsetup-worker-old@2.service\nLoadState=not-found\nActiveState=inactive\n'
          printf 'SubState=dead\n\n' ;;
        qsetup-*|rabbitmq-*)
          printf 'Id=%s\nLoadState=loaded\nActiveState=active\nSubState=running\n' "$a"
          printf 'UnitFileState=enabled\nStateChangeTimestamp=@1700000000\nNRestarts=2\n\n' ;;
      esac
    done ;;
esac
"""


@pytest.mark.parametrize("tag", ["same", "other"])
def test_the_boot_line_runs_the_shipped_read_from_stdin(tmp_path: Path, tag: str) -> None:
    """What a host runs: python3 -c BOOT, the read then the parameters on stdin, one
    marked line; a host whose Python has this one's cache tag runs the code sent, any
    other compiles the source sent."""
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(FAKE_SYSTEMCTL, encoding="utf-8")
    fake.chmod(0o755)
    (tmp_path / "etc").mkdir()
    params = {
        "releases": {"bookworm": "Debian 12"},
        "units": ["qsetup-worker-a@1.service"],
        "discover": "qsetup-",
        "find_paths": [str(tmp_path / "etc")],
        "find_patterns": ["*.env"],
        "check_candidates": False,
    }
    (tmp_path / "etc" / "a.env").write_text("A=1\n", encoding="utf-8")
    header, _, read = read_preamble().partition(b"\n")
    if tag == "other":  # a Python of another minor version: the code would not load
        length, code_length, _ = header.split()
        header = b"%s %s cpython-399" % (length, code_length)
        read = read[: int(length)] + b"not marshalled code".ljust(int(code_length), b"!")
    stdin = header + b"\n" + read + json.dumps(params).encode() + b"\n"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-c", BOOT], input=stdin, capture_output=True, env=env)
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.decode().splitlines() if x.startswith(MARK))
    facts = json.loads(line[len(MARK) :])
    assert facts["discovered"] == ["qsetup-worker-a@1.service", "qsetup-worker-old@2.service"]
    assert facts["units"]["qsetup-worker-a@1.service"]["NRestarts"] == "2"
    assert [f["path"] for f in facts["found"]["files"]] == [str(tmp_path / "etc" / "a.env")]
    assert facts["hostname"]


def test_the_code_sent_is_the_installed_bytecode_only_while_it_matches_the_source(
    tmp_path: Path,
) -> None:
    """pip's bytecode beside the source is sent as is; a stale one (another timestamp or
    size, as Python's import checks them) is not: the source is compiled instead."""
    source = tmp_path / "qsetup_read.py"
    source.write_text("X = 1\n", encoding="utf-8")
    py_compile.compile(str(source), doraise=True)  # the timestamp-checked .pyc pip writes
    pyc = Path(importlib.util.cache_from_source(str(source)))
    text = source.read_bytes()
    assert prefetch.compiled(source, text) == pyc.read_bytes()[16:]
    # A .pyc whose code says X = 2 but is stale: never sent.
    source.write_text("X = 2\n", encoding="utf-8")
    py_compile.compile(str(source), doraise=True)
    source.write_text("X = 3\n", encoding="utf-8")
    os.utime(source, (1, 1))
    scope: dict[str, object] = {}
    exec(marshal.loads(prefetch.compiled(source, source.read_bytes())), scope)  # noqa: S102
    assert scope["X"] == 3


def test_the_source_sent_at_connect_fits_in_a_pipe() -> None:
    """Each client is handed the read's source as it starts, before the host answers: a
    write larger than the pipe's buffer (64 KiB on Linux) would wait for the host."""
    assert len(read_preamble()) < 64 * 1024


def test_a_host_without_the_read_answer_is_unreachable_with_why(full: LoadedInventory) -> None:
    from qsetup.status import ssh as status_ssh

    class _Result:
        stdout = ""
        stderr = "sh: 1: python3: not found\n"
        exited = 127

    target = next(t for t in ssh_targets(full) if t.name == "w1")
    outcome = status_ssh._outcome("10.1.0.1", _Result(), 5.0, target)
    assert outcome.facts is None and "python3 is not installed" in str(outcome.error)


FLAGS_3_10 = (
    "[classic_mirrored_queue_version,drop_unroutable_metric,empty_basic_get_metric,"
    "implicit_default_bindings,maintenance_mode_status,quorum_queue,stream_queue,"
    "user_limits,virtual_host_metadata].\n"
)


def test_old_rabbitmq_data_is_a_problem_on_a_release_that_cannot_start_on_it(
    tmp_path: Path,
) -> None:
    read = playbook_module("module_utils/qsetup_read.py")
    here = read.parse_os_release(Path("/etc/os-release").read_text())["VERSION_CODENAME"]
    (tmp_path / "rabbit@mq1-feature_flags").write_text(FLAGS_3_10)
    params = {
        "releases": {here: "this release"},
        "rabbit_data": {"dir": str(tmp_path), "needs": {here: "message_containers"}},
    }
    found = read.read_host(params, lambda argv: (0, "", ""))
    (problem,) = found["problems"]
    assert problem.startswith(f"{tmp_path}/rabbit@mq1-feature_flags is the data of a RabbitMQ ")
    assert "qsetup backup" in problem and "qsetup restore" in problem
    (tmp_path / "rabbit@mq1-feature_flags").write_text(
        FLAGS_3_10.replace("]", ",message_containers]")
    )
    assert read.read_host(params, lambda argv: (0, "", ""))["problems"] == []
    params["rabbit_data"]["needs"] = {"other": "message_containers"}
    (tmp_path / "rabbit@mq1-feature_flags").write_text(FLAGS_3_10)
    assert read.read_host(params, lambda argv: (0, "", ""))["problems"] == []
