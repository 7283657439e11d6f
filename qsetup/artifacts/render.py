"""Render every file deploy installs, per host, from the inventory and its secrets.

Pure: ``render_all`` returns Artifact values and touches no disk; deploy and
``qsetup render`` both use it, so what is shown is what is installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

import jinja2

from qsetup.artifacts.tls import TlsMaterial
from qsetup.desired.beat import redbeat_settings
from qsetup.desired.firewall import (
    FIREWALL_UNIT,
    RULESET_PATH,
    UNIT_PATH,
    UNIT_TEXT,
    firewall_rules,
    render_ruleset,
)
from qsetup.desired.results import (
    ACL_PATH,
    CONF_PATH,
    REDIS_TLS_DIR,
    RESULTS_UNIT,
    acl_text,
    results_address,
    results_url,
)
from qsetup.desired.state import (
    APP_SHIM,
    CA_FILE,
    ETC,
    FLOWER_TLS_DIR,
    RABBIT_TLS_DIR,
    SHIM_DIR,
    UNIT_DIR,
    amqp_endpoint,
    beat_runtime,
    broker_nodes,
    broker_plugins,
    celery_argv,
    celery_settings,
    code_dir,
    consumer_timeout,
    management_endpoint,
    venv_dir,
)
from qsetup.errors import RenderError
from qsetup.inventory.fields import PROMETHEUS_PORT
from qsetup.inventory.model import (
    Inventory,
    WorkerGroup,
    app_broker_user,
    group_broker_user,
    group_vhost,
)
from qsetup.inventory.secrets import Secrets
from qsetup.resources import resource_dir

Role = Literal["broker", "worker", "beat", "flower", "firewall", "results"]


@dataclass(frozen=True)
class Artifact:
    """One file to install on one host."""

    host: str
    path: PurePosixPath
    content: str
    mode: int
    owner: str
    group: str
    role: Role
    service: str
    """The unit (or unit template) that must restart when this file changes."""
    secret: bool = False

    def __repr__(self) -> str:
        # Never show content: some artifacts hold passwords.
        return f"Artifact(host={self.host!r}, path='{self.path}', mode={self.mode:o})"


def celery_command(inv: Inventory, group: WorkerGroup) -> str:
    """The command a group's units run as ``celery`` (see ``desired.state.celery_argv``)."""
    return " ".join(celery_argv(inv, group))


def broker_url(
    inv: Inventory, secrets: Secrets, user_name: str, vhost: str, client: str | None = None
) -> str:
    """Build the AMQP URL with the password quoted for a URL (contains a secret).

    With a cluster, one URL per node joined by ``;``: Celery (kombu) connects to the
    first that answers and fails over to the next when its node goes away; ``client``
    (the host the URL is for) decides which node comes first (see ``broker_nodes``).
    """
    user = next(u for u in inv.broker.users if u.name == user_name)
    password = secrets.get(user.secret)
    scheme, port = amqp_endpoint(inv)
    urls = []
    for _, address in broker_nodes(inv, client):
        if ":" in address:
            address = f"[{address}]"
        urls.append(
            f"{scheme}://{quote(user.name, safe='')}:{quote(password, safe='')}@{address}:"
            f"{port}/{quote(vhost, safe='')}"
        )
    return ";".join(urls)


def _envquote(value: str) -> str:
    # The value goes between double quotes in an EnvironmentFile=; validation refuses control
    # characters (fields.EnvValue), so there is no line break to escape, only \ and ".
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=False,
    )
    env.filters["envquote"] = _envquote
    env.filters["pyrepr"] = repr
    return env


