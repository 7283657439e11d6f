"""Strategy qsetup_linear: Ansible's linear strategy, woken by results (qsetup/remote/wake.py)."""

from __future__ import annotations

from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy

from qsetup.remote.wake import Wakeful


class StrategyModule(Wakeful, LinearStrategy):
    """Every host runs each task before any runs the next; the main process waits for results."""
