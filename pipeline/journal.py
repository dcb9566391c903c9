"""Every byte of a job's state: the SQLite journal and the lock, in ``<output>/.pipeline/``.

A key's state is one of pending -> sent -> done | failed, changed only here. Rows are marked
``sent`` just before their request leaves and ``done``/``failed`` when the answer is recorded;
both go through group commit (one transaction per event-loop tick) and the caller waits for the
commit, so after ``kill -9`` what is sent again is at most what was in flight. Keys are stored
as their canonical text (``pipeline.keys``); a journal of an older schema is migrated in one
transaction when opened for writing. A file that is not a journal is a JobError.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import orjson

from pipeline.errors import JobError, LockedError

State = Literal["pending", "sent", "done", "failed"]
STATE_DIR = ".pipeline"
JOURNAL_FILE = "journal.sqlite"
LOCK_FILE = "lock"
RESULT_COLUMNS = "result_columns"  # meta: the names of the values in rows.result
KEY_FAMILY = "key_family"  # meta: text | integer | date, the family of the keys held
JOB_IDENTITY = "job"  # meta: the job this folder belongs to (kind, key column, name)
SCHEMA_VERSION = 2  # 2: keys are TEXT in their canonical form (pipeline.keys)

_ROWS = """
CREATE TABLE IF NOT EXISTS {table} (
    key TEXT PRIMARY KEY,          -- canonical text (pipeline.keys): int 7 and "7" are one key
    seq INTEGER NOT NULL,          -- input order
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'failed')),
    payload BLOB,                  -- the row's part of a request (JSON) until it is settled
    tokens INTEGER NOT NULL DEFAULT 1,
    request_hash TEXT NOT NULL,    -- what was (or will be) sent, to spot edited rows later
    keep BLOB,                     -- the keep columns (JSON)
    result BLOB,                   -- result values (JSON array, meta result_columns order)
    error BLOB,                    -- error fields (JSON) when failed
    attempts INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0,   -- requests that carried this row, over all runs
    inflight INTEGER,              -- the request carrying it while state = 'sent'
    resent INTEGER NOT NULL DEFAULT 0,  -- times found in flight after a crash and sent again
    updated_at REAL NOT NULL,
    progress BLOB                  -- what a workflow recorded before waiting (thread/run ids)
);
"""
_NAMES = """
CREATE TABLE IF NOT EXISTS {table} (    -- output file names claimed by keys (speech audio)
    folded TEXT PRIMARY KEY,             -- lower case: unique on case-insensitive disks too
    name TEXT NOT NULL,
    key TEXT NOT NULL
);
"""
_SCHEMA = f"""
{_ROWS.format(table="rows")}
CREATE INDEX IF NOT EXISTS rows_by_state ON rows (state, seq);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    resent_requests INTEGER NOT NULL DEFAULT 0,
    resent_rows INTEGER NOT NULL DEFAULT 0,
    summary BLOB
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB);
{_NAMES.format(table="names")}
CREATE TABLE IF NOT EXISTS batch_digests (  -- input batches unchanged since checked (feed.py)
    batch INTEGER PRIMARY KEY,              -- position in the input, in READ_BATCH_ROWS rows
    digest TEXT NOT NULL
);
"""
_ROW_COLUMNS = (
    "key, seq, state, payload, tokens, request_hash, keep, result, error, attempts, sends, "
    "inflight, resent, updated_at, progress"
)


ADOPTED = "adopted"  # request_hash of a key adopted from output files (--rebuild-journal)


def _regexp(pattern: str, value: Any) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def request_hash(payload: Any) -> str:
    return hashlib.blake2b(
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS), digest_size=12
    ).hexdigest()


def rows_held(output_dir: Path) -> int:
    """How many keys the journal of ``output_dir`` holds (0 when there is none yet)."""
    path = output_dir / STATE_DIR / JOURNAL_FILE
    if not path.exists():
        return 0
    db = _open_readonly(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.OperationalError:  # a journal created but not yet given its tables
        return 0
    finally:
        db.close()


def _open_readonly(path: Path) -> sqlite3.Connection:
    """Open read-only; on read-only media without the WAL's -shm file, as immutable.

    Raises JobError when the file is not a journal."""
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:  # WAL without its -shm on read-only media
            db.close()
        db = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as exc:
        raise JobError(f"cannot read {path}: {exc}; check its permissions", path=str(path)) from exc
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: sqlite3.DatabaseError) -> JobError:
    return JobError(
        f"{path} is not a readable journal ({exc}); move the folder {path.parent} away and run "
        "again with --rebuild-journal to adopt the results already written, or use a new "
        "output folder",
        path=str(path),
    )


@dataclass(frozen=True)
class NewRow:
    key: Any
    payload: Any  # None for a row that failed to build
    tokens: int
    keep: dict[str, Any]
    error: dict[str, Any] | None = None


def _built(row: NewRow) -> tuple[State, bytes | None, int, str, bytes, bytes | None]:
    """A row as the journal stores what was built from it: state, payload, tokens,
    request_hash, keep, error (pending with its request, or failed with its error)."""
    failed = row.error is not None
    return (
        "failed" if failed else "pending",
        None if failed else orjson.dumps(row.payload),
        row.tokens,
        request_hash(row.payload),
        orjson.dumps(row.keep),
        orjson.dumps(row.error) if failed else None,
    )


@dataclass(frozen=True)
class PendingRow:
    seq: int
    key: Any
    payload: Any
    tokens: int
    progress: Any = None


@dataclass(frozen=True)
class Settled:
    key: Any
    attempts: int
    result: list[Any] | None = None  # done when set: values in result_columns order
    error: dict[str, Any] | None = None  # failed when set


class Journal:
    """The SQLite journal of one output folder; all writes happen on the event loop's thread."""

    def __init__(self, output_dir: Path, *, readonly: bool = False) -> None:
        self.dir = output_dir / STATE_DIR
        path = self.dir / JOURNAL_FILE
        if readonly:
            self._db = _open_readonly(path)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            try:
                self._open_writable()
            except sqlite3.OperationalError:
                self._db.close()
                raise
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise _corrupt(path, exc) from exc
        self._db.create_function("regexp", 2, _regexp, deterministic=True)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._ops: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._next_seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM rows").fetchone()[
            0
        ]

    def _open_writable(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL survives kill -9 either way
        self._db.executescript(_SCHEMA)
        columns = {row[1]: row[2] for row in self._db.execute("PRAGMA table_info(rows)")}
        if "progress" not in columns:  # a journal from before workflows recorded progress
            self._db.execute("ALTER TABLE rows ADD COLUMN progress BLOB")
        if (self.meta("schema_version") or 1) < SCHEMA_VERSION:
            with self._transaction():  # all or nothing: a kill mid-way leaves version 1
                if columns["key"].upper() != "TEXT":
                    self._keys_to_text()
                self.set_meta("schema_version", SCHEMA_VERSION)

    def _keys_to_text(self) -> None:
        """Version 1 -> 2: keys kept their input type; now each is its canonical text."""
        types = dict(self._db.execute("SELECT typeof(key), COUNT(*) FROM rows GROUP BY 1"))
        if types:
            self.set_meta(KEY_FAMILY, "integer" if set(types) == {"integer"} else "text")
        # One statement at a time: executescript would commit the open transaction first.
        for statement in (
            _ROWS.format(table="rows_v2"),
            # A NaN key was stored as NULL: it names no row and was never settled. The int 7
            # and the text "7" held twice (the old type drift) become one key: its settled row.
            f"INSERT OR IGNORE INTO rows_v2 ({_ROW_COLUMNS}) SELECT CAST(key AS TEXT), "
            f"{_ROW_COLUMNS.removeprefix('key,')} FROM rows WHERE key IS NOT NULL ORDER BY "
            "CASE state WHEN 'done' THEN 0 WHEN 'failed' THEN 1 ELSE 2 END, updated_at DESC",
            "DROP TABLE rows",
            "ALTER TABLE rows_v2 RENAME TO rows",
            "CREATE INDEX rows_by_state ON rows (state, seq)",
            _NAMES.format(table="names_v2"),
            "INSERT INTO names_v2 SELECT folded, name, CAST(key AS TEXT) FROM names",
            "DROP TABLE names",
            "ALTER TABLE names_v2 RENAME TO names",
        ):
            self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def discard(self) -> None:
        """Close and delete a journal this run created (a --rebuild-journal that failed)."""
        self._db.close()
        for suffix in ("", "-wal", "-shm"):
            (self.dir / f"{JOURNAL_FILE}{suffix}").unlink(missing_ok=True)

    # -- runs and recovery -------------------------------------------------------------------

    def start_run(self) -> tuple[int, int, int]:
        """Record a new run and put rows left in flight by a crash back to pending.

        Returns (run id, requests found in flight, rows in them): what will be sent again.
        """
        with self._transaction():
            # a row whose workflow recorded its progress is resumed, not sent again
            requests, rows = self._db.execute(
                "SELECT COUNT(DISTINCT inflight), COUNT(*) FROM rows "
                "WHERE state = 'sent' AND progress IS NULL"
            ).fetchone()
            self._db.execute(
                "UPDATE rows SET state = 'pending', inflight = NULL, "
                "resent = resent + (progress IS NULL) WHERE state = 'sent'"
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

    def use_result_columns(self, names: Sequence[str], chunk: int = 10_000) -> int:
        """Make the stored results follow ``names``, this version's result columns, by name: a
        column new here is null in the rows answered before, one gone is dropped. Values are
        never matched by position across versions. One transaction (a kill leaves the old
        order and its names together); returns the rows rewritten."""
        stored = self.meta(RESULT_COLUMNS)
        if stored == list(names):
            return 0
        rewritten = 0
        with self._transaction():
            if stored is not None:
                where = {name: index for index, name in enumerate(stored)}
                picks = [where.get(name) for name in names]
                last = 0
                while rows := self._db.execute(
                    "SELECT seq, key, result FROM rows WHERE state = 'done' AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (last, chunk),
                ).fetchall():
                    last = rows[-1][0]
                    updates = []
                    for _, key, blob in rows:
                        values = orjson.loads(blob)
                        moved = [None if i is None else values[i] for i in picks]
                        updates.append((orjson.dumps(moved), key))
                    self._db.executemany("UPDATE rows SET result = ? WHERE key = ?", updates)
                    rewritten += len(updates)
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (RESULT_COLUMNS, orjson.dumps(list(names))),
            )
        return rewritten

    def meta(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    # -- reading input into the journal -------------------------------------------------------

    def known(self, keys: Sequence[Any]) -> dict[Any, tuple[State, str]]:
        """The state and request hash of those of these keys the journal already holds."""
        return {
            key: (state, digest)
            for key, state, digest in self._among(
                keys, "SELECT key, state, request_hash FROM rows WHERE key IN ({})"
            )
        }

    @property
    def next_seq(self) -> int:
        """The input position the next new key gets: keys below it were added by earlier runs."""
        return int(self._next_seq)

    def done_among_earlier(self, keys: Sequence[Any], below_seq: int) -> dict[Any, str]:
        """The request hash of those of these keys that are done and were added (their request
        built) before position ``below_seq``."""
        # Filtered here, not in SQL: with state and seq in the WHERE clause SQLite may pick the
        # (state, seq) index over the key, scanning every done row for each lookup.
        return {
            key: digest
            for key, state, seq, digest in self._among(
                keys, "SELECT key, state, seq, request_hash FROM rows WHERE key IN ({})"
            )
            if state == "done" and seq < below_seq
        }

    def _among(self, keys: Sequence[Any], sql: str, *more: Any) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` (whose ``{}`` takes the key placeholders) for keys, 500 at a time."""
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            yield from self._db.execute(sql.format(",".join("?" * len(chunk))), [*chunk, *more])

    def requeue(self, rows: Iterable[NewRow]) -> None:
        """Settled keys to send again (--retry-failed, --redo-changed), with their new request;
        a row that still cannot be built stays failed with its new error. Everything of the old
        request goes in the same transaction: its answer and the workflow progress (thread and
        run ids) that would let a resumed run pick up the old answer again."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "UPDATE rows SET state = ?, payload = ?, tokens = ?, request_hash = ?, keep = ?, "
                "error = ?, result = NULL, progress = NULL, inflight = NULL, updated_at = ? "
                "WHERE key = ?",
                [(*_built(row), now, row.key) for row in rows],
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

    def adopt(self, rows: Iterable[tuple[str, State, dict[str, Any], Any, int]]) -> int:
        """Insert settled keys found in output files whose journal was lost: (key, done or
        failed, keep, result values or error fields, attempts), all in one transaction; a key
        seen twice keeps its first row. Their request is unknown (hash ``ADOPTED``) until a run
        builds it from the input. Returns how many keys were inserted."""
        now = time.time()

        def records() -> Iterator[tuple[Any, ...]]:
            for key, state, keep, value, attempts in rows:
                done = state == "done"
                column = (orjson.dumps(value), None) if done else (None, orjson.dumps(value))
                yield (key, self._next_seq, state, orjson.dumps(keep), *column, attempts, now)
                self._next_seq += 1

        before = self._db.total_changes
        with self._transaction():  # all or nothing: a kill mid-way leaves an empty journal
            self._db.executemany(
                "INSERT OR IGNORE INTO rows (key, seq, state, request_hash, keep, result, error, "
                f"attempts, updated_at) VALUES (?, ?, ?, '{ADOPTED}', ?, ?, ?, ?, ?)",
                records(),
            )
        return self._db.total_changes - before

    def record_hashes(self, hashes: Sequence[tuple[str, Any]]) -> None:
        """Give adopted keys the hash of the request the input builds for them now."""
        with self._transaction():
            self._db.executemany(
                f"UPDATE rows SET request_hash = ? WHERE key = ? AND request_hash = '{ADOPTED}'",
                hashes,
            )

    def add(self, rows: Iterable[NewRow]) -> None:
        """Insert new keys: pending, or failed when the row could not become a request."""
        now = time.time()
        records = []
        for row in rows:
            records.append((row.key, self._next_seq, *_built(row), now))
            self._next_seq += 1
        with self._transaction():
            self._db.executemany(
                "INSERT INTO rows (key, seq, state, payload, tokens, request_hash, keep, error,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )

    def pending(self, after_seq: int, limit: int) -> list[PendingRow]:
        """Pending rows in input order, after ``after_seq``."""
        return [
            PendingRow(
                seq,
                key,
                orjson.loads(payload),
                tokens,
                None if progress is None else orjson.loads(progress),
            )
            for seq, key, payload, tokens, progress in self._db.execute(
                "SELECT seq, key, payload, tokens, progress FROM rows "
                "WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        ]

    # -- the pool's writes: group commit -------------------------------------------------------

    async def mark_sent(self, keys: Sequence[Any], request_id: int) -> None:
        """Record that a request carrying these keys is about to leave; waits for the commit."""
        await self._submit(
            "UPDATE rows SET state = 'sent', sends = sends + 1, inflight = ?, updated_at = ? "
            "WHERE key = ?",
            [(request_id, time.time(), key) for key in keys],
        )

    async def settle(self, outcomes: Sequence[Settled]) -> None:
        """Record answers (done or failed); waits for the commit."""
        now = time.time()
        await self._submit(
            "UPDATE rows SET state = CASE WHEN ? IS NULL THEN 'done' ELSE 'failed' END, "
            "result = ?, error = ?, attempts = attempts + ?, payload = NULL, inflight = NULL, "
            "updated_at = ? WHERE key = ?",
            [
                (
                    None if o.error is None else 1,
                    None if o.result is None else orjson.dumps(o.result),
                    None if o.error is None else orjson.dumps(o.error),
                    o.attempts,
                    now,
                    o.key,
                )
                for o in outcomes
            ],
        )

    async def note(self, key: Any, progress: Any) -> None:
        """Record a workflow's progress (ids to find its work again); waits for the commit."""
        await self._submit(
            "UPDATE rows SET progress = ?, updated_at = ? WHERE key = ?",
            [(orjson.dumps(progress), time.time(), key)],
        )

    async def unsend(self, keys: Sequence[Any], attempts: int) -> None:
        """Put rows back to pending: the run stopped before they got an answer."""
        await self._submit(
            "UPDATE rows SET state = 'pending', inflight = NULL, attempts = attempts + ?, "
            "updated_at = ? WHERE key = ? AND state IN ('pending', 'sent')",
            [(attempts, time.time(), key) for key in keys],
        )

    async def _submit(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self._waiters:
            loop.call_soon(self._flush)
        self._ops.append((sql, params))
        self._waiters.append(waiter)
        await waiter

    def _flush(self) -> None:
        ops, waiters = self._ops, self._waiters
        self._ops, self._waiters = [], []
        try:
            with self._transaction():
                for sql, params in ops:
                    self._db.executemany(sql, params)
        except sqlite3.Error as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def claim_name(
        self, stem: str, suffix: str, key: Any, taken: Callable[[str], bool] = lambda _: False
    ) -> str:
        """A file name for ``key``: ``stem + suffix``, or ``stem~N + suffix`` if another key has
        it, or ``taken(name)`` says a file nobody claimed is there (a user's, or one adopted by
        --rebuild-journal): never overwritten. The same key always gets the same name back."""
        attempt = 1
        while True:
            name = f"{stem}{suffix}" if attempt == 1 else f"{stem}~{attempt}{suffix}"
            row = self._db.execute(
                "SELECT key FROM names WHERE folded = ?", (name.lower(),)
            ).fetchone()
            if row is None and not taken(name):
                self._db.execute("INSERT INTO names VALUES (?, ?, ?)", (name.lower(), name, key))
                return name
            if row is not None and row[0] == key:
                return name
            attempt += 1

    def adopt_names(self, names: Iterable[tuple[str, str]]) -> None:
        """Record (key, file name) pairs found in adopted results as claimed by those keys."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO names VALUES (?, ?, ?)",
                ((name.lower(), name, key) for key, name in names),
            )

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

    def settled(
        self, state: Literal["done", "failed"], chunk: int = 10_000
    ) -> Iterator[list[tuple[Any, dict[str, Any], Any, int]]]:
        """(key, keep, result-or-error, attempts) of settled rows in input order, in chunks."""
        column = "result" if state == "done" else "error"
        last = 0
        while True:
            rows = self._db.execute(
                f"SELECT seq, key, keep, {column}, attempts FROM rows "
                "WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?",
                (state, last, chunk),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [
                (key, orjson.loads(keep), orjson.loads(value), attempts)
                for _, key, keep, value, attempts in rows
            ]

    # -- for the feed's skip of unchanged input batches (pipeline/feed.py) -------------------

    def held_among(self, keys: Sequence[Any]) -> dict[Any, tuple[State, int, str]]:
        """The state, input position and request hash of those of these keys held."""
        return {
            key: (state, seq, digest)
            for key, state, seq, digest in self._among(
                keys, "SELECT key, state, seq, request_hash FROM rows WHERE key IN ({})"
            )
        }

    def batch_digests(self) -> dict[int, str]:
        """The digest of each input batch checked against the requests built from it."""
        return dict(self._db.execute("SELECT batch, digest FROM batch_digests"))

    def record_batch_digest(self, batch: int, digest: str) -> None:
        """Called once every key of the batch is committed with its request built from it."""
        self._db.execute("INSERT OR REPLACE INTO batch_digests VALUES (?, ?)", (batch, digest))

    def forget_batch_digest(self, batch: int) -> None:
        self._db.execute("DELETE FROM batch_digests WHERE batch = ?", (batch,))


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


class OutputLock:
    """An exclusive flock on ``.pipeline/lock``: released by the kernel when the holder dies."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / STATE_DIR / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once or raise LockedError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            pid = holder.get("pid")
            since = holder.get("started")
            who = f"pid {pid}, started {since}" if pid else "another process"
            raise LockedError(
                f"another run ({who}) is using {self.path.parent.parent}; wait for it to finish "
                "or stop it",
                pid=pid if isinstance(pid, int) else None,
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.write(
            fd,
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
            ).encode(),
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}