def _systemd_escape(pattern: str) -> str:
    """Keep %i (the unit instance) for systemd; pass Celery's %h %n %d through as %%h ..."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append("%i" if nxt == "i" else f"%%{nxt}")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class _Renderer:
    def __init__(self, inv: Inventory, secrets: Secrets, tls: TlsMaterial | None) -> None:
        self.inv = inv
        self.secrets = secrets
        self.tls = tls
        self.env = _environment()
        self.out: list[Artifact] = []

    def add(
        self,
        host: str,
        path: PurePosixPath,
        template: str,
        *,
        role: Role,
        service: str,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
        secret: bool = False,
        **context: Any,
    ) -> None:
        try:
            content = self.env.get_template(template).render(
                app=self.inv.app, app_shim=APP_SHIM, **context
            )
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {template} failed for host {host}: {exc}") from None
        self.out.append(Artifact(host, path, content, mode, owner, group, role, service, secret))

    def broker(self) -> None:
        for node in self.inv.broker.hosts:
            self._broker_node(node)

    def _broker_node(self, node: str) -> None:
        broker = self.inv.broker
        self.add(
            node,
            PurePosixPath("/etc/rabbitmq/rabbitmq.conf"),
            "rabbitmq/rabbitmq.conf.j2",
            role="broker",
            service="rabbitmq-server.service",
            group="rabbitmq",
            mode=0o640,
            broker=broker,
            cluster=broker.clustered,
            consumer_timeout=consumer_timeout(self.inv),
            metrics_port=PROMETHEUS_PORT if broker.metrics else None,
            tls=self.inv.tls if self.tls is not None else None,
            tls_dir=RABBIT_TLS_DIR,
        )
        if self.tls is not None:
            pair = self.tls.hosts[node]
            for name, content, mode, secret in (
                ("ca.pem", self.tls.ca_pem, 0o644, False),
                ("cert.pem", pair.cert_pem, 0o644, False),
                ("key.pem", pair.key_pem, 0o640, True),
            ):
                self.out.append(
                    Artifact(
                        node,
                        RABBIT_TLS_DIR / name,
                        content,
                        mode,
                        "root",
                        "rabbitmq",
                        "broker",
                        "rabbitmq-server.service",
                        secret=secret,
                    )
                )
        self.add(
            node,
            UNIT_DIR / "rabbitmq-server.service.d" / "qsetup-limits.conf",
            "rabbitmq/limits.conf.j2",
            role="broker",
            service="rabbitmq-server.service",
            broker=broker,
        )
        # RabbitMQ reads enabled_plugins at start; management is always on (qsetup
        # manages users through its API, and Flower reads queue stats from it).
        plugins = broker_plugins(self.inv)
        self.add(
            node,
            PurePosixPath("/etc/rabbitmq/enabled_plugins"),
            "rabbitmq/enabled_plugins.j2",
            role="broker",
            service="rabbitmq-server.service",
            group="rabbitmq",
            mode=0o644,
            plugins=plugins,
        )
        cookie = self.secrets.get(broker.erlang_cookie_secret)
        self.out.append(
            Artifact(
                node,
                PurePosixPath("/var/lib/rabbitmq/.erlang.cookie"),
                cookie,
                0o400,
                "rabbitmq",
                "rabbitmq",
                "broker",
                "rabbitmq-server.service",
                secret=True,
            )
        )

    def workers(self) -> None:
        for group in self.inv.workers:
            user = group_broker_user(self.inv, group)
            vhost = group_vhost(self.inv, group)
            env_file = ETC / f"worker-{group.name}.env"
            state_dir = f"qsetup-worker-{group.name}"
            stop_timeout = (group.time_limit or 600) + 30
            for host in group.hosts:
                url = broker_url(self.inv, self.secrets, user.name, vhost, host)
                self._worker_env(host, group, env_file, url)
                self.add(
                    host,
                    UNIT_DIR / group.unit_template,
                    "celery/worker.service.j2",
                    role="worker",
                    service=group.unit_template,
                    worker=group,
                    env_file=env_file,
                    code_dir=code_dir(self.inv),
                    celery_bin=celery_command(self.inv, group),
                    node_name=_systemd_escape(group.node_pattern),
                    state_dir=state_dir,
                    stop_timeout=stop_timeout,
                )

    def _env_content(self, group: WorkerGroup | None, url: str) -> str:
        """A worker group's (or beat's, with None) environment file."""
        backend = results_url(self.inv, self.secrets, "workers" if group else "beat", str(CA_FILE))
        settings = celery_settings(self.inv)
        if group is None:
            settings.update(redbeat_settings(self.inv, backend, str(CA_FILE)))
        return self.env.get_template("celery/worker.env.j2").render(
            app=self.inv.app,
            worker=group,
            broker_url=url,
            result_backend=backend,
            code_dir=code_dir(self.inv),
            shim_dir=SHIM_DIR,
            celery_settings=json.dumps(settings, sort_keys=True),
        )

    def shims(self) -> None:
        """The module workers and beat load the app through, on each host that runs them."""
        services: dict[str, str] = {}
        for group in self.inv.workers:
            for host in group.hosts:
                services.setdefault(host, group.unit_template)
        for host in self.inv.beat.hosts if self.inv.beat is not None else ():
            services.setdefault(host, "qsetup-beat.service")
        if self.inv.flower is not None:
            services.setdefault(self.inv.flower.host, "qsetup-flower.service")
        roles: dict[str, Role] = {"qsetup-beat.service": "beat", "qsetup-flower.service": "flower"}
        for host, service in services.items():
            role = roles.get(service, "worker")
            self.add(
                host,
                SHIM_DIR / f"{APP_SHIM}.py",
                "celery/qsetup_celery.py.j2",
                role=role,
                service=service,
            )
            if self.tls is not None:
                self.out.append(
                    Artifact(host, CA_FILE, self.tls.ca_pem, 0o644, "root", "root", role, service)
                )

    def _secret_env(
        self, host: str, path: PurePosixPath, content: str, role: Role, service: str
    ) -> None:
        """An environment file that holds passwords: root's only (0600)."""
        self.out.append(
            Artifact(host, path, content, 0o600, "root", "root", role, service, secret=True)
        )

    def _worker_env(self, host: str, group: WorkerGroup, env_file: PurePosixPath, url: str) -> None:
        content = self._env_content(group, url)
        self._secret_env(host, env_file, content, "worker", group.unit_template)

    def beat(self) -> None:
        beat = self.inv.beat
        if beat is None:
            return
        user = app_broker_user(self.inv)
        env_file = ETC / "beat.env"
        for host in beat.hosts:
            binary = " ".join(beat_runtime(self.inv, host)[0])
            url = broker_url(self.inv, self.secrets, user.name, self.inv.app.vhost, host)
            content = self._env_content(None, url)
            self._secret_env(host, env_file, content, "beat", "qsetup-beat.service")
            self.add(
                host,
                UNIT_DIR / "qsetup-beat.service",
                "celery/beat.service.j2",
                role="beat",
                service="qsetup-beat.service",
                beat=beat,
                env_file=env_file,
                code_dir=code_dir(self.inv),
                celery_bin=binary,
            )

    def flower(self) -> None:
        flower = self.inv.flower
        if flower is None:
            return
        user = app_broker_user(self.inv)
        url = broker_url(self.inv, self.secrets, user.name, self.inv.app.vhost, flower.host)
        env_file = ETC / "flower.env"
        config_file = ETC / "flower" / "flowerconfig.py"
        broker_address = self.inv.hosts[self.inv.broker.host].address
        if ":" in broker_address:
            broker_address = f"[{broker_address}]"
        api_password = self.secrets.get(flower.broker_api_secret)
        scheme, port = management_endpoint(self.inv)
        broker_api = (
            f"{scheme}://{quote(flower.broker_api_user, safe='')}:{quote(api_password, safe='')}"
            f"@{broker_address}:{port}/api/"
        )
        tls_files = None
        if self.tls is not None:
            pair = self.tls.hosts[flower.host]
            tls_files = {"certfile": str(FLOWER_TLS_DIR / "cert.pem"),
                         "keyfile": str(FLOWER_TLS_DIR / "key.pem")}  # fmt: skip
            for name, content, mode, secret in (
                ("cert.pem", pair.cert_pem, 0o644, False),
                ("key.pem", pair.key_pem, 0o640, True),
            ):
                self.out.append(
                    Artifact(
                        flower.host,
                        FLOWER_TLS_DIR / name,
                        content,
                        mode,
                        "root",
                        flower.group,
                        "flower",
                        "qsetup-flower.service",
                        secret=secret,
                    )
                )
        basic_auth = [f"{u.name}:{self.secrets.get(u.secret)}" for u in flower.basic_auth]
        self.add(
            flower.host,
            env_file,
            "flower/flower.env.j2",
            role="flower",
            service="qsetup-flower.service",
            mode=0o600,
            secret=True,
            broker_url=url,
            result_backend=results_url(self.inv, self.secrets, "flower", str(CA_FILE)),
            shim_dir=SHIM_DIR,
            celery_settings=json.dumps(celery_settings(self.inv), sort_keys=True),
            ca_file=CA_FILE if self.tls is not None else None,
        )
        self.add(
            flower.host,
            config_file,
            "flower/flowerconfig.py.j2",
            role="flower",
            service="qsetup-flower.service",
            mode=0o640,
            group=flower.group,
            secret=True,
            flower=flower,
            basic_auth=basic_auth,
            broker_api=broker_api,
            tls_files=tls_files,
        )
        self.add(
            flower.host,
            UNIT_DIR / "qsetup-flower.service",
            "flower/flower.service.j2",
            role="flower",
            service="qsetup-flower.service",
            flower=flower,
            env_file=env_file,
            config_file=config_file,
            venv=venv_dir("flower"),
        )

    def results(self) -> None:
        """The managed result backend's configuration, ACL users and TLS files."""
        results = self.inv.results
        if results is None:
            return
        host = results.host

        def put(path: PurePosixPath, content: str, mode: int, owner: str, secret: bool) -> None:
            self.out.append(
                Artifact(host, path, content, mode, owner, "redis", "results", RESULTS_UNIT,
                         secret=secret)
            )  # fmt: skip

        self.add(
            host,
            CONF_PATH,
            "redis/redis.conf.j2",
            role="results",
            service=RESULTS_UNIT,
            mode=0o640,
            group="redis",
            results=results,
            address=results_address(self.inv),
            acl_path=ACL_PATH,
            tls=self.tls is not None,
            tls_dir=REDIS_TLS_DIR,
        )
        # Hashes of the passwords only, still readable by the server alone.
        put(ACL_PATH, acl_text(self.inv, self.secrets), 0o600, "redis", True)
        if self.tls is not None:
            pair = self.tls.hosts[host]
            put(REDIS_TLS_DIR / "ca.pem", self.tls.ca_pem, 0o644, "root", False)
            put(REDIS_TLS_DIR / "cert.pem", pair.cert_pem, 0o644, "root", False)
            put(REDIS_TLS_DIR / "key.pem", pair.key_pem, 0o640, "root", True)


