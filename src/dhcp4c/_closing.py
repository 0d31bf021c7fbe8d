"""Context-manager plumbing shared by everything here that is closed with `close()`/`aclose()`."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

_C = TypeVar("_C", bound="Closing")
_A = TypeVar("_A", bound="AsyncClosing")


class Closing:
    """`with obj:` calls `obj.close()` on the way out; subclasses define `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClosing(Closing):
    """Also `async with obj:`, which awaits `aclose()` (by default `close()`, then a checkpoint)."""

    async def aclose(self) -> None:
        """Close, as `close()`, with a checkpoint (for symmetry with BroadcastTransport)."""
        import trio  # the subclasses are Trio transports: trio is loaded by then

        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
