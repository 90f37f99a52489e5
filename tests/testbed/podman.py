"""A fenced Podman (4.x, rootful) for tests: the `podman` CLI and `podman system service` (its Docker-compatible
API on a unix socket) with nothing shared with the host's own Podman and nothing changed on the host.

The fence, all of it under one directory named `portside-test-podman-…`:

- its own --root/--runroot, a tmp_dir (so not /run/libpod's "alive" state of the host's Podman), file locks (not
  the host-wide /dev/shm/libpod_lock, which a fresh Podman frees all of), a file events log, k8s-file logs;
- a test-only containers.conf (CONTAINERS_CONF), registries.conf (no short names, the test registries and
  loopback insecure: they speak plain HTTP) and storage.conf;
- runc as runtime (crun 1.8 refuses this host's hybrid cgroups) and the cgroupfs manager (no systemd here);
- CNI networks from a config dir of its own, run by a plugin dir of its own: the real bridge plugin with
  isGateway and ipMasq forced off (the one turns the host's ip_forward on, the other adds iptables rules) and
  pass-throughs for portmap/firewall (iptables too), so networks Podman creates through the API touch nothing on
  the host. The default network's bridge `pstp…` is made here with its gateway address, so the host reaches
  containers on it at their address; published ports are not forwarded (that would take iptables);
- an infra (pause) image built from the test bed's busybox, so it never pulls its default one.

Stopped by PID; its containers, the processes left with its path (exec sessions' conmons), mounts, bridges,
CNI IPAM state and directory are removed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.mounts import unmount_below

REAL_CNI = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/pst-pause:latest"
PAUSE = '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 1000 & wait; done\n'

# The bridge plugin, run with what would change the host turned off (see the module's docstring).
_BRIDGE = """#!{python}
import json, subprocess, sys
conf = json.load(sys.stdin)
conf["isGateway"] = False
conf["isDefaultGateway"] = False
conf["ipMasq"] = False
out = subprocess.run([{real!r}], input=json.dumps(conf).encode(), stdout=subprocess.PIPE)
sys.stdout.buffer.write(out.stdout)
sys.exit(out.returncode)
"""

# A chained plugin that changes nothing: ADD passes the previous plugin's result on, the rest answer empty.
_PASS = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND")
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": conf.get("cniVersion", "1.0.0"),
                      "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}}))
elif cmd == "ADD":
    print(json.dumps(conf.get("prevResult") or {{"cniVersion": conf.get("cniVersion", "0.4.0")}}))
"""


def available() -> bool:
    return (os.geteuid() == 0 and shutil.which("podman") is not None and shutil.which("runc") is not None
            and shutil.which("skopeo") is not None and (REAL_CNI / "bridge").exists())  # fmt: skip


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
    free = [n for n in range(1, 255) if f"10.213.{n}." not in used]
    if not free:
        raise RuntimeError("no free 10.213.x.0/24 for podman's test bridge")
    return ipaddress.ip_network(f"10.213.{random.choice(free)}.0/24")  # at random: parallel sessions


