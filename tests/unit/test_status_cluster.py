"""qsetup status on a RabbitMQ cluster: nodes placed on hosts, quorum replicas, API failover.

The API answers are RabbitMQ 3.10.8's, recorded on a 3-node cluster (trimmed to the
fields status reads); the variations (partition, a node missing) follow the shapes of
RabbitMQ's management API.
"""

from __future__ import annotations

import copy
import json
from io import StringIO
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.cli import app
from qsetup.desired.state import broker_state
from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.inventory.model import Inventory
from qsetup.remote.http import NoAnswer
from qsetup.status.broker import broker_problems, failed_broker, fetch_broker, parse_api
from qsetup.status.cluster import is_client_queue, parse_quorum_queues, place_nodes
from qsetup.status.model import BrokerStatus, HostStatus, QuorumQueue, SystemStatus
from qsetup.status.workers import InspectResult
from qsetup.ui.report import status_json, status_view

CLUSTER_INVENTORY = """\
version: 1
hosts:
  mq1:
    address: 10.0.0.11
  mq2:
    address: 10.0.0.12
  mq3:
    address: 10.0.0.13
  wk1:
    address: 10.0.0.14
broker:
  hosts: [mq1, mq2, mq3]
  vhosts: [proj]
  users:
    - name: proj
      vhost: proj
app:
  module: proj
  source:
    path: app
  broker_user: proj
  vhost: proj
workers:
  - name: default
    hosts: [wk1]
    install: pip
"""
CLUSTER_SECRETS = {
    "rabbitmq-erlang-cookie": "COOKIECOOKIECOOKIECOOKIECOOKIEAB",
    "rabbitmq-user-proj": "proj-pw-0123456789abcdef",
}
HOSTNAMES: dict[str, str | None] = {"mq1": "mq1", "mq2": "mq2", "mq3": "mq3", "wk1": "wk1"}
MEMBERS = ["rabbit@mq1", "rabbit@mq3", "rabbit@mq2"]  # the API's order, not sorted

# GET /api/nodes on mq2 while mq1 was powered off (RabbitMQ 3.10.8; a node that is down
# has no figures at all).
NODES_MQ1_DOWN: list[dict[str, Any]] = [
    {"name": "rabbit@mq1", "type": "disc", "running": False},
    {"partitions": [], "mem_limit": 10110425497, "mem_alarm": False,
     "disk_free_limit": 50000000, "disk_free_alarm": False, "name": "rabbit@mq2",
     "type": "disc", "running": True, "mem_used": 152080384, "disk_free": 80359170048},
    {"partitions": [], "mem_limit": 10110425497, "mem_alarm": False,
     "disk_free_limit": 50000000, "disk_free_alarm": False, "name": "rabbit@mq3",
     "type": "disc", "running": True, "mem_used": 148623360, "disk_free": 80359190528},
]  # fmt: skip


def _queues_mq1_down() -> list[dict[str, Any]]:
    """GET /api/queues?columns=... on mq2 at the same time: the worker queue, Celery's 28
    delayed-delivery quorum queues, an event and a control queue (classic)."""
    qs: list[dict[str, Any]] = [
        {"consumers": 2, "leader": "rabbit@mq2", "members": MEMBERS, "messages_ready": 0,
         "messages_unacknowledged": 0, "name": "celery",
         "online": ["rabbit@mq3", "rabbit@mq2"], "type": "quorum", "vhost": "proj"},
    ]  # fmt: skip
    for n in range(28):
        qs.append(
            {"consumers": 0, "leader": "rabbit@mq3" if n % 2 else "rabbit@mq2",
             "members": MEMBERS, "messages_ready": 0, "messages_unacknowledged": 0,
             "name": f"celery_delayed_{n}", "online": ["rabbit@mq3", "rabbit@mq2"],
             "type": "quorum", "vhost": "proj"}
        )  # fmt: skip
    qs.append({"consumers": 1, "messages_ready": 0, "messages_unacknowledged": 0,
               "name": "celeryev.a67dbdc9-e6a7-4efb-80a1-94d7e72e5f45", "type": "classic",
               "vhost": "proj"})  # fmt: skip
    qs.append({"consumers": 1, "messages_ready": 0, "messages_unacknowledged": 0,
               "name": "default-1@wk1.celery.pidbox", "type": "classic",
               "vhost": "proj"})  # fmt: skip
    return qs


