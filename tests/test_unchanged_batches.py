"""A rerun skips the input batches unchanged since they were last checked (pipeline/feed.py),
and the skip never hides a new key, an edited row, a changed job or a failed key to retry.

Batches of 10 rows (the feed's batch size, made small) so that a few dozen rows span several.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from pipeline import feed
from pipeline.emulator import RunningEmulator
from tests.conftest import StartEmulator, read_output, run_cli, write_job

BATCH = 10


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed, "READ_BATCH_ROWS", BATCH)


def comments(ids: range, text: str = "comment") -> pl.DataFrame:
    return pl.DataFrame({"id": [f"c{i:03d}" for i in ids], "text": [f"{text} {i}" for i in ids]})


def sent(server: RunningEmulator) -> list[str]:
    return [body["input"] for _, body in server.recorded_requests()]


@dataclass(frozen=True)
class Rerun:
    code: int
    changed: int  # rows_changed_since_done
    redone: int  # rows_redone
    skipped: int | None  # batches skipped as unchanged, from the "input read" log line


def run(job: Path, server: RunningEmulator, *extra: str) -> Rerun:
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", *extra)
    summary = json.loads((job.parent / "out" / "summary.json").read_text())
    found = re.search(r"input read: \d+ batch\(es\), (\d+) unchanged", result.output)
    return Rerun(
        result.exit_code,
        summary["rows_changed_since_done"],
        summary["rows_redone"],
        None if found is None else int(found.group(1)),  # None: the read was cut short
    )


def test_a_grown_csv_sends_only_the_new_rows_and_skips_the_batches_before(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(range(30)), input_name="input.csv")
    r = run(job, server)
    assert (r.code, r.skipped) == (0, 0)
    with (tmp_path / "input.csv").open("a") as grown:
        grown.writelines(f"c{i:03d},comment {i}\n" for i in range(30, 35))
    r = run(job, server)
    assert (r.code, r.skipped, r.changed) == (0, 3, 0)
    assert sorted(sent(server)) == sorted(f"comment {i}" for i in range(35)), "each once"
    assert sorted(read_output(job, "results")["id"]) == [f"c{i:03d}" for i in range(35)]
    r = run(job, server)
    assert (r.code, r.skipped, len(sent(server))) == (0, 4, 35), "the part batch is new too"


def test_an_edited_row_among_unchanged_batches_is_counted_until_redone(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(range(30)))
    assert run(job, server).code == 0
    edited = comments(range(30)).with_columns(
        pl.when(pl.col("id") == "c014").then(pl.lit("edited")).otherwise("text").alias("text")
    )
    edited.write_parquet(tmp_path / "input.parquet")
    r = run(job, server)
    assert (r.skipped, r.changed) == (2, 1), "batch 1 compared"
    r = run(job, server)
    assert (r.skipped, r.changed) == (2, 1), "still changed"
    r = run(job, server, "--redo-changed")
    assert r.redone == 1 and sent(server)[30:] == ["edited"]
    r = run(job, server)
    assert (r.skipped, r.changed) == (2, 0), "batch 1 checked"
    r = run(job, server)
    assert (r.skipped, r.changed) == (3, 0), "and now skipped"
    assert len(sent(server)) == 31


def test_an_edit_redone_then_undone_is_counted_changed(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """The batch's digest from before the edit must not match once the edit is undone: the
    journal holds the edited request by then."""
    server = emulator(engine="wordlist")
    original = comments(range(20))
    job = write_job(tmp_path, original)
    assert run(job, server).code == 0
    original.with_columns(
        pl.when(pl.col("id") == "c003").then(pl.lit("edited")).otherwise("text").alias("text")
    ).write_parquet(tmp_path / "input.parquet")
    assert run(job, server, "--redo-changed").redone == 1
    original.write_parquet(tmp_path / "input.parquet")
    r = run(job, server)
    assert (r.skipped, r.changed) == (1, 1)
    assert run(job, server, "--redo-changed").redone == 1
    assert sent(server)[20:] == ["edited", "comment 3"]


def test_a_changed_request_template_counts_every_row_of_an_unchanged_input(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(range(25)))
    assert run(job, server).code == 0
    write_job(tmp_path, request={"input": "Comment: {text}"})  # the same input
    r = run(job, server)
    assert (r.skipped, r.changed) == (0, 25)


def test_retry_failed_sends_the_failed_keys_of_an_unchanged_input_again(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="comment 1")
    job = write_job(tmp_path, comments(range(20)))
    assert run(job, server).code == 1
    failed = ["c001", *(f"c{i:03d}" for i in range(10, 20))]
    assert sorted(read_output(job, "errors")["id"]) == failed
    r = run(job, server)
    assert (r.code, r.skipped, len(sent(server))) == (1, 2, 20), "a plain run skips both"
    r = run(job, server, "--retry-failed")
    assert (r.code, r.skipped) == (1, 0)
    again = sorted(["comment 1", *(f"comment {i}" for i in range(10, 20))])
    assert sorted(sent(server)[20:]) == again, "the failed keys, and only those"
    assert sorted(read_output(job, "errors")["id"]) == failed


def test_limit_runs_leave_a_part_read_batch_to_be_checked(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """--limit 15 adds batch 0 and half of batch 1: only batch 0 may be skipped later."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(range(30)))
    assert run(job, server, "--limit", "15").code == 4
    r = run(job, server, "--limit", "10")
    assert (r.code, r.skipped) == (4, 1)
    assert sorted(sent(server)) == sorted(f"comment {i}" for i in range(25))
    r = run(job, server)
    assert (r.code, r.skipped, r.changed) == (0, 2, 0), "batch 1 full"
    assert sorted(sent(server)) == sorted(f"comment {i}" for i in range(30)), "each once"
    assert run(job, server).skipped == 3


