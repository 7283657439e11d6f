"""The qsetup command line: each command is a few lines around one core call."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from qsetup import __version__
from qsetup.errors import QsetupError

T = TypeVar("T")

app = typer.Typer(
    name="qsetup",
    help="Stand up RabbitMQ, Celery workers and Flower on Linux machines from one YAML inventory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # Click's plain help: typer's rich panels cut long option names and help words with
    # an ellipsis in 80 columns and print a <bool> metavar after every flag.
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(
    help="Local test hosts (systemd-nspawn containers) to try qsetup on. Needs root.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")
secrets_app = typer.Typer(
    help="Keep the secrets, keys and backups beside the inventory encrypted (ansible-vault "
    "format); rotate one password.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_BAD_INPUT = 1
EXIT_DEGRADED = 3
EXIT_INTERNAL = 4
_QUICK_EXIT: list[bool] = []
"""Set by a read-only command that has printed its result: :func:`main` then ends the
process without Python's teardown (see :func:`_exit`)."""


def _debug_log_path() -> Path:
    return Path(tempfile.gettempdir()) / f"qsetup-debug-{os.getuid()}.log"


def run_guarded(core: Callable[[], T]) -> T:
    """Run one core call inside the shared error boundary.

    A QsetupError prints its lines in red and exits 1; anything else is an
    internal error: the traceback goes to a debug log, never to the user.
    """
    try:
        return core()
    except QsetupError as exc:
        for line in exc.lines():
            # Text, not markup: a line quotes user input, which may hold '[' (rich markup).
            err.print(Text(line, style="red"), highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    except Exception:  # noqa: BLE001 - this is the boundary that must catch everything
        log = _debug_log_path()
        try:
            with log.open("a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
            where = f"details in {log}"
        except OSError:
            where = "no debug log could be written"
        err.print(Text(f"internal error ({where}); please report it", style="red"))
        raise typer.Exit(EXIT_INTERNAL) from None


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"qsetup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version_callback),
    ] = False,
) -> None:
    """Stand up RabbitMQ, Celery workers and Flower from one YAML inventory."""


# --- commands ---------------------------------------------------------------

InventoryOpt = Annotated[
    Path,
    typer.Option("--inventory", "-i", help="The inventory YAML file."),
]
SecretsOpt = Annotated[
    Path | None,
    typer.Option(
        "--secrets",
        help="The secrets file (default: <inventory stem>.secrets.yml beside the inventory).",
    ),
]

VaultOpt = Annotated[
    Path | None,
    typer.Option(
        "--vault-password-file",
        help="The file holding the vault password of encrypted secrets (default: the file "
        "QSETUP_VAULT_PASSWORD_FILE names, else a prompt on a terminal).",
    ),
]


def _passwords(file: Path | None, *, confirm: bool = False) -> Any:
    """Where the vault password comes from: the option, the environment, or a prompt."""
    from qsetup.inventory.vault import PasswordSource

    def ask(question: str) -> str:
        try:
            return str(
                typer.prompt(question, hide_input=True, err=True, confirmation_prompt=confirm)
            )
        except typer.Abort:
            raise QsetupError("no vault password was given") from None

    return PasswordSource(file, ask if sys.stdin.isatty() else None)


def _load(
    inventory: Path, secrets: Path | None, vault_file: Path | None, *, check_files: bool = False
) -> Any:
    """The inventory and its secrets (decrypted when encrypted); else one line each, exit 1."""
    from qsetup.inventory.loader import load_inventory

    return run_guarded(
        lambda: load_inventory(
            inventory, secrets, check_files=check_files, passwords=_passwords(vault_file)
        )
    )


