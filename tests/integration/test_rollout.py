"""A code rollout under load on real sandbox hosts: no task lost, none run twice, no gap.

The module deploys its own copy of the shared sandbox inventory and app (whose code it
changes); the hosts stay up and deployed with that copy.
"""

from __future__ import annotations

import json
import secrets as pyrandom
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import (
    SandboxHosts,
    Site,
    celery_client,
    changed_by_host,
    deployed_site,
    edit_app_code,
)

pytestmark = pytest.mark.integration

DEPLOY_TIMEOUT = 900


@pytest.fixture(scope="module")
def site(sandbox_hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return deployed_site(sandbox_hosts, Path(tmp_path_factory.mktemp("rollout")))


@dataclass
class Stream:
    """Tasks sent at a steady rate while something else runs."""

    sent: list[tuple[int, Any, float]]  # (i, AsyncResult, monotonic time sent)
    where: list[tuple[Any, float]]
    started_wall: float


def stream_tasks_during(capp: Any, proc: subprocess.Popen[str], rate: float = 10.0) -> Stream:
    """Send ``add(i, 0)`` at ``rate`` per second (and ``where`` every second) until
    ``proc`` exits, plus 2 s before and after."""
    stream = Stream([], [], time.time())
    period = 1.0 / rate
    next_at = time.monotonic()
    end_at: float | None = None
    lead_until = time.monotonic() + 2
    i = 0
    while end_at is None or time.monotonic() < end_at:
        if end_at is None and proc.poll() is not None and time.monotonic() > lead_until:
            end_at = time.monotonic() + 2
        stream.sent.append((i, capp.send_task("proj.tasks.add", (i, 0)), time.monotonic()))
        if i % int(rate) == 0:
            stream.where.append((capp.send_task("proj.tasks.where"), time.monotonic()))
        i += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
        assert i < 60_000, "the deploy never ended"
    return stream


def succeeded_tasks(site: Site, since: float) -> list[tuple[str, str, float]]:
    """(host, task id, when) of every ``add`` a worker logged as succeeded since ``since``.

    The workers' own log is the clock: rpc results from the apt group's Celery carry no
    ``date_done``, and the hosts share this machine's clock.
    """
    seen: list[tuple[str, str, float]] = []
    for host in sorted({h for _, h, _ in site.worker_units()}):
        out = site.ssh(
            host,
            f"journalctl -u 'qsetup-worker-*' --since=@{int(since) - 1} --no-pager "
            "-o short-unix --grep='proj.tasks.add.*succeeded'",
            timeout=120,
        ).stdout
        for line in out.splitlines():
            if "proj.tasks.add[" in line and "succeeded" in line:
                task_id = line.split("proj.tasks.add[", 1)[1].split("]", 1)[0]
                seen.append((host, task_id, float(line.split()[0])))
    return seen


def test_code_rollout_under_load_loses_no_task(site: Site) -> None:
    inv = site.loaded().inventory
    assert inv.flower is not None
    edit_app_code(site, f"rollout {pyrandom.token_hex(4)}")
    before = site.main_pids()
    flower_unit = "qsetup-flower.service"
    flower_pid = site.unit(inv.flower.host, flower_unit)["MainPID"]
    broker_pid = site.unit(inv.broker.host, "rabbitmq-server.service")["MainPID"]
    with celery_client(site.loaded()) as capp:
        deploy = site.popen("deploy", "--json")
        t0 = time.monotonic()
        stream = stream_tasks_during(capp, deploy)
        out, err = deploy.communicate(timeout=DEPLOY_TIMEOUT)
        deploy_seconds = time.monotonic() - t0
        assert deploy.returncode == 0, (out, err)
        missing: list[int] = []
        wrong: list[tuple[int, Any]] = []
        for i, res, _ in stream.sent:
            try:
                value = res.get(timeout=120 if not missing else 5)
            except Exception:  # noqa: BLE001 - a timeout means the task was lost
                missing.append(i)
                continue
            if value != i:
                wrong.append((i, value))
        consumers = Counter(str(r.get(timeout=60)) for r, _ in stream.where)
    data = json.loads(out)
    assert missing == [] and wrong == [], (len(stream.sent), missing[:20], wrong[:20])
    done = succeeded_tasks(site, stream.started_wall)
    counts = Counter(task_id for _, task_id, _ in done)
    ids = [res.id for _, res, _ in stream.sent]
    twice = [t for t in ids if counts[t] != 1]
    assert twice == [], (
        f"{len(twice)} tasks did not run exactly once, e.g. "
        f"{[(t, counts[t], [h for h, d, _ in done if d == t]) for t in twice[:5]]}"
    )
    # Only the workers were restarted, each of them.
    after = site.main_pids()
    assert all(before[u] != after[u] for u in before), (before, after)
    assert site.unit(inv.flower.host, flower_unit)["MainPID"] == flower_pid
    assert site.unit(inv.broker.host, "rabbitmq-server.service")["MainPID"] == broker_pid
    # Someone consumed throughout: no long hole between completions.
    ours = set(ids)
    done_at = sorted(t for _, task_id, t in done if task_id in ours)
    longest = max(b - a for a, b in zip(done_at, done_at[1:], strict=False))
    by_host = Counter(h for h, task_id, _ in done if task_id in ours)
    assert len(by_host) >= 2, by_host
    assert longest < 2.5, f"consumption stopped for {longest:.1f} s during a rolling rollout"
    print(
        f"rollout: {len(stream.sent)} tasks over {deploy_seconds:.1f} s deploy, none lost; "
        f"longest gap between completions {longest:.2f} s; by host {dict(by_host)}; "
        f"where: {dict(consumers)}; "
        f"changed {changed_by_host(data)}"
    )
