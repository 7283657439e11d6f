"""Progress of a deploy or restart that stays readable for many hosts.

On a terminal: a live table with one row per host (its counters, its last task and its
state), updated in place; only failures are printed above it. Elsewhere (CI logs, pipes):
one line per play saying how many hosts ran it and which changed something, and each
failure as it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rich.console import Console

from qsetup.remote.runner import DeployEvent
from qsetup.ui.report import DeployProgress, event_line

T = TypeVar("T")
MAX_NAMED = 8
"""Hosts named in a play's line before the rest are counted."""


class PlayDigest:
    """Non-terminal progress: a line per play, failures at once."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.play: str | None = None
        self.seen: set[str] = set()
        self.changed: dict[str, int] = {}

    def __call__(self, event: DeployEvent) -> None:
        """Fold one event in; a new play says how the previous one went."""
        if event.kind == "play":
            self.flush()
            self.play, self.seen, self.changed = event.task, set(), {}
            return
        if event.host:
            self.seen.add(event.host)
        if event.kind == "changed":
            self.changed[event.host] = self.changed.get(event.host, 0) + 1
        elif event.kind in ("failed", "unreachable"):
            line = event_line(event)
            if line:
                self.say(line)

    def flush(self) -> None:
        """Say how the play that just ended went (nothing before the first play)."""
        if self.play is None:
            return
        line = f"== {self.play}: {len(self.seen)} host(s)"
        if self.changed:
            names = sorted(self.changed)
            shown = ", ".join(f"{h} ({self.changed[h]})" for h in names[:MAX_NAMED])
            more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
            line += f", changed on {len(names)}: {shown}{more}"
        self.say(line)
        self.play = None


def run_with_progress(
    console: Console, hosts: list[str], run: Callable[[Callable[[DeployEvent], None]], T]
) -> T:
    """Run ``run(on_event)`` showing progress the way the console allows."""
    if console.is_terminal:
        from rich.live import Live

        board = DeployProgress(hosts)
        with Live(board.table(), console=console, refresh_per_second=4, transient=True) as live:

            def on_event(event: DeployEvent) -> None:
                board.update(event)
                live.update(board.table())
                if event.kind in ("failed", "unreachable"):
                    line = event_line(event)
                    if line:
                        live.console.print(line, markup=False)

            return run(on_event)
    digest = PlayDigest(lambda line: console.print(line, markup=False, highlight=False))
    try:
        return run(digest)
    finally:
        digest.flush()
