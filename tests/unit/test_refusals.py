"""What stops a host before any change: the comparison's ``refuse`` differences, one list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_firewall import CLUSTER, _load, _targets
from unitdata import WriteInventory, as_deployed

from qsetup.artifacts.targets import secret_values
from qsetup.converge.compare import compare_host, host_clean, refusals
from qsetup.converge.facts import HostFacts


def _with_queues(read: dict[str, Any], queues: list[dict[str, Any]]) -> dict[str, Any]:
    return {**read, "definitions": {**read["definitions"], "queues": queues}}


def test_a_consumed_queue_of_the_other_type_refuses_the_node_that_manages_the_broker(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded = _load(write_inventory, CLUSTER)
    secrets, targets = secret_values(loaded), _targets(loaded, tmp_path)
    primary = targets["mq1"]
    assert primary.queue_type == "quorum"
    queue = primary.consumed_queues[0]
    deployed = as_deployed(primary, secrets)
    classic = {"vhost": queue.vhost, "name": queue.name, "arguments": {}}
    differences = compare_host(
        primary, HostFacts.from_read(_with_queues(deployed, [classic])), secrets
    )
    assert refusals(differences) == [
        f"queue '{queue.name}' (vhost '{queue.vhost}') is a classic queue but the inventory "
        "wants quorum queues, and RabbitMQ cannot change a queue's type: stop its producers "
        f"and the {', '.join(queue.groups)} workers, let it drain, delete it (rabbitmqctl "
        f"delete_queue -p {queue.vhost} {queue.name}), then deploy again; or set "
        "app.queue_type: classic"
    ]
    assert not host_clean(differences)  # the deploy takes the full path and stops there
    # The same queue as a quorum queue, or another vhost's queue of that name: no refusal.
    quorum = {**classic, "arguments": {"x-queue-type": "quorum"}}
    elsewhere = {**classic, "vhost": "other"}
    for queues in ([quorum], [elsewhere], []):
        facts = HostFacts.from_read(_with_queues(deployed, queues))
        assert refusals(compare_host(primary, facts, secrets)) == [], queues
    # The other nodes do not manage the broker's objects: their comparison has no queues.
    assert targets["mq2"].queue_type is None and targets["mq2"].consumed_queues == ()


def test_the_reads_problems_are_refusals_too(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    loaded = _load(write_inventory, CLUSTER)
    secrets, targets = secret_values(loaded), _targets(loaded, tmp_path)
    read = as_deployed(targets["mq2"], secrets)
    read["problems"] = ["Debian 11 (bullseye): qsetup supports Debian 12 and 13"]
    found = refusals(compare_host(targets["mq2"], HostFacts.from_read(read), secrets))
    assert found == [
        "Debian 11 (bullseye): qsetup supports Debian 12 and 13; deploy refuses this host"
    ]
