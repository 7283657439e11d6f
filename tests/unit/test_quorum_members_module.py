"""The quorum-members module (playbooks/library/qsetup_quorum_members.py): grow, then wait."""

from __future__ import annotations

import json
from typing import Any

from unitdata import playbook_module

qm: Any = playbook_module("library/qsetup_quorum_members.py")

A, B, C = "rabbit@a", "rabbit@b", "rabbit@c"


class Broker:
    """A fake cluster: rabbitmqctl answers from its queues; grow adds a member that
    comes online ``boot`` reads later."""

    def __init__(self, queues: dict[str, list[dict[str, Any]]], boot: int = 1) -> None:
        self.queues = queues
        self.boot = boot
        self.pending: dict[tuple[str, str, str], int] = {}
        self.calls: list[list[str]] = []

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        if argv[:2] == ["rabbitmqctl", "list_vhosts"]:
            names = [{"name": v} for v in self.queues]
            return 0, "Listing vhosts ...\n" + json.dumps(names), ""
        if argv[:2] == ["rabbitmqctl", "list_queues"]:
            vhost = argv[argv.index("-p") + 1]
            for (v, name, node), left in list(self.pending.items()):
                if left <= 0:
                    q = next(q for q in self.queues[v] if q["name"] == name)
                    q["online"].append(node)
                    del self.pending[(v, name, node)]
                else:
                    self.pending[(v, name, node)] = left - 1
            return 0, json.dumps(self.queues[vhost]), ""
        if argv[:2] == ["rabbitmq-queues", "grow"]:
            node = argv[2]
            for v, queues in self.queues.items():
                for q in queues:
                    if q["type"] == "quorum" and node not in q["members"]:
                        q["members"].append(node)
                        self.pending[(v, q["name"], node)] = self.boot
            return 0, "", ""
        raise AssertionError(argv)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def quorum(name: str, members: list[str], online: list[str]) -> dict[str, Any]:
    return {"name": name, "type": "quorum", "members": list(members), "online": list(online)}


def converge(broker: Broker, timeout: float = 120) -> dict[str, Any]:
    clock = Clock()
    result: dict[str, Any] = qm.converge(broker.run, [A, B, C], timeout, clock, clock.sleep)
    return result


def test_a_rejoined_node_gets_a_member_on_every_queue_and_the_call_waits_until_it_is_online() -> (
    None
):
    broker = Broker(
        {
            "/": [quorum("celery", [A, B], [A, B]), {"name": "x", "type": "classic"}],
            "proj": [quorum("a.pidbox", [A, B], [A, B])],
        },
        boot=2,
    )
    result = converge(broker)
    assert result == {"changed": True, "grown": [C], "quorum_queues": 2}
    for queues in broker.queues.values():
        for q in queues:
            if q["type"] == "quorum":
                assert sorted(q["members"]) == sorted(q["online"]) == [A, B, C]


def test_a_member_listed_but_offline_is_waited_for_without_a_grow() -> None:
    broker = Broker({"/": [quorum("celery", [A, B, C], [A, B])]})
    broker.pending[("/", "celery", C)] = 3
    result = converge(broker)
    assert result["changed"] is False and result["grown"] == []
    assert not [c for c in broker.calls if c[0] == "rabbitmq-queues"]
    assert broker.queues["/"][0]["online"] == [A, B, C]


def test_a_whole_cluster_is_read_once_and_left_alone() -> None:
    broker = Broker({"/": [quorum("celery", [A, B, C], [A, B, C])]})
    assert converge(broker) == {"changed": False, "grown": [], "quorum_queues": 1}
    assert len(broker.calls) == 2  # list_vhosts, one list_queues


def test_a_member_that_never_comes_online_fails_with_the_queue_named() -> None:
    broker = Broker(
        {"proj": [quorum("celery", [A, B, C], [A, B]), quorum("celery_delayed_0", [A, B, C], [A])]}
    )
    result = converge(broker, timeout=10)
    assert result["failed"] is True
    assert result["msg"].startswith(
        "quorum queue 'celery' (vhost 'proj'): member rabbit@c still offline (and 1 more queues)"
    )
    assert "\n" not in result["msg"]


def test_members_on_nodes_outside_the_inventory_are_not_waited_for() -> None:
    broker = Broker({"/": [quorum("celery", [A, B, C, "rabbit@old"], [A, B, C])]})
    assert converge(broker)["changed"] is False


def test_banner_lines_before_the_json_are_skipped() -> None:
    assert qm.parse_json_list('Timeout: 60.0 seconds ...\n[{"name": "/"}]\n') == [{"name": "/"}]
    assert qm.parse_json_list("Error: unable to perform an operation") == []


def test_a_failing_rabbitmqctl_is_retried_then_reported() -> None:
    def run(argv: list[str]) -> tuple[int, str, str]:
        return 69, "", "Error: unable to perform an operation on node 'rabbit@a'"

    clock = Clock()
    result = qm.converge(run, [A, B, C], 6, clock, clock.sleep)
    assert result["failed"] is True
    assert result["msg"].startswith("rabbitmqctl list_vhosts failed: Error: unable to perform")


def test_a_grow_that_keeps_failing_is_retried_and_its_own_error_ends_the_message() -> None:
    broker = Broker({"proj": [quorum("celery", [A, B], [A, B])]})
    answer = broker.run

    def run(argv: list[str]) -> tuple[int, str, str]:
        if argv[:2] == ["rabbitmq-queues", "grow"]:
            broker.calls.append(argv)
            return 69, "", "Error:\nNode rabbit@c is down or not running"
        return answer(argv)

    clock = Clock()
    result = qm.converge(run, [A, B, C], 10, clock, clock.sleep)
    assert result["failed"] is True and result["grown"] == []
    assert len([c for c in broker.calls if c[:2] == ["rabbitmq-queues", "grow"]]) > 1
    assert result["msg"].startswith(
        "quorum queue 'celery' (vhost 'proj') has no member on rabbit@c after rabbitmq-queues"
        " grow after 10 s; rabbitmq-queues grow rabbit@c all failed: exit 69: Node rabbit@c is"
        " down or not running; see journalctl"
    )
    assert "\n" not in result["msg"]


def test_a_grow_that_fails_once_then_works_is_not_reported() -> None:
    broker = Broker({"proj": [quorum("celery", [A, B], [A, B])]})
    answer, failures = broker.run, [1]

    def run(argv: list[str]) -> tuple[int, str, str]:
        if argv[:2] == ["rabbitmq-queues", "grow"] and failures:
            failures.pop()
            return 69, "", "Error: timed out"
        return answer(argv)

    clock = Clock()
    result = qm.converge(run, [A, B, C], 120, clock, clock.sleep)
    assert result == {"changed": True, "grown": [C], "quorum_queues": 1}
