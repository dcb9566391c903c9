"""POST /v1/responses, GET /v1/responses/{id}, POST /v1/responses/{id}/cancel: the Responses API.

No ``OpenAI-Beta`` header is needed. The body is checked (``response_requests``); the answer is
a Response object made by the same responder as runs, with the same injected outcomes
(``run_outcomes``), mapped onto what a response can be:

- ``failed``: status failed, ``error`` {code ``run_error_code``, message};
- ``incomplete``: status incomplete, ``incomplete_details.reason`` ``max_output_tokens``, the text
  cut in half (a text cut by ``max_output_tokens`` is incomplete the same way);
- ``expired``: failed with a ``server_error`` saying it timed out (responses have no expired);
- ``requires_action``: completed, its output a ``function_call`` item (the first function tool,
  else ``local_emulator_tool``): how the Responses API asks for a tool;
- ``stuck``: a background response stays in_progress until cancelled; a foreground one fails
  with a ``server_error`` (an answer that never comes is the ``slow`` fault's job).

A foreground response takes ``run_duration_s``. ``background: true`` answers ``queued`` and
follows the run lifecycle (``lifecycle``); GET shows its progress and cancel makes it
cancelled. ``stream: true``, ``conversation`` and ``prompt`` are refused (400): not emulated.
Stored responses (``store``, default true; at most ``max_stored``, the oldest finished dropped)
can be read back and continued with ``previous_response_id``: its input and output come first.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from pipeline.emulator import checks
from pipeline.emulator.config import EmulatorConfig, skewed_clock
from pipeline.emulator.facts import estimate_tokens
from pipeline.emulator.lifecycle import ACTIVE, Lifecycle, OutcomeDraw
from pipeline.emulator.limits import admit
from pipeline.emulator.records import object_id
from pipeline.emulator.replies import ApiReply, error_body, json_response, read_json_object
from pipeline.emulator.responder import RESPONDER, Answer, Prompt, Responder
from pipeline.emulator.response_requests import check_response, input_turns
from pipeline.emulator.stats import STATS
from pipeline.emulator.stores import Answering, Bounded, apply_answer

PATH: Final[str] = "/v1/responses"
_NOTE: Final[str] = checks.NOTE


@dataclass(eq=False)
class Stored:
    """One response: its request, prompt, lifecycle and (once made) answer."""

    id: str
    created_at: int
    body: dict[str, Any]
    prompt: Prompt
    input_tokens: int
    life: Lifecycle
    answer: Answer | None = None
    error: tuple[str, str] | None = None
    call: dict[str, Any] | None = None  # the function_call output item (requires_action)
    task: asyncio.Task[None] | None = None
    output_id: str = field(default_factory=lambda: object_id("msg"))

    @property
    def background(self) -> bool:
        return bool(self.body.get("background"))

    def conversation(self) -> list[tuple[str, str]]:
        """Its input turns and its answer: what a response continuing it sees first."""
        answer = [("assistant", self.answer.text)] if self.answer else []
        return [*self.prompt.messages, *answer]

    def take(self, answer: Answer) -> None:
        apply_answer(self, answer)

    def object(self, now: float, status: str | None = None) -> dict[str, Any]:
        """The Response object at ``now`` (or as it was when it entered ``status``)."""
        status = status or self.life.status(now)
        done = status in ("completed", "incomplete")
        body = self.body
        output: list[dict[str, Any]] = []
        if done and self.call is not None:
            output = [self.call]
        elif done and self.answer is not None:
            part = {
                "type": "output_text",
                "text": self.answer.text,
                "annotations": [],
                "logprobs": [],
            }
            output = [
                {
                    "type": "message",
                    "id": self.output_id,
                    "role": "assistant",
                    "status": status,
                    "content": [part],
                }
            ]
        error = self.error or ("server_error", f"The response failed. {_NOTE}")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": self.background,
            "completed_at": int(self.life.since(status)) if status == "completed" else None,
            "error": {"code": error[0], "message": error[1]} if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.prompt.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "service_tier": "default",
            "store": body.get("store") is not False,
            "temperature": _number(body, "temperature"),
            "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_p": _number(body, "top_p"),
            "truncation": body.get("truncation") or "disabled",
            "metadata": body.get("metadata") or {},
        } | ({"usage": self._usage()} if done else {})  # the spec's usage is never null

    def _usage(self) -> dict[str, Any]:
        output = estimate_tokens(self.answer.text) if self.answer else 0
        if self.call is not None:
            output = estimate_tokens(self.call["arguments"])
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + output,
        }


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    return 1.0 if value is None else float(value)


def _refuse_unemulated(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise checks.fail(
            "stream",
            "Streaming is not emulated: the local emulator answers a whole response; "
            "send stream: false.",
            "unsupported_value",
        )
    for name, what in (("conversation", "Conversations"), ("prompt", "Stored prompts")):
        if body.get(name) is not None:
            raise checks.fail(name, f"{what} are not emulated.", "unsupported_value")
    if body.get("background") and body.get("store") is False:
        raise checks.fail("store", "A background response must be stored (store: true).")


class ResponseStore:
    """Stored responses and the making of new ones (on the event loop; ``statuses`` anywhere)."""

    def __init__(self, config: EmulatorConfig, responder: Responder) -> None:
        self.config = config
        self.responder = responder
        self.clock = skewed_clock(config)
        self._stored: Bounded[Stored] = Bounded(config.max_stored)
        self._draw = OutcomeDraw(config.run_outcomes, config.seed, "responses")
        self.answering = Answering(responder, self.clock)

    def get(self, response_id: str) -> Stored:
        found = self._stored.get(response_id)
        if found is None:
            message = f"Response with id '{response_id}' not found. {_NOTE}"
            raise ApiReply(404, error_body(message, "invalid_request_error"))
        return found

    def prepare(self, body: dict[str, Any]) -> Stored:
        """A new response's record (no outcome, no answer yet); 400 for an unknown previous
        response."""
        history: list[tuple[str, str]] = []
        previous_id = body.get("previous_response_id")
        if previous_id is not None:
            previous = self._stored.get(previous_id)
            if previous is None:
                raise checks.fail(
                    "previous_response_id",
                    f"Previous response with id '{previous_id}' not found.",
                    "previous_response_not_found",
                )
            history = previous.conversation()
        turns, outputs = input_turns(body.get("input"))
        text_format = ((body.get("text") or {}).get("format") or {}).get("type", "text")
        prompt = Prompt(
            body.get("instructions") or "",
            [*history, *turns],
            model=body["model"],
            max_tokens=body.get("max_output_tokens"),
            response_format=text_format,
            sampling={k: body[k] for k in ("temperature", "top_p") if body.get(k) is not None},
            tool_outputs=outputs,
        )
        texts = [prompt.instructions, *(text for _, text in prompt.messages), *outputs]
        now = self.clock()
        duration = self.config.run_duration_s if body.get("background") else 0.0
        life = Lifecycle(now, duration, "completed", float("inf"))
        return Stored(
            object_id("resp"), int(now), body, prompt, estimate_tokens("\n".join(texts)), life
        )

    def plan(self, stored: Stored) -> None:
        """Draw its outcome (once it is admitted) and map it onto a response's statuses."""
        outcome = self._draw.draw()
        life = stored.life
        life.outcome = outcome
        if outcome == "failed":
            code = self.config.run_error_code
            stored.error = (code, f"The response failed: an injected '{code}' outcome. {_NOTE}")
        elif outcome == "expired" or (outcome == "stuck" and not stored.background):
            life.outcome = "failed"
            stored.error = (
                "server_error",
                f"The response timed out (injected '{outcome}'). {_NOTE}",
            )
        elif outcome == "requires_action":
            life.outcome = "completed"
            stored.call = _function_call(stored.body.get("tools") or [], stored.prompt.question)

    def needs_answer(self, stored: Stored) -> bool:
        return stored.life.outcome in ("completed", "incomplete") and stored.call is None

    def keep(self, stored: Stored) -> None:
        """Store it; past ``max_stored``, drop the oldest finished ones."""
        now = self.clock()
        self._stored.keep(stored.id, stored, lambda old: old.life.status(now) not in ACTIVE)

    def cancel(self, stored: Stored) -> None:
        if not stored.background:
            raise checks.fail(None, "Only responses created with background=true can be cancelled.")
        now = self.clock()
        status = stored.life.status(now)
        if status not in ("queued", "in_progress"):
            raise checks.fail(None, f"Cannot cancel a response with status '{status}'.")
        stored.life.cancel(now)
        if stored.task is not None:
            stored.task.cancel()

    def statuses(self) -> dict[str, int]:
        now = self.clock()
        return dict(Counter(item.life.status(now) for item in self._stored.snapshot()))