def render_all(inv: Inventory, secrets: Secrets, tls: TlsMaterial | None = None) -> list[Artifact]:
    """Render every file deploy installs, ordered by host and path.

    ``tls`` holds the CA and host certificates when the inventory enables TLS
    (:mod:`qsetup.artifacts.tls` makes or reads them); without it the files are rendered for
    plain listeners.
    """
    if inv.tls.enabled and tls is None:
        raise RenderError("tls.enabled: the certificates were not prepared (internal error)")
    renderer = _Renderer(inv, secrets, tls if inv.tls.enabled else None)
    renderer.broker()
    renderer.workers()
    renderer.beat()
    renderer.shims()
    renderer.flower()
    renderer.results()
    for host, rules in firewall_rules(inv).items():
        # Not templates: the ruleset holds only addresses validated and normalized as data.
        for path, content in (
            (RULESET_PATH, render_ruleset(rules.allowed)),
            (UNIT_PATH, UNIT_TEXT),
        ):
            renderer.out.append(
                Artifact(
                    host,
                    PurePosixPath(path),
                    content,
                    0o644,
                    "root",
                    "root",
                    "firewall",
                    FIREWALL_UNIT,
                )
            )
    paths = [(a.host, a.path) for a in renderer.out]
    if len(paths) != len(set(paths)):
        raise RenderError("two roles render the same file on one host; rename a worker group")
    return sorted(renderer.out, key=lambda a: (a.host, str(a.path)))


def write_artifacts(artifacts: list[Artifact], out_dir: Path) -> None:
    """Write artifacts as ``out_dir/<host>/<absolute path>``; secret files get mode 0600."""
    for art in artifacts:
        target = out_dir / art.host / str(art.path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(art.content)
        target.chmod(0o600 if art.secret else art.mode & 0o644)
