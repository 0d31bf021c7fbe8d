"""The Trio runtime: one task per node, in one nursery owned by `supervise`.

This is the shell around `supervisor.tree`. Each node incarnation runs in its own task with its
own `trio.CancelScope`, in the nursery of the `supervise` call, so no task outlives the tree.
Workers are the exception: they have no scope of their own and run in a *host*, a nursery (in a
task of that same nursery) per parent incarnation, cancelled whenever the tree cancels the
parent's subtree and closed once that subtree is empty. When a task exits, the runtime
classifies the exit, asks the tree what that means, cancels the scopes and hosts it names and
spawns the restarts it names, all synchronously, before the next checkpoint. There is no
processor task and no periodic GC (Monogon's runs every millisecond).

The module functions (`run`, `run_group`, `start_child`, `stop_child`, `signal`, `logger`,
`sub_logger`, `dn`, `handle`) find their node through a `ContextVar` set by the node's task (and
so inherited by tasks the runnable spawns). Called outside any runnable, they raise
`RuntimeError`.

Classification of an exit:
- DONE signalled, then a clean return; or a clean return of a TRANSIENT or TEMPORARY node: DONE.
- The tree cancelled the node (its own scope caught the `Cancelled`, a worker's `Cancelled`
  came after the tree asked it to leave, or it returned cleanly after being asked): CANCELED,
  unless the tree killed it for a child's exceeded limit: DEAD.
- Any exception, or a PERMANENT node's clean return without DONE: DEAD, logged with its
  traceback in the node's own logger; with `propagate_exceptions=True` the exception ends the
  tree and is re-raised by `supervise` instead.
- `Cancelled` from outside the tree (the caller of `supervise` cancelled it), and
  `KeyboardInterrupt`, `SystemExit` or any other `BaseException`: never restarted. The tree
  stops restarting, every node is cancelled, and the exception propagates.
- A root whose restart limit is exceeded ends the tree: `supervise` raises the
  `RestartLimitExceeded`.
"""

from __future__ import annotations

import contextvars
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, cast

import trio

from supervisor import tree
from supervisor.backoff import Backoff
from supervisor.limits import RestartLimit
from supervisor.observe import Observer, StateChange
from supervisor.snapshot import NodeSnapshot, take_snapshot
from supervisor.states import NodeState, Restart, Signal
from supervisor.tree import Child, ExitPlan, Node, Runnable

if TYPE_CHECKING:
    from trio_util import AsyncValue

__all__ = [
    "Handle",
    "dn",
    "handle",
    "logger",
    "run",
    "run_group",
    "signal",
    "snapshot",
    "start_child",
    "stop_child",
    "sub_logger",
    "supervise",
]

_log = logging.getLogger("supervisor")

# The node whose runnable runs in the current task (set by each node's task).
_current: contextvars.ContextVar[Node] = contextvars.ContextVar("supervisor_node")
# The runtime of the tree; set by the root task, inherited by every task spawned under it.
_runtime: contextvars.ContextVar[_Runtime] = contextvars.ContextVar("supervisor_runtime")


def _is_group(exc: BaseException) -> bool:
    # BaseExceptionGroup is a builtin from 3.11 only (the backport on 3.10): test by shape.
    return hasattr(exc, "exceptions") and hasattr(exc, "split")


def _split(
    exc: BaseException, match: Callable[[BaseException], bool]
) -> tuple[BaseException | None, BaseException | None]:
    """`BaseExceptionGroup.split(match)` that also takes a bare exception."""
    if _is_group(exc):
        matched, rest = exc.split(match)  # type: ignore[attr-defined]
        return matched, rest
    return (exc, None) if match(exc) else (None, exc)


def _is_fatal(exc: BaseException) -> bool:
    # KeyboardInterrupt, SystemExit, GeneratorExit...: anything that is neither an ordinary
    # error nor Trio's cancellation unwinds the tree, as it would unwind a plain nursery.
    # (split() also asks about the groups themselves: a group is never fatal by itself.)
    return not isinstance(exc, Exception | trio.Cancelled) and not _is_group(exc)


