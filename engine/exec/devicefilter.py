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

# include/uapi/linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE
LICENSE = b"Apache\0"
PROG_NAME = b"portside_dev"  # shows in bpftool prog list (max 15 chars)
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

_TYPES = {"c": DEV_CHAR, "b": DEV_BLOCK}
_ACCESS = {"r": ACC_READ, "w": ACC_WRITE, "m": ACC_MKNOD}

# eBPF opcodes (class | op | source)
_LDXW = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_K = 0xB4  # BPF_ALU | BPF_MOV | BPF_K
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95  # BPF_JMP | BPF_EXIT
R0, R1, R2, R3, R4, R5 = range(6)

Key = tuple[int, int, int]  # (type, major or -1, minor or -1)


class DeviceFilterError(OSError):
    pass


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


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


# --- bpf(2) ---

_libc: Any = None


def _bpf(cmd: int, attr: bytearray) -> int:
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise DeviceFilterError(95, f"bpf(2): unsupported architecture {os.uname().machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise DeviceFilterError(err, os.strerror(err))
    return int(ret)


def _addr(b: Any) -> int:
    import ctypes

    return ctypes.addressof(b)


def load(program: bytes) -> int:
    """BPF_PROG_LOAD; returns the program's fd (close it once attached: the attachment holds the program)."""
    import ctypes

    insns = ctypes.create_string_buffer(program, len(program))
    lic = ctypes.create_string_buffer(LICENSE, len(LICENSE))
    log = ctypes.create_string_buffer(65536)
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
    # kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type
    attr = bytearray(struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8,
                                 _addr(insns), _addr(lic), 0, 0, 0, 0, 0, PROG_NAME, 0, BPF_CGROUP_DEVICE))  # fmt: skip
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except DeviceFilterError as e:
        # load again with the verifier's log for the message
        attr[24:40] = struct.pack("<IIQ", 1, len(log), _addr(log))
        with contextlib.suppress(DeviceFilterError):
            os.close(_bpf(BPF_PROG_LOAD, attr))
        text = log.value.decode(errors="replace").strip()
        msg = f"loading the device filter: {e.strerror}" + (f": {text}" if text else "")
        raise DeviceFilterError(e.errno, msg) from None


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to this cgroup directory itself."""
    import ctypes

    ids = (ctypes.c_uint32 * 64)()
    # BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    attr = bytearray(struct.pack("<IIIIQI4x", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, _addr(ids), len(ids)))
    _bpf(BPF_PROG_QUERY, attr)
    (count,) = struct.unpack_from("<I", attr, 24)
    return [ids[i] for i in range(min(count, len(ids)))]


def _prog_fd(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, bytearray(struct.pack("<III", prog_id, 0, 0)))


def _attach(cmd: int, cgroup_fd: int, prog_fd: int, flags: int) -> None:
    # BPF_PROG_ATTACH/DETACH: target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
    _bpf(cmd, bytearray(struct.pack("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags, 0)))


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
            _attach(BPF_PROG_ATTACH, cg, prog, BPF_F_ALLOW_MULTI)
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
                _attach(BPF_PROG_DETACH, cgroup_fd, fd, 0)
        finally:
            os.close(fd)


def remove(cgroup_dir: str) -> None:
    """Detaches every device filter of the directory (the kernel also does it when the cgroup is freed)."""
    cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        detach(cg, attached(cg))
    finally:
        os.close(cg)
