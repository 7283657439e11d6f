"""A three-node RabbitMQ cluster (``broker.hosts``) on a sandbox of the module's own (issue 11).

Every test runs on Debian 12 hosts (RabbitMQ 3.10), then on Debian 13 hosts (4.0).

qc1..qc3 run RabbitMQ as one cluster (Flower on qc1), qc4 and qc5 a pip worker group
(2 instances each, beat on qc4); the app's ``celery`` queue is a quorum queue with a
member on every node. The firewall is on (as ``init`` writes it, the machine running
qsetup in ``allow_from``): every test runs through it, and qc6, a sandbox host outside
the inventory, probes it. The tests check what a user of a cluster relies on: it forms
and stays whole, Debian's too-old Celery is refused before anything changes, a rolling
broker restart and the loss of the node leading the queue lose no task, and a broker
host rebuilt empty under the same name joins again. While the leader's host is off, a
deploy converges the other hosts and names it in one line (exit 3), a restart of the
workers, none of which runs there, succeeds, and a broker restart is refused. Last, the
managed result backend (``results:`` on qc5): a result outlives the client's broker node
and a backend restart. The module powers hosts off and wipes one, so it boots its own hosts
(``harness.SEPARATE["cluster"]``). Each test starts from every host up and deployed;
the node loss runs on the cluster as the first deploy left it (every worker on qc1, the
first node of its URL list), the rolling restart after it, on a cluster that has lost a
node and rebuilt one.

Figures (formation time, gaps, rejoin time) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import (
    SEPARATE,
    SandboxHosts,
    Site,
    TaskStream,
    boot_sandbox,
    celery_client,
    changed_by_host,
    moved,
    own_sandbox,
    qsetup,
    queue_home,
    quorum_queue,
    rabbitmq_json,
    site_copy,
    wait_for,
    wait_for_ping,
)

from qsetup.desired.names import rabbit_node_name

pytestmark = pytest.mark.integration

BROKERS = moved(SEPARATE["cluster"]).names[:3]
WORKERS = moved(SEPARATE["cluster"]).names[3:5]
OUTSIDER = moved(SEPARATE["cluster"]).names[5]
NODES = {rabbit_node_name(h) for h in BROKERS}
RATE = 10.0


def cluster_inventory(data: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's starter inventory turned into the module's cluster."""
    broker = data["broker"]
    broker.pop("host", None)
    broker["hosts"] = list(BROKERS)
    pip = next(g for g in data["workers"] if g["install"] == "pip")
    pip.update(hosts=list(WORKERS), instances=2)
    data["workers"] = [pip]
    data["beat"] = {"host": WORKERS[0]}
    data["flower"]["host"] = BROKERS[0]
    del data["hosts"][OUTSIDER]
    assert data["firewall"] == {"enabled": True}, data.get("firewall")
    return data


@dataclass
class Formed:
    site: Site
    seconds: float
    first: dict[str, Any]


@pytest.fixture(scope="module", params=["bookworm", "trixie"])
def release(request: pytest.FixtureRequest) -> str:
    """Every test runs on a bookworm cluster (RabbitMQ 3.10), then on a trixie one (4.0)."""
    return str(request.param)


