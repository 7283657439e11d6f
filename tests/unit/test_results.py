"""The managed result backend (``results:``): inventory, rendering, firewall, comparison, read.

Regenerate the goldens after an intended template change with::

    QSETUP_UPDATE_GOLDEN=1 pytest tests/unit/test_results.py
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from unitdata import BASE_INVENTORY, BASE_SECRETS, WriteInventory

from qsetup.artifacts.plan import build_ansible_inventory
from qsetup.artifacts.render import Artifact, render_all
from qsetup.artifacts.tls import HostCert, TlsMaterial
from qsetup.converge.compare import compare_host, results_differences
from qsetup.converge.facts import AclUser, HostFacts, ResultsFact
from qsetup.converge.target import HostTarget
from qsetup.desired.firewall import firewall_rules
from qsetup.errors import InventoryError
from qsetup.inventory.loader import load_inventory, validate_document
from qsetup.inventory.model import Inventory
from qsetup.inventory.secrets import Secrets
from qsetup.inventory.yamlsource import parse_yaml

sys.path.insert(0, str(Path(__file__).parents[2] / "playbooks" / "module_utils"))
import qsetup_read  # noqa: E402

GOLDEN = Path(__file__).parent / "golden-results"
UPDATE = os.environ.get("QSETUP_UPDATE_GOLDEN") == "1"

RESULTS_INVENTORY = (
    BASE_INVENTORY.replace(
        "    address: 10.0.0.2\n", "    address: 10.0.0.2\n  app1:\n    address: 10.0.0.9\n"
    )
    + "beat:\n  host: worker1\nresults:\n  host: worker1\n  allow_from: [192.0.2.0/24]\n"
    + "firewall:\n  enabled: true\n"
)  # fmt: skip
RESULTS_SECRETS = {
    **BASE_SECRETS,
    "results-user-workers": "workers-pw-0123456789abcdef",
    "results-user-app": "app-pw-0123456789abcdef",
    "results-user-beat": "beat-pw-0123456789abcdef",
    "results-user-flower": "flower-pw-0123456789abcdef",
}


def inventory(text: str = RESULTS_INVENTORY) -> Inventory:
    return validate_document(parse_yaml(Path("results.yml"), text))


def secrets(values: dict[str, str] = RESULTS_SECRETS) -> Secrets:
    return Secrets(
        path=Path("/nonexistent/results.secrets.yml"),
        values={k: SecretStr(v) for k, v in values.items()},
    )


def files(arts: list[Artifact]) -> dict[tuple[str, str], Artifact]:
    return {(a.host, str(a.path)): a for a in arts}


def env_value(content: str, key: str) -> str:
    line = next(x for x in content.splitlines() if x.startswith(f"{key}="))
    return line.split("=", 1)[1].strip('"')


# --- inventory ------------------------------------------------------------------------


def test_a_missing_user_password_is_one_line_naming_the_secret(
    write_inventory: WriteInventory,
) -> None:
    values = {k: v for k, v in RESULTS_SECRETS.items() if k != "results-user-beat"}
    path = write_inventory(RESULTS_INVENTORY, values)
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert len(err.value.problems) == 1
    line = err.value.problems[0]
    assert f"{path}:" in line and "results.host" in line, line
    assert "secret 'results-user-beat' is not in" in line, line


def test_the_results_port_may_not_clash_with_the_broker(write_inventory: WriteInventory) -> None:
    text = RESULTS_INVENTORY.replace(
        "results:\n  host: worker1\n", "results:\n  host: rabbit1\n  port: 5672\n"
    )
    with pytest.raises(InventoryError) as err:
        load_inventory(write_inventory(text, RESULTS_SECRETS))
    assert any(
        "results.port" in p and "port 5672 on host 'rabbit1'" in p for p in err.value.problems
    )


def test_the_results_host_must_be_declared(write_inventory: WriteInventory) -> None:
    text = RESULTS_INVENTORY.replace("results:\n  host: worker1", "results:\n  host: nowhere")
    with pytest.raises(InventoryError) as err:
        load_inventory(write_inventory(text, RESULTS_SECRETS))
    assert any("results.host: host 'nowhere' is not declared" in p for p in err.value.problems)


# --- rendering ------------------------------------------------------------------------


def test_the_server_files_match_their_goldens() -> None:
    arts = [a for a in render_all(inventory(), secrets()) if a.role == "results"]
    assert {str(a.path) for a in arts} == {"/etc/redis/redis.conf", "/etc/redis/users.acl"}
    for art in arts:
        path = GOLDEN / str(art.path).lstrip("/")
        if UPDATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(art.content, encoding="utf-8")
        assert art.content == path.read_text(encoding="utf-8"), art.path
    acl = files(arts)[("worker1", "/etc/redis/users.acl")]
    assert acl.secret and acl.mode == 0o600 and acl.owner == "redis"
    # Hashes only: no password is in the server's files.
    for value in RESULTS_SECRETS.values():
        assert all(value not in a.content for a in arts)
    digest = hashlib.sha256(b"workers-pw-0123456789abcdef").hexdigest()
    assert f"user workers on #{digest} ~celery-task-meta-*" in acl.content
    assert acl.content.startswith("user default off ")


def test_each_client_kind_gets_its_own_user_in_its_env_file() -> None:
    out = files(render_all(inventory(), secrets()))
    worker = env_value(
        out[("worker1", "/etc/qsetup/worker-default.env")].content, "CELERY_RESULT_BACKEND"
    )
    beat = env_value(out[("worker1", "/etc/qsetup/beat.env")].content, "CELERY_RESULT_BACKEND")
    flower = env_value(out[("rabbit1", "/etc/qsetup/flower.env")].content, "CELERY_RESULT_BACKEND")
    assert worker == "redis://workers:workers-pw-0123456789abcdef@10.0.0.2:6379/0"
    assert beat == "redis://beat:beat-pw-0123456789abcdef@10.0.0.2:6379/0"
    assert flower == "redis://flower:flower-pw-0123456789abcdef@10.0.0.2:6379/0"
    assert all(out[k].mode == 0o600 and out[k].secret for k in out if k[1].endswith(".env"))
    settings = env_value(out[("worker1", "/etc/qsetup/worker-default.env")].content,
                         "QSETUP_CELERY_SETTINGS")  # fmt: skip
    assert '\\"result_expires\\": 86400' in settings


def test_without_a_backend_flowers_environment_is_as_before() -> None:
    out = files(render_all(inventory(BASE_INVENTORY), secrets()))
    env = out[("rabbit1", "/etc/qsetup/flower.env")].content
    # rpc:// results are only readable by their sender: Flower gets no backend (and an
    # upgrade of qsetup restarts no Flower).
    assert "CELERY_RESULT_BACKEND" not in env
    assert 'CELERY_BROKER_URL="amqp://orders:' in env and '\nPYTHONPATH="' in env


def test_a_result_backend_written_by_hand_wins() -> None:
    by_hand = "  vhost: orders\n  result_backend: db+postgresql://db/results\nworkers:"
    text = RESULTS_INVENTORY.replace("  vhost: orders\nworkers:", by_hand)
    out = files(render_all(inventory(text), secrets()))
    env = out[("worker1", "/etc/qsetup/worker-default.env")].content
    assert env_value(env, "CELERY_RESULT_BACKEND") == "db+postgresql://db/results"
    assert "result_expires" not in env


def test_tls_makes_it_rediss_checked_against_qsetups_ca() -> None:
    text = RESULTS_INVENTORY + "tls:\n  enabled: true\n"
    pair = HostCert("x", "CERT", "KEY", None)  # type: ignore[arg-type]
    tls = TlsMaterial("CA", {h: replace(pair, host=h) for h in ("rabbit1", "worker1")})
    out = files(render_all(inventory(text), secrets(), tls))
    conf = out[("worker1", "/etc/redis/redis.conf")].content
    assert "port 0\n" in conf and "tls-port 6379\n" in conf and "bind 10.0.0.2\n" in conf
    assert out[("worker1", "/etc/redis/tls/key.pem")].secret
    url = env_value(
        out[("worker1", "/etc/qsetup/worker-default.env")].content, "CELERY_RESULT_BACKEND"
    )
    assert url == (
        "rediss://workers:workers-pw-0123456789abcdef@10.0.0.2:6379/0"
        "?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=%2Fetc%2Fqsetup%2Ftls%2Fca.pem"
    )


# --- plan and firewall ----------------------------------------------------------------


def test_only_celerys_hosts_and_the_allowed_networks_reach_the_port() -> None:
    rules = firewall_rules(inventory())["worker1"]
    port = next(r for r in rules.rules if r.port == 6379)
    # rabbit1 runs Flower; worker1 (workers, beat) is the server's own host (loopback).
    assert port.sources == ("10.0.0.1", "192.0.2.0/24"), port
    assert "10.0.0.9" not in port.sources  # app1: in the inventory, no Celery client


def test_the_plan_installs_the_server_and_the_clients_library() -> None:
    inv = inventory()
    arts = render_all(inv, secrets())
    hosts = build_ansible_inventory(inv, arts)["all"]["hosts"]
    server = hosts["worker1"]
    assert server["qsetup_is_results"] is True
    assert "redis-server" in server["qsetup_apt_packages"]["bookworm"]
    assert "redis-server" in server["qsetup_apt_packages"]["trixie"]
    assert {f["dest"] for f in server["qsetup_results_files"]} == {
        "/etc/redis/redis.conf",
        "/etc/redis/users.acl",
    }
    assert not any(f["dest"].startswith("/etc/redis") for f in server["qsetup_files"])
    # Debian's server and its configuration stay when the inventory drops results:.
    manifest = server["qsetup_manifest"]
    assert not any(f.startswith("/etc/redis") or "redis" in f for f in manifest["files"])
    assert all(u["role"] != "results" for u in manifest["units"])
    # What it does record: the server runs here, so a host that no longer holds it stops it.
    assert manifest["results"] == {"unit": "redis-server.service"}
    assert "results" not in hosts["rabbit1"]["qsetup_manifest"]
    venv = next(v for v in server["qsetup_venvs"] if v["name"] == "default")
    assert any(p.startswith("redis") for p in venv["packages"])
    flower = next(v for v in hosts["rabbit1"]["qsetup_venvs"] if v["name"] == "flower")
    assert any(p.startswith("redis") for p in flower["packages"])
    assert "redis-server" not in hosts["rabbit1"]["qsetup_apt_packages"]["bookworm"]
    apt = RESULTS_INVENTORY.replace("    install: pip\n", "    install: apt\n")
    inv = inventory(apt)
    hosts = build_ansible_inventory(inv, render_all(inv, secrets()))["all"]["hosts"]
    assert "python3-redis" in hosts["worker1"]["qsetup_apt_packages"]["bookworm"]


# --- the comparison -------------------------------------------------------------------


def server_target() -> HostTarget:
    inv = inventory()
    arts = render_all(inv, secrets())
    data = build_ansible_inventory(inv, arts)["all"]
    return HostTarget.from_plan("worker1", data["hosts"]["worker1"], data["vars"], {})


SECRET_VALUES = {**RESULTS_SECRETS, "results-user-qsetup-admin": "admin-pw"}


def acl_line(name: str, password: str, state: str = "on") -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user {name} {state} #{digest} ~celery-task-meta-* resetchannels -@all"


def server_facts(**changes: Any) -> HostFacts:
    users = [
        acl_line("default", "", "off"),
        acl_line("qsetup-admin", "admin-pw"),
        *(acl_line(k, SECRET_VALUES[f"results-user-{k}"]) for k in ("workers", "app", "beat")),
        acl_line("flower", SECRET_VALUES["results-user-flower"]),
    ]  # fmt: skip
    fact = ResultsFact.from_read(
        {
            "redis_version": "7.0.15",
            "role": "master",
            "used_memory_human": "1.02M",
            "maxmemory_policy": "noeviction",
            "aof_enabled": "1",
            "connected_clients": "4",
            "acl": users,
        }
    )
    assert fact is not None
    return HostFacts("worker1", "bookworm", results=replace(fact, **changes))


def problems(facts: HostFacts) -> list[str]:
    return [d.line for d in results_differences(server_target(), facts, SECRET_VALUES)]


def test_a_server_as_qsetup_sets_it_up_has_no_difference() -> None:
    assert problems(server_facts()) == []


def test_drift_in_the_server_is_named_with_its_fix() -> None:
    base = server_facts().results
    assert base is not None
    users = {u.name: u for u in base.users}
    default_on = replace(users["default"], enabled=True)
    flower_off = replace(users["flower"], enabled=False)
    beat_pw = replace(users["beat"], hashes=("0" * 64,))
    intruder = AclUser("intruder", True, (), ())
    changed = (default_on, users["qsetup-admin"], users["workers"], beat_pw, flower_off, intruder)
    facts = server_facts(users=changed, aof_enabled=False, maxmemory_policy="allkeys-lru")
    assert problems(facts) == [
        "worker1: result backend: persistence (appendonly) is off; run qsetup deploy",
        "worker1: result backend: maxmemory-policy is allkeys-lru; run qsetup deploy",
        "worker1: result backend user 'default': enabled; expected off; run qsetup deploy",
        "worker1: result backend user 'app': missing; run qsetup deploy",
        "worker1: result backend user 'beat': password differs; run qsetup deploy",
        "worker1: result backend user 'flower': off; expected on; run qsetup deploy",
        "worker1: result backend user 'intruder': not in the inventory; run qsetup deploy",
    ]
    diffs = results_differences(server_target(), facts, SECRET_VALUES)
    assert all(d.kind == "results" and d.fix == "restart" for d in diffs)


def test_a_server_that_does_not_answer_is_a_difference_of_the_one_comparison() -> None:
    facts = HostFacts("worker1", "bookworm", results=ResultsFact(error="Connection refused"))
    diffs = compare_host(server_target(), facts, SECRET_VALUES)
    lines = [d.line for d in diffs]
    assert (
        "worker1: result backend: does not answer qsetup's reader (Connection refused); "
        "run qsetup deploy"
    ) in lines


# --- the read -------------------------------------------------------------------------


def fake_server(replies: dict[str, bytes]) -> tuple[int, list[list[str]]]:
    """A one-connection RESP server on loopback: answers each command from ``replies``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[list[str]] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as stream:
            while line := stream.readline():
                count = int(line[1:])
                args = []
                for _ in range(count):
                    size = int(stream.readline()[1:])
                    args.append(stream.read(size + 2)[:-2].decode())
                seen.append(args)
                conn.sendall(replies[args[0].upper()])
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def test_the_read_speaks_redis_as_qsetups_reader() -> None:
    info = (
        b"# Server\r\nredis_version:7.0.15\r\nrole:master\r\nused_memory_human:1.02M\r\n"
        b"aof_enabled:1\r\nconnected_clients:3\r\n"
    )
    acl = b"user default off resetchannels -@all"
    port, seen = fake_server(
        {
            "AUTH": b"+OK\r\n",
            "INFO": b"$%d\r\n%s\r\n" % (len(info), info),
            "ACL": b"*1\r\n$%d\r\n%s\r\n" % (len(acl), acl),
        }
    )
    spec = {"address": "127.0.0.1", "port": port, "user": "qsetup-admin", "password": "pw"}
    out = qsetup_read.read_results(spec)
    assert seen == [["AUTH", "qsetup-admin", "pw"], ["INFO"], ["ACL", "LIST"]]
    assert out["redis_version"] == "7.0.15" and out["aof_enabled"] == "1"
    assert out["acl"] == [acl.decode()]
    fact = ResultsFact.from_read(out)
    assert fact is not None and fact.clients == 3 and fact.users[0].enabled is False


