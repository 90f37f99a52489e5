"""bpf(2) without libbpf: the syscall through ctypes, eBPF instruction encoding, and the few commands the engine uses
(program load with the verifier's log, hash maps, cgroup links, object info, attachment queries).

Shared by the cgroup v2 device filter (engine/exec/devicefilter.py) and the socket-address hook of published ports
(engine/net/sockhook.py). Only the stdlib; `ctypes` is imported on first use (supervisors import the device filter).
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import Any

# include/uapi/linux/bpf.h: commands
MAP_CREATE = 0
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
MAP_GET_NEXT_KEY = 4
PROG_LOAD = 5
PROG_ATTACH = 8
PROG_DETACH = 9
PROG_GET_FD_BY_ID = 13
MAP_GET_FD_BY_ID = 14
OBJ_GET_INFO_BY_FD = 15
PROG_QUERY = 16
LINK_CREATE = 28

# map types, program types, attach types
MAP_TYPE_HASH = 1
MAP_TYPE_LRU_HASH = 9
PROG_TYPE_CGROUP_DEVICE = 15
PROG_TYPE_CGROUP_SOCK_ADDR = 18
CGROUP_DEVICE = 6
CGROUP_INET4_CONNECT = 10
CGROUP_UDP4_SENDMSG = 14
CGROUP_UDP4_RECVMSG = 19
CGROUP_INET4_GETPEERNAME = 29
F_ALLOW_MULTI = 2
ANY = 0  # map update flag: create or replace

# helper function ids (enum bpf_func_id)
FN_MAP_LOOKUP_ELEM = 1
FN_MAP_UPDATE_ELEM = 2
FN_GET_SOCKET_COOKIE = 46
FN_GET_NETNS_COOKIE = 122

# instruction opcodes (class | size/op | mode/source)
LDXB, LDXH, LDXW, LDXDW = 0x71, 0x69, 0x61, 0x79  # dst = *(size *)(src + off)
STXB, STXH, STXW, STXDW = 0x73, 0x6B, 0x63, 0x7B  # *(size *)(dst + off) = src
STB, STH, STW, STDW = 0x72, 0x6A, 0x62, 0x7A  # *(size *)(dst + off) = imm
LD_IMM64 = 0x18  # two instructions; src=PSEUDO_MAP_FD makes imm a map fd
PSEUDO_MAP_FD = 1
MOV64_X, MOV64_K, ADD64_K = 0xBF, 0xB7, 0x07
AND32_K, RSH32_K, MOV32_K, MOV32_X = 0x54, 0x74, 0xB4, 0xBC
JA, JEQ_K, JNE_K, JEQ_X, JNE_X = 0x05, 0x15, 0x55, 0x1D, 0x5D
CALL, EXIT = 0x85, 0x95
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)  # R10: the frame pointer (read-only)

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}


class BpfError(OSError):
    pass


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def ld_imm64(dst: int, value: int, src: int = 0) -> bytes:
    """dst = 64-bit immediate (or, with src=PSEUDO_MAP_FD, the map whose fd is `value`)."""
    lo, hi = value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF
    return struct.pack("<BBhI", LD_IMM64, (src << 4) | dst, 0, lo) + struct.pack("<BBhI", 0, 0, 0, hi)


_libc: Any = None


def call(cmd: int, attr: bytearray) -> int:
    """bpf(cmd, attr): the return value, or BpfError with the errno."""
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise BpfError(95, f"bpf(2): unsupported architecture {os.uname().machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return int(ret)


def addr(b: Any) -> int:
    import ctypes

    return ctypes.addressof(b)


def load(prog_type: int, attach_type: int, program: bytes, name: bytes, license: bytes = b"Apache") -> int:
    """BPF_PROG_LOAD; the program's fd (an attachment or link keeps the program once made). On a verifier
    refusal the error carries the verifier's log."""
    import ctypes

    insns = ctypes.create_string_buffer(program, len(program))
    lic = ctypes.create_string_buffer(license + b"\0")
    log = ctypes.create_string_buffer(65536)
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
    # kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type
    attr = bytearray(struct.pack("<IIQQIIQII16sII", prog_type, len(program) // 8, addr(insns), addr(lic),
                                 0, 0, 0, 0, 0, name[:15], 0, attach_type))  # fmt: skip
    try:
        return call(PROG_LOAD, attr)
    except BpfError as e:
        # load again with the verifier's log for the message
        attr[24:40] = struct.pack("<IIQ", 1, len(log), addr(log))
        with contextlib.suppress(BpfError):
            os.close(call(PROG_LOAD, attr))
        text = log.value.decode(errors="replace").strip()
        raise BpfError(e.errno, f"loading {name.decode()}: {e.strerror}" + (f": {text}" if text else "")) from None


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: bytes) -> int:
    # BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, map_flags, inner_map_fd, numa_node, map_name[16]
    attr = bytearray(struct.pack("<IIIIIII16s", map_type, key_size, value_size, max_entries, 0, 0, 0, name[:15]))
    attr += bytes(72 - len(attr))
    return call(MAP_CREATE, attr)


