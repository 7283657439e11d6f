"""Fleet benchmark (issue 13): qsetup beside a hand-written floor, 3 and 20 hosts, one run.

    sudo /var/cache/qsetup/venv/bin/python bench/bench_fleet.py [--sizes 3,20] [--rounds 3]
        [--deploy-rounds 1] [--qsetup-first] [--keep]

Prints figures, asserts nothing. Per size (N hosts), on two sandboxes of its own (state
under /var/tmp/qsetup-bench-fleet/, subnets 10.213.40.0/24 and 10.213.41.0/24, bridges
qsbrf and qsbrg, hosts fa1..faN and fb1..fbN):

1. floor script, on fresh hosts fa1..faN: plain ``ssh`` (one session per host, a bash
   script on standard input, run with ``sudo`` as the sandbox's ``deploy`` user), all
   hosts at once from Python threads; it reaches the end state qsetup's deploy reaches
   for the same inventory: RabbitMQ with its config, plugins (management, prometheus),
   Erlang cookie, vhost, users, permissions and policy, guest deleted; the apt worker
   group (Debian's python-celery-common) and the pip worker group (a virtualenv) as
   systemd units running the inventory's app; Flower in a virtualenv with basic auth.
   It ends when every worker node answers ping and Flower answers.
2. qsetup, on other fresh hosts fb1..fbN: the first deploy, then per round (median of
   --rounds) ``ssh host true`` to all hosts at once, a no-op deploy and ``qsetup
   status``; then one rolling restart (``qsetup restart --role workers``).
With ``--deploy-rounds K`` > 1 the two first deploys alternate K times per size (floor,
qsetup, floor, qsetup, ... on fresh hosts each time; steps 2's rounds and the restart
only after the first): the table gives the medians and every pair, since one fresh
20-host deploy varies by several seconds from run to run on a shared machine.
Both sites then get the same untimed end-state check (broker objects read through the
management API, Prometheus port, Flower with and without credentials, ping from every
worker node, a task round trip), and the first deploy's ansible-runner events give
the time per task. Beside the wall times it prints the machine's busy CPU across each
first deploy and no-op (core-seconds from /proc/stat): the sandbox hosts share this
machine's kernel and cores with the controller, so that is what the controller and every
host spent together, and CPU / wall ("cores busy") near the core count means the step
was bound by CPU, not by the network or by waiting.

The floor does what qsetup does that costs time on a fresh host: the same Debian packages
(also python3-requests and python3-packaging, which qsetup's modules need), the same pip
specs, apt lists refreshed only when older than a day (qsetup's apt task), RabbitMQ
configured before its one start, workers started once their broker user exists. It
leaves out what qsetup adds around that: its own broker administrator (the floor uses
guest from the broker host, then deletes it), systemd hardening in the units and the
``qsetup_celery`` shim (the floor runs ``-A <module>`` directly), the nftables firewall
on the broker and Flower hosts (the inventory ``sandbox up`` writes turns it on), the
manifest, venv markers, the staged code swap after an import check, the preflight reads, and the
per-host ping wait (the floor pings every node once, from here).

Topology: 3 hosts are the demo (broker + Flower, an apt worker host, a pip worker host);
N > 3 is 1 broker host, N-2 worker hosts in two groups (apt, pip) and a Flower host.
Each phase has the machine to itself as far as this script goes: the other sandbox is
down while it runs. The sandboxes are brought down at the end and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from fleet_floor import address, broker_url, floor_scripts  # beside this file

from qsetup.inventory.loader import LoadedInventory, load_inventory
from qsetup.sandbox.cgroup import host_cgroups
from qsetup.sandbox.host import ssh_args

# -P: the qsetup installed in this interpreter, never the checkout in the working directory
# (imported from source there, and with PYTHONDONTWRITEBYTECODE compiled on every run).
QSETUP = [sys.executable, "-P", "-m", "qsetup"]
BASE = Path("/var/tmp/qsetup-bench-fleet")
LOGIN_USER = "deploy"


@dataclass(frozen=True)
class HostSet:
    """One of the bench's two sandboxes."""

    label: str
    prefix: str
    subnet: str
    bridge: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "QSETUP_SANDBOX_DIR": str(BASE / self.label),
            "QSETUP_SANDBOX_SUBNET": self.subnet,
            "QSETUP_SANDBOX_BRIDGE": self.bridge,
        }

    @property
    def key(self) -> Path:
        return BASE / self.label / "id_ed25519"

    def names(self, size: int) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, size + 1)]