@app.command()
def init(
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", help="Where to write the inventory.")
    ] = Path("inventory.yml"),
    broker: Annotated[
        str | None, typer.Option(help="Address or name of the RabbitMQ host.")
    ] = None,
    workers: Annotated[
        str | None, typer.Option(help="Comma-separated addresses of the worker hosts.")
    ] = None,
    flower: Annotated[
        str | None, typer.Option(help="Address of the Flower host (default: the broker host).")
    ] = None,
    app_module: Annotated[
        str | None, typer.Option(help="The Celery app module, the -A argument.")
    ] = None,
    install: Annotated[
        str | None, typer.Option(help="How workers install Celery: apt or pip.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Take the defaults without prompting.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing inventory/secrets.")] = False,
) -> None:
    """Write a commented inventory and its secrets file (strong generated passwords, 0600)."""
    from qsetup.inventory.scaffold import build_spec, write_starter_files

    def ask(value: str | None, question: str, default: str) -> str:
        if value is not None:
            return value
        if yes:
            return default
        try:
            return str(typer.prompt(question, default=default))
        except typer.Abort:  # end of input (e.g. no terminal in CI) or Ctrl-C
            raise QsetupError(
                f"init got no answer to '{question}'; pass --yes to take the defaults "
                "or give the values as options (--broker, --workers, ...)"
            ) from None

    def core() -> tuple[Path, Path]:
        b = ask(broker, "RabbitMQ host (address or DNS name)", "rabbit1")
        w = ask(workers, "Worker hosts (comma-separated)", "worker1,worker2")
        f = ask(flower, "Flower host", b)
        m = ask(app_module, "Celery app module (-A)", "proj")
        how = ask(install, "Install Celery on workers with apt or pip", "pip")
        if how not in ("apt", "pip"):
            raise QsetupError(f"--install must be apt or pip, got {how!r}")
        hosts = [h.strip() for h in w.split(",") if h.strip()]
        spec = build_spec(b, hosts, f, install=how, app_module=m)
        return write_starter_files(inventory, spec, force=force)

    inv_path, sec_path = run_guarded(core)
    out.print(f"wrote {inv_path} and {sec_path} (mode 0600)")
    out.print(f"next: qsetup validate --inventory {inv_path}")


