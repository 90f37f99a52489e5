"""Pull throughput from a local registry: a ~100 MB image and an image of 10,000 small files.

The same operation everywhere - fetch, verify, unpack into a snapshot - timed interleaved, the image removed
between runs (not timed):
- `docker pull` (the docker 28 CLI) against a private portside daemon and a private dockerd 20.10 (overlay2),
  both on fresh temp roots;
- portside's ImageService called directly (no daemon, no CLI), on a fresh root each run;
- `podman pull` when installed, and `skopeo copy` to a dir (download and verify only, no unpack).
MB/s counts the compressed bytes the registry sends. Ratios are against dockerd (target: 1.5x).
`BENCH_RUNS` (default 5) sets the runs per tool; `BENCH_DOCKERD_TOPDIR=1` gives dockerd's overlay2 dir the
TOPDIR flag portside's snapshot dir has (on ext4 without a journal it decides how fast many small files are
created right after an image was removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.bench_docker_run import DOCKER, _stop, _wait_sock
from bench.common import Table, peer, timed
from engine.images.service import ImageService
from tests.testbed import dockerd as testbed_dockerd
from tests.testbed.mounts import unmount_below
from tests.testbed.oci import Entry, Layout, tar_entries
from tests.testbed.registry import Registry

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "portside" / "bench-pull-v3"
CONFIG = {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]}
ROOT = Path(__file__).resolve().parent.parent


def _big_layers() -> list[bytes]:
    """Four layers of ~28 MB: mostly random (like compressed binaries), some text-like, in files of 64 KiB..4 MiB."""
    rnd = random.Random(7)
    layers = []
    for n in range(4):
        entries = [Entry(f"big{n}", "dir")]
        total = 0
        i = 0
        while total < 28 << 20:
            size = rnd.choice([64 << 10, 256 << 10, 1 << 20, 4 << 20])
            if i % 8:
                data = rnd.randbytes(size)
            else:
                words = b" ".join(hashlib.sha256(str(rnd.random()).encode()).hexdigest()[:8].encode()
                                  for _ in range(64))
                data = (words * (size // len(words) + 1))[:size]
            entries.append(Entry(f"big{n}/f{i:04d}", data=data))
            total += size
            i += 1
        layers.append(tar_entries(entries))
    return layers


def _small_layer() -> bytes:
    rnd = random.Random(11)
    entries = []
    for d in range(100):
        entries.append(Entry(f"small/d{d:03d}", "dir"))
        for f in range(100):
            entries.append(Entry(f"small/d{d:03d}/f{f:03d}", data=rnd.randbytes(rnd.randint(200, 3000))))
    return tar_entries(entries)


def build_layouts() -> dict[str, Path]:
    out = {"big": CACHE / "big", "small": CACHE / "small"}
    if all((p / "index.json").exists() for p in out.values()):
        return out
    tmp = Path(tempfile.mkdtemp(prefix="portside-bench-layouts-", dir=CACHE.parent if CACHE.parent.exists() else None))
    try:
        big = Layout(tmp / "big")
        big.tag(big.image(_big_layers(), config=CONFIG), "latest")
        small = Layout(tmp / "small")
        small.tag(small.image([_small_layer()], config=CONFIG), "latest")
        CACHE.mkdir(parents=True, exist_ok=True)
        for name in out:
            if out[name].exists():
                shutil.rmtree(out[name])
            os.rename(tmp / name, out[name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def blob_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())


@contextmanager
def _daemon(cmd: list[str], home: Path, sock: Path, **kw: object) -> Iterator[None]:
    log = home / "log"
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]
    try:
        _wait_sock(sock, p, log, timeout=120)
        yield
    finally:
        _stop(p)


def _docker(sock: Path, *args: str) -> None:
    subprocess.run([DOCKER, "-H", f"unix://{sock}", *args], check=True, capture_output=True, timeout=600)


def main() -> None:
    layouts = build_layouts()
    work = Path(tempfile.mkdtemp(prefix="portside-bench-pull-"))
    # short: the daemon's supervisor sockets live below it and must fit AF_UNIX's 108 bytes
    exec_root = Path(tempfile.mkdtemp(prefix="portside-bench-x", dir="/tmp"))
    reg = Registry(work / "registry")
    bridge = "pstbp" + str(os.getpid() % 100000)
    try:
        with ExitStack() as stack:
            reg.start()
            for name, layout in layouts.items():
                reg.push_layout(layout, "latest", f"bench/{name}:latest", fmt="v2s2")
            tools: dict[str, Callable[[str], None]] = {}
            # portside daemon, driven by the docker CLI
            ps = work / "portside"
            ps.mkdir()
            psock = ps / "sock"
            stack.enter_context(_daemon(
                [sys.executable, "-m", "app.cli", "daemon", "--data-root", str(ps / "data"), "--exec-root",
                 str(exec_root), "-H", f"unix://{psock}", "--bridge", bridge, "--ip-forward=false",
                 "--cgroup-parent", f"portside-test-{bridge}"],
                ps, psock, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT))))

            def portside_cli(ref: str) -> None:
                _docker(psock, "pull", "-q", ref)

            tools["portside daemon (docker pull)"] = portside_cli
            roots: list[Path] = []

            def portside_direct(ref: str) -> None:
                root = Path(tempfile.mkdtemp(prefix="root-", dir=work))
                roots.append(root)
                svc = ImageService(root, certs_dirs=(), docker_config=root / "none.json")
                try:
                    asyncio.run(svc.pull(ref))
                finally:
                    svc.close()

            tools["portside ImageService"] = portside_direct
            removers: dict[str, Callable[[str], None]] = {
                "portside daemon (docker pull)": lambda ref: _docker(psock, "rmi", ref),
            }
            if peer("dockerd"):
                dd = stack.enter_context(testbed_dockerd.running(insecure_registries=(reg.host,), parent=work,
                                                                 timeout=120))
                dsock = dd.socket

                if os.environ.get("BENCH_DOCKERD_TOPDIR") == "1":
                    # Like-for-like unpacking: dockerd's layers spread over ext4's block groups as portside's
                    # snapshots are (see engine/images/snapshots.mark_topdir).
                    from engine.images.snapshots import mark_topdir

                    mark_topdir(dd.data_root / "overlay2")

                def dockerd(ref: str) -> None:
                    _docker(dsock, "pull", "-q", ref)

                tools["dockerd 20.10 (docker pull)"] = dockerd
                removers["dockerd 20.10 (docker pull)"] = lambda ref: _docker(dsock, "rmi", ref)
            if peer("podman"):
                def podman(ref: str) -> None:
                    subprocess.run(["podman", "pull", "-q", "--tls-verify=false", ref], check=True,
                                   capture_output=True, timeout=600)

                tools["podman pull"] = podman
                removers["podman pull"] = lambda ref: subprocess.run(["podman", "rmi", "-f", ref], check=True,
                                                                     capture_output=True, timeout=600)
            if peer("skopeo"):
                def skopeo(ref: str) -> None:
                    dest = Path(tempfile.mkdtemp(prefix="skopeo-", dir=work))
                    try:
                        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                                        f"dir:{dest}"], check=True, capture_output=True, timeout=600)
                    finally:
                        shutil.rmtree(dest, ignore_errors=True)

                tools["skopeo copy (no unpack)"] = skopeo
            baseline = "dockerd 20.10 (docker pull)" if "dockerd 20.10 (docker pull)" in tools else None
            for name, layout in layouts.items():
                ref = f"{reg.host}/bench/{name}:latest"
                mb = blob_bytes(layout) / 1e6
                table = Table(f"pull {name} image ({mb:.0f} MB compressed)", "MB/s", baseline=baseline,
                              lower_is_better=False)
                # Interleaved runs, so that the load of a shared machine weighs on every tool alike.
                samples: dict[str, list[float]] = {tool: [] for tool in tools}
                for _ in range(RUNS):
                    for tool, fn in tools.items():
                        samples[tool] += timed(lambda fn=fn, ref=ref: fn(ref), 1, warmup=0)  # type: ignore[misc]
                        if tool in removers:
                            removers[tool](ref)
                        for r in roots:
                            shutil.rmtree(r, ignore_errors=True)
                        roots.clear()
                for tool in tools:
                    table.add(tool, [mb / s for s in samples[tool]],
                              "min..max " + " ".join(f"{mb / s:.0f}" for s in (max(samples[tool]),
                                                                              min(samples[tool]))))
                table.print()
    finally:
        reg.stop()
        from engine.net import NetworkService
        from engine.parts import nft_table_for

        if (work / "portside" / "data").exists():  # the daemon's bridge and nft table
            svc = NetworkService(work / "portside" / "data", exec_root, default_bridge=bridge,
                                 nft_table=nft_table_for(bridge), enable_ip_forward=False)
            svc.start()
            svc.destroy()
        for d in (work, exec_root):
            unmount_below(d)
            shutil.rmtree(d, ignore_errors=True)
        for cg in Path("/sys/fs/cgroup").glob(f"*/portside-test-{bridge}"):
            with contextlib.suppress(OSError):
                cg.rmdir()


if __name__ == "__main__":
    main()
