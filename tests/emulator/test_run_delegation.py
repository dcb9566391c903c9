"""Runs whose answers come from a chat-completions server (a stub on loopback): the request it
gets, its answer in the thread, and its failures as failed runs with the right last_error."""

from __future__ import annotations

import aiohttp
import pytest

from tests.emulator.assistants import chat_stub, messages, poll_run, start_run
from tests.emulator.conftest import StartEmulator


async def test_answers_can_come_from_a_chat_completions_server(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    async with chat_stub() as stub:
        emulator = start(run_duration_s=0, chat_completions_url=stub.url)
        run = await start_run(
            http, emulator, model="gpt-4.1-mini", instructions="Be brief.", temperature=0.3
        )

        ended, _ = await poll_run(http, emulator, run)
        [answer] = await messages(http, emulator, run, run_id=run["id"])

    assert ended["status"] == "completed"
    assert answer["content"][0]["text"]["value"] == "forty-two"
    assert stub.bodies == [
        {
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where is my order?"},
            ],
            "temperature": 0.3,
        }
    ]


@pytest.mark.parametrize(("status", "code"), [(500, "server_error"), (429, "rate_limit_exceeded")])
async def test_a_failing_chat_completions_server_fails_the_run(
    start: StartEmulator, http: aiohttp.ClientSession, status: int, code: str
) -> None:
    async with chat_stub(status) as stub:
        emulator = start(
            run_duration_s=0, chat_completions_url=stub.url, chat_completions_model="m"
        )
        ended, _ = await poll_run(http, emulator, await start_run(http, emulator))

    assert ended["status"] == "failed"
    assert ended["last_error"]["code"] == code
    assert str(status) in ended["last_error"]["message"]
    assert stub.bodies[0]["model"] == "m"


async def test_an_unreachable_chat_completions_server_fails_the_run(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    async with chat_stub() as stub:
        url = stub.url
    emulator = start(run_duration_s=0, chat_completions_url=url)

    ended, _ = await poll_run(http, emulator, await start_run(http, emulator))

    assert ended["status"] == "failed"
    assert ended["last_error"]["code"] == "server_error"
