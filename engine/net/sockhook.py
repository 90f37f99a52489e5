"""Published ports for the host's own clients without NAT: the destination is rewritten once, at connect()/sendmsg(),
by BPF_PROG_TYPE_CGROUP_SOCK_ADDR programs attached at the root of the cgroup2 hierarchy (the idea of Cilium's
socket-LB).

A host process connecting to a published (address, port) gets a socket connected straight to (container address,
container port): no packet of that connection is DNATed, re-routed or seen by conntrack's NAT, which is where the
kernel-DNAT path loses its throughput. The nft DNAT rules stay: they serve traffic from other hosts and from
containers (hairpin), and everything whenever this hook is not there (engine down, old kernel, no BPF rights).

Programs (all four only act on sockets of the engine's own network namespace, so a container's connects to its
127.0.0.1 are never touched; bpf_get_netns_cookie against the cookie of the engine's netns):
  connect4 (TCP, and UDP connect)  look up (dst ip, dst port, protocol) in `services`; on a miss and a dst in
  sendmsg4 (unconnected UDP)       127.0.0.0/8 look up (0.0.0.0, port, protocol) (published on every address:
                                   the other local addresses are left to nft DNAT). On a hit: remember (socket
                                   cookie, container ip, port) -> the original (ip, port) in `reverse`, then
                                   rewrite the destination.
  getpeername4, recvmsg4 (UDP)     look (socket cookie, peer ip, port) up in `reverse` and show the original
                                   address, so the client sees 127.0.0.1:PORT as its peer and as the source of
                                   replies.
`reverse` is an LRU map: socket cookies are never reused, stale entries just age out.

Lifetime: each program is attached with BPF_LINK_CREATE and the links live as long as this process holds their
fds: a killed engine takes its hook with it (nft DNAT keeps serving), a restarted engine makes new ones and fills
`services` from its records. Links on a cgroup combine with everything else attached there (several engines, each
with its own maps and programs, each rewriting only its own ports).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass

from engine import bpf
from engine.bpf import R0, R1, R2, R3, R4, R6, R7, R10, insn, ld_imm64

ADD64_K, CALL, EXIT, MOV64_K, MOV64_X = bpf.ADD64_K, bpf.CALL, bpf.EXIT, bpf.MOV64_K, bpf.MOV64_X
JEQ_K, JNE_K, JNE_X = bpf.JEQ_K, bpf.JNE_K, bpf.JNE_X
LDXB, LDXH, LDXW, STH, STW, STXDW, STXH, STXW = (bpf.LDXB, bpf.LDXH, bpf.LDXW, bpf.STH, bpf.STW, bpf.STXDW, bpf.STXH,
                                                 bpf.STXW)  # fmt: skip

log = logging.getLogger(__name__)

SO_NETNS_COOKIE = 71
PROTO_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
SERVICES_MAX = 16384
REVERSE_MAX = 65536

# struct bpf_sock_addr offsets
_USER_IP4 = 4
_USER_PORT = 24
_PROTOCOL = 36

# services: key (ip be32, port be16, protocol u8, pad u8) -> value (ip be32, port be16, pad u16)
SERVICE_KEY, SERVICE_VALUE = 8, 8
# reverse: key (socket cookie u64, ip be32, port be16, pad u16) -> value (ip be32, port be16, pad u16)
REVERSE_KEY, REVERSE_VALUE = 16, 8


def service_key(ip: str, port: int, proto: str) -> bytes:
    return socket.inet_aton(ip) + struct.pack("!HBx", port, PROTO_NUMBERS[proto])


def service_value(ip: str, port: int) -> bytes:
    return socket.inet_aton(ip) + struct.pack("!Hxx", port)


def _jump_to(prog: list[bytes | None], at: int, code: int, dst: int, imm: int = 0, src: int = 0) -> None:
    """Fill the placeholder at index `at` with a jump to the end of `prog` as it is now."""
    prog[at] = insn(code, dst, src, len(prog) - at - 1, imm)


def _lookup(services_fd: int) -> list[bytes]:
    return [ld_imm64(R1, services_fd, bpf.PSEUDO_MAP_FD), insn(MOV64_X, R2, R10), insn(ADD64_K, R2, imm=-8),
            insn(CALL, imm=bpf.FN_MAP_LOOKUP_ELEM)]  # fmt: skip


def forward_program(services_fd: int, reverse_fd: int, netns_cookie: int) -> bytes:
    """connect4 / sendmsg4: published (ip, port) -> container (ip, port). Always lets the call go on (returns 1)."""
    prog: list[bytes | None] = [
        insn(MOV64_X, R6, R1),  # r6 = ctx (kept across calls)
        insn(CALL, imm=bpf.FN_GET_NETNS_COOKIE),
        ld_imm64(R1, netns_cookie),
    ]
    to_out = [len(prog)]
    prog.append(None)  # if r0 != r1 goto out
    prog += [
        # key at fp-8: user_ip4 (network order), user_port (network order, low 16 bits), protocol, 0
        insn(LDXW, R1, R6, _USER_IP4),
        insn(STXW, R10, R1, -8),
        insn(LDXW, R1, R6, _USER_PORT),
        insn(STXH, R10, R1, -4),
        insn(LDXW, R1, R6, _PROTOCOL),
        insn(bpf.STXB, R10, R1, -2),
        insn(bpf.STB, R10, 0, -1, 0),
        *_lookup(services_fd),
    ]
    to_found = len(prog)
    prog.append(None)  # if r0 != 0 goto found
    prog += [insn(LDXB, R1, R10, -8)]  # the first octet of the address
    to_out.append(len(prog))
    prog.append(None)  # if r1 != 127 goto out
    prog += [insn(STW, R10, 0, -8, 0), *_lookup(services_fd)]  # published on 0.0.0.0
    to_out.append(len(prog))
    prog.append(None)  # if r0 == 0 goto out
    _jump_to(prog, to_found, JNE_K, R0)
    prog += [
        insn(MOV64_X, R7, R0),  # r7 = the container's (ip, port)
        insn(MOV64_X, R1, R6),
        insn(CALL, imm=bpf.FN_GET_SOCKET_COOKIE),
        # reverse key at fp-24: cookie, container ip, container port, 0
        insn(STXDW, R10, R0, -24),
        insn(LDXW, R1, R7, 0),
        insn(STXW, R10, R1, -16),
        insn(LDXH, R1, R7, 4),
        insn(STXH, R10, R1, -12),
        insn(STH, R10, 0, -10, 0),
        # reverse value at fp-32: the address the caller asked for
        insn(LDXW, R1, R6, _USER_IP4),
        insn(STXW, R10, R1, -32),
        insn(LDXW, R1, R6, _USER_PORT),
        insn(STXH, R10, R1, -28),
        insn(STH, R10, 0, -26, 0),
        ld_imm64(R1, reverse_fd, bpf.PSEUDO_MAP_FD),
        insn(MOV64_X, R2, R10),
        insn(ADD64_K, R2, imm=-24),
        insn(MOV64_X, R3, R10),
        insn(ADD64_K, R3, imm=-32),
        insn(MOV64_K, R4, imm=bpf.ANY),
        insn(CALL, imm=bpf.FN_MAP_UPDATE_ELEM),
        # the rewrite
        insn(LDXW, R1, R7, 0),
        insn(STXW, R6, R1, _USER_IP4),
        insn(LDXH, R1, R7, 4),
        insn(STXW, R6, R1, _USER_PORT),
    ]
    _jump_to(prog, to_out[0], JNE_X, R0, src=R1)
    _jump_to(prog, to_out[1], JNE_K, R1, imm=127)
    _jump_to(prog, to_out[2], JEQ_K, R0)
    prog += [insn(MOV64_K, R0, imm=1), insn(EXIT)]
    return _assemble(prog)


def reverse_program(reverse_fd: int, netns_cookie: int) -> bytes:
    """getpeername4 / recvmsg4: the container's (ip, port) a socket was sent to -> the published one it asked for."""
    prog: list[bytes | None] = [
        insn(MOV64_X, R6, R1),
        insn(CALL, imm=bpf.FN_GET_NETNS_COOKIE),
        ld_imm64(R1, netns_cookie),
    ]
    to_out = [len(prog)]
    prog.append(None)  # if r0 != r1 goto out
    prog += [
        insn(MOV64_X, R1, R6),
        insn(CALL, imm=bpf.FN_GET_SOCKET_COOKIE),
        insn(STXDW, R10, R0, -16),
        insn(LDXW, R1, R6, _USER_IP4),
        insn(STXW, R10, R1, -8),
        insn(LDXW, R1, R6, _USER_PORT),
        insn(STXH, R10, R1, -4),
        insn(STH, R10, 0, -2, 0),
        ld_imm64(R1, reverse_fd, bpf.PSEUDO_MAP_FD),
        insn(MOV64_X, R2, R10),
        insn(ADD64_K, R2, imm=-16),
        insn(CALL, imm=bpf.FN_MAP_LOOKUP_ELEM),
    ]
    to_out.append(len(prog))
    prog.append(None)  # if r0 == 0 goto out
    prog += [
        insn(LDXW, R1, R0, 0),
        insn(STXW, R6, R1, _USER_IP4),
        insn(LDXH, R1, R0, 4),
        insn(STXW, R6, R1, _USER_PORT),
    ]
    _jump_to(prog, to_out[0], JNE_X, R0, src=R1)
    _jump_to(prog, to_out[1], JEQ_K, R0)
    prog += [insn(MOV64_K, R0, imm=1), insn(EXIT)]
    return _assemble(prog)


