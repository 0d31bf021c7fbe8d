"""The broadcast transport: IPv4/UDP over an AF_PACKET socket with a classic BPF filter.

The shell listens on it while the client has no usable address (SELECTING, REQUESTING,
REBOOTING; in INIT, INIT-REBOOT and BOUND no socket is open), opens one to send a message whose
ciaddr is 0 (a DECLINE), and falls back to it when the UDP socket cannot be bound. It sends from
0.0.0.0:68 to 255.255.255.255:67 in a link-layer broadcast (RFC 2131 §4.1) and receives every
reply to port 68 whatever its IP destination (the offered address, or broadcast).

Invariants:
- One socket per transport, opened in the constructor, closed by `close()` / `aclose()`
  (idempotent) or on leaving the `with` / `async with` block; a failing constructor closes it.
- The socket is created with protocol 0 (it receives nothing), the filter is attached, and only
  then is it bound with ETH_P_IP to the interface: no unfiltered packet is ever queued.
- `receive()` returns only payloads that passed `frames.parse_datagram`; everything else is
  dropped and counted in `drops` by reason. Why protocol 0 and `aclose()`: docs/design.md.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections import Counter
from ipaddress import IPv4Address

import trio

from dhcp4c._closing import AsyncClosing
from dhcp4c.linux.bpf import dhcp_client_filter, pack_program
from dhcp4c.linux.frames import LIMITED_BROADCAST, FrameError, build_datagram, parse_datagram

__all__ = ["BroadcastTransport"]

ETH_P_IP = 0x0800
BROADCAST_HWADDR = b"\xff" * 6

# Not all of these are exported by the socket module on every Python version.
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3
SO_ATTACH_FILTER = 26
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_RECEIVE_SIZE = 0x10000  # the largest IPv4 packet, so MSG_TRUNC means a broken frame


def attach_filter(sock: socket.socket, program_bytes: bytes) -> None:
    """Attach a packed classic BPF program to `sock` (SO_ATTACH_FILTER).

    The kernel copies the program during the call, so the buffer only lives until it returns.
    """
    program = ctypes.create_string_buffer(program_bytes, len(program_bytes))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, native layout.
    fprog = struct.pack("@HP", len(program_bytes) // 8, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class BroadcastTransport(AsyncClosing):
    """A packet socket on one interface sending and receiving DHCP client traffic.

    Args:
        ifname: the interface, in the network namespace of the calling thread.

    Raises:
        OSError: when the socket cannot be opened or bound (no such interface, no CAP_NET_RAW).

    Trade-off: the client builds the IP and UDP headers itself (and verifies them on receive)
    instead of using the kernel's UDP stack, because that stack cannot send from 0.0.0.0 nor
    receive datagrams for an address not configured yet.
    """

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.drops: Counter[str] = Counter()
        """Frames dropped by `receive()`, by `FrameError.reason` (and `"truncated_read"`)."""
        self._closed = False
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            attach_filter(sock, pack_program(dhcp_client_filter()))
            # Checksum offload: a packet generated on this host (over veth, say) may arrive with
            # its UDP checksum not computed yet; the kernel says so in the auxiliary data, as
            # systemd-networkd and dhclient rely on.
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((ifname, ETH_P_IP))
        except BaseException:
            sock.close()
            raise
        self._stdlib_socket = sock
        self._socket = trio.socket.from_stdlib_socket(sock)

    async def send(
        self,
        payload: bytes,
        destination: IPv4Address | None = None,
        *,
        hwaddr: bytes | None = None,
    ) -> None:
        """Send one DHCP message from 0.0.0.0:68 to `destination`:67.

        Args:
            payload: the UDP payload.
            destination: the IP destination; None is 255.255.255.255.
            hwaddr: the link-layer destination; None is the link-layer broadcast, which every
                host on the link receives (a unicast IP in a broadcast frame is still accepted by
                the host owning the IP).

        Raises:
            trio.ClosedResourceError: after `close()`.
            OSError: from the kernel (e.g. the interface is down).
        """
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        frame = build_datagram(payload, destination=destination or LIMITED_BROADCAST)
        address = (self.ifname, ETH_P_IP, 0, 0, hwaddr or BROADCAST_HWADDR)
        await self._socket.sendto(frame, address)

    async def receive(self) -> bytes:
        """Return the payload of the next valid UDP datagram to port 68.

        Invalid frames are skipped and counted in `drops`.

        Raises:
            trio.ClosedResourceError: after `close()`, also when closed while waiting.
        """
        while True:
            if self._closed:
                raise trio.ClosedResourceError("transport is closed")
            data, ancdata, msg_flags, _address = await self._socket.recvmsg(
                _RECEIVE_SIZE, socket.CMSG_SPACE(_AUXDATA.size)
            )
            if msg_flags & socket.MSG_TRUNC:
                self.drops["truncated_read"] += 1
                continue
            checksum_ready = True
            for level, kind, value in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= _AUXDATA.size:
                    status = _AUXDATA.unpack_from(value)[0]
                    checksum_ready = not status & TP_STATUS_CSUMNOTREADY
            try:
                datagram = parse_datagram(data, verify_udp_checksum=checksum_ready)
            except FrameError as error:
                self.drops[error.reason] += 1
                continue
            return datagram.payload

    def close(self) -> None:
        """Close the socket; idempotent, also outside Trio.

        A task blocked in `receive()` gets trio.ClosedResourceError.
        """
        if not self._closed:
            self._closed = True
            try:
                self._socket.close()
            except RuntimeError:
                # Outside Trio (a `finally` after trio.run): nobody can be waiting on it.
                self._stdlib_socket.close()

    async def aclose(self) -> None:
        """Close the socket in a worker thread; idempotent.

        Closing a packet socket waits for an RCU grace period in the kernel (`synchronize_net()`
        in `packet_release`), whatever protocol it was opened with; `close()` would stall the
        whole Trio loop for that long, this only the calling task.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        # Wake blocked receivers and take the fd out of Trio's epoll before the thread closes it.
        trio.lowlevel.notify_closing(self._stdlib_socket)
        # Shielded: a cancellation (this is typically called from a `finally`) must not leave the
        # socket open; it is delivered at the caller's next checkpoint instead.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._stdlib_socket.close)
