"""The demo topology on Debian 13 (trixie) hosts (issue 9): apt and pip workers, Flower.

trixie has no ``python-celery-common``: an ``install: apt`` group gets ``python3-celery``
and ``celery`` there, chosen from the release the preflight reads on the host. The
hosts are a separate sandbox (``harness.SEPARATE["trixie"]``: own state, subnet, bridge
and names) so the bookworm hosts of the other modules are untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Site, own_sandbox

from qsetup.remote.roundtrip import send_task

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trixie(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = Path(tmp_path_factory.mktemp("trixie"))
    with own_sandbox("trixie", folder, release="trixie") as hosts:
        # The inventory `sandbox up` wrote, deployed in place.
        yield Site(hosts.inventory, hosts.key, hosts.addresses, hosts.env)


# What Debian 12's RabbitMQ 3.10.8 writes beside its database (seen on a bookworm node).
FLAGS_3_10 = """[classic_mirrored_queue_version,drop_unroutable_metric,empty_basic_get_metric,
 implicit_default_bindings,maintenance_mode_status,quorum_queue,stream_queue,
 user_limits,virtual_host_metadata].
"""
DATA = "/var/lib/rabbitmq/mnesia"
# Told to enable only this stable flag at its first start (besides the required ones),
# a 4.0.5 node leaves the other stable flags (message_containers_deaths_v2,
# rabbit_exchange_type_local_random, rabbitmq_4.0.0) off until something enables them.
# (4.0.5 refuses the "-name" form: BOOT FAILED, incompatible_feature_flags.)
ONLY = "quorum_queue_non_voters"
HELD_BACK = "message_containers_deaths_v2"
DROP_IN = "/etc/systemd/system/rabbitmq-server.service.d/held-back-flag.conf"


def _flags(site: Site, host: str) -> dict[str, tuple[str, str]]:
    out = site.ssh(host, "rabbitmqctl -q list_feature_flags name state stability --formatter json",
                   check=True).stdout  # fmt: skip
    return {f["name"]: (f["state"], f["stability"]) for f in json.loads(out)}


def test_demo_topology_deploys_on_trixie(trixie: Site) -> None:
    broker = trixie.loaded().inventory.broker.host
    node = f"{DATA}/rabbit@{broker}-feature_flags"
    # Data of Debian 12's RabbitMQ (a host rebuilt on trixie keeping /var/lib/rabbitmq):
    # the preflight refuses before apt runs on any host, naming the way out.
    trixie.ssh(broker, f"mkdir -p {DATA} && cat > {node} <<'EOF'\n{FLAGS_3_10}EOF", check=True)
    code, refused = trixie.deploy()
    assert code != 0 and refused["ok"] is False
    lines = json.dumps(refused["failures"])
    assert f"{node} is the data of a RabbitMQ older than 3.13" in lines, lines
    assert "qsetup backup" in lines and "qsetup restore" in lines, lines
    for host in trixie.addresses:
        states = trixie.ssh(host, "for p in rabbitmq-server python3-celery; do dpkg-query -W "
                            "-f='${db:Status-Abbrev}' $p 2>/dev/null; done").stdout  # fmt: skip
        assert "ii" not in states, f"{host}: a package was installed after the refusal"
    trixie.ssh(broker, "rm -rf /var/lib/rabbitmq", check=True)

    # The node starts with stable flags held back; the deploy enables them.
    trixie.ssh(broker, f"mkdir -p {Path(DROP_IN).parent} && printf '[Service]\\n"
               f"Environment=RABBITMQ_FEATURE_FLAGS={ONLY}\\n' > {DROP_IN} "
               "&& systemctl daemon-reload", check=True)  # fmt: skip
    code, first = trixie.deploy()
    assert code == 0 and first["ok"] is True, first["failures"]
    flags = _flags(trixie, broker)
    assert flags[HELD_BACK] == ("enabled", "stable"), flags
    left = {name for name, (state, stability) in flags.items()
            if stability == "stable" and state != "enabled"}  # fmt: skip
    assert left == set(), left
    # epmd (RabbitMQ 4.0's Erlang 27 on trixie) listens on loopback and where the node's
    # name resolves (the sandbox maps it to the host's address) only; rabbitmqctl, which
    # asks epmd there, answered above.
    epmd = trixie.ssh(broker, "ss -ltnH 'sport = :4369' | awk '{print $4}'", check=True).stdout
    expected = ["127.0.0.1:4369", f"{trixie.addresses[broker]}:4369"]
    assert sorted(epmd.split()) == sorted(expected), epmd
    loaded = trixie.loaded()
    seen = {send_task(loaded, "proj.tasks.add", (2, 3), timeout=60).result for _ in range(3)}
    assert seen == {5}

    code, status, _ = trixie.status()
    assert code == 0 and status["healthy"] is True, status["problems"]
    versions = {
        path: version
        for host in status["hosts"].values()
        for path, version in host["celery_versions"].items()
    }
    # The apt group runs Debian 13's Celery (5.5), the pip group a virtualenv's.
    assert versions["/usr/bin/celery"].startswith("5.5"), versions
    assert status["broker"]["rabbitmq_version"].startswith("4."), status["broker"]
    deprecated = status["hosts"][broker]["deprecated_features_used"]
    print(f"\nRabbitMQ 4 deprecated features in use after the demo's tasks: {deprecated}")

    code, second = trixie.deploy()
    assert code == 0, second["failures"]
    assert {h: v["changed"] for h, v in second["hosts"].items()} == dict.fromkeys(
        second["hosts"], 0
    )
