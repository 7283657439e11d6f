"""``up``, ``down``, ``list`` and ``ssh`` for the sandbox: the functions the CLI calls."""

from __future__ import annotations

import ipaddress
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from qsetup.errors import SandboxError
from qsetup.sandbox import cgroup, limits, network, proxy, rootfs
from qsetup.sandbox import host as hostmod
from qsetup.sandbox.host import HostStatus
from qsetup.sandbox.login import LOGIN_USER, ensure_login_user
from qsetup.sandbox.procs import have_command, is_same_process, signal_recorded, wait_gone
from qsetup.sandbox.state import (
    HostRecord,
    SandboxState,
    check_name,
    clear_state,
    ensure_state_dir,
    load_state,
    save_state,
    state_dir,
    state_lock,
)

if TYPE_CHECKING:
    from qsetup.inventory.scaffold import StarterSpec

Progress = Callable[[str], None]
DEFAULT_RELEASE = "bookworm"
DEFAULT_HOSTS = 3
STOP_GRACE = 10.0
KILL_GRACE = 5.0

# command -> Debian package providing it
UP_COMMANDS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "tinyproxy": "tinyproxy",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
    "chroot": "coreutils",
}
DOWN_COMMANDS = {"ip": "iproute2", "umount": "mount"}


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did.

    Attributes:
        hosts: status of every sandbox host, in creation order.
        started: names of hosts booted by this call (empty: nothing changed).
        key: the private key that logs in on every host, as ``login_user`` and as root.
        inventory: inventory written by ``--inventory-out``, if any.
        secrets: the secrets file written next to it, if any.
        login_user: the ordinary user (passwordless sudo) the inventory logs in as.
        login_updated: running hosts that got (or had repaired) the login user now.
    """

    hosts: tuple[HostStatus, ...]
    started: tuple[str, ...]
    key: Path
    inventory: Path | None = None
    secrets: Path | None = None
    login_user: str = LOGIN_USER
    login_updated: tuple[str, ...] = ()


@dataclass(frozen=True)
class DownResult:
    """What ``down`` removed: the host names stopped (empty when nothing was up)."""

    stopped: tuple[str, ...]
    proxy_stopped: bool
    bridge_deleted: bool


def missing_packages(commands: dict[str, str]) -> list[str]:
    """Return the Debian packages (sorted, unique) whose commands are missing."""
    return sorted({pkg for cmd, pkg in commands.items() if not have_command(cmd)})


def check_machine(commands: dict[str, str]) -> None:
    """Refuse clearly when this machine cannot run the sandbox.

    Raises:
        SandboxError: not Linux, not root, a needed Debian package is missing, or
            overlayfs is unavailable; the message says how to fix it.
    """
    if not sys.platform.startswith("linux"):
        raise SandboxError(
            f"qsetup sandbox needs Linux (this is {sys.platform}); run it on a Debian machine or VM"
        )
    if os.geteuid() != 0:
        raise SandboxError("qsetup sandbox needs root; run it again with sudo")
    missing = missing_packages(commands)
    if missing:
        raise SandboxError(
            "qsetup sandbox needs Debian packages that are missing; run: "
            f"apt-get update && apt-get install -y {' '.join(missing)}"
        )
    if "mount" in commands and not _overlay_supported():
        raise SandboxError(
            "the kernel has no overlay file system; run `modprobe overlay` (or use a kernel "
            "with CONFIG_OVERLAY_FS)"
        )


def _overlay_supported() -> bool:
    def listed() -> bool:
        text = Path("/proc/filesystems").read_text(encoding="utf-8")
        return any(line.split()[-1] == "overlay" for line in text.splitlines() if line.split())

    if listed():
        return True
    if have_command("modprobe"):
        subprocess.run(["modprobe", "overlay"], capture_output=True, timeout=30, check=False)
    return listed()


def wanted_names(hosts: int | None, names: Sequence[str] | None) -> list[str]:
    """Return the host names asked for: ``--names`` as given, else ``qs1..qsN``.

    Raises:
        SandboxError: both or neither is sensible, a name is invalid or repeated.
    """
    if names:
        if hosts is not None:
            raise SandboxError("give either --hosts or --names, not both")
        checked = [check_name(n.strip()) for n in names if n.strip()]
        if len(set(checked)) != len(checked):
            raise SandboxError(f"--names repeats a name: {','.join(checked)}")
        if not checked:
            raise SandboxError("--names is empty; give names like --names qs1,qs2")
        return checked
    count = DEFAULT_HOSTS if hosts is None else hosts
    if count < 1:
        raise SandboxError("--hosts must be at least 1")
    return [f"qs{i}" for i in range(1, count + 1)]


def _new_record(state: SandboxState, name: str, net: ipaddress.IPv4Network) -> HostRecord:
    used = {h.address for h in state.hosts}
    index = 0
    while network.host_address(net, index) in used:
        index += 1
    netns, veth_host, veth_peer = network.interface_names(name)
    return HostRecord(
        name=name,
        address=network.host_address(net, index),
        netns=netns,
        veth_host=veth_host,
        veth_peer=veth_peer,
        host_dir=str(state_dir() / "hosts" / name),
        log=str(state_dir() / "logs" / f"{name}.log"),
    )


class _Recorder:
    """Holds the current state and writes it to disk on every change."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        save_state(state)

    def set(self, state: SandboxState) -> SandboxState:
        self.state = state
        save_state(state)
        return state

    def host(self, rec: HostRecord) -> HostRecord:
        self.set(self.state.with_host(rec))
        return rec


