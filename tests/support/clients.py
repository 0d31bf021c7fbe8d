"""Test helpers that take a client's keyword arguments and configuration fields in one call."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dhcp4c.protocol.config import ClientConfig

__all__ = ["split_options"]

_FIELDS = frozenset(f.name for f in fields(ClientConfig))


def split_options(options: dict[str, Any]) -> tuple[ClientConfig, dict[str, Any]]:
    """`ClientConfig` from the configuration fields among `options`, and the rest (for `Client`)."""
    config = {name: value for name, value in options.items() if name in _FIELDS}
    rest = {name: value for name, value in options.items() if name not in _FIELDS}
    return ClientConfig(**config), rest
