"""Combinations refused before any host changes, and consumer_timeout set from time limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.artifacts.render import render_all
from qsetup.desired.state import consumer_timeout
from qsetup.errors import QsetupError
from qsetup.inventory.loader import load_inventory, validate_document
from qsetup.inventory.secrets import Secrets
from qsetup.inventory.yamlsource import parse_yaml


def limited(seconds: int, broker_line: str = "") -> str:
    text = BASE_INVENTORY.replace(
        "    install: pip\n", f"    install: pip\n    time_limit: {seconds}\n"
    )
    return text.replace("  vhosts: [orders]\n", f"  vhosts: [orders]\n{broker_line}")


def conf(text: str) -> str:
    inv = validate_document(parse_yaml(Path("inventory.yml"), text))
    values = {k: SecretStr(v) for k, v in BASE_SECRETS.items()}
    arts = render_all(inv, Secrets(path=Path("/x/inventory.secrets.yml"), values=values))
    return next(a for a in arts if a.path.name == "rabbitmq.conf").content


def test_a_long_time_limit_raises_the_consumer_timeout() -> None:
    assert "consumer_timeout" not in conf(BASE_INVENTORY)
    assert "consumer_timeout" not in conf(limited(600))  # RabbitMQ's 30 min suffice
    assert "consumer_timeout = 7260000" in conf(limited(7200))
    assert "consumer_timeout = 9000000" in conf(limited(7200, "  consumer_timeout: 9000\n"))


def test_a_consumer_timeout_shorter_than_a_task_may_run_is_refused(
    write_inventory: WriteInventory,
) -> None:
    inventory = write_inventory(limited(3600, "  consumer_timeout: 600\n"))
    with pytest.raises(QsetupError) as caught:
        load_inventory(inventory)
    assert caught.value.lines() == [
        f"{inventory}:10:21: broker.consumer_timeout: 600 s is not longer than worker group "
        "'default''s time_limit of 3600 s: RabbitMQ would close the channel of a task still "
        "running (PRECONDITION_FAILED) and deliver it again; raise it above the longest "
        "time_limit, or leave it out and qsetup sets it from the time limits"
    ]
    ok = load_inventory(write_inventory(limited(3600, "  consumer_timeout: 4000\n")))
    assert consumer_timeout(ok.inventory) == 4000
