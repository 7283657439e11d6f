"""TLS on every listener (``tls: {enabled: true}``), on a sandbox of the module's own (issue 12).

qt1 runs RabbitMQ (one node, classic queues) and Flower, qt2 an apt worker group and qt3 a
pip worker group, all deployed with qsetup's generated CA. The tests check what a user
relies on: AMQPS and the management API over HTTPS verify against ``<stem>.ca.pem`` for
the broker's address while the plain ports refuse the controller; Flower answers over
HTTPS only; a task goes round over amqps; ``qsetup status`` is healthy and shows each
certificate's days; a second deploy changes nothing; no private key leaks into output,
run directories, journals, unit files or argv; a certificate near expiry is reported and
renewed; and turning TLS on under a 10 tasks/s stream loses no task (that one turns TLS
off first, so it comes last). The module boots its own hosts
(``harness.SEPARATE["tls"]``) because it turns TLS off and on under load.

Figures (first deploy with TLS, the switch, send pauses) are printed: run with ``-s``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness import (
    SEPARATE,
    ResultStream,
    SandboxHosts,
    Site,
    celery_client,
    changed_by_host,
    moved,
    own_sandbox,
    qsetup,
    site_copy,
    wait_for,
)

from qsetup.artifacts.render import broker_url
from qsetup.artifacts.tls import ca_cert_path, ca_key_path, cache_dir, client_ca_file
from qsetup.desired.state import ADMIN_USER, broker_admin_password, celery_settings
from qsetup.inventory.loader import load_inventory
from qsetup.inventory.vault import PASSWORD_ENV, is_encrypted

pytestmark = pytest.mark.integration

BROKER, *_WORKERS = moved(SEPARATE["tls"]).names
WORKERS = tuple(_WORKERS)
RATE = 10.0
HOST_CERT_FILES = ("/etc/rabbitmq/tls/cert.pem", "/etc/qsetup/flower/tls/cert.pem")
"""Where deploy puts qt1's certificate: RabbitMQ's and Flower's copies."""


def set_tls(site: Site, enabled: bool) -> None:
    """Turn ``tls.enabled`` on or off in the site's inventory file (replaced at once)."""
    data = yaml.safe_load(site.inventory.read_text())
    data["tls"] = {"enabled": enabled}
    staged = site.inventory.with_suffix(".yml.new")
    staged.write_text(yaml.safe_dump(data, sort_keys=False))
    staged.replace(site.inventory)


# --- clients as qsetup's own: the CA beside the inventory ------------------------------------


def wait_for_answers(site: Site, timeout: float = 120) -> set[str]:
    """Wait until every worker node of the site answers ping (over whatever the inventory says)."""
    want = site.expected_nodes()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with celery_client(site.loaded()) as capp:
            with contextlib.suppress(Exception):
                seen = {n for reply in capp.control.ping(timeout=3) or [] for n in reply}
            if want <= seen:
                return seen
        time.sleep(1)
    pytest.fail(f"after {timeout:.0f} s, {sorted(want - seen)} still do not answer ping")


def address(site: Site, host: str = BROKER) -> str:
    return site.addresses[host]


def verifying(site: Site) -> ssl.SSLContext:
    """Python's default client context trusting only ``<stem>.ca.pem``."""
    return ssl.create_default_context(cafile=str(ca_cert_path(site.inventory)))


