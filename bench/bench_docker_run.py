"""`docker run --rm busybox true` through the same docker CLI, against portside and (when installed) dockerd.

Both engines get fresh temp roots and sockets, pull busybox from the test bed's registry, and run the same
command, interleaved run by run; containers use `--network none` on both so neither touches the host's firewall
(dockerd runs with `--iptables=false --bridge=none`), plus portside with its default bridge network.
A portside daemon run with `--log-level debug` logs the duration of each step of a run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Table, destroy_portside, peer

ROOT = Path(__file__).resolve().parent.parent
DOCKER = shutil.which("docker", path="/usr/local/bin") or "docker"
RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def _wait_sock(sock: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited: {log.read_text()[-2000:]}")
        if sock.exists() and subprocess.run([DOCKER, "-H", f"unix://{sock}", "version"], capture_output=True,
                                            check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"engine did not answer: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _docker(sock: Path, *args: str) -> None:
    subprocess.run([DOCKER, "-H", f"unix://{sock}", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.testbed import images
    from tests.testbed.mounts import unmount_below
    from tests.testbed.registry import Registry, fill

    built = images.ensure_built()
    work = Path(tempfile.mkdtemp(prefix="portside-test-bench-"))
    reg = Registry(work / "registry")
    procs: list[subprocess.Popen[bytes]] = []
    dockerds: list[Any] = []
    dirs = [work]
    table = Table("docker run --rm busybox true (docker 28 CLI)", "ms", baseline="dockerd 20.10")
    bridge = "pstbench" + str(os.getpid() % 10000)
    ps = work / "portside"
    portside_up = False
    try:
        reg.start()
        fill(reg, built.layouts)
        src = f"{reg.host}/testbed/busybox:latest"
        ps.mkdir()
        # a long exec-root on purpose: supervisor sockets work under any (issue 3)
        ps_exec = ps / "exec-root"
        sock = ps / "sock"
        log = ps / "log"
        with open(log, "wb") as f:
            p = subprocess.Popen([sys.executable, "-m", "app.cli", "daemon", "--data-root", str(ps / "data"),
                                  "--exec-root", str(ps_exec), "-H", f"unix://{sock}", "--bridge", bridge,
                                  "--ip-forward=false", "--cgroup-parent", f"portside-test-{bridge}"],
                                 stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
        procs.append(p)
        portside_up = True
        _wait_sock(sock, p, log)
        _docker(sock, "pull", src)
        _docker(sock, "tag", src, "busybox")
        cases: list[tuple[str, Path, list[str], str]] = [
            ("portside (--network none)", sock, ["--network", "none"], ""),
            ("portside (bridge)", sock, [], ""),
        ]
        if peer("dockerd"):
            from tests.testbed import dockerd as testbed_dockerd

            dd = testbed_dockerd.make(parent=work)
            dockerds.append(dd)
            dd.start(timeout=120)
            dsock = dd.socket
            _docker(dsock, "pull", src)
            _docker(dsock, "tag", src, "busybox")
            cases.append(("dockerd 20.10", dsock, ["--network", "none"], "--network none, --iptables=false"))
        # interleaved, one warm-up run each: on a shared machine, load changes affect every engine alike
        samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
        for i in range(RUNS + 1):
            for name, engine_sock, args, _note in cases:
                t = time.perf_counter()
                _docker(engine_sock, "run", "--rm", *args, "busybox", "true")
                if i:
                    samples[name].append((time.perf_counter() - t) * 1000)
        for name, _sock, _args, note in cases:
            table.add(name, samples[name], note)
        table.print()
    finally:
        for dd in dockerds:
            dd.stop()
        for proc in procs:
            _stop(proc)
        reg.stop()
        if portside_up:
            destroy_portside(ps, bridge, ps / "exec-root")
        for d in dirs:
            unmount_below(d)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
