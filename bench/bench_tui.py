"""The TUI's targets (issue 7), measured on the real `portside` command in a pseudo-terminal:

    bench/run tui                                   # a portside daemon on temp roots, started here
    .venv/bin/python -m bench.bench_tui -H unix:///path/docker.sock [--image REF]   # any Engine API

1. first paint: 200 containers exist; time from starting `portside` (the fork) to the output showing every
   row of them that fits on screen (target < 1 s, then < 300 ms: issue 16); the first row's time too;
   measured alike: a bare Textual app listing the same containers (bench/tui_floor.py), the floor;
2. CPU: 20 running containers, the Stats tab open; the process's utime+stime over 10 s (target < 2% of a core);
3. key response: the selected container prints ~10,000 lines/s; time from writing `f` (toggle follow) to the pty
   until the output shows the log status line's new state (target < 100 ms). The flood's real rate is measured
   from its own counter and printed.
4. key-to-screen (issue 16): with the 200 containers listed, time from writing Down to the pty until the app's
   next frame arrives (the moved cursor, the newly selected container's Home tab), and likewise Right on the tab
   bar opening the next of a container's tabs (Home, Stats, Settings, Exec, Inspect): median and p95, target
   median < 50 ms; first paint's target there is < 300 ms.

The app runs as a child on a pty of 160x50 (TERM=xterm-256color, an empty XDG config home); a thread reads the
pty all the time, so the app never blocks on its output, and notes when each chunk arrived. Without -H the bench
starts the test bed's registry and a portside daemon, and pulls busybox from it; with -H and no --image it pulls
the test bed's busybox into that engine (dockerd treats 127.0.0.1 registries as insecure by default).
Everything it creates carries the name prefix `pstbench-` and is removed at the end. It prints figures and never
asserts them.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import fcntl
import os
import pty
import random
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COLS, ROWS = 160, 50
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The log status line says "N lines · following" or "N lines · not following (f)": each text can only be on
# screen in its own state, so under a flood neither shows up before the key took effect.
FOLLOW_OFF = "· not following".encode()
FOLLOW_ON = "lines · following".encode()
FLOOD_LINE = "pstbench flood $i: a log line of some fifty characters, give or take"


class PtyApp:
    """`portside` on a pty of its own: a reader thread keeps every byte with the time its chunk arrived."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.started = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its stdin/out/err and controlling terminal
            try:
                os.chdir(cwd)  # `python -m` puts the working directory first on sys.path
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.out = bytearray()
        self._ends: list[int] = []  # end offset of each chunk read...
        self._times: list[float] = []  # ...and when it arrived
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                chunk = b""
            now = time.perf_counter()
            with self._cond:
                if not chunk:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self.out += chunk
                self._ends.append(len(self.out))
                self._times.append(now)
                self._cond.notify_all()

    def offset(self) -> int:
        with self._cond:
            return len(self.out)

    def send(self, data: bytes) -> tuple[int, float]:
        """Write keys; returns the output offset and the time just before the write."""
        with self._cond:
            offset = len(self.out)
        t = time.perf_counter()
        os.write(self.fd, data)
        return offset, t

    def wait_for(self, needle: bytes | re.Pattern[bytes], start: int, timeout: float) -> tuple[float, int] | None:
        """When the output after `start` first held needle: (arrival time of that chunk, end offset), or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            pos = start
            while True:
                if isinstance(needle, bytes):
                    i = self.out.find(needle, pos)
                    end = i + len(needle) if i >= 0 else -1
                    keep = len(needle)
                else:
                    m = needle.search(self.out, pos)
                    end = m.end() if m else -1
                    keep = 200
                if end >= 0:
                    k = bisect.bisect_left(self._ends, end)
                    return self._times[k], end
                pos = max(start, len(self.out) - keep)
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(min(left, 0.5))

    def wait_output(self, start: int, timeout: float, quiet: float = 0.03) -> float | None:
        """When output after `start` arrived (the first chunk's time), then waits until it has been quiet for
        `quiet` seconds so the next key does not land in the middle of this frame; None on a timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.out) <= start:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(min(left, 0.5))
            first = self._times[bisect.bisect_right(self._ends, start)]
            while True:
                last = self._times[-1]
                left = quiet - (time.perf_counter() - last)
                if left <= 0:
                    return first
                self._cond.wait(left)

    def screen_tail(self, n: int = 3000) -> str:
        """The last output with escape sequences removed: enough to say what went wrong."""
        with self._cond:
            raw = bytes(self.out[-n:])
        return re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]", " ", raw.decode("utf-8", "replace"))

    def cpu_seconds(self) -> float:
        """utime + stime of the process (every thread), from /proc/PID/stat."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, b"q")
        deadline = time.monotonic() + 10
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
                deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    self._reader.join(5)
                    os.close(self.fd)
                    return
                time.sleep(0.05)


@dataclass
class Tree:
    """A portside to run: this checkout's `portside` command, or another checkout's app/ (--app DIR)."""

    label: str
    argv: list[str]
    pythonpath: str
    # what it imports before its first frame can be drawn (Bench.imports times it)
    imports: str = "import app.cli, app.main, app.prefetch, app.tui, app.screens.main"


# Reference for first paint: a bare Textual app listing the same containers (bench/tui_floor.py).
FLOOR = Tree("bare Textual app", [sys.executable, "-m", "bench.tui_floor"], str(ROOT),
             "import bench.tui_floor, textual.app; from textual.widgets import DataTable, Footer, Header")


def trees(others: list[str]) -> list[Tree]:
    portside = ROOT / ".venv" / "bin" / "portside"
    own = [str(portside)] if portside.exists() else [sys.executable, "-m", "app.cli"]
    out = [Tree("this tree", own, str(ROOT))]
    for d in others:
        path = Path(d).resolve()
        if not (path / "app" / "cli.py").exists():
            raise SystemExit(f"--app {d}: no app/cli.py there")
        out.append(Tree(path.name, [sys.executable, "-m", "app.cli"], str(path)))
    for t in out:
        # An installed portside has its bytecode (pip compiles it; a first run writes it), but a checkout run
        # with PYTHONDONTWRITEBYTECODE set, as here, would compile app/ and engine/ at every start: ~50 ms of
        # first paint that no user waits for.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "app", "engine", *(["bench"] if t.pythonpath ==
                        str(ROOT) else [])], cwd=t.pythonpath, check=True, stdout=subprocess.DEVNULL)
    return out


class Bench:
    def __init__(self, host: str, image: str, tag: str) -> None:
        import docker

        self.host, self.image, self.tag = host, image, tag
        self.api = docker.APIClient(base_url=host, version="auto", timeout=120)
        self.made: list[str] = []
        self.xdg = Path(tempfile.mkdtemp(prefix="portside-test-bench-tui-"))
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "DOCKER_HOST")}
        self.env.update(TERM="xterm-256color", XDG_CONFIG_HOME=str(self.xdg))

    def create(self, name: str, cmd: list[str]) -> str:
        hc = self.api.create_host_config(network_mode="none")
        cid: str = self.api.create_container(self.image, cmd, name=name, host_config=hc)["Id"]
        self.made.append(cid)
        return cid

    def launch(self, tree: Tree) -> PtyApp:
        return PtyApp([*tree.argv, "-H", self.host], dict(self.env, PYTHONPATH=tree.pythonpath), str(self.xdg))

    def painted(self, app: PtyApp, timeout: float = 60) -> float:
        """Seconds from start until a row of this run's containers is on screen (the list arrives in one go)."""
        got = app.wait_for(f"pstbench-{self.tag}-".encode(), 0, timeout)
        if got is None:
            raise RuntimeError(f"the container list never showed:\n{app.screen_tail()}")
        return got[0] - app.started

    def first_paint(self, tree: Tree) -> tuple[float, float, int]:
        """Seconds from start to the first row on screen and to the list as the user gets it (every row that
        fits: the arrival of the last of them), and how many rows that is. Which rows fit is read from what the
        app drew once it has settled, so a list painted in parts is timed at its last part."""
        app = self.launch(tree)
        try:
            first = self.painted(app)
            app.wait_for(b"\x00never", 0, 1.5)  # settle: whatever the app draws of the list is out by then
            with app._cond:
                shown = sorted(set(re.findall(rf"pstbench-{self.tag}-(\d{{3}})".encode(), bytes(app.out))))
            got = app.wait_for(f"pstbench-{self.tag}-".encode() + shown[-1], 0, 1)
            assert got is not None  # it was in the output already
            return first, got[0] - app.started, len(shown)
        finally:
            app.close()

    def imports(self, tree: Tree) -> tuple[float, float]:
        """Seconds to start Python and exit, and to start it, import Textual and the modules of the first screen
        and exit: the part of first paint that comes before any of the app's own work."""
        env = dict(self.env, PYTHONPATH=tree.pythonpath)
        out = []
        for code in ("pass", tree.imports):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, cwd=tree.pythonpath, check=True)
            out.append(time.perf_counter() - t)
        return out[0], out[1]

    def cpu(self, tree: Tree, seconds: float) -> tuple[float, bool]:
        """% of one core used by the app over `seconds`, the Stats tab open (and whether it was seen open)."""
        app = self.launch(tree)
        try:
            self.painted(app)
            time.sleep(1)
            # the list has the focus: Tab goes to the tab bar, Right opens Stats
            start, _ = app.send(b"\t")
            time.sleep(0.3)
            app.send(b"\x1b[C")
            shown = app.wait_for(b"Block write", start, 10) is not None
            time.sleep(3)  # let the stats streams start
            t0, c0 = time.perf_counter(), app.cpu_seconds()
            time.sleep(seconds)
            t1, c1 = time.perf_counter(), app.cpu_seconds()
            return (c1 - c0) / (t1 - t0) * 100, shown
        finally:
            app.close()

    def flood_counter(self, cid: str) -> tuple[float, int]:
        """(now, bursts the flood has printed), from the counter it keeps in /tmp/n (reading its log's tail would
        cost an engine more as the log grows)."""
        for _ in range(20):  # the shell truncates the file before it writes: it can be caught empty
            t = time.perf_counter()
            ex = self.api.exec_create(cid, ["cat", "/tmp/n"])
            out = self.api.exec_start(ex["Id"]).decode(errors="replace").strip()
            if out.isdigit():
                return t, int(out)
            time.sleep(0.01)
        raise RuntimeError(f"the flood's counter does not look like one: {out!r}")

    def key_response(self, tree: Tree, cid: str, name: str, presses: int,
                     warmup: float) -> tuple[list[float], int, float, float]:
        """Milliseconds per key press (both directions of follow), timeouts, the flood's rate in bursts a second
        meanwhile, and the app's CPU (% of a core) meanwhile."""
        app = self.launch(tree)
        try:
            self.painted(app)
            start, _ = app.send(b"/")
            if app.wait_for(b"filter containers", start, 10) is None:
                raise RuntimeError(f"`/` did not open the filter box:\n{app.screen_tail()}")
            time.sleep(0.2)
            app.send(name.encode())
            time.sleep(0.3)
            app.send(b"\r")
            if app.wait_for(b"pstbench flood ", start, 30) is None:
                raise RuntimeError(f"the flood's lines never showed:\n{app.screen_tail()}")
            # from the list, Tab goes to the tab bar, then into the log view: try until `f` toggles follow
            for _ in range(4):
                app.send(b"\t")
                time.sleep(0.3)
                off, _ = app.send(b"f")
                if app.wait_for(FOLLOW_OFF, off, 10) is not None:
                    break
            else:
                raise RuntimeError(f"`f` never reached the log view:\n{app.screen_tail()}")
            on, _ = app.send(b"f")
            if app.wait_for(FOLLOW_ON, on, 10) is None:
                raise RuntimeError(f"`f` did not turn follow back on:\n{app.screen_tail()}")
            time.sleep(warmup)  # lines pile up in the view
            t0, n0 = self.flood_counter(cid)
            c0 = app.cpu_seconds()
            times: list[float] = []
            timeouts = 0
            for i in range(presses):
                needle = FOLLOW_OFF if i % 2 == 0 else FOLLOW_ON
                time.sleep(random.uniform(0.2, 0.4))
                offset, sent = app.send(b"f")
                got = app.wait_for(needle, offset, 10)
                if got is None:
                    timeouts += 1
                    continue
                times.append((got[0] - sent) * 1000)
            c1 = app.cpu_seconds()
            t1, n1 = self.flood_counter(cid)
            return times, timeouts, (n1 - n0) / (t1 - t0), (c1 - c0) / (t1 - t0) * 100
        finally:
            app.close()

    def navigate(self, tree: Tree, presses: int) -> tuple[list[float], list[float], int]:
        """Milliseconds from a key to the next frame: Down through the list, and Right through a container's
        tabs; and how many keys got no frame within 5 s."""
        app = self.launch(tree)
        try:
            self.painted(app)
            time.sleep(1.5)  # the hidden tabs are built once the first frame is out
            moves: list[float] = []
            tabs: list[float] = []
            missed = 0
            for _ in range(presses):
                time.sleep(random.uniform(0.1, 0.2))
                offset, sent = app.send(b"\x1b[B")
                got = app.wait_output(offset, 5)
                if got is None:
                    missed += 1
                else:
                    moves.append((got - sent) * 1000)
            app.send(b"\t")  # from the list to the tab bar
            time.sleep(0.5)
            for _ in range(presses):
                time.sleep(random.uniform(0.15, 0.3))
                offset, sent = app.send(b"\x1b[C")  # Right: the next tab (it wraps round)
                got = app.wait_output(offset, 5)
                if got is None:
                    missed += 1
                else:
                    tabs.append((got - sent) * 1000)
            return moves, tabs, missed
        finally:
            app.close()

    def cleanup(self) -> None:
        for cid in self.made:
            with contextlib.suppress(Exception):
                self.api.remove_container(cid, force=True)
        shutil.rmtree(self.xdg, ignore_errors=True)


