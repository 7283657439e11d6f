"""Local test hosts: Debian trees booted by systemd-nspawn, each in its own network namespace.

The CLI calls :func:`up`, :func:`down`, :func:`list_hosts` and :func:`ssh`; they
return values and report progress through an optional callback.
"""

from __future__ import annotations

from qsetup.sandbox.host import HostStatus
from qsetup.sandbox.lifecycle import (
    DEFAULT_HOSTS,
    DEFAULT_RELEASE,
    DownResult,
    UpResult,
    down,
    format_status,
    list_hosts,
    ssh,
    up,
)

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_RELEASE",
    "DownResult",
    "HostStatus",
    "UpResult",
    "down",
    "format_status",
    "list_hosts",
    "ssh",
    "up",
]
