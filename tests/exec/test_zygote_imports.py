"""What the supervisor's zygote imports: every module it loads is shared by each supervisor forked from it and
counted in each one's PSS (its share of those pages), so the container side stays off the heavy standard-library
modules (typing, contextlib and the collections/functools it brings, socket.py, signal.py's enums, pathlib, json,
platform, re)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.exec import lean, seccomp

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"typing", "contextlib", "collections", "functools", "enum", "socket", "signal", "selectors", "pathlib",
         "json", "platform", "re", "ipaddress", "urllib.parse", "threading"}  # fmt: skip


def test_zygote_modules_leave_out_the_heavy_ones() -> None:
    # as the runtime starts the zygote: -S -E, then the supervisor's and the container side's modules
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from engine.exec import supervisor, container; "
            "print(' '.join(sorted(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-S", "-E", "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "engine.exec.container" in loaded
    assert loaded & HEAVY == set()


def test_suppress() -> None:
    with lean.suppress(KeyError, OSError):
        raise FileNotFoundError  # a subclass of one given
    try:
        with lean.suppress(KeyError):
            raise ValueError("through")
    except ValueError as e:
        assert str(e) == "through"
    else:
        raise AssertionError("ValueError was suppressed")


def test_default_profile_path_and_arch() -> None:
    assert Path(seccomp.DEFAULT_PROFILE).is_file()
    assert seccomp.load_profile()["defaultAction"]
    machine = os.uname().machine
    assert seccomp.native_goarch() == {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
