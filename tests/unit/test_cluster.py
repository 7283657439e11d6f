"""A RabbitMQ cluster: the inventory, what is rendered and planned per node, quorum settings.

The integration tier (tests/integration/test_cluster.py) checks the same on real hosts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.artifacts.plan import build_ansible_inventory, pip_packages
from qsetup.artifacts.render import broker_url, render_all
from qsetup.desired.state import FAILOVER_WINDOW, broker_nodes, celery_settings, units_by_host
from qsetup.errors import QsetupError
from qsetup.inventory.loader import load_inventory, validate_document
from qsetup.inventory.model import Inventory, queue_type
from qsetup.inventory.secrets import Secrets
from qsetup.inventory.yamlsource import parse_yaml

CLUSTER = BASE_INVENTORY.replace(
    "  worker1:\n    address: 10.0.0.2\n",
    "  worker1:\n    address: 10.0.0.2\n  rabbit2:\n    address: 10.0.0.3\n"
    "  rabbit3:\n    address: 10.0.0.4\n",
).replace("  host: rabbit1\n  vhosts", "  hosts: [rabbit1, rabbit2, rabbit3]\n  vhosts")


def model(text: str) -> Inventory:
    return validate_document(parse_yaml(Path("inventory.yml"), text))


def secrets() -> Secrets:
    from pydantic import SecretStr

    return Secrets(
        path=Path("/nonexistent/inventory.secrets.yml"),
        values={k: SecretStr(v) for k, v in BASE_SECRETS.items()},
    )


def refused(write_inventory: WriteInventory, text: str) -> list[str]:
    inventory = write_inventory(text)
    with pytest.raises(QsetupError) as caught:
        load_inventory(inventory)
    return [line.replace(f"{inventory}:", "") for line in caught.value.lines()]


# --- inventory ----------------------------------------------------------------------


def test_a_cluster_lists_its_nodes_and_its_first_node() -> None:
    inv = model(CLUSTER)
    assert inv.broker.hosts == ("rabbit1", "rabbit2", "rabbit3")
    assert inv.broker.host == "rabbit1" and inv.broker.clustered
    assert broker_nodes(inv) == (
        ("rabbit1", "10.0.0.1"),
        ("rabbit2", "10.0.0.3"),
        ("rabbit3", "10.0.0.4"),
    )
    assert queue_type(inv) == "quorum"
    single = model(BASE_INVENTORY)
    assert single.broker.hosts == ("rabbit1",) and not single.broker.clustered
    assert queue_type(single) == "classic"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  hosts: [rabbit1, rabbit2, rabbit3]\n",
            "  hosts: [rabbit1, rabbit2]\n",
            "12:10: broker.hosts: 2 nodes: use one host, or an odd number >= 3 (with 2, "
            "losing one node can take the quorum away)",
        ),
        (
            "  hosts: [rabbit1, rabbit2, rabbit3]\n",
            "  hosts: [rabbit1, rabbit2, rabbit1]\n",
            "12:10: broker.hosts: a host is listed twice; each node is one host",
        ),
        (
            "  hosts: [rabbit1, rabbit2, rabbit3]\n",
            "  hosts: [rabbit1, rabbit2, rabbit9]\n",
            "12:29: broker.hosts[2]: host 'rabbit9' is not declared under hosts (declared: "
            "rabbit1, rabbit2, rabbit3, worker1)",
        ),
        (
            "  hosts: [rabbit1, rabbit2, rabbit3]\n",
            "  host: rabbit1\n  hosts: [rabbit1, rabbit2, rabbit3]\n",
            "12:3: broker: give broker.host or broker.hosts, not both",
        ),
        (
            "  hosts: [rabbit1, rabbit2, rabbit3]\n",
            "",
            "12:3: broker: give broker.host (one RabbitMQ node) or broker.hosts (a cluster: "
            "3, 5, ... hosts)",
        ),
        (
            "    install: pip\n",
            "    install: pip\n    celery_version: '==5.4.*'\n",
            "27:21: workers[0].celery_version: '==5.4.*' allows no Celery >= 5.5, which "
            "quorum queues need (the broker is a cluster); allow it, e.g. '>=5.5,<6', or "
            "set app.queue_type: classic",
        ),
    ],
)
def test_a_bad_cluster_is_refused_with_one_line(
    write_inventory: WriteInventory, old: str, new: str, expected: str
) -> None:
    assert refused(write_inventory, CLUSTER.replace(old, new)) == [expected]


def test_classic_queues_on_a_cluster_take_any_celery(write_inventory: WriteInventory) -> None:
    text = CLUSTER.replace(
        "    install: pip\n", "    install: pip\n    celery_version: '==5.4.*'\n"
    ).replace("  vhost: orders\nworkers", "  vhost: orders\n  queue_type: classic\nworkers")
    inv = load_inventory(write_inventory(text)).inventory
    assert queue_type(inv) == "classic"
    # No quorum settings; the failover window of every cluster's clients stays.
    assert celery_settings(inv) == {
        "broker_transport_options": {"connect_retries_timeout": FAILOVER_WINDOW}
    }


# --- what each node and each client gets --------------------------------------------------


def test_every_node_gets_rabbitmq_with_pause_minority_and_the_same_cookie() -> None:
    arts = render_all(model(CLUSTER), secrets())
    for host in ("rabbit1", "rabbit2", "rabbit3"):
        conf = next(a for a in arts if a.host == host and a.path.name == "rabbitmq.conf")
        assert "cluster_partition_handling = pause_minority" in conf.content
        cookie = next(a for a in arts if a.host == host and a.path.name == ".erlang.cookie")
        assert cookie.content == BASE_SECRETS["rabbitmq-erlang-cookie"]
    single = render_all(model(BASE_INVENTORY), secrets())
    conf = next(a for a in single if a.path.name == "rabbitmq.conf")
    assert "cluster_partition_handling" not in conf.content
    assert [u.host for us in units_by_host(model(CLUSTER)).values() for u in us
            if u.role == "broker"] == ["rabbit1", "rabbit2", "rabbit3"]  # fmt: skip


def test_clients_get_every_node_and_the_quorum_settings() -> None:
    inv = model(CLUSTER)
    url = broker_url(inv, secrets(), "orders", "orders")
    assert [u.split("@")[1] for u in url.split(";")] == [
        "10.0.0.1:5672/orders",
        "10.0.0.3:5672/orders",
        "10.0.0.4:5672/orders",
    ]
    env = next(a for a in render_all(inv, secrets()) if a.path.name == "worker-default.env")
    line = next(x for x in env.content.splitlines() if x.startswith("QSETUP_CELERY_SETTINGS="))
    value = line.split("=", 1)[1][1:-1].replace('\\"', '"')
    assert json.loads(value) == celery_settings(inv)
    assert celery_settings(inv)["task_default_queue_type"] == "quorum"
    assert 'QSETUP_APP="proj"' in env.content


def test_the_plan_marks_every_node_and_the_first() -> None:
    inv = model(CLUSTER)
    plan = build_ansible_inventory(inv, render_all(inv, secrets()))
    hosts = plan["all"]["hosts"]
    assert [h for h in hosts if hosts[h]["qsetup_is_broker"]] == ["rabbit1", "rabbit2", "rabbit3"]
    assert [h for h in hosts if hosts[h]["qsetup_is_broker_primary"]] == ["rabbit1"]
    assert list(plan["all"]["children"]["qsetup_brokers"]["hosts"]) == [
        "rabbit1",
        "rabbit2",
        "rabbit3",
    ]
    assert [n["host"] for n in plan["all"]["vars"]["qsetup_broker_nodes"]] == [
        "rabbit1",
        "rabbit2",
        "rabbit3",
    ]
    assert pip_packages(inv, None)[0] == "celery>=5.5,<6"
    assert pip_packages(inv, "==5.6.*")[:2] == ["celery==5.6.*", "celery>=5.5"]
    assert pip_packages(model(BASE_INVENTORY), None)[0] == "celery>=5.2,<6"


def test_apt_groups_get_a_version_check_with_quorum_queues_only() -> None:
    apt = CLUSTER.replace("    install: pip\n", "    install: apt\n")
    inv = model(apt)
    hosts = build_ansible_inventory(inv, render_all(inv, secrets()))["all"]["hosts"]
    (need,) = hosts["worker1"]["qsetup_min_versions"]
    assert need["package"] == "python3-celery" and need["version"] == "5.5"
    assert "install: pip" in need["problem"] and "Debian 13" in need["problem"]
    assert hosts["rabbit1"]["qsetup_min_versions"] == []
    single = model(BASE_INVENTORY.replace("    install: pip\n", "    install: apt\n"))
    hosts = build_ansible_inventory(single, render_all(single, secrets()))["all"]["hosts"]
    assert hosts["worker1"]["qsetup_min_versions"] == []


# --- the module workers load the app through ----------------------------------------------

SHIM = Path(__file__).parents[2] / "templates" / "celery" / "qsetup_celery.py.j2"

APP = """\
from celery import Celery
app = Celery("proj", broker="memory://")
app.conf.broker_transport_options = {"visibility_timeout": 7}
"""

PROBE = """\
import json, sys
{before}
import qsetup_celery
app = qsetup_celery.app
print(json.dumps({{
    "type": app.conf.task_default_queue_type,
    "transport": app.conf.broker_transport_options,
    "default": app.amqp.queues[app.conf.task_default_queue].queue_arguments,
    "missing": app.amqp.queues["from-command-line"].queue_arguments,
}}))
"""


def _shim(tmp_path: Path, settings: dict[str, Any], before: str = "") -> dict[str, Any]:
    (tmp_path / "proj.py").write_text(APP)
    (tmp_path / "qsetup_celery.py").write_text(SHIM.read_text())
    env = {
        "PYTHONPATH": str(tmp_path),
        "QSETUP_APP": "proj",
        "QSETUP_CELERY_SETTINGS": json.dumps(settings),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_the_shim_makes_every_queue_a_quorum_queue(tmp_path: Path) -> None:
    got = _shim(tmp_path, celery_settings(model(CLUSTER)))
    assert got["type"] == "quorum"
    assert got["default"] == {"x-queue-type": "quorum"}
    assert got["missing"] == {"x-queue-type": "quorum"}
    # The app's own transport options are kept; confirms are added.
    assert got["transport"] == {
        "visibility_timeout": 7,
        "confirm_publish": True,
        "connect_retries_timeout": FAILOVER_WINDOW,
    }


def test_the_shim_does_the_same_on_celery_5_5(tmp_path: Path) -> None:
    # Celery 5.5 (Debian 13's) has no task_create_missing_queue_type setting.
    before = (
        "from celery.app import defaults\n"
        "defaults.DEFAULTS.pop('task_create_missing_queue_type', None)\n"
        "from celery.app import amqp\n"
        "amqp.Queues.new_missing = lambda self, name: amqp.Queue(name, self.autoexchange(name),"
        " name)\n"
    )
    got = _shim(tmp_path, celery_settings(model(CLUSTER)), before)
    assert got["missing"] == {"x-queue-type": "quorum"}


def test_the_shim_leaves_classic_apps_alone(tmp_path: Path) -> None:
    got = _shim(tmp_path, {})
    assert got["type"] == "classic"
    assert not got["missing"] and got["transport"] == {"visibility_timeout": 7}


def test_clients_spread_over_the_nodes() -> None:
    inv = model(CLUSTER)
    first = {h: broker_nodes(inv, h)[0][0] for h in ("rabbit1", "rabbit2", "rabbit3", "worker1")}
    assert first == {"rabbit1": "rabbit1", "rabbit2": "rabbit2", "rabbit3": "rabbit3",
                     "worker1": "rabbit1"}  # fmt: skip
    env = next(a for a in render_all(inv, secrets()) if a.path.name == "worker-default.env")
    assert "@10.0.0.1:5672/orders;" in env.content  # worker1 is the first non-broker host


DELAYED = """\
import json, sys
import qsetup_celery
from celery.worker.consumer import delayed_delivery as dd
tried = []
def setup(self, c, url):
    tried.append(url)
    if url.startswith("amqp://dead"):
        raise ConnectionRefusedError(url)
