"""Entering a network namespace on the calling thread only (setns(2)), and always leaving it.

Shared by the kernel-side modules (`netconfig`, `linkwatch`) and `dhcp4c.testing.netns`: each opens
its netlink or packet socket inside the namespace and uses it from anywhere afterwards, since a
socket belongs to the namespace it was created in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["NETNS_DIR", "entered", "namespace_path", "setns"]

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"  # where `ip netns add NAME` bind-mounts NAME


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`; OSError on failure."""
    os_setns = getattr(os, "setns", None)  # Python >= 3.12
    if os_setns is not None:
        os_setns(fd, CLONE_NEWNET)
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def namespace_path(netns: str) -> str:
    """A namespace name (under /run/netns) or a path to a namespace file, as a path."""
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """Run the block with the calling thread inside `netns` (None: where it is), then switch back.

    Keep the block synchronous: under Trio, other tasks run on the same thread at every
    checkpoint and would create their sockets in the namespace too.

    Raises:
        OSError: when setns(2) fails (not root, no such namespace).
    """
    if netns is None:
        yield
        return
    # /proc/thread-self, not /proc/self: the namespace of this thread, which may already differ
    # from the main thread's.
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(namespace_path(netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            # Failing to come back would leave (say) a pooled worker thread in the wrong
            # namespace; it cannot happen for a process that could leave it a moment ago.
            setns(original)
    finally:
        os.close(original)
