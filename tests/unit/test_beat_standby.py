"""A standby beat (``beat.hosts``): inventory errors, rendered settings, the ACL, units, status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_results import RESULTS_INVENTORY, RESULTS_SECRETS, env_value, files, inventory, secrets
from unitdata import WriteInventory

from qsetup.artifacts.plan import build_ansible_inventory
from qsetup.artifacts.readparams import read_params
from qsetup.artifacts.render import render_all
from qsetup.desired.beat import LOCK_KEY, REDBEAT_COMMANDS, REDBEAT_PIP
from qsetup.desired.results import acl_text, results_url
from qsetup.desired.state import BEAT_UNIT, units_by_host
from qsetup.errors import InventoryError
from qsetup.inventory.loader import load_inventory
from qsetup.status.hosts import beat_problems, beat_status
from qsetup.status.model import BeatLog, HostStatus, UnitStatus

sys.path.insert(0, str(Path(__file__).parents[2] / "playbooks" / "module_utils"))
import qsetup_read  # noqa: E402

STANDBY = RESULTS_INVENTORY.replace("beat:\n  host: worker1\n", "beat:\n  hosts: [worker1, app1]\n")
assert STANDBY != RESULTS_INVENTORY


def problems(write_inventory: WriteInventory, text: str) -> list[str]:
    with pytest.raises(InventoryError) as err:
        load_inventory(write_inventory(text, RESULTS_SECRETS))
    return list(err.value.problems)


# --- inventory ------------------------------------------------------------------------


def test_a_standby_beat_loads(write_inventory: WriteInventory) -> None:
    inv = load_inventory(write_inventory(STANDBY, RESULTS_SECRETS)).inventory
    assert inv.beat is not None and inv.beat.hosts == ("worker1", "app1") and inv.beat.redbeat
    assert inv.beat.lock_timeout == 30
    one = load_inventory(write_inventory(RESULTS_INVENTORY, RESULTS_SECRETS)).inventory
    assert one.beat is not None and one.beat.hosts == ("worker1",) and not one.beat.redbeat


def test_a_standby_beat_without_the_managed_backend_is_one_line(
    write_inventory: WriteInventory,
) -> None:
    text = STANDBY.replace("results:\n  host: worker1\n  allow_from: [192.0.2.0/24]\n", "")
    found = problems(write_inventory, text)
    assert len(found) == 1, found
    assert "beat.hosts: a standby beat keeps its lock in the managed result backend; " in found[0]
    assert "add results: {host: NAME}, or use beat.host for one beat" in found[0]
    own = STANDBY.replace(
        "  vhost: orders\nworkers:", "  vhost: orders\n  result_backend: redis://r:6379/0\nworkers:"
    )
    found = problems(write_inventory, own)
    assert len(found) == 1 and "beat.hosts:" in found[0] and "app.result_backend is set" in found[0]


@pytest.mark.parametrize(
    ("beat", "message"),
    [
        ("  hosts: [worker1]\n", "beat.hosts: "),
        ("  hosts: [worker1, worker1]\n", "a host is listed twice"),
        ("  host: worker1\n  hosts: [worker1, app1]\n", "give beat.host or beat.hosts, not both"),
        ("  hosts: [worker1, nowhere]\n", "beat.hosts[1]: host 'nowhere' is not declared"),
        ("  hosts: [worker1, app1]\n  lock_timeout: 5\n", "beat.lock_timeout"),
    ],
)
def test_bad_beat_hosts_are_one_line_each(
    write_inventory: WriteInventory, beat: str, message: str
) -> None:
    found = problems(
        write_inventory, RESULTS_INVENTORY.replace("beat:\n  host: worker1\n", f"beat:\n{beat}")
    )
    assert len(found) == 1 and message in found[0], found


# --- what goes where ------------------------------------------------------------------


def test_each_beat_host_gets_its_unit_and_an_env_file_with_redbeat_settings() -> None:
    inv, sec = inventory(STANDBY), secrets()
    out = files(render_all(inv, sec))
    url = results_url(inv, sec, "beat", "/etc/qsetup/tls/ca.pem")
    for host in ("worker1", "app1"):
        env = out[(host, "/etc/qsetup/beat.env")]
        assert env.secret and env.mode == 0o600 and env.owner == "root"
        settings = json.loads(env_value(env.content, "QSETUP_CELERY_SETTINGS").replace('\\"', '"'))
        assert settings["beat_scheduler"] == "redbeat.RedBeatScheduler"
        assert settings["redbeat_redis_url"] == url and "beat-pw-0123456789abcdef" in url
        assert settings["redbeat_lock_timeout"] == 30
        assert settings["beat_max_loop_interval"] == 5
        assert settings["redbeat_key_prefix"] == "redbeat:"
        unit = out[(host, "/etc/systemd/system/qsetup-beat.service")]
        assert "beat-pw" not in unit.content and not unit.secret
    # One beat: no redbeat anywhere.
    one = files(render_all(inventory(), sec))
    assert "redbeat" not in one[("worker1", "/etc/qsetup/beat.env")].content


def test_units_and_venvs_per_beat_host() -> None:
    inv = inventory(STANDBY.replace("    install: pip\n", "    install: apt\n"))
    units = units_by_host(inv)
    beats = {h: u for h, us in units.items() for u in us if u.name == BEAT_UNIT}
    assert set(beats) == {"worker1", "app1"}
    # worker1's group uses Debian's Celery: beat's venv sees it; app1 has no group.
    assert beats["worker1"].celery_argv == ("/opt/qsetup/venvs/beat/bin/python", "-m", "celery")
    assert beats["app1"].celery_argv == ("/opt/qsetup/venvs/beat/bin/celery",)
    assert {u.venv for u in beats.values()} == {"beat"}
    hosts = build_ansible_inventory(inv, render_all(inv, secrets()))["all"]["hosts"]
    venvs = {h: {v["name"]: v for v in hosts[h]["qsetup_venvs"]} for h in ("worker1", "app1")}
    assert venvs["worker1"]["beat"]["site_packages"] is True
    assert venvs["app1"]["beat"]["site_packages"] is False
    for host in ("worker1", "app1"):
        assert REDBEAT_PIP in venvs[host]["beat"]["packages"]
    # One beat on a pip group's host keeps running from the group's virtualenv.
    one = {u.name: u for u in units_by_host(inventory())["worker1"]}
    assert one[BEAT_UNIT].venv == "default"


def test_beat_may_use_exactly_redbeats_keys_and_commands() -> None:
    acl = acl_text(inventory(STANDBY), secrets()).splitlines()
    beat = next(x for x in acl if x.startswith("user beat "))
    selector = beat[beat.index("(") :]
    assert selector.startswith("(~redbeat:* resetchannels -@all +get +set ")
    assert selector.endswith(")") and selector.count("~") == 1
    assert {w.lstrip("+").rstrip(")") for w in selector.split() if w.startswith("+")} == set(
        REDBEAT_COMMANDS
    )
    assert LOCK_KEY.startswith("redbeat:")
    assert all("redbeat" not in x for x in acl if not x.startswith("user beat "))
    one = acl_text(inventory(), secrets())
    assert "redbeat" not in one


def test_status_reads_the_journal_of_beat_hosts_only_with_a_standby() -> None:
    inv = inventory(STANDBY)
    hosts = build_ansible_inventory(inv, render_all(inv, secrets()))
    common, hv = hosts["all"]["vars"], hosts["all"]["hosts"]
    params = read_params(hv["app1"], common, None)
    assert params["beat_log"]["window"] == 35
    assert "beat_log" not in read_params(hv["rabbit1"], common, None)
    one = build_ansible_inventory(inventory(), render_all(inventory(), secrets()))
    assert "beat_log" not in read_params(one["all"]["hosts"]["worker1"], one["all"]["vars"], None)


def test_the_read_takes_the_last_lock_line_of_the_current_run() -> None:
    calls: list[list[str]] = []
    lines = {
        "-g": "beat: Acquired lock\nbeat: Releasing lock\nbeat: Acquired lock\n",
        "--since": "Scheduler: Sending due task tick (proj.tasks.add)\n" * 3,
    }

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        if argv[0] == "systemctl":
            return 0, "abc123\n", ""
        return 0, lines["--since" if "--since" in argv else "-g"], ""

    spec = {"unit": BEAT_UNIT, "acquired": "beat: Acquired lock",
            "released": "beat: Releasing lock", "sending": "Scheduler: Sending due task",
            "window": 35}  # fmt: skip
    assert qsetup_read.read_beat_log(run, spec) == {
        "invocation": "abc123",
        "lock": "acquired",
        "sent": 3,
    }
    assert all("_SYSTEMD_INVOCATION_ID=abc123" in c for c in calls[1:])
    assert "-35s" in calls[2]

    def stopped(argv: list[str]) -> tuple[int, str, str]:
        return 0, "\n", ""

    assert qsetup_read.read_beat_log(stopped, spec) == {"invocation": "", "lock": None, "sent": 0}


# --- status ---------------------------------------------------------------------------


def _host(name: str, log: BeatLog | None, active: bool = True, up: bool = True) -> HostStatus:
    state = "active" if active else "inactive"
    units = (UnitStatus(BEAT_UNIT, "beat", "loaded", state, "running", None, 0),)
    return HostStatus(name, name, (), up, None if up else "down", name, units, (), None, None,
                      beat_log=log)  # fmt: skip


HOLDS = BeatLog(running=True, holds_lock=True, sent=3)
WAITS = BeatLog(running=True, holds_lock=False, sent=0)


def test_status_names_the_holder_and_flags_two() -> None:
    inv = inventory(STANDBY)
    hosts = {"worker1": _host("worker1", HOLDS), "app1": _host("app1", WAITS)}
    beat = beat_status(inv, hosts)
    assert beat is not None and beat.holder == "worker1" and beat.senders == ("worker1",)
    assert beat_problems(inv, hosts, beat) == []
    two = {"worker1": _host("worker1", HOLDS), "app1": _host("app1", HOLDS)}
    beat = beat_status(inv, two)
    assert beat is not None and beat.holder is None
    assert beat_problems(inv, two, beat) == [
        "worker1: beat lock: held by 2 beats (worker1, app1); exactly one may hold it",
        "worker1: beat: 2 beats sent tasks lately (worker1, app1); exactly one may send",
    ]
    # The holder went, the standby sent before the old lines aged out: two senders.
    moved = {
        "worker1": _host("worker1", WAITS.__class__(True, False, 2)),
        "app1": _host("app1", HOLDS),
    }
    beat = beat_status(inv, moved)
    assert beat is not None and beat.holder == "app1"
    assert beat_problems(inv, moved, beat) == [
        "worker1: beat: 2 beats sent tasks lately (worker1, app1); exactly one may send"
    ]
    none = {"worker1": _host("worker1", WAITS), "app1": _host("app1", WAITS)}
    assert beat_problems(inv, none, beat_status(inv, none))[0].startswith(
        "worker1: beat lock: no beat holds it"
    )
    quiet = inventory(
        STANDBY.replace(
            "  hosts: [worker1, app1]\n", "  hosts: [worker1, app1]\n  loglevel: WARNING\n"
        )
    )
    assert beat_problems(quiet, none, beat_status(quiet, none)) == []  # the line is not logged
    # A beat host that cannot be read: no guess about the lock.
    dark = {"worker1": _host("worker1", None, up=False), "app1": _host("app1", WAITS)}
    assert beat_problems(inv, dark, beat_status(inv, dark)) == []
    # One beat: no lock to read.
    assert beat_status(inventory(), hosts) is None


def test_a_beat_outside_beat_hosts_is_named() -> None:
    inv = inventory(STANDBY)
    hosts = {
        "worker1": _host("worker1", HOLDS),
        "app1": _host("app1", WAITS),
        "rabbit1": _host("rabbit1", None),
    }
    assert beat_problems(inv, hosts, beat_status(inv, hosts)) == [
        "rabbit1: beat qsetup-beat.service: active outside beat.hosts "
        "(the inventory runs a standby beat on worker1, app1)"
    ]
