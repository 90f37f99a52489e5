"""The daemon's view of the container runtime (engine/exec): one adapter, so the lifecycle code stays the same
whichever shape the runtime's Python API takes.

What the container manager needs from it (all async):
  create(cid, bundle, spec, *, tty, stdin, log_path, log_config)  set up the container; its process not yet run
  start(cid) -> pid                          run the process (attachers connected between create and start)
  wait(cid) -> (exit_code, oom_killed)       returns when the init exits (also for a re-adopted container)
  alive(cid) -> bool; exit_code(cid) -> int | None   for re-adoption after an engine restart
  kill(cid, signum, all_=False); pause(cid); unpause(cid); resize(cid, h, w); delete(cid)
  attach(cid, *, stdin, stdout, stderr) -> Attachment   (read() -> (stream, bytes) | None, write(), close_stdin(),
                                                          close())
  exec(cid, process, *, tty, stdin) -> ExecProcess; pids(cid) -> list[int]; stats(cid) -> dict
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.containers.host import RuntimeHost


def make_runtime(daemon: RuntimeHost) -> Any:
    """The adapter over engine/exec's runtime, or None while this tree has no runtime."""
    from engine.containers.exec_adapter import ExecRuntime

    try:
        return ExecRuntime(daemon)
    except ImportError:
        return None
