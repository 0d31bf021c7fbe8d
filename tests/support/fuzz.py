"""The codec fuzz target: hostile bytes through parse, build, every accessor and the machine.

``PYTHONPATH=tests python -m support.fuzz --seconds N [--corpus DIR] [--engine ENGINE]``; CI runs
it briefly (tests/dhcp4c/test_fuzz.py), ``./dev fuzz`` / ``nox -s fuzz`` for longer; ``--replay
FILE`` runs one saved input again. A finding (`Finding`) prints its reason, traceback and hex
reproducer and exits 1. One input (`exercise`) must: parse to a `Message` or raise `MessageError`;
if parsed, build back to the same bytes, rebuild canonically to an equal message, and give every
accessor, `repr`, `hash` and `Lease.from_ack` a value or `MessageError`; be used or dropped, never
raise, by a `Machine` in SELECTING and one in REBOOTING (xid and chaddr patched in); and finish
each stage within `TIME_LIMIT` (timed three times with the GC off before it counts as a hang).

Engines: ``mutate`` (default; format-aware mutations of the corpus, ``$DHCP4C_CORPUS/dhcpv4`` or
``../shared/corpus/dhcpv4``, keeping inputs with new outcomes as seeds), ``hypothesis`` (the same
mutations drawn by Hypothesis, which shrinks findings) and ``atheris`` (coverage-guided, when
installed). Nothing touches the network; a ``mutate`` run replays from ``--seed``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import Machine, MachineConfig
from dhcp4c.protocol.message import BOOTREPLY, Message, MessageError, MessageType
from dhcp4c.protocol.options import Options

__all__ = [
    "MAX_INPUT",
    "TIME_LIMIT",
    "Finding",
    "FuzzReport",
    "Mutator",
    "default_corpus",
    "exercise",
    "load_seeds",
    "main",
    "run",
]

#: Inputs up to this size (the largest UDP payload) must be handled within `TIME_LIMIT`.
MAX_INPUT = 64 * 1024
TIME_LIMIT = 0.100

_HEADER = 240  # BOOTP header and magic cookie
_COOKIE = b"\x63\x82\x53\x63"
_ACCESSORS = tuple(
    sorted(name for name, value in vars(Options).items() if isinstance(value, property))
)
_HW = b"\x02\x00\x00\x00\x00\x01"
_SEED_LIMIT = 2048  # the largest input kept as a seed
_DIGITS = re.compile(r"\d+")


class Finding(Exception):
    """An input the codec (or the machine behind it) mishandled.

    Attributes:
        data: the input.
        reason: what went wrong.
        details: the traceback, when an exception was the problem.
    """

    def __init__(self, data: bytes, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.data = data
        self.reason = reason
        self.details = details

    def report(self) -> str:
        """The human-readable report: reason, traceback, reproducer hex."""
        lines = [f"FAILURE: {self.reason}"]
        if self.details:
            lines.append(self.details.rstrip())
        lines.append(f"reproducer ({len(self.data)} bytes): {self.data.hex()}")
        return "\n".join(lines)


# -- the target ----------------------------------------------------------------------------------


class _Clients:
    """Fresh machines in SELECTING and REBOOTING, to hand a parsed message to.

    Machines are made anew for every input (a reply may change their state) from a fixed seed, so
    their xids are known in advance and patched into the message.
    """

    def __init__(self) -> None:
        self.config = MachineConfig(hwaddr=_HW, interface="fuzz0")
        ack = Message(
            op=BOOTREPLY,
            xid=1,
            yiaddr=IPv4Address("192.0.2.10"),
            chaddr=_HW,
            options={53: bytes([MessageType.ACK]), 54: bytes([192, 0, 2, 1]), 51: b"\0\0\x0e\x10"},
        )
        self.lease = Lease.from_ack(ack, 0.0, random.Random(0))

    def machines(self) -> list[Machine]:
        selecting = Machine(self.config, rng=random.Random(1))
        selecting.start(0.0)
        rebooting = Machine(self.config, rng=random.Random(2), lease=self.lease)
        rebooting.start(1.0)
        for machine in (selecting, rebooting):
            machine.pop_actions()
        return [selecting, rebooting]


_clients: _Clients | None = None


def _signature_of_error(error: BaseException) -> str:
    return _DIGITS.sub("#", str(error))[:60]


def _check_codec(data: bytes) -> tuple[Message | None, str]:
    """The codec stage: parse, build, parse again, every accessor, a canonical rebuild."""
    try:
        message = Message.parse(data)
    except MessageError as error:
        return None, "reject:" + _signature_of_error(error)
    outcome: list[str] = [f"type={message.message_type!r}"]
    built = message.build()
    if built != data:
        raise Finding(data, "build(parse(x)) != x")
    if Message.parse(built) != message:
        raise Finding(data, "parse(build(parse(x))) != parse(x)")
    repr(message)
    hash(message)
    for name in _ACCESSORS:
        try:
            getattr(message.options, name)
        except MessageError:
            outcome.append(name)
    canonical = message.replace(options=dict(message.options))
    if Message.parse(canonical.build()) != canonical:
        raise Finding(data, "a canonical rebuild does not parse back to itself")
    return message, "|".join(outcome)


def _check_client(message: Message) -> str:
    """The client stage: `Lease.from_ack` and two machines receiving the message."""
    outcome: list[str] = []
    options = message.options
    try:
        lease_time = options.lease_time
        server_id = options.server_identifier
    except MessageError:
        lease_time = server_id = None
    if lease_time is not None and lease_time >= 1 and server_id is not None:
        try:
            Lease.from_ack(message, 0.0, random.Random(0))
        except MessageError as error:
            outcome.append("lease:" + _signature_of_error(error))
    global _clients
    if _clients is None:
        _clients = _Clients()
    for machine in _clients.machines():
        addressed = message.replace(xid=machine.xid, chaddr=_HW, op=BOOTREPLY)
        dropped = machine.receive(addressed, 2.0)
        outcome.append(f"{machine.state.name}:{dropped.value if dropped else 'used'}")
    return "|".join(outcome)


_T = TypeVar("_T")


def _timed(data: bytes, stage: str, call: Callable[[], _T]) -> _T:
    """Run one stage of `exercise`, turning exceptions and hangs into findings.

    A stage is timed in this thread's CPU time with the garbage collector off: a hang is the
    code's own cost, not the other processes of a busy host nor a full collection of whatever
    else this process (pytest, a long fuzz run) holds.
    """
    fastest = float("inf")
    result: _T
    for _attempt in range(3):
        enabled = gc.isenabled()
        gc.disable()
        start = time.thread_time()
        try:
            result = call()
        except Finding:
            raise
        except Exception as error:
            raise Finding(
                data, f"{stage}: {type(error).__name__}: {error}", traceback.format_exc()
            ) from error
        finally:
            elapsed = time.thread_time() - start
            if enabled:
                gc.enable()
        fastest = min(fastest, elapsed)
        if fastest <= TIME_LIMIT or len(data) > MAX_INPUT:
            return result
    raise Finding(data, f"{stage}: hang: {fastest * 1000:.0f} ms > {TIME_LIMIT * 1000:.0f} ms")


def exercise(data: bytes) -> str:
    """Run one input through the codec and the machine (see the module docstring).

    The codec stage (parse, build, accessors) and the client stage (lease, machine) each get
    `TIME_LIMIT`.

    Args:
        data: the input.
    Returns:
        A short signature of what happened (error class, accessor and machine outcomes), for
        feedback.
    Raises:
        Finding: for any exception other than `MessageError` where that is allowed, a broken
            round trip, or more than `TIME_LIMIT` seconds for a stage on an input of at most
            `MAX_INPUT` bytes.
    """
    message, signature = _timed(data, "codec", lambda: _check_codec(data))
    if message is None:
        return signature
    parsed = message
    return signature + "|" + _timed(data, "client", lambda: _check_client(parsed))


# -- mutations -----------------------------------------------------------------------------------


class Source(Protocol):
    """Where a mutator's choices come from: `random.Random` or Hypothesis draws."""

    def integer(self, low: int, high: int) -> int: ...

    def binary(self, size: int) -> bytes: ...


