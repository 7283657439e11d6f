"""Ansible's strategies woken by their workers' results, not by a poll every few ms.

Ansible's main process loops while its workers run: the free strategy peeks at every
host's next task, then looks for results, then sleeps ``internal_poll_interval``; the
linear one looks for results and sleeps. At 0.01 s that loop cost a 20-host first
deploy 12.6 of ansible-playbook's CPU seconds (at 0.05 s 6.6, but every task then
starts up to 50 ms later). Here, when results are pending and none has come, the look
waits up to :data:`WAIT` seconds for one, and a result that comes wakes it at once: the
loop turns about 16 times a second while hosts work, and a result is handled as soon as
it comes. The same 20-host deploy: 7.6 CPU seconds. ``playbooks/strategy_plugins``
puts this in front of Ansible's own ``free`` and ``linear``.

It relies on one private detail of ansible-core's ``StrategyBase``: its results thread
appends each result to ``self._results`` (a deque). A unit test holds that.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

WAIT = 0.05
"""Seconds a look for results waits for one to come (a pass over the hosts follows)."""


class _Results(deque[Any]):
    """The strategy's results: an append (by Ansible's results thread) sets ``arrived``."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()

    def append(self, item: Any) -> None:
        super().append(item)
        self.arrived.set()


class Wakeful:
    """Mixed in before an Ansible strategy: results wake it, it does not poll."""

    _results: Any
    _pending_results: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._results = _Results()  # no task is queued yet: no result is lost

    def _process_pending_results(self, *args: Any, **kwargs: Any) -> Any:
        # Only a look that waits anyway (free's loop, _wait_on_pending_results) waits for
        # a result: linear also looks, with max_passes, after queueing each host's task,
        # and waiting there delayed the next host's task (a CI run 6 minutes longer).
        results = self._results
        waits = kwargs.get("max_passes") is None and len(args) < 3
        if isinstance(results, _Results):
            if waits and not results and self._pending_results > 0:
                results.arrived.wait(WAIT)
            results.arrived.clear()  # what came is handled below, with what comes meanwhile
        return super()._process_pending_results(*args, **kwargs)  # type: ignore[misc]
