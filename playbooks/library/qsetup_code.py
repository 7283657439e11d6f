#!/usr/bin/python
"""Ansible module: stage the app's new code beside the live code, in one call.

The archive (sent by the ``qsetup_code`` action plugin into Ansible's remote temporary
directory) becomes ``<code_dir>.next.tar`` (root, 0644, written to a temporary file and
renamed), and ``<code_dir>.next`` is made afresh (an earlier staging directory goes)
with the archive's files, owned by root (``--no-same-owner``) with the archive's modes.
The live code is not touched: qsetup_services swaps it in once every host's app check
passed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: qsetup_code
short_description: Stage the app's code archive and its unpacked files beside the live code
options:
  archive:
    description: The archive on the host (Ansible's temporary copy).
    type: path
    required: true
  code_dir:
    description: The live code directory; <code_dir>.next.tar and <code_dir>.next are made.
    type: path
    required: true
"""


def stage(archive: Path, code_dir: str) -> tuple[Path, Path]:
    """Copy the archive to <code_dir>.next.tar and empty <code_dir>.next; both paths."""
    tar = Path(f"{code_dir}.next.tar")
    staging = Path(f"{code_dir}.next")
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
    return tar, staging


def main() -> None:
    """Stage the archive; fail with tar's message when it cannot be unpacked."""
    module = AnsibleModule(
        argument_spec={
            "archive": {"type": "path", "required": True},
            "code_dir": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=True)
    try:
        tar, staging = stage(Path(module.params["archive"]), module.params["code_dir"])
    except OSError as exc:
        module.fail_json(msg=f"cannot stage the app's code: {exc}")
    rc, _out, err = module.run_command(
        ["tar", "-xf", str(tar), "-C", str(staging), "--no-same-owner"]
    )
    if rc != 0:
        module.fail_json(msg=f"cannot unpack the app's code into {staging}: {err.strip()}")
    module.exit_json(changed=True, staged=str(staging))


if __name__ == "__main__":
    main()
