"""Benchmark of ``qsetup sandbox``: prints figures, asserts nothing.

    sudo /var/cache/qsetup/venv/bin/python bench/bench_sandbox.py [--skip-cold] [--big N]

Figures: cold ``up`` of 3 hosts (debootstrap into an empty cache), warm ``up`` of 3
hosts, memory per idle host, ``down``, warm ``up`` and ``down`` of 20 hosts.
It runs its own sandbox (own state dir, subnet and bridge) so a sandbox that is
already up is not touched, and always brings it down at the end.
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
from pathlib import Path

# -P: the qsetup installed in this interpreter, never the checkout in the working directory
# (imported from source there, and with PYTHONDONTWRITEBYTECODE compiled on every run).
QSETUP = [sys.executable, "-P", "-m", "qsetup"]
TARGETS = {"warm up (3 hosts)": 15.0, "down (3 hosts)": 15.0}


def qsetup(env: dict[str, str], *args: str, timeout: float = 1200) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        [*QSETUP, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"qsetup {' '.join(args)} failed ({proc.returncode})")
    return took


def pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def host_memory_mib(env: dict[str, str]) -> list[float]:
    """PSS of all processes in each host's namespace (the container's whole userland)."""
    state = json.loads((Path(env["QSETUP_SANDBOX_DIR"]) / "state.json").read_text())
    per_host = []
    for h in state["hosts"]:
        out = subprocess.run(
            ["ip", "netns", "pids", h["netns"]],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
        per_host.append(sum(pss_kib(int(p)) for p in out.split()) / 1024)
    return per_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold (debootstrap) up")
    parser.add_argument("--big", type=int, default=20, help="hosts for the large warm up")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")

    work = Path(tempfile.mkdtemp(prefix="qsetup-bench-"))
    env = {
        "QSETUP_SANDBOX_DIR": str(work / "state"),
        "QSETUP_SANDBOX_SUBNET": "10.213.10.0/24",
        "QSETUP_SANDBOX_BRIDGE": "qsbrb",
    }
    figures: list[tuple[str, str]] = []
    try:
        if not opts.skip_cold:
            cold_env = {**env, "QSETUP_CACHE_DIR": str(work / "cache")}
            took = qsetup(cold_env, "sandbox", "up", "--hosts", "3")
            figures.append(("cold up (3 hosts, empty cache, debootstrap)", f"{took:.1f} s"))
            qsetup(cold_env, "sandbox", "down")
            shutil.rmtree(work / "cache")
        # Make sure the default cache exists so the next up is warm.
        qsetup(env, "sandbox", "up", "--hosts", "1")
        qsetup(env, "sandbox", "down")

        took = qsetup(env, "sandbox", "up", "--hosts", "3")
        figures.append(("warm up (3 hosts)", f"{took:.1f} s"))
        took = qsetup(env, "sandbox", "up", "--hosts", "3")
        figures.append(("up when already up (3 hosts)", f"{took:.1f} s"))
        time.sleep(15)  # let boot-time jobs settle: idle means idle
        mem = host_memory_mib(env)
        figures.append(
            ("memory per idle host (PSS of its processes)",
             f"{sum(mem) / len(mem):.1f} MiB avg ({', '.join(f'{m:.1f}' for m in mem)})")
        )  # fmt: skip
        took = qsetup(env, "sandbox", "down")
        figures.append(("down (3 hosts)", f"{took:.1f} s"))

        took = qsetup(env, "sandbox", "up", "--hosts", str(opts.big))
        figures.append((f"warm up ({opts.big} hosts)", f"{took:.1f} s"))
        time.sleep(10)
        mem = host_memory_mib(env)
        figures.append(
            (f"memory per idle host ({opts.big} hosts)", f"{sum(mem) / len(mem):.1f} MiB avg")
        )
        took = qsetup(env, "sandbox", "down")
        figures.append((f"down ({opts.big} hosts)", f"{took:.1f} s"))
    finally:
        final = subprocess.run(
            [*QSETUP, "sandbox", "down"], env={**os.environ, **env},
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        if final.returncode == 0:  # never delete through a mount that is still there
            shutil.rmtree(work, ignore_errors=True)

    print(f"qsetup sandbox benchmark ({os.cpu_count()} CPUs)")
    for name, value in figures:
        target = TARGETS.get(name)
        suffix = f"   (target <= {target:.0f} s)" if target else ""
        print(f"  {name:<48} {value}{suffix}")


if __name__ == "__main__":
    main()
