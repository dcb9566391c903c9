"""The Ray executor: the driver keeps the journal and the output folder; actors send.

``RayExecutor`` is the asyncio pool (``pool.Pool``: its queue, its packing within the TPM
limit, its settling) with *lanes* in place of workers: a lane takes a block of up to
``concurrency`` packs, commits every pack's rows ``sent`` (one group commit), ships the block to
its actor (``worker.RowActor``) and, when the block comes back, commits the notes, writes the
files and settles the outcomes before it takes more. Two lanes per actor keep each actor busy
while a block returns. What can be sent twice after a driver ``kill -9`` is what was dispatched
and not settled: at most 2 x actors x concurrency packs. An actor that dies costs its blocks:
they are sent again to it once Ray has restarted it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

from pipeline.errors import FatalApiError, StorageError
from pipeline.job import ApiSpec
from pipeline.journal import Journal
from pipeline.kinds import Failure, Kind, Outcome, Success
from pipeline.pool import Pool
from pipeline.ray import RayOptions
from pipeline.ray.cluster import Cluster
from pipeline.ray.worker import PLACEHOLDER, BlockResult, PackResult, Secret, WorkerSettings
from pipeline.rows import Row
from pipeline.stats import RunStats
from pipeline.stopping import Stopped, Stopper
from pipeline.transport import Transport
from pipeline.writers import OutputFiles

log = logging.getLogger(__name__)
LANES_PER_ACTOR = 2
DISPATCH_TRIES = 6  # an actor not back after this many waits (~30 s in all) stops the run
RESTART_WAIT_S = 0.5  # doubled at each try


class RayExecutor(Pool):
    """Carries rows on Ray actors; an ``Executor`` (the journal and files stay here)."""

    def __init__(
        self,
        options: RayOptions,
        api: ApiSpec,
        api_key: str | None,
        kind: Kind,
        transport: Transport,
        journal: Journal,
        files: OutputFiles,
        stats: RunStats,
        stopper: Stopper,
        stop_grace_s: float = 30.0,
    ) -> None:
        super().__init__(
            kind, transport, journal, files, stats, stopper, api.concurrency, stop_grace_s
        )
        self._options = options
        self._settings = WorkerSettings(
            transport.base_url,
            Secret(api_key),
            api.timeout_s,
            api.concurrency,
            api.max_attempts,
            api.requests_per_minute,
            api.tokens_per_minute,
        )
        self._cluster: Cluster | None = None
        self.redispatched = 0  # blocks sent again because their actor died
        stopper.on_stop(self._stop_actors)

    async def run(self) -> None:
        """Start (or join) Ray, the limiter and the actors; run the lanes until the queue
        ends or the run stops; then let the actors go."""
        name = f"pipeline-limit-{uuid.uuid4().hex[:12]}"
        self._cluster = Cluster.start(self._options, self.kind, self._settings, name)
        cluster = self._cluster
        log.info("ray: %d actor(s), %d lane(s)", len(cluster.actors), self._lane_count())
        try:
            async with asyncio.TaskGroup() as group:
                self._workers = [
                    group.create_task(self._lane(cluster.actors[i % len(cluster.actors)]))
                    for i in range(self._lane_count())
                ]
        finally:
            self.stats.totals.update(cluster.figures())
            self.stats.totals["ray_blocks_redispatched"] = self.redispatched
            cluster.close()

    def _lane_count(self) -> int:
        assert self._cluster is not None
        return LANES_PER_ACTOR * len(self._cluster.actors)

    def _stop_actors(self) -> None:
        if self._cluster is not None:
            self._cluster.stop_actors()

    async def _lane(self, actor: Any) -> None:
        while not self.stopper.stopped:
            block = await self._take_block()
            if not block:
                return
            await self._dispatch(actor, block)

    async def _take_block(self) -> list[list[Row]]:
        """Up to ``concurrency`` packs: the first waited for, the others only if queued."""
        block: list[list[Row]] = []
        while len(block) < self.concurrency:
            if block and not self._held and self.queue.empty():
                break
            pack = await self._take()
            if pack is None:
                break
            block.append(pack)
        return block

    async def _dispatch(self, actor: Any, block: list[list[Row]]) -> None:
        try:
            await asyncio.gather(
                *(
                    self.journal.mark_sent([row.key for row in pack], next(self._request_ids))
                    for pack in block
                )
            )
        except sqlite3.Error as error:  # nothing left: the rows stay pending or sent
            self._storage_failed(error)
            return
        shipped = [[_lean(row) for row in pack] for pack in block]
        result = await self._send(actor, shipped)
        if result is None:  # the actor kept dying: the rows stay sent, the next run resends
            return
        _add(self.stats, result.stats)
        reached = self.transport.policy.bounds.reached(self.stats)
        if reached is not None:
            self.stop(reached)
        for pack, done in zip(block, result.packs, strict=True):
            await self._land(pack, done)

    async def _send(self, actor: Any, packs: list[list[Row]]) -> BlockResult | None:
        """The block's result; an actor that died is waited for (Ray restarts it) and given
        the block again. None when it kept dying: the run stops, the rows stay sent."""
        import ray.exceptions

        for attempt in range(DISPATCH_TRIES):
            try:
                result: BlockResult = await actor.carry.remote(packs)
                return result
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
                if attempt == 0:
                    self.redispatched += 1
                    log.warning(
                        "ray: an actor died with %d pack(s): sending them again", len(packs)
                    )
                log.debug("the actor's error", exc_info=error)
            try:
                await self.stopper.sleep(RESTART_WAIT_S * 2**attempt)  # Ray restarts it meanwhile
            except Stopped:
                return None  # not sent again while stopping: the rows stay sent, counted next run
        self.storage_error = self.storage_error or StorageError(
            f"a Ray actor died and did not come back carrying {len(packs)} pack(s); their rows "
            "stay sent in the journal: rerun to send them again"
        )
        self.stop("ray_actor_died")
        return None

    async def _land(self, rows: Sequence[Row], done: PackResult) -> None:
        """One pack back: its notes committed, files written, outcomes settled (or the rows
        given back to pending when it was stopped)."""
        keys = [row.key for row in rows]
        try:
            for key, progress in done.notes:
                await self.journal.note(key, progress)
            if done.status == "done":
                assert done.outcomes is not None
                outcomes = self._place_files(done)
                await self._settle(rows, outcomes, done.attempts)
                return
        except (StorageError, sqlite3.Error) as error:
            self._storage_failed(error)
            await self._unsend(keys, done.attempts)
            return
        if done.status == "fatal":
            assert done.error is not None
            fatal = FatalApiError(**done.error)
            log.error(
                "stopping: fatal API answer status=%s code=%s: %s",
                fatal.http_status,
                fatal.error_code,
                fatal.message,
            )
            self.fatal = self.fatal or fatal
            self.stop("fatal_api_error")
        await self._unsend(keys, done.attempts)

    def _place_files(self, done: PackResult) -> list[Outcome]:
        """Write the pack's files under the names the journal gives them, and put those names
        where the flow's outcomes hold its placeholders."""
        assert done.outcomes is not None
        if not done.files:
            return done.outcomes
        paths: dict[str, str] = {}
        for saved in done.files:
            relative = self.files.claim(saved.folder, saved.stem, saved.suffix, saved.key)
            self.files.write(relative, saved.data)
            paths[saved.placeholder] = relative
        return [_placed(outcome, paths) for outcome in done.outcomes]


def _placed(outcome: Outcome, paths: dict[str, str]) -> Outcome:
    if isinstance(outcome, Failure):
        return outcome
    columns = {
        name: paths.get(value, value)
        if isinstance(value, str) and value.startswith(PLACEHOLDER)
        else value
        for name, value in outcome.columns.items()
    }
    return Success(columns, outcome.counts)


def _lean(row: Row) -> Row:
    """What a flow reads of a row (no keep columns: they stay with the driver)."""
    return Row(
        row.key, row.payload, row.tokens, row.requests, row.characters, progress=row.progress
    )


def _add(stats: RunStats, added: dict[str, Any]) -> None:
    stats.requests += added["requests"]
    stats.retries += added["retries"]
    stats.rate_limited += added["rate_limited"]
    stats.tokens += added["tokens"]
    stats.characters_sent += added["characters_sent"]
    stats.statuses.update(added["statuses"])
