"""Turn results into rich tables and JSON (used only by cli.py)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from qsetup.deploy import DeployEvent, DeployResult


def deploy_json(result: DeployResult) -> dict[str, Any]:
    """The ``--json`` shape of a deploy result."""
    return {
        "ok": result.ok,
        "status": result.status,
        "elapsed_seconds": round(result.elapsed, 2),
        "run_dir": str(result.run_dir),
        "hosts": {
            name: {
                "ok": h.ok,
                "changed": h.changed,
                "failed": h.failed,
                "skipped": h.skipped,
                "unreachable": h.unreachable,
            }
            for name, h in result.hosts.items()
        },
        "failures": [
            {"host": f.host, "task": f.task, "message": f.message} for f in result.failures
        ],
    }


def deploy_summary(result: DeployResult) -> Group:
    """A per-host summary table, the failures, and one verdict line."""
    table = Table(title="deploy summary", title_justify="left")
    table.add_column("host")
    table.add_column("ok", justify="right")
    table.add_column("changed", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("state")
    for name, h in result.hosts.items():
        if h.unreachable:
            state = Text("unreachable", style="red")
        elif h.failed:
            state = Text("failed", style="red")
        elif h.changed:
            state = Text("changed", style="yellow")
        elif h.ok == 0:
            state = Text("not run", style="dim")
        else:
            state = Text("ok", style="green")
        table.add_row(name, str(h.ok), str(h.changed), str(h.failed), state)
    parts: list[Any] = [table]
    for f in result.failures:
        parts.append(Text(f"{f.host}: {f.task}: {f.message}", style="red"))
    verdict = (
        Text(f"deploy ok in {result.elapsed:.1f} s", style="green")
        if result.ok
        else Text(
            f"deploy failed on {sum(1 for h in result.hosts.values() if h.failed or h.unreachable)}"
            f" host(s) after {result.elapsed:.1f} s; full log in {result.run_dir}",
            style="red",
        )
    )
    parts.append(verdict)
    return Group(*parts)


class DeployProgress:
    """Live per-host progress: the current task and counters for every host."""

    def __init__(self, hosts: list[str]) -> None:
        self.rows: dict[str, dict[str, Any]] = {
            h: {"ok": 0, "changed": 0, "failed": 0, "task": "waiting"} for h in hosts
        }
        self.play = ""

    def update(self, event: DeployEvent) -> None:
        """Fold one event into the counters."""
        if event.kind == "play":
            self.play = event.task
            return
        row = self.rows.get(event.host)
        if row is None:
            return
        if event.kind in ("ok", "changed", "failed"):
            row[event.kind] += 1
            row["task"] = event.task
        elif event.kind == "unreachable":
            row["task"] = "unreachable"
            row["failed"] += 1

    def table(self) -> Table:
        """Render the current state."""
        table = Table(title=self.play or "starting", title_justify="left")
        for col in ("host", "ok", "changed", "failed", "last task"):
            table.add_column(col, justify="right" if col in ("ok", "changed", "failed") else "left")
        for name, row in self.rows.items():
            table.add_row(
                name, str(row["ok"]), str(row["changed"]), str(row["failed"]), str(row["task"])
            )
        return table


def event_line(event: DeployEvent) -> str | None:
    """A one-line log of an event worth printing when no live display is possible."""
    if event.kind == "play":
        return f"== {event.task}"
    if event.kind == "changed":
        return f"  changed  {event.host}: {event.task}"
    if event.kind == "failed":
        return f"  FAILED   {event.host}: {event.task}: {event.message}"
    if event.kind == "unreachable":
        return f"  UNREACHABLE {event.host}: {event.message}"
    return None
