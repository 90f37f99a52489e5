"""--internal networks have no way out, DNS included: the embedded server answers names of the network but does
not forward other queries from the host's namespace (libnetwork's resolver without external access)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from engine.net.service import NetworkService

from .conftest import sh
from .test_user_networks import cid, ip_of, lookup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class _Counting(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.asked: list[str] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        self.asked.append(str(request.q.qname).rstrip("."))
        reply = request.reply()
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.77"), ttl=60))
        return reply


@pytest.fixture
def counting_upstream() -> Iterator[tuple[int, _Counting]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    resolver = _Counting()
    server = DNSServer(resolver, port=port, address="127.0.0.1")
    server.start_thread()
    try:
        yield port, resolver
    finally:
        server.stop()


def test_internal_network_dns_answers_names_and_forwards_nothing(
    svc_factory: tuple[Path, str, dict[str, object]], counting_upstream: tuple[int, _Counting]
) -> None:
    port, upstream = counting_upstream
    _, _, kw = svc_factory
    svc = NetworkService(**{**kw, "dns_upstreams": [("127.0.0.1", port)]})  # type: ignore[arg-type]
    svc.start()
    try:
        internal, outside = f"pst-idns-{secrets.token_hex(2)}", f"pst-odns-{secrets.token_hex(2)}"
        svc.create_network(internal, internal=True)
        svc.create_network(outside)
        a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=internal)
        b = svc.create_sandbox(cid(), name="b", hostname="b", network_mode=internal)
        o = svc.create_sandbox(cid(), name="o", hostname="o", network_mode=outside)
        assert lookup(a.netns_path, "b") == [ip_of(b, internal)]
        assert "default" not in sh(a.netns_path, "ip", "route").stdout
        # a control: a container with a way out gets its query forwarded
        assert lookup(o.netns_path, "out.example.test") == ["192.0.2.77"]
        assert upstream.asked == ["out.example.test"]
        assert lookup(a.netns_path, "leak.example.test") == []
        assert upstream.asked == ["out.example.test"]  # the internal container's query never left
        # once the container also joins a network with a gateway, it has a way out (and a default route)
        svc.connect(a.container_id, outside)
        assert lookup(a.netns_path, "later.example.test") == ["192.0.2.77"]
        assert "default" in sh(a.netns_path, "ip", "route").stdout
    finally:
        svc.destroy()
