"""What the runs store and the responses store share: records kept up to ``max_stored`` (past
it the oldest finished are dropped), and answers made at once locally or by the
chat-completions delegate in a task (closing the app cancels those that are still waiting).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Final, Generic, Protocol, TypeVar

from aiohttp import web

from pipeline.emulator.checks import NOTE
from pipeline.emulator.lifecycle import Lifecycle
from pipeline.emulator.responder import Answer, Prompt, Responder

EVICTION_SCAN: Final[int] = 32  # how many of the oldest records one keep() looks at
T = TypeVar("T")


class Bounded(Generic[T]):
    """Records by id, oldest first, at most ``max_stored`` of them once the oldest have finished.

    Lives on the event loop; ``lock`` guards it (and whatever its records hold that a gauge
    reads) against the stats gauges, which read from other threads.
    """

    def __init__(self, max_stored: int) -> None:
        self.max_stored = max_stored
        self.lock = threading.Lock()
        self._records: OrderedDict[str, T] = OrderedDict()

    def get(self, key: str) -> T | None:
        return self._records.get(key)

    def snapshot(self) -> list[T]:
        """Every record, oldest first (any thread may call this)."""
        with self.lock:
            return list(self._records.values())

    def keep(self, key: str, record: T, finished: Callable[[T], bool]) -> None:
        """Store ``record``; past ``max_stored``, drop the oldest for which ``finished`` says so
        (among the first EVICTION_SCAN: a store of active records may grow past its bound)."""
        with self.lock:
            self._records[key] = record
            excess = len(self._records) - self.max_stored
            if excess <= 0:
                return
            doomed: list[str] = []
            for old_key, old in itertools.islice(self._records.items(), EVICTION_SCAN):
                if finished(old):
                    doomed.append(old_key)
                    if len(doomed) == excess:
                        break
            for old_key in doomed:
                del self._records[old_key]


class Answerable(Protocol):
    """A run or a response: what making its answer reads and sets."""

    life: Lifecycle
    prompt: Prompt
    answer: Answer | None
    error: tuple[str, str] | None
    task: asyncio.Task[None] | None

    def take(self, answer: Answer) -> None: ...


def apply_answer(record: Answerable, answer: Answer) -> None:
    """Settle ``record`` on ``answer``: failed on an error, else cut in half when an injected
    outcome says incomplete, and incomplete whenever the answer was cut."""
    if answer.error is not None:
        record.life.outcome, record.error = "failed", answer.error
        return
    if record.life.outcome == "incomplete" and not answer.truncated:  # injected: cut in half
        answer = Answer(answer.text[: len(answer.text) // 2], truncated=True)
    if answer.truncated:
        record.life.outcome = "incomplete"
    record.answer = answer


class Answering:
    """Makes runs' and responses' answers: the local one at once, a delegated one in a task."""

    def __init__(self, responder: Responder, clock: Callable[[], float]) -> None:
        self.responder = responder
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def answer_later(self, record: Answerable) -> None:
        """Answer ``record``; a delegated answer keeps it in progress (``ready`` None) until it
        arrives."""
        if not self.responder.delegating:
            record.take(self.responder.local(record.prompt))
            return
        record.life.ready = None

        async def delegate() -> None:
            try:
                answer = await self.responder.answer(record.prompt)
            except Exception as exc:  # a bug must fail the record, not leave it in progress
                answer = Answer(error=("server_error", f"The responder failed: {exc!r} {NOTE}"))
            record.take(answer)
            record.life.ready = self._clock()

        record.task = asyncio.get_running_loop().create_task(delegate())
        self._tasks.add(record.task)
        record.task.add_done_callback(self._tasks.discard)

    async def cleanup(self, _: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: on shutdown, cancel the answers still being made."""
        yield
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
