"""Requests into Batch API files: packs of rows become flows whose first ``Request`` is a line,
a flow waiting again (a pack split after a 400, a retryable answer) gives its next line, and a
full file (or the last one) is sealed, recorded, uploaded and made a batch.

A fresh pack's flow is not kept: once its line is written only the ledger remembers the pack,
and the flow is built again from the journal when the answer comes, so memory stays flat in the
size of the job. A flow that already took an answer is kept (``Waiting``) until its next one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.batch.api import BatchApi
from pipeline.batch.ledger import Ledger
from pipeline.batch.lines import API_PREFIX, MAX_BYTES, FileWriter, body_digest, custom_id
from pipeline.errors import ApiError, FatalApiError, RejectedApiError
from pipeline.journal import Journal
from pipeline.kinds import Failure, Kind, Outcome
from pipeline.rows import Row
from pipeline.stats import RunStats
from pipeline.steps import Flow, Note, Request
from pipeline.stopping import Stopped

log = logging.getLogger(__name__)


@dataclass
class Waiting:
    """A flow waiting for the answer to ``request``, its rows' line in a file."""

    rows: list[Row]
    flow: Flow | None  # None: rebuilt from the kind when the answer comes
    request: Request
    attempts: int = 0  # answers its rows got, over all their requests (as the pool counts)
    tries: int = 0  # answers this request got: retried while under max_attempts


@dataclass
class Shared:
    """What the outbox, the collector and the executor of one run share."""

    kind: Kind
    journal: Journal
    ledger: Ledger
    api: BatchApi
    stats: RunStats
    max_attempts: int
    stop: Any  # (reason) -> None
    fatal: list[FatalApiError] = field(default_factory=list)


