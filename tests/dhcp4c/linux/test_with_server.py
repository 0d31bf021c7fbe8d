"""Both real transports against the in-process DHCP server, across a veth pair of namespaces.

The client side does by hand what the client's shell does: broadcast transport until bound,
then the unicast transport on the leased address.
"""

from __future__ import annotations

from functools import partial
from ipaddress import IPv4Address, IPv4Interface

import pytest
import trio

from dhcp4c.protocol.message import Message, MessageType
from dhcp4c.protocol.options import OptionCode
from dhcp4c.shell.transport import BroadcastTransport, Transport, UnicastTransport
from dhcp4c.testing.netns import Topology, require_netns
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_udp

pytestmark = pytest.mark.netns

SERVER_ID = IPv4Address("192.0.2.1")
UNSPECIFIED = IPv4Address("0.0.0.0")
XID = 0x1234ABCD


def client_message(
    kind: MessageType,
    mac: bytes,
    *,
    requested: IPv4Address | None = None,
    server_id: IPv4Address | None = None,
    ciaddr: IPv4Address = UNSPECIFIED,
) -> Message:
    options: dict[int, bytes] = {OptionCode.DHCP_MESSAGE_TYPE: bytes([kind])}
    if requested is not None:
        options[OptionCode.REQUESTED_IP_ADDRESS] = requested.packed
    if server_id is not None:
        options[OptionCode.SERVER_IDENTIFIER] = server_id.packed
    return Message(op=1, xid=XID, chaddr=mac, ciaddr=ciaddr, options=options)


async def exchange(transport: Transport, message: Message, to: IPv4Address | None) -> Message:
    await transport.send(message.build(), to)
    with trio.fail_after(5):
        return Message.parse(await transport.receive())


async def test_discover_request_renew() -> None:
    require_netns()
    core = ServerCore(ServerConfig(lease_time=100))
    with Topology("dhcp4ctest") as topology:
        client_ns, server_ns = topology.namespace("client"), topology.namespace("server")
        client_if, server_if = topology.veth(
            client_ns, server_ns, address_b=IPv4Interface(f"{SERVER_ID}/24")
        )
        mac = client_if.hwaddr
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_udp, core, server_if.name, namespace=server_ns))
            with client_ns.entered():
                broadcast = BroadcastTransport(client_if.name)
            async with broadcast:
                offer = await exchange(broadcast, client_message(MessageType.DISCOVER, mac), None)
                assert (offer.message_type, offer.xid) == (MessageType.OFFER, XID)
                request = client_message(
                    MessageType.REQUEST, mac, requested=offer.yiaddr, server_id=SERVER_ID
                )
                ack = await exchange(broadcast, request, None)
                assert (ack.message_type, ack.yiaddr) == (MessageType.ACK, offer.yiaddr)
            assert broadcast.drops == {}
            client_ns.ip("addr", "add", f"{ack.yiaddr}/24", "dev", client_if.name)
            with client_ns.entered():
                unicast = UnicastTransport(client_if.name, ack.yiaddr)
            with unicast:
                renew = client_message(MessageType.REQUEST, mac, ciaddr=ack.yiaddr)
                renewed = await exchange(unicast, renew, SERVER_ID)
                assert (renewed.message_type, renewed.yiaddr) == (MessageType.ACK, ack.yiaddr)
            nursery.cancel_scope.cancel()
