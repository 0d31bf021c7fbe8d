"""A DHCP packet capture on one interface of a test namespace (a small tcpdump for assertions).

    with Capture(server_ns, "veth1b") as capture:
        ...
        requests = capture.dhcp(MessageType.REQUEST)
        assert requests[0].source == leased_address and requests[0].message.giaddr == ZERO

It owns one AF_PACKET socket (cooked, `SOCK_DGRAM`, every protocol so that outgoing frames show
too) created inside the namespace and bound to the interface, and one thread reading it into
`packets`. Only UDP datagrams to or from the DHCP ports (67, 68) that parse as DHCP messages are
kept, with the IP and UDP header fields a test asserts on (who sent it, to whom, relayed or
not). Both directions are seen; `outgoing` tells them apart.

Invariants: the socket lives in the namespace it was created in and is closed by `close()`
(also on `__exit__`); the reader thread ends within its poll interval after that. Reading the
list while the thread appends is safe (`list.append` is atomic); `wait_for` polls it. Nothing is
ever sent.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from types import TracebackType

from dhcp4c.protocol.message import Message, MessageError, MessageType
from dhcp4c.testing.netns import Namespace

__all__ = ["Capture", "CapturedPacket"]

_ETH_P_ALL = 0x0003  # only taps of every protocol see outgoing frames (dev_queue_xmit_nit)
_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_DHCP_PORTS = (67, 68)
_POLL = 0.05


@dataclass(frozen=True)
class CapturedPacket:
    """One DHCP datagram seen on the interface.

    Attributes:
        time: `time.monotonic()` when it was read.
        outgoing: sent from this interface (else received on it).
        source, destination: the IP addresses.
        source_port, destination_port: the UDP ports.
        ttl: the IP time to live (one less per router on the way).
        message: the DHCP message.
    """

    time: float
    outgoing: bool
    source: IPv4Address
    destination: IPv4Address
    source_port: int
    destination_port: int
    ttl: int
    message: Message

    @property
    def broadcast(self) -> bool:
        """Sent to the limited broadcast address."""
        return self.destination == IPv4Address("255.255.255.255")


def _parse(data: bytes) -> tuple[IPv4Address, IPv4Address, int, int, int, bytes] | None:
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != socket.IPPROTO_UDP:
        return None
    header = (data[0] & 0x0F) * 4
    if struct.unpack_from("!H", data, 6)[0] & 0x3FFF:
        return None  # a fragment: DHCP messages are never fragmented here
    if len(data) < header + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", data, header)
    if sport not in _DHCP_PORTS and dport not in _DHCP_PORTS:
        return None
    payload = data[header + 8 : header + max(8, length)]
    return IPv4Address(data[12:16]), IPv4Address(data[16:20]), sport, dport, data[8], payload


class Capture:
    """Capture DHCP datagrams on `ifname` inside `namespace` until closed.

    Args:
        namespace: the namespace holding the interface (one created by a `Topology`).
        ifname: the interface.

    Raises:
        OSError: no such interface, or no CAP_NET_RAW.

    Trade-off: a thread and a Python parser instead of tcpdump keep the test free of one more
    system package and give parsed messages; it sees only what the kernel hands the socket after
    it was opened.
    """

    def __init__(self, namespace: Namespace, ifname: str) -> None:
        self.namespace = namespace
        self.ifname = ifname
        self.packets: list[CapturedPacket] = []
        self._sock = namespace.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_ALL))
        try:
            self._sock.bind((ifname, _ETH_P_ALL))
            self._sock.settimeout(_POLL)
        except BaseException:
            self._sock.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{ifname}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if address[1] != _ETH_P_IP:
                continue
            parsed = _parse(data)
            if parsed is None:
                continue
            source, destination, sport, dport, ttl, payload = parsed
            with contextlib.suppress(MessageError):
                message = Message.parse(payload)
                self.packets.append(
                    CapturedPacket(
                        time.monotonic(),
                        address[2] == _PACKET_OUTGOING,
                        source,
                        destination,
                        sport,
                        dport,
                        ttl,
                        message,
                    )
                )

    def dhcp(self, kind: MessageType | None = None, *, since: float = 0.0) -> list[CapturedPacket]:
        """The packets so far (of message type `kind`, read at or after `since`)."""
        return [
            p
            for p in list(self.packets)
            if p.time >= since and (kind is None or p.message.message_type is kind)
        ]

    def wait_for(
        self, predicate: Callable[[CapturedPacket], bool], timeout: float
    ) -> CapturedPacket:
        """The first packet matching `predicate`, waiting up to `timeout` seconds for it.

        Raises:
            AssertionError: none within `timeout` (the message lists what was seen).
        """
        deadline = time.monotonic() + timeout
        while True:
            for packet in list(self.packets):
                if predicate(packet):
                    return packet
            if time.monotonic() > deadline:
                seen = [
                    (
                        p.message.message_type,
                        str(p.source),
                        str(p.destination),
                        str(p.message.giaddr),
                    )
                    for p in self.packets
                ]
                raise AssertionError(f"no matching packet on {self.ifname} in {timeout} s: {seen}")
            time.sleep(0.01)

    def close(self) -> None:
        """Stop capturing; idempotent."""
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
