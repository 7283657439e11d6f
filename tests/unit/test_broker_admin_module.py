"""The administrator bootstrap (playbooks/library/qsetup_broker_admin.py)."""

from __future__ import annotations

from typing import Any

import pytest
from unitdata import playbook_module

admin: Any = playbook_module("library/qsetup_broker_admin.py")


class Broker:
    """Users and their passwords, behind a fake API and a fake rabbitmqctl."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)
        self.argv: list[list[str]] = []

    def api(
        self, _port: int, user: str, password: str, method: str, path: str, body: Any = None
    ) -> Any:
        if self.users.get(user) != password:
            raise admin.Refused
        if method == "PUT":
            self.users[path.rsplit("/", 1)[1]] = body["password"]
            return None
        if path == "/definitions":
            return {"users": sorted(self.users)}
        if path == "/feature-flags":
            return [{"name": "quorum_queue", "state": "enabled", "stability": "required"}]
        if path.startswith("/nodes"):
            return [{"name": "rabbit@mq1", "running": True}]
        return {"name": user}

    def run_command(self, argv: list[str], data: str | None = None) -> tuple[int, str, str]:
        self.argv.append(argv)
        if argv[1] == "list_users":
            return 0, "".join(f"{u}\t[]\n" for u in self.users), ""
        if argv[1] in ("add_user", "change_password"):
            assert data is not None and data not in argv, "password on stdin only"
            self.users[argv[2]] = data
        return 0, "", ""


class Done(Exception):
    pass


class FakeModule:
    def __init__(self, broker: Broker) -> None:
        self.params = {"port": 15672, "user": "qsetup-admin", "password": "s3cret"}
        self.check_mode = False
        self.run_command = broker.run_command
        self.result: dict[str, Any] = {}

    def exit_json(self, **result: Any) -> None:
        self.result = result
        raise Done

    def fail_json(self, **result: Any) -> None:
        self.result = {"failed": True, **result}
        raise Done


def _run(monkeypatch: pytest.MonkeyPatch, broker: Broker) -> dict[str, Any]:
    module = FakeModule(broker)
    monkeypatch.setattr(admin, "api", broker.api)
    monkeypatch.setattr(admin, "AnsibleModule", lambda **_kw: module)
    with pytest.raises(Done):
        admin.main()
    return module.result


def test_an_administrator_that_logs_in_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Broker({"qsetup-admin": "s3cret"})
    result = _run(monkeypatch, broker)
    assert result == {
        "changed": False,
        "definitions": {"users": ["qsetup-admin"]},
        "feature_flags": [{"name": "quorum_queue", "state": "enabled", "stability": "required"}],
        "nodes": [{"name": "rabbit@mq1", "running": True}],
    }
    assert broker.argv == []


def test_a_fresh_node_gets_it_through_guest_without_rabbitmqctl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = Broker({"guest": "guest"})
    result = _run(monkeypatch, broker)
    assert result["changed"] and result["bootstrap"] == "api"
    assert broker.users["qsetup-admin"] == "s3cret" and broker.argv == []


def test_without_guest_rabbitmqctl_resets_the_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = Broker({"qsetup-admin": "old"})
    result = _run(monkeypatch, broker)
    assert result["bootstrap"] == "rabbitmqctl"
    assert [a[1] for a in broker.argv] == ["list_users", "change_password", "set_user_tags"]
    assert broker.users["qsetup-admin"] == "s3cret"


def test_rabbitmqctl_adds_a_missing_administrator(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Broker({"app": "x"})
    _run(monkeypatch, broker)
    assert [a[1] for a in broker.argv] == ["list_users", "add_user", "set_user_tags"]


def test_the_wait_ends_when_the_port_opens_or_at_once_when_the_unit_failed() -> None:
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        admin.wait_for_port(srv.getsockname()[1], 5)  # open: returns at once
        port = srv.getsockname()[1]
    with pytest.raises(RuntimeError, match="rabbitmq-server.service failed to start"):
        admin.wait_for_port(port, 60, lambda: True, "rabbitmq-server.service")
    with pytest.raises(RuntimeError, match="did not open within 0.3 s"):
        admin.wait_for_port(port, 0.3)


def test_a_read_answered_500_while_the_node_starts_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real API stand-in on 127.0.0.1: 500 twice (a node just started), then the answer."""
    import http.server
    import threading

    answers = [500, 500, 200]

    class _Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            code = answers.pop(0) if answers else 200
            body = b'[{"name": "rabbit@n1", "running": true}]' if code == 200 else b"busy"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(admin.time, "sleep", lambda _s: None)
    try:
        port = server.server_address[1]
        nodes = admin.api(port, "u", "p", "GET", "/nodes")
        assert nodes == [{"name": "rabbit@n1", "running": True}] and answers == []
        answers[:] = [503]
        monkeypatch.setattr(admin, "BUSY_SECONDS", 0.0)
        with pytest.raises(RuntimeError, match="GET /api/nodes: HTTP 503"):
            admin.api(port, "u", "p", "GET", "/nodes")
    finally:
        server.shutdown()
        server.server_close()