def test_rows_left_pending_by_a_stop_are_sent_while_their_batches_are_skipped(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, comments(range(30)), api={"concurrency": 1})
    assert run(job, server, "--max-requests", "4").code == 4  # batch 0 read, the queue full
    r = run(job, server)
    assert (r.code, r.skipped, r.changed) == (0, 1, 0)
    assert sorted(sent(server)) == sorted(f"comment {i}" for i in range(30)), "each once"
    assert sorted(read_output(job, "results")["id"]) == [f"c{i:03d}" for i in range(30)]


def test_a_float_edited_from_0_to_minus_0_is_counted_changed(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """polars hashes -0.0 and 0.0 alike, but a request carries "-0.0": floats are hashed as text."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, pl.DataFrame({"id": ["a", "b"], "text": [0.0, 1.5]}))
    assert run(job, server).code == 0
    assert sorted(sent(server)) == ["0.0", "1.5"]
    pl.DataFrame({"id": ["a", "b"], "text": [-0.0, 1.5]}).write_parquet(tmp_path / "input.parquet")
    r = run(job, server)
    assert (r.skipped, r.changed) == (0, 1)


def test_a_pending_row_edited_keeps_its_batch_compared_once_it_is_done(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """The comparison checks pending rows too: a batch must not be recorded as unchanged while a
    row of it waits to be sent with a request the input no longer builds. (The latency and a
    queue holding every row keep c007 in flight while the rerun compares; the assertions hold
    however the two interleave.)"""
    server = emulator(engine="wordlist", latency_ms=300)
    job = write_job(tmp_path, comments(range(30)), api={"concurrency": 1})
    assert run(job, server, "--max-requests", "5").code == 4  # c000-c004 done, c005-c009 pending
    comments(range(30)).with_columns(
        pl.when(pl.col("id") == "c007").then(pl.lit("edited")).otherwise("text").alias("text")
    ).write_parquet(tmp_path / "input.parquet")
    write_job(tmp_path, api={"concurrency": 30})  # the same job, a queue of 60 rows
    assert run(job, server).code == 0
    assert "edited" not in sent(server), "the pending request goes as it was recorded"
    r = run(job, server)
    assert (r.skipped, r.changed) == (2, 1), "batch 0 compared again, c007 done and changed"
    r = run(job, server, "--redo-changed")
    assert r.redone == 1 and sent(server)[30:] == ["edited"]
