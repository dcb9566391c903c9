"""A batch's work: its file checked, its lines answered into a staging file, and at its end the
output and error files written from what had finished.

Every line is answered as soon as the batch is created (the clock only decides what a reader
sees); which answers reach the output file is decided when the batch ends: a line drawn to
expire, or not yet reached when the batch was cancelled, goes to the error file with
``response: null`` and an ``error`` (``batch_expired``, ``batch_cancelled``). Answers with a
status code other than 200 go to the error file as they are. Output lines are shuffled within
blocks of ``SHUFFLE_BLOCK`` (the API does not promise the input order).
"""

from __future__ import annotations

import asyncio
import os
import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from pipeline.emulator.batches_engines import Endpoint
from pipeline.emulator.batches_lines import Checked, digest, request_lines
from pipeline.emulator.checks import NOTE
from pipeline.emulator.replies import error_body

EXPIRES: Final[int] = 0  # the status code kept for a line drawn to expire
DROPPED: Final[int] = 1  # ... for a line drawn to be in neither file (line_dropped)
CHUNK: Final[int] = 256  # lines answered together (one engine call for moderations)
SHUFFLE_BLOCK: Final[int] = 1_000
_SERVER_ERROR: Final[dict[str, Any]] = error_body(
    "The server had an error while processing your request. (local emulator: injected fault)",
    "server_error",
)
_UNFINISHED: Final[dict[str, str]] = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed: the batch was cancelled.",
}


@dataclass
class Work:
    """A batch's checked file and, when it is valid, its lines' answers (staged in file order)."""

    checked: Checked
    staging: Path | None = None
    codes: array[int] = field(default_factory=lambda: array("H"))  # per line; EXPIRES
    tokens: array[int] = field(default_factory=lambda: array("I"))  # per line, estimated input
    digests: list[bytes] = field(default_factory=list)
    ok_before: array[int] = field(default_factory=lambda: array("I", [0]))  # 200s among running

    @property
    def running(self) -> int:
        """Lines that are answered (not drawn to expire)."""
        return len(self.ok_before) - 1

    def counts(self, fraction: float) -> tuple[int, int]:
        """(completed, failed) once ``fraction`` of the running lines have finished."""
        done = int(self.running * fraction)
        return self.ok_before[done], done - self.ok_before[done]


def _line_id() -> str:
    return f"batch_req_{os.urandom(12).hex()}"


def _answered(custom_id: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _line_id(),
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": f"req_{os.urandom(16).hex()}",
            "body": body,
        },
        "error": None,
    }


async def answer_lines(
    path: Path,
    endpoint: Endpoint,
    work: Work,
    line_fault: Callable[[], str | None],
    on_answered: Callable[[str, int], None],
) -> None:
    """Answer every line of the checked file at ``path`` into ``work.staging``, in order."""
    assert work.staging is not None
    with work.staging.open("wb") as out:
        chunk: list[dict[str, Any]] = []
        for _, raw in request_lines(path):
            chunk.append(orjson.loads(raw))
            if len(chunk) == CHUNK:
                await _answer_chunk(chunk, endpoint, work, out, line_fault, on_answered)
                chunk = []
        await _answer_chunk(chunk, endpoint, work, out, line_fault, on_answered)


async def _answer_chunk(
    lines: list[dict[str, Any]],
    endpoint: Endpoint,
    work: Work,
    out: IO[bytes],
    line_fault: Callable[[], str | None],
    on_answered: Callable[[str, int], None],
) -> None:
    faults = [line_fault() for _ in lines]
    asked = [line["body"] for line, fault in zip(lines, faults, strict=True) if fault is None]
    answers = iter(await asyncio.gather(*(endpoint.answer(body) for body in asked)))
    on_answered(endpoint.path, len(asked))
    for line, fault in zip(lines, faults, strict=True):
        custom_id, body = line["custom_id"], line["body"]
        work.tokens.append(endpoint.tokens(body))
        work.digests.append(digest(custom_id, body))
        if fault == "line_expired":
            work.codes.append(EXPIRES)
            out.write(orjson.dumps({"custom_id": custom_id}) + b"\n")
            continue
        if fault == "line_dropped":
            status, answer = DROPPED, dict[str, Any]()
        else:
            status, answer = (500, _SERVER_ERROR) if fault == "line_500" else next(answers)
        work.codes.append(status)
        work.ok_before.append(work.ok_before[-1] + (status == 200))
        out.write(orjson.dumps(_answered(custom_id, status, answer)) + b"\n")


@dataclass
class Finished:
    """What ``finish`` wrote: line counts of the two files, usage, the completed requests."""

    output_lines: int = 0
    error_lines: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    completed: list[tuple[bytes, str]] = field(default_factory=list)  # (digest, custom_id)


def finish(
    work: Work, fraction: float, unfinished: str, output: Path, errors: Path, rng: random.Random
) -> Finished:
    """Write the output and error files once ``fraction`` of the running lines had finished
    (blocking: run it in a thread); ``unfinished`` is the error code of the lines that had not."""
    assert work.staging is not None
    done = int(work.running * fraction)
    result = Finished()
    index = 0  # among running lines
    outputs: list[bytes] = []
    with work.staging.open("rb") as staged, output.open("wb") as out, errors.open("wb") as err:
        for number, raw in enumerate(staged):
            code = work.codes[number]
            finished = code != EXPIRES and index < done
            index += code != EXPIRES
            if not finished:
                custom_id = orjson.loads(raw)["custom_id"]
                line = {
                    "id": _line_id(),
                    "custom_id": custom_id,
                    "response": None,
                    "error": {"code": unfinished, "message": f"{_UNFINISHED[unfinished]} {NOTE}"},
                }
                err.write(orjson.dumps(line) + b"\n")
                result.error_lines += 1
                continue
            if code == DROPPED:
                continue  # a server that loses a line: in neither file
            if code != 200:
                err.write(raw)
                result.error_lines += 1
                continue
            answer = orjson.loads(raw)
            result.completed.append((work.digests[number], answer["custom_id"]))
            usage = answer["response"]["body"].get("usage") or {}
            result.input_tokens += usage.get("input_tokens", work.tokens[number])
            result.output_tokens += usage.get("output_tokens", 0)
            outputs.append(raw)
            if len(outputs) == SHUFFLE_BLOCK:
                result.output_lines += _write_shuffled(outputs, out, rng)
        result.output_lines += _write_shuffled(outputs, out, rng)
    return result


def _write_shuffled(lines: list[bytes], out: IO[bytes], rng: random.Random) -> int:
    rng.shuffle(lines)
    out.writelines(lines)
    count = len(lines)
    lines.clear()
    return count


def lie(output: Path, errors: Path, finished: Finished) -> None:
    """The ``batch_lies`` fault: every answer line of the output file twice, each of them also
    in the error file as a 500, a line for a custom_id never sent and a line that is not JSON
    (what a client must survive: the first answer to a custom_id is the one that counts)."""
    answers = output.read_bytes().splitlines(keepends=True)
    stray = _answered("never-sent", 200, {"id": "modr-stray", "results": []})
    with output.open("ab") as out:
        out.writelines(answers)
        out.write(orjson.dumps(stray) + b"\n" + b'{"custom_id": "cut short\n')
    with errors.open("ab") as err:
        for raw in answers:
            line = orjson.loads(raw)
            err.write(orjson.dumps(_answered(line["custom_id"], 500, _SERVER_ERROR)) + b"\n")
    finished.output_lines += len(answers) + 2
    finished.error_lines += len(answers)
