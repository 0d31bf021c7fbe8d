"""Benchmark: the supervisor against a plain Trio nursery tree running the same functions.

    python bench/supervisor.py [--repeat N] [--big FANOUT]

The timed tree has three levels under the root: 10 x 10 x 100, so 10,000 leaves and 10,111
runnables in all. Each run

1. starts the tree and waits until every runnable is HEALTHY (for the floor: has called
   the same `healthy()` hook);
2. kills one level-1 runnable (its subtree holds 1,011 runnables) and waits until all of them
   are HEALTHY again;
3. measures, in a separate run under `tracemalloc`, the memory held per runnable while the
   whole tree is up, for the timed tree and for a big one (default 10 x 100 x 100: 101,011
   runnables).

The floor is the cheapest correct Trio program doing the same: nested nurseries, and a
`while True` loop around each level-1 function that runs it again when it raises. The
supervisor runs with the new features on: the leaves are workers (`run(..., worker=True)`),
the level-1 runnables carry a restart limit (never reached), the level-2 ones are TRANSIENT,
and one leaf's state is watched (`Handle.watch`). The "default" variant declares every child
with `run(name, fn)` and nothing else (each node then has a cancel scope of its own). The
backoff is near zero (1 µs, no jitter) so that the restart time measures the supervisor's work
and not its deliberate wait; every variant collects garbage before its restart, so that a full
collection owed by the start does not land in one variant's restart and not another's.
Targets: start and restart within 2x of the floor (features on). Timed runs alternate the
variants; the best of each is kept.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio
import trio.testing

# Run as a script, this file's directory comes first on sys.path and this module would shadow
# the `supervisor` package it measures.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]
import supervisor  # noqa: E402

FANOUT = (10, 10, 100)
BIG = (10, 100, 100)
KIB = 1024


def total(fanout: tuple[int, ...]) -> int:
    """Runnables in a tree of this fanout, the root included."""
    count, level = 1, 1
    for width in fanout:
        level *= width
        count += level
    return count


def subtree(fanout: tuple[int, ...]) -> int:
    """Runnables under (and including) one level-1 runnable."""
    return total(fanout[1:])


class Counter:
    """Counts `healthy()` calls and wakes the benchmark when a target is reached."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.event = trio.Event()

    def arm(self, target: int) -> trio.Event:
        self.count = 0
        self.target = target
        self.event = trio.Event()
        return self.event

    def healthy(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.event.set()


@dataclass
class Result:
    start: float  # seconds until all runnables were healthy
    restart: float  # seconds from the kill until the whole subtree was healthy again
    memory: float = 0.0  # bytes per runnable, tree up


Kill = trio.Event
LIMIT = supervisor.RestartLimit(1000, 1.0)


# -- the supervisor version ------------------------------------------------------------------


def sup_runnable(
    fanout: tuple[int, ...], level: int, counter: Counter, kill: list[Kill] | None, features: bool
) -> supervisor.Runnable:
    """One runnable of the tree; `kill` (level 1, first child only) makes it die once."""

    async def fn() -> None:
        if level < len(fanout):
            child = sup_runnable(fanout, level + 1, counter, None, features)
            leaves = level + 1 == len(fanout)
            for i in range(fanout[level]):
                if not features:
                    supervisor.run(f"n{i}", child)
                elif leaves:
                    supervisor.run(f"n{i}", child, worker=True)
                else:
                    supervisor.run(f"n{i}", child, restart=supervisor.Restart.TRANSIENT)
        supervisor.signal(supervisor.Signal.HEALTHY)
        counter.healthy()
        if kill:
            event = kill.pop()
            await event.wait()
            raise RuntimeError("killed by the benchmark")
        await trio.sleep_forever()

    return fn


def sup_root(
    fanout: tuple[int, ...], counter: Counter, kill: list[Kill], features: bool
) -> supervisor.Runnable:
    async def root() -> None:
        for i in range(fanout[0]):
            fn = sup_runnable(fanout, 1, counter, kill if i == 0 else None, features)
            if features:
                supervisor.run(f"n{i}", fn, limit=LIMIT)
            else:
                supervisor.run(f"n{i}", fn)
        supervisor.signal(supervisor.Signal.HEALTHY)
        counter.healthy()
        await trio.sleep_forever()

    return root


async def run_supervisor(
    fanout: tuple[int, ...],
    counter: Counter,
    measure: Callable[[], Awaitable[None]],
    *,
    features: bool = True,
) -> Result:
    kill = trio.Event()
    all_up = counter.arm(total(fanout))
    quiet = logging_quiet()
    async with trio.open_nursery() as nursery:
        began = time.perf_counter()
        handle: supervisor.Handle = await nursery.start(
            partial(
                supervisor.supervise,
                sup_root(fanout, counter, [kill], features),
                backoff=supervisor.Backoff(initial=1e-6, max_interval=1e-6, jitter=0.0),
            )
        )
        if features:
            handle.watch("root.n1.n1.n1")
        await all_up.wait()
        start = time.perf_counter() - began
        await measure()
        gc.collect()  # the start's garbage-collection debt is not the restart's
        again = counter.arm(subtree(fanout))
        began = time.perf_counter()
        kill.set()
        await again.wait()
        restart = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    quiet()
    return Result(start, restart)


def logging_quiet() -> Callable[[], None]:
    """Silence the death's traceback log during the run (it is the benchmark's own kill)."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    return lambda: logging.disable(previous)


# -- the floor: plain nurseries ----------------------------------------------------------------


async def floor_runnable(
    fanout: tuple[int, ...], level: int, counter: Counter, kill: list[Kill] | None
) -> None:
    if level < len(fanout):
        async with trio.open_nursery() as nursery:
            for _ in range(fanout[level]):
                nursery.start_soon(floor_runnable, fanout, level + 1, counter, None)
            counter.healthy()
            if kill:
                event = kill.pop()
                await event.wait()
                raise RuntimeError("killed by the benchmark")
            await trio.sleep_forever()
    counter.healthy()
    await trio.sleep_forever()


async def floor_restarting(
    fanout: tuple[int, ...], counter: Counter, kill: list[Kill] | None
) -> None:
    while True:
        try:
            await floor_runnable(fanout, 1, counter, kill)
        except Exception:  # the nursery's ExceptionGroup: run the subtree again
            continue


async def floor_root(fanout: tuple[int, ...], counter: Counter, kill: list[Kill]) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(fanout[0]):
            nursery.start_soon(floor_restarting, fanout, counter, kill if i == 0 else None)
        counter.healthy()
        await trio.sleep_forever()


async def run_floor(
    fanout: tuple[int, ...], counter: Counter, measure: Callable[[], Awaitable[None]]
) -> Result:
    kill = trio.Event()
    all_up = counter.arm(total(fanout))
    async with trio.open_nursery() as nursery:
        began = time.perf_counter()
        nursery.start_soon(floor_root, fanout, counter, [kill])
        await all_up.wait()
        start = time.perf_counter() - began
        await measure()
        gc.collect()  # the start's garbage-collection debt is not the restart's
        again = counter.arm(subtree(fanout))
        began = time.perf_counter()
        kill.set()
        await again.wait()
        restart = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    return Result(start, restart)


# -- driver --------------------------------------------------------------------------------------

Variant = Callable[[tuple[int, ...], Counter, Callable[[], Awaitable[None]]], Awaitable[Result]]


async def _nothing() -> None:
    pass


def timed(variant: Variant) -> Result:
    gc.collect()
    return trio.run(variant, FANOUT, Counter(), _nothing)


def memory(variant: Variant, fanout: tuple[int, ...]) -> float:
    """Bytes per runnable held while the whole tree is up (tracemalloc, after a collection)."""
    held: list[int] = []

    async def measure() -> None:
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0])

    async def main(counter: Counter, measure_: Callable[[], Awaitable[None]]) -> Result:
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0])
        return await variant(fanout, counter, measure_)

    gc.collect()
    tracemalloc.start()
    try:
        trio.run(main, Counter(), measure)
    finally:
        tracemalloc.stop()
    return (held[1] - held[0]) / total(fanout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs each (best kept)")
    parser.add_argument(
        "--big",
        default="x".join(map(str, BIG)),
        help="fanout of the tree whose memory is measured too (e.g. 10x100x100)",
    )
    args = parser.parse_args()
    big = tuple(int(width) for width in args.big.split("x"))

    variants: dict[str, Variant] = {
        "floor": run_floor,
        "supervisor": run_supervisor,
        "default": partial(run_supervisor, features=False),
    }
    runs: dict[str, list[Result]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        # Interleaved, so that a noisy neighbour or a warming cache hurts all alike.
        for name, variant in variants.items():
            runs[name].append(timed(variant))
    best = {
        name: Result(
            min(r.start for r in results),
            min(r.restart for r in results),
            memory(variants[name], FANOUT),
        )
        for name, results in runs.items()
    }
    floor = best["floor"]
    n, sub = total(FANOUT), subtree(FANOUT)
    print(f"tree: {' x '.join(map(str, FANOUT))} under a root = {n} runnables;")
    print(f"restart: one level-1 subtree of {sub} runnables; best of {args.repeat} runs")
    print(
        f"{'':12}{'start all':>14}{'per runnable':>14}{'restart':>14}{'memory/runnable':>18}"
        f"{'start':>9}{'restart':>9}"
    )
    for name, r in best.items():
        print(
            f"{name:12}{r.start * 1e3:>11.1f} ms{r.start / n * 1e6:>11.1f} µs"
            f"{r.restart * 1e3:>11.1f} ms{r.memory / KIB:>14.2f} KiB"
            f"{r.start / floor.start:>8.2f}x{r.restart / floor.restart:>8.2f}x"
        )
    sup = best["supervisor"]
    start_ratio = sup.start / floor.start
    restart_ratio = sup.restart / floor.restart

    big_n = total(big)
    big_floor = memory(run_floor, big)
    big_sup = memory(run_supervisor, big)
    print(f"memory at {' x '.join(map(str, big))} = {big_n} runnables, tree up:")
    print(f"  floor       {big_floor / KIB:.2f} KiB/runnable ({big_floor * big_n / 2**20:.0f} MiB)")
    print(f"  supervisor  {big_sup / KIB:.2f} KiB/runnable ({big_sup * big_n / 2**20:.0f} MiB)")
    print(f"  supervisor on top of the floor: {(big_sup - big_floor) / KIB:.2f} KiB/runnable")

    time_ok = start_ratio <= 2 and restart_ratio <= 2
    print(
        f"target start and restart within 2x of the floor, features on "
        f"({start_ratio:.2f}x, {restart_ratio:.2f}x): {'PASS' if time_ok else 'FAIL'}"
    )
    return 0 if time_ok else 1


if __name__ == "__main__":
    sys.exit(main())
