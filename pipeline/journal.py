"""Every byte of a job's state: the SQLite journal, in ``<output>/.pipeline/`` (the lock is in
``pipeline.lock``, the tables and migrations in ``pipeline.journal_schema``, the executor's
writes and their group commit in ``pipeline.journal_commits``).

A key's state is one of pending -> sent -> done | failed, changed only here. Rows are marked
``sent`` just before their request leaves and ``done``/``failed`` when the answer is recorded;
both go through group commit (one transaction per event-loop tick, in order). A request leaves
only once its ``sent`` mark is committed, and that commit also holds every outcome recorded
before it, so after ``kill -9`` what is sent again is at most a request per worker. A done row's
values stay here only until ``pipeline.store`` flushes them into the results output
(``journal_results``). Keys are stored as their canonical text (``pipeline.keys``); a journal of
an older schema is migrated in one transaction when opened for writing. A file that is not a
journal is a JobError.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from pipeline.journal_batches import ADOPTED, BatchLedger
from pipeline.journal_commits import GroupCommits
from pipeline.journal_results import RESULT_COLUMNS, STORE, ResultsLedger, Transaction
from pipeline.journal_schema import SCHEMA, SCHEMA_VERSION, corrupt, migrate, open_readonly
from pipeline.lock import LOCK_FILE, OutputLock
from pipeline.rows import Row, State, built, request_hash

__all__ = ["ADOPTED", "LOCK_FILE", "RESULT_COLUMNS", "SCHEMA_VERSION", "STORE", "OutputLock"]
__all__ += ["Row", "State", "request_hash"]

STATE_DIR = ".pipeline"
JOURNAL_FILE = "journal.sqlite"
KEY_FAMILY = "key_family"  # meta: text | integer | date, the family of the keys held
JOB_IDENTITY = "job"  # meta: the job this folder belongs to (kind, key column, name)


def _regexp(pattern: str, value: Any) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def rows_held(output_dir: Path) -> int:
    """How many keys the journal of ``output_dir`` holds (0 when there is none yet)."""
    path = output_dir / STATE_DIR / JOURNAL_FILE
    if not path.exists():
        return 0
    db = open_readonly(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.OperationalError:  # a journal created but not yet given its tables
        return 0
    finally:
        db.close()


class Journal(GroupCommits, ResultsLedger, BatchLedger):
    """The SQLite journal of one output folder; all writes happen on the event loop's thread."""

    def __init__(self, output_dir: Path, *, readonly: bool = False) -> None:
        self.dir = output_dir / STATE_DIR
        path = self.dir / JOURNAL_FILE
        if readonly:
            self._db = open_readonly(path)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file only: see reclaim
            try:
                self._open_writable()
            except sqlite3.OperationalError:
                self._db.close()
                raise
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise corrupt(path, exc) from exc
        self._db.create_function("regexp", 2, _regexp, deterministic=True)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._ops: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._next_seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM rows").fetchone()[
            0
        ]
        self._on_backlog: Callable[[], None] | None = None
        self.held = 0  # done rows whose values are still here, counted when a backlog is watched
        self.errors_changed = 0  # bumped when the failed rows change: errors.<fmt> is stale
        self.result_names = list(self._meta(RESULT_COLUMNS) or [])  # use_result_columns sets
        self._pick = None

    def _open_writable(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL survives kill -9 either way
        with self._transaction():  # all or nothing: a kill mid-way leaves the old version
            old = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'rows'").fetchone()
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB)")
            version = self.meta("schema_version") or (1 if old else SCHEMA_VERSION)
            if old and version < SCHEMA_VERSION:
                columns = {row[1]: row[2] for row in self._db.execute("PRAGMA table_info(rows)")}
                if columns["key"].upper() != "TEXT":  # version 1: keys kept their input type
                    types = dict(
                        self._db.execute("SELECT typeof(key), COUNT(*) FROM rows GROUP BY 1")
                    )
                    if types:
                        family = "integer" if set(types) == {"integer"} else "text"
                        self.set_meta(KEY_FAMILY, family)
                migrate(self._db, version)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self.set_meta("schema_version", SCHEMA_VERSION)

    def close(self) -> None:
        self._db.close()

    def discard(self) -> None:
        """Close and delete a journal this run created (a --rebuild-journal that failed)."""
        self._db.close()
        for suffix in ("", "-wal", "-shm"):
            (self.dir / f"{JOURNAL_FILE}{suffix}").unlink(missing_ok=True)

    def watch_backlog(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` (soon, on the event loop, between commits) whenever more than
        BACKLOG_ROWS done rows hold their values here."""
        self._on_backlog = flush
        self.held = self.held_count()

    # -- runs and recovery -------------------------------------------------------------------

    def start_run(self) -> tuple[int, int, int]:
        """Record a new run and put rows left in flight by a crash back to pending.

        Returns (run id, requests found in flight, rows in them): what will be sent again.
        """
        with self._transaction():
            # a row whose workflow recorded its progress is resumed, not sent again
            requests, rows = self._db.execute(
                "SELECT COUNT(DISTINCT inflight), COUNT(*) FROM rows "
                "WHERE state = 'sent' AND part IS NULL AND progress IS NULL"
            ).fetchone()
            self._db.execute(
                "UPDATE rows SET state = 'pending', inflight = NULL, "
                "resent = resent + (progress IS NULL) WHERE state = 'sent' AND part IS NULL"
            )
            run = self._db.execute(
                "INSERT INTO runs (started_at, resent_requests, resent_rows) VALUES (?, ?, ?)",
                (time.time(), requests, rows),
            ).lastrowid
        assert run is not None
        return run, requests, rows

    def finish_run(self, run: int, outcome: str, summary: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?",
            (time.time(), outcome, orjson.dumps(summary), run),
        )

    def last_summary(self) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT summary FROM runs WHERE summary IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def set_meta(self, name: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, orjson.dumps(value)))

    def meta(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    # -- reading input into the journal -------------------------------------------------------

    def known(self, keys: Sequence[Any]) -> dict[Any, tuple[State, str]]:
        """The state and request hash of those of these keys the journal already holds."""
        return {
            key: (state, ADOPTED if digest is None else digest.hex())
            for key, state, digest in self._rows_for_keys(
                keys, "SELECT key, state, request_hash FROM rows WHERE key IN ({})"
            )
        }

    @property
    def next_seq(self) -> int:
        """The input position the next new key gets: keys below it were added by earlier runs."""
        return int(self._next_seq)

    def _rows_for_keys(
        self, keys: Sequence[Any], sql: str, *more: Any
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` (whose ``{}`` takes the key placeholders) for keys, 500 at a time."""
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            yield from self._db.execute(sql.format(",".join("?" * len(chunk))), [*chunk, *more])

    def requeue(self, rows: Iterable[Row]) -> None:
        """Settled keys (done or failed) to send again (--retry-failed, --redo-changed), with
        their new request; a row that still cannot be built stays failed with its new error.
        Everything of the old request goes in the same transaction: its answer and the workflow
        progress (thread and run ids) that would let a resumed run pick up the old answer again.
        A result already in a results part is recorded in ``moved``: the store takes it out of
        its part before the key's new outcome is written."""
        records = [(*built(row), row.key) for row in rows]
        self.errors_changed += 1
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO moved SELECT key, part FROM rows "
                "WHERE key = ? AND part IS NOT NULL",
                [(record[-1],) for record in records],
            )
            self._db.executemany(
                "UPDATE rows SET state = ?, tokens = ?, request_hash = ?, error = ?, "
                "progress = NULL, inflight = NULL, part = NULL WHERE key = ?",
                [
                    (state, tokens, digest, error, key)
                    for state, _, tokens, digest, _, error, key in records
                ],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO held (key, payload, keep) VALUES (?, ?, ?)",
                [(key, payload, keep) for _, payload, _, _, keep, _, key in records],
            )

    def first_key(self, condition: str, *params: Any) -> str | None:
        """A key held for which the SQL ``condition`` holds (``key REGEXP ?`` works), or None.
        Scans the journal: for the rare checks of a key type change and of the output type."""
        row = self._db.execute(f"SELECT key FROM rows WHERE {condition} LIMIT 1", params).fetchone()
        return None if row is None else str(row[0])

    def key_bounds(self) -> tuple[int, int] | None:
        """The smallest and largest integer key held (canonical integer keys), None when none.
        Two scans of the journal: for the rare check of a key column whose type changed."""
        sql = "SELECT key FROM rows WHERE {} ORDER BY length(key) DESC, key DESC LIMIT 1"
        low = self._db.execute(sql.format("key GLOB '-*'")).fetchone()  # the most negative
        high = self._db.execute(sql.format("NOT key GLOB '-*'")).fetchone()
        if low is None and high is None:
            return None
        values = [int(row[0]) for row in (low, high) if row is not None]
        return min(values), max(values)

    def record_hashes(self, hashes: Sequence[tuple[str, Any]]) -> None:
        """Give adopted keys the hash of the request the input builds for them now."""
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET request_hash = ? WHERE key = ? AND request_hash IS NULL",
                [(bytes.fromhex(digest), key) for digest, key in hashes],
            )

    def add(self, rows: Iterable[Row]) -> None:
        """Insert new keys: pending, or failed when the row could not become a request."""
        records = []
        for row in rows:
            records.append((row.key, self._next_seq, *built(row)))
            self._next_seq += 1
        self.errors_changed += 1
        with self._transaction():
            self._db.executemany(
                "INSERT INTO rows (key, seq, state, tokens, request_hash, error) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (k, seq, state, tokens, digest, error)
                    for k, seq, state, _, tokens, digest, _, error in records
                ],
            )
            self._db.executemany(
                "INSERT INTO held (key, payload, keep) VALUES (?, ?, ?)",
                [(k, payload, keep) for k, _, _, payload, _, _, keep, _ in records],
            )

    def pending(self, after_seq: int, limit: int) -> list[Row]:
        """Pending rows in input order, after ``after_seq``."""
        return [
            Row(
                key,
                orjson.loads(payload),
                tokens,
                progress=None if progress is None else orjson.loads(progress),
                seq=seq,
            )
            for seq, key, payload, tokens, progress in self._db.execute(
                "SELECT seq, key, payload, tokens, progress FROM rows JOIN held USING (key) "
                "WHERE state = 'pending' AND part IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        ]

    def _transaction(self) -> Transaction:
        return Transaction(self._db)

    # -- reading state -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("pending", "sent", "done", "failed"), 0)
        counts.update(self._db.execute("SELECT state, COUNT(*) FROM rows GROUP BY state"))
        return counts

    def duplicates(self) -> dict[str, int]:
        """Requests and rows sent again after a crash left them in flight, over all runs."""
        requests, rows = self._db.execute(
            "SELECT COALESCE(SUM(resent_requests), 0), COALESCE(SUM(resent_rows), 0) FROM runs"
        ).fetchone()
        return {"requests": requests, "rows": rows}
