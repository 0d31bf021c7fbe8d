"""The systemd notification protocol (sd_notify(3)): READY=1, STATUS=, STOPPING=1.

This module owns telling a service manager how the command is doing: one datagram of
newline-separated `KEY=VALUE` assignments on an AF_UNIX SOCK_DGRAM socket named by
`$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`). Invariants:

- Without `$NOTIFY_SOCKET` (not run by systemd, or not `Type=notify`) every call is a no-op.
- Sending never blocks and never raises: the socket is non-blocking and a failure is logged once
  per kind of failure; a service manager that cannot be told must not stop the client.
- A value never carries a newline or control character (a `STATUS=` built from lease data cannot
  inject `READY=1` or `MAINPID=`): they are replaced by spaces.

Not from PyPI: its sd_notify packages are untyped and unmaintained, asyncio-only or a C build, for
one `sendto`; this one needs only the standard library (usable before trio is imported).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trio

    from dhcp4c.shell.observe import LeaseEvent

__all__ = ["Notifier", "lease_status", "report"]

logger = logging.getLogger(__name__)

_ENV = "NOTIFY_SOCKET"
# sd_notify's message limit is what the socket takes; keep STATUS lines short and readable.
_MAX_STATUS = 200


def _clean(value: str, limit: int | None = None) -> str:
    text = "".join(c if c.isprintable() else " " for c in value)
    return text if limit is None else text[:limit]


def _address(raw: str) -> str | None:
    """The socket address `raw` names, or None when it is no address we can use."""
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # e.g. vsock: addresses (virtual machines), which this client does not need


class Notifier:
    """A sender of sd_notify messages to one service manager socket.

    Args:
        address: the `$NOTIFY_SOCKET` value; None (or empty) for a notifier that does nothing.

    Use `Notifier.from_environment()` in the command. The socket is opened on the first send
    and kept; `close()` releases it.
    """

    def __init__(self, address: str | None) -> None:
        self._raw = address or None
        self._address = None if self._raw is None else _address(self._raw)
        if self._raw is not None and self._address is None:
            logger.warning("%s=%r is not a path or abstract socket: not notifying", _ENV, address)
        self._socket: socket.socket | None = None
        self._failed: set[str] = set()

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, unset: bool = False
    ) -> Notifier:
        """A notifier for `$NOTIFY_SOCKET` of `environ` (default: this process's).

        Args:
            environ: where to look.
            unset: remove the variable from `os.environ` (sd_notify's `unset_environment`), so
                that programs started later do not talk to the service manager as us.
        """
        source = os.environ if environ is None else environ
        notifier = cls(source.get(_ENV))
        if unset:
            os.environ.pop(_ENV, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send one message of `KEY=VALUE` assignments (keys as given, e.g. `READY="1"`).

        Returns:
            Whether the datagram was sent (False when disabled or on failure, which is logged).
        """
        if self._address is None or not fields:
            return False
        lines = [f"{key}={_clean(value)}" for key, value in fields.items()]
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(data, self._address)
        except OSError as error:
            kind = type(error).__name__
            level = logging.DEBUG if kind in self._failed else logging.WARNING
            self._failed.add(kind)
            logger.log(level, "cannot notify the service manager at %s: %s", self._raw, error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`: start-up is complete (for the command: the first lease bound and applied)."""
        if status is None:
            return self.send(READY="1")
        return self.send(READY="1", STATUS=_clean(status, _MAX_STATUS))

    def status(self, text: str) -> bool:
        """`STATUS=text`: one line for `systemctl status`."""
        return self.send(STATUS=_clean(text, _MAX_STATUS))

    def stopping(self, status: str | None = None) -> bool:
        """`STOPPING=1`: shutting down (sent before the release and the teardown)."""
        if status is None:
            return self.send(STOPPING="1")
        return self.send(STOPPING="1", STATUS=_clean(status, _MAX_STATUS))

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def lease_status(interface: str, event: LeaseEvent, *, now: float) -> str:
    """One `STATUS=` line for a lease event, from the event's (sanitised) addresses only.

    Args:
        interface: the interface name.
        event: the lease event.
        now: the clock the lease's times are on (Trio's), now.
    """
    kind = event.kind.value
    if event.wait is not None:
        return f"{interface}: IPv6-only preferred, DHCPv4 quiet for {event.wait:.0f} s"
    if event.lease is None:
        old = event.old
        address = "" if old is None else f" {old.address}"
        reason = f" ({event.reason})" if event.reason else ""
        return f"{interface}: lost{address}{reason}"
    lease = event.lease
    return (
        f"{interface}: {kind} {lease.address} from {lease.server_id}, "
        f"renews in {max(0, int(lease.t1 - now))} s"
    )


async def report(
    notifier: Notifier,
    subscriptions: Sequence[tuple[str, trio.MemoryReceiveChannel[LeaseEvent]]],
) -> None:
    """Tell the service manager about lease events until cancelled.

    Sends `STATUS=` for every event, and `READY=1` (once) when every interface has held a
    lease: events are published after the lease was applied, so READY means configured.

    Args:
        notifier: where to send.
        subscriptions: (interface, `Client.subscribe()`) pairs, one per interface.
    """
    import trio

    held: set[str] = set()
    ready = False

    async def follow(interface: str, events: trio.MemoryReceiveChannel[LeaseEvent]) -> None:
        nonlocal ready
        async for event in events:
            text = lease_status(interface, event, now=trio.current_time())
            if event.lease is not None:
                held.add(interface)
            if not ready and len(held) == len(subscriptions):
                ready = True
                notifier.ready(text)
            else:
                notifier.status(text)

    if not notifier.enabled:
        return
    async with trio.open_nursery() as nursery:
        for interface, events in subscriptions:
            nursery.start_soon(follow, interface, events)
