"""Named points where a test can make the daemon die as a kill -9 would: the crash-injection harness.

`crashpoint("pull.layer.downloading")` does nothing unless the daemon was started with
`PORTSIDE_CRASH_AT=<name>[,<name>...]` in its environment (tests only): then reaching a named point SIGKILLs the
process on the spot - no `finally`, no atexit, no flush of anything not already written - which is what a crash
or an OOM kill does. The reliability tests (tests/reliability/) arm one point at a time, drive the operation,
see the daemon die, start it again unarmed and check that nothing half-done is visible.

Disabled, a point costs one set lookup: the container start path calls some of them and is benchmarked.
"""

from __future__ import annotations

import os
import signal

ENV = "PORTSIDE_CRASH_AT"

# Every point the engine has, so a test (or a typo in one) can be checked against the list.
POINTS = frozenset({
    "pull.layer.downloading",  # a layer's first bytes are in its ingest file, the rest not yet fetched
    "pull.layer.downloaded",  # a layer blob is committed, its snapshot not yet unpacked
    "pull.layer.unpacking",  # a layer is half unpacked into its snapshot's temp dir
    "snapshot.create.rename",  # a snapshot (a pulled layer, a commit's) is complete in its temp dir, not renamed
    "pull.record",  # every blob and snapshot is there, the image record not yet written
    "image.rm.gc",  # an image's records deleted, its blobs and snapshots not yet collected
    "image.record",  # any new image (pull, commit, build step, load, import): just before its metadata row
    "container.create.record",  # a container's layer (and volumes) made, its record not yet written
    "container.start.prepared",  # a start: rootfs mounted, netns, veth and port rules made, no process yet
    "container.stop.signalled",  # a stop: the stop signal sent, the exit not yet seen
    "container.rm.cleaned",  # a container being removed: process, network and mounts released, layer kept
    "container.rm.layer",  # a container being removed: its layer gone, its record not yet deleted
    "container.cp.mounted",  # `docker cp` into a stopped container: extracted, its layer and volumes still mounted
    "volume.create.record",  # a volume's directory made, its record not yet written
    "volume.rm.record",  # a volume's record deleted, its directory not yet
    "build.run",  # a build's RUN step container is running
    "build.commit",  # a build step's layer blob is written, its image record not yet
    "network.create.bridge",  # a network's bridge and nft rules made, its record not yet written
    "network.connect.attached",  # a running container's new endpoint (address, veth) made, its sandbox not saved
    "network.rm.record",  # a network's bridge deleted and its rules gone, its record not yet
    "api.request",  # any request but a ping is being served (the TUI's embedded engine: its whole process dies)
})


def _armed_from_env() -> frozenset[str]:
    # Taken out of the environment, so the supervisors and containers the daemon starts do not inherit it.
    value = os.environ.pop(ENV, "")
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    for unknown in sorted(names - POINTS):  # a typo would make a crash test wait for a death that never comes
        os.write(2, f"portside: {ENV}: no crashpoint named {unknown!r}\n".encode())
    return names


_ARMED = _armed_from_env()
_OWNER = os.getpid()  # a forked child (a supervisor before its exec) never dies in the daemon's place


def crashpoint(name: str) -> None:
    """SIGKILLs this process when `name` is armed; a no-op otherwise."""
    if name in _ARMED:
        _die(name)


def armed() -> frozenset[str]:
    return _ARMED


def _die(name: str) -> None:
    if os.getpid() != _OWNER:
        return
    # Raw write: the log's handlers may buffer, and nothing after this line runs.
    os.write(2, f"portside: crashpoint {name}: SIGKILL\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
