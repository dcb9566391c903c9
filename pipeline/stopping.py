"""How a run stops by itself or on request: the stop flag, why it was raised, and the bounds
(--max-requests, --max-characters) that raise it. Every wait of a run ends as soon as it is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import PipelineError
from pipeline.stats import RunStats


class Stopped(PipelineError):
    """The run was asked to stop while this request waited; it was not sent."""


@dataclass(frozen=True)
class Bounds:
    """Where a run stops by itself, cleanly and resumably (a cron window); None: no bound."""

    max_requests: int | None = None
    max_characters: int | None = None

    def reached(self, stats: RunStats) -> str | None:
        """The bound this run has reached (the stop reason), None while it may go on."""
        if self.max_requests is not None and stats.requests >= self.max_requests:
            return "max_requests"
        if self.max_characters is not None and stats.characters_sent >= self.max_characters:
            return "max_characters"
        return None


NO_BOUNDS = Bounds()


class Stopper:
    """The run's stop flag, why it was raised, and sleeps that end as soon as it is."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason: str | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def stop(self, reason: str = "stopped") -> None:
        if self.event.is_set():
            return
        self.reason = reason
        self.event.set()
        for listener in self._listeners:
            listener()

    def on_stop(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def sleep(self, seconds: float) -> None:
        """Sleep, or raise Stopped at once when the run stops."""
        if self.event.is_set():
            raise Stopped("stopping")
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self.event.wait(), seconds)
        except TimeoutError:
            return
        raise Stopped("stopping")

    async def wait(self, event: asyncio.Event) -> None:
        """Wait for ``event``, or raise Stopped at once when the run stops."""
        if not event.is_set():
            waiters = [
                asyncio.ensure_future(event.wait()),
                asyncio.ensure_future(self.event.wait()),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        if self.event.is_set():
            raise Stopped("stopping")
