"""Progress for many hosts: a line per play off a terminal, failures first in the summary."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from qsetup.remote.runner import DeployEvent, DeployResult, HostResult, TaskFailure
from qsetup.ui.progress import PlayDigest, run_with_progress
from qsetup.ui.report import deploy_summary


def test_a_play_is_one_line_however_many_hosts_changed() -> None:
    lines: list[str] = []
    digest = PlayDigest(lines.append)
    digest(DeployEvent("play", task="Install and configure every host"))
    for i in range(20):
        digest(DeployEvent("task", task="Install the unit files"))
        digest(DeployEvent("changed" if i < 10 else "ok", f"w{i:02}", "Install the unit files"))
    digest(DeployEvent("failed", "w19", "Start", "boom"))
    digest(DeployEvent("play", task="Start"))
    digest.flush()
    assert lines == [
        "  FAILED   w19: Start: boom",
        "== Install and configure every host: 20 host(s), changed on 10: w00 (1), w01 (1), "
        "w02 (1), w03 (1), w04 (1), w05 (1), w06 (1), w07 (1) and 2 more",
        "== Start: 0 host(s)",
    ]


def test_off_a_terminal_progress_is_the_play_digest() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)

    def run(on: object) -> str:
        assert isinstance(on, PlayDigest)
        on(DeployEvent("play", task="Check every host"))
        on(DeployEvent("ok", "a", "Read"))
        return "done"

    assert run_with_progress(console, ["a"], run) == "done"
    assert buf.getvalue().splitlines() == ["== Check every host: 1 host(s)"]


def test_the_summary_lists_failures_first() -> None:
    result = DeployResult(
        "failed",
        2,
        {
            "a-ok": HostResult(ok=3),
            "b-changed": HostResult(ok=3, changed=1),
            "c-failed": HostResult(ok=1, failed=1),
            "d-gone": HostResult(unreachable=True),
        },
        (TaskFailure("c-failed", "Start", "boom"),),
        Path("/tmp/run"),
        1.0,
    )
    buf = io.StringIO()
    Console(file=buf, width=120).print(deploy_summary(result))
    rows = [line for line in buf.getvalue().splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["c-failed", "d-gone", "b-changed", "a-ok"]


def test_an_unreachable_host_is_one_line_without_a_task() -> None:
    message = "unreachable (10.0.0.9): SSH could not connect; ...; no change was made there"
    result = DeployResult(
        "failed",
        4,
        {"a-ok": HostResult(ok=3), "d-gone": HostResult(unreachable=True)},
        (TaskFailure("d-gone", "Read the host", message, unreachable=True),),
        Path("/tmp/run"),
        1.0,
    )
    buf = io.StringIO()
    Console(file=buf, width=120, soft_wrap=True).print(deploy_summary(result))
    named = [line for line in buf.getvalue().splitlines() if "d-gone" in line and ":" in line]
    assert named == [f"d-gone: {message}"]
    lines: list[str] = []
    digest = PlayDigest(lines.append)
    digest(DeployEvent("unreachable", "d-gone", "Read the host", message))
    assert lines == [f"  d-gone: {message}"]
