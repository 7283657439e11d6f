"""Secrets at rest: the vault module, `qsetup secrets encrypt|decrypt|view|edit|rotate`."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from typer.testing import CliRunner
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.cli import app
from qsetup.errors import SecretsError
from qsetup.inventory.loader import load_inventory
from qsetup.inventory.secrets import replace_secret
from qsetup.inventory.vault import (
    PASSWORD_ENV,
    PasswordSource,
    Vault,
    decrypt_bytes,
    encrypt_bytes,
    is_encrypted,
)

runner = CliRunner()
TLS_ON = BASE_INVENTORY + "tls:\n  enabled: true\n"


@pytest.fixture(autouse=True)
def _no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def password_file(folder: Path, password: str = "correct horse") -> Path:
    path = folder / "vault-pass"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def ansible_vault(password: str) -> VaultLib:
    return VaultLib([("default", VaultSecret(password.encode()))])


def key_bodies(folder: Path) -> list[str]:
    """The base64 lines holding each private key's secret part (read before encryption).

    The last line of a P-256 PKCS#8 key holds only public key bytes, which the
    certificate carries too.
    """
    lines = []
    for key in [*folder.glob("*.ca-key.pem"), *folder.glob("*.tls/*.key")]:
        body = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        lines += body[:-1]
    return lines


def plain_hits(folder: Path, needles: list[str]) -> list[tuple[Path, str]]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            hits += [(path, n[:6]) for n in needles if n in text]
    return hits


# --- the vault module ---------------------------------------------------------------------


def test_what_qsetup_encrypts_ansible_vault_opens_and_the_other_way_round(tmp_path: Path) -> None:
    sealed = encrypt_bytes(b"name: value\n", b"pw")
    assert sealed.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert is_encrypted(sealed)
    assert ansible_vault("pw").decrypt(sealed) == b"name: value\n"
    theirs = ansible_vault("pw").encrypt(b"other: thing\n")
    assert decrypt_bytes(tmp_path / "f", theirs, b"pw") == b"other: thing\n"


def test_a_wrong_password_is_one_line_naming_the_file(tmp_path: Path) -> None:
    sealed = encrypt_bytes(b"x: y\n", b"right")
    with pytest.raises(SecretsError) as exc:
        decrypt_bytes(tmp_path / "inventory.secrets.yml", sealed, b"wrong")
    assert str(exc.value) == (
        f"{tmp_path}/inventory.secrets.yml: the vault password does not decrypt it "
        "(wrong password?); give the password it was encrypted with"
    )


def test_no_password_names_the_option_and_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_bytes(encrypt_bytes(b"x: y\n", b"pw"))
    with pytest.raises(SecretsError) as exc:
        Vault(PasswordSource(environ={})).read_bytes(path)
    assert str(exc.value) == (
        f"{path} is encrypted: give --vault-password-file or set QSETUP_VAULT_PASSWORD_FILE"
    )


def test_the_password_comes_from_the_option_the_environment_or_a_prompt(tmp_path: Path) -> None:
    first, second = password_file(tmp_path, "one"), tmp_path / "two"
    second.write_text("  two \n")
    env = {PASSWORD_ENV: str(second)}
    assert PasswordSource(first, environ=env).password(tmp_path) == b"one"
    assert PasswordSource(None, environ=env).password(tmp_path) == b"two"
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return "three"

    source = PasswordSource(None, ask, environ={})
    assert source.password(tmp_path / "s.yml") == b"three"
    assert source.password(tmp_path / "s.yml") == b"three"  # asked once
    assert asked == [f"Vault password for {tmp_path}/s.yml"]
    assert "one" not in repr(PasswordSource(first))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretsError, match="the vault password file is empty"):
        PasswordSource(tmp_path / "empty").password(tmp_path)


def test_written_files_are_0600_and_encrypted_only_when_asked(tmp_path: Path) -> None:
    source = PasswordSource(password_file(tmp_path))
    old = os.umask(0)
    try:
        Vault(source).write_text(tmp_path / "plain", "a: b\n")
        Vault(source, encrypt=True).write_text(tmp_path / "sealed", "a: b\n")
    finally:
        os.umask(old)
    assert (tmp_path / "plain").read_text() == "a: b\n"
    assert ansible_vault("correct horse").decrypt((tmp_path / "sealed").read_bytes()) == b"a: b\n"
    for name in ("plain", "sealed"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_replace_secret_keeps_every_other_line() -> None:
    text = "# mine\nrabbitmq-user-a: 'old'  \nrabbitmq-user-b: keep # note\n"
    assert replace_secret(text, "rabbitmq-user-a", "New1") == (
        "# mine\nrabbitmq-user-a: 'New1'\nrabbitmq-user-b: keep # note\n"
    )
    folded = "a: >-\n  long\n  value\nb: x\n"
    assert yaml.safe_load(replace_secret(folded, "a", "N2")) == {"a": "N2", "b": "x"}


# --- the commands ---------------------------------------------------------------------------


def test_encrypt_then_every_command_reads_and_a_wrong_or_missing_password_fails(
    write_inventory: WriteInventory,
) -> None:
    inventory = write_inventory()
    folder = inventory.parent
    secrets = folder / "inventory.secrets.yml"
    before = secrets.read_bytes()
    pw = password_file(folder)
    code, output = run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert (code, output.strip()) == (0, f"encrypted {secrets}")
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert ansible_vault("correct horse").decrypt(secrets.read_bytes()) == before
    assert plain_hits(folder, list(BASE_SECRETS.values())) == []

    code, output = run("validate", "-i", str(inventory))
    assert (code, output.strip()) == (
        1,
        f"{secrets} is encrypted: give --vault-password-file or set QSETUP_VAULT_PASSWORD_FILE",
    )
    wrong = folder / "wrong"
    wrong.write_text("nope\n")
    code, output = run("validate", "-i", str(inventory), "--vault-password-file", str(wrong))
    assert code == 1
    assert output.strip().endswith(
        "the vault password does not decrypt it (wrong password?); "
        "give the password it was encrypted with"
    )
    assert output.count("\n") == 1
    code, output = run("validate", "-i", str(inventory), env={PASSWORD_ENV: str(pw)})
    assert code == 0, output

    code, output = run("secrets", "view", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0
    assert yaml.safe_load(output) == BASE_SECRETS

    code, output = run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert (code, output.strip()) == (0, f"{secrets}: already encrypted")
    code, output = run("secrets", "decrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert (code, output.strip()) == (0, f"decrypted {secrets}")
    assert secrets.read_bytes() == before
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600


def test_deploy_with_an_encrypted_file_and_no_password_touches_no_host(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = write_inventory()
    pw = password_file(inventory.parent)
    assert run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0

    def no_host(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a host was contacted")

    monkeypatch.setattr("qsetup.status.ssh._spawn", no_host)  # every SSH client starts there
    monkeypatch.setattr("qsetup.ops.deploy.run_playbook", no_host)
    for command in ("deploy", "status", "restart", "backup"):
        code, output = run(command, "-i", str(inventory))
        assert code == 1, (command, output)
        assert "is encrypted: give --vault-password-file" in output


def test_encryption_covers_the_ca_and_host_keys_and_later_keys_are_written_encrypted(
    write_inventory: WriteInventory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_path = tmp_path_factory.mktemp("rendered")  # outside the inventory's folder
    inventory = write_inventory(TLS_ON)
    folder = inventory.parent
    code, output = run("render", "-i", str(inventory), "--out", str(tmp_path / "out1"))
    assert code == 0, output
    bodies = key_bodies(folder)
    assert len(bodies) >= 3
    cert = (folder / "inventory.tls" / "rabbit1.pem").read_bytes()
    pw = password_file(folder)
    code, output = run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0, output
    assert f"encrypted {folder}/inventory.ca-key.pem" in output
    assert f"encrypted {folder}/inventory.tls/rabbit1.key" in output
    needles = [*BASE_SECRETS.values(), *bodies]
    assert plain_hits(folder, needles) == []

    # The keys still work: the certificate is not issued again.
    code, output = run(
        "render",
        "-i",
        str(inventory),
        "--out",
        str(tmp_path / "out2"),
        "--vault-password-file",
        str(pw),
    )
    assert code == 0, output
    assert (folder / "inventory.tls" / "rabbit1.pem").read_bytes() == cert
    # A key issued now (the old one gone) is written encrypted.
    (folder / "inventory.tls" / "rabbit1.pem").unlink()
    code, output = run(
        "render",
        "-i",
        str(inventory),
        "--out",
        str(tmp_path / "out3"),
        "--vault-password-file",
        str(pw),
    )
    assert code == 0, output
    new_key = (folder / "inventory.tls" / "rabbit1.key").read_bytes()
    assert is_encrypted(new_key)
    assert b"PRIVATE KEY" in ansible_vault("correct horse").decrypt(new_key)


def test_your_own_cas_host_keys_in_the_inventorys_folder_are_encrypted_and_still_used(
    write_inventory: WriteInventory, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_tls import OWN, _own_ca

    _own_ca(tmp_path)
    inventory = write_inventory(OWN)
    assert inventory.parent == tmp_path
    key = (tmp_path / "mq.key").read_bytes()
    out = tmp_path_factory.mktemp("rendered")
    pw = password_file(tmp_path)
    code, output = run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0, output
    assert f"encrypted {tmp_path}/mq.key" in output
    # Only the key the inventory names: other files of the folder are not qsetup's.
    assert "other.key" not in output and not is_encrypted((tmp_path / "other.key").read_bytes())
    assert ansible_vault("correct horse").decrypt((tmp_path / "mq.key").read_bytes()) == key
    for command in ("validate", "render"):
        extra = ["--out", str(out / command)] if command == "render" else []
        args = [command, "-i", str(inventory), *extra, "--vault-password-file", str(pw)]
        code, output = run(*args)
        assert code == 0, (command, output)
    assert key.decode() in {p.read_text() for p in out.rglob("key.pem")}
    code, output = run("validate", "-i", str(inventory))
    assert code == 1 and "--vault-password-file" in output, output
    code, output = run("secrets", "decrypt", "-i", str(inventory), "--vault-password-file", str(pw))
    assert code == 0 and (tmp_path / "mq.key").read_bytes() == key, output


def test_encrypt_with_a_wrong_password_changes_nothing(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    inventory = write_inventory(TLS_ON)
    folder = inventory.parent
    assert run("render", "-i", str(inventory), "--out", str(tmp_path / "o"))[0] == 0
    pw = password_file(folder)
    assert run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0
    assert run("secrets", "decrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0
    ca_key = folder / "inventory.ca-key.pem"
    ca_key.write_bytes(encrypt_bytes(ca_key.read_bytes(), b"correct horse"))  # one left sealed
    wrong = folder / "wrong"
    wrong.write_text("nope\n")
    plain = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, output = run(
        "secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(wrong)
    )
    assert code == 1
    assert f"{ca_key}: the vault password does not decrypt it" in output
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == plain


EDITOR_SCRIPT = """\
import pathlib, stat, sys
p = pathlib.Path(sys.argv[1])
mode, folder = stat.S_IMODE(p.stat().st_mode), stat.S_IMODE(p.parent.stat().st_mode)
pathlib.Path(SEEN).write_text("%s %o %o" % (p, mode, folder))
if "BAD" in sys.argv[0]:
    p.write_text(p.read_text().replace("rabbitmq-user-orders:", "x: 1\\n#", 1))