@dataclass
class Podman:
    workdir: Path
    insecure_registries: tuple[str, ...] = ()
    tag: str = field(default_factory=lambda: os.urandom(3).hex())
    subnet: ipaddress.IPv4Network | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def network(self) -> str:
        """The default network (Docker's "bridge" maps to it), on the bridge of the same name."""
        return f"pstp{self.tag}"

    @property
    def socket(self) -> Path:
        return self.workdir / "podman.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def gateway(self) -> str:
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def env(self) -> dict[str, str]:
        return dict(os.environ, CONTAINERS_CONF=str(self.workdir / "containers.conf"),
                    CONTAINERS_REGISTRIES_CONF=str(self.workdir / "registries.conf"),
                    CONTAINERS_STORAGE_CONF=str(self.workdir / "storage.conf"))  # fmt: skip

    def command(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.workdir / "root"), "--runroot", str(self.workdir / "run"), *args]

    def run(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
        out = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, env=self.env(),
                             input=input)  # fmt: skip
        if check:
            assert out.returncode == 0, f"podman {' '.join(args)}: {out.stderr}"
        return out

    def ip(self, container: str) -> str:
        fmt = f"{{{{.NetworkSettings.Networks.{self.network}.IPAddress}}}}"
        return self.run("inspect", container, "--format", fmt).stdout.strip()

    def setup(self) -> None:
        """Write the fence's configuration and make the default network's bridge."""
        root = self.workdir
        self.subnet = _free_subnet()
        for d in ("cni", "cni-bin", "tmp", "ctx"):
            (root / d).mkdir()
        for name in ("host-local", "loopback", "tuning"):
            (root / "cni-bin" / name).symlink_to(REAL_CNI / name)
        (root / "cni-bin" / "bridge").write_text(_BRIDGE.format(python=sys.executable, real=str(REAL_CNI / "bridge")))
        for name in ("portmap", "firewall"):
            (root / "cni-bin" / name).write_text(_PASS.format(python=sys.executable))
        for p in (root / "cni-bin").iterdir():
            if not p.is_symlink():
                p.chmod(0o755)
        (root / "cni" / f"{self.network}.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": self.network,
            "plugins": [{"type": "bridge", "bridge": self.network, "isGateway": False, "ipMasq": False,
                         "ipam": {"type": "host-local", "routes": [],
                                  "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]]}}]}))
        subprocess.run(["ip", "link", "add", self.network, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.network],
                       check=True)  # fmt: skip
        subprocess.run(["ip", "link", "set", self.network, "up"], check=True)
        (root / "containers.conf").write_text(
            "[containers]\n"
            # this sandbox's hard limits are below podman's defaults (runc would fail setting them)
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            'log_driver = "k8s-file"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{root / "cni"}"\n'
            f'cni_plugin_dirs = ["{root / "cni-bin"}"]\n'
            f'default_network = "{self.network}"\n'
            # the pool Podman takes a new network's subnet from: 10.213/16 like the other test bridges
            'default_subnet_pools = [{"base" = "10.213.0.0/16", "size" = 24}]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{root / "events.log"}"\n'
            f'tmp_dir = "{root / "tmp"}"\n'
            'lock_type = "file"\n'
            f'infra_image = "{PAUSE_IMAGE}"\n')
        regs = "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n'
                       for r in (*self.insecure_registries, "127.0.0.1", "localhost"))  # fmt: skip
        (root / "registries.conf").write_text(
            'unqualified-search-registries = []\nshort-name-mode = "disabled"\n' + regs)
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "root"}"\nrunroot = "{root / "run"}"\n')

    def copy_in(self, layout: Path, ref: str) -> None:
        """Copy an OCI layout of the test bed into the store as `ref` (no registry involved)."""
        store = f"containers-storage:[overlay@{self.workdir / 'root'}+{self.workdir / 'run'}]{ref}"
        out = subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}", store], capture_output=True, text=True,
                             timeout=120, check=False)  # fmt: skip
        assert out.returncode == 0, out.stderr

    def build_pause(self, busybox_layout: Path) -> None:
        """The infra image (pods' pause container), from the test bed's busybox."""
        base = "localhost/pst-pause-base:latest"
        self.copy_in(busybox_layout, base)
        ctx = self.workdir / "ctx"
        (ctx / "pause").write_text(PAUSE)
        (ctx / "pause").chmod(0o755)
        (ctx / "Containerfile").write_text(f'FROM {base}\nCOPY pause /pause\nCMD ["/pause"]\n')
        self.run("build", "-q", "--network", "none", "--pull=never", "-t", PAUSE_IMAGE, str(ctx))
        self.run("rmi", base)

    def start_service(self, timeout: float = 60.0) -> None:
        """`podman system service` on this fence's socket, until it answers /_ping."""
        cmd = self.command("--log-level", "info", "system", "service", "--time", "0", self.url)
        with open(self.workdir / "service.log", "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env())
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {self.log()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        out = subprocess.run(["curl", "-sf", "--max-time", "5", "--unix-socket", str(self.socket),
                              "http://d/_ping"], capture_output=True, check=False)  # fmt: skip
        return out.returncode == 0

    def log(self) -> str:
        path = self.workdir / "service.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _bridges(self) -> set[str]:
        names = {self.network}
        for conf in (self.workdir / "cni").glob("*.conflist"):
            try:
                plugins = json.loads(conf.read_text()).get("plugins", [])
            except (OSError, ValueError):
                continue
            names.update(p["bridge"] for p in plugins if p.get("type") == "bridge" and p.get("bridge"))
        return names

    def _processes(self) -> list[int]:
        """What still runs from this fence (its path in the command line): exec sessions' conmons outlive the
        removal of their container."""
        mark, me, out = str(self.workdir).encode(), os.getpid(), []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != me:
                with suppress(OSError):
                    if mark in (entry / "cmdline").read_bytes():
                        out.append(int(entry.name))
        return out

    def _end_processes(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._processes()
            for pid in pids:
                with suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = self._processes()
            if not pids:
                return

    def stop(self) -> None:
        """Stop the service (by its PID) and remove everything the fence made."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            # conmon outlives the service: the containers go by the CLI
            self.run("pod", "rm", "-a", "-f", "-t", "0", check=False)
            self.run("rm", "-a", "-f", "-t", "0", check=False)
            networks = self.run("network", "ls", "-q", check=False).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            networks = []
        finally:
            self._end_processes()
            bridges = self._bridges()
            for net in networks:
                shutil.rmtree(f"/var/lib/cni/networks/{net}", ignore_errors=True)
            shutil.rmtree(f"/var/lib/cni/networks/{self.network}", ignore_errors=True)
            unmount_below(self.workdir)
            for bridge in bridges:
                subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
            # podman's cgroupfs manager leaves its (by now empty) parent cgroup in every hierarchy; another
            # fence's containers may still be in it, then it stays
            for parent in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
                for d in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with suppress(OSError):
                        d.rmdir()
                with suppress(OSError):
                    parent.rmdir()
            shutil.rmtree(self.workdir, ignore_errors=True)


def make(insecure_registries: tuple[str, ...] = ()) -> Podman:
    return Podman(Path(tempfile.mkdtemp(prefix="portside-test-podman-")), insecure_registries)


@contextmanager
def fenced(busybox_layout: Path, insecure_registries: tuple[str, ...] = (), service: bool = False) -> Iterator[Podman]:
    """A set-up fence with its pause image (and its API service when asked), removed on exit."""
    pm = make(insecure_registries)
    try:
        pm.setup()
        pm.build_pause(busybox_layout)
        if service:
            pm.start_service()
        yield pm
    finally:
        pm.stop()
