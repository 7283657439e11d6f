"""Inventory texts and secrets shared by the unit tests (imported as ``unitdata``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

# Line numbers matter: test_inventory_invalid.py derives its cases from this text with
# string edits and asserts FILE:LINE:COL positions.
BASE_INVENTORY = """\
version: 1
hosts:
  rabbit1:
    address: 10.0.0.1
  worker1:
    address: 10.0.0.2
broker:
  host: rabbit1
  vhosts: [orders]
  users:
    - name: orders
      vhost: orders
app:
  module: proj
  source:
    path: app
  broker_user: orders
  vhost: orders
workers:
  - name: default
    hosts: [worker1]
    install: pip
flower:
  host: rabbit1
  basic_auth:
    - name: admin
"""

BASE_SECRETS: dict[str, str] = {
    "rabbitmq-erlang-cookie": "COOKIECOOKIECOOKIECOOKIECOOKIEAB",
    "rabbitmq-user-orders": "orders-pw-0123456789abcdef",
    "rabbitmq-user-flower-monitor": "monitor-pw-0123456789abcdef",
    "flower-user-admin": "admin-pw-0123456789abcdef",
}

WriteInventory = Callable[..., Path]


def write_secrets(path: Path, values: Mapping[str, str], mode: int = 0o600) -> Path:
    lines = [f"{name}: {value!r}" if value else f"{name}: ''" for name, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    path.chmod(mode)
    return path