def served_cert(
    site: Site, port: int, host: str = BROKER, name: str | None = None
) -> x509.Certificate:
    """The certificate a port serves, after a handshake verified for ``name`` (the address)."""
    at = address(site, host)
    with (
        socket.create_connection((at, port), timeout=10) as raw,
        verifying(site).wrap_socket(raw, server_hostname=name or at) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def days_left(cert: x509.Certificate) -> int:
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days


def tls_ports(site: Site) -> dict[str, int]:
    inv = site.loaded().inventory
    assert inv.flower is not None
    return {"amqps": inv.tls.port, "management": inv.tls.management_port,
            "flower": inv.flower.port}  # fmt: skip


# --- the module's hosts and site ---------------------------------------------------------------


@dataclass
class First:
    site: Site
    seconds: float
    stdout: str
    stderr: str
    outputs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHosts]:
    with own_sandbox("tls", Path(tmp_path_factory.mktemp("tls-hosts"))) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def first(hosts: SandboxHosts, tmp_path_factory: pytest.TempPathFactory) -> First:
    """The first deploy with TLS on the fresh hosts, timed; every worker answers after it."""
    starter = hosts.site(Path(tmp_path_factory.mktemp("tls-starter")))
    site = site_copy(starter, Path(tmp_path_factory.mktemp("tls")), lambda d: d.update(
        tls={"enabled": True}))  # fmt: skip
    started = time.monotonic()
    proc = site.qsetup("deploy", "--json")
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_for_answers(site)
    print(f"\nfirst deploy with TLS (qt1 broker + Flower, apt on qt2, pip on qt3): {seconds:.1f} s")
    return First(site, seconds, proc.stdout, proc.stderr)


@pytest.fixture
def site(first: First) -> Site:
    return first.site


# --- listeners ---------------------------------------------------------------------------------


