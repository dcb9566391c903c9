"""A run as server-sent events (``stream: true``): the AssistantStreamEvent sequence, paced by
the run's own lifecycle.

``event: NAME`` / ``data: JSON`` pairs, in the API's order: ``thread.created`` (create thread
and run), ``thread.run.created``, ``thread.run.queued``, ``thread.run.in_progress``, then for an
answer ``thread.message.created``, ``.in_progress``, a few ``.delta``, ``.completed`` (or
``.incomplete``), and the run's end: ``thread.run.completed`` / ``.incomplete`` / ``.failed`` /
``.expired`` / ``.requires_action`` / ``.cancelling`` + ``.cancelled``; last ``event: done`` with
``data: [DONE]``. Run steps (``thread.run.step.*``) are not emulated. Each run object is shown as
it was when it entered that status. A stuck run streams until it is cancelled (or the client
goes); the run itself lives on if the client disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from aiohttp import web

from pipeline.emulator.config import CONFIG
from pipeline.emulator.lifecycle import TERMINAL
from pipeline.emulator.limits import LIMITER
from pipeline.emulator.records import Run, Thread, text_content
from pipeline.emulator.runs import RunStore

_POLL_S: Final[float] = 0.05  # how often a stream looks for a cancel or a delegated answer
_DELTAS: Final[int] = 4


def _event(name: str, data: Any) -> bytes:
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


def _chunks(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def message_events(message: dict[str, Any]) -> list[bytes]:
    """created, in_progress, deltas and completed (or incomplete) for an answer message."""
    draft = {
        **message,
        "status": "in_progress",
        "content": [],
        "completed_at": None,
        "incomplete_at": None,
        "incomplete_details": None,
    }
    events = [_event("thread.message.created", draft), _event("thread.message.in_progress", draft)]
    value = message["content"][0]["text"]["value"]
    for chunk in _chunks(value, _DELTAS):
        delta = {"index": 0, **text_content(chunk)}
        body = {
            "id": message["id"],
            "object": "thread.message.delta",
            "delta": {"content": [delta]},
        }
        events.append(_event("thread.message.delta", body))
    final = "completed" if message["status"] == "completed" else "incomplete"
    events.append(_event(f"thread.message.{final}", message))
    return events


async def stream_run(
    request: web.Request,
    store: RunStore,
    run: Run,
    *,
    thread: Thread | None = None,
    resumed: bool = False,
) -> web.StreamResponse:
    """Answer with the run's events; ``thread`` adds thread.created; ``resumed`` (after tool
    outputs) leaves out thread.run.created."""
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "x-request-id": f"req_{os.urandom(16).hex()}",
    }
    if request.app[CONFIG].ratelimit_headers:
        headers.update(request.app[LIMITER].headers())
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away; the run goes on
        for event in _opening(store, run, thread, resumed):
            await response.write(event)
        async for event in _progress(store, run):
            await response.write(event)
        await response.write(_event("done", "[DONE]"))
    return response


def _opening(store: RunStore, run: Run, thread: Thread | None, resumed: bool) -> list[bytes]:
    queued = store.run_object(run, run.life.begin, "queued")
    events = [_event("thread.created", thread.object())] if thread is not None else []
    if not resumed:
        events.append(_event("thread.run.created", queued))
    events.append(_event("thread.run.queued", queued))
    return events


async def _progress(store: RunStore, run: Run) -> AsyncIterator[bytes]:
    """The events after queued, each yielded once the run has got there."""
    life = run.life
    started = False
    while True:
        now = store.clock()
        status = life.status(now)
        if not started and status != "queued" and life.started(now):
            started = True
            yield _event("thread.run.in_progress", store.run_object(run, life.start, "in_progress"))
        if status in TERMINAL or status == "requires_action":
            break
        wait = life.start - now if status == "queued" else life.end - now
        await asyncio.sleep(max(0.0, min(_POLL_S, wait)))
    store.settle(run.thread)
    if status in ("completed", "incomplete") and run.message is not None:
        for event in message_events(run.message):
            yield event
    if status == "cancelled":
        yield _event(
            "thread.run.cancelling", store.run_object(run, life.since(status), "cancelling")
        )
    yield _event(f"thread.run.{status}", store.run_object(run, life.since(status), status))
