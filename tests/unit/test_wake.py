"""Ansible's strategies woken by results (qsetup/remote/wake.py, playbooks/strategy_plugins)."""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import Any

from qsetup.remote import wake

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


class _Base:
    """Stands in for Ansible's StrategyBase: a deque of results, a count pending."""

    def __init__(self) -> None:
        self._results: Any = []
        self._pending_results = 1

    def _process_pending_results(self, max_passes: int | None = None) -> list[Any]:
        out = list(self._results)
        self._results.clear()
        self._pending_results -= len(out)
        return out


class _Woken(wake.Wakeful, _Base):
    pass


def test_a_look_with_nothing_come_waits_then_a_result_wakes_it_at_once() -> None:
    strategy = _Woken()
    started = time.monotonic()
    assert strategy._process_pending_results() == []
    waited = time.monotonic() - started
    assert wake.WAIT * 0.8 <= waited < wake.WAIT + 0.5  # no result: it waited, once

    threading.Timer(0.01, strategy._results.append, args=("done",)).start()
    started = time.monotonic()
    assert strategy._process_pending_results() == ["done"]
    assert time.monotonic() - started < wake.WAIT  # woken by the result, not the timeout


def test_linears_look_between_queued_tasks_does_not_wait() -> None:
    """Linear looks for results (with max_passes) after queueing each host's task: a
    wait there would delay the next host's task."""
    strategy = _Woken()
    started = time.monotonic()
    strategy._process_pending_results(max_passes=1)
    assert time.monotonic() - started < wake.WAIT / 2


def test_nothing_pending_waits_for_nothing() -> None:
    strategy = _Woken()
    strategy._pending_results = 0
    started = time.monotonic()
    strategy._process_pending_results()
    assert time.monotonic() - started < wake.WAIT / 2


def test_ansibles_results_thread_appends_to_the_strategys_results() -> None:
    """The private detail wake.py relies on: the results thread calls
    ``strategy._results.append``, and StrategyBase made ``_results`` a deque."""
    from ansible.plugins.strategy import StrategyBase, results_thread_main

    assert "strategy._results.append(" in inspect.getsource(results_thread_main)
    assert "self._results: deque" in inspect.getsource(StrategyBase.__init__)


def test_the_strategy_plugins_are_ansibles_own_woken() -> None:
    from ansible.plugins.loader import init_plugin_loader, strategy_loader
    from ansible.plugins.strategy.free import StrategyModule as Free
    from ansible.plugins.strategy.linear import StrategyModule as Linear

    init_plugin_loader()
    strategy_loader.add_directory(str(PLAYBOOKS / "strategy_plugins"))
    for name, base in (("qsetup_free", Free), ("qsetup_linear", Linear)):
        cls = strategy_loader.get(name, class_only=True)
        assert issubclass(cls, wake.Wakeful) and issubclass(cls, base), name
