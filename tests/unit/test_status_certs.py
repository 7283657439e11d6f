"""qsetup status reads each TLS endpoint's certificate: days left, verified against the CA.

The certificates are made here (cryptography) and served by TLS sockets on 127.0.0.1,
so the handshakes are real: verification against the CA, the address checked, the
expiry read from what the server sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import StringIO
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console
from unitdata import BASE_INVENTORY, WriteInventory

from qsetup.inventory.loader import load_inventory
from qsetup.status.certs import (
    Endpoint,
    certificate_problems,
    check_certificates,
    read_endpoint,
    tls_endpoints,
    verifying_context,
)
from qsetup.status.model import CertStatus, SystemStatus, TlsStatus
from qsetup.ui.report import status_json, status_view

NOW = dt.datetime.now(dt.UTC)


# --- certificates and servers made for the test -----------------------------------------------


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def make_ca(name: str = "test CA") -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(cert, key)


def make_leaf(
    ca: Ca, names: tuple[str, ...] = ("127.0.0.1",), days: float = 300, *, since: float = 1
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) issued by ``ca``, valid from ``since`` days ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = []
    for n in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            san.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=since))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def free_port() -> int:
    """A free port that inventory port fields accept (up to 45535, clear of 25672)."""
    for _ in range(200):
        port = random.randint(30000, 45000)  # noqa: S311 - not for secrets
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def serve(
    folder: Path, pair: tuple[bytes, bytes] | None, port: int | None = None, *, silent: bool = False
) -> Iterator[int]:
    """Accept connections on 127.0.0.1: TLS with ``pair``, or plain text when it is None.

    ``silent``: accept and say nothing (a port that hangs).
    """
    context: ssl.SSLContext | None = None
    if pair is not None:
        cert_file, key_file = folder / f"srv-{id(pair)}.pem", folder / f"srv-{id(pair)}.key"
        cert_file.write_bytes(pair[0])
        key_file.write_bytes(pair[1])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port or free_port()))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            if silent:
                held.append(conn)
                continue
            with contextlib.suppress(OSError), conn:
                if context is None:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                else:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


def endpoint(port: int, host: str = "mq1", service: str = "amqps") -> Endpoint:
    return Endpoint(host, "127.0.0.1", port, service)


def read(tmp_path: Path, ca: Ca, port: int, timeout: float = 2.0) -> CertStatus:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem())
    return read_endpoint(endpoint(port), verifying_context(ca_file), timeout, NOW)


# --- one endpoint ---------------------------------------------------------------------------


def test_a_certificate_that_verifies_reports_its_days_left(tmp_path: Path) -> None:
    ca = make_ca()
    with serve(tmp_path, make_leaf(ca, days=300.5)) as port:
        cert = read(tmp_path, ca, port)
    assert cert.error is None
    assert cert.days_left == 300
    assert cert.ok
    assert cert.not_after is not None and cert.not_after.endswith("+00:00")
    assert certificate_problems(TlsStatus("ca.pem", (cert,))) == []


def test_a_certificate_under_renew_days_is_a_problem_naming_host_port_days(tmp_path: Path) -> None:
    ca = make_ca()
    with serve(tmp_path, make_leaf(ca, days=12.5)) as port:
        cert = read(tmp_path, ca, port)
    assert cert.error is None and cert.days_left == 12 and not cert.ok
    assert certificate_problems(TlsStatus("ca.pem", (cert,))) == [
        f"mq1: certificate on {port}: expires in 12 days (deploy renews it)"
    ]
    # The user's own certificates are not renewed by deploy: the line says what to do.
    assert certificate_problems(TlsStatus("ca.pem", (cert,), generated=False)) == [
        f"mq1: certificate on {port}: expires in 12 days (replace it in tls.certificates)"
    ]


def test_thirty_days_left_is_not_yet_a_problem(tmp_path: Path) -> None:
    ca = make_ca()
    with (
        serve(tmp_path, make_leaf(ca, days=30.5)) as a,
        serve(tmp_path, make_leaf(ca, days=29.5)) as b,
    ):
        at_30, at_29 = read(tmp_path, ca, a), read(tmp_path, ca, b)
    assert (at_30.days_left, at_30.ok) == (30, True)
    assert (at_29.days_left, at_29.ok) == (29, False)


def test_a_certificate_of_another_ca_does_not_verify_and_still_shows_its_expiry(
    tmp_path: Path,
) -> None:
    ours, theirs = make_ca("ours"), make_ca("theirs")
    with serve(tmp_path, make_leaf(theirs, days=200.5)) as port:
        cert = read(tmp_path, ours, port)
    assert cert.error is not None
    assert cert.error.startswith("does not verify against the CA (unable to get local issuer")
    assert cert.days_left == 200 and not cert.ok
    [line] = certificate_problems(TlsStatus("ca.pem", (cert,)))
    assert line.startswith(f"mq1: certificate on {port}: does not verify against the CA (")
    assert line.endswith("; expires in 200 days")


def test_a_certificate_for_another_address_does_not_verify(tmp_path: Path) -> None:
    ca = make_ca()
    with serve(tmp_path, make_leaf(ca, names=("10.9.9.9", "mq9"))) as port:
        cert = read(tmp_path, ca, port)
    assert cert.error is not None and "mismatch" in cert.error, cert.error
    assert not cert.ok


def test_an_expired_certificate_does_not_verify_and_says_since_when(tmp_path: Path) -> None:
    ca = make_ca()
    with serve(tmp_path, make_leaf(ca, days=-3.5, since=30)) as port:
        cert = read(tmp_path, ca, port)
    assert cert.error == "does not verify against the CA (certificate has expired)"
    assert cert.days_left == -4
    assert certificate_problems(TlsStatus("ca.pem", (cert,))) == [
        f"mq1: certificate on {port}: does not verify against the CA (certificate has expired); "
        "expired 4 days ago"
    ]


def test_a_port_that_does_not_speak_tls_is_a_failed_handshake(tmp_path: Path) -> None:
    with serve(tmp_path, None) as port:
        cert = read(tmp_path, make_ca(), port)
    assert cert.error is not None and cert.error.startswith("TLS handshake failed ("), cert.error
    assert (cert.not_after, cert.days_left, cert.ok) == (None, None, False)


def test_a_closed_port_is_refused_and_a_silent_one_times_out(tmp_path: Path) -> None:
    closed = read(tmp_path, make_ca(), free_port())
    assert closed.error == "connection refused"
    with serve(tmp_path, None, silent=True) as port:
        hung = read(tmp_path, make_ca(), port, timeout=0.3)
    assert hung.error == "no answer within 0.3 s"
    assert certificate_problems(TlsStatus("ca.pem", (closed,))) == [
        f"mq1: certificate on {closed.port}: connection refused"
    ]


# --- the inventory's endpoints, all at once --------------------------------------------------


def tls_inventory(amqps: int, management: int, flower: int) -> str:
    flower_at = "  host: rabbit1\n  basic_auth:"
    text = BASE_INVENTORY.replace(flower_at, flower_at.replace("\n", f"\n  port: {flower}\n", 1))
    return text + f"tls:\n  enabled: true\n  port: {amqps}\n  management_port: {management}\n"


@pytest.fixture
def on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inventory's endpoints reached on 127.0.0.1 (validate refuses a loopback broker)."""
    from qsetup.status import certs

    real = certs.tls_endpoints
    monkeypatch.setattr(
        certs,
        "tls_endpoints",
        lambda inv: tuple(replace(e, address="127.0.0.1") for e in real(inv)),
    )


