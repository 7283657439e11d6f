"""The floor of ``bench_fleet.py``: a deploy as a competent admin would script it by hand.

One bash script per host, built from the same inventory and secrets qsetup deploys, to
run as root through one ``ssh`` session per host (the script on standard input), all
hosts at once. It reaches qsetup's end state (see ``bench_fleet.py`` for what it leaves
out): RabbitMQ configured before its one start, its objects set through the management
API, the worker groups and Flower as systemd units, started once the broker user exists.
Pure: it only returns text.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from qsetup.inventory.loader import LoadedInventory


def address(loaded: LoadedInventory, host: str) -> str:
    return str(loaded.inventory.hosts[host].address)


def broker_url(loaded: LoadedInventory) -> str:
    inv = loaded.inventory
    user = inv.app.broker_user
    pw = quote(loaded.secrets.get(next(u.secret for u in inv.broker.users if u.name == user)), "")
    host = address(loaded, inv.broker.host)
    return f"amqp://{user}:{pw}@{host}:{inv.broker.port}/{quote(inv.app.vhost, '')}"


APT = """\
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  # Refresh package lists older than a day (what qsetup's apt task does, cache_valid_time).
  stamp=/var/lib/apt/periodic/update-success-stamp
  [ -e "$stamp" ] || stamp=/var/lib/apt/lists
  if [ $(( $(date +%s) - $(stat -c %Y "$stamp") )) -gt 86400 ]; then
    echo "apt-get update: yes"; apt-get update -q >/dev/null
  else
    echo "apt-get update: no (lists under a day old)"
  fi
  apt-get install -y -q -o Dpkg::Options::=--force-confdef \\
    -o Dpkg::Options::=--force-confold "$@" >/dev/null
}
"""


def _heredoc(path: str, text: str, mode: str, owner: str = "root:root") -> str:
    """Shell lines writing ``text`` to ``path`` (no newline added when it has none)."""
    q = shlex.quote(path)
    write = (
        f"cat > {q} <<'FLOOR_EOF'\n{text.rstrip()}\nFLOOR_EOF\n"
        if text.endswith("\n")
        else f"printf %s {shlex.quote(text)} > {q}\n"
    )
    return (
        f"mkdir -p {shlex.quote(str(Path(path).parent))}\n{write}"
        f"chown {owner} {q}; chmod {mode} {q}\n"
    )


def _app_tar_b64(loaded: LoadedInventory) -> str:
    source = loaded.inventory.app.source.path
    src = (loaded.path.parent / str(source)).resolve()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname=".", filter=lambda t: None if "__pycache__" in t.name else t)
    return base64.encodebytes(buf.getvalue()).decode()


def _broker_calls(loaded: LoadedInventory) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Management API calls (as guest, from the broker host) that set up the broker."""
    inv, sec = loaded.inventory, loaded.secrets

    def q(text: str) -> str:
        return quote(text, "")

    calls: list[tuple[str, str, dict[str, Any] | None]] = []
    calls += [("PUT", f"/vhosts/{q(v)}", {}) for v in inv.broker.vhosts]
    users = [
        (
            u.name,
            sec.get(u.secret),
            list(u.effective_tags),
            [(p.vhost, p.configure, p.write, p.read) for p in u.effective_permissions],
        )
        for u in inv.broker.users
    ]
    if inv.flower is not None:
        users.append(
            (
                inv.flower.broker_api_user,
                sec.get(inv.flower.broker_api_secret),
                ["monitoring"],
                [(inv.app.vhost, "^$", "^$", "^$")],
            )
        )
    for name, password, tags, perms in users:
        calls.append(("PUT", f"/users/{q(name)}", {"password": password, "tags": ",".join(tags)}))
        for vhost, conf, write, read in perms:
            calls.append(
                (
                    "PUT",
                    f"/permissions/{q(vhost)}/{q(name)}",
                    {"configure": conf, "write": write, "read": read},
                )
            )
    for p in inv.broker.policies:
        calls.append(
            (
                "PUT",
                f"/policies/{q(p.vhost)}/{q(p.name)}",
                {
                    "pattern": p.pattern,
                    "apply-to": p.apply_to,
                    "priority": p.priority,
                    "definition": dict(p.definition),
                },
            )
        )
    if inv.broker.delete_guest:
        calls.append(("DELETE", "/users/guest", None))
    return calls


BROKER_API = """\
python3 - <<'FLOOR_PY'
import base64, json, time, urllib.error, urllib.request
API = "http://127.0.0.1:%(port)d/api"
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    req = urllib.request.Request(API + path, data=data, method=method, headers=headers)
    return urllib.request.urlopen(req, timeout=10).status
deadline = time.time() + 180
while True:
    try:
        call("GET", "/overview")
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.3)
for method, path, body in json.loads(%(calls)r):
    call(method, path, body)
FLOOR_PY
"""

