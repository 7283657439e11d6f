"""What every integration module shares: the installed ``qsetup``, sandbox hosts, a site.

The integration tier drives the ``qsetup`` that the README's first command installed
(``pip install .`` into its own virtualenv, no extras), never this checkout through the
test virtualenv: a runtime dependency missing from ``[project.dependencies]`` must fail
here as it fails for a user. ``scripts/test.sh`` exports ``QSETUP_BIN``.

* :func:`qsetup` runs the CLI; :func:`wait_for` polls until something holds.
* :class:`SandboxHosts` is one running sandbox (the session's shared one from
  ``conftest.sandbox_hosts``, or a module's own from :func:`own_sandbox`).
* :class:`Site` is one inventory deployed on sandbox hosts: deploy it, ssh to its
  hosts, read its units. ``SandboxHosts.site(folder)`` makes one from a copy of the
  sandbox's inventory, secrets and app, so a module can change its copy freely.
* :func:`celery_client`, :func:`ping_nodes` and :func:`wait_for_ping` talk to the
  deployed workers as the app's user.
* :class:`TaskStream` sends tasks at a steady rate through a broker cluster while
  something breaks and returns every result with its arrival time (:class:`StreamResult`);
  :func:`quorum_queue` and :func:`queue_home` read where a queue lives;
  :meth:`SandboxHosts.rebuild_empty` gives a host an empty disk under the same name.

Modules that share the session's hosts deploy their own copy in a module fixture (a
deploy converges the hosts to its inventory) and never power a host off; modules that
stop, kill or reboot hosts boot their own with :func:`own_sandbox`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from qsetup.artifacts.tls import client_ca_file
from qsetup.inventory.loader import LoadedInventory, load_inventory

_DEFAULT_BIN = Path("/var/cache/qsetup/venv/bin/qsetup")
DEFAULT_SANDBOX_DIR = Path("/var/lib/qsetup/sandbox")
SANDBOX_VARS = ("QSETUP_SANDBOX_DIR", "QSETUP_SANDBOX_SUBNET", "QSETUP_SANDBOX_BRIDGE")
UP_TIMEOUT = 900  # a cold cache runs debootstrap first
DOWN_TIMEOUT = 300


def _installed_qsetup() -> str:
    explicit = os.environ.get("QSETUP_BIN")
    if explicit:
        return explicit
    if _DEFAULT_BIN.exists():
        return str(_DEFAULT_BIN)
    found = shutil.which("qsetup")
    if found is None:
        raise RuntimeError("no installed qsetup: run 'bash scripts/bootstrap.sh' first")
    return found


QSETUP = [_installed_qsetup()]


def qsetup(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the installed qsetup CLI as a user would; fail the test with its output on error."""
    proc = subprocess.run(
        [*QSETUP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"qsetup {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy (and return that); fail on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# --- sandboxes --------------------------------------------------------------------------


def _unusable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "sandbox hosts need Linux"
    if os.geteuid() != 0:
        return "sandbox hosts need root"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is missing (apt-get install systemd-container)"
    return None


def require_sandbox_machine() -> None:
    """Skip when the machine cannot run sandbox hosts; under CI=true, fail instead."""
    reason = _unusable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def sandbox_env(env: Mapping[str, str]) -> Iterator[None]:
    """Point this process's ``qsetup.sandbox`` calls (state, lock) at the sandbox ``env`` names."""
    saved = {k: os.environ.get(k) for k in SANDBOX_VARS}
    try:
        for k in SANDBOX_VARS:
            if env.get(k):
                os.environ[k] = env[k]
            else:
                os.environ.pop(k, None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class SandboxHosts:
    """Running sandbox hosts, how to reach them, and the inventory ``up`` wrote for them."""

    names: tuple[str, ...]
    addresses: dict[str, str]
    key: Path
    inventory: Path
    secrets: Path
    env: dict[str, str] = field(default_factory=dict)
    """The sandbox's ``QSETUP_SANDBOX_*`` settings (empty: the defaults)."""

    @property
    def state_dir(self) -> Path:
        return Path(self.env.get("QSETUP_SANDBOX_DIR") or DEFAULT_SANDBOX_DIR)

    def ssh(
        self, name: str, *command: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a host through ``qsetup sandbox ssh``."""
        return qsetup("sandbox", "ssh", name, "--", *command, env=self.env, timeout=timeout,
                      check=check)  # fmt: skip

    def list(self) -> list[dict[str, object]]:
        """Return ``qsetup sandbox list --json``."""
        data = json.loads(qsetup("sandbox", "list", "--json", env=self.env).stdout)
        assert isinstance(data, list)
        return data

    def state(self) -> dict[str, Any]:
        """The sandbox's ``state.json`` (PIDs, addresses, the bridge)."""
        data = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
        assert isinstance(data, dict)
        return data

    def record(self, name: str) -> dict[str, Any]:
        """One host's record in the state (``pid``, ``pid_start``, ``leader_pid``, ...)."""
        return next(h for h in self.state()["hosts"] if h["name"] == name)

    @property
    def bridge_address(self) -> str:
        """The controller's address on the sandbox bridge (where its connections come from)."""
        return str(self.state()["bridge_address"])

    def up_again(self) -> subprocess.CompletedProcess[str]:
        """``sandbox up`` for these hosts: a dead host is rebuilt from scratch (not deployed)."""
        return qsetup("sandbox", "up", "--names", ",".join(self.names), env=self.env,
                      timeout=UP_TIMEOUT)  # fmt: skip

    def power_off(self, name: str) -> None:
        """Power a host off from inside and wait until its systemd-nspawn is gone."""
        rec = self.record(name)
        with contextlib.suppress(subprocess.TimeoutExpired):  # the link may drop mid-command
            self.ssh(name, "systemctl", "poweroff", timeout=30, check=False)
        wait_for(f"{name} to power off", lambda: not nspawn_alive(rec), 60)

    def rebuild_empty(self, name: str) -> None:
        """Give a host an empty disk under the same name and address, and boot it.

        Like a machine reinstalled from the same image: power it off, unmount its overlay,
        wipe the overlay's upper (and work) dir, mount it again over the cached tree,
        write the sandbox's files (hostname, /etc/hosts, key, proxy), start nspawn in
        the same network namespace; ``sandbox up`` then waits until it answers.
        """
        from qsetup.sandbox import host as hostmod
        from qsetup.sandbox import state as statemod

        self.power_off(name)
        with sandbox_env(self.env), statemod.state_lock():
            state = statemod.load_state()
            assert state is not None
            rec = state.host(name)
            assert rec is not None
            problem = hostmod.unmount_overlay(rec)
            assert problem is None, problem
            for path in (rec.upper, rec.work):
                shutil.rmtree(path)
            hostmod.mount_overlay(rec, Path(state.rootfs))
            hostmod.write_host_files(
                rec,
                [(h.name, h.address) for h in state.hosts],
                self.key.with_suffix(".pub").read_text(encoding="utf-8"),
                state.proxy_url,
                statemod.state_dir() / "hostkeys",
            )
            pid, start = hostmod.start_nspawn(rec)
            statemod.save_state(
                state.with_host(
                    replace(rec, pid=pid, pid_start=start, leader_pid=None, leader_start=None)
                )
            )
        self.up_again()  # waits for the host to answer and records its init's PID

    def site(self, folder: Path) -> Site:
        """Copy the sandbox inventory, its secrets (0600) and app into ``folder``: a new site."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.inventory.parent / "app", folder / "app", dirs_exist_ok=True)
        shutil.copy(self.inventory, folder / "inventory.yml")
        shutil.copy(self.secrets, folder / "inventory.secrets.yml")
        (folder / "inventory.secrets.yml").chmod(0o600)
        return Site(folder / "inventory.yml", self.key, self.addresses, self.env)


def nspawn_alive(rec: Mapping[str, Any]) -> bool:
    """Whether the systemd-nspawn recorded for a host still runs."""
    from qsetup.sandbox.procs import is_same_process

    return is_same_process(rec["pid"], rec["pid_start"])


def boot_sandbox(
    names: tuple[str, ...] | None,
    inventory: Path,
    env: Mapping[str, str],
    release: str | None = None,
) -> SandboxHosts:
    """``qsetup sandbox up`` (``--names``, else the default qs1..qs3) with ``--inventory-out``.

    Without ``release``, ``QSETUP_TEST_RELEASE`` (``bookworm`` or ``trixie``) picks the
    Debian release of every sandbox the tier boots, so the whole tier can run on Debian 13
    hosts; a module that names its release keeps it.
    """
    which = ["--names", ",".join(names)] if names else ["--hosts", "3"]
    release = release or os.environ.get("QSETUP_TEST_RELEASE") or None
    extra = ["--release", release] if release else []
    qsetup("sandbox", "up", *which, *extra, "--inventory-out", str(inventory), env=env,
           timeout=UP_TIMEOUT)  # fmt: skip
    listed = json.loads(qsetup("sandbox", "list", "--json", env=env).stdout)
    state_dir = Path(env.get("QSETUP_SANDBOX_DIR") or DEFAULT_SANDBOX_DIR)
    return SandboxHosts(
        names=tuple(h["name"] for h in listed),
        addresses={h["name"]: h["address"] for h in listed},
        key=state_dir / "id_ed25519",
        inventory=inventory,
        secrets=inventory.with_name(f"{inventory.stem}.secrets.yml"),
        env=dict(env),
    )


@dataclass(frozen=True)
class SeparateSandbox:
    """Names, subnet and bridge of a module's own sandbox; none is shared with another one."""

    names: tuple[str, ...]
    subnet: str
    bridge: str

    def env(self, state_dir: Path) -> dict[str, str]:
        return {
            "QSETUP_SANDBOX_DIR": str(state_dir),
            "QSETUP_SANDBOX_SUBNET": self.subnet,
            "QSETUP_SANDBOX_BRIDGE": self.bridge,
        }


# Every sandbox the tier boots besides the shared one (qs1..qs3 on 10.213.7.0/24 unless
# QSETUP_TEST_HOST_NAMES and QSETUP_SANDBOX_* move it) and test_sandbox's isolated one
# (10.213.9.0/24): host names are machine-wide (network namespaces, links), so are subnets.
SEPARATE = {
    "trixie": SeparateSandbox(("tx1", "tx2", "tx3"), "10.213.10.0/24", "qsbrx"),
    "failures": SeparateSandbox(("fl1", "fl2", "fl3"), "10.213.21.0/24", "qsbrfl"),
    "reboot": SeparateSandbox(("rb1", "rb2", "rb3"), "10.213.22.0/24", "qsbrrb"),
    # `qsetup demo` always names its hosts qs1..qs3 (see test_demo).
    "demo": SeparateSandbox(("qs1", "qs2", "qs3"), "10.213.23.0/24", "qsbrdm"),
    # qc6 stays outside the inventory: the firewall's outsider.
    "cluster": SeparateSandbox(
        ("qc1", "qc2", "qc3", "qc4", "qc5", "qc6"), "10.213.24.0/24", "qsbrq"
    ),
    "login": SeparateSandbox(("qu1", "qu2"), "10.213.26.0/24", "qsbru"),
    "tls": SeparateSandbox(("qt1", "qt2", "qt3"), "10.213.27.0/24", "qsbrl"),
    "backup": SeparateSandbox(("qb1", "qb2"), "10.213.28.0/24", "qsbrb"),
}


def moved(spec: SeparateSandbox) -> SeparateSandbox:
    """``spec`` moved by ``QSETUP_TEST_SEPARATE`` (``PREFIX:NET``, e.g. ``f:10.214``).

    Lets two checkouts run the same module at once: every host name gets PREFIX in
    front, the bridge gets it behind, and the subnet's first two octets become NET.
    """
    raw = os.environ.get("QSETUP_TEST_SEPARATE", "")
    if not raw:
        return spec
    prefix, _, net = raw.partition(":")
    subnet = spec.subnet
    if net:
        subnet = net + subnet[subnet.index(".", subnet.index(".") + 1) :]
    return SeparateSandbox(
        tuple(prefix + n for n in spec.names), subnet, (spec.bridge + prefix)[:15]
    )


@contextlib.contextmanager
def own_sandbox(which: str, folder: Path, release: str | None = None) -> Iterator[SandboxHosts]:
    """Boot ``SEPARATE[which]`` with its state in ``folder``; always bring it down after."""
    require_sandbox_machine()
    spec = moved(SEPARATE[which])
    env = spec.env(folder / "state")
    try:
        yield boot_sandbox(spec.names, folder / "inventory.yml", env, release)
    finally:
        down = qsetup("sandbox", "down", env=env, timeout=DOWN_TIMEOUT, check=False)
        for _ in range(3):
            if down.returncode == 0:
                break
            # A host killed after it did not stop in time can leave processes in its
            # network namespace for a few seconds (seen in CI after test_reboot, under
            # load): down keeps the state for a retry, and its mount, namespace and
            # bridge stayed behind when nothing retried.
            time.sleep(5)
            down = qsetup("sandbox", "down", env=env, timeout=DOWN_TIMEOUT, check=False)
        if down.returncode != 0:
            # Not a test failure (the tests ran): pytest's warnings summary names what it left.
            warnings.warn(
                f"sandbox down for {which} exited {down.returncode}: {down.stdout}{down.stderr}",
                stacklevel=1,
            )


def names_in_use(names: tuple[str, ...]) -> set[str]:
    """Those of ``names`` some sandbox on this machine uses (its namespace or link exists)."""
    return {
        n
        for n in names
        if Path("/run/netns", f"qs-{n}").exists() or Path("/sys/class/net", f"qsv-{n}").exists()
    }


# --- a deployed inventory -----------------------------------------------------------------


class Site:
    """One deployed inventory on sandbox hosts: run qsetup on it, reach its hosts."""

    def __init__(
        self,
        inventory: Path,
        key: Path,
        addresses: Mapping[str, str],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.inventory = inventory
        self.key = key
        self.addresses = dict(addresses)
        self.env = dict(env or {})

    @property
    def secrets(self) -> Path:
        return self.inventory.with_name(f"{self.inventory.stem}.secrets.yml")

    @property
    def app_dir(self) -> Path:
        return self.inventory.parent / "app"

    def loaded(self) -> LoadedInventory:
        """The inventory and secrets as they are on disk now."""
        return load_inventory(self.inventory)

    def qsetup(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run ``qsetup <args> --inventory <this inventory>``; never fails the test itself."""
        return qsetup(*args, "--inventory", str(self.inventory), env=self.env, timeout=timeout,
                      check=False)  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``qsetup <args> --inventory <this inventory>`` in the background."""
        return subprocess.Popen(
            [*QSETUP, *args, "--inventory", str(self.inventory)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **self.env},
        )  # fmt: skip

    def deploy(self, *args: str) -> tuple[int, dict[str, Any]]:
        """``qsetup deploy --json``: exit code and the JSON it printed."""
        proc = self.qsetup("deploy", "--json", *args)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"deploy printed no JSON (exit {proc.returncode}):\n{proc.stderr}")
        assert isinstance(data, dict)
        return proc.returncode, data

    def status(self, *args: str) -> tuple[int, dict[str, Any], float]:
        """``qsetup status --json <args>`` as a user runs it: exit code (0 or 3), JSON, wall."""
        started = time.monotonic()
        proc = self.qsetup("status", "--json", *args, timeout=120)
        wall = time.monotonic() - started
        assert proc.returncode in (0, 3), proc.stdout + proc.stderr
        return proc.returncode, json.loads(proc.stdout), wall

    def ssh(
        self, host: str, command: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host as root (the sandbox key); ``check``: fail on exit != 0."""
        from qsetup.sandbox.host import ssh_args

        proc = subprocess.run(
            [*ssh_args(self.key, self.addresses[host]), command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            pytest.fail(f"{host}: `{command}` exited {proc.returncode}: {proc.stderr}")
        return proc

    def unit(self, host: str, unit: str) -> dict[str, str]:
        """``systemctl show`` of one unit (LoadState, ActiveState, SubState, MainPID, ...)."""
        props = (
            "LoadState,ActiveState,SubState,Result,MainPID,NRestarts,UnitFileState,"
            "ActiveEnterTimestampMonotonic"
        )
        out = self.ssh(host, f"systemctl show -p {props} -- {unit}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def qsetup_units(self, host: str) -> set[str]:
        """qsetup's units systemd knows on a host that are active or enabled."""
        out = self.ssh(
            host, "systemctl list-units --all --plain --no-legend --state=active,activating "
            "'qsetup-*'; ls /etc/systemd/system/multi-user.target.wants/ | grep '^qsetup-'"
        ).stdout  # fmt: skip
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    def worker_units(self) -> list[tuple[str, str, str]]:
        """(group, host, unit of instance 1) for every worker group and each of its hosts."""
        inv = self.loaded().inventory
        return [
            (g.name, host, g.unit_template.replace("@.service", "@1.service"))
            for g in inv.workers
            for host in g.hosts
        ]

    def main_pids(self) -> dict[str, str]:
        """``unit@host`` -> MainPID of every :meth:`worker_units` unit."""
        return {f"{unit}@{host}": self.unit(host, unit)["MainPID"]
                for _, host, unit in self.worker_units()}  # fmt: skip

    def expected_nodes(self) -> set[str]:
        """The exact Celery node name of every worker the inventory runs (sandbox hostnames)."""
        from qsetup.desired.state import units_by_host

        return {
            u.node_name(host)
            for host, units in units_by_host(self.loaded().inventory).items()
            for u in units
            if u.role == "worker"
        }


def changed_by_host(data: Mapping[str, Any]) -> dict[str, int]:
    """host -> changed, from ``deploy --json``."""
    return {name: h["changed"] for name, h in data["hosts"].items()}


def edit_app_code(site: Site, marker: str) -> None:
    """Change the app's code without changing what it does (a comment line)."""
    tasks = site.app_dir / "proj" / "tasks.py"
    tasks.write_text(tasks.read_text() + f"\n# {marker}\n")


def site_copy(site: Site, folder: Path, edit: Callable[[dict[str, Any]], Any]) -> Site:
    """Another inventory for the same hosts: a copy of ``site`` (secrets, app) edited."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(site.app_dir, folder / "app", dirs_exist_ok=True)
    data = yaml.safe_load(site.inventory.read_text())
    edit(data)
    (folder / "inventory.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy(site.secrets, folder / "inventory.secrets.yml")
    (folder / "inventory.secrets.yml").chmod(0o600)
    return Site(folder / "inventory.yml", site.key, site.addresses, site.env)


# --- the deployed workers, as the app's user ----------------------------------------------


@contextlib.contextmanager
def celery_client(loaded: LoadedInventory) -> Iterator[Any]:
    """A Celery app that talks to the deployed broker as the app's user (its results backend).

    It has the settings qsetup gives the app's own processes (quorum queues and publisher
    confirms with a broker cluster), so it declares the queues as the workers do.
    """
    from celery import Celery

    # Broker URLs, settings and the result backend (the managed one: the app's user).
    from qsetup.artifacts.client import client_config

    capp = Celery("qsetup-probe")
    capp.conf.update(client_config(loaded).conf())
    capp.conf.broker_connection_timeout = 10
    capp.conf.broker_connection_retry_on_startup = False
    try:
        yield capp
    finally:
        capp.close()


def ping_nodes(capp: Any) -> set[str]:
    """Nodes that answer ping (none while the broker cannot be reached)."""
    try:
        replies = capp.control.ping(timeout=3) or []
    except Exception:  # noqa: BLE001 - kombu and amqp raise several kinds
        return set()
    return {node for reply in replies for node in reply}


def wait_for_ping(site: Site, nodes: set[str] | None = None, timeout: float = 90) -> set[str]:
    """Wait until every node in ``nodes`` (default: every worker of the site) answers ping."""
    want = site.expected_nodes() if nodes is None else nodes
    assert want, "no worker node to wait for"
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with celery_client(site.loaded()) as capp:
        while time.monotonic() < deadline:
            seen = ping_nodes(capp)
            if want <= seen:
                return seen
            time.sleep(1)
    pytest.fail(f"after {timeout:.0f} s, {sorted(want - seen)} still do not answer ping")


def deployed_site(hosts: SandboxHosts, folder: Path) -> Site:
    """A copy of ``hosts``' inventory in ``folder``, deployed, with every worker answering.

    The deploy converges the hosts to this copy, whatever another module deployed before.
    """
    site = hosts.site(folder)
    code, data = site.deploy()
    assert code == 0, data["failures"]
    wait_for_ping(site)
    return site


# --- a steady stream of tasks, every result observed -------------------------------------


def rabbitmq_json(site: Site, host: str, *argv: str, timeout: float = 60) -> Any:
    """A ``rabbitmqctl``-family command on a broker host with ``--formatter json``, parsed."""
    import shlex

    command = " ".join(shlex.quote(a) for a in argv) + " --formatter json"
    proc = site.ssh(host, command, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{host}: `{command}` exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout)


def quorum_queue(site: Site, host: str, name: str) -> dict[str, Any] | None:
    """``list_queues`` row (name, type, leader, members, online) of a queue in the app's vhost."""
    vhost = site.loaded().inventory.app.vhost
    rows = rabbitmq_json(
        site, host, "rabbitmqctl", "list_queues", "-p", vhost, "name", "type", "leader",
        "members", "online",
    )  # fmt: skip
    return next((r for r in rows if r["name"] == name), None)


def queue_home(site: Site, host: str, name: str) -> str | None:
    """The node a (classic) queue of the app's vhost lives on, e.g. ``rabbit@qc3``."""
    vhost = site.loaded().inventory.app.vhost
    # The table, not JSON: JSON shows the queue's pid without its node.
    out = site.ssh(
        host, f"rabbitmqctl list_queues -q --no-table-headers -p {vhost} name pid", check=True
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == name:
            return fields[1].strip("<>").rsplit(".", 3)[0]
    return None


def broker_urls_from(loaded: LoadedInventory, first_host: str) -> str:
    """The app's failover broker URL list as ``first_host``'s own clients get it (node first)."""
    from qsetup.artifacts.render import broker_url

    inv = loaded.inventory
    assert first_host in inv.broker.hosts, f"{first_host} runs no broker node"
    return broker_url(inv, loaded.secrets, inv.app.broker_user, inv.app.vhost, first_host)


@dataclass
class StreamResult:
    """What a :class:`TaskStream` sent and every result message that came back."""

    expected: dict[str, int]
    """task id -> the result ``add`` must return, for every task the broker confirmed."""
    sent_at: dict[str, float]
    send_errors: list[str]
    arrivals: list[tuple[float, str, str, Any]]
    """(monotonic, task id, state, result) of every result message, in arrival order."""
    started: float
    longest_send_pause: float

    def first_arrivals(self) -> dict[str, tuple[float, str, Any]]:
        first: dict[str, tuple[float, str, Any]] = {}
        for when, task_id, state, result in self.arrivals:
            first.setdefault(task_id, (when, state, result))
        return first

    @property
    def missing(self) -> list[str]:
        """Tasks sent whose result never came."""
        first = self.first_arrivals()
        return [t for t in self.expected if t not in first]

    @property
    def wrong(self) -> list[tuple[str, str, Any, int]]:
        """Results that came back failed or different from what ``add`` returns."""
        return [
            (t, state, result, self.expected[t])
            for t, (_, state, result) in self.first_arrivals().items()
            if t in self.expected and (state != "SUCCESS" or result != self.expected[t])
        ]

    @property
    def duplicates(self) -> int:
        """Result messages beyond the first for a task (it ran more than once)."""
        return len(self.arrivals) - len(self.first_arrivals())

    def longest_gap(self) -> tuple[float, float]:
        """(longest time between two consecutive first results, when it began after start)."""
        times = sorted(when for when, _, _ in self.first_arrivals().values())
        best, at = 0.0, 0.0
        for a, b in zip(times, times[1:], strict=False):
            if b - a > best:
                best, at = b - a, a - self.started
        return best, at

    def summary(self) -> str:
        gap, at = self.longest_gap()
        errors = f"{len(self.send_errors)} send errors"
        if self.send_errors:
            errors += f" (first {self.send_errors[0]}; last {self.send_errors[-1]})"
        return (
            f"{len(self.expected)} sent, {len(self.first_arrivals())} results "
            f"({self.duplicates} duplicates), {len(self.missing)} missing, "
            f"{len(self.wrong)} wrong; longest gap between results {gap:.2f} s "
            f"(at +{at:.1f} s); longest send pause {self.longest_send_pause:.2f} s; {errors}"
        )


class ResultStream:
    """What both task streams share: the sender and result threads, the result
    messages counted as they arrive, its own reply queue, and ``finish``. A subclass
    implements ``_send`` and ``_consume`` (which calls ``_on_result`` per message
    and sets ``_consuming`` once it consumes)."""

    def _init_stream(self, name: str) -> None:
        import threading
        import uuid

        from kombu import Queue

        # A quorum queue: the measuring instrument must survive any one node going away.
        self.reply_queue = Queue(
            f"qsetup-{name}-{uuid.uuid4().hex[:12]}",
            durable=True,
            auto_delete=False,
            queue_arguments={"x-queue-type": "quorum", "x-expires": 1_800_000},
        )
        self._lock = threading.Lock()
        self._stop_sending = threading.Event()
        self._stop_consuming = threading.Event()
        self._consuming = threading.Event()
        self._sender = threading.Thread(target=self._send, name=f"{name}-sender", daemon=True)
        self._consumer = threading.Thread(target=self._consume, name=f"{name}-results", daemon=True)
        self.result = StreamResult({}, {}, [], [], time.monotonic(), 0.0)

    def _send(self) -> None:
        raise NotImplementedError

    def _consume(self) -> None:
        raise NotImplementedError

    def _start_threads(self) -> None:
        self._consumer.start()
        if not self._consuming.wait(30):
            self._stop_consuming.set()
            pytest.fail("the stream's result consumer did not start within 30 s")
        self.result.started = time.monotonic()
        self._sender.start()

    def _stop_threads(self) -> None:
        self._stop_sending.set()
        self._stop_consuming.set()
        for t in (self._sender, self._consumer):
            if t.is_alive():
                t.join(timeout=60)

    def _on_result(self, body: Any, message: Any) -> None:
        task_id = message.properties.get("correlation_id") or body.get("task_id")
        with self._lock:
            self.result.arrivals.append(
                (time.monotonic(), str(task_id), str(body.get("status")), body.get("result"))
            )
        message.ack()

    def finish(self, timeout: float = 180) -> StreamResult:
        """Stop sending; wait up to ``timeout`` for every sent task's result; return all."""
        self._stop_sending.set()
        self._sender.join(timeout=120)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.result.missing:
                    break
            time.sleep(0.5)
        time.sleep(2)  # a duplicate may still be on its way
        self._stop_consuming.set()
        self._consumer.join(timeout=30)
        with self._lock:
            return self.result


class TaskStream(ResultStream):
    """Send ``proj.tasks.add(i, 1000)`` at ``rate`` per second while something happens.

    The client is the app as a user would run it against a cluster: the failover URL
    list (rotated to start at ``first_host``), qsetup's Celery settings (quorum queues,
    publisher confirms: a send returns once a quorum holds the task) and rpc results.
    The workers send each result to a reply queue of the stream's own that a second
    connection consumes, so every result message is seen with its arrival time,
    duplicates (a task run twice) included. That queue is a quorum queue: the measuring
    instrument must survive any one node going away (rpc's own reply queue is a classic
    queue that lives on the client's node only).

        with TaskStream(site.loaded(), "qc3") as stream:
            ...  # break something
            result = stream.finish()
    """

    def __init__(self, loaded: LoadedInventory, first_host: str, rate: float = 10.0) -> None:

        from celery import Celery

        from qsetup.desired.state import celery_settings

        self.urls = broker_urls_from(loaded, first_host)
        self.rate = rate
        self.capp = Celery("qsetup-stream", broker=self.urls, backend="rpc://")
        self.capp.conf.update(
            celery_settings(loaded.inventory, str(client_ca_file(loaded.path, loaded.inventory)))
        )
        self.capp.conf.broker_connection_timeout = 10
        self.capp.conf.broker_connection_retry_on_startup = False
        self.rpc_reply_queue = ""
        self._init_stream("stream")

    def __enter__(self) -> TaskStream:
        from kombu import pools

        # Celery takes its producer connections from kombu's process-wide pools, keyed by
        # the URL list: without this, a stream would publish over a connection an earlier
        # stream left on whichever node it had failed over to.
        pools.reset()
        self._start_threads()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_threads()
        self._delete_reply_queue()
        self.capp.close()
        from kombu import pools

        pools.reset()

    def _send(self) -> None:
        import uuid

        # rpc's own reply queue (declared at each send) is named after the sending thread.
        self.rpc_reply_queue = str(self.capp.backend.oid)
        period = 1.0 / self.rate
        next_at = last = time.monotonic()
        i = 0
        while not self._stop_sending.is_set():
            task_id = str(uuid.uuid4())
            try:
                self.capp.send_task(
                    "proj.tasks.add", (i, 1000), task_id=task_id, reply_to=self.reply_queue.name
                )
            except Exception as exc:  # noqa: BLE001 - kombu and amqp raise several kinds
                with self._lock:
                    self.result.send_errors.append(
                        f"+{time.monotonic() - self.result.started:.1f} s task {i}: "
                        f"{type(exc).__name__}: {exc}"
                    )
            else:
                with self._lock:
                    self.result.expected[task_id] = i + 1000
                    self.result.sent_at[task_id] = time.monotonic()
            now = time.monotonic()
            self.result.longest_send_pause = max(self.result.longest_send_pause, now - last)
            last = now
            i += 1
            next_at += period
            self._stop_sending.wait(max(0.0, next_at - time.monotonic()))

    def _consume(self) -> None:
        import socket

        from kombu import Connection

        while not self._stop_consuming.is_set():
            try:
                with (
                    Connection(self.urls, connect_timeout=10) as conn,
                    conn.Consumer(self.reply_queue, callbacks=[self._on_result], accept=["json"]),
                ):
                    self._consuming.set()
                    while not self._stop_consuming.is_set():
                        with contextlib.suppress(socket.timeout, TimeoutError):
                            conn.drain_events(timeout=0.5)
            except Exception:  # noqa: BLE001 - its node went away: reconnect to the next one
                time.sleep(1)

    def _delete_reply_queue(self) -> None:
        from kombu import Connection

        with contextlib.suppress(Exception), Connection(self.urls, connect_timeout=10) as conn:
            self.reply_queue.bind(conn.default_channel).delete()