def test_endpoints_are_each_broker_nodes_two_ports_and_flowers(
    write_inventory: WriteInventory,
) -> None:
    inv = load_inventory(write_inventory(tls_inventory(35671, 35672, 35555))).inventory
    assert tls_endpoints(inv) == (
        Endpoint("rabbit1", "10.0.0.1", 35671, "amqps"),
        Endpoint("rabbit1", "10.0.0.1", 35672, "management"),
        Endpoint("rabbit1", "10.0.0.1", 35555, "flower"),
    )
    assert tls_endpoints(load_inventory(write_inventory()).inventory) == ()


def test_check_certificates_reads_every_endpoint_against_the_inventorys_ca(
    write_inventory: WriteInventory, tmp_path: Path, on_loopback: None
) -> None:
    ca = make_ca()
    good, soon = make_leaf(ca, days=200.5), make_leaf(ca, days=12.5)
    with (
        serve(tmp_path, good) as amqps,
        serve(tmp_path, good) as management,
        serve(tmp_path, soon) as flower,
    ):
        path = write_inventory(tls_inventory(amqps, management, flower))
        path.with_name("inventory.ca.pem").write_bytes(ca.pem())
        tls = check_certificates(load_inventory(path), 2.0, NOW)
    assert tls is not None
    assert tls.ca == str(path.with_name("inventory.ca.pem"))
    assert [(c.port, c.service, c.days_left, c.error) for c in tls.certificates] == [
        (amqps, "amqps", 200, None),
        (management, "management", 200, None),
        (flower, "flower", 12, None),
    ]
    assert certificate_problems(tls) == [
        f"rabbit1: certificate on {flower}: expires in 12 days (deploy renews it)"
    ]


