"""The Assistants API routes: threads, messages and runs under /v1/threads.

Every route needs the header ``OpenAI-Beta: assistants=v2``, like the API (a missing or other
version is a 400 saying so). Bodies are checked like the API checks them (``run_requests``);
unknown thread and run ids are 404s. Each request is one request against the rate limits, and
a create also pays the estimated tokens of the text its body sends (messages, instructions, tool
outputs; a thread's earlier messages are not charged again when a run reads them).
``stream: true`` on a run create answers server-sent events (``run_stream``). There is no
assistant store: any ``assistant_id`` is accepted and the run request alone says what runs
(see ``runs``).

Lists (messages, runs) take ``limit`` (1-100, default 20), ``order`` (``desc`` by default),
``after`` / ``before`` (ids) and, for messages, ``run_id``. An empty list has ``first_id`` and
``last_id`` ``""``: the spec's ListMessagesResponse types them as strings (the API says null).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from pipeline.emulator import checks
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.facts import estimate_tokens
from pipeline.emulator.limits import admit
from pipeline.emulator.records import Run, Thread
from pipeline.emulator.replies import ApiReply, error_body, json_response, read_json_object
from pipeline.emulator.responder import RESPONDER
from pipeline.emulator.run_requests import (
    check_message,
    check_run,
    check_thread,
    check_thread_and_run,
    check_tool_outputs,
)
from pipeline.emulator.run_stream import stream_run
from pipeline.emulator.runs import RunStore
from pipeline.emulator.stats import STATS

PREFIX: Final[str] = "/v1/threads"
BETA: Final[str] = "assistants=v2"
STORE = web.AppKey("runs", RunStore)
_LIMIT = checks.number(minimum=1, maximum=100, integer=True)
_ORDER = checks.choice("asc", "desc")

Handler = Callable[[web.Request, RunStore], Awaitable[web.StreamResponse]]


def check_beta(request: web.Request) -> None:
    """400 unless the request carries ``OpenAI-Beta: assistants=v2``."""
    sent = [part.strip() for part in request.headers.get("OpenAI-Beta", "").split(",")]
    if BETA in sent:
        return
    if "assistants=v1" in sent:
        message = "The v1 Assistants API has been deprecated."
    else:
        message = "You must provide the 'OpenAI-Beta' header to access the Assistants API."
    message += f" Please try again by setting the header 'OpenAI-Beta: {BETA}'. {checks.NOTE}"
    raise ApiReply(400, error_body(message, "invalid_request_error", code="invalid_beta"))


def text_tokens(body: Mapping[str, Any]) -> int:
    """The estimated tokens of the text a create body sends (messages, instructions)."""
    texts = [body.get(k) for k in ("instructions", "additional_instructions", "output")]
    messages: list[Any] = [body] if "role" in body else []
    thread = body.get("thread") or {}
    for source in (body, thread):
        messages += source.get("messages") or []
    messages += body.get("additional_messages") or []
    for message in messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        texts += [part.get("text") for part in parts if part.get("type") == "text"]
    texts += [item.get("output") for item in body.get("tool_outputs") or []]
    return estimate_tokens("\n".join(t for t in texts if isinstance(t, str)))


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}`` (create thread needs none)."""
    if not await request.read():
        return {}
    return await read_json_object(request)


def page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of a list answer, as the API's list endpoints cut it."""
    limit = 20
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise checks.wrong_type("limit", "an integer", query["limit"]) from None
        _LIMIT(limit, "limit")
    order = query.get("order", "desc")
    _ORDER(order, "order")
    ordered = items if order == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    more = False
    for name in ("after", "before"):
        cursor = query.get(name)
        if cursor is None:
            continue
        if cursor not in ids:
            raise checks.fail(name, f"Invalid '{name}': no object with id '{cursor}' here.")
        at = ids.index(cursor)
        if name == "after":
            ordered, ids = ordered[at + 1 :], ids[at + 1 :]
        else:
            more = at > limit
            ordered, ids = ordered[max(0, at - limit) : at], ids[max(0, at - limit) : at]
    chosen = ordered[:limit]
    return {
        "object": "list",
        "data": chosen,
        "first_id": chosen[0]["id"] if chosen else "",
        "last_id": chosen[-1]["id"] if chosen else "",
        "has_more": more or len(ordered) > limit,
    }


