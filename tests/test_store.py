"""Outputs that grow by what is new: results.parquet is a folder of parts (a rerun adds one),
results.csv / .jsonl grow by appends; the journal lets go of results once they are written."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline import journal_commits
from pipeline import store as store_module
from pipeline.emulator import RunningEmulator
from pipeline.journal import JOURNAL_FILE, SCHEMA_VERSION, STATE_DIR
from tests.conftest import StartEmulator, read_output, run_cli, write_job
from tests.oldversions import as_version_2


def run(job: Path, server: RunningEmulator, *extra: str) -> int:
    return run_cli("run", job, "--base-url", server.base_url, "--quiet", *extra).exit_code


def comments(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"c{i:05d}" for i in range(start, n)],
            "text": [f"comment {i}" for i in range(start, n)],
        }
    )


def parts(out: Path) -> list[Path]:
    return sorted((out / "results.parquet").iterdir())


def fingerprint(path: Path) -> tuple[int, int, bytes]:
    """Inode, modification time and bytes: a file left alone keeps all three."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def journal_sql(out: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(out / STATE_DIR / JOURNAL_FILE)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_rerun_adds_one_part_with_only_the_new_rows_and_leaves_the_others_alone(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(20))
    assert run(job, server) == 0
    out = tmp_path / "out"
    (first,) = parts(out)
    before = fingerprint(first)
    comments(30).write_parquet(tmp_path / "input.parquet")
    assert run(job, server) == 0
    assert [p.name for p in parts(out)] == ["part-00001.parquet", "part-00002.parquet"]
    assert fingerprint(first) == before, "the earlier part is not rewritten"
    assert sorted(pl.read_parquet(parts(out)[1])["id"]) == comments(30, 20)["id"].to_list()
    results = read_output(job, "results")  # polars reads the folder as one table
    assert sorted(results["id"]) == comments(30)["id"].to_list()
    assert pq.read_table(out / "results.parquet").num_rows == 30
    glob = str(out / "results.parquet" / "*.parquet")
    counted = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{glob}')")
    assert counted is not None and counted.fetchall() == [(30, 30)], (
        "DuckDB reads the parts as one table"
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_redo_changed_leaves_exactly_one_row_per_key_with_the_new_answer(
    tmp_path: Path, emulator: StartEmulator, fmt: str
) -> None:
    server = emulator(engine="wordlist")
    data = comments(10)
    job = write_job(tmp_path, data, output={"format": fmt})
    assert run(job, server) == 0
    edited = data.with_columns(
        pl.when(pl.col("id").is_in(["c00002", "c00005"]))
        .then(pl.lit("you idiot, I will kill you"))
        .otherwise(pl.col("text"))
        .alias("text")
    )
    edited.write_parquet(tmp_path / "input.parquet")
    assert run(job, server, "--redo-changed") == 0
    out = tmp_path / "out"
    if fmt == "parquet":
        results = read_output(job, "results")
        assert sorted(pl.read_parquet(parts(out)[0])["id"]) == [
            key for key in data["id"] if key not in ("c00002", "c00005")
        ], "the old answers left their part"
    else:
        results = pl.read_csv(out / "results.csv")
    assert sorted(results["id"]) == data["id"].to_list(), "one row per key"
    flagged = set(results.filter(pl.col("flagged"))["id"])
    assert flagged == {"c00002", "c00005"}, "the new answers"
    assert run(job, server) == 0
    again = read_output(job, "results") if fmt == "parquet" else pl.read_csv(out / "results.csv")
    assert again.sort("id").equals(results.sort("id")), "a plain rerun changes nothing"


def test_a_part_the_journal_never_recorded_is_deleted_and_its_rows_written_once(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """What a crash between a part's rename and its commit leaves: a part file the journal
    does not name (its rows are still held in the journal, so it must go)."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(10))
    assert run(job, server) == 0
    out = tmp_path / "out"
    shutil.copy(parts(out)[0], out / "results.parquet" / "part-00002.parquet")
    assert read_output(job, "results").height == 20, "the leftover doubles every key"
    comments(15).write_parquet(tmp_path / "input.parquet")
    assert run(job, server) == 0
    results = read_output(job, "results")
    assert sorted(results["id"]) == comments(15)["id"].to_list()
    assert sorted(pl.read_parquet(parts(out)[1])["id"]) == comments(15, 10)["id"].to_list()


@pytest.mark.parametrize("name", ["part-final.parquet", "part-00007.parquet.bak", "notes.txt"])
def test_a_file_of_the_users_in_the_parts_folder_is_left_alone_and_named(
    tmp_path: Path, emulator: StartEmulator, name: str
) -> None:
    """Not a part this pipeline writes (no part number): never parsed as one (it crashed the
    run), never deleted; the run says readers of the folder may take it for results."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(10))
    assert run(job, server) == 0
    out = tmp_path / "out"
    foreign = out / "results.parquet" / name
    foreign.write_bytes(b"the user's own bytes")
    comments(12).write_parquet(tmp_path / "input.parquet")
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    assert foreign.read_bytes() == b"the user's own bytes"
    assert f"{name}: not a part this pipeline wrote" in result.stderr
    recorded = [p for p in parts(out) if p.name.startswith("part-0") and p.suffix == ".parquet"]
    assert sorted(pl.read_parquet(recorded)["id"]) == comments(12)["id"].to_list()


def test_a_results_folder_deleted_by_hand_is_said_and_the_run_goes_on(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """The journal no longer holds written results: deleting the folder loses them. The next
    run must say so (not crash with exit 70) and write its new rows."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(10))
    assert run(job, server) == 0
    shutil.rmtree(tmp_path / "out" / "results.parquet")
    comments(12).write_parquet(tmp_path / "input.parquet")
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    assert "1 part(s) the journal recorded are missing (part-00001.parquet...)" in result.stderr
    assert sorted(read_output(job, "results")["id"]) == comments(12, 10)["id"].to_list()
    assert server.stats()["requests"] == 12, "nothing sent twice"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_text_output_cut_short_by_hand_is_said_not_silently_appended_to(
    tmp_path: Path, emulator: StartEmulator, fmt: str
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(5), output={"format": fmt})
    assert run(job, server) == 0
    results = tmp_path / "out" / f"results.{fmt}"
    with results.open("r+b") as handle:
        handle.truncate(results.stat().st_size - 10)
    comments(8).write_parquet(tmp_path / "input.parquet")
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"results.{fmt} is 10 bytes shorter than the journal recorded" in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_text_output_grows_by_appends_and_loses_a_tail_the_journal_never_recorded(
    tmp_path: Path, emulator: StartEmulator, fmt: str
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(5), output={"format": fmt})
    assert run(job, server) == 0
    results = tmp_path / "out" / f"results.{fmt}"
    written = results.read_bytes()
    with results.open("ab") as handle:  # what a crash between an append and its commit leaves
        handle.write(b'{"id": "junk"}\n' if fmt == "jsonl" else b"junk,true\n")
    comments(8).write_parquet(tmp_path / "input.parquet")
    assert run(job, server) == 0
    grown = results.read_bytes()
    assert grown.startswith(written) and b"junk" not in grown, "appended after the cut"
    rows = pl.read_csv(results) if fmt == "csv" else pl.read_ndjson(results)
    assert sorted(rows["id"]) == comments(8)["id"].to_list()
    if fmt == "csv":
        assert grown.count(b"id,flagged") == 1, "one header"


def test_a_format_change_converts_the_stored_results_with_their_types(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """csv -> parquet -> jsonl -> parquet: the results live only in the output now, so each
    change reads them back (CSV apostrophes and JSON cells undone) and writes them anew."""
    server = emulator(engine="wordlist")
    data = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "text": ["a", "b", "you idiot"],
            "n": [1.5, None, 3.0],
            "when": [dt.date(2024, 1, 1), None, dt.date(2024, 1, 3)],
            "tags": [["x"], [], ["y", "z"]],
            "note": ["=1+1", "'q", None],
        }
    )
    keep = ["n", "when", "tags", "note"]
    frames = []
    for fmt in ("parquet", "csv", "parquet", "jsonl", "parquet"):
        job = write_job(tmp_path, data, input={"keep": keep}, output={"format": fmt})
        assert run(job, server) == 0
        if fmt == "parquet":
            frames.append(read_output(job, "results").sort("id"))
        names = sorted(path.name for path in (tmp_path / "out").iterdir())
        assert names == [".pipeline", f"errors.{fmt}", f"results.{fmt}", "summary.json"]
    assert len(server.recorded_requests()) == 3, "nothing sent again"
    assert frames[0].select("id", *keep).equals(data.drop("text"))
    assert frames[1].equals(frames[0]) and frames[2].equals(frames[0])


def test_the_journal_holds_under_150_bytes_per_done_row_once_flushed(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    n = 4000
    data = comments(n).with_columns(author=pl.lit("someone with a long name " * 4))
    job = write_job(
        tmp_path, data, input={"keep": ["author"]}, moderation={"rows_per_request": 100}
    )
    assert run(job, server) == 0
    out = tmp_path / "out"
    assert journal_sql(out, "SELECT COUNT(*) FROM held") == [(0,)], "every value left"
    journal_sql(out, "PRAGMA wal_checkpoint(TRUNCATE)")
    size = (out / STATE_DIR / JOURNAL_FILE).stat().st_size
    assert size / n < 150, f"{size / n:.0f} bytes per done row"
    assert read_output(job, "results")["author"].to_list() == data["author"].to_list()


def test_a_long_first_run_flushes_as_it_goes(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_commits, "BACKLOG_ROWS", 100)
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(1000), moderation={"rows_per_request": 20})
    assert run(job, server) == 0
    out = tmp_path / "out"
    assert len(parts(out)) >= 5, "flushed whenever more than 100 rows were held"
    assert sorted(read_output(job, "results")["id"]) == comments(1000)["id"].to_list()
    sizes = [pq.ParquetFile(part).metadata.num_rows for part in parts(out)]
    assert max(sizes) < 1000 and sum(sizes) == 1000


def test_more_parts_than_the_limit_are_merged_and_a_redo_still_finds_its_row(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_PARTS", 3)
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(2))
    out = tmp_path / "out"
    counts = []
    for n in (2, 4, 6, 8, 10):
        comments(n).write_parquet(tmp_path / "input.parquet")
        assert run(job, server) == 0
        counts.append(len(parts(out)))
    assert counts == [1, 2, 3, 1, 2], "the fourth part made a merge"
    edited = comments(10).with_columns(
        pl.when(pl.col("id") == "c00000")
        .then(pl.lit("I will kill you"))
        .otherwise("text")
        .alias("text")
    )
    edited.write_parquet(tmp_path / "input.parquet")
    assert run(job, server, "--redo-changed") == 0
    results = read_output(job, "results")
    assert sorted(results["id"]) == comments(10)["id"].to_list()
    assert results.filter(pl.col("id") == "c00000")["flagged"].to_list() == [True]


def test_a_merge_killed_between_its_renames_is_rolled_back(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(6))
    assert run(job, server) == 0
    out = tmp_path / "out"
    expected = read_output(job, "results").sort("id")
    work = out / STATE_DIR / store_module.COMPACTING
    work.mkdir()
    (out / "results.parquet").rename(work / "old")  # the merge's first rename, then a kill
    plan = orjson.dumps({"into": 9, "from": [1]})
    db = sqlite3.connect(out / STATE_DIR / JOURNAL_FILE, isolation_level=None)
    db.execute("INSERT INTO meta VALUES (?, ?)", (store_module.COMPACT_PLAN, plan))
    db.close()
    assert run(job, server) == 0
    assert read_output(job, "results").sort("id").equals(expected)
    assert not work.exists()
    assert len(server.recorded_requests()) == 6, "nothing sent again"


def test_a_version_2_folder_is_migrated_and_its_single_file_becomes_a_folder(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    n = 2000
    job = write_job(tmp_path, comments(n), moderation={"rows_per_request": 100})
    assert run(job, server) == 0
    expected = read_output(job, "results").sort("id")
    out = tmp_path / "out"
    as_version_2(out)
    assert (out / "results.parquet").is_file()
    assert journal_sql(out, "SELECT COUNT(*) FROM rows WHERE result IS NOT NULL") == [(n,)]
    old_size = (out / STATE_DIR / JOURNAL_FILE).stat().st_size
    assert old_size / n > 400, "version 2 held every result"
    comments(n + 5).write_parquet(tmp_path / "input.parquet")
    sent_before = len(server.recorded_requests())
    assert run(job, server) == 0
    assert len(server.recorded_requests()) == sent_before + 1, "only the new rows were sent"
    assert (out / "results.parquet").is_dir()
    results = read_output(job, "results").sort("id")
    assert results["id"].to_list() == comments(n + 5)["id"].to_list()
    assert results.head(n).equals(expected), "the held results, written as they were"
    ((version,),) = journal_sql(out, "SELECT value FROM meta WHERE name = 'schema_version'")
    assert isinstance(version, bytes) and json.loads(version) == SCHEMA_VERSION
    assert journal_sql(out, "SELECT COUNT(*) FROM held") == [(0,)]
    journal_sql(out, "PRAGMA wal_checkpoint(TRUNCATE)")
    size = (out / STATE_DIR / JOURNAL_FILE).stat().st_size
    assert size / (n + 5) < 150, "vacuumed once its results were written"
    assert f"done {n + 5}" in run_cli("status", out).output
