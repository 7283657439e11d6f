"""TLS material: a CA and a certificate per host that serves TLS (broker nodes, Flower).

Two modes (``tls:`` in the inventory):

- generated (the default): qsetup keeps a CA beside the inventory, its certificate as
  ``<stem>.ca.pem`` and its key as ``<stem>.ca-key.pem`` (0600), and issues each host a
  key and certificate kept in ``<stem>.tls/`` (0700, keys 0600). A host certificate is
  issued again when it is missing, expires within :data:`RENEW_DAYS`, no longer names
  the host (inventory name, address, the hostname the host reports) or was not issued
  by the CA.
- the user's own: ``tls.ca_cert`` and per host ``tls.certificates.<host>.cert/key``;
  validate checks they are readable, that each key matches its certificate, that the
  certificate is not expired and was issued by the CA.

Keys never appear in output: :class:`HostCert` hides them in its repr.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qsetup.errors import QsetupError
from qsetup.inventory.model import Inventory, tls_hosts
from qsetup.inventory.tlscheck import cert_names, issued_by
from qsetup.inventory.vault import Vault

if TYPE_CHECKING:  # imported where used: without TLS, status and deploy never load them
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

RENEW_DAYS = 30
"""A certificate that expires within this many days is renewed by deploy (status warns)."""
HOST_DAYS = 365
CA_DAYS = 3650


@dataclass(frozen=True)
class HostCert:
    """One host's certificate and key (PEM)."""

    host: str
    cert_pem: str
    key_pem: str = field(repr=False)
    not_after: dt.datetime

    def days_left(self, now: dt.datetime) -> int:
        """Whole days until the certificate expires (negative when it has)."""
        return (self.not_after - now).days


@dataclass(frozen=True)
class TlsMaterial:
    """The CA certificate every client verifies against, and each TLS host's pair."""

    ca_pem: str
    hosts: dict[str, HostCert]


def ssl_reason(exc: BaseException) -> str:
    """A short reason for a failed TLS handshake (never the whole exception text)."""
    text = str(exc)
    for reason in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "hostname mismatch"):
        if reason in text:
            return reason.lower().replace("_", " ")
    return "see the host's certificate"


def ca_cert_path(inventory_path: Path) -> Path:
    """``<inventory stem>.ca.pem`` beside the inventory (the generated CA's certificate)."""
    return inventory_path.with_name(f"{inventory_path.stem}.ca.pem")


def ca_key_path(inventory_path: Path) -> Path:
    """``<inventory stem>.ca-key.pem`` beside the inventory (0600)."""
    return inventory_path.with_name(f"{inventory_path.stem}.ca-key.pem")


def cache_dir(inventory_path: Path) -> Path:
    """``<inventory stem>.tls/``: the host keys and certificates qsetup issued (0700)."""
    return inventory_path.with_name(f"{inventory_path.stem}.tls")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common[:64])])


