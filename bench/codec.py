"""Codec benchmark: parse and build µs/message over the DHCPv4 corpus, against dpkt, scapy and
pyroute2's dhcp4msg, in one run; ratios against dpkt.

Run: `python bench/codec.py` (or `nox -s bench`). The corpus is found as the tests find it:
DHCP4C_CORPUS, else `<repo>/../shared/corpus`.

What each row times:

* parse: bytes -> the library's message object, for every valid corpus message.
* build: that object -> bytes. dhcp4c builds a parsed message from its kept wire layout
  ("build"), and a message made through the constructor canonically ("build, canonical").
  scapy's cached raw bytes are cleared first so that it really builds; pyroute2 builds a new
  dhcp4msg from the decoded fields (it cannot build 4 corpus messages without option 53).
* lossless: how many messages build back to exactly the bytes they were parsed from.
* "construct, compiled": the declarations of dhcp4c.wire compiled, parse only: the cost of
  running the specification itself, which is why the codec's hot path is derived from it.

Timing: per library, the best of several rounds of the whole corpus (time.perf_counter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from dhcp4c import wire  # noqa: E402
from dhcp4c.message import Message  # noqa: E402

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
    row.parse = per_message(wire.reference_parse, data)
    header = wire.compiled("header")
    row.note = f"dhcp4c.wire declarations; header alone {per_message(header.parse, data):.2f} µs"
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


def import_times_ms() -> tuple[float, float]:
    """`import dhcp4c.message` in fresh interpreters (-X importtime, median of 7, bytecode cached).

    Returns:
        (everything the import loads, including the package and the stdlib modules it pulls
        in; the codec's own modules dhcp4c.message + dhcp4c.options + ipaddress), in ms.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO / "src")
    command = [sys.executable, "-X", "importtime", "-c", "import dhcp4c.message"]
    subprocess.run(command, check=True, env=env, capture_output=True)  # write the bytecode
    totals, owns = [], []
    for _ in range(7):
        lines = subprocess.run(command, check=True, env=env, capture_output=True, text=True)
        own = total = 0
        for line in lines.stderr.splitlines():
            fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
            if len(fields) != 3 or not fields[0].isdigit():
                continue
            if fields[2] == "dhcp4c.message":
                total = int(fields[1])
            if fields[2] in ("dhcp4c.message", "dhcp4c.options", "ipaddress"):
                own += int(fields[0])
        totals.append(total / 1e3)
        owns.append(own / 1e3)
    return sorted(totals)[3], sorted(owns)[3]


def main() -> None:
    data = corpus()
    rows = [*bench_dhcp4c(data), bench_construct(data)]
    dpkt_row = bench_dpkt(data)
    rows += [dpkt_row, bench_scapy(data), bench_pyroute2(data)]

    def cell(value: float | None, reference: float | None) -> str:
        if value is None:
            return f"{'-':>8} {'':>7}"
        ratio = f"{value / reference:6.2f}×" if reference else ""
        return f"{value:8.2f} {ratio:>7}"

    print(f"{len(data)} valid corpus messages, best of {ROUNDS} rounds, µs per message")
    print(
        f"{'codec':<24} {'parse':>8} {'/dpkt':>7} {'build':>8} {'/dpkt':>7} {'lossless':>9}  note"
    )
    for row in rows:
        print(
            f"{row.name:<24} {cell(row.parse, dpkt_row.parse)} {cell(row.build, dpkt_row.build)} "
            f"{row.lossless:>9}  {row.note}"
        )
    total, own = import_times_ms()
    print(f"import dhcp4c.message: {total:.1f} ms in all, {own:.1f} ms for the codec's own modules")


if __name__ == "__main__":
    main()
