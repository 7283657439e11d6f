"""qsetup backup and restore against a fake management API (no hosts)."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_status_cluster import CLUSTER_INVENTORY, CLUSTER_SECRETS
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS, WriteInventory

from qsetup.cli import app
from qsetup.desired.definitions import definitions_problem, prepare_import, read_backup
from qsetup.desired.state import broker_admin_password
from qsetup.inventory.loader import load_inventory

runner = CliRunner()

HASH_ADMIN = "OLDADMINHASHb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0="
HASH_ORDERS = "ORDERSHASHc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c="
HASH_GUEST = "GUESTHASHd2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d="
HASH_REPORTER = "REPORTERHASHe3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e="
HASHES = (HASH_ADMIN, HASH_ORDERS, HASH_GUEST, HASH_REPORTER)


def _user(name: str, pw_hash: str, tags: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "password_hash": pw_hash,
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": tags,
        "limits": {},
    }


def _perm(user: str, vhost: str) -> dict[str, str]:
    return {"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}


# GET /api/definitions of a broker deployed from BASE_INVENTORY (RabbitMQ 3.10.8's shape),
# with what a user made by hand: a user, a queue, an exchange, a binding, a policy.
EXPORT: dict[str, Any] = {
    "rabbit_version": "3.10.8",
    "rabbitmq_version": "3.10.8",
    "product_name": "RabbitMQ",
    "product_version": "3.10.8",
    "users": [
        _user("qsetup-admin", HASH_ADMIN, ["administrator"]),
        _user("orders", HASH_ORDERS, []),
        _user("flower-monitor", "MONHASH", ["monitoring"]),
        _user("guest", HASH_GUEST, ["administrator"]),
        _user("reporter", HASH_REPORTER, []),
    ],
    "vhosts": [
        {"name": "/", "limits": [], "metadata": {"description": "", "tags": []}},
        {"name": "orders", "limits": [], "metadata": {"description": "", "tags": []}},
    ],
    "permissions": [
        _perm("qsetup-admin", "orders"),
        _perm("orders", "orders"),
        _perm("guest", "/"),
        _perm("reporter", "orders"),
        {
            "user": "flower-monitor",
            "vhost": "orders",
            "configure": "^$",
            "write": "^$",
            "read": "^$",
        },
    ],
    "topic_permissions": [
        {"user": "orders", "vhost": "orders", "exchange": "amq.topic", "write": ".*", "read": ".*"},
        {"user": "reporter", "vhost": "orders", "exchange": "reports", "write": "^$", "read": ".*"},
    ],
    "parameters": [],
    "global_parameters": [{"name": "cluster_name", "value": "rabbit@rabbit1"}],
    "policies": [
        {
            "vhost": "orders",
            "name": "reports-ttl",
            "pattern": "^reports$",
            "apply-to": "queues",
            "definition": {"message-ttl": 60000},
            "priority": 0,
        },
    ],
    "queues": [
        {
            "name": "celery",
            "vhost": "orders",
            "durable": True,
            "auto_delete": False,
            "arguments": {},
        },
        {
            "name": "reports",
            "vhost": "orders",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-queue-type": "classic"},
        },
    ],
    "exchanges": [
        {
            "name": "celery",
            "vhost": "orders",
            "type": "direct",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
        {
            "name": "reports",
            "vhost": "orders",
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
    ],
    "bindings": [
        {
            "source": "celery",
            "vhost": "orders",
            "destination": "celery",
            "destination_type": "queue",
            "routing_key": "celery",
            "arguments": {},
        },
        {
            "source": "reports",
            "vhost": "orders",
            "destination": "reports",
            "destination_type": "queue",
            "routing_key": "reports.#",
            "arguments": {},
        },
    ],
}


# --- a fake management API ----------------------------------------------------------------


class FakeResponse:
    def __init__(self, status_code: int, body: Any = None) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        if self.body is None:
            raise ValueError("no body")
        return self.body


Handler = Callable[[str, str, dict[str, Any]], FakeResponse]


class FakeBroker:
    """``requests.Session`` answering per address; records every call (method, url, kwargs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.down: set[str] = set()
        self.handler: Handler = self.ok
        self.sessions: list[Any] = []

    @staticmethod
    def ok(method: str, url: str, kwargs: dict[str, Any]) -> FakeResponse:
        if method == "GET" and url.endswith("/api/definitions"):
            return FakeResponse(200, copy.deepcopy(EXPORT))
        if method == "GET" and url.endswith("/api/overview"):
            return FakeResponse(200, {"rabbitmq_version": "3.10.8"})
        if method == "POST" and url.endswith("/api/definitions"):
            return FakeResponse(204)
        return FakeResponse(404, {"error": "Object Not Found", "reason": "Not Found"})

    def session_class(self) -> type:
        broker = self

        class Session:
            def __init__(self) -> None:
                self.auth: Any = None
                self.verify: Any = True
                self.trust_env = True
                broker.sessions.append(self)

            def __enter__(self) -> Session:
                return self

            def __exit__(self, *_: Any) -> None:
                return None

            def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
                broker.calls.append((method, url, kwargs))
                if any(f"//{address}:" in url for address in broker.down):
                    raise requests.ConnectionError("Connection refused")
                return broker.handler(method, url, kwargs)

        return Session

    @property
    def posted(self) -> list[dict[str, Any]]:
        return [kw["json"] for m, _, kw in self.calls if m == "POST"]


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBroker]:
    fake = FakeBroker()
    monkeypatch.setattr("requests.Session", fake.session_class())
    yield fake


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def no_secret_in(output: str, inventory: Path) -> None:
    loaded = load_inventory(inventory)
    for h in HASHES:
        assert h not in output
    for value in loaded.secrets.values.values():
        assert value.get_secret_value() not in output
    assert broker_admin_password(loaded.inventory, loaded.secrets) not in output