@pytest.fixture(scope="module")
def hosts(release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    folder = Path(tmp_path_factory.mktemp(f"cluster-hosts-{release}"))
    with own_sandbox("cluster", folder, release=release) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def formed(hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Formed:
    """The first deploy of the cluster inventory on the fresh hosts, timed."""
    starter = hosts.site(Path(tmp_path_factory.mktemp("cluster-starter")))
    site = site_copy(starter, Path(tmp_path_factory.mktemp("cluster")), cluster_inventory)
    started = time.monotonic()
    code, data = site.deploy()
    seconds = time.monotonic() - started
    assert code == 0, data["failures"]
    print(f"\nformation: first deploy of 3 brokers + 2 pip worker hosts: {seconds:.1f} s")
    return Formed(site, seconds, data)


@pytest.fixture
def site(hosts: SandboxHosts, formed: Formed) -> Site:
    """The cluster with every host up and deployed, whatever a test before left."""
    if "nothing changed" not in hosts.up_again().stdout:
        code, data = formed.site.deploy()
        assert code == 0, data["failures"]
    wait_for_ping(formed.site)
    return formed.site


# --- what the tests read -------------------------------------------------------------------


def cluster_problems(site: Site, host: str) -> list[str]:
    """What is wrong with the cluster as ``host``'s node sees it (empty: whole)."""
    status = rabbitmq_json(site, host, "rabbitmqctl", "cluster_status")
    problems = []
    if set(status["running_nodes"]) != NODES:
        problems.append(f"running {sorted(status['running_nodes'])}, want {sorted(NODES)}")
    if status["partitions"]:
        problems.append(f"partitions {status['partitions']}")
    if status["alarms"]:
        problems.append(f"alarms {status['alarms']}")
    return problems


def assert_cluster_whole(site: Site, timeout: float = 60) -> None:
    """Every node lists all 3 running, no partition, no alarm (waits for a rejoin to settle)."""
    deadline = time.monotonic() + timeout
    while problems := {h: p for h in BROKERS if (p := cluster_problems(site, h))}:
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f} s the cluster is not whole: {problems}")
        time.sleep(2)


def celery_queue(site: Site, host: str = BROKERS[-1]) -> dict[str, Any]:
    queue = quorum_queue(site, host, "celery")
    assert queue is not None, "the app's vhost has no celery queue"
    return queue


def round_trip(site: Site) -> Any:
    with celery_client(site.loaded()) as capp:
        return capp.send_task("proj.tasks.add", (2, 3)).get(timeout=60)


def broker_pids(site: Site) -> dict[str, tuple[str, str]]:
    """host -> (MainPID, start time) of rabbitmq-server.service."""
    units = {h: site.unit(h, "rabbitmq-server.service") for h in BROKERS}
    return {h: (u["MainPID"], u["ActiveEnterTimestampMonotonic"]) for h, u in units.items()}


def fingerprint(site: Site, host: str) -> str:
    """What qsetup manages on a host: manifest, units and their PIDs, packages, files."""
    command = (
        "{ cat /etc/qsetup/manifest.json; "
        "systemctl list-units --all --plain --no-legend 'qsetup-*' rabbitmq-server.service; "
        "systemctl show -p Id,MainPID,ActiveEnterTimestampMonotonic 'qsetup-*' "
        "rabbitmq-server.service; dpkg-query -W; "
        "find /etc/qsetup /etc/systemd/system /opt/qsetup -maxdepth 2 -printf '%p %s %T@\\n'; "
        "} 2>&1 | sha256sum"
    )
    return site.ssh(host, command, check=True).stdout.strip()


# --- the tests -----------------------------------------------------------------------------


def test_the_cluster_forms_serves_and_a_second_deploy_changes_nothing(
    formed: Formed, site: Site
) -> None:
    assert all(h["changed"] > 0 for h in formed.first["hosts"].values()), formed.first["hosts"]
    for host in BROKERS:
        assert cluster_problems(site, host) == [], host
    queue = celery_queue(site)
    assert queue["type"] == "quorum", queue
    assert set(queue["members"]) == NODES and set(queue["online"]) == NODES, queue
    assert round_trip(site) == 5
    code, status, _ = site.status()
    assert code == 0 and status["healthy"] is True, status["problems"]
    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert changed_by_host(data) == dict.fromkeys(data["hosts"], 0)
    print(f"\nformation: {formed.seconds:.1f} s; second deploy {data['elapsed_seconds']} s")


def test_qsetup_celery_calls_a_task_through_the_quorum_cluster(site: Site) -> None:
    """``qsetup celery -- call`` declares ``celery`` as the workers do: a client declaring it
    classic is refused by the quorum queue (PRECONDITION_FAILED); a worker runs the task."""
    started = time.monotonic()
    proc = qsetup(
        "celery", "--inventory", str(site.inventory), "--", "call", "proj.tasks.add",
        "--args", "[2, 3]", env=site.env, timeout=60, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    task_id = proc.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), proc.stdout

    def ran() -> str:
        for host in WORKERS:
            out = site.ssh(
                host, f"journalctl -u 'qsetup-worker-*' --no-pager -o cat --grep='{task_id}'"
            ).stdout
            if "succeeded" in out:
                return out
        return ""

    journal = wait_for(f"a worker to run {task_id}", ran, timeout=30)
    assert re.search(rf"proj\.tasks\.add\[{task_id}\] succeeded in \S+: 5$", journal, re.M), journal
    assert celery_queue(site)["type"] == "quorum"
    print(f"\nqsetup celery -- call on the cluster: {seconds:.1f} s")


PROTECTED = {5672: "AMQP", 15672: "management", 15692: "metrics", 25672: "dist", 4369: "epmd"}
FLOWER_PORT = 5555


def probe(site: Site, source: str | None, targets: list[tuple[str, int]]) -> dict[str, bool]:
    """``host:port`` -> whether a TCP connection from ``source`` opens (None: this machine).

    A closed port answers a TCP reset (the firewall rejects), so each probe is quick.
    """
    if source is None:
        import socket

        out = {}
        for host, port in targets:
            with socket.socket() as sock:
                sock.settimeout(3)
                out[f"{host}:{port}"] = sock.connect_ex((site.addresses[host], port)) == 0
        return out
    script = "; ".join(
        f"if timeout 3 bash -c '</dev/tcp/{site.addresses[h]}/{p}' 2>/dev/null; "
        f"then echo {h}:{p} open; else echo {h}:{p} closed; fi"
        for h, p in targets
    )
    lines = site.ssh(source, script, check=True).stdout.split()
    return {lines[i]: lines[i + 1] == "open" for i in range(0, len(lines), 2)}


def test_the_firewall_lets_each_host_reach_only_its_ports(site: Site) -> None:
    started = time.monotonic()
    node_ports = [(n, p) for n in BROKERS for p in PROTECTED]
    everything = [*node_ports, (BROKERS[0], FLOWER_PORT)]
    # Each port listens: the node itself reaches it (loopback is always accepted).
    for node in BROKERS:
        assert all(probe(site, node, [(node, p) for p in PROTECTED]).values()), node
    # A host outside the inventory reaches none of them (and SSH still).
    seen = probe(site, OUTSIDER, [*everything, (BROKERS[0], 22)])
    assert seen.pop(f"{BROKERS[0]}:22") is True
    assert [t for t, ok in seen.items() if ok] == []
    # A worker host reaches AMQP on every node and nothing else.
    seen = probe(site, WORKERS[1], everything)
    assert {t for t, ok in seen.items() if ok} == {f"{n}:5672" for n in BROKERS}, seen
    # Nodes reach each other's Erlang distribution and epmd.
    seen = probe(site, BROKERS[1], [(n, p) for n in BROKERS if n != BROKERS[1] for p in PROTECTED])
    assert {t for t, ok in seen.items() if ok} == {
        f"{n}:{p}" for n in BROKERS if n != BROKERS[1] for p in (25672, 4369)
    }, seen
    # This machine is in broker.allow_from and flower.allow_from: AMQP, management, Flower.
    seen = probe(site, None, everything)
    assert {t for t, ok in seen.items() if ok} == {
        *(f"{n}:{p}" for n in BROKERS for p in (5672, 15672)),
        f"{BROKERS[0]}:{FLOWER_PORT}",
    }, seen
    # epmd listens on loopback and the node's address only (the sandbox's /etc/hosts maps
    # the node's name to that address), and rabbitmqctl still reaches the node by name.
    for node in BROKERS:
        out = site.ssh(
            node,
            "ss -ltnH 'sport = :4369' | awk '{print $4}'; rabbitmqctl -q status >/dev/null "
            "&& echo rabbitmqctl-ok",
            check=True,
        ).stdout.split()
        assert sorted(out) == sorted(
            ["127.0.0.1:4369", f"{site.addresses[node]}:4369", "rabbitmqctl-ok"]
        ), (node, out)
    print(f"\nfirewall probes and epmd's sockets: {time.monotonic() - started:.1f} s")


def test_a_deleted_table_is_named_by_status_and_the_next_deploy_restores_it(site: Site) -> None:
    node = BROKERS[2]
    site.ssh(node, "nft delete table inet qsetup && nft add table inet keepme", check=True)
    code, status, _ = site.status()
    assert code == 3
    assert any(
        p.startswith(f"{node}: firewall (nftables table inet qsetup): not loaded")
        for p in status["problems"]
    ), status["problems"]
    assert probe(site, OUTSIDER, [(node, 5672)]) == {f"{node}:5672": True}
    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert {h for h, c in changed_by_host(data).items() if c} == {node}, data["hosts"]
    assert probe(site, OUTSIDER, [(node, 5672)]) == {f"{node}:5672": False}
    # Only qsetup's table was replaced: another table on the host is still there.
    assert site.ssh(node, "nft list table inet keepme").returncode == 0
    site.ssh(node, "nft delete table inet keepme", check=True)
    code, status, _ = site.status()
    assert code == 0, status["problems"]


def add_apt_group(data: dict[str, Any]) -> None:
    """An ``install: apt`` worker group on the last worker host, consuming queue ``apt``."""
    pip = data["workers"][0]
    apt = {k: v for k, v in pip.items() if k != "celery_version"}
    apt.update(name="apt-workers", hosts=[WORKERS[-1]], install="apt", instances=1)
    apt["queues"] = ["apt"]
    data["workers"].append(apt)


def test_an_apt_group_on_bookworm_is_refused_and_nothing_changes(
    site: Site, release: str, tmp_path: Path
) -> None:
    if release != "bookworm":
        pytest.skip("Debian 13's Celery is 5.5: the next test runs an apt group there")
    refused = site_copy(site, tmp_path / "apt", add_apt_group)
    all_hosts = (*BROKERS, *WORKERS)
    before = {h: fingerprint(site, h) for h in all_hosts}
    proc = refused.qsetup("deploy")
    assert proc.returncode != 0, proc.stdout
    out = proc.stdout.splitlines()
    lines = [line for line in out if "apt-workers" in line and "Celery >= 5.5" in line]
    assert lines, proc.stdout + proc.stderr
    code, data = refused.deploy()
    assert code != 0
    assert changed_by_host(data) == dict.fromkeys(all_hosts, 0), data["hosts"]
    assert {h: fingerprint(site, h) for h in all_hosts} == before
    print(f"\nrefused: {lines[0].strip()}")


def test_a_quorum_queue_asked_to_be_classic_is_refused_and_nothing_changes(
    site: Site, release: str, tmp_path: Path
) -> None:
    """The workers' queue exists as a quorum queue and the inventory now says
    app.queue_type: classic. RabbitMQ cannot change a queue's type, so the deploy stops in
    its preflight with the way out, no host changes, and status names the same refusal."""
    if release != "bookworm":
        pytest.skip("the same preflight on Debian 13; once keeps CI's time")

    def classic(data: dict[str, Any]) -> None:
        data.setdefault("app", {})["queue_type"] = "classic"

    refused = site_copy(site, tmp_path / "classic", classic)
    all_hosts = (*BROKERS, *WORKERS)
    before = {h: fingerprint(site, h) for h in all_hosts}
    proc = refused.qsetup("deploy")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out  # a host failed its preflight
    words = "is a quorum queue but the inventory wants classic queues"
    assert words in out and "Traceback" not in out, out
    assert {h: fingerprint(site, h) for h in all_hosts} == before
    code, status, _ = refused.status()
    assert code == 3, status["problems"]
    assert [p for p in status["problems"] if words in p] == [
        next(p for p in status["problems"] if words in p)
    ], status["problems"]  # said once
    print(f"\nrefused: {next(line for line in out.splitlines() if words in line).strip()}")


def test_an_apt_group_on_trixie_serves_a_quorum_queue_and_leaves_when_dropped(
    site: Site, release: str, tmp_path: Path
) -> None:
    if release != "trixie":
        pytest.skip("Debian 12's Celery is 5.2: the test before checks it is refused")
    with_apt = site_copy(site, tmp_path / "apt", add_apt_group)
    code, data = with_apt.deploy()
    assert code == 0, data["failures"]
    unit = "qsetup-worker-apt-workers@1.service"
    assert with_apt.unit(WORKERS[-1], unit)["ActiveState"] == "active"
    queue = quorum_queue(with_apt, BROKERS[-1], "apt")
    assert queue is not None and queue["type"] == "quorum", queue
    assert set(queue["members"]) == NODES and set(queue["online"]) == NODES, queue
    with celery_client(with_apt.loaded()) as capp:
        done = capp.send_task("proj.tasks.add", (2, 3), queue="apt").get(timeout=60)
    assert done == 5
    code, status, _ = with_apt.status()
    assert code == 0 and status["healthy"] is True, status["problems"]
    versions = status["hosts"][WORKERS[-1]]["celery_versions"]
    assert versions["/usr/bin/celery"].startswith("5.5"), versions

    code, data = site.deploy()  # the group leaves the inventory: its worker leaves the host
    assert code == 0, data["failures"]
    assert site.unit(WORKERS[-1], unit)["LoadState"] == "not-found"
    code, status, _ = site.status()
    assert code == 0 and status["healthy"] is True, status["problems"]


def summary_rows(out: str) -> dict[str, list[str]]:
    """host -> its row (ok, changed, failed, state) in the human summary table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 5 and cells[0] in (*BROKERS, *WORKERS):
            rows[cells[0]] = cells[1:]
    return rows


def work_goes_on_without(site: Site, dead: str) -> None:
    """With one node of three powered off: a deploy converges the others and names it once.

    The deploy exits 3 and says in one line that the dead host is unreachable (no
    "details hidden", no Ansible error); the live nodes keep its /etc/hosts line and
    the workers answer; a restart of the workers, none of which runs there, exits 0; a
    restart of the brokers is refused in one line before any node goes down.
    """
    started = time.monotonic()
    proc = site.qsetup("deploy")
    deployed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    for wrong in ("HostVarsVars", "Traceback", "details hidden", "internal error"):
        assert wrong not in out, out
    named = {
        line.strip()
        for line in out.splitlines()
        if line.strip().startswith(f"{dead}:") and "│" not in line
    }
    address = site.addresses[dead]
    assert len(named) == 1, out
    (line,) = named
    assert line.startswith(f"{dead}: unreachable ({address}): "), line
    assert line.endswith("no change was made there"), line
    rows = summary_rows(out)
    assert rows[dead][3] == "unreachable", rows
    assert all(rows[h][2] == "0" and rows[h][3] != "unreachable" for h in rows if h != dead), rows
    hosts_line = f"{address} {dead}"
    for live in BROKERS:
        if live != dead:
            assert hosts_line in site.ssh(live, "cat /etc/hosts", check=True).stdout, live
    wait_for_ping(site)
    started = time.monotonic()
    proc = site.qsetup("restart", "--role", "workers")
    restarted = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary_rows(proc.stdout)[dead][3] != "unreachable", proc.stdout
    wait_for_ping(site)
    live = [h for h in BROKERS if h != dead]
    before = {h: site.unit(h, "rabbitmq-server.service")["MainPID"] for h in live}
    proc = site.qsetup("restart", "--role", "broker")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    # One line (the progress line above the summary says it too, after FAILED).
    refused = [
        x
        for x in out.splitlines()
        if x.split(":")[0] in live and f"not restarted: RabbitMQ on {dead} is unreachable" in x
    ]
    assert len(refused) == 1, out
    # No node was taken down while the cluster already misses one.
    assert {h: site.unit(h, "rabbitmq-server.service")["MainPID"] for h in live} == before
    print(f"{dead} down: deploy exit 3 in {deployed:.1f} s ({line}); "
          f"restart --role workers exit 0 in {restarted:.1f} s; --role broker refused")  # fmt: skip


def nothing_changes_without_a_majority(site: Site, dead: str) -> None:
    """A second node of three out of reach too: the deploy refuses in one line, changes nothing.

    The second node is unreachable through the inventory (its SSH port closed), not
    powered off: a sandbox host that died comes back empty, and two of three nodes lost
    with their data is a disaster recovery, not this rule.
    """
    second = next(h for h in BROKERS if h != dead)
    last = next(h for h in BROKERS if h not in (dead, second))
    # What a deploy writes (services may restart on their own without a quorum).
    files = (
        "{ cat /etc/qsetup/manifest.json; dpkg-query -W; "
        "find /etc/qsetup /etc/systemd/system /opt/qsetup /etc/rabbitmq -maxdepth 2 "
        "-printf '%p %s %T@\\n'; } 2>&1 | sha256sum"
    )
    before = {h: site.ssh(h, files, check=True).stdout for h in (second, last, *WORKERS)}
    text = site.inventory.read_text()
    data = yaml.safe_load(text)
    data["hosts"][second]["ssh_port"] = 1  # nothing listens there: refused at once
    site.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        proc = site.qsetup("deploy")
    finally:
        site.inventory.write_text(text)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    for wrong in ("HostVarsVars", "Traceback", "details hidden", "internal error"):
        assert wrong not in out, out
    assert "2 of the cluster's 3 broker nodes are unreachable" in out, out
    assert "a deploy needs a majority of broker.hosts reachable" in out, out
    # Nothing changed on the nodes or on the workers.
    assert {h: site.ssh(h, files, check=True).stdout for h in before} == before


def test_losing_the_queue_leader_loses_no_task_and_it_comes_back(
    site: Site, hosts: SandboxHosts
) -> None:
    leader = celery_queue(site)["leader"].split("@", 1)[1]
    assert leader in BROKERS, leader
    survivor = next(h for h in reversed(BROKERS) if h != leader)
    with TaskStream(site.loaded(), survivor, RATE) as stream:
        time.sleep(3)
        # The premise: the client, and rpc's reply queue it declares, are on the survivor.
        home = queue_home(site, survivor, stream.rpc_reply_queue)
        assert home == rabbit_node_name(survivor), (stream.rpc_reply_queue, home)
        time.sleep(max(0.0, stream.result.started + 10 - time.monotonic()))
        hosts.power_off(leader)
        powered_off = time.monotonic() - stream.result.started
        time.sleep(max(0.0, stream.result.started + 40 - time.monotonic()))
        result = stream.finish(timeout=180)
    print(
        f"\nnode loss ({leader} powered off at +{powered_off:.1f} s, client on {survivor}): "
        f"{result.summary()}"
    )
    try:
        assert result.missing == [], f"{len(result.missing)} tasks lost: {result.summary()}"
        assert result.wrong == [], result.wrong[:10]
        assert result.send_errors == [], result.send_errors[:10]
        code, status, _ = site.status()
        assert code == 3, status["problems"]
        node = rabbit_node_name(leader)
        assert any(node in p for p in status["problems"]), status["problems"]
        work_goes_on_without(site, leader)
        nothing_changes_without_a_majority(site, leader)
    finally:
        hosts.up_again()
    started = time.monotonic()
    code, data = site.deploy()
    print(f"{leader} back (rebuilt by `sandbox up`): deploy {time.monotonic() - started:.1f} s")
    assert code == 0, data["failures"]
    assert_cluster_whole(site)
    code, status, _ = site.status()
    assert code == 0, status["problems"]


def test_a_broker_node_rebuilt_or_wiped_empty_rejoins(
    site: Site, hosts: SandboxHosts, release: str
) -> None:
    # Both ways a node's first start comes again under a member's name: on bookworm the
    # machine is reinstalled (RabbitMQ not even installed), on trixie RabbitMQ stays and
    # its data is wiped with the node stopped. Each time the running nodes forget the old
    # incarnation before the blank node starts, and it joins.
    victim = BROKERS[1]
    if release == "bookworm":
        how = "rebuilt empty"
        hosts.rebuild_empty(victim)
        assert site.ssh(victim, "test -e /var/lib/rabbitmq").returncode != 0, "not rebuilt"
    else:
        how = "data wiped"
        wipe = "systemctl stop rabbitmq-server && rm -rf /var/lib/rabbitmq/mnesia"
        site.ssh(victim, wipe, check=True)
    started = time.monotonic()
    code, data = site.deploy()
    seconds = time.monotonic() - started
    print(f"\nrejoin: deploy after {victim} was {how}: {seconds:.1f} s")
    assert code == 0, data["failures"]
    assert_cluster_whole(site)
    queue = celery_queue(site)
    assert rabbit_node_name(victim) in queue["members"], queue
    assert set(queue["online"]) == NODES, queue
    assert round_trip(site) == 5


def test_a_rolling_broker_restart_under_load_loses_no_task(site: Site) -> None:
    before = broker_pids(site)
    with TaskStream(site.loaded(), BROKERS[-1], RATE) as stream:
        time.sleep(3)
        started = time.monotonic()
        proc = site.qsetup("restart", "--role", "broker", "--json", timeout=900)
        took = time.monotonic() - started
        time.sleep(3)
        result = stream.finish(timeout=180)
    print(f"\nrolling broker restart: exit {proc.returncode} in {took:.1f} s; {result.summary()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = broker_pids(site)
    assert all(before[h] != after[h] for h in BROKERS), (before, after)
    assert result.missing == [], f"{len(result.missing)} tasks lost: {result.summary()}"
    if result.wrong:  # what the workers logged about it, for the CI log
        for h in WORKERS:
            journal = "journalctl --no-pager -u 'qsetup-worker-*' -n 400 | grep -v 'succeeded in'"
            print(h, site.ssh(h, f"{journal} | tail -80").stdout)
    assert result.wrong == [], result.wrong[:10]
    assert_cluster_whole(site)
    assert set(celery_queue(site)["online"]) == NODES


RESULTS_HOST = WORKERS[1]
RESULTS_PORT = 6379
RESULTS_USERS = ("workers", "app", "beat", "flower")


def add_results(data: dict[str, Any]) -> None:
    """The managed result backend on the second worker host."""
    data["results"] = {"host": RESULTS_HOST}


def results_site(site: Site, folder: Path) -> Site:
    """A copy of the cluster's inventory with ``results:``, its users' passwords added."""
    import secrets as pysecrets

    copy = site_copy(site, folder, add_results)
    with copy.secrets.open("a", encoding="utf-8") as fh:
        for kind in RESULTS_USERS:
            fh.write(f"results-user-{kind}: '{pysecrets.token_hex(16)}'\n")
    return copy


def redis_cli(site: Site, user: str | None, *args: str) -> str:
    """``redis-cli`` on the results host as ``user`` (None: no login); its output.

    The password goes over SSH's standard input into REDISCLI_AUTH, never into argv.
    """
    import subprocess

    from qsetup.sandbox.host import ssh_args

    address = site.addresses[RESULTS_HOST]
    login = f'REDISCLI_AUTH="$p" redis-cli --no-auth-warning --user {user}' if user else "redis-cli"
    command = f"read -r p; {login} -h {address} -p {RESULTS_PORT} {' '.join(args)}"
    password = site.loaded().secrets.get(f"results-user-{user}") if user else ""
    proc = subprocess.run(
        [*ssh_args(site.key, site.addresses[RESULTS_HOST]), command],
        input=password + "\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return (proc.stdout + proc.stderr).strip()


# Last in the module: it leaves a broker node powered off and the hosts on the managed
# backend (the module's hosts go down after it); bringing the node back would cost a
# rebuild and a deploy, which test_a_broker_host_rebuilt_empty_rejoins already checks.
def test_results_outlive_the_clients_broker_node_and_a_backend_restart(
    site: Site, hosts: SandboxHosts, tmp_path: Path
) -> None:
    """The managed result backend (results:): a finished task's result is read back after
    the broker node the client was connected to is powered off, and after the backend
    restarts; each ACL user can do its job and no more; only the inventory's hosts reach
    it; status reports it, is healthy exactly when nothing differs, and names drift."""
    started = time.monotonic()
    managed = results_site(site, tmp_path / "results")
    code, data = managed.deploy()
    assert code == 0, data["failures"]
    deployed = time.monotonic() - started
    code, again = managed.deploy()
    assert code == 0, again["failures"]
    assert changed_by_host(again) == dict.fromkeys(again["hosts"], 0), again["hosts"]
    code, status, _ = managed.status()
    assert code == 0 and status["healthy"] is True, status["problems"]
    row = status["hosts"][RESULTS_HOST]["results"]
    assert row["role"] == "master" and row["aof_enabled"] is True, row
    version = row["version"]

    # Each user: workers stored results (below), the app reads them; beat and Flower
    # read but cannot write; the default user is off; nobody else gets in.
    assert redis_cli(managed, None, "PING").startswith("NOAUTH"), "default user is on"
    for kind in ("beat", "flower", "app"):
        assert redis_cli(managed, kind, "GET", "celery-task-meta-x") == "", kind
        assert "NOPERM" in redis_cli(managed, kind, "SET", "celery-task-meta-x", "1"), kind
    assert "NOPERM" in redis_cli(managed, "workers", "GET", "other-key")
    assert "NOPERM" in redis_cli(managed, "workers", "FLUSHALL")
    # The firewall: a worker host reaches the port, a host outside the inventory does not.
    where = f"{RESULTS_HOST}:{RESULTS_PORT}"
    assert probe(managed, WORKERS[0], [(RESULTS_HOST, RESULTS_PORT)]) == {where: True}
    assert probe(managed, OUTSIDER, [(RESULTS_HOST, RESULTS_PORT)]) == {where: False}

    with celery_client(managed.loaded()) as capp:
        with capp.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            node = next(h for h in BROKERS if conn.hostname == managed.addresses[h])
        task_id = capp.send_task("proj.tasks.add", (20, 22)).id
        assert capp.AsyncResult(task_id).get(timeout=60) == 42
    ttl = int(redis_cli(managed, "app", "TTL", f"celery-task-meta-{task_id}"))
    assert 0 < ttl <= 86400, ttl  # result_expires reached the workers
    hosts.power_off(node)
    off = time.monotonic()
    with celery_client(managed.loaded()) as capp:
        assert capp.AsyncResult(task_id).get(timeout=30) == 42
    read_after_loss = time.monotonic() - off
    managed.ssh(RESULTS_HOST, "systemctl restart redis-server.service", check=True)
    with celery_client(managed.loaded()) as capp:
        assert capp.AsyncResult(task_id).get(timeout=30) == 42
    # Drift is reported like everything else: a user switched off by hand.
    managed.ssh(
        RESULTS_HOST,
        "sed -i 's/^user flower on /user flower off /' /etc/redis/users.acl && "
        "systemctl restart redis-server.service",
        check=True,
    )
    code, status, _ = managed.status()
    drift = [p for p in status["problems"] if p.startswith(f"{RESULTS_HOST}: result backend")]
    assert code == 3 and drift == [
        f"{RESULTS_HOST}: result backend user 'flower': off; expected on; run qsetup deploy"
    ], status["problems"]
    print(
        f"\nresults: redis {version}; deploy with results {deployed:.1f} s; result read "
        f"{read_after_loss:.1f} s after {node} (the client's node) powered off, and after a "
        f"backend restart; test {time.monotonic() - started:.1f} s"
    )


# --- a standby beat (beat.hosts) -----------------------------------------------------------

BEAT_HOSTS = (OUTSIDER, OUTSIDER[:-1] + "7")
"""Two app-server hosts that run only beat: qc6 (the firewall's outsider until now) and qc7,
booted by the test; a powered-off one takes no worker (and its journal) with it."""
TICK = 10.0
LOCK_TIMEOUT = 30
LOOP = 5
SOAK_MINUTES = float(os.environ.get("QSETUP_BEAT_SOAK_MINUTES") or 0)
"""0: one failover (CI). N: an N-minute run with 3 failovers, the powered-off host rebuilt
and deployed again as the standby after each."""
TICK_TASK = '''

@app.task
def tick() -> float:
    """A periodic task beat sends every 10 s (test_cluster's standby beat)."""
    return time.time()
'''
TICK_SCHEDULE = """

app.conf.beat_schedule = {"qsetup-test-tick": {"task": "proj.tasks.tick", "schedule": 10.0}}
"""
_RECEIVED = re.compile(r"^(\d+\.\d+) .*proj\.tasks\.tick\[([0-9a-f-]+)\] received")


def standby_site(site: Site, folder: Path, addresses: dict[str, str]) -> Site:
    """The cluster with results: and beat on qc6 and qc7, and a 10 s schedule of proj.tasks.tick."""

    def edit(data: dict[str, Any]) -> None:
        add_results(data)
        template = next(iter(data["hosts"].values()))
        for name in BEAT_HOSTS:
            data["hosts"][name] = {**template, "address": addresses[name]}
        data["beat"] = {"hosts": list(BEAT_HOSTS), "lock_timeout": LOCK_TIMEOUT}

    copy = results_site(site, folder)
    copy = site_copy(copy, folder / "standby", edit)
    copy = Site(copy.inventory, copy.key, addresses, copy.env)
    proj = copy.app_dir / "proj"
    (proj / "tasks.py").write_text((proj / "tasks.py").read_text() + TICK_TASK)
    (proj / "celery.py").write_text((proj / "celery.py").read_text() + TICK_SCHEDULE)
    return copy


def tick_sends(site: Site, since: float) -> list[tuple[float, str]]:
    """(first receipt, task id) of every tick a worker received since ``since``, in time order.

    Read from both worker hosts' journals; a task received twice (redelivered) counts once:
    each send of beat is one task id.
    """
    first: dict[str, float] = {}
    for host in WORKERS:
        out = site.ssh(
            host,
            f"journalctl --no-pager -q -o short-unix --since @{int(since)} "
            "-u 'qsetup-worker-*' -g 'proj.tasks.tick.*received'",
        ).stdout
        for line in out.splitlines():
            m = _RECEIVED.match(line)
            if m:
                first[m[2]] = min(float(m[1]), first.get(m[2], float("inf")))
    return sorted((t, i) for i, t in first.items())


@dataclass
class SlotCounts:
    sends: int
    twice: int
    """Sends closer than half an interval to the one before: a slot sent twice."""
    missing_in_failover: int
    missing_outside: int
    failover_gaps: list[float]


def count_slots(times: list[float], kills: list[float], interval: float) -> SlotCounts:
    """Slots of a ``interval`` schedule, from the send times: once, twice or missing.

    A gap between two sends shorter than half an interval is a slot sent twice; a gap of
    k intervals (rounded) misses k - 1 slots, inside a failover window when a holder was
    killed within the gap.
    """
    twice = inside = outside = 0
    gaps = []
    for prev, nxt in zip(times, times[1:], strict=False):
        gap = nxt - prev
        if gap < interval / 2:
            twice += 1
            continue
        missed = max(round(gap / interval) - 1, 0)
        if any(prev <= k <= nxt for k in kills):
            inside += missed
            gaps.append(round(gap, 1))
        else:
            outside += missed
    return SlotCounts(len(times), twice, inside, outside, gaps)


def kill_holder(site: Site, hosts: SandboxHosts, holder: str) -> float:
    """The holder's host lost at once: beat killed (no release of its lock), then powered off."""
    site.ssh(holder, "systemctl kill --signal=SIGKILL qsetup-beat.service", check=True)
    killed = time.time()
    hosts.power_off(holder)
    return killed


def holder_of(site: Site) -> str:
    """The beat host status names as the lock holder (waits for one)."""

    def named() -> str | None:
        _code, data, _ = site.status()
        holder = data["beat"]["holder"]
        return str(holder) if holder else None

    return wait_for("status to name the beat lock's holder", named, 90)


@pytest.fixture
def on_bookworm_only(release: str) -> None:
    """Skip before ``site`` redeploys the cluster (about 100 s) for a test run on Debian 12."""
    if release != "bookworm":
        # 145 s of CI: beat runs from its own virtualenv (celery-redbeat from PyPI) on
        # either release, and the lock store is the results test's server on both.
        pytest.skip("the standby beat runs once, on Debian 12, to keep CI's time")


def test_a_standby_beat_takes_over_from_a_lost_holder_and_each_slot_is_sent_once(
    on_bookworm_only: None, site: Site, hosts: SandboxHosts, release: str, tmp_path: Path
) -> None:
    """beat.hosts on qc6 and qc7 (celery-redbeat, its lock in the managed backend): status
    names the holder; the holder's host is lost (beat killed, host powered off); the standby
    sends within the lock timeout plus one interval; in the worker journals each slot of the
    10 s schedule is sent at most once and none is missing outside the failover windows.
    Then back to one beat (beat.host): the beat hosts lose their unit."""
    started = time.monotonic()
    more = boot_sandbox((*hosts.names, BEAT_HOSTS[1]), tmp_path / "seven.yml", hosts.env, release)
    managed = standby_site(site, tmp_path / "beat", dict(more.addresses))
    code, data = managed.deploy()
    assert code == 0, data["failures"]
    deployed = time.monotonic() - started
    for host in BEAT_HOSTS:
        assert managed.unit(host, "qsetup-beat.service")["ActiveState"] == "active", host
    t0 = time.time()
    holder = holder_of(managed)
    assert holder in BEAT_HOSTS
    runs = 1 if SOAK_MINUTES <= 0 else 3
    span = max(SOAK_MINUTES * 60, 0)
    kills: list[float] = []
    takeovers: list[float] = []
    for n in range(runs):
        # Sends before each failover: a few slots, spread over the soak's length.
        wait_until = t0 + (span * (n + 1) / (runs + 1) if span else 3 * TICK)
        time.sleep(max(wait_until - time.time(), 0))
        if n:
            holder = holder_of(managed)
        standby = next(h for h in BEAT_HOSTS if h != holder)
        killed = kill_holder(managed, more, holder)
        kills.append(killed)

        def standby_sent(after: float = killed) -> float | None:
            later = [t for t, _ in tick_sends(managed, after) if t > after]
            return later[0] if later else None

        first = wait_for("the standby beat to send", standby_sent, LOCK_TIMEOUT + LOOP + 60)
        takeovers.append(first - killed)
        _code, status, _ = managed.status()
        assert status["beat"]["holder"] == standby, status["beat"]
        assert f"{holder}: unreachable" in " ".join(status["problems"]), status["problems"]
        if span:
            assert "nothing changed" not in more.up_again().stdout  # holder rebuilt empty
            code, data = managed.deploy("--limit", holder)
            assert code == 0, data["failures"]
    time.sleep(max(t0 + span - time.time(), 2 * TICK + 1))
    sends = [t for t, _ in tick_sends(managed, t0)]
    counts = count_slots(sends, kills, TICK)
    print(
        f"\nstandby beat ({release}): deploy {deployed:.1f} s; takeover after the holder's loss "
        f"{', '.join(f'{s:.1f}' for s in takeovers)} s (bound {LOCK_TIMEOUT} + {TICK:.0f}); "
        f"{(time.time() - t0) / 60:.1f} min, {len(kills)} failovers: {counts.sends} sends, "
        f"{counts.twice} slots sent twice, {counts.missing_in_failover} missing in failover "
        f"windows (gaps {counts.failover_gaps} s), {counts.missing_outside} missing outside"
    )
    assert all(s <= LOCK_TIMEOUT + TICK for s in takeovers), takeovers
    assert counts.twice == 0 and counts.missing_outside == 0, counts

    # Back to one beat: the standby's hosts lose their unit, the one host runs today's beat.
    # And results: goes (rpc:// again): its host stops and disables the server.
    more.up_again()

    def one_beat(data: dict[str, Any]) -> None:
        data["beat"] = {"host": WORKERS[0]}
        del data["results"]

    single = site_copy(managed, tmp_path / "single", one_beat)
    single = Site(single.inventory, single.key, dict(more.addresses), single.env)
    code, data = single.deploy()
    assert code == 0, data["failures"]
    for host in BEAT_HOSTS:
        assert "qsetup-beat.service" not in single.qsetup_units(host), host
    assert single.unit(WORKERS[0], "qsetup-beat.service")["ActiveState"] == "active"
    server = single.unit(RESULTS_HOST, "redis-server.service")
    assert (server["ActiveState"], server["UnitFileState"]) == ("inactive", "disabled"), server
    where = f"{RESULTS_HOST}:{RESULTS_PORT}"
    assert probe(single, WORKERS[0], [(RESULTS_HOST, RESULTS_PORT)]) == {where: False}
    assert round_trip(single) == 5  # rpc:// results again
    print(f"standby beat test: {time.monotonic() - started:.1f} s")