def test_without_the_ca_file_every_certificate_is_a_problem_with_its_expiry(
    write_inventory: WriteInventory, tmp_path: Path, on_loopback: None
) -> None:
    ca = make_ca()
    with serve(tmp_path, make_leaf(ca, days=100.5)) as port:
        path = write_inventory(tls_inventory(port, free_port(), free_port()))
        tls = check_certificates(load_inventory(path), 1.0, NOW)
    assert tls is not None
    first = tls.certificates[0]
    assert first.error == f"cannot load the CA certificate {path.with_name('inventory.ca.pem')}"
    assert first.days_left == 100
    assert [c.error for c in tls.certificates[1:]] == [f"{first.error}; connection refused"] * 2


def test_without_tls_there_is_nothing_to_check(write_inventory: WriteInventory) -> None:
    assert check_certificates(load_inventory(write_inventory()), 1.0) is None
    assert certificate_problems(None) == []


# --- the report --------------------------------------------------------------------------------


def _status(tls: TlsStatus | None, problems: tuple[str, ...] = ()) -> SystemStatus:
    return SystemStatus((), None, (), None, problems, "2025-01-01T00:00:00+00:00", 0.1, tls)


TLS = TlsStatus(
    "/inv/inventory.ca.pem",
    (
        CertStatus("mq1", 5671, "amqps", "2026-01-01T00:00:00+00:00", 300, None),
        CertStatus("mq1", 15671, "management", "2025-01-13T00:00:00+00:00", 12, None),
        CertStatus("mq1", 5555, "flower", None, None, "connection refused"),
    ),
)


def test_status_json_has_tls_with_every_certificate() -> None:
    data = json.loads(json.dumps(status_json(_status(TLS))))
    assert data["tls"] == {
        "ca": "/inv/inventory.ca.pem",
        "generated": True,
        "certificates": [
            {"host": "mq1", "port": 5671, "service": "amqps",
             "not_after": "2026-01-01T00:00:00+00:00", "days_left": 300, "ok": True,
             "error": None},
            {"host": "mq1", "port": 15671, "service": "management",
             "not_after": "2025-01-13T00:00:00+00:00", "days_left": 12, "ok": False,
             "error": None},
            {"host": "mq1", "port": 5555, "service": "flower", "not_after": None,
             "days_left": None, "ok": False, "error": "connection refused"},
        ],
    }  # fmt: skip
    without = status_json(_status(None))
    assert without["tls"] is None
    assert {"healthy", "problems", "hosts", "broker", "workers", "flower"} <= set(without)


def test_status_table_has_a_row_per_certificate_and_the_verdict_counts_them() -> None:
    out = StringIO()
    Console(file=out, width=200, color_system=None).print(status_view(_status(TLS, ("x: y",))))
    text = out.getvalue()
    assert "amqps :5671" in text and "expires 2026-01-01 (300 days)" in text
    assert "management :15671" in text and "renew soon" in text
    assert "flower :5555" in text and "does not verify" in text and "connection refused" in text
    healthy = TlsStatus(TLS.ca, TLS.certificates[:1])
    out = StringIO()
    Console(file=out, width=200, color_system=None).print(status_view(_status(healthy)))
    assert "1 TLS certificates verified (first expiry in 300 days)" in out.getvalue()


def test_check_status_runs_the_handshakes_and_lists_their_problems(
    write_inventory: WriteInventory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_loopback: None,
) -> None:
    from qsetup.status import check
    from qsetup.status.broker import failed_broker
    from qsetup.status.workers import InspectResult

    ca = make_ca()
    with serve(tmp_path, make_leaf(ca, days=12.5)) as port:
        path = write_inventory(tls_inventory(port, free_port(), free_port()))
        path.with_name("inventory.ca.pem").write_bytes(ca.pem())
        loaded = load_inventory(path)
        monkeypatch.setattr(check, "start_reading", lambda *_: None)  # no host is contacted
        monkeypatch.setattr(check, "read_hosts", lambda *_: {})
        monkeypatch.setattr(check, "fetch_broker", lambda *_: failed_broker(loaded.inventory, "-"))
        monkeypatch.setattr(check, "broker_problems", lambda *_: [])
        monkeypatch.setattr(check, "place_nodes", lambda inv, broker, names: broker)
        monkeypatch.setattr(check, "check_flower", lambda *_: None)
        monkeypatch.setattr(check, "inspect_workers",
                            lambda _l, user, vhost, *_: InspectResult(user, vhost, None,
                                                                      frozenset(), {}))  # fmt: skip
        monkeypatch.setattr(check, "worker_problems", lambda *_: [])
        monkeypatch.setattr(check, "beat_problems", lambda *_: [])
        status = check.check_status(loaded, 1.0)
    assert status.tls is not None and len(status.tls.certificates) == 3
    assert f"rabbit1: certificate on {port}: expires in 12 days (deploy renews it)" in (
        status.problems
    )
    assert not status.healthy
