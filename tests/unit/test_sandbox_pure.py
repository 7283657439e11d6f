"""Unit tests for the pure parts of qsetup.sandbox (no root, no hosts)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from qsetup.errors import SandboxError
from qsetup.sandbox import cgroup, host, lifecycle, network, proxy, rootfs, state
from qsetup.sandbox.state import HostRecord, SandboxState


def _rec(name: str = "qs1", address: str = "10.213.7.11") -> HostRecord:
    return HostRecord(
        name=name,
        address=address,
        netns=f"qs-{name}",
        veth_host=f"qsv-{name}",
        veth_peer=f"qsp-{name}",
        host_dir=f"/tmp/hosts/{name}",
        pid=123,
        pid_start=456,
    )


def test_state_round_trips_through_json() -> None:
    st = SandboxState(subnet="10.213.7.0/24", bridge="qsbr0", bridge_address="10.213.7.1")
    st = st.with_host(_rec("qs1")).with_host(_rec("qs2", "10.213.7.12"))
    again = state.state_from_json(state.state_to_json(st))
    assert again == st
    assert again.host("qs2") == _rec("qs2", "10.213.7.12")
    assert again.proxy_url == "http://10.213.7.1:3128"


def test_with_host_replaces_in_place_and_without_host_removes() -> None:
    st = SandboxState(subnet="s", bridge="b", bridge_address="a")
    st = st.with_host(_rec("qs1")).with_host(_rec("qs2", "x"))
    st = st.with_host(_rec("qs1", "changed"))
    assert [h.name for h in st.hosts] == ["qs1", "qs2"]
    assert st.hosts[0].address == "changed"
    assert [h.name for h in st.without_host("qs1").hosts] == ["qs2"]


def test_unreadable_state_says_how_to_fix() -> None:
    with pytest.raises(SandboxError, match="remove it"):
        state.state_from_json("{not json")


def test_save_and_load_state_keep_the_file_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QSETUP_SANDBOX_DIR", str(tmp_path / "sbx"))
    assert state.load_state() is None
    state.ensure_state_dir()
    st = SandboxState(subnet="s", bridge="b", bridge_address="a", hosts=(_rec(),))
    state.save_state(st)
    assert state.load_state() == st
    assert (tmp_path / "sbx").stat().st_mode & 0o777 == 0o700
    assert state.state_file().stat().st_mode & 0o777 == 0o600
    state.clear_state()
    assert state.load_state() is None


@pytest.mark.parametrize("name", ["qs1", "a", "web-1", "abcdefghij"])
def test_good_names(name: str) -> None:
    assert state.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Qs1", "1qs", "qs_1", "abcdefghijk", "qs-", "a b"])
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(SandboxError, match="lowercase letters"):
        state.check_name(name)


def test_wanted_names_defaults_and_choices() -> None:
    assert lifecycle.wanted_names(None, None) == ["qs1", "qs2", "qs3"]
    assert lifecycle.wanted_names(5, None)[-1] == "qs5"
    assert lifecycle.wanted_names(None, ["a", " b"]) == ["a", "b"]
    with pytest.raises(SandboxError, match="not both"):
        lifecycle.wanted_names(2, ["a"])
    with pytest.raises(SandboxError, match="repeats"):
        lifecycle.wanted_names(None, ["a", "a"])


def test_interface_names_fit_the_kernel_limit() -> None:
    netns, veth_host, veth_peer = network.interface_names("abcdefghij")
    assert (netns, veth_host, veth_peer) == ("qs-abcdefghij", "qsv-abcdefghij", "qsp-abcdefghij")
    assert max(len(veth_host), len(veth_peer)) <= 15


def test_addresses_in_the_subnet() -> None:
    net = ipaddress.IPv4Network("10.213.7.0/24")
    assert network.bridge_address(net) == "10.213.7.1"
    assert network.host_address(net, 0) == "10.213.7.11"
    assert network.host_address(net, 19) == "10.213.7.30"
    with pytest.raises(SandboxError, match="at most"):
        network.host_address(net, 300)


def test_subnet_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QSETUP_SANDBOX_SUBNET", raising=False)
    assert str(network.sandbox_subnet()) == "10.213.7.0/24"
    monkeypatch.setenv("QSETUP_SANDBOX_SUBNET", "10.99.1.0/24")
    assert str(network.sandbox_subnet()) == "10.99.1.0/24"
    for bad in ("10.99.1.0/16", "8.8.8.0/24", "nonsense", "10.99.1.5/24"):
        monkeypatch.setenv("QSETUP_SANDBOX_SUBNET", bad)
        with pytest.raises(SandboxError, match="QSETUP_SANDBOX_SUBNET"):
            network.sandbox_subnet()


def test_bridge_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSETUP_SANDBOX_BRIDGE", "qsbr1")
    assert network.bridge_name() == "qsbr1"
    monkeypatch.setenv("QSETUP_SANDBOX_BRIDGE", "a-much-too-long-name")
    with pytest.raises(SandboxError, match="QSETUP_SANDBOX_BRIDGE"):
        network.bridge_name()


def test_subnet_conflicts_ignore_our_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    addrs = [
        {"ifname": "eth0", "addr_info": [{"local": "192.0.2.2", "prefixlen": 24}]},
        {"ifname": "qsbr0", "addr_info": [{"local": "10.213.7.1", "prefixlen": 24}]},
        {"ifname": "tun0", "addr_info": [{"local": "10.213.0.5", "prefixlen": 16}]},
    ]
    routes = [
        {"dst": "default", "dev": "eth0"},
        {"dst": "10.213.7.128/25", "dev": "wg0"},
        {"dst": "10.213.7.0/24", "dev": "qsbr0"},
    ]

    def fake(*args: str) -> list[dict[str, object]]:
        return addrs if "addr" in args else routes

    monkeypatch.setattr(network, "_ip_json", fake)
    found = network.find_subnet_conflicts(ipaddress.IPv4Network("10.213.7.0/24"), "qsbr0")
    assert found == ["address 10.213.0.5/16 on tun0", "route 10.213.7.128/25 via wg0"]


DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main contrib

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: http://off.invalid/debian
Suites: bookworm
Components: main
"""


