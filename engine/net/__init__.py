"""Container networking: bridges, veths, IPAM, nftables NAT and published ports, DNS for user networks."""

from engine.net.ports import check_port_bindings, parse_port_spec, parse_port_specs
from engine.net.service import NetworkService, Sandbox

__all__ = ["NetworkService", "Sandbox", "check_port_bindings", "parse_port_spec", "parse_port_specs"]
