"""A Prometheus scrape configuration for the fleet ``qsetup render`` writes.

RabbitMQ's nodes serve ``/metrics`` through rabbitmq_prometheus (``broker.metrics``),
Flower serves its own behind its basic auth. The file names no password: Flower's job
reads it from a file the operator writes (``password_file``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qsetup.artifacts.tls import client_ca_file
from qsetup.desired.state import broker_nodes
from qsetup.inventory.fields import PROMETHEUS_PORT
from qsetup.inventory.model import Inventory


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def scrape_config(inv: Inventory, inventory_path: Path) -> dict[str, Any]:
    """``scrape_configs`` for RabbitMQ's nodes and Flower (empty when neither serves any)."""
    scheme = "https" if inv.tls.enabled else "http"
    tls = (
        {"tls_config": {"ca_file": str(client_ca_file(inventory_path, inv).resolve())}}
        if inv.tls.enabled
        else {}
    )
    jobs: list[dict[str, Any]] = []
    if inv.broker.metrics:
        jobs.append(
            {
                "job_name": "qsetup-rabbitmq",
                "scheme": scheme,
                **tls,
                "static_configs": [
                    {"targets": [_target(a, PROMETHEUS_PORT)], "labels": {"host": h}}
                    for h, a in broker_nodes(inv)
                ],
            }
        )
    flower = inv.flower
    if flower is not None:
        prefix = flower.url_prefix.strip("/")
        user = flower.basic_auth[0]
        jobs.append(
            {
                "job_name": "qsetup-flower",
                "scheme": scheme,
                **tls,
                "metrics_path": f"/{prefix}/metrics" if prefix else "/metrics",
                "basic_auth": {
                    "username": user.name,
                    # Write the password of this Flower user (secret user.secret) there.
                    "password_file": f"/etc/prometheus/qsetup-flower-{user.name}.password",
                },
                "static_configs": [
                    {
                        "targets": [_target(inv.hosts[flower.host].address, flower.port)],
                        "labels": {"host": flower.host},
                    }
                ],
            }
        )
    return {"scrape_configs": jobs}


def scrape_config_text(inv: Inventory, inventory_path: Path) -> str:
    """The scrape configuration as YAML, with a header saying where it came from."""
    header = (
        f"# Written by `qsetup render` for {inventory_path.name}: add these jobs to\n"
        "# prometheus.yml. Flower's job reads its password from password_file.\n"
    )
    return header + yaml.safe_dump(scrape_config(inv, inventory_path), sort_keys=False)