def _elem(cmd: int, map_fd: int, key: bytes, value: Any, flags: int = 0) -> int:
    import ctypes

    k = ctypes.create_string_buffer(key, len(key))
    # map_fd, pad, key, value/next_key, flags
    attr = bytearray(struct.pack("<IIQQQ", map_fd, 0, addr(k), addr(value) if value is not None else 0, flags))
    return call(cmd, attr)


def map_update(map_fd: int, key: bytes, value: bytes, flags: int = ANY) -> None:
    import ctypes

    _elem(MAP_UPDATE_ELEM, map_fd, key, ctypes.create_string_buffer(value, len(value)), flags)


def map_delete(map_fd: int, key: bytes) -> bool:
    """False if the key was not there."""
    try:
        _elem(MAP_DELETE_ELEM, map_fd, key, None)
        return True
    except BpfError as e:
        if e.errno == 2:
            return False
        raise


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    import ctypes

    out = ctypes.create_string_buffer(value_size)
    try:
        _elem(MAP_LOOKUP_ELEM, map_fd, key, out)
    except BpfError as e:
        if e.errno == 2:
            return None
        raise
    return out.raw


def map_keys(map_fd: int, key_size: int) -> list[bytes]:
    import ctypes

    keys: list[bytes] = []
    nxt = ctypes.create_string_buffer(key_size)
    cur: bytes | None = None
    while True:
        try:
            if cur is None:
                call(MAP_GET_NEXT_KEY, bytearray(struct.pack("<IIQQQ", map_fd, 0, 0, addr(nxt), 0)))
            else:
                _elem(MAP_GET_NEXT_KEY, map_fd, cur, nxt)
        except BpfError as e:
            if e.errno == 2:
                return keys
            raise
        cur = nxt.raw
        keys.append(cur)


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """BPF_LINK_CREATE: an attachment that lives as long as the returned fd (closed, or the process gone: detached).
    On a cgroup, links always combine with the other programs there (BPF_F_ALLOW_MULTI semantics)."""
    attr = bytearray(struct.pack("<IIII", prog_fd, target_fd, attach_type, 0)) + bytes(48)
    return call(LINK_CREATE, attr)


def obj_id(fd: int) -> int:
    """The id of a program, map or link (prog/map/link info all start with type, id)."""
    import ctypes

    info = ctypes.create_string_buffer(256)
    call(OBJ_GET_INFO_BY_FD, bytearray(struct.pack("<IIQ", fd, len(info), addr(info))))
    return int(struct.unpack_from("<I", info.raw, 4)[0])


def link_prog_id(link_fd: int) -> int:
    import ctypes

    info = ctypes.create_string_buffer(64)
    call(OBJ_GET_INFO_BY_FD, bytearray(struct.pack("<IIQ", link_fd, len(info), addr(info))))
    return int(struct.unpack_from("<I", info.raw, 8)[0])  # struct bpf_link_info: type, id, prog_id


def prog_query(target_fd: int, attach_type: int) -> list[int]:
    """Ids of the programs attached to this cgroup directory itself for `attach_type`."""
    import ctypes

    ids = (ctypes.c_uint32 * 256)()
    # BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    attr = bytearray(struct.pack("<IIIIQI4x", target_fd, attach_type, 0, 0, addr(ids), len(ids)))
    call(PROG_QUERY, attr)
    (count,) = struct.unpack_from("<I", attr, 24)
    return [ids[i] for i in range(min(count, len(ids)))]


def prog_fd_by_id(prog_id: int) -> int:
    return call(PROG_GET_FD_BY_ID, bytearray(struct.pack("<III", prog_id, 0, 0)))


def map_fd_by_id(map_id: int) -> int:
    return call(MAP_GET_FD_BY_ID, bytearray(struct.pack("<III", map_id, 0, 0)))


def cgroup2_root() -> str | None:
    """The mount point of the cgroup2 hierarchy's root (/sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a
    hybrid one), None without one."""
    try:
        with open("/proc/self/mountinfo") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields, kind = pre.split(), post.split()[:1]
        if kind == ["cgroup2"] and len(fields) > 4 and fields[3] == "/":
            return fields[4]
    return None