def _ms(samples: list[float]) -> str:
    return ", ".join(f"{x * 1000:.0f}" for x in samples)


def run(host: str, image: str, args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:6]
    b = Bench(host, image, tag)
    apps = trees(args.app)
    only = set(args.only.split(","))
    try:
        for i in range(args.containers):
            b.create(f"pstbench-{tag}-{i:03d}", ["sleep", "3600"])
        # every measurement interleaves the trees run by run: the machine's load changes affect them alike
        if "paint" in only:
            painted = [*apps, FLOOR]
            paints: dict[str, list[tuple[float, float, int]]] = {t.label: [] for t in painted}
            imports: dict[str, list[tuple[float, float]]] = {t.label: [] for t in painted}
            for _ in range(args.runs):
                for t in painted:
                    paints[t.label].append(b.first_paint(t))
                    imports[t.label].append(b.imports(t))
            for t in painted:
                firsts = [p[0] for p in paints[t.label]]
                fulls = [p[1] for p in paints[t.label]]
                rows = min(p[2] for p in paints[t.label])
                python = statistics.median(i[0] for i in imports[t.label])
                imported = statistics.median(i[1] for i in imports[t.label])
                print(f"[{t.label}] first paint with {args.containers} containers (from the process start): the "
                      f"{rows} rows that fit on screen at median {statistics.median(fulls) * 1000:.0f} ms (runs: "
                      f"{_ms(fulls)}; target < 300 ms), the first row at {statistics.median(firsts) * 1000:.0f} ms; "
                      f"in the same runs Python's start and exit take {python * 1000:.0f} ms, with the imports of "
                      f"Textual and the first screen's modules {imported * 1000:.0f} ms", flush=True)
            print(f"  ({FLOOR.label}: Header, one DataTable of the same containers and Footer, fetched as the TUI "
                  "does; no portside code: the floor of the figures above on this machine now)", flush=True)
        if "cpu" in only:
            for cid in b.made[:20]:
                b.api.start(cid)
            cpus: dict[str, list[tuple[float, bool]]] = {t.label: [] for t in apps}
            for _ in range(args.runs):
                for t in apps:
                    cpus[t.label].append(b.cpu(t, args.cpu_seconds))
            for t in apps:
                cs = cpus[t.label]
                note = "" if all(shown for _, shown in cs) else " (the Stats tab was not seen open in every run)"
                print(f"[{t.label}] CPU, 20 running, Stats tab open: median "
                      f"{statistics.median(c for c, _ in cs):.2f}% of a core "
                      f"(runs: {', '.join(f'{c:.2f}' for c, _ in cs)}; target < 2%){note}", flush=True)
            for cid in b.made[:20]:
                b.api.stop(cid, timeout=0)
        if "nav" in only:
            navs: dict[str, list[tuple[list[float], list[float], int]]] = {t.label: [] for t in apps}
            for _ in range(args.runs):
                for t in apps:
                    navs[t.label].append(b.navigate(t, args.presses))
            for t in apps:
                for what, i in (("Down through the list", 0), ("Right through a container's tabs", 1)):
                    xs: list[float] = sorted(x for r in navs[t.label] for x in r[i])  # type: ignore[attr-defined]
                    missed = sum(r[2] for r in navs[t.label])
                    figures = (f"median {statistics.median(xs):.0f} ms, p95 {xs[int(len(xs) * 0.95)]:.0f} ms"
                               if xs else "no frame")
                    print(f"[{t.label}] key to screen, {what} ({args.containers} containers): {figures} over "
                          f"{len(xs)} keys{f', {missed} without a frame in 5 s' if missed else ''} "
                          "(target median < 50 ms)", flush=True)
        if "keys" in only:
            burst = max(1, round(args.flood_rate / 10 * 1.05))  # the loop itself takes ~5% of each period
            name = f"pstbench-{tag}-flood"
            flood = b.create(name, ["sh", "-c", f'i=0; while :; do yes "{FLOOD_LINE}" | head -n {burst}; '
                                                f"i=$((i+1)); echo $i > /tmp/n; usleep 100000; done"])
            b.api.start(flood)
            time.sleep(1)
            keys: dict[str, list[tuple[list[float], int, float, float]]] = {t.label: [] for t in apps}
            for _ in range(args.runs):
                for t in apps:
                    keys[t.label].append(b.key_response(t, flood, name, args.presses, args.warmup))
            for t in apps:
                runs = keys[t.label]
                times = [x for r in runs for x in r[0]]
                timeouts = sum(r[1] for r in runs)
                rate = statistics.median(r[2] for r in runs) * burst
                cpu = statistics.median(r[3] for r in runs)
                med = (f"median {statistics.median(times):.0f} ms, p90 {sorted(times)[int(len(times) * 0.9)]:.0f} "
                       f"ms, max {max(times):.0f} ms" if times else "no answer")
                print(f"[{t.label}] key response under a log flood of {rate:,.0f} lines/s: {med} over "
                      f"{len(times)} presses in {len(runs)} app runs (medians per run: "
                      f"{', '.join(f'{statistics.median(r[0]):.0f}' for r in runs if r[0])})"
                      f"{f', {timeouts} unanswered in 10 s' if timeouts else ''}; the app's CPU meanwhile "
                      f"{cpu:.0f}% of a core (target < 100 ms)", flush=True)
    finally:
        b.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-H", "--host", default=os.environ.get("DOCKER_HOST"),
                    help="Engine API to use (default: a portside daemon on temp roots, started here)")
    ap.add_argument("--image", help="a busybox image the engine has (default: the test bed's, pulled)")
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")),
                    help="app starts for first paint and CPU (medians are printed)")
    ap.add_argument("--cpu-seconds", type=float, default=10.0)
    ap.add_argument("--presses", type=int, default=20, help="key presses in each app run")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of flood in the view before the presses")
    ap.add_argument("--flood-rate", type=int, default=10_000, help="lines per second the container aims at")
    ap.add_argument("--app", action="append", default=[], metavar="DIR",
                    help="also measure the app/ of another checkout (e.g. an older commit), interleaved")
    ap.add_argument("--only", default="paint,nav,cpu,keys", help="which measurements (comma-separated)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    started: list[Any] = []
    try:
        image = args.image
        host = args.host
        if host is None or image is None:
            from tests.testbed import images
            from tests.testbed.registry import Registry, fill

            reg_dir = Path(tempfile.mkdtemp(prefix="portside-test-bench-tui-reg-"))
            reg = Registry(reg_dir)
            started.append(lambda: (reg.stop(), shutil.rmtree(reg_dir, ignore_errors=True)))
            reg.start()
            fill(reg, images.ensure_built().layouts)
            if host is None:
                from tests.api.conftest import new_daemon, remove_daemon_dirs

                d = new_daemon(["--insecure-registry", reg.host])
                started.insert(0, lambda: (d.stop(), d.cleanup_containers(), d.destroy_network_state(),
                                           remove_daemon_dirs(d)))
                d.start()
                host = d.host
            import docker

            repo = f"{reg.host}/testbed/busybox"
            docker.APIClient(base_url=host, version="auto", timeout=120).pull(repo, tag="latest")
            image = f"{repo}:latest"
        print(f"TUI bench: `portside -H {host}` on a {COLS}x{ROWS} pty, image {image}; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
        run(host, image, args)
        print(f"load average at the end {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for stop in started:
            with contextlib.suppress(Exception):
                stop()


if __name__ == "__main__":
    main()