def up(
    hosts: int | None = None,
    names: Sequence[str] | None = None,
    release: str | None = None,
    inventory_out: Path | None = None,
    progress: Progress = _quiet,
    boot_timeout: float = 180.0,
) -> UpResult:
    """Build (once), boot and wait for the sandbox hosts; add hosts that are missing.

    Args:
        hosts: number of hosts ``qs1..qsN`` (default 3) when ``names`` is not given.
        names: explicit host names.
        release: Debian release of the hosts (default: the one the sandbox runs, else
            bookworm).
        inventory_out: where to write a complete starter inventory, if anywhere.
        progress: called with one line per step.
        boot_timeout: seconds to wait for all hosts to be ready.

    Returns:
        The hosts' status, which were started now, the key and inventory paths.

    Raises:
        SandboxError: the machine cannot run the sandbox, the address range is in
            use, or a host failed to build or boot (``down`` cleans up after that).
    """
    check_machine(UP_COMMANDS)
    want = wanted_names(hosts, names)
    net = network.sandbox_subnet()
    ensure_state_dir()
    with state_lock():
        state = load_state()
        if state is not None and state.subnet != str(net):
            raise SandboxError(
                f"the sandbox is up on {state.subnet}, not {net}; run `qsetup sandbox down` "
                "first or unset QSETUP_SANDBOX_SUBNET"
            )
        release = release or (state.release if state is not None else "") or DEFAULT_RELEASE
        if state is not None and state.release and state.release != release:
            raise SandboxError(
                f"the sandbox runs Debian {state.release}, not {release}; run "
                "`qsetup sandbox down` first to switch releases"
            )
        # Refuse before building anything when the kernel cannot hold the hosts' systemd.
        recorded = state.hosts if state is not None else ()
        running = {h.name for h in recorded if hostmod.host_alive(h)}
        booting = {*want, *(h.name for h in recorded)} - running
        limits.ensure_inotify_limits(len(booting), progress)
        if state is None:
            _check_free(net)
            state = SandboxState(
                subnet=str(net),
                bridge=network.bridge_name(),
                bridge_address=network.bridge_address(net),
                proxy_port=proxy.PROXY_PORT,
            )
        rec = _Recorder(state)
        lower = rootfs.ensure_rootfs(release, progress)
        rec.set(replace(rec.state, release=release, rootfs=str(lower)))
        key = hostmod.ensure_keypair(state_dir())
        public_key = key.with_suffix(".pub").read_text(encoding="utf-8")

        if not rec.state.bridge_created or not network.link_exists(rec.state.bridge):
            progress(f"creating bridge {rec.state.bridge} ({rec.state.bridge_address}/24)")
            rec.set(replace(rec.state, bridge_created=True))
            network.create_bridge(rec.state.bridge, rec.state.bridge_address)
        _ensure_proxy(rec, net, progress)

        # Hosts recorded but no longer alive (killed, crashed up) are rebuilt from scratch.
        for old in rec.state.hosts:
            if not hostmod.host_alive(old):
                progress(f"{old.name}: not running; cleaning it up to boot it again")
                problems = _teardown_hosts([old], progress)
                if problems:
                    raise SandboxError(
                        f"cannot clean up {old.name}: {'; '.join(problems)}; "
                        "run `qsetup sandbox down` and try again"
                    )
        names_all = [h.name for h in rec.state.hosts] + [
            n for n in want if rec.state.host(n) is None
        ]
        for name in names_all:
            if rec.state.host(name) is None:
                rec.host(_new_record(rec.state, name, net))
        alive = {h.name for h in rec.state.hosts if hostmod.host_alive(h) and h.pid is not None}
        to_start = [h for h in rec.state.hosts if h.name not in alive]
        pairs = [(h.name, h.address) for h in rec.state.hosts]

        login_updated: list[str] = []
        for h in rec.state.hosts:
            if h.name in alive and hostmod.update_etc_hosts(h, pairs):
                progress(f"{h.name}: /etc/hosts now names {len(pairs)} hosts")
            # Hosts booted by an older qsetup get the login user without a rebuild.
            if h.name in alive and ensure_login_user(h.merged, public_key):
                login_updated.append(h.name)
                progress(f"{h.name}: login user {LOGIN_USER} (sudo, the sandbox key) is set up")
        for h in to_start:
            progress(f"{h.name}: preparing {h.address} (overlay, network, ssh key, proxy)")
            h = rec.host(replace(h, mounted=True))
            hostmod.mount_overlay(h, lower)
            hostmod.write_host_files(
                h, pairs, public_key, rec.state.proxy_url, state_dir() / "hostkeys"
            )
            network.create_host_network(
                h.netns,
                h.veth_host,
                h.veth_peer,
                rec.state.bridge,
                h.address,
                rec.state.bridge_address,
            )
            pid, start = hostmod.start_nspawn(h)
            rec.host(replace(h, pid=pid, pid_start=start, leader_pid=None, leader_start=None))
            progress(f"{h.name}: booting (systemd-nspawn pid {pid})")

        def on_leader(h: HostRecord, pid: int, start: int) -> HostRecord:
            return rec.host(replace(h, leader_pid=pid, leader_start=start))

        if to_start:
            progress(f"waiting for {len(to_start)} host(s) to answer over SSH")
        started_names = {h.name for h in to_start}
        statuses = hostmod.wait_ready(
            key,
            [h for h in rec.state.hosts if h.name in started_names or h.name in alive],
            boot_timeout,
            progress if to_start else _quiet,
            on_leader,
        )
        by_name = {s.name: s for s in statuses}
        result_hosts = tuple(by_name[h.name] for h in rec.state.hosts)
        inventory = secrets = None
        if inventory_out is not None:
            inventory, secrets = write_inventory(inventory_out, rec.state, key)
            progress(f"wrote inventory {inventory} and secrets {secrets}")
        return UpResult(
            hosts=result_hosts,
            started=tuple(h.name for h in to_start),
            key=key,
            inventory=inventory,
            secrets=secrets,
            login_updated=tuple(login_updated),
        )


