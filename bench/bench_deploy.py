"""Benchmark of ``qsetup deploy``: prints figures, asserts nothing.

    sudo /var/cache/qsetup/venv/bin/python bench/bench_deploy.py

On 3 fresh sandbox hosts (its own sandbox: own state dir, subnet and bridge):
1. the floor: the bare package installs a deploy needs, on all 3 hosts in parallel
   (rabbitmq-server and a Flower virtualenv on the first, python-celery-common on the
   second, a Celery virtualenv on the third);
2. on 3 other fresh hosts: the first deploy and a no-op deploy, with wall time and the
   controller's peak memory (summed RSS of qsetup and every process it started);
3. the round-trip floor: `ssh host true` to the 3 hosts in parallel, beside the median of
   5 no-op deploys and of 5 `qsetup status` runs, all in the same run.
Targets: first deploy <= 1.3 x floor; no-op deploy <= 10 x and status <= 3 x the ssh floor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# -P: the qsetup installed in this interpreter, never the checkout in the working directory
# (imported from source there, and with PYTHONDONTWRITEBYTECODE compiled on every run).
QSETUP = [sys.executable, "-P", "-m", "qsetup"]
ENV_BASE = {
    "QSETUP_SANDBOX_SUBNET": "10.213.11.0/24",
    "QSETUP_SANDBOX_BRIDGE": "qsbrd",
}
FLOOR = {
    "qs1": "apt-get install -y -q rabbitmq-server python3-requests python3-venv "
    "python3-packaging >/dev/null && python3 -m venv /tmp/f && /tmp/f/bin/pip install -q flower",
    "qs2": "apt-get install -y -q python-celery-common >/dev/null",
    "qs3": "apt-get install -y -q python3-venv python3-packaging >/dev/null && "
    "python3 -m venv /tmp/c && /tmp/c/bin/pip install -q celery",
}


def run(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*QSETUP, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"qsetup {' '.join(args)} failed ({proc.returncode})")
    return proc


def tree_rss_kib(root: int) -> int:
    """Summed RSS of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry.name))
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(entry.name)] = int(line.split()[1])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def timed_deploy(env: dict[str, str], inventory: Path) -> tuple[float, float, dict[str, object]]:
    """Run a deploy; return wall seconds, peak controller MiB and the JSON result."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [*QSETUP, "deploy", "--inventory", str(inventory), "--json"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(proc.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate(timeout=1800)
    stop.set()
    sampler.join()
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit(f"deploy failed ({proc.returncode})")
    return took, peak / 1024, json.loads(out)


def floor(env: dict[str, str]) -> float:
    """Bare package installs on the 3 hosts in parallel (apt-get update included)."""
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [*QSETUP, "sandbox", "ssh", host, "--", f"apt-get update -q >/dev/null && {cmd}"],
            env={**os.environ, **env},
        )
        for host, cmd in FLOOR.items()
    ]
    codes = [p.wait(timeout=1800) for p in procs]
    if any(codes):
        raise SystemExit(f"floor installs failed: {codes}")
    return time.monotonic() - start


def ssh_floor(env: dict[str, str], inventory: Path) -> float:
    """`ssh host true` to every host in parallel, as the deploy's key and options reach them."""
    from qsetup.inventory.loader import load_inventory
    from qsetup.sandbox.host import ssh_args

    loaded = load_inventory(inventory)
    key = Path(str(loaded.inventory.ssh.key))
    start = time.monotonic()
    procs = [
        subprocess.Popen([*ssh_args(key, h.address), "true"])
        for h in loaded.inventory.hosts.values()
    ]
    if any(p.wait(timeout=60) for p in procs):
        raise SystemExit("ssh floor failed")
    return time.monotonic() - start


def timed_status(env: dict[str, str], inventory: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        [*QSETUP, "status", "--inventory", str(inventory), "--json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"status not healthy ({proc.returncode}): {proc.stdout[-2000:]}")
    return time.monotonic() - start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="qsetup-bench-") as tmp:
        work = Path(tmp)
        env = {**ENV_BASE, "QSETUP_SANDBOX_DIR": str(work / "state")}
        inventory = work / "demo" / "inventory.yml"
        try:
            run(env, "sandbox", "up", "--hosts", "3")
            floor_s = floor(env)
            run(env, "sandbox", "down")
            run(env, "sandbox", "up", "--hosts", "3", "--inventory-out", str(inventory))
            first_s, first_mib, first = timed_deploy(env, inventory)
            noop_s, noop_mib, noop = timed_deploy(env, inventory)
            floors, noops, statuses = [], [], []
            for _ in range(5):
                floors.append(ssh_floor(env, inventory))
                noops.append(timed_deploy(env, inventory)[0])
                statuses.append(timed_status(env, inventory))
        finally:
            run(env, "sandbox", "down")
    changed = {h: v["changed"] for h, v in noop["hosts"].items()}  # type: ignore[union-attr]
    print(f"floor: bare package installs, 3 hosts in parallel   {floor_s:6.1f} s")
    print(
        f"first deploy                                       {first_s:6.1f} s"
        f"   ({first_s / floor_s:.2f} x floor; target <= 1.3)   peak controller {first_mib:.0f} MiB"
    )
    print(
        f"no-op deploy                                       {noop_s:6.1f} s"
        f"   (target <= 10 s)   peak controller {noop_mib:.0f} MiB   changed {changed}"
    )
    ssh_s, noop_med, status_med = median(floors), median(noops), median(statuses)
    print(f"ssh floor: `ssh host true`, 3 hosts in parallel    {ssh_s:6.2f} s   (median of 5)")
    print(
        f"no-op deploy, median of 5                          {noop_med:6.2f} s"
        f"   ({noop_med / ssh_s:.1f} x ssh floor; target <= 10)"
    )
    print(
        f"status, median of 5                                {status_med:6.2f} s"
        f"   ({status_med / ssh_s:.1f} x ssh floor; target <= 3)"
    )
    print(f"first deploy ok: {first['ok']}")


if __name__ == "__main__":
    main()