@app.command()
def validate(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Check an inventory and its secrets; print FILE:LINE:COL: field: message per problem."""
    loaded = _load(inventory, secrets, vault_password_file, check_files=True)
    inv = loaded.inventory
    counts = (
        (len(inv.hosts), "host"),
        (len(inv.workers), "worker group"),
        (len(inv.broker.users), "broker user"),
    )
    said = ", ".join(f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in counts)
    out.print(f"{inventory}: valid ({said})", markup=False)


@app.command()
def render(
    inventory: InventoryOpt,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write DIR/<host>/<path> into.")
    ],
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Write every file deploy would install, per host, under OUT/<host>/<absolute path>.

    Also OUT/prometheus-scrape.yml: Prometheus jobs for RabbitMQ's nodes and Flower.
    """
    from qsetup.artifacts.metrics import scrape_config_text
    from qsetup.artifacts.render import render_all, write_artifacts
    from qsetup.artifacts.tls import prepare as prepare_tls
    from qsetup.inventory.loader import load_inventory

    def core() -> int:
        loaded = load_inventory(inventory, secrets, passwords=_passwords(vault_password_file))
        material = prepare_tls(loaded.path, loaded.inventory, None, vault=loaded.vault)
        artifacts = render_all(loaded.inventory, loaded.secrets, material)
        try:
            write_artifacts(artifacts, out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "prometheus-scrape.yml").write_text(
                scrape_config_text(loaded.inventory, loaded.path), encoding="utf-8"
            )
        except OSError as exc:
            where = exc.filename or out_dir
            raise QsetupError(
                f"cannot write {where} ({exc.strerror}); choose another --out directory"
            ) from None
        return len(artifacts)

    count = run_guarded(core)
    out.print(
        f"rendered {count} files into {out_dir}/<host>/ and a Prometheus scrape "
        f"configuration into {out_dir}/prometheus-scrape.yml"
    )


@app.command()
def schema() -> None:
    """Print the inventory's JSON Schema (for editors' YAML language servers)."""
    import json

    from qsetup.inventory.model import Inventory

    text = run_guarded(lambda: json.dumps(Inventory.model_json_schema(), indent=2))
    sys.stdout.write(text + "\n")


@app.command()
def deploy(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
    check: Annotated[bool, typer.Option(help="Show what would change; change nothing.")] = False,
    diff: Annotated[bool, typer.Option(help="Show file differences.")] = False,
    limit: Annotated[
        str | None, typer.Option(help="Only these hosts (comma-separated inventory names).")
    ] = None,
    tags: Annotated[
        str | None, typer.Option(help="Only these parts: broker,workers,beat,flower,results.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result only.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More Ansible detail.")] = False,
) -> None:
    """Install and configure RabbitMQ, the Celery workers, beat and Flower on the hosts.

    Exit codes: 0 every host ok, 3 a host failed or was unreachable (the others
    still finish), 1 bad input (no host touched), 4 internal error.
    """
    import json

    from qsetup.ops.deploy import DeployOptions, run_deploy
    from qsetup.ui.progress import run_with_progress
    from qsetup.ui.report import deploy_differences, deploy_json, deploy_summary

    options = DeployOptions(
        check=check,
        diff=diff,
        limit=tuple(h.strip() for h in (limit or "").split(",") if h.strip()),
        tags=tuple(t.strip() for t in (tags or "").split(",") if t.strip()),
        verbose=verbose,
    )
    loaded = _load(inventory, secrets, vault_password_file, check_files=True)
    hosts = list(options.limit or loaded.inventory.hosts)

    def core() -> Any:
        if json_out:
            return run_deploy(loaded, options)
        return run_with_progress(out, hosts, lambda on: run_deploy(loaded, options, on))

    result = run_guarded(core)
    if json_out:
        sys.stdout.write(json.dumps(deploy_json(result), indent=2) + "\n")
    else:
        if options.check or any(not d.fixable for d in result.differences):
            out.print(deploy_differences(result))
        for host, title, text in result.diffs:
            out.print(f"--- {host}: {title}", markup=False)
            out.print(text, markup=False)
        out.print(deploy_summary(result))
    raise typer.Exit(0 if result.ok else EXIT_DEGRADED)


@app.command()
def status(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result only.")] = False,
    watch: Annotated[
        float | None,
        typer.Option(min=0.5, help="Check again every SECONDS, refreshing in place, until Ctrl-C."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.5,
            help="Seconds per host (SSH connect, command) and per HTTP call "
            "(default: ssh.connect_timeout, at most 5).",
        ),
    ] = None,
) -> None:
    """Check every host, unit, the broker, the workers and Flower; list what is wrong.

    Exit codes: 0 healthy, 3 degraded (a problem or an unreachable host), 1 bad
    input, 4 internal error.
    """
    import json
    import time

    from qsetup.status.prefetch import Prefetch

    # Last run's SSH clients start before the inventory loads (~0.18 s); the read below
    # keeps only those whose command line it computes too.
    early = _EARLY.pop() if _EARLY else None
    if early is not None and early.made_for(inventory, timeout):
        prefetch = early
    else:
        if early is not None:
            early.discard()
        prefetch = Prefetch(inventory, timeout).start()
    try:
        from qsetup.status.ssh import ReadRound, effective_timeout, start_reading

        loaded = _load(inventory, secrets, vault_password_file)
        # The hosts' SSH clients connect while the rest of status loads (~0.15 s of imports).
        reading = run_guarded(
            lambda: start_reading(loaded, effective_timeout(loaded, timeout), prefetch)
        )
    finally:
        prefetch.discard()

    from qsetup.status.check import check_status
    from qsetup.status.model import SystemStatus
    from qsetup.ui.report import status_json, status_view

    def show(result: SystemStatus) -> None:
        if json_out:
            sys.stdout.write(json.dumps(status_json(result), indent=None if watch else 2) + "\n")
            sys.stdout.flush()
        else:
            out.print(status_view(result))

    def watch_loop(every: float) -> SystemStatus | None:
        last: SystemStatus | None = None
        pending: ReadRound | None = reading  # the round started above, then a new one per check
        try:
            if out.is_terminal and not json_out:
                from rich.live import Live

                with Live(console=out, auto_refresh=False) as live:
                    while True:
                        last = check_status(loaded, timeout, reading=pending)
                        pending = None
                        live.update(status_view(last), refresh=True)
                        time.sleep(every)
            else:  # a pipe or --json: one report (one JSON line) per round
                while True:
                    last = check_status(loaded, timeout, reading=pending)
                    pending = None
                    show(last)
                    time.sleep(every)
        except KeyboardInterrupt:
            return last

    if watch is None:
        result = run_guarded(lambda: check_status(loaded, timeout, reading=reading))
        show(result)
    else:
        maybe = run_guarded(lambda: watch_loop(watch))
        if maybe is None:
            raise typer.Exit(130)
        result = maybe
    _QUICK_EXIT.append(True)
    raise typer.Exit(0 if result.healthy else EXIT_DEGRADED)


@app.command()
def restart(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
    role: Annotated[
        str, typer.Option(help="Which services: workers, flower, beat or broker (comma-separated).")
    ] = "workers",
    limit: Annotated[
        str | None, typer.Option(help="Only these hosts (comma-separated inventory names).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result only.")] = False,
) -> None:
    """Restart services one host at a time, waiting until each host's workers answer ping.

    Each worker gets a warm shutdown (running tasks finish within TimeoutStopSec).
    A host that does not come back stops the restart there. With RabbitMQ running on
    no broker node, a worker restart is refused before any host is touched. Exit
    codes: 0 done, 3 a host failed or did not come back (or no RabbitMQ runs), 1 bad
    input, 4 internal error.
    """
    import json

    from qsetup.ops.deploy import run_restart
    from qsetup.ui.progress import run_with_progress
    from qsetup.ui.report import deploy_json, deploy_summary

    loaded = _load(inventory, secrets, vault_password_file, check_files=True)
    roles = tuple(r.strip() for r in role.split(",") if r.strip())
    hosts = tuple(h.strip() for h in (limit or "").split(",") if h.strip())

    def core() -> Any:
        if json_out:
            return run_restart(loaded, roles, hosts)
        shown = list(hosts or loaded.inventory.hosts)
        return run_with_progress(out, shown, lambda on: run_restart(loaded, roles, hosts, on))

    result = run_guarded(core)
    if json_out:
        sys.stdout.write(json.dumps(deploy_json(result), indent=2) + "\n")
    else:
        out.print(deploy_summary(result, "restart"))
    raise typer.Exit(0 if result.ok else EXIT_DEGRADED)


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--dir", help="Where the demo's inventory and secrets go.")
    ] = Path("qsetup-demo"),
    down_: Annotated[
        bool, typer.Option("--down", help="Remove the demo's sandbox hosts instead.")
    ] = False,
) -> None:
    """Try qsetup on this machine: 3 sandbox hosts, a deploy, and a task round trip.

    Needs root. The inventory stays in --dir, so `qsetup status --inventory
    qsetup-demo/inventory.yml` works afterwards; `qsetup demo --down` removes the hosts.
    """
    from qsetup.ops.demo import run_demo, stop_demo
    from qsetup.ui.report import deploy_summary, event_line

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False)

    if down_:
        run_guarded(lambda: stop_demo(say))
        say("sandbox removed")
        return

    def on_event(event: Any) -> None:
        line = event_line(event)
        if line:
            say(line)

    result = run_guarded(lambda: run_demo(workdir, say, on_event))
    out.print(deploy_summary(result.deploy))
    if result.roundtrip is None:
        raise typer.Exit(EXIT_DEGRADED)
    trip = result.roundtrip
    say(
        f"{trip.task}{trip.args} = {trip.result} (worker on {trip.worker_host}, "
        f"{trip.seconds:.2f} s round trip)"
    )
    say(f"inventory: {result.inventory}; Flower on the first host, port 5555")


