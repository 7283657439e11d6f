"""Send a task through the deployed broker from this machine and wait for its result."""

from __future__ import annotations

import time
from dataclasses import dataclass

from qsetup.artifacts.client import client_config
from qsetup.desired.state import probe_transport_options
from qsetup.errors import QsetupError
from qsetup.inventory.loader import LoadedInventory


@dataclass(frozen=True)
class RoundTrip:
    """A task sent and its result."""

    task: str
    args: tuple[int, ...]
    result: object
    worker_host: str
    seconds: float


def send_task(
    loaded: LoadedInventory,
    task: str = "proj.tasks.add",
    args: tuple[int, ...] = (2, 3),
    timeout: float = 60.0,
) -> RoundTrip:
    """Send ``task(*args)`` through the broker as the app's user and wait for the result.

    Raises:
        QsetupError: when the task does not come back within the timeout.
    """
    from celery import Celery

    inv = loaded.inventory
    cfg = client_config(loaded)
    url = cfg.broker_url
    app = Celery("qsetup-probe")
    # Declare queues as the workers do (quorum queues with a cluster), publish with
    # confirms, and fail over once through every node of a cluster.
    app.conf.update(cfg.conf())
    app.conf.broker_connection_timeout = 10
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        **probe_transport_options(inv),
    }
    started = time.monotonic()
    try:
        result = app.send_task(task, args=args).get(timeout=timeout)
        where = (
            app.send_task("proj.tasks.where").get(timeout=timeout)
            if task.startswith("proj.")
            else ""
        )
    except Exception as exc:  # noqa: BLE001 - report any broker or timeout failure plainly
        # The URLs hold passwords; never echo the exception text when it contains one.
        text = cfg.hide(str(exc).replace(url, "amqp://***"))
        raise QsetupError(f"task {task} did not come back through the broker: {text}") from None
    finally:
        app.close()
    return RoundTrip(task, args, result, str(where), time.monotonic() - started)
