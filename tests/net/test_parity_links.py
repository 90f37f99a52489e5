"""Legacy links' pure parts against dockerd's texts and its links.Link.ToEnv (ranges of consecutive ports)."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.net import legacy_links


def test_parse_link_as_dockerd() -> None:
    assert legacy_links.parse_link("db:alias") == ("db", "alias")
    assert legacy_links.parse_link("db") == ("db", "db")
    assert legacy_links.parse_link("/db:/web/alias") == ("db", "alias")  # an inspect's form, sent back
    with pytest.raises(InvalidArgument, match=r"^bad format for links: a:b:c$"):
        legacy_links.parse_link("a:b:c")
    with pytest.raises(InvalidArgument, match=r"^empty string specified for links$"):
        legacy_links.parse_link("")


def test_env_ranges_gaps_and_protocol_order() -> None:
    env = legacy_links.link_env("/web/my-db", "10.0.0.2", ["HOME=/root", "PATH=/bin", "A=b=c", "junk"],
                                ["82/tcp", "90/tcp", "80/tcp", "81/tcp", "54/udp", "53/udp"])
    p = "MY_DB_PORT"
    assert env == [
        f"{p}=tcp://10.0.0.2:80",
        f"{p}_80_TCP=tcp://10.0.0.2:80", f"{p}_80_TCP_ADDR=10.0.0.2", f"{p}_80_TCP_PORT=80", f"{p}_80_TCP_PROTO=tcp",
        f"{p}_81_TCP=tcp://10.0.0.2:81", f"{p}_81_TCP_ADDR=10.0.0.2", f"{p}_81_TCP_PORT=81", f"{p}_81_TCP_PROTO=tcp",
        f"{p}_82_TCP=tcp://10.0.0.2:82", f"{p}_82_TCP_ADDR=10.0.0.2", f"{p}_82_TCP_PORT=82", f"{p}_82_TCP_PROTO=tcp",
        f"{p}_90_TCP=tcp://10.0.0.2:90", f"{p}_90_TCP_ADDR=10.0.0.2", f"{p}_90_TCP_PORT=90", f"{p}_90_TCP_PROTO=tcp",
        # the gap before 90 closes the 80-82 range
        f"{p}_80_TCP_START=tcp://10.0.0.2:80", f"{p}_80_TCP_PORT_START=80",
        f"{p}_80_TCP_END=tcp://10.0.0.2:82", f"{p}_80_TCP_PORT_END=82",
        f"{p}_53_UDP=udp://10.0.0.2:53", f"{p}_53_UDP_ADDR=10.0.0.2", f"{p}_53_UDP_PORT=53", f"{p}_53_UDP_PROTO=udp",
        f"{p}_54_UDP=udp://10.0.0.2:54", f"{p}_54_UDP_ADDR=10.0.0.2", f"{p}_54_UDP_PORT=54", f"{p}_54_UDP_PROTO=udp",
        # the last port ends the udp range
        f"{p}_53_UDP_START=udp://10.0.0.2:53", f"{p}_53_UDP_PORT_START=53",
        f"{p}_53_UDP_END=udp://10.0.0.2:54", f"{p}_53_UDP_PORT_END=54",
        "MY_DB_NAME=/web/my-db",
        "MY_DB_ENV_A=b=c",
    ]
    assert legacy_links.link_env("/w/x", "10.0.0.3", [], []) == ["X_NAME=/w/x"]


def test_endpoint_aliases() -> None:
    assert legacy_links.endpoint_aliases(["db:Store", "cache", "bad:a:b"]) == {"store": "db", "cache": "cache"}
    assert legacy_links.endpoint_aliases(None) == {}
