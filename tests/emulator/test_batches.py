"""/v1/files and /v1/batches over real HTTP: objects valid against the spec, the clock-driven
lifecycle (a fake clock, no sleeps), answers equal to the synchronous endpoints', validation."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.emulator.assistants import component_validator
from tests.emulator.batches_client import (
    FILE,
    LIST,
    MODEL,
    START,
    Batches,
    jsonl,
    moderation_lines,
)
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock, load_validator, post

MODERATION = load_validator("CreateModerationResponse")
RESPONSE = component_validator("Response")
PHASES = {"validating": 10, "in_progress": 100, "finalizing": 10, "cancelling": 5}


async def test_a_file_uploads_reads_back_and_deletes(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    emulator = start(batches_clock=clock, record_requests=True)
    client = Batches(http, emulator)
    data = jsonl(moderation_lines(5)) + "ünïcode\n".encode()

    status, uploaded = await client.upload_raw(data, filename="comments.jsonl")

    assert status == 200
    assert uploaded["bytes"] == len(data) and uploaded["purpose"] == "batch"
    assert uploaded["filename"] == "comments.jsonl" and uploaded["created_at"] == int(START)
    assert (await client.call("GET", f"/files/{uploaded['id']}"))[1] == uploaded
    async with http.get(f"{client.url}/files/{uploaded['id']}/content") as response:
        assert await response.read() == data
    status, deleted = await client.call("DELETE", f"/files/{uploaded['id']}")
    assert (status, deleted) == (200, {"id": uploaded["id"], "object": "file", "deleted": True})
    assert (await client.call("GET", f"/files/{uploaded['id']}"))[0] == 404
    assert emulator.recorded_requests() == []  # an upload is streamed, never read whole


async def test_files_list_newest_first_by_purpose(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    client = Batches(http, start())
    made = [await client.upload(moderation_lines(1)) for _ in range(3)]
    await client.upload_raw(b"{}", purpose="user_data")

    status, first = await client.call("GET", "/files", purpose="batch", limit="2")
    status_rest, rest = await client.call("GET", "/files", purpose="batch", after=first["last_id"])

    assert (status, status_rest) == (200, 200)
    assert [f["id"] for f in first["data"]] == made[:0:-1] and first["has_more"]
    assert [f["id"] for f in rest["data"]] == made[:1] and not rest["has_more"]
    for page in (first, rest):
        for found in page["data"]:
            FILE.validate(found)


async def test_the_files_of_a_killed_emulator_are_removed_by_the_next(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pipeline", "serve", "--port", "0", "--engine", "wordlist"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        await Batches(http, line.rsplit(" ", 1)[-1].strip()).upload(moderation_lines(3))
    finally:
        server.kill()  # SIGKILL: no clean-up runs
        await asyncio.wait_for(server.wait(), 30)
    [left] = _folders_of(server.pid)
    assert [path.parent for path in _files_in(left)] == [left]

    start(engine="wordlist")

    assert _folders_of(server.pid) == []


def _folders_of(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"pipeline-emulator-files-{pid}-*"))


def _files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


@pytest.mark.parametrize(
    ("purpose", "param"), [(None, "purpose"), ("batches", "purpose"), ("fine-tune", None)]
)
async def test_an_upload_without_a_valid_purpose_is_refused(
    start: StartEmulator, http: aiohttp.ClientSession, purpose: str | None, param: str | None
) -> None:
    client = Batches(http, start())

    status, body = await client.upload_raw(b"{}\n", purpose=purpose)

    if param is None:  # another purpose is a file, but not one a batch takes
        assert status == 200
        status, body = await client.call(
            "POST",
            "/batches",
            {
                "input_file_id": body["id"],
                "endpoint": "/v1/moderations",
                "completion_window": "24h",
            },
        )
        param = "input_file_id"
    assert status == 400 and body["error"]["param"] == param


async def test_a_moderation_batch_goes_through_its_phases_with_the_clock(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    emulator = start(batches_clock=clock, batch_phase_s=PHASES)
    client = Batches(http, emulator)
    lines = moderation_lines(40)

    batch = await client.create(await client.upload(lines), metadata={"job": "moderate-comments"})

    assert batch["status"] == "validating" and batch["metadata"] == {"job": "moderate-comments"}
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert batch["expires_at"] == int(START) + 24 * 3600 and "in_progress_at" not in batch
    seen: list[tuple[str, int]] = []
    for step in (5, 5, 25, 25, 50, 5, 5):
        clock.advance(step)
        now = await client.get(batch["id"])
        seen.append((now["status"], now["request_counts"]["completed"]))
    assert seen == [
        ("validating", 0),
        ("in_progress", 0),
        ("in_progress", 10),
        ("in_progress", 20),
        ("finalizing", 40),
        ("finalizing", 40),
        ("completed", 40),
    ]
    assert now["in_progress_at"] == START + 10 and now["finalizing_at"] == START + 110
    assert now["completed_at"] == START + 120 and now["model"] == MODEL
    assert now["request_counts"] == {"total": 40, "completed": 40, "failed": 0}
    assert "error_file_id" not in now and now["usage"]["input_tokens"] > 0
    output, errors = await client.outputs(now)
    assert errors == [] and sorted(o["custom_id"] for o in output) == sorted(
        line["custom_id"] for line in lines
    )
    stats = emulator.stats()
    assert "POST /v1/moderations" not in stats["routes"]
    assert stats["batches"]["lines_answered"] == {"/v1/moderations": 40}


async def test_a_batch_answers_as_the_synchronous_endpoint_does(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    emulator = start(batches_clock=clock, batch_phase_s={"in_progress": 0})
    client = Batches(http, emulator)
    lines = moderation_lines(12)
    lines[3]["body"]["input"] = ["two texts", "you idiot"]

    batch = await client.submit(lines)
    clock.advance(1)
    output, _ = await client.outputs(await client.get(batch["id"]))

    by_id = {line["custom_id"]: line for line in output}
    assert len(output) == 12 and len({line["id"] for line in output}) == 12
    for line in lines:
        answer = by_id[line["custom_id"]]
        assert answer["error"] is None and answer["response"]["status_code"] == 200
        assert answer["response"]["request_id"].startswith("req_")
        body = answer["response"]["body"]
        MODERATION.validate(body)
        sync = await post(http, emulator, line["body"])
        assert [r["category_scores"] for r in body["results"]] == [
            r["category_scores"] for r in sync.body["results"]
        ]
    assert len(by_id["row-3"]["response"]["body"]["results"]) == 2


async def test_a_responses_batch_is_answered_by_the_responder(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(START)
    client = Batches(http, start(batches_clock=clock, batch_phase_s={"in_progress": 0}))
    questions = ["Why is the sky blue?", "Where is my order?"]
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "gpt-4.1-mini", "input": question, "instructions": "Be brief."},
        }
        for i, question in enumerate(questions)
    ]

    batch = await client.submit(lines, endpoint="/v1/responses")
    clock.advance(1)
    done = await client.get(batch["id"])
    output, errors = await client.outputs(done)

    assert done["status"] == "completed" and errors == [] and done["model"] == "gpt-4.1-mini"
    texts = {}
    for line in output:
        body = line["response"]["body"]
        RESPONSE.validate(body)
        assert body["status"] == "completed"
        texts[line["custom_id"]] = body["output"][0]["content"][0]["text"]
    for i, question in enumerate(questions):
        assert texts[f"q{i}"].startswith(f'(local emulator) You asked: "{question}"')
    assert done["usage"]["output_tokens"] > 0


def _line(**changes: Any) -> dict[str, Any]:
    return moderation_lines(1, prefix="bad")[0] | changes


@pytest.mark.parametrize(
    ("bad", "code", "param"),
    [
        (b"{not json\n", "invalid_json_line", None),
        (jsonl([[1, 2]]), "invalid_json_line", None),
        (
            jsonl([{"custom_id": "x", "method": "POST", "url": "/v1/moderations"}]),
            "missing_required_parameter",
            "body",
        ),
        (jsonl([_line(custom_id="row-0")]), "duplicate_custom_id", "custom_id"),
        (jsonl([_line(method="GET")]), "invalid_method", "method"),
        (jsonl([_line(url="/v1/responses")]), "invalid_url", "url"),
        (jsonl([_line(body={"model": MODEL})]), "invalid_request", "body.input"),
        (
            jsonl([_line(body={"input": "hi", "temperature": 1})]),
            "invalid_request",
            "body.temperature",
        ),
    ],
)
async def test_a_file_with_a_bad_line_fails_validation_naming_it(
    start: StartEmulator, http: aiohttp.ClientSession, bad: bytes, code: str, param: str | None
) -> None:
    clock = FakeClock(START)
    client = Batches(http, start(batches_clock=clock))
    data = jsonl(moderation_lines(2)) + b"\n" + bad  # a blank line is skipped, still counted

    _, uploaded = await client.upload_raw(data)
    batch = await client.create(uploaded["id"])
    clock.advance(1)
    failed = await client.get(batch["id"])

    assert failed["status"] == "failed" and failed["failed_at"] == int(START + 0.1)
    [error] = failed["errors"]["data"]
    assert (error["code"], error["line"], error["param"]) == (code, 4, param)
    assert "(local emulator)" in error["message"]
    assert "output_file_id" not in failed and "error_file_id" not in failed
    assert failed["request_counts"] == {"total": 0, "completed": 0, "failed": 0}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"endpoint": "/v1/audio/speech"}, "endpoint"),
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"input_file_id": "file-nothere"}, "input_file_id"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"priority": "high"}, "priority"),
    ],
)
async def test_a_batch_request_the_api_refuses_is_a_400(
    start: StartEmulator, http: aiohttp.ClientSession, change: dict[str, Any], param: str
) -> None:
    client = Batches(http, start())
    body = {
        "input_file_id": await client.upload(moderation_lines(1)),
        "endpoint": "/v1/moderations",
        "completion_window": "24h",
    }

    status, answer = await client.call("POST", "/batches", body | change)

    assert status == 400 and answer["error"]["param"] == param
    assert (await client.call("GET", "/batches/batch_nothere"))[0] == 404


async def test_batches_list_newest_first_in_pages(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    client = Batches(http, start())
    file_id = await client.upload(moderation_lines(1))
    made = [(await client.create(file_id))["id"] for _ in range(5)]

    pages: list[list[str]] = []
    after: dict[str, str] = {}
    while True:
        status, page = await client.call("GET", "/batches", limit="2", **after)
        assert status == 200
        LIST.validate(page)
        pages.append([batch["id"] for batch in page["data"]])
        if not page["has_more"]:
            break
        after = {"after": page["last_id"]}

    assert pages == [made[4:2:-1], made[2:0:-1], made[:1]]
    assert (await client.call("GET", "/batches", limit="0"))[0] == 400
