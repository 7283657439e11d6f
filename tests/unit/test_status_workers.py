"""qsetup status, workers: node names as systemd + Celery expand them, answers, problems."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from unitdata import FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.desired.names import expand_node_name
from qsetup.inventory.loader import load_inventory
from qsetup.status import workers
from qsetup.status.workers import (
    ExpectedNode,
    InspectResult,
    NodeNames,
    broker_connections,
    combine_nodes,
    expected_nodes,
    ping_nodes,
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


def test_status_keeps_no_node_name_logic_of_its_own() -> None:
    assert not hasattr(workers, "expand_node_name")
    assert not hasattr(workers, "worker_unit")


def test_node_names_guess_inventory_names_until_hostnames_are_known(full: object) -> None:
    inv = full.inventory  # type: ignore[attr-defined]
    names = NodeNames(inv, "Shop", "shop")
    guess = {f"orders-{i}@{h}" for i in (1, 2, 3) for h in ("w1", "w2")}
    assert names() == guess
    names.learn({"w1": "w1.example.org", "w2": None, "mq": "mq"})
    assert names() == {f"orders-{i}@w1.example.org" for i in (1, 2, 3)} | {
        f"orders-{i}@w2" for i in (1, 2, 3)
    }
    assert NodeNames(inv, "reports", "reports")() == {"rep-1@w2"}


class _FakeMailbox:
    """Delivers one reply per node to the callback, as kombu's Mailbox does, then the wait."""

    def __init__(self, replies: list[str]) -> None:
        self.log: list[str] = []
        self.replies = replies

    def _broadcast(
        self,
        command: str,
        arguments: Mapping[str, Any],
        destination: list[str] | None,
        reply: bool,
        timeout: float,
        limit: int | None,
        callback: Callable[..., Any],
    ) -> list[Mapping[str, Any]]:
        assert (command, arguments, destination, reply, limit) == (
            "registered", {"taskinfoitems": []}, None, True, None,
        )  # fmt: skip
        self.log.append(f"ping timeout={timeout}")
        for node in self.replies:
            self.log.append(f"reply {node}")
            callback({node: [f"task.of.{node}"]})
        self.log.append("waited the whole timeout")  # kombu: no reply for ping_timeout
        return [{n: [f"task.of.{n}"]} for n in self.replies]


def test_the_ping_stops_once_every_expected_node_answered() -> None:
    app = _FakeMailbox(["a-1@w1", "stray@laptop", "a-2@w1", "late@elsewhere"])
    replies: dict[str, Any] = {}
    answered = ping_nodes(app, 1.0, lambda: frozenset({"a-1@w1", "a-2@w1"}), replies)
    # a stray that answers before the last expected node is caught; later ones are not
    assert answered == {"a-1@w1", "stray@laptop", "a-2@w1"}
    assert replies["a-2@w1"] == ["task.of.a-2@w1"]  # the same answer names the tasks
    assert app.log == ["ping timeout=1.0", "reply a-1@w1", "reply stray@laptop", "reply a-2@w1"]


def test_the_ping_waits_the_timeout_while_an_expected_node_is_missing() -> None:
    app = _FakeMailbox(["a-1@w1", "stray@laptop"])
    answered = ping_nodes(app, 1.0, lambda: frozenset({"a-1@w1", "a-2@w1"}))
    assert answered == {"a-1@w1", "stray@laptop"}
    assert app.log[-1] == "waited the whole timeout"


def test_the_ping_asks_for_expected_names_at_every_reply() -> None:
    """Hostnames learnt from the SSH round while the ping runs count at once."""
    wanted = [frozenset({"a-1@w1"})]  # the guess: hostname as in the inventory
    app = _FakeMailbox(["a-1@w1.lan", "stray@x", "late@y"])

    def expected() -> frozenset[str]:
        names = wanted[0]
        wanted[0] = frozenset({"a-1@w1.lan"})  # the SSH round came back meanwhile
        return names

    assert ping_nodes(app, 1.0, expected) == {"a-1@w1.lan", "stray@x"}
    assert "waited the whole timeout" not in app.log


def test_inspect_workers_passes_the_expected_names_to_the_ping(
    full: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def fake_ping(
        app: Any, ping_timeout: float, expected: Callable[[], Any], replies: Any = None
    ) -> frozenset[str]:
        calls.append((ping_timeout, expected()))
        return frozenset()

    monkeypatch.setattr(workers, "ping_nodes", fake_ping)
    names = NodeNames(full.inventory, "reports", "reports")  # type: ignore[attr-defined]
    result = workers.inspect_workers(full, "reports", "reports", 1.0, 0.5, names)  # type: ignore[arg-type]
    assert result.error is None and result.ping == frozenset()
    assert calls == [(0.5, {"rep-1@w2"})]


def test_a_reply_during_the_consumers_cancel_is_kept_and_does_not_raise_again() -> None:
    """kombu cancels the reply consumer on the way out; a reply then reaches the callback."""
    log: list[str] = []

    class _Cancelling(_FakeMailbox):
        def _broadcast(self, *args: Any) -> list[Mapping[str, Any]]:
            callback = args[-1]
            try:
                return super()._broadcast(*args)
            except Exception:
                callback({"late@elsewhere": []})  # must not raise again
                log.append("cancelled cleanly")
                raise

    app = _Cancelling(["a-1@w1"])
    assert ping_nodes(app, 1.0, lambda: frozenset({"a-1@w1"})) == {"a-1@w1", "late@elsewhere"}
    assert log == ["cancelled cleanly"]
