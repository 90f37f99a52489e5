"""TUI benchmarks against any Engine API (portside, dockerd, podman): one command,

    python bench/tui.py -H unix:///path/docker.sock --image busybox:latest

1. first paint: 200 containers exist; time from app start to the list showing all of them (target < 1 s);
2. idle CPU: 20 running containers, the Stats tab open, the app's own CPU over 10 s (target < 2% of a core);
3. key response: the selected container prints ~10,000 lines/s; time for a key (toggle follow) to take effect
   (target < 100 ms).
Everything it creates carries the name prefix `pstbench-` and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import docker

from app.config import Config
from app.screens.main import MainScreen
from app.tui import PortsideApp


async def _until(pilot, predicate, timeout=60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        await pilot.pause(0.01)


async def first_paint(host: str, count: int) -> float:
    app = PortsideApp(host=host, config=Config())
    start = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.screen
        assert isinstance(main, MainScreen)
        await _until(pilot, lambda: len(main.container_list.rows_by_id) >= count)
        return time.perf_counter() - start


async def idle_cpu(host: str, seconds: float) -> float:
    app = PortsideApp(host=host, config=Config())
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.screen
        assert isinstance(main, MainScreen)
        await _until(pilot, lambda: main.loaded.is_set())
        main.query_one("#tabs").active = "tab-stats"  # type: ignore[attr-defined]
        await pilot.pause(2)
        t0, c0 = time.monotonic(), os.times()
        await pilot.pause(seconds)
        t1, c1 = time.monotonic(), os.times()
        return ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0) * 100


async def key_response(host: str, cid: str, presses: int = 20) -> list[float]:
    app = PortsideApp(host=host, config=Config(log_tail=100))
    async with app.run_test(size=(160, 50)) as pilot:
        main = app.screen
        assert isinstance(main, MainScreen)
        await _until(pilot, lambda: cid in main.container_list.rows_by_id)
        main.container_list.select_id(cid)
        await _until(pilot, lambda: len(main.log_view.lines) > 20000)
        main.log_view.focus()
        out = []
        for _ in range(presses):
            before = main.log_view.follow
            t = time.perf_counter()
            await pilot.press("f")
            await _until(pilot, lambda b=before: main.log_view.follow != b, timeout=5)  # type: ignore[misc]
            out.append((time.perf_counter() - t) * 1000)
            await pilot.pause(0.05)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-H", "--host", default=os.environ.get("DOCKER_HOST"), required=not os.environ.get("DOCKER_HOST"))
    ap.add_argument("--image", default="busybox:latest")
    ap.add_argument("--containers", type=int, default=200)
    args = ap.parse_args()
    api = docker.APIClient(base_url=args.host, version="auto", timeout=120)
    tag = uuid.uuid4().hex[:6]
    made: list[str] = []
    hc = api.create_host_config(network_mode="none")
    try:
        for i in range(args.containers):
            made.append(api.create_container(args.image, ["sleep", "600"], name=f"pstbench-{tag}-{i}",
                                             host_config=hc)["Id"])
        paint = asyncio.run(first_paint(args.host, args.containers))
        print(f"first paint with {args.containers} containers: {paint * 1000:.0f} ms (target < 1000 ms)")
        for cid in made[:20]:
            api.start(cid)
        cpu = asyncio.run(idle_cpu(args.host, 10.0))
        print(f"TUI CPU, 20 running, Stats tab open: {cpu:.2f}% of a core (target < 2%)")
        flood = api.create_container(args.image, ["sh", "-c", "yes 'a log line of some fifty characters, give or take'"
                                     " | while read -r l; do echo \"$l\"; done"], name=f"pstbench-{tag}-flood",
                                     host_config=hc)["Id"]
        made.append(flood)
        api.start(flood)
        times = asyncio.run(key_response(args.host, flood))
        print(f"key response under a log flood: median {statistics.median(times):.1f} ms, "
              f"max {max(times):.1f} ms (target < 100 ms)")
    finally:
        for cid in made:
            with contextlib.suppress(Exception):
                api.remove_container(cid, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
