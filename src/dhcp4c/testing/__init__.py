r"""The test kit for embedders: test an agent that runs `dhcp4c.Client` without root or a network.

Public and installed, kept as stable as the client. `memory`: an in-memory broadcast domain
(`MemoryNetwork`) whose links open transports for the client, with per-direction faults (loss,
delay, reordering, rewriting) drawn from a seeded `random.Random`. `server`: a sans-IO DHCP
server (`ServerCore`, configured by `ServerConfig`, misbehaving on demand); `server_net` runs it
on a memory endpoint (`serve_memory`) or a UDP socket in a namespace (`serve_udp`). `netns`:
private network namespaces and veth pairs, always removed; `dnsmasq`: a real server in one.
On the memory network everything runs on Trio's clock, so a day of leases passes in no time
under `autojump_clock` (pytest-trio), deterministically:

    async def test_agent_renews(autojump_clock):
        net = MemoryNetwork(random.Random(0))
        link = net.attach(b"\x02\x00\x00\x00\x00\x01")
        config = ServerConfig(lease_time=600)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_memory, ServerCore(config), net.server(config.server_id))
            client = Client("eth0", hwaddr=link.hwaddr, rng=random.Random(0),
                            transport_factory=lambda interface, address: link.open())
            nursery.start_soon(client.run)
            lease = await client.wait_bound()
            await trio.sleep(3600)  # six lease times on the mock clock
            assert client.lease is not None and client.lease.obtained > lease.obtained
            nursery.cancel_scope.cancel()
"""
