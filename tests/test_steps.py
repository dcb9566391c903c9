"""A kind's requests are data: any executor can carry its flows, not only the worker pool.

These tests carry flows with an executor of another shape, the one the Batch API needs: each
round gathers the pending request of every open flow into one JSONL file (``custom_id``,
``method``, ``url``, ``body``), sends its lines over real HTTP to the emulator, and answers each
flow; refused requests are thrown into their flow, which may split its pack into next round's
requests. What comes out must be what the pool gives for the same job.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.errors import ApiError, TransientApiError
from pipeline.http import Answer, Http
from pipeline.kinds import Outcome, Success
from pipeline.outcomes import Failure
from pipeline.plan import make_plan
from pipeline.rows import Row
from pipeline.steps import Flow, Note, Pause, Request
from tests.conftest import StartEmulator, read_output, run_cli, schema_validator, write_job


class Rounds:
    """Carries flows in rounds of one JSONL file each; records every file it wrote."""

    def __init__(self, base_url: str, folder: Path) -> None:
        self.base_url, self.folder = base_url, folder
        self.files: list[Path] = []
        self.notes: list[Note] = []

    async def carry(self, flows: dict[str, Flow]) -> dict[str, list[Outcome]]:
        done: dict[str, list[Outcome]] = {}
        replies: dict[str, Any] = dict.fromkeys(flows)
        async with Http(self.base_url, None, 10, 8) as http:
            while flows:
                pending = self._advance(flows, replies, done)
                if not pending:
                    break
                lines = self._write_round(pending)
                for line in lines:  # one line, one request: as the Batch API carries them
                    headers = pending[line["custom_id"]].headers
                    replies[line["custom_id"]] = await self._send(http, line, headers)
        return done

    def _advance(
        self, flows: dict[str, Flow], replies: dict[str, Any], done: dict[str, list[Outcome]]
    ) -> dict[str, Request]:
        """Move every flow to its next request (notes and pauses taken at once)."""
        pending: dict[str, Request] = {}
        for name, flow in list(flows.items()):
            reply = replies.pop(name, None)
            try:
                while True:
                    step = flow.throw(reply) if isinstance(reply, ApiError) else flow.send(reply)
                    reply = None
                    if isinstance(step, Request):
                        pending[name] = step
                        break
                    if isinstance(step, Note):
                        self.notes.append(step)
                    assert isinstance(step, Note | Pause), f"unexpected step {step!r}"
            except StopIteration as end:
                done[name] = end.value
                del flows[name]
        return pending

    def _write_round(self, pending: dict[str, Request]) -> list[dict[str, Any]]:
        lines = [
            {"custom_id": name, "method": r.method, "url": f"/v1{r.path}", "body": r.body}
            for name, r in pending.items()
        ]
        path = self.folder / f"round-{len(self.files) + 1}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        self.files.append(path)
        return [json.loads(text) for text in path.read_text().splitlines()]  # as read back

    @staticmethod
    async def _send(http: Http, line: dict[str, Any], headers: Any) -> Any:
        path = line["url"].removeprefix("/v1")
        try:
            return await http.request(line["method"], path, line["body"], headers=headers)
        except ApiError as error:
            return error


def built_items(job: Path, base_url: str) -> tuple[Any, list[Row]]:
    plan = make_plan(str(job), base_url=base_url)
    frame = pl.read_parquet(job.parent / "input.parquet")
    return plan.kind, [plan.kind.build(row["id"], row) for row in frame.iter_rows(named=True)]


def test_packed_moderation_flows_split_a_refused_pack_across_rounds_of_jsonl_files(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(reject_substring="FORBIDDEN")
    texts = [f"ordinary comment {i}" for i in range(16)]
    texts[5] = "this one is FORBIDDEN by the server"
    texts[11] = "you idiot"
    data = pl.DataFrame({"id": [f"k{i:02d}" for i in range(16)], "text": texts})
    job = write_job(tmp_path, data, moderation={"rows_per_request": 8})
    kind, items = built_items(job, server.base_url)
    flows = {f"pack-{i}": kind.flow(items[8 * i : 8 * i + 8]) for i in range(2)}
    rounds = Rounds(server.base_url, tmp_path)
    outcomes = asyncio.run(rounds.carry(flows))

    # the refused pack of 8 was halved, half after half, until the bad row stood alone:
    # both packs; k00-03 (good); k04-07 (refused); k04-05 (refused); k04; k05 (refused); k06-07
    sizes = [
        [len(json.loads(line)["body"]["input"]) for line in path.read_text().splitlines()]
        for path in rounds.files
    ]
    assert sizes == [[8, 8], [4], [4], [2], [1], [1], [2]]
    for path in rounds.files:
        for line in path.read_text().splitlines():
            schema_validator("CreateModerationRequest").validate(json.loads(line)["body"])
    by_key = dict(
        zip(
            [item.key for item in items],
            outcomes["pack-0"] + outcomes["pack-1"],
            strict=True,
        )
    )
    failed = {key: o for key, o in by_key.items() if isinstance(o, Failure)}
    assert list(failed) == ["k05"] and failed["k05"].http_status == 400

    # the same job carried by the worker pool gives the same columns for every row
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    pooled = {row["id"]: row for row in read_output(job, "results").iter_rows(named=True)}
    assert sorted(pooled) == sorted(key for key in by_key if key != "k05")
    for key, row in pooled.items():
        outcome = by_key[key]
        assert isinstance(outcome, Success)
        assert {name: row[name] for name in outcome.columns} == dict(outcome.columns)
    assert pooled["k11"]["flagged"] is True


def test_an_assistants_flow_resumed_from_its_notes_never_starts_a_second_run(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """The run flow is a resumable state machine: abandoned after it noted its thread and run
    (a crash), a new flow started from those notes polls that run instead of starting one."""
    server = emulator(run_duration_s=0.05)
    data = pl.DataFrame({"id": ["q1"], "question": ["What is the capital of France?"]})
    job = write_job(
        tmp_path,
        data,
        kind="run",
        messages=[{"role": "user", "content": "{question}"}],
        request={"assistant_id": "asst_support"},
        run={"protocol": "assistants", "poll_interval_s": 0.02},
    )
    kind, [item] = built_items(job, server.base_url)
    first = Rounds(server.base_url, tmp_path)
    flow = kind.flow([item])
    abandoned = asyncio.run(first.carry({"q1": _until_notes(flow, 2)}))
    assert abandoned == {"q1": []}
    progress = first.notes[-1].progress
    assert set(progress) == {"thread_id", "run_id"}

    resumed = Row(item.key, item.payload, item.tokens, progress=progress)
    second = Rounds(server.base_url, tmp_path)
    [outcome] = asyncio.run(second.carry({"q1": kind.flow([resumed])}))["q1"]
    assert isinstance(outcome, Success)
    assert outcome.columns["run_id"] == progress["run_id"]
    assert outcome.columns["thread_id"] == progress["thread_id"]
    posted = [
        path for path, _ in server.recorded_requests() if path.endswith(("/threads", "/runs"))
    ]
    assert len(posted) == 2, "one thread and one run, though the row was carried twice"


def _until_notes(flow: Flow, notes: int) -> Flow:
    """``flow`` until it has yielded ``notes`` notes: then it is abandoned, as by a crash."""
    seen = 0
    reply: Any = None
    while seen < notes:
        step = flow.send(reply)
        reply = yield step
        seen += isinstance(step, Note)
    flow.close()
    return []


def test_a_speech_request_pickles_for_another_process_with_its_answer_check(
    tmp_path: Path,
) -> None:
    """A distributed executor ships requests to other processes: the request, its answer check
    included, must survive pickling and still refuse a truncated audio answer."""
    data = pl.DataFrame({"id": ["a"], "text": ["Hello there. " * 40]})
    job = write_job(
        tmp_path,
        data,
        kind="speech",
        request={"model": "gpt-4o-mini-tts", "input": "{text}", "voice": "alloy"},
    )
    kind, [row] = built_items(job, "http://127.0.0.1:1/v1")
    request = next(kind.flow([row]))
    assert isinstance(request, Request)
    shipped = pickle.loads(pickle.dumps(request))
    assert (shipped.path, shipped.body, shipped.characters) == (
        "/audio/speech",
        request.body,
        len("Hello there. " * 40),
    )
    assert shipped.check is not None
    with pytest.raises(TransientApiError, match="the audio answer is incomplete"):
        shipped.check(Answer(200, {}, b"ID3 not really an mp3"))
