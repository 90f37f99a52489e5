"""`docker build` of one small project (base image, a 20 MiB COPY, two RUN steps) through the same docker 28 CLI
with the classic builder (DOCKER_BUILDKIT=0), against portside and (when installed) dockerd: cold
(`--no-cache`) and fully cached, interleaved run by run.

Both engines get fresh temp roots and sockets and pull busybox from the test bed's registry; RUN steps use
`--network none` on both, so dockerd (`--iptables=false --bridge=none`) needs no firewall changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_docker_run import DOCKER, _docker, _stop
from bench.common import Table, destroy_portside, peer, start_portside

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "7"))

DOCKERFILE = """\
FROM busybox
COPY data /data
RUN cat /data/* | wc -c > /size
RUN echo built > /marker
CMD ["cat", "/size"]
"""


def _project(where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "Dockerfile").write_text(DOCKERFILE)
    (where / "data").mkdir()
    block = os.urandom(1 << 20)
    for i in range(20):
        (where / "data" / f"blob{i:02d}").write_bytes(block[i:] + block[:i])
    return where


def _build(sock: Path, project: Path, *args: str) -> float:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    t = time.perf_counter()
    subprocess.run([DOCKER, "-H", f"unix://{sock}", "build", "--network", "none", "-q", "-t", "pst-bench-build",
                    *args, str(project)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.testbed import images
    from tests.testbed.mounts import unmount_below
    from tests.testbed.registry import Registry, fill

    built = images.ensure_built()
    work = Path(tempfile.mkdtemp(prefix="pst-bb-"))
    reg = Registry(work / "registry")
    procs: list[subprocess.Popen[bytes]] = []
    dockerds: list[Any] = []
    bridge = "pstbuild" + str(os.getpid() % 10000)
    ps = work / "portside"
    portside_up = False
    try:
        reg.start()
        fill(reg, built.layouts)
        src = f"{reg.host}/testbed/busybox:latest"
        project = _project(work / "project")
        ps.mkdir()
        p, sock = start_portside(ps, bridge)
        procs.append(p)
        portside_up = True
        _docker(sock, "pull", src)
        _docker(sock, "tag", src, "busybox")
        engines: list[tuple[str, Path]] = [("portside", sock)]
        if peer("dockerd"):
            from tests.testbed import dockerd as testbed_dockerd

            dd = testbed_dockerd.make(parent=work)
            dockerds.append(dd)
            dd.start(timeout=120)
            _docker(dd.socket, "pull", src)
            _docker(dd.socket, "tag", src, "busybox")
            engines.append(("dockerd 20.10", dd.socket))
        cold: dict[str, list[float]] = {n: [] for n, _ in engines}
        cached: dict[str, list[float]] = {n: [] for n, _ in engines}
        for i in range(RUNS + 1):  # the first round warms both engines up and fills the caches
            for name, s in engines:
                c = _build(s, project, "--no-cache")
                h = _build(s, project)
                if i:
                    cold[name].append(c)
                    cached[name].append(h)
        for title, samples in (("cold (--no-cache)", cold), ("fully cached", cached)):
            table = Table(f"docker build, {title}: busybox + 20 MiB COPY + 2 RUN (docker 28 CLI, classic)", "ms",
                          baseline="dockerd 20.10" if len(engines) > 1 else None)
            for name, _s in engines:
                table.add(name, samples[name], f"{RUNS} runs")
            table.print()
    finally:
        for dd in dockerds:
            dd.stop()
        for proc in procs:
            _stop(proc)
        reg.stop()
        if portside_up:
            destroy_portside(ps, bridge)
        unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
