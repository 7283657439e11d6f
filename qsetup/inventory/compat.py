"""Combinations that validate field by field but break at runtime, refused up front.

Quorum queues with a Celery that cannot use them; a RabbitMQ ``consumer_timeout``
shorter than a task may run (RabbitMQ then closes the worker's channel with
PRECONDITION_FAILED and the task is delivered again, forever).
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet

from qsetup.inventory.fields import QUORUM_CELERY
from qsetup.inventory.model import Inventory, longest_time_limit, queue_type

Problems = list[tuple[tuple[str | int, ...], str]]


def compat_problems(inv: Inventory) -> Problems:
    """Every runtime incompatibility the inventory alone shows, as (field path, message)."""
    problems: Problems = []
    _quorum_celery(inv, problems)
    _consumer_timeout(inv, problems)
    return problems


def _consumer_timeout(inv: Inventory, problems: Problems) -> None:
    timeout = inv.broker.consumer_timeout
    longest = longest_time_limit(inv)
    if timeout is None or longest is None or timeout > longest[1]:
        return
    group, limit = longest
    problems.append(
        (
            ("broker", "consumer_timeout"),
            f"{timeout} s is not longer than worker group '{group}''s time_limit of {limit} s: "
            "RabbitMQ would close the channel of a task still running (PRECONDITION_FAILED) "
            "and deliver it again; raise it above the longest time_limit, or leave it out "
            "and qsetup sets it from the time limits",
        )
    )


def _quorum_celery(inv: Inventory, problems: Problems) -> None:
    """Quorum queues need Celery >= 5.5: a pip group's pin must allow such a release."""
    if queue_type(inv) != "quorum":
        return
    for i, group in enumerate(inv.workers):
        if group.celery_version is None:
            continue
        spec = SpecifierSet(group.celery_version)
        fits = (f"{major}.{minor}.{patch}" for major, minor in _LATER for patch in range(10))
        if not any(spec.contains(v) for v in fits):
            why = "the broker is a cluster" if inv.app.queue_type is None else "app.queue_type"
            problems.append(
                (
                    ("workers", i, "celery_version"),
                    f"'{group.celery_version}' allows no Celery >= {QUORUM_CELERY}, which quorum "
                    f"queues need ({why}); allow it, e.g. '>={QUORUM_CELERY},<6', or set "
                    "app.queue_type: classic",
                )
            )


_LATER = [(5, minor) for minor in range(5, 10)] + [(6, minor) for minor in range(3)]
"""Celery releases (major, minor) at or after the first one with quorum queues."""
