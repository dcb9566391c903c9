"""The per-row work of a Ray run: an async actor that carries the flows of the packs it is sent.

A ``RowActor`` (``ray.remote(RowActor)``) holds one ``Transport`` (``Http`` + ``RetryPolicy``
over the run's global limit, ``limiter.LeasedLimiter``) and carries each pack's ``kind.flow``
with ``executor.RowWork``, as the asyncio pool does, ``concurrency`` packs at a time. The
journal and the output folder stay with the driver: a pack's notes and files come back with its
outcomes (a file's path is answered to the flow as a placeholder the driver replaces once it has
claimed the name and written the file), and the driver marked the rows sent before the pack left.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pipeline.errors import ApiError, FatalApiError
from pipeline.executor import RowWork
from pipeline.http import Http
from pipeline.journal import Journal
from pipeline.kinds import Kind
from pipeline.limits import RetryPolicy
from pipeline.outcomes import Failure, Outcome
from pipeline.ray import process_cpu_s
from pipeline.ray.limiter import LeasedLimiter
from pipeline.rows import Row
from pipeline.stats import RunStats
from pipeline.stopping import Stopped, Stopper
from pipeline.transport import Transport
from pipeline.writers import OutputFiles

log = logging.getLogger(__name__)
PLACEHOLDER = "\x00pipeline-ray-file:"  # a Save's answer in the actor; no real path starts so
ADDED = ("requests", "retries", "rate_limited", "tokens", "characters_sent")  # summed by driver


class Secret:
    """The API key on its way to the actors; never shown by repr (Ray may print arguments)."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)"


@dataclass(frozen=True)
class WorkerSettings:
    base_url: str
    api_key: Secret
    timeout_s: float
    concurrency: int  # packs carried at once by one actor
    max_attempts: int
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True)
class SavedFile:
    placeholder: str
    folder: str
    stem: str
    suffix: str
    key: Any
    data: bytes = field(repr=False)


@dataclass
class PackResult:
    """What became of one pack: ``done`` (an outcome per row), ``stopped`` (send again later)
    or ``fatal`` (the run must stop; ``error`` holds the answer's fields)."""

    status: Literal["done", "stopped", "fatal"]
    attempts: int
    outcomes: list[Outcome] | None = None
    notes: list[tuple[Any, Any]] = field(default_factory=list)
    files: list[SavedFile] = field(default_factory=list)
    error: dict[str, Any] | None = None


@dataclass
class BlockResult:
    packs: list[PackResult]
    stats: dict[str, Any]  # the counters this actor added since its last block came back


class _Kept:
    """Stands in for the journal and the output files inside RowWork: notes and files are
    kept for the driver, ``sent`` was committed by the driver already."""

    def __init__(self) -> None:
        self.notes: list[tuple[Any, Any]] = []
        self.files: list[SavedFile] = []
        self._claims: dict[str, tuple[str, str, str, Any]] = {}

    async def mark_sent(self, *_: object) -> None:  # the driver committed it already
        return None

    async def note(self, key: Any, progress: Any) -> None:
        self.notes.append((key, progress))

    def claim(self, folder: str, stem: str, suffix: str, key: Any) -> str:
        placeholder = f"{PLACEHOLDER}{len(self._claims)}"
        self._claims[placeholder] = (folder, stem, suffix, key)
        return placeholder

    def write(self, relative: str, data: bytes) -> None:
        folder, stem, suffix, key = self._claims[relative]
        self.files.append(SavedFile(relative, folder, stem, suffix, key, data))


class RowActor:
    """Carries packs of rows (a Ray actor class; the driver wraps it with ``ray.remote``)."""

    def __init__(self, kind: Kind, settings: WorkerSettings, limit: Any) -> None:
        self._kind, self._settings, self._limit = kind, settings, limit
        self._ready: tuple[Transport, RunStats, Stopper, asyncio.Semaphore] | None = None

    async def _open(self) -> tuple[Transport, RunStats, Stopper, asyncio.Semaphore]:
        """The transport, made on the actor's own event loop at its first block."""
        if self._ready is None:
            s = self._settings
            stopper, stats = Stopper(), RunStats()
            limiter = LeasedLimiter(self._limit, s.rpm, s.tpm, stopper)
            http = Http(
                s.base_url, s.api_key.value, s.timeout_s, s.concurrency, observe=limiter.observe
            )
            await http.__aenter__()  # for the actor's life: it ends with the run
            policy = RetryPolicy(s.max_attempts, limiter, stats, stopper)
            semaphore = asyncio.Semaphore(s.concurrency)
            self._ready = (Transport(http, policy, s.concurrency), stats, stopper, semaphore)
        return self._ready

    async def carry(self, packs: list[list[Row]]) -> BlockResult:
        """Carry every pack's flow; one result per pack, in order."""
        transport, stats, stopper, semaphore = await self._open()

        async def one(rows: list[Row]) -> PackResult:
            async with semaphore:
                return await self._pack(rows, transport, stopper)

        results = await asyncio.gather(*(one(rows) for rows in packs))
        return BlockResult(list(results), _drain(stats))

    def cpu_s(self) -> float:
        """CPU seconds this actor's process has used (the bench's client CPU per request)."""
        return process_cpu_s()

    def stop(self) -> None:
        """The run stops: flows end at their next step, their packs come back ``stopped``."""
        if self._ready is not None:
            self._ready[2].stop("stopped")

    async def _pack(self, rows: list[Row], transport: Transport, stopper: Stopper) -> PackResult:
        kept = _Kept()
        keys = [row.key for row in rows]
        work = RowWork(keys, 0, cast(Journal, kept), cast(OutputFiles, kept), stopper)
        status: Literal["done", "stopped", "fatal"] = "done"
        error: dict[str, Any] | None = None
        outcomes: list[Outcome] | None = None
        try:
            outcomes = await work.carry(self._kind.flow(rows), transport)
        except Stopped:
            status = "stopped"
        except FatalApiError as fatal:
            status, error = "fatal", _fields(fatal)
        except ApiError as failed:  # retries ran out
            outcomes = [Failure.from_api(failed)] * len(rows)
        except Exception as bug:  # a bug must not lose the rows: they fail, saying so
            log.error("internal error carrying %d row(s): %s: %s", len(rows), type(bug), bug)
            message = f"{type(bug).__name__}: {bug}"
            outcomes = [Failure("request", "internal_error", message)] * len(rows)
        return PackResult(status, work.attempts[0], outcomes, kept.notes, kept.files, error)


def _fields(error: ApiError) -> dict[str, Any]:
    return {
        "message": error.message,
        "http_status": error.http_status,
        "error_type": error.error_type,
        "error_code": error.error_code,
    }


def _drain(stats: RunStats) -> dict[str, Any]:
    """The counters added since the last call, reset (every block reports its own share)."""
    added: dict[str, Any] = {name: getattr(stats, name) for name in ADDED}
    added["statuses"] = dict(stats.statuses)
    for name in ADDED:
        setattr(stats, name, 0)
    stats.statuses.clear()
    return added