class RandomSource:
    """Choices from a `random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def binary(self, size: int) -> bytes:
        return self.rng.randbytes(size)


# Option codes worth hitting: framing (0, 52, 255), fixed sizes, accessors, sub-options.
_CODES = (
    0, 1, 2, 3, 6, 12, 13, 15, 26, 28, 33, 42, 43, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
    61, 80, 81, 82, 108, 114, 118, 119, 121, 124, 125, 255,
)  # fmt: skip
_INTERESTING = (0, 1, 2, 3, 4, 5, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFE, 0xFF, 52, 53, 54)


class Mutator:
    """Format-aware mutations of DHCP messages.

    Args:
        source: where choices come from.
        pool: the inputs to splice with (the seeds and whatever the run kept).
    """

    def __init__(self, source: Source, pool: Sequence[bytes]) -> None:
        self.source = source
        self.pool = pool
        self.operations: tuple[Callable[[bytearray], bytearray], ...] = (
            self.flip_bits,
            self.interesting_byte,
            self.truncate,
            self.splice,
            self.corrupt_length,
            self.overload,
            self.insert_option,
            self.duplicate_option,
            self.remove_end,
            self.header_field,
            self.grow,
            self.delete_range,
        )

    def mutate(self, data: bytes) -> bytes:
        """Apply one to four stacked mutations to `data`; the result is at most `MAX_INPUT`."""
        out = bytearray(data)
        for _ in range(self.source.integer(1, 4)):
            operation = self.operations[self.source.integer(0, len(self.operations) - 1)]
            out = operation(out)
        return bytes(out[:MAX_INPUT])

    # -- helpers --

    def _pick(self, size: int) -> int:
        return self.source.integer(0, max(size - 1, 0))

    def _options(self, data: bytearray, start: int = _HEADER, end: int | None = None) -> list[int]:
        """Offsets of the option TLVs (not PAD) of one area, as far as they parse."""
        offsets: list[int] = []
        i, stop = start, len(data) if end is None else min(end, len(data))
        while i < stop:
            code = data[i]
            if code == 0:
                i += 1
                continue
            offsets.append(i)
            if code == 255 or i + 1 >= stop:
                break
            i += 2 + data[i + 1]
        return offsets

    def _value(self, code: int) -> bytes:
        source = self.source
        shape = source.integer(0, 5)
        if shape == 0 or code in (119, 15, 12):
            return self._names()
        if shape == 1 or code in (121, 33):
            routes = bytearray()
            for _ in range(source.integer(0, 4)):
                width = source.integer(0, 40)
                routes.append(width)
                routes += source.binary(min((width + 7) // 8, 5) + 4)
            return bytes(routes)
        if shape == 2 or code in (82, 124, 125):
            records = bytearray()
            for _ in range(source.integer(0, 4)):
                if code in (124, 125):
                    records += source.binary(4)
                size = source.integer(0, 12)
                if code not in (124, 125):
                    records.append(source.integer(1, 255))
                records.append(size + source.integer(-1, 1) & 0xFF)
                records += source.binary(size)
            return bytes(records)
        if shape == 3:
            return source.binary(source.integer(0, 4) * 4)
        return source.binary(source.integer(0, 600) if shape == 5 else source.integer(0, 8))

    def _names(self) -> bytes:
        # RFC 1035 §4.1.4 names with labels and compression pointers anywhere (loops included).
        source = self.source
        out = bytearray()
        for _ in range(source.integer(0, 12)):
            kind = source.integer(0, 5)
            if kind == 0:
                out.append(0)
            elif kind == 1:
                pointer = source.integer(0, max(len(out) + 2, 0x3FFF))
                out += bytes([0xC0 | pointer >> 8, pointer & 0xFF])
            elif kind == 2:
                out.append(source.integer(0x40, 0xBF))  # reserved label types
            else:
                label = source.binary(source.integer(0, 70))
                out.append(len(label) if kind < 5 else source.integer(0, 63))
                out += label
        return bytes(out)

    def _tlvs(self, code: int, value: bytes) -> bytes:
        if code in (0, 255):
            return bytes([code])
        if len(value) <= 255 and self.source.integer(0, 3):
            return bytes([code, len(value)]) + value
        # RFC 3396: split into instances of a random size.
        size = self.source.integer(1, 255)
        parts = [value[i : i + size] for i in range(0, len(value), size)] or [b""]
        return b"".join(bytes([code, len(part)]) + part for part in parts)

    def _ensure_header(self, data: bytearray) -> bytearray:
        if len(data) < _HEADER:
            data += bytes(_HEADER - len(data))
            data[236:240] = _COOKIE
        return data

    # -- operations --

    def flip_bits(self, data: bytearray) -> bytearray:
        for _ in range(self.source.integer(1, 8)):
            if data:
                data[self._pick(len(data))] ^= 1 << self.source.integer(0, 7)
        return data

    def interesting_byte(self, data: bytearray) -> bytearray:
        if data:
            value = _INTERESTING[self.source.integer(0, len(_INTERESTING) - 1)]
            data[self._pick(len(data))] = value
        return data

    def truncate(self, data: bytearray) -> bytearray:
        offsets = self._options(data)
        if offsets and self.source.integer(0, 1):
            # Cut inside or right after an option: the classic truncated-TLV case.
            at = offsets[self._pick(len(offsets))] + self.source.integer(0, 3)
        else:
            at = self._pick(len(data) + 1)
        return data[:at]

    def splice(self, data: bytearray) -> bytearray:
        if not self.pool:
            return data
        other = self.pool[self._pick(len(self.pool))]
        if self.source.integer(0, 1):
            return data[: self._pick(len(data) + 1)] + other[self._pick(len(other) + 1) :]
        # Move one option area's bytes from the other message into this one.
        start = self._pick(len(other) + 1)
        chunk = other[start : start + self.source.integer(1, 64)]
        at = self._pick(len(data) + 1)
        return data[:at] + chunk + data[at:]

    def corrupt_length(self, data: bytearray) -> bytearray:
        offsets = [i for i in self._options(data) if i + 1 < len(data) and data[i] != 255]
        if not offsets:
            return self.flip_bits(data)
        at = offsets[self._pick(len(offsets))] + 1
        choice = self.source.integer(0, 3)
        length = data[at]
        data[at] = (
            (length + 1) & 0xFF,
            (length - 1) & 0xFF,
            0,
            self.source.integer(0, 255),
        )[choice]
        return data

    def overload(self, data: bytearray) -> bytearray:
        data = self._ensure_header(data)
        flag = (1, 2, 3, 3, 0, 4, 255)[self.source.integer(0, 6)]
        data[_HEADER:_HEADER] = bytes([52, 1, flag])
        # Fill file (108..236) and/or sname (44..108) with options, or leave whatever is there.
        for start, stop in ((108, 236), (44, 108)):
            if self.source.integer(0, 2) == 0:
                continue
            area = bytearray()
            while len(area) < stop - start - 3 and self.source.integer(0, 3):
                code = _CODES[self.source.integer(0, len(_CODES) - 1)]
                area += self._tlvs(code, self._value(code))
            if self.source.integer(0, 3):
                area.append(255)
            data[start:stop] = bytes(area[: stop - start]).ljust(stop - start, b"\0")
        return data

    def insert_option(self, data: bytearray) -> bytearray:
        data = self._ensure_header(data)
        if self.source.integer(0, 1):
            code = _CODES[self.source.integer(0, len(_CODES) - 1)]
        else:
            code = self.source.integer(0, 255)
        tlvs = self._tlvs(code, self._value(code))
        offsets = self._options(data) or [_HEADER]
        at = offsets[self._pick(len(offsets))] if self.source.integer(0, 3) else _HEADER
        return data[:at] + tlvs + data[at:]

    def duplicate_option(self, data: bytearray) -> bytearray:
        offsets = [i for i in self._options(data) if data[i] != 255 and i + 1 < len(data)]
        if not offsets:
            return self.insert_option(data)
        start = offsets[self._pick(len(offsets))]
        tlv = data[start : start + 2 + data[start + 1]]
        at = self._options(data)[-1] if self.source.integer(0, 1) else start
        return data[:at] + tlv + data[at:]

    def remove_end(self, data: bytearray) -> bytearray:
        offsets = self._options(data)
        if offsets and data[offsets[-1]] == 255:
            end = offsets[-1]
            return data[:end] if self.source.integer(0, 1) else data[:end] + data[end + 1 :]
        return data + b"\xff" + self.source.binary(self.source.integer(0, 8))

    def header_field(self, data: bytearray) -> bytearray:
        data = self._ensure_header(data)
        field_at = (0, 1, 2, 3, 4, 10, 16, 236)[self.source.integer(0, 7)]
        width = 4 if field_at in (4, 16, 236) else 1
        data[field_at : field_at + width] = self.source.binary(width)
        return data

    def grow(self, data: bytearray) -> bytearray:
        data = self._ensure_header(data)
        offsets = [i for i in self._options(data) if data[i] != 255 and i + 1 < len(data)]
        if offsets and self.source.integer(0, 1):
            start = offsets[self._pick(len(offsets))]
            tlv = bytes(data[start : start + 2 + data[start + 1]])
            copies = self.source.integer(1, MAX_INPUT // max(len(tlv), 1))
            return data[:start] + tlv * copies + data[start:]
        code = (119, 121, 82, 43, 125, 55)[self.source.integer(0, 5)]
        value = self._names() * self.source.integer(1, 200) if code == 119 else b""
        value = value or self.source.binary(self.source.integer(256, 20_000))
        return data[:_HEADER] + self._tlvs(code, value) + data[_HEADER:]

    def delete_range(self, data: bytearray) -> bytearray:
        start = self._pick(len(data) + 1)
        del data[start : start + self.source.integer(1, 16)]
        return data


# -- corpus ------------------------------------------------------------------------------------


def default_corpus() -> Path | None:
    """The corpus `dhcpv4/` directory: `$DHCP4C_CORPUS/dhcpv4`, or `shared/corpus/dhcpv4` beside
    the repository this module lives in; None when neither exists."""
    candidates = []
    if "DHCP4C_CORPUS" in os.environ:
        candidates.append(Path(os.environ["DHCP4C_CORPUS"]) / "dhcpv4")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "corpus" / "dhcpv4")
    return next((path for path in candidates if path.is_dir()), None)


def _builtin_seeds() -> list[bytes]:
    # When no corpus is at hand: a DISCOVER, an OFFER with most typed options, a NAK.
    offer = Message(
        op=BOOTREPLY,
        xid=0x12345678,
        yiaddr=IPv4Address("192.0.2.10"),
        chaddr=_HW,
        options={
            53: b"\x02",
            54: bytes([192, 0, 2, 1]),
            51: b"\0\0\x0e\x10",
            1: b"\xff\xff\xff\0",
            3: bytes([192, 0, 2, 1]),
            6: bytes([192, 0, 2, 53]),
            15: b"example.org",
            119: b"\x07example\x03org\x00\x03sub\xc0\x00",
            121: b"\x18\xc6\x33\x64\xc0\x00\x02\x01",
            26: b"\x05\xdc",
        },
    )
    discover = Message(op=1, xid=1, chaddr=_HW, options={53: b"\x01", 55: b"\x01\x03\x06"})
    nak = Message(op=BOOTREPLY, xid=2, chaddr=_HW, options={53: b"\x06", 54: b"\xc0\0\2\1"})
    return [offer.build(), discover.build(), nak.build()]


def load_seeds(corpus: Path | None) -> list[bytes]:
    """Every `.bin` under `corpus` (recursively, malformed ones included), plus built-in seeds."""
    seeds = _builtin_seeds()
    if corpus is not None:
        seeds += [path.read_bytes() for path in sorted(corpus.rglob("*.bin"))]
    return seeds


# -- engines -------------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    """What a run did.

    Attributes:
        engine: the engine used.
        inputs: inputs run (seeds included).
        seconds: wall-clock time spent.
        parsed: inputs `Message.parse` accepted.
        signatures: distinct outcomes seen.
        kept: inputs kept as seeds for their new outcome.
        slowest: the slowest input's time, in seconds.
        finding: the failure, if one was found (the run stops at the first).
    """

    engine: str
    inputs: int = 0
    seconds: float = 0.0
    parsed: int = 0
    signatures: set[str] = field(default_factory=set)
    kept: int = 0
    slowest: float = 0.0
    finding: Finding | None = None

    @property
    def rate(self) -> float:
        """Inputs per second."""
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: inputs, rate and outcomes."""
        return (
            f"fuzz: engine={self.engine} inputs={self.inputs} seconds={self.seconds:.1f} "
            f"rate={self.rate:.0f}/s parsed={self.parsed} outcomes={len(self.signatures)} "
            f"kept={self.kept} slowest={self.slowest * 1000:.1f}ms "
            f"result={'FAIL' if self.finding else 'ok'}"
        )


