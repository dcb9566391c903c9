"""Output folders as an earlier version left them, built with that version's own SQL: the journal
of schema version 2 (text keys, hex hashes, every result held in ``rows.result``) beside one
``results.parquet`` file rewritten whole by every run."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import orjson
import polars as pl

from pipeline import keys
from pipeline.journal import JOURNAL_FILE, RESULT_COLUMNS, STATE_DIR

V2_ROWS = """CREATE TABLE rows_v2 (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'failed')),
    payload BLOB, tokens INTEGER NOT NULL DEFAULT 1, request_hash TEXT NOT NULL, keep BLOB,
    result BLOB, error BLOB, attempts INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0, inflight INTEGER, resent INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL, progress BLOB)"""
V2_NAMES = "CREATE TABLE names_v2 (folded TEXT PRIMARY KEY, name TEXT NOT NULL, key TEXT NOT NULL)"


def as_version_2(out: Path, key: str = "id", keep: tuple[str, ...] = ()) -> None:
    """Turn a folder written by this version into the one version 2 would have left: the
    results back in the journal rows (values in result_columns order), the folder of parts
    replaced by one file, the journal tables and meta of version 2."""
    db = sqlite3.connect(out / STATE_DIR / JOURNAL_FILE, isolation_level=None)
    try:
        (names_blob,) = db.execute(
            "SELECT value FROM meta WHERE name = ?", (RESULT_COLUMNS,)
        ).fetchone()
        names = orjson.loads(names_blob)
        results = out / "results.parquet"
        frame = pl.read_parquet(results)
        canonical = keys.canonical(frame.get_column(key)).to_list()
        db.execute("BEGIN")
        db.execute(V2_ROWS)
        db.execute(
            "INSERT INTO rows_v2 SELECT key, seq, state, payload, tokens, "
            "COALESCE(lower(hex(request_hash)), 'adopted'), keep, result, error, attempts, "
            "sends, inflight, resent, 0, progress FROM rows LEFT JOIN held USING (key)"
        )
        for row_key, row in zip(canonical, frame.iter_rows(named=True), strict=True):
            db.execute(
                "UPDATE rows_v2 SET result = ?, keep = ? WHERE key = ?",
                (
                    orjson.dumps([row[name] for name in names], default=str),
                    orjson.dumps({col: row[col] for col in keep}, default=str),
                    row_key,
                ),
            )
        for statement in (
            "DROP TABLE rows",
            "ALTER TABLE rows_v2 RENAME TO rows",
            "CREATE INDEX rows_by_state ON rows (state, seq)",
            V2_NAMES,
            "INSERT INTO names_v2 SELECT * FROM names",
            "DROP TABLE names",
            "ALTER TABLE names_v2 RENAME TO names",
            "DROP TABLE held",
            "DROP TABLE parts",
            "DROP TABLE moved",
            "DELETE FROM meta WHERE name = 'results_store'",
            "UPDATE meta SET value = '2' WHERE name = 'schema_version'",
        ):
            db.execute(statement)
        db.execute("COMMIT")
        db.execute("PRAGMA auto_vacuum=NONE")  # version 2 made its files without vacuuming
        db.execute("VACUUM")
    finally:
        db.close()
    shutil.rmtree(results)
    frame.write_parquet(results)  # version 2 wrote one file
