"""qsetup status, host side: the script, parsing its output, unit states, SSH errors."""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path

import paramiko
import pytest
from invoke.exceptions import CommandTimedOut
from paramiko.ssh_exception import NoValidConnectionsError
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.desired.state import units_by_host
from qsetup.inventory.loader import load_inventory
from qsetup.status.hosts import (
    Outcome,
    assemble_hosts,
    beat_problems,
    build_script,
    celery_binaries,
    host_problems,
    host_roles,
    parse_dist_version,
    parse_script_output,
    parse_systemctl_show,
    unit_status,
)
from qsetup.status.model import HostStatus, UnitStatus
from qsetup.status.ssh import describe_ssh_error, ssh_targets

SHOW = """\
NRestarts=0
Id=qsetup-worker-default@1.service
LoadState=loaded
ActiveState=active
SubState=running
StateChangeTimestamp=@1700000000

NRestarts=3
Id=qsetup-worker-default@2.service
LoadState=loaded
ActiveState=activating
SubState=auto-restart
StateChangeTimestamp=@1700000100

NRestarts=0
Id=qsetup-beat.service
LoadState=not-found
ActiveState=inactive
SubState=dead
StateChangeTimestamp=
"""


def test_parse_systemctl_show_splits_blocks_by_id() -> None:
    units = parse_systemctl_show(SHOW)
    assert list(units) == [
        "qsetup-worker-default@1.service",
        "qsetup-worker-default@2.service",
        "qsetup-beat.service",
    ]
    assert units["qsetup-worker-default@2.service"]["SubState"] == "auto-restart"
    assert units["qsetup-beat.service"]["StateChangeTimestamp"] == ""


def test_unit_status_reads_state_since_and_restarts() -> None:
    units = parse_systemctl_show(SHOW)
    ok = unit_status(
        "qsetup-worker-default@1.service", "worker", units["qsetup-worker-default@1.service"]
    )
    assert ok == UnitStatus(
        "qsetup-worker-default@1.service",
        "worker",
        "loaded",
        "active",
        "running",
        "2023-11-14T22:13:20+00:00",
        0,
    )
    assert ok.ok
    flapping = unit_status(
        "qsetup-worker-default@2.service", "worker", units["qsetup-worker-default@2.service"]
    )
    assert not flapping.ok and flapping.restarts == 3
    missing = unit_status("qsetup-beat.service", "beat", None)
    assert missing.load_state == "unknown" and not missing.ok


def test_unit_status_keeps_an_old_systemds_local_time() -> None:
    props = {"Id": "x.service", "StateChangeTimestamp": "Mon 2024-05-06 10:11:12 CEST"}
    assert unit_status("x.service", "beat", props).since == ("Mon 2024-05-06 10:11:12 CEST")


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("celery-5.2.6.egg-info", "5.2.6"),
        ("celery-5.7.0.dist-info", "5.7.0"),
        ("celery-5.2.6-py3.11.egg-info", "5.2.6"),
        ("flower-2.2.0.dist-info", "2.2.0"),
        ("-", None),
        ("", None),
    ],
)
def test_parse_dist_version(name: str, version: str | None) -> None:
    assert parse_dist_version(name) == version


def test_parse_script_output() -> None:
    text = (
        "@@hostname w1.example.org\n@@units\n"
        + SHOW
        + "@@end\n"
        + "@@celery /usr/bin/celery celery-5.2.6.egg-info\n"
        + "@@celery /opt/qsetup/venvs/reports/bin/celery absent\n"
        + "@@flower -\n@@rabbitmq 3.10.8-1.1\n"
    )
    out = parse_script_output(text)
    assert out.hostname == "w1.example.org"
    assert len(out.units) == 3
    assert out.celery == {
        "/usr/bin/celery": "5.2.6",
        "/opt/qsetup/venvs/reports/bin/celery": "absent",
    }
    assert out.flower is None
    assert out.rabbitmq == "3.10.8-1.1"


@pytest.fixture
def full(write_inventory: WriteInventory) -> object:
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))


def test_the_units_status_expects_are_the_desired_ones(full: object) -> None:
    inv = full.inventory  # type: ignore[attr-defined]
    units = {h: [u.name for u in us] for h, us in units_by_host(inv).items()}
    assert units == {
        "mq": ["rabbitmq-server.service", "qsetup-flower.service"],
        "w1": [
            "qsetup-worker-orders@1.service",
            "qsetup-worker-orders@2.service",
            "qsetup-worker-orders@3.service",
            "qsetup-beat.service",
        ],
        "w2": [
            "qsetup-worker-orders@1.service",
            "qsetup-worker-orders@2.service",
            "qsetup-worker-orders@3.service",
            "qsetup-worker-reports@1.service",
        ],
    }
    assert host_roles(inv) == {
        "mq": ("broker", "flower"),
        "w1": ("worker", "beat"),
        "w2": ("worker",),
    }