class Outbox:
    """The file being written, the flows waiting on its lines, and sealing it into a batch."""

    def __init__(
        self, shared: Shared, first_number: int, token: str, max_lines: int | None = None
    ) -> None:
        self.shared = shared
        self.max_lines = max_lines  # --max-requests: lines this run may write
        self.written = 0
        self.full = False  # the bound was reached: no more lines (their rows stay pending)
        self.token = token  # names this folder's uploads: found again after a crash
        self._number = first_number
        self._writer: FileWriter | None = None
        self._pack: list[Row] = []
        self.waiting: dict[tuple[int, str], Waiting] = {}  # (file, custom_id) -> a kept flow
        self.sealing = 0  # seals under way (uploads, creates)
        self.creating: set[int] = set()  # files whose create this run is making now
        # keys in the pack or the file being written: in no sealed file yet, but not free
        self.holding: set[str] = set()

    @property
    def empty(self) -> bool:
        return (self._writer is None or self._writer.lines == 0) and not self._pack

    async def add(self, rows: Sequence[Row]) -> None:
        """Rows to send: packed by the kind's rows per request, each pack a line."""
        size = self.shared.kind.rows_per_request
        for row in rows:
            self._pack.append(row)
            self.holding.add(row.key)
            if len(self._pack) >= size:
                pack, self._pack = self._pack, []
                await self._fresh(pack)

    async def flush_pack(self) -> None:
        if self._pack:
            pack, self._pack = self._pack, []
            await self._fresh(pack)

    async def _fresh(self, rows: list[Row]) -> None:
        flow = self.shared.kind.flow(rows)
        step = await first_request(flow, self.shared.journal)
        if isinstance(step, list):  # a flow that needs no request
            await settle(self.shared, rows, step, 0)
            return
        await self._write(Waiting(rows, None, step))
        flow.close()

    async def resend(self, waiting: Waiting) -> None:
        """A kept flow's request, in a later file."""
        await self._write(waiting)

    async def _write(self, waiting: Waiting) -> None:
        request, keys = waiting.request, [row.key for row in waiting.rows]
        line_id = custom_id(keys[0])
        url = API_PREFIX + request.path
        encoded = FileWriter.encode(line_id, url, request.body)
        if len(encoded) > MAX_BYTES:
            message = f"the request is {len(encoded):,} bytes, over a batch file's {MAX_BYTES:,}"
            failure = Failure("request", "request_too_large", message)
            await settle(self.shared, waiting.rows, [failure] * len(keys), waiting.attempts)
            return
        if self.max_lines is not None and self.written >= self.max_lines:
            self.full = True  # --max-requests: the rows stay pending for the next run
            if waiting.flow is not None:
                waiting.flow.close()
            return
        writer = self._writer
        if writer is not None and (not writer.fits(encoded) or writer.url != url):
            await self.seal()
            writer = None
        if writer is None:
            writer = self._writer = FileWriter(self.shared.ledger.input_path(self._number), url)
            self._number += 1
        number = self._number - 1
        writer.add(encoded, line_id, keys, body_digest(request.body))
        self.written += 1
        self.holding.update(keys)
        self.shared.stats.tokens += request.tokens
        if waiting.flow is not None:
            self.waiting[(number, line_id)] = waiting

    def discard(self) -> None:
        """The run stops: the file being written is dropped (its rows stay pending)."""
        if self._writer is not None:
            number = self._number - 1
            self._writer.discard()
            self._writer = None
            for file, line in [k for k in self.waiting if k[0] == number]:
                flow = self.waiting.pop((file, line)).flow
                if flow is not None:
                    flow.close()
        self._pack = []
        self.holding.clear()

    async def seal(self) -> None:
        """Seal the file being written, record its rows, upload it and make it a batch."""
        writer, self._writer = self._writer, None
        if writer is None or writer.lines == 0:
            return
        number = self._number - 1
        writer.seal()
        shared = self.shared
        shared.ledger.sealed(number, writer.url, writer.lines, writer.size, writer.keys)
        self.holding.difference_update(key for key, *_ in writer.keys)  # now in their file
        self.sealing += 1
        try:
            await self._submit(number, writer)
        finally:
            self.sealing -= 1

    def upload_name(self, number: int) -> str:
        return f"pipeline-{self.token}-{number}.jsonl"

    async def _submit(self, number: int, writer: FileWriter) -> None:
        shared = self.shared
        try:
            file_id = await shared.api.upload(writer.path, self.upload_name(number))
        except (Stopped, ApiError) as error:  # it became no batch: its rows go back
            shared.ledger.release(number, "abandoned")
            writer.path.unlink(missing_ok=True)
            await self._refused(number, error, writer)
            return
        shared.ledger.move(number, "uploaded", file_id=file_id)
        shared.ledger.move(number, "creating")  # the intent: a crash from here looks it up
        self.creating.add(number)
        try:
            batch = await shared.api.create(file_id, writer.url, number)
        except (Stopped, ApiError) as error:
            if isinstance(error, RejectedApiError):
                shared.ledger.release(number, "abandoned")
            await self._refused(number, error, writer)
            return
        finally:
            self.creating.discard(number)
        shared.ledger.move(number, "submitted", batch_id=str(batch["id"]))
        shared.ledger.polled(number, str(batch.get("status")), batch.get("request_counts"))
        writer.path.unlink(missing_ok=True)
        log.info("batch %s submitted: file %d, %d request(s)", batch["id"], number, writer.lines)

    async def _refused(self, number: int, error: Exception, writer: FileWriter) -> None:
        """An upload or create that did not happen: a refusal fails the file's rows, a fatal
        answer or retries run out stop the run (its rows stay pending), a stop is a stop."""
        shared = self.shared
        kept = [self.waiting.pop(k) for k in [k for k in self.waiting if k[0] == number]]
        for waiting in kept:
            if waiting.flow is not None:
                waiting.flow.close()
        if isinstance(error, Stopped):
            return
        if isinstance(error, FatalApiError):
            shared.fatal.append(error)
            shared.stop("fatal_api_error")
            return
        if isinstance(error, RejectedApiError):
            log.error("batch file %d refused: %s", number, error.message)
            failure = Failure.from_api(error)
            for rows in shared.ledger.pending_rows(sorted({key for key, *_ in writer.keys})):
                await settle(shared, rows, [failure] * len(rows), 1)
            return
        assert isinstance(error, ApiError)
        log.error("stopping: the Batch API did not take file %d: %s", number, error.message)
        shared.stop("batch_api_error")


async def first_request(flow: Flow, journal: Journal) -> Request | list[Outcome]:
    """A flow's first request (its notes committed on the way), or its outcomes if it ends."""
    reply: Any = None
    while True:
        try:
            step = flow.send(reply)
        except StopIteration as end:
            return list(end.value)
        if type(step) is Request:
            return step
        if type(step) is Note:
            await journal.note(step.key, step.progress)
            reply = None
            continue
        raise TypeError(f"a flow yielded {type(step).__name__}, which a batch cannot carry")


async def settle(
    shared: Shared, rows: Sequence[Row], outcomes: Sequence[Outcome], attempts: int
) -> None:
    """Record the rows' outcomes in the journal (and the run's counters)."""
    for row, outcome in zip(rows, outcomes, strict=True):
        row.outcome, row.attempts = outcome, attempts
    await settle_rows(shared, rows)


async def settle_rows(shared: Shared, rows: Sequence[Row]) -> None:
    """Count and record rows whose outcome and attempts are set; waits for the commit."""
    stats = shared.stats
    for row in rows:
        if row.outcome is not None:
            stats.count_settled(row, shared.kind.model_of)
    await shared.journal.settle(rows)
