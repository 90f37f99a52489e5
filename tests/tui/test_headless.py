"""The TUI's headless parts: docker ps port strings, docker stats formulas, URLs, names, config errors, endpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app import endpoint
from app.config import load_config, parse
from app.containers import displayable_ports, unique_name, urls
from app.stats import History, cpu_percent, memory_used, sample


def test_ports_in_docker_ps_order() -> None:
    """Same string as `docker ps`: sorted, same-port mappings grouped into ranges, other mappings last."""
    ports = [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
        {"PrivatePort": 444, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 53, "Type": "udp"},
    ]
    assert displayable_ports(ports) == (
        "0.0.0.0:53->53/udp, 443-444/tcp, 0.0.0.0:32768->80/tcp, [::]:32768->80/tcp"
    )
    assert displayable_ports([]) == ""


def test_urls_prefer_web_ports_and_loopback() -> None:
    published = (("0.0.0.0", 32770, 22, "tcp"), ("0.0.0.0", 32768, 80, "tcp"), ("::", 32768, 80, "tcp"),
                 ("127.0.0.1", 9000, 8080, "tcp"), ("0.0.0.0", 5353, 53, "udp"))
    assert urls(published) == ["http://127.0.0.1:32768", "http://127.0.0.1:9000", "http://127.0.0.1:32770"]


def test_unique_names_like_kitematic() -> None:
    assert unique_name("nginx", set()) == "nginx"
    assert unique_name("nginx", {"nginx", "nginx-2"}) == "nginx-3"
    assert unique_name("127.0.0.1:5000/testbed/nginx", set()) == "127.0.0.1-5000-testbed-nginx"


def test_stats_formulas_match_docker_stats() -> None:
    """CPU % from the deltas against precpu; memory without inactive file pages (v1 and v2 keys)."""
    raw = {
        "read": "2026-11-28T03:00:01.500000000Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 300_000_000}, "system_cpu_usage": 2_000_000_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100_000_000}, "system_cpu_usage": 1_000_000_000},
        "memory_stats": {"usage": 10_000_000, "limit": 100_000_000, "stats": {"total_inactive_file": 2_000_000}},
        "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 500}, "eth1": {"rx_bytes": 24, "tx_bytes": 0}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "write", "value": 8}]},
        "pids_stats": {"current": 3},
    }
    assert cpu_percent(raw) == 40.0
    assert memory_used({"usage": 100, "stats": {"inactive_file": 30}}) == 70
    assert memory_used({"usage": 100, "stats": {}}) == 100
    s = sample(raw)
    assert (s.mem_used, s.mem_limit, s.net_rx, s.net_tx, s.blk_read, s.blk_write, s.pids) == (
        8_000_000, 100_000_000, 1024, 500, 4096, 8, 3)
    assert s.mem_percent == 8.0
    h = History()
    h.add(s)
    later = dict(raw, read="2026-11-28T03:00:03.500000000Z", networks={"eth0": {"rx_bytes": 3024, "tx_bytes": 500}})
    h.add(sample(later))
    assert list(h.net_rx_rate) == [0.0, 1000.0]  # 2000 bytes over 2 seconds


def test_config_errors_are_readable(tmp_path: Path) -> None:
    """A bad file never stops the app: each problem is a sentence, and defaults stay in place."""
    cfg, errors = parse({"theme": 3, "keys": {"start": "S", "nope": "x", "stop": "bad key!"}, "colour": 1})
    assert cfg.keys == {"start": "S"}
    assert any("unknown setting 'colour'" in e for e in errors)
    assert any("'nope' is not a binding id" in e for e in errors)
    assert any("stop = 'bad key!' is not a key list" in e for e in errors)
    assert any("theme must be" in e for e in errors)
    bad = tmp_path / "config.toml"
    bad.write_text("theme = \n")
    cfg, errors = load_config(bad)
    assert cfg.theme is None and "not valid TOML" in errors[0] and "line 1" in errors[0]


def test_endpoint_order(tmp_path: Path) -> None:
    """-H beats $DOCKER_HOST, which beats a running portside daemon, which beats the embedded engine."""
    started: list[str] = []

    def embedded() -> endpoint.Endpoint:
        started.append("yes")
        return endpoint.Endpoint("unix:///x", "embedded", "embedded")

    env = {"DOCKER_HOST": "unix:///env.sock"}
    assert endpoint.choose("tcp://h:1", env=env, start_embedded=embedded).url == "tcp://h:1"
    assert endpoint.choose(None, env=env, start_embedded=embedded).kind == "host"
    ep = endpoint.choose(None, env={}, portside_socket=str(tmp_path / "none.sock"), start_embedded=embedded)
    assert ep.kind == "embedded" and started == ["yes"]


def test_docker_context_picks_the_host_as_the_cli_does(tmp_path: Path) -> None:
    """A context made by the real docker CLI is used (after -H and $DOCKER_HOST), $DOCKER_CONTEXT overrides the
    config's current one, "default" falls through to the portside daemon / embedded engine, and a missing
    context is a plain error."""
    import shutil

    import pytest

    cli = shutil.which("docker")
    if cli is None:
        pytest.skip("no docker CLI")
    cfg = tmp_path / "cfg"
    env = {"DOCKER_CONFIG": str(cfg)}
    for name, sock in (("pst-ctx-a", "/run/pst-a.sock"), ("pst-ctx-b", "/run/pst-b.sock")):
        out = subprocess.run([cli, "context", "create", name, "--docker", f"host=unix://{sock}"],
                             env={**os.environ, **env}, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
    assert subprocess.run([cli, "context", "use", "pst-ctx-a"], env={**os.environ, **env},
                          capture_output=True, check=False).returncode == 0

    def embedded() -> endpoint.Endpoint:
        return endpoint.Endpoint("unix:///x", "embedded", "embedded")

    none = str(tmp_path / "none.sock")
    ep = endpoint.choose(None, env=env, portside_socket=none, start_embedded=embedded)
    assert (ep.url, ep.kind) == ("unix:///run/pst-a.sock", "host") and "pst-ctx-a" in ep.label
    ep = endpoint.choose(None, env={**env, "DOCKER_CONTEXT": "pst-ctx-b"}, portside_socket=none,
                         start_embedded=embedded)
    assert ep.url == "unix:///run/pst-b.sock"
    assert endpoint.choose(None, env={**env, "DOCKER_HOST": "unix:///h.sock"}).url == "unix:///h.sock"
    ep = endpoint.choose(None, env={**env, "DOCKER_CONTEXT": "default"}, portside_socket=none,
                         start_embedded=embedded)
    assert ep.kind == "embedded"
    with pytest.raises(endpoint.NoEngine, match="pst-ctx-missing"):
        endpoint.choose(None, env={**env, "DOCKER_CONTEXT": "pst-ctx-missing"}, portside_socket=none)


def test_non_root_is_told_the_engine_needs_root() -> None:
    """Run as nobody, with no daemon and no DOCKER_HOST: the message says plainly that root is needed."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root to switch to nobody")
    root = Path(__file__).resolve().parents[2]
    code = (
        "import app.endpoint as e\n"
        "try:\n    e.choose(None, env={}, portside_socket='/nonexistent/p.sock')\n"
        "except e.NoEngine as x:\n    print(x)\n"
    )
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=root, env={"PYTHONPATH": str(root), "PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert "needs root" in out.stdout, out.stderr


def test_port_lines_parse_and_reject() -> None:
    from app.settings import PortMapping, parse_port

    assert parse_port("80") == PortMapping(80, "tcp", "", None)
    assert parse_port("53/udp -> 5353") == PortMapping(53, "udp", "", 5353)
    assert parse_port("80/tcp -> 127.0.0.1:8080") == PortMapping(80, "tcp", "127.0.0.1", 8080)
    assert parse_port("80 -> [::1]:8080") == PortMapping(80, "tcp", "::1", 8080)
    for bad in ("0", "80 -> 70000", "80/icmp", "80 -> 300.1.1.1:80", "x -> 1"):
        try:
            parse_port(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_recreate_keeps_every_untouched_field() -> None:
    """Only ports change: Cmd, Entrypoint, Env, Labels, limits and anonymous volumes are carried over."""
    from app import settings as st

    data = {
        "Id": "abcdef1234567890",
        "Name": "/web",
        "Config": {"Hostname": "abcdef123456", "Cmd": ["run", "--flag"], "Entrypoint": ["/init"], "Env": ["A=1"],
                   "Labels": {"l": "v"}, "Image": "nginx", "ExposedPorts": {"80/tcp": {}}},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, "Memory": 1 << 28,
                       "NetworkMode": "default", "RestartPolicy": {"Name": "always"}, "Binds": ["/srv:/data:ro"]},
        "Mounts": [{"Type": "volume", "Name": "anon123", "Destination": "/cache", "RW": True},
                   {"Type": "bind", "Source": "/srv", "Destination": "/data", "RW": False}],
        "NetworkSettings": {"Networks": {"bridge": {"Aliases": None}, "mynet": {"Aliases": ["web", "abcdef123456"]}}},
    }
    old = st.from_inspect(data)
    assert old.networks == ["mynet"] and old.restart == "always" and old.command == ["run", "--flag"]
    new = st.from_inspect(data)
    new.ports = [st.parse_port("80 -> 9090")]
    p = st.plan(old, new)
    assert p.recreate == ["ports"] and not p.rename
    body, extra = st.recreate_body(data, new)
    assert body["Cmd"] == ["run", "--flag"] and body["Entrypoint"] == ["/init"] and body["Env"] == ["A=1"]
    assert body["Labels"] == {"l": "v"} and "Hostname" not in body
    hc = body["HostConfig"]
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "9090"}]}
    assert hc["Memory"] == 1 << 28 and hc["RestartPolicy"]["Name"] == "always"
    assert hc["Binds"] == ["/srv:/data:ro", "anon123:/cache"]
    assert extra == ["mynet"]
    renamed = st.from_inspect(data)
    renamed.name = "web2"
    renamed.restart = "no"
    p2 = st.plan(old, renamed)
    assert p2.rename == "web2" and p2.restart_policy == "no" and not p2.recreate


