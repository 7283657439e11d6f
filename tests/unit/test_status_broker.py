"""qsetup status, broker side: expected state, drift, API parsing, problem lines."""

from __future__ import annotations

from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.inventory import Inventory
from qsetup.loader import load_inventory
from qsetup.status.broker import (
    ExpectedBroker,
    Permission,
    broker_problems,
    compare_broker,
    expected_broker,
    failed_broker,
    parse_api,
)
from qsetup.status.model import Drift


@pytest.fixture
def base(write_inventory: WriteInventory) -> Inventory:
    return load_inventory(write_inventory(BASE_INVENTORY, BASE_SECRETS)).inventory


@pytest.fixture
def full(write_inventory: WriteInventory) -> Inventory:
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS)).inventory


def test_expected_broker_adds_qsetups_own_users(base: Inventory) -> None:
    exp = expected_broker(base)
    assert exp.vhosts == {"orders"}
    assert dict(exp.users) == {
        "qsetup-admin": {"administrator"},
        "orders": frozenset(),
        "flower-monitor": {"monitoring"},
    }
    assert exp.permissions[("orders", "orders")] == (".*", ".*", ".*")
    assert exp.permissions[("qsetup-admin", "orders")] == (".*", ".*", ".*")
    assert exp.permissions[("flower-monitor", "orders")] == ("^$", "^$", "^$")
    assert not exp.guest_allowed


def test_expected_broker_full(full: Inventory) -> None:
    exp = expected_broker(full)
    assert set(exp.users) == {"qsetup-admin", "Shop", "reports", "monitor"}
    assert exp.users["reports"] == {"monitoring", "management"}
    assert exp.permissions[("reports", "shop")] == ("^$", "^$", "^reports\\.")
    assert exp.guest_allowed


def _actual(exp: ExpectedBroker) -> tuple[list[str], dict[str, frozenset[str]], list[Permission]]:
    perms = [Permission(u, v, *p) for (u, v), p in exp.permissions.items()]
    return sorted(exp.vhosts) + ["/"], dict(exp.users), perms


def test_a_freshly_deployed_broker_has_no_drift(base: Inventory) -> None:
    exp = expected_broker(base)
    assert compare_broker(exp, *_actual(exp)) == []


def test_default_vhost_and_empty_permissions_are_not_drift(base: Inventory) -> None:
    exp = expected_broker(base)
    vhosts, users, perms = _actual(exp)
    # community.rabbitmq gives a user with no permissions "^$ ^$ ^$" on "/"
    perms.append(Permission("orders", "/", "^$", "^$", "^$"))
    assert compare_broker(exp, vhosts, users, perms) == []


def test_drift_names_every_difference(base: Inventory) -> None:
    exp = expected_broker(base)
    vhosts, users, perms = _actual(exp)
    vhosts.append("stray")
    users["intruder"] = frozenset({"administrator"})
    users["guest"] = frozenset({"administrator"})
    users["orders"] = frozenset({"management"})
    del users["flower-monitor"]
    perms = [p for p in perms if p.user != "qsetup-admin"]
    perms.append(Permission("orders", "/", ".*", ".*", ".*"))
    perms = [p for p in perms if (p.user, p.vhost) != ("orders", "orders")]
    perms.append(Permission("orders", "orders", "^$", ".*", ".*"))
    drift = compare_broker(exp, vhosts, users, perms)
    assert drift == [
        Drift("vhost", "stray", "extra", "on the broker, not in the inventory"),
        Drift("user", "flower-monitor", "missing", "in the inventory, not on the broker"),
        Drift("user", "guest", "extra", "guest is present but broker.delete_guest is true"),
        Drift("user", "intruder", "extra", "on the broker, not in the inventory"),
        Drift("tags", "orders", "differs",
              "tags [management] on the broker, [] in the inventory"),
        Drift("permission", "orders@/", "extra",
              "configure='.*' write='.*' read='.*' on the broker"),
        Drift("permission", "orders@orders", "differs",
              "configure='^$' write='.*' read='.*' on the broker, "
              "configure='.*' write='.*' read='.*' in the inventory"),
        Drift("permission", "qsetup-admin@orders", "missing",
              "expected configure='.*' write='.*' read='.*'"),
    ]  # fmt: skip


def test_missing_vhost_is_one_line_not_one_per_permission(base: Inventory) -> None:
    exp = expected_broker(base)
    _, users, _ = _actual(exp)
    drift = compare_broker(exp, ["/"], users, [])
    assert drift == [Drift("vhost", "orders", "missing", "in the inventory, not on the broker")]


