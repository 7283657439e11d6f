"""The wire to Ansible: one ansible-runner run of a playbook, read into a result.

A failed play is a result, not an exception: ``run_playbook`` reads the runner's status,
rc and per-host stats, and the failures and diffs from its events (redacted). It raises
only when the run cannot start. What to run (files, variables, the Ansible inventory) is
prepared by the caller (``qsetup.ops.deploy``) in a 0700 scratch directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qsetup.converge.compare import Difference
from qsetup.errors import DeployError
from qsetup.inventory.model import Inventory
from qsetup.inventory.vault import private_dir
from qsetup.resources import resource_dir

RUNS_KEPT = 10
KEEP_EVENTS_ENV = "QSETUP_KEEP_EVENTS"
# Settings no ANSIBLE_* variable can set (ansible-core's config/base.yml gives them no env):
# they go into an ansible.cfg of the run's own, which ANSIBLE_CONFIG points at.
# Only this cfg is read: no ansible.cfg of the machine, the user or the working directory.
ANSIBLE_CFG_DEFAULTS = {
    # How long Ansible's main process sleeps between its passes over the hosts (default
    # 0.001 s, a busy loop on the controller). Between passes, qsetup's strategies also
    # wait for a result to come (qsetup/remote/wake.py), so this is the most a result
    # waits once it came, not how often the workers are polled.
    "internal_poll_interval": "0.01",
}


def render_ansible_cfg(defaults: Mapping[str, str]) -> str:
    """Return an ansible.cfg holding ``defaults`` in its ``[defaults]`` section."""
    lines = ["[defaults]", *(f"{key} = {value}" for key, value in sorted(defaults.items()))]
    return "\n".join(lines) + "\n"


def keep_events(verbose: bool) -> bool:
    """Whether to keep every event's JSON in the run directory: --verbose or the env var."""
    return verbose or os.environ.get(KEEP_EVENTS_ENV, "") == "1"


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
    unreachable: bool = False


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
    differences: tuple[Difference, ...] = ()
    """What the one read and the one comparison found before the run (empty when the
    hosts were not read first: ``--tags``, ``--limit``, ``--verbose``, restarts)."""
    ansible_ran: bool = True
    """False when nothing differed anywhere and the deploy answered from the read."""

    @property
    def ok(self) -> bool:
        """True when every host finished without a failure and was reachable."""
        return (
            self.status == "successful"
            and self.rc == 0
            and all(h.failed == 0 and not h.unreachable for h in self.hosts.values())
        )


def scratch_dir() -> contextlib.AbstractContextManager[Path]:
    """A 0700 directory for secrets, in RAM when /dev/shm exists; removed afterwards."""
    return private_dir("qsetup-")


def new_run_dir(inventory_path: Path) -> Path:
    """A new private run directory beside the inventory; only the newest runs are kept."""
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


PAYLOAD_CACHE_ENV = "QSETUP_PAYLOAD_CACHE"
PAYLOAD_CACHES_KEPT = 3


