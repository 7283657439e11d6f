"""The settings an app's own clients need to reach the deployed broker, and their texts.

``qsetup celery`` runs Celery with them and ``qsetup client-config`` prints them; qsetup's
own task round trip builds its client from them. Every fact comes from where deploy takes
it: the URLs from ``render.broker_url`` (one per node of a cluster), TLS and the queue type
from ``state.celery_settings``, the result backend from ``results.results_url`` (the app's user) and
the CA from ``tls.client_ca_file``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from qsetup.artifacts.render import broker_url
from qsetup.artifacts.tls import client_ca_file
from qsetup.desired.results import results_url
from qsetup.desired.state import celery_settings
from qsetup.errors import QsetupError
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory

SETTINGS_ENV = "QSETUP_CELERY_SETTINGS"
"""The variable the env format puts the other settings in (JSON), as the workers' files do."""


@dataclass(frozen=True)
class ClientConfig:
    """What a client connecting as one broker user needs: URLs, settings, the CA."""

    user: str
    vhost: str
    broker_url: str
    """One URL per broker node, ``;``-separated, with the password (a secret)."""
    result_backend: str
    settings: dict[str, object]
    """Celery settings besides the two URLs (TLS, queue type, publisher confirms)."""
    ca_file: Path | None
    """Absolute, with TLS on; None without."""
    secrets: tuple[tuple[str, str], ...]
    """(secret name, value) of every secret the texts may hold, to mask them."""

    def conf(self) -> dict[str, object]:
        """Every setting for ``app.conf.update`` (holds the secrets)."""
        return {
            "broker_url": self.broker_url,
            "result_backend": self.result_backend,
            **self.settings,
        }

    def _mask(self, value: object) -> object:
        if isinstance(value, dict):
            return {k: self._mask(v) for k, v in value.items()}
        if not isinstance(value, str):
            return value
        for name, secret in sorted(self.secrets, key=lambda s: -len(s[1])):
            if secret:
                for form in {secret, quote(secret, safe="")}:
                    value = value.replace(form, f"<secret:{name}>")
        return value

    def hide(self, text: str) -> str:
        """``text`` with each secret (plain or URL-quoted) as ``<secret:NAME>``."""
        return str(self._mask(text))

    def masked(self) -> ClientConfig:
        """The same settings with each secret (plain or URL-quoted) as ``<secret:NAME>``."""
        settings = self._mask(self.settings)
        assert isinstance(settings, dict)
        return replace(
            self,
            broker_url=str(self._mask(self.broker_url)),
            result_backend=str(self._mask(self.result_backend)),
            settings=settings,
        )


def _choose_user(inv: Inventory, user: str | None) -> str:
    name = user or inv.app.broker_user
    known = [u.name for u in inv.broker.users]
    if name not in known:
        raise QsetupError(
            f"--as {name}: no such broker user in broker.users (known: {', '.join(known)})"
        )
    return name


def _choose_vhost(inv: Inventory, user: str, vhost: str | None) -> str:
    account = next(u for u in inv.broker.users if u.name == user)
    allowed = [p.vhost for p in account.effective_permissions]
    if vhost is not None:
        if vhost not in inv.broker.vhosts:
            raise QsetupError(
                f"--vhost {vhost}: not in broker.vhosts (known: {', '.join(inv.broker.vhosts)})"
            )
        return vhost
    if inv.app.vhost in allowed or not allowed:
        return inv.app.vhost
    return allowed[0]


def client_config(
    loaded: LoadedInventory, user: str | None = None, vhost: str | None = None
) -> ClientConfig:
    """The client settings for ``user`` (default ``app.broker_user``) on ``vhost``.

    The vhost defaults to ``app.vhost``, or the user's own when it has no rights there.
    The URLs list the broker nodes in the inventory's order (a client off the cluster).

    Raises:
        QsetupError: an unknown user or vhost, or a password missing from the secrets.
    """
    inv = loaded.inventory
    name = _choose_user(inv, user)
    chosen_vhost = _choose_vhost(inv, name, vhost)
    account = next(u for u in inv.broker.users if u.name == name)
    if account.secret not in loaded.secrets.values:
        raise QsetupError(
            f"{loaded.secrets_path}: no secret {account.secret!r} (the password of broker user "
            f"{name}); add it or run qsetup validate"
        )
    ca_file = client_ca_file(loaded.path, inv).resolve() if inv.tls.enabled else None
    settings = celery_settings(inv, str(ca_file) if ca_file else "")
    return ClientConfig(
        user=name,
        vhost=chosen_vhost,
        broker_url=broker_url(inv, loaded.secrets, name, chosen_vhost),
        result_backend=results_url(
            inv, loaded.secrets, "app", str(client_ca_file(loaded.path, inv).resolve())
        ),
        settings=settings,
        ca_file=ca_file,
        secrets=tuple((k, v.get_secret_value()) for k, v in loaded.secrets.values.items()),
    )


def _py(value: object) -> str:
    """A Python literal for a setting; ``cert_reqs`` stays readable as ``ssl.CERT_REQUIRED``."""
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            literal = "ssl.CERT_REQUIRED" if k == "cert_reqs" and v == 2 else _py(v)
            items.append(f"{k!r}: {literal}")
        return "{" + ", ".join(items) + "}"
    return repr(value)


def render_python(cfg: ClientConfig) -> str:
    """A Celery configuration module (``app.config_from_object("celeryconfig")``).

    Holds whatever ``cfg`` holds: pass ``cfg.masked()`` unless the secrets are wanted.
    """
    lines = [
        f"# Celery client settings for broker user {cfg.user} on vhost {cfg.vhost}, "
        "written by qsetup client-config.",
        "import ssl  # noqa: F401 - broker_use_ssl names ssl.CERT_REQUIRED",
        "",
        f"broker_url = {cfg.broker_url!r}",
        f"result_backend = {cfg.result_backend!r}",
    ]
    lines += [f"{key} = {_py(value)}" for key, value in sorted(cfg.settings.items())]
    return "\n".join(lines) + "\n"


def render_env(cfg: ClientConfig) -> str:
    """``KEY='value'`` lines (shell-quoted): Celery reads the two URLs from the environment.

    The other settings go in :data:`SETTINGS_ENV` as JSON, as in the workers' environment
    files: Celery does not read them from the environment by itself, so the app applies
    them (``app.conf.update(json.loads(os.environ["QSETUP_CELERY_SETTINGS"]))``).
    """
    values = {
        "CELERY_BROKER_URL": cfg.broker_url,
        "CELERY_RESULT_BACKEND": cfg.result_backend,
        SETTINGS_ENV: json.dumps(cfg.settings, sort_keys=True),
    }
    lines = [
        f"# Celery client settings for broker user {cfg.user} on vhost {cfg.vhost}, "
        "written by qsetup client-config.",
        f"# Celery reads the two URLs itself; apply {SETTINGS_ENV} with "
        f'app.conf.update(json.loads(os.environ["{SETTINGS_ENV}"])).',
    ]
    if cfg.ca_file is not None:
        values["QSETUP_CA_FILE"] = str(cfg.ca_file)
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def client_json(cfg: ClientConfig) -> dict[str, object]:
    """The settings as JSON data (``client-config --format json``)."""
    return {
        "user": cfg.user,
        "vhost": cfg.vhost,
        "broker_url": cfg.broker_url,
        "result_backend": cfg.result_backend,
        "settings": cfg.settings,
        "ca_file": str(cfg.ca_file) if cfg.ca_file is not None else None,
    }