else:
    p.write_text(p.read_text() + "extra-secret: edited-value-123\\n")
"""


def test_edit_saves_a_valid_result_encrypted_and_refuses_an_invalid_one(
    write_inventory: WriteInventory, tmp_path: Path
) -> None:
    inventory = write_inventory()
    folder = inventory.parent
    secrets = folder / "inventory.secrets.yml"
    pw = password_file(folder)
    assert run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0
    seen = tmp_path / "seen"
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR_SCRIPT.replace("SEEN", repr(str(seen))))
    env = {"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""}
    code, output = run(
        "secrets", "edit", "-i", str(inventory), "--vault-password-file", str(pw), env=env
    )
    assert (code, output.strip()) == (0, "saved; run qsetup deploy to apply it")
    copy, mode, folder_mode = seen.read_text().split()
    assert (mode, folder_mode) == ("600", "700")
    assert not Path(copy).exists() and not Path(copy).parent.exists()
    assert is_encrypted(secrets.read_bytes())
    saved = yaml.safe_load(ansible_vault("correct horse").decrypt(secrets.read_bytes()))
    assert saved == {**BASE_SECRETS, "extra-secret": "edited-value-123"}

    before = secrets.read_bytes()
    bad = tmp_path / "BADeditor.py"
    bad.write_text(editor.read_text())
    env = {"EDITOR": f"{sys.executable} {bad}", "VISUAL": ""}
    code, output = run(
        "secrets", "edit", "-i", str(inventory), "--vault-password-file", str(pw), env=env
    )
    assert code == 1
    assert f"{secrets}:" in output and "not changed; run edit again" in output
    assert secrets.read_bytes() == before


def test_rotate_writes_a_new_value_encrypted_deploys_and_checks_status(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qsetup.remote.runner import DeployResult, HostResult

    inventory = write_inventory()
    folder = inventory.parent
    secrets = folder / "inventory.secrets.yml"
    pw = password_file(folder)
    assert run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0
    deployed: list[str] = []

    def fake_deploy(loaded: Any, options: Any, progress: Any = None) -> DeployResult:
        deployed.append(loaded.secrets.get("rabbitmq-user-orders"))
        return DeployResult("successful", 0, {"rabbit1": HostResult(ok=1)}, (), folder, 1.0)

    class Healthy:
        healthy = True
        problems: tuple[str, ...] = ()

    monkeypatch.setattr("qsetup.ops.secrets.run_deploy", fake_deploy)
    monkeypatch.setattr("qsetup.ops.secrets.check_status", lambda loaded, timeout: Healthy())

    code, output = run(
        "secrets", "rotate", "nope", "-i", str(inventory), "--vault-password-file", str(pw)
    )
    assert code == 1
    assert "nope: not a broker or Flower password" in output
    assert "rabbitmq-user-orders" in output and "rabbitmq-erlang-cookie" not in output
    assert deployed == []

    code, output = run(
        "secrets",
        "rotate",
        "rabbitmq-user-orders",
        "-i",
        str(inventory),
        "--vault-password-file",
        str(pw),
    )
    assert code == 0, output
    assert "rotated rabbitmq-user-orders: applied and healthy" in output
    values = yaml.safe_load(ansible_vault("correct horse").decrypt(secrets.read_bytes()))
    new = values.pop("rabbitmq-user-orders")
    assert new != BASE_SECRETS["rabbitmq-user-orders"] and len(new) >= 24
    assert values == {k: v for k, v in BASE_SECRETS.items() if k != "rabbitmq-user-orders"}
    assert deployed == [new]
    assert new not in output


def test_loading_an_encrypted_inventory_keeps_encrypting(write_inventory: WriteInventory) -> None:
    inventory = write_inventory()
    pw = password_file(inventory.parent)
    assert run("secrets", "encrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0
    loaded = load_inventory(inventory, passwords=PasswordSource(pw))
    assert loaded.secrets.encrypted and loaded.vault.encrypt
    assert loaded.secrets.get("rabbitmq-user-orders") == BASE_SECRETS["rabbitmq-user-orders"]
    assert run("secrets", "decrypt", "-i", str(inventory), "--vault-password-file", str(pw))[0] == 0
    assert not load_inventory(inventory).vault.encrypt


def test_rotate_says_to_deploy_again_when_the_deploy_fails(
    write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qsetup.remote.runner import DeployResult, HostResult

    inventory = write_inventory()
    failed = DeployResult("failed", 2, {"rabbit1": HostResult(failed=1)}, (), inventory.parent, 1.0)
    monkeypatch.setattr("qsetup.ops.secrets.run_deploy", lambda *a, **k: failed)
    monkeypatch.setattr(
        "qsetup.ops.secrets.check_status", lambda *a: pytest.fail("status after a failed deploy")
    )
    code, output = run("secrets", "rotate", "flower-user-admin", "-i", str(inventory))
    assert code == 3
    assert "run qsetup deploy to finish" in output
    values = yaml.safe_load((inventory.parent / "inventory.secrets.yml").read_text())
    assert (
        values["flower-user-admin"] != BASE_SECRETS["flower-user-admin"]
    )  # kept for the next deploy
    assert values["flower-user-admin"] not in output
