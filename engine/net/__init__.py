"""Container networking: bridges, veths, IPAM, nftables NAT and published ports, DNS for user networks.

Reference (moved from docs/architecture.md): Network API

`engine/net` (package exports `NetworkService`, `Sandbox`, `check_port_bindings`, `parse_port_spec`,
`parse_port_specs`). Every method blocks (netlink, nft, fsync) and is thread-safe: call it from a worker thread in
async code (`await asyncio.to_thread(svc.create_sandbox, ...)`). Errors are `engine.errors` classes with Docker's texts.

```python
svc = NetworkService(data_root, exec_root, *, default_bridge="portside0", nft_table="portside",
                     default_subnet=None,        # None: first of Docker's pools overlapping no host route
                     name_prefix=None,           # interface prefix; "pst" automatically when default_bridge is pst*
                     enable_ip_forward=True,     # sets net.ipv4.ip_forward=1 as dockerd does (tests: False)
                     host_resolv_conf=Path("/etc/resolv.conf"),
                     dns_upstreams=None,         # [(ip, port)] for the embedded DNS; None: host's resolvers
                     mtu=1500,
                     host_id=None,               # the engine id: seeds the IPv6 ULA pool (None: the data root)
                     socket_hook=True)           # host clients of published ports connect straight to the
                                                 # container (sockhook.py); False: nft DNAT only
svc.start(running=None)   # load records, ensure bridge/host/none + nft table, reconcile the kernel. `running`:
                          # ids of running containers; sandboxes of others are removed (None: keep live netns)
svc.close()               # stop engine threads (DNS), detach the socket hook; the rest of the kernel state stays
                          # so running containers keep working (published ports through nft DNAT)
svc.destroy()             # remove every sandbox, network, bridge and the nft table (tests, uninstall)

# networks: dicts in Docker's /networks inspect shape
svc.create_network(name, *, driver="bridge", subnet=None, gateway=None, ip_range=None, aux_addresses=None,
                   internal=False, attachable=False, ingress=False, enable_ipv6=False, labels=None, options=None,
                   ipam_options=None, scope="", config_only=False, config_from="", check_duplicate=True,
                   subnet6=None, gateway6=None, ip_range6=None, aux_addresses6=None) -> dict
   # libnetwork's checks and texts (ValidateIPAM's "invalid network config:" list, config-only/config-from rules);
   # inspect shows the IPAM config as given (no Gateway when only a subnet was), IPAM Options as sent (null
   # without IPAM), Config null for host/none. A config-only network (Driver "null") holds IPAM, options and labels
   # for --config-from networks: no bridge, no endpoints, kept by prune, not removable while used.
   # --internal: no gateway and no default route in the container, forward drops off the bridge, and the embedded
   # DNS forwards nothing for a container with no way out (libnetwork's resolver without external access).
   # IPv6 (enable_ipv6, subnet6/gateway6/ip_range6/aux_addresses6; the API splits IPAM pools by family as
   # dockerd's getIpamConfig does): the pool as given, else the next /64 of a ULA /48 derived from host_id (the
   # engine id; dockerd 27+'s deriveULABaseNetwork). The bridge gets the IPv6 gateway (no DAD) with
   # disable_ipv6=0 for that bridge alone, so a host with IPv6 off by sysctl keeps it off elsewhere; each
   # container its IPv6 address (IPAMConfig.IPv6Address honoured), a ::/0 route via the gateway (none on
   # --internal), a hosts line and AAAA answers from the embedded DNS. An `ip6` nft table of the same name
   # masquerades out and isolates internal networks and bridges; egress also needs net.ipv6.conf.all.forwarding,
   # set (as dockerd does) only with enable_ip_forward. No IPv6 port publishing. Without enable_ipv6 an IPv6 pool
   # is kept and shown unchecked, and asked IPv6 addresses are kept in IPAMConfig but not assigned (dockerd 28).
   # Inspect lists IPAM Config as dockerd 28's buildIPAMResources: configured IPv4, configured IPv6, then the
   # allocated pool of a family nobody configured (dockerd 20.10 put IPv4 first).
# MAC addresses: engine/api/networks.container_networking() applies dockerd's handleMACAddressBC at container create
# (API < 1.44: Config.MacAddress is the primary endpoint's; from 1.44 it moves there, with dockerd's warning) and
# validates every endpoint's MAC (Go's ParseMAC forms; "invalid config for network X: invalid MAC address Y");
# Config.MacAddress keeps the primary endpoint's asked MAC, as dockerd's inspect shows; the interface gets it in
# lower-case colon form (else 02:42 + the IPv4 address).
# Legacy links (engine/net/legacy_links.py, pure functions over container records): HostConfig.Links are checked at
# create (engine/api/networks.check_container_links: dockerd's registerLinks and texts) and kept on the parent's
# record (_portside.Links, shown "/child:/parent/alias"); at start runner.py takes legacy_links.for_start(): the
# ALIAS_* variables (links.ToEnv) into the spec's env and the hosts lines into create_sandbox(link_hosts=), which
# the service rewrites when the child gets a new address and on DELETE /containers/parent/alias?link=1
# (svc.set_link_hosts). An endpoint's Links on a user network are DNS aliases for that container only.
svc.list_networks(filters=None) -> list[dict]  # filters: name (substring), id (prefix), driver, type, label, scope;
                                               # Containers {} in each, as dockerd lists (inspect fills them)
svc.inspect(id_or_name_or_id_prefix) -> dict
svc.remove(id_or_name)                           # 403 predefined / active endpoints, 404 unknown
svc.prune(filters=None) -> {"NetworksDeleted": [names]}

# a container's network: create right before the container process starts, remove after it exits
sb = svc.create_sandbox(container_id, *, name, hostname, domainname="", network_mode="bridge",
        endpoints=None,          # {network name/id: {"Aliases": [...], "IPAMConfig": {"IPv4Address": ...},
                                 #                    "MacAddress": ...}}  (EndpointsConfig of the create body)
        port_bindings=None,      # HostConfig.PortBindings {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
        publish_all=False, exposed_ports=(),   # -P and Config.ExposedPorts keys ("80/tcp")
        dns=None, dns_search=None, dns_options=None, extra_hosts=None) -> Sandbox
   # network_mode: "bridge"/"default", "host", "none", "container:<container id>" (the daemon resolves NAME to
   # the id of a container that has a sandbox), or a user network's name/id.
   # Published ports are live (kernel DNAT, and the socket hook's map) when create_sandbox returns.
svc.prepare_sandbox(container_id) -> (netns path, files dir)   # optional, first: the netns (lo up) and empty
        # /etc files alone, so the runtime can set the container up while create_sandbox (which takes them over)
        # makes the rest; svc.discard_prepared(container_id) drops them when no sandbox took them
sb.netns_path        # Path of the pinned netns to join (setns) before exec; None = host netns
sb.hosts_path, sb.resolv_conf_path, sb.hostname_path   # files to bind-mount at /etc/hosts, /etc/resolv.conf,
                                                        # /etc/hostname (rewritten in place on connect/disconnect)
sb.network_settings  # NetworkSettings in Docker's inspect shape (Networks, Ports, IPAddress, Gateway, ...)
svc.sandbox(container_id) -> Sandbox                    # the same view later (e.g. after an engine restart)
svc.connect(container_id, network, endpoint_config=None) -> Sandbox
svc.disconnect(container_id, network, force=False) -> Sandbox
svc.remove_sandbox(container_id)                        # idempotent; leaves no netns, rule or file; the veth
                                                        # goes with the netns (the kernel destroys the pair)
svc.network_stats(container_id) -> {"eth0": {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_..."}}
parse_port_specs(["127.0.0.1:8080:80/tcp", ...]) -> (PortBindings, exposed keys)   # the CLI's -p grammar
check_port_bindings(HostConfig.PortBindings, Config.ExposedPorts keys)  # at container create: 400 with dockerd's
                                                  # text ('invalid port specification: "80/bogus"'), as dockerd does
```

How it is built: pinned netns files `<exec_root>/netns/<id>` (made with unshare+bind mount in a thread); a veth pair is made and configured by one thread (host end with an
IPRoute of the host's netns, then setns and the peer's address, link and default route by ioctl, `ifconf.py`; an
IPv6 endpoint's with a second IPRoute); veths and
bridges through pyroute2, each carrying the interface alias `portside <nft_table> ...`; one nftables table
(`portside`) rendered whole from the records and swapped atomically on each change (DNAT for published ports in
prerouting and output, so 127.0.0.1 works through `route_localnet` on the bridge; masquerade for egress, loopback
sources and hairpin; drop rules for internal networks and between bridges; a raw-priority prerouting drop of
anything for 127.0.0.0/8 arriving on a bridge, since route_localnet would let a container's crafted packet reach a
127.0.0.1-bound published port or a host service bound to loopback); the embedded DNS server listens inside
each user-network container's netns on 127.0.0.11 (random ports, DNATed from :53 by a small nft table in that
netns) and answers container names, aliases and short ids on shared networks, forwarding the rest from the host's
namespace. Host ports: a fixed HostPort is refused with dockerd's texts when this engine already publishes it
(`Bind for IP:PORT failed: port is already allocated`, also when another portside engine's table DNATs it) or a
host process holds it (`Error starting userland proxy: listen tcp4 IP:PORT: bind: address already in use`, as
dockerd 20.10's proxy says); an empty HostPort takes the next port from the ephemeral range that no engine table
DNATs and the host could bind (a bind test per candidate). A container's DNAT rules are added to (and deleted by handle from) the live `published` chain on run/remove,
so the run path avoids a whole-table swap (base-chain hooks re-registered, ~20 ms of RCU waits); network
changes and start() still render the table whole. Host clients of published ports skip the DNAT: `sockhook.py`
attaches BPF_PROG_TYPE_CGROUP_SOCK_ADDR programs (hand-assembled, `engine/bpf.py`) at the root of the cgroup2
hierarchy (/sys/fs/cgroup/unified on this hybrid host) with BPF_LINK_CREATE: connect4 (TCP, UDP connect) and
sendmsg4 (UDP) look the destination up in a hash map (published ip, port, protocol) -> (container ip, port), also
as (0.0.0.0, port) when the destination is in 127.0.0.0/8 (other local addresses of a 0.0.0.0 port stay with nft),
and rewrite it, so the socket is connected to the container itself and no packet is NATed; they remember (socket
cookie, container address) -> the asked address in an LRU map, from which getpeername4 and recvmsg4 (UDP sources)
show the published address. Only sockets of the engine's own netns are touched (bpf_get_netns_cookie against
SO_NETNS_COOKIE), so containers' connects and hairpin go through nft as before. The map mirrors the DNAT rules
(added/removed with them, synced whole with each table render); the links live as long as the engine's fds, so a
killed engine leaves nothing attached (nft DNAT serves meanwhile) and a restarted one makes new programs and fills
the map from its records; several engines each attach their own (links on a cgroup always combine; the kernel
allows 64 programs per cgroup and attach type, so the 65th live engine falls back to nft). Where the hook
cannot be had (no cgroup2, old kernel, no BPF rights) it is logged once and nft serves everything; a failing map
update drops the hook whole rather than keep entries that may be stale. nft scripts run through libnftables in-process (the `nft` command is the fallback). Bridge ports are in
hairpin mode so a container can reach its own published port. remove_sandbox unpins the netns and leaves the veth pair to the kernel, which destroys it with the namespace
once unused (deleting it through netlink waited ~30 ms for RCU grace periods; now ~2 ms); failure paths still
delete synchronously so a failed create leaves nothing. `start()` reconciles: recreates lost bridges (and
puts surviving veths back on them) and lost veths of live sandboxes, deletes links carrying our alias that no
record owns and netns files no sandbox owns, drops sandboxes whose netns is gone or whose container is not in
`running`, and re-renders the table (the same rules in the same order, so nothing is ever duplicated). Records:
`<data_root>/network/networks/<id>.json` (address reservations rewritten on each run without fsync: start()
rebuilds them from the sandbox records), `<data_root>/network/sandboxes/<id>.json` (atomic, not fsynced: they
describe kernel state that a power loss takes with it, and a crashed engine's page cache keeps them), files in
`<data_root>/network/files/<id>/`.
"""

from engine.net.ports import check_port_bindings, parse_port_spec, parse_port_specs
from engine.net.service import NetworkService, Sandbox

__all__ = ["NetworkService", "Sandbox", "check_port_bindings", "parse_port_spec", "parse_port_specs"]