# --- the app's side: celery and client-config (qsetup/ops/client.py) -------------

AsUserOpt = Annotated[
    str | None,
    typer.Option("--as", help="The broker user to connect as (default: app.broker_user)."),
]
VhostOpt = Annotated[
    str | None,
    typer.Option(help="The vhost (default: app.vhost, or the user's own without rights there)."),
]


@app.command(context_settings={"ignore_unknown_options": True})
def celery(
    inventory: InventoryOpt,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- ARGS...", help="Celery's own arguments, e.g. -- inspect registered."
        ),
    ] = None,
    as_user: AsUserOpt = None,
    vhost: VhostOpt = None,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Run the local celery against the deployed broker: -- inspect registered.

    Celery gets every broker node's URL, TLS with the CA beside the inventory,
    the queue type and the result backend from a settings module only you can
    read (0600, removed when celery exits); the password is never in argv.
    Without -A, celery's own app sends tasks by name:
    -- call proj.tasks.add --args '[2, 3]'.

    Exit codes: celery's own; 1 bad input or no celery command (nothing ran),
    4 internal error.
    """
    from qsetup.artifacts.client import client_config
    from qsetup.ops.client import run_celery

    loaded = _load(inventory, secrets, vault_password_file)
    code = run_guarded(lambda: run_celery(client_config(loaded, as_user, vhost), args or []))
    raise typer.Exit(code)


@app.command("client-config")
def client_config_(
    inventory: InventoryOpt,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="env (KEY='value' lines), python (a Celery configuration module) or json.",
        ),
    ] = "env",
    as_user: AsUserOpt = None,
    vhost: VhostOpt = None,
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets", help="Print the password instead of <secret:NAME> references."
        ),
    ] = False,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Print the settings an app that sends tasks needs: URLs, TLS, queues, results.

    Passwords show as <secret:NAME> (the name in the secrets file) unless
    --show-secrets is given.

    Exit codes: 0, 1 bad input, 4 internal error.
    """
    import json

    from qsetup.artifacts.client import client_config, client_json, render_env, render_python

    if format_ not in ("env", "python", "json"):
        err.print(Text(f"--format must be env, python or json, got {format_!r}", style="red"))
        raise typer.Exit(EXIT_BAD_INPUT)
    loaded = _load(inventory, secrets, vault_password_file)

    def core() -> str:
        cfg = client_config(loaded, as_user, vhost)
        if not show_secrets:
            cfg = cfg.masked()
        if format_ == "json":
            return json.dumps(client_json(cfg), indent=2) + "\n"
        return render_python(cfg) if format_ == "python" else render_env(cfg)

    sys.stdout.write(run_guarded(core))


