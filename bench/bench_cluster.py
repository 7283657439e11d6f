"""Benchmark of a RabbitMQ cluster (``broker.hosts``): prints figures, asserts nothing.

    sudo /var/cache/qsetup/venv/bin/python bench/bench_cluster.py

In one run, on a sandbox of its own (qk1..qk5, own state dir, subnet and bridge):
1. one node: the first deploy of 1 broker (qk1, with Flower) + 2 pip worker hosts
   (qk2, qk3) on fresh hosts;
2. a cluster: the sandbox is rebuilt fresh, then the first deploy of 3 brokers (qk1..qk3,
   Flower on qk1) + 2 pip worker hosts (qk4, qk5, beat on qk4);
3. node loss: a client on a node that stays sends ``add`` at 10 tasks/s (publisher
   confirms, rpc results) for 40 s; 10 s in, the node leading the ``celery`` quorum
   queue is powered off: tasks sent, results, duplicates, lost, the longest gap between
   two results;
4. rejoin: ``sandbox up`` rebuilds the lost host empty under its name, and the deploy
   that joins it to the cluster again is timed.
The sandbox is always brought down at the end.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from harness import (  # noqa: E402 - the integration tier's helpers, found above
    SandboxHosts,
    SeparateSandbox,
    Site,
    TaskStream,
    boot_sandbox,
    qsetup,
    quorum_queue,
)

SANDBOX = SeparateSandbox(("qk1", "qk2", "qk3", "qk4", "qk5"), "10.213.25.0/24", "qsbrk")
RATE = 10.0


def inventory(hosts: SandboxHosts, folder: Path, brokers: list[str], workers: list[str]) -> Site:
    """The sandbox's starter inventory with ``brokers`` and one pip group on ``workers``."""
    site = hosts.site(folder)
    data = yaml.safe_load(site.inventory.read_text())
    data["broker"].pop("host", None)
    if len(brokers) == 1:
        data["broker"]["host"] = brokers[0]
    else:
        data["broker"]["hosts"] = brokers
        data["beat"] = {"host": workers[0]}
    pip = next(g for g in data["workers"] if g["install"] == "pip")
    pip.update(hosts=workers, instances=2)
    data["workers"] = [pip]
    data["flower"]["host"] = brokers[0]
    site.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    return site


def timed_deploy(site: Site) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    code, data = site.deploy()
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"deploy failed ({code}): {data['failures']}")
    return seconds, data


def fresh_sandbox(env: dict[str, str], work: Path, name: str) -> SandboxHosts:
    qsetup("sandbox", "down", env=env, timeout=300)
    return boot_sandbox(SANDBOX.names, work / f"{name}-starter" / "inventory.yml", env)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="qsetup-bench-cluster-") as tmp:
        work = Path(tmp)
        env = SANDBOX.env(work / "state")
        try:
            hosts = fresh_sandbox(env, work, "one")
            one = inventory(hosts, work / "one", ["qk1"], ["qk2", "qk3"])
            one_s, _ = timed_deploy(one)

            hosts = fresh_sandbox(env, work, "cluster")
            cluster = inventory(hosts, work / "cluster", ["qk1", "qk2", "qk3"], ["qk4", "qk5"])
            cluster_s, _ = timed_deploy(cluster)
            noop_s, noop = timed_deploy(cluster)

            queue = quorum_queue(cluster, "qk3", "celery") or {}
            leader = str(queue.get("leader", "rabbit@qk1")).split("@", 1)[1]
            survivor = next(h for h in ("qk3", "qk2", "qk1") if h != leader)
            with TaskStream(cluster.loaded(), survivor, RATE) as stream:
                time.sleep(10)
                hosts.power_off(leader)
                off_at = time.monotonic() - stream.result.started
                time.sleep(max(0.0, stream.result.started + 40 - time.monotonic()))
                loss = stream.finish(timeout=180)

            hosts.up_again()
            rejoin_s, _ = timed_deploy(cluster)
            after = quorum_queue(cluster, survivor, "celery") or {}
        finally:
            qsetup("sandbox", "down", env=env, timeout=300, check=False)

    changed = {h: v["changed"] for h, v in noop["hosts"].items()}
    gap, gap_at = loss.longest_gap()
    print(f"first deploy, 1 broker + 2 pip worker hosts          {one_s:6.1f} s")
    print(
        f"first deploy, 3-node cluster + 2 pip worker hosts    {cluster_s:6.1f} s"
        f"   ({cluster_s / one_s:.2f} x one node)"
    )
    print(
        f"no-op deploy of the cluster                          {noop_s:6.1f} s   changed {changed}"
    )
    print(
        f"node loss: {leader} (leader of celery) powered off at +{off_at:.1f} s, client on "
        f"{survivor}, {RATE:.0f} tasks/s for 40 s:\n"
        f"  sent {len(loss.expected)}, results {len(loss.first_arrivals())}, "
        f"duplicates {loss.duplicates}, lost {len(loss.missing)}, wrong {len(loss.wrong)}, "
        f"send errors {len(loss.send_errors)}\n"
        f"  longest gap between results {gap:.2f} s (from +{gap_at:.1f} s); longest send "
        f"pause {loss.longest_send_pause:.2f} s"
    )
    rejoin = f"rejoin: deploy after {leader} came back empty"
    print(f"{rejoin:<53}{rejoin_s:6.1f} s   celery online on {sorted(after.get('online', []))}")


if __name__ == "__main__":
    main()
