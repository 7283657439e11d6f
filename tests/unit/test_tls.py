"""TLS: the CA and host certificates qsetup keeps, what is rendered, own-CA validation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.artifacts import tls
from qsetup.artifacts.render import broker_url, render_all
from qsetup.desired.state import celery_settings
from qsetup.errors import QsetupError
from qsetup.inventory.loader import load_inventory, validate_document
from qsetup.inventory.model import Inventory
from qsetup.inventory.secrets import Secrets, redactor
from qsetup.inventory.yamlsource import parse_yaml

TLS_ON = BASE_INVENTORY + "tls:\n  enabled: true\n"


def model(text: str) -> Inventory:
    return validate_document(parse_yaml(Path("inventory.yml"), text))


def secrets() -> Secrets:
    return Secrets(
        path=Path("/nonexistent/inventory.secrets.yml"),
        values={k: SecretStr(v) for k, v in BASE_SECRETS.items()},
    )


def material(tmp_path: Path, inv: Inventory, hostnames: Any = None) -> tls.TlsMaterial:
    result = tls.prepare(tmp_path / "inventory.yml", inv, hostnames)
    assert result is not None
    return result


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


# --- the generated CA and host certificates ---------------------------------------------


def test_the_ca_and_host_certificates_are_made_once_and_kept_private(tmp_path: Path) -> None:
    inv = model(TLS_ON)
    first = material(tmp_path, inv, {"rabbit1": "rabbit1.example.org"})
    assert (tmp_path / "inventory.ca.pem").read_text() == first.ca_pem
    assert (tmp_path / "inventory.ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "inventory.tls").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "inventory.tls" / "rabbit1.key").stat().st_mode & 0o777 == 0o600
    assert set(first.hosts) == {"rabbit1"}  # the broker and Flower share a host
    cert = load_cert(first.hosts["rabbit1"].cert_pem)
    assert tls.cert_names(cert) == {"rabbit1", "10.0.0.1", "rabbit1.example.org"}
    assert tls.issued_by(cert, load_cert(first.ca_pem))
    assert "PRIVATE KEY" not in repr(first.hosts["rabbit1"])
    again = material(tmp_path, inv, {"rabbit1": "rabbit1.example.org"})
    assert again.hosts["rabbit1"].cert_pem == first.hosts["rabbit1"].cert_pem
    # A render without hostnames keeps the certificate that names more.
    assert material(tmp_path, inv).hosts["rabbit1"].cert_pem == first.hosts["rabbit1"].cert_pem


def _expiring(tmp_path: Path, host: str, days: int) -> None:
    ca = load_cert((tmp_path / "inventory.ca.pem").read_text())
    ca_key = serialization.load_pem_private_key(
        (tmp_path / "inventory.ca-key.pem").read_bytes(), None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    old = load_cert((tmp_path / "inventory.tls" / f"{host}.pem").read_text())
    key = serialization.load_pem_private_key(
        (tmp_path / "inventory.tls" / f"{host}.key").read_bytes(), None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "inventory.tls" / f"{host}.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
    )


def test_a_certificate_near_expiry_or_with_other_names_is_issued_again(tmp_path: Path) -> None:
    inv = model(TLS_ON)
    material(tmp_path, inv)
    _expiring(tmp_path, "rabbit1", 40)
    kept = material(tmp_path, inv).hosts["rabbit1"]
    assert 38 <= kept.days_left(dt.datetime.now(dt.UTC)) <= 40  # outside 30 days: kept
    _expiring(tmp_path, "rabbit1", 10)
    renewed = material(tmp_path, inv).hosts["rabbit1"]
    assert renewed.days_left(dt.datetime.now(dt.UTC)) > 300
    moved = model(TLS_ON.replace("address: 10.0.0.1", "address: 10.0.0.9"))
    cert = load_cert(material(tmp_path, moved).hosts["rabbit1"].cert_pem)
    assert "10.0.0.9" in tls.cert_names(cert) and "10.0.0.1" not in tls.cert_names(cert)


def test_a_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    inv = model(TLS_ON)
    first = material(tmp_path, inv)
    (tmp_path / "inventory.ca.pem").unlink()
    (tmp_path / "inventory.ca-key.pem").unlink()
    second = material(tmp_path, inv)
    assert second.ca_pem != first.ca_pem
    assert tls.issued_by(load_cert(second.hosts["rabbit1"].cert_pem), load_cert(second.ca_pem))


def test_every_broker_node_names_every_node(tmp_path: Path) -> None:
    from test_cluster import CLUSTER

    inv = model(CLUSTER + "tls:\n  enabled: true\n")
    got = material(tmp_path, inv)
    for host in ("rabbit1", "rabbit2", "rabbit3"):
        names = tls.cert_names(load_cert(got.hosts[host].cert_pem))
        assert {"10.0.0.1", "10.0.0.3", "10.0.0.4"} <= names


# --- what is rendered --------------------------------------------------------------------


def test_tls_renders_tls_listeners_keys_and_verifying_clients(tmp_path: Path) -> None:
    inv = model(TLS_ON)
    arts = {(a.host, str(a.path)): a for a in render_all(inv, secrets(), material(tmp_path, inv))}
    conf = arts[("rabbit1", "/etc/rabbitmq/rabbitmq.conf")].content
    assert "listeners.tcp = none" in conf and "listeners.ssl.default = 0.0.0.0:5671" in conf
    assert "management.ssl.port = 15671" in conf and "management.tcp.ip = 127.0.0.1" in conf
    key = arts[("rabbit1", "/etc/rabbitmq/tls/key.pem")]
    assert key.secret and key.mode == 0o640 and (key.owner, key.group) == ("root", "rabbitmq")
    flower_key = arts[("rabbit1", "/etc/qsetup/flower/tls/key.pem")]
    assert flower_key.secret and flower_key.group == "flower"
    assert (
        "certfile = '/etc/qsetup/flower/tls/cert.pem'"
        in arts[("rabbit1", "/etc/qsetup/flower/flowerconfig.py")].content
    )
    assert ("worker1", "/etc/qsetup/tls/ca.pem") in arts
    env = arts[("worker1", "/etc/qsetup/worker-default.env")].content
    assert "amqps://" in env and "@10.0.0.1:5671/orders" in env
    line = next(x for x in env.splitlines() if x.startswith("QSETUP_CELERY_SETTINGS="))
    settings = json.loads(line.split("=", 1)[1][1:-1].replace('\\"', '"'))
    assert settings["broker_use_ssl"] == {
        "ca_certs": "/etc/qsetup/tls/ca.pem",
        "cert_reqs": 2,
        "server_hostname": None,
    }
    assert broker_url(inv, secrets(), "orders", "orders").startswith("amqps://")
    assert celery_settings(model(BASE_INVENTORY)) == {}


def test_no_key_is_rendered_without_tls() -> None:
    arts = render_all(model(BASE_INVENTORY), secrets())
    assert not [a for a in arts if "tls" in str(a.path)]
    conf = next(a for a in arts if a.path.name == "rabbitmq.conf").content
    assert "listeners.tcp.default = 0.0.0.0:5672" in conf and "ssl" not in conf


# --- your own CA ---------------------------------------------------------------------------


def _own_ca(folder: Path, *, days: int = 100, names: tuple[str, ...] = ("10.0.0.1",)) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "own CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=2)).not_valid_after(now + dt.timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    host_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(host_key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(days=2)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(tls._san(list(names)), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "mq.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "mq.key").write_bytes(tls._key_pem(host_key))
    (folder / "other.key").write_bytes(tls._key_pem(ec.generate_private_key(ec.SECP256R1())))


OWN = BASE_INVENTORY + (
    "tls:\n  enabled: true\n  ca_cert: ca.pem\n  certificates:\n"
    "    rabbit1: {cert: mq.pem, key: mq.key}\n"
)


def _problems(write_inventory: WriteInventory, text: str) -> list[str]:
    inventory = write_inventory(text)
    with pytest.raises(QsetupError) as caught:
        load_inventory(inventory)
    return [line.split(": ", 1)[1] for line in caught.value.lines()]


def test_your_own_ca_and_certificates_are_used(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    _own_ca(tmp_path)
    loaded = load_inventory(write_inventory(OWN))
    got = tls.prepare(loaded.path, loaded.inventory, None)
    assert got is not None and got.ca_pem == (tmp_path / "ca.pem").read_text()
    assert got.hosts["rabbit1"].key_pem == (tmp_path / "mq.key").read_text()
    assert tls.client_ca_file(loaded.path, loaded.inventory) == tmp_path / "ca.pem"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("key: mq.key", "key: other.key"), "is not the key of"),
        (("cert: mq.pem", "cert: gone.pem"), "cannot be read"),
        (("    rabbit1: {cert: mq.pem, key: mq.key}\n", "    {}\n"), "serves TLS"),
        (("    rabbit1: {cert", "    nohost: {cert"), "is not declared under hosts"),
    ],
)
def test_bad_own_certificates_are_refused(
    write_inventory: WriteInventory, tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    _own_ca(tmp_path)
    text = OWN.replace(*change).replace("  certificates:\n    {}\n", "  certificates: {}\n")
    problems = _problems(write_inventory, text)
    assert any(expected in p for p in problems), problems


def test_an_expired_or_misnamed_own_certificate_is_refused(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    _own_ca(tmp_path, days=-1, names=("10.9.9.9",))
    problems = _problems(write_inventory, OWN)
    assert any("expired on" in p for p in problems), problems
    assert any("does not name the host's address 10.0.0.1" in p for p in problems), problems


# --- secrets never leave in messages -----------------------------------------------------


def test_failure_messages_and_run_logs_lose_secret_values() -> None:
    redact = redactor(secrets(), ["extra secret/value"])
    text = "url amqps://orders:orders-pw-0123456789abcdef@h and extra%20secret%2Fvalue"
    assert redact(text) == "url amqps://orders:***@h and ***"


def test_certificates_verify_under_strict_x509_checks(tmp_path: Path) -> None:
    import ipaddress

    got = material(tmp_path, model(TLS_ON), {"rabbit1": "rabbit1"})
    leaf = load_cert(got.hosts["rabbit1"].cert_pem)
    ca = load_cert(got.ca_pem)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest  # what Python >= 3.13's strict mode asks for
    # cryptography's RFC 5280 verifier is as strict as Python 3.13's default.
    from cryptography.x509.verification import PolicyBuilder, Store

    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("10.0.0.1")))
    )
    assert verifier.verify(leaf, [])[0] == leaf
