"""Status's HTTP client against a real server on 127.0.0.1: answers, auth, TLS, failures."""

from __future__ import annotations

import base64
import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_status_certs import free_port, make_ca, make_leaf

from qsetup.remote.http import Client, NoAnswer

AUTH = ("ops", "pa:ss w0rd")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as RabbitMQ's API and Flower answer
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path)
        token = "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()
        if self.path.startswith("/moved"):
            self._answer(302, b"", {"Location": "/api/workers"})
        elif self.headers.get("Authorization") != token:
            self._answer(401, b'{"error": "not_authorised"}')
        else:
            self._answer(200, b'{"path": "%s"}' % self.path.encode())

    def _answer(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@contextlib.contextmanager
def _server(context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_answers_with_and_without_credentials_and_no_redirect_followed() -> None:
    _Handler.seen = []
    with _server() as port, Client(AUTH) as client:
        base = f"http://127.0.0.1:{port}"
        reply = client.get(f"{base}/api/queues", params={"columns": "name,type"}, timeout=2)
        assert reply.status_code == 200
        assert reply.json() == {"path": "/api/queues?columns=name%2Ctype"}
        assert client.get(f"{base}/api/x", timeout=2, auth=None).status_code == 401
        assert client.get(f"{base}/moved", timeout=2).status_code == 302
        assert client.get(f"{base}/api/y", timeout=2, auth=("ops", "wrong")).status_code == 401
    assert _Handler.seen[-1] == "/api/y"  # the redirect's target was never asked


def test_a_closed_port_is_no_answer_of_kind_connect() -> None:
    with Client() as client, pytest.raises(NoAnswer) as caught:
        client.get(f"http://127.0.0.1:{free_port()}/api/overview", timeout=2)
    assert caught.value.kind == "connect"


def test_tls_is_checked_against_the_ca_given(tmp_path: Path) -> None:
    ca, other = make_ca(), make_ca("another CA")
    cert, key = make_leaf(ca)
    (tmp_path / "srv.pem").write_bytes(cert)
    (tmp_path / "srv.key").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    (tmp_path / "other.pem").write_bytes(other.pem())
    with _server(context) as port:
        url = f"https://127.0.0.1:{port}/api/workers"
        with Client(AUTH, str(tmp_path / "ca.pem")) as client:
            assert client.get(url, timeout=2).status_code == 200
        with Client(AUTH, str(tmp_path / "other.pem")) as client, pytest.raises(NoAnswer) as caught:
            client.get(url, timeout=2)
        assert caught.value.kind == "tls" and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
