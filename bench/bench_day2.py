"""Benchmark of day-2 operations: prints figures, asserts nothing.

    sudo /var/cache/qsetup/venv/bin/python bench/bench_day2.py [--repeat N]

On 3 fresh sandbox hosts of its own (db1 broker and Flower, db2 apt workers, db3 pip
workers; own state dir, subnet and bridge), after a first deploy:
1. the noise floor: the longest gap between task completions of a steady stream
   (``proj.tasks.where`` at 10 per second) with nothing going on;
2. ``qsetup restart --role workers`` (rolling over the 2 worker hosts) under the same
   stream: wall time, the longest gap between completions (any worker), each host's
   own pause (its last completion before its restart to its first after), and
   whether any task was lost;
3. a no-op deploy against a deploy after a code change (a comment in the app's code),
   which restarts the workers one host at a time.
The sandbox is always brought down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -P: the qsetup installed in this interpreter, never the checkout in the working directory
# (imported from source there, and with PYTHONDONTWRITEBYTECODE compiled on every run).
QSETUP = [sys.executable, "-P", "-m", "qsetup"]
ENV = {
    "QSETUP_SANDBOX_DIR": "/var/lib/qsetup/sandbox-bench-day2",
    "QSETUP_SANDBOX_SUBNET": "10.213.15.0/24",
    "QSETUP_SANDBOX_BRIDGE": "qsbrd3",
}
NAMES = "db1,db2,db3"
RATE = 10.0


def run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*QSETUP, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"qsetup {' '.join(args)} failed ({proc.returncode})")
    return proc


def timed(*args: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    proc = run(*args, "--json")
    return time.monotonic() - started, json.loads(proc.stdout)


@contextmanager
def celery_client(inventory: Path) -> Iterator[Any]:
    from celery import Celery

    from qsetup.artifacts.render import broker_url
    from qsetup.inventory.loader import load_inventory

    loaded = load_inventory(inventory)
    inv = loaded.inventory
    url = broker_url(inv, loaded.secrets, inv.app.broker_user, inv.app.vhost)
    capp = Celery("bench-day2", broker=url, backend=inv.app.result_backend)
    capp.conf.broker_connection_timeout = 10
    try:
        yield capp
    finally:
        capp.close()


@dataclass
class Completion:
    sent: float  # wall clock
    done: float | None  # wall clock (the worker's log line), None when lost
    host: str | None


def worker_log(inventory: Path, since: float) -> dict[str, tuple[str, float]]:
    """task id -> (host, when) for every ``where`` the workers logged as succeeded.

    The workers' logs are the clock: rpc results from the apt group's Celery carry no
    ``date_done``; the sandbox hosts share this machine's clock.
    """
    from qsetup.inventory.loader import load_inventory

    inv = load_inventory(inventory).inventory
    seen: dict[str, tuple[str, float]] = {}
    for host in sorted({h for g in inv.workers for h in g.hosts}):
        out = subprocess.run(
            ["ssh", "-i", str(inv.ssh.key), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             f"root@{inv.hosts[host].address}",
             f"journalctl -u 'qsetup-worker-*' --since=@{int(since) - 1} --no-pager "
             "-o short-unix --grep='proj.tasks.where.*succeeded'"],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout  # fmt: skip
        for line in out.splitlines():
            if "proj.tasks.where[" in line:
                task_id = line.split("proj.tasks.where[", 1)[1].split("]", 1)[0]
                seen[task_id] = (host, float(line.split()[0]))
    return seen


def stream(
    capp: Any, inventory: Path, until: subprocess.Popen[str] | float
) -> tuple[list[Completion], float]:
    """Send ``where`` at RATE/s until the process exits (2 s before and after) or for
    ``until`` seconds; return each task's completion and the longest pause in sending."""
    pending: list[tuple[Any, float]] = []
    period = 1.0 / RATE
    start = time.monotonic()
    next_at = start
    end_at = start + until if isinstance(until, float) else None
    last_sent = start
    send_gap = 0.0
    while end_at is None or time.monotonic() < end_at:
        if end_at is None and isinstance(until, subprocess.Popen) and until.poll() is not None:
            end_at = time.monotonic() + 2
        pending.append((capp.send_task("proj.tasks.where"), time.time()))
        now = time.monotonic()
        send_gap, last_sent = max(send_gap, now - last_sent), now
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    out = []
    for res, sent in pending:
        try:
            res.get(timeout=120)
        except Exception:  # noqa: BLE001 - a lost task
            out.append(Completion(sent, None, None))
        else:
            out.append(Completion(sent, 0.0, None))
    logged = worker_log(inventory, pending[0][1])
    for c, (res, _) in zip(out, pending, strict=True):
        if c.done is not None and res.id in logged:
            c.host, c.done = logged[res.id]
    return out, send_gap


