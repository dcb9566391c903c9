"""What a request kind talks to: one call = rate limits + retries (limits.py) over HTTP (http.py).

The pool hands each ``send`` a fresh ``Call`` so it can count attempts and mark the rows as sent
in the journal just before the first byte leaves, whatever workflow the kind runs. Through the
call a kind also reaches the run's output files and tallies (characters sent, audio seconds).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.http import DEFAULT_MAX_ANSWER_BYTES, Answer, Http
from pipeline.journal import Journal
from pipeline.limits import RetryPolicy
from pipeline.writers import OutputFiles


@dataclass(frozen=True)
class Session:
    """What every call of one run shares."""

    http: Http
    policy: RetryPolicy
    files: OutputFiles
    tally: defaultdict[str, float]  # kind-specific totals for summary.json
    journal: Journal


class Call:
    """One kind.send's view of the run: attempts counted, rows marked sent before the first send."""

    def __init__(self, session: Session, on_first_send: Callable[[], Awaitable[None]]) -> None:
        self._session = session
        self._on_first_send: Callable[[], Awaitable[None]] | None = on_first_send
        self._attempts = [0]
        self.files = session.files
        self.tally = session.tally

    @property
    def attempts(self) -> int:
        return self._attempts[0]

    @property
    def base_url(self) -> str:
        return self._session.http.base_url

    async def note(self, key: Any, progress: Any) -> None:
        """Record what a workflow must find again after a crash; returns once committed."""
        await self._session.journal.note(key, progress)

    async def sleep(self, seconds: float) -> None:
        """Wait between polls; raises Stopped at once when the run stops."""
        await self._session.policy.stopper.sleep(seconds)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        tokens: int = 1,
        expect: str = "json",
        headers: Mapping[str, str] | None = None,
        check: Callable[[Answer], None] | None = None,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> Answer:
        """Send under the rate limits with retries; raises what RetryPolicy.call raises.

        ``max_bytes`` caps the answer body (the kind knows how large its answer can be).
        ``check`` inspects a successful answer inside the attempt: a TransientApiError it raises
        (a truncated body, say) is retried like any other.
        """

        async def send() -> Answer:
            if self._on_first_send is not None:
                mark, self._on_first_send = self._on_first_send, None
                await mark()
            answer = await self._session.http.request(
                method, path, body, expect=expect, headers=headers, max_bytes=max_bytes
            )
            if check is not None:
                check(answer)
            return answer

        return await self._session.policy.call(send, tokens, self._attempts)

    async def post(
        self,
        path: str,
        body: Any,
        *,
        tokens: int = 1,
        expect: str = "json",
        check: Callable[[Answer], None] | None = None,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> Answer:
        return await self.request(
            "POST", path, body, tokens=tokens, expect=expect, check=check, max_bytes=max_bytes
        )