def test_celery_binaries_are_what_the_units_run(full: object) -> None:
    inv = full.inventory  # type: ignore[attr-defined]
    # app.source.requirement makes every group use a venv: the apt group "orders" runs
    # `venvs/orders/bin/python -m celery` (Debian's Celery seen through the venv; pip
    # installs no celery script there), so status checks that python, the argv the
    # unit runs, and reads the version there; beat runs the orders group's.
    assert celery_binaries(inv) == {
        "mq": [],
        "w1": ["/opt/qsetup/venvs/orders/bin/python"],
        "w2": ["/opt/qsetup/venvs/orders/bin/python", "/opt/qsetup/venvs/reports/bin/celery"],
    }


def test_one_script_for_every_host_lists_the_union_of_units(full: object) -> None:
    script = build_script(full.inventory)  # type: ignore[attr-defined]
    line = next(line for line in script.splitlines() if line.startswith("systemctl show"))
    show, _, fallback = line.partition("||")
    assert "--timestamp" not in fallback  # for a systemd older than 251
    for unit in (
        "rabbitmq-server.service",
        "qsetup-flower.service",
        "qsetup-beat.service",
        "qsetup-worker-orders@3.service",
        "qsetup-worker-reports@1.service",
    ):
        assert unit in show
    assert show.count("qsetup-worker-orders@1.service") == 1
    assert "--timestamp=unix" in show
    assert "/opt/qsetup/venvs/reports/lib/python3*/site-packages/celery-*-info" in script
    assert "flower-*-info" in script
    assert script.rstrip().endswith("exit 0")
    assert FULL_SECRETS["cookie"] not in script


def test_ssh_targets_host_settings_override_defaults(full: object) -> None:
    targets = {t.name: t for t in ssh_targets(full)}  # type: ignore[arg-type]
    assert (targets["mq"].user, targets["mq"].port) == ("deploy", 2200)
    assert (targets["w1"].user, targets["w1"].port) == ("root", 22)
    key = targets["mq"].key
    assert key is not None and key.is_absolute() and key.name == "id_ed25519"
    assert key.parent.name == "keys"


def test_assemble_hosts_marks_unreachable_and_keeps_only_this_hosts_units(full: object) -> None:
    inv = full.inventory  # type: ignore[attr-defined]
    out = "@@hostname w1\n@@units\n" + SHOW + "@@end\n@@rabbitmq -\n"
    hosts = assemble_hosts(
        inv,
        {
            "mq": Outcome("mq.example.org", None, "no route to host (is it powered on?)"),
            "w1": Outcome("10.1.0.1", out, None),
            "w2": Outcome("fd00::2", out, None),
        },
    )
    assert not hosts["mq"].reachable and hosts["mq"].units == ()
    w1 = hosts["w1"]
    assert w1.reachable and w1.hostname == "w1"
    assert [u.name for u in w1.units] == [u.name for u in units_by_host(inv)["w1"]]
    # orders@3 was not in the output: reported, not invented
    assert w1.units[2].load_state == "unknown"
    assert w1.units[3].load_state == "not-found"
    assert w1.celery_versions == (("/opt/qsetup/venvs/orders/bin/python", "unknown"),)


