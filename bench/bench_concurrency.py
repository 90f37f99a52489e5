"""Concurrency through the Engine API (unix socket, loopback only), bounded in count and time.

1. `--parallel` (50) containers created and started at once, one thread each, then removed at once: wall time,
   per-container latency, errors, and nothing left in the list.
2. `--clients` (200) concurrent API clients for `--seconds` (60): inspect, list (`GET /containers/json`, whose
   p50/p99 latency is reported), logs, stats streams and event streams, while one more thread runs container
   life cycles (create, start, stop, rm). Reported: requests and errors per kind (a request that takes over 30 s
   counts as an error: no deadlock), and whether every event stream saw the churn's events in the same order
   (each container's create < start < die < destroy, and one order across streams: no reordering).

    bench/run concurrency
    python -m bench.bench_concurrency --parallel 50 --clients 200 --seconds 60
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Table
from bench.engine_state import Bench, bench_daemon, census, leak_table, settle

TIMEOUT = 30.0  # a request slower than this is reported as an error (what a deadlock would look like)


class Client:
    """One keep-alive connection to the daemon's socket."""

    def __init__(self, sock: str) -> None:
        from tests.api.conftest import UnixHTTPConnection

        self.sock = sock
        self.conn = UnixHTTPConnection(sock, timeout=TIMEOUT)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            return r.status, r.read()
        except Exception:
            self.close()
            self.conn = type(self.conn)(self.sock, timeout=TIMEOUT)
            raise

    def stream(self, path: str, on_line: Callable[[bytes], bool]) -> int:
        """Reads a streaming response line by line until `on_line` says stop or the server ends it."""
        from tests.api.conftest import UnixHTTPConnection

        conn = UnixHTTPConnection(self.sock, timeout=TIMEOUT)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            if r.status != 200:
                r.read()
                return r.status
            while line := r.readline():
                if not on_line(line):
                    break
            return 200
        finally:
            conn.close()

    def close(self) -> None:
        self.conn.close()


def _p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def parallel_start_remove(b: Bench, n: int) -> None:
    sock = str(b.daemon.sock)
    errors: list[str] = []

    def start(i: int) -> tuple[str, float]:
        c = Client(sock)
        t = time.perf_counter()
        try:
            code, body = c.request("POST", f"/containers/create?name=pst-conc-{i}",
                                   {"Image": b.busybox, "Cmd": ["sleep", "600"], "HostConfig": {}})
            if code != 201:
                errors.append(f"create {code} {body[:100]!r}")
                return "", 0.0
            cid = json.loads(body)["Id"]
            code, body = c.request("POST", f"/containers/{cid}/start")
            if code != 204:
                errors.append(f"start {code} {body[:100]!r}")
            return cid, time.perf_counter() - t
        finally:
            c.close()

    def remove(cid: str) -> float:
        c = Client(sock)
        t = time.perf_counter()
        try:
            code, body = c.request("DELETE", f"/containers/{cid}?force=1&v=1")
            if code != 204:
                errors.append(f"remove {code} {body[:100]!r}")
            return time.perf_counter() - t
        finally:
            c.close()

    with ThreadPoolExecutor(n) as pool:
        t0 = time.perf_counter()
        started = list(pool.map(start, range(n)))
        t_start = time.perf_counter() - t0
        running = json.loads(Client(sock).request("GET", "/containers/json")[1])
        t0 = time.perf_counter()
        removed = list(pool.map(remove, [cid for cid, _ in started if cid]))
        t_remove = time.perf_counter() - t0
    left = json.loads(Client(sock).request("GET", "/containers/json?all=1")[1])
    t = Table(f"{n} containers started, then removed, in parallel through the API", "ms")
    t.add_value("all started (wall)", t_start * 1000, f"{len(running)} running after")
    t.add("create+start, per container", [x * 1000 for _, x in started if x])
    t.add_value("create+start p99", _p([x * 1000 for _, x in started if x], 99))
    t.add_value("all removed (wall)", t_remove * 1000, f"{len(left)} left after")
    t.add("remove -f, per container", [x * 1000 for x in removed])
    t.print()
    print(f"  errors: {len(errors)}" + (f" - {errors[:3]}" if errors else ""), flush=True)


