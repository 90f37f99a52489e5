"""Container networking: bridges, veths, IPAM, NAT, published ports, DNS for user networks."""
