"""Backup and restore results as one line of text or a JSON object (called from cli.py)."""

from __future__ import annotations

from typing import Any

from qsetup.ops.backup import BackupResult, RestoreResult

SHOWN_QUEUES = 20
"""Queues named in a restore's line; JSON lists all of them."""


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


def backup_line(result: BackupResult) -> str:
    """``wrote PATH (0600) from HOST (RabbitMQ V): N vhosts, ...; it holds password hashes``."""
    c = result.counts
    version = f" (RabbitMQ {result.rabbitmq_version})" if result.rabbitmq_version else ""
    return (
        f"wrote {result.path} (mode 0600) from {result.api_host}{version} in "
        f"{result.seconds:.1f} s: {_n(c['vhosts'], 'vhost')}, {_n(c['users'], 'user')}, "
        f"{_n(c['queues'], 'queue')}, {_n(c['exchanges'], 'exchange')}, "
        f"{_n(c['bindings'], 'binding')}, {_n(c['policies'], 'policy', 'policies')}; "
        "it holds password hashes: keep it like the secrets file"
    )


def backup_json(result: BackupResult) -> dict[str, Any]:
    """``qsetup backup --json``."""
    return {
        "path": str(result.path),
        "api_host": result.api_host,
        "api_errors": [{"host": h, "error": e} for h, e in result.api_errors],
        "rabbitmq_version": result.rabbitmq_version,
        "counts": dict(result.counts),
        "holds_password_hashes": True,
        "elapsed_seconds": round(result.seconds, 2),
    }


def _queue(vhost: str, name: str) -> str:
    return f"{vhost}/{name}"


def restore_line(result: RestoreResult) -> str:
    """What was imported (vhosts and queues by name) and what was left out, on one line."""
    c = result.counts
    queues = [_queue(v, q) for v, q in result.queues]
    shown = ", ".join(queues[:SHOWN_QUEUES]) or "none"
    if len(queues) > SHOWN_QUEUES:
        shown += f" and {len(queues) - SHOWN_QUEUES} more"
    users = f" ({', '.join(result.users)})" if result.users else ""
    line = (
        f"restored {result.path} into {result.api_host} in {result.seconds:.1f} s: "
        f"vhosts {', '.join(result.vhosts) or 'none'}; queues {shown}; "
        f"{_n(c['exchanges'], 'exchange')}, {_n(c['bindings'], 'binding')}, "
        f"{_n(c['users'], 'user')}{users}, "
        f"{_n(c['policies'], 'policy', 'policies')}"
    )
    kept = [o for o in result.left_out if o.managed]
    transient = [o for o in result.left_out if o.kind in ("queue", "exchange")]
    dropped = [o for o in result.left_out if not o.managed and o not in transient]
    if kept:
        line += "; left as deploy set them: " + ", ".join(f"{o.kind} {o.name}" for o in kept)
    if dropped:
        line += "; left out: " + ", ".join(f"{o.kind} {o.name} ({o.reason})" for o in dropped)
    if transient:
        queues_out = sum(o.kind == "queue" for o in transient)
        line += (
            f"; left out {_n(queues_out, 'queue')} and "
            f"{_n(len(transient) - queues_out, 'exchange')} that were transient or auto-delete "
            "(their clients declare them again)"
        )
    return line


def restore_json(result: RestoreResult) -> dict[str, Any]:
    """``qsetup restore --json``."""
    return {
        "file": str(result.path),
        "api_host": result.api_host,
        "api_errors": [{"host": h, "error": e} for h, e in result.api_errors],
        "rabbitmq_version": result.rabbitmq_version,
        "source_rabbitmq_version": result.source_version,
        "imported": {
            "vhosts": list(result.vhosts),
            "queues": [{"vhost": v, "name": q} for v, q in result.queues],
            "users": list(result.users),
            "counts": dict(result.counts),
        },
        "left_out": [
            {"kind": o.kind, "name": o.name, "managed": o.managed, "reason": o.reason}
            for o in result.left_out
        ],
        "elapsed_seconds": round(result.seconds, 2),
    }
