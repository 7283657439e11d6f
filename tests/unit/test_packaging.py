"""The wheel carries playbooks/templates/examples, and an installed copy works from anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from unitdata import BASE_INVENTORY, BASE_SECRETS, write_secrets

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != ".keep"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / "pyproject.toml").exists():
        pytest.skip("not a source checkout")
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (built,) = out.glob("qsetup-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    yield target
    shutil.rmtree(target, ignore_errors=True)


def test_wheel_contains_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "qsetup/py.typed" in names
    assert "qsetup/cli.py" in names and "qsetup/__main__.py" in names
    for resource in ("templates", "playbooks", "examples"):
        expected = {f"qsetup/_data/{resource}/{f}" for f in _files(REPO / resource)}
        assert expected <= names, sorted(expected - names)
    assert "qsetup/_data/templates/celery/worker.service.j2" in names
    assert "qsetup/_data/templates/init/inventory.yml.j2" in names
    assert "qsetup/_data/examples/sample_app/proj/celery.py" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "qsetup = qsetup.cli:main" in text


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    return env


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=_env(site), capture_output=True, text=True, timeout=120
    )


def test_installed_copy_uses_its_own_resources(installed: Path, tmp_path: Path) -> None:
    code = (
        "import qsetup, qsetup.resources as r; "
        "print(qsetup.__file__); "
        "print(r.resource_dir('templates')); print(r.resource_dir('playbooks'))"
    )
    proc = _run(installed, tmp_path, sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    module, templates, playbooks = proc.stdout.splitlines()
    assert Path(module).is_relative_to(installed)
    assert Path(templates) == installed / "qsetup" / "_data" / "templates"
    assert Path(playbooks) == installed / "qsetup" / "_data" / "playbooks"
    assert (Path(templates) / "celery" / "worker.service.j2").is_file()


def test_python_m_qsetup_renders_from_another_directory(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "app").mkdir()
    (work / "inventory.yml").write_text(BASE_INVENTORY)
    write_secrets(work / "inventory.secrets.yml", BASE_SECRETS)
    proc = _run(
        installed,
        work,
        sys.executable,
        "-m",
        "qsetup",
        "render",
        "-i",
        "inventory.yml",
        "-o",
        "out",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rendered 11 files into out/<host>/" in proc.stdout
    unit = work / "out/worker1/etc/systemd/system/qsetup-worker-default@.service"
    assert "Type=exec" in unit.read_text()
    env_file = work / "out/worker1/etc/qsetup/worker-default.env"
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_installed_init_and_console_script(installed: Path, tmp_path: Path) -> None:
    proc = _run(installed, tmp_path, sys.executable, "-m", "qsetup", "init", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "app" / "proj" / "celery.py").is_file()  # sample app from the wheel
    script = installed / "bin" / "qsetup"
    assert script.is_file()
    proc = _run(installed, tmp_path, str(script), "validate", "-i", "inventory.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(installed, tmp_path, str(script), "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("qsetup ")
