"""Write a starting inventory and its secrets file (`qsetup init`, `sandbox up --inventory-out`)."""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import jinja2

from qsetup.errors import QsetupError
from qsetup.inventory.fields import normalize_address
from qsetup.inventory.secrets import (
    default_secrets_path,
    generate_erlang_cookie,
    generate_password,
    save_secrets,
)
from qsetup.resources import resource_dir


@dataclass(frozen=True)
class StarterHost:
    """A host for the starting inventory."""

    name: str
    address: str


@dataclass(frozen=True)
class StarterSpec:
    """What ``init`` asked for: hosts and their roles."""

    hosts: tuple[StarterHost, ...]
    broker: str
    flower: str
    apt_workers: tuple[str, ...] = ()
    pip_workers: tuple[str, ...] = ()
    ssh_user: str = "root"
    ssh_key: str | None = None
    app_module: str = "proj"
    app_path: str | None = None
    host_key_checking: str = "accept-new"
    allow_from: tuple[str, ...] = ()
    """Addresses besides the hosts that reach the broker and Flower (the controller)."""

    @property
    def addresses_are_ips(self) -> bool:
        """Whether every host is given by IP address (the firewall allows hosts by address)."""
        try:
            for host in self.hosts:
                ipaddress.ip_address(host.address)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class _Group:
    name: str
    hosts: tuple[str, ...]
    install: str


def host_name_for(address: str) -> str:
    """Derive an inventory host name from an address or DNS name."""
    is_ip = re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", address) is not None
    base = address if is_ip else address.split(".")[0]
    name = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"host-{name}" if name else "host"
    return name[:31]


def build_spec(
    broker: str,
    workers: list[str],
    flower: str | None,
    *,
    install: str = "pip",
    app_module: str = "proj",
    ssh_user: str = "root",
    ssh_key: str | None = None,
) -> StarterSpec:
    """Turn ``init``'s answers (addresses or names) into a StarterSpec.

    Two spellings of one address (``MQ.Example.ORG`` and ``mq.example.org``, ``fd00::1`` and
    ``fd00:0::1``) make one host, written as first given: the inventory refuses two hosts
    on one address.
    """
    hosts: dict[str, StarterHost] = {}
    names: dict[str, str] = {}  # normalized address -> host name

    def name_of(address: str) -> str:
        return names[normalize_address(address)]

    for address in [broker, *workers, *([flower] if flower else [])]:
        key = normalize_address(address)
        if key in names:
            continue
        name = host_name_for(address)
        base, n = name, 2
        while name in hosts:
            name, n = f"{base}-{n}", n + 1
        hosts[name] = StarterHost(name=name, address=address)
        names[key] = name
    worker_names = tuple(dict.fromkeys(name_of(w) for w in workers))  # a host once per group
    here = local_address_towards(broker)
    return StarterSpec(
        hosts=tuple(hosts.values()),
        broker=name_of(broker),
        flower=name_of(flower) if flower else name_of(broker),
        apt_workers=worker_names if install == "apt" else (),
        pip_workers=worker_names if install == "pip" else (),
        ssh_user=ssh_user,
        ssh_key=ssh_key,
        app_module=app_module,
        allow_from=(here,) if here else (),
    )


def local_address_towards(address: str) -> str | None:
    """This machine's address on the route to ``address`` (an IP), or None.

    ``qsetup status`` reads the broker's API and Flower from the machine it runs on; with
    the firewall on that machine must be in ``allow_from``, so ``init`` puts itself there.
    A UDP socket's connect sends nothing: it only picks the route and source address.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.is_loopback:
        return None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(ip), 9))
            here = str(sock.getsockname()[0])
    except OSError:
        return None
    return None if ipaddress.ip_address(here).is_loopback else here


def render_inventory(spec: StarterSpec, inventory_name: str, secrets_name: str) -> str:
    """Render the commented starting inventory as YAML text."""
    groups: list[_Group] = []
    if spec.apt_workers:
        groups.append(_Group("apt-workers", spec.apt_workers, "apt"))
    if spec.pip_workers:
        groups.append(_Group("pip-workers", spec.pip_workers, "pip"))
    if not groups:
        raise QsetupError("no worker hosts given; pass --workers HOST[,HOST...]")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates") / "init"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    app_root = spec.app_module.split(".")[0].split(":")[0].replace("_", "-").lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", app_root):
        app_root = "app"
    return env.get_template("inventory.yml.j2").render(
        spec=spec,
        groups=groups,
        inventory_name=inventory_name,
        secrets_name=secrets_name,
        app_root=app_root,
        broker_user=app_root,
        vhost=app_root,
    )


def copy_sample_app(dest: Path, module: str) -> None:
    """Put the sample Celery app in ``dest/<package>`` unless something is there already."""
    package = module.split(".")[0].split(":")[0]
    target = dest / package
    if target.exists():
        return
    sample = resource_dir("examples") / "sample_app" / "proj"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample, target, ignore=shutil.ignore_patterns("__pycache__"))
    if package != "proj":
        for path in target.glob("*.py"):
            path.write_text(path.read_text().replace("proj", package))


def _check_starter(inventory: Path, text: str) -> None:
    """Refuse answers that would make an invalid inventory, before writing anything."""
    from qsetup.errors import InventoryError
    from qsetup.inventory.loader import validate_document
    from qsetup.inventory.yamlsource import YamlSourceError, parse_yaml

    try:
        validate_document(parse_yaml(inventory, text))
    except InventoryError as exc:
        prefix = re.compile(rf"^{re.escape(str(inventory))}:\d+:\d+: ")
        raise InventoryError(
            [
                f"init: {prefix.sub('', line)} (from the answers; nothing was written)"
                for line in exc.problems
            ]
        ) from None
    except YamlSourceError as exc:
        raise QsetupError(f"init: the answers do not make valid YAML ({exc.message})") from None


def write_starter_files(inventory: Path, spec: StarterSpec, *, force: bool) -> tuple[Path, Path]:
    """Write the inventory, its secrets file (0600) and, if needed, the sample app.

    Refuses to overwrite either file unless ``force`` is set.
    """
    secrets_path = default_secrets_path(inventory)
    if not force:
        for path in (inventory, secrets_path):
            if path.exists():
                raise QsetupError(f"{path} already exists; pass --force to overwrite it")
    sample_app = spec.app_path is None
    spec = StarterSpec(**{**spec.__dict__, "app_path": spec.app_path or "app"})
    text = render_inventory(spec, inventory.name, secrets_path.name)
    _check_starter(inventory, text)
    if sample_app:
        copy_sample_app(inventory.resolve().parent / "app", spec.app_module)
    app_root = spec.app_module.split(".")[0].split(":")[0].replace("_", "-").lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", app_root):
        app_root = "app"
    values = {
        "rabbitmq-erlang-cookie": generate_erlang_cookie(),
        f"rabbitmq-user-{app_root}": generate_password(),
        "rabbitmq-user-ops": generate_password(),
        "rabbitmq-user-flower-monitor": generate_password(),
        "flower-user-admin": generate_password(),
    }
    inventory.parent.mkdir(parents=True, exist_ok=True)
    save_secrets(secrets_path, values, force=True)
    inventory.write_text(text, encoding="utf-8")
    return inventory, secrets_path