def test_deb822_sources_are_parsed() -> None:
    sources = rootfs.parse_deb822_sources(DEB822)
    assert [s.line() for s in sources] == [
        "deb http://mirror.invalid/debian bookworm main",
        "deb http://mirror.invalid/debian bookworm-updates main",
        "deb http://mirror.invalid/debian-security bookworm-security main contrib",
    ]


def test_one_line_sources_are_parsed() -> None:
    text = (
        "# comment\ndeb [signed-by=/k.gpg arch=amd64] http://a.invalid/debian bookworm main\n"
        "deb-src http://a.invalid/debian bookworm main\n"
        "deb https://vendor.invalid/apt stable main\n"
    )
    sources = rootfs.parse_one_line_sources(text)
    assert [s.line() for s in sources] == [
        "deb http://a.invalid/debian bookworm main",
        "deb https://vendor.invalid/apt stable main",
    ]


def test_mirror_and_release_sources_come_from_the_machine() -> None:
    sources = rootfs.parse_deb822_sources(DEB822) + rootfs.parse_one_line_sources(
        "deb https://vendor.invalid/apt cloud-sdk-bookworm main\n"
    )
    assert rootfs.pick_mirror(sources, "bookworm") == "http://mirror.invalid/debian"
    assert rootfs.pick_mirror(sources, "trixie") is None
    suites = [s.suite for s in rootfs.sources_for_release(sources, "bookworm")]
    assert suites == ["bookworm", "bookworm-updates", "bookworm-security"]


def test_cache_key_depends_on_release_and_packages_only() -> None:
    assert rootfs.cache_key("bookworm") == rootfs.cache_key("bookworm")
    assert rootfs.cache_key("bookworm") != rootfs.cache_key("trixie")
    assert rootfs.cache_key("bookworm", ("a", "b")) == rootfs.cache_key("bookworm", ("b", "a"))
    assert rootfs.cache_key("bookworm", ("a",)) != rootfs.cache_key("bookworm", ("a", "b"))
    for pkg in ("systemd", "openssh-server", "python3", "python3-apt", "ca-certificates", "sudo"):
        assert pkg in rootfs.INCLUDE


def test_remove_tree_refuses_nothing_when_absent(tmp_path: Path) -> None:
    rootfs.remove_tree(tmp_path / "missing")
    (tmp_path / "t" / "a").mkdir(parents=True)
    rootfs.remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_proxy_config_serves_only_the_subnet() -> None:
    text = proxy.render_config("10.213.7.1", ipaddress.IPv4Network("10.213.7.0/24"))
    lines = text.splitlines()
    assert "Listen 10.213.7.1" in lines
    assert "Allow 10.213.7.0/24" in lines
    assert "ConnectPort 443" in lines
    assert "ConnectPort 80" in lines
    assert "Port 3128" in lines
    assert not any(line.startswith("Upstream") for line in lines)


def test_host_files_render() -> None:
    hosts_text = host.render_etc_hosts([("qs1", "10.213.7.11"), ("qs2", "10.213.7.12")])
    assert "10.213.7.11\tqs1\n" in hosts_text
    assert "127.0.0.1\tlocalhost" in hosts_text
    apt = host.render_apt_proxy("http://10.213.7.1:3128")
    assert 'Acquire::http::Proxy "http://10.213.7.1:3128";' in apt
    assert 'Acquire::https::Proxy "http://10.213.7.1:3128";' in apt
    pip = host.render_pip_conf("http://10.213.7.1:3128")
    assert "proxy = http://10.213.7.1:3128" in pip
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in pip