def write_backup(folder: Path, data: Any, mode: int = 0o600, name: str = "b.json") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    path.chmod(mode)
    return path


# --- backup -------------------------------------------------------------------------------


def test_backup_writes_the_export_0600_beside_the_inventory_and_says_what_it_holds(
    write_inventory: WriteInventory, broker: FakeBroker
) -> None:
    inventory = write_inventory()
    old_umask = os.umask(0)  # a umask that would leave a plain open() world-readable
    try:
        code, output = run("backup", "--inventory", str(inventory))
    finally:
        os.umask(old_umask)
    assert code == 0, output
    files = list(inventory.parent.glob("inventory.backup-*.json"))
    assert len(files) == 1
    path = files[0]
    assert re.fullmatch(r"inventory\.backup-\d{8}T\d{6}Z\.json", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == EXPORT  # RabbitMQ's export, unchanged
    assert [(m, u) for m, u, _ in broker.calls] == [
        ("GET", "http://10.0.0.1:15672/api/definitions")
    ]
    assert broker.sessions[0].auth[0] == "qsetup-admin"
    line = " ".join(output.split())
    assert line.startswith(f"wrote {path} (mode 0600) from rabbit1")
    assert "from rabbit1 (RabbitMQ 3.10.8)" in line
    assert "2 vhosts, 5 users, 2 queues, 2 exchanges, 2 bindings, 1 policy;" in line
    assert "password hashes" in line
    assert output.count("\n") == 1  # one line
    no_secret_in(output, inventory)
    assert not list(inventory.parent.glob(".*.part"))  # no temporary file left behind


def test_the_backup_file_is_0600_from_its_first_byte(
    write_inventory: WriteInventory, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    inventory = write_inventory()
    modes: list[int] = []
    real_mkstemp = tempfile.mkstemp

    def watching_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        modes.append(stat.S_IMODE(Path(name).stat().st_mode))  # before a byte is written
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", watching_mkstemp)
    old_umask = os.umask(0)
    try:
        code, output = run(
            "backup", "-i", str(inventory), "--out", str(inventory.parent / "x.json")
        )
    finally:
        os.umask(old_umask)
    assert code == 0, output
    assert modes == [0o600]


def test_backup_over_a_world_readable_file_leaves_it_0600(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    target = tmp_path / "latest.json"
    target.write_text("old")
    target.chmod(0o644)
    code, output = run("backup", "--inventory", str(inventory), "--out", str(target))
    assert code == 0, output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == EXPORT


def test_backup_json_shape_and_out_folder(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    folder = tmp_path / "backups"
    folder.mkdir()
    code, output = run("backup", "--inventory", str(inventory), "--out", str(folder), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert set(data) == {
        "path", "api_host", "api_errors", "rabbitmq_version", "counts",
        "holds_password_hashes", "elapsed_seconds",
    }  # fmt: skip
    assert Path(data["path"]).parent == folder
    assert Path(data["path"]).name.startswith("inventory.backup-")
    assert data["api_host"] == "rabbit1" and data["api_errors"] == []
    assert data["rabbitmq_version"] == "3.10.8"
    assert data["counts"] == {
        "vhosts": 2, "users": 5, "permissions": 5, "topic_permissions": 2, "policies": 1,
        "queues": 2, "exchanges": 2, "bindings": 2, "parameters": 0, "global_parameters": 1,
    }  # fmt: skip
    assert data["holds_password_hashes"] is True
    assert isinstance(data["elapsed_seconds"], float)
    no_secret_in(output, inventory)


def test_backup_into_a_missing_folder_is_bad_input_and_asks_nothing(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    code, output = run("backup", "-i", str(inventory), "--out", str(tmp_path / "no" / "b.json"))
    assert code == 1
    assert "does not exist" in output and output.count("\n") == 1
    assert broker.calls == []


def test_backup_with_the_broker_down_exits_3_naming_the_node(
    write_inventory: WriteInventory, broker: FakeBroker
) -> None:
    inventory = write_inventory()
    broker.down = {"10.0.0.1"}
    code, output = run("backup", "--inventory", str(inventory))
    assert code == 3
    assert " ".join(output.split()) == (
        "rabbit1: broker management API http://10.0.0.1:15672/api: cannot connect "
        "(is RabbitMQ's management plugin running?)"
    )
    assert not list(inventory.parent.glob("*.backup-*"))


def test_backup_refused_as_qsetup_admin_exits_3_with_the_status(
    write_inventory: WriteInventory, broker: FakeBroker
) -> None:
    inventory = write_inventory()
    broker.handler = lambda m, u, k: FakeResponse(401, {"error": "not_authorised"})
    code, output = run("backup", "--inventory", str(inventory))
    assert code == 3
    assert "rabbit1:" in output and "qsetup-admin is refused (HTTP 401)" in output
    no_secret_in(output, inventory)


def test_backup_of_a_cluster_reads_the_first_node_that_answers(
    write_inventory: WriteInventory, broker: FakeBroker
) -> None:
    inventory = write_inventory(CLUSTER_INVENTORY, CLUSTER_SECRETS)
    broker.down = {"10.0.0.11"}
    code, output = run("backup", "--inventory", str(inventory), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert data["api_host"] == "mq2"
    assert data["api_errors"] == [
        {"host": "mq1", "error": "cannot connect (is RabbitMQ's management plugin running?)"}
    ]
    broker.down = {"10.0.0.11", "10.0.0.12", "10.0.0.13"}
    code, output = run("backup", "--inventory", str(inventory))
    assert code == 3
    lines = output.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["mq1", "mq2", "mq3"]


def test_backup_refuses_an_answer_that_is_not_definitions(
    write_inventory: WriteInventory, broker: FakeBroker
) -> None:
    inventory = write_inventory()
    broker.handler = lambda m, u, k: FakeResponse(200, {"hello": "world"})
    code, output = run("backup", "--inventory", str(inventory))
    assert code == 3
    assert "answered no definitions (it has no rabbitmq_version)" in output
    assert not list(inventory.parent.glob("*.backup-*"))


# --- restore: refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a RabbitMQ definitions export (not JSON: line 1 column 2"),
        ("[1, 2]", "not a RabbitMQ definitions export (it is not a JSON object)"),
        (
            {k: v for k, v in EXPORT.items() if k not in ("rabbitmq_version", "rabbit_version")},
            "(it has no rabbitmq_version)",
        ),
        (
            {k: v for k, v in EXPORT.items() if k not in ("queues", "bindings")},
            "(it has no queues, bindings lists)",
        ),
        (
            # A single vhost's export from the management UI.
            {"rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8", "parameters": [],
             "policies": [], "queues": [], "exchanges": [], "bindings": []},
            "a single vhost's export cannot be restored: export the whole broker",
        ),
        ({**EXPORT, "queues": [{"name": "x"}]}, "(queues[0] has no vhost)"),
        ({**EXPORT, "users": "qsetup-admin"}, "(users is not a list)"),
    ],
)  # fmt: skip
def test_restore_refuses_a_file_that_is_not_a_definitions_export(
    write_inventory: WriteInventory,
    broker: FakeBroker,
    tmp_path: Path,
    content: Any,
    message: str,
) -> None:
    inventory = write_inventory()
    path = write_backup(tmp_path, content)
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 1
    assert output.startswith(f"{path}: not a RabbitMQ definitions export")
    assert message in " ".join(output.split())
    assert output.count("\n") == 1
    assert broker.calls == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_restore_refuses_a_file_others_can_read_and_names_the_chmod(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path, mode: int
) -> None:
    inventory = write_inventory()
    path = write_backup(tmp_path, EXPORT, mode)
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 1
    assert " ".join(output.split()) == (
        f"{path}: a definitions file holds password hashes and is open to other users "
        f"(mode {mode:04o}); fix it with: chmod 600 {path}"
    )
    assert broker.calls == []


def test_restore_refuses_a_missing_file(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    code, output = run("restore", "--inventory", str(inventory), str(tmp_path / "none.json"))
    assert code == 1 and "file not found" in output
    code, output = run("restore", "--inventory", str(inventory), str(tmp_path))
    assert code == 1 and "not a file" in output
    assert broker.calls == []


def test_definitions_problem_accepts_rabbitmqs_exports() -> None:
    assert definitions_problem(EXPORT) is None
    older = {k: v for k, v in EXPORT.items() if k not in ("rabbitmq_version", "topic_permissions")}
    assert definitions_problem(older) is None  # RabbitMQ 3.7: rabbit_version only


# --- restore: what is imported ----------------------------------------------------------------


def test_restore_leaves_out_what_deploy_manages_and_guest(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    path = write_backup(tmp_path, EXPORT)
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 0, output
    [(method, url, kwargs)] = [c for c in broker.calls if c[0] == "POST"]
    assert url == "http://10.0.0.1:15672/api/definitions"
    sent = kwargs["json"]
    assert [u["name"] for u in sent["users"]] == ["reporter"]
    assert sent["users"][0]["password_hash"] == HASH_REPORTER  # a hand-made user comes back
    assert [p["user"] for p in sent["permissions"]] == ["reporter"]
    assert [t["user"] for t in sent["topic_permissions"]] == ["reporter"]
    assert sent["queues"] == EXPORT["queues"]
    assert sent["exchanges"] == EXPORT["exchanges"]
    assert sent["bindings"] == EXPORT["bindings"]
    assert sent["vhosts"] == EXPORT["vhosts"]
    assert sent["policies"] == EXPORT["policies"]  # not one the inventory manages
    assert sent["global_parameters"] == EXPORT["global_parameters"]
    line = " ".join(output.split())
    assert f"restored {path} into rabbit1" in line
    assert "vhosts /, orders; queues orders/celery, orders/reports;" in line
    assert "2 exchanges, 2 bindings, 1 user (reporter), 1 policy" in line
    assert (
        "left as deploy set them: user qsetup-admin, user orders, user flower-monitor; "
        "left out: user guest (the inventory deletes it (broker.delete_guest))" in line
    )
    assert output.count("\n") == 1
    no_secret_in(output, inventory)


def test_restore_keeps_guest_when_the_inventory_keeps_it_and_leaves_its_policies(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded = load_inventory(write_inventory(FULL_INVENTORY, FULL_SECRETS))
    data = copy.deepcopy(EXPORT)
    data["policies"].append(
        {"vhost": "shop", "name": "ttl", "pattern": "^celery$", "apply-to": "quorum_queues",
         "definition": {"message-ttl": 1}, "priority": 5}
    )  # fmt: skip
    data["users"].append(_user("monitor", "X", ["monitoring"]))
    payload, left_out = prepare_import(loaded.inventory, data)
    names = [u["name"] for u in payload["users"]]
    assert "guest" in names  # broker.delete_guest: false
    assert "monitor" not in names  # FULL's Flower API user
    assert {(o.kind, o.name, o.managed) for o in left_out} == {
        ("user", "qsetup-admin", True),
        ("user", "monitor", True),
        ("policy", "shop/ttl", True),
    }
    assert [p["name"] for p in payload["policies"]] == ["reports-ttl"]
    assert data["users"][0]["name"] == "qsetup-admin"  # the file's data is not changed


def test_restore_leaves_out_queues_and_exchanges_of_gone_connections(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    data = copy.deepcopy(EXPORT)
    # What RabbitMQ 3.10.8 exported beside the app's queues while the workers ran.
    pidbox = "default-1@worker1.celery.pidbox"
    reply = "f376a646-75ec-341f-a455-7da75db6d08a"  # an rpc result queue
    data["queues"] += [
        {"name": pidbox, "vhost": "orders", "durable": False, "auto_delete": True,
         "arguments": {"x-expires": 10000, "x-message-ttl": 300000}},
        {"name": reply, "vhost": "orders", "durable": True,
         "auto_delete": True, "arguments": {"x-expires": 86400000}},
    ]  # fmt: skip
    data["exchanges"] += [
        {"name": "celery.pidbox", "vhost": "orders", "type": "fanout", "durable": False,
         "auto_delete": False, "internal": False, "arguments": {}},
    ]  # fmt: skip
    data["bindings"] += [
        {"source": "celery.pidbox", "vhost": "orders", "destination": pidbox,
         "destination_type": "queue", "routing_key": "", "arguments": {}},
        {"source": "reports", "vhost": "orders", "destination": reply,
         "destination_type": "queue", "routing_key": "x", "arguments": {}},
    ]  # fmt: skip
    path = write_backup(tmp_path, data)
    code, output = run("restore", "--inventory", str(inventory), str(path), "--json")
    assert code == 0, output
    [sent] = broker.posted
    assert sent["queues"] == EXPORT["queues"]
    assert sent["exchanges"] == EXPORT["exchanges"]
    assert sent["bindings"] == EXPORT["bindings"]
    left = [(o["kind"], o["name"]) for o in json.loads(output)["left_out"] if not o["managed"]]
    assert left == [
        ("user", "guest"),
        ("queue", f"orders/{pidbox}"),
        ("queue", f"orders/{reply}"),
        ("exchange", "orders/celery.pidbox"),
    ]
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 0, output
    assert " ".join(output.split()).endswith(
        "; left out 2 queues and 1 exchange that were transient or auto-delete "
        "(their clients declare them again)"
    )


def test_restore_json_shape(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    path = write_backup(tmp_path, EXPORT)
    code, output = run("restore", "--inventory", str(inventory), str(path), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert set(data) == {
        "file", "api_host", "api_errors", "rabbitmq_version", "source_rabbitmq_version",
        "imported", "left_out", "elapsed_seconds",
    }  # fmt: skip
    assert data["file"] == str(path) and data["api_host"] == "rabbit1"
    assert data["imported"]["vhosts"] == ["/", "orders"]
    assert data["imported"]["queues"] == [
        {"vhost": "orders", "name": "celery"},
        {"vhost": "orders", "name": "reports"},
    ]
    assert data["imported"]["users"] == ["reporter"]
    assert data["imported"]["counts"]["bindings"] == 2
    assert data["imported"]["counts"]["users"] == 1
    assert [(o["name"], o["managed"]) for o in data["left_out"]] == [
        ("qsetup-admin", True), ("orders", True), ("flower-monitor", True), ("guest", False),
    ]  # fmt: skip
    assert all(o["reason"] for o in data["left_out"])
    no_secret_in(output, inventory)


def test_restore_refused_by_the_broker_exits_3_with_status_and_reason_without_hashes(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    path = write_backup(tmp_path, EXPORT)

    def refuse(method: str, url: str, kwargs: dict[str, Any]) -> FakeResponse:
        if method == "POST":
            return FakeResponse(
                400,
                {"error": "bad_request",
                 "reason": f"Validation failed\n\nuser reporter: {HASH_REPORTER}\n"},
            )  # fmt: skip
        return FakeBroker.ok(method, url, kwargs)

    broker.handler = refuse
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 3
    line = " ".join(output.split())
    assert line.startswith(
        "rabbit1: broker management API http://10.0.0.1:15672/api: the broker refused the "
        "import (HTTP 400: Validation failed user reporter: ***)"
    )
    assert output.count("\n") == 1
    no_secret_in(output, inventory)


def test_restore_with_the_broker_down_exits_3_and_posts_nothing(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory(CLUSTER_INVENTORY, CLUSTER_SECRETS)
    path = write_backup(tmp_path, EXPORT)
    broker.down = {"10.0.0.11", "10.0.0.12", "10.0.0.13"}
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 3
    assert [line.split(":")[0] for line in output.strip().splitlines()] == ["mq1", "mq2", "mq3"]
    assert broker.posted == []
    broker.down = {"10.0.0.11"}
    code, output = run("restore", "--inventory", str(inventory), str(path), "--json")
    assert code == 0, output
    assert json.loads(output)["api_host"] == "mq2"
    assert len(broker.posted) == 1


def test_restore_losing_the_connection_mid_import_says_to_run_it_again(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    inventory = write_inventory()
    path = write_backup(tmp_path, EXPORT)

    def drop(method: str, url: str, kwargs: dict[str, Any]) -> FakeResponse:
        if method == "POST":
            raise requests.ReadTimeout("read timed out")
        return FakeBroker.ok(method, url, kwargs)

    broker.handler = drop
    code, output = run("restore", "--inventory", str(inventory), str(path))
    assert code == 3
    assert "rabbit1:" in output and "run the same restore again" in output


def test_read_backup_gives_the_export(tmp_path: Path) -> None:
    assert read_backup(write_backup(tmp_path, EXPORT)) == EXPORT


def test_backup_and_restore_ask_over_https_with_the_ca_when_tls_is_on(
    write_inventory: WriteInventory, broker: FakeBroker, tmp_path: Path
) -> None:
    text = BASE_INVENTORY + "tls:\n  enabled: true\n"
    inventory = write_inventory(text, BASE_SECRETS)
    code, output = run("backup", "-i", str(inventory), "--out", str(tmp_path / "b.json"))
    assert code == 0, output
    assert broker.calls[0][1] == "https://10.0.0.1:15671/api/definitions"
    assert broker.sessions[0].verify == str(inventory.with_name("inventory.ca.pem"))
    assert broker.sessions[0].trust_env is False


def test_with_encrypted_secrets_the_backup_is_written_encrypted_and_restores(
    write_inventory: WriteInventory, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    monkeypatch.delenv("QSETUP_VAULT_PASSWORD_FILE", raising=False)
    inventory = write_inventory()
    pw = inventory.parent / "pw"
    pw.write_text("s3cret-vault\n")
    code, output = run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0, output
    code, output = run("backup", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0, output
    [path] = inventory.parent.glob("inventory.backup-*.json")
    raw = path.read_bytes()
    assert raw.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert all(h.encode() not in raw for h in HASHES)
    assert json.loads(VaultLib([("default", VaultSecret(b"s3cret-vault"))]).decrypt(raw)) == EXPORT
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    code, output = run("restore", "-i", str(inventory), str(path), "--vault-password-file", str(pw))
    assert code == 0, output
    assert [u["name"] for u in broker.posted[0]["users"]] == ["reporter"]
    # decrypt turns the backups beside the inventory back into plain text too
    code, output = run("secrets", "decrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0, output
    assert f"decrypted {path}" in output
    assert json.loads(path.read_text()) == EXPORT
