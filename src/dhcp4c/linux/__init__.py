"""Linux plumbing: how DHCP gets on and off the wire, and how the kernel is told about leases.

IPv4/UDP framing (`frames`) and the classic BPF filter (`bpf`), both pure; the packet socket
(`packet`: `BroadcastTransport`) and the UDP socket (`udp`: `UnicastTransport`); rtnetlink with
pyroute2's messages on a Trio socket (`rtnl`); interface facts read by ioctl (`interface`:
hardware address, MTU, link type, carrier); the watch of one link (`linkwatch`) and of every
link of a namespace (`links`); entering network namespaces (`netns`).

Invariant: nothing here makes a protocol decision; `rtnl` (and with it pyroute2) is imported only
where the kernel side starts.
"""
