"""Container networking: bridges, veths, IPAM, nftables NAT and published ports, DNS for user networks."""

from engine.net.ports import parse_port_spec, parse_port_specs
from engine.net.service import NetworkService, Sandbox

__all__ = ["NetworkService", "Sandbox", "parse_port_spec", "parse_port_specs"]
