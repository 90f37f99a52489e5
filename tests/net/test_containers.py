"""The must-show items of networking with real containers (engine/exec runtime, test-bed busybox and nginx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.exec import cgroups, spec
from engine.exec.runtime import Runtime
from engine.net.service import NetworkService, Sandbox

from .conftest import Peer, sh, wait_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    base = Path(tempfile.mkdtemp(prefix="portside-test-netrt-"))
    rt = Runtime(base / "exec", f"portside-test-{uuid.uuid4().hex[:8]}")
    try:
        yield rt
    finally:
        for cid in rt.list():
            with contextlib.suppress(Exception):
                asyncio.run(rt.delete(cid, force=True))
        cgroups.remove_parent(rt.cgroup_parent)
        shutil.rmtree(base, ignore_errors=True)


class Containers:
    """Start containers the way the daemon will: sandbox first, then an OCI bundle that joins its netns and
    bind-mounts its hosts/resolv.conf/hostname files."""

    def __init__(self, rt: Runtime, svc: NetworkService, testbed: Any) -> None:
        self.rt, self.svc, self.testbed = rt, svc, testbed
        self.made: list[tuple[str, Path]] = []

    async def run(self, name: str, cmd: list[str] | None, *, image: str = "busybox", wait: bool = False,
                  mounts: list[dict[str, Any]] | None = None, **net: Any) -> tuple[str, Sandbox, Path]:  # fmt: skip
        cid = "pst" + uuid.uuid4().hex[:29]  # short: the runtime's control socket path has a length limit
        base = Path(tempfile.mkdtemp(prefix="portside-test-netc-"))
        self.made.append((cid, base))
        for d in ("rootfs", "upper", "work"):
            (base / d).mkdir()
        lower = self.testbed.nginx_rootfs if image == "nginx" else self.testbed.busybox_rootfs
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={base}/upper,workdir={base}/work", str(base / "rootfs")],
                       check=True)  # fmt: skip
        sb = await asyncio.to_thread(self.svc.create_sandbox, cid, name=name, hostname=name, **net)
        mounts = [
            {"destination": dst, "type": "bind", "source": str(src), "options": ["rbind", "rprivate"]}
            for dst, src in (("/etc/hosts", sb.hosts_path), ("/etc/resolv.conf", sb.resolv_conf_path),
                             ("/etc/hostname", sb.hostname_path))
        ] + list(mounts or [])  # fmt: skip
        cfg: dict[str, Any] = {"Hostname": name}
        if cmd is not None:
            cfg["Cmd"] = cmd
        image_cfg = {"Cmd": ["nginx", "-g", "daemon off;"]} if image == "nginx" else {}
        netns = str(sb.netns_path) if sb.netns_path else "host"
        oci = spec.build(cfg, {}, image_cfg, rootfs=base / "rootfs", netns=netns, extra_mounts=mounts)
        (base / "config.json").write_text(json.dumps(oci))
        await self.rt.create(cid, base, log_path=base / "log.json")
        await self.rt.start(cid)
        if wait:
            st = await asyncio.wait_for(self.rt.wait(cid), 30)
            assert st.exit_code == 0, self.output(base)
        return cid, sb, base

    @staticmethod
    def output(base: Path) -> str:
        log = base / "log.json"
        if not log.exists():
            return ""
        return "".join(json.loads(line)["log"] for line in log.read_text().splitlines())

    async def cleanup(self) -> None:
        for cid, base in self.made:
            with contextlib.suppress(Exception):
                await self.rt.delete(cid, force=True)
            await asyncio.to_thread(self.svc.remove_sandbox, cid)
            subprocess.run(["umount", "-l", str(base / "rootfs")], check=False, capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def ctrs(runtime: Runtime, svc: NetworkService, testbed: Any) -> AsyncIterator[Containers]:
    c = Containers(runtime, svc, testbed)
    try:
        yield c
    finally:
        await c.cleanup()


HTTPD = ["sh", "-c", "echo hello-from-$(hostname) > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]


async def test_two_containers_on_the_default_bridge_reach_each_other(ctrs: Containers) -> None:
    _, web, _ = await ctrs.run("web1", HTTPD)
    ip = web.network_settings["IPAddress"]
    assert web.netns_path is not None
    await asyncio.to_thread(wait_port, web.netns_path, 80)
    _, _, base = await ctrs.run("client1", ["wget", "-qO-", f"http://{ip}/"], wait=True)
    assert ctrs.output(base).strip() == "hello-from-web1"


async def test_user_network_by_name_and_alias(ctrs: Containers, svc: NetworkService) -> None:
    net = f"pst-app-{secrets.token_hex(2)}"
    await asyncio.to_thread(svc.create_network, net)
    _, web, _ = await ctrs.run("web2", HTTPD, network_mode=net, endpoints={net: {"Aliases": ["frontend"]}})
    assert web.netns_path is not None
    await asyncio.to_thread(wait_port, web.netns_path, 80)
    _, _, base = await ctrs.run("client2", ["sh", "-c", "wget -qO- http://web2/ && wget -qO- http://frontend/"],
                                network_mode=net, wait=True)
    assert ctrs.output(base).split() == ["hello-from-web2", "hello-from-web2"]


async def test_none_has_only_lo_and_host_sees_host_interfaces(ctrs: Containers) -> None:
    _, _, base = await ctrs.run("nonet", ["cat", "/proc/net/dev"], network_mode="none", wait=True)
    ifaces = [line.split(":")[0].strip() for line in ctrs.output(base).splitlines()[2:]]
    assert ifaces == ["lo"]

    def host_ifaces() -> set[str]:
        return {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}

    # other tests (and sessions) add and remove pst links meanwhile: the container sees every link the host had
    # throughout, and no other but a test's link that came and went
    before = host_ifaces()
    _, _, base = await ctrs.run("hostnet", ["cat", "/proc/net/dev"], network_mode="host", wait=True)
    after = host_ifaces()
    ifaces = {line.split(":")[0].strip() for line in ctrs.output(base).splitlines()[2:]}
    assert "eth0" in ifaces and before & after <= ifaces, (ifaces, before, after)
    assert all(i.startswith("pst") for i in ifaces - (before | after)), (ifaces, before, after)


async def test_container_mode_shares_the_address(ctrs: Containers) -> None:
    owner_id, owner, _ = await ctrs.run("owner", HTTPD)
    assert owner.netns_path is not None
    await asyncio.to_thread(wait_port, owner.netns_path, 80)
    _, _, base = await ctrs.run(
        "joiner", ["sh", "-c", "wget -qO- http://127.0.0.1/ && ip -o -4 addr show eth0"],
        network_mode=f"container:{owner_id}", wait=True,
    )
    out = ctrs.output(base)
    assert "hello-from-owner" in out and owner.network_settings["IPAddress"] + "/" in out


async def test_nginx_published_on_localhost_answers_curl(ctrs: Containers) -> None:
    _, sb, _ = await ctrs.run("nginx1", None, image="nginx", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    assert sb.netns_path is not None
    await asyncio.to_thread(wait_port, sb.netns_path, 80)
    port = sb.network_settings["Ports"]["80/tcp"][0]["HostPort"]
    out = sh(None, "curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/").stdout
    assert "Welcome to nginx" in out


async def test_nginx_published_on_all_addresses_answers_another_machine(ctrs: Containers, peer: Peer) -> None:
    _, sb, _ = await ctrs.run("nginx2", None, image="nginx", port_bindings={"80/tcp": [{"HostPort": ""}]})
    assert sb.netns_path is not None
    await asyncio.to_thread(wait_port, sb.netns_path, 80)
    port = sb.network_settings["Ports"]["80/tcp"][0]["HostPort"]
    out = sh(peer.ns, "curl", "-sS", "--max-time", "5", f"http://{peer.host_ip}:{port}/").stdout
    assert "Welcome to nginx" in out


# Debian's busybox-static (the test-bed image) has no UDP server applet: its nc is TCP only, no udpsvd/dnsd. So
# the echo server is the host's python3, bind-mounted read-only into the busybox container (its own rootfs,
# netns and runtime; only the interpreter comes from the host).
UDP_ECHO = (
    "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',7))\n"
    "while True:\n d,a=s.recvfrom(4096);s.sendto(b'echo:'+d,a)\n"
)
HOST_PYTHON = [
    {"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate", "ro"]}
    for dst, src in (("/usr", "/usr"), ("/lib", "/usr/lib"), ("/lib64", "/usr/lib64"))
]
UDP_CLIENT = (
    "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.5)\n"
    "for _ in range(20):\n"
    " s.sendto(b'ping',(sys.argv[1],int(sys.argv[2])))\n"
    " try:\n  print(s.recv(100).decode());break\n except TimeoutError: pass\n"
)


async def test_udp_published_port_reaches_an_echo_server(ctrs: Containers, peer: Peer) -> None:
    _, sb, base = await ctrs.run("udpecho", ["/usr/bin/python3", "-c", UDP_ECHO], mounts=HOST_PYTHON,
                                 port_bindings={"7/udp": [{"HostPort": ""}]})  # fmt: skip
    assert sb.netns_path is not None
    await asyncio.to_thread(wait_port, sb.netns_path, 7, "udp")
    port = sb.network_settings["Ports"]["7/udp"][0]["HostPort"]
    # from the host on 127.0.0.1, and from another machine through the host's address on the link to it
    out = sh(None, "python3", "-c", UDP_CLIENT, "127.0.0.1", port).stdout
    assert out.strip() == "echo:ping", ctrs.output(base)
    out = sh(peer.ns, "python3", "-c", UDP_CLIENT, peer.host_ip, port).stdout
    assert out.strip() == "echo:ping", ctrs.output(base)
