"""supervisor.testing: the harness (propagation, clean exit, stragglers) and the rc runnable."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from supervisor import NodeState, Signal, run, run_group, signal
from supervisor.testing import RemoteControlled, harness


async def _healthy() -> None:
    signal(Signal.HEALTHY)
    await trio.sleep_forever()


async def test_harness_runs_and_cleans_up(autojump_clock: MockClock) -> None:
    async def root() -> None:
        run_group({"a": _healthy, "b": _healthy})
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with harness(root) as handle:
        await handle.wait_settled()
        assert handle.live() == ["root", "root.a", "root.b"]
    assert handle.live() == []
    assert set(handle.states().values()) == {NodeState.CANCELED}


async def test_harness_propagates_a_runnable_exception_bare(autojump_clock: MockClock) -> None:
    async def root() -> None:
        signal(Signal.HEALTHY)
        await trio.sleep(1.0)
        raise KeyError("from the tree")

    with pytest.raises(KeyError, match="from the tree"):
        async with harness(root):
            await trio.sleep_forever()
    assert trio.current_time() == 1.0


async def test_harness_propagates_the_test_body_exception(autojump_clock: MockClock) -> None:
    with pytest.raises(ZeroDivisionError):
        async with harness(_healthy):
            raise ZeroDivisionError


async def test_harness_fails_on_runnables_still_live(autojump_clock: MockClock) -> None:
    async def slow() -> None:
        signal(Signal.HEALTHY)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(10.0)

    async def root() -> None:
        run("slow", slow)
        run("quick", _healthy)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    with pytest.raises(AssertionError, match=r"still live 5.0 s after .*: root\.slow$"):
        async with harness(root) as handle:
            await handle.wait_settled()
    assert trio.current_time() == 10.0


async def test_remote_controlled(autojump_clock: MockClock) -> None:
    rc = RemoteControlled()

    async def root() -> None:
        run("rc", rc)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with harness(root) as handle:
        await handle.wait_settled()
        assert (rc.state, rc.starts, rc.running) == (NodeState.NEW, 1, True)
        rc.become_healthy()
        rc.become_done()
        await handle.wait_settled()
        assert rc.state is NodeState.DONE
        assert handle.states()["root.rc"] is NodeState.HEALTHY
        rc.finish()
        await handle.wait_settled()
        assert handle.states()["root.rc"] is NodeState.DONE
        assert not rc.running