def _is_cancelled(exc: BaseException) -> bool:
    return isinstance(exc, trio.Cancelled)


class _Host:
    """The nursery of one incarnation's worker children, in a task of the tree's nursery.

    Workers have no cancel scope of their own (entering one costs about as much as starting
    the task); they are cancelled together by cancelling this host, which the tree does
    whenever it cancels their parent's subtree. Workers declared before the host task runs
    wait in `queue`.
    """

    __slots__ = ("nursery", "queue", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        self.queue: list[tuple[Node, float | None]] | None = []

    def cancel(self) -> None:
        self.scope.cancel()


class _Runtime:
    """Everything one `supervise` call owns. Internal: reach it through `Handle`."""

    __slots__ = (
        "backoff",
        "clock",
        "failure",
        "handle",
        "nursery",
        "observers",
        "propagate",
        "rng",
        "root",
        "settle_event",
        "stopping",
        "values",
        "waiters",
        "watched",
    )

    def __init__(
        self,
        root_fn: Runnable,
        nursery: trio.Nursery,
        *,
        propagate: bool,
        backoff: Backoff,
        rng: random.Random,
        observers: list[Observer],
        limit: RestartLimit | None,
    ) -> None:
        self.root = tree.new_root(root_fn, limit)
        #: The run's clock (`trio.current_time()` without the lookups; a `MockClock` in tests).
        self.clock = trio.lowlevel.current_clock()
        self.nursery = nursery
        self.propagate = propagate
        self.backoff = backoff
        self.rng = rng
        self.observers = observers
        self.stopping = False
        self.failure: BaseException | None = None
        self.settle_event: trio.Event | None = None
        #: Awaitable states by dn, created on demand (`Handle.watch`).
        self.values: dict[str, AsyncValue[NodeState | None]] = {}
        #: The last components of the watched dns: most transitions skip building a dn.
        self.watched: set[str] = set()
        #: `stop_child` callers waiting for a finished node's subtree to exit.
        self.waiters: dict[Node, trio.Event] = {}
        self.handle = Handle(self)

    # -- transitions -------------------------------------------------------------------------

    def emit(self, node: Node, old: NodeState | None, new: NodeState) -> None:
        if self.values and node.name in self.watched:
            value = self.values.get(node.dn())
            if value is not None:
                value.value = new
        if not self.observers:
            return
        change = StateChange(node.dn(), old, new, self.clock.current_time())
        for observer in tuple(self.observers):
            try:
                observer(change)
            except Exception:
                _log.exception("state observer %r failed on %s", observer, change)

    def spawn(self, node: Node, at: float | None, now: float) -> None:
        """Start a task for `node`, running its function at once or at time `at`."""
        node.since = now
        tree.task_started(node, pending=True)
        if node.worker:
            parent = node.parent
            assert parent is not None
            host = cast(_Host | None, parent.host)
            if host is None:
                host = _Host()
                parent.host = host
                self.nursery.start_soon(self.host_task, host, name="supervisor host")
            if host.nursery is not None:
                host.nursery.start_soon(self.worker_task, node, at, name="supervisor worker")
            else:
                assert host.queue is not None
                host.queue.append((node, at))
        else:
            node.scope = trio.CancelScope()
            self.nursery.start_soon(self.node_task, node, at, name="supervisor node")
        if node.state is NodeState.NEW and (self.observers or self.values):
            # A first incarnation is NEW from its declaration; a restart when it starts.
            self.emit(node, None, NodeState.NEW)

    async def host_task(self, host: _Host) -> None:
        with host.scope:
            async with trio.open_nursery() as nursery:
                host.nursery = nursery
                queue, host.queue = host.queue, None
                assert queue is not None
                for node, at in queue:
                    nursery.start_soon(self.worker_task, node, at, name="supervisor worker")
                await trio.sleep_forever()

    async def worker_task(self, node: Node, at: float | None) -> None:
        # `node_task` without a scope of its own: a `Cancelled` is the tree's when it asked
        # (`node.cancelled`: the host was cancelled with the parent's subtree), and must
        # propagate to the host's scope.
        _current.set(node)
        try:
            if at is not None:
                await trio.sleep_until(at)
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            if node.state is NodeState.NEW and self.settle_event is None:
                node.pending = False
                node.starts += 1
            else:
                self.started(node)
            await node.fn()
        except BaseException as exc:
            cancelled = self.raised(node, exc, asked=node.cancelled)
            if cancelled is exc:
                raise
            if cancelled is not None:
                raise cancelled from None
        else:
            self.returned(node, left=node.cancelled and not node.done_signalled)
        finally:
            if self.settle_event is not None:
                self.settled_changed()

    async def node_task(self, node: Node, at: float | None) -> None:
        _current.set(node)
        if node.parent is None:
            _runtime.set(self)
        scope = cast(trio.CancelScope, node.scope)
        try:
            with scope:
                if at is not None:
                    await trio.sleep_until(at)
                else:
                    # Do not run a runnable's first steps in a tree that is shutting down.
                    await trio.lowlevel.checkpoint_if_cancelled()
                if node.state is NodeState.NEW and self.settle_event is None:
                    node.pending = False  # the common case of `started`, inlined
                    node.starts += 1
                else:
                    self.started(node)
                await node.fn()
        except BaseException as exc:
            # A `Cancelled` not caught by the node's own scope came from outside the node
            # (supervise's caller, or the tree stopping): never a restart.
            cancelled = self.raised(node, exc, asked=False)
            if cancelled is exc:
                raise
            if cancelled is not None:
                raise cancelled from None
        else:
            cancelled_by_tree = scope.cancel_called and not node.done_signalled
            self.returned(node, left=scope.cancelled_caught or cancelled_by_tree)
        finally:
            if self.settle_event is not None:
                self.settled_changed()

    def raised(self, node: Node, exc: BaseException, *, asked: bool) -> BaseException | None:
        """Classify an exception out of a node's task; return the `Cancelled` to re-raise.

        `asked`: the tree had asked the node to leave, so a `Cancelled` is the tree's (a
        CANCELED exit it decides about) rather than a foreign one (which stops the tree).
        """
        fatal, _ = _split(exc, _is_fatal)
        if fatal is not None:
            self.exited(node, NodeState.DEAD, exc, stop=True)
            self.fail(exc)
            return None
        cancelled, rest = _split(exc, _is_cancelled)
        if cancelled is not None:
            self.exited(node, NodeState.CANCELED, stop=not asked)
            if rest is not None:
                logging.getLogger(node.dn()).error("failed while cancelled", exc_info=rest)
            return exc if rest is None and cancelled is exc else cancelled
        self.died(node, exc)
        return None

    def returned(self, node: Node, *, left: bool) -> None:
        """Classify a clean return; `left`: the tree had asked the node to leave."""
        if left:
            if node.failure is not None:
                # Killed because a child's restart limit was exceeded: a death of its own.
                logging.getLogger(node.dn()).error("runnable died: %s", node.failure)
                self.exited(node, NodeState.DEAD, node.failure)
            else:
                self.exited(node, NodeState.CANCELED)
        elif node.done_signalled or node.restart is not Restart.PERMANENT:
            self.exited(node, NodeState.DONE)
        else:
            message = f"runnable returned while {node.state.name}, without signalling DONE"
            logging.getLogger(node.dn()).error(message)
            self.exited(node, NodeState.DEAD, RuntimeError(message))

    def started(self, node: Node) -> None:
        old = node.state
        node.pending = False
        node.state = NodeState.NEW
        node.starts += 1
        if node.history is not None:
            node.history.resume_at = None
        if old is not NodeState.NEW:
            node.since = self.clock.current_time()
        if self.settle_event is not None:
            self.settled_changed()
        if old is not NodeState.NEW and (self.observers or self.values):
            self.emit(node, old, NodeState.NEW)

    def died(self, node: Node, exc: BaseException) -> None:
        if self.propagate:
            self.exited(node, NodeState.DEAD, exc, stop=True)
            self.fail(exc)
            return
        logging.getLogger(node.dn()).error("runnable died", exc_info=exc)
        self.exited(node, NodeState.DEAD, exc)

    def exited(
        self,
        node: Node,
        state: NodeState,
        error: BaseException | None = None,
        *,
        stop: bool = False,
    ) -> None:
        if stop:
            self.stopping = True
        old = node.state
        now = self.clock.current_time()
        node.since = now
        plan = tree.on_exit(node, state, now=now, error=error, restarts=not self.stopping)
        if self.observers or self.values:
            self.emit(node, old, state)
        self.carry_out(plan, now)

    def carry_out(self, plan: ExitPlan, now: float) -> None:
        for dead, old in plan.died:
            dead.since = now
            logging.getLogger(dead.dn()).error("runnable died: %s", plan_error(dead))
            if self.observers or self.values:
                self.emit(dead, old, NodeState.DEAD)
        for victim in plan.cancel:
            if victim.scope is not None and victim.running:
                victim.scope.cancel()
            if victim.host is not None:
                victim.host.cancel()
        for finished in plan.ended:
            if finished.dynamic and self.values:
                value = self.values.get(finished.dn())
                if value is not None:
                    value.value = None
            event = self.waiters.pop(finished, None)
            if event is not None:
                event.set()
        for target in plan.restart:
            self.restart(target, now)
        for empty in plan.emptied:
            if empty.live == 0 and empty.host is not None:
                empty.host.cancel()  # no worker left, and none can start in it any more
                empty.host = None
        if plan.fail is not None:
            self.fail(plan.fail)

    def restart(self, old: Node, now: float) -> None:
        interval = old.interval
        at = None
        if old.state is NodeState.DEAD:
            # Only unexpected deaths back off (Monogon: "not when it got canceled").
            delay, interval = self.backoff.next(interval, self.rng)
            at = now + delay
            _log.info("restarting %s in %.3f s (backoff)", old.dn(), delay)
        else:
            _log.info("restarting %s (was %s)", old.dn(), old.state.name)
        new = tree.replacement(old)
        new.interval = interval
        assert new.history is not None
        new.history.resume_at = at
        if new.parent is None:
            self.root = new
        self.spawn(new, at, old.since)

    def fail(self, exc: BaseException) -> None:
        """Stop the tree and make `supervise` raise `exc` (the first one wins)."""
        self.stopping = True
        if self.failure is None:
            self.failure = exc
        self.nursery.cancel_scope.cancel()

    def settled_changed(self) -> None:
        event = self.settle_event
        if event is not None:
            self.settle_event = None
            event.set()

    def find(self, dn: str) -> Node | None:
        names = dn.split(".")
        node = self.root
        if names[0] != node.name:
            return None
        for name in names[1:]:
            child = node.children.get(name) if node.children else None
            if child is None:
                return None
            node = child
        return node


def plan_error(node: Node) -> BaseException | None:
    return node.history.last_error if node.history is not None else None


class Handle:
    """A running tree, as seen from outside: the value `supervise` passes to `started()`."""

    __slots__ = ("_runtime",)

    def __init__(self, runtime: _Runtime) -> None:
        self._runtime = runtime

    def states(self) -> dict[str, NodeState]:
        """A snapshot `{dn: state}` of every node in the tree now, depth first.

        A node waiting out a backoff shows the state it died in (DEAD) until it starts again.
        """
        return {node.dn(): node.state for node in self._runtime.root.walk()}

    def live(self) -> list[str]:
        """Sorted dns of the nodes that have a task (running, or waiting out a backoff)."""
        return sorted(node.dn() for node in self._runtime.root.walk() if node.running)

    def snapshot(self) -> NodeSnapshot:
        """The whole tree now: states, counters, last exits, times (see `supervisor.snapshot`).

        Print it with `format_tree(snapshot)`, or serialise it with `snapshot.to_json()`.
        """
        return take_snapshot(self._runtime.root, trio.current_time())

    def subscribe(self, observer: Observer) -> None:
        """Call `observer` at every state change from now on (see `supervisor.observe`)."""
        self._runtime.observers.append(observer)

    def unsubscribe(self, observer: Observer) -> None:
        """Stop calling `observer`. Raises ValueError if it was not subscribed."""
        self._runtime.observers.remove(observer)

    def watch(self, dn: str) -> AsyncValue[NodeState | None]:
        """The state of the node `dn` as a `trio_util.AsyncValue`, kept current from now on.

        Args:
            dn: a dotted name, e.g. `root.net.dhcp`; the node need not exist yet.

        Returns:
            The same value object for the same dn: its `value` is the node's state, or None
            while no node has that dn (not declared yet, or a stopped dynamic child). Await
            `value.wait_value(NodeState.HEALTHY)`, iterate `value.transitions()`, and so on.

        The value follows the name across restarts. Watching costs a dict lookup per state
        change while any value exists; values are never dropped for the life of the tree.
        """
        runtime = self._runtime
        value = runtime.values.get(dn)
        if value is None:
            from trio_util import AsyncValue  # cheap, but only when watched

            node = runtime.find(dn)
            value = AsyncValue(node.state if node is not None else None)
            runtime.values[dn] = value
            runtime.watched.add(dn.rpartition(".")[2])
        return value

    async def wait_state(self, dn: str, *states: NodeState) -> NodeState:
        """Wait until the node `dn` is in one of `states` (at once if it is); return the state.

        Args:
            dn: a dotted name; the node need not exist yet.
            states: the states to wait for (at least one).

        Raises:
            ValueError: no state given.
        """
        if not states:
            raise ValueError("wait_state needs at least one state")
        wanted = frozenset(states)
        value = self.watch(dn)
        await value.wait_value(lambda state: state in wanted)
        state = value.value
        assert state is not None
        return state

    async def wait_settled(self, *, idle: bool = True) -> None:
        """Wait until the tree is *settled*.

        Args:
            idle: also wait until every task of this Trio run is blocked (for tests); False
                waits for the tree alone, without importing `trio.testing` (for agents).

        Settled means:
        - no restart is owed: no unfinished node in the tree is DEAD or CANCELED, or DONE and
          cancelled by the tree (a node that wants a restart stays in the tree until its whole
          subtree has exited and it is replaced);
        - no node is waiting to start: no restart waiting out its backoff, no declared child
          whose task has not run yet; and none is leaving: no task the tree cancelled is
          still running its cleanup;
        - with `idle`, every task in this Trio run is blocked
          (`trio.testing.wait_all_tasks_blocked`).
        From a settled, idle state nothing in the tree changes until something outside it acts
        (a test pokes a runnable, a socket becomes readable) or the clock reaches a deadline a
        runnable set itself. Once the tree is stopping (shutdown, a propagated exception),
        nothing is owed any more and only the idle condition applies.

        With `idle`, meant for tests on a `MockClock` (with autojump, backoffs and cleanups
        elapse at once); it replaces Monogon's `waitSettle` (50 idle GC cycles) without its
        timing guess. A runnable that never finishes its cleanup keeps the tree unsettled, as it
        should. Each check walks the whole tree, once per task exit or start while waiting.
        """
        runtime = self._runtime
        while True:
            if idle:
                # Imported here, not at the top: trio.testing costs ~60 ms and ~10 MB at
                # start-up, and only tests and benchmarks ever wait for the tree to be idle.
                from trio.testing import wait_all_tasks_blocked

                await wait_all_tasks_blocked()
            else:
                await trio.lowlevel.checkpoint()
            if runtime.stopping or not any(
                node.pending or (node.running and node.cancelled) or tree.wants_restart(node)
                for node in runtime.root.walk()
            ):
                return
            if runtime.settle_event is None:
                runtime.settle_event = trio.Event()
            await runtime.settle_event.wait()


async def supervise(
    root_fn: Runnable,
    *,
    propagate_exceptions: bool = False,
    backoff: Backoff = Backoff(),  # noqa: B008 (frozen, immutable)
    rng: random.Random | None = None,
    observers: Iterable[Observer] = (),
    limit: RestartLimit | None = None,
    task_status: trio.TaskStatus[Handle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a supervision tree with `root_fn` as its root runnable, until cancelled.

    Args:
        root_fn: the root runnable (`async def fn() -> None`), named `root`.
        propagate_exceptions: if True, the first exception a runnable raises stops the tree and
            is re-raised here, instead of being a death and a restart (for tests).
        backoff: the restart backoff policy for DEAD nodes.
        rng: the jitter source for the backoff (default: a fresh `random.Random()`).
        observers: callbacks for every state change (see `supervisor.observe`).
        limit: the root's restart limit; beyond it the tree ends (default: none, the root
            restarts forever, as in Monogon).
        task_status: for `nursery.start`; `started()` receives the tree's `Handle`.

    Returns:
        Never on its own: the tree runs until the caller cancels it; then every node is
        cancelled (no restarts) and `supervise` returns once all have exited.

    Raises:
        RestartLimitExceeded: the root died more often than `limit` allows (a failure that
            climbed the tree, or the root's own); `__cause__` is the last exception.
        BaseException: with `propagate_exceptions`, a runnable's exception; and always a
            `KeyboardInterrupt`, `SystemExit` or other non-`Exception` a runnable raised.

    All nodes are tasks of one flat nursery (not nested nurseries): a runnable may return DONE
    while its children keep running, which a nursery per node would not allow without
    keeping a task around for it.
    """
    async with trio.open_nursery() as nursery:
        runtime = _Runtime(
            root_fn,
            nursery,
            propagate=propagate_exceptions,
            backoff=backoff,
            rng=rng if rng is not None else random.Random(),
            observers=list(observers),
            limit=limit,
        )
        runtime.spawn(runtime.root, None, trio.current_time())
        task_status.started(runtime.handle)
        await trio.sleep_forever()
    # Only reached when the runtime cancelled its own nursery: a failure to propagate.
    assert runtime.failure is not None
    failure, runtime.failure = runtime.failure, None
    raise failure


# -- the module functions, acting on the calling runnable's node ---------------------------------


def _node() -> Node:
    node = _current.get(None)
    if node is None:
        raise RuntimeError("not called from a supervised runnable")
    return node


def run(
    name: str,
    fn: Runnable,
    *,
    restart: Restart = Restart.PERMANENT,
    limit: RestartLimit | None = None,
    worker: bool = False,
) -> None:
    """Declare a child runnable in a group of its own (one-for-one).

    Args:
        name: the child's name, `^[a-z0-9_]{1,64}$`, unique among children and sub-loggers.
        fn: the child's runnable.
        restart: when it runs again (`Restart`; default PERMANENT).
        limit: at most this many deaths per period; beyond, the caller dies instead.
        worker: the child will never declare children of its own (OTP's `worker` child
            type); it then needs no cancel scope of its own, which makes it about half as
            costly to start. Declaring children from a worker raises `RuntimeError`.

    Raises:
        RuntimeError: not called from a runnable, or the caller is no longer NEW.
        ValueError: the name is invalid or taken.
    """
    node = _node()
    child = tree.declare_one(node, name, fn, restart, limit, worker=worker)
    runtime = _runtime.get()
    runtime.spawn(child, None, runtime.clock.current_time())


def run_group(
    runnables: Mapping[str, Runnable | Child],
    *,
    limit: RestartLimit | None = None,
) -> None:
    """Declare children that live and die together: when one dies, the others are cancelled.

    Args:
        runnables: name to runnable, or to `Child(fn, restart=..., limit=...)`; names as for
            `run`.
        limit: the group's restart limit: deaths of any member count; beyond it, no member
            runs again and the caller dies instead.

    Raises:
        RuntimeError: not called from a runnable, or the caller is no longer NEW.
        ValueError: a name is invalid or taken (nothing is started then).

    The children start at the caller's next checkpoint; they are the caller's for the life of
    this incarnation, and declared again by the function when the caller restarts. A
    TEMPORARY member's death leaves the group alone; a group restart re-runs every PERMANENT
    and TRANSIENT member (DONE ones included), never a TEMPORARY one.
    """
    node = _node()
    runtime = _runtime.get()
    now = runtime.clock.current_time()
    for child in tree.declare(node, runnables, limit):
        runtime.spawn(child, None, now)


def start_child(
    name: str,
    fn: Runnable,
    *,
    restart: Restart = Restart.PERMANENT,
    limit: RestartLimit | None = None,
) -> None:
    """Start a child of the calling runnable now, in any live state (OTP's `start_child`).

    Args:
        name, fn, restart, limit: as for `run`.

    Raises:
        RuntimeError: not called from a runnable whose function is running.
        ValueError: the name is invalid or taken (a child still stopping keeps its name).

    The child follows the same restart rules as a declared one, in a group of its own. It
    belongs to this incarnation of the caller: a restart of the caller drops it (the function
    starts it again if it wants). Once finished (stopped, TEMPORARY and exited, a clean
    TRANSIENT return, DONE, its limit exceeded) it leaves the tree and its name is free.
    """
    node = _node()
    child = tree.declare_one(node, name, fn, restart, limit, dynamic=True)
    runtime = _runtime.get()
    runtime.spawn(child, None, runtime.clock.current_time())


async def stop_child(name: str) -> None:
    """Stop a child of the calling runnable for good, and wait until its subtree has exited.

    Args:
        name: the child's name.

    Raises:
        RuntimeError: not called from a supervised runnable.
        KeyError: the caller has no dynamic child of that name (declared children live and
            die with their parent's incarnation).

    The child's subtree is cancelled (its exit is CANCELED, never restarted); it then leaves
    the tree and its name is free for `start_child`. The stop happens even if the wait is
    cancelled.
    """
    node = _node()
    child = node.children.get(name) if node.children else None
    if child is None or not child.dynamic:
        raise KeyError(f"{node.dn()} has no dynamic child named {name!r}")
    runtime = _runtime.get()
    event = runtime.waiters.get(child)
    if event is None:
        event = runtime.waiters[child] = trio.Event()
        runtime.carry_out(tree.stop(child), trio.current_time())
    await event.wait()


def signal(which: Signal) -> None:
    """Tell the supervisor about the calling runnable: `Signal.HEALTHY` or `Signal.DONE`.

    Raises:
        RuntimeError: not from a runnable, HEALTHY other than from NEW, DONE other than from
            HEALTHY. Uncaught, it kills the runnable (a death, restarted after a backoff).
    """
    node = _node()
    change = tree.apply_signal(node, which)
    if change is not None:
        runtime = _runtime.get()
        node.since = runtime.clock.current_time()
        if runtime.observers or runtime.values:
            runtime.emit(node, *change)


def handle() -> Handle:
    """The `Handle` of the calling runnable's tree (to watch or snapshot it from inside).

    Raises:
        RuntimeError: not called from a supervised runnable.
    """
    _node()
    return _runtime.get().handle


def snapshot() -> NodeSnapshot:
    """`handle().snapshot()`: the calling runnable's whole tree now."""
    return handle().snapshot()


def logger() -> logging.Logger:
    """The calling runnable's logger, named by its dn (`root.net.dhcp`).

    The root node's logger is therefore the stdlib root logger (`logging.getLogger("root")`),
    and every node's records propagate up the tree to it. Loggers are created on first use.
    """
    return logging.getLogger(_node().dn())


def sub_logger(name: str) -> logging.Logger:
    """A child logger `<dn>.<name>` for a part of the calling runnable.

    Raises:
        RuntimeError: not called from a runnable.
        ValueError: the name is invalid or a child runnable's; once taken, no child may use it.
    """
    node = _node()
    tree.reserve(node, name)
    return logging.getLogger(f"{node.dn()}.{name}")


def dn() -> str:
    """The calling runnable's dotted name, e.g. `root.net.dhcp`."""
    return _node().dn()
