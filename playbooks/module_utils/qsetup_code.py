"""Stage the app's new code beside the live code, on the host.

The archive (sent by the ``qsetup_files`` action plugin into Ansible's remote temporary
directory) becomes ``<code_dir>.next.tar`` (root, 0644, written to a temporary file and
renamed), and ``<code_dir>.next`` is made afresh (an earlier staging directory goes)
with the archive's files, owned by root (``--no-same-owner``) with the archive's modes.
The live code is not touched: qsetup_services swaps it in once every host's app check
passed.

Standard library only: it runs on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class CodeError(Exception):
    """The code could not be staged (the message says why)."""


def stage(archive: Path, code_dir: str) -> Path:
    """Copy the archive to ``<code_dir>.next.tar``, unpack it into a fresh ``.next``."""
    tar = Path(f"{code_dir}.next.tar")
    staging = Path(f"{code_dir}.next")
    try:
        fd, tmp = tempfile.mkstemp(dir=tar.parent, prefix=f".{tar.name}.qsetup-")
        try:
            with os.fdopen(fd, "wb") as out, archive.open("rb") as src:
                shutil.copyfileobj(src, out)
                os.fchmod(out.fileno(), 0o644)
                out.flush()
                os.fsync(out.fileno())
            if os.geteuid() == 0:
                os.chown(tmp, 0, 0)
            Path(tmp).replace(tar)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o755)
        staging.chmod(0o755)
    except OSError as exc:
        raise CodeError(f"cannot stage the app's code: {exc}") from None
    run = subprocess.run(  # noqa: S603 - an argv list
        ["tar", "-xf", str(tar), "-C", str(staging), "--no-same-owner"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise CodeError(f"cannot unpack the app's code into {staging}: {run.stderr.strip()}")
    return staging
