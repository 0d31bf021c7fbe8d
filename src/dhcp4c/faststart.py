"""The command's first exchange, synchronous and before trio is imported.

Importing trio takes ~80 ms, while a DHCP exchange on a quiet link takes about a millisecond: a
command that waits for it before sending its DISCOVER puts the address on the interface 3-5x
later than it could. This module runs the first exchange with the standard
library only (an AF_PACKET socket, `select`), drives the same sans-IO `dhcp4c.machine.Machine` as
the Trio client, and adds the leased address with `dhcp4c.rtnl`. The Trio client then starts from
that lease in BOUND (`Client(..., bound_lease=...)`), so the protocol goes on without a second
DISCOVER; `dhcp4c.netconfig` (routes, MTU, resolv.conf, lease file) comes after the address.

Invariants:
- The clock is `time.perf_counter()`: the Lease returned has its times on it. Trio's clock is
  perf_counter plus a random offset (`trio._core._run.SystemClock`), so the caller shifts the
  lease by `trio.current_time() - time.perf_counter()`, measured once inside `trio.run`.
- The socket is opened like `BroadcastTransport` (protocol 0, filter attached, then bound with
  ETH_P_IP: no unfiltered packet is queued) and always closed (in a thread, see `exchange`).
- Nothing here is needed for correctness: on any failure or when the budget runs out `exchange`
  returns None and the command takes its normal path from INIT, as if this never ran.
"""

from __future__ import annotations

import ctypes
import logging
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from dhcp4c.lease import Lease
from dhcp4c.machine import LeaseBound, Machine, MachineConfig, Send
from dhcp4c.message import Message, MessageError
from dhcp4c.transport.bpf import dhcp_client_filter, pack_program
from dhcp4c.transport.ipudp import LIMITED_BROADCAST, FrameError, build_datagram, parse_datagram

__all__ = ["clock", "exchange"]

logger = logging.getLogger("dhcp4c.faststart")

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3
SO_ATTACH_FILTER = 26
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_RECEIVE_SIZE = 0x10000
_BROADCAST_HWADDR = b"\xff" * 6

clock = time.perf_counter
"""The clock of the leases `exchange` returns (see the module's invariants)."""


def _open(ifname: str) -> socket.socket:
    # The same steps as dhcp4c.transport.packet.BroadcastTransport, whose module imports trio.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        program_bytes = pack_program(dhcp_client_filter())
        program = ctypes.create_string_buffer(program_bytes, len(program_bytes))
        fprog = struct.pack("@HP", len(program_bytes) // 8, ctypes.addressof(program))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.bind((ifname, ETH_P_IP))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _receive(sock: socket.socket) -> bytes | None:
    """One UDP payload to port 68, or None (nothing queued, or a frame to drop)."""
    try:
        data, ancdata, flags, _address = sock.recvmsg(
            _RECEIVE_SIZE, socket.CMSG_SPACE(_AUXDATA.size)
        )
    except BlockingIOError:
        return None
    if flags & socket.MSG_TRUNC:
        return None
    checksum_ready = True
    for level, kind, value in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= _AUXDATA.size:
            checksum_ready = not _AUXDATA.unpack_from(value)[0] & TP_STATUS_CSUMNOTREADY
    try:
        return parse_datagram(data, verify_udp_checksum=checksum_ready).payload
    except FrameError:
        return None


def exchange(
    ifname: str,
    config: MachineConfig,
    *,
    budget: float,
    rng: random.Random | None = None,
    apply: Callable[[Lease], None] | None = None,
) -> Lease | None:
    """Get a lease from INIT on `ifname`, synchronously, within `budget` seconds.

    Args:
        ifname: the interface (in the calling thread's network namespace).
        config: the machine configuration the Trio client will use.
        budget: give up after this many seconds (the first DISCOVER's retransmission interval
            is a good budget: past it the link is not quiet and the normal path does as well).
        rng: randomness for the machine (xid, jitter).
        apply: called with the lease as soon as it is bound (to add the address); an exception
            from it makes the result None.

    Returns:
        The bound lease with its times on `clock`, or None (no lease within the budget, or an
        error, logged at debug level).

    Trade-off: this blocks the process for up to `budget`; before trio is imported nothing else
    could run anyway.
    """
    start = clock()
    end = start + budget
    try:
        sock = _open(ifname)
    except OSError as error:
        logger.debug("%s: fast start: cannot open the packet socket: %s", ifname, error)
        return None
    try:
        machine = Machine(config, rng=rng or random.Random())
        machine.start(start)
        while True:
            for action in machine.pop_actions():
                if isinstance(action, Send):
                    destination = action.destination or LIMITED_BROADCAST
                    frame = build_datagram(action.message.build(), destination=destination)
                    sock.sendto(frame, (ifname, ETH_P_IP, 0, 0, _BROADCAST_HWADDR))
                elif isinstance(action, LeaseBound):
                    if apply is not None:
                        apply(action.lease)
                    return action.lease
            now = clock()
            deadline = machine.next_deadline()
            wake = end if deadline is None else min(deadline, end)
            if now >= end:
                logger.debug("%s: fast start: no lease within %g s", ifname, budget)
                return None
            if deadline is not None and now >= deadline:
                machine.handle_timer(now)
                continue
            readable, _, _ = select.select([sock], [], [], max(0.0, wake - now))
            if not readable:
                continue
            while (payload := _receive(sock)) is not None:
                try:
                    message = Message.parse(payload)
                except MessageError:
                    continue
                machine.receive(message, clock())
                if machine.lease is not None:
                    break
    except Exception as error:  # never fatal: the normal path starts over
        logger.debug("%s: fast start failed: %r", ifname, error)
        return None
    finally:
        # Closing a packet socket waits for an RCU grace period (~10 ms, see
        # dhcp4c.transport.packet): let a thread wait for it while the command imports trio.
        threading.Thread(target=sock.close, name="faststart-close", daemon=True).start()
