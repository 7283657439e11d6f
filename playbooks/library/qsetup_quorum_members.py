#!/usr/bin/python
"""Ansible module: give every quorum queue a member on every node, and wait until all are online.

A node that joins the cluster (a new node, or a rebuilt one whose old incarnation was
forgotten) is a member of no quorum queue; ``rabbitmq-queues grow <node> all`` adds it,
and the new members start on their own afterwards. A deploy that ended there handed
over a cluster whose ``status`` still said "quorum member offline" for a while, and
queues declared between a run of ``grow`` and the next read had no member on the node
at all. This module reads every vhost's quorum queues with ``rabbitmqctl list_queues``,
runs ``grow`` for every node some queue lacks, and answers only when every queue lists
every expected node as a member and online, or fails after ``timeout`` seconds with a
line naming a queue and the node it lacks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_quorum_members
short_description: Grow quorum queues onto every node and wait until every member is online
options:
  nodes:
    description: The RabbitMQ nodes (rabbit@host) every quorum queue must have as members.
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait for every member to be online before failing.
    type: int
    default: 120
"""

Run = Callable[[list[str]], tuple[int, str, str]]


def parse_json_list(text: str) -> list[dict[str, Any]]:
    """The JSON array in a ``rabbitmqctl --formatter json`` answer (banner lines skipped)."""
    start = text.find("[")
    if start < 0:
        return []
    try:
        data, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _nodes(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


def queue_gaps(
    queues: Iterable[tuple[str, dict[str, Any]]], nodes: list[str]
) -> list[dict[str, Any]]:
    """Quorum queues that lack a member on an expected node, or whose member there is offline.

    ``queues`` holds (vhost, row of ``list_queues name type members online``). Members on
    nodes outside ``nodes`` are not this check's business (the cluster play forgets
    dropped nodes, which takes them out of every queue).
    """
    gaps = []
    for vhost, q in queues:
        if q.get("type") != "quorum":
            continue
        members, online = _nodes(q.get("members")), _nodes(q.get("online"))
        missing = [n for n in nodes if n not in members]
        offline = [n for n in nodes if n in members and n not in online]
        if missing or offline:
            gaps.append(
                {"vhost": vhost, "name": str(q.get("name")), "missing": missing, "offline": offline}
            )
    return gaps


def describe(
    gaps: list[dict[str, Any]], waited: int, grow_errors: dict[str, str] | None = None
) -> str:
    """One line: the first queue's gap and how many more queues have one.

    When the last ``grow`` for a node the queue lacks failed, its error (``grow_errors``:
    node -> text) is part of the line.
    """
    first = gaps[0]
    where = f"quorum queue '{first['name']}' (vhost '{first['vhost']}')"
    if first["missing"]:
        what = f"{where} has no member on {', '.join(first['missing'])} after rabbitmq-queues grow"
    else:
        what = f"{where}: member {', '.join(first['offline'])} still offline"
    more = f" (and {len(gaps) - 1} more queues)" if len(gaps) > 1 else ""
    errors = grow_errors or {}
    said = "".join(
        f"; rabbitmq-queues grow {node} all failed: {errors[node]}"
        for node in first["missing"]
        if errors.get(node)
    )
    return (
        f"{what}{more} after {waited} s{said}; see journalctl -u rabbitmq-server on that node "
        "and rabbitmq-queues quorum_status, then deploy again"
    )


def _last_line(*texts: str) -> str:
    lines = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def read_queues(run: Run) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """Every vhost's queues with their members, or an error text."""
    rc, out, err = run(["rabbitmqctl", "list_vhosts", "--quiet", "--formatter", "json", "name"])
    if rc != 0:
        return [], f"rabbitmqctl list_vhosts failed: {(err or out).strip()}"
    found: list[tuple[str, dict[str, Any]]] = []
    for vhost in (str(v.get("name")) for v in parse_json_list(out)):
        argv = ["rabbitmqctl", "list_queues", "--quiet", "-p", vhost, "--formatter", "json"]
        rc, out, err = run([*argv, "name", "type", "members", "online"])
        if rc != 0:
            return [], f"rabbitmqctl list_queues -p {vhost} failed: {(err or out).strip()}"
        found.extend((vhost, q) for q in parse_json_list(out))
    return found, ""


def converge(
    run: Run,
    nodes: list[str],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Grow and wait; the module's result (``failed`` and ``msg`` when it gave up)."""
    start = clock()
    grown: list[str] = []
    grow_errors: dict[str, str] = {}
    while True:
        queues, error = read_queues(run)
        gaps = queue_gaps(queues, nodes) if not error else []
        if not error and not gaps:
            return {
                "changed": bool(grown),
                "grown": grown,
                "quorum_queues": len([q for _v, q in queues if q.get("type") == "quorum"]),
            }
        waited = clock() - start
        if waited >= timeout:
            msg = error or describe(gaps, int(waited), grow_errors)
            return {"failed": True, "changed": bool(grown), "grown": grown, "msg": msg}
        for node in sorted({n for g in gaps for n in g["missing"]}):
            rc, out, err = run(["rabbitmq-queues", "grow", node, "all"])
            if rc != 0:
                grow_errors[node] = f"exit {rc}: {_last_line(out, err)}"
                continue
            grow_errors.pop(node, None)
            if node not in grown:
                grown.append(node)
        sleep(2)


def main() -> None:
    """Grow quorum queues onto the given nodes and wait for every member to be online."""
    module = AnsibleModule(
        argument_spec={
            "nodes": {"type": "list", "elements": "str", "required": True},
            "timeout": {"type": "int", "default": 120},
        },
    )
    result = converge(module.run_command, list(module.params["nodes"]), module.params["timeout"])
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