WAIT_BROKER = """\
# The workers' broker user must exist before they start (else ACCESS_REFUSED, exit).
set -a; . %(env)s; set +a
for _ in $(seq 900); do
  if %(python)s -c 'import os, kombu; kombu.Connection(os.environ["CELERY_BROKER_URL"], \
connect_timeout=2).ensure_connection(max_retries=1)' 2>/dev/null; then break; fi
  sleep 1
done
"""

WORKER_UNIT = """\
[Unit]
Description=Celery worker %(group)s
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User=%(user)s
Group=%(ugroup)s
EnvironmentFile=/etc/floor/worker-%(group)s.env
WorkingDirectory=/srv/app
ExecStart=%(exec)s
StateDirectory=floor-%(group)s
KillSignal=SIGTERM
TimeoutStopSec=630
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"""

FLOWER_UNIT = """\
[Unit]
Description=Flower
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User=%(user)s
Group=%(ugroup)s
EnvironmentFile=/etc/floor/flower.env
StateDirectory=flower
WorkingDirectory=/var/lib/flower
ExecStart=/opt/flower/bin/celery flower --conf=/etc/floor/flower/flowerconfig.py
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"""

FLOWER_CONFIG = """\
address = %(address)r
port = %(port)d
basic_auth = %(auth)r
broker_api = %(api)r
persistent = %(persistent)r
db = '/var/lib/flower/flower.db'
state_save_interval = 60000
purge_offline_workers = 3600
# /metrics asks for the same credentials as every other page (as qsetup's config does).
import tornado.web as _web
from flower.views import monitor as _monitor
_monitor.Metrics.get = _web.authenticated(_monitor.Metrics.get)
"""


def _system_user(user: str, group: str) -> str:
    return (
        f"getent group {group} >/dev/null || groupadd --system {group}\n"
        f"id -u {user} >/dev/null 2>&1 || useradd --system --gid {group} --no-create-home "
        f"--home-dir /nonexistent --shell /usr/sbin/nologin {user}\n"
    )


