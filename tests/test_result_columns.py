"""Result columns that change between versions: stored values move by name, never by position."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import polars as pl
import pytest

from pipeline.emulator import RunningEmulator
from pipeline.journal import JOURNAL_FILE, RESULT_COLUMNS, STATE_DIR, STORE
from pipeline.store import schema_text
from tests.conftest import read_output, run_cli, write_job
from tests.oldversions import as_version_2

TEXTS = ["you are an idiot", "a kind word", "I will hurt you", "thanks a lot", "hate this"]


def _as_an_older_version_held_it(out: Path) -> list[str]:
    """Rewrite the folder as version 2 of a release whose result columns were in reverse order
    and had no ``model`` column would have left it: every result held in the journal, in that
    order; returns that version's column names."""
    as_version_2(out)
    db = sqlite3.connect(out / STATE_DIR / JOURNAL_FILE, isolation_level=None)
    try:
        (blob,) = db.execute("SELECT value FROM meta WHERE name = ?", (RESULT_COLUMNS,)).fetchone()
        names = orjson.loads(blob)
        old = [name for name in reversed(names) if name != "model"]
        picks = [names.index(name) for name in old]
        rows = db.execute("SELECT key, result FROM rows WHERE result IS NOT NULL").fetchall()
        db.execute("BEGIN")
        for key, result in rows:
            values = orjson.loads(result)
            db.execute(
                "UPDATE rows SET result = ? WHERE key = ?",
                (orjson.dumps([values[i] for i in picks]), key),
            )
        db.execute("UPDATE meta SET value = ? WHERE name = ?", (orjson.dumps(old), RESULT_COLUMNS))
        db.execute("COMMIT")
    finally:
        db.close()
    return old


def _as_an_older_version_wrote_it(out: Path) -> list[str]:
    """Rewrite the stored parts as a release whose result columns were in reverse order and had
    no ``model`` column would have written them (and its record of their schema)."""
    db = sqlite3.connect(out / STATE_DIR / JOURNAL_FILE, isolation_level=None)
    try:
        (blob,) = db.execute("SELECT value FROM meta WHERE name = ?", (RESULT_COLUMNS,)).fetchone()
        names = orjson.loads(blob)
        old = [name for name in reversed(names) if name != "model"]
        frame = pl.DataFrame()
        for part in sorted((out / "results.parquet").iterdir()):
            frame = pl.read_parquet(part).select("id", *old)
            frame.write_parquet(part)
        (store,) = db.execute("SELECT value FROM meta WHERE name = ?", (STORE,)).fetchone()
        described = {**orjson.loads(store), "schema": schema_text(frame.schema)}
        db.execute("BEGIN")
        db.execute("UPDATE meta SET value = ? WHERE name = ?", (orjson.dumps(old), RESULT_COLUMNS))
        db.execute("UPDATE meta SET value = ? WHERE name = ?", (orjson.dumps(described), STORE))
        db.execute("COMMIT")
    finally:
        db.close()
    return old


@pytest.mark.parametrize("older", [_as_an_older_version_held_it, _as_an_older_version_wrote_it])
def test_reordered_and_added_result_columns_put_no_value_under_the_wrong_name(
    tmp_path: Path, emulator: Callable[..., RunningEmulator], older: Callable[[Path], list[str]]
) -> None:
    """Results held in the journal (a version 2 folder) and results already in parts, both
    under an older column set: moved by name, never by position."""
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": [f"r{i}" for i in range(5)], "text": TEXTS})
    (tmp_path / "reference").mkdir()
    reference = write_job(tmp_path / "reference", data)
    assert run_cli("run", reference, "--base-url", server.base_url, "--quiet").exit_code == 0
    expected = {row["id"]: row for row in read_output(reference, "results").iter_rows(named=True)}

    job = write_job(tmp_path, data.head(3))
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    old = older(tmp_path / "out")
    assert old[0] == "score_violence_graphic" and "model" not in old
    job = write_job(tmp_path, data)  # two more rows, answered by this version
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0

    results = {row["id"]: row for row in read_output(job, "results").iter_rows(named=True)}
    assert sorted(results) == sorted(expected)
    for key, row in results.items():
        want = dict(expected[key])
        if key in ("r0", "r1", "r2"):  # answered by the older version, which had no model
            want["model"] = None
        assert row == want, key
    flagged = {key for key, row in results.items() if row["flagged"]}
    assert flagged == {key for key, row in expected.items() if row["flagged"]}
    assert flagged and flagged != set(results), "the texts give both answers"
