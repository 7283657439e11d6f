"""qsetup status, workers: node names as systemd + Celery expand them, answers, problems."""

from __future__ import annotations

import pytest
from unitdata import FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.loader import load_inventory
from qsetup.status.workers import (
    ExpectedNode,
    InspectResult,
    broker_connections,
    combine_nodes,
    expand_node_name,
    expected_nodes,
    worker_problems,
)


@pytest.mark.parametrize(
    ("pattern", "instance", "hostname", "name"),
    [
        ("default-%i@%h", 1, "w1", "default-1@w1"),
        ("default-%i@%h", 12, "w1.example.org", "default-12@w1.example.org"),
        ("rep-%i@%n", 2, "w2.example.org", "rep-2@w2"),
        ("x%i@%n.%d", 3, "w2.example.org", "x3@w2.example.org"),
        ("worker%i", 1, "w1", "celery@worker1"),  # no '@': the name is the host part
        ("a%%b@%h", 1, "w1", "a%b@w1"),
        ("a%x@%h", 1, "w1", "a%x@w1"),  # unknown placeholders stay
    ],
)
def test_expand_node_name(pattern: str, instance: int, hostname: str, name: str) -> None:
    assert expand_node_name(pattern, instance, hostname) == name


@pytest.fixture
def full(write_inventory: WriteInventory) -> object:
    return load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))


def test_expected_nodes_use_reported_hostnames(full: object) -> None:
    inv = full.inventory  # type: ignore[attr-defined]
    nodes = expected_nodes(inv, {"w1": "w1.example.org", "w2": None, "mq": "mq"})
    names = [n.name for n in nodes]
    assert names == [
        "orders-1@w1.example.org",
        "orders-2@w1.example.org",
        "orders-3@w1.example.org",
        "orders-1@w2",  # unknown hostname: the inventory name
        "orders-2@w2",
        "orders-3@w2",
        "rep-1@w2",
    ]
    rep = nodes[-1]
    assert (rep.group, rep.unit, rep.broker_user, rep.vhost) == (
        "reports",
        "qsetup-worker-reports@1.service",
        "reports",
        "reports",
    )
    assert broker_connections(inv) == [("Shop", "shop"), ("reports", "reports")]


EXPECTED = [
    ExpectedNode("a-1@w1", "w1", "a", "qsetup-worker-a@1.service", "u", "v"),
    ExpectedNode("a-2@w1", "w1", "a", "qsetup-worker-a@2.service", "u", "v"),
    ExpectedNode("a-1@w2", "w2", "a", "qsetup-worker-a@1.service", "u", "v"),
    ExpectedNode("a-1@w3", "w3", "a", "qsetup-worker-a@1.service", "u", "v"),
]


def test_combine_and_problems() -> None:
    result = InspectResult(
        "u",
        "v",
        None,
        frozenset({"a-1@w1", "a-2@w1", "stray@laptop"}),
        {"a-1@w1": ("proj.add",), "a-2@w1": (), "stray@laptop": ("proj.add",)},
        {"a-1@w1": 2, "a-2@w1": 0, "stray@laptop": 0},
    )
    nodes = combine_nodes(EXPECTED, [result])
    assert [(n.name, n.expected, n.answers_ping, n.active) for n in nodes] == [
        ("a-1@w1", True, True, 2),
        ("a-2@w1", True, True, 0),
        ("a-1@w2", True, False, None),
        ("a-1@w3", True, False, None),
        ("stray@laptop", False, True, 0),
    ]
    problems = worker_problems(nodes, [result], "mq", unreachable=frozenset({"w3"}))
    assert problems == [
        "w1: worker node a-2@w1 (qsetup-worker-a@2.service): registers no tasks "
        "(does the app module import its tasks?)",
        "w2: worker node a-1@w2 (qsetup-worker-a@1.service): does not answer ping",
        "laptop: worker node stray@laptop: answers on vhost 'v' but the inventory does not run it",
    ]


def test_a_failed_broadcast_is_one_line_not_one_per_node() -> None:
    result = InspectResult("u", "v", "cannot broadcast to the workers: refused")
    nodes = combine_nodes(EXPECTED, [result])
    assert worker_problems(nodes, [result], "mq") == [
        "mq: broker vhost 'v' as 'u': cannot broadcast to the workers: refused"
    ]