def _check_free(net: ipaddress.IPv4Network) -> None:
    conflicts = network.find_subnet_conflicts(net, bridge="")
    bridge = network.bridge_name()
    if network.link_exists(bridge):
        conflicts.append(f"interface {bridge} exists but the sandbox did not record it")
    if conflicts:
        raise SandboxError(
            f"the sandbox address range {net} is already in use ({'; '.join(conflicts)}); "
            "set QSETUP_SANDBOX_SUBNET to a free private /24 (e.g. 10.213.8.0/24) or remove "
            "what uses it"
        )


def _ensure_proxy(rec: _Recorder, net: ipaddress.IPv4Network, progress: Progress) -> None:
    st = rec.state
    if proxy.proxy_alive(st.proxy_pid, st.proxy_start, st.bridge_address, st.proxy_port):
        return
    _stop_proxy(st)
    progress(f"starting the package proxy on {st.bridge_address}:{st.proxy_port}")
    pid, start = proxy.start_proxy(state_dir(), st.bridge_address, net, st.proxy_port)
    rec.set(replace(rec.state, proxy_pid=pid, proxy_start=start))


def _stop_proxy(st: SandboxState) -> bool:
    if not is_same_process(st.proxy_pid, st.proxy_start):
        return False
    signal_recorded(st.proxy_pid, st.proxy_start, signal.SIGTERM)
    if not wait_gone([(st.proxy_pid, st.proxy_start)], KILL_GRACE):
        signal_recorded(st.proxy_pid, st.proxy_start, signal.SIGKILL)
        wait_gone([(st.proxy_pid, st.proxy_start)], KILL_GRACE)
    return True