class _Runner:
    def __init__(self, report: FuzzReport, pool: list[bytes], pool_limit: int = 5000) -> None:
        self.report = report
        self.pool = pool
        self.pool_limit = pool_limit

    def one(self, data: bytes) -> None:
        start = time.perf_counter()
        signature = exercise(data)
        self.report.slowest = max(self.report.slowest, time.perf_counter() - start)
        self.report.inputs += 1
        if not signature.startswith("reject:"):
            self.report.parsed += 1
        if signature not in self.report.signatures:
            self.report.signatures.add(signature)
            # Only inputs that parsed become seeds: mutating a rejected one mostly finds the
            # same early rejection again. Large ones neither: `grow` makes them from small ones
            # when needed, and a pool of 64 KiB seeds would slow every later input down.
            if (
                not signature.startswith("reject:")
                and len(data) <= _SEED_LIMIT
                and len(self.pool) < self.pool_limit
            ):
                self.pool.append(data)
                self.report.kept += 1


def _run_mutate(runner: _Runner, deadline: float, seed: int, max_inputs: int | None) -> None:
    rng = random.Random(seed)
    mutator = Mutator(RandomSource(rng), runner.pool)
    for data in list(runner.pool):
        runner.one(data)
    while time.perf_counter() < deadline:
        if max_inputs is not None and runner.report.inputs >= max_inputs:
            return
        for _ in range(100):
            runner.one(mutator.mutate(runner.pool[rng.randrange(len(runner.pool))]))