def floor_scripts(loaded: LoadedInventory) -> dict[str, str]:
    """One bash script per host, run as root, that reaches qsetup's end state there."""
    inv, sec = loaded.inventory, loaded.secrets
    url = broker_url(loaded)
    broker = inv.broker.host
    flower = inv.flower.host if inv.flower else None
    parts: dict[str, list[str]] = defaultdict(list)
    packages: dict[str, list[str]] = defaultdict(list)
    background: dict[str, list[str]] = defaultdict(list)  # started right after apt
    pre: dict[str, list[str]] = defaultdict(list)  # before apt

    # RabbitMQ: configured before its first start (policy-rc.d keeps the package from
    # starting it with defaults), then started once; objects through its API.
    packages[broker] += ["rabbitmq-server", "python3-requests"]
    pre[broker].append(
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; "
        "chmod 755 /usr/sbin/policy-rc.d\n"
    )
    b = inv.broker
    conf = (
        f"listeners.tcp.default = {b.listen_address}:{b.port}\n"
        f"management.tcp.port = {b.management_port}\nprometheus.tcp.port = 15692\n"
        "loopback_users.guest = true\nlog.console = false\nlog.file.level = info\n"
    )
    plugins = sorted({*b.plugins, "rabbitmq_management", "rabbitmq_prometheus"})
    parts[broker] += [
        "rm -f /usr/sbin/policy-rc.d\n",
        _heredoc("/etc/rabbitmq/rabbitmq.conf", conf, "0644"),
        _heredoc("/etc/rabbitmq/enabled_plugins", f"[{','.join(plugins)}].", "0644"),
        _heredoc(
            "/etc/systemd/system/rabbitmq-server.service.d/limits.conf",
            f"[Service]\nLimitNOFILE={b.nofile}\n",
            "0644",
        ),
        _heredoc(
            "/var/lib/rabbitmq/.erlang.cookie",
            sec.get(b.erlang_cookie_secret),
            "0400",
            "rabbitmq:rabbitmq",
        ),
        "systemctl daemon-reload\nsystemctl enable --now rabbitmq-server >/dev/null 2>&1\n",
        BROKER_API % {"port": b.management_port, "calls": json.dumps(_broker_calls(loaded))},
    ]

    app_tar = _app_tar_b64(loaded)
    for group in inv.workers:
        if group.instances != 1:
            raise SystemExit("the floor script writes one worker unit per host (instances: 1)")
        env = (
            f'CELERY_BROKER_URL="{url}"\nCELERY_RESULT_BACKEND="{inv.app.result_backend}"\n'
            'PYTHONPATH="/srv/app"\nPYTHONUNBUFFERED="1"\n'
        )
        if group.install == "apt":
            celery, python = "/usr/bin/celery", "/usr/bin/python3"
        else:
            celery, python = "/opt/celery/bin/celery", "/opt/celery/bin/python"
        argv = [
            celery,
            "-A",
            inv.app.module,
            "worker",
            f"--hostname={group.name}-1@%%h",
            f"--loglevel={group.loglevel}",
            f"--queues={','.join(group.queues)}",
            f"--pool={group.pool}",
            f"--statedb=%S/floor-{group.name}/worker.state",
        ]
        if group.concurrency:
            argv.append(f"--concurrency={group.concurrency}")
        if group.max_tasks_per_child:
            argv.append(f"--max-tasks-per-child={group.max_tasks_per_child}")
        unit = WORKER_UNIT % {
            "group": group.name,
            "user": group.user,
            "ugroup": group.group,
            "exec": " ".join(argv),
        }
        spec = f"celery{group.celery_version or '>=5.2,<6'}"
        for host in group.hosts:
            if group.install == "apt":
                packages[host].append("python-celery-common")
            else:
                packages[host] += ["python3-venv", "python3-packaging"]
                background[host].append(
                    f"python3 -m venv /opt/celery && /opt/celery/bin/pip install -q "
                    f"{shlex.quote(spec)}"
                )
            parts[host] += [
                _system_user(group.user, group.group),
                "install -d -m 0755 /srv/app\n"
                f"base64 -d <<'FLOOR_B64' | tar -xz -C /srv/app --no-same-owner\n{app_tar}"
                "FLOOR_B64\n",
                _heredoc(f"/etc/floor/worker-{group.name}.env", env, "0600"),
                _heredoc(f"/etc/systemd/system/floor-worker-{group.name}.service", unit, "0644"),
                "systemctl daemon-reload\n",
                "wait_background\n",
                WAIT_BROKER % {"env": f"/etc/floor/worker-{group.name}.env", "python": python},
                f"systemctl enable --now floor-worker-{group.name}.service >/dev/null 2>&1\n",
            ]

    if inv.flower is not None and flower is not None:
        f = inv.flower
        packages[flower] += ["python3-venv", "python3-packaging"]
        background[flower].append(
            "python3 -m venv /opt/flower && /opt/flower/bin/pip install -q "
            + shlex.quote(f"flower{f.version or '>=2,<3'}")
        )
        api = (
            f"http://{quote(f.broker_api_user, '')}:{quote(sec.get(f.broker_api_secret), '')}"
            f"@{address(loaded, broker)}:{b.management_port}/api/"
        )
        config = FLOWER_CONFIG % {
            "address": f.listen_address,
            "port": f.port,
            "api": api,
            "persistent": f.persistent,
            "auth": [f"{u.name}:{sec.get(u.secret)}" for u in f.basic_auth],
        }
        parts[flower] += [
            _system_user(f.user, f.group),
            _heredoc("/etc/floor/flower.env", f'CELERY_BROKER_URL="{url}"\n', "0600"),
            _heredoc("/etc/floor/flower/flowerconfig.py", config, "0640", f"root:{f.group}"),
            _heredoc(
                "/etc/systemd/system/floor-flower.service",
                FLOWER_UNIT % {"user": f.user, "ugroup": f.group},
                "0644",
            ),
            "systemctl daemon-reload\n",
            "wait_background\n",
            WAIT_BROKER % {"env": "/etc/floor/flower.env", "python": "/opt/flower/bin/python"},
            "systemctl enable --now floor-flower.service >/dev/null 2>&1\n",
        ]

    scripts = {}
    for host in inv.hosts:
        bg = " && ".join(background[host])
        start_bg = f"( {bg} ) >/var/log/floor-venvs.log 2>&1 &\nbg_pid=$!\n" if bg else ""
        # One function read whole before it runs: nothing it starts can read the rest of
        # the script from ssh's standard input.
        body = [
            "main() {\n",
            "set -euo pipefail\n",
            APT,
            'wait_background() { if [ -n "${bg_pid:-}" ]; then wait "$bg_pid" || '
            "{ cat /var/log/floor-venvs.log; exit 1; }; bg_pid=; fi; }\n",
            *pre[host],
            f"apt_install {' '.join(dict.fromkeys(packages[host]))}\n" if packages[host] else "",
            start_bg,
            *parts[host],
            "wait_background\n",
            "}\nmain </dev/null\n",
        ]
        scripts[host] = "".join(body)
    return scripts
