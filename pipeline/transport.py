"""The transport: one ``Request`` sent under the rate limits with retries (limits.py) over HTTP
(http.py), or one ``Speak`` over a realtime session (realtime.py) under the same limits and
retries. It knows requests and answers, never rows: the journal, files and notes are the
executor's (``executor.RowWork``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipeline.http import Answer, Http
from pipeline.limits import RetryPolicy
from pipeline.realtime import RealtimeSessions
from pipeline.steps import Request, Speak, Spoken

BeforeSend = Callable[[], Awaitable[None]] | None


class Transport:
    """What every request of one run goes through; shared by the executor's workers."""

    def __init__(self, http: Http, policy: RetryPolicy, concurrency: int = 1) -> None:
        self.http = http
        self.policy = policy
        self.realtime = RealtimeSessions(http, concurrency)  # opens nothing until a Speak

    @property
    def base_url(self) -> str:
        return self.http.base_url

    async def send(
        self, request: Request, attempts: list[int], before_send: BeforeSend = None
    ) -> Answer:
        """The answer to ``request``; raises what ``RetryPolicy.call`` raises. ``attempts[0]``
        counts the attempts; ``before_send`` is awaited once, just before the first attempt
        leaves (the executor marks the rows sent there)."""
        http, first = self.http, _Once(before_send)

        async def attempt() -> Answer:
            await first()
            answer = await http.request(
                request.method,
                request.path,
                request.body,
                expect=request.expect,
                headers=request.headers,
                max_bytes=request.max_bytes,
            )
            if request.check is not None:
                request.check(answer)
            return answer

        answer = await self.policy.call(attempt, request.tokens, attempts)
        self.policy.stats.characters_sent += request.characters
        return answer

    async def speak(
        self, step: Speak, attempts: list[int], before_send: BeforeSend = None
    ) -> Spoken:
        """The audio of ``step`` over a realtime session, as ``send`` gives an answer: the same
        limits and retries (a reworded transcript, an error event, a dropped socket: retried)."""
        sessions, first = self.realtime, _Once(before_send)

        async def attempt() -> Spoken:
            await first()
            spoken = await sessions.speak(step)
            if step.check is not None:
                step.check(spoken)
            return spoken

        spoken = await self.policy.call(attempt, step.tokens, attempts)
        self.policy.stats.characters_sent += step.characters
        return spoken


class _Once:
    """Awaits ``before_send`` at the first call only."""

    __slots__ = ("_pending",)

    def __init__(self, before_send: BeforeSend) -> None:
        self._pending = before_send

    async def __call__(self) -> None:
        if self._pending is not None:
            mark, self._pending = self._pending, None
            await mark()