dd.DelayedDelivery._setup_delayed_delivery = setup
dd.DelayedDelivery._validate_configuration = lambda self, app: None
class C:
    app = qsetup_celery.app
C.app.conf.broker_url = "amqp://dead1//;amqp://live//;amqp://dead2//"
dd.DelayedDelivery.start(object.__new__(dd.DelayedDelivery), C())
print(json.dumps(tried))
"""


def test_delayed_delivery_is_set_up_on_the_first_node_that_answers(tmp_path: Path) -> None:
    (tmp_path / "proj.py").write_text(APP)
    (tmp_path / "qsetup_celery.py").write_text(SHIM.read_text())
    env = {
        "PYTHONPATH": str(tmp_path),
        "QSETUP_APP": "proj",
        "QSETUP_CELERY_SETTINGS": json.dumps(celery_settings(model(CLUSTER))),
    }
    out = subprocess.run(
        [sys.executable, "-c", DELAYED], env=env, capture_output=True, text=True, check=True
    )
    # The dead first node is tried once, the live one set up, the rest left alone.
    assert json.loads(out.stdout) == ["amqp://dead1//", "amqp://live//"]


def _listener(answer: bool) -> tuple[int, list[float]]:
    """A local TCP port that accepts and then closes (answer) or stays silent."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    seen: list[float] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            seen.append(time.monotonic())
            conn.close() if answer else held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], seen


@pytest.mark.parametrize("window", [None, 2.0])
def test_a_node_slow_to_answer_does_not_stop_a_client_trying_the_next(
    window: float | None,
) -> None:
    # What the cluster settings' connect_retries_timeout is for: kombu opens a
    # connection outside its retry loop (Celery's result publisher) within
    # broker_connection_timeout in all; a first node that accepts but does not answer
    # (a node busy restarting) used it up, and the next node was never tried: the
    # task's result became "OperationalError: timed out" (CI, rolling broker restart).
    from kombu.connection import Connection

    silent, _ = _listener(answer=False)
    nxt, seen = _listener(answer=True)
    options: dict[str, object] = {}
    if window is not None:
        options["connect_retries_timeout"] = window
    conn = Connection(  # type: ignore[no-untyped-call]
        f"amqp://g:g@127.0.0.1:{silent}//;amqp://g:g@127.0.0.1:{nxt}//",
        connect_timeout=0.5,
        transport_options=options,
    )
    with pytest.raises(Exception, match="timed out|closed"):
        conn.default_channel  # noqa: B018 - the property connects
    assert bool(seen) == (window is not None), seen
