"""The device filter of cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE built from OCI device rules.

cgroup v2 has no `devices` controller; the kernel instead runs the BPF_CGROUP_DEVICE programs attached to the
task's cgroup2 directory on every mknod and open of a device node (return 0: EPERM). This module
  - folds the OCI rules (linux.resources.devices, in order) into v1's semantics: a rule without type/major/minor
    resets the default (allow all / deny all) and clears the exceptions, later rules add or take away access of
    exceptions, so the result is "default action + a set of exceptions with the opposite action";
  - compiles that into eBPF instructions (one block per exception, then the default);
  - loads it with bpf(2) (BPF_PROG_LOAD, license "Apache") and attaches it with BPF_F_ALLOW_MULTI to a cgroup2
    directory, detaching the programs it replaces. The kernel drops the attachment when the cgroup is freed.

Only the stdlib; `ctypes` is imported on first use (the supervisor imports cgroups.py and its memory counts).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable
from typing import Any

from engine import bpf

BPF_PROG_TYPE_CGROUP_DEVICE = bpf.PROG_TYPE_CGROUP_DEVICE
BPF_CGROUP_DEVICE = bpf.CGROUP_DEVICE
BPF_F_ALLOW_MULTI = bpf.F_ALLOW_MULTI
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE
PROG_NAME = b"portside_dev"  # shows in bpftool prog list (max 15 chars)

_TYPES = {"c": DEV_CHAR, "b": DEV_BLOCK}
_ACCESS = {"r": ACC_READ, "w": ACC_WRITE, "m": ACC_MKNOD}

_LDXW, _AND32_K, _RSH32_K, _MOV32_K, _MOV32_X = bpf.LDXW, bpf.AND32_K, bpf.RSH32_K, bpf.MOV32_K, bpf.MOV32_X
_JNE_K, _EXIT = bpf.JNE_K, bpf.EXIT
R0, R1, R2, R3, R4, R5 = range(6)

Key = tuple[int, int, int]  # (type, major or -1, minor or -1)


DeviceFilterError = bpf.BpfError


_insn = bpf.insn


def _access_bits(access: str) -> int:
    bits = 0
    for ch in access or "rwm":
        if ch not in _ACCESS:
            raise ValueError(f"invalid device access {access!r}")
        bits |= _ACCESS[ch]
    return bits


def _is_wildcard(rule: dict[str, Any]) -> bool:
    return rule.get("type", "a") == "a" and rule.get("major") is None and rule.get("minor") is None


def fold(rules: Iterable[dict[str, Any]]) -> tuple[bool, dict[Key, int]]:
    """(default allow, {(type, major, minor): access bits}) - the exceptions carry the opposite action.

    v1 semantics (what runc's emulator keeps too): an "a" rule resets everything; a rule of the default's action
    takes access away from an exception with the same key, a rule of the other action adds it.
    """
    default_allow = True  # a new v1 devices cgroup allows all
    exceptions: dict[Key, int] = {}
    for rule in rules:
        allow = bool(rule.get("allow"))
        if _is_wildcard(rule):
            default_allow, exceptions = allow, {}
            continue
        kind = rule.get("type", "a")
        types = [DEV_CHAR, DEV_BLOCK] if kind == "a" else [_TYPES[kind]] if kind in _TYPES else None
        if types is None:
            raise ValueError(f"invalid device type {kind!r}")
        major = -1 if rule.get("major") is None else int(rule["major"])
        minor = -1 if rule.get("minor") is None else int(rule["minor"])
        bits = _access_bits(rule.get("access", "rwm"))
        for t in types:
            key = (t, major, minor)
            if allow != default_allow:
                exceptions[key] = exceptions.get(key, 0) | bits
            elif key in exceptions:
                left = exceptions[key] & ~bits
                if left:
                    exceptions[key] = left
                else:
                    del exceptions[key]
    return default_allow, exceptions


def compile_rules(rules: Iterable[dict[str, Any]]) -> bytes:
    """The eBPF program (packed struct bpf_insn) deciding access as the OCI `rules` say."""
    default_allow, exceptions = fold(rules)
    # struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
    prog = [
        _insn(_LDXW, R2, R1, 0),
        _insn(_AND32_K, R2, imm=0xFFFF),  # r2 = device type
        _insn(_LDXW, R3, R1, 0),
        _insn(_RSH32_K, R3, imm=16),  # r3 = requested access bits
        _insn(_LDXW, R4, R1, 4),  # r4 = major
        _insn(_LDXW, R5, R1, 8),  # r5 = minor
    ]
    for (kind, major, minor), bits in sorted(exceptions.items()):
        # each test jumps past the rest of this block (to the next one) when it does not match
        tests: list[tuple[int, int, int, int]] = [(_JNE_K, R2, 0, kind)]
        if bits != ACC_ALL:
            # every requested bit must be granted: r1 = r3 & ~bits must be 0 (r1, the context, is no longer needed)
            tests.append((_MOV32_X, R1, R3, 0))
            tests.append((_AND32_K, R1, 0, ~bits & ACC_ALL))
            tests.append((_JNE_K, R1, 0, 0))
        if major >= 0:
            tests.append((_JNE_K, R4, 0, major))
        if minor >= 0:
            tests.append((_JNE_K, R5, 0, minor))
        block_len = len(tests) + 2
        for i, (code, dst, src, imm) in enumerate(tests):
            off = block_len - i - 1 if code == _JNE_K else 0
            prog.append(_insn(code, dst, src, off, imm))
        prog.append(_insn(_MOV32_K, R0, imm=0 if default_allow else 1))
        prog.append(_insn(_EXIT))
    prog.append(_insn(_MOV32_K, R0, imm=1 if default_allow else 0))
    prog.append(_insn(_EXIT))
    return b"".join(prog)


def load(program: bytes) -> int:
    """BPF_PROG_LOAD; returns the program's fd (close it once attached: the attachment holds the program)."""
    return bpf.load(BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, program, PROG_NAME)


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to this cgroup directory itself."""
    return bpf.prog_query(cgroup_fd, BPF_CGROUP_DEVICE)


def _prog_fd(prog_id: int) -> int:
    return bpf.prog_fd_by_id(prog_id)


def _attach(cmd: int, cgroup_fd: int, prog_fd: int, flags: int) -> None:
    # BPF_PROG_ATTACH/DETACH: target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
    bpf.call(cmd, bytearray(struct.pack("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags, 0)))


def apply(cgroup_dir: str, rules: Iterable[dict[str, Any]]) -> int:
    """Attaches the filter for `rules` to a cgroup2 directory, replacing any device filter already there.

    The new program is attached before the old ones go, so there is no moment without a filter. Returns the
    new program's id.
    """
    program = compile_rules(list(rules))
    cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = attached(cg)
        prog = load(program)
        try:
            _attach(bpf.PROG_ATTACH, cg, prog, BPF_F_ALLOW_MULTI)
            new = set(attached(cg)) - set(old)
        finally:
            os.close(prog)
        detach(cg, old)
        return next(iter(new), 0)
    finally:
        os.close(cg)


def detach(cgroup_fd: int, prog_ids: Iterable[int]) -> None:
    for pid in prog_ids:
        try:
            fd = _prog_fd(pid)
        except DeviceFilterError:
            continue  # gone meanwhile
        try:
            with contextlib.suppress(DeviceFilterError):
                _attach(bpf.PROG_DETACH, cgroup_fd, fd, 0)
        finally:
            os.close(fd)


def remove(cgroup_dir: str) -> None:
    """Detaches every device filter of the directory (the kernel also does it when the cgroup is freed)."""
    cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        detach(cg, attached(cg))
    finally:
        os.close(cg)