def test_guest_is_fine_when_delete_guest_is_false(full: Inventory) -> None:
    exp = expected_broker(full)
    vhosts, users, perms = _actual(exp)
    users["guest"] = frozenset({"administrator"})
    perms.append(Permission("guest", "/", ".*", ".*", ".*"))
    assert compare_broker(exp, vhosts, users, perms) == []


def _api(inv: Inventory, **over: Any) -> dict[str, Any]:
    exp = expected_broker(inv)
    answers: dict[str, Any] = {
        "overview": {"rabbitmq_version": "3.10.8", "erlang_version": "25.2.3"},
        "nodes": [
            {
                "name": "rabbit@mq",
                "running": True,
                "mem_alarm": False,
                "disk_free_alarm": False,
                "mem_used": 1,
                "mem_limit": 2,
                "disk_free": 3,
                "disk_free_limit": 4,
            }
        ],
        "vhosts": [{"name": v} for v in sorted(exp.vhosts)] + [{"name": "/"}],
        "users": [{"name": n, "tags": sorted(t)} for n, t in exp.users.items()],
        "permissions": [
            {"user": u, "vhost": v, "configure": c, "write": w, "read": r}
            for (u, v), (c, w, r) in exp.permissions.items()
        ],
        "queues": [
            {
                "vhost": "orders",
                "name": "celery",
                "messages_ready": 4,
                "messages_unacknowledged": 1,
                "consumers": 2,
            },
            {"vhost": "orders", "name": "default-1@w.celery.pidbox", "consumers": 1},
        ],  # fmt: skip
    }
    answers.update(over)
    return answers


def test_parse_api_healthy(base: Inventory) -> None:
    status = parse_api(base, **_api(base))
    assert status.error is None and status.drift == ()
    assert status.rabbitmq_version == "3.10.8" and status.erlang_version == "25.2.3"
    assert status.vhosts == ("/", "orders")
    assert status.queues[0].name == "celery" and status.queues[0].ready == 4
    assert status.queues[1].ready == 0  # absent counters are 0
    assert status.api_url == "http://10.0.0.1:15672/api"
    assert broker_problems(base, status) == []


def test_parse_api_accepts_old_comma_separated_tags(base: Inventory) -> None:
    answers = _api(base)
    answers["users"] = [{"name": u["name"], "tags": ",".join(u["tags"])} for u in answers["users"]]
    assert parse_api(base, **answers).drift == ()


def test_broker_problems_alarms_drift_and_idle_queues(base: Inventory) -> None:
    answers = _api(base)
    answers["nodes"][0].update(mem_alarm=True, disk_free_alarm=True, running=False)
    answers["users"].append({"name": "intruder", "tags": []})
    answers["queues"] = [{"vhost": "orders", "name": "celery", "messages_ready": 9,
                          "consumers": 0}]  # fmt: skip
    problems = broker_problems(base, parse_api(base, **answers))
    assert problems == [
        "rabbit1: broker node rabbit@mq: not running",
        "rabbit1: broker node rabbit@mq: memory alarm (publishers are blocked)",
        "rabbit1: broker node rabbit@mq: disk free alarm (publishers are blocked)",
        "rabbit1: broker user 'intruder': extra (on the broker, not in the inventory)",
        "rabbit1: broker queue 'celery' (vhost 'orders'): 9 messages ready and no consumers "
        "(worker group default should consume it)",
    ]


def test_a_missing_worker_queue_is_one_line_for_all_its_groups(full: Inventory) -> None:
    status = parse_api(full, **_api(full, queues=[]))
    lines = [p for p in broker_problems(full, status) if "queue" in p]
    assert lines == [
        "mq: broker queue 'orders' (vhost 'shop'): missing (worker group orders)",
        "mq: broker queue 'celery' (vhost 'shop'): missing (worker group orders)",
        "mq: broker queue 'celery' (vhost 'reports'): missing (worker group reports)",
    ]


def test_api_failure_is_one_line(base: Inventory) -> None:
    status = failed_broker(base, "cannot connect")
    assert broker_problems(base, status) == [
        "rabbit1: broker management API http://10.0.0.1:15672/api: cannot connect"
    ]


def test_an_idle_queue_without_consumers_is_not_a_problem(base: Inventory) -> None:
    # Right after a worker starts the API may still count 0 consumers (5 s statistics).
    answers = _api(base, queues=[{"vhost": "orders", "name": "celery", "consumers": 0}])
    assert broker_problems(base, parse_api(base, **answers)) == []