def gaps(done: list[Completion]) -> tuple[float, float]:
    """(longest gap between consecutive completions, when it started)."""
    times = sorted(c.done for c in done if c.done is not None)
    best, at = 0.0, 0.0
    for a, b in zip(times, times[1:], strict=False):
        if b - a > best:
            best, at = b - a, a
    return best, at


def host_pauses(done: list[Completion]) -> dict[str, float]:
    """Each host's longest pause between two of its own completions."""
    by_host: dict[str, list[float]] = {}
    for c in done:
        if c.host and c.done is not None:
            by_host.setdefault(c.host, []).append(c.done)
    return {
        h: max((b - a for a, b in zip(sorted(t), sorted(t)[1:], strict=False)), default=0.0)
        for h, t in sorted(by_host.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    os.environ.update(ENV)
    work = Path(tempfile.mkdtemp(prefix="qsetup-bench-day2-"))
    inventory = work / "inventory.yml"
    try:
        run("sandbox", "up", "--names", NAMES, "--inventory-out", str(inventory), timeout=900)
        seconds, _ = timed("deploy", "--inventory", str(inventory))
        print(f"first deploy on 3 fresh hosts: {seconds:.1f} s")

        with celery_client(inventory) as capp:
            idle, _ = stream(capp, inventory, 10.0)
            print(f"noise floor (10 s stream, nothing happening): longest gap "
                  f"{gaps(idle)[0]:.2f} s, per host {fmt(host_pauses(idle))}")  # fmt: skip
            for n in range(args.repeat):
                started = time.monotonic()
                proc = subprocess.Popen(
                    [*QSETUP, "restart", "--inventory", str(inventory), "--role", "workers"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                done, send_gap = stream(capp, inventory, proc)
                wall = time.monotonic() - started
                err = proc.communicate()[1]
                lost = sum(c.done is None for c in done)
                gap, at = gaps(done)
                print(
                    f"rolling restart of the workers on 2 hosts #{n + 1}: exit {proc.returncode}, "
                    f"{wall - 2:.1f} s wall (restart process {wall:.1f} s incl. 2 s tail); "
                    f"{len(done)} tasks, {lost} lost; longest gap in consumption {gap:.2f} s "
                    f"(at +{at - done[0].sent:.1f} s); longest client send pause "
                    f"{send_gap:.2f} s; each host's own pause {fmt(host_pauses(done))}"
                )
                if proc.returncode != 0:
                    print(err[-2000:])

        for n in range(args.repeat):
            seconds, data = timed("deploy", "--inventory", str(inventory))
            changed = {h: v["changed"] for h, v in data["hosts"].items()}
            print(f"no-op deploy #{n + 1}: {seconds:.1f} s, changed {changed}")
        tasks = work / "app" / "proj" / "tasks.py"
        for n in range(args.repeat):
            tasks.write_text(tasks.read_text() + f"\n# bench change {n}\n")
            seconds, data = timed("deploy", "--inventory", str(inventory))
            changed = {h: v["changed"] for h, v in data["hosts"].items()}
            print(f"code-change deploy #{n + 1} (rolling worker restart): {seconds:.1f} s, "
                  f"changed {changed}")  # fmt: skip
    finally:
        subprocess.run([*QSETUP, "sandbox", "down"], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in values.items())


if __name__ == "__main__":
    main()