def _assemble(prog: list[bytes | None]) -> bytes:
    """Jump offsets count instructions: a 16-byte ld_imm64 is two. Placeholders were filled with offsets in list
    items, so recompute them in instruction slots."""
    slots = [0]
    for item in prog:
        assert item is not None, "unfilled jump"
        slots.append(slots[-1] + len(item) // 8)
    out = []
    for i, item in enumerate(prog):
        assert item is not None
        code = item[0]
        if code & 0x07 == 0x05 and code not in (CALL, EXIT):  # BPF_JMP class jumps: fix the offset
            (off,) = struct.unpack_from("<h", item, 2)
            target = i + 1 + off
            new_off = slots[target] - slots[i + 1]
            item = item[:2] + struct.pack("<h", new_off) + item[4:]
        out.append(item)
    return b"".join(out)


def netns_cookie() -> int:
    """The cookie of this process's network namespace (SO_NETNS_COOKIE, Linux 5.14+)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return int(struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0])


@dataclass(frozen=True)
class Entry:
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


_warned = False
_warn_lock = threading.Lock()


class SockHook:
    """The four attached programs and their maps, owned by one engine (NetworkService). Not thread-safe on its own:
    the service calls it under its lock."""

    ATTACH = (
        ("connect4", bpf.CGROUP_INET4_CONNECT),
        ("sendmsg4", bpf.CGROUP_UDP4_SENDMSG),
        ("recvmsg4", bpf.CGROUP_UDP4_RECVMSG),
        ("getpeername4", bpf.CGROUP_INET4_GETPEERNAME),
    )

    def __init__(self, cgroup_root: str) -> None:
        self.cgroup_root = cgroup_root
        self.services_fd = -1
        self.reverse_fd = -1
        self.links: dict[str, int] = {}
        self.entries: dict[bytes, bytes] = {}
        self.services_fd = bpf.map_create(bpf.MAP_TYPE_HASH, SERVICE_KEY, SERVICE_VALUE, SERVICES_MAX, b"pst_services")
        try:
            self.reverse_fd = bpf.map_create(bpf.MAP_TYPE_LRU_HASH, REVERSE_KEY, REVERSE_VALUE, REVERSE_MAX,
                                             b"pst_reverse")  # fmt: skip
            cookie = netns_cookie()
            forward = forward_program(self.services_fd, self.reverse_fd, cookie)
            reverse = reverse_program(self.reverse_fd, cookie)
            cg = os.open(cgroup_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for name, attach in self.ATTACH:
                    code = forward if attach in (bpf.CGROUP_INET4_CONNECT, bpf.CGROUP_UDP4_SENDMSG) else reverse
                    prog = bpf.load(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, attach, code, f"pst_{name}".encode())
                    try:
                        self.links[name] = bpf.link_create(prog, cg, attach)
                    finally:
                        os.close(prog)  # the link holds the program
            finally:
                os.close(cg)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, cgroup_root: str | None = None) -> SockHook | None:
        """The hook (at the root of the cgroup2 hierarchy unless `cgroup_root` is given), or None where it cannot be
        had (no cgroup2, old kernel, no BPF rights): logged once per process, published ports then work through nft
        DNAT alone."""
        global _warned
        root = cgroup_root or bpf.cgroup2_root()
        try:
            if root is None:
                raise OSError("no cgroup2 hierarchy mounted")
            return cls(root)
        except OSError as e:
            with _warn_lock:
                if not _warned:
                    _warned = True
                    log.warning("published ports: no socket-address hook (%s); host clients go through nft DNAT", e)
            return None

    @property
    def active(self) -> bool:
        return self.services_fd >= 0 and len(self.links) == len(self.ATTACH)

    def sync(self, entries: list[Entry]) -> None:
        """Make `services` hold exactly these entries (sctp and others stay nft-only)."""
        want = {
            service_key(e.host_ip or "0.0.0.0", e.host_port, e.proto): service_value(e.container_ip, e.container_port)
            for e in entries
            if e.proto in PROTO_NUMBERS
        }
        for key in bpf.map_keys(self.services_fd, SERVICE_KEY):
            if key not in want:
                bpf.map_delete(self.services_fd, key)
        for key, value in want.items():
            bpf.map_update(self.services_fd, key, value)
        self.entries = want

    def add(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.proto in PROTO_NUMBERS:
                key = service_key(e.host_ip or "0.0.0.0", e.host_port, e.proto)
                value = service_value(e.container_ip, e.container_port)
                bpf.map_update(self.services_fd, key, value)
                self.entries[key] = value

    def remove(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.proto in PROTO_NUMBERS:
                key = service_key(e.host_ip or "0.0.0.0", e.host_port, e.proto)
                bpf.map_delete(self.services_fd, key)
                self.entries.pop(key, None)

    def ids(self) -> dict[str, int]:
        """Kernel ids (for tests and `bpftool`): services/reverse map ids and each link's program id."""
        out = {"services": bpf.obj_id(self.services_fd), "reverse": bpf.obj_id(self.reverse_fd)}
        for name, fd in self.links.items():
            out[name] = bpf.link_prog_id(fd)
        return out

    def close(self) -> None:
        """Detach (closing the links) and free the maps."""
        for fd in self.links.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.links = {}
        for fd in (self.services_fd, self.reverse_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.services_fd = self.reverse_fd = -1
        self.entries = {}
