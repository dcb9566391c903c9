"""The transport: one ``Request`` sent under the rate limits with retries (limits.py) over HTTP
(http.py). It knows requests and answers, never rows: the journal, files and notes are the
executor's (``executor.RowWork``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipeline.http import Answer, Http
from pipeline.limits import RetryPolicy
from pipeline.steps import Request


class Transport:
    """What every request of one run goes through; shared by the executor's workers."""

    def __init__(self, http: Http, policy: RetryPolicy) -> None:
        self.http = http
        self.policy = policy

    @property
    def base_url(self) -> str:
        return self.http.base_url

    async def send(
        self,
        request: Request,
        attempts: list[int],
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> Answer:
        """The answer to ``request``; raises what ``RetryPolicy.call`` raises. ``attempts[0]``
        counts the attempts; ``before_send`` is awaited once, just before the first attempt
        leaves (the executor marks the rows sent there)."""
        http, pending = self.http, [before_send]

        async def attempt() -> Answer:
            if pending[0] is not None:
                mark, pending[0] = pending[0], None
                await mark()
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
