"""RabbitMQ's password hashes, checked against a password (standard library only).

Kept apart from the broker comparison so the playbooks' filters can check a hash
without importing the desired state (pydantic) in every Ansible worker.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any


def password_matches(user: Mapping[str, Any], password: str) -> bool:
    """Check a password against RabbitMQ's salted SHA-256 hash (4-byte salt)."""
    if user.get("hashing_algorithm") not in (None, "rabbit_password_hashing_sha256"):
        return False
    try:
        raw = base64.b64decode(str(user.get("password_hash", "")))
    except ValueError:
        return False
    salt, digest = raw[:4], raw[4:]
    return len(raw) == 36 and hashlib.sha256(salt + password.encode()).digest() == digest
