"""Host switching in the TUI (issue 16): how long from `switch_host` to the new host's container list being in,
for a host the pool keeps connected against one it must connect to first.

    bench/run hosts        # two portside daemons on temp roots, started and removed here

The app runs headless under Textual's Pilot (as the tests drive it); the two hosts are switched back and forth,
alternating a kept connection with a fresh one (the pool's entry closed before the switch). Prints medians and
95th percentiles; never asserts them. The daemons hold no containers: the figures are the connection and the
list's round trip, not the drawing of rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Table, destroy_portside, start_portside

RUNS = 15


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def measure(socks: list[Path]) -> dict[str, list[float]]:
    from app.config import Config
    from app.hosts import Host
    from app.tui import PortsideApp

    a, b = (Host(f"pstbench-{i}", f"unix://{s}", "user") for i, s in enumerate(socks))
    app = PortsideApp(host=a.url, config=Config(hub_search=False))
    out: dict[str, list[float]] = {"kept": [], "fresh": []}
    async with app.run_test(size=(160, 50)) as pilot:
        from app.screens.main import MainScreen

        main = app.screen
        assert isinstance(main, MainScreen)

        async def loaded(deadline: float = 30.0) -> None:
            end = time.monotonic() + deadline
            while not (app.connected and main.loaded.is_set()):
                if time.monotonic() > end:
                    raise RuntimeError("the list did not load")
                await pilot.pause(0.001)

        await loaded()
        app.switch_host(b)
        await loaded()
        for i in range(RUNS * 2):
            target = a if i % 2 == 0 else b
            kind = "kept" if i % 4 < 2 else "fresh"
            if kind == "fresh" and app.pool is not None:
                app.pool.close(target.name)
            await pilot.pause(0.05)
            main.loaded.clear()  # set again by the new host's list (the screen's own clear comes by message)
            start = time.perf_counter()
            app.switch_host(target)
            await loaded()
            out[kind].append(time.perf_counter() - start)
    return out


def main() -> None:
    where = [Path(tempfile.mkdtemp(prefix="pstbench-hosts-")) for _ in range(2)]
    bridges = [f"pstbh{os.getpid() % 10000}{i}" for i in range(2)]
    procs = []
    try:
        socks = []
        for w, br in zip(where, bridges, strict=True):
            proc, sock = start_portside(w, br)
            procs.append(proc)
            socks.append(sock)
        figures = asyncio.run(measure(socks))
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        for w, br in zip(where, bridges, strict=True):
            destroy_portside(w, br)
            shutil.rmtree(w, ignore_errors=True)
    table = Table("host switch: switch_host to the list loaded", "ms", baseline="fresh connection")
    table.add_value("fresh connection", statistics.median(figures["fresh"]) * 1000,
                    f"p95 {p95(figures['fresh']) * 1000:.1f} ms, n={len(figures['fresh'])}")
    table.add_value("kept connection (pool)", statistics.median(figures["kept"]) * 1000,
                    f"p95 {p95(figures['kept']) * 1000:.1f} ms, n={len(figures['kept'])}")
    table.print()
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
