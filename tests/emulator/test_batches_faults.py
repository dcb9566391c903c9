"""Batch faults over real HTTP, on a fake clock: expired lines, 500 lines, a failed batch, a
batch of only errors, cancels, the enqueued-token limit, the completions counter, the flags."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.emulator import EmulatorConfig
from tests.conftest import run_cli
from tests.emulator.batches_client import ERROR, START, Batches, moderation_lines
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock

PHASES = {"validating": 10, "in_progress": 100, "finalizing": 10, "cancelling": 5}


async def _run(
    start: StartEmulator, http: aiohttp.ClientSession, lines: list[Any], **config: Any
) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """Submit ``lines``, move the clock past the batch's end; the batch and its two files."""
    clock = FakeClock(START)
    client = Batches(http, start(batches_clock=clock, batch_phase_s=PHASES, **config))
    batch = await client.submit(lines)
    clock.advance(1000)
    done = await client.get(batch["id"])
    output, errors = await client.outputs(done)
    return done, output, errors


def _conserved(lines: list[Any], *files: list[dict[str, Any]]) -> None:
    """Every input line is in exactly one of the files."""
    ids = [line["custom_id"] for found in files for line in found]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines)


async def test_expired_lines_end_the_batch_expired_with_the_rest_answered(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    lines = moderation_lines(200)

    done, output, errors = await _run(
        start, http, lines, seed=7, batch_faults={"line_expired": 0.2}
    )

    assert done["status"] == "expired" and done["expired_at"] == START + 110
    assert "completed_at" not in done and "finalizing_at" not in done
    _conserved(lines, output, errors)
    assert 20 < len(errors) < 60 and len(output) == 200 - len(errors)
    assert {(e["response"], e["error"]["code"]) for e in errors} == {(None, "batch_expired")}
    assert {o["response"]["status_code"] for o in output} == {200}
    assert done["request_counts"] == {"total": 200, "completed": len(output), "failed": len(errors)}


async def test_the_same_seed_expires_the_same_lines(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    lines = moderation_lines(50)
    expired = []
    for _ in range(2):
        _, _, errors = await _run(start, http, lines, seed=3, batch_faults={"line_expired": 0.3})
        expired.append(sorted(e["custom_id"] for e in errors))
    assert expired[0] == expired[1] and expired[0]


async def test_500_lines_are_in_the_error_file_with_their_answer(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    lines = moderation_lines(100)

    done, output, errors = await _run(start, http, lines, seed=1, batch_faults={"line_500": 0.25})

    assert done["status"] == "completed"
    _conserved(lines, output, errors)
    assert 10 < len(errors) < 45
    for line in errors:
        assert line["error"] is None and line["response"]["status_code"] == 500
        ERROR.validate(line["response"]["body"])
    assert done["request_counts"] == {"total": 100, "completed": len(output), "failed": len(errors)}


async def test_an_injected_validation_failure_fails_the_batch(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    done, output, errors = await _run(
        start, http, moderation_lines(5), batch_faults={"batch_failed": 1.0}
    )

    assert done["status"] == "failed" and (output, errors) == ([], [])
    [error] = done["errors"]["data"]
    assert error["code"] == "invalid_request" and "injected" in error["message"]


async def test_a_batch_whose_lines_all_fail_completes_with_only_an_error_file(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    lines = moderation_lines(30)

    done, output, errors = await _run(start, http, lines, batch_faults={"batch_all_failed": 1.0})

    assert done["status"] == "completed" and "output_file_id" not in done
    assert output == [] and {e["response"]["status_code"] for e in errors} == {500}
    _conserved(lines, errors)
    assert done["request_counts"] == {"total": 30, "completed": 0, "failed": 30}


async def test_a_line_the_sync_route_would_refuse_is_its_own_400(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    lines = moderation_lines(6)
    lines[2]["body"]["input"] = "this one says FORBIDDEN"

    done, output, errors = await _run(start, http, lines, reject_substring="FORBIDDEN")

    assert done["status"] == "completed" and len(output) == 5
    [refused] = errors
    assert refused["custom_id"] == "row-2" and refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["param"] == "input"


async def test_a_cancel_keeps_what_finished_and_lists_the_rest(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    client = Batches(http, start(batches_clock=clock, batch_phase_s=PHASES))
    lines = moderation_lines(40)
    batch = await client.submit(lines)
    clock.advance(35)  # a quarter of the way through in_progress

    status, cancelling = await client.cancel(batch["id"])
    clock.advance(4)
    still = await client.get(batch["id"])
    clock.advance(1)
    cancelled = await client.get(batch["id"])

    assert status == 200 and cancelling["status"] == still["status"] == "cancelling"
    assert cancelling["cancelling_at"] == START + 35 and "output_file_id" not in still
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] == START + 40
    assert cancelled["request_counts"] == {"total": 40, "completed": 10, "failed": 30}
    output, errors = await client.outputs(cancelled)
    assert len(output) == 10 and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    _conserved(lines, output, errors)
    assert (await client.cancel(batch["id"]))[0] == 400


async def test_a_batch_cancelled_while_validating_has_no_files(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    client = Batches(http, start(batches_clock=clock, batch_phase_s=PHASES))
    batch = await client.submit(moderation_lines(3))

    await client.cancel(batch["id"])
    clock.advance(1000)
    cancelled = await client.get(batch["id"])

    assert cancelled["status"] == "cancelled" and "in_progress_at" not in cancelled
    assert "output_file_id" not in cancelled and "error_file_id" not in cancelled


async def test_the_enqueued_token_limit_fails_a_batch_until_room_is_made(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    client = Batches(http, start(batches_clock=clock, batch_phase_s=PHASES, batch_queue_tokens=500))
    lines = moderation_lines(30)  # about 300 tokens

    first = await client.submit(lines)
    clock.advance(20)
    assert (await client.get(first["id"]))["status"] == "in_progress"
    second = await client.submit(lines)
    clock.advance(200)
    refused = await client.get(second["id"])
    third = await client.submit(lines)
    clock.advance(200)

    assert refused["status"] == "failed"
    assert refused["errors"]["data"][0]["code"] == "token_limit_exceeded"
    assert (await client.get(third["id"]))["status"] == "completed"


async def test_the_stats_count_a_request_completed_twice(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    emulator = start(batches_clock=clock, batch_phase_s={"in_progress": 0})
    client = Batches(http, emulator)
    lines = moderation_lines(8)

    for batch_lines in (lines[:5], lines[3:]):  # rows 3 and 4 are in both
        batch = await client.submit(batch_lines)
        clock.advance(1)
        assert (await client.get(batch["id"]))["status"] == "completed"

    counted = emulator.stats()["batches"]
    assert counted["completions"] == 10 and counted["distinct_completions"] == 8
    assert counted["completed_twice"] == ["row-3", "row-4"]
    assert counted["created"] == 2 and counted["by_status"] == {"completed": 2}


async def test_a_batch_whose_work_is_behind_the_clock_reads_as_in_progress(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    asked, gate = asyncio.Event(), asyncio.Event()

    async def chat(request: web.Request) -> web.Response:  # answers once the test says so
        asked.set()
        await gate.wait()
        return web.json_response({"choices": [{"message": {"content": "late"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    clock = FakeClock(START)
    emulator = start(batches_clock=clock, chat_completions_url=url, batch_read_wait_s=0.2)
    client = Batches(http, emulator)
    line = {"method": "POST", "url": "/v1/responses", "body": {"model": "m", "input": "hi"}}
    try:
        batch = await client.submit(
            [line | {"custom_id": "a"}, line | {"custom_id": "b"}], endpoint="/v1/responses"
        )
        await asyncio.wait_for(asked.wait(), 30)  # its file is checked, its lines wait
        clock.advance(1000)
        behind = await client.get(batch["id"])
    finally:
        gate.set()
        await runner.cleanup()

    assert behind["status"] == "in_progress" and "output_file_id" not in behind
    assert behind["request_counts"] == {"total": 2, "completed": 0, "failed": 0}
    assert behind["in_progress_at"] == int(START + 0.1) and "finalizing_at" not in behind


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_phase_s": {"thinking": 1.0}},
        {"batch_phase_s": {"in_progress": -1.0}},
        {"batch_faults": {"line_expired": 0.7, "line_500": 0.7}},
        {"batch_faults": {"batch_lost": 0.1}},
        {"batch_queue_tokens": 0},
        {"batch_read_wait_s": -1.0},
    ],
)
def test_bad_batch_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="batch"):
        EmulatorConfig(**bad)


def test_a_bad_batch_flag_is_a_usage_error() -> None:
    result = run_cli("serve", "--port", "0", "--batch-fault", "nope=0.5")
    assert result.exit_code == 2 and "nope" in result.output


async def test_pipeline_serve_takes_the_batch_flags(http: aiohttp.ClientSession) -> None:
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pipeline", "serve", "--port", "0", "--engine", "wordlist"),
        *("--batch-phase", "validating=0", "--batch-phase", "in_progress=0"),
        *("--batch-phase", "finalizing=0", "--batch-fault", "batch_all_failed=1"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        url = line.rsplit(" ", 1)[-1].strip()
        client = Batches(http, url)
        batch = await client.submit(moderation_lines(3))
        done = await client.get(batch["id"])  # every phase takes 0 s: it has ended
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
    assert (
        done["status"] == "completed" and "output_file_id" not in done and "error_file_id" in done
    )
    assert done["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