def _healthy_nodes() -> list[dict[str, Any]]:
    nodes = copy.deepcopy(NODES_MQ1_DOWN)
    nodes[0] = dict(nodes[1], name="rabbit@mq1")
    return nodes


def _healthy_queues() -> list[dict[str, Any]]:
    queues = _queues_mq1_down()
    for q in queues:
        if q["type"] == "quorum":
            q["online"] = list(MEMBERS)
    return queues


def _answers(inv: Inventory, nodes: Any = None, queues: Any = None) -> dict[str, Any]:
    """Every answer parse_api takes, the broker objects as deploy leaves them."""
    exp = broker_state(inv)
    return {
        "overview": {"rabbitmq_version": "3.10.8", "erlang_version": "25.2.3"},
        "nodes": _healthy_nodes() if nodes is None else nodes,
        "vhosts": [{"name": v} for v in exp.vhosts] + [{"name": "/"}],
        "users": [{"name": u.name, "tags": list(u.tags)} for u in exp.users],
        "permissions": [
            {
                "user": u.name,
                "vhost": p.vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
            for u in exp.users
            for p in u.permissions
        ],  # fmt: skip
        "queues": _healthy_queues() if queues is None else queues,
    }


@pytest.fixture
def loaded(write_inventory: WriteInventory) -> LoadedInventory:
    return load_inventory(write_inventory(CLUSTER_INVENTORY, CLUSTER_SECRETS))


@pytest.fixture
def inv(loaded: LoadedInventory) -> Inventory:
    return loaded.inventory


def _status(
    inv: Inventory,
    hostnames: dict[str, str | None] | None = None,
    *,
    api_host: str = "mq1",
    api_errors: tuple[tuple[str, str], ...] = (),
    **over: Any,
) -> BrokerStatus:
    parsed = parse_api(inv, **_answers(inv, **over), api_host=api_host, api_errors=api_errors)
    return place_nodes(inv, parsed, HOSTNAMES if hostnames is None else hostnames)


def _system(broker: BrokerStatus, problems: list[str]) -> SystemStatus:
    hosts = tuple(
        HostStatus(h, f"10.0.0.{11 + i}", ("broker",), True, None, h, (), (), None, "3.10.8")
        for i, h in enumerate(("mq1", "mq2", "mq3"))
    )
    return SystemStatus(hosts, broker, (), None, tuple(problems), "2024-01-01T00:00:00+00:00", 1.0)


def _render(status: SystemStatus) -> str:
    buf = StringIO()
    Console(file=buf, width=220, color_system=None).print(status_view(status))
    return buf.getvalue()


def _row(text: str, *words: str) -> str:
    return next(r for r in text.splitlines() if "│" in r and all(w in r for w in words))


# --- a healthy cluster ----------------------------------------------------------------


def test_a_healthy_cluster_has_no_problems(inv: Inventory) -> None:
    status = _status(inv)
    assert broker_problems(inv, status) == []
    assert [(n.name, n.host, n.expected, n.running) for n in status.nodes] == [
        ("rabbit@mq1", "mq1", True, True),
        ("rabbit@mq2", "mq2", True, True),
        ("rabbit@mq3", "mq3", True, True),
    ]
    assert status.api_host == "mq1" and status.api_url == "http://10.0.0.11:15672/api"
    assert len(status.quorum_queues) == 29  # classic queues are not listed there
    celery = next(q for q in status.quorum_queues if q.name == "celery")
    assert celery.members == ("rabbit@mq1", "rabbit@mq2", "rabbit@mq3")
    assert celery.offline == () and celery.leader == "rabbit@mq2" and celery.has_quorum


def test_healthy_cluster_json_keeps_every_old_key_and_adds_the_cluster(inv: Inventory) -> None:
    data = status_json(_system(_status(inv), []))
    json.dumps(data)
    broker = data["broker"]
    old = {"host", "api_url", "error", "rabbitmq_version", "erlang_version", "nodes", "vhosts",
           "users", "drift", "queues"}  # fmt: skip
    assert old | {"api_host", "api_errors", "quorum_queues"} == set(broker)
    assert broker["host"] == "mq1" and broker["api_host"] == "mq1" and broker["api_errors"] == {}
    assert broker["nodes"][1] == {
        "name": "rabbit@mq2", "running": True, "mem_alarm": False, "disk_free_alarm": False,
        "mem_used": 152080384, "mem_limit": 10110425497, "disk_free": 80359170048,
        "disk_free_limit": 50000000, "host": "mq2", "expected": True, "listed": True,
        "partitions": [],
    }  # fmt: skip
    assert broker["quorum_queues"][0] == {
        "vhost": "proj", "name": "celery",
        "members": ["rabbit@mq1", "rabbit@mq2", "rabbit@mq3"],
        "online": ["rabbit@mq1", "rabbit@mq2", "rabbit@mq3"], "offline": [],
        "leader": "rabbit@mq2", "has_quorum": True, "celery_own": False,
    }  # fmt: skip
    assert sum(q["celery_own"] for q in broker["quorum_queues"]) == 28


def test_healthy_cluster_table_has_a_row_per_node_and_a_quorum_summary(inv: Inventory) -> None:
    text = _render(_system(_status(inv), []))
    for host in ("mq1", "mq2", "mq3"):
        row = _row(text, f"node rabbit@{host}")
        assert f"│ {host} " in row and "running" in row and "alarms: none" in row
    assert "memory 152.1 MB of 10.1 GB, disk free 80.4 GB (limit 50.0 MB)" in text
    assert "3 of 3 online" in _row(text, "quorum queue proj/celery")
    assert "all members online" in _row(text, "28 more quorum queues")
    # Celery's own queues are not one row each
    for name in ("celery_delayed_0", "default-1@wk1.celery.pidbox", "celeryev.a67"):
        assert name not in text
    assert text.rstrip().splitlines()[-1].startswith("healthy:")


# --- one node down --------------------------------------------------------------------


def test_one_node_down_names_the_node_and_its_missing_replicas(inv: Inventory) -> None:
    # mq1 is off: SSH cannot read its hostname, the API was read on mq2.
    hostnames = dict(HOSTNAMES, mq1=None)
    status = _status(
        inv,
        hostnames,
        nodes=NODES_MQ1_DOWN,
        queues=_queues_mq1_down(),
        api_host="mq2",
        api_errors=(("mq1", "cannot connect (is RabbitMQ's management plugin running?)"),),
    )
    assert broker_problems(inv, status) == [
        "mq1: broker node rabbit@mq1: not running",
        "mq1: broker queue 'celery' (vhost 'proj'): quorum member rabbit@mq1 offline "
        "(2 of 3 online, leader rabbit@mq2)",
        "mq1: broker vhost 'proj': 28 quorum queues of Celery's own (celery_delayed_*, "
        "celeryev.*, *.pidbox): 28 miss rabbit@mq1",
    ]
    text = _render(_system(status, broker_problems(inv, status)))
    assert "not running" in _row(text, "node rabbit@mq1")
    row = _row(text, "quorum queue proj/celery")
    assert "2 of 3 online" in row and "offline rabbit@mq1" in row
    assert "28 miss rabbit@mq1" in _row(text, "28 more quorum queues")
    api = _row(text, "management API")
    assert "│ mq2 " in api and "not on mq1: cannot connect" in api
    data = status_json(_system(status, []))["broker"]
    assert data["api_host"] == "mq2" and set(data["api_errors"]) == {"mq1"}
    assert data["nodes"][0]["running"] is False and data["nodes"][0]["mem_used"] is None
    assert data["quorum_queues"][0]["offline"] == ["rabbit@mq1"]


def test_no_quorum_is_said_per_queue(inv: Inventory) -> None:
    queues = _queues_mq1_down()
    # RabbitMQ 3.10 gives no leader as ""; 4.x may name the last leader, now offline.
    queues[0].update(online=["rabbit@mq3"], leader="")
    queues[1].update(online=["rabbit@mq3"], leader="rabbit@mq2")
    nodes = copy.deepcopy(NODES_MQ1_DOWN)
    nodes[1] = {"name": "rabbit@mq2", "type": "disc", "running": False}
    problems = broker_problems(inv, _status(inv, nodes=nodes, queues=queues, api_host="mq3"))
    assert problems == [
        "mq1: broker node rabbit@mq1: not running",
        "mq2: broker node rabbit@mq2: not running",
        "mq3: broker queue 'celery' (vhost 'proj'): no quorum, takes no messages "
        "(1 of 3 online, no leader; offline rabbit@mq1, rabbit@mq2)",
        "mq3: broker vhost 'proj': 28 quorum queues of Celery's own (celery_delayed_*, "
        "celeryev.*, *.pidbox): 27 miss rabbit@mq1; 1 has no quorum",
    ]


def test_quorum_queue_parsing_follows_3_10_and_4_x_shapes() -> None:
    assert parse_quorum_queues(
        [
            {"vhost": "v", "name": "a", "type": "quorum", "members": MEMBERS,
             "online": MEMBERS, "leader": "rabbit@mq1"},
            # 4.x: a state and the last known leader even when it is down
            {"vhost": "v", "name": "b", "type": "quorum", "members": MEMBERS,
             "online": ["rabbit@mq2", "rabbit@mq3"], "leader": "rabbit@mq1",
             "state": "running"},
            # statistics not in yet: replicas unknown, not missing
            {"vhost": "v", "name": "c", "type": "quorum"},
            {"vhost": "v", "name": "d", "type": "classic"},
        ]
    ) == (
        QuorumQueue("v", "a", ("rabbit@mq1", "rabbit@mq2", "rabbit@mq3"),
                    ("rabbit@mq1", "rabbit@mq2", "rabbit@mq3"), "rabbit@mq1"),
        QuorumQueue("v", "b", ("rabbit@mq1", "rabbit@mq2", "rabbit@mq3"),
                    ("rabbit@mq2", "rabbit@mq3"), None),
    )  # fmt: skip


def test_celerys_own_queues() -> None:
    for name in ("celery_delayed_0", "celery_delayed_27", "celeryev.x-y", "a@b.celery.pidbox"):
        assert is_client_queue(name), name
    for name in ("celery", "celery_delayed", "celery_delayed_x", "orders"):
        assert not is_client_queue(name), name


# --- partition, a node missing, a stranger ---------------------------------------------


def test_a_partition_is_a_line_per_side(inv: Inventory) -> None:
    nodes = _healthy_nodes()
    nodes[0]["partitions"] = ["rabbit@mq3"]
    nodes[2]["partitions"] = ["rabbit@mq1", "rabbit@mq2"]
    nodes[1]["partitions"] = ["rabbit@mq3"]
    status = _status(inv, nodes=nodes)
    assert broker_problems(inv, status) == [
        "mq1: broker node rabbit@mq1: partitioned from rabbit@mq3",
        "mq2: broker node rabbit@mq2: partitioned from rabbit@mq3",
        "mq3: broker node rabbit@mq3: partitioned from rabbit@mq1, rabbit@mq2",
    ]
    row = _row(_render(_system(status, ["x"])), "node rabbit@mq3")
    assert "partitioned" in row and "partitioned from rabbit@mq1, rabbit@mq2" in row
    assert status_json(_system(status, []))["broker"]["nodes"][2]["partitions"] == [
        "rabbit@mq1",
        "rabbit@mq2",
    ]


def test_a_node_missing_from_the_api_and_a_stranger(inv: Inventory) -> None:
    nodes = _healthy_nodes()
    nodes[2] = dict(nodes[2], name="rabbit@old")  # mq3 never joined; an old node remains
    status = _status(inv, nodes=nodes)
    assert broker_problems(inv, status) == [
        "mq3: broker node rabbit@mq3: not in the cluster (mq1's management API lacks it)",
        "mq1: broker node rabbit@old: in the cluster but not in the inventory's broker.hosts",
    ]
    by_name = {n.name: n for n in status.nodes}
    assert by_name["rabbit@mq3"].listed is False and by_name["rabbit@mq3"].host == "mq3"
    assert by_name["rabbit@old"].expected is False and by_name["rabbit@old"].host is None
    text = _render(_system(status, ["x"]))
    assert "not in cluster" in _row(text, "node rabbit@mq3")
    assert "not in the inventory's broker.hosts" in _row(text, "node rabbit@old")


def test_nodes_are_matched_by_the_hostname_each_host_reports(inv: Inventory) -> None:
    nodes = _healthy_nodes()
    for node, name in zip(nodes, ("rabbit@a", "rabbit@b", "rabbit@c"), strict=True):
        node["name"] = name
    hostnames = {"mq1": "a.example.org", "mq2": "b", "mq3": None, "wk1": "wk1"}
    status = _status(inv, hostnames, nodes=nodes, queues=[])
    # (no queues at all: the worker queue's line is the only one)
    # mq3 did not report its hostname: the one node left over is taken to be its node
    assert [(n.name, n.host) for n in status.nodes] == [
        ("rabbit@a", "mq1"),
        ("rabbit@b", "mq2"),
        ("rabbit@c", "mq3"),
    ]
    assert broker_problems(inv, status) == [
        "mq1: broker queue 'celery' (vhost 'proj'): missing (worker group default)"
    ]


# --- the management API of the first node down ------------------------------------------


class _Resp:
    def __init__(self, body: Any, status_code: int = 200) -> None:
        self.body = body
        self.status_code = status_code

    def json(self) -> Any:
        return self.body


def _fake_session(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any], down: dict[str, Exception | int]
) -> list[str]:
    """The API client answering ``answers`` on every address but those in ``down``."""
    asked: list[str] = []

    class _Session:
        def __init__(self, *_: Any) -> None:
            return None

        def __enter__(self) -> _Session:
            return self

        def __exit__(self, *_: Any) -> None:
            return None

        def get(self, url: str, **_: Any) -> _Resp:
            address = url.split("//", 1)[1].split(":", 1)[0]
            path = url.rsplit("/api/", 1)[1]
            asked.append(f"{address} {path}")
            failure = down.get(address)
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                return _Resp({"error": "x"}, failure)
            return _Resp(answers[path])

    monkeypatch.setattr("qsetup.status.broker.Client", _Session)
    return asked


