"""What a request kind talks to: one call = rate limits + retries (limits.py) over HTTP (http.py).

The pool hands each ``send`` a fresh ``Call`` so it can count attempts and mark the rows as sent
in the journal just before the first byte leaves, whatever workflow the kind runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pipeline.http import Answer, Http
from pipeline.limits import RetryPolicy


class Call:
    """One kind.send's view of the API: attempts counted, rows marked sent before the first send."""

    def __init__(
        self, http: Http, policy: RetryPolicy, on_first_send: Callable[[], Awaitable[None]]
    ) -> None:
        self._http = http
        self._policy = policy
        self._on_first_send: Callable[[], Awaitable[None]] | None = on_first_send
        self._attempts = [0]

    @property
    def attempts(self) -> int:
        return self._attempts[0]

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        tokens: int = 1,
        expect: str = "json",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send under the rate limits with retries; raises what RetryPolicy.call raises."""

        async def send() -> Answer:
            if self._on_first_send is not None:
                mark, self._on_first_send = self._on_first_send, None
                await mark()
            return await self._http.request(method, path, body, expect=expect, headers=headers)

        return await self._policy.call(send, tokens, self._attempts)

    async def post(self, path: str, body: Any, *, tokens: int = 1, expect: str = "json") -> Answer:
        return await self.request("POST", path, body, tokens=tokens, expect=expect)