class _HypothesisSource:
    def __init__(self, data: Any, strategies: Any) -> None:
        self.data = data
        self.st = strategies

    def integer(self, low: int, high: int) -> int:
        return int(self.data.draw(self.st.integers(low, high)))

    def binary(self, size: int) -> bytes:
        if size <= 64:
            return bytes(self.data.draw(self.st.binary(min_size=size, max_size=size)))
        # Large blobs come from a drawn seed: Hypothesis' buffer is for choices, not bulk.
        return random.Random(self.integer(0, 2**32)).randbytes(size)


def _run_hypothesis(runner: _Runner, deadline: float, max_inputs: int | None) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    for data in list(runner.pool):
        runner.one(data)
    seeds = list(runner.pool)
    failing: list[bytes] = []

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    @given(st.data())
    def target(drawn: st.DataObject) -> None:
        source = _HypothesisSource(drawn, st)
        data = Mutator(source, seeds).mutate(seeds[source.integer(0, len(seeds) - 1)])
        try:
            runner.one(data)
        except Finding:
            failing.append(data)
            raise

    while time.perf_counter() < deadline:
        if max_inputs is not None and runner.report.inputs >= max_inputs:
            return
        try:
            target()
        except Finding:
            # Hypothesis re-raises the shrunk example's error last: report that input.
            raise
        except Exception as error:
            if failing:
                raise Finding(failing[-1], f"{type(error).__name__}: {error}") from error
            raise


