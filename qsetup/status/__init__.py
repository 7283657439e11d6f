"""``qsetup status``: is everything the inventory describes up and as described?

``check_status(loaded)`` checks every host over SSH in parallel (OpenSSH's client), the broker
through its management API, the workers through a Celery broadcast, Flower over
HTTP and each TLS endpoint's certificate with a handshake, all with bounded
timeouts, and returns a frozen ``SystemStatus`` whose ``problems`` name a host and a
unit or object each. No typer or rich here.
"""

from __future__ import annotations

from qsetup.converge.broker import Drift
from qsetup.status.check import DEFAULT_TIMEOUT, PING_TIMEOUT, check_status
from qsetup.status.model import (
    BrokerNode,
    BrokerStatus,
    CertStatus,
    FlowerStatus,
    HostStatus,
    QueueStatus,
    SystemStatus,
    TlsStatus,
    UnitStatus,
    WorkerNode,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "PING_TIMEOUT",
    "BrokerNode",
    "BrokerStatus",
    "CertStatus",
    "Drift",
    "FlowerStatus",
    "HostStatus",
    "QueueStatus",
    "SystemStatus",
    "TlsStatus",
    "UnitStatus",
    "WorkerNode",
    "check_status",
]
