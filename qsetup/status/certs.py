"""TLS endpoints: the certificate each one serves, verified and dated from the controller.

Every broker node's AMQPS port and HTTPS management port, Flower's HTTPS port and the
managed result backend's port get
one TLS handshake that verifies against the CA qsetup's clients use
(:func:`qsetup.artifacts.tls.client_ca_file`) and the address the controller connects to, as
the workers and ``qsetup status`` do. A certificate that does not verify is read
again without verification, so its expiry is still shown. All handshakes run at
once, each bounded by the status timeout.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from qsetup.artifacts.tls import RENEW_DAYS, client_ca_file
from qsetup.desired.state import amqp_endpoint, management_endpoint
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.status.flower import flower_address
from qsetup.status.model import CertStatus, TlsStatus

if TYPE_CHECKING:  # imported where used: without TLS, status never loads it
    from cryptography import x509

MAX_PARALLEL = 16


@dataclass(frozen=True)
class Endpoint:
    """One port that serves TLS, and the address the controller reaches it at."""

    host: str
    address: str
    port: int
    service: str
    """amqps, management, flower or results (the managed result backend)."""


def tls_endpoints(inv: Inventory) -> tuple[Endpoint, ...]:
    """Every TLS endpoint the inventory sets up (none without ``tls.enabled``)."""
    if not inv.tls.enabled:
        return ()
    _, amqps = amqp_endpoint(inv)
    _, management = management_endpoint(inv)
    out = []
    for host in inv.broker.hosts:
        address = inv.hosts[host].address
        out.append(Endpoint(host, address, amqps, "amqps"))
        out.append(Endpoint(host, address, management, "management"))
    flower_at = flower_address(inv)
    if inv.flower is not None and flower_at is not None:
        out.append(Endpoint(inv.flower.host, flower_at, inv.flower.port, "flower"))
    if inv.results is not None:
        host = inv.results.host
        out.append(Endpoint(host, inv.hosts[host].address, inv.results.port, "results"))
    return tuple(out)


def _served(address: str, port: int, context: ssl.SSLContext, timeout: float) -> x509.Certificate:
    with (
        socket.create_connection((address, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=address) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server sent no certificate")
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _failure(exc: OSError, timeout: float) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({str(exc.reason or 'no reason').lower().replace('_', ' ')})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect ({exc.strerror or type(exc).__name__})"


def read_endpoint(
    endpoint: Endpoint,
    context: ssl.SSLContext | None,
    timeout: float,
    now: datetime,
    ca_error: str | None = None,
) -> CertStatus:
    """One handshake verified by ``context``; on a verify failure, one more unverified.

    ``context`` None (with ``ca_error`` saying why) means the CA could not be loaded:
    the certificate is then only read, and ``ca_error`` is the status's error.
    """
    unread = partial(CertStatus, endpoint.host, endpoint.port, endpoint.service, None, None)
    cert: x509.Certificate | None = None
    error = ca_error
    if context is not None:
        try:
            cert = _served(endpoint.address, endpoint.port, context, timeout)
        except ssl.SSLCertVerificationError as exc:
            reason = str(exc.verify_message or exc.reason or "no reason").rstrip(".")
            error = f"does not verify against the CA ({reason})"
        except OSError as exc:  # ssl.SSLError too
            return unread(_failure(exc, timeout))
    if cert is None:
        try:
            cert = _served(endpoint.address, endpoint.port, _unverified(), timeout)
        except OSError as exc:
            return unread(f"{error}; {_failure(exc, timeout)}")
    not_after = cert.not_valid_after_utc
    return CertStatus(
        endpoint.host,
        endpoint.port,
        endpoint.service,
        not_after.isoformat(timespec="seconds"),
        (not_after - now).days,
        error,
    )


def verifying_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` and checks the name it connects to."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def check_certificates(
    loaded: LoadedInventory, timeout: float, now: datetime | None = None
) -> TlsStatus | None:
    """Read every TLS endpoint's certificate at once (None without ``tls.enabled``)."""
    inv = loaded.inventory
    if not inv.tls.enabled:
        return None
    ca_file = client_ca_file(loaded.path, inv)
    context: ssl.SSLContext | None = None
    ca_error: str | None = None
    try:
        context = verifying_context(ca_file)
    except (OSError, ssl.SSLError):
        ca_error = f"cannot load the CA certificate {ca_file}"
    when = now or datetime.now(UTC)
    endpoints = tls_endpoints(inv)
    read: Callable[[Endpoint], CertStatus] = lambda e: read_endpoint(  # noqa: E731
        e, context, timeout, when, ca_error
    )
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(endpoints)))) as pool:
        certificates = tuple(pool.map(read, endpoints))
    return TlsStatus(str(ca_file), certificates, generated=inv.tls.ca_cert is None)


def _expiry(days: int) -> str:
    if days < 0:
        return f"expired {-days} day{'s' if days != -1 else ''} ago"
    return f"expires in {days} day{'s' if days != 1 else ''}"


def certificate_problems(tls: TlsStatus | None) -> list[str]:
    """One line per certificate that does not verify or is due for renewal."""
    if tls is None:
        return []
    fix = "deploy renews it" if tls.generated else "replace it in tls.certificates"
    problems = []
    for c in tls.certificates:
        where = f"{c.host}: certificate on {c.port}"
        if c.error is not None:
            expiry = f"; {_expiry(c.days_left)}" if c.days_left is not None else ""
            problems.append(f"{where}: {c.error}{expiry}")
        elif c.days_left is not None and c.days_left < RENEW_DAYS:
            problems.append(f"{where}: {_expiry(c.days_left)} ({fix})")
    return problems
