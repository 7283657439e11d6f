"""`qsetup demo`: sandbox hosts, an inventory, a deploy and one task through the broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qsetup.inventory.loader import load_inventory
from qsetup.ops.deploy import DeployOptions, run_deploy
from qsetup.remote.roundtrip import RoundTrip, send_task
from qsetup.remote.runner import DeployEvent, DeployResult

DEMO_HOSTS = 3


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: where its files are, the deploy, and the task's round trip."""

    inventory: Path
    deploy: DeployResult
    roundtrip: RoundTrip | None


def run_demo(
    workdir: Path,
    say: Callable[[str], None],
    on_event: Callable[[DeployEvent], None] | None = None,
) -> DemoResult:
    """Boot 3 sandbox hosts, write ``workdir/inventory.yml``, deploy, send a task."""
    from qsetup import sandbox

    workdir.mkdir(parents=True, exist_ok=True)
    inventory = workdir / "inventory.yml"
    say(f"starting {DEMO_HOSTS} sandbox hosts (the first run builds a Debian tree)")
    sandbox.up(DEMO_HOSTS, None, sandbox.DEFAULT_RELEASE, inventory, progress=say)
    loaded = load_inventory(inventory)
    say(f"deploying {inventory} (RabbitMQ, workers apt+pip, Flower)")
    result = run_deploy(loaded, DeployOptions(), on_event)
    if not result.ok:
        return DemoResult(inventory, result, None)
    say("sending proj.tasks.add(2, 3) through the deployed broker")
    trip = send_task(loaded)
    return DemoResult(inventory, result, trip)


def stop_demo(say: Callable[[str], None]) -> None:
    """Remove the sandbox hosts (the inventory in the demo directory is kept)."""
    from qsetup import sandbox

    sandbox.down(progress=say)
