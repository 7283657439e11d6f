"""The cluster play's decisions: who joins whom, what is forgotten, what is unhealthy."""

from __future__ import annotations

import json
from typing import Any

from unitdata import playbook_module

cluster: Any = playbook_module("filter_plugins/qsetup_cluster.py")

A, B, C = "rabbit@a", "rabbit@b", "rabbit@c"


def status(running: list[str], members: list[str], **more: Any) -> str:
    return json.dumps({"running_nodes": running, "disk_nodes": members, "partitions": {},
                       "alarms": [], **more})  # fmt: skip


def plan(*views: tuple[str, str]) -> dict[str, Any]:
    """The shim's plan for hosts whose hostnames are their nodes' names, all read."""
    nodes = [{"host": n.split("@")[1], "address": f"10.0.0.{i}"} for i, (n, _) in enumerate(views)]
    hostvars = {
        n.split("@")[1]: {
            "qsetup_hostname": n.split("@")[1],
            "qsetup_cluster_status": {"rc": 0 if s else 1, "stdout": s},
        }
        for n, s in views
    }
    result: dict[str, Any] = cluster.qsetup_cluster_plan(nodes, hostvars)
    return result


def test_fresh_nodes_join_the_first() -> None:
    got = plan((A, status([A], [A])), (B, status([B], [B])), (C, status([C], [C])))
    assert (got["seed"], got["join"], got["forget"], got["problems"]) == ("a", ["b", "c"], [], [])


def test_a_whole_cluster_needs_nothing() -> None:
    got = plan(*((n, status([A, B, C], [A, B, C])) for n in (A, B, C)))
    assert (got["seed"], got["join"], got["forget"]) == ("a", [], [])


def test_a_rebuilt_node_is_forgotten_then_joins() -> None:
    got = plan(
        (A, status([A, C], [A, B, C])), (B, status([B], [B])), (C, status([A, C], [A, B, C]))
    )
    assert (got["seed"], got["join"], got["forget"]) == ("a", ["b"], [B])


def test_a_rebuilt_first_node_joins_the_others() -> None:
    # The others are the larger running cluster: they are never reset into the new node.
    got = plan(
        (A, status([A], [A])), (B, status([B, C], [A, B, C])), (C, status([B, C], [A, B, C]))
    )
    assert (got["seed"], got["join"], got["forget"]) == ("b", ["a"], [A])


def test_a_node_that_does_not_answer_joins() -> None:
    got = plan((A, status([A, B], [A, B])), (B, status([A, B], [A, B])), (C, ""))
    assert (got["seed"], got["join"], got["forget"]) == ("a", ["c"], [])


def test_dropped_nodes_are_forgotten_when_stopped_and_refused_when_running() -> None:
    gone = "rabbit@old"
    got = plan(*((n, status([A, B, C], [A, B, C, gone])) for n in (A, B, C)))
    assert got["forget"] == [gone] and got["problems"] == []
    got = plan(*((n, status([A, B, C, gone], [A, B, C, gone])) for n in (A, B, C)))
    assert got["forget"] == []
    assert got["problems"] == [
        "RabbitMQ node rabbit@old is running in the cluster but is not in broker.hosts; stop "
        "rabbitmq-server there, then deploy again (qsetup then removes it from the cluster)"
    ]


def test_no_node_answering_is_a_problem_not_a_guess() -> None:
    got = plan((A, ""), (B, ""), (C, "not json"))
    assert got["seed"] is None and got["join"] == [] and got["problems"]


def test_cluster_problems_name_what_is_wrong() -> None:
    assert cluster.qsetup_cluster_problems(status([A, B, C], [A, B, C]), [A, B, C]) == []
    assert cluster.qsetup_cluster_problems(status([A, C], [A, B, C]), [A, B, C]) == [
        "rabbit@b is not running in the cluster"
    ]
    split = status([A, B, C], [A, B, C], partitions={A: [C]})
    assert cluster.qsetup_cluster_problems(split, [A, B, C]) == [
        'network partitions: {"rabbit@a": ["rabbit@c"]}'
    ]
    alarm = status([A, B, C], [A, B, C], alarms=[{"node": B, "resource": "disk"}])
    assert cluster.qsetup_cluster_problems(alarm, [A, B, C]) == [
        'alarm: {"node": "rabbit@b", "resource": "disk"}'
    ]
    assert cluster.qsetup_cluster_problems("", [A]) == ["cluster_status gave no answer"]


def test_node_names_use_the_short_hostname() -> None:
    assert cluster.qsetup_rabbit_node("mq1.example.org") == "rabbit@mq1"
    assert cluster.qsetup_rabbit_node("mq1") == "rabbit@mq1"