def _function_call(tools: list[dict[str, Any]], question: str) -> dict[str, Any]:
    names = [tool["name"] for tool in tools if tool.get("type") == "function"]
    return {
        "type": "function_call",
        "id": object_id("fc"),
        "call_id": object_id("call"),
        "name": names[0] if names else "local_emulator_tool",
        "arguments": orjson.dumps({"question": question}).decode(),
        "status": "completed",
    }


RESPONSES = web.AppKey("responses", ResponseStore)


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add the /v1/responses routes (``responses_by_status`` in the stats)."""
    store = ResponseStore(config, app[RESPONDER])
    app[RESPONSES] = store
    app[STATS].add_gauge("responses_by_status", store.statuses)

    async def create(request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request)
        check_response(body)
        _refuse_unemulated(body)
        stored = store.prepare(body)
        admit(request, stored.input_tokens)
        store.plan(stored)
        if stored.background:
            if store.needs_answer(stored):
                store.answering.answer_later(stored)
            store.keep(stored)
            return json_response(stored.object(stored.life.begin, "queued"))
        if store.needs_answer(stored):
            stored.take(await store.responder.answer(stored.prompt))
        await asyncio.sleep(max(0.0, stored.life.begin + config.run_duration_s - store.clock()))
        stored.life.begin = stored.life.ready = store.clock()
        if body.get("store") is not False:
            store.keep(stored)
        return json_response(stored.object(store.clock()))

    async def get(request: web.Request) -> web.StreamResponse:
        stored = store.get(request.match_info["response_id"])
        admit(request, 0)
        return json_response(stored.object(store.clock()))

    async def cancel(request: web.Request) -> web.StreamResponse:
        stored = store.get(request.match_info["response_id"])
        admit(request, 0)
        store.cancel(stored)
        return json_response(stored.object(store.clock()))

    app.cleanup_ctx.append(store.answering.cleanup)
    app.router.add_post(PATH, create)
    app.router.add_get(PATH + "/{response_id}", get)
    app.router.add_post(PATH + "/{response_id}/cancel", cancel)