def load_or_create_ca(
    inventory_path: Path, write: bool = True, vault: Vault | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The generated CA beside the inventory, created on first use (kept only if ``write``).

    The key is read and written through ``vault`` (encrypted when the secrets are).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    vault = vault or Vault()
    cert_path, key_path = ca_cert_path(inventory_path), ca_key_path(inventory_path)
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(vault.read_bytes(key_path), password=None)
        except (OSError, ValueError) as exc:
            raise QsetupError(
                f"{cert_path}: cannot read qsetup's CA ({exc}); move the CA files away to have "
                "a new CA made (every host then gets new certificates)"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise QsetupError(f"{key_path}: not an EC key qsetup made; move it away")
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    subject = _name(f"qsetup CA {inventory_path.stem}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    if write:
        vault.write_bytes(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    from cryptography import x509

    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _issue(
    host: str, names: list[str], ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=HOST_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Key identifiers: Python >= 3.13's strict verification requires them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def host_names(name: str, address: str, hostname: str | None) -> list[str]:
    """What a host's certificate must name: inventory name, address, reported hostname."""
    names = [name, address]
    if hostname:
        names += [hostname, hostname.split(".")[0]]
    return list(dict.fromkeys(names))


def generated_material(
    inventory_path: Path,
    hosts: dict[str, list[str]],
    now: dt.datetime | None = None,
    write: bool = True,
    vault: Vault | None = None,
) -> TlsMaterial:
    """The generated CA and a current certificate for each host (issued when needed).

    ``hosts`` maps inventory name to the names its certificate must hold. Without
    ``write`` nothing is written: what would be issued is issued in memory only
    (status compares hosts with what the next deploy would install).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or _now()
    vault = vault or Vault()
    ca, ca_key = load_or_create_ca(inventory_path, write, vault)
    folder = cache_dir(inventory_path)
    if write:
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    out: dict[str, HostCert] = {}
    for host, want in sorted(hosts.items()):
        cert_file, key_file = folder / f"{host}.pem", folder / f"{host}.key"
        cert = None
        if cert_file.exists() and key_file.exists():
            try:
                cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            except ValueError:
                cert = None
        fresh = (
            cert is not None
            and set(want) <= cert_names(cert)
            and (cert.not_valid_after_utc - now).days >= RENEW_DAYS
            and issued_by(cert, ca)
        )
        if fresh:
            cert_pem, key_pem = cert_file.read_bytes(), vault.read_bytes(key_file)
        else:
            cert_pem, key_pem = _issue(host, want, ca, ca_key)
            if write:
                vault.write_bytes(key_file, key_pem)
                cert_file.write_bytes(cert_pem)
            cert = x509.load_pem_x509_certificate(cert_pem)
        assert cert is not None
        out[host] = HostCert(
            host, cert_pem.decode("ascii"), key_pem.decode("ascii"), cert.not_valid_after_utc
        )
    return TlsMaterial(ca.public_bytes(serialization.Encoding.PEM).decode("ascii"), out)


def own_material(inventory_path: Path, inv: Inventory, vault: Vault | None = None) -> TlsMaterial:
    """The user's CA and host certificates (validate checked them)."""
    from cryptography import x509

    from qsetup.inventory.fields import resolve_relative

    vault = vault or Vault()
    assert inv.tls.ca_cert is not None
    ca_pem = resolve_relative(inventory_path, inv.tls.ca_cert).read_text(encoding="ascii")
    out = {}
    for host, files in inv.tls.certificates.items():
        cert_pem = resolve_relative(inventory_path, files.cert).read_text(encoding="ascii")
        key_pem = vault.read_text(resolve_relative(inventory_path, files.key))
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        out[host] = HostCert(host, cert_pem, key_pem, cert.not_valid_after_utc)
    return TlsMaterial(ca_pem, out)


def client_ca_file(inventory_path: Path, inv: Inventory) -> Path:
    """The CA certificate qsetup's own clients (status, the demo) verify against."""
    from qsetup.inventory.fields import resolve_relative

    if inv.tls.ca_cert is not None:
        return resolve_relative(inventory_path, inv.tls.ca_cert)
    return ca_cert_path(inventory_path)


def verify_with_ca(session: Any, inventory_path: Path, inv: Inventory) -> None:
    """Make a requests session check servers against qsetup's (or your) CA, with TLS on."""
    if inv.tls.enabled:
        session.verify = str(client_ca_file(inventory_path, inv))
        # REQUESTS_CA_BUNDLE in the environment would win over session.verify.
        session.trust_env = False


def prepare(
    inventory_path: Path,
    inv: Inventory,
    hostnames: dict[str, str | None] | None,
    write: bool = True,
    vault: Vault | None = None,
) -> TlsMaterial | None:
    """The TLS material a render needs (None without TLS); issues what is missing or due.

    ``hostnames`` maps inventory names to the hostname each host reports (deploy reads
    them first); None keeps the names current certificates hold (``qsetup render``).
    Keys are read and written through ``vault`` (the loaded inventory's).
    """
    if not inv.tls.enabled:
        return None
    if inv.tls.ca_cert is not None:
        return own_material(inventory_path, inv, vault)
    known = hostnames or {}
    names = {h: host_names(h, inv.hosts[h].address, known.get(h)) for h in tls_hosts(inv)}
    # Clients of a cluster check the certificate against the node named first in their
    # URL list whichever node they reach (kombu before 5.3 keeps that name on failover),
    # so every node's certificate names every node.
    cluster = [n for h in inv.broker.hosts for n in names[h]]
    wanted = {
        h: list(dict.fromkeys(names[h] + (cluster if h in inv.broker.hosts else []))) for h in names
    }
    return generated_material(inventory_path, wanted, write=write, vault=vault)
