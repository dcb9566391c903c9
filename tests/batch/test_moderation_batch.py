"""Moderation jobs in batch mode against the emulator, over real HTTP: the lines, expiry,
retried lines, failed batches, packing and split-on-400."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.batch.conftest import (
    FAST_PHASES,
    batch_job,
    batch_list,
    comments,
    conserved,
    input_lines,
)
from tests.conftest import StartEmulator, read_output, run_cli, schema_validator


def test_a_3000_row_job_with_expiring_lines_keeps_every_key_once(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(
        batch_phase_s=FAST_PHASES, batch_faults={"line_expired": 0.1}, engine="wordlist", seed=3
    )
    job = batch_job(tmp_path, comments(3000))
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    done, failed = conserved(job, set(range(3000)))
    assert len(done) == 3000 and not failed
    stats = server.stats()
    batches = stats["batches"]
    assert batches["created"] >= 2  # the expired lines went into later batches
    assert batches["by_status"].get("expired", 0) >= 1
    assert batches["completed_twice"] == []
    assert batches["distinct_completions"] == batches["completions"] == 3000
    assert not any("/moderations" in route for route in stats["routes"])
    lines = input_lines(server.base_url, job.parent / "out")
    validator = schema_validator("CreateModerationRequest")
    for line in lines[:300]:
        assert set(line) == {"custom_id", "method", "url", "body"}
        assert line["method"] == "POST" and line["url"] == "/v1/moderations"
        validator.validate(line["body"])
    first = [line["custom_id"] for line in lines[:3000]]
    assert len(set(first)) == len(first)  # unique in the file
    listed = batch_list(server.base_url)
    assert {b["completion_window"] for b in listed} == {"24h"}
    assert {b["metadata"]["pipeline_job"] for b in listed} == {"job"}  # the job file's stem
    assert {b["metadata"]["pipeline_folder"] for b in listed} == {str(job.parent / "out")}
    validator = schema_validator("Batch")
    for batch in listed:
        validator.validate(batch)
    summary = (job.parent / "out" / "summary.json").read_text()
    assert '"outcome": "completed"' in summary


def test_lines_answered_500_are_sent_again_in_later_batches(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(
        batch_phase_s=FAST_PHASES, batch_faults={"line_500": 0.2}, engine="wordlist", seed=5
    )
    job = batch_job(tmp_path, comments(500), api={"max_attempts": 10})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    done, _ = conserved(job, set(range(500)))
    assert len(done) == 500
    batches = server.stats()["batches"]
    assert batches["created"] >= 2
    assert batches["completed_twice"] == []


def test_a_batch_with_only_errors_ends_in_error_rows_after_max_attempts(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES, batch_faults={"batch_all_failed": 1.0})
    job = batch_job(tmp_path, comments(20), api={"max_attempts": 2})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    _, failed = conserved(job, set(range(20)))
    assert len(failed) == 20
    errors = read_output(job, "errors")
    assert set(errors["http_status"].to_list()) == {500}
    assert set(errors["attempts"].to_list()) == {2}
    assert server.stats()["batches"]["created"] == 2


def test_a_batch_that_fails_validation_makes_error_rows_with_its_message(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES, batch_faults={"batch_failed": 1.0})
    job = batch_job(tmp_path, comments(10))
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    errors = read_output(job, "errors")
    assert sorted(errors["id"].to_list()) == list(range(10))
    assert set(errors["error_type"].to_list()) == {"batch_failed"}
    assert all("failed validation" in message for message in errors["message"].to_list())


def test_packed_lines_split_after_a_400_in_later_batches(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(  # and 500s: a split pack's requests are retried each on its own
        batch_phase_s=FAST_PHASES,
        reject_substring="FORBIDDEN",
        batch_faults={"line_500": 0.25},
        seed=2,
    )
    data = comments(40).with_columns(
        pl.when(pl.col("id") == 13).then(pl.lit("FORBIDDEN words")).otherwise(pl.col("text"))
        .alias("text")
    )  # fmt: skip
    job = batch_job(tmp_path, data, moderation={"rows_per_request": 8}, api={"max_attempts": 4})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    done, failed = conserved(job, set(range(40)))
    assert failed == {13} and len(done) == 39
    errors = read_output(job, "errors")
    assert errors["http_status"].to_list() == [400]
    lines = input_lines(server.base_url, job.parent / "out")
    assert len(lines[0]["body"]["input"]) == 8  # packed: 8 rows a line
    assert server.stats()["batches"]["created"] >= 4  # 8 -> 4 -> 2 -> 1: one batch each


def test_max_runtime_leaves_batches_in_flight_and_the_next_run_collects_them(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    slow = {**FAST_PHASES, "in_progress": 1.5}
    server = emulator(batch_phase_s=slow, engine="wordlist")
    job = batch_job(tmp_path, comments(200))
    stopped = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-runtime", "1s")
    assert stopped.exit_code == 4, stopped.output
    assert (
        not (tmp_path / "out" / "results.parquet").exists() or len(read_output(job, "results")) == 0
    )
    status = run_cli("status", tmp_path / "out")
    assert status.exit_code == 0
    assert "batches: 1" in status.output
    assert "in_progress (submitted): " in status.output and "/200 done" in status.output
    resumed = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    done, _ = conserved(job, set(range(200)))
    assert len(done) == 200
    batches = server.stats()["batches"]
    assert batches["created"] == 1  # adopted, not sent again
    assert batches["completed_twice"] == []
    assert "completed (collected): 200/200 done" in run_cli("status", tmp_path / "out").output
