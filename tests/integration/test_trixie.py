"""The demo topology on Debian 13 (trixie) hosts (issue 9): apt and pip workers, Flower.

trixie has no ``python-celery-common``: an ``install: apt`` group gets ``python3-celery``
and ``celery`` there, chosen from the release the preflight reads on the host. The
hosts are a separate sandbox (``harness.SEPARATE["trixie"]``: own state, subnet, bridge
and names) so the bookworm hosts of the other modules are untouched.
"""

from __future__ import annotations

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


def test_demo_topology_deploys_on_trixie(trixie: Site) -> None:
    code, first = trixie.deploy()
    assert code == 0 and first["ok"] is True, first["failures"]
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

    code, second = trixie.deploy()
    assert code == 0, second["failures"]
    assert {h: v["changed"] for h, v in second["hosts"].items()} == dict.fromkeys(
        second["hosts"], 0
    )
