"""The staging module (playbooks/library/qsetup_code.py): archive and files beside the live code."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

from unitdata import playbook_module

code: Any = playbook_module("library/qsetup_code.py")


def test_stages_a_fresh_copy_and_leaves_the_live_code(tmp_path: Path) -> None:
    live = tmp_path / "app"
    live.mkdir()
    (live / "tasks.py").write_text("live")
    stale = tmp_path / "app.next"
    stale.mkdir()
    (stale / "leftover.py").write_text("from an earlier run")
    src = tmp_path / "src"
    src.mkdir()
    (src / "tasks.py").write_text("new")
    upload = tmp_path / "upload.tar"
    subprocess.run(["tar", "-cf", str(upload), "-C", str(src), "tasks.py"], check=True)

    tar, staging = code.stage(upload, str(live))
    assert tar == tmp_path / "app.next.tar" and tar.read_bytes() == upload.read_bytes()
    assert stat.S_IMODE(tar.stat().st_mode) == 0o644
    assert staging == tmp_path / "app.next" and list(staging.iterdir()) == []
    assert stat.S_IMODE(staging.stat().st_mode) == 0o755
    assert (live / "tasks.py").read_text() == "live", "the live code is not touched"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "app",
        "app.next",
        "app.next.tar",
        "src",
        "upload.tar",
    ], "no temporary file left"
