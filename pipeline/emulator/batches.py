"""POST /v1/batches, GET /v1/batches/{id}, GET /v1/batches, POST /v1/batches/{id}/cancel.

A batch names an uploaded file (purpose ``batch``) and one of the endpoints the emulator
batches (``batches_engines``: /v1/moderations, /v1/responses); its status follows the clock
(``batches_life``: ``batch_phase_s``, ``batches_clock``); its lines are checked
(``batches_lines``) and answered (``batches_work``) in a task started when it is created, and a
read that the clock puts past validation waits for that task. Faults (``batch_faults``, drawn
from ``seed``): ``batch_failed`` (it fails validation), ``batch_all_failed`` (every line
answers 500: completed with only an error file), ``batch_lies`` (answer files that repeat,
invent and garble lines; request_counts that are not counts), and per line ``line_expired``
(the batch ends expired), ``line_500`` and ``line_dropped`` (in neither file).
``batch_queue_tokens`` caps the estimated input tokens of the batches in progress: one more
fails validation with ``token_limit_exceeded``, as the API's enqueued-token limit does. The
``batches`` stats gauge counts batches, lines answered per endpoint and completed requests, so
a test can tell a request answered twice.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from pipeline.emulator import checks
from pipeline.emulator.batches_engines import SPEC_ENDPOINTS, Endpoint, endpoints
from pipeline.emulator.batches_life import ACTIVE, BATCH_FAULTS, CANCELLABLE, LINE_FAULTS, BatchLife
from pipeline.emulator.batches_lines import Checked, check_file
from pipeline.emulator.batches_objects import Batch, batch_object
from pipeline.emulator.batches_work import EXPIRES, Work, answer_lines, finish, lie
from pipeline.emulator.chance import WeightedDraw
from pipeline.emulator.config import EmulatorConfig, batches_clock
from pipeline.emulator.files import FILES, FileStore, file_id
from pipeline.emulator.limits import admit
from pipeline.emulator.records import object_id
from pipeline.emulator.replies import ApiReply, error_body, json_response, read_json_object
from pipeline.emulator.stats import STATS

PATH: Final[str] = "/v1/batches"
_NOTE: Final[str] = checks.NOTE
_CREATE: Final[dict[str, checks.Check]] = {
    "input_file_id": checks.string(),
    "endpoint": checks.choice(*SPEC_ENDPOINTS),
    "completion_window": checks.choice("24h"),
    "metadata": checks.metadata,
    "output_expires_after": checks.anything,
}


class BatchStore:
    """Every batch of one emulator (on its event loop; the stats gauge reads under ``lock``)."""

    def __init__(self, config: EmulatorConfig, files: FileStore, by_path: dict[str, Endpoint]):
        self.config = config
        self.files = files
        self.endpoints = by_path
        self.clock = batches_clock(config)
        self.lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._answered: Counter[str] = Counter()
        self._completions: Counter[bytes] = Counter()
        self._repeated: set[str] = set()  # custom_ids of requests completed more than once
        self._tasks: set[asyncio.Task[Any]] = set()

    def get(self, batch_id: str) -> Batch:
        found = self._batches.get(batch_id)
        if found is None:
            message = f"No batch found with id '{batch_id}'. {_NOTE}"
            raise ApiReply(404, error_body(message, "invalid_request_error", param="batch_id"))
        return found

    def create(self, body: dict[str, Any]) -> Batch:
        """Check the request, record the batch and start its work; ApiReply (400) if refused."""
        checks.body(body, _CREATE, ("input_file_id", "endpoint", "completion_window"))
        endpoint = self.endpoints.get(body["endpoint"])
        if endpoint is None:
            raise checks.fail(
                "endpoint",
                f"The local emulator does not batch '{body['endpoint']}'; it batches "
                f"{', '.join(sorted(self.endpoints))}.",
                "unsupported_value",
            )
        stored = self.files.find(body["input_file_id"])
        if stored is None:
            raise checks.fail(
                "input_file_id", f"No such File object: {body['input_file_id']}.", "invalid_value"
            )
        if stored.purpose != "batch":
            raise checks.fail(
                "input_file_id",
                f"The file {stored.id} has purpose '{stored.purpose}'; a batch needs 'batch'.",
                "invalid_value",
            )
        seed = self.config.seed
        rng = random.Random(None if seed is None else f"batches:{seed}:{len(self._batches)}")
        faults = self.config.batch_faults
        fault = WeightedDraw(
            {k: v for k, v in faults.items() if k in BATCH_FAULTS}, BATCH_FAULTS, rng, "batch fault"
        ).draw()
        life = BatchLife(self.clock(), self.config.batch_phase_s)
        batch = Batch(object_id("batch"), body, endpoint, life, rng, fault)
        with self.lock:
            self._batches[batch.id] = batch
        batch.working = self._spawn(self._work(batch, stored.path))
        return batch

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _work(self, batch: Batch, path: Path) -> Work:
        """Check the file, give the verdict, then answer the lines of a valid one."""
        endpoint = batch.endpoint
        work = Work(Checked())
        try:
            work.checked = await asyncio.to_thread(
                check_file, path, endpoint.path, endpoint.check, endpoint.tokens
            )
            await self._verdict(batch, work.checked)
            if not work.checked.errors and batch.life.started():  # not cancelled while validating
                work.staging = self.files.root / f"{batch.id}.staging"
                await answer_lines(path, endpoint, work, self._line_faults(batch), self._count)
        except Exception as exc:  # a bug fails the batch, like a server error would
            work = Work(Checked())
            work.checked.problem(
                "server_error", f"The batch could not be processed: {exc!r}.", None
            )
            batch.checked, batch.life.failed = work.checked, True
            batch.validated.set()
        batch.life.expiring = EXPIRES in work.codes
        batch.work = work
        return work

    def _line_faults(self, batch: Batch) -> Callable[[], str | None]:
        if batch.fault == "batch_all_failed":
            return lambda: "line_500"
        faults = {k: v for k, v in self.config.batch_faults.items() if k in LINE_FAULTS}
        return WeightedDraw(faults, LINE_FAULTS, batch.rng, "batch fault").draw

    def _count(self, endpoint: str, lines: int) -> None:
        with self.lock:
            self._answered[endpoint] += lines

    async def _verdict(self, batch: Batch, checked: Checked) -> None:
        """Fail the batch for an injected fault or the enqueued-token limit, if it is valid."""
        if batch.fault == "batch_failed" and not checked.errors:
            checked.problem(
                "invalid_request", "The batch failed validation (injected fault).", None
            )
        limit = self.config.batch_queue_tokens
        if limit is not None and not checked.errors:
            queued = await self._queued_tokens(batch)
            if queued + checked.tokens > limit:
                checked.problem(
                    "token_limit_exceeded",
                    f"Enqueued token limit reached for {checked.model or 'this model'}: "
                    f"limit {limit}, already enqueued {queued}, this batch {checked.tokens}. "
                    "Try again once some in-progress batches have completed.",
                    None,
                )
        batch.checked = checked
        batch.life.failed = bool(checked.errors)
        batch.validated.set()

    async def _queued_tokens(self, batch: Batch) -> int:
        """The tokens of the batches created before ``batch`` and still active when it is
        validated (by the clock, so that the verdict does not depend on the tasks' timing)."""
        earlier = list(self._batches.values())
        queued = 0
        for other in earlier[: earlier.index(batch)]:
            await other.validated.wait()
            active = other.life.status(batch.life.validated_at) in ACTIVE
            if other.checked is not None and not other.life.failed and active:
                queued += other.checked.tokens
        return queued

    async def settle(self, batch: Batch) -> dict[str, Any]:
        """The Batch object now, once the work the clock says is done is done (waiting at
        most ``batch_read_wait_s``: a batch whose work is behind the clock reads as still
        validating or in progress, as a busy server's would)."""
        now = self.clock()
        working = batch.working
        if now >= batch.life.validated_at and working is not None and not working.done():
            await asyncio.wait({working}, timeout=self.config.batch_read_wait_s)
        if batch.work is None:
            return batch_object(batch, now, busy=True)
        if batch.ended(now) and not batch.work.checked.errors:
            if batch.ending is None:
                batch.ending = self._spawn(self._end(batch))
            await asyncio.shield(batch.ending)
        return batch_object(batch, now)

    async def _end(self, batch: Batch) -> None:
        work, life = batch.work, batch.life
        assert work is not None
        cancelled = life.cancel_at is not None
        fraction = life.progress(life.cancel_at) if life.cancel_at is not None else 1.0
        output, errors = file_id(), file_id()
        finished = await asyncio.to_thread(
            finish,
            work,
            fraction,
            "batch_cancelled" if cancelled else "batch_expired",
            self.files.new_path(output),
            self.files.new_path(errors),
            batch.rng,
        )
        if batch.fault == "batch_lies":
            await asyncio.to_thread(
                lie, self.files.new_path(output), self.files.new_path(errors), finished
            )
        for fid, count, kind in (
            (output, finished.output_lines, "output"),
            (errors, finished.error_lines, "error"),
        ):
            if count:
                self.files.add(fid, f"{batch.id}_{kind}.jsonl", "batch_output")
            else:
                self.files.new_path(fid).unlink()
        batch.output_file_id = output if finished.output_lines else None
        batch.error_file_id = errors if finished.error_lines else None
        if work.staging is not None:
            work.staging.unlink(missing_ok=True)
        with self.lock:
            for key, custom_id in finished.completed:
                self._completions[key] += 1
                if self._completions[key] > 1:
                    self._repeated.add(custom_id)
        batch.finished = finished

    def cancel(self, batch: Batch) -> None:
        now = self.clock()
        status = batch.life.status(now)
        if status not in CANCELLABLE:
            raise checks.fail(None, f"Cannot cancel a batch with status '{status}'.")
        batch.life.cancel_at = now

    def newest_first(self) -> list[Batch]:
        return list(reversed(self._batches.values()))

    def gauge(self) -> dict[str, Any]:
        """Counts for the stats route (any thread)."""
        now = self.clock()
        with self.lock:
            batches = list(self._batches.values())
            return {
                "created": len(batches),
                "by_status": dict(Counter(b.life.status(now) for b in batches)),
                "lines_answered": dict(self._answered),
                "completions": sum(self._completions.values()),
                "distinct_completions": len(self._completions),
                "completed_twice": sorted(self._repeated),
            }

    async def cleanup(self, _: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: on shutdown, cancel the work still going."""
        yield
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


BATCHES = web.AppKey("batches", BatchStore)


def _page(request: web.Request, store: BatchStore) -> list[Batch]:
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise checks.fail(
            "limit", f"Invalid 'limit': expected an integer from 1 to 100, not {raw!r}."
        )
    batches = store.newest_first()
    after = request.query.get("after")
    if after is not None:
        ids = [b.id for b in batches]
        if after not in ids:
            raise checks.fail("after", f"No batch found with id '{after}'.")
        batches = batches[ids.index(after) + 1 :]
    return batches[: int(raw) + 1]


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add the /v1/batches routes (after files, moderations and responses: it uses them)."""
    store = BatchStore(config, app[FILES], endpoints(app, config.reject_substring))
    app[BATCHES] = store
    app[STATS].add_gauge("batches", store.gauge)

    async def create(request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request)
        admit(request, 0)
        return json_response(await store.settle(store.create(body)))

    async def get(request: web.Request) -> web.StreamResponse:
        batch = store.get(request.match_info["batch_id"])
        admit(request, 0)
        return json_response(await store.settle(batch))

    async def listing(request: web.Request) -> web.StreamResponse:
        admit(request, 0)
        page = _page(request, store)
        limit = int(request.query.get("limit", "20"))
        data = [await store.settle(batch) for batch in page[:limit]]
        answer: dict[str, Any] = {"object": "list", "data": data, "has_more": len(page) > limit}
        if data:
            answer |= {"first_id": data[0]["id"], "last_id": data[-1]["id"]}
        return json_response(answer)

    async def cancel(request: web.Request) -> web.StreamResponse:
        batch = store.get(request.match_info["batch_id"])
        admit(request, 0)
        store.cancel(batch)
        return json_response(await store.settle(batch))

    app.cleanup_ctx.append(store.cleanup)
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, listing)
    app.router.add_get(PATH + "/{batch_id}", get)
    app.router.add_post(PATH + "/{batch_id}/cancel", cancel)
