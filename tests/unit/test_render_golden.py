"""Rendering: golden files per template, unit-file properties, secrets placement, exposure.

Regenerate the goldens after an intended template change with::

    QSETUP_UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from unittest import mock
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from unitdata import BASE_INVENTORY, BASE_SECRETS, FULL_INVENTORY, FULL_SECRETS

from qsetup.artifacts.render import Artifact, render_all, write_artifacts
from qsetup.inventory.loader import validate_document
from qsetup.inventory.model import Inventory
from qsetup.inventory.secrets import Secrets
from qsetup.inventory.yamlsource import parse_yaml

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("QSETUP_UPDATE_GOLDEN") == "1"
MAX_EXPOSURE = 3.0


def golden_inventory() -> Inventory:
    return validate_document(parse_yaml(Path("golden.yml"), FULL_INVENTORY))


def golden_secrets() -> Secrets:
    return Secrets(
        path=Path("/nonexistent/golden.secrets.yml"),
        values={name: SecretStr(value) for name, value in FULL_SECRETS.items()},
    )


@pytest.fixture(scope="module")
def artifacts() -> list[Artifact]:
    return render_all(golden_inventory(), golden_secrets())


def golden_path(art: Artifact) -> Path:
    return GOLDEN / art.host / str(art.path).lstrip("/")


def units(artifacts: list[Artifact]) -> list[Artifact]:
    return [a for a in artifacts if a.path.suffix == ".service"]


# --- golden files ---------------------------------------------------------------

# One golden per template at least; (host, path) of the artifact that covers it.
EXPECTED_FILES = {
    ("mq", "/etc/rabbitmq/rabbitmq.conf"),
    ("mq", "/etc/rabbitmq/enabled_plugins"),
    ("mq", "/etc/systemd/system/rabbitmq-server.service.d/qsetup-limits.conf"),
    ("mq", "/var/lib/rabbitmq/.erlang.cookie"),
    ("mq", "/etc/qsetup/flower.env"),
    ("mq", "/etc/qsetup/flower/flowerconfig.py"),
    ("mq", "/etc/systemd/system/qsetup-flower.service"),
    ("w1", "/etc/qsetup/worker-orders.env"),
    ("w1", "/etc/systemd/system/qsetup-worker-orders@.service"),
    ("w1", "/etc/qsetup/beat.env"),
    ("w1", "/etc/systemd/system/qsetup-beat.service"),
    ("w2", "/etc/qsetup/worker-orders.env"),
    ("w2", "/etc/systemd/system/qsetup-worker-orders@.service"),
    ("w2", "/etc/qsetup/worker-reports.env"),
    ("w2", "/etc/systemd/system/qsetup-worker-reports@.service"),
    ("w1", "/opt/qsetup/lib/qsetup_celery.py"),
    ("w2", "/opt/qsetup/lib/qsetup_celery.py"),
    ("mq", "/opt/qsetup/lib/qsetup_celery.py"),
}


def test_renders_the_expected_files(artifacts: list[Artifact]) -> None:
    assert {(a.host, str(a.path)) for a in artifacts} == EXPECTED_FILES
    assert artifacts == sorted(artifacts, key=lambda a: (a.host, str(a.path)))


def test_golden_files_match(artifacts: list[Artifact]) -> None:
    if UPDATE:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for art in artifacts:
            golden_path(art).parent.mkdir(parents=True, exist_ok=True)
            golden_path(art).write_text(art.content, encoding="utf-8")
    stale = {p for p in GOLDEN.rglob("*") if p.is_file()} - {golden_path(a) for a in artifacts}
    assert not stale, f"golden files nothing renders any more: {sorted(stale)}"
    for art in artifacts:
        path = golden_path(art)
        assert path.exists(), f"no golden for {art.host}:{art.path}; set QSETUP_UPDATE_GOLDEN=1"
        assert art.content == path.read_text(encoding="utf-8"), (
            f"{art.host}:{art.path} differs from {path}; if intended, rerun with "
            "QSETUP_UPDATE_GOLDEN=1 and review the diff"
        )


def test_rendering_is_deterministic(artifacts: list[Artifact]) -> None:
    again = render_all(golden_inventory(), golden_secrets())
    assert [(a.host, a.path, a.content, a.mode) for a in again] == [
        (a.host, a.path, a.content, a.mode) for a in artifacts
    ]


# --- unit properties ----------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into section -> key -> values (continuations joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        logical.append(buf + raw)
        buf = ""
    for line in logical:
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def service_one(unit: Artifact, key: str) -> str:
    values = parse_unit(unit.content)["Service"].get(key)
    assert values, f"{unit.path}: {key}= is missing"
    return values[-1]


def test_units_have_the_required_settings(artifacts: list[Artifact]) -> None:
    assert len(units(artifacts)) == 5
    for unit in units(artifacts):
        service = parse_unit(unit.content)["Service"]
        name = unit.path.name
        assert service_one(unit, "Type") == "exec", name
        user = service_one(unit, "User")
        assert user and user not in ("root", "0"), name
        assert service_one(unit, "Group") not in ("root", "0"), name
        assert service_one(unit, "Restart") == "always", name
        assert int(service_one(unit, "RestartSec")) >= 5, name
        assert service_one(unit, "KillMode") == "mixed", name
        assert int(service_one(unit, "TimeoutStopSec")) > 0, name
        for key in ("RuntimeDirectory", "StateDirectory", "LogsDirectory"):
            assert service_one(unit, key).startswith("qsetup-"), (name, key)
        assert service_one(unit, "ProtectSystem") == "strict", name
        assert service_one(unit, "NoNewPrivileges") == "yes", name
        assert service_one(unit, "PrivateTmp") == "yes", name
        assert service_one(unit, "CapabilityBoundingSet") == "", name
        assert service_one(unit, "EnvironmentFile").startswith("/etc/qsetup/"), name
        assert len(service["ExecStart"]) == 1, name
        install = parse_unit(unit.content)["Install"]
        assert install["WantedBy"] == ["multi-user.target"], name


def test_worker_units_use_the_group_settings(artifacts: list[Artifact]) -> None:
    by_name = {(u.host, u.path.name): u for u in units(artifacts)}
    orders = by_name[("w1", "qsetup-worker-orders@.service")]
    exec_start = service_one(orders, "ExecStart")
    # apt, but the app has extra requirements: it runs from a virtualenv
    assert exec_start.startswith(
        "/opt/qsetup/venvs/orders/bin/python -m celery -A qsetup_celery worker "
    )
    assert "--hostname=orders-%i@%%h" in exec_start  # %i for systemd, %%h reaches Celery
    assert "--autoscale=8,2" in exec_start and "--queues=orders,celery" in exec_start
    assert "--soft-time-limit=50" in exec_start and "--time-limit=60" in exec_start
    assert "--concurrency" not in exec_start
    assert "--broker" not in exec_start and "amqp://" not in exec_start
    assert service_one(orders, "TimeoutStopSec") == "90"  # time_limit + 30
    assert service_one(orders, "User") == "celery"

    reports = by_name[("w2", "qsetup-worker-reports@.service")]
    exec_start = service_one(reports, "ExecStart")
    assert exec_start.startswith("/opt/qsetup/venvs/reports/bin/celery -A qsetup_celery ")
    assert "--hostname=rep-%i@%%h" in exec_start and "--pool=threads" in exec_start
    assert "--concurrency=16" in exec_start and "--max-memory-per-child=200000" in exec_start
    assert service_one(reports, "User") == "reporter"
    assert service_one(reports, "TimeoutStopSec") == "630"  # default 600 + 30


def test_apt_group_without_requirements_uses_debians_celery() -> None:
    text = BASE_INVENTORY.replace("install: pip", "install: apt")
    inv = validate_document(parse_yaml(Path("apt.yml"), text))
    secrets = Secrets(
        path=Path("/nonexistent"), values={k: SecretStr(v) for k, v in BASE_SECRETS.items()}
    )
    (unit,) = [
        a for a in render_all(inv, secrets) if a.path.suffix == ".service" and a.role == "worker"
    ]
    assert service_one(unit, "ExecStart").startswith("/usr/bin/celery -A qsetup_celery worker ")


def test_flower_credentials_are_not_on_the_command_line(artifacts: list[Artifact]) -> None:
    (flower,) = [u for u in units(artifacts) if u.path.name == "qsetup-flower.service"]
    exec_start = service_one(flower, "ExecStart")
    assert exec_start == (
        "/opt/qsetup/venvs/flower/bin/celery -A qsetup_celery flower "
        "--conf=/etc/qsetup/flower/flowerconfig.py"
    )
    (config,) = [a for a in artifacts if a.path.name == "flowerconfig.py"]
    assert config.secret and config.mode == 0o640 and config.owner == "root"
    assert config.group == "flower"
    compile(config.content, str(config.path), "exec")  # valid Python
    namespace: dict[str, object] = {}
    # Flower's own modules, as far as the config touches them: /metrics gets wrapped.
    metrics = type("Metrics", (), {"get": lambda self: "open"})
    fakes = {
        "tornado": types.ModuleType("tornado"),
        "tornado.web": types.ModuleType("tornado.web"),
        "flower": types.ModuleType("flower"),
        "flower.views": types.ModuleType("flower.views"),
        "flower.views.monitor": types.ModuleType("flower.views.monitor"),
    }
    fakes["tornado.web"].authenticated = lambda f: ("authenticated", f)  # type: ignore[attr-defined]
    fakes["flower.views.monitor"].Metrics = metrics  # type: ignore[attr-defined]
    fakes["flower.views"].monitor = fakes["flower.views.monitor"]  # type: ignore[attr-defined]
    fakes["tornado"].web = fakes["tornado.web"]  # type: ignore[attr-defined]
    with mock.patch.dict(sys.modules, fakes):
        exec(config.content, namespace)  # noqa: S102 - our own rendered config
    assert metrics.get[0] == "authenticated"  # type: ignore[index]
    assert namespace["basic_auth"] == [
        f"Admin:{FULL_SECRETS['flower-user-admin']}",
        f"oncall:{FULL_SECRETS['oncall-pw']}",
    ]
    assert namespace["port"] == 8080 and namespace["url_prefix"] == "flower"
    assert namespace["broker_api"] == (
        f"http://monitor:{FULL_SECRETS['monitor-pw']}@mq.example.org:15673/api/"
    )
    assert namespace["persistent"] is False


# --- secrets ---------------------------------------------------------------------


def secret_forms() -> dict[str, set[str]]:
    """Each secret as it may appear: raw and URL-quoted."""
    return {name: {v, quote(v, safe="")} for name, v in FULL_SECRETS.items()}


def test_no_secret_in_public_files_or_command_lines(artifacts: list[Artifact]) -> None:
    for art in artifacts:
        exec_lines = [line for line in art.content.splitlines() if "ExecStart" in line]
        for name, forms in secret_forms().items():
            for form in forms:
                if not art.secret:
                    assert form not in art.content, f"secret {name} in {art.host}:{art.path}"
                for line in exec_lines:
                    assert form not in line, f"secret {name} on a command line in {art.path}"


def test_secret_files_are_private(artifacts: list[Artifact]) -> None:
    for art in artifacts:
        if art.path.suffix == ".env":
            assert art.secret and art.mode == 0o600, art.path
            assert (art.owner, art.group) == ("root", "root"), art.path
        if art.secret:
            assert art.mode & 0o077 in (0, 0o040), f"{art.path} mode {art.mode:o}"
        else:
            assert art.mode & 0o022 == 0, f"{art.path} is writable by others"
    (cookie,) = [a for a in artifacts if a.path.name == ".erlang.cookie"]
    assert cookie.content == FULL_SECRETS["cookie"]
    assert (cookie.mode, cookie.owner, cookie.group) == (0o400, "rabbitmq", "rabbitmq")


def env_values(art: Artifact) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in art.content.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert value.startswith('"') and value.endswith('"'), line
            values[key] = value[1:-1]
    return values


def test_celery_reads_the_broker_url_from_the_env_file(artifacts: list[Artifact]) -> None:
    by_key = {(a.host, str(a.path)): a for a in artifacts}
    shop_pw = quote(FULL_SECRETS["rabbitmq-user-shop"], safe="")
    reports_pw = quote(FULL_SECRETS["reports-pw"], safe="")
    orders = env_values(by_key[("w1", "/etc/qsetup/worker-orders.env")])
    assert orders["CELERY_BROKER_URL"] == f"amqp://Shop:{shop_pw}@mq.example.org:5673/shop"
    assert orders["CELERY_RESULT_BACKEND"] == "redis://cache:6379/0"
    assert orders["SHOP_ENV"] == "prod" and orders["EMPTY"] == ""
    reports = env_values(by_key[("w2", "/etc/qsetup/worker-reports.env")])
    assert reports["CELERY_BROKER_URL"] == (
        f"amqp://reports:{reports_pw}@mq.example.org:5673/reports"
    )
    assert "r3p%40rts%2Fpass%25word%3Ax%20y" == reports_pw
    beat = env_values(by_key[("w1", "/etc/qsetup/beat.env")])
    assert beat["CELERY_BROKER_URL"] == orders["CELERY_BROKER_URL"]
    flower = env_values(by_key[("mq", "/etc/qsetup/flower.env")])
    assert flower["CELERY_BROKER_URL"] == orders["CELERY_BROKER_URL"]


def test_write_artifacts_layout_and_modes(artifacts: list[Artifact], tmp_path: Path) -> None:
    write_artifacts(artifacts, tmp_path)
    for art in artifacts:
        target = tmp_path / art.host / PurePosixPath(str(art.path)).relative_to("/")
        assert target.read_text(encoding="utf-8") == art.content
        mode = target.stat().st_mode & 0o777
        assert mode == (0o600 if art.secret else art.mode & 0o644), target


# --- systemd-analyze security -------------------------------------------------------

EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_units_score_low_on_systemd_analyze_security(
    artifacts: list[Artifact], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    scores: dict[str, float] = {}
    seen: set[str] = set()
    for unit in units(artifacts):
        name = unit.path.name.replace("@.service", "@1.service")
        if name in seen:
            continue  # the same group's unit on another host is identical
        seen.add(name)
        path = tmp_path / name
        path.write_text(unit.content, encoding="utf-8")
        proc = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = EXPOSURE.search(proc.stdout)
        assert found, f"no exposure for {name}: rc={proc.returncode} {proc.stderr[-500:]}"
        scores[name] = float(found.group(2))
    for name, score in sorted(scores.items()):
        print(f"systemd-analyze security {name}: {score}")
        record_property(f"exposure[{name}]", score)
    assert len(scores) == 4
    too_high = {n: s for n, s in scores.items() if s > MAX_EXPOSURE}
    assert not too_high, f"exposure above {MAX_EXPOSURE}: {too_high}"