async def create_thread(request: web.Request, store: RunStore) -> web.StreamResponse:
    body = await _body(request)
    check_thread(body)
    admit(request, text_tokens(body))
    return json_response(store.new_thread(body).object())


async def get_thread(request: web.Request, store: RunStore) -> web.StreamResponse:
    thread = store.thread(request.match_info["thread_id"])
    admit(request, 0)
    return json_response(thread.object())


async def create_message(request: web.Request, store: RunStore) -> web.StreamResponse:
    body = await read_json_object(request)
    check_message(body)
    thread = store.thread(request.match_info["thread_id"])
    store.check_idle(thread, "messages")
    admit(request, text_tokens(body))
    return json_response(store.add_message(thread, body))


async def list_messages(request: web.Request, store: RunStore) -> web.StreamResponse:
    thread = store.thread(request.match_info["thread_id"])
    run_id = request.query.get("run_id")
    messages = [m for m in thread.messages if run_id is None or m["run_id"] == run_id]
    answer = page(messages, request.query)
    admit(request, 0)
    return json_response(answer)


async def create_run(request: web.Request, store: RunStore) -> web.StreamResponse:
    body = await read_json_object(request)
    check_run(body)
    thread = store.thread(request.match_info["thread_id"])
    store.check_idle(thread, "run")
    admit(request, text_tokens(body))
    return await _queued(request, store, store.new_run(thread, body), body)


async def create_thread_and_run(request: web.Request, store: RunStore) -> web.StreamResponse:
    body = await read_json_object(request)
    check_thread_and_run(body)
    admit(request, text_tokens(body))
    thread = store.new_thread(body.get("thread") or {})
    return await _queued(request, store, store.new_run(thread, body), body, thread=thread)


async def get_run(request: web.Request, store: RunStore) -> web.StreamResponse:
    run = _run(request, store)
    admit(request, 0)
    return json_response(store.run_object(run))


async def list_runs(request: web.Request, store: RunStore) -> web.StreamResponse:
    thread = store.thread(request.match_info["thread_id"])
    answer = page([store.run_object(run) for run in store.runs(thread)], request.query)
    admit(request, 0)
    return json_response(answer)


async def cancel_run(request: web.Request, store: RunStore) -> web.StreamResponse:
    run = _run(request, store)
    admit(request, 0)
    store.cancel(run)
    return json_response(store.run_object(run, status="cancelling"))


async def submit_tool_outputs(request: web.Request, store: RunStore) -> web.StreamResponse:
    body = await read_json_object(request)
    check_tool_outputs(body)
    run = _run(request, store)
    admit(request, text_tokens(body))
    store.submit_tool_outputs(run, body["tool_outputs"])
    return await _queued(request, store, run, body, resumed=True)


async def _queued(
    request: web.Request,
    store: RunStore,
    run: Run,
    body: Mapping[str, Any],
    *,
    thread: Thread | None = None,
    resumed: bool = False,
) -> web.StreamResponse:
    """A run just queued (or queued again): its events if ``body`` streams, else the object."""
    if body.get("stream"):
        return await stream_run(request, store, run, thread=thread, resumed=resumed)
    return json_response(store.run_object(run, run.life.begin, "queued"))


def _run(request: web.Request, store: RunStore) -> Run:
    thread = store.thread(request.match_info["thread_id"])
    return store.run(thread, request.match_info["run_id"])


_ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = (
    ("POST", "", create_thread),
    ("POST", "/runs", create_thread_and_run),
    ("GET", "/{thread_id}", get_thread),
    ("POST", "/{thread_id}/messages", create_message),
    ("GET", "/{thread_id}/messages", list_messages),
    ("POST", "/{thread_id}/runs", create_run),
    ("GET", "/{thread_id}/runs", list_runs),
    ("GET", "/{thread_id}/runs/{run_id}", get_run),
    ("POST", "/{thread_id}/runs/{run_id}/cancel", cancel_run),
    ("POST", "/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs),
)


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add the /v1/threads routes and the run store (``runs_by_status`` in the stats)."""
    store = RunStore(config, app[RESPONDER])
    app[STORE] = store
    app[STATS].add_gauge("runs_by_status", store.statuses)

    def route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            check_beta(request)
            return await handler(request, store)

        return handle

    app.cleanup_ctx.append(store.answering.cleanup)
    for method, path, handler in _ROUTES:
        app.router.add_route(method, PREFIX + path, route(handler))