def _teardown_hosts(recs: Sequence[HostRecord], progress: Progress) -> list[str]:
    """Stop hosts (all at once: TERM, wait, KILL), then unmount and delete their pieces."""
    procs = [
        (p, s) for r in recs for p, s in ((r.pid, r.pid_start), (r.leader_pid, r.leader_start))
    ]
    alive = [r for r in recs if hostmod.any_process_alive(r)]
    for r in alive:
        progress(f"{r.name}: stopping")
        hostmod.request_stop(r)
    if alive and not wait_gone(procs, STOP_GRACE):
        for r in alive:
            if hostmod.any_process_alive(r):
                progress(f"{r.name}: did not stop within {STOP_GRACE:.0f} s; killing it")
                hostmod.force_stop(r)
        wait_gone(procs, KILL_GRACE)
    problems: list[str] = []
    for r in recs:
        if hostmod.any_process_alive(r):
            problems.append(f"{r.name}: process {r.pid} or {r.leader_pid} will not exit")
            continue
        left = network.netns_pids(r.netns)
        if left:
            problems.append(
                f"{r.name}: processes {left} still live in namespace {r.netns}; "
                "stop them, then run `qsetup sandbox down` again"
            )
            continue
        problem = hostmod.unmount_overlay(r)
        if problem:
            problems.append(problem)
            continue
        problems.extend(network.delete_host_network(r.netns, r.veth_host))
        hostmod.wipe_host_dir(r)
        cgroup.remove(r.name)
    return problems


def down(progress: Progress = _quiet) -> DownResult:
    """Stop every sandbox host and remove everything ``up`` made.

    Uses only what the state file records: PIDs (checked against their start
    time), mounts, namespaces, links, the bridge and the proxy. Succeeds when
    nothing is up.

    Args:
        progress: called with one line per step.

    Returns:
        What was stopped and removed.

    Raises:
        SandboxError: something could not be removed (the state keeps it for a retry).
    """
    check_machine(DOWN_COMMANDS)
    if load_state() is None:
        return DownResult((), proxy_stopped=False, bridge_deleted=False)
    with state_lock():
        state = load_state()
        if state is None:
            return DownResult((), proxy_stopped=False, bridge_deleted=False)
        stopped = tuple(h.name for h in state.hosts)
        problems = _teardown_hosts(state.hosts, progress)
        remaining = tuple(h for h in state.hosts if Path(h.host_dir).exists())
        state = replace(state, hosts=remaining)
        save_state(state)
        proxy_stopped = _stop_proxy(state)
        if proxy_stopped:
            progress("stopped the package proxy")
        if is_same_process(state.proxy_pid, state.proxy_start):
            problems.append(f"proxy process {state.proxy_pid} will not exit")
        bridge_deleted = False
        if not remaining and state.bridge_created:
            bridge_problems = network.delete_bridge(state.bridge)
            problems.extend(bridge_problems)
            bridge_deleted = not bridge_problems
            if bridge_deleted:
                progress(f"deleted bridge {state.bridge}")
        if problems:
            raise SandboxError(
                "sandbox down left some things behind: "
                + "; ".join(problems)
                + "; fix them and run `qsetup sandbox down` again"
            )
        clear_state()
        (state_dir() / "tinyproxy.conf").unlink(missing_ok=True)
        return DownResult(stopped, proxy_stopped=proxy_stopped, bridge_deleted=bridge_deleted)


def list_hosts() -> list[HostStatus]:
    """Return every recorded host with its state (``running``, ``degraded``, ``dead``...).

    Raises:
        SandboxError: not root (the state and key are root's).
    """
    check_machine({"ssh": "openssh-client"})
    state = load_state()
    if state is None:
        return []
    key = state_dir() / "id_ed25519"
    return hostmod.probe_hosts(key, state.hosts)