FLOOR_SET = HostSet("floor", "fa", "10.213.40.0/24", "qsbrf")
QSETUP_SET = HostSet("qsetup", "fb", "10.213.41.0/24", "qsbrg")


# --- processes: each in its own group, ended by its own id on Ctrl-C ----------------

_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()


def _end(proc: subprocess.Popen[str]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)


def run(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 600,
) -> tuple[int, str, str]:
    """Run a command in a process group of its own; on any exception end that group."""
    proc = subprocess.Popen(
        list(args),
        env={**os.environ, **(env or {})},
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except BaseException:
        _end(proc)
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return proc.returncode, out, err


def end_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        _end(proc)


def machine_cpu() -> float:
    """CPU seconds this machine has been busy (all cores: user, nice, system, irq, softirq).

    The sandbox hosts share the machine's kernel and cores, so the difference across a
    step is what the controller and every host spent on it together.
    """
    with Path("/proc/stat").open(encoding="ascii") as fh:
        fields = fh.readline().split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def hosts_cpu(loaded: LoadedInventory) -> float:
    """CPU seconds the inventory's sandbox hosts have used (each host's own cgroup).

    The machine's busy CPU less this is the controller's part (and the kernel's work for
    the bridge) across a step.
    """
    total = 0
    for name in loaded.inventory.hosts:
        for group in host_cgroups(name):
            try:
                text = (group / "cpu.stat").read_text(encoding="ascii")
            except OSError:
                continue
            total += next(
                (
                    int(line.split()[1])
                    for line in text.splitlines()
                    if line.startswith("usage_usec")
                ),
                0,
            )
            break
    return total / 1e6


def qsetup(
    hosts: HostSet,
    *args: str,
    ok: tuple[int, ...] = (0,),
    timeout: float = 3600,
    env: dict[str, str] | None = None,
) -> tuple[float, str]:
    """Run a qsetup command against ``hosts``' sandbox; return wall seconds and stdout."""
    started = time.monotonic()
    code, out, err = run([*QSETUP, *args], {**hosts.env, **(env or {})}, timeout=timeout)
    took = time.monotonic() - started
    if code not in ok:
        sys.stderr.write(out[-4000:] + err[-4000:])
        raise SystemExit(f"qsetup {' '.join(args)} ({hosts.label}) failed with exit {code}")
    return took, out


# --- sandboxes and inventories -----------------------------------------------------


@dataclass(frozen=True)
class Topology:
    broker: str
    flower: str
    apt: tuple[str, ...]
    pip: tuple[str, ...]


def topology(names: list[str]) -> Topology:
    """3 hosts: the demo layout; more: broker, two worker groups, Flower on the last host."""
    if len(names) < 3:
        raise SystemExit("sizes start at 3 hosts")
    if len(names) == 3:
        return Topology(names[0], names[0], (names[1],), (names[2],))
    workers = names[1:-1]
    half = (len(workers) + 1) // 2
    return Topology(names[0], names[-1], tuple(workers[:half]), tuple(workers[half:]))


def fresh_sandbox(hosts: HostSet, size: int, work: Path) -> LoadedInventory:
    """Bring ``hosts`` down, boot N fresh hosts, write the inventory for the topology."""
    qsetup(hosts, "sandbox", "down", timeout=600)
    names = hosts.names(size)
    inventory = work / hosts.label / f"n{size}" / "inventory.yml"
    took, _ = qsetup(
        hosts, "sandbox", "up", "--names", ",".join(names), "--inventory-out", str(inventory)
    )
    print(f"  sandbox up {hosts.prefix}1..{hosts.prefix}{size}: {took:.0f} s", flush=True)
    topo = topology(names)
    data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    data["broker"]["host"] = topo.broker
    data["flower"]["host"] = topo.flower
    # The end-state check scrapes Prometheus from this machine, as it reads the broker:
    # qsetup's firewall lets it through like `broker.allow_from` (sandbox up's: the bridge).
    data["broker"]["metrics_allow_from"] = list(data["broker"].get("allow_from") or [])
    for group in data["workers"]:
        group["hosts"] = list(topo.apt if group["install"] == "apt" else topo.pip)
    inventory.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_inventory(inventory)


def expected_nodes(loaded: LoadedInventory) -> list[str]:
    """Worker node names as both sites name them: <group>-<n>@<hostname> (= sandbox name)."""
    return sorted(
        f"{g.name}-{i}@{h}"
        for g in loaded.inventory.workers
        for h in g.hosts
        for i in range(1, g.instances + 1)
    )


@dataclass
class FloorResult:
    seconds: float
    cpu: float = 0.0
    hosts_cpu: float = 0.0
    hosts: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def run_floor(loaded: LoadedInventory, key: Path) -> FloorResult:
    """All host scripts at once; done when every worker answers ping and Flower answers."""
    scripts = floor_scripts(loaded)
    result = FloorResult(0.0)
    errors: list[str] = []
    started = time.monotonic()
    cpu_before, hosts_before = machine_cpu(), hosts_cpu(loaded)

    def one(host: str) -> None:
        args = [*ssh_args(key, address(loaded, host), user=LOGIN_USER), "sudo", "-n", "bash", "-s"]
        code, out, err = run(args, stdin=scripts[host], timeout=3600)
        result.hosts[host] = time.monotonic() - started
        result.notes[host] = " ".join(line for line in out.splitlines() if "apt-get update" in line)
        if code != 0:
            errors.append(f"{host}: exit {code}: {(out + err)[-2000:]}")

    threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in scripts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("floor script failed:\n" + "\n".join(errors))
    missing = wait_pings(loaded, timeout=180)
    if missing:
        raise SystemExit(f"floor: workers never answered ping: {missing}")
    if not wait_flower(loaded, timeout=120):
        raise SystemExit("floor: Flower never answered")
    result.seconds = time.monotonic() - started
    result.cpu = machine_cpu() - cpu_before
    result.hosts_cpu = hosts_cpu(loaded) - hosts_before
    return result


# --- end-state checks (both sites) -------------------------------------------------

CHECK = r"""
import json, os, sys, time
from celery import Celery
want = set(json.loads(os.environ["FLEET_NODES"]))
app = Celery(broker=os.environ["FLEET_BROKER_URL"], backend="rpc://")
app.conf.broker_connection_timeout = 4
deadline = time.monotonic() + float(os.environ["FLEET_TIMEOUT"])
seen = set()
while True:
    try:
        seen = {n for reply in app.control.ping(timeout=1.0) for n in reply}
    except Exception:
        seen = set()
    if want <= seen or time.monotonic() > deadline:
        break
    time.sleep(0.3)
out = {"missing": sorted(want - seen)}
if os.environ.get("FLEET_ROUNDTRIP") and not out["missing"]:
    out["roundtrip"] = app.send_task("proj.tasks.add", (2, 3)).get(timeout=30)
print(json.dumps(out))
"""


def _celery_check(loaded: LoadedInventory, timeout: float, roundtrip: bool) -> dict[str, Any]:
    env = {
        "FLEET_NODES": json.dumps(expected_nodes(loaded)),
        "FLEET_BROKER_URL": broker_url(loaded),
        "FLEET_TIMEOUT": str(timeout),
        "FLEET_ROUNDTRIP": "1" if roundtrip else "",
    }
    code, out, err = run([sys.executable, "-c", CHECK], env, timeout=timeout + 60)
    if code != 0:
        return {"missing": ["(check failed)"], "error": err[-500:]}
    return dict(json.loads(out))


def wait_pings(loaded: LoadedInventory, timeout: float) -> list[str]:
    return list(_celery_check(loaded, timeout, roundtrip=False)["missing"])


def _http(url: str, user: str | None = None, password: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if user is not None and password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


def _flower_url(loaded: LoadedInventory, path: str = "/") -> str:
    f = loaded.inventory.flower
    assert f is not None
    return f"http://{address(loaded, f.host)}:{f.port}{path}"


def wait_flower(loaded: LoadedInventory, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _http(_flower_url(loaded))[0] == 401:
            return True
        time.sleep(0.3)
    return False


def check_end_state(loaded: LoadedInventory) -> list[str]:
    """The same checks on both sites; returns the problems (empty: all as qsetup wants)."""
    inv, sec = loaded.inventory, loaded.secrets
    problems: list[str] = []
    ops = next((u for u in inv.broker.users if "administrator" in u.effective_tags), None)
    host = address(loaded, inv.broker.host)
    if ops is None:
        return ["no administrator user in the inventory to read the broker with"]
    code, body = _http(
        f"http://{host}:{inv.broker.management_port}/api/definitions", ops.name, sec.get(ops.secret)
    )
    if code != 200:
        return [f"management API as {ops.name}: HTTP {code}"]
    defs = json.loads(body)
    users = {u["name"]: u for u in defs["users"]}
    perms = {(p["user"], p["vhost"]): p for p in defs["permissions"]}
    policies = {(p["vhost"], p["name"]) for p in defs["policies"]}
    for v in inv.broker.vhosts:
        if v not in {d["name"] for d in defs["vhosts"]}:
            problems.append(f"vhost {v} missing")
    wanted = [(u.name, u.effective_tags, u.effective_permissions) for u in inv.broker.users]
    for name, tags, want_perms in wanted:
        if name not in users:
            problems.append(f"user {name} missing")
            continue
        got = users[name]["tags"]
        got_tags = set(got if isinstance(got, list) else [t for t in got.split(",") if t])
        if got_tags != set(tags):
            problems.append(f"user {name}: tags {sorted(got_tags)}, not {sorted(tags)}")
        for p in want_perms:
            have = perms.get((name, p.vhost))
            if have is None or (have["configure"], have["write"], have["read"]) != (
                p.configure,
                p.write,
                p.read,
            ):
                problems.append(f"user {name}: permissions on {p.vhost} are {have}")
    if inv.flower is not None and inv.flower.broker_api_user not in users:
        problems.append(f"user {inv.flower.broker_api_user} missing")
    for policy in inv.broker.policies:
        if (policy.vhost, policy.name) not in policies:
            problems.append(f"policy {policy.vhost}/{policy.name} missing")
    if inv.broker.delete_guest and "guest" in users:
        problems.append("guest not deleted")
    if _http(f"http://{host}:15692/metrics")[0] != 200:
        problems.append("rabbitmq_prometheus does not answer on 15692")
    if inv.flower is not None:
        admin = inv.flower.basic_auth[0]
        if _http(_flower_url(loaded))[0] != 401:
            problems.append("Flower answers without credentials")
        if _http(_flower_url(loaded), admin.name, sec.get(admin.secret))[0] != 200:
            problems.append("Flower refuses its basic-auth user")
        if _http(_flower_url(loaded, "/metrics"))[0] != 401:
            problems.append("Flower's /metrics answers without credentials")
    celery = _celery_check(loaded, timeout=60, roundtrip=True)
    if celery["missing"]:
        problems.append(f"workers not answering ping: {celery['missing']}")
    elif celery.get("roundtrip") != 5:
        problems.append(f"task round trip gave {celery.get('roundtrip')!r}, not 5")
    return problems


# --- qsetup ------------------------------------------------------------------------


def ssh_floor(loaded: LoadedInventory, key: Path) -> float:
    """``ssh host true`` to every host at once, as the inventory's login user."""
    started = time.monotonic()
    results: list[int] = []

    def one(host: str) -> None:
        results.append(
            run([*ssh_args(key, address(loaded, host), user=LOGIN_USER), "true"], timeout=60)[0]
        )

    threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in loaded.inventory.hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(results):
        raise SystemExit(f"ssh floor: exit codes {results}")
    return time.monotonic() - started


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class TaskTimes:
    source: str
    by_sum: list[tuple[str, float, float, int]] = field(default_factory=list)
    by_wall: list[tuple[str, float, float, int]] = field(default_factory=list)
    plays: list[tuple[str, float]] = field(default_factory=list)
    hosts: list[tuple[str, float, float]] = field(default_factory=list)
    # Per host: task results (every runner_on_ok/failed/skipped/unreachable event, meta
    # tasks included: each one is a result Ansible forks or queues for that host).
    results: dict[str, Counter[str]] = field(default_factory=dict)


def _union_seconds(spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds during which at least one of the spans was running."""
    total = 0.0
    current: list[datetime] | None = None
    for start, end in sorted(spans):
        if current is None or start > current[1]:
            if current is not None:
                total += (current[1] - current[0]).total_seconds()
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total


RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def task_times(run_dir: Path) -> TaskTimes:
    """Per task: summed duration across hosts and wall time, from the runner's events.

    A task's wall time is the time during which it ran on at least one host (the union
    of its per-host spans): with ``strategy: free`` hosts reach a task at different
    times, so first start to last end would count the gaps between them. Meta tasks
    (end_host, flush_handlers) are left out: their events carry no start of their own.
    """
    events_dir = run_dir / "artifacts" / "run" / "job_events"
    files = sorted(events_dir.glob("*.json")) if events_dir.is_dir() else []
    if not files:
        stdout = run_dir / "artifacts" / "run" / "stdout"
        return TaskTimes(
            f"no event JSON files kept in {events_dir}; the stdout log "
            f"({stdout}) has no per-task timings, so none are shown"
        )
    sums: dict[str, float] = defaultdict(float)
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    hosts: dict[str, set[str]] = defaultdict(set)
    play_spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    results: dict[str, Counter[str]] = defaultdict(Counter)
    host_spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for path in files:
        event = json.loads(path.read_text(encoding="utf-8"))
        data = event.get("event_data") or {}
        kind = str(event.get("event", ""))
        if kind in RESULT_EVENTS:
            counts = results[str(data.get("host"))]
            counts["results"] += 1
            counts[RESULT_EVENTS[kind]] += 1
            if kind == "runner_on_ok" and (data.get("res") or {}).get("changed"):
                counts["changed"] += 1
        if not kind.startswith("runner_on_") or "duration" not in data:
            continue
        if data.get("start") is None or data.get("end") is None:
            continue
        if str(data.get("task_action", "")).endswith("meta"):
            # meta tasks run in the controller's main process; the runner's events give a
            # skipped one the start of the host's previous task, not its own.
            continue
        role = data.get("role") or ""
        name = f"{role}: {data.get('task', '')}" if role else str(data.get("task", ""))
        span = (_when(data["start"]), _when(data["end"]))
        sums[name] += float(data["duration"] or 0)
        hosts[name].add(str(data.get("host")))
        spans[name].append(span)
        play_spans[str(data.get("play", ""))].append(span)
        host_spans[str(data.get("host"))].append(span)
    rows = [(n, sums[n], _union_seconds(spans[n]), len(hosts[n])) for n in sums]
    plays = sorted(((p, _union_seconds(s)) for p, s in play_spans.items()), key=lambda r: -r[1])
    per_host = sorted(
        (
            (h, _union_seconds(s), (max(e for _, e in s) - min(b for b, _ in s)).total_seconds())
            for h, s in host_spans.items()
        ),
        key=lambda r: -r[1],
    )
    return TaskTimes(
        f"{len(files)} event files in {events_dir}",
        sorted(rows, key=lambda r: -r[1])[:10],
        sorted(rows, key=lambda r: -r[2])[:10],
        plays,
        per_host,
        dict(results),
    )


@dataclass
class SizeResult:
    size: int
    floor: FloorResult | None = None
    floor_problems: list[str] = field(default_factory=list)
    first: float = 0.0
    first_problems: list[str] = field(default_factory=list)
    noops: list[float] = field(default_factory=list)
    noop_changed: list[dict[str, int]] = field(default_factory=list)
    # Whether each no-op deploy started ansible-playbook (no: it answered from the read,
    # with no task result on any host).
    noop_ansible: list[bool] = field(default_factory=list)
    statuses: list[float] = field(default_factory=list)
    healthy: list[bool] = field(default_factory=list)
    restart: float = 0.0
    ssh: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    floor_cpus: list[float] = field(default_factory=list)
    first_cpus: list[float] = field(default_factory=list)
    # The hosts' part of each (their cgroups); the rest is the controller's.
    floor_hosts_cpus: list[float] = field(default_factory=list)
    first_hosts_cpus: list[float] = field(default_factory=list)
    noop_cpus: list[float] = field(default_factory=list)
    tasks: TaskTimes | None = None
    load: dict[str, float] = field(default_factory=dict)


def first_deploy(loaded: LoadedInventory, res: SizeResult) -> tuple[float, str]:
    """qsetup's first deploy on fresh hosts: its wall time and machine CPU go into ``res``."""
    cpu_before, hosts_before = machine_cpu(), hosts_cpu(loaded)
    # Its event files give the per-task timings (task_times); deploy keeps them only when asked.
    took, out = qsetup(
        QSETUP_SET,
        "deploy",
        "--inventory",
        str(loaded.path),
        "--json",
        env={"QSETUP_KEEP_EVENTS": "1"},
    )
    res.first_cpus.append(machine_cpu() - cpu_before)
    res.first_hosts_cpus.append(hosts_cpu(loaded) - hosts_before)
    res.firsts.append(took)
    print(
        f"  qsetup first deploy: {took:.1f} s, machine CPU {res.first_cpus[-1]:.0f} core-s"
        f" (hosts {res.first_hosts_cpus[-1]:.0f})",
        flush=True,
    )
    return took, out


def run_qsetup(loaded: LoadedInventory, key: Path, rounds: int, res: SizeResult) -> None:
    inv = str(loaded.path)
    res.load["qsetup"] = os.getloadavg()[0]
    res.first, out = first_deploy(loaded, res)
    first = json.loads(out)
    res.tasks = task_times(Path(first["run_dir"]))
    res.first_problems = check_end_state(loaded)
    for i in range(rounds):
        res.ssh.append(ssh_floor(loaded, key))
        cpu_before = machine_cpu()
        took, out = qsetup(QSETUP_SET, "deploy", "--inventory", inv, "--json", timeout=900)
        res.noop_cpus.append(machine_cpu() - cpu_before)
        res.noops.append(took)
        noop = json.loads(out)
        res.noop_changed.append({h: v["changed"] for h, v in noop["hosts"].items() if v["changed"]})
        res.noop_ansible.append(bool(noop.get("ansible_ran", True)))
        took, out = qsetup(
            QSETUP_SET, "status", "--inventory", inv, "--json", ok=(0, 3), timeout=300
        )
        res.statuses.append(took)
        res.healthy.append(bool(json.loads(out).get("healthy")))
        print(
            f"  round {i + 1}: ssh {res.ssh[-1]:.2f} s, no-op {res.noops[-1]:.1f} s, "
            f"status {took:.1f} s",
            flush=True,
        )
    res.restart, _ = qsetup(
        QSETUP_SET, "restart", "--inventory", inv, "--role", "workers", "--json", timeout=1800
    )
    print(f"  rolling restart: {res.restart:.1f} s", flush=True)


def run_size(
    size: int, rounds: int, deploy_rounds: int, qsetup_first: bool, work: Path
) -> SizeResult:
    res = SizeResult(size)

    def floor_phase() -> None:
        loaded = fresh_sandbox(FLOOR_SET, size, work)
        floor = run_floor(loaded, FLOOR_SET.key)
        print(
            f"  floor script: {floor.seconds:.1f} s, machine CPU {floor.cpu:.0f} core-s"
            f" (hosts {floor.hosts_cpu:.0f})",
            flush=True,
        )
        res.floors.append(floor.seconds)
        res.floor_cpus.append(floor.cpu)
        res.floor_hosts_cpus.append(floor.hosts_cpu)
        if res.floor is None:
            res.load["floor"] = os.getloadavg()[0]
            res.floor = floor
        problems = check_end_state(loaded)
        res.floor_problems += [p for p in problems if p not in res.floor_problems]
        qsetup(FLOOR_SET, "sandbox", "down", timeout=600)

    def qsetup_phase() -> None:
        loaded = fresh_sandbox(QSETUP_SET, size, work)
        if not res.firsts:
            run_qsetup(loaded, QSETUP_SET.key, rounds, res)
        else:
            first_deploy(loaded, res)
            problems = check_end_state(loaded)
            res.first_problems += [p for p in problems if p not in res.first_problems]
        qsetup(QSETUP_SET, "sandbox", "down", timeout=600)

    print(f"{size} hosts:", flush=True)
    for _ in range(deploy_rounds):
        for phase in (qsetup_phase, floor_phase) if qsetup_first else (floor_phase, qsetup_phase):
            phase()
    return res


# --- report ------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _results_cell(tasks: TaskTimes | None, what: str) -> str:
    """``min-max (median)`` of one kind of task result across the hosts of a deploy."""
    if tasks is None or not tasks.results:
        return "-"
    counts = sorted(c[what] for c in tasks.results.values())
    return f"{counts[0]}-{counts[-1]} (med {statistics.median(counts):g})"


def report(results: list[SizeResult], rounds: int, deploy_rounds: int, qsetup_first: bool) -> None:
    order = "qsetup, then floor" if qsetup_first else "floor, then qsetup"
    print()
    print(
        f"bench_fleet: {datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} cores, "
        f"order per size: {order}; first deploys: medians of {deploy_rounds} pair(s); "
        f"no-op, status, ssh: medians of {rounds} round(s)"
    )
    cols = [f"{r.size} hosts" for r in results]
    print(f"{'':34}" + "".join(f"{c:>22}" for c in cols))

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:34}" + "".join(f"{c:>22}" for c in cells))

    def fl(r: SizeResult) -> float:
        return med(r.floors)

    def first(r: SizeResult) -> float:
        return med(r.firsts)

    row("floor script (parallel ssh)", [f"{fl(r):.1f} s" for r in results])
    row("qsetup first deploy", [f"{first(r):.1f} s {first(r) / fl(r):5.2f}x fl" for r in results])
    row("ssh true, all hosts at once", [f"{med(r.ssh):.2f} s" for r in results])
    row(
        "no-op deploy",
        [f"{med(r.noops):.2f} s {med(r.noops) / med(r.ssh):5.1f}x ssh" for r in results],
    )
    row(
        "status",
        [f"{med(r.statuses):.2f} s {med(r.statuses) / med(r.ssh):5.1f}x ssh" for r in results],
    )
    row(
        "task results/host, first deploy",
        [_results_cell(r.tasks, "results") for r in results],
    )
    row("  of them skipped", [_results_cell(r.tasks, "skipped") for r in results])
    row(
        "no-op deploy ran Ansible",
        ["/".join("yes" if ran else "no" for ran in r.noop_ansible) or "-" for r in results],
    )
    row("rolling restart (workers)", [f"{r.restart:.1f} s" for r in results])
    row(
        "machine CPU, floor / first deploy",
        [f"{med(r.floor_cpus):.0f} / {med(r.first_cpus):.0f} core-s" for r in results],
    )
    row(
        "  of it the hosts', floor / first deploy",
        [f"{med(r.floor_hosts_cpus):.0f} / {med(r.first_hosts_cpus):.0f} core-s" for r in results],
    )
    row(
        "cores busy, floor / first deploy",
        [f"{med(r.floor_cpus) / fl(r):.2f} / {med(r.first_cpus) / first(r):.2f}" for r in results],
    )
    row("machine CPU, no-op deploy", [f"{med(r.noop_cpus):.1f} core-s" for r in results])
    row(
        "load avg at floor / qsetup start",
        [f"{r.load.get('floor', 0):.1f} / {r.load.get('qsetup', 0):.1f}" for r in results],
    )
    print()
    for r in results:
        verdict = "ok" if first(r) / fl(r) <= 1.15 else "MISSED"
        print(
            f"{r.size} hosts: first deploy / floor = {first(r) / fl(r):.2f} (target <= 1.15: "
            f"{verdict}); no-op changed {r.noop_changed}; status healthy {r.healthy}"
        )
        if len(r.floors) > 1:
            pairs = zip(r.floors, r.firsts, strict=False)
            print(
                "  first deploys in run order (floor / qsetup = ratio): "
                + "; ".join(f"{a:.1f} / {b:.1f} = {b / a:.2f}" for a, b in pairs)
            )
    by_size = {r.size: r for r in results}
    if 3 in by_size and 20 in by_size:
        small, big = by_size[3], by_size[20]
        for label, attr in (
            ("no-op deploy", "noops"),
            ("status", "statuses"),
            ("ssh floor", "ssh"),
        ):
            a, b = med(getattr(small, attr)), med(getattr(big, attr))
            note = (
                "" if attr == "ssh" else f" (target <= +30 %: {'ok' if b <= 1.3 * a else 'MISSED'})"
            )
            print(
                f"20 vs 3 hosts, {label}: {b:.2f} s vs {a:.2f} s = {100 * (b / a - 1):+.0f} %{note}"
            )
    for r in results:
        print()
        print(f"--- {r.size} hosts: end state (same checks on both sites)")
        print(f"floor:  {'; '.join(r.floor_problems) or 'all checks pass'}")
        print(f"qsetup: {'; '.join(r.first_problems) or 'all checks pass'}")
        if r.floor:
            slow = sorted(r.floor.hosts.items(), key=lambda kv: -kv[1])[:3]
            print(
                "floor, slowest host scripts: "
                + ", ".join(f"{h} {s:.1f} s" for h, s in slow)
                + f"; {sorted(set(r.floor.notes.values()))}"
            )
        if r.tasks is None:
            continue
        print(f"qsetup first deploy, per task ({r.tasks.source}):")
        if not r.tasks.by_sum:
            continue
        for title, rows in (
            ("by summed duration across hosts", r.tasks.by_sum),
            ("by wall time (running on at least one host)", r.tasks.by_wall),
        ):
            print(f"  top 10 {title}:")
            print(f"    {'sum s':>7} {'wall s':>7} {'hosts':>5}  task")
            for name, total, wall, n in rows:
                print(f"    {total:7.1f} {wall:7.1f} {n:5d}  {name[:90]}")
        print(
            "  hosts, busy in tasks / first task start to last end: "
            + "; ".join(f"{h} {busy:.1f} / {span:.1f} s" for h, busy, span in r.tasks.hosts[:5])
        )
        print("  plays by wall time: " + "; ".join(f"{p} {s:.1f} s" for p, s in r.tasks.plays))
        print(
            "  task results per host (all / skipped / changed): "
            + "; ".join(
                f"{h} {c['results']}/{c['skipped']}/{c['changed']}"
                for h, c in sorted(r.tasks.results.items())
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,20", help="host counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="rounds for the medians")
    parser.add_argument(
        "--qsetup-first",
        action="store_true",
        help="per size, run qsetup's phase before the floor's",
    )
    parser.add_argument(
        "--deploy-rounds",
        type=int,
        default=1,
        help="first deploys per size, floor and qsetup alternating (medians reported)",
    )
    parser.add_argument("--keep", action="store_true", help="keep inventories and run dirs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if os.geteuid() != 0:
        raise SystemExit("run as root (the sandbox needs it): sudo .../python bench/bench_fleet.py")

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    BASE.mkdir(parents=True, exist_ok=True)
    work = BASE / f"work-{os.getpid()}"
    results: list[SizeResult] = []
    try:
        for hosts in (FLOOR_SET, QSETUP_SET):  # a crashed earlier run may have left hosts up
            qsetup(hosts, "sandbox", "down", timeout=600)
        for size in sizes:
            results.append(run_size(size, args.rounds, args.deploy_rounds, args.qsetup_first, work))
    except KeyboardInterrupt:
        print("interrupted; bringing the sandboxes down", file=sys.stderr)
    finally:
        end_all()
        for hosts in (FLOOR_SET, QSETUP_SET):
            try:
                qsetup(hosts, "sandbox", "down", timeout=600)
            except (SystemExit, KeyboardInterrupt) as exc:
                print(f"sandbox down ({hosts.label}): {exc}", file=sys.stderr)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if results:
        report(results, args.rounds, args.deploy_rounds, args.qsetup_first)


if __name__ == "__main__":
    main()