def test_port_clashes_are_found() -> None:
    from app import settings as st

    ports = [st.parse_port("80 -> 127.0.0.1:18080"), st.parse_port("81 -> 18080")]
    others = [{"Id": "other", "Names": ["/db"], "Ports": [{"PublicPort": 5432, "Type": "tcp"}]}]
    errors = st.validate_ports([*ports, st.parse_port("5432 -> 5432")], "me", others, [])
    assert "host port 18080/tcp is used twice" in errors
    assert "host port 5432/tcp is already published by db" in errors


def test_form_checks_and_bind_entries() -> None:
    """The Settings forms' field checks, Binds entries round-trip, and which engines are on this machine."""
    from app import settings as st

    assert st.check_port_text("", "host port", required=False) is None
    assert st.check_port_text("0", "host port", required=False) == "host port must be a number from 1 to 65535"
    assert st.check_port_text("", "container port", required=True) == "container port is required"
    assert st.check_host_ip("[::1]") is None and st.check_host_ip("1.2.3") == "'1.2.3' is not an IP address"
    assert st.check_env_key("A B") and st.check_env_key("A=B") and st.check_env_key("") and not st.check_env_key("A")
    assert st.check_volume_source("bind", "rel/path") and not st.check_volume_source("bind", "/srv")
    assert st.check_volume_source("volume", "_x") and not st.check_volume_source("volume", "data-1")
    assert st.check_container_path("/") and st.check_container_path("x") and not st.check_container_path("/x")
    entry = st.parse_bind("/srv:/data:z,ro")
    assert (entry.kind, entry.source, entry.target, entry.read_only, entry.options) == ("bind", "/srv", "/data",
                                                                                         True, ("z",))
    assert str(entry) == "/srv:/data:ro,z" and str(st.parse_bind("v:/x:rw")) == "v:/x"
    assert st.mount_point_clashes(["/a", "/b/", "/b"]) == {2: "duplicate mount point: /b"}
    assert st.env_key_clashes(["A", None, "A"]) == {2: "A is set twice"}
    assert st.is_local_engine("unix:///run/docker.sock") and st.is_local_engine("tcp://127.0.0.1:2375")
    assert st.is_local_engine("tcp://[::1]:2375") and not st.is_local_engine("tcp://10.1.2.3:2376")
    rows = [st.parse_port("80 -> 127.0.0.1:18080"), None, st.parse_port("81 -> 18080")]
    assert st.port_clashes(rows, "me", [], [], check_host=False) == {2: ["host port 18080/tcp is used twice"]}