def test_amqps_verifies_against_the_ca_for_the_brokers_address(site: Site) -> None:
    at, port = address(site), tls_ports(site)["amqps"]
    with (
        socket.create_connection((at, port), timeout=10) as raw,
        verifying(site).wrap_socket(raw, server_hostname=at) as conn,
    ):
        conn.sendall(b"AMQP\x00\x00\x09\x01")
        frame = conn.recv(7)
    assert frame[:1] == b"\x01", f"no AMQP method frame over TLS: {frame!r}"  # connection.start
    # The host's names verify too; another name or another CA does not.
    assert days_left(served_cert(site, port, name=BROKER)) > 300
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        served_cert(site, port, name="10.213.27.250")
    stranger = ssl.create_default_context()  # the machine's public CAs, not qsetup's
    with (
        socket.create_connection((at, port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        stranger.wrap_socket(raw, server_hostname=at)


def test_plain_amqp_and_management_refuse_the_controller(site: Site) -> None:
    inv = site.loaded().inventory
    for port in (inv.broker.port, inv.broker.management_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address(site), port), timeout=5).close()


def test_management_over_https_answers_an_administrator(site: Site) -> None:
    loaded = site.loaded()
    url = f"https://{address(site)}:{tls_ports(site)['management']}/api/whoami"
    ca = str(ca_cert_path(site.inventory))
    assert requests.get(url, verify=ca, timeout=10).status_code == 401
    password = broker_admin_password(loaded.inventory, loaded.secrets)
    resp = requests.get(url, auth=(ADMIN_USER, password), verify=ca, timeout=10)
    assert resp.status_code == 200, resp.text
    assert "administrator" in str(resp.json()["tags"]), resp.json()


def test_flower_answers_over_https_only(site: Site) -> None:
    from qsetup.status.flower import flower_url

    loaded = site.loaded()
    url = flower_url(loaded)
    assert url is not None and url.startswith("https://"), url
    flower = loaded.inventory.flower
    assert flower is not None
    user = flower.basic_auth[0]
    ca = str(ca_cert_path(site.inventory))
    assert requests.get(url, verify=ca, timeout=10).status_code == 401
    resp = requests.get(url, auth=(user.name, loaded.secrets.get(user.secret)), verify=ca,
                        timeout=10)  # fmt: skip
    assert resp.status_code == 200, resp.text
    plain = url.replace("https://", "http://", 1)
    with pytest.raises(requests.ConnectionError):
        answer = requests.get(plain, timeout=10)
        pytest.fail(f"Flower answered plain HTTP {answer.status_code} on {plain}")


# --- the system over TLS -----------------------------------------------------------------------


def test_a_task_round_trip_over_amqps(site: Site) -> None:
    from qsetup.remote.roundtrip import send_task

    loaded = site.loaded()
    inv = loaded.inventory
    assert broker_url(inv, loaded.secrets, inv.app.broker_user, inv.app.vhost).startswith(
        f"amqps://{inv.app.broker_user}:"
    )
    trip = send_task(loaded)
    assert trip.result == 5
    assert trip.worker_host in set(WORKERS), trip


def test_qsetup_celery_inspects_the_workers_over_amqps_without_showing_the_password(
    site: Site,
) -> None:
    """The local celery, run by qsetup with the CA and a private settings module, lists tasks."""
    loaded = site.loaded()
    inv = loaded.inventory
    password = loaded.secrets.get(
        next(u for u in inv.broker.users if u.name == inv.app.broker_user).secret
    )
    started = time.monotonic()
    proc = qsetup(
        "celery", "--inventory", str(site.inventory), "--", "inspect", "registered",
        "--timeout", "5", env=site.env, timeout=60, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    nodes = site.expected_nodes()
    assert {n for n in nodes if f"{n}: OK" in proc.stdout} == nodes, output
    assert proc.stdout.count("* proj.tasks.add") == len(nodes), output
    assert password not in output
    print(f"\nqsetup celery -- inspect registered over amqps ({len(nodes)} nodes): {seconds:.1f} s")


def test_status_is_healthy_and_reports_each_certificates_days(site: Site) -> None:
    code, data, wall = site.status()
    assert code == 0 and data["healthy"] is True, data["problems"]
    tls = data["tls"]
    assert tls["ca"] == str(ca_cert_path(site.inventory))
    ports = tls_ports(site)
    got = {(c["host"], c["service"], c["port"]) for c in tls["certificates"]}
    assert got == {(BROKER, service, port) for service, port in ports.items()}, tls
    for c in tls["certificates"]:
        assert c["ok"] is True and c["error"] is None, c
        assert 300 < c["days_left"] <= 365, c
    days = [c["days_left"] for c in tls["certificates"]]
    print(f"\nstatus over TLS: {wall:.1f} s; certificate days {days}")
    table = site.qsetup("status", timeout=120)
    assert table.returncode == 0, table.stdout
    assert "amqps :5671" in table.stdout and "TLS certificates verified" in table.stdout


def test_a_second_deploy_changes_nothing(site: Site) -> None:
    code, data = site.deploy()
    assert code == 0, data["failures"]
    assert changed_by_host(data) == dict.fromkeys(data["hosts"], 0)
    print(f"\nno-op deploy with TLS: {data['elapsed_seconds']} s")


# --- secrets -----------------------------------------------------------------------------------


def key_lines(key_pem: str) -> list[str]:
    """The base64 lines of a PEM private key (what would show if any of it leaked)."""
    lines = [ln.strip() for ln in key_pem.splitlines() if ln.strip() and not ln.startswith("-")]
    assert lines, "no key material"
    return [ln for ln in lines if len(ln) >= 16]


def leaks(text: str, lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln in text]


class PsSampler:
    """``ps -eo args`` on every host once a second while something runs (a deploy)."""

    def __init__(self, site: Site, names: tuple[str, ...]) -> None:
        self.site, self.names = site, names
        self.samples: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.names:
                with contextlib.suppress(Exception):
                    self.samples.append(self.site.ssh(name, "ps -eo args", timeout=20).stdout)
            self._stop.wait(1)

    def __enter__(self) -> PsSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_no_private_key_in_output_runs_journals_units_or_argv(first: First, site: Site) -> None:
    """A canary: qt1's key, made anew for this test's deploy, is found on qt1 and nowhere else.

    The cached pair of qt1 is removed so that this deploy issues a new key and installs it
    (with ``--diff --verbose``, the most talkative output), while ``ps`` is sampled on
    every host. The same search finds the key in the host's key file, so it can fail.
    """
    first_key = (cache_dir(site.inventory) / f"{BROKER}.key").read_text()
    assert not leaks(first.stdout + first.stderr, key_lines(first_key))
    for suffix in (".pem", ".key"):
        (cache_dir(site.inventory) / f"{BROKER}{suffix}").unlink()
    names = tuple(site.addresses)
    with PsSampler(site, names) as ps:
        proc = site.qsetup("deploy", "--diff", "--verbose")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    canary = key_lines((cache_dir(site.inventory) / f"{BROKER}.key").read_text())
    assert canary != key_lines(first_key), "the deploy did not make a new key"
    on_host = site.ssh(BROKER, "cat /etc/rabbitmq/tls/key.pem /etc/qsetup/flower/tls/key.pem",
                       check=True).stdout  # fmt: skip
    assert len(leaks(on_host, canary)) == len(canary), "the new key is not on qt1: no canary"
    wait_for_answers(site)

    found: dict[str, list[str]] = {}

    def look(where: str, text: str) -> None:
        if hit := leaks(text, canary):
            found[where] = hit

    look("deploy stdout/stderr", proc.stdout + proc.stderr)
    runs = site.inventory.parent / ".qsetup" / "runs"
    for path in sorted(p for p in runs.rglob("*") if p.is_file()):
        look(str(path), path.read_bytes().decode("utf-8", "replace"))
    for name in names:
        look(f"{name} journal", site.ssh(name, "journalctl --no-pager", timeout=120).stdout)
        look(f"{name} unit files", site.ssh(
            name, "cat /etc/systemd/system/qsetup-* /etc/systemd/system/qsetup-*/* 2>/dev/null",
        ).stdout)  # fmt: skip
        look(f"{name} argv now", site.ssh(name, "ps -eo args").stdout)
    for i, sample in enumerate(ps.samples):
        look(f"argv sample {i} during the deploy", sample)
    assert found == {}, found
    print(f"\ncanary: {len(canary)} key lines; {len(ps.samples)} ps samples during the deploy; "
          f"{sum(1 for p in runs.rglob('*') if p.is_file())} run files searched")  # fmt: skip


# --- renewal -----------------------------------------------------------------------------------


def near_expiry_cert(site: Site, host: str, days: float) -> bytes:
    """qt1's certificate again (same key, names, extensions, CA) expiring in ``days``."""
    folder = cache_dir(site.inventory)
    current = x509.load_pem_x509_certificate((folder / f"{host}.pem").read_bytes())
    ca = x509.load_pem_x509_certificate(ca_cert_path(site.inventory).read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path(site.inventory).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(current.subject)
        .issuer_name(ca.subject)
        .public_key(current.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    for ext in current.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_certificate_near_expiry_is_reported_and_renewed(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qt1's certificate replaced by one from the same CA and key expiring in 10 days.

    A deploy renews a certificate due within 30 days before it installs it, so a deploy
    can never put the near-expiry one on the host: the test writes it into the cache and
    onto qt1 (RabbitMQ's and Flower's copies, then restarts both), as if time had passed.
    Status must name each port with its days; the next deploy must install a new one.
    Meanwhile the secrets, the CA key and the host keys are encrypted (``qsetup secrets
    encrypt``): status and deploy read them, and the renewed key is written encrypted.
    """
    pem = near_expiry_cert(site, BROKER, days=10.2)
    password = tmp_path / "vault-pass"
    password.write_text("tls-vault-password\n")
    proc = site.qsetup("secrets", "encrypt", "--vault-password-file", str(password))
    assert proc.returncode == 0, proc.stderr
    key_file = cache_dir(site.inventory) / f"{BROKER}.key"
    old_key = key_file.read_bytes()
    assert is_encrypted(old_key) and is_encrypted(ca_key_path(site.inventory).read_bytes())
    site.env[PASSWORD_ENV] = str(password)
    monkeypatch.setenv(PASSWORD_ENV, str(password))
    try:
        _near_expiry_reported_and_renewed(site, pem)
        new_key = key_file.read_bytes()
        assert is_encrypted(new_key) and new_key != old_key
    finally:
        site.qsetup("secrets", "decrypt")
        del site.env[PASSWORD_ENV]


def _near_expiry_reported_and_renewed(site: Site, pem: bytes) -> None:
    (cache_dir(site.inventory) / f"{BROKER}.pem").write_bytes(pem)
    text = pem.decode()
    assert "'" not in text
    for path in HOST_CERT_FILES:
        site.ssh(BROKER, f"printf '%s' '{text}' > {path}", check=True)
    site.ssh(BROKER, "systemctl restart rabbitmq-server.service qsetup-flower.service",
             timeout=180, check=True)  # fmt: skip
    ports = tls_ports(site)
    for port in ports.values():
        wait_for(f"{BROKER}:{port} to serve the 10-day certificate",
                 lambda p=port: _days_or_none(site, p) == 10, 90)  # fmt: skip
    wait_for_answers(site)

    code, data, _ = site.status()
    assert code == 3, data
    for port in ports.values():
        line = f"{BROKER}: certificate on {port}: expires in 10 days (deploy renews it)"
        assert line in data["problems"], data["problems"]
    assert {c["port"]: c["days_left"] for c in data["tls"]["certificates"]} == dict.fromkeys(
        ports.values(), 10
    )

    code, deployed = site.deploy()
    assert code == 0, deployed["failures"]
    assert deployed["hosts"][BROKER]["changed"] > 0, deployed
    for port in ports.values():
        assert days_left(served_cert(site, port)) > 300, port
    wait_for_answers(site)
    code, data, _ = site.status()
    assert code == 0, data["problems"]
    assert all(c["days_left"] > 300 for c in data["tls"]["certificates"]), data["tls"]


def _days_or_none(site: Site, port: int) -> int | None:
    try:
        return days_left(served_cert(site, port))
    except OSError:
        return None


# --- TLS turned on under a stream --------------------------------------------------------------


SEND_TIMEOUT = 15.0


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` on a daemon thread; TimeoutError when it has not returned after ``seconds``.

    A send whose connection died can block in kombu or in the wait for the broker's
    confirm; the stream then gives up on that client instead of stalling with it.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class SwitchingStream(ResultStream):
    """``proj.tasks.add(i, 1000)`` at ``rate`` per second by a client that follows the inventory.

    The client is what a user's publisher does when the broker moves to TLS: it keeps its
    connection while that works, and when a send fails it builds a new client from the
    inventory on disk as it is then (a fresh ``broker_url`` and ``celery_settings``:
    amqps and the CA once ``tls.enabled`` is on) and sends the same task again, until
    the broker takes it. Publisher confirms are on, so a task counts as sent only once
    the broker confirmed it; a send that failed after the broker took it can run twice
    (counted as a duplicate, not a loss). A send that hangs for 15 s counts as failed
    (the client is dropped and the task sent again by a new one). Results come back
    through a reply queue of the stream's own (a quorum queue: it survives the broker's
    restart) that a second connection consumes, built the same way.
    """

    def __init__(self, inventory: Path, rate: float = RATE) -> None:
        self.inventory = inventory
        self.rate = rate
        self.scheme_of: dict[str, str] = {}
        self.switches: list[tuple[float, str]] = []
        """(seconds after start, scheme) of every sending client the stream built."""
        self._init_stream("tls-stream")

    def _app(self) -> tuple[Any, str]:
        from celery import Celery

        loaded = load_inventory(self.inventory)
        inv = loaded.inventory
        url = broker_url(inv, loaded.secrets, inv.app.broker_user, inv.app.vhost)
        capp = Celery("qsetup-tls-stream", broker=url, backend="rpc://")
        capp.conf.update(celery_settings(inv, str(client_ca_file(loaded.path, inv))))
        capp.conf.broker_transport_options = {
            **capp.conf.broker_transport_options,
            "confirm_publish": True,
            # kombu otherwise reconnects to the same URL forever (a plain port that
            # now refuses): give up fast so the stream builds a client anew.
            "max_retries": 1,
            "interval_start": 0,
            "interval_max": 1,
        }
        capp.conf.broker_connection_timeout = 5
        capp.conf.broker_connection_retry_on_startup = False
        return capp, url.split(":", 1)[0]

    def _fresh_app(self) -> tuple[Any, str]:
        """A client from the inventory as it is now (again until it loads)."""
        while True:
            try:
                return self._app()
            except Exception as exc:  # noqa: BLE001 - an inventory read mid-write, say
                with self._lock:
                    self.result.send_errors.append(f"+{self._elapsed():.1f} s new client: {exc}")
                time.sleep(0.5)

    def __enter__(self) -> SwitchingStream:
        self._start_threads()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_threads()
        with contextlib.suppress(Exception):
            capp, _ = self._app()
            with capp.connection_for_write() as conn:
                self.reply_queue.bind(conn.default_channel).delete()
            capp.close()

    def _elapsed(self) -> float:
        return time.monotonic() - self.result.started

    def _send(self) -> None:
        period = 1.0 / self.rate
        next_at = last = time.monotonic()
        capp, scheme = self._fresh_app()
        self.switches.append((self._elapsed(), scheme))
        i = 0
        while not self._stop_sending.is_set():
            task_id = str(uuid.uuid4())
            while not self._stop_sending.is_set():
                send = partial(capp.send_task, "proj.tasks.add", (i, 1000), task_id=task_id,
                               reply_to=self.reply_queue.name, retry=False)  # fmt: skip
                try:
                    within(SEND_TIMEOUT, send)
                except Exception as exc:  # noqa: BLE001 - kombu and amqp raise several kinds
                    with self._lock:
                        self.result.send_errors.append(
                            f"+{self._elapsed():.1f} s task {i} over {scheme}: "
                            f"{type(exc).__name__}: {exc}"[:300]
                        )
                    # Its thread may still hang in that client: close it on the side.
                    threading.Thread(target=capp.close, daemon=True).start()
                    self._stop_sending.wait(0.5)
                    capp, scheme = self._fresh_app()
                    if scheme != self.switches[-1][1]:
                        self.switches.append((self._elapsed(), scheme))
                    continue
                with self._lock:
                    self.result.expected[task_id] = i + 1000
                    self.result.sent_at[task_id] = time.monotonic()
                    self.scheme_of[task_id] = scheme
                break
            now = time.monotonic()
            self.result.longest_send_pause = max(self.result.longest_send_pause, now - last)
            last = now
            i += 1
            next_at = max(next_at + period, now - 1.0)  # after a pause, no burst
            self._stop_sending.wait(max(0.0, next_at - time.monotonic()))
        threading.Thread(target=capp.close, daemon=True).start()

    def _consume(self) -> None:
        while not self._stop_consuming.is_set():
            capp = None
            try:
                capp, _ = self._app()
                with (
                    capp.connection_for_read() as conn,
                    conn.Consumer(self.reply_queue, callbacks=[self._on_result], accept=["json"]),
                ):
                    self._consuming.set()
                    while not self._stop_consuming.is_set():
                        with contextlib.suppress(socket.timeout, TimeoutError):
                            conn.drain_events(timeout=0.5)
            except Exception:  # noqa: BLE001 - the broker went away or moved to TLS: again
                time.sleep(1)
            finally:
                if capp is not None:
                    threading.Thread(target=capp.close, daemon=True).start()


def test_tls_turned_on_under_a_stream_loses_no_task(site: Site) -> None:
    set_tls(site, False)
    code, data = site.deploy()
    assert code == 0, data["failures"]
    inv = site.loaded().inventory
    socket.create_connection((address(site), inv.broker.port), timeout=5).close()  # plain again
    wait_for_answers(site)

    with SwitchingStream(site.inventory) as stream:
        time.sleep(8)
        set_tls(site, True)
        started = time.monotonic()
        code, data = site.deploy()
        switch_seconds = time.monotonic() - started
        assert code == 0, data["failures"]
        time.sleep(10)
        result = stream.finish()
    print(f"\nTLS on under {RATE:g} tasks/s: deploy {switch_seconds:.1f} s; {result.summary()}; "
          f"clients {stream.switches}")  # fmt: skip
    assert result.missing == [], result.summary()
    assert result.wrong == [], result.wrong[:5]
    by_scheme = {s: sum(1 for v in stream.scheme_of.values() if v == s) for s in ("amqp", "amqps")}
    assert by_scheme["amqp"] >= 50 and by_scheme["amqps"] >= 50, by_scheme
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address(site), inv.broker.port), timeout=5).close()
    wait_for_answers(site)
    code, status, _ = site.status()
    assert code == 0, status["problems"]
