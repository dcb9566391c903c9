"""The journal's batch tables: every Batch API input file and batch of a folder, and which file
and line each row is in. Their own tables in the journal file (created ``IF NOT EXISTS``, on
their own connection), so the journal's row states stay the executor contract's.

A file's state moves, each move committed before the call it announces and again after it:

    writing --seal--> uploading --POST /files--> uploaded --intent--> creating
            --POST /batches--> submitted --(terminal status, collected)--> collected

A row is mapped to its file and line when the file is sealed, before its upload, and a key has
one mapping at a time (the primary key): a row is never in two live batches. After a crash, a
file ``uploading`` or ``uploaded`` never became a batch: it is abandoned and its rows go back to
the feed; one ``creating`` may have: its batch is looked up (by input file) before another is
created. Rows stay ``pending`` in ``rows`` while in a batch; their payloads are read back here
when the answers come (from ``held``, the journal's).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from pipeline.journal import JOURNAL_FILE, STATE_DIR
from pipeline.journal_schema import open_readonly
from pipeline.rows import Row

FileState = Literal["uploading", "uploaded", "creating", "submitted", "collected", "abandoned"]
LIVE: tuple[FileState, ...] = ("creating", "submitted")
SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_files (  -- one Batch API input file, and the batch made of it
    id INTEGER PRIMARY KEY,               -- its number: .pipeline/batch/input-<id>.jsonl
    state TEXT NOT NULL,
    url TEXT NOT NULL,                    -- the endpoint of its lines: /v1/moderations
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    file_id TEXT,                         -- the uploaded file's id, once known
    batch_id TEXT,                        -- the batch's id, once known
    status TEXT,                          -- the batch's status when last polled
    counts BLOB,                          -- its request_counts (JSON) when last polled
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_rows (   -- the file and line a row is in: one at a time
    key TEXT PRIMARY KEY,
    file INTEGER NOT NULL,
    line TEXT NOT NULL,                   -- the line's custom_id
    position INTEGER NOT NULL,            -- the row's place in its line (a pack's order)
    digest BLOB NOT NULL                  -- what the line asks (lines.body_digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_rows_line ON batch_rows (file, line);
"""


@dataclass(frozen=True)
class BatchFile:
    id: int
    state: FileState
    url: str
    lines: int
    file_id: str | None
    batch_id: str | None
    status: str | None
    counts: dict[str, int] | None
    created_at: float


