"""Flower: it must refuse a request without credentials and answer its first user."""

from __future__ import annotations

from qsetup.artifacts.tls import client_ca_file, ssl_reason
from qsetup.inventory.loader import LoadedInventory
from qsetup.inventory.model import Inventory
from qsetup.remote.http import Client, NoAnswer
from qsetup.status.model import FlowerStatus

_ANY_ADDRESS = ("0.0.0.0", "::")  # noqa: S104 - compared, not bound


def flower_address(inv: Inventory) -> str | None:
    """The address the controller reaches Flower at (None: no Flower)."""
    flower = inv.flower
    if flower is None:
        return None
    if flower.listen_address not in _ANY_ADDRESS:
        return str(flower.listen_address)
    return inv.hosts[flower.host].address


def flower_url(loaded: LoadedInventory) -> str | None:
    """The URL of Flower's worker list as the controller reaches it (None: no Flower)."""
    inv = loaded.inventory
    flower = inv.flower
    address = flower_address(inv)
    if flower is None or address is None:
        return None
    if ":" in address:
        address = f"[{address}]"
    prefix = flower.url_prefix.strip("/")
    path = f"/{prefix}/api/workers" if prefix else "/api/workers"
    scheme = "https" if inv.tls.enabled else "http"
    return f"{scheme}://{address}:{flower.port}{path}"


def check_flower(loaded: LoadedInventory, timeout: float) -> FlowerStatus | None:
    """GET the worker list without credentials (401 expected), then as the first user (200)."""
    inv = loaded.inventory
    url = flower_url(loaded)
    if inv.flower is None or url is None:
        return None
    user = inv.flower.basic_auth[0]
    codes: list[int | None] = []
    cafile = str(client_ca_file(loaded.path, inv)) if inv.tls.enabled else None
    error: str | None = None
    try:
        with Client(cafile=cafile) as client:
            for auth in (None, (user.name, loaded.secrets.get(user.secret) or "")):
                resp = client.get(url, auth=auth, timeout=timeout)
                codes.append(resp.status_code)
    except NoAnswer as exc:
        if exc.kind == "timeout":
            error = f"no answer within {timeout:g} s"
        elif exc.kind == "tls":
            error = f"TLS handshake failed ({ssl_reason(exc)})"
        else:
            error = "cannot connect (is qsetup-flower.service running?" + (
                " with firewall.enabled, is this machine's address in flower.allow_from?)"
                if inv.firewall.enabled
                else ")"
            )
    codes += [None] * (2 - len(codes))
    return FlowerStatus(inv.flower.host, url, codes[0], codes[1], error)


def flower_problems(flower: FlowerStatus | None) -> list[str]:
    """One line per Flower problem, naming its host and URL."""
    if flower is None:
        return []
    where = f"{flower.host}: flower {flower.url}"
    if flower.error is not None:
        return [f"{where}: {flower.error}"]
    problems = []
    if flower.without_credentials != 401:
        problems.append(
            f"{where}: answers HTTP {flower.without_credentials} without credentials (expected 401)"
        )
    if flower.with_credentials != 200:
        problems.append(
            f"{where}: answers HTTP {flower.with_credentials} to its first basic-auth user "
            "(expected 200)"
        )
    return problems
