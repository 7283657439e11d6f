"""Checks of the inventory's ``tls`` section, each problem as (field path, message).

Names (hosts that need a certificate) and, in the bring-your-own mode, the files
themselves (readable, key matches certificate, not expired, issued by the CA).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from qsetup.inventory.fields import resolve_relative
from qsetup.inventory.model import Inventory, tls_hosts
from qsetup.inventory.vault import Vault

if TYPE_CHECKING:  # imported where used: an inventory without TLS files never pays ~30 ms
    from cryptography import x509

FieldPath = tuple[str | int, ...]


def cert_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and addresses a certificate's subject alternative names hold."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    }


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca`` signed ``cert``."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False
    return True


def check_tls_names(inv: Inventory) -> list[tuple[FieldPath, str]]:
    """Certificates name declared hosts; with your own CA every TLS host has one."""
    problems: list[tuple[FieldPath, str]] = []
    for host in inv.tls.certificates:
        if host not in inv.hosts:
            problems.append(
                (("tls", "certificates", host), f"host '{host}' is not declared under hosts")
            )
    if inv.tls.ca_cert is not None:
        for host in tls_hosts(inv):
            if host not in inv.tls.certificates:
                what = "a broker node" if host in inv.broker.hosts else "Flower's host"
                problems.append(
                    (
                        ("tls", "ca_cert"),
                        f"host '{host}' is {what} and serves TLS: give its cert and key under "
                        f"tls.certificates.{host} (issued by this CA)",
                    )
                )
    return problems


def _read(path: Path) -> bytes | str:
    try:
        return path.read_bytes()
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror}); check the path and the file's owner"


def check_tls_files(
    inventory_path: Path, inv: Inventory, vault: Vault | None = None
) -> list[tuple[FieldPath, str]]:
    """The files of the bring-your-own mode; nothing to check for qsetup's own CA.

    A key file in ansible-vault's format (``qsetup secrets encrypt`` writes them so when
    they lie in the inventory's folder) is opened with ``vault``'s password.
    """
    if not inv.tls.enabled or inv.tls.ca_cert is None:
        return []
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    problems: list[tuple[FieldPath, str]] = []
    ca_path = resolve_relative(inventory_path, inv.tls.ca_cert)
    data = _read(ca_path)
    if isinstance(data, str):
        return [(("tls", "ca_cert"), data)]
    try:
        ca = x509.load_pem_x509_certificate(data)
    except ValueError:
        return [(("tls", "ca_cert"), f"{ca_path} is not a PEM certificate")]
    now = dt.datetime.now(dt.UTC)
    for host, files in inv.tls.certificates.items():
        where: FieldPath = ("tls", "certificates", host, "cert")
        cert_path = resolve_relative(inventory_path, files.cert)
        key_path = resolve_relative(inventory_path, files.key)
        cert_data, key_data = _read(cert_path), _read(key_path)
        if isinstance(key_data, bytes) and vault is not None:
            key_data = vault.open_bytes(key_path, key_data)
        if isinstance(cert_data, str):
            problems.append((where, cert_data))
            continue
        if isinstance(key_data, str):
            problems.append((("tls", "certificates", host, "key"), key_data))
            continue
        try:
            cert = x509.load_pem_x509_certificate(cert_data)
        except ValueError:
            problems.append((where, f"{cert_path} is not a PEM certificate"))
            continue
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError):
            problems.append(
                (("tls", "certificates", host, "key"),
                 f"{key_path} is not an unencrypted PEM private key")
            )  # fmt: skip
            continue
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            problems.append(
                (("tls", "certificates", host, "key"),
                 f"{key_path} is not the key of {cert_path}; give the matching key")
            )  # fmt: skip
        if cert.not_valid_after_utc <= now:
            problems.append((where, f"{cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}"))
        if not issued_by(cert, ca):
            problems.append((where, f"{cert_path} was not issued by tls.ca_cert ({ca_path})"))
        address = inv.hosts[host].address if host in inv.hosts else None
        if address is not None and address not in cert_names(cert):
            problems.append(
                (where, f"{cert_path} does not name the host's address {address} (clients "
                        "connect to it and check the name)")
            )  # fmt: skip
    return problems