def clients_for_a_while(b: Bench, clients: int, seconds: float) -> None:
    sock = str(b.daemon.sock)
    c0 = Client(sock)
    targets = []
    for i in range(4):  # what inspect, logs and stats look at: containers that print a line a second
        _code, body = c0.request("POST", f"/containers/create?name=pst-conc-target-{i}",
                                {"Image": b.busybox, "Cmd": ["sh", "-c", "while true; do echo tick; sleep 1; done"]})
        cid = json.loads(body)["Id"]
        c0.request("POST", f"/containers/{cid}/start")
        targets.append(cid)
    since = time.time()
    deadline = time.monotonic() + seconds
    until = since + seconds
    counts: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    error_samples: list[str] = []
    list_latency: list[float] = []
    event_streams: list[list[tuple[str, str]]] = []
    lock = threading.Lock()
    churned: list[str] = []

    def note_error(kind: str, what: str) -> None:
        with lock:
            errors[kind] += 1
            if len(error_samples) < 5:
                error_samples.append(f"{kind}: {what}")

    def loop(kind: str, path: Callable[[int], str], i: int) -> None:
        c = Client(sock)
        n = 0
        try:
            while time.monotonic() < deadline:
                t = time.perf_counter()
                try:
                    code, body = c.request("GET", path(n))
                except Exception as e:  # a timeout included
                    note_error(kind, repr(e))
                    continue
                dt = time.perf_counter() - t
                n += 1
                if code != 200:
                    note_error(kind, f"{code} {body[:100]!r}")
                with lock:
                    counts[kind] += 1
                    if kind == "list":
                        list_latency.append(dt)
        finally:
            c.close()

    def stats(i: int) -> None:
        cid = targets[i % len(targets)]

        def on_line(line: bytes) -> bool:
            with lock:
                counts["stats sample"] += 1
            return time.monotonic() < deadline

        try:
            code = Client(sock).stream(f"/containers/{cid}/stats?stream=1", on_line)
            if code != 200:
                note_error("stats", str(code))
        except Exception as e:
            note_error("stats", repr(e))

    def events(i: int) -> None:
        seen: list[tuple[str, str]] = []

        def on_line(line: bytes) -> bool:
            ev = json.loads(line)
            name = (ev.get("Actor") or {}).get("Attributes", {}).get("name", "")
            if ev.get("Type") == "container" and name.startswith("pst-conc-churn"):
                seen.append((name, ev.get("Action", "")))
            with lock:
                counts["event"] += 1
            return True

        q = urllib.parse.urlencode({"since": f"{since:.9f}", "until": f"{until:.9f}"})
        try:
            code = Client(sock).stream(f"/events?{q}", on_line)
            if code != 200:
                note_error("events", str(code))
        except Exception as e:
            note_error("events", repr(e))
        with lock:
            event_streams.append(seen)

    def churn() -> None:
        c = Client(sock)
        i = 0
        try:
            while time.monotonic() < deadline - 5:  # the last life cycle ends well before the streams do
                name = f"pst-conc-churn-{i}"
                i += 1
                try:
                    code, body = c.request("POST", f"/containers/create?name={name}",
                                           {"Image": b.busybox, "Cmd": ["sleep", "600"]})
                    cid = json.loads(body)["Id"]
                    c.request("POST", f"/containers/{cid}/start")
                    c.request("POST", f"/containers/{cid}/stop?t=0")
                    code, body = c.request("DELETE", f"/containers/{cid}?force=1")
                    if code != 204:
                        note_error("churn", f"{code} {body[:100]!r}")
                    churned.append(name)
                except Exception as e:
                    note_error("churn", repr(e))
        finally:
            c.close()

    # the mix: a fifth each of inspect, list, logs, stats streams and event streams
    def inspector(i: int) -> None:
        loop("inspect", lambda _n: f"/containers/{targets[i % 4]}/json", i)

    def lister(i: int) -> None:
        loop("list", lambda _n: "/containers/json", i)

    def logger(i: int) -> None:
        loop("logs", lambda _n: f"/containers/{targets[i % 4]}/logs?stdout=1&tail=5", i)

    kinds: list[Callable[[int], None]] = []
    for i in range(clients):
        r = i % 10
        if r < 2:
            kinds.append(inspector)
        elif r < 4:
            kinds.append(lister)
        elif r < 6:
            kinds.append(logger)
        elif r < 8:
            kinds.append(stats)
        else:
            kinds.append(events)
    threads = [threading.Thread(target=fn, args=(i,), daemon=True) for i, fn in enumerate(kinds)]
    threads.append(threading.Thread(target=churn, daemon=True))
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + 2 * TIMEOUT)
    hung = sum(th.is_alive() for th in threads)
    t_ping = time.perf_counter()
    ping = Client(sock).request("GET", "/_ping")[0]
    ping_ms = (time.perf_counter() - t_ping) * 1000
    for cid in targets:
        c0.request("DELETE", f"/containers/{cid}?force=1")
    c0.close()
    # ordering: each stream saw each churned container's events in life-cycle order, and all streams one order
    order = {"create": 0, "start": 1, "die": 2, "destroy": 3}
    bad_order = 0
    for seen in event_streams:
        last: dict[str, int] = {}
        for name, action in seen:
            if action in order:
                if order[action] < last.get(name, -1):
                    bad_order += 1
                last[name] = order[action]
    reference = event_streams[0] if event_streams else []
    differing = sum(1 for s in event_streams if s != reference)
    t = Table(f"{clients} concurrent API clients for {seconds:.0f} s (+1 thread of container life cycles)", "ms")
    t.add_value("GET /containers/json p50", _p([x * 1000 for x in list_latency], 50))
    t.add_value("GET /containers/json p99", _p([x * 1000 for x in list_latency], 99))
    t.add_value("GET /containers/json max", max(list_latency) * 1000 if list_latency else float("nan"))
    t.add_value("GET /_ping after the run", ping_ms, f"status {ping}")
    t.print()
    print("  requests: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)
    print(f"  container life cycles during the run: {len(churned)}; event streams: {len(event_streams)}, each saw "
          f"{len(reference)} churn events; streams differing from the first: {differing}; out-of-order: "
          f"{bad_order}", flush=True)
    print(f"  errors: {sum(errors.values())}" + (f" {dict(errors)} e.g. {error_samples}" if errors else "")
          + f"; threads still running after the deadline: {hung}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", type=int, default=int(os.environ.get("BENCH_PARALLEL", "50")))
    ap.add_argument("--clients", type=int, default=int(os.environ.get("BENCH_CLIENTS", "200")))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "60")))
    args = ap.parse_args()
    with bench_daemon() as b:
        b.docker("run", "--rm", b.busybox, "true")  # warm-up: what the first container makes lazily exists now
        settle(b)
        before = census(b)
        parallel_start_remove(b, args.parallel)
        clients_for_a_while(b, args.clients, args.seconds)
        settle(b, timeout=30)
        table, leaks = leak_table(before, census(b))
        print("== what the concurrency run left", flush=True)
        print(table, flush=True)
        print(f"  rows with something left over: {leaks}", flush=True)


if __name__ == "__main__":
    main()
