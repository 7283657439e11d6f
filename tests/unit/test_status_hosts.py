"""qsetup status, host side: the hosts' units and roles, beat across the fleet, SSH errors."""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.desired.state import units_by_host
from qsetup.inventory.loader import load_inventory
from qsetup.status.hosts import beat_problems, host_roles
from qsetup.status.model import HostStatus, UnitStatus
from qsetup.status.ssh import ReadTimedOut, describe_ssh_error, describe_ssh_failure, ssh_targets


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


def test_ssh_targets_host_settings_override_defaults(full: object) -> None:
    targets = {t.name: t for t in ssh_targets(full)}  # type: ignore[arg-type]
    assert (targets["mq"].user, targets["mq"].port) == ("deploy", 2200)
    assert (targets["w1"].user, targets["w1"].port) == ("root", 22)
    key = targets["mq"].key
    assert key is not None and key.is_absolute() and key.name == "id_ed25519"
    assert key.parent.name == "keys"


@pytest.mark.parametrize(
    ("stderr", "words"),
    [
        ("ssh: connect to host 10.0.0.1 port 22: Connection timed out\n", "no answer within 5 s"),
        ("ssh: connect to host 10.0.0.1 port 2200: Connection refused\n", "refused on port 2200"),
        ("ssh: connect to host 10.0.0.1 port 22: No route to host\n", "no route to host"),
        ("Connection timed out during banner exchange\n", "no SSH greeting within 5 s"),
        ("root@10.0.0.1: Permission denied (publickey).\n", "authentication failed"),
        (
            "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking."
            "\nHost key verification failed.\n",
            "strict",
        ),
        (
            "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
            "Host key verification failed.\n",
            "differs from the known one",
        ),
        ("kex_exchange_identification: read: Connection reset by peer\n", "Connection reset"),
    ],
)
def test_describe_ssh_failure(stderr: str, words: str) -> None:
    assert words in describe_ssh_failure(stderr, 5.0, 2200)


def test_an_address_that_does_not_resolve_names_the_hosts_field() -> None:
    said = describe_ssh_failure(
        "ssh: Could not resolve hostname mq-1: Name or service not known\n", 5.0, 22, "mq1"
    )
    assert said == "its address does not resolve; check hosts.mq1.address"


def test_describe_a_read_that_did_not_finish_or_no_client() -> None:
    assert "did not finish within 5 s" in describe_ssh_error(ReadTimedOut(), 5.0)
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "ssh")
    assert "install openssh-client" in describe_ssh_error(missing, 5.0)


@pytest.mark.parametrize(
    ("checking", "strict", "files"),
    [
        ("off", "no", "/dev/null"),
        ("strict", "yes", '"{kept}"'),
        ("accept-new", "accept-new", '/dev/null "{kept}"'),
    ],
)
def test_the_read_reaches_hosts_with_the_deploys_host_key_checking_and_writes_nothing(
    write_inventory: WriteInventory, checking: str, strict: str, files: str
) -> None:
    from qsetup.status.ssh import known_hosts_path, ssh_argv

    text = BASE_INVENTORY + f"ssh: {{host_key_checking: '{checking}'}}\n"
    loaded = load_inventory(write_inventory(text, BASE_SECRETS))
    target = ssh_targets(loaded)[0]
    kept = known_hosts_path(loaded)
    argv = ssh_argv(target, loaded.inventory, kept, 3.0)
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert f"StrictHostKeyChecking={strict}" in options
    assert "UserKnownHostsFile=" + files.format(kept=kept) in options
    assert "BatchMode=yes" in options and "ConnectTimeout=3" in options
    assert "KexAlgorithms=^curve25519-sha256" in options  # offered first, the defaults after
    assert argv[-2:] == ["--", target.address]
    assert argv[argv.index("-p") + 1] == str(target.port)
    assert argv[argv.index("-l") + 1] == target.user


def test_known_hosts_is_the_one_deploy_keeps(full: object) -> None:
    from qsetup.status.ssh import known_hosts_path

    path = known_hosts_path(full)  # type: ignore[arg-type]
    assert path == Path(full.path).resolve().parent / ".qsetup" / "known_hosts"  # type: ignore[attr-defined]


def test_a_silent_port_costs_at_most_the_timeout_and_hides_no_other_host(
    write_inventory: WriteInventory,
) -> None:
    """Loopback only: one port accepts TCP and never speaks; one refuses."""
    from qsetup.status.ssh import read_round

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
        hosts = read_round(loaded, 1.0, {h: {"releases": {}} for h in loaded.inventory.hosts})
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 4.0, elapsed  # banner wait 1 s
    assert hosts["rabbit1"].facts is None and hosts["worker1"].facts is None
    assert "no SSH greeting within 1 s" in str(hosts["rabbit1"].error)
    assert "refused" in str(hosts["worker1"].error)


def test_a_missing_key_file_is_bad_input(write_inventory: WriteInventory, tmp_path: Path) -> None:
    from qsetup.errors import QsetupError
    from qsetup.status.ssh import read_round

    text = BASE_INVENTORY + "ssh: {key: keys/nope}\n"
    loaded = load_inventory(write_inventory(text, BASE_SECRETS))
    with pytest.raises(QsetupError, match="keys/nope does not exist"):
        read_round(loaded, 1.0, {"rabbit1": {"releases": {}}})


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
