"""The command line through typer's CliRunner: exit codes and messages."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, WriteInventory

import qsetup
from qsetup import cli
from qsetup.cli import app

runner = CliRunner()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def secrets_of(path: Path) -> dict[str, str]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


# --- init ---------------------------------------------------------------------------


def test_init_yes_writes_files_that_validate(in_tmp: Path) -> None:
    code, output = run("init", "--yes")
    assert code == 0, output
    assert "wrote inventory.yml and inventory.secrets.yml (mode 0600)" in output
    inventory, secrets = in_tmp / "inventory.yml", in_tmp / "inventory.secrets.yml"
    assert secrets.stat().st_mode & 0o777 == 0o600
    text = inventory.read_text()
    assert text.startswith("# qsetup inventory")
    assert text.count("\n#") + text.count("  # ") >= 10  # a commented inventory
    assert (in_tmp / "app" / "proj" / "celery.py").exists()  # the sample app it points at

    values = secrets_of(secrets)
    passwords = [v for k, v in values.items() if k != "rabbitmq-erlang-cookie"]
    assert len(passwords) >= 3
    assert all(len(p) >= 24 for p in passwords)
    assert len(set(values.values())) == len(values)  # all distinct
    assert re.fullmatch(r"[A-Z]{20,}", values["rabbitmq-erlang-cookie"])

    code, output = run("validate", "--inventory", "inventory.yml")
    assert (code, output.strip()) == (
        0,
        "inventory.yml: valid (3 hosts, 1 worker group, 2 broker users)",
    )


def test_init_twice_refuses_without_force(in_tmp: Path) -> None:
    assert run("init", "--yes")[0] == 0
    before = (in_tmp / "inventory.secrets.yml").read_text()
    code, output = run("init", "--yes")
    assert code == 1
    assert output.strip() == "inventory.yml already exists; pass --force to overwrite it"
    assert (in_tmp / "inventory.secrets.yml").read_text() == before

    code, output = run("init", "--yes", "--force")
    assert code == 0, output
    assert (in_tmp / "inventory.secrets.yml").read_text() != before  # fresh passwords
    assert (in_tmp / "inventory.secrets.yml").stat().st_mode & 0o777 == 0o600


def test_init_refuses_when_only_the_secrets_file_exists(in_tmp: Path) -> None:
    (in_tmp / "inventory.secrets.yml").write_text("keep: me\n")
    code, output = run("init", "--yes")
    assert code == 1
    assert "inventory.secrets.yml already exists; pass --force to overwrite it" in output
    assert not (in_tmp / "inventory.yml").exists()
    assert (in_tmp / "inventory.secrets.yml").read_text() == "keep: me\n"


def test_init_with_flags(in_tmp: Path) -> None:
    code, output = run(
        "init",
        "--inventory",
        "prod/site.yml",
        "--broker",
        "mq.example.org",
        "--workers",
        "10.0.0.5, 10.0.0.6",
        "--flower",
        "ops.example.org",
        "--app-module",
        "billing.celery:app",
        "--install",
        "apt",
    )
    assert code == 0, output
    inventory = in_tmp / "prod" / "site.yml"
    assert (in_tmp / "prod" / "site.secrets.yml").stat().st_mode & 0o777 == 0o600
    data = yaml.safe_load(inventory.read_text())
    assert data["hosts"]["mq"]["address"] == "mq.example.org"
    assert data["broker"]["host"] == "mq"
    assert data["flower"]["host"] == "ops"
    assert data["app"]["module"] == "billing.celery:app"
    (group,) = data["workers"]
    assert group["install"] == "apt" and "celery_version" not in group
    addresses = sorted(data["hosts"][h]["address"] for h in group["hosts"])
    assert addresses == ["10.0.0.5", "10.0.0.6"]
    code, output = run("validate", "-i", str(inventory))
    assert code == 0, output


@pytest.mark.parametrize(
    "flags",
    [
        ["--broker", "10.0.0.1", "--workers", "10.0.0.1,10.0.0.1"],
        ["--broker", "fd00::1", "--workers", "fd00::2,fd00::3"],
        ["--broker", "MQ.Example.ORG", "--workers", "mq.example.org"],
        ["--broker", "rabbit", "--workers", "rabbit-2,rabbit"],
        ["--app-module", "my_app.celery:app"],
        ["--app-module", "A"],
    ],
)
def test_init_answers_always_give_a_valid_inventory(in_tmp: Path, flags: list[str]) -> None:
    code, output = run("init", "--yes", *flags)
    assert code == 0, output
    code, output = run("validate", "-i", "inventory.yml")
    assert code == 0, output


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (
            ["--workers", "_w"],
            "init: hosts.w.address: '_w' is not allowed here; use an IP address or a DNS name "
            "(from the answers; nothing was written)",
        ),
        (
            ["--app-module", "9lives"],
            "init: app.module: '9lives' is not allowed here; use a Python module path such as "
            "proj or proj.celery:app (from the answers; nothing was written)",
        ),
    ],
)
def test_init_refuses_answers_that_make_an_invalid_inventory(
    in_tmp: Path, flags: list[str], problem: str
) -> None:
    code, output = run("init", "--yes", *flags)
    assert (code, output.strip()) == (1, problem)
    assert list(in_tmp.iterdir()) == []


def test_init_rejects_unknown_install(in_tmp: Path) -> None:
    code, output = run("init", "--yes", "--install", "yum")
    assert code == 1
    assert output.strip() == "--install must be apt or pip, got 'yum'"
    assert not (in_tmp / "inventory.yml").exists()


def test_init_prompts_without_yes(in_tmp: Path) -> None:
    answers = "mq1\nw1,w2,w3\n\nshop\napt\n"
    code, output = run("init", input=answers)
    assert code == 0, output
    assert "RabbitMQ host (address or DNS name) [rabbit1]:" in output
    assert "Flower host [mq1]:" in output  # the default follows the broker answer
    data = yaml.safe_load((in_tmp / "inventory.yml").read_text())
    assert data["broker"]["host"] == "mq1" and data["flower"]["host"] == "mq1"
    assert data["workers"][0]["hosts"] == ["w1", "w2", "w3"]
    assert data["app"]["module"] == "shop"
    assert run("validate", "-i", "inventory.yml")[0] == 0


def test_init_prompts_only_for_what_flags_leave_open(in_tmp: Path) -> None:
    code, output = run(
        "init", "--broker", "mq1", "--workers", "w1", "--flower", "mq1", input="\n\n"
    )
    assert code == 0, output
    assert "RabbitMQ host" not in output and "Worker hosts" not in output
    assert "Celery app module (-A) [proj]:" in output


def test_init_without_answers_ends_cleanly(in_tmp: Path) -> None:
    # No terminal and nothing on stdin (as in CI): no hang, a clear message, exit 1.
    code, output = run("init", input="")
    assert code == 1
    assert (
        "init got no answer to 'RabbitMQ host (address or DNS name)'; pass --yes to take "
        "the defaults or give the values as options (--broker, --workers, ...)"
    ) in output
    assert "Traceback" not in output and "Aborted" not in output
    assert not (in_tmp / "inventory.yml").exists()


# --- validate -------------------------------------------------------------------------


def test_validate_ok(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    code, output = run("validate", "--inventory", str(inventory))
    assert code == 0
    assert output.strip() == f"{inventory}: valid (2 hosts, 1 worker group, 1 broker user)"


def test_validate_problems_one_line_each(write_inventory: WriteInventory) -> None:
    text = BASE_INVENTORY.replace("install: pip", "install: yum") + "flwer: {}\n"
    inventory = write_inventory(text)
    code, output = run("validate", "--inventory", str(inventory))
    assert code == 1
    assert output.splitlines() == [
        f"{inventory}:22:14: workers[0].install: got 'yum'; use 'apt' or 'pip'",
        f"{inventory}:27:1: flwer: unknown key 'flwer'; did you mean 'flower'?",
    ]


def test_validate_explicit_secrets_option(write_inventory: WriteInventory, tmp_path: Path) -> None:
    inventory = write_inventory()
    moved = tmp_path / "vault.yml"
    inventory.with_name("inventory.secrets.yml").rename(moved)
    assert run("validate", "-i", str(inventory))[0] == 1
    assert run("validate", "-i", str(inventory), "--secrets", str(moved))[0] == 0


def test_validate_insecure_secrets(write_inventory: WriteInventory) -> None:
    inventory = write_inventory(secrets_mode=0o644)
    secrets = inventory.with_name("inventory.secrets.yml")
    code, output = run("validate", "-i", str(inventory))
    assert code == 1
    assert f"fix it with: chmod 600 {secrets}" in output


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"", "the inventory is empty"),
        (b"\x00\x01binary", "not a text file"),
        (b"- a\n- b\n", "expected a mapping with hosts"),
        (b"hosts: [\n", "(yaml): invalid YAML"),
        (b"hosts:\n\trabbit1: {}\n", "a tab character"),
        (b"version: [1\n", "(yaml): invalid YAML"),
    ],
)
def test_validate_bad_files_exit_1_without_traceback(
    tmp_path: Path, content: bytes, expect: str
) -> None:
    path = tmp_path / "inventory.yml"
    path.write_bytes(content)
    code, output = run("validate", "-i", str(path))
    assert code == 1
    assert expect in output
    assert len(output.strip().splitlines()) == 1
    assert output.startswith(f"{path}:")
    assert "Traceback" not in output


def test_validate_missing_file_and_directory(tmp_path: Path) -> None:
    code, output = run("validate", "-i", str(tmp_path / "nope.yml"))
    assert (code, output.strip()) == (
        1,
        f"{tmp_path / 'nope.yml'}:1:1: (file): inventory not found; check the path",
    )
    code, output = run("validate", "-i", str(tmp_path))
    assert (code, output.strip()) == (
        1,
        f"{tmp_path}:1:1: (file): is a directory; give the path of the inventory",
    )


def run_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """The console script as a user runs it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["qsetup", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_a_command_line_error_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, errors = run_main(capsys, monkeypatch, "validate")
    assert (code, out) == (1, "")
    assert errors.splitlines() == [
        "qsetup validate: Missing option '--inventory' / '-i'; see 'qsetup validate --help'"
    ]
    code, _, errors = run_main(capsys, monkeypatch, "status", "-i", "x.yml", "--timeout", "0.1")
    assert code == 1 and len(errors.splitlines()) == 1
    assert errors.startswith("qsetup status: Invalid value for '--timeout'")
    code, _, errors = run_main(capsys, monkeypatch, "no-such-command")
    assert (code, errors.strip()) == (
        1,
        "qsetup: No such command 'no-such-command'; see 'qsetup --help'",
    )
    code, _, errors = run_main(capsys, monkeypatch, "secrets", "rotate")
    assert code == 1
    assert errors.strip() == (
        "qsetup secrets rotate: Missing argument 'NAME'; see 'qsetup secrets rotate --help'"
    )


def test_help_and_a_commands_own_exit_code_pass_through_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, errors = run_main(capsys, monkeypatch)
    assert (code, errors) == (0, "")
    assert out.startswith("Usage: qsetup [OPTIONS] COMMAND [ARGS]...")
    code, out, _ = run_main(capsys, monkeypatch, "status", "--help")
    assert code == 0 and "-i, --inventory <path>" in out
    assert "<bool>" not in out  # a flag takes no value
    code, out, _ = run_main(capsys, monkeypatch, "--version")
    assert (code, out.strip()) == (0, f"qsetup {qsetup.__version__}")
    code, _, errors = run_main(capsys, monkeypatch, "validate", "-i", str(tmp_path / "nope.yml"))
    assert code == 1
    assert errors.strip().endswith("(file): inventory not found; check the path")


def test_the_commands_list_gives_each_whole_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main(capsys, monkeypatch, "--help")
    assert code == 0
    listing = " ".join(out.split("Commands:", 1)[1].split())
    assert "..." not in listing
    assert "(strong generated passwords, 0600)" in listing
    assert "encrypted (ansible-vault format); rotate one password" in listing


# --- render -------------------------------------------------------------------------


def test_render_writes_per_host_files(write_inventory: WriteInventory, tmp_path: Path) -> None:
    inventory = write_inventory()
    out = tmp_path / "out"
    code, output = run("render", "--inventory", str(inventory), "--out", str(out))
    assert code == 0, output
    assert " ".join(output.split()) == (
        f"rendered 11 files into {out}/<host>/ and a Prometheus scrape configuration into "
        f"{out}/prometheus-scrape.yml"
    )
    scrape = yaml.safe_load((out / "prometheus-scrape.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["qsetup-rabbitmq"]["static_configs"][0]["targets"] == ["10.0.0.1:15692"]
    assert jobs["qsetup-flower"]["basic_auth"]["username"] == "admin"
    assert "password" not in jobs["qsetup-flower"]["basic_auth"]  # only a password_file
    (out / "prometheus-scrape.yml").unlink()
    files = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    files = {k: v for k, v in files.items() if (out / k).is_file()}
    assert files == {
        "rabbit1/etc/qsetup/flower.env": 0o600,
        "rabbit1/opt/qsetup/lib/qsetup_celery.py": 0o644,
        "rabbit1/etc/qsetup/flower/flowerconfig.py": 0o600,
        "rabbit1/etc/rabbitmq/rabbitmq.conf": 0o640,
        "rabbit1/etc/rabbitmq/enabled_plugins": 0o644,
        "rabbit1/etc/systemd/system/qsetup-flower.service": 0o644,
        "rabbit1/etc/systemd/system/rabbitmq-server.service.d/qsetup-limits.conf": 0o644,
        "rabbit1/var/lib/rabbitmq/.erlang.cookie": 0o600,
        "worker1/etc/qsetup/worker-default.env": 0o600,
        "worker1/etc/systemd/system/qsetup-worker-default@.service": 0o644,
        "worker1/opt/qsetup/lib/qsetup_celery.py": 0o644,
    }
    unit = (out / "worker1/etc/systemd/system/qsetup-worker-default@.service").read_text()
    assert "User=celery" in unit and "--hostname=default-%i@%%h" in unit


def test_render_invalid_inventory_writes_nothing(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    inventory = write_inventory(BASE_INVENTORY.replace("hosts: [worker1]", "hosts: [nope]"))
    out = tmp_path / "out"
    code, output = run("render", "-i", str(inventory), "-o", str(out))
    assert code == 1
    assert "workers[0].hosts[0]: host 'nope' is not declared" in output
    assert not out.exists()


def test_render_into_a_file_is_a_clear_error(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    code, output = run("render", "-i", str(write_inventory()), "-o", str(blocker))
    assert code == 1
    assert output.startswith(f"cannot write {blocker}/")
    assert output.strip().endswith("(Not a directory); choose another --out directory")
    assert "internal error" not in output


# --- schema, version, help --------------------------------------------------------------


def test_schema_is_json_with_the_sections() -> None:
    code, output = run("schema")
    assert code == 0
    schema = json.loads(output)
    assert {"hosts", "broker", "app", "workers", "beat", "flower"} <= set(schema["properties"])
    assert set(schema["required"]) == {"hosts", "broker", "app", "workers"}


def test_version() -> None:
    code, output = run("--version")
    assert (code, output.strip()) == (0, f"qsetup {qsetup.__version__}")


@pytest.mark.parametrize("command", [[], ["init"], ["validate"], ["render"], ["schema"]])
def test_help(command: list[str]) -> None:
    code, output = run(*command, "--help")
    assert code == 0
    assert "Usage:" in output


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage:" in result.output
    assert result.exit_code in (0, 2)


# --- the error boundary -------------------------------------------------------------------


def test_internal_error_exit_4(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import qsetup.inventory.loader

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret-internals-xyz")

    monkeypatch.setattr(qsetup.inventory.loader, "load_inventory", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, output = run("validate", "-i", str(write_inventory()))
    assert code == 4
    assert "internal error" in output and "please report it" in output
    assert "Traceback" not in output and "secret-internals-xyz" not in output
    logs = list(tmp_path.glob("qsetup-debug-*.log"))
    assert logs and "RuntimeError: secret-internals-xyz" in logs[0].read_text()


def test_internal_error_in_render(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import qsetup.artifacts.render

    def boom(*_: object, **__: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(qsetup.artifacts.render, "render_all", boom)
    code, output = run("render", "-i", str(write_inventory()), "-o", str(tmp_path / "o"))
    assert code == 4
    assert "internal error" in output and "Traceback" not in output
