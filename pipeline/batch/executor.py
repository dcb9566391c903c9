"""``BatchExecutor``: the executor of ``[api] mode = "batch"``. The feed's rows are written as
lines of Batch API files (``outbox.py``), each file becomes a batch, the batches are polled with
growing intervals, and each finished one is collected (``collect.py``); a flow that asks again
goes into a later file. Every file and batch is in the ledger (``ledger.py``) before and after
each call, so a rerun adopts the batches an earlier run left in flight and collects them.

A stop (``--max-runtime``, a signal) leaves the batches in flight: the run ends interrupted
(exit 4) and the next run, from cron say, collects them. The file being written is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable
from contextlib import suppress

from pipeline.batch.api import BatchApi
from pipeline.batch.collect import TERMINAL, Collector
from pipeline.batch.ledger import BatchFile, Ledger, clean_counts
from pipeline.batch.outbox import Outbox, Shared
from pipeline.errors import ApiError, FatalApiError, RejectedApiError, StorageError
from pipeline.journal import Journal
from pipeline.kinds import Kind
from pipeline.rows import Row
from pipeline.stats import RunStats
from pipeline.stopping import Stopped, Stopper
from pipeline.writers import OutputFiles, journal_error

log = logging.getLogger(__name__)
UPLOAD_TOKEN = "batch_upload_token"  # journal meta: names the folder's uploads
ADOPT_CHUNK = 1_000  # rows looked up in the ledger at a time (those in a live batch wait)


class BatchExecutor:
    """Carries rows through the Batch API (an Executor)."""

    def __init__(
        self,
        kind: Kind,
        api: BatchApi,
        journal: Journal,
        files: OutputFiles,
        stats: RunStats,
        stopper: Stopper,
        max_attempts: int,
        poll_s: tuple[float, float],
        max_requests: int | None = None,
    ) -> None:
        self.stopper = stopper
        self.fatal: FatalApiError | None = None
        self.storage_error: StorageError | None = None
        self._files = files
        self._ledger = Ledger(files.output_dir)
        self._shared = Shared(kind, journal, self._ledger, api, stats, max_attempts, self.stop)
        self._recover_locally()
        token = journal.meta(UPLOAD_TOKEN)
        if token is None:
            token = secrets.token_hex(6)
            journal.set_meta(UPLOAD_TOKEN, token)
        self._outbox = Outbox(self._shared, self._ledger.next_number(), str(token), max_requests)
        self._collector = Collector(self._shared, self._outbox)
        self._adopting = self._ledger.mapped()  # rows of an earlier run are in live batches
        self._incoming: list[Row] = []
        self._fed = False
        self._poll_first, self._poll_max = poll_s
        self._interval = self._poll_first
        self._wake = asyncio.Event()
        self._seen: dict[int, tuple[str | None, str]] = {}  # the last status shown per file
        stopper.on_stop(self._wake.set)

    def _recover_locally(self) -> None:
        """Files an earlier run uploaded but did not make a batch: made one now (their rows
        stay in them); an upload left without its answer is looked up (``_resolve_uploads``)."""
        for file in self._ledger.files(("uploaded",)):
            self._ledger.move(file.id, "creating")
        if self._ledger.folder.is_dir():  # what a killed run was writing or downloading
            for stray in self._ledger.folder.iterdir():
                stray.unlink(missing_ok=True)

    # -- the Executor interface ------------------------------------------------------------

    async def submit(self, row: Row) -> None:
        if self.stopper.stopped or self._outbox.full:
            return  # it stays pending
        self._incoming.append(row)
        if len(self._incoming) >= ADOPT_CHUNK:
            await self._take_incoming()

    async def finish(self) -> None:
        await self._take_incoming()
        if not self.stopper.stopped:
            await self._guarded(self._outbox.flush_pack())
        self._fed = True
        self._wake.set()

    def stop(self, reason: str = "stopped") -> None:
        self.stopper.stop(reason)

    async def run(self) -> None:
        """Poll and collect until every row is settled, or the run stops."""
        try:
            await self._guarded(self._resolve_uploads())
            while not self.stopper.stopped:
                await self._guarded(self._resolve_creates())
                await self._guarded(self._poll())
                if self._stopped():
                    break
                if self._fed and not self._outbox.empty and not self._outbox.sealing:
                    await self._guarded(self._outbox.flush_pack())
                    await self._guarded(self._outbox.seal())
                    self._interval = self._poll_first
                    continue
                live = self._ledger.files(("uploading", "creating", "submitted"))
                if self._fed and self._outbox.empty and not self._outbox.sealing and not live:
                    if self._outbox.full:  # what was sent is collected; the rest waits
                        self.stop("max_requests")
                    return
                await self._nap()
        finally:
            if self.stopper.stopped:
                self._outbox.discard()
            self.fatal = self.fatal or next(iter(self._shared.fatal), None)
            self._ledger.close()

    def _stopped(self) -> bool:
        return self.stopper.stopped

    # -- inside -----------------------------------------------------------------------------

    async def _take_incoming(self) -> None:
        rows, self._incoming = self._incoming, []
        if self._adopting and rows:  # checked now, with no wait before they are written
            free = self._ledger.free([row.key for row in rows]) - self._outbox.holding
            rows = [row for row in rows if row.key in free]
        if rows and not self.stopper.stopped:
            await self._guarded(self._outbox.add(rows))

    async def _guarded(self, work: Awaitable[None]) -> None:
        """Await ``work``; a stop ends it quietly, an unwritable journal stops the run."""
        try:
            await work
        except Stopped:
            pass
        except (StorageError, sqlite3.Error) as error:
            if isinstance(error, sqlite3.Error):
                error = journal_error(self._files.output_dir, error)
            if self.storage_error is None:
                log.error("stopping: %s", error)
                self.storage_error = error
            self.stop("storage_error")

    async def _nap(self) -> None:
        self._wake.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._interval)
        self._interval = min(self._interval * 1.5, self._poll_max)

    async def _resolve_uploads(self) -> None:
        """Uploads an earlier run left without an answer: found (listing the files by their
        name) and made a batch, or never made: their rows are written again."""
        for file in self._ledger.files(("uploading",)):
            try:
                found = await self._shared.api.find_file(self._outbox.upload_name(file.id))
            except ApiError as error:  # not found for want of an answer: written again
                log.warning("batch file %d not looked up: %s", file.id, error.message)
                found = None
            if found is not None:
                log.info("batch file %d was uploaded as %s: made a batch", file.id, found)
                self._ledger.move(file.id, "creating", file_id=found)
                continue
            for chunk in list(self._ledger.unanswered(file.id)):  # taken, then released
                await self._outbox.add(chunk)
            self._ledger.release(file.id, "abandoned")

    async def _resolve_creates(self) -> None:
        """A create left without an answer (a crash, retries run out): the batch it made, or
        one made now; tried again at the next poll while the API does not answer."""
        api = self._shared.api
        for file in self._ledger.files(("creating",)):
            assert file.file_id is not None
            if file.id in self._outbox.creating:
                continue  # its create is under way
            try:
                batch = await api.find(file.file_id)
                if batch is None:
                    batch = await api.create(file.file_id, file.url, file.id)
                else:
                    log.info("batch %s of file %d found and adopted", batch["id"], file.id)
            except FatalApiError as error:
                self._shared.fatal.append(error)
                self.stop("fatal_api_error")
                return
            except RejectedApiError as error:  # its file is gone: its rows are written again
                log.error(
                    "batch file %d refused: %s; its rows are sent again", file.id, error.message
                )
                for chunk in list(self._ledger.unanswered(file.id)):
                    await self._outbox.add(chunk)
                self._ledger.release(file.id, "abandoned")
                continue
            except ApiError as error:
                log.warning("batch file %d not made a batch yet: %s", file.id, error.message)
                continue
            self._ledger.move(file.id, "submitted", batch_id=str(batch["id"]))
            self._ledger.input_path(file.id).unlink(missing_ok=True)

    async def _poll(self) -> None:
        for file in self._ledger.files(("submitted",)):
            if self.stopper.stopped:
                return
            assert file.batch_id is not None
            try:
                batch = await self._shared.api.retrieve(file.batch_id)
            except FatalApiError as error:
                self._shared.fatal.append(error)
                self.stop("fatal_api_error")
                return
            except RejectedApiError as error:  # gone (404): its rows are sent again
                log.error("batch %s: %s; its rows are sent again", file.batch_id, error.message)
                batch = {"id": file.batch_id, "status": "lost"}
            except ApiError as error:
                log.warning(
                    "batch %s not polled: %s; polled again later", file.batch_id, error.message
                )
                continue
            status = str(batch.get("status"))
            self._ledger.polled(file.id, status, batch.get("request_counts"))
            self._show(file, status, batch.get("request_counts"))
            if status in TERMINAL or status == "lost":
                await self._collect(file, batch)

    async def _collect(self, file: BatchFile, batch: dict[str, object]) -> None:
        try:
            await self._collector.collect(file, dict(batch))
        except FatalApiError as error:
            self._shared.fatal.append(error)
            self.stop("fatal_api_error")
        except ApiError as error:  # a download that failed: collected at a later poll
            log.warning("batch %s not collected yet: %s", file.batch_id, error.message)
        self._wake.set()

    def _show(self, file: BatchFile, status: str, counts: object) -> None:
        """A line for each change of a batch's status or counts (the progress of a batch)."""
        found = clean_counts(counts) or {}
        shown = str(found)
        if self._seen.get(file.id) == (status, shown):
            return
        self._seen[file.id] = (status, shown)
        done, failed = found.get("completed", 0), found.get("failed", 0)
        total = found.get("total", file.lines)
        log.info(
            "batch %s %s: %d/%d request(s) done, %d failed, %.0f s old",
            file.batch_id,
            status,
            done,
            total,
            failed,
            time.time() - file.created_at,
        )
