"""Fixtures for engine/net tests: a NetworkService with its own bridge, nft table and subnet, namespaces standing in
for containers, and a "peer" namespace wired to the host like another machine. Everything is named pst*/
portside-test* and removed in finally blocks."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.net import links, nft, nsutil
from engine.net.service import NetworkService


def sh(
    netns: Path | str | None, *cmd: str, timeout: float = 10, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full = list(cmd) if netns is None else ["nsenter", f"--net={netns}", *cmd]
    r = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{full} -> {r.returncode}: {r.stdout} {r.stderr}")
    return r


class Procs:
    """Processes a test starts (servers inside namespaces); stopped by pid at the end."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(self, netns: Path | str | None, *cmd: str) -> subprocess.Popen[bytes]:
        full = list(cmd) if netns is None else ["nsenter", f"--net={netns}", *cmd]
        # own session: busybox httpd forks a child per client, and stop() must end those too
        p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        self.items.append(p)
        return p

    def stop(self) -> None:
        for p in self.items:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop()


def wait_port(netns: Path | str | None, port: int, proto: str = "tcp", timeout: float = 5) -> None:
    """Poll until something listens on port inside netns."""
    flag = "-ltn" if proto == "tcp" else "-lun"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = sh(netns, "ss", "-H", flag, f"sport = :{port}", check=False)
        if r.stdout.strip():
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}/{proto} in {netns}")


def service_kwargs(root: Path, tag: str) -> dict[str, object]:
    resolv = root / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\noptions edns0\n")
    return {
        "data_root": root / "data",
        "exec_root": root / "exec",
        "default_bridge": f"pst{tag}",
        "nft_table": f"portside-test-{tag}",
        "default_subnet": f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(255)}.0/24",
        "enable_ip_forward": False,
        "host_resolv_conf": resolv,
        # forwarded queries must stay on this machine: 127.0.0.1:9 has no listener (SERVFAIL at once)
        "dns_upstreams": [("127.0.0.1", 9)],
    }


def leftovers(table: str) -> list[str]:
    prefix = f"portside {table} "
    return [link.name for link in links.list_links() if link.alias.startswith(prefix)]


def settled_leftovers(table: str, expected: list[str], timeout: float = 5) -> list[str]:
    """leftovers() once they match `expected` (sorted), or as they are at the timeout: a removed sandbox's veth goes
    with its netns, which the kernel destroys asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        now = sorted(leftovers(table))
        if now == sorted(expected) or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


@pytest.fixture
def svc_factory() -> Iterator[tuple[Path, str, dict[str, object]]]:
    """A root dir and service arguments; the test makes (and may remake) services from them. Cleans up all."""
    with service_env() as env:
        yield env


@contextlib.contextmanager
def service_env() -> Iterator[tuple[Path, str, dict[str, object]]]:
    """svc_factory's body, for tests that need more than one engine."""
    tag = secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix="portside-test-net-"))
    kw = service_kwargs(root, tag)
    try:
        yield root, tag, kw
    finally:
        s = NetworkService(**kw)  # type: ignore[arg-type]
        with contextlib.suppress(Exception):
            s.start()
        s.destroy()
        for link in leftovers(str(kw["nft_table"])):
            links.delete_link(link)
        with contextlib.suppress(Exception):
            nft.delete_table(str(kw["nft_table"]))
        netns_dir = root / "exec" / "netns"
        if netns_dir.is_dir():
            for p in netns_dir.iterdir():
                nsutil.remove_netns(p)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def svc(svc_factory: tuple[Path, str, dict[str, object]]) -> Iterator[NetworkService]:
    _, _, kw = svc_factory
    s = NetworkService(**kw)  # type: ignore[arg-type]
    s.start()
    try:
        yield s
    finally:
        s.close()


class Peer:
    """A namespace wired to the host by a veth, like another machine on the host's LAN."""

    def __init__(self, tag: str) -> None:
        self.ns = Path(tempfile.mkdtemp(prefix="portside-test-peer-")) / f"pst-peer-{tag}"
        # 198.18.0.0/15 is the benchmarking range: no real host lives there
        x, y = secrets.randbelow(256), 4 * secrets.randbelow(64)
        self.host_ip = f"198.18.{x}.{y + 1}"
        self.peer_ip = f"198.18.{x}.{y + 2}"
        self.host_if = f"pstp{tag}"
        nsutil.create_netns(self.ns)
        try:
            sh(None, "ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", str(self.ns))
            sh(None, "ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            sh(None, "ip", "link", "set", self.host_if, "up")
            links.set_sysctl(f"net/ipv4/conf/{self.host_if}/forwarding", "1")
            sh(self.ns, "ip", "addr", "add", f"{self.peer_ip}/30", "dev", "eth0")
            sh(self.ns, "ip", "link", "set", "eth0", "up")
            sh(self.ns, "ip", "link", "set", "lo", "up")
            sh(self.ns, "ip", "route", "add", "default", "via", self.host_ip)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        links.delete_link(self.host_if)
        nsutil.remove_netns(self.ns)
        shutil.rmtree(self.ns.parent, ignore_errors=True)


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer(secrets.token_hex(3))
    try:
        yield p
    finally:
        p.close()
