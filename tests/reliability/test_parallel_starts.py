"""Parallel first starts compile the seccomp profile at the same time: each must get the program, not an error
(the concurrency benchmark's 50 parallel starts failed with ctypes' "expected LP_ArgCmp instance")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

seccomp = pytest.importorskip("engine.exec.seccomp")


def test_seccomp_compiles_from_many_threads_at_once() -> None:
    try:
        seccomp.preload()
    except OSError:
        pytest.skip("no libseccomp here")
    spec = seccomp.render(seccomp.load_profile(), ["CAP_CHOWN", "CAP_KILL"])
    alone = seccomp.compile_bpf(spec)
    with ThreadPoolExecutor(8) as pool:
        programs = list(pool.map(lambda _i: seccomp.compile_bpf(spec), range(32)))
    assert programs == [alone] * 32