# --- backup and restore (qsetup/ops/backup.py) -----------------------------------


@app.command()
def backup(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The file to write (a folder: the default name in it). Default: "
            "<inventory stem>.backup-<UTC time>.json beside the inventory.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result only.")] = False,
) -> None:
    """Export the broker's definitions to a file only you can read (mode 0600).

    The file is RabbitMQ's own export (GET /api/definitions) from the first
    broker node whose management API answers: vhosts, users WITH THEIR
    PASSWORD HASHES, permissions, topic permissions, policies, queues,
    exchanges, bindings, parameters and global parameters (no messages).
    Keep it like the secrets file.

    Exit codes: 0 written, 1 bad input, 3 no broker node's API answered,
    4 internal error.
    """
    import json

    from qsetup.ops.backup import run_backup
    from qsetup.ui.report_backup import backup_json, backup_line

    loaded = _load(inventory, secrets, vault_password_file)
    result = run_guarded(lambda: run_backup(loaded, out_file))
    if json_out:
        sys.stdout.write(json.dumps(backup_json(result), indent=2) + "\n")
    else:
        out.print(backup_line(result), markup=False)


@app.command()
def restore(
    inventory: InventoryOpt,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="A definitions file (qsetup backup's, or RabbitMQ's export)."
        ),
    ],
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result only.")] = False,
) -> None:
    """Import a definitions file into the deployed broker (deploy it first).

    Vhosts, queues, exchanges, bindings, policies, parameters and users come
    back (messages are not in the file). Users qsetup manages keep what
    deploy gave them, with their permissions: qsetup-admin (an old hash
    would lock qsetup out), the inventory's users and Flower's API user
    (their passwords come from the secrets file; an old hash would undo a
    password changed since the backup and lock the workers out). The
    inventory's policies stay as it says, and guest is left out when the
    inventory deletes it. The output names all of these.

    The file holds password hashes: it is refused when other users can read
    it (chmod 600 FILE), and so is a file that is not a RabbitMQ definitions
    export, before the broker is asked.

    Exit codes: 0 imported, 1 bad input (nothing changed), 3 no broker
    node's API answered or the broker refused the import, 4 internal error.
    """
    import json

    from qsetup.ops.backup import run_restore
    from qsetup.ui.report_backup import restore_json, restore_line

    loaded = _load(inventory, secrets, vault_password_file)
    result = run_guarded(lambda: run_restore(loaded, file))
    if json_out:
        sys.stdout.write(json.dumps(restore_json(result), indent=2) + "\n")
    else:
        out.print(restore_line(result), markup=False)


