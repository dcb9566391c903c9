"""Runs with ``stream: true``: the AssistantStreamEvent sequence in order, every event's data
valid against its schema, deltas that add up to the answer, and each ending's last events."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.emulator.assistants import BETA, call, component_validator, events
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import load_validator

START = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
ANSWER = ["thread.message.created", "thread.message.in_progress", "thread.message.delta"]
BODY = {
    "assistant_id": "asst_1",
    "stream": True,
    "thread": {"messages": [{"role": "user", "content": "Tell me a story."}]},
}


THREAD, RUN = load_validator("ThreadObject"), load_validator("RunObject")
MESSAGE, DELTA = load_validator("MessageObject"), component_validator("MessageDeltaObject")


def schema_for(name: str) -> Draft202012Validator:
    if name == "thread.created":
        return THREAD
    if name == "thread.message.delta":
        return DELTA
    return RUN if name.startswith("thread.run.") else MESSAGE


def check(stream: list[tuple[str, Any]]) -> list[str]:
    """Validate every event's data; the event names with runs of deltas collapsed to one."""
    names: list[str] = []
    for name, data in stream:
        if name == "done":
            assert data == "[DONE]"
        else:
            schema_for(name).validate(data)
        if not (names and name == names[-1] == "thread.message.delta"):
            names.append(name)
    return names


async def test_thread_and_run_streams_every_event_in_order(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0.02)

    stream = await events(http, emulator, "/threads/runs", BODY)

    assert check(stream) == [
        "thread.created",
        *START,
        *ANSWER,
        "thread.message.completed",
        "thread.run.completed",
        "done",
    ]
    data = dict(stream)
    run, message = data["thread.run.completed"], data["thread.message.completed"]
    deltas = [d for name, d in stream if name == "thread.message.delta"]
    assert 1 < len(deltas) <= 4
    text = "".join(d["delta"]["content"][0]["text"]["value"] for d in deltas)
    assert text == message["content"][0]["text"]["value"]
    assert all(d["id"] == message["id"] for d in deltas)
    assert [d["status"] for n, d in stream if n.startswith("thread.run.")] == [
        "queued",
        "queued",
        "in_progress",
        "completed",
    ]
    assert run["usage"]["completion_tokens"] > 0
    assert data["thread.created"]["id"] == run["thread_id"] == message["thread_id"]
    stored = await call(http, emulator, "GET", f"/threads/{run['thread_id']}/runs/{run['id']}")
    assert stored.body["status"] == "completed"


async def test_a_run_on_a_thread_streams_without_thread_created(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    thread = (await call(http, emulator, "POST", "/threads", BODY["thread"])).body

    stream = await events(
        http, emulator, f"/threads/{thread['id']}/runs", {"assistant_id": "a", "stream": True}
    )

    assert check(stream)[:3] == START
    assert check(stream)[-2:] == ["thread.run.completed", "done"]


@pytest.mark.parametrize(
    ("outcome", "ending"),
    [
        ("failed", ["thread.run.failed"]),
        ("expired", ["thread.run.expired"]),
        ("requires_action", ["thread.run.requires_action"]),
        ("incomplete", [*ANSWER, "thread.message.incomplete", "thread.run.incomplete"]),
    ],
)
async def test_each_ending_closes_the_stream(
    start: StartEmulator, http: aiohttp.ClientSession, outcome: str, ending: list[str]
) -> None:
    emulator = start(run_duration_s=0, run_outcomes={outcome: 1.0})

    stream = await events(http, emulator, "/threads/runs", BODY)

    assert check(stream) == ["thread.created", *START, *ending, "done"]


async def test_a_stuck_stream_ends_when_the_run_is_cancelled(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0, run_outcomes={"stuck": 1.0})
    stream: list[tuple[str, Any]] = []
    async with http.post(emulator.base_url + "/threads/runs", json=BODY, headers=BETA) as response:
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
                stream.append((event, data if data == "[DONE]" else orjson.loads(data)))
                if event == "thread.run.in_progress":
                    run = stream[-1][1]
                    assert emulator.stats()["runs_by_status"] == {"in_progress": 1}
                    path = f"/threads/{run['thread_id']}/runs/{run['id']}/cancel"
                    assert (await call(http, emulator, "POST", path)).status == 200

    assert check(stream)[-3:] == ["thread.run.cancelling", "thread.run.cancelled", "done"]
    assert emulator.stats()["runs_by_status"] == {"cancelled": 1}


async def test_tool_outputs_can_stream_the_rest_of_the_run(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0, run_outcomes={"requires_action": 1.0})
    first = await events(http, emulator, "/threads/runs", BODY)
    run = dict(first)["thread.run.requires_action"]
    [tool_call] = run["required_action"]["submit_tool_outputs"]["tool_calls"]

    rest = await events(
        http,
        emulator,
        f"/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": tool_call["id"], "output": "42"}], "stream": True},
    )

    assert check(rest)[0] == "thread.run.queued"
    assert check(rest)[-2:] == ["thread.run.completed", "done"]
