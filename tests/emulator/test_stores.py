"""What runs and responses share (``stores``), over real HTTP: past ``max_stored`` the oldest
finished are forgotten and active ones kept, and a delegated answer settles a run or a
response the same way a local one does."""

from __future__ import annotations

import aiohttp

from tests.emulator.assistants import call, chat_stub, poll_run, start_run
from tests.emulator.conftest import StartEmulator
from tests.emulator.test_responses import create

STUCK = {"stuck": 1.0}  # in progress until cancelled: active as long as a test needs


async def test_old_responses_are_forgotten_past_max_stored(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(max_stored=2, run_duration_s=0)
    ids = [(await create(http, emulator, input=f"q{i}")).body["id"] for i in range(3)]

    reads = [await call(http, emulator, "GET", f"/responses/{i}", headers={}) for i in ids]

    assert [read.status for read in reads] == [404, 200, 200]


async def test_an_active_response_is_kept_past_max_stored_until_it_ends(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(max_stored=1, run_duration_s=0, run_outcomes=STUCK)
    first, second = [
        (await create(http, emulator, input=text, background=True)).body["id"]
        for text in ("one", "two")
    ]
    both = [
        await call(http, emulator, "GET", f"/responses/{i}", headers={}) for i in (first, second)
    ]

    await call(http, emulator, "POST", f"/responses/{first}/cancel", headers={})
    third = (await create(http, emulator, input="three", background=True)).body["id"]
    after = [
        await call(http, emulator, "GET", f"/responses/{i}", headers={})
        for i in (first, second, third)
    ]

    assert [read.status for read in both] == [200, 200]  # both active: neither dropped
    assert [read.status for read in after] == [404, 200, 200]  # the cancelled one made room


async def test_a_thread_with_an_active_run_is_kept_past_max_stored(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(max_stored=1, run_duration_s=0, run_outcomes=STUCK)
    run = await start_run(http, emulator)
    thread = run["thread_id"]

    await call(http, emulator, "POST", "/threads", {})
    kept = await call(http, emulator, "GET", f"/threads/{thread}")
    await call(http, emulator, "POST", f"/threads/{thread}/runs/{run['id']}/cancel")
    await call(http, emulator, "POST", "/threads", {})
    forgotten = await call(http, emulator, "GET", f"/threads/{thread}")

    assert kept.status == 200
    assert forgotten.status == 404


async def test_a_delegated_answer_cut_by_the_limit_makes_the_run_and_response_incomplete(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    async with chat_stub(content="word " * 2000) as stub:
        emulator = start(run_duration_s=0, chat_completions_url=stub.url)
        run = await start_run(http, emulator, max_completion_tokens=256)
        ended, _ = await poll_run(http, emulator, run)
        response = (await create(http, emulator, input="long", max_output_tokens=16)).body

    assert ended["status"] == "incomplete"
    assert ended["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
