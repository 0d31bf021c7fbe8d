"""Exception groups, seen through: Trio wraps what a nursery's tasks raise in a group.

This module owns how the package looks inside those groups (the builtin `BaseExceptionGroup`
from Python 3.11, the `exceptiongroup` backport before): `unwrap_group` raises the one error a
nursery wrapped as itself, so that callers (the command's one line, a supervisor's log) see the
error and not its wrapping; `only_interrupts` and `innermost` read a group without raising.

Invariant: standard library only (and the backport on 3.10), so the command imports it at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["BaseExceptionGroup", "innermost", "only_interrupts", "unwrap_group"]


@contextmanager
def unwrap_group() -> Iterator[None]:
    """Raise a group of exactly one `Exception` that leaves the block as that exception.

    Anything else (a group of several, a group holding a `KeyboardInterrupt` or a cancellation,
    a bare exception) leaves unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        inner = group.exceptions
        if len(inner) == 1 and isinstance(inner[0], Exception):
            raise inner[0] from None
        raise


def only_interrupts(error: BaseException) -> bool:
    """Whether `error` is a KeyboardInterrupt, or a (nested) exception group of nothing else.

    Trio wraps what its tasks raise in exception groups, so a Ctrl-C may arrive wrapped.
    """
    if isinstance(error, BaseExceptionGroup):
        return all(only_interrupts(exception) for exception in error.exceptions)
    return isinstance(error, KeyboardInterrupt)


def innermost(error: BaseException) -> BaseException:
    """The error inside nested groups of one (`error` itself when it is no such group)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
