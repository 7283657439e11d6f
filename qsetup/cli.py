"""The qsetup command line: each command is a few lines around one core call."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

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
)
sandbox_app = typer.Typer(
    help="Local test hosts (systemd-nspawn containers) to try qsetup on. Needs root.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_BAD_INPUT = 1
EXIT_DEGRADED = 3
EXIT_INTERNAL = 4


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
            err.print(f"[red]{line}[/red]", markup=True, highlight=False)
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
        err.print(f"[red]internal error ({where}); please report it[/red]")
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

# --- sandbox commands (qsetup/sandbox) ---------------------------------------
# --- end sandbox commands -----------------------------------------------------


def main() -> None:
    """Entry point of the ``qsetup`` console script."""
    app(prog_name="qsetup")
    sys.exit(0)
