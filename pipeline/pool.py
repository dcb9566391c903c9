"""The asyncio worker pool, the first ``Executor``: a bounded queue of rows, N workers, each
taking a pack of rows (within the kind's rows per request and the TPM limit), carrying their
flow (``executor.RowWork``) and committing the outcomes to the journal.

A worker holds one flow at a time. It does not wait for its outcomes' commit before taking the
next flow: the commit of that flow's ``sent`` mark holds them too (commits are in order), so no
worker ever has more than one request's rows marked ``sent`` and unsettled, and the rows that
may be sent twice after a crash are still at most a request per worker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections import deque
from collections.abc import Sequence
from contextlib import suppress

from pipeline.errors import ApiError, FatalApiError, StorageError
from pipeline.executor import RowWork
from pipeline.journal import Journal
from pipeline.kinds import Failure, Kind, Outcome
from pipeline.rows import Row
from pipeline.stats import RunStats
from pipeline.stopping import Stopped, Stopper
from pipeline.transport import Transport
from pipeline.writers import OutputFiles, journal_error

log = logging.getLogger(__name__)


class _End:
    """Put on the queue once no more items will come."""


END = _End()


class Pool:
    """Workers that drain the queue until END, or until the stopper is raised (an Executor)."""

    def __init__(
        self,
        kind: Kind,
        transport: Transport,
        journal: Journal,
        files: OutputFiles,
        stats: RunStats,
        stopper: Stopper,
        concurrency: int,
        stop_grace_s: float = 30.0,
    ) -> None:
        self.stop_grace_s = stop_grace_s  # how long requests in flight may finish after a stop
        self._workers: list[asyncio.Task[None]] = []
        self.kind = kind
        self.transport = transport
        self.journal = journal
        self.files = files
        self.stats = stats
        self.stopper = stopper
        self.concurrency = concurrency
        self.queue: asyncio.Queue[Row | _End] = asyncio.Queue(
            maxsize=2 * concurrency * kind.rows_per_request
        )
        self.fatal: FatalApiError | None = None
        self.storage_error: StorageError | None = None  # the output folder failed: stopped
        self._request_ids = itertools.count(1)
        self._held: deque[Row] = deque()  # taken from the queue but left out of a full pack
        stopper.on_stop(self._wake)

    async def submit(self, row: Row) -> None:
        await self.queue.put(row)

    async def finish(self) -> None:
        await self.queue.put(END)

    def stop(self, reason: str = "stopped") -> None:
        """Stop taking work; workers finish the requests they hold."""
        self.stopper.stop(reason)

    def _wake(self) -> None:
        """Wake workers that wait on an empty queue, and bound the drain: the run is stopping."""
        with suppress(asyncio.QueueFull):
            self.queue.put_nowait(END)
        asyncio.get_running_loop().call_later(self.stop_grace_s, self._give_up)

    def _give_up(self) -> None:
        """The grace period is over: abandon what is still in flight. Those rows stay 'sent' in
        the journal, so the next run sends them again and counts them as possible duplicates."""
        late = [worker for worker in self._workers if not worker.done()]
        if late:
            log.warning(
                "stopping: %d request(s) still in flight after %g s, abandoned",
                len(late),
                self.stop_grace_s,
            )
        for worker in late:
            worker.cancel()

    async def run(self) -> None:
        """Run the workers until the queue ends or the run stops."""
        async with asyncio.TaskGroup() as group:
            self._workers = [group.create_task(self._worker()) for _ in range(self.concurrency)]

    async def _worker(self) -> None:
        settling: asyncio.Future[None] | None = None  # the commit of the last outcomes
        while not self.stopper.stopped:
            items = await self._take()
            if items is None:
                break
            if settling is not None and settling.done():  # a failed commit stops: see it now
                await self._committed(settling)
                settling = None
                if self.storage_error is not None:
                    break  # the rows taken stay pending in the journal: the next run sends them
            settled = await self._process(items)
            await self._committed(settling)  # done by now when this flow sent a request
            settling = None if settled is None else self._settle(items, *settled)
        await self._committed(settling)

    async def _committed(self, settling: asyncio.Future[None] | None) -> None:
        if settling is None:
            return
        try:
            await settling
        except sqlite3.Error as error:  # the answer is lost: the rows stay 'sent', sent again
            self._storage_failed(error)

    async def _take(self) -> list[Row] | None:
        first = self._held.popleft() if self._held else await self.queue.get()
        if isinstance(first, _End) or self.stopper.stopped:
            with suppress(asyncio.QueueFull):
                self.queue.put_nowait(END)  # let the other workers see it too
            return None
        items = [first]
        limit = self.transport.policy.limiter.tokens_per_request()
        tokens = first.tokens
        while len(items) < self.kind.rows_per_request:
            try:
                more = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if isinstance(more, _End):
                self.queue.put_nowait(END)
                break
            if limit is not None and tokens + more.tokens > limit:
                self._held.append(more)  # a pack stays within the TPM limit: it starts the next
                break
            tokens += more.tokens
            items.append(more)
        return items

    async def _process(self, items: Sequence[Row]) -> tuple[list[Outcome], int] | None:
        """The rows' outcomes and attempts; None when they went back to pending (a stop)."""
        keys = [item.key for item in items]
        work = RowWork(keys, next(self._request_ids), self.journal, self.files, self.stopper)
        try:
            outcomes = await work.carry(self.kind.flow(items), self.transport)
        except Stopped:
            await self._unsend(keys, work.attempts[0])
            return None
        except FatalApiError as error:
            log.error(
                "stopping: fatal API answer status=%s code=%s: %s",
                error.http_status,
                error.error_code,
                error.message,
            )
            self.fatal = self.fatal or error
            self.stop("fatal_api_error")
            await self._unsend(keys, work.attempts[0])
            return None
        except (StorageError, sqlite3.Error) as error:
            self._storage_failed(error)
            await self._unsend(keys, work.attempts[0])
            return None
        except ApiError as error:  # retries ran out
            outcomes = [Failure.from_api(error)] * len(items)
        except Exception as error:  # a bug must not lose the row: fail it, say so, go on
            log.error(  # one line; the traceback only at debug level
                "internal error while sending %d row(s), first key %r: %s: %s",
                len(items),
                items[0].key,
                type(error).__name__,
                error,
            )
            log.debug("traceback of that internal error", exc_info=error)
            outcomes = [Failure("request", "internal_error", f"{type(error).__name__}: {error}")]
            outcomes *= len(items)
        return outcomes, work.attempts[0]

    async def _unsend(self, keys: list[object], attempts: int) -> None:
        try:
            await self.journal.unsend(keys, attempts)
        except sqlite3.Error as error:  # those rows stay 'sent': the next run sends them again
            self._storage_failed(error)

    def _storage_failed(self, error: StorageError | sqlite3.Error) -> None:
        """The output folder cannot be written: no row is failed for it; the run stops."""
        if isinstance(error, sqlite3.Error):
            error = journal_error(self.files.output_dir, error)
        if self.storage_error is None:
            log.error("stopping: %s", error)
            self.storage_error = error
        self.stop("storage_error")

    def _settle(
        self, rows: Sequence[Row], outcomes: list[Outcome], attempts: int
    ) -> asyncio.Future[None]:
        for row, outcome in zip(rows, outcomes, strict=True):
            row.outcome, row.attempts = outcome, attempts
            self.stats.count_settled(row, self.kind.model_of)
        return self.journal.settle(rows)
