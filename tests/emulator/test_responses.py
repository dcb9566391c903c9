"""POST /v1/responses over real HTTP: Response objects valid against the spec, validation,
the outcome mapping, background responses and cancel, chaining, delegation."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from pipeline.emulator import RunningEmulator
from pipeline.tokens import estimate_tokens
from tests.emulator.assistants import call, chat_stub, component_validator
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import Answer, load_validator

RESPONSE = component_validator("Response")
ERROR = load_validator("ErrorResponse")
FUNCTION = {"type": "function", "name": "lookup_order", "parameters": {}, "strict": False}


async def create(http: aiohttp.ClientSession, emulator: RunningEmulator, **body: Any) -> Answer:
    answer = await call(
        http, emulator, "POST", "/responses", {"model": "gpt-4.1-mini", **body}, headers={}
    )
    (RESPONSE if answer.status == 200 else ERROR).validate(answer.body)
    return answer


def output_text(response: dict[str, Any]) -> str:
    [item] = response["output"]
    [part] = item["content"]
    text: str = part["text"]
    return text


async def test_a_response_answers_locally_and_counts_tokens(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)

    answer = await create(
        http,
        emulator,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Why blue?"}]}],
        instructions="Be brief.",
        max_output_tokens=300,
        reasoning={"effort": "low"},
        text={"format": {"type": "text"}},
        truncation="auto",
        metadata={"row": "1"},
        temperature=0.2,
    )

    body = answer.body
    assert answer.status == 200 and "openai-beta" not in answer.headers
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["status"] == "completed" and body["error"] is None
    assert body["model"] == "gpt-4.1-mini" and body["reasoning"]["effort"] == "low"
    assert body["metadata"] == {"row": "1"} and body["temperature"] == 0.2
    text = output_text(body)
    assert text.startswith('(local emulator) You asked: "Why blue?"') and "Be brief." in text
    assert body["usage"]["input_tokens"] == estimate_tokens("Be brief.\nWhy blue?")
    assert body["usage"]["output_tokens"] == estimate_tokens(text)
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + estimate_tokens(text)


@pytest.mark.parametrize(
    "value",
    [
        "a plain string",
        [{"role": "developer", "content": "rules"}, {"role": "user", "content": "a plain string"}],
        [
            {"type": "message", "role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "a plain string"}]},
        ],
    ],
)
async def test_every_input_form_is_read(
    start: StartEmulator, http: aiohttp.ClientSession, value: Any
) -> None:
    emulator = start(run_duration_s=0)

    answer = await create(http, emulator, input=value)

    assert '"a plain string"' in output_text(answer.body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": None}, "model"),
        ({"temperature": 2.1}, "temperature"),
        ({"top_p": -0.5}, "top_p"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"input": 5}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"tools": [{"type": "function", "name": "has space"}]}, "tools[0].name"),
        ({"tool_choice": "maybe"}, "tool_choice"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"store": "yes"}, "store"),
        ({"max_completion_tokens": 300}, "max_completion_tokens"),
        ({"stream": True}, "stream"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True, "store": False}, "store"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
    ],
)
async def test_bad_bodies_get_400_naming_the_field(
    emulator: RunningEmulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    answer = await create(http, emulator, **{"input": "x", **body})

    assert answer.status == 400
    assert answer.body["error"]["param"] == param
    assert emulator.stats()["responses_by_status"] == {}


async def test_a_missing_model_is_refused(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    answer = await call(http, emulator, "POST", "/responses", {"input": "x"}, headers={})

    assert answer.status == 400 and answer.body["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        ("failed", "failed", "rate_limit_exceeded"),
        ("expired", "failed", "server_error"),
        ("stuck", "failed", "server_error"),
        ("incomplete", "incomplete", None),
        ("requires_action", "completed", None),
    ],
)
async def test_injected_outcomes_map_onto_response_statuses(
    start: StartEmulator,
    http: aiohttp.ClientSession,
    outcome: str,
    status: str,
    code: str | None,
) -> None:
    emulator = start(
        run_duration_s=0, run_outcomes={outcome: 1.0}, run_error_code="rate_limit_exceeded"
    )

    body = (await create(http, emulator, input="Where is it?", tools=[FUNCTION])).body

    assert body["status"] == status
    assert (body["error"] or {}).get("code") == code
    if status == "failed":
        assert body["output"] == [] and "usage" not in body
    if outcome == "incomplete":
        assert body["incomplete_details"] == {"reason": "max_output_tokens"}
        assert body["output"][0]["status"] == "incomplete"
    if outcome == "requires_action":
        [call_item] = body["output"]
        assert call_item["type"] == "function_call" and call_item["name"] == "lookup_order"
        assert "Where is it?" in call_item["arguments"]


async def test_max_output_tokens_cuts_the_answer(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)

    body = (await create(http, emulator, input="why " * 100, max_output_tokens=16)).body

    assert body["status"] == "incomplete"
    assert len(output_text(body)) == 64 and body["usage"]["output_tokens"] == 16


async def test_a_function_call_output_is_answered(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    item = {"type": "function_call_output", "call_id": "call_1", "output": "shipped"}

    body = (await create(http, emulator, input=[{"role": "user", "content": "Where?"}, item])).body

    assert "shipped" in output_text(body)


async def test_stored_responses_are_read_back_and_continued(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    first = (await create(http, emulator, input="one")).body
    unstored = (await create(http, emulator, input="two", store=False)).body

    second = (await create(http, emulator, input="three", previous_response_id=first["id"])).body
    read = await call(http, emulator, "GET", f"/responses/{first['id']}", headers={})
    missing = await call(http, emulator, "GET", f"/responses/{unstored['id']}", headers={})

    assert read.status == 200 and read.body == first
    assert missing.status == 404
    ERROR.validate(missing.body)
    assert second["previous_response_id"] == first["id"]
    assert second["usage"]["input_tokens"] > first["usage"]["total_tokens"]
    assert '"three"' in output_text(second)


async def test_background_responses_progress_and_can_be_cancelled(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    stuck = start(run_duration_s=0, run_outcomes={"stuck": 1.0})

    queued = (await create(http, emulator, input="later", background=True)).body
    done = await call(http, emulator, "GET", f"/responses/{queued['id']}", headers={})
    late = await call(http, emulator, "POST", f"/responses/{queued['id']}/cancel", headers={})
    waiting = (await create(http, stuck, input="never", background=True)).body
    still = await call(http, stuck, "GET", f"/responses/{waiting['id']}", headers={})
    counted = stuck.stats()["responses_by_status"]
    cancelled = await call(http, stuck, "POST", f"/responses/{waiting['id']}/cancel", headers={})

    assert queued["status"] == "queued" and queued["output"] == []
    RESPONSE.validate(done.body)
    assert done.body["status"] == "completed" and '"later"' in output_text(done.body)
    assert late.status == 400
    assert still.body["status"] == "in_progress" and counted == {"in_progress": 1}
    RESPONSE.validate(cancelled.body)
    assert cancelled.body["status"] == "cancelled"
    assert stuck.stats()["responses_by_status"] == {"cancelled": 1}


async def test_only_background_responses_can_be_cancelled(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    body = (await create(http, emulator, input="now")).body

    answer = await call(http, emulator, "POST", f"/responses/{body['id']}/cancel", headers={})
    unknown = await call(http, emulator, "POST", "/responses/resp_nope/cancel", headers={})

    assert answer.status == 400 and "background" in answer.body["error"]["message"]
    assert unknown.status == 404


async def test_a_foreground_response_takes_the_run_duration(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0.1)
    loop = __import__("asyncio").get_running_loop()
    began = loop.time()

    body = (await create(http, emulator, input="slowly")).body

    assert loop.time() - began >= 0.1
    assert body["status"] == "completed"


async def test_responses_can_delegate_to_a_chat_completions_server(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    async with chat_stub(content="It is blue.") as stub:
        emulator = start(run_duration_s=0, chat_completions_url=stub.url)
        body = (
            await create(
                http,
                emulator,
                instructions="Short.",
                input=[
                    {"role": "developer", "content": "Rule."},
                    {"role": "user", "content": "Sky?"},
                ],
            )
        ).body
        async with chat_stub(502) as broken:
            failing = start(run_duration_s=0, chat_completions_url=broken.url)
            failed = (await create(http, failing, input="Sky?")).body

    assert output_text(body) == "It is blue."
    assert stub.bodies[0]["messages"] == [
        {"role": "system", "content": "Short."},
        {"role": "system", "content": "Rule."},
        {"role": "user", "content": "Sky?"},
    ]
    assert failed["status"] == "failed" and "502" in failed["error"]["message"]


async def test_rate_limits_charge_the_input_tokens(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0, tokens_per_minute=100)

    small = await create(http, emulator, input="x" * 40)
    large = await create(http, emulator, input="x" * 800)

    assert small.status == 200
    assert large.status == 429
    assert large.body["error"]["code"] == "rate_limit_exceeded"
