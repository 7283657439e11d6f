"""The app's side: ``qsetup client-config`` and ``qsetup celery`` (issue 22).

The settings come from the same functions deploy uses; the password is masked unless asked
for, and ``qsetup celery`` never puts it in celery's argv or environment.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.artifacts.client import client_config, render_env, render_python
from qsetup.cli import app
from qsetup.desired.state import FAILOVER_WINDOW
from qsetup.errors import QsetupError
from qsetup.inventory.loader import load_inventory
from qsetup.ops import client as ops_client

PASSWORD = BASE_SECRETS["rabbitmq-user-orders"]
CLUSTER = BASE_INVENTORY.replace(
    "  worker1:\n    address: 10.0.0.2\n",
    "  worker1:\n    address: 10.0.0.2\n  rabbit2:\n    address: 10.0.0.3\n"
    "  rabbit3:\n    address: 10.0.0.4\n",
).replace("  host: rabbit1\n  vhosts", "  hosts: [rabbit3, rabbit1, rabbit2]\n  vhosts")
TLS = "tls:\n  enabled: true\n"
OPS_USER = BASE_INVENTORY.replace(
    "    - name: orders\n      vhost: orders\n",
    "    - name: orders\n      vhost: orders\n    - name: ops\n      vhost: orders\n",
)
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def secrets_with_ops() -> dict[str, str]:
    return {**BASE_SECRETS, "rabbitmq-user-ops": "ops-pw-0123456789abcdef"}


# --- the settings ---------------------------------------------------------------------


def test_a_tls_cluster_lists_every_node_in_order_with_quorum_and_the_ca(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    cfg = client_config(load_inventory(write_inventory(CLUSTER + TLS)))
    assert cfg.broker_url.split(";") == [
        f"amqps://orders:{PASSWORD}@{address}:5671/orders"
        for address in ("10.0.0.4", "10.0.0.1", "10.0.0.3")  # broker.hosts' order
    ]
    assert cfg.ca_file == (tmp_path / "inventory.ca.pem").resolve()
    assert cfg.ca_file.is_absolute()
    conf = cfg.conf()
    assert conf["broker_use_ssl"] == {
        "ca_certs": str(cfg.ca_file),
        "cert_reqs": 2,
        "server_hostname": None,
    }
    assert conf["task_default_queue_type"] == "quorum"
    assert conf["broker_transport_options"] == {
        "confirm_publish": True,
        "connect_retries_timeout": FAILOVER_WINDOW,
    }
    assert conf["result_backend"] == "rpc://"


def test_a_single_node_without_tls_is_plain_amqp_with_classic_queues(
    write_inventory: WriteInventory,
) -> None:
    cfg = client_config(load_inventory(write_inventory()))
    assert cfg.broker_url == f"amqp://orders:{PASSWORD}@10.0.0.1:5672/orders"
    assert cfg.settings == {}  # Celery's defaults: classic queues, no TLS
    assert cfg.ca_file is None


def test_the_python_module_gives_celery_exactly_the_settings(
    write_inventory: WriteInventory,
) -> None:
    cfg = client_config(load_inventory(write_inventory(CLUSTER + TLS)))
    namespace: dict[str, object] = {}
    exec(render_python(cfg), namespace)  # noqa: S102 - the text qsetup celery imports
    got = {k: v for k, v in namespace.items() if not k.startswith("__") and k != "ssl"}
    assert got == cfg.conf()


def test_masked_texts_name_the_secret_and_never_hold_the_password(
    write_inventory: WriteInventory,
) -> None:
    cfg = client_config(load_inventory(write_inventory(CLUSTER + TLS))).masked()
    for text in (render_env(cfg), render_python(cfg), json.dumps(cfg.conf())):
        assert PASSWORD not in text
        assert "amqps://orders:<secret:rabbitmq-user-orders>@10.0.0.4:5671/orders" in text


def test_a_password_with_url_characters_is_masked_in_its_quoted_form(
    write_inventory: WriteInventory,
) -> None:
    odd = "p@ss/word:with;odd#chars"
    inventory = write_inventory(secrets={**BASE_SECRETS, "rabbitmq-user-orders": odd})
    cfg = client_config(load_inventory(inventory))
    assert "p%40ss%2Fword" in cfg.broker_url
    masked = render_env(cfg.masked())
    assert "p%40ss" not in masked and odd not in masked
    assert "<secret:rabbitmq-user-orders>" in masked


def test_as_another_user_and_unknown_users(write_inventory: WriteInventory) -> None:
    loaded = load_inventory(write_inventory(OPS_USER, secrets_with_ops()))
    assert client_config(loaded, "ops").broker_url.startswith("amqp://ops:ops-pw-")
    with pytest.raises(QsetupError, match=r"--as nobody: no such broker user .*orders, ops"):
        client_config(loaded, "nobody")


# --- qsetup celery: what the child process gets ------------------------------------------


def test_celery_gets_the_password_only_from_a_private_module_removed_after(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = client_config(load_inventory(write_inventory(CLUSTER + TLS)))
    assert cfg.ca_file is not None
    cfg.ca_file.write_text("the CA deploy made\n")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://elsewhere//")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://elsewhere")
    seen: dict[str, object] = {}

    def fake_run(argv: list[str], env: dict[str, str], check: bool) -> object:
        folder = Path(env["PYTHONPATH"].split(os.pathsep)[0])
        module = folder / f"{ops_client.CONFIG_MODULE}.py"
        seen.update(
            argv=argv,
            env=env,
            folder=folder,
            folder_mode=stat.S_IMODE(folder.stat().st_mode),
            module_mode=stat.S_IMODE(module.stat().st_mode),
            module=module.read_text(),
        )
        return type("Done", (), {"returncode": 7})()

    code = ops_client.run_celery(
        cfg, ["inspect", "registered"], which=lambda name: "/usr/bin/celery", run=fake_run
    )
    assert code == 7  # celery's own exit code
    assert seen["argv"] == [
        "/usr/bin/celery", "--config", ops_client.CONFIG_MODULE, "inspect", "registered",
    ]  # fmt: skip
    env = seen["env"]
    assert isinstance(env, dict)
    assert not [a for a in seen["argv"] if PASSWORD in a]  # type: ignore[attr-defined]
    assert not [k for k, v in env.items() if PASSWORD in v]
    assert "CELERY_BROKER_URL" not in env and "CELERY_RESULT_BACKEND" not in env
    assert (seen["folder_mode"], seen["module_mode"]) == (0o700, 0o600)
    assert PASSWORD in str(seen["module"])
    assert not Path(str(seen["folder"])).exists()


def test_no_celery_command_is_one_line_and_exit_1(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inventory = write_inventory()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(ops_client.shutil, "which", lambda name: None)
    monkeypatch.setattr(ops_client.sys, "executable", str(tmp_path / "nowhere" / "python"))
    code, output = run("celery", "-i", str(inventory), "--", "inspect", "ping")
    assert code == 1
    assert output.strip().splitlines() == [
        "qsetup celery: no celery command on PATH; install Celery (pip install "
        "'celery==<the version your workers run>') and try again"
    ]


@pytest.mark.skipif(sys.platform != "linux", reason="a shell script as celery")
def test_the_cli_runs_celery_with_the_arguments_and_passes_its_exit_code_on(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inventory = write_inventory()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    fake = bin_dir / "celery"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {record}\n'
        f'cat "${{PYTHONPATH%%:*}}/{ops_client.CONFIG_MODULE}.py" >> {record}\n'
        "exit 5\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    code, output = run(
        "celery", "-i", str(inventory), "--", "call", "proj.tasks.add", "--args", "[2, 3]"
    )
    assert code == 5, output
    argv_line, *module = record.read_text().splitlines()
    assert argv_line == f"--config {ops_client.CONFIG_MODULE} call proj.tasks.add --args [2, 3]"
    assert f"broker_url = 'amqp://orders:{PASSWORD}@10.0.0.1:5672/orders'" in module


# --- qsetup client-config -------------------------------------------------------------------


def test_client_config_masks_by_default_and_shows_with_the_flag(
    write_inventory: WriteInventory,
) -> None:
    inventory = str(write_inventory(CLUSTER + TLS))
    code, output = run("client-config", "-i", inventory)
    assert code == 0, output
    assert PASSWORD not in output
    assert (
        "CELERY_BROKER_URL='amqps://orders:<secret:rabbitmq-user-orders>@10.0.0.4:5671/orders;"
        in output
    )
    code, output = run("client-config", "-i", inventory, "--show-secrets", "--format", "json")
    assert code == 0, output
    data = json.loads(output)
    assert data["broker_url"].startswith(f"amqps://orders:{PASSWORD}@10.0.0.4:5671/orders;")
    assert data["settings"]["task_default_queue_type"] == "quorum"
    assert Path(data["ca_file"]).is_absolute()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--as", "nobody"), "--as nobody: no such broker user in broker.users (known: orders)"),
        (("--vhost", "nope"), "--vhost nope: not in broker.vhosts (known: orders)"),
        (("--format", "yaml"), "--format must be env, python or json, got 'yaml'"),
    ],
)
def test_client_config_bad_input_is_one_line_and_exit_1(
    write_inventory: WriteInventory, args: tuple[str, ...], message: str
) -> None:
    code, output = run("client-config", "-i", str(write_inventory()), *args)
    assert (code, output.strip()) == (1, message)


@pytest.mark.parametrize(("signum", "outcome"), [(signal.SIGINT, 0), (signal.SIGTERM, 143)])
def test_ctrl_c_is_left_to_celery_and_sigterm_still_removes_the_module(
    write_inventory: WriteInventory, signum: int, outcome: int
) -> None:
    cfg = client_config(load_inventory(write_inventory()))
    folders: list[Path] = []

    def fake_run(argv: list[str], env: dict[str, str], check: bool) -> object:
        folders.append(Path(env["PYTHONPATH"].split(os.pathsep)[0]))
        os.kill(os.getpid(), signum)  # as a terminal's Ctrl-C or a kill would
        time.sleep(0.1)
        return type("Done", (), {"returncode": 0})()

    before = signal.getsignal(signal.SIGINT)
    try:
        code = ops_client.run_celery(cfg, ["status"], which=lambda n: "/bin/true", run=fake_run)
    except SystemExit as exc:
        code = int(str(exc.code))
    assert code == outcome
    assert not folders[0].exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_tls_without_the_ca_file_is_one_line_before_celery_runs(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    inventory = write_inventory(BASE_INVENTORY + TLS)
    code, output = run("celery", "-i", str(inventory), "--", "inspect", "ping")
    assert code == 1
    assert output.strip() == (
        f"{(tmp_path / 'inventory.ca.pem').resolve()}: no such CA certificate (TLS is on); "
        "run qsetup deploy first, which makes it"
    )


def test_the_managed_result_backend_is_the_apps_users_url_masked_and_with_tls(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    from test_results import RESULTS_INVENTORY, RESULTS_SECRETS

    loaded = load_inventory(write_inventory(RESULTS_INVENTORY + TLS, RESULTS_SECRETS))
    cfg = client_config(loaded)
    ca = (tmp_path / "inventory.ca.pem").resolve()
    assert cfg.result_backend.startswith("rediss://app:app-pw-0123456789abcdef@10.0.0.2:6379/0")
    assert f"ssl_ca_certs={str(ca).replace('/', '%2F')}" in cfg.result_backend
    assert cfg.settings["result_expires"] == 86400
    masked = cfg.masked()
    for text in (render_env(masked), render_python(masked)):
        assert "app-pw-0123456789abcdef" not in text
        assert "rediss://app:<secret:results-user-app>@10.0.0.2:6379/0" in text
