"""A standby beat (``beat.hosts``): celery-redbeat on each host, one lock holder sends.

Pure and standard library only. celery-redbeat keeps the schedule in Redis under its
key prefix (``redbeat:``): a sorted set ``redbeat::schedule``, a set ``redbeat::statics``,
a hash per entry (``redbeat:<name>``) and the lock ``redbeat::lock``. A beat takes the
lock in ``beat_init`` (SET NX PX, retried every ``beat_max_loop_interval``), renews it on
every tick with a Lua script (EVALSHA, SCRIPT LOAD when the server lost it: GET, PTTL,
PEXPIRE inside), reads and updates entries in MULTI/EXEC pipelines, and releases the
lock on a clean stop (GET, DEL in a script). A beat whose renewal fails exits
(LockNotOwnedError) and systemd starts it again as a standby.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qsetup.inventory.model import Inventory

REDBEAT_PIP = "celery-redbeat>=2.2,<3"
REDBEAT_SCHEDULER = "redbeat.RedBeatScheduler"
KEY_PREFIX = "redbeat:"
LOCK_KEY = f"{KEY_PREFIX}:lock"
REDBEAT_COMMANDS = (
    "get",
    "set",
    "del",
    "pttl",
    "pexpire",
    "hget",
    "hset",
    "hsetnx",
    "zadd",
    "zrem",
    "zrank",
    "zrangebyscore",
    "sadd",
    "srem",
    "smembers",
    "evalsha",
    "script|load",
    "multi",
    "exec",
    "discard",
)
"""What redbeat and redis-py's lock run, scripts included (the server checks a script's
own commands against the user too)."""
REDBEAT_SELECTOR = (
    f"(~{KEY_PREFIX}* resetchannels -@all {' '.join('+' + c for c in REDBEAT_COMMANDS)})"
)
"""Beat's rights on redbeat's keys, as a Redis 7 ACL selector: apart from the rights on
results its other kinds have, beat may run exactly these commands, on these keys only."""
ACQUIRED = "beat: Acquired lock"
RELEASED = "beat: Releasing lock"
SENDING = "Scheduler: Sending due task"
"""The lines redbeat and Celery's beat log (INFO) when taking or giving up the lock and
when sending a task: status reads them from each beat host's journal."""


def redbeat_settings(inv: Inventory, url: str, ca_file: str) -> dict[str, object]:
    """The Celery settings a standby beat adds (empty for one beat).

    ``url`` is beat's own result backend URL (with its password): it goes into beat's
    0600 environment file only, never argv.
    """
    from qsetup.inventory.model import BEAT_LOOP_INTERVAL

    if inv.beat is None or not inv.beat.redbeat:
        return {}
    settings: dict[str, object] = {
        "beat_scheduler": REDBEAT_SCHEDULER,
        "beat_max_loop_interval": BEAT_LOOP_INTERVAL,
        "redbeat_redis_url": url,
        "redbeat_key_prefix": KEY_PREFIX,
        "redbeat_lock_timeout": inv.beat.lock_timeout,
    }
    if inv.tls.enabled:
        # redbeat would otherwise pass broker_use_ssl (kombu's names) to redis-py.
        settings["redbeat_redis_use_ssl"] = {"ssl_cert_reqs": "required", "ssl_ca_certs": ca_file}
    return settings
