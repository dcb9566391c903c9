"""Runs over real HTTP: the lifecycle reaches every status, answers land in the thread, cancel,
stuck runs, tool outputs, token limits, run stats (delegation: test_run_delegation.py)."""

from __future__ import annotations

import aiohttp
import pytest

from pipeline.tokens import estimate_tokens
from tests.emulator.assistants import (
    RUN,
    TERMINAL,
    call,
    get_run,
    messages,
    question,
    start_run,
)
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock, load_validator

ERROR = load_validator("ErrorResponse")
EPOCH = 1_767_225_600.0  # 2026-01-01, the fake clock's start
FUNCTION = {"type": "function", "function": {"name": "lookup_order", "parameters": {}}}


async def test_a_run_completes_and_its_answer_lands_in_the_thread(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    run = await start_run(http, emulator, instructions="Be kind.", metadata={"row": "7"})

    done = await get_run(http, emulator, run)
    [answer] = await messages(http, emulator, run, run_id=run["id"])
    everything = await messages(http, emulator, run, order="asc")

    assert done["status"] == "completed"
    assert done["model"] == "local/responder" and done["assistant_id"] == "asst_support"
    assert done["metadata"] == {"row": "7"} and done["instructions"] == "Be kind."
    assert done["started_at"] is not None and done["completed_at"] is not None
    assert done["expires_at"] is None
    text = answer["content"][0]["text"]["value"]
    assert text.startswith("(local emulator)") and "Where is my order?" in text
    assert answer["role"] == "assistant" and answer["assistant_id"] == "asst_support"
    assert [m["role"] for m in everything] == ["user", "assistant"]
    usage = done["usage"]
    assert usage["completion_tokens"] == estimate_tokens(text)
    assert usage["prompt_tokens"] == estimate_tokens("Be kind.\nWhere is my order?")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_the_same_question_gets_the_same_answer(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    texts = []
    for _ in range(2):
        run = await start_run(http, emulator)
        await get_run(http, emulator, run)
        [answer] = await messages(http, emulator, run, run_id=run["id"])
        texts.append(answer["content"][0]["text"]["value"])

    assert texts[0] == texts[1]


async def test_a_timed_run_goes_through_queued_and_in_progress(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(EPOCH)  # the run's status follows it, however slow the machine is
    emulator = start(run_duration_s=0.3, runs_clock=clock)
    run = await start_run(http, emulator)

    seen = []
    for _ in range(3):
        seen.append((await get_run(http, emulator, run))["status"])
        clock.advance(0.2)

    assert seen == ["queued", "in_progress", "completed"]


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("failed", "failed"),
        ("incomplete", "incomplete"),
        ("expired", "expired"),
        ("requires_action", "requires_action"),
    ],
)
async def test_injected_outcomes_reach_their_status(
    start: StartEmulator, http: aiohttp.ClientSession, outcome: str, status: str
) -> None:
    emulator = start(run_duration_s=0, run_outcomes={outcome: 1.0}, run_error_code="invalid_prompt")
    run = await start_run(http, emulator, tools=[FUNCTION])

    ended = await get_run(http, emulator, run)
    answers = await messages(http, emulator, run, run_id=run["id"])

    assert ended["status"] == status
    if status == "failed":
        assert ended["last_error"]["code"] == "invalid_prompt"
        assert ended["failed_at"] is not None and ended["usage"] is None
    if status == "incomplete":
        assert ended["incomplete_details"] == {"reason": "max_completion_tokens"}
        [answer] = answers
        assert answer["status"] == "incomplete"
        assert answer["incomplete_details"] == {"reason": "max_tokens"}
    else:
        assert answers == []
    if status == "requires_action":
        [tool_call] = ended["required_action"]["submit_tool_outputs"]["tool_calls"]
        assert tool_call["function"]["name"] == "lookup_order"
        assert "Where is my order?" in tool_call["function"]["arguments"]
        assert ended["expires_at"] is not None


async def test_requires_action_without_function_tools_still_asks_and_then_expires(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    asking = start(run_duration_s=0, run_outcomes={"requires_action": 1.0})
    clock = FakeClock(EPOCH)
    expiring = start(
        run_duration_s=0, run_outcomes={"requires_action": 1.0}, run_expires_s=10, runs_clock=clock
    )

    waiting = await get_run(http, asking, await start_run(http, asking))
    to_expire = await start_run(http, expiring)
    assert (await get_run(http, expiring, to_expire))["status"] == "requires_action"
    clock.advance(10.5)
    expired = await get_run(http, expiring, to_expire)

    [tool_call] = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert tool_call["function"]["name"] == "local_emulator_tool"
    assert expired["status"] == "expired" and expired["expires_at"] is None
    assert expiring.stats()["runs_by_status"] == {"expired": 1}


async def test_tool_outputs_let_a_run_finish(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0, run_outcomes={"requires_action": 1.0})
    run = await start_run(http, emulator, tools=[FUNCTION])
    waiting = await get_run(http, emulator, run)
    [tool_call] = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
    path = f"/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs"

    wrong = await call(http, emulator, "POST", path, {"tool_outputs": [{"tool_call_id": "x"}]})
    right = await call(
        http,
        emulator,
        "POST",
        path,
        {"tool_outputs": [{"tool_call_id": tool_call["id"], "output": "shipped"}]},
    )
    done = await get_run(http, emulator, run)
    again = await call(http, emulator, "POST", path, {"tool_outputs": []})
    [answer] = await messages(http, emulator, run, run_id=run["id"])

    assert wrong.status == 400 and wrong.body["error"]["param"] == "tool_outputs"
    assert right.status == 200 and right.body["status"] == "queued"
    RUN.validate(right.body)
    assert done["status"] == "completed" and done["required_action"] is None
    assert "shipped" in answer["content"][0]["text"]["value"]
    assert again.status == 400


async def test_stuck_runs_stay_in_progress_until_cancelled(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0, run_outcomes={"stuck": 1.0})
    run = await start_run(http, emulator)
    cancel = f"/threads/{run['thread_id']}/runs/{run['id']}/cancel"

    reads = [(await get_run(http, emulator, run))["status"] for _ in range(5)]
    busy = emulator.stats()["runs_by_status"]
    blocked = await call(
        http,
        emulator,
        "POST",
        f"/threads/{run['thread_id']}/messages",
        {"role": "user", "content": "?"},
    )
    second = await call(
        http, emulator, "POST", f"/threads/{run['thread_id']}/runs", {"assistant_id": "a"}
    )
    cancelling = await call(http, emulator, "POST", cancel)
    cancelled = await get_run(http, emulator, run)
    twice = await call(http, emulator, "POST", cancel)
    unblocked = await call(
        http,
        emulator,
        "POST",
        f"/threads/{run['thread_id']}/messages",
        {"role": "user", "content": "?"},
    )

    assert reads == ["in_progress"] * 5
    assert busy == {"in_progress": 1}
    assert blocked.status == 400 and run["id"] in blocked.body["error"]["message"]
    assert second.status == 400 and "already has an active run" in second.body["error"]["message"]
    assert cancelling.status == 200 and cancelling.body["status"] == "cancelling"
    RUN.validate(cancelling.body)
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] is not None
    assert twice.status == 400
    ERROR.validate(twice.body)
    assert "cancelled" in twice.body["error"]["message"]
    assert unblocked.status == 200
    assert emulator.stats()["runs_by_status"] == {"cancelled": 1}


async def test_a_queued_run_can_be_cancelled_and_never_starts(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=60, runs_clock=FakeClock(EPOCH))  # queued until told
    run = await start_run(http, emulator)

    queued = await get_run(http, emulator, run)
    await call(http, emulator, "POST", f"/threads/{run['thread_id']}/runs/{run['id']}/cancel")
    cancelled = await get_run(http, emulator, run)

    assert queued["status"] == "queued"
    assert cancelled["status"] == "cancelled" and cancelled["started_at"] is None
    assert await messages(http, emulator, run, run_id=run["id"]) == []


async def test_cancelling_a_finished_run_is_400(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    run = await start_run(http, emulator)

    answer = await call(
        http, emulator, "POST", f"/threads/{run['thread_id']}/runs/{run['id']}/cancel"
    )

    assert answer.status == 400
    assert "completed" in answer.body["error"]["message"]


async def test_max_completion_tokens_cuts_the_answer_and_makes_it_incomplete(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    run = await start_run(http, emulator, **question("why? " * 400), max_completion_tokens=256)

    ended = await get_run(http, emulator, run)
    [answer] = await messages(http, emulator, run, run_id=run["id"])

    assert ended["status"] == "incomplete"
    assert ended["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert len(answer["content"][0]["text"]["value"]) == 256 * 4
    assert ended["usage"]["completion_tokens"] == 256


async def test_max_prompt_tokens_drops_old_messages_or_stops_the_run(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    old = [{"role": "user", "content": "old " * 300} for _ in range(3)]
    fits = {
        "assistant_id": "a",
        "thread": {"messages": [*old, {"role": "user", "content": "new?"}]},
    }
    too_long = {
        "assistant_id": "a",
        "thread": {"messages": [{"role": "user", "content": "x" * 2000}]},
    }

    kept = await start_run(http, emulator, **fits, max_prompt_tokens=256)
    refused = await start_run(http, emulator, **too_long, max_prompt_tokens=256)
    kept_run, refused_run = (
        await get_run(http, emulator, kept),
        await get_run(http, emulator, refused),
    )

    assert kept_run["status"] == "completed"
    assert kept_run["usage"]["prompt_tokens"] <= 256
    assert refused_run["status"] == "incomplete"
    assert refused_run["incomplete_details"] == {"reason": "max_prompt_tokens"}
    assert await messages(http, emulator, refused, run_id=refused["id"]) == []


async def test_runs_of_a_thread_can_be_listed_to_find_them_again(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    thread = (await call(http, emulator, "POST", "/threads", {})).body
    path = f"/threads/{thread['id']}/runs"
    created = []
    for i in range(3):
        await call(
            http,
            emulator,
            "POST",
            f"/threads/{thread['id']}/messages",
            {"role": "user", "content": f"q{i}"},
        )
        created.append((await call(http, emulator, "POST", path, {"assistant_id": "a"})).body["id"])
        await call(http, emulator, "GET", f"{path}/{created[-1]}")

    listed = await call(http, emulator, "GET", path)
    first = await call(http, emulator, "GET", path, params={"limit": "1", "order": "asc"})

    assert [r["id"] for r in listed.body["data"]] == created[::-1]
    for run in listed.body["data"]:
        RUN.validate(run)
        assert run["status"] == "completed"
    assert first.body["first_id"] == created[0] and first.body["has_more"]
    assert len(await messages(http, emulator, {"thread_id": thread["id"]})) == 6


async def test_a_thread_run_adds_its_extra_messages_and_instructions(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(run_duration_s=0)
    thread = (await call(http, emulator, "POST", "/threads", {})).body
    body = {
        "assistant_id": "a",
        "instructions": "Base.",
        "additional_instructions": "Be brief.",
        "additional_messages": [{"role": "user", "content": "extra question"}],
    }

    run = (await call(http, emulator, "POST", f"/threads/{thread['id']}/runs", body)).body
    ended = await get_run(http, emulator, run)
    [answer] = await messages(http, emulator, run, run_id=run["id"])

    assert ended["instructions"] == "Base.\nBe brief."
    assert "extra question" in answer["content"][0]["text"]["value"]


async def test_mixed_outcomes_leave_no_run_behind_once_handled(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    outcomes = {
        "failed": 0.2,
        "incomplete": 0.2,
        "expired": 0.1,
        "requires_action": 0.2,
        "stuck": 0.2,
    }
    emulator = start(run_duration_s=0, seed=11, run_outcomes=outcomes)
    runs = [await start_run(http, emulator) for _ in range(30)]

    for run in runs:
        ended = await get_run(http, emulator, run)
        if ended["status"] not in TERMINAL:
            await call(
                http, emulator, "POST", f"/threads/{run['thread_id']}/runs/{run['id']}/cancel"
            )

    by_status = emulator.stats()["runs_by_status"]
    assert set(by_status) <= TERMINAL and sum(by_status.values()) == 30
    assert {"completed", "failed", "incomplete", "expired", "cancelled"} == set(by_status)
