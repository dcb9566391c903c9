"""Collecting a finished batch: its output and error files downloaded (streamed), each answer
line joined to its rows by custom_id (in any order) and handled as the sync pool handles an
answer (``http_errors.error_for`` classifies a non-200 line as ``http.py`` does a status).

- 200: the answer is sent into the line's flow, which ends with the rows' outcomes or asks
  again (a split pack): that request goes into a later file.
- a retryable status (5xx, 429) or a line the batch did not run (``batch_expired``): the same
  request goes into a later file, until the job's ``max_attempts``; then it is thrown into the
  flow, like retries run out.
- a refused status (400...): thrown into the flow (a pack splits; a row becomes an error row).
- a batch ``failed`` (validation): its rows become error rows with the batch's message.
- a batch ``cancelled``: the lines it answered are kept; the rest stay pending for the next run.
- lines missing from both files (or a batch ``completed`` without an output file) are sent again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson

from pipeline.batch.ledger import BatchFile
from pipeline.batch.lines import AnswerLine, body_digest, read_answers
from pipeline.batch.outbox import Outbox, Shared, Waiting, first_request, settle, settle_rows
from pipeline.errors import ApiError, FatalApiError, RejectedApiError, TransientApiError
from pipeline.http import Answer
from pipeline.http_errors import error_for
from pipeline.kinds import Failure, Outcome
from pipeline.rows import Row
from pipeline.steps import Note, Request

log = logging.getLogger(__name__)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CHUNK_LINES = 500  # answer lines joined to their rows at a time
AGAIN = "the lines it held are sent again"


class Collector:
    """Turns one finished batch into settled rows and requests for later files."""

    def __init__(self, shared: Shared, outbox: Outbox) -> None:
        self.shared = shared
        self.outbox = outbox
        self._moved: dict[int, set[str]] = {}
        self._answered: dict[int, set[str]] = {}  # per file: custom_ids whose answer was taken
        self._missed: Counter[str] = Counter()  # keys in lines no file answered, this run

    async def collect(self, file: BatchFile, batch: dict[str, Any]) -> None:
        """Settle or resend every row of ``file``'s finished batch; then release the file."""
        shared, number = self.shared, file.id
        status = batch.get("status")
        # rows whose request went on into a later file (kept if a download fails half-way)
        moved = self._moved.setdefault(number, set())
        if status == "failed":
            await self._failed(number, batch)
        else:
            for name in ("output_file_id", "error_file_id"):
                if batch.get(name):
                    path = shared.ledger.folder / f"{name.split('_')[0]}-{number}.jsonl"
                    try:
                        await shared.api.download(str(batch[name]), path)
                    except RejectedApiError as gone:  # deleted (404): its lines are sent again
                        log.warning("batch %s: %s; %s", file.batch_id, gone.message, AGAIN)
                        continue
                    answers = read_answers(path, shared.api.redact)
                    await self._lines(
                        number, answers, moved, self._answered.setdefault(number, set())
                    )
                    path.unlink(missing_ok=True)
        for key in [k for k in self.outbox.waiting if k[0] == number]:  # lines never answered
            waiting = self.outbox.waiting.pop(key)
            moved.update(row.key for row in waiting.rows)
            waiting.tries, waiting.attempts = waiting.tries + 1, waiting.attempts + 1
            if status != "cancelled" and waiting.tries < shared.max_attempts:
                await self.outbox.resend(waiting)
                continue
            if waiting.flow is not None:
                waiting.flow.close()
            if status != "cancelled":
                await settle(
                    shared,
                    waiting.rows,
                    [_unanswered(waiting.tries)] * len(waiting.rows),
                    waiting.attempts,
                )
        if status != "cancelled":
            for rows in shared.ledger.unanswered(number):
                await self._missing([row for row in rows if row.key not in moved])
            await self.outbox.flush_pack()
        shared.ledger.release(number, "collected")
        del self._moved[number]
        self._answered.pop(number, None)
        shared.ledger.input_path(number).unlink(missing_ok=True)
        if status == "cancelled":
            log.warning(
                "batch %s was cancelled: its unanswered rows wait for the next run", file.batch_id
            )
            shared.stop("batch_cancelled")

    async def _missing(self, rows: list[Row]) -> None:
        """Rows of lines a batch ended without answering (in neither file): sent again, until
        as many batches as ``max_attempts`` left them unanswered (a server losing them)."""
        again: list[Row] = []
        lost: list[Row] = []
        for row in rows:
            self._missed[row.key] += 1
            (lost if self._missed[row.key] >= self.shared.max_attempts else again).append(row)
        for row in lost:
            tries = self._missed.pop(row.key)
            await settle(self.shared, [row], [_unanswered(tries)], tries)
        await self.outbox.add(again)

    async def _failed(self, number: int, batch: dict[str, Any]) -> None:
        listed = batch.get("errors")
        data = listed.get("data") if isinstance(listed, dict) else None
        errors = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        messages = "; ".join(
            f"line {e['line']}: {e.get('message')}" if e.get("line") else str(e.get("message"))
            for e in errors[:5]
        )
        code = str(errors[0].get("code")) if errors and errors[0].get("code") else None
        failure = Failure(
            "request",
            "batch_failed",
            f"batch {batch.get('id')} failed validation: {messages or 'no reason given'}",
            error_code=code,
        )
        for rows in self.shared.ledger.unanswered(number):
            await settle(self.shared, rows, [failure] * len(rows), 1)
        for key in [k for k in self.outbox.waiting if k[0] == number]:
            waiting = self.outbox.waiting.pop(key)
            if waiting.flow is not None:
                waiting.flow.close()

    async def _lines(
        self, number: int, lines: Iterator[AnswerLine], moved: set[str], answered: set[str]
    ) -> None:
        while chunk := list(islice(lines, CHUNK_LINES)):
            found = self.shared.ledger.line_rows(number, [line.custom_id for line in chunk])
            settled: list[tuple[list[Row], list[Outcome], int]] = []
            for line in chunk:
                if line.custom_id in answered:
                    continue  # a lying file's second answer to a line: the first one counts
                answered.add(line.custom_id)
                waiting = self.outbox.waiting.pop((number, line.custom_id), None)
                if waiting is None:
                    rows, digest = found.get(line.custom_id, ([], b""))
                    if not rows:
                        continue  # settled by an earlier collect, or an unknown custom_id
                    waiting = await self._rebuilt(rows, digest)
                    if waiting is None:
                        continue  # asks otherwise than the line did: sent again, fresh
                ended = await self._answer(waiting, line)
                if ended is None:
                    moved.update(row.key for row in waiting.rows)
                else:
                    settled.append((waiting.rows, ended, waiting.attempts))
            for rows, outcomes, attempts in settled:
                for row, outcome in zip(rows, outcomes, strict=True):
                    row.outcome, row.attempts = outcome, attempts
            if settled:
                await self._settle_all(settled)

    async def _settle_all(self, settled: list[tuple[list[Row], list[Outcome], int]]) -> None:
        await settle_rows(self.shared, [row for group, _, _ in settled for row in group])

    async def _rebuilt(self, rows: list[Row], digest: bytes) -> Waiting | None:
        """The flow of a line's rows, built again and brought to the request the line asked."""
        flow = self.shared.kind.flow(rows)
        step = await first_request(flow, self.shared.journal)
        if isinstance(step, list) or body_digest(step.body) != digest:
            flow.close()
            return None
        return Waiting(rows, flow, step)

    async def _answer(self, waiting: Waiting, line: AnswerLine) -> list[Outcome] | None:
        """Give the line's answer to its flow: the rows' outcomes, or None when the flow's next
        request (or this one again) went into a later file."""
        shared, flow = self.shared, waiting.flow
        assert flow is not None
        shared.stats.requests += 1
        waiting.attempts += 1
        waiting.tries += 1
        error = _error(line)
        shared.stats.count_answer(str(line.status or (line.error or {}).get("code") or "error"))
        if isinstance(error, FatalApiError):
            shared.fatal.append(error)
            shared.stop("fatal_api_error")
            flow.close()
            return None
        if line.error is not None and line.error.get("code") == "batch_cancelled":
            flow.close()  # the next run sends it again
            return None
        if isinstance(error, TransientApiError) and waiting.tries < shared.max_attempts:
            shared.stats.retries += 1
            await self.outbox.resend(waiting)
            return None
        reply: Any = Answer(line.status or 200, {}, line.body) if error is None else None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as end:
                return list(end.value)
            except ApiError as failed:  # retries ran out, and the flow did not take it
                return [Failure.from_api(failed)] * len(waiting.rows)
            except Exception as bug:  # a bug must not lose the rows: they fail, said so
                log.error(
                    "internal error on the answer of %r: %s: %s",
                    line.custom_id,
                    type(bug).__name__,
                    bug,
                )
                failure = Failure("request", "internal_error", f"{type(bug).__name__}: {bug}")
                return [failure] * len(waiting.rows)
            reply, error = None, None
            if type(step) is Request:
                await self.outbox.resend(Waiting(waiting.rows, flow, step, waiting.attempts))
                return None
            if type(step) is Note:
                await shared.journal.note(step.key, step.progress)
                continue
            flow.close()
            failure = Failure("request", "internal_error", f"a flow yielded {type(step).__name__}")
            return [failure] * len(waiting.rows)


def _unanswered(batches: int) -> Failure:
    message = (
        f"{batches} batch(es) ended without an answer for this request "
        "(the line was in neither their output nor their error file)"
    )
    return Failure("request", "batch_unanswered", message)


def _error(line: AnswerLine) -> ApiError | None:
    """The line as the sync client would have raised it; None for a successful answer."""
    if line.status is not None:
        if 200 <= line.status < 300:
            return None
        return error_for(line.status, {}, orjson.dumps(line.body))
    error = line.error or {}
    code = str(error.get("code") or "batch_error")
    message = str(error.get("message") or f"the batch gave no answer ({code})")
    # no answer at all (expired, or a failure the API names only by code): sent again
    return TransientApiError(message, error_type=code, error_code=code)