def test_a_refused_login_is_an_error_not_a_traceback() -> None:
    port, _ = fake_server({"AUTH": b"-WRONGPASS invalid username-password pair\r\n"})
    out = qsetup_read.read_results(
        {"address": "127.0.0.1", "port": port, "user": "u", "password": "p"}
    )
    assert out == {"error": "WRONGPASS invalid username-password pair"}
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    out = qsetup_read.read_results(
        {"address": "127.0.0.1", "port": port, "user": "u", "password": "p"}
    )
    assert "refused" in out["error"].lower()


def test_status_checks_the_backends_certificate_with_tls() -> None:
    from qsetup.status.certs import Endpoint, tls_endpoints

    assert tls_endpoints(inventory()) == ()
    inv = inventory(RESULTS_INVENTORY + "tls:\n  enabled: true\n")
    assert tls_endpoints(inv)[-1] == Endpoint("worker1", "10.0.0.2", 6379, "results")


def test_a_host_that_no_longer_holds_the_backend_stops_its_server_and_keeps_its_files() -> None:
    from qsetup.converge.removals import removals

    held = {"version": 1, "units": [], "files": [], "results": {"unit": "redis-server.service"}}
    dropped = {"version": 1, "units": [], "files": []}
    gone = removals(held, dropped)
    assert gone["units"] == [{"unit": "redis-server.service", "role": "results"}]
    assert gone["files"] == [] and gone["any"] is True
    assert removals(held, held)["units"] == []
    # Only that unit: a manifest naming another is not obeyed.
    other = {**held, "results": {"unit": "ssh.service"}}
    assert removals(other, dropped)["units"] == []