def _run_atheris(seconds: float, corpus: Path | None, seed: int) -> int:
    atheris: Any = importlib.import_module("atheris")  # optional; ImportError when absent

    def test_one(data: bytes) -> None:
        try:
            exercise(bytes(data))
        except Finding as finding:
            print(finding.report(), file=sys.stderr, flush=True)
            raise

    args = [sys.argv[0], f"-max_total_time={max(1, int(seconds))}", f"-seed={seed}"]
    args.append(f"-max_len={MAX_INPUT}")
    if corpus is not None:
        args.append(str(corpus))
    atheris.Setup(args, test_one)
    atheris.Fuzz()
    return 0


def run(
    seconds: float,
    *,
    corpus: Path | None = None,
    engine: str = "mutate",
    seed: int = 0,
    max_inputs: int | None = None,
) -> FuzzReport:
    """Fuzz for `seconds` (or `max_inputs`) and report; stops at the first finding.

    Args:
        seconds: the time budget.
        corpus: the seed directory (`default_corpus()` when None).
        engine: "mutate" or "hypothesis" ("atheris" only through `main`: libFuzzer owns the
            process).
        seed: the mutation seed (engine "mutate").
        max_inputs: stop after this many inputs.
    Returns:
        The report; `report.finding` is set when an input failed.
    """
    corpus = corpus if corpus is not None else default_corpus()
    report = FuzzReport(engine)
    runner = _Runner(report, load_seeds(corpus))
    start = time.perf_counter()
    deadline = start + seconds
    try:
        if engine == "mutate":
            _run_mutate(runner, deadline, seed, max_inputs)
        elif engine == "hypothesis":
            _run_hypothesis(runner, deadline, max_inputs)
        else:
            raise ValueError(f"unknown engine {engine!r}")
    except Finding as finding:
        report.finding = finding
    report.seconds = time.perf_counter() - start
    return report


