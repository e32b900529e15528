"""Running many calls at once, and stopping them without losing or repaying any.

``run_pool`` works through the items with at most ``concurrency`` at a time. Before each
new item it asks ``should_stop`` (``--max-usd`` uses it); once stopped, no item is
started and the calls in flight finish, so their answers are written, not paid for and
thrown away. Ctrl-C (SIGINT) stops the same way; a second Ctrl-C cancels the calls in
flight (their answers are lost; those calls run again on the next run) and raises
KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
INTERRUPTED = "interrupted (Ctrl-C)"
_END = object()


@dataclass(slots=True)
class PoolResult:
    started: int
    stopped: str | None  # why it stopped before the last item; None: every item ran


async def run_pool(
    items: Sequence[T],
    work: Callable[[T], Awaitable[None]],
    concurrency: int,
    should_stop: Callable[[], str | None],
    note: Callable[[str], None],
) -> PoolResult:
    pending: Iterator[T] = iter(items)
    state = {"started": 0, "active": 0, "signals": 0}
    stopped: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def worker() -> None:
        while True:
            reason = stopped[0] if stopped else should_stop()
            if reason is not None:
                if not stopped:
                    stopped.append(reason)
                return
            item = next(pending, _END)
            if item is _END:
                return
            state["started"] += 1
            state["active"] += 1
            try:
                await work(item)  # type: ignore[arg-type]
            finally:
                state["active"] -= 1

    def interrupt() -> None:
        state["signals"] += 1
        if state["signals"] == 1:
            if not stopped:
                stopped.append(INTERRUPTED)
            note(
                f"stopping: no new calls; finishing {state['active']} in flight "
                "(Ctrl-C again to abort them)"
            )
            return
        note("aborting the calls in flight")
        for task in tasks:
            task.cancel()

    loop = asyncio.get_running_loop()
    handled = False
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, interrupt)  # main thread only
        handled = True
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(items)))):
                tasks.append(group.create_task(worker()))
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
    if state["signals"] > 1:
        raise KeyboardInterrupt
    unfinished = stopped and state["started"] < len(items)
    return PoolResult(state["started"], stopped[0] if unfinished else None)
