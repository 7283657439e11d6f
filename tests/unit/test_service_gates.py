"""The app check and the ping gate (module_utils/qsetup_units.py, library/qsetup_wait_nodes.py).

Both run on the host through ``systemd-run``: here a stand-in on PATH drops systemd-run's
options and runs the command, and stand-in interpreters say what a real app would.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from unitdata import playbook_module, run_module

units: Any = playbook_module("module_utils/qsetup_units.py")
wait: Any = playbook_module("library/qsetup_wait_nodes.py")

PING_BOTH = """->  apt-workers-1@qs3: OK
        pong
->  apt-workers-1@qs2.example: OK
        pong
"""

JOURNAL = "\n".join(
    [
        "Started qsetup-worker-a@1.service - Celery worker a #1 (proj).",
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3/dist-packages/celery/app/utils.py", line 1, in x',
        '  File "/opt/qsetup/apps/proj/proj/tasks.py", line 26',
        "    def broken(:",
        "SyntaxError: invalid syntax",
        "qsetup-worker-a@1.service: Main process exited, code=exited, status=1/FAILURE",
        "qsetup-worker-a@1.service: Failed with result 'exit-code'.",
    ]
)


def test_ping_counts_only_the_exact_node() -> None:
    assert units.ping_answered(PING_BOTH, "apt-workers-1@qs3")
    # A neighbour with the same prefix never answers for this host.
    assert not units.ping_answered(PING_BOTH, "apt-workers-1@qs2")
    assert not units.ping_answered(PING_BOTH, "apt-workers-1@qs")
    assert not units.ping_answered("->  w-1@qs2: ERROR\n", "w-1@qs2")
    assert not units.ping_answered("Error: No nodes replied within time constraint", "w")


def test_the_python_error_is_the_end_of_the_traceback_without_systemds_lines() -> None:
    lines = units.python_error(JOURNAL)
    assert lines == [
        'File "/opt/qsetup/apps/proj/proj/tasks.py", line 26',
        "def broken(:",
        "SyntaxError: invalid syntax",
    ]


def test_url_passwords_never_leave_in_an_error() -> None:
    said = "x\nFailed for 'amqps://proj:S3cr%2Ft@10.0.0.1:5671/proj'"
    (line,) = units.python_error(said)[-1:]
    assert "S3cr" not in line and "amqps://proj:***@10.0.0.1" in line


def _run(monkeypatch: pytest.MonkeyPatch, mod: Any, params: dict[str, Any]) -> dict[str, Any]:
    return run_module(monkeypatch, mod, params).result


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH whose systemd-run runs its command, and whose journalctl prints JOURNAL."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(
        bin_dir / "systemd-run",
        'while [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n',
    )
    (tmp_path / "journal").write_text(JOURNAL + "\n")
    _script(bin_dir / "journalctl", f"cat {tmp_path / 'journal'}\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def _service(unit: str, python: str) -> dict[str, str]:
    return {"unit": unit, "python": python, "user": "celery", "env_file": "/etc/qsetup/x.env"}


def test_the_app_check_names_each_service_whose_app_does_not_load(host: Path) -> None:
    good = _script(host / "good-python", 'echo "qsetup-app-loads 3"\n')
    bad = _script(
        host / "bad-python",
        "echo 'Traceback (most recent call last):' >&2\n"
        "echo '  File \"/opt/qsetup/apps/proj/proj/tasks.py\", line 2' >&2\n"
        'echo "ImportError: no amqp://u:pw-123@h/v" >&2\nexit 1\n',
    )
    silent = _script(host / "silent-python", "exit 0\n")
    args = ("/opt/qsetup/apps/proj.next", "/s", "qsetup_celery", 30)
    assert units.check_app([_service("w@.service", good)], *args) == []
    services = [_service("a@.service", bad), _service("b@.service", good),
                _service("c@.service", silent)]  # fmt: skip
    first, second = units.check_app(services, *args)
    assert first.startswith(f"the app does not load for a@.service ({bad}): ")
    assert "ImportError" in first and "pw-123" not in first and "amqp://u:***@h" in first
    # Exit 0 without the marker is no proof that the app loaded.
    assert second == f"the app does not load for c@.service ({silent}): exit code 0"


def test_the_ping_gate_waits_for_each_exact_node_and_reports_a_silent_ones_journal(
    host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in interpreters: one whose node answers, one where only a neighbour does.
    answers = _script(host / "answers", 'echo "->  $3: OK"; echo "        pong"\n')
    neighbour = _script(host / "neighbour", 'echo "->  ${3}x: OK"\nexit 1\n')
    ok = _run(
        monkeypatch,
        wait,
        {"units": [_service("a@1.service", answers)], "nodes": ["a-1@qs2"], "shim": "s",
         "seconds": 5},
    )  # fmt: skip
    assert ok == {"changed": False, "answered": ["a-1@qs2"]}
    failed = _run(
        monkeypatch,
        wait,
        {"units": [_service("a@1.service", answers), _service("a@2.service", neighbour)],
         "nodes": ["a-1@qs2", "a-2@qs2"], "shim": "s", "seconds": 5},
    )  # fmt: skip
    assert failed["failed"]
    (line,) = failed["silent"]
    assert line.startswith("a@2.service (node a-2@qs2) does not answer ping; its journal ends: ")
    assert line.endswith("SyntaxError: invalid syntax")


def test_the_gate_waits_for_flower_to_listen(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        ok = _run(
            monkeypatch,
            wait,
            {"units": [], "nodes": [], "shim": "s", "seconds": 2,
             "listen": {"host": "127.0.0.1", "port": port}},
        )  # fmt: skip
        assert ok == {"changed": False, "answered": []}
    failed = _run(
        monkeypatch,
        wait,
        {"units": [], "nodes": [], "shim": "s", "seconds": 1,
         "listen": {"host": "127.0.0.1", "port": port}},
    )  # fmt: skip
    assert failed["msg"] == f"Flower does not listen on 127.0.0.1:{port} after 1 s"
