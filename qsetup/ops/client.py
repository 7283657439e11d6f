"""``qsetup celery``: the local ``celery`` command against the deployed broker.

Celery gets the settings (URLs with the password, TLS, queue type, result backend) from a
configuration module qsetup writes for the one run: mode 0600 in a 0700 folder of its own,
removed when Celery exits. The password is never in Celery's argv (``ps`` shows every
user that) nor in its environment; the module is named with ``--config`` and found
through ``PYTHONPATH``, which holds only the folder's path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from qsetup.artifacts.client import ClientConfig, render_python
from qsetup.errors import QsetupError
from qsetup.inventory.vault import private_dir, write_private

CONFIG_MODULE = "qsetup_client_config"
"""The module name Celery imports its settings from (``celery --config``)."""

OVERRIDING_ENV = (
    "CELERY_BROKER_URL",
    "CELERY_BROKER_READ_URL",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_CONFIG_MODULE",
    "CELERY_LOADER",
)
"""Variables Celery would take over the module's settings; the run drops them."""


def find_celery(which: Callable[[str], str | None] | None = None) -> list[str]:
    """The ``celery`` command: the one on PATH, else the one installed beside qsetup.

    Raises:
        QsetupError: when there is neither.
    """
    found = (which or shutil.which)("celery")
    if found:
        return [found]
    beside = Path(sys.executable).parent / "celery"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    raise QsetupError(
        "qsetup celery: no celery command on PATH; install Celery (pip install "
        "'celery==<the version your workers run>') and try again"
    )


def celery_command(celery: Sequence[str], args: Sequence[str]) -> list[str]:
    """Celery's argv: the settings module first, then the user's arguments as given."""
    return [*celery, "--config", CONFIG_MODULE, *args]


def celery_environment(base: Mapping[str, str], folder: Path) -> dict[str, str]:
    """The run's environment: ``base`` without Celery's overriding variables, the folder first.

    Celery reads ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` before its
    configuration; a value left in the shell would send the command to another broker.
    """
    env = {k: v for k, v in base.items() if k not in OVERRIDING_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(folder), *([base["PYTHONPATH"]] if base.get("PYTHONPATH") else [])]
    )
    return env


@contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """While Celery runs: Ctrl-C goes to Celery alone, SIGTERM ends qsetup's wait cleanly.

    A handler (not SIG_IGN, which the child would inherit) keeps qsetup waiting for
    Celery's own exit on Ctrl-C; SIGTERM raises, so the settings module is removed and
    ``subprocess.run`` kills Celery.
    """

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_celery(
    cfg: ClientConfig,
    args: Sequence[str],
    *,
    which: Callable[[str], str | None] | None = None,
    run: Callable[..., subprocess.CompletedProcess[bytes]] | None = None,
) -> int:
    """Run the local ``celery`` with ``cfg``'s settings and ``args``; return its exit code.

    Raises:
        QsetupError: no celery command, or it cannot be started; TLS without the CA file.
    """
    celery = find_celery(which)
    if cfg.ca_file is not None and not cfg.ca_file.is_file():
        raise QsetupError(
            f"{cfg.ca_file}: no such CA certificate (TLS is on); run qsetup deploy first, "
            "which makes it"
        )
    with private_dir("qsetup-celery-") as folder:
        write_private(folder / f"{CONFIG_MODULE}.py", render_python(cfg).encode())
        argv = celery_command(celery, args)
        try:
            with _terminated_as_exit():
                proc = (run or subprocess.run)(
                    argv, env=celery_environment(os.environ, folder), check=False
                )
        except OSError as exc:
            raise QsetupError(f"cannot run {celery[0]} ({exc.strerror})") from None
    return int(proc.returncode)