def test_host_problems_name_host_and_unit() -> None:
    units = (
        UnitStatus("qsetup-worker-a@1.service", "worker", "loaded", "active", "running", None, 0),
        UnitStatus("qsetup-worker-a@2.service", "worker", "loaded", "inactive", "dead",
                   "2024-01-01T00:00:00+00:00", 0),
        UnitStatus("qsetup-beat.service", "beat", "not-found", "inactive", "dead", None, 0),
        UnitStatus("qsetup-worker-b@1.service", "worker", "loaded", "activating",
                   "auto-restart", None, 7),
        # Running, but disabled by hand: deploy would enable it, so status names it.
        UnitStatus("qsetup-worker-b@2.service", "worker", "loaded", "active", "running",
                   None, 0, "disabled"),
    )  # fmt: skip
    host = HostStatus("w1", "10.0.0.2", ("worker", "beat"), True, None, "w1", units,
                      (("/usr/bin/celery", "absent"),), None, None)  # fmt: skip
    assert host_problems(host) == [
        "w1: unit qsetup-worker-a@2.service: inactive (dead) since 2024-01-01T00:00:00+00:00; "
        "expected active (running)",
        "w1: unit qsetup-beat.service: not installed; run qsetup deploy",
        "w1: unit qsetup-worker-b@1.service: activating (auto-restart), 7 automatic restarts; "
        "expected active (running)",
        "w1: unit qsetup-worker-b@2.service: disabled; expected enabled (started at boot)",
        "w1: /usr/bin/celery: missing; run qsetup deploy",
    ]
    down = HostStatus("w2", "10.0.0.3", ("worker",), False, "no route to host", None, (), (),
                      None, None)  # fmt: skip
    assert host_problems(down) == ["w2: unreachable (10.0.0.3): no route to host"]


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (TimeoutError(), "no answer within 5 s"),
        (
            NoValidConnectionsError({("10.0.0.1", 22): OSError(errno.ECONNREFUSED, "refused")}),
            "connection refused on port 22",
        ),
        (
            NoValidConnectionsError({("10.0.0.1", 22): OSError(errno.EHOSTUNREACH, "x")}),
            "no route to host",
        ),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "no route to host"),
        (paramiko.AuthenticationException("bad"), "authentication failed"),
        (paramiko.SSHException("Server '10.0.0.1' not found in known_hosts"), "strict"),
    ],
)
def test_describe_ssh_error(exc: BaseException, words: str) -> None:
    assert words in describe_ssh_error(exc, 5.0)


def test_describe_command_timeout() -> None:
    class _Result:
        command = "sh -c ..."

    exc = CommandTimedOut(_Result(), 5)  # type: ignore[arg-type]
    assert "did not finish within 5 s" in describe_ssh_error(exc, 5.0)


def test_known_hosts_is_the_one_deploy_keeps(full: object) -> None:
    from qsetup.status.ssh import known_hosts_path

    path = known_hosts_path(full)  # type: ignore[arg-type]
    assert path == Path(full.path).resolve().parent / ".qsetup" / "known_hosts"  # type: ignore[attr-defined]


