"""Deploy: turn the validated inventory into an Ansible run through ansible-runner.

The Ansible inventory and variables are generated from the qsetup model; the
files installed are exactly what ``render_all`` renders. Secrets go to a 0700
scratch directory (in RAM where possible) that is removed when the run ends, so
the runner's data directory never holds one in plain text.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qsetup.build.ansible_data import dump_inventory, dump_vars_file
from qsetup.build.plan import PARTS, build_ansible_inventory
from qsetup.build.render import render_all
from qsetup.build.tls import TlsMaterial
from qsetup.build.tls import prepare as prepare_tls
from qsetup.desired.state import ADMIN_SECRET, broker_admin_password
from qsetup.errors import DeployError
from qsetup.inventory.fields import resolve_relative
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory, tls_hosts
from qsetup.inventory.secrets import redactor
from qsetup.resources import resource_dir

TAGS = PARTS
RUNS_KEPT = 10


@dataclass(frozen=True)
class DeployOptions:
    """How to run a deploy."""

    check: bool = False
    diff: bool = False
    limit: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    verbose: bool = False


@dataclass(frozen=True)
class DeployEvent:
    """One thing that happened during a run, for live progress."""

    kind: str  # "play", "task", "ok", "changed", "failed", "unreachable", "skipped"
    host: str = ""
    task: str = ""
    message: str = ""


@dataclass(frozen=True)
class HostResult:
    """What the run did on one host."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: bool = False


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed on a host, with the module's message."""

    host: str
    task: str
    message: str


