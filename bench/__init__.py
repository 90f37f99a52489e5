"""Benchmarks: one module per benchmark (bench_*.py), each with a `main()`; `bench/run` runs them.

Benchmarks
==========

`bench/run [NAME...]` runs `bench/bench_NAME.py` modules (each has a `main()` run as `python -m bench.bench_NAME`).
`bench/common.py` holds the shared pieces: `timed()`, `peer()` to find installed peers (runc, crun, podman,
dockerd, skopeo), and `Table`, which prints medians with ratios against a baseline row. Benchmarks print figures;
they never assert them.

`bench/run tui` (issue 7) drives the real `portside` command on a 160x50 pty (a reader thread keeps every
output byte with its arrival time): first paint with 200 containers (start of the process to the last of the rows
that fit on screen, the first row's time beside it; alike for a bare Textual app listing the same containers,
`bench/tui_floor.py`, the floor of that figure; Python's start and the imports timed beside; the trees
byte-compiled first, as an install is, since PYTHONDONTWRITEBYTECODE here would compile app/ at every start),
the process's CPU from /proc/PID/stat with 20 running and the Stats tab open, and key response under a flood of
~10,000 lines/s (a busybox loop of 1,050-line bursts every 100 ms; its real rate is measured from its own
counter file, read by exec): time from writing `f` to the pty to the log status line showing the new follow state, which neither
state's text can show before. Without `-H` it starts a portside daemon on temp roots and the test bed's
registry; `-H` takes any Engine API (dockerd included). `--app DIR` measures another checkout's app/ (an older
commit, say) interleaved with this one.
Measured (session 3, 2 shared cores, load 3-5, against 82714ea interleaved): key response under 9.4k lines/s
median 68 ms (per-run medians 68/69/68; 82714ea: 89 ms, the 2.37 s of Pilot's press was mostly the old bench),
the app's CPU meanwhile 8% of a core (82714ea 12%); CPU with 20 running and Stats open 1.2% (10.5%); first paint
with 200 containers was 2.1-2.9 s from the process start then. Session 4 (load ~1, against cd5c707 interleaved,
7 runs each): first paint median 843 ms (657-975; cd5c707: 1831 ms), after the start-up path above; CPU with
20 running and Stats open 1.2% (1.5%); key response under ~9.9k lines/s median 63 ms (54 ms). The app's CPU
during the flood was printed as 47% against 8% for cd5c707 in that run, but lab runs of the same steps measured
44-45% for both trees side by side: the bench's figure for it is not stable and is not a target. Against dockerd the same flood costs the app ~33% of a core: dockerd sends each line
as its own HTTP chunk, so the dechunker and frame loop run per line.
Issue 16 (2 shared cores, load 4.5-5.4, against e81365c interleaved, both byte-compiled): first paint of the 45
rows that fit, 11 runs each, median 458 ms (e81365c 473 ms; the bare Textual app 380 ms); the process's CPU up to
that frame (in-process rusage, 15 runs) median 366 ms (e81365c 396 ms, the bare app 283 ms). The 601 ms measured
before was of a worktree without bytecode (compiling app/ cost ~30 ms of CPU a start) under load. Of the CPU to the
frame, Python's start is ~25 ms, importing Textual ~140 ms, the app's modules and the first screen's widgets
~25 ms and Textual's first frame ~140 ms (CSS, compose and mount of ~35 widgets, styles, layout, the render, of
which the 46 visible DataTable lines ~25 ms); the bare app's frame is ~60 ms, and the right-hand TabbedContent
alone (5 tabs, its switcher) ~30 ms of the difference. Under this load wall time follows CPU time: 300 ms is met
only on an idle machine (the bare app's 230-260 ms is the floor there). Key to screen in the same session: Down
median 9 ms (p95 18), Right through the tabs 18 ms (p95 88), as before.
Session 10 (load ~2.2, against 03a25f8 interleaved, 9 runs each): first paint median 297 ms (03a25f8 434 ms; the
bare Textual app 266 ms), after the start path stopped importing docker-py, requests and http.client (the prefetch
reads its answer off a bare socket; `tests/tui/test_prefetch.py` fails if any of them comes back) and the tabs and
filter box moved to just after the first frame (an empty pane of their size stands in). Later runs the same day,
with the machine slower (Python's start 29-36 ms, not 25; the bare app 273-322 ms): 304-373 ms, 03a25f8 477-552
ms. What is
left above the bare app, by in-process marks: ~14 ms of imports (the app's own modules, ~1 ms each) and ~16 ms of
mounting and drawing the larger first screen (the footer's ~17 keys ~15 ms of it: moving them after the first frame
gained nothing measurable and made the list jump by a row, so they stay).

`bench/run soak` (`--cycles`, default 1000; `--every`) runs container life cycles (`run -d` with a published port,
a named volume and a user network, exec, logs, stop, `rm -f -v`, plus pull/rmi and build/rmi every 10) and
prints a leak table (mounts, netns, this engine's links and bridges, nft rules, cgroups, processes, the daemon's
fds, threads and RSS, files under both roots) and the daemon's RSS along the way; `--tracemalloc` adds the
allocation sites and object types that grew (engine/memtrace.py). `bench/run concurrency`
(`--parallel 50 --clients 200 --seconds 60`) starts and removes containers in parallel through the API, then runs
inspect/list/logs clients and stats and event streams beside a life-cycle churn: errors, hangs, event order
across streams, p50/p99 of `GET /containers/json`, and the same leak table. Both share `bench/engine_state.py`.
Measured (issue 17, 2 shared cores, load 2.2-2.6): soak 1000 cycles in 277 s (container cycle median 242 ms, p99
357 ms), nothing left over in any row, daemon RSS +5.2 MiB (63.0 -> 68.1 MiB; 400 cycles before these fixes: +12.8
MiB). Second pass (same machine, load 2-7): e81365c gave +5.51 MiB (63.5 -> 69.0; still +0.25 MiB per 100 cycles at
the end), this tree +1.39, +2.80 and +3.06 MiB in three runs, flat from cycle ~400 on (the third, once settle()
waited for the trim after the last removal at both ends: 62.0, 64.9, 65.9, 66.3, 66.1, 65.1 MiB at cycles 0-1000 by
200), the census's Go heap row flat (456 -> 352 KiB; +900 KiB over the same run with GOGC=10 alone and no parse
cache). Those three ran with a GOGC=10 re-exec of the daemon, since dropped: with the parse cache alone (the
tree as it is, load ~1.3) +2.66 MiB, 61.5, 64.7, 64.6, 65.9, 65.6, 64.1 MiB at cycles 0-1000 by 200, Go heap +0,
246 s, container cycle median 217 ms, p99 321 ms. Python's heap with its garbage collected first grew +0.07 MiB in 200 cycles (tracemalloc), its top site the
dockerfile package's leak of every parse's Command fields (~460 B a parse). The rest: that package's Go runtime
heap (never collected below 4 MiB: ~22 KiB a build), ~2 MiB of free pages in malloc's heaps that malloc_trim
returns (constant: a trim gave back 2.06 MiB at cycle 30 and 1.78 MiB at cycle 300), CPython's interned-string
table doubling once (a 1.9 MiB dict appears near cycle 300: pathlib interns every container id it sees, and the ids
that come and go fill the table) and pymalloc pages touched for the first time inside its arenas (25 of them, 24.3
MiB in blocks at cycle 30 and at 300). Concurrency, two runs (load 1-3.6, 0.6-1.9): 50 parallel create+start
1.5/1.8 s wall, 0 errors, 40 event streams seeing the same events in the same order, `GET /containers/json` p50
83/114 ms, p99 197/265 ms (431 ms before), nothing left over.

`bench/run pull` starts a private dockerd 20.10 (temp roots, `--iptables=false --bridge=none`) and a portside
daemon, and times `docker pull` on both, portside's ImageService directly, `podman pull` and `skopeo copy`
(download only), interleaved, the image removed between runs; ratios are against dockerd.

`bench/run net` (issue 5): (1) a 256 MiB download (`BENCH_NET_SIZE`) from busybox httpd in a NetworkService
sandbox, fetched by curl straight from the container's address, through portside's published port on 127.0.0.1
(the socket hook: what host clients get), through a second published port of the same server whose hook entry is
taken out (nft DNAT alone: what other hosts and hook-less engines get) and through dockerd 20.10's own userland proxy (`/usr/sbin/docker-proxy`, what dockerd runs for
`-p 127.0.0.1::80` by default; started alone on the same server, so no dockerd and no firewall change) in
2 x BENCH_RUNS rounds whose order rotates; each path is divided by the direct download of its own round and the
median and IQR of those ratios are printed. (2) `docker run -d -p 127.0.0.1:PORT:80 nginx` against a portside
daemon, polling with a raw socket every 2 ms until the first HTTP 200, plus the daemon's own `network` step
(NetworkService.create_sandbox) taken from its debug log. A private dockerd is not run for (2): dockerd 20.10's
bridge driver with iptables on rewrites the host's iptables (DOCKER chains, FORWARD policy) and leaves chains
behind; with `--iptables=false` it still needs its own bridge, containerd and a pull, which this bench skips.
Measured (session 2, busy 2-core machine): portside/direct 0.82-0.86 median of rounds (IQR ~0.75-0.94),
docker-proxy/direct 0.51-0.60 in the same runs; first 200 115-152 ms, of which create_sandbox 28-44 ms. The DNAT
path's remaining cost is per packet: every client ACK is re-routed after output DNAT (fib lookups in `perf`), and
replies are de-NATed and routed again through br_netfilter (loaded on this host, bridge-nf-call-iptables=1). That cost
is what the socket hook (engine/net/sockhook.py) removes for host clients. Session 3, 6 runs of 10-18 rounds on the
busy machine: hook/direct 1.02, 1.08, 1.04, 1.05, 0.98, 0.99 (median of rounds; IQR within ~0.68-1.42: the hook's
socket is the direct one), nft DNAT alone 0.98, 0.86, 0.80, 0.94, 0.77, 0.84, docker-proxy 0.60, 0.58, 0.60, 0.65,
0.64, 0.78 in the same runs. First 200 117 ms with a 20 ms network step (one-thread veth setup; a later run at load
average 9.6 on the 2 cores gave 309/60 ms: compare only figures taken side by side).
Part (2) now runs dockerd 20.10 (its own bridge, docker-proxy, no iptables) interleaved, prints when `docker run`
exited (nginx answers as it does: polling during the command changes nothing for portside and slows docker-proxy,
which holds each early connection) and the daemon's start steps; `BENCH_NET_TREES=DIR,...` adds other checkouts'
engines, interleaved. Session 10 (load 0.4-1.7, 11 runs each): 56-64 ms against 03a25f8's 65-75 ms (dockerd 232-263
ms). The daemon's start went 34.6 -> 24.7-29 ms: the init joins its v1 cgroups through `tasks` (no RCU wait), the
endpoint's inside is set by ioctl (engine/net/ifconf.py), and the runtime's create runs while the endpoint is made
(the netns and /etc files first, `NetworkService.prepare_sandbox`). The docker CLI alone takes 18.7 ms against a stub
engine that answers at once, and the create request ~7 ms (two fsyncs of the record among it), so < 50 ms needs the
start under ~20 ms: the network step (8 ms alone, 16-24 ms beside the rest on two cores) is what is left to cut.
"""
