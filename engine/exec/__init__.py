"""The runtime: namespaces, mounts, cgroups, capabilities, seccomp, and the per-container supervisor.

Reference (moved from docs/architecture.md): Runtime API

`engine/exec/` (package exports nothing heavy; import from the modules). The daemon uses `spec.build` and
`Runtime`; everything below is async unless marked sync. Errors are `engine.errors` classes with Docker's texts.

```python
from engine.exec import spec
from engine.exec.runtime import Runtime, ContainerState, ContainerStartError, Stream

oci = spec.build(config, host_config, image_config,   # Engine API Config / HostConfig dicts, the image's config
                 rootfs=Path,                         # the mounted rootfs (users resolve from ITS /etc/passwd, group)
                 netns=None | "host" | "/path/netns", # None: fresh netns with only lo up
                 extra_mounts=[oci mount dicts],      # /etc/hosts, /etc/resolv.conf, /etc/hostname from engine/net
                 volume_path=callable(name) -> str)   # named volumes of Binds/Mounts
# -> dict: write it as <bundle>/config.json beside <bundle>/rootfs. Raises InvalidArgument (unknown user, bad
#    capability, Memory < 6MB, malformed int fields, non-namespaced sysctl, "No command specified", ...).
spec.parse_memory("512m") -> int                       # Docker's RAMInBytes; InvalidArgument "invalid size: '12x'"
spec.resources_from_host_config(update_body) -> OCI linux.resources

rt = Runtime(exec_root: Path, cgroup_parent: str = "portside",  # tests: "portside-test-<random>"
             fork_supervisors=True,   # fork a new supervisor from a live one of this exec-root (fast, shares memory)
             zygote=False)            # the daemon: True - keeps a container-less supervisor to fork from, ended by
                                      #   rt.close() or the engine's exit (tests that never close() leave it False)
rt.close()                          # sync; ends the zygote; containers keep running
pid = await rt.create(id, bundle, log_path=Path|None, log_max_size=None|int, log_max_file=1,  # None: no log
                      tty=False, open_stdin=False, stdin_once=False, spec=None)   # spec: config.json's dict
    # starts the supervisor; the init is fully set up (mounts, user, caps, seccomp, executable found) and waits.
    # May already raise ContainerStartError (exit_code 127/126) - e.g. executable file not found in $PATH.
ok = await rt.prepare(id, bundle, log_path=..., tty=..., ...)   # optional, before the spec exists: supervisor
                                    #   and init start (cgroup joined) while the caller mounts and networks;
                                    #   create() with the same id/arguments finishes; False: create does it all
await rt.discard(id)                # gives a prepared container up (delete() does too); nothing left
pid = await rt.start(id)            # execve; ContainerStartError(.exit_code 126 "permission denied" / 127)
rt.state(id) -> ContainerState      # sync; status created|running|paused|exited, pid, exit_code, oom_killed,
                                    #   started_at, finished_at (RFC 3339), error.  NotFound if unknown.
rt.list() -> [ids]                  # sync; containers in the exec-root (re-adoption after an engine restart)
await rt.wait(id) -> ContainerState # returns at exit (at once if exited); works for re-adopted containers
async for st in rt.exits(): ...     # every exit: containers started here + those found in the exec-root
rt.watch(id)                        # sync; add one container to exits() (start() does it)
await rt.kill(id, signal=9, all=False)   # Conflict "Cannot kill container: ..." when not running
await rt.stop(id, signal=15, timeout=10) -> ContainerState   # signal, then SIGKILL to the whole cgroup
await rt.pause(id) / rt.resume(id)       # freezer (v1) / cgroup.freeze (v2)
await rt.update(id, {"Memory": ..., "CpuShares": ..., "PidsLimit": ..., ...})
await rt.stats(id) -> {"memory_stats", "cpu_stats", "pids_stats", "blkio_stats", "id"}  # Docker's shape; the
                                    #   caller adds read/preread, precpu_stats (previous sample), networks, name
await rt.top(id, "-ef") -> {"Titles": [...], "Processes": [[...]]}
await rt.resize(id, height, width)
s = await rt.attach(id, stdin=False, stdout=True, stderr=True) -> Stream   # output from now on
proc = rt.exec_process(id, args, env=None, user="", cwd="", tty=False, privileged=False)  # sync; OCI process
s = await rt.exec(id, proc, stdin=False) -> Stream   # ContainerStartError 126/127 like start; s.pid
await rt.delete(id, force=False)    # Conflict if running and not force; removes cgroup and exec-root dir
# Stream: await s.read() -> (1|2, bytes) or None at the end (then s.exit_code: exec's code, or the container's
#   for attach); await s.write(b), s.close_stdin(), s.resize(h, w), s.close()
```

How it is built: `create` writes `<exec_root>/<id>/params` and starts `python -S -E` on `supervisor.py`, which
forks away into its own session (it survives the engine), makes itself a subreaper and forks a helper, which
makes the cgroup (`<cgroup_parent>/<id>` in every v1 hierarchy, or v2), `unshare(CLONE_NEWPID)` so its children
are born in the container's pid namespace, forks the init, hands the supervisor the init's pid and descriptors
(sync socket, stdio, pty master) and exits, the init becoming the supervisor's child (the supervisor joins the
init's pid namespace before its first exec). The init (`container.py`: cgroup, namespaces, mounts, pivot_root,
masks, pty from the container's devpts, rlimits, seccomp, capabilities, user, executable look-up) waits on a
socketpair for start. Files in the exec-root:
`params` and `spec` (marshal; the supervisor loads only the small `params`), `state.json` (pid + start time of
init and supervisor), `exit.json` (written atomically once, after the log is
drained; exec-root files are renamed into place but not fsynced: they describe live processes only),
`seccomp.bpf`, `ctl.sock` (start, kill, wait, attach, resize, exec; frames in `protocol.py`; when
`<exec_root>/<id>/ctl.sock` is longer than AF_UNIX's 108 bytes, both sides bind/connect through
`/proc/self/fd/<dir fd>/ctl.sock`, so any exec-root works), `supervisor.log`. The
supervisor exits after recording the exit; `delete` removes the directory. `Init: true` keeps a reaping,
signal-forwarding PID 1 in front of the command (annotation `io.portside.init`).
New supervisors are forked (op `spawn` on a ctl.sock: double fork, own session, from the host pid namespace) from
the Runtime's zygote (which forks at once for each connection, the child reading the request) or any live
supervisor, falling back to a new interpreter: no start-up or import cost, and
pages shared copy-on-write (`gc.freeze()`). What an idle supervisor costs is the pages it (or its parent, after
the fork) wrote to: on CPython 3.11 every object touched has its refcount written, and a function's first calls
write to its code object. So the zygote imports no `threading` (its at-fork hook alone copied ~0.4 MiB in every
child; seccomp.py takes `_thread`'s lock), skips the ctypes `setns` calls around its fork (it is in the host pid
namespace already), and, once it has said ready, rehearses a supervisor's everyday code ten times on a stand-in
container (`rehearse`: a forked child that exits once started, its output through a pipe into a log in the
scratch dir `<exec_root>/.rehearsal-<pid>`, which has no `params` so it is never taken for a container; a killed
zygote's is removed by the next), then fills its allocator's half-used pools (`settle_heap`: a supervisor's new
objects go to pages of their own, not into holes beside the zygote's objects) before `gc.freeze()`. The
supervisor's own paths avoid Python-level library code (socket.py's class, io's files, contextlib, importlib
through a function's `from ... import`, ctypes argtypes), and the set-up runs in the helper, whose copied pages
go with it. What the zygote imports is resident, shared, in every supervisor forked from it, each counting a
1/(N+1) share of it in its PSS: so the zygote's modules (supervisor, container and what they import) leave out
typing (annotations only, under `TYPE_CHECKING = False`), contextlib with the collections and functools it
brings (`lean.suppress`, `protocol.socket_path` is a class), socket.py and signal.py's enums (`_socket`,
`_signal`), pathlib, json and platform (`os.uname()`; seccomp imports json where the engine side parses a
profile): 2.6 MiB less of its heap, guarded by tests/exec/test_zygote_imports.py. An idle supervisor is
~1.15 MiB PSS with 20 idle (1.4 before that diet, 1.9 before the settled heap and set-up helper; `BENCH_RUNTIME=
memory bench/run runtime`), 0.88 MiB of it private: pymalloc arenas ~0.5 (refcounts written on the zygote's
objects it touches, and its own objects), libpython's data ~0.2 (static objects, runtime state: 25 of
`_PyRuntime`'s 41 pages), malloc heap ~0.17 (code objects' warm-up counters, dict tables, reused free chunks);
the rest is its share of ~3.2 MiB it maps with the zygote and its siblings and of the text every Python process
maps. A forked child that only blocks in a read costs ~0.16 MiB private. Tried and measured without a gain
on top of the diet (interleaved A/B, 20 idle): `gc.disable()` after the fork, `malloc_trim(0)` in the zygote
and the supervisor, re-executing the supervisor's modules after the imports (to pack its objects together:
worse, as settling the heap before the supervisor's module loads), `-OO` for the zygote, marshal version 0 for
params and requests (no interned keys), rehearsing the accept path. Under 1 MiB PSS would take a supervisor
that runs far less Python after the fork (or CPython 3.12's immortal objects). Such a supervisor's
`/proc/PID/cmdline` is its parent's (use `state.json`). A staged create (`prepare`, zygote only: op `spawn` with
`staged`) answers `{"prepared": "P"}` once the init is forked; the init joins its cgroup (on cgroup v2 the
kernel's RCU grace period, 10-20 ms, overlaps the engine's rootfs and network work; v1 joins by `tasks`, without
it) and waits; `create` writes spec and params and
sends `{"op": "go"}` on the same connection, then the supervisor (its helper) applies the resources and carries on; EOF on that
connection makes it kill the init, remove the cgroup and exit. Seccomp programs are compiled by the engine with
libseccomp, kept in memory per profile and cached as BPF in `<exec_root>/.seccomp/<sha256 of the spec>.bpf`;
`create` hands the container's program to its init as `seccomp.bpf`.
Device access (`engine/exec/devicefilter.py`): on v1 the `devices` controller gets `linux.resources.devices`; on
v2, which has no such controller, the rules are folded with v1's semantics (a type-less rule resets to allow-all or
deny-all, later rules add or remove exceptions) and compiled into an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE (one block per exception comparing type, access bits, major, minor; then the default),
loaded with bpf(2) through ctypes (`engine/bpf.py`, shared with the network's socket hook; license "Apache") and attached with BPF_F_ALLOW_MULTI to the container's cgroup2
directory by `Cgroup.set_resources` (a new program is attached before the old ones are detached; the kernel drops
it with the cgroup). Docker's defaults: deny all, mknod of any c/b device, rwm on null, zero, full, random, urandom,
tty, console, ptmx, pts/*; `--device` adds its node's rule, `--device-cgroup-rule` (HostConfig.DeviceCgroupRules, dockerd's
format `c 1:3 rwm`) its own; Privileged allows all. A cgroupsPath inside a hybrid
host's cgroup2 mount (`/sys/fs/cgroup/unified/...`) puts a container in that cgroup2 directory only, so tests run
real containers through the v2 path (device filter included) on hybrid hosts.
"""