def payload_cache_dir(base: Path | None = None) -> Path | None:
    """Where Ansible's module payloads (AnsiballZ) last between runs of this qsetup.

    Ansible builds each module's payload once per run (parsing the module and every
    module_utils file it imports: about 6 controller CPU-seconds of a 3-host first
    deploy) in a per-process directory it deletes at exit; the vars plugin
    (playbooks/vars_plugins/qsetup_run.py) links that cache to this directory instead.
    Ansible names a cached payload by the module's name only, so the directory is named
    by what a payload holds: ansible-core's version, Python's, and the content and place
    of qsetup's modules and module_utils. Another qsetup or Ansible gets another
    directory; the oldest beyond :data:`PAYLOAD_CACHES_KEPT` are removed. Payloads hold
    module code only, never a task's arguments. ``base``: default
    ``$XDG_CACHE_HOME/qsetup/ansiballz`` (``~/.cache/qsetup/ansiballz``). None when it
    cannot be made (a home that is not writable): Ansible then builds as it always did.
    """
    import ansible

    playbooks = resource_dir("playbooks")
    digest = hashlib.sha256()
    digest.update(f"{ansible.__version__}\0{sys.version}\0{playbooks}\0".encode())
    for sub in ("library", "module_utils"):
        for path in sorted((playbooks / sub).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    if base is None:
        cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(cache_home) / "qsetup" / "ansiballz"
    folder = base / digest.hexdigest()[:16]
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        base.chmod(0o700)
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.touch()  # its age says when it was last used
        others = sorted(
            (p for p in base.iterdir() if p.is_dir() and p != folder),
            key=lambda p: p.stat().st_mtime,
        )
    except OSError:
        return None
    for stale in others[: max(0, len(others) - (PAYLOAD_CACHES_KEPT - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def ansible_envvars(inv: Inventory, inventory_path: Path, scratch: Path) -> dict[str, str]:
    """Ansible's settings for a run: SSH options from the inventory, quiet, no facts."""
    known_hosts = inventory_path.resolve().parent / ".qsetup" / "known_hosts"
    checking = inv.ssh.host_key_checking
    if checking == "off":
        ssh_opts = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    else:
        mode = "accept-new" if checking == "accept-new" else "yes"
        ssh_opts = f"-o StrictHostKeyChecking={mode} -o UserKnownHostsFile={known_hosts}"
    bindir = str(Path(sys.executable).parent)
    cache = payload_cache_dir()
    return {
        **({PAYLOAD_CACHE_ENV: str(cache)} if cache is not None else {}),
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_PIPELINING": "True",
        # Plays that name no strategy: linear, woken by results (qsetup/remote/wake.py;
        # the others name qsetup_free). Both live in playbooks/strategy_plugins.
        "ANSIBLE_STRATEGY": "qsetup_linear",
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
        # Stays in the RAM scratch: Ansible writes copy/template contents and ssh-agent
        # keys there. Its module payload cache, in a per-process dir under it that it
        # deletes at exit, is linked to a lasting one by the vars plugin.
        "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
        "ANSIBLE_CONFIG": str(scratch / "ansible.cfg"),
        # Each host's variables file (deploy.write_host_vars), read by the vars plugin
        # playbooks/vars_plugins/qsetup_run.py.
        "QSETUP_RUN_VARS_DIR": str(scratch / "vars"),
    }


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
    msg = str(res.get("msg") or "").strip()
    if msg == "non-zero return code":
        # A command's own words are in its output; Ansible's msg says only that it failed.
        said = _last_line(res.get("stderr")) or _last_line(res.get("stdout"))
        if said:
            return f"exit {res.get('rc')}: {said}"
    if msg:
        return msg[:800]
    for key in ("stderr", "module_stderr", "reason"):
        said = _last_line(res.get(key))
        if said:
            return said
    return "failed (no message)"


def _last_line(value: Any) -> str:
    lines = str(value or "").strip().splitlines()
    return lines[-1].strip()[:500] if lines else ""


def unreachable_message(
    res: Any, address: str | None, changed: bool, known: str | None = None
) -> str:
    """One line for a host SSH could not reach: where, why when known, and what to do.

    The task that met the dead host may handle secrets (no_log): its result then carries
    no SSH error, and the line says why as the deploy's first read found it (``known``),
    else plainly that SSH could not connect, never "details hidden".
    """
    reason = "" if not isinstance(res, dict) or res.get("censored") else _message(res)
    where = f" ({address})" if address else ""
    after = (
        "it was changed before it went away: run this again once it is back"
        if changed
        else "no change was made there"
    )
    if not reason or reason == "failed (no message)":
        if known:
            return f"unreachable{where}: {known}; fix that, then run this again; {after}"
        reason = "SSH could not connect"
    return (
        f"unreachable{where}: {reason}; power it on or check its SSH access "
        f"(address, port, user, key), then run this again; {after}"
    )


class _Collector:
    def __init__(
        self,
        progress: Callable[[DeployEvent], None] | None,
        redact: Callable[[str], str] = str,
        keep_events: bool = False,
        addresses: Mapping[str, str] | None = None,
        unreachable_why: Mapping[str, str] | None = None,
    ) -> None:
        self.progress = progress
        self.unreachable_why = dict(unreachable_why or {})
        self.redact = redact
        self.keep_events = keep_events
        self.addresses = dict(addresses or {})
        self.changed_hosts: set[str] = set()
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
            if changed:
                self.changed_hosts.add(host)
            self._diff(host, task, res)
            self.emit(DeployEvent("changed" if changed else "ok", host, task))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            msg = self.redact(_message(res))
            if any(f.host == host and msg == f"{f.task}: {f.message}" for f in self.failures):
                # A block's rescue repeating the failure it caught (TASK: MESSAGE) to stop
                # the host: the failure is named once, by the task that failed.
                return self.keep_events
            self.failures.append(TaskFailure(host, task, msg))
            self.emit(DeployEvent("failed", host, task, msg))
        elif kind == "runner_on_unreachable":
            if any(f.host == host and f.unreachable for f in self.failures):
                return self.keep_events  # one line per dead host, however many tasks met it
            address = self.addresses.get(host)
            msg = self.redact(
                unreachable_message(
                    res, address, host in self.changed_hosts, self.unreachable_why.get(host)
                )
            )
            self.failures.append(TaskFailure(host, task, msg, unreachable=True))
            self.emit(DeployEvent("unreachable", host, task, msg))
        elif kind == "runner_on_skipped":
            self.emit(DeployEvent("skipped", host, task))
        elif kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped", "ignored", "rescued"):
                for h, n in (data.get(key) or {}).items():
                    self.stats.setdefault(h, {})[key] = int(n)
        # ansible-runner writes this event's JSON to artifacts/run/job_events/ only when
        # this returns True (--verbose or QSETUP_KEEP_EVENTS=1; scrub_run_dir then
        # replaces any secret value left there); the plain stdout log is written either way.
        return self.keep_events

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


def require_ansible_runner() -> Any:
    """The ansible_runner module.

    Raises:
        DeployError: when it is not installed (a broken install of qsetup).
    """
    try:
        import ansible_runner
    except ImportError as exc:  # pragma: no cover - a broken install
        raise DeployError(f"ansible-runner is not installed ({exc}); reinstall qsetup") from None
    return ansible_runner


def run_playbook(
    inv: Inventory,
    inventory_path: Path,
    *,
    playbook: str,
    run_dir: Path,
    scratch: Path,
    inventory_file: Path,
    extravars: Mapping[str, Any],
    started: float,
    limit: tuple[str, ...] = (),
    check: bool = False,
    diff: bool = False,
    verbose: bool = False,
    progress: Callable[[DeployEvent], None] | None = None,
    redact: Callable[[str], str] = str,
    unreachable_why: Mapping[str, str] | None = None,
) -> DeployResult:
    """Run ``playbook`` with ansible-runner and return what happened on each host.

    ``redact`` hides secret values in failure messages and in the run directory's logs;
    ``started`` (``time.monotonic()``) is when the caller began preparing the run;
    ``unreachable_why``: why a host could not be read before the run, for the line of a
    host Ansible then finds unreachable without saying why.

    Raises:
        DeployError: when ansible-runner is missing.
    """
    ansible_runner = require_ansible_runner()
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    addresses = {name: h.address for name, h in inv.hosts.items()}
    collector = _Collector(progress, redact, keep_events(verbose), addresses, unreachable_why)
    (scratch / "ansible.cfg").write_text(render_ansible_cfg(ANSIBLE_CFG_DEFAULTS), encoding="utf-8")
    forks = max(len(inv.hosts), 5)
    runner = ansible_runner.run(
        private_data_dir=str(run_dir),
        project_dir=str(resource_dir("playbooks")),
        playbook=playbook,
        inventory=str(inventory_file),
        extravars=dict(extravars),
        envvars=ansible_envvars(inv, inventory_path, scratch),
        forks=forks,
        limit=",".join(limit) or None,
        cmdline=" ".join(cmdline) or None,
        verbosity=1 if verbose else 0,
        quiet=True,
        event_handler=collector,
        ident="run",
    )
    elapsed = time.monotonic() - started
    scrub_run_dir(run_dir, redact)

    failures = list(collector.failures)
    rc = int(runner.rc or 0)
    if rc != 0 and not failures:
        # Ansible itself stopped (a playbook error), not a task on a host: say why.
        failures.append(TaskFailure("", "ansible-playbook", ansible_error(run_dir, rc)))
    hosts: dict[str, HostResult] = {}
    targets = limit or tuple(inv.hosts)
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
        rc=rc,
        hosts=hosts,
        failures=tuple(failures),
        run_dir=run_dir,
        elapsed=elapsed,
        diffs=tuple(collector.diffs),
    )


def ansible_error(run_dir: Path, rc: int) -> str:
    """Why ansible-playbook ended with ``rc`` when no task on a host failed: its error line.

    Read from the run's log (already scrubbed of secret values), the first line Ansible
    marks as an error (``[ERROR]:``, or ``ERROR!`` before ansible-core 2.19).
    """
    log = run_dir / "artifacts" / "run" / "stdout"
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    said = next(
        (
            line.strip()
            for line in text.splitlines()
            if line.lstrip().startswith(("[ERROR]:", "ERROR!"))
        ),
        "",
    )
    said = said.removeprefix("[ERROR]:").removeprefix("ERROR!").strip()
    return (
        f"exited {rc} before any host failed: {said or 'no error line in its log'}; "
        f"qsetup's playbooks should not do that, please report it (log: {log})"
    )


def scrub_run_dir(run_dir: Path, redact: Callable[[str], str] = str) -> None:
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