def _api_answers(inv: Inventory, **over: Any) -> dict[str, Any]:
    answers = _answers(inv, **over)
    answers.update({"topic-permissions": [], "policies": []})
    return answers


def test_first_node_api_down_second_answers(
    loaded: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = loaded.inventory
    asked = _fake_session(
        monkeypatch,
        _api_answers(inv, nodes=NODES_MQ1_DOWN, queues=_queues_mq1_down()),
        {"10.0.0.11": NoAnswer("connect", "refused")},
    )
    status = fetch_broker(loaded, 1.0)
    assert asked[0] == "10.0.0.11 overview"  # the first node is asked first
    assert {a.split()[0] for a in asked[1:]} == {"10.0.0.12"}  # mq3 is not needed
    assert status.error is None and status.drift == ()
    assert (status.host, status.api_host) == ("mq1", "mq2")
    assert status.api_url == "http://10.0.0.12:15672/api"
    assert status.api_errors == (
        ("mq1", "cannot connect (is RabbitMQ's management plugin running?)"),
    )
    # its node is down: the node's line says so, the API's failure is no extra line
    problems = broker_problems(inv, place_nodes(inv, status, dict(HOSTNAMES, mq1=None)))
    assert problems[0] == "mq1: broker node rabbit@mq1: not running"
    assert not any("management API" in p for p in problems)


def test_a_running_node_whose_api_fails_is_a_line(
    loaded: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = loaded.inventory
    _fake_session(
        monkeypatch,
        _api_answers(inv),
        {"10.0.0.11": NoAnswer("timeout", "slow"), "10.0.0.12": 503},
    )
    status = place_nodes(inv, fetch_broker(loaded, 2.0), HOSTNAMES)
    assert status.api_host == "mq3"
    assert broker_problems(inv, status) == [
        "mq1: broker management API: no answer within 2 s (its node runs; status read mq3's)",
        "mq2: broker management API: GET /api/overview answered HTTP 503 (its node runs; "
        "status read mq3's)",
    ]


def test_every_node_api_down_is_a_line_per_node(
    loaded: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = loaded.inventory
    refused = NoAnswer("connect", "refused")
    _fake_session(monkeypatch, {}, {a: refused for a in ("10.0.0.11", "10.0.0.12", "10.0.0.13")})
    status = place_nodes(inv, fetch_broker(loaded, 1.0), HOSTNAMES)
    assert status.error == "no broker node's management API answered"
    assert status.api_host is None and status.nodes == ()
    why = "cannot connect (is RabbitMQ's management plugin running?)"
    assert broker_problems(inv, status) == [
        f"mq{i}: broker management API http://10.0.0.1{i}:15672/api: {why}" for i in (1, 2, 3)
    ]
    text = _render(_system(status, ["x"]))
    assert all("error" in _row(text, h, "management API") for h in ("mq1", "mq2", "mq3"))
    assert status_json(_system(status, []))["broker"]["api_errors"] == {
        "mq1": why,
        "mq2": why,
        "mq3": why,
    }


# --- one node, as before --------------------------------------------------------------


def test_a_single_node_broker_reads_as_before(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_inventory(write_inventory(BASE_INVENTORY, BASE_SECRETS))
    inv = loaded.inventory
    nodes = [dict(_healthy_nodes()[0], name="rabbit@rabbit1")]
    queues = [{"vhost": "orders", "name": "celery", "type": "classic", "consumers": 1}]
    asked = _fake_session(monkeypatch, _api_answers(inv, nodes=nodes, queues=queues), {})
    status = place_nodes(inv, fetch_broker(loaded, 1.0), {"rabbit1": "rabbit1"})
    assert {a.split()[0] for a in asked} == {"10.0.0.1"}
    assert (status.host, status.api_host, status.api_errors) == ("rabbit1", "rabbit1", ())
    assert status.api_url == "http://10.0.0.1:15672/api"
    assert [(n.name, n.host) for n in status.nodes] == [("rabbit@rabbit1", "rabbit1")]
    assert status.quorum_queues == ()
    assert broker_problems(inv, status) == []
    # the node down: the same line as before clusters
    nodes[0] = {"name": "rabbit@rabbit1", "running": False}
    down = place_nodes(inv, parse_api(inv, **_answers(inv, nodes=nodes, queues=queues)), {})
    assert broker_problems(inv, down) == ["rabbit1: broker node rabbit@rabbit1: not running"]
    # the API down: one line, as before
    refused = NoAnswer("connect", "refused")
    _fake_session(monkeypatch, {}, {"10.0.0.1": refused})
    failed = fetch_broker(loaded, 1.0)
    assert failed.error == "cannot connect (is RabbitMQ's management plugin running?)"
    assert broker_problems(inv, failed) == [
        "rabbit1: broker management API http://10.0.0.1:15672/api: cannot connect "
        "(is RabbitMQ's management plugin running?)"
    ]
    assert broker_problems(inv, failed) == broker_problems(
        inv, failed_broker(inv, "cannot connect (is RabbitMQ's management plugin running?)")
    )


# --- check_status and the CLI: nodes placed by the SSH round's hostnames, exit 3 --------


def _wire(monkeypatch: pytest.MonkeyPatch, loaded: LoadedInventory) -> None:
    from qsetup.status import check

    inv = loaded.inventory
    nodes = copy.deepcopy(NODES_MQ1_DOWN)
    for node, name in zip(nodes, ("rabbit@rabbit-a", "rabbit@rabbit-b", "rabbit@rabbit-c"),
                          strict=True):  # fmt: skip
        node["name"] = name
    queues = _queues_mq1_down()
    for q in queues:
        if q["type"] == "quorum":
            q["members"] = ["rabbit@rabbit-a", "rabbit@rabbit-b", "rabbit@rabbit-c"]
            q["online"] = ["rabbit@rabbit-b", "rabbit@rabbit-c"]
            q["leader"] = "rabbit@rabbit-b"
    answers = _answers(inv, nodes=nodes, queues=queues)
    reported = {"mq1": "rabbit-a", "mq2": "rabbit-b.example.org", "mq3": "rabbit-c", "wk1": "wk1"}

    def read_hosts(loaded: LoadedInventory, timeout: float, *_: Any) -> dict[str, HostStatus]:
        return {
            name: HostStatus(name, h.address, (), True, None, reported[name], (), (), None, None)
            for name, h in loaded.inventory.hosts.items()
        }

    def inspect(loaded: Any, user: str, vhost: str, *_: Any) -> InspectResult:
        names = frozenset({"default-1@wk1"})
        return InspectResult(user, vhost, None, names, {"default-1@wk1": ("proj.add",)})

    monkeypatch.setattr(check, "start_reading", lambda *_: None)  # no host is contacted
    monkeypatch.setattr("qsetup.status.ssh.start_reading", lambda *_: None)  # nor by the CLI
    monkeypatch.setattr(check, "read_hosts", read_hosts)
    monkeypatch.setattr(check, "fetch_broker", lambda *_: parse_api(inv, **answers))
    monkeypatch.setattr(check, "inspect_workers", inspect)
    monkeypatch.setattr(check, "check_flower", lambda *_: None)


def test_check_status_places_nodes_by_hostname(
    loaded: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qsetup.status.check import check_status

    _wire(monkeypatch, loaded)
    status = check_status(loaded, 1.0)
    assert status.broker is not None
    assert [(n.name, n.host) for n in status.broker.nodes] == [
        ("rabbit@rabbit-a", "mq1"),
        ("rabbit@rabbit-b", "mq2"),
        ("rabbit@rabbit-c", "mq3"),
    ]
    assert status.problems == (
        "mq1: broker node rabbit@rabbit-a: not running",
        "mq1: broker queue 'celery' (vhost 'proj'): quorum member rabbit@rabbit-a offline "
        "(2 of 3 online, leader rabbit@rabbit-b)",
        "mq1: broker vhost 'proj': 28 quorum queues of Celery's own (celery_delayed_*, "
        "celeryev.*, *.pidbox): 28 miss rabbit@rabbit-a",
    )


def test_cli_exit_3_when_a_node_is_down(
    loaded: LoadedInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wire(monkeypatch, loaded)
    res = CliRunner().invoke(app, ["status", "--inventory", str(loaded.path), "--json"])
    assert res.exit_code == 3, res.output
    data = json.loads(res.stdout)
    assert data["broker"]["nodes"][0]["host"] == "mq1"
    assert data["broker"]["quorum_queues"][0]["offline"] == ["rabbit@rabbit-a"]


def test_a_consumed_queue_of_the_wrong_type_is_left_to_the_hosts_comparison(
    inv: Inventory,
) -> None:
    """The API's view does not say it again: the primary's comparison names it as the
    deploy's refusal (test_refusals), so status prints the one line."""
    queues = _healthy_queues()
    celery = next(q for q in queues if q["name"] == "celery")
    celery.update(type="classic", members=None, online=None, leader=None)
    problems = broker_problems(inv, _status(inv, queues=queues))
    assert [p for p in problems if "'celery'" in p] == []