# --- end backup and restore ---------------------------------------------------


# --- secrets at rest (qsetup/ops/secrets.py) ------------------------------------


def _vault_change_lines(change: Any, done: str, already: str) -> None:
    for path in change.changed:
        _say(f"{done} {path}")
    for path in change.unchanged:
        _say(f"{path}: {already}")


@secrets_app.command()
def encrypt(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Encrypt the secrets file, qsetup's CA and host keys and the backups beside the inventory.

    ansible-vault's format (ansible-vault view opens them with the same password). Every
    command reads them from then on, and what qsetup writes later (keys, backups, a
    rotated password) is encrypted too. Exit codes: 0 done, 1 bad input or a wrong
    password (nothing changed), 4 internal error.
    """
    from qsetup.ops.secrets import encrypt_files

    passwords = _passwords(vault_password_file, confirm=True)
    change = run_guarded(lambda: encrypt_files(inventory, secrets, passwords))
    _vault_change_lines(change, "encrypted", "already encrypted")


@secrets_app.command()
def decrypt(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Write the secrets file, keys and backups beside the inventory in plain text again (0600).

    Exit codes: 0 done, 1 bad input or a wrong password (nothing changed), 4 internal error.
    """
    from qsetup.ops.secrets import decrypt_files

    passwords = _passwords(vault_password_file)
    change = run_guarded(lambda: decrypt_files(inventory, secrets, passwords))
    _vault_change_lines(change, "decrypted", "not encrypted")


@secrets_app.command()
def view(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Print the secrets file's plain text to standard output (you asked for the secrets).

    Exit codes: 0, 1 bad input or a wrong password, 4 internal error.
    """
    from qsetup.ops.secrets import view_secrets

    passwords = _passwords(vault_password_file)
    text = run_guarded(lambda: view_secrets(inventory, secrets, passwords))
    sys.stdout.write(text)


@secrets_app.command()
def edit(
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
) -> None:
    """Edit the secrets with $VISUAL or $EDITOR; they are saved as they were (encrypted or not).

    The editor gets a private plain copy (0600, in a 0700 folder, removed after). What
    it leaves must be a valid secrets file, else nothing is saved. Run qsetup deploy to
    apply a changed password. Exit codes: 0, 1 bad input, a wrong password or an invalid
    result (nothing saved), 4 internal error.
    """
    import subprocess

    from qsetup.ops.secrets import default_editor, edit_secrets

    def run_editor(path: Path) -> int:
        words = default_editor()
        try:
            return subprocess.run([*words, str(path)], check=False).returncode
        except OSError as exc:
            raise QsetupError(
                f"cannot run the editor {words[0]} ({exc.strerror}); set EDITOR"
            ) from None

    passwords = _passwords(vault_password_file)
    changed = run_guarded(lambda: edit_secrets(inventory, secrets, passwords, run_editor))
    _say("saved; run qsetup deploy to apply it" if changed else "no change")


@secrets_app.command()
def rotate(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The secret: a broker or Flower password.")
    ],
    inventory: InventoryOpt,
    secrets: SecretsOpt = None,
    vault_password_file: VaultOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result only.")] = False,
) -> None:
    """Give one broker or Flower password a new random value, apply it, check status.

    The new value goes into the secrets file (encrypted when it is); a deploy sets it
    on the broker and restarts only the services that use it (rolling, each host's
    workers answering ping before the next); status then checks they reconnected.
    Exit codes: 0 rotated and healthy, 3 the deploy failed or status is degraded (run
    qsetup deploy to finish), 1 bad input (nothing changed), 4 internal error.
    """
    import json

    from qsetup.ops.secrets import rotate_secret
    from qsetup.ui.progress import run_with_progress
    from qsetup.ui.report import deploy_json, deploy_summary, status_json

    loaded = _load(inventory, secrets, vault_password_file, check_files=True)

    def core() -> Any:
        if json_out:
            return rotate_secret(loaded, name)
        hosts = list(loaded.inventory.hosts)
        return run_with_progress(out, hosts, lambda on: rotate_secret(loaded, name, on))

    result = run_guarded(core)
    if json_out:
        data = {
            "ok": result.ok,
            "name": result.name,
            "elapsed_seconds": round(result.seconds, 1),
            "deploy": deploy_json(result.deploy),
            "status": status_json(result.status) if result.status is not None else None,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        out.print(deploy_summary(result.deploy))
        if result.status is not None and not result.status.healthy:
            for line in result.status.problems:
                err.print(Text(line, style="red"))
        verdict = (
            f"rotated {result.name}: applied and healthy"
            if result.ok
            else f"rotated {result.name} in the secrets file, but not healthy yet; "
            "run qsetup deploy to finish"
        )
        out.print(Text(verdict, style="green" if result.ok else "red"))
    raise typer.Exit(0 if result.ok else EXIT_DEGRADED)


# --- end secrets ----------------------------------------------------------------


# --- sandbox commands (qsetup/sandbox) ---------------------------------------


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False)


@sandbox_app.command()
def up(
    hosts: Annotated[
        int | None,
        typer.Option("--hosts", min=1, max=200, help="Number of hosts qs1..qsN (default 3)."),
    ] = None,
    names: Annotated[
        str | None,
        typer.Option("--names", help="Comma-separated host names instead of --hosts, e.g. a,b,c."),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            help="Debian release the hosts run (default: the one the sandbox runs, else bookworm).",
        ),
    ] = None,
    inventory_out: Annotated[
        Path | None,
        typer.Option(
            "--inventory-out", help="Write a complete inventory (and secrets) for the hosts here."
        ),
    ] = None,
) -> None:
    """Build, boot and wait for local test hosts; adds hosts that are missing."""
    from qsetup import sandbox

    name_list = names.split(",") if names is not None else None
    result = run_guarded(
        lambda: sandbox.up(hosts, name_list, release, inventory_out, progress=_say)
    )
    for status in result.hosts:
        _say(sandbox.format_status(status))
    _say(
        f"ssh key: {result.key} (login user {result.login_user} with passwordless sudo; "
        "root for `qsetup sandbox ssh`)"
        + ("" if result.started or result.login_updated else " (already up; nothing changed)")
    )


@sandbox_app.command()
def down() -> None:
    """Stop every sandbox host and remove its mounts, namespaces, links, bridge and proxy."""
    from qsetup import sandbox

    result = run_guarded(lambda: sandbox.down(progress=_say))
    _say(f"stopped {len(result.stopped)} host(s)" if result.stopped else "nothing was up")


@sandbox_app.command("list")
def list_(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {name, address, state}.")
    ] = False,
) -> None:
    """Show each sandbox host with its address and state (running, degraded, dead...)."""
    import json

    from qsetup import sandbox

    statuses = run_guarded(sandbox.list_hosts)
    if as_json:
        sys.stdout.write(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
        return
    for status in statuses:
        _say(sandbox.format_status(status))
    if not statuses:
        _say("no sandbox hosts; run `qsetup sandbox up`")


@sandbox_app.command()
def ssh(
    name: Annotated[str, typer.Argument(help="Sandbox host name, e.g. qs1.")],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="Command to run after `--`; none opens a shell."),
    ] = None,
) -> None:
    """Log in to a sandbox host as root, or run a command there (its exit code is passed on)."""
    from qsetup import sandbox

    code = run_guarded(lambda: sandbox.ssh(name, command or []))
    raise typer.Exit(code)


# --- end sandbox commands -----------------------------------------------------


def _whole_summaries(*apps: typer.Typer) -> None:
    """List each command (and group) with its whole first sentence, wrapped, not cut short.

    Click shortens a docstring's first sentence to fit one line of the commands list and
    ends it with "..."; an explicit ``short_help`` is wrapped instead.
    """
    for sub in apps:
        for info in sub.registered_commands:
            doc = (info.callback.__doc__ or "") if info.callback else ""
            first = " ".join(doc.strip().split("\n\n", 1)[0].split())
            if info.short_help is None and first:
                info.short_help = first
        for group in sub.registered_groups:
            if group.typer_instance is not None:
                group.short_help = group.typer_instance.info.help


_whole_summaries(app, sandbox_app, secrets_app)


_EARLY: list[Any] = []
"""``qsetup status``'s prefetched SSH clients, started in :func:`main` (see ``status``)."""


def _status_args(argv: list[str]) -> tuple[Path, float | None] | None:
    """``status``'s inventory and ``--timeout``, read from ``argv`` before typer parses it.

    A guess for :func:`_early_status`, never the command's input: ``status`` keeps the
    early clients only when typer parsed the same inventory and timeout. None when the
    command is not ``status`` or the words do not say.
    """
    if len(argv) < 2 or argv[1] != "status":
        return None
    inventory: str | None = None
    timeout: float | None = None
    words = iter(argv[2:])
    for word in words:
        name, eq, value = word.partition("=")
        if name in ("-i", "--inventory", "--timeout") and not eq:
            value = next(words, "")
        elif word.startswith("-i") and len(word) > 2:
            name, value = "-i", word[2:]
        if name in ("-i", "--inventory"):
            inventory = value
        elif name == "--timeout":
            try:
                timeout = float(value)
            except ValueError:
                return None
    return (Path(inventory), timeout) if inventory else None


def _early_status(argv: list[str]) -> None:
    """Start ``status``'s SSH clients from the last run's record, before typer parses.

    Typer's parse and the inventory's load take about 0.2 s on this testbed; the clients
    connect meanwhile (see :mod:`qsetup.status.prefetch`).
    """
    args = _status_args(argv)
    if args is None:
        return
    from qsetup.status.prefetch import Prefetch

    _EARLY.append(Prefetch(*args).start())


def _usage_error(exc: Exception) -> int:
    """Say what was wrong with the command line in one red line; the exit code (1).

    Click's own report is three lines (usage, "Try ... --help", the error) and exit 2;
    qsetup says bad input in one line and exits 1, as every other check of its input
    does. With no arguments at all (``no_args_is_help``) the help is printed, exit 0.
    """
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        out.print(ctx.get_help(), markup=False, highlight=False)
        return 0
    path = str(getattr(ctx, "command_path", "") or "qsetup")
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    line = f"{path}: {message.rstrip('.')}; see '{path} --help'"
    err.print(Text(line, style="red"), highlight=False)
    return EXIT_BAD_INPUT


def main() -> None:
    """Entry point of the ``qsetup`` console script."""
    _QUICK_EXIT.clear()
    _early_status(sys.argv)
    try:
        code = app(prog_name="qsetup", standalone_mode=False)
    except Exception as exc:
        # Click's ClickException (typer's vendored click or the click package), by shape.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        code = _usage_error(exc)
    except typer.Abort:  # a prompt ended by end of input
        err.print(Text("aborted", style="red"))
        code = EXIT_BAD_INPUT
    finally:
        for early in _EARLY:
            early.discard()
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> None:
    """End with ``code``; after ``status`` printed its result, without Python's teardown.

    Freeing every module and object status imported (pydantic's schemas, kombu, typer)
    took 70-90 ms of one core after the report was printed: 6% of 3-host status
    (farm-bench, 15 pairs: 0.708 s against 0.744 s). status holds nothing to clean up by
    then: its temporary directory is gone, its threads are done, its SSH clients ended.
    Every other command, and status on an error, exits the ordinary way (a temporary
    file may still be removed at exit).
    """
    if _QUICK_EXIT:
        _QUICK_EXIT.clear()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more to say
                pass
        os._exit(code)
    sys.exit(code)
