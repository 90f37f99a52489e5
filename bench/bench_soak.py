"""Soak: N cycles of a container's whole life through the docker CLI, then what is left over.

Each cycle: `run -d` with a published port (127.0.0.1 only), a named volume and a user network; `exec`; `logs`;
`stop`; `rm -f -v`. Every `--every` cycles also `pull`/`rmi` of the test bed's nginx and `build`/`rmi` of a
one-RUN Dockerfile. Before the first counted cycle (after one warm-up cycle, so lazily made things exist) and after
the last, a census of mounts, netns, links, bridges, nft rules, cgroups, processes, the daemon's fds, threads and
RSS, and files under the data and exec roots; printed as a leak table (target: nothing left over, RSS growth
under 5 MiB) with the cycle time.

    bench/run soak                         # 1000 cycles (BENCH_CYCLES)
    python -m bench.bench_soak --cycles 50 --every 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Table
from bench.engine_state import (
    Bench,
    bench_daemon,
    census,
    census_rss,
    leak_table,
    memtrace_diff,
    memtrace_snapshot,
    settle,
)

NET, VOL, NAME = "pst-soak-net", "pst-soak-vol", "pst-soak"


def cycle(b: Bench) -> None:
    b.docker("run", "-d", "--name", NAME, "-p", "127.0.0.1::80", "-v", f"{VOL}:/v", "--network", NET, b.busybox,
             "sh", "-c", "echo soak > /v/f; echo started; exec sleep 600")
    if b.docker("exec", NAME, "cat", "/v/f").strip() != "soak":
        raise RuntimeError("exec did not see the volume")
    b.docker("logs", NAME)
    b.docker("stop", "-t", "0", NAME)
    b.docker("rm", "-f", "-v", NAME)


def images_cycle(b: Bench, ctx: Path) -> None:
    b.docker("pull", "-q", b.nginx)
    b.docker("rmi", b.nginx)
    env = os.environ.get("DOCKER_BUILDKIT")
    os.environ["DOCKER_BUILDKIT"] = "0"
    try:
        b.docker("build", "-q", "-t", "pst-soak-build", str(ctx))
    finally:
        if env is None:
            os.environ.pop("DOCKER_BUILDKIT", None)
        else:
            os.environ["DOCKER_BUILDKIT"] = env
    b.docker("rmi", "pst-soak-build")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=int(os.environ.get("BENCH_CYCLES", "1000")))
    ap.add_argument("--every", type=int, default=int(os.environ.get("BENCH_IMAGES_EVERY", "10")),
                    help="a pull/rmi and a build/rmi every this many cycles (0: never)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace the daemon's Python allocations and print what grew between before and after "
                         "(slows the daemon; its RSS figures then include the tracing)")
    args = ap.parse_args()
    trace_dir = Path(tempfile.mkdtemp(prefix="portside-test-memtrace-")) if args.tracemalloc else None
    if trace_dir is not None:
        os.environ["PORTSIDE_TRACEMALLOC"] = str(trace_dir)
    try:
        run(args, trace_dir)
    finally:
        os.environ.pop("PORTSIDE_TRACEMALLOC", None)
        if trace_dir is not None:
            shutil.rmtree(trace_dir, ignore_errors=True)


def run(args: argparse.Namespace, trace_dir: Path | None) -> None:
    with bench_daemon() as b, tempfile.TemporaryDirectory(prefix="portside-test-soakctx-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(f"FROM {b.busybox}\nRUN echo built > /built\n")
        b.docker("network", "create", NET)
        b.docker("volume", "create", VOL)
        cycle(b)  # warm-up: the zygote, the nft chains, the network's bridge exist from here on
        if args.every:
            images_cycle(b, ctx)
        settle(b)
        snap0 = memtrace_snapshot(b, trace_dir) if trace_dir is not None else None
        snap_step = None
        before = census(b)
        times: list[float] = []
        image_times: list[float] = []
        t_start = time.monotonic()
        rss0 = census_rss(b)
        rss_curve: list[tuple[int, int]] = [(0, rss0)]
        step = max(1, args.cycles // 5)
        for i in range(args.cycles):
            if i and i % step == 0:
                rss_curve.append((i, census_rss(b)))
                if trace_dir is not None and i == step:
                    snap_step = memtrace_snapshot(b, trace_dir)  # past what the first cycles fill (caches, history)
            t = time.perf_counter()
            cycle(b)
            times.append(time.perf_counter() - t)
            if args.every and (i + 1) % args.every == 0:
                t = time.perf_counter()
                images_cycle(b, ctx)
                image_times.append(time.perf_counter() - t)
        total = time.monotonic() - t_start
        settle(b)
        snap1 = memtrace_snapshot(b, trace_dir) if trace_dir is not None else None
        after = census(b)
        rss1 = census_rss(b)
        table, leaks = leak_table(before, after)
        rss = (rss1 - rss0) / 1024
        print(f"== soak: {args.cycles} cycles (run -d -p -v --network, exec, logs, stop, rm -f -v)"
              f"{f', pull/rmi + build/rmi every {args.every}' if args.every else ''}, {total:.0f} s", flush=True)
        print(table, flush=True)
        rss_curve.append((args.cycles, rss1))
        print(f"  rows with something left over: {leaks}; daemon RSS growth {rss:+.2f} MiB (target < 5)", flush=True)
        print("  daemon RSS by cycle: " + ", ".join(f"{i}: {kib / 1024:.1f} MiB" for i, kib in rss_curve), flush=True)
        figures = Table("soak cycle times", "ms")
        figures.add("container cycle (median)", [x * 1000 for x in times])
        figures.add_value("container cycle (p99)", 1000 * statistics.quantiles(times, n=100)[98] if len(times) > 1
                          else 1000 * times[0])
        if image_times:
            figures.add("pull/rmi + build/rmi (median)", [x * 1000 for x in image_times])
        figures.print()
        if snap0 is not None and snap1 is not None:
            print("== what grew in the daemon's Python heap (tracemalloc, by allocation traceback)", flush=True)
            print(memtrace_diff(snap0, snap1), flush=True)
            if snap_step is not None:
                print(f"== the same from cycle {step} to the end", flush=True)
                print(memtrace_diff(snap_step, snap1), flush=True)
        b.docker("volume", "rm", VOL)
        b.docker("network", "rm", NET)


if __name__ == "__main__":
    main()
