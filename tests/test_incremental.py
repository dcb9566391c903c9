"""Incremental runs: a grown input sends only new keys; edited rows are reported and redone on
request; --retry-failed sends the keys in errors again, and only those."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.emulator import RunningEmulator
from tests.conftest import StartEmulator, read_output, run_cli, signal_mid_run, write_job


def sent_inputs(server: RunningEmulator) -> list[str]:
    return [body["input"] for _, body in server.recorded_requests()]


def test_a_grown_input_sends_only_new_keys_and_results_keep_one_row_per_key(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    first = pl.DataFrame({"id": list(range(20)), "text": [f"comment {i}" for i in range(20)]})
    job = write_job(tmp_path, first)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    grown = pl.DataFrame({"id": list(range(30)), "text": [f"comment {i}" for i in range(30)]})
    grown.write_parquet(tmp_path / "input.parquet")
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert sorted(sent_inputs(server)) == sorted(grown["text"].to_list()), "each sent once"
    assert sorted(read_output(job, "results")["id"]) == list(range(30))


def test_edited_rows_are_reported_then_redone_on_request(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": list(range(10)), "text": [f"comment {i}" for i in range(10)]})
    job = write_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    edited = data.with_columns(
        pl.when(pl.col("id").is_in([2, 5]))
        .then(pl.lit("you idiot, I will kill you"))
        .otherwise(pl.col("text"))
        .alias("text")
    )
    edited.write_parquet(tmp_path / "input.parquet")
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_changed_since_done"] == 2
    assert len(sent_inputs(server)) == 10, "reported, not sent"
    assert "2 done row(s) changed" in run_cli("status", tmp_path / "out").output
    before = read_output(job, "results")
    assert not before.filter(pl.col("id").is_in([2, 5]))["flagged"].any()
    assert (
        run_cli("run", job, "--base-url", server.base_url, "--quiet", "--redo-changed").exit_code
        == 0
    )
    assert sent_inputs(server)[10:] == ["you idiot, I will kill you"] * 2, "only the edited"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["rows_redone"], summary["rows_changed_since_done"]) == (2, 0), "redone"
    after = read_output(job, "results")
    assert sorted(after["id"]) == list(range(10)), "replaced, not duplicated"
    assert after.filter(pl.col("id").is_in([2, 5]))["flagged"].all()
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_changed_since_done"] == 0, "an integer, present when none changed"


def test_retry_failed_sends_the_keys_in_errors_again_and_only_those(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", reject_substring="BAD")
    data = pl.DataFrame(
        {"id": list(range(6)), "text": ["fine", "BAD one", "fine too", "", "BAD two", "ok"]}
    )
    job = write_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    assert sorted(read_output(job, "errors")["id"]) == [1, 3, 4]
    fixed = data.with_columns(
        pl.Series("text", ["fine", "good one", "fine too", "", "BAD two", "ok"])
    )
    fixed.write_parquet(tmp_path / "input.parquet")
    assert (
        run_cli("run", job, "--base-url", server.base_url, "--quiet", "--retry-failed").exit_code
        == 1
    )
    assert sorted(sent_inputs(server)[5:]) == ["BAD two", "good one"], "only the failed keys"
    assert sorted(read_output(job, "errors")["id"]) == [3, 4]
    results = read_output(job, "results")
    assert sorted(results["id"]) == [0, 1, 2, 5]


def test_limit_reads_only_what_it_needs_and_checks_the_keys_it_reads(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """--limit N checks the keys only as far as the run can read (N more rows than the journal
    holds), so a trial on a huge input does not read every key first: a duplicate past that
    does not stop it; one within it is exit 2 before anything is sent."""
    server = emulator(engine="wordlist")
    ids = [f"k{i}" for i in range(30)] + ["k3"]  # the repeat of k3 is the last row
    data = pl.DataFrame({"id": ids, "text": [f"comment {i}" for i in range(31)]})
    job = write_job(tmp_path, data)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "10")
    assert result.exit_code == 4, result.output  # rows left unread: resumable
    assert sorted(read_output(job, "results")["id"]) == sorted(ids[:10])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"]["input"] == 31, "counted from the Parquet metadata"
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "100")
    assert result.exit_code == 2
    assert "input.key" in result.output and "'k3'" in result.output
    assert sorted(sent_inputs(server)) == sorted(f"comment {i}" for i in range(10)), (
        "the second run stopped before sending anything"
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 2, "without --limit the whole input is checked first"
    assert "'k3'" in result.output


def test_a_null_key_among_the_rows_a_limited_run_reads_is_exit_2(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": ["a", None, "c"], "text": ["x", "y", "z"]})
    job = write_job(tmp_path, data)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "5")
    assert result.exit_code == 2
    assert "input.key" in result.output and "empty" in result.output
    assert sent_inputs(server) == []


def test_a_row_left_pending_then_edited_is_sent_as_recorded_and_counted_as_changed(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """Only requests built by an earlier run are compared with the input (a fresh run's are
    built from it); one left pending by a stopped run and edited since counts as changed."""
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": list(range(30)), "text": [f"comment {i}" for i in range(30)]})
    job = write_job(tmp_path, data, api={"concurrency": 1})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-requests", "5")
    assert result.exit_code == 4
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"]["pending"] == 25 and summary["rows_changed_since_done"] == 0
    data.with_columns(
        pl.when(pl.col("id") == 20).then(pl.lit("edited")).otherwise(pl.col("text")).alias("text")
    ).write_parquet(tmp_path / "input.parquet")
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert "edited" not in sent_inputs(server), "the pending request goes as it was recorded"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_changed_since_done"] == 1
    redo = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--redo-changed")
    assert redo.exit_code == 0
    assert sent_inputs(server)[30:] == ["edited"]


# --- an interrupted --redo-changed / --retry-failed ------------------------------------------


def run_job(folder: Path, data: pl.DataFrame, **sections: Any) -> Path:
    """A run job (assistants protocol) over ``data``: one question a row."""
    return write_job(
        folder,
        data,
        kind="run",
        messages=[{"role": "user", "content": "{question}"}],
        request={"assistant_id": "asst_support"},
        run={"protocol": "assistants", "timeout_s": 30, "poll_interval_s": 0.05},
        assistants={"asst_support": {"model": "gpt-4.1-mini", "instructions": "Helpful."}},
        **sections,
    )


def questions(version: str, n: int = 6) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"q{i}" for i in range(n)],
            "question": [f"{version} question {i}" for i in range(n)],
        }
    )


def assert_new_answers(job: Path, version: str, n: int = 6) -> None:
    results = read_output(job, "results")
    assert sorted(results["id"]) == [f"q{i}" for i in range(n)], "one row per key"
    for key, text in zip(results["id"], results["output_text"], strict=True):
        assert f"{version} question {key[1:]}" in text, f"{key} shows the old answer: {text}"


def test_a_redo_stopped_by_a_bound_then_a_plain_run_gives_the_new_answers(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """The requeued rows the stopped run never reached used to keep their old thread/run ids:
    the next run picked the old answers up again and counted nothing as changed."""
    server = emulator(run_duration_s=0.0)
    job = run_job(tmp_path, questions("old"), api={"concurrency": 1})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    questions("new").write_parquet(tmp_path / "input.parquet")
    stopped = run_cli(
        "run", job, "--base-url", server.base_url, "--quiet", "--redo-changed",
        "--max-requests", "3",
    )  # fmt: skip
    assert stopped.exit_code == 4
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_redone"] == 6 and summary["rows_changed_since_done"] == 0
    assert summary["rows"]["pending"] > 0, "the rows not reached yet are pending, not done"
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert_new_answers(job, "new")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows_changed_since_done"] == 0


def test_a_redo_killed_then_a_plain_run_gives_the_new_answers(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(run_duration_s=0.3)
    job = run_job(tmp_path, questions("old"), api={"concurrency": 2})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    first_run = server.stats()["requests"]
    questions("new").write_parquet(tmp_path / "input.parquet")
    command, code = signal_mid_run(job, server, first_run + 3, signal.SIGKILL, "--redo-changed")
    assert code == -signal.SIGKILL
    rerun = [part for part in command if part != "--redo-changed"]  # the next plain run
    assert subprocess.run(rerun, env=os.environ.copy(), timeout=120).returncode == 0
    assert_new_answers(job, "new")


def test_a_retry_stopped_by_a_bound_forgets_the_failed_run(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """A failed row's recorded run must not be picked up again by the retry's next run."""
    server = emulator(run_duration_s=0.0, run_outcomes={"failed": 1.0})
    job = run_job(tmp_path, questions("old"), api={"concurrency": 1})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    assert len(read_output(job, "errors")) == 6
    healed = emulator(run_duration_s=0.0)
    questions("new").write_parquet(tmp_path / "input.parquet")
    stopped = run_cli(
        "run", job, "--base-url", healed.base_url, "--quiet", "--retry-failed",
        "--max-requests", "3",
    )  # fmt: skip
    assert stopped.exit_code == 4
    assert run_cli("run", job, "--base-url", healed.base_url, "--quiet").exit_code == 0
    assert_new_answers(job, "new")
    assert len(read_output(job, "errors")) == 0