class Ledger:
    """The batch tables of one output folder's journal."""

    def __init__(self, output_dir: Path, *, readonly: bool = False) -> None:
        path = output_dir / STATE_DIR / JOURNAL_FILE
        self.folder = output_dir / STATE_DIR / "batch"
        if readonly:
            self._db = open_readonly(path)
            return
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def exists(self) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'batch_files'"
        ).fetchone()
        return found is not None

    def input_path(self, number: int) -> Path:
        return self.folder / f"input-{number}.jsonl"

    def next_number(self) -> int:
        return int(
            self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM batch_files").fetchone()[0]
        )

    # -- moves of a file ------------------------------------------------------------------

    def sealed(
        self,
        number: int,
        url: str,
        lines: int,
        size: int,
        rows: Sequence[tuple[str, str, int, bytes]],
    ) -> None:
        """A written file and the rows in it, before its upload: its rows leave older files."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO batch_files (id, state, url, lines, bytes, created_at) "
                "VALUES (?, 'uploading', ?, ?, ?, ?)",
                (number, url, lines, size, time.time()),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO batch_rows VALUES (?, ?, ?, ?, ?)",
                [(key, number, line, place, digest) for key, line, place, digest in rows],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def move(self, number: int, state: FileState, **ids: str | None) -> None:
        """Record a file's new state (and the id a call gave it: file_id, batch_id)."""
        sets = ", ".join(["state = ?", *(f"{name} = ?" for name in ids)])
        self._db.execute(
            f"UPDATE batch_files SET {sets} WHERE id = ?", (state, *ids.values(), number)
        )

    def polled(self, number: int, status: str, counts: object) -> None:
        found = clean_counts(counts)
        self._db.execute(
            "UPDATE batch_files SET status = ?, counts = ? WHERE id = ?",
            (status, None if found is None else orjson.dumps(found), number),
        )

    def release(self, number: int, state: FileState) -> None:
        """The file is done with (collected, or abandoned before it became a batch): its rows
        that no newer file took are free again."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("UPDATE batch_files SET state = ? WHERE id = ?", (state, number))
            self._db.execute("DELETE FROM batch_rows WHERE file = ?", (number,))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------

    def files(self, states: Iterable[FileState] | None = None) -> list[BatchFile]:
        sql = (
            "SELECT id, state, url, lines, file_id, batch_id, status, counts, created_at "
            "FROM batch_files"
        )
        wanted = tuple(states) if states is not None else None
        if wanted is not None:
            sql += f" WHERE state IN ({','.join('?' * len(wanted))})"
        return [
            BatchFile(n, s, url, lines, f, b, st, None if c is None else orjson.loads(c), at)
            for n, s, url, lines, f, b, st, c, at in self._db.execute(
                sql + " ORDER BY id", wanted or ()
            )
        ]

    def mapped(self) -> bool:
        return self._db.execute("SELECT 1 FROM batch_rows LIMIT 1").fetchone() is not None

    def free(self, keys: Sequence[str]) -> set[str]:
        """Those of these keys still pending and in no file: a row of a live batch waits for
        it, and one settled meanwhile (its batch collected) is not sent again."""
        found: set[str] = set()
        for chunk in _chunks(keys):
            sql = (
                f"SELECT key FROM rows r WHERE key IN ({','.join('?' * len(chunk))}) "
                "AND state = 'pending' AND NOT EXISTS "
                "(SELECT 1 FROM batch_rows b WHERE b.key = r.key)"
            )
            found.update(key for (key,) in self._db.execute(sql, chunk))
        return found

    def line_rows(self, number: int, line_ids: Sequence[str]) -> dict[str, tuple[list[Row], bytes]]:
        """For each of these lines of a file: its rows still pending (payloads from the
        journal's ``held``), in line order, and what the line asked."""
        lines: dict[str, tuple[list[Row], bytes]] = {}
        for chunk in _chunks(line_ids):
            sql = (
                "SELECT b.line, b.digest, r.key, h.payload, r.tokens, r.seq, r.progress "
                "FROM batch_rows b JOIN rows r USING (key) JOIN held h USING (key) "
                "WHERE b.file = ? AND r.state = 'pending' "
                f"AND b.line IN ({','.join('?' * len(chunk))}) "
                "ORDER BY b.line, b.position"
            )
            for line, digest, key, payload, tokens, seq, progress in self._db.execute(
                sql, (number, *chunk)
            ):
                rows, _ = lines.setdefault(line, ([], digest))
                rows.append(_row(key, payload, tokens, seq, progress))
        return lines

    def pending_rows(self, keys: Sequence[str]) -> Iterator[list[Row]]:
        """Those of these keys still pending, as rows (payloads from ``held``), 500 at a time."""
        for chunk in _chunks(keys):
            sql = (
                "SELECT r.key, h.payload, r.tokens, r.seq, r.progress FROM rows r "
                f"JOIN held h USING (key) WHERE r.state = 'pending' AND r.key IN "
                f"({','.join('?' * len(chunk))})"
            )
            yield [_row(*found) for found in self._db.execute(sql, chunk)]

    def unanswered(self, number: int) -> Iterator[list[Row]]:
        """The rows of a file still pending and still in it, 1,000 at a time."""
        after = ""
        while True:
            chunk = [
                _row(key, payload, tokens, seq, progress)
                for key, payload, tokens, seq, progress in self._db.execute(
                    "SELECT r.key, h.payload, r.tokens, r.seq, r.progress "
                    "FROM batch_rows b JOIN rows r USING (key) JOIN held h USING (key) "
                    "WHERE b.file = ? AND r.state = 'pending' AND b.key > ? "
                    "ORDER BY b.key LIMIT 1000",
                    (number, after),
                )
            ]
            if not chunk:
                return
            after = chunk[-1].key
            yield chunk


def clean_counts(counts: object) -> dict[str, int] | None:
    """A batch's ``request_counts`` as far as they are counts (a lying server's strings,
    nulls and negatives are left out): what the log and ``pipeline status`` show."""
    if not isinstance(counts, dict):
        return None
    return {
        name: value
        for name, value in counts.items()
        if isinstance(name, str) and type(value) is int and value >= 0
    }


def _row(key: str, payload: bytes, tokens: int, seq: int, progress: bytes | None) -> Row:
    return Row(
        key,
        orjson.loads(payload),
        tokens,
        seq=seq,
        progress=None if progress is None else orjson.loads(progress),
    )


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
