"""Threads and messages over real HTTP: shapes against the OpenAI schemas, the beta header,
validation like the API's (and in agreement with the request schemas), lists, 404s, limits."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from pipeline.emulator import RunningEmulator
from tests.emulator.assistants import call
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock, load_validator

THREAD = load_validator("ThreadObject")
MESSAGE = load_validator("MessageObject")
MESSAGES = load_validator("ListMessagesResponse")
RUN = load_validator("RunObject")
ERROR = load_validator("ErrorResponse")


def user(text: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": text, **extra}


async def test_threads_are_created_with_or_without_a_body_and_read_back(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        emulator.base_url + "/threads", headers={"OpenAI-Beta": "assistants=v2"}
    ) as response:
        empty = (response.status, await response.json())
    full = await call(
        http,
        emulator,
        "POST",
        "/threads",
        {
            "messages": [user("hi"), {"role": "assistant", "content": "hello"}],
            "metadata": {"a": "b"},
        },
    )
    again = await call(http, emulator, "GET", f"/threads/{full.body['id']}")

    assert empty[0] == 200
    THREAD.validate(empty[1])
    assert full.status == 200
    THREAD.validate(full.body)
    assert full.body["id"].startswith("thread_")
    assert full.body["metadata"] == {"a": "b"}
    assert again.body == full.body
    assert full.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/threads"),
        ("POST", "/threads/runs"),
        ("GET", "/threads/thread_x"),
        ("POST", "/threads/thread_x/messages"),
        ("GET", "/threads/thread_x/messages"),
        ("POST", "/threads/thread_x/runs"),
        ("GET", "/threads/thread_x/runs"),
        ("GET", "/threads/thread_x/runs/run_x"),
        ("POST", "/threads/thread_x/runs/run_x/cancel"),
    ],
)
@pytest.mark.parametrize("beta", [None, "assistants=v1"])
async def test_assistants_routes_need_the_beta_header(
    emulator: RunningEmulator, http: aiohttp.ClientSession, method: str, path: str, beta: str | None
) -> None:
    headers = {} if beta is None else {"OpenAI-Beta": beta}

    answer = await call(http, emulator, method, path, {}, headers=headers)

    assert answer.status == 400
    ERROR.validate(answer.body)
    assert "OpenAI-Beta: assistants=v2" in answer.body["error"]["message"]
    assert answer.body["error"]["code"] == "invalid_beta"


async def test_messages_get_message_objects_and_list_in_order(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    thread = (await call(http, emulator, "POST", "/threads", {})).body
    path = f"/threads/{thread['id']}/messages"
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]
    created = [
        (await call(http, emulator, "POST", path, body)).body
        for body in (user("one", metadata={"k": "v"}), user(parts), user("three"))
    ]

    default = await call(http, emulator, "GET", path)
    ascending = await call(http, emulator, "GET", path, params={"order": "asc", "limit": "2"})
    after = await call(
        http, emulator, "GET", path, params={"order": "asc", "after": ascending.body["last_id"]}
    )
    before = await call(
        http, emulator, "GET", path, params={"order": "asc", "before": created[2]["id"]}
    )

    for message in created:
        MESSAGE.validate(message)
        assert message["thread_id"] == thread["id"] and message["run_id"] is None
    assert created[0]["metadata"] == {"k": "v"}
    assert created[1]["content"][1]["image_url"] == {"url": "https://x/y.png", "detail": "auto"}
    for page in (default, ascending, after, before):
        MESSAGES.validate(page.body)
    ids = [m["id"] for m in created]
    assert [m["id"] for m in default.body["data"]] == ids[::-1]
    assert [m["id"] for m in ascending.body["data"]] == ids[:2]
    assert ascending.body["has_more"] and not default.body["has_more"]
    assert [m["id"] for m in after.body["data"]] == ids[2:]
    assert [m["id"] for m in before.body["data"]] == ids[:2]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "msg_nope"}, "after"),
    ],
)
async def test_bad_list_parameters_get_400(
    emulator: RunningEmulator, http: aiohttp.ClientSession, params: dict[str, str], param: str
) -> None:
    thread = (await call(http, emulator, "POST", "/threads", {})).body

    answer = await call(http, emulator, "GET", f"/threads/{thread['id']}/messages", params=params)

    assert answer.status == 400
    ERROR.validate(answer.body)
    assert answer.body["error"]["param"] == param


async def test_an_empty_list_still_validates(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    thread = (await call(http, emulator, "POST", "/threads", {})).body

    answer = await call(http, emulator, "GET", f"/threads/{thread['id']}/messages")

    MESSAGES.validate(answer.body)
    assert answer.body["data"] == [] and not answer.body["has_more"]


async def test_unknown_ids_get_404(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    thread = (await call(http, emulator, "POST", "/threads", {})).body
    missing = [
        ("GET", "/threads/thread_nope", None),
        ("GET", "/threads/thread_nope/messages", None),
        ("POST", "/threads/thread_nope/messages", user("x")),
        ("POST", "/threads/thread_nope/runs", {"assistant_id": "asst_1"}),
        ("GET", f"/threads/{thread['id']}/runs/run_nope", None),
        ("POST", f"/threads/{thread['id']}/runs/run_nope/cancel", None),
    ]

    for method, path, body in missing:
        answer = await call(http, emulator, method, path, body)
        assert answer.status == 404, path
        ERROR.validate(answer.body)
        assert "nope" in answer.body["error"]["message"]


RUN_CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"assistant_id": "asst_1", "temperature": 2, "top_p": 0, "max_completion_tokens": 256}, None),
    ({"assistant_id": "asst_1", "model": None, "tools": None, "metadata": None}, None),
    ({}, "assistant_id"),
    ({"assistant_id": 5}, "assistant_id"),
    ({"assistant_id": "a", "temperature": 2.5}, "temperature"),
    ({"assistant_id": "a", "temperature": "hot"}, "temperature"),
    ({"assistant_id": "a", "top_p": 1.1}, "top_p"),
    ({"assistant_id": "a", "max_completion_tokens": 255}, "max_completion_tokens"),
    ({"assistant_id": "a", "max_prompt_tokens": 256.5}, "max_prompt_tokens"),
    ({"assistant_id": "a", "tools": [{"type": "code_interpreter"}] * 21}, "tools"),
    ({"assistant_id": "a", "tools": [{"type": "browser"}]}, "tools[0].type"),
    ({"assistant_id": "a", "tools": [{"type": "function"}]}, "tools[0].function"),
    ({"assistant_id": "a", "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"assistant_id": "a", "truncation_strategy": {"type": "middle"}}, "truncation_strategy.type"),
    ({"assistant_id": "a", "tool_choice": "sometimes"}, "tool_choice"),
    ({"assistant_id": "a", "response_format": "json"}, "response_format"),
    (
        {"assistant_id": "a", "response_format": {"type": "json_schema"}},
        "response_format.json_schema",
    ),
    ({"assistant_id": "a", "stream": "yes"}, "stream"),
    ({"assistant_id": "a", "parallel_tool_calls": None}, "parallel_tool_calls"),
    (
        {"assistant_id": "a", "additional_messages": [{"role": "system", "content": "x"}]},
        "additional_messages[0].role",
    ),
    (
        {"assistant_id": "a", "additional_messages": [{"role": "user", "content": []}]},
        "additional_messages[0].content",
    ),
    (
        {
            "assistant_id": "a",
            "additional_messages": [{"role": "user", "content": "x", "name": "n"}],
        },
        "additional_messages[0].name",
    ),
    ({"assistant_id": "a", "thread": {}}, "thread"),
    ({"assistant_id": "a", "temperatur": 1}, "temperatur"),
]


@pytest.mark.parametrize(("body", "param"), RUN_CASES)
async def test_run_bodies_are_checked_like_the_schema_says(
    start: StartEmulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str | None
) -> None:
    emulator = start(run_duration_s=0)
    thread = (await call(http, emulator, "POST", "/threads", {})).body
    schema_ok = load_validator("CreateRunRequest").is_valid(body)

    answer = await call(http, emulator, "POST", f"/threads/{thread['id']}/runs", body)

    assert (answer.status == 200) == (param is None) == schema_ok, answer.body
    if param is None:
        RUN.validate(answer.body)
    else:
        ERROR.validate(answer.body)
        assert answer.body["error"]["type"] == "invalid_request_error"
        assert answer.body["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"assistant_id": "a", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"assistant_id": "a", "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"assistant_id": "a", "metadata": {"k": "v" * 513}}, "metadata.k"),
        (
            {
                "assistant_id": "a",
                "tools": [{"type": "function", "function": {"name": "no spaces"}}],
            },
            "tools[0].function.name",
        ),
    ],
)
async def test_prose_limits_are_enforced_where_the_schema_is_silent(
    start: StartEmulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    emulator = start(run_duration_s=0)

    answer = await call(http, emulator, "POST", "/threads/runs", body)

    assert load_validator("CreateThreadAndRunRequest").is_valid(body)
    assert answer.status == 400
    assert answer.body["error"]["param"] == param


async def test_metadata_at_its_limits_is_fine(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}

    answer = await call(http, emulator, "POST", "/threads", {"metadata": metadata})

    assert answer.status == 200
    assert answer.body["metadata"] == metadata


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/threads", {"messages": [{"role": "user"}]}, "messages[0].content"),
        ("/threads", {"messages": "hi"}, "messages"),
        ("/threads", {"tool_resources": {"file_search": {}}}, "tool_resources.file_search"),
        ("/threads", {"metadata": {"k": 1}}, "metadata.k"),
        ("/threads", {"title": "x"}, "title"),
        (
            "/threads/runs",
            {"assistant_id": "a", "thread": {"messages": [{"role": "user"}]}},
            "thread.messages[0].content",
        ),
    ],
)
async def test_thread_bodies_are_checked(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any],
    param: str,
) -> None:
    name = "CreateThreadRequest" if path == "/threads" else "CreateThreadAndRunRequest"

    answer = await call(http, emulator, "POST", path, body)

    assert not load_validator(name).is_valid(body)
    assert answer.status == 400
    assert answer.body["error"]["param"] == param


async def test_message_bodies_are_checked(
    emulator: RunningEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    thread = (await call(http, emulator, "POST", "/threads", {})).body
    path = f"/threads/{thread['id']}/messages"

    wrong_role = await call(http, emulator, "POST", path, {"role": "system", "content": "x"})
    no_json = await call(http, emulator, "POST", path, [1, 2])

    assert wrong_role.status == 400 and wrong_role.body["error"]["param"] == "role"
    assert no_json.status == 400
    error_schema.validate(no_json.body)


async def test_rate_limits_and_faults_apply_to_these_routes(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    limited = start(requests_per_minute=2, limits_clock=FakeClock())
    faulty = start(faults={"503": 1.0})

    answers = [await call(http, limited, "POST", "/threads", {}) for _ in range(3)]
    failed = await call(http, faulty, "POST", "/threads", {})

    assert [a.status for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "2"
    assert failed.status == 503


async def test_old_threads_are_forgotten_past_max_stored(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(max_stored=2)
    ids = [(await call(http, emulator, "POST", "/threads", {})).body["id"] for _ in range(3)]

    statuses = [(await call(http, emulator, "GET", f"/threads/{i}")).status for i in ids]

    assert statuses == [404, 200, 200]