def test_a_silent_port_costs_at_most_the_timeout_and_hides_no_other_host(
    write_inventory: WriteInventory,
) -> None:
    """Loopback only: one port accepts TCP and never speaks; one refuses."""
    from qsetup.status.ssh import run_round

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nobody ever answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens here any more: refused
    text = (
        BASE_INVENTORY.replace("address: 10.0.0.1", "address: 127.0.0.1\n    ssh_port: "
                               f"{silent.getsockname()[1]}")
        .replace("address: 10.0.0.2", f"address: 127.0.0.1\n    ssh_port: {closed_port}")
    )  # fmt: skip
    text += "ssh: {host_key_checking: 'off'}\n"
    loaded = load_inventory(write_inventory(text, BASE_SECRETS))
    try:
        started = time.monotonic()
        hosts = run_round(loaded, timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 4.0, elapsed  # banner wait 1 s (+ paramiko's own polling)
    assert not hosts["rabbit1"].reachable and not hosts["worker1"].reachable
    assert "no SSH greeting within 1 s" in str(hosts["rabbit1"].error)
    assert "refused" in str(hosts["worker1"].error)


def test_a_missing_key_file_is_bad_input(write_inventory: WriteInventory, tmp_path: Path) -> None:
    from qsetup.errors import QsetupError
    from qsetup.status.ssh import run_round

    text = BASE_INVENTORY + "ssh: {key: keys/nope}\n"
    loaded = load_inventory(write_inventory(text, BASE_SECRETS))
    with pytest.raises(QsetupError, match="keys/nope does not exist"):
        run_round(loaded, timeout=1.0)


# --- units the desired state does not put on a host ---------------------------------

FAKE_SYSTEMCTL = r"""#!/bin/sh
case "$1" in
  list-units)
    echo 'qsetup-worker-orders@1.service loaded active running Celery orders 1'
    echo '● qsetup-worker-old@2.service loaded failed failed Celery old 2' ;;
  list-unit-files)
    echo 'qsetup-worker-old@.service enabled enabled'
    echo 'qsetup-beat.service enabled enabled' ;;
  show)
    shift
    for a in "$@"; do
      case "$a" in
        -*|Id,*) ;;
        *) printf 'Id=%s\nLoadState=loaded\nActiveState=active\n' "$a"
           printf 'SubState=running\nUnitFileState=enabled\n\n' ;;
      esac
    done ;;
esac
"""


def test_the_script_lists_every_qsetup_unit_systemd_knows(
    full: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the real script with a fake systemctl: loaded, failed and enabled units are found."""
    import subprocess

    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(FAKE_SYSTEMCTL, encoding="utf-8")
    fake.chmod(0o755)
    script = build_script(full.inventory)  # type: ignore[attr-defined]
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    run = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    out = parse_script_output(run.stdout)
    # sorted, once each, the template (x@.service) left out; the bullet before a failed unit too
    assert out.found == (
        "qsetup-beat.service",
        "qsetup-worker-old@2.service",
        "qsetup-worker-orders@1.service",
    )
    # the found units are shown along with every unit the inventory runs anywhere
    assert "qsetup-worker-old@2.service" in out.units
    assert "qsetup-worker-reports@1.service" in out.units
    assert out.units["qsetup-worker-old@2.service"]["UnitFileState"] == "enabled"


def test_the_script_discovers_loaded_enabled_and_template_instances(full: object) -> None:
    script = build_script(full.inventory)  # type: ignore[attr-defined]
    assert "systemctl list-units --all --plain --no-legend --full --no-pager 'qsetup-*'" in script
    assert "list-unit-files" in script and "--state=enabled" in script
    assert "/etc/systemd/system/*.wants/qsetup-*" in script  # enabled instances: x@2.service
    assert "grep -v '@[.]'" in script  # templates are files, not units
    show = next(line for line in script.splitlines() if line.startswith("systemctl show"))
    assert show.count("$found") == 2 and "UnitFileState" in show
    assert script.count("systemctl show") == 2  # one call (and its old-systemd fallback)


W2_SHOW = """\
Id=qsetup-worker-orders@1.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

Id=qsetup-worker-orders@4.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

Id=qsetup-worker-old@2.service
LoadState=loaded
ActiveState=inactive
SubState=dead
UnitFileState=enabled

Id=qsetup-beat.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
StateChangeTimestamp=@1700000000

Id=qsetup-worker-gone@1.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=
"""
W2_OUT = (
    "@@hostname w2\n"
    "@@found qsetup-worker-orders@1.service qsetup-worker-orders@4.service "
    "qsetup-worker-old@2.service qsetup-beat.service qsetup-worker-gone@1.service\n"
    "@@units\n" + W2_SHOW + "@@end\n"
)
W1_OUT = (
    "@@hostname w1\n@@found qsetup-beat.service\n@@units\n"
    "Id=qsetup-beat.service\nLoadState=loaded\nActiveState=active\nSubState=running\n@@end\n"
)


def test_parse_script_output_reads_the_found_units() -> None:
    out = parse_script_output(W2_OUT)
    assert out.found == (
        "qsetup-worker-orders@1.service",
        "qsetup-worker-orders@4.service",
        "qsetup-worker-old@2.service",
        "qsetup-beat.service",
        "qsetup-worker-gone@1.service",
    )
    assert out.units["qsetup-worker-gone@1.service"]["LoadState"] == "not-found"
    assert parse_script_output("@@hostname x\n@@found \n@@units\n@@end\n").found == ()


def test_units_the_inventory_does_not_put_there_are_problems(full: object) -> None:
    """An old group, an instance above `instances`, a beat that moved: each one line."""
    inv = full.inventory  # type: ignore[attr-defined]
    hosts = assemble_hosts(
        inv,
        {
            "mq": Outcome("mq.example.org", None, "no route to host"),
            "w1": Outcome("10.1.0.1", W1_OUT, None),
            "w2": Outcome("fd00::2", W2_OUT, None),
        },
    )
    w2 = hosts["w2"]
    # orders@1 belongs there; gone@1 is listed by systemd though its file is gone
    assert [(u.name, u.active_state, u.unit_file_state) for u in w2.unexpected_units] == [
        ("qsetup-beat.service", "active", "enabled"),
        ("qsetup-worker-gone@1.service", "inactive", None),
        ("qsetup-worker-old@2.service", "inactive", "enabled"),
        ("qsetup-worker-orders@4.service", "active", "enabled"),
    ]
    assert hosts["w1"].unexpected_units == ()  # beat belongs on w1
    lines = [p for p in host_problems(w2) if "unexpected" in p]
    assert lines == [
        "w2: unit qsetup-beat.service: unexpected (the inventory does not put it on w2; "
        "active (running), enabled); the next deploy removes it",
        "w2: unit qsetup-worker-old@2.service: unexpected (the inventory does not put it on "
        "w2; inactive (dead), enabled); the next deploy removes it",
        "w2: unit qsetup-worker-orders@4.service: unexpected (the inventory does not put it "
        "on w2; active (running), enabled); the next deploy removes it",
    ]
    assert beat_problems(inv, hosts) == [
        "w1: beat qsetup-beat.service: active on 2 hosts (w1, w2); exactly one may run "
        "(the inventory puts it on w1)"
    ]


def test_a_unit_systemd_lists_as_not_found_is_a_problem_naming_the_fix(full: object) -> None:
    """A removed unit systemd still lists (`not-found inactive dead`): daemon-reload, reset."""
    inv = full.inventory  # type: ignore[attr-defined]
    gone = "qsetup-worker-gone@1.service"
    w2 = assemble_hosts(inv, {"w2": Outcome("fd00::2", W2_OUT, None)})["w2"]
    assert [p for p in host_problems(w2) if gone in p] == [
        f"w2: unit {gone}: left in systemd (not-found, inactive (dead)) though its unit file "
        "is gone and the inventory does not put it on w2; run `systemctl daemon-reload` and "
        f"`systemctl reset-failed {gone}` there"
    ]
    masked = W2_OUT.replace("LoadState=not-found", "LoadState=masked")
    w2 = assemble_hosts(inv, {"w2": Outcome("fd00::2", masked, None)})["w2"]
    assert gone not in {u.name for u in w2.unexpected_units}  # masked on purpose: not a problem


def test_hosts_on_one_endpoint_expect_each_others_units(write_inventory: WriteInventory) -> None:
    """rabbit1 and worker1 are one machine: its units are listed once, on rabbit1."""
    inv = load_inventory(write_inventory(BASE_INVENTORY, BASE_SECRETS)).inventory
    out = (
        "@@hostname box\n@@found qsetup-flower.service qsetup-worker-default@1.service "
        "qsetup-worker-stale@1.service\n@@units\n"
        + "".join(
            f"Id={u}\nLoadState=loaded\nActiveState=active\nSubState=running\n\n"
            for u in (
                "qsetup-flower.service",
                "qsetup-worker-default@1.service",
                "qsetup-worker-stale@1.service",
            )
        )
        + "@@end\n"
    )
    both = ("rabbit1", "worker1")
    hosts = assemble_hosts(
        inv,
        {
            "rabbit1": Outcome("10.0.0.1", out, None, same_endpoint=both),
            "worker1": Outcome("10.0.0.1", out, None, same_endpoint=both),
        },
    )
    assert [u.name for u in hosts["rabbit1"].unexpected_units] == ["qsetup-worker-stale@1.service"]
    assert hosts["worker1"].unexpected_units == ()


def _host(name: str, beat: str | None, *, unexpected: bool = False, up: bool = True) -> HostStatus:
    units: tuple[UnitStatus, ...] = ()
    if beat is not None:
        units = (UnitStatus("qsetup-beat.service", "beat", "loaded", beat, "running", None, 0),)
    return HostStatus(name, name, (), up, None if up else "down", name,
                      () if unexpected else units, (), None, None,
                      unexpected_units=units if unexpected else ())  # fmt: skip


def test_exactly_one_beat_across_the_fleet(full: object) -> None:
    inv = full.inventory  # type: ignore[attr-defined]
    one = {"mq": _host("mq", None), "w1": _host("w1", "active"), "w2": _host("w2", None)}
    assert beat_problems(inv, one) == []
    none = {"mq": _host("mq", None), "w1": _host("w1", "inactive"), "w2": _host("w2", None)}
    assert beat_problems(inv, none) == [
        "w1: beat qsetup-beat.service: active on no host; exactly one must run "
        "(the inventory puts it on w1)"
    ]
    moved = {
        "mq": _host("mq", "active", unexpected=True),
        "w1": _host("w1", "inactive"),
        "w2": _host("w2", "active", unexpected=True),
    }
    assert beat_problems(inv, moved) == [
        "mq: beat qsetup-beat.service: active on 2 hosts (mq, w2); exactly one may run "
        "(the inventory puts it on w1)"
    ]
    # the beat host cannot be read: no guess that beat is down (its own line says why)
    dark = {"mq": _host("mq", None), "w1": _host("w1", None, up=False), "w2": _host("w2", None)}
    assert beat_problems(inv, dark) == []


def test_two_beats_without_beat_in_the_inventory(write_inventory: WriteInventory) -> None:
    inv = load_inventory(write_inventory(BASE_INVENTORY, BASE_SECRETS)).inventory
    hosts = {
        "rabbit1": _host("rabbit1", "active", unexpected=True),
        "worker1": _host("worker1", "active", unexpected=True),
    }
    assert beat_problems(inv, hosts) == [
        "rabbit1: beat qsetup-beat.service: active on 2 hosts (rabbit1, worker1); exactly one "
        "may run (the inventory runs no beat)"
    ]
    assert beat_problems(inv, {"rabbit1": _host("rabbit1", None)}) == []
