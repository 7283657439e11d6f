"""Turn results into rich tables and JSON (used only by cli.py)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from qsetup.remote.runner import DeployEvent, DeployResult
from qsetup.status.model import ResultsStatus, SystemStatus, TlsStatus, UnitStatus
from qsetup.ui.report_broker import add_broker_rows, broker_json


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
        "ansible_ran": result.ansible_ran,
        "differences": [
            {"host": d.host, "kind": d.kind, "object": d.obj, "detail": d.detail, "fix": d.fix}
            for d in result.differences
        ],
    }


def deploy_differences(result: DeployResult) -> Group:
    """What the read found before the run: one line per difference and what deploy does."""
    parts: list[Any] = [Text("what differs (the same comparison status makes):", style="bold")]
    for d in result.differences:
        action = "left alone" if not d.fixable else f"deploy: {d.fix}"
        parts.append(Text(f"{d.line} [{action}]", style="yellow" if d.fixable else "dim"))
    if not result.differences:
        parts.append(Text("nothing", style="green"))
    return Group(*parts)


def deploy_summary(result: DeployResult, what: str = "deploy") -> Group:
    """A per-host summary table, the failures, and one verdict line."""
    table = Table(title=f"{what} summary", title_justify="left")
    table.add_column("host")
    table.add_column("ok", justify="right")
    table.add_column("changed", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("state")

    # Failures first, then changes, then the rest: with many hosts what went wrong
    # is at the top.
    def rank(item: tuple[str, Any]) -> tuple[int, str]:
        h = item[1]
        return (0 if h.unreachable or h.failed else 1 if h.changed else 2, item[0])

    for name, h in sorted(result.hosts.items(), key=rank):
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
        # An unreachable host's line says so itself; which task met it is no help.
        if f.unreachable:
            line = f"{f.host}: {f.message}"
        elif not f.host:  # Ansible itself stopped, no host's task failed
            line = f"{f.task}: {f.message}"
        else:
            line = f"{f.host}: {f.task}: {f.message}"
        parts.append(Text(line, style="red"))
    if not result.ansible_ran:
        verdict = Text(
            f"{what}: nothing differs on any host (read in {result.elapsed:.1f} s); "
            "no change made, Ansible not started",
            style="green",
        )
        return Group(*[p for p in parts if p is not table], verdict)
    verdict = (
        Text(f"{what} ok in {result.elapsed:.1f} s", style="green")
        if result.ok
        else Text(
            f"{what} failed on {sum(1 for h in result.hosts.values() if h.failed or h.unreachable)}"
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
        for col in ("host", "ok", "changed", "failed", "state", "last task"):
            table.add_column(col, justify="right" if col in ("ok", "changed", "failed") else "left")
        for name, row in self.rows.items():
            state = (
                Text("failed", style="red")
                if row["failed"]
                else Text("changed", style="yellow")
                if row["changed"]
                else Text("running" if row["ok"] else "waiting", style="dim")
            )
            table.add_row(
                name,
                str(row["ok"]),
                str(row["changed"]),
                str(row["failed"]),
                state,
                str(row["task"])[:60],
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
        return f"  {event.host}: {event.message}"
    return None


# --- qsetup status -------------------------------------------------------------


def status_json(status: SystemStatus) -> dict[str, Any]:
    """The ``--json`` shape of a status check (documented in the README)."""
    broker = status.broker
    flower = status.flower
    return {
        "healthy": status.healthy,
        "problems": list(status.problems),
        "checked_at": status.checked_at,
        "elapsed_seconds": round(status.seconds, 2),
        "hosts": {
            h.name: {
                "reachable": h.reachable,
                "error": h.error,
                "address": h.address,
                "hostname": h.hostname,
                "roles": list(h.roles),
                "units": {
                    u.name: {
                        "role": u.role,
                        "ok": u.ok,
                        "load_state": u.load_state,
                        "active_state": u.active_state,
                        "sub_state": u.sub_state,
                        "since": u.since,
                        "restarts": u.restarts,
                    }
                    for u in h.units
                },
                "unexpected_units": [
                    {
                        "unit": u.name,
                        "load_state": u.load_state,
                        "active_state": u.active_state,
                        "sub_state": u.sub_state,
                        "unit_file_state": u.unit_file_state,
                        "since": u.since,
                    }
                    for u in h.unexpected_units
                ],
                "celery_versions": dict(h.celery_versions),
                "flower_version": h.flower_version,
                "rabbitmq_package": h.rabbitmq_version,
                "deprecated_features_used": list(h.deprecated_features),
                "results": None
                if h.results is None
                else {
                    "ok": h.results.ok,
                    "error": h.results.error,
                    "version": h.results.version,
                    "role": h.results.role,
                    "used_memory": h.results.used_memory,
                    "aof_enabled": h.results.aof_enabled,
                    "connected_clients": h.results.clients,
                },
            }
            for h in status.hosts
        },
        "broker": None if broker is None else broker_json(broker),
        "workers": {
            n.name: {
                "host": n.host,
                "group": n.group,
                "unit": n.unit,
                "vhost": n.vhost,
                "expected": n.expected,
                "answers_ping": n.answers_ping,
                "registered": list(n.registered),
                "active": n.active,
            }
            for n in status.workers
        },
        "flower": None
        if flower is None
        else {
            "host": flower.host,
            "url": flower.url,
            "ok": flower.ok,
            "without_credentials": flower.without_credentials,
            "with_credentials": flower.with_credentials,
            "error": flower.error,
        },
        "tls": tls_json(status.tls),
        "beat": None
        if status.beat is None
        else {
            "hosts": list(status.beat.hosts),
            "holder": status.beat.holder,
            "holders": list(status.beat.holders),
            "senders": list(status.beat.senders),
            "unread": list(status.beat.unread),
        },
    }


def tls_json(tls: TlsStatus | None) -> dict[str, Any] | None:
    """The ``tls`` object of ``status --json`` (None without TLS)."""
    if tls is None:
        return None
    return {
        "ca": tls.ca,
        "generated": tls.generated,
        "certificates": [
            {
                "host": c.host,
                "port": c.port,
                "service": c.service,
                "not_after": c.not_after,
                "days_left": c.days_left,
                "ok": c.ok,
                "error": c.error,
            }
            for c in tls.certificates
        ],
    }


def _add_tls_rows(table: Table, tls: TlsStatus) -> None:
    for c in tls.certificates:
        if c.error is not None:
            state = Text("does not verify", style="red")
        elif c.ok:
            state = Text("valid", style="green")
        else:
            state = Text("renew soon", style="red")
        detail = []
        if c.not_after is not None and c.days_left is not None:
            detail.append(f"expires {c.not_after[:10]} ({c.days_left} days)")
        if c.error is not None:
            detail.append(c.error)
        table.add_row("tls", c.host, f"{c.service} :{c.port}", state, "; ".join(detail))


def _unit_row(unit: UnitStatus) -> tuple[Text, str]:
    state = Text(f"{unit.active_state} ({unit.sub_state})", style="green" if unit.ok else "red")
    if unit.load_state == "not-found":
        state = Text("not installed", style="red")
    detail = []
    if unit.since:
        detail.append(f"since {unit.since.replace('T', ' ').replace('+00:00', ' UTC')}")
    if unit.restarts is not None:
        detail.append(f"{unit.restarts} restarts")
    return state, ", ".join(detail)


def _tls_summary(tls: TlsStatus | None) -> str:
    days = [c.days_left for c in tls.certificates if c.days_left is not None] if tls else []
    if not days:
        return ""
    return f", {len(days)} TLS certificates verified (first expiry in {min(days)} days)"


def _results_row(results: ResultsStatus) -> tuple[Text, str]:
    if results.error is not None:
        return Text("no answer", "red"), results.error
    detail = (
        f"redis {results.version} {results.role}, {results.used_memory} used, "
        f"AOF {'on' if results.aof_enabled else 'off'}, {results.clients} clients"
    )
    return Text("ok" if results.ok else "not persistent", "green" if results.ok else "red"), detail


def status_view(status: SystemStatus) -> Group:
    """A table grouped by role (hosts, broker, workers, beat, flower), problems, a verdict."""
    table = Table(title=f"qsetup status at {status.checked_at}", title_justify="left")
    table.add_column("role")
    table.add_column("host")
    table.add_column("what", overflow="fold")  # fold, not "...": names must stay whole
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    ok, bad = "green", "red"

    for h in status.hosts:
        if h.reachable:
            versions = [f"celery {v}" for _, v in h.celery_versions]
            if h.flower_version:
                versions.append(f"flower {h.flower_version}")
            if h.rabbitmq_version:
                versions.append(f"rabbitmq-server {h.rabbitmq_version}")
            detail = f"hostname {h.hostname}; " + (", ".join(versions) or "no versions")
            table.add_row("host", h.name, f"ssh {h.address}", Text("reachable", ok), detail)
            if h.deprecated_features:
                table.add_row(
                    "host",
                    h.name,
                    "RabbitMQ deprecated features in use",
                    Text("warning", "yellow"),
                    ", ".join(h.deprecated_features) + "; a later RabbitMQ may remove them",
                )
            for u in h.unexpected_units:
                now = f"{u.active_state} ({u.sub_state})"
                if u.load_state == "not-found":
                    now = f"not-found, {now}"
                if u.unit_file_state:
                    now += f", {u.unit_file_state}"
                table.add_row(
                    "host", h.name, u.name, Text("unexpected", bad), f"{now}; not in the inventory"
                )
        else:
            table.add_row(
                "host", h.name, f"ssh {h.address}", Text("unreachable", bad), h.error or ""
            )

    def units_of(role: str) -> None:
        for h in status.hosts:
            for unit in h.units:
                if unit.role == role:
                    state, detail = _unit_row(unit)
                    table.add_row(role, h.name, unit.name, state, detail)

    table.add_section()
    units_of("broker")
    broker = status.broker
    if broker is not None:
        add_broker_rows(table, broker)

    table.add_section()
    units_of("worker")
    for n in status.workers:
        if n.answers_ping:
            state = Text("answers ping" if n.expected else "unexpected", ok if n.expected else bad)
        else:
            state = Text("no answer", bad)
        active = "?" if n.active is None else str(n.active)
        table.add_row(
            "worker",
            n.host or "?",
            f"node {n.name}",
            state,
            f"{len(n.registered)} tasks registered, {active} active",
        )

    if any(u.role == "beat" for h in status.hosts for u in h.units):
        table.add_section()
        units_of("beat")
        if status.beat is not None:
            holder = status.beat.holder
            state = Text("held" if holder else "no single holder", ok if holder else bad)
            detail = f"holders: {', '.join(status.beat.holders) or 'none'}; "
            detail += f"sent lately: {', '.join(status.beat.senders) or 'none'}"
            table.add_row("beat", holder or "?", "lock redbeat::lock", state, detail)

    flower = status.flower
    if flower is not None:
        table.add_section()
        units_of("flower")
        if flower.error is not None:
            state, detail = Text("error", bad), flower.error
        else:
            state = Text("ok" if flower.ok else "wrong answers", ok if flower.ok else bad)
            detail = (
                f"HTTP {flower.without_credentials} without credentials, "
                f"{flower.with_credentials} with"
            )
        table.add_row("flower", flower.host, flower.url, state, detail)

    if any(u.role == "results" for h in status.hosts for u in h.units):
        table.add_section()
        units_of("results")
        for h in status.hosts:
            if h.results is not None:
                table.add_row("results", h.name, "result backend", *_results_row(h.results))

    if any(u.role == "firewall" for h in status.hosts for u in h.units):
        table.add_section()
        units_of("firewall")

    if status.tls is not None:
        table.add_section()
        _add_tls_rows(table, status.tls)

    parts: list[Any] = [table]
    for line in status.problems:
        parts.append(Text(line, style=bad))
    seconds = f"{status.seconds:.1f} s"
    if status.healthy:
        nodes = sum(1 for n in status.workers if n.answers_ping)
        parts.append(
            Text(
                f"healthy: {len(status.hosts)} hosts reachable, broker as inventoried, "
                f"{nodes} worker nodes answer"
                + (", Flower guarded" if flower is not None else "")
                + _tls_summary(status.tls)
                + f" ({seconds})",
                style=ok,
            )
        )
    else:
        hosts = sorted({p.split(":", 1)[0] for p in status.problems})
        parts.append(
            Text(
                f"degraded: {len(status.problems)} problem(s) on {', '.join(hosts)} ({seconds})",
                style=bad,
            )
        )
    return Group(*parts)
