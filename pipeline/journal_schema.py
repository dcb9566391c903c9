"""The journal's tables, opening a journal file, and migrating one written by an older version.

Version 3 keeps a row's bulky values (request payload, keep columns, result) in ``held`` only
until its result is flushed into the results output (``pipeline.store``); ``rows`` holds state,
hash, counters and the part its result lives in, about 60 bytes a row that never grows, so its
pages stay full (``WITHOUT ROWID`` keyed by the key, the request hash as 12 bytes, the index
only over rows not yet written). Version 4 takes the state out of that index: a row changes
state twice a request, and each change rewrote its index entry (about 3 us a row, a sixth of
the journal's work per request); the open rows are few, so queries by state scan them in input
order instead. A new journal vacuums incrementally: the pages ``held`` frees
go back to the file system after a flush. Older journals are migrated in one
transaction when opened for writing: a kill mid-way leaves the old version, whole.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from pipeline.errors import JobError

SCHEMA_VERSION = 4  # 2: keys are TEXT in their canonical form; 3: results leave once flushed;
# 4: the index of open rows is by input position only

ROWS = """
CREATE TABLE IF NOT EXISTS {table} (   -- small and of a steady size: pages stay full
    key TEXT PRIMARY KEY,          -- canonical text (pipeline.keys): int 7 and "7" are one key
    seq INTEGER NOT NULL,          -- input order
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'failed')),
    tokens INTEGER NOT NULL DEFAULT 1,
    request_hash BLOB,             -- 12 bytes: what was sent (NULL: adopted, not known yet)
    error BLOB,                    -- error fields (JSON) when failed
    attempts INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0,   -- requests that carried this row, over all runs
    inflight INTEGER,              -- the request carrying it while state = 'sent'
    resent INTEGER NOT NULL DEFAULT 0,  -- times found in flight after a crash and sent again
    progress BLOB,                 -- what a workflow recorded before waiting (thread/run ids)
    part INTEGER                   -- the results part holding its result, once flushed
) WITHOUT ROWID;
"""
HELD = """
CREATE TABLE IF NOT EXISTS {table} (   -- a row's bulky values, until its result is flushed:
    key TEXT PRIMARY KEY,          -- then deleted (freed pages are reused, or vacuumed)
    payload BLOB,                  -- the row's part of a request (JSON) until it is settled
    keep BLOB,                     -- the keep columns (JSON)
    result BLOB                    -- result values (JSON array, meta result_columns order)
) WITHOUT ROWID;
"""
# Flushed done rows, nearly all of a large job, are not in the index: it stays small. No state
# in it: a state change then leaves the index alone.
OPEN_INDEX = "CREATE INDEX IF NOT EXISTS rows_unwritten ON rows (seq) WHERE part IS NULL"
OLD_OPEN_INDEXES = ("rows_open", "rows_by_state")  # version 3's (state, seq); version 1-2's
NAMES = """
CREATE TABLE IF NOT EXISTS {table} (    -- output file names claimed by keys (speech audio)
    folded TEXT PRIMARY KEY,             -- lower case: unique on case-insensitive disks too
    name TEXT NOT NULL,
    key TEXT NOT NULL
);
"""
SCHEMA = f"""
{ROWS.format(table="rows")}
{OPEN_INDEX};
{HELD.format(table="held")}
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
{NAMES.format(table="names")}
CREATE TABLE IF NOT EXISTS parts (      -- each flush of results: its rows live in file `file`
    id INTEGER PRIMARY KEY,             -- the number rows.part holds
    file INTEGER NOT NULL               -- part-<file>.parquet (0: the one appended csv/jsonl)
);
CREATE TABLE IF NOT EXISTS batch_digests (  -- input batches unchanged since checked (feed.py)
    batch INTEGER PRIMARY KEY,              -- position in the input, in READ_BATCH_ROWS rows
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS moved (      -- results to take out of their part before the next
    key TEXT PRIMARY KEY,               -- flush writes the key's new result (--redo-changed,
    part INTEGER NOT NULL               -- --retry-failed): never two rows for one key
) WITHOUT ROWID;
"""
_OLD_COLUMNS = "seq, state, tokens, error, attempts, sends, inflight, resent, progress"
# A NaN key was stored as NULL: it names no row and was never settled. The int 7 and the text
# "7" held twice (version 1's type drift) become one key: its settled row, in both tables.
_WINNER_FIRST = (
    "FROM rows WHERE key IS NOT NULL ORDER BY "
    "CASE state WHEN 'done' THEN 0 WHEN 'failed' THEN 1 ELSE 2 END, updated_at DESC"
)


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a journal of an older version to this one, inside the caller's transaction.

    Version 1 kept keys in their input type; 2 stored them as canonical text, the hash as hex
    text and every result. Both become version 3 rows whose results are still held (part NULL):
    the next run flushes them into the results output. Version 3 only changes its index."""
    if version < 3:
        _to_version_3(db)
    for name in OLD_OPEN_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    db.execute(OPEN_INDEX)


def _to_version_3(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(rows)")}
    progress = "progress" if "progress" in columns else "NULL"
    db.create_function("hash_bytes", 1, _hash_bytes, deterministic=True)
    for statement in (
        ROWS.format(table="rows_v3"),
        f"INSERT OR IGNORE INTO rows_v3 (key, request_hash, {_OLD_COLUMNS}) "
        f"SELECT CAST(key AS TEXT), hash_bytes(request_hash), "
        f"{_OLD_COLUMNS.replace('progress', progress)} {_WINNER_FIRST}",
        HELD.format(table="held"),
        "INSERT OR IGNORE INTO held (key, payload, keep, result) "
        f"SELECT CAST(key AS TEXT), payload, keep, result {_WINNER_FIRST}",
        "DROP TABLE rows",
        "ALTER TABLE rows_v3 RENAME TO rows",
        NAMES.format(table="names_v3"),
        "INSERT OR IGNORE INTO names_v3 SELECT folded, name, CAST(key AS TEXT) FROM names",
        "DROP TABLE names",
        "ALTER TABLE names_v3 RENAME TO names",
    ):
        db.execute(statement)


def _hash_bytes(text: str | None) -> bytes | None:
    """A version 2 hash (24 hex digits, or "adopted") as version 3 stores it."""
    try:
        return bytes.fromhex(text) if text else None
    except ValueError:  # "adopted", or a version 1 test's placeholder: not known yet
        return None


def open_readonly(path: Path) -> sqlite3.Connection:
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
        raise corrupt(path, exc) from exc


def corrupt(path: Path, exc: sqlite3.DatabaseError) -> JobError:
    return JobError(
        f"{path} is not a readable journal ({exc}); move the folder {path.parent} away and run "
        "again with --rebuild-journal to adopt the results already written, or use a new "
        "output folder",
        path=str(path),
    )
