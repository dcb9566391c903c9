"""The endpoints a batch can name, answered by the same engines as their synchronous routes.

``/v1/moderations`` lines are checked by ``moderation.parse_input`` and scored by the app's
``moderation.Scorer`` (its micro-batcher, shared with the route); ``/v1/responses`` lines are
checked by ``response_requests.check_response`` and made by the app's ``ResponseStore`` and
responder (with the injected ``run_outcomes``). What the synchronous route would refuse once
the body is valid (``reject_substring``, an unknown ``previous_response_id``) is that line's
own error answer, not a failed batch. Streaming and background responses are not batched.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from aiohttp import web

from pipeline.emulator import checks
from pipeline.emulator.facts import estimate_tokens
from pipeline.emulator.moderation import SCORER, Scorer, check_rejected, parse_input
from pipeline.emulator.replies import ApiReply
from pipeline.emulator.response_requests import check_response, input_turns
from pipeline.emulator.responses import RESPONSES, ResponseStore

# the spec's CreateBatchRequest.endpoint values; only the first two are emulated
SPEC_ENDPOINTS: Final[tuple[str, ...]] = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)


class Endpoint(Protocol):
    """What a batch needs of an endpoint: check a body, estimate it, answer it."""

    path: str

    def check(self, body: dict[str, Any]) -> None:
        """Raise ApiReply (400) when the body is not valid for the endpoint."""

    def tokens(self, body: dict[str, Any]) -> int:
        """Its estimated input tokens (a checked body)."""

    async def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status code, answer body) for a checked body."""


class Moderations:
    path = "/v1/moderations"

    def __init__(self, scorer: Scorer, reject_substring: str | None) -> None:
        self._scorer = scorer
        self._reject = reject_substring

    def check(self, body: dict[str, Any]) -> None:
        parse_input(body)

    def tokens(self, body: dict[str, Any]) -> int:
        return sum(estimate_tokens(part) for part in parse_input(body).parts)

    async def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parsed = parse_input(body)
        try:
            check_rejected(parsed, body, self._reject)
        except ApiReply as reply:
            return reply.status, reply.body
        return 200, await self._scorer.answer(parsed)


class Responses:
    path = "/v1/responses"

    def __init__(self, store: ResponseStore) -> None:
        self._store = store

    def check(self, body: dict[str, Any]) -> None:
        check_response(body)
        for name in ("stream", "background"):
            if body.get(name):
                raise checks.fail(name, f"'{name}' cannot be used in a batch.", "unsupported_value")
        for name in ("conversation", "prompt"):
            if body.get(name) is not None:
                raise checks.fail(name, f"'{name}' is not emulated.", "unsupported_value")

    def tokens(self, body: dict[str, Any]) -> int:
        turns, outputs = input_turns(body.get("input"))
        texts = [body.get("instructions") or "", *(text for _, text in turns), *outputs]
        return estimate_tokens("\n".join(texts))

    async def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        store = self._store
        try:
            stored = store.prepare(body)
        except ApiReply as reply:
            return reply.status, reply.body
        store.plan(stored)
        if store.needs_answer(stored):
            stored.take(await store.responder.answer(stored.prompt))
        stored.life.begin = stored.life.ready = store.clock()
        if body.get("store") is not False:
            store.keep(stored)
        return 200, stored.object(store.clock())


def endpoints(app: web.Application, reject_substring: str | None) -> dict[str, Endpoint]:
    """The emulated batch endpoints by path (after the moderation and responses routes)."""
    found: list[Endpoint] = [
        Moderations(app[SCORER], reject_substring),
        Responses(app[RESPONSES]),
    ]
    return {endpoint.path: endpoint for endpoint in found}
