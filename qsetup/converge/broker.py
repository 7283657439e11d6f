"""The broker's objects compared with the state deploy sets up: the one comparison.

Pure: the rows come from the broker's definitions (the one read of a broker node, or
the management API's own lists), the expected state from ``desired.broker_state``.
Deploy applies what :func:`broker_changes` derives from the same drift that status
reports, so the two cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qsetup.converge.facts import FeatureFlag, parse_flags
from qsetup.converge.passwords import password_matches
from qsetup.desired.broker import (
    NO_RIGHTS,
    BrokerPolicy,
    BrokerState,
    permission_vars,
    policy_vars,
    topic_permission_vars,
)


@dataclass(frozen=True)
class Drift:
    """One difference between the broker and the inventory."""

    kind: str
    """vhost, user, password, tags, permission, topic_permission or policy."""
    name: str
    """The object: a vhost, a user, ``user@vhost`` for a permission,
    ``user@vhost/exchange`` for a topic permission, ``vhost/policy`` for a policy."""
    state: str
    """missing (in the inventory, not on the broker), extra (the reverse), or differs."""
    detail: str


NOTHING = NO_RIGHTS
"""RabbitMQ's "matches nothing" pattern: a permission of three of these grants nothing."""


@dataclass(frozen=True)
class Permission:
    """One permission row as the management API lists it."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str

    @property
    def grants_nothing(self) -> bool:
        """True for ``^$ ^$ ^$`` (what RabbitMQ stores for "no rights")."""
        return self.configure == self.write == self.read == NOTHING


@dataclass(frozen=True)
class TopicPermission:
    """One topic permission row as the management API lists it."""

    user: str
    vhost: str
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class Policy:
    """One policy as the management API lists it."""

    vhost: str
    name: str
    pattern: str
    apply_to: str
    priority: int
    definition: Mapping[str, Any] = field(default_factory=dict)


def compare_broker(
    expected: BrokerState,
    vhosts: Iterable[str],
    users: Mapping[str, frozenset[str]],
    permissions: Iterable[Permission],
    topic_permissions: Iterable[TopicPermission] = (),
    policies: Iterable[Policy] = (),
    passwords: Mapping[str, PasswordCheck] | None = None,
) -> list[Drift]:
    """Every difference between the broker and the state deploy sets up.

    Compared: vhosts, users with their tags, permissions and topic permissions, and
    policies. RabbitMQ's default vhost ``/`` is not drift when the inventory does not
    list it (the server creates it and qsetup leaves it and its policies alone);
    ``passwords`` (user -> whether the broker's hash matches the secrets file; None: not
    checked) adds a ``password`` line per user whose hash does not match;
    ``guest`` is drift unless ``broker.delete_guest`` is false; a permission that grants
    nothing (``^$`` three times) counts as no permission unless the inventory lists it
    (it still gives access to the vhost's management views). A missing user or vhost is one
    line, not one more per permission or policy in it.
    """
    want_users = {u.name: frozenset(u.tags) for u in expected.users}
    want_vhosts = set(expected.vhosts)
    drift: list[Drift] = []
    actual_vhosts = set(vhosts)
    for vhost in sorted(want_vhosts - actual_vhosts):
        drift.append(Drift("vhost", vhost, "missing", "in the inventory, not on the broker"))
    for vhost in sorted(actual_vhosts - want_vhosts - {"/"}):
        drift.append(Drift("vhost", vhost, "extra", "on the broker, not in the inventory"))

    for name in sorted(set(want_users) - set(users)):
        drift.append(Drift("user", name, "missing", "in the inventory, not on the broker"))
    for name in sorted(set(users) - set(want_users)):
        if name == "guest":
            if expected.delete_guest:
                drift.append(
                    Drift(
                        "user", "guest", "extra", "guest is present but broker.delete_guest is true"
                    )
                )
            continue
        drift.append(Drift("user", name, "extra", "on the broker, not in the inventory"))
    for name in sorted(set(want_users) & set(users)):
        want, have = want_users[name], users[name]
        if want != have:
            drift.append(
                Drift(
                    "tags",
                    name,
                    "differs",
                    f"tags {_tags(have)} on the broker, {_tags(want)} in the inventory",
                )
            )

    for name in sorted(set(want_users) & set(users)):
        if passwords is not None and passwords.get(name) is False:
            drift.append(
                Drift(
                    "password",
                    name,
                    "differs",
                    "the broker's password hash does not match the secrets file",
                )
            )

    def here(user: str, vhost: str) -> bool:
        # The missing user or vhost is already one line.
        return user in users and vhost in actual_vhosts

    drift += _permission_drift(expected, permissions, here)
    drift += _topic_drift(expected, topic_permissions, here)
    drift += _policy_drift(expected, policies, actual_vhosts)
    return drift


PasswordCheck = bool
"""Whether a user's password on the broker matches the secrets file."""


def compare_definitions(
    expected: BrokerState, definitions: Mapping[str, Any], secrets: Mapping[str, str]
) -> list[Drift]:
    """:func:`compare_broker` on the broker's definitions (``/api/definitions``).

    ``secrets`` maps secret names to values; each managed user's password is checked
    against its hash (a secret that is not given is not checked).
    """
    users: dict[str, frozenset[str]] = {}
    checks: dict[str, PasswordCheck] = {}
    secret_of = {u.name: u.secret for u in expected.users}
    for u in definitions.get("users") or []:
        name = str(u.get("name"))
        users[name] = _tag_set(u.get("tags"))
        if name in secret_of and secret_of[name] in secrets:
            checks[name] = password_matches(u, secrets[secret_of[name]])
    return compare_broker(
        expected,
        [str(v.get("name")) for v in definitions.get("vhosts") or []],
        users,
        [
            Permission(
                str(p["user"]),
                str(p["vhost"]),
                str(p["configure"]),
                str(p["write"]),
                str(p["read"]),
            )
            for p in definitions.get("permissions") or []
        ],
        [
            TopicPermission(
                str(t["user"]), str(t["vhost"]), str(t["exchange"]), str(t["write"]), str(t["read"])
            )
            for t in definitions.get("topic_permissions") or []
        ],
        [
            Policy(
                str(p.get("vhost")),
                str(p.get("name")),
                str(p.get("pattern", "")),
                str(p.get("apply-to", "all")),
                int(p.get("priority") or 0),
                dict(p.get("definition") or {}),
            )
            for p in definitions.get("policies") or []
        ],
        checks,
    )


def _tag_set(tags: Any) -> frozenset[str]:
    # RabbitMQ 3.8 and older give tags as one comma-separated string.
    tag_list = tags.split(",") if isinstance(tags, str) else list(tags or [])
    return frozenset(str(t) for t in tag_list if t)


def fixable(drift: Drift) -> bool:
    """Whether deploy changes this: it never deletes what qsetup did not create.

    Users, vhosts and policies on the broker that the inventory does not have (and
    qsetup's manifest never recorded) stay; a managed user's extra permission goes
    (deploy sets a user's permissions as a whole); guest goes when delete_guest.
    """
    if drift.state != "extra":
        return True
    return drift.kind in ("permission", "topic_permission") or (
        drift.kind == "user" and drift.name == "guest"
    )


def broker_changes(
    expected: BrokerState, drift: Iterable[Drift], removals: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``qsetup_broker_objects`` applies to make the drift go, plus the removals.

    A user that is missing or whose tags or rights differ is set whole (password, tags,
    permissions, topic permissions); a user whose password alone differs gets its
    password and tags. Users with rights on a vhost that is created are set whole too.
    No password is in the result.
    """
    rows = list(drift)
    vhosts = [d.name for d in rows if d.kind == "vhost" and d.state == "missing"]
    whole: set[str] = set()
    for d in rows:
        if d.kind in ("user", "tags") and d.name != "guest":
            whole.add(d.name)
        elif d.kind in ("permission", "topic_permission") and fixable(d):
            whole.add(d.name.split("@", 1)[0])
    for u in expected.users:
        if any(p.vhost in vhosts for p in u.permissions) or any(
            t.vhost in vhosts for t in u.topic_permissions
        ):
            whole.add(u.name)
    password_only = {d.name for d in rows if d.kind == "password"} - whole
    users = []
    for u in expected.users:
        if u.name in whole or u.name in password_only:
            full = u.name in whole
            users.append(
                {
                    "name": u.name,
                    "tags": ",".join(u.tags),
                    "permissions": [permission_vars(p) for p in u.permissions] if full else None,
                    "topic_permissions": [topic_permission_vars(t) for t in u.topic_permissions]
                    if full
                    else None,
                }
            )
    policies = {d.name for d in rows if d.kind == "policy" and d.state != "extra"}
    policies |= {f"{p.vhost}/{p.name}" for p in expected.policies if p.vhost in vhosts}
    return {
        "vhosts": vhosts,
        "users": users,
        "policies": [
            policy_vars(p) for p in expected.policies if f"{p.vhost}/{p.name}" in policies
        ],
        "delete_guest": any(d.kind == "user" and d.name == "guest" for d in rows),
        "delete_users": [u for u in removals.get("broker_users") or [] if u != expected.admin_user],
        "delete_policies": list(removals.get("broker_policies") or []),
        "delete_vhosts": list(removals.get("broker_vhosts") or []),
    }


_Rights = dict[tuple[str, ...], tuple[str, ...]]
"""Rights keyed by (user, vhost, ...): a permission's or topic permission's patterns."""


def _rights_drift(
    kind: str,
    want: _Rights,
    have: _Rights,
    here: Callable[[str, str], bool],
    label: Callable[[tuple[str, ...]], str],
    show: Callable[[tuple[str, ...] | None], str],
) -> list[Drift]:
    """Compare rights keyed by (user, vhost, ...): missing, extra or differs, one line each."""
    drift = []
    for key in sorted(set(want) | set(have)):
        if not here(key[0], key[1]):
            continue
        w, h = want.get(key), have.get(key)
        if w == h:
            continue
        if h is None:
            drift.append(Drift(kind, label(key), "missing", f"expected {show(w)}"))
        elif w is None:
            drift.append(Drift(kind, label(key), "extra", f"{show(h)} on the broker"))
        else:
            detail = f"{show(h)} on the broker, {show(w)} in the inventory"
            drift.append(Drift(kind, label(key), "differs", detail))
    return drift


def _permission_drift(
    expected: BrokerState, permissions: Iterable[Permission], here: Callable[[str, str], bool]
) -> list[Drift]:
    # A row that grants nothing still gives access to its vhost (Flower's API user reads
    # queue stats so): one the inventory lists must be there; one it does not list (what
    # community.rabbitmq gave a user without rights) is no drift.
    want: _Rights = {
        (u.name, p.vhost): (p.configure, p.write, p.read)
        for u in expected.users
        for p in u.permissions
    }
    managed = {u.name for u in expected.users}
    have: _Rights = {
        (p.user, p.vhost): (p.configure, p.write, p.read)
        for p in permissions
        if p.user in managed and (not p.grants_nothing or (p.user, p.vhost) in want)
    }
    return _rights_drift("permission", want, have, here, lambda k: f"{k[0]}@{k[1]}", _perm)


def _topic_drift(
    expected: BrokerState,
    topic_permissions: Iterable[TopicPermission],
    here: Callable[[str, str], bool],
) -> list[Drift]:
    want: _Rights = {
        (u.name, t.vhost, t.exchange): (t.write, t.read)
        for u in expected.users
        for t in u.topic_permissions
    }
    managed = {u.name for u in expected.users}
    have: _Rights = {
        (t.user, t.vhost, t.exchange): (t.write, t.read)
        for t in topic_permissions
        if t.user in managed
    }
    return _rights_drift(
        "topic_permission", want, have, here, lambda k: f"{k[0]}@{k[1]}/{k[2]}", _topic
    )


def _policy_drift(
    expected: BrokerState, policies: Iterable[Policy], actual_vhosts: set[str]
) -> list[Drift]:
    want = {(p.vhost, p.name): p for p in expected.policies}
    have = {(p.vhost, p.name): p for p in policies}
    drift = []
    for key in sorted(set(want) | set(have)):
        vhost, name = key
        # A missing vhost is its own line; policies on "/" (when not listed) and on an
        # extra vhost are not qsetup's.
        if vhost not in actual_vhosts or vhost not in expected.vhosts:
            continue
        w, h = want.get(key), have.get(key)
        label = f"{vhost}/{name}"
        if h is None:
            drift.append(Drift("policy", label, "missing", "in the inventory, not on the broker"))
        elif w is None:
            drift.append(Drift("policy", label, "extra", "on the broker, not in the inventory"))
        else:
            diffs = _policy_diffs(w, h)
            if diffs:
                drift.append(Drift("policy", label, "differs", "; ".join(diffs)))
    return drift


def _policy_diffs(want: BrokerPolicy, have: Policy) -> list[str]:
    """What differs, compared as deploy compares (so deploy sets what status reports)."""
    out = []
    pairs: list[tuple[str, Any, Any]] = [
        ("pattern", have.pattern, want.pattern),
        ("apply-to", have.apply_to, want.apply_to),
        ("priority", have.priority, want.priority),
    ]
    for key, h, w in pairs:
        if h != w:
            out.append(f"{key} {h!r} on the broker, {w!r} in the inventory")
    if dict(have.definition) != dict(want.definition):
        out.append(
            f"definition {_json(have.definition)} on the broker, "
            f"{_json(dict(want.definition))} in the inventory"
        )
    return out


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


def _topic(perm: tuple[str, ...] | None) -> str:
    if perm is None:
        return "none"
    return f"write={perm[0]!r} read={perm[1]!r}"


def _tags(tags: frozenset[str]) -> str:
    return "[" + ", ".join(sorted(tags)) + "]"


def _perm(perm: tuple[str, ...] | None) -> str:
    if perm is None:
        return "none"
    return f"configure={perm[0]!r} write={perm[1]!r} read={perm[2]!r}"


def flags_to_enable(flags: Iterable[FeatureFlag] | None) -> list[str]:
    """The stable feature flags left disabled (RabbitMQ's next release may need them)."""
    return sorted(f.name for f in flags or () if f.stability == "stable" and f.state == "disabled")


def flags_to_enable_now(
    flags: Iterable[FeatureFlag] | None, running: Iterable[bool] | None, cluster_size: int
) -> list[str]:
    """:func:`flags_to_enable`, once all ``cluster_size`` nodes run (``running``: per node).

    A flag is enabled on every node at once; with a node down RabbitMQ refuses it, so
    the deploy that brings the last node back enables them.
    """
    states = list(running or ())
    if len(states) < cluster_size or not all(states):
        return []
    return flags_to_enable(flags)


def broker_apply(
    read: Mapping[str, Any] | None,
    wanted: Mapping[str, Any],
    secrets: Mapping[str, str],
    removals: Mapping[str, Any],
    cluster_size: int = 1,
) -> dict[str, Any]:
    """What ``qsetup_broker_objects`` applies, by this module's comparison.

    ``read`` is ``qsetup_broker_admin``'s answer: the broker's ``definitions`` (None or
    empty when unread: then everything is applied), its ``feature_flags`` and its
    ``nodes``; ``wanted`` the plan's ``qsetup_broker``, ``removals`` what the inventory
    dropped (``qsetup_converge``'s ``removals``). No password is in the result
    (:func:`broker_passwords` gives them to the module's no_log argument).
    """
    from qsetup.converge.target import broker_from_plan

    read = read or {}
    expected = broker_from_plan(wanted)
    drift = compare_definitions(expected, read.get("definitions") or {}, secrets)
    nodes = read.get("nodes")
    running = [n.get("running") is True for n in nodes] if isinstance(nodes, list) else None
    return {
        **broker_changes(expected, drift, removals),
        "enable_flags": flags_to_enable_now(
            parse_flags(read.get("feature_flags")), running, cluster_size
        ),
    }


def broker_passwords(
    changes: Mapping[str, Any], wanted: Mapping[str, Any], secrets: Mapping[str, str]
) -> dict[str, str]:
    """The password (from the secrets file) of each user ``changes`` sets."""
    secret_of = {u["name"]: u["secret"] for u in wanted.get("users") or []}
    return {u["name"]: secrets.get(secret_of[u["name"]], "") for u in changes["users"]}
