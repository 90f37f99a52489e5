"""Kill the engine, restart it: published ports of running containers still work, DNS comes back, nothing is
duplicated, lost pieces are recreated and stray ones removed."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.net import links, nft, nsutil
from engine.net.service import NetworkService

from .conftest import Procs, leftovers, sh, wait_port
from .test_sockhook import assert_detached
from .test_user_networks import lookup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ENGINE = """
import json, sys
from pathlib import Path
from engine.net.service import NetworkService
kw = json.loads(sys.argv[1])
for k in ("data_root", "exec_root", "host_resolv_conf"):
    kw[k] = Path(kw[k])
kw["dns_upstreams"] = [tuple(x) for x in kw["dns_upstreams"]]
svc = NetworkService(**kw)
svc.start()
svc.create_network("pst-restart")
web = svc.create_sandbox("a" * 64, name="web", hostname="web", network_mode="pst-restart",
                         port_bindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
app = svc.create_sandbox("b" * 64, name="app", hostname="app", network_mode="pst-restart")
print(json.dumps({"port": web.network_settings["Ports"]["80/tcp"][0]["HostPort"],
                  "web_ns": str(web.netns_path), "app_ns": str(app.netns_path),
                  "web_ip": web.network_settings["Networks"]["pst-restart"]["IPAddress"],
                  "hook": svc.hook.ids()}), flush=True)
sys.stdin.read()
"""


def rule_set(table: str) -> list[str]:
    """The table's rules without their handles, sorted: containers' DNATs are added one by one at run time and a
    restart renders the whole table, so handles and order differ while the rules must be the same, none twice."""
    return sorted(json.dumps({k: v for k, v in r.items() if k != "handle"}, sort_keys=True)
                  for r in nft.list_rules(table))  # fmt: skip


def test_kill_and_restart_keeps_published_ports_and_duplicates_nothing(
    svc_factory: tuple[Path, str, dict[str, object]], procs: Procs, tmp_path: Path
) -> None:
    _, _, kw = svc_factory
    env = dict(os.environ, PYTHONPATH=str(Path(engine.__file__).resolve().parents[1]))
    args = json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()})
    proc = subprocess.Popen([sys.executable, "-c", ENGINE, args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the engine dies without any cleanup
        proc.wait(timeout=5)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("still here\n")
    procs.start(info["web_ns"], "busybox", "httpd", "-f", "-p", "80", "-h", str(www))
    wait_port(info["web_ns"], 80)
    url = f"http://127.0.0.1:{info['port']}/"
    # the engine's socket hook died with it (links live as long as its fds): nothing stays attached to the host
    assert_detached(info["hook"])
    # with the engine dead, the kernel keeps forwarding (nft DNAT)
    assert sh(None, "curl", "-sS", "--max-time", "5", url).stdout == "still here\n"
    table = str(kw["nft_table"])
    rules_before = rule_set(table)
    links_before = sorted(leftovers(table))
    # lose a veth, and leave a stray link and a stray netns file behind, as a crash could
    web_sb = json.loads((Path(str(kw["data_root"])) / "network" / "sandboxes" / ("a" * 64 + ".json")).read_text())
    links.delete_link(web_sb["Endpoints"]["pst-restart"]["HostIfname"])
    stray = f"pst{secrets.token_hex(5)}"
    sh(None, "ip", "link", "add", stray, "type", "bridge")
    sh(None, "ip", "link", "set", stray, "alias", f"portside {table} stray")
    stray_ns = Path(str(kw["exec_root"])) / "netns" / ("c" * 64)
    nsutil.create_netns(stray_ns)

    svc = NetworkService(**kw)  # type: ignore[arg-type]
    svc.start(running=["a" * 64, "b" * 64])
    try:
        assert sorted(leftovers(table)) == links_before  # the veth is back, the stray link is gone
        assert stray not in links.interface_names(None)
        assert not stray_ns.exists()
        assert rule_set(table) == rules_before  # same rules, none twice
        assert sh(None, "curl", "-sS", "--max-time", "5", url).stdout == "still here\n"
        assert lookup(Path(info["app_ns"]), "web") == [info["web_ip"]]  # DNS is served again
        # what was handed out before the crash is not handed out again
        new = svc.create_sandbox(secrets.token_hex(32), name="new", hostname="new", network_mode="pst-restart")
        assert new.network_settings["Networks"]["pst-restart"]["IPAddress"] != info["web_ip"]
        with pytest.raises(Exception, match="port is already allocated"):
            svc.create_sandbox(secrets.token_hex(32), name="dup", hostname="dup",
                               port_bindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": info["port"]}]})
        # a second restart changes nothing either
        svc.close()
        svc = NetworkService(**kw)  # type: ignore[arg-type]
        svc.start()
        assert rule_set(table) == rules_before
        assert len(leftovers(table)) == len(links_before) + 1
    finally:
        svc.close()


def test_a_lost_bridge_is_recreated_and_its_containers_reattached(
    svc_factory: tuple[Path, str, dict[str, object]],
) -> None:
    _, _, kw = svc_factory
    s1 = NetworkService(**kw)  # type: ignore[arg-type]
    s1.start()
    a = s1.create_sandbox(secrets.token_hex(16), name="a", hostname="a")
    b = s1.create_sandbox(secrets.token_hex(16), name="b", hostname="b")
    s1.close()
    links.delete_link(s1.default_bridge)  # someone ran `ip link del portside0`
    nft.delete_table(s1.table)  # and flushed the ruleset
    s2 = NetworkService(**kw)  # type: ignore[arg-type]
    s2.start()
    try:
        assert s2.default_bridge in links.interface_names(None)
        assert nft.table_exists(s2.table)
        sh(a.netns_path, "busybox", "ping", "-c", "1", "-W", "2", b.network_settings["IPAddress"])
        sh(b.netns_path, "busybox", "ping", "-c", "1", "-W", "2", a.network_settings["Gateway"])
    finally:
        s2.close()


CRASH = """
import json, os, sys
from pathlib import Path
from engine.net import links
from engine.net.service import NetworkService
kw = json.loads(sys.argv[1])
for k in ("data_root", "exec_root", "host_resolv_conf"):
    kw[k] = Path(kw[k])
kw["dns_upstreams"] = [tuple(x) for x in kw["dns_upstreams"]]
svc = NetworkService(**kw)
svc.start()
real = links.create_endpoint
def crash(**a):
    real(**a)
    os._exit(9)  # the engine dies with the veth made and the address reserved, before the sandbox is recorded
links.create_endpoint = crash
svc.create_sandbox("d" * 64, name="half", hostname="half", port_bindings={"80/tcp": [{"HostPort": ""}]})
"""


def test_a_crash_in_the_middle_of_create_sandbox_leaves_nothing_after_restart(
    svc_factory: tuple[Path, str, dict[str, object]],
) -> None:
    _, _, kw = svc_factory
    env = dict(os.environ, PYTHONPATH=str(Path(engine.__file__).resolve().parents[1]))
    args = json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()})
    r = subprocess.run([sys.executable, "-c", CRASH, args], env=env, capture_output=True, timeout=60)
    assert r.returncode == 9, r.stderr
    table = str(kw["nft_table"])
    assert len(leftovers(table)) == 2  # the bridge and the orphaned veth
    svc = NetworkService(**kw)  # type: ignore[arg-type]
    svc.start()
    try:
        assert leftovers(table) == [svc.default_bridge]
        assert list((Path(str(kw["exec_root"])) / "netns").iterdir()) == []
        assert svc.inspect("bridge")["Containers"] == {}
        assert svc.sandboxes == {}
    finally:
        svc.close()
