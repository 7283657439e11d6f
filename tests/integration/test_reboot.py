"""A rebooted host comes back with all its units active within 60 s (issue 6).

Rebooting needs hosts of the module's own (``harness.SEPARATE["reboot"]``), deployed
with the sandbox inventory; the shared hosts are never touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from harness import (
    SandboxHosts,
    Site,
    deployed_site,
    nspawn_alive,
    own_sandbox,
    sandbox_env,
    wait_for,
    wait_for_ping,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    with own_sandbox("reboot", Path(tmp_path_factory.mktemp("reboot-hosts"))) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def site(hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return deployed_site(hosts, Path(tmp_path_factory.mktemp("reboot")))


def reboot(hosts: SandboxHosts, site: Site, host: str) -> float:
    """Reboot a sandbox host in place; returns when its new boot started (monotonic).

    A container's reboot makes systemd-nspawn exit (nothing restarts it, unlike
    systemd-nspawn@.service), and ``sandbox up`` rebuilds a dead host from scratch,
    which is no reboot. So, like a machine's power button, this starts nspawn again
    on the same disk (overlay) and network namespace and records it in the state.
    """
    from qsetup.sandbox import host as hostmod
    from qsetup.sandbox import state as statemod

    rec = hosts.record(host)
    site.ssh(host, "systemctl reboot")
    wait_for(f"{host}'s nspawn to exit on reboot", lambda: not nspawn_alive(rec), 60)
    with sandbox_env(hosts.env), statemod.state_lock():
        state = statemod.load_state()
        assert state is not None
        current = state.host(host)
        assert current is not None
        pid, start = hostmod.start_nspawn(current)
        statemod.save_state(
            state.with_host(
                replace(current, pid=pid, pid_start=start, leader_pid=None, leader_start=None)
            )
        )
    return time.monotonic()


@pytest.mark.parametrize("role", ["workers", "broker"])
def test_a_rebooted_host_has_all_its_units_active_within_60s(
    site: Site, hosts: SandboxHosts, role: str
) -> None:
    inv = site.loaded().inventory
    host = site.worker_units()[-1][1] if role == "workers" else inv.broker.host
    units = site.ssh(
        host, "systemctl list-units 'qsetup-*' 'rabbitmq-server.service' --all --no-legend "
        "--plain | awk '{print $1}'", check=True,
    ).stdout.split()  # fmt: skip
    assert units, f"{host} has no enabled qsetup units"
    booted = reboot(hosts, site, host)

    def all_active() -> bool:
        # One line per unit (the exit code is 0 as soon as any one is active).
        proc = site.ssh(host, "systemctl is-active " + " ".join(units), timeout=10)
        states = proc.stdout.split()
        return len(states) == len(units) and set(states) == {"active"}

    wait_for(f"{units} on {host} to be active after the reboot", all_active, 90, every=1)
    took = time.monotonic() - booted
    print(f"{host} rebooted: {units} active {took:.1f} s after the new boot started")
    assert took <= 60, f"{host}: units active only {took:.1f} s after the reboot"
    wait_for_ping(site)
