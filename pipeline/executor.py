"""The executor interface, and what every executor that carries flows in this process shares.

An executor takes built rows and carries each from ``pending`` to ``done`` or ``failed``: it asks
the kind for the flow of a request's rows (``kind.flow``), carries out its steps (``steps.py``),
commits each change of a row's state to the journal, and settles every row exactly once. The
asyncio worker pool (``pool.py``) is the first; a Batch API executor and a distributed one
implement the same four methods, so the feed (``feed.py``) and the runner never ask which runs.

The journal contract every executor keeps: a row is marked ``sent`` (committed) before the first
byte of its first request leaves; its outcome is committed before the executor takes more work
in its place; a row it could not finish (a stop) goes back to ``pending``. After ``kill -9`` what
is sent again is then at most what was in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from pipeline.errors import ApiError, FatalApiError, StorageError
from pipeline.journal import Journal
from pipeline.outcomes import Outcome
from pipeline.rows import Row
from pipeline.steps import Flow, Note, Pause, Request, Save, Speak
from pipeline.stopping import Stopper
from pipeline.transport import Transport
from pipeline.writers import OutputFiles


class Executor(Protocol):
    """Carries submitted rows to done or failed."""

    stopper: Stopper  # raised: take no more work, finish (or give back) what is held
    fatal: FatalApiError | None  # the answer that stopped the run (401, quota), if any
    storage_error: StorageError | None  # the output folder could not be written: stopped

    async def submit(self, row: Row) -> None:
        """Take one built, pending row; waits while the executor holds as much as it may."""
        ...

    async def finish(self) -> None:
        """No more rows will be submitted."""
        ...

    async def run(self) -> None:
        """Carry rows until every submitted one is settled (after ``finish``), or the run
        stops; returns once nothing is in flight any more."""
        ...

    def stop(self, reason: str) -> None:
        """Stop taking work; what is in flight finishes or goes back to pending."""
        ...


class RowWork:
    """The rows of one flow while an executor carries it: their journal marks, notes, files and
    pauses. The transport it drives knows nothing of rows."""

    def __init__(
        self,
        keys: Sequence[Any],
        request_id: int,
        journal: Journal,
        files: OutputFiles,
        stopper: Stopper,
    ) -> None:
        self.keys = keys
        self.attempts = [0]  # HTTP attempts made for these rows, over all their requests
        self._request_id = request_id
        self._journal = journal
        self._files = files
        self._stopper = stopper
        self._sent = False

    def before_send(self) -> Callable[[], Awaitable[None]] | None:
        """What must happen before the next request leaves: the rows' ``sent`` mark, once."""
        return None if self._sent else self._mark_sent

    async def _mark_sent(self) -> None:
        self._sent = True
        await self._journal.mark_sent(self.keys, self._request_id)

    async def carry(self, flow: Flow, transport: Transport) -> list[Outcome]:
        """Carry out ``flow``'s steps to its outcomes. A refused request (or one whose retries
        ran out) is thrown into the flow; a fatal answer, a stop or a storage failure ends it."""
        reply: Any = None
        error: ApiError | None = None
        try:
            while True:
                try:
                    step = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration as end:
                    return self._one_each(end.value)
                reply, error = None, None
                if type(step) is Request or type(step) is Speak:
                    try:
                        reply = await self._send(step, transport)
                    except FatalApiError:
                        raise
                    except ApiError as failed:
                        error = failed
                elif type(step) is Note:
                    await self._journal.note(step.key, step.progress)
                elif type(step) is Pause:
                    await self._stopper.sleep(step.seconds)
                else:
                    reply = self._save(step)
        finally:
            flow.close()

    async def _send(self, step: Request | Speak, transport: Transport) -> Any:
        if type(step) is Speak:
            return await transport.speak(step, self.attempts, self.before_send())
        assert isinstance(step, Request)
        return await transport.send(step, self.attempts, self.before_send())

    def _one_each(self, outcomes: Any) -> list[Outcome]:
        """A flow's outcomes, one per row (a kind that miscounts is a bug: its rows fail)."""
        if not isinstance(outcomes, list) or len(outcomes) != len(self.keys):
            got = len(outcomes) if isinstance(outcomes, list) else repr(outcomes)
            raise RuntimeError(f"the flow gave {got} outcomes for {len(self.keys)} rows")
        return outcomes

    def _save(self, step: Save | Any) -> str:
        if not isinstance(step, Save):
            raise TypeError(f"a flow yielded {type(step).__name__}, not a step")
        relative = self._files.claim(step.folder, step.stem, step.suffix, step.key)
        self._files.write(relative, step.data)
        return relative
