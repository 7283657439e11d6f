"""Strategy qsetup_free: Ansible's free strategy, woken by results (qsetup/remote/wake.py)."""

from __future__ import annotations

from ansible.plugins.strategy.free import StrategyModule as FreeStrategy

from qsetup.remote.wake import Wakeful


class StrategyModule(Wakeful, FreeStrategy):
    """Each host runs its tasks as fast as it can; the main process waits for results."""
