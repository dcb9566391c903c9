"""The journal's lookups by key stay lookups: their cost follows the keys asked, not the rows held.

Counted in SQLite virtual-machine steps (a progress handler), not in time: a lookup that scans
the table instead of using the key's index costs steps in proportion to the rows held.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from click.testing import Result

from pipeline.emulator import RunningEmulator
from pipeline.journal import JOURNAL_FILE, STATE_DIR, Journal, Row
from pipeline.outcomes import Success
from tests.conftest import StartEmulator, run_cli, write_job

HELD = 20_000


async def held_journal(folder: Path) -> Journal:
    journal = Journal(folder)
    journal.use_result_columns(["flagged"])
    rows = [Row(f"k{i}", {"input": f"text {i}"}, 2) for i in range(HELD)]
    journal.add(rows)
    await journal.mark_sent([row.key for row in rows], 1)
    for row in rows:
        row.outcome, row.attempts = Success({"flagged": False}), 1
    await journal.settle(rows)
    return journal


def vm_steps(journal: Journal, call: object) -> int:
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    journal._db.set_progress_handler(count, 100)  # one call per 100 VM instructions
    try:
        assert callable(call)
        call()
    finally:
        journal._db.set_progress_handler(None, 0)
    return steps[0] * 100


async def test_lookups_by_key_cost_the_keys_asked_not_the_rows_held(tmp_path: Path) -> None:
    journal = await held_journal(tmp_path)
    asked = [f"k{i}" for i in range(0, HELD, 2_000)]  # 10 keys
    found: dict[str, tuple[str, int, str]] = {}
    steps = vm_steps(journal, lambda: found.update(journal.held_among(asked)))
    assert sorted(found) == sorted(asked)
    assert steps < 2_000, f"{steps} VM steps for 10 keys: a scan of the {HELD:,} rows held?"
    # k0 was added at position 1 and k2000 at 2,001, both done
    assert journal.held_among(["k0", "k2000", "absent"]).keys() == {"k0", "k2000"}
    assert [found[key][:2] for key in ("k0", "k2000")] == [("done", 1), ("done", 2_001)]
    steps = vm_steps(journal, lambda: journal.known(asked))
    assert steps < 2_000, f"{steps} VM steps for 10 keys"
    journal.close()


# --- the output folder: its job, a lost or corrupt journal, read-only media --------------------


def run(job: Path, server: RunningEmulator, *extra: str) -> Result:
    return run_cli("run", job, "--base-url", server.base_url, "--quiet", *extra)


def comments(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "text": ["BAD row" if i == 1 else f"comment {i}" for i in range(n)],
            "author": [f"user{i}" for i in range(n)],
        }
    )


def test_a_speech_job_on_a_moderation_jobs_folder_is_exit_2_naming_both(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    job = write_job(tmp_path, comments(3))
    assert run(job, server).exit_code == 1
    part = tmp_path / "out" / "results.parquet" / "part-00001.parquet"
    before = part.read_bytes()
    speech = write_job(
        tmp_path,
        kind="speech",
        request={"model": "tts-1", "voice": "alloy", "input": "{text}"},
    )
    result = run(speech, server)
    assert result.exit_code == 2, result.output
    assert "moderation job 'job'" in result.output and "speech job 'job'" in result.output
    assert "new output folder" in result.output
    assert part.read_bytes() == before, "left alone"
    renamed = write_job(tmp_path, name="other")
    result = run(renamed, server)
    assert result.exit_code == 2 and 'name = "job"' in result.output
    assert len(server.recorded_requests()) == 3


def test_a_journal_from_before_identities_adopts_the_job_running_on_it(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    job = write_job(tmp_path, comments(3))
    assert run(job, server).exit_code == 1
    db = sqlite3.connect(tmp_path / "out" / STATE_DIR / JOURNAL_FILE)
    db.execute("DELETE FROM meta WHERE name = 'job'")
    db.commit()
    db.close()
    assert run(write_job(tmp_path, name="renamed"), server).exit_code == 1, "adopted"
    assert run(write_job(tmp_path), server).exit_code == 2, "now it belongs to 'renamed'"
    edited = write_job(tmp_path, name="renamed", request={"input": "{text} {author}"})
    assert run(edited, server).exit_code == 1, "an edited template is the same job"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_changed_since_done"] == 2


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_outputs_without_a_journal_are_exit_2_or_adopted_with_rebuild_journal(
    tmp_path: Path, emulator: StartEmulator, fmt: str
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    job = write_job(tmp_path, comments(4), input={"keep": ["author"]}, output={"format": fmt})
    assert run(job, server).exit_code == 1
    out = tmp_path / "out"
    before = {name: read(out / f"{name}.{fmt}") for name in ("results", "errors")}
    shutil.rmtree(out / STATE_DIR)
    for result in (run(job, server), run_cli("status", out)):
        assert result.exit_code == 2 and "--rebuild-journal" in result.output
    assert len(server.recorded_requests()) == 4, "nothing sent"
    comments(6).write_parquet(tmp_path / "input.parquet")
    assert run(job, server, "--rebuild-journal").exit_code == 1
    sent = [body["input"] for _, body in server.recorded_requests()[4:]]
    assert sorted(sent) == ["comment 4", "comment 5"], "only the keys in neither file"
    results, errors = read(out / f"results.{fmt}"), read(out / f"errors.{fmt}")
    assert sorted(results["id"].cast(pl.Int64)) == [0, 2, 3, 4, 5]
    assert errors["id"].cast(pl.Int64).to_list() == [1]
    old = results.filter(pl.col("id").cast(pl.Int64).is_in([0, 2, 3]))
    assert old.select(before["results"].columns).equals(before["results"]), "adopted as written"
    assert errors.equals(before["errors"]), "error fields and attempts adopted"
    assert run(job, server).exit_code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_changed_since_done"] == 0, "adopted rows match the input's requests"
    assert len(server.recorded_requests()) == 6


def read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".jsonl":
        return pl.read_ndjson(path)
    return pl.read_csv(path)


def test_a_corrupt_journal_is_exit_2_for_run_and_status(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    job = write_job(tmp_path, comments(3))
    assert run(job, server).exit_code == 1
    journal = tmp_path / "out" / STATE_DIR / JOURNAL_FILE
    journal.write_bytes(b"this is not a database, it is garbage" * 200)
    for result in (run(job, server), run_cli("status", tmp_path / "out")):
        assert result.exit_code == 2, result.output
        assert str(journal) in result.output and "--rebuild-journal" in result.output
        assert "Traceback" not in result.output
    assert len(server.recorded_requests()) == 3


def test_status_works_on_read_only_media_without_the_wal_shm_file(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    job = write_job(tmp_path, comments(3))
    assert run(job, server).exit_code == 1
    media = Path(tempfile.mkdtemp())
    try:
        shutil.copytree(tmp_path / "out", media / "out")
        state = media / "out" / STATE_DIR
        assert not (state / f"{JOURNAL_FILE}-shm").exists()
        for folder in (state, media / "out", media):
            folder.chmod(0o555)
        command = [sys.executable, "-m", "pipeline", "status", str(media / "out")]
        if os.geteuid() == 0:  # root writes anywhere: without its capabilities, it cannot here
            drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
            command = [*drop, *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "done 2, failed 1" in done.stdout
        assert not (state / f"{JOURNAL_FILE}-shm").exists()
    finally:
        for folder in (media, media / "out", media / "out" / STATE_DIR):
            folder.chmod(0o755)
        shutil.rmtree(media)


def test_rebuild_journal_refuses_the_outputs_of_another_kind_of_job(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    assert run(write_job(tmp_path, comments(3)), server).exit_code == 1
    shutil.rmtree(tmp_path / "out" / STATE_DIR)
    speech = write_job(
        tmp_path, kind="speech", request={"model": "tts-1", "voice": "alloy", "input": "{text}"}
    )
    result = run(speech, server, "--rebuild-journal")
    assert result.exit_code == 2, result.output
    assert "results.parquet" in result.output and "not written by this job" in result.output
    assert len(server.recorded_requests()) == 3
    assert not (tmp_path / "out" / STATE_DIR / JOURNAL_FILE).exists(), "the folder as it was"
    assert run(write_job(tmp_path), server).exit_code == 2, "outputs still without a journal"
    assert len(server.recorded_requests()) == 3


def test_rebuild_journal_from_csv_reads_back_what_was_written_before_neutralising(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """CSV cells that looked like formulas (or began with an apostrophe) were written with a
    leading apostrophe; the rebuilt journal holds the values themselves, so the outputs it writes
    are the same bytes, not apostrophes piling up run after run."""
    server = emulator(engine="wordlist")
    data = pl.DataFrame(
        {
            "id": ["=k1", "k2", "'k3"],
            "text": ["one", "two", "three"],
            "author": ["=1+1", "'quoted", "-5"],
        }
    )
    job = write_job(tmp_path, data, input={"keep": ["author"]}, output={"format": "csv"})
    assert run(job, server).exit_code == 0
    out = tmp_path / "out"
    written = (out / "results.csv").read_bytes()
    assert b"'=1+1" in written and b"''quoted" in written and b"'-5" in written
    shutil.rmtree(out / STATE_DIR)
    assert run(job, server, "--rebuild-journal").exit_code == 0
    assert (out / "results.csv").read_bytes() == written
    assert len(server.recorded_requests()) == 3, "nothing sent again"
    assert run(job, server).exit_code == 0
    assert (out / "results.csv").read_bytes() == written, "no apostrophe added by a rerun"


def test_a_journal_left_empty_by_a_killed_rebuild_still_asks_for_the_rebuild(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """kill -9 during --rebuild-journal leaves a journal with no row (the adoption is one
    transaction): the next plain run must not take it for a fresh start and send every row."""
    server = emulator(engine="wordlist", reject_substring="BAD")
    job = write_job(tmp_path, comments(4))
    assert run(job, server).exit_code == 1
    out = tmp_path / "out"
    shutil.rmtree(out / STATE_DIR)
    Journal(out).close()  # what a rebuild killed before its transaction committed leaves
    refused = run(job, server)
    assert refused.exit_code == 2 and "--rebuild-journal" in refused.output
    assert len(server.recorded_requests()) == 4, "nothing sent again"
    assert run(job, server, "--rebuild-journal").exit_code == 1
    assert len(server.recorded_requests()) == 4
    assert run(job, server).exit_code == 1, "a rebuilt journal is a journal"


def test_an_empty_input_reruns_without_asking_for_a_rebuild(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(0).cast({"id": pl.Int64, "text": pl.String}))
    assert run(job, server).exit_code == 0
    assert run(job, server).exit_code == 0


async def test_a_version_3_journal_gets_the_index_without_state_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    """Version 4 indexes the open rows by input position only; a version 3 journal (index on
    state and position) is migrated in place when opened for writing, its rows untouched."""
    journal = Journal(tmp_path)
    journal.use_result_columns(["flagged"])
    rows = [Row(f"k{i}", {"input": f"text {i}"}, 2) for i in range(10)]
    journal.add(rows)
    await journal.mark_sent(["k0", "k1", "k2"], 1)
    rows[0].outcome, rows[0].attempts = Success({"flagged": True}), 1
    await journal.settle(rows[:1])
    journal.close()
    db = sqlite3.connect(tmp_path / STATE_DIR / JOURNAL_FILE, isolation_level=None)
    for statement in (  # what version 3 left
        "DROP INDEX rows_unwritten",
        "CREATE INDEX rows_open ON rows (state, seq) WHERE part IS NULL",
        "UPDATE meta SET value = '3' WHERE name = 'schema_version'",
    ):
        db.execute(statement)
    db.close()

    journal = Journal(tmp_path)
    assert journal.meta("schema_version") == 4
    indexes = dict(journal._db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    assert "rows_open" not in indexes
    assert "ON rows (seq) WHERE part IS NULL" in indexes["rows_unwritten"]
    assert journal.counts() == {"pending": 7, "sent": 2, "done": 1, "failed": 0}
    assert [row.key for row in journal.pending(0, 100)] == [f"k{i}" for i in range(3, 10)]
    assert journal.start_run()[1:] == (1, 2), "the two rows in flight go back to pending"
    assert [row.key for row in journal.pending(0, 3)] == ["k1", "k2", "k3"]
    journal.close()
