"""Helpers for the threads/runs and responses tests: calls with the beta header, runs started
and read back (checked against RunObject / ListMessagesResponse), SSE events, bounded polling,
component schemas from the whole OpenAPI document, a chat-completions stub."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from jsonschema import Draft202012Validator

from pipeline.emulator import RunningEmulator
from tests.emulator.helpers import SCHEMAS, Answer, load_validator

BETA = {"OpenAI-Beta": "assistants=v2"}
TERMINAL = {"completed", "failed", "incomplete", "expired", "cancelled"}
RUN = load_validator("RunObject")
MESSAGES = load_validator("ListMessagesResponse")


async def call(
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Answer:
    """``method path`` with the beta header (unless ``headers`` says otherwise), JSON back."""
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    async with http.request(
        method,
        emulator.base_url + path,
        headers=BETA if headers is None else headers,
        params=params,
        **kwargs,
    ) as response:
        payload = await response.json(content_type=None)
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, payload)


async def events(
    http: aiohttp.ClientSession, emulator: RunningEmulator, path: str, body: Any
) -> list[tuple[str, Any]]:
    """POST a streaming request; the (event, data) pairs of its server-sent events."""
    async with http.post(emulator.base_url + path, json=body, headers=BETA) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = await response.text()
    out: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = lines["data"]
        out.append((lines["event"], data if data == "[DONE]" else orjson.loads(data)))
    return out


def question(text: str = "Where is my order?") -> dict[str, Any]:
    return {
        "assistant_id": "asst_support",
        "thread": {"messages": [{"role": "user", "content": text}]},
    }


async def start_run(
    http: aiohttp.ClientSession, emulator: RunningEmulator, **body: Any
) -> dict[str, Any]:
    answer = await call(http, emulator, "POST", "/threads/runs", {**question(), **body})
    assert answer.status == 200, answer.body
    RUN.validate(answer.body)
    assert answer.body["status"] == "queued"
    run: dict[str, Any] = answer.body
    return run


async def get_run(
    http: aiohttp.ClientSession, emulator: RunningEmulator, run: dict[str, Any]
) -> dict[str, Any]:
    answer = await call(http, emulator, "GET", f"/threads/{run['thread_id']}/runs/{run['id']}")
    assert answer.status == 200
    RUN.validate(answer.body)
    body: dict[str, Any] = answer.body
    return body


async def messages(
    http: aiohttp.ClientSession, emulator: RunningEmulator, run: dict[str, Any], **params: str
) -> list[dict[str, Any]]:
    answer = await call(
        http, emulator, "GET", f"/threads/{run['thread_id']}/messages", params=params
    )
    MESSAGES.validate(answer.body)
    data: list[dict[str, Any]] = answer.body["data"]
    return data


async def poll_run(
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    run: dict[str, Any],
    until: Callable[[str], bool] = TERMINAL.__contains__,
    *,
    tries: int = 200,
    pause_s: float = 0.01,
) -> tuple[dict[str, Any], list[str]]:
    """GET the run until ``until(status)``, at most ``tries`` times; (the run, statuses seen)."""
    seen: list[str] = []
    for _ in range(tries):
        answer = await call(http, emulator, "GET", f"/threads/{run['thread_id']}/runs/{run['id']}")
        assert answer.status == 200, answer.body
        seen.append(answer.body["status"])
        if until(answer.body["status"]):
            return answer.body, seen
        await asyncio.sleep(pause_s)
    raise AssertionError(f"the run never got there; statuses seen: {seen[-5:]}")


@functools.cache
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMAS / "openapi-components.json").read_text())
    return document


def component_validator(name: str) -> Draft202012Validator:
    """A validator for ``components.schemas.NAME`` of the spec (refs resolved in place)."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}",
        "components": _openapi()["components"],
    }
    return Draft202012Validator(schema)


class Stub:
    """A chat-completions server: answers with ``reply`` (a status and a JSON body)."""

    def __init__(self, status: int = 200, reply: Any = None) -> None:
        self.status = status
        self.reply = reply
        self.bodies: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.json_response(self.reply, status=self.status)


@asynccontextmanager
async def chat_stub(status: int = 200, content: str | None = "forty-two") -> AsyncIterator[Stub]:
    """A Stub serving POST /v1/chat/completions on loopback in this event loop."""
    reply = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    stub = Stub(status, reply if status == 200 else {"error": {"message": "no"}})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", stub.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stub.url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        yield stub
    finally:
        await runner.cleanup()