@dataclass(frozen=True)
class DeployResult:
    """The outcome of a deploy; a failed play is a result, not an exception."""

    status: str
    rc: int
    hosts: dict[str, HostResult]
    failures: tuple[TaskFailure, ...]
    run_dir: Path
    elapsed: float
    diffs: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every host finished without a failure and was reachable."""
        return (
            self.status == "successful"
            and self.rc == 0
            and all(h.failed == 0 and not h.unreachable for h in self.hosts.values())
        )


# --- preparing the run ------------------------------------------------------------


def _secret_values(loaded: LoadedInventory) -> dict[str, str]:
    values = {name: loaded.secrets.get(name) for name in loaded.secrets.values}
    values.setdefault(ADMIN_SECRET, broker_admin_password(loaded.inventory, loaded.secrets))
    return values


_SKIP = {"__pycache__", ".git", ".qsetup", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


def _stage_app(loaded: LoadedInventory, dest: Path) -> None:
    """Pack the app's code into a reproducible tar: same code, same bytes, no change."""
    source = loaded.inventory.app.source.path
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        if source is None:
            return
        src = resolve_relative(loaded.path, source)
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if any(part in _SKIP for part in rel.parts) or path.suffix == ".pyc":
                continue
            if path.name.endswith(".secrets.yml") or path.is_symlink():
                continue
            info = tar.gettarinfo(str(path), arcname=str(rel))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if path.is_dir() or info.mode & 0o100 else 0o644
            info.mtime = int(path.stat().st_mtime)
            info.pax_headers = {}
            if path.is_dir():
                tar.addfile(info)
            else:
                with path.open("rb") as fh:
                    tar.addfile(info, fh)


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Path]:
    """A 0700 directory for secrets, in RAM when /dev/shm exists; removed afterwards."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - private 0700 dir
    path = Path(tempfile.mkdtemp(prefix="qsetup-", dir=base))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _new_run_dir(inventory_path: Path) -> Path:
    runs = inventory_path.resolve().parent / ".qsetup" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for parent in (runs.parent, runs):
        parent.chmod(0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir = runs / stamp
    run_dir.mkdir(mode=0o700)
    old = sorted(p for p in runs.iterdir() if p.is_dir())
    for stale in old[:-RUNS_KEPT]:
        shutil.rmtree(stale, ignore_errors=True)
    return run_dir


def _envvars(inv: Inventory, inventory_path: Path, scratch: Path) -> dict[str, str]:
    known_hosts = inventory_path.resolve().parent / ".qsetup" / "known_hosts"
    checking = inv.ssh.host_key_checking
    if checking == "off":
        ssh_opts = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    else:
        mode = "accept-new" if checking == "accept-new" else "yes"
        ssh_opts = f"-o StrictHostKeyChecking={mode} -o UserKnownHostsFile={known_hosts}"
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=60s {ssh_opts}",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(scratch / "cp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False" if checking == "off" else "True",
        "ANSIBLE_TIMEOUT": str(inv.ssh.connect_timeout),
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_NO_TARGET_SYSLOG": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
        "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
    }


def check_options(inv: Inventory, options: DeployOptions) -> None:
    """Refuse unknown hosts or tags before anything runs."""
    for host in options.limit:
        if host not in inv.hosts:
            raise DeployError(
                f"--limit: host '{host}' is not in the inventory (hosts: {', '.join(inv.hosts)})"
            )
    for tag in options.tags:
        if tag not in TAGS:
            raise DeployError(f"--tags: unknown tag '{tag}'; use some of {', '.join(TAGS)}")


# --- running --------------------------------------------------------------------


def _message(res: Any) -> str:
    if not isinstance(res, dict):
        return str(res)
    if res.get("censored"):
        return "a task that handles secrets failed (details hidden: no_log)"
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict) and item.get("failed"):
                label = item.get("item")
                if isinstance(label, dict):
                    label = label.get("dest") or label.get("name") or ""
                prefix = f"{label}: " if label and not item.get("censored") else ""
                return prefix + _message(item)
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text.splitlines()[-1][:500] if key != "msg" else text[:800]
    return "failed (no message)"


class _Collector:
    def __init__(
        self,
        progress: Callable[[DeployEvent], None] | None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.progress = progress
        self.redact = redact
        self.failures: list[TaskFailure] = []
        self.diffs: list[tuple[str, str, str]] = []
        self.stats: dict[str, dict[str, int]] = {}

    def emit(self, event: DeployEvent) -> None:
        if self.progress is not None:
            self.progress(event)

    def __call__(self, raw: dict[str, Any]) -> bool:
        kind = raw.get("event", "")
        data = raw.get("event_data") or {}
        host = str(data.get("host") or "")
        task = str(data.get("task") or "")
        res = data.get("res") or {}
        if kind == "playbook_on_play_start":
            self.emit(DeployEvent("play", task=str(data.get("play") or "")))
        elif kind == "playbook_on_task_start":
            self.emit(DeployEvent("task", task=task))
        elif kind == "runner_on_ok":
            changed = bool(isinstance(res, dict) and res.get("changed"))
            self._diff(host, task, res)
            self.emit(DeployEvent("changed" if changed else "ok", host, task))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            msg = self.redact(_message(res))
            self.failures.append(TaskFailure(host, task, msg))
            self.emit(DeployEvent("failed", host, task, msg))
        elif kind == "runner_on_unreachable":
            msg = self.redact(_message(res))
            self.failures.append(TaskFailure(host, task, f"unreachable: {msg}"))
            self.emit(DeployEvent("unreachable", host, task, msg))
        elif kind == "runner_on_skipped":
            self.emit(DeployEvent("skipped", host, task))
        elif kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped", "ignored", "rescued"):
                for h, n in (data.get(key) or {}).items():
                    self.stats.setdefault(h, {})[key] = int(n)
        # Returning False tells ansible-runner not to write this event's JSON to
        # the artifacts directory; the plain stdout log is kept instead.
        return True

    def _diff(self, host: str, task: str, res: Any) -> None:
        if not isinstance(res, dict) or res.get("censored"):
            return
        for item in res.get("results") or []:
            self._diff(host, task, item)
        diff = res.get("diff")
        items = diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []
        for item in items:
            if not isinstance(item, dict):
                continue
            before, after = item.get("before"), item.get("after")
            if isinstance(before, str) and isinstance(after, str) and before != after:
                header = str(item.get("before_header") or item.get("after_header") or "")
                self.diffs.append((host, f"{task}: {header}", _unified(before, after, header)))


def _unified(before: str, after: str, name: str) -> str:
    import difflib

    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{name} (now)",
            tofile=f"{name} (after deploy)",
        )
    )


def run_deploy(
    loaded: LoadedInventory,
    options: DeployOptions,
    progress: Callable[[DeployEvent], None] | None = None,
) -> DeployResult:
    """Run the playbooks against the inventory's hosts and return what happened.

    Raises:
        DeployError: when the run cannot start (bad options, ansible-runner missing).
    """
    check_options(loaded.inventory, options)
    return _run_playbook(loaded, options, "site.yml", {}, progress)


ROLES = ("workers", "flower", "beat", "broker")


def run_restart(
    loaded: LoadedInventory,
    roles: tuple[str, ...],
    limit: tuple[str, ...] = (),
    progress: Callable[[DeployEvent], None] | None = None,
) -> DeployResult:
    """Restart the services of the given roles, one host at a time (rolling).

    Each host's services get a warm shutdown and a start; the next host waits until
    this host's workers answer ping again. A host that does not come back stops the
    rollout there and is reported as failed.

    Raises:
        DeployError: unknown roles or hosts.
    """
    for role in roles:
        if role not in ROLES:
            raise DeployError(f"--role: unknown role '{role}'; use one of {', '.join(ROLES)}")
    options = DeployOptions(limit=limit)
    check_options(loaded.inventory, options)
    return _run_playbook(
        loaded, options, "restart.yml", {"qsetup_restart_roles": list(roles)}, progress
    )


def _tls_material(loaded: LoadedInventory) -> TlsMaterial | None:
    """With TLS: certificates that name each host as it reports itself (read first)."""
    if not loaded.inventory.tls.enabled:
        return None
    from qsetup.status.ssh import run_round

    hosts = run_round(loaded, 10.0)
    hostnames = {h: hosts[h].hostname for h in tls_hosts(loaded.inventory) if h in hosts}
    return prepare_tls(loaded.path, loaded.inventory, hostnames)


def _run_playbook(
    loaded: LoadedInventory,
    options: DeployOptions,
    playbook: str,
    extra: dict[str, Any],
    progress: Callable[[DeployEvent], None] | None,
) -> DeployResult:
    inv = loaded.inventory
    material = _tls_material(loaded)
    artifacts = render_all(inv, loaded.secrets, material)
    key_lines = [
        line
        for pair in (material.hosts.values() if material else ())
        for line in pair.key_pem.splitlines()
        if len(line) >= 16 and not line.startswith("-----")
    ]
    try:
        import ansible_runner
    except ImportError as exc:  # pragma: no cover - a broken install
        raise DeployError(f"ansible-runner is not installed ({exc}); reinstall qsetup") from None

    run_dir = _new_run_dir(loaded.path)
    started = time.monotonic()
    with _scratch_dir() as scratch:
        files = scratch / "files"
        for art in artifacts:
            target = files / art.host / str(art.path).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(art.content)
        _stage_app(loaded, scratch / "app.tar")
        # Checksums (SHA-1, as Ansible's find reports them) of every file to install;
        # kept with the secrets because some files hold passwords.
        sums = {
            f"{a.host}{a.path}": hashlib.sha1(a.content.encode()).hexdigest()  # noqa: S324
            for a in artifacts
        }
        sums["app.tar"] = hashlib.sha1((scratch / "app.tar").read_bytes()).hexdigest()  # noqa: S324
        secrets_file = scratch / "secrets.yml"
        fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(
                dump_vars_file(
                    {"qsetup_secret_values": _secret_values(loaded), "qsetup_file_sums": sums}
                )
            )
        (scratch / "tmp").mkdir(mode=0o700)
        (scratch / "cp").mkdir(mode=0o700)

        ansible_inventory = build_ansible_inventory(
            inv, artifacts, options.tags or PARTS, loaded.path
        )
        # YAML, not JSON: only YAML carries the !unsafe tag that keeps values from being
        # evaluated as templates.
        inv_file = run_dir / "inventory.yml"
        inv_file.write_text(dump_inventory(ansible_inventory), encoding="utf-8")
        inv_file.chmod(0o600)

        cmdline = []
        if options.check:
            cmdline.append("--check")
        if options.diff:
            cmdline.append("--diff")
        # Failure messages quote what hosts said; no secret value ever leaves in one.
        redact = redactor(loaded.secrets, [broker_admin_password(inv, loaded.secrets), *key_lines])
        collector = _Collector(progress, redact)
        forks = max(len(inv.hosts), 5)
        runner = ansible_runner.run(
            private_data_dir=str(run_dir),
            project_dir=str(resource_dir("playbooks")),
            playbook=playbook,
            inventory=str(inv_file),
            extravars={
                "qsetup_files_dir": str(files),
                "qsetup_app_tar": str(scratch / "app.tar"),
                "qsetup_secrets_file": str(secrets_file),
                **extra,
            },
            envvars=_envvars(inv, loaded.path, scratch),
            forks=forks,
            limit=",".join(options.limit) or None,
            cmdline=" ".join(cmdline) or None,
            verbosity=1 if options.verbose else 0,
            quiet=True,
            event_handler=collector,
            ident="run",
        )
    elapsed = time.monotonic() - started
    _scrub_run_dir(run_dir, redact)

    hosts: dict[str, HostResult] = {}
    targets = options.limit or tuple(inv.hosts)
    for name in targets:
        st = collector.stats.get(name, {})
        hosts[name] = HostResult(
            ok=st.get("ok", 0),
            changed=st.get("changed", 0),
            failed=st.get("failures", 0),
            skipped=st.get("skipped", 0),
            unreachable=st.get("dark", 0) > 0,
        )
    return DeployResult(
        status=str(runner.status),
        rc=int(runner.rc or 0),
        hosts=hosts,
        failures=tuple(collector.failures),
        run_dir=run_dir,
        elapsed=elapsed,
        diffs=tuple(collector.diffs),
    )


def _scrub_run_dir(run_dir: Path, redact: Callable[[str], str] = str) -> None:
    """Make the run directory private (0700 dirs, 0600 files) and free of secret values.

    Tasks that handle secrets are no_log; as a second line, any secret value that a
    host's output still carried into the log is replaced with ***.
    """
    for root, dirs, names in os.walk(run_dir):
        for d in dirs:
            (Path(root) / d).chmod(0o700)
        for n in names:
            p = Path(root) / n
            if p.is_symlink():
                continue
            p.chmod(stat.S_IRUSR | stat.S_IWUSR)
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            clean = redact(text)
            if clean != text:
                p.write_text(clean, encoding="utf-8")