def test_sandbox_up_keeps_the_cluster_block_a_deploy_wrote(tmp_path: Path) -> None:
    from types import SimpleNamespace

    rec: HostRecord = SimpleNamespace(merged=tmp_path)  # type: ignore[assignment]
    (tmp_path / "etc").mkdir()
    block = "# BEGIN qsetup: nodes\n10.213.7.11 qs1\n10.213.7.12 qs2\n# END qsetup: nodes\n"
    two = [("qs1", "10.213.7.11"), ("qs2", "10.213.7.12")]
    (tmp_path / "etc/hosts").write_text(host.render_etc_hosts(two) + block)
    assert host.update_etc_hosts(rec, two) is False  # only the deploy's block differs
    assert host.update_etc_hosts(rec, [*two, ("qs3", "10.213.7.13")]) is True
    text = (tmp_path / "etc/hosts").read_text()
    assert "10.213.7.13\tqs3\n" in text and text.endswith(block)


@pytest.mark.parametrize(
    ("rc", "out", "state_name", "units"),
    [
        (0, "running\n", "running", ()),
        (1, "degraded\nfoo.service loaded failed failed Foo\nbar.mount loaded failed\n",
         "degraded", ("foo.service", "bar.mount")),
        (1, "starting\n", "starting", ()),
        (1, "initializing\n", "starting", ()),
        (255, "", "starting", ()),
        (1, "stopping\n", "stopping", ()),
    ],
)  # fmt: skip
def test_probe_output_is_parsed(rc: int, out: str, state_name: str, units: tuple[str, ...]) -> None:
    status = host.parse_probe(_rec(), rc, out)
    assert status.state == state_name
    assert status.failed_units == units
    assert status.as_dict()["name"] == "qs1"
    assert status.as_dict()["address"] == "10.213.7.11"


def test_nspawn_boots_systemd_in_our_namespace_without_registering() -> None:
    args = host.nspawn_args(_rec())
    for flag in ("--boot", "--register=no", "--keep-unit", "--machine=qs1"):
        assert flag in args
    assert "--network-namespace-path=/run/netns/qs-qs1" in args
    assert "--directory=/tmp/hosts/qs1/merged" in args
    # Its own firewall (nftables) in its own namespace.
    assert "--capability=CAP_NET_ADMIN" in args


def test_each_host_gets_a_cgroup_of_its_own_in_each_hierarchy(tmp_path: Path) -> None:
    hybrid = tmp_path / "hybrid"
    (hybrid / "unified").mkdir(parents=True)
    (hybrid / "unified" / "cgroup.controllers").touch()
    (hybrid / "systemd").mkdir()
    (hybrid / "systemd" / "tasks").touch()
    assert cgroup.host_cgroups("lv2", hybrid) == [
        hybrid / "unified" / "qsetup-sandbox" / "lv2",
        hybrid / "systemd" / "qsetup-sandbox" / "lv2",
    ]
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").touch()
    assert cgroup.host_cgroups("lv2", unified) == [unified / "qsetup-sandbox" / "lv2"]
    assert cgroup.host_cgroups("lv1", unified) != cgroup.host_cgroups("lv2", unified)
    assert cgroup.prepare("lv2", unified) == [unified / "qsetup-sandbox" / "lv2" / "cgroup.procs"]
    assert (unified / "qsetup-sandbox" / "lv2").is_dir()
    cgroup.remove("lv2", unified)
    assert not (unified / "qsetup-sandbox" / "lv2").exists()


def test_nspawn_joins_the_hosts_cgroups_as_the_recorded_process(tmp_path: Path) -> None:
    procs = [tmp_path / "a" / "cgroup.procs", tmp_path / "b" / "cgroup.procs"]
    for p in procs:
        p.parent.mkdir()
    out = subprocess.run(
        cgroup.joining(procs, ["sh", "-c", "echo $$"]), capture_output=True, text=True, check=True
    )
    # The command runs as the same process that joined (exec): the PID sandbox records.
    assert [p.read_text().strip() for p in procs] == [out.stdout.strip()] * 2
    failed = subprocess.run(
        cgroup.joining([tmp_path / "missing" / "cgroup.procs"], ["true"]), capture_output=True
    )
    assert failed.returncode == 1
    assert cgroup.joining([], ["true"]) == ["true"]


def test_format_status_names_failed_units() -> None:
    line = lifecycle.format_status(
        host.HostStatus("qs1", "10.213.7.11", "degraded", ("foo.service",))
    )
    assert line.split()[:3] == ["qs1", "10.213.7.11", "degraded"]
    assert "foo.service" in line