def main(argv: Iterable[str] | None = None) -> int:
    """The command line; returns the exit status (1 on a finding)."""
    parser = argparse.ArgumentParser(
        prog="python -m support.fuzz", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    parser.add_argument("--corpus", type=Path, help="seed directory (default: the shared corpus)")
    parser.add_argument("--engine", choices=("mutate", "hypothesis", "atheris"), default="mutate")
    parser.add_argument("--seed", type=int, default=None, help="mutation seed (default: random)")
    parser.add_argument("--max-inputs", type=int, default=None)
    parser.add_argument("--replay", type=Path, help="run one saved input (raw bytes or hex)")
    parser.add_argument("--artifact", type=Path, help="write a failing input here (raw bytes)")
    args = parser.parse_args(None if argv is None else list(argv))

    if args.replay is not None:
        raw = args.replay.read_bytes()
        try:
            data = bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            data = raw
        try:
            print(f"replay: {exercise(data)}")
        except Finding as finding:
            print(finding.report())
            return 1
        return 0

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    corpus = args.corpus if args.corpus is not None else default_corpus()
    if corpus is None:
        print("fuzz: no corpus found; using the built-in seeds only", file=sys.stderr)
    if args.engine == "atheris":
        try:
            return _run_atheris(args.seconds, corpus, seed)
        except ImportError:
            print("fuzz: atheris is not installed; use --engine mutate", file=sys.stderr)
            return 2
    print(f"fuzz: engine={args.engine} seed={seed} corpus={corpus}", flush=True)
    report = run(
        args.seconds, corpus=corpus, engine=args.engine, seed=seed, max_inputs=args.max_inputs
    )
    print(report.summary(), flush=True)
    if report.finding is not None:
        print(report.finding.report(), flush=True)
        if args.artifact is not None:
            args.artifact.write_bytes(report.finding.data)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
