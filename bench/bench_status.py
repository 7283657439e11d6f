"""Benchmark of ``qsetup status``: prints figures, asserts nothing.

    sudo /var/cache/qsetup/venv/bin/python bench/bench_status.py [--deploy-all]

On its own sandbox (own state dir, subnet 10.213.12.0/24, bridge qsbrb, hosts
b01..b20 so no namespace name meets another sandbox's qs1..qsN):
1. deploys the 3-host demo layout on b01..b03 (broker + Flower, apt workers, pip workers);
2. times, for 3 and for 20 hosts, in the same run:
   - the floor: ``ssh host true`` on every host at once (OpenSSH, one process per host);
   - ``qsetup status --json`` as a user runs it (wall time, Python start included), and
     the check's own ``elapsed_seconds``.
   The 20-host inventory is the 3-host one plus a worker group on b04..b20. Without
   --deploy-all those 17 hosts are bare (reachable, nothing installed: status checks
   them fully and reports their units missing, exit 3); with it they are deployed too.
Targets: <= 2.5 s for the 3-host demo; 3 -> 20 hosts adds <= 1 s.
The sandbox is brought down at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from qsetup.sandbox.host import ssh_args

# -P: the qsetup installed in this interpreter, never the checkout in the working directory
# (imported from source there, and with PYTHONDONTWRITEBYTECODE compiled on every run).
QSETUP = [sys.executable, "-P", "-m", "qsetup"]
ENV = {
    "QSETUP_SANDBOX_DIR": "/var/lib/qsetup/sandbox-bench-status",
    "QSETUP_SANDBOX_SUBNET": "10.213.12.0/24",
    "QSETUP_SANDBOX_BRIDGE": "qsbrb",
}
NAMES = [f"b{i:02d}" for i in range(1, 21)]
ROUNDS = 5


def run(*args: str, timeout: float = 3600, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(
        [*QSETUP, *args],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode not in ok:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"qsetup {' '.join(args)} failed ({proc.returncode})")
    return proc.stdout


def ssh_floor(key: Path, addresses: list[str]) -> float:
    """Wall time of ``ssh host true`` on every host at once."""
    started = time.monotonic()
    procs = [subprocess.Popen([*ssh_args(key, a), "true"]) for a in addresses]
    codes = [p.wait(timeout=60) for p in procs]
    if any(codes):
        raise SystemExit(f"ssh floor: exit codes {codes}")
    return time.monotonic() - started


def timed_status(inventory: Path) -> tuple[float, float, dict[str, Any]]:
    started = time.monotonic()
    out = run("status", "--inventory", str(inventory), "--json", ok=(0, 3), timeout=120)
    wall = time.monotonic() - started
    data = json.loads(out)
    return wall, float(data["elapsed_seconds"]), data


def inventories(src: Path, workdir: Path) -> tuple[Path, Path]:
    data = yaml.safe_load(src.read_text())
    secrets = src.with_name(f"{src.stem}.secrets.yml")
    small = dict(data, hosts={n: data["hosts"][n] for n in NAMES[:3]})
    big = dict(data)
    big["workers"] = [
        *data["workers"],
        {
            "name": "more",
            "hosts": NAMES[3:],
            "install": "apt",
            "instances": 1,
            "queues": ["celery"],
            "concurrency": 2,
        },
    ]
    out = []
    for name, inv in (("three", small), ("twenty", big)):
        path = workdir / f"{name}.yml"
        path.write_text(yaml.safe_dump(inv, sort_keys=False))
        sec = workdir / f"{name}.secrets.yml"
        sec.write_bytes(secrets.read_bytes())
        sec.chmod(0o600)
        out.append(path)
    if not (workdir / "app").exists():  # sandbox up writes the sample app beside its inventory
        (workdir / "app").symlink_to(src.parent / "app")
    return out[0], out[1]


def main() -> None:
    deploy_all = "--deploy-all" in sys.argv
    workdir = Path(tempfile.mkdtemp(prefix="bench-status-"))
    try:
        print(f"sandbox up: {len(NAMES)} hosts ...", flush=True)
        started = time.monotonic()
        run("sandbox", "up", "--names", ",".join(NAMES), "--inventory-out",
            str(workdir / "sandbox.yml"))  # fmt: skip
        print(f"  {time.monotonic() - started:.0f} s", flush=True)
        three, twenty = inventories(workdir / "sandbox.yml", workdir)
        print("deploy: 3-host demo layout on b01..b03 ...", flush=True)
        started = time.monotonic()
        run("deploy", "--inventory", str(twenty if deploy_all else three), "--json")
        print(f"  {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(6)  # let the management API's statistics catch up with the new consumers
        key = Path(ENV["QSETUP_SANDBOX_DIR"]) / "id_ed25519"
        addresses = {
            n: str(yaml.safe_load(twenty.read_text())["hosts"][n]["address"]) for n in NAMES
        }
        timed_status(three)  # warm the page cache (first import of celery, requests, ...)
        rows = []
        for label, inv, hosts in (("3 hosts", three, NAMES[:3]), ("20 hosts", twenty, NAMES)):
            floors, walls, checks = [], [], []
            for _ in range(ROUNDS):
                floors.append(ssh_floor(key, [addresses[h] for h in hosts]))
                wall, check, data = timed_status(inv)
                walls.append(wall)
                checks.append(check)
            reachable = sum(1 for h in data["hosts"].values() if h["reachable"])
            rows.append((label, statistics.median(floors), statistics.median(walls),
                         statistics.median(checks), data["healthy"], reachable,
                         len(data["problems"])))  # fmt: skip
        print()
        print(f"median of {ROUNDS} rounds; 'status' is the CLI's wall time, 'check' its own")
        print(f"{'':9} {'ssh floor':>10} {'status':>8} {'check':>7}  healthy  reachable  problems")
        for label, floor, wall, check, healthy, reachable, problems in rows:
            print(f"{label:9} {floor:9.2f}s {wall:7.2f}s {check:6.2f}s  {healthy!s:7}  "
                  f"{reachable:9}  {problems:8}")  # fmt: skip
        print(f"3 -> 20 hosts adds {rows[1][2] - rows[0][2]:+.2f} s (status), "
              f"{rows[1][1] - rows[0][1]:+.2f} s (ssh floor)")  # fmt: skip
        if not deploy_all:
            print("(b04..b20 are bare: status checks them fully and reports their units missing)")
    finally:
        print("sandbox down ...", flush=True)
        run("sandbox", "down", timeout=600, ok=(0, 1))


if __name__ == "__main__":
    main()