def ssh(name: str, command: Sequence[str] = (), timeout: float | None = None) -> int:
    """Open SSH to sandbox host ``name`` (or run ``command`` there) and return its exit code.

    One command argument is passed to the remote shell as is (like ``ssh``);
    several are quoted so each arrives as one argument.

    Args:
        name: the sandbox host.
        command: remote command; empty for an interactive shell.
        timeout: seconds before the session is ended; None for none (interactive use).

    Raises:
        SandboxError: the host is unknown or the sandbox is not up.
    """
    check_machine({"ssh": "openssh-client"})
    state = load_state()
    rec = state.host(name) if state else None
    if state is None or rec is None:
        known = ", ".join(h.name for h in state.hosts) if state else "none"
        raise SandboxError(
            f"no sandbox host named {name!r} (hosts: {known}); run `qsetup sandbox up` "
            "or `qsetup sandbox list`"
        )
    key = state_dir() / "id_ed25519"
    args = hostmod.ssh_args(key, rec.address, tty=not command and sys.stdin.isatty())
    if len(command) == 1:
        args.append(command[0])
    elif command:
        args.append(shlex.join(command))
    try:
        # Interactive sessions may last as long as the user wants; callers pass a timeout.
        return subprocess.run(args, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        raise SandboxError(
            f"ssh to {name} did not finish within {timeout} s; try a shorter command"
        ) from None


def format_status(status: HostStatus) -> str:
    """Return one human line for a host: name, address, state (and failed units)."""
    line = f"{status.name:<10} {status.address:<15} {status.state}"
    if status.failed_units:
        line += f" (failed: {', '.join(status.failed_units)})"
    return line


def write_inventory(path: Path, state: SandboxState, key: Path) -> tuple[Path, Path]:
    """Write a starter inventory for the sandbox hosts with ``qsetup.inventory.scaffold``.

    Broker and Flower go on the first host, apt workers on the second, pip workers
    on the third (falling back to the hosts that exist).

    Returns:
        (inventory path, secrets path).

    Raises:
        SandboxError: the scaffold module is unavailable.
    """
    try:
        from qsetup.inventory.scaffold import StarterHost, StarterSpec, write_starter_files
    except ImportError as exc:
        raise SandboxError(
            f"cannot write an inventory: qsetup.inventory.scaffold is unavailable ({exc}); "
            "update qsetup or drop --inventory-out"
        ) from None
    names = [h.name for h in state.hosts]
    spec = StarterSpec(
        hosts=tuple(StarterHost(name=h.name, address=h.address) for h in state.hosts),
        broker=names[0],
        flower=names[0],
        apt_workers=(names[min(1, len(names) - 1)],),
        pip_workers=(names[min(2, len(names) - 1)],),
        # Servers are reached as an ordinary user with sudo; so are sandbox hosts.
        ssh_user=LOGIN_USER,
        ssh_key=str(key.resolve()),
        app_module="proj",
        app_path=None,
        # Host keys are kept per address across rebuilds, so accept-new stays valid.
        host_key_checking="accept-new",
        # The machine that runs qsetup reaches the broker and Flower from the bridge
        # (status, the demo, the tests' task streams): the firewall lets it.
        allow_from=(state.bridge_address,),
    )
    unchanged = _inventory_unchanged(path, spec)
    if unchanged is not None:
        return unchanged
    inventory, secrets = write_starter_files(path, spec, force=True)
    return Path(inventory), Path(secrets)


def _inventory_unchanged(path: Path, spec: StarterSpec) -> tuple[Path, Path] | None:
    """Return the existing (inventory, secrets) if rewriting would change nothing.

    Rewriting would generate new secrets, so an ``up`` that is already up keeps them.
    """
    try:
        from qsetup.inventory.scaffold import render_inventory
        from qsetup.inventory.secrets import default_secrets_path
    except ImportError:
        return None
    secrets = Path(default_secrets_path(path))
    if not (path.is_file() and secrets.is_file() and (path.resolve().parent / "app").is_dir()):
        return None
    text = render_inventory(replace(spec, app_path="app"), path.name, secrets.name)
    if path.read_text(encoding="utf-8") != text:
        return None
    return path, secrets
