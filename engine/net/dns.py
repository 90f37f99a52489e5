"""The embedded DNS server of user networks, answering at 127.0.0.11 inside each container.

As Docker does: the engine opens a UDP and a TCP socket *inside* the container's netns on 127.0.0.11 at random
ports, and an nftables table in that netns DNATs 127.0.0.11:53 to them (so a DNS server of the container's own on
port 53 still works). Names of containers and aliases on the asker's user networks are answered from the engine's
records; everything else is forwarded to the upstream resolvers from the host's namespace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnslib import AAAA, QTYPE, RR, A, DNSRecord

from engine.net import nft, nsutil

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.11"
NFT_TABLE = "portside_dns"
TTL = 600


@dataclass
class _Listener:
    cid: str
    netns: Path
    udp: socket.socket
    tcp: socket.socket
    upstreams: list[str]


class DnsServer:
    def __init__(self, upstreams: list[tuple[str, int]]) -> None:
        self.upstreams = upstreams
        self.listeners: dict[str, _Listener] = {}
        self.sel = selectors.DefaultSelector()
        self.pending: list[tuple[str, _Listener | None]] = []
        self.plock = threading.Lock()
        self.rfd, self.wfd = os.pipe()
        self.sel.register(self.rfd, selectors.EVENT_READ, None)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="portside-dns")
        self.service: Any = None
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="portside-dns", daemon=True)
        self.thread.start()

    # ---------------------------------------------------------------- membership

    def sync(self, service: Any) -> None:
        """Listen in every sandbox on a user network, stop listening in the others. Called with the service lock."""
        self.service = service
        want = {cid: (ns, ups) for cid, ns, _nets, ups in service.dns_view()}
        for cid in [c for c in self.listeners if c not in want]:
            self._queue(cid, None)
        for cid, (ns, ups) in want.items():
            if cid in self.listeners:
                continue
            try:
                self._queue(cid, self._open(cid, ns, ups))
            except Exception:
                log.exception("embedded DNS for %s", cid[:12])

    def _open(self, cid: str, ns: Path, upstreams: list[str]) -> _Listener:
        def make() -> tuple[socket.socket, socket.socket]:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                u.bind((ADDRESS, 0))
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                t.bind((ADDRESS, 0))
                t.listen(64)
            except BaseException:
                u.close()
                t.close()
                raise
            return u, t

        u, t = nsutil.run_in_netns(ns, make)
        try:
            up, tp = u.getsockname()[1], t.getsockname()[1]
            script = (
                f"table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"
                f"table ip {NFT_TABLE} {{\n chain output {{\n  type nat hook output priority -100; policy accept;\n"
                f"  ip daddr {ADDRESS} udp dport 53 dnat to {ADDRESS}:{up}\n"
                f"  ip daddr {ADDRESS} tcp dport 53 dnat to {ADDRESS}:{tp}\n }}\n}}\n"
            )
            nft.nft(script, str(ns))
        except BaseException:
            u.close()
            t.close()
            raise
        u.setblocking(False)
        t.setblocking(False)
        return _Listener(cid, ns, u, t, upstreams)

    def _queue(self, cid: str, listener: _Listener | None) -> None:
        with self.plock:
            self.pending.append((cid, listener))
        os.write(self.wfd, b"x")

    def close(self) -> None:
        self.stopping = True
        os.write(self.wfd, b"x")
        self.thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)
        for li in self.listeners.values():
            li.udp.close()
            li.tcp.close()
        self.listeners.clear()
        self.sel.close()
        os.close(self.rfd)
        os.close(self.wfd)

    # ---------------------------------------------------------------- serving

    def _loop(self) -> None:
        while not self.stopping:
            for key, _ in self.sel.select(timeout=1.0):
                if key.data is None:
                    os.read(self.rfd, 4096)
                    self._apply_pending()
                    continue
                kind, li = key.data
                try:
                    if kind == "udp":
                        data, addr = li.udp.recvfrom(4096)
                        self.pool.submit(self._answer_udp, li, data, addr)
                    else:
                        conn, _ = li.tcp.accept()
                        self.pool.submit(self._answer_tcp, li, conn)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    log.debug("dns socket error", exc_info=True)

    def _apply_pending(self) -> None:
        with self.plock:
            items, self.pending = self.pending, []
        for cid, li in items:
            old = self.listeners.pop(cid, None)
            if old is not None:
                for s in (old.udp, old.tcp):
                    self.sel.unregister(s)
                    s.close()
            if li is not None:
                self.listeners[cid] = li
                self.sel.register(li.udp, selectors.EVENT_READ, ("udp", li))
                self.sel.register(li.tcp, selectors.EVENT_READ, ("tcp", li))

    def _answer_udp(self, li: _Listener, data: bytes, addr: Any) -> None:
        reply = self.answer(li, data, tcp=False)
        if reply:
            with contextlib.suppress(OSError):
                li.udp.sendto(reply, addr)

    def _answer_tcp(self, li: _Listener, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            head = _recv_exact(conn, 2)
            (n,) = struct.unpack("!H", head)
            reply = self.answer(li, _recv_exact(conn, n), tcp=True)
            if reply:
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def answer(self, li: _Listener, data: bytes, tcp: bool) -> bytes | None:
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        q = req.q
        qname = str(q.qname).rstrip(".")
        addrs = self.service.resolve_name(li.cid, qname) if self.service is not None else []
        if addrs:
            reply = req.reply()
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                for a in addrs:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(a), ttl=TTL))
            if q.qtype in (QTYPE.AAAA, QTYPE.ANY) and self.service is not None:
                # a known name without an IPv6 address answers AAAA empty (NOERROR), as libnetwork's resolver does,
                # rather than asking upstream servers about a container
                for a in self.service.resolve_name(li.cid, qname, v6=True):
                    reply.add_answer(RR(q.qname, QTYPE.AAAA, rdata=AAAA(a), ttl=TTL))
            return bytes(reply.pack())
        if self.service is not None and not self.service.has_external_access(li.cid):
            # libnetwork's resolver does not forward from the host's namespace for a container with no way out
            # (only internal networks): that would be a path out of an --internal network
            return _servfail(data)
        return self._forward(li, data, tcp)

    def _forward(self, li: _Listener, data: bytes, tcp: bool) -> bytes | None:
        ups = [(s, 53) for s in li.upstreams] or self.upstreams
        for host, port in ups:
            try:
                if tcp:
                    with socket.create_connection((host, port), timeout=3) as s:
                        s.sendall(struct.pack("!H", len(data)) + data)
                        (n,) = struct.unpack("!H", _recv_exact(s, 2))
                        return _recv_exact(s, n)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(3)
                    s.connect((host, port))  # connected: an ICMP "port unreachable" fails fast
                    s.send(data)
                    return s.recv(65535)
            except (OSError, ValueError):
                continue
        return _servfail(data)


def _servfail(data: bytes) -> bytes | None:
    try:
        reply = DNSRecord.parse(data).reply()
        reply.header.rcode = 2  # SERVFAIL
        return bytes(reply.pack())
    except Exception:
        return None


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ValueError("short read")
        buf += chunk
    return buf
