"""engine/exec against runc (and crun) on one OCI bundle: create+start+wait+remove of `true`, and the supervisor's
memory per idle container with 1, 10 and 20 idle containers (PSS, and USS: its pages no other process shares),
with what the private pages of one of them hold.

Run: `bench/run runtime` (root). The bundle is busybox with Docker's defaults from engine/exec/spec.py (14
capabilities, seccomp, masked paths, fresh network namespace), the same config.json for every runtime.
BENCH_RUNTIME=memory (or run) runs one part only; the memory part still measures conmon and containerd's shim
beside the supervisor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import Table, peer
from engine.exec import cgroups, spec
from engine.exec.runtime import Runtime

RUNS = 20
IDLE = 20
IDLE_COUNTS = (1, 10, IDLE)
PARTS = os.environ.get("BENCH_RUNTIME", "run,memory").split(",")  # which parts to run


def make_rootfs(root: Path) -> None:
    """A busybox root filesystem from the host's busybox-static, as the test bed makes one."""
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")


def make_bundle(base: Path, cmd: list[str], cgroup_parent: str) -> Path:
    bundle = base / "bundle"
    make_rootfs(bundle / "rootfs")
    oci = spec.build({"Cmd": cmd, "Hostname": "bench"}, {}, {}, rootfs=bundle / "rootfs")
    (bundle / "config.json").write_text(json.dumps(oci))
    return bundle


def peer_bundle(bundle: Path, runtime: str, cgroup_parent: str) -> Path:
    """The same config for runc/crun, with the cgroup under our bench parent; shares the rootfs."""
    other = bundle.parent / f"bundle-{runtime}"
    other.mkdir(exist_ok=True)
    oci = json.loads((bundle / "config.json").read_text())
    oci["root"]["path"] = str(bundle / "rootfs")
    oci["linux"]["cgroupsPath"] = f"/{cgroup_parent}/{runtime}"
    (other / "config.json").write_text(json.dumps(oci))
    return other


async def ours_once(rt: Runtime, bundle: Path, log: Path) -> None:
    cid = "bench" + uuid.uuid4().hex[:10]
    await rt.create(cid, bundle, log_path=log)
    await rt.start(cid)
    st = await rt.wait(cid)
    await rt.delete(cid)
    if st.exit_code != 0:
        raise RuntimeError(f"exit {st.exit_code}: {st.error}")


async def bench_run(table: Table, base: Path, bundle: Path, parent: str) -> None:
    """Ours and each peer alternate run by run: on a shared machine, load changes hit them alike."""
    rt = Runtime(base / "exec", parent, zygote=True)
    log = base / "bench.log"
    await ours_once(rt, bundle, log)  # warm-up (starts the zygote)
    peers: dict[str, list[str]] = {}
    failed: list[tuple[str, str]] = []
    for name in ("runc", "crun"):
        exe = peer(name)
        if not exe:
            continue
        pb = peer_bundle(bundle, name, parent)
        cmd = [exe, "--root", str(base / f"{name}-state"), "run", "--bundle", str(pb), f"bench-{name}"]
        res = subprocess.run(cmd, capture_output=True, timeout=60, check=False)  # warm-up, and can it run here?
        if res.returncode != 0:
            failed.append((name, f"failed: {res.stderr.decode(errors='replace').strip()[-160:]}"))
            continue
        peers[name] = cmd
    samples: dict[str, list[float]] = {"ours": [], **{name: [] for name in peers}}
    try:
        for _ in range(RUNS):
            t = time.perf_counter()
            await ours_once(rt, bundle, log)
            samples["ours"].append((time.perf_counter() - t) * 1000)
            for name, cmd in peers.items():
                t = time.perf_counter()
                subprocess.run(cmd, capture_output=True, timeout=60, check=True)
                samples[name].append((time.perf_counter() - t) * 1000)
    finally:
        rt.close()
    table.add("portside (engine/exec)", samples["ours"], "zygote supervisor, engine-compiled seccomp BPF")
    for name in peers:
        table.add(name, samples[name], "`run` of the same bundle")
    for name, why in failed:
        table.add_value(name, float("nan"), why)


def _pss_kib(pid: int) -> tuple[int, int]:
    rss, pss, _uss = _mem_kib(pid)
    return rss, pss


