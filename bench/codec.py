"""Codec benchmark: parse and build µs/message over the DHCPv4 corpus, against scapy and pyroute2's
dhcp4msg (the other declarative codecs) and dpkt, in one run; ratios against scapy and pyroute2.

Run: `python bench/codec.py` (or `nox -s bench`). The corpus is found as the tests find it:
DHCP4C_CORPUS, else `<repo>/../shared/corpus`.

What each row times:

* parse: bytes -> the library's message object, for every valid corpus message.
* build: that object -> bytes. dhcp4c builds a parsed message from its kept wire layout
  ("build"), and a message made through the constructor canonically ("build, canonical").
  scapy's cached raw bytes are cleared first so that it really builds; pyroute2 builds a new
  dhcp4msg from the decoded fields (it cannot build 4 corpus messages without option 53).
* lossless: how many messages build back to exactly the bytes they were parsed from.
* "construct, compiled": the compiled declaration of dhcp4c.protocol.wire on its own (bytes to its
  parsed dicts and back), i.e. what the codec costs beyond construct.

Target: dhcp4c's parse and build each at most 0.5x scapy's and pyroute2's; the last lines say
whether it is met (exit status 1 if not). Timing: per library, the best of several rounds of the
whole corpus (time.perf_counter).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from dhcp4c.protocol import wire  # noqa: E402
from dhcp4c.protocol.message import Message  # noqa: E402

ROUNDS = 7


def corpus() -> list[bytes]:
    root = Path(os.environ.get("DHCP4C_CORPUS", REPO.parent / "shared" / "corpus"))
    files = sorted((root / "dhcpv4").glob("*.bin"))
    if not files:
        sys.exit(f"no corpus at {root} (set DHCP4C_CORPUS)")
    return [path.read_bytes() for path in files]


def per_message(function: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Best-of-ROUNDS time per item, in µs."""
    repeat = max(1, 2000 // len(items))
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(repeat):
            for item in items:
                function(item)
        best = min(best, (time.perf_counter() - start) / (repeat * len(items)))
    return best * 1e6


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.parse: float | None = None
        self.build: float | None = None
        self.lossless = ""
        self.note = ""


def bench_dhcp4c(data: list[bytes]) -> list[Row]:
    row = Row("dhcp4c")
    row.parse = per_message(Message.parse, data)
    messages = [Message.parse(item) for item in data]
    row.build = per_message(Message.build, messages)
    row.lossless = f"{sum(m.build() == d for m, d in zip(messages, data, strict=True))}"
    canonical_row = Row("dhcp4c, build canonical")
    canonical = [message.replace(options=dict(message.options)) for message in messages]
    canonical_row.build = per_message(Message.build, canonical)
    canonical_row.note = "messages made through the API (options area, END, 300-byte minimum)"
    return [row, canonical_row]


def bench_construct(data: list[bytes]) -> Row:
    row = Row("construct, compiled")
    message = wire.compiled("message")
    row.parse = per_message(message.parse, data)
    parsed = [message.parse(item) for item in data]
    row.build = per_message(message.build, parsed)
    row.lossless = f"{sum(message.build(p) == d for p, d in zip(parsed, data, strict=True))}"
    row.note = "dhcp4c.protocol.wire.DhcpMessage alone (no option 52 areas, no checks)"
    return row


def bench_dpkt(data: list[bytes]) -> Row:
    row = Row("dpkt")
    try:
        import dpkt
    except ImportError:
        row.note = "not installed"
        return row
    row.parse = per_message(dpkt.dhcp.DHCP, data)
    messages = [dpkt.dhcp.DHCP(item) for item in data]
    row.build = per_message(bytes, messages)
    row.lossless = f"{sum(bytes(m) == d for m, d in zip(messages, data, strict=True))}"
    return row


def bench_scapy(data: list[bytes]) -> Row:
    row = Row("scapy")
    try:
        from scapy.layers.dhcp import BOOTP
    except ImportError:
        row.note = "not installed"
        return row
    row.parse = per_message(BOOTP, data)
    messages = [BOOTP(item) for item in data]

    def build(packet: Any) -> bytes:
        packet.clear_cache()  # scapy keeps the parsed bytes; make it build
        return bytes(packet)

    row.build = per_message(build, messages)
    row.lossless = f"{sum(build(m) == d for m, d in zip(messages, data, strict=True))}"
    return row


def bench_pyroute2(data: list[bytes]) -> Row:
    row = Row("pyroute2 dhcp4msg")
    try:
        from pyroute2.dhcp.dhcp4msg import dhcp4msg
    except ImportError:
        row.note = "not installed"
        return row

    def parse(item: bytes) -> Any:
        return dhcp4msg(buf=item).decode()

    row.parse = per_message(parse, data)
    # pyroute2 decodes sname/file/cookie to text it cannot encode again: build from the rest.
    contents = []
    for item in data:
        decoded = parse(item)
        content = {k: v for k, v in decoded.items() if k not in ("sname", "file", "cookie")}
        try:
            dhcp4msg(content).encode()
        except (KeyError, ValueError, TypeError):
            continue  # no option 53: pyroute2 cannot build it
        contents.append(content)

    def build(content: dict[str, Any]) -> bytes:
        return bytes(dhcp4msg(content).encode().buf)

    row.build = per_message(build, contents)
    built = [build(content) for content in contents]
    lossless = sum(b in set(data) for b in built)
    row.lossless = f"{lossless}"
    row.note = f"builds {len(contents)}/{len(data)} (needs option 53)"
    return row


TARGET = 0.5  # dhcp4c's time at most this fraction of each declarative peer's


def main() -> int:
    data = corpus()
    dhcp4c_rows = bench_dhcp4c(data)
    scapy_row, pyroute2_row = bench_scapy(data), bench_pyroute2(data)
    rows = [*dhcp4c_rows, bench_construct(data), scapy_row, pyroute2_row, bench_dpkt(data)]

    def cell(value: float | None, *references: float | None) -> str:
        if value is None:
            return f"{'-':>8} " + " ".join(f"{'':>7}" for _ in references)
        ratios = [f"{value / ref:6.2f}×" if ref else f"{'':>7}" for ref in references]
        return f"{value:8.2f} " + " ".join(ratios)

    print(f"{len(data)} valid corpus messages, best of {ROUNDS} rounds, µs per message")
    print(
        f"{'codec':<24} {'parse':>8} {'/scapy':>7} {'/pr2':>7} {'build':>8} {'/scapy':>7} "
        f"{'/pr2':>7} {'lossless':>9}  note"
    )
    for row in rows:
        parse = cell(row.parse, scapy_row.parse, pyroute2_row.parse)
        build = cell(row.build, scapy_row.build, pyroute2_row.build)
        print(f"{row.name:<24} {parse} {build} {row.lossless:>9}  {row.note}")

    ours = dhcp4c_rows[0]
    met = True
    for what in ("parse", "build"):
        value = getattr(ours, what)
        for peer_row in (scapy_row, pyroute2_row):
            name, peer = peer_row.name, getattr(peer_row, what)
            if value is None or peer is None:
                print(f"target {what} <= {TARGET}× {name}: not measured")
                continue
            ok = value <= TARGET * peer
            met = met and ok
            verdict = "met" if ok else "MISSED"
            print(f"target {what} <= {TARGET}× {name}: {value / peer:.2f}× {verdict}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