def _mem_kib(pid: int) -> tuple[int, int, int]:
    """RSS, PSS and USS (Private_Clean + Private_Dirty) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"], fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$")


def private_by_mapping(pid: int) -> dict[str, int]:
    """A process's private KiB by what its mappings hold: where a forked supervisor's copies of pages are."""
    out: collections.Counter[str] = collections.Counter()
    kind = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = _MAPPING.match(line)
        if m:
            path = m.group(2)
            if path == "[heap]":
                kind = "malloc heap"  # objects over 512 bytes: code objects, dict tables
            elif not path:
                kind = "pymalloc arenas"  # anonymous mappings: mostly the small-object allocator's
            elif path.startswith("["):
                kind = path
            elif "libpython" in path:
                kind = "libpython .data/.bss"  # static types, small ints, the interpreter's state
            else:
                kind = "other libraries' data"
        elif line.startswith(("Private_Clean:", "Private_Dirty:")):
            out[kind] += int(line.split()[1])
    return {k: v for k, v in out.most_common() if v}


async def bench_memory(table: Table, base: Path, parent: str) -> dict[str, int]:
    """Adds the PSS rows to `table`; returns the private KiB of one supervisor of IDLE by mapping."""
    bundle = make_bundle(base / "idle", ["sleep", "1000"], parent)
    rt = Runtime(base / "exec-idle", parent, zygote=True)
    ids: list[str] = []
    breakdown: dict[str, int] = {}
    try:
        for count in IDLE_COUNTS:
            while len(ids) < count:
                cid = f"idle{len(ids):02d}"
                await rt.create(cid, bundle, log_path=base / f"{cid}.log")
                ids.append(cid)
                await rt.start(cid)
            await asyncio.sleep(1.0)
            pids = [json.loads((rt.exec_root / cid / "state.json").read_text())["supervisor_pid"] for cid in ids]
            figures = [_mem_kib(pid) for pid in pids]
            mean_rss = statistics.mean(r for r, _, _ in figures) / 1024
            mean_uss = statistics.mean(u for _, _, u in figures) / 1024
            name = "portside supervisor PSS" if count == IDLE else f"portside PSS, {count} idle"
            table.add(name, [p / 1024 for _, p, _ in figures],
                      f"USS {mean_uss:.2f} MiB, RSS {mean_rss:.2f} MiB, {count} idle containers")  # fmt: skip
            if count == IDLE:
                breakdown = private_by_mapping(pids[len(pids) // 2])
        conmon = _conmon_pss_mib() if peer("conmon") and peer("podman") and peer("skopeo") else None
        if conmon is not None:
            table.add("conmon (podman)", conmon, f"measured: conmon of {len(conmon)} idle `podman run -d` (fenced)")
        elif peer("conmon"):
            table.add_value("conmon (podman)", 0.41, "installed, but not measured here (DESIGN.md's figure)")
        else:
            table.add_value("conmon (podman)", 0.41, "not installed: DESIGN.md's figure for this machine kind")
        shim = _shim_pss_mib(base) if peer("dockerd") and peer("containerd-shim-runc-v2") else None
        if shim is not None:
            table.add("containerd-shim (dockerd)", shim, f"measured: shim-runc-v2 of {len(shim)} idle `docker run -d`")
        else:
            table.add_value("containerd-shim (dockerd)", 2.9, "not measured: DESIGN.md's figure for this machine kind")
    finally:
        rt.close()
        for cid in ids:
            try:
                await rt.delete(cid, force=True)
            except Exception as e:
                print(f"cleanup {cid}: {e}")
    return breakdown


def _conmon_pss_mib(count: int = 3) -> list[float] | None:
    """PSS of Podman's conmon for idle busybox containers, from the test bed's fenced Podman (its own roots, no
    network of the host's)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.testbed import images
    from tests.testbed import podman as testbed_podman

    layout = images.ensure_built().layouts["busybox"]
    try:
        with testbed_podman.fenced(layout) as pm:
            pm.copy_in(layout, "localhost/pst-busybox:latest")
            pids = []
            for i in range(count):
                pm.run("run", "-d", "--network", "none", "--name", f"pstbench-idle{i}", "localhost/pst-busybox:latest",
                       "sleep", "1000")  # fmt: skip
                pids.append(int(pm.run("inspect", "-f", "{{.State.ConmonPid}}", f"pstbench-idle{i}").stdout))
            time.sleep(1.0)
            return [_pss_kib(p)[1] / 1024 for p in pids]
    except Exception as e:
        print(f"conmon not measured: {type(e).__name__}: {e}")
        return None


def _shim_pss_mib(base: Path, count: int = 3) -> list[float] | None:
    """PSS of dockerd's containerd shim for idle busybox containers, from a throw-away dockerd (test bed)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.testbed import dockerd as testbed_dockerd
    from tests.testbed import images
    from tests.testbed.registry import Registry, fill

    reg = Registry(base / "registry")
    dd = testbed_dockerd.make(parent=base)
    try:
        reg.start()
        fill(reg, images.ensure_built().layouts)
        dd.start(timeout=120)
        src = f"{reg.host}/testbed/busybox:latest"
        dd.docker("pull", src)
        pids = []
        for i in range(count):
            cid = dd.docker("run", "-d", "--network", "none", "--name", f"pstbench-idle{i}", src,
                            "sleep", "1000").stdout.strip()
            pid = int(dd.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            pids.append(ppid)
        time.sleep(1.0)
        return [_pss_kib(p)[1] / 1024 for p in pids]
    except Exception as e:
        print(f"containerd shim not measured: {type(e).__name__}: {e}")
        return None
    finally:
        with contextlib.suppress(Exception):
            for i in range(count):
                dd.docker("rm", "-f", f"pstbench-idle{i}")
        dd.stop()
        reg.stop()


def main() -> None:
    parent = f"portside-bench-{uuid.uuid4().hex[:6]}"
    base = Path(tempfile.mkdtemp(prefix="portside-bench-"))
    try:
        if "run" in PARTS:
            bundle = make_bundle(base, ["true"], parent)
            run_table = Table("create+start+wait+delete of `true` on busybox", "ms, median", baseline="runc")
            asyncio.run(bench_run(run_table, base, bundle, parent))
            run_table.print()
        if "memory" in PARTS:
            mem_table = Table("supervisor memory per idle container", "MiB", baseline="conmon (podman)")
            breakdown = asyncio.run(bench_memory(mem_table, base, parent))
            mem_table.print()
            where = Table(f"private memory (USS) of one supervisor of {IDLE} idle, by mapping", "KiB")
            for kind, kib in breakdown.items():
                where.add_value(kind, kib)
            where.print()
    finally:
        for name in ("runc", "crun"):
            exe = peer(name)
            if exe and (base / f"{name}-state").exists():
                subprocess.run([exe, "--root", str(base / f"{name}-state"), "delete", "-f", f"bench-{name}"],
                               capture_output=True, check=False)  # fmt: skip
        # runc also makes its cgroup in the hybrid host's unified hierarchy
        for pattern in (f"*/{parent}/*", f"*/{parent}"):
            for d in Path("/sys/fs/cgroup").glob(pattern):
                with contextlib.suppress(OSError):
                    d.rmdir()
        cgroups.remove_parent(parent)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
