"""The CLI's contract: exit codes, the lock, status, fatal answers, output formats."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from pipeline import runner
from pipeline.journal import Journal, OutputLock
from pipeline.kinds import moderation
from pipeline.rows import Row
from pipeline.steps import Flow
from tests.conftest import (
    FAKE_KEY,
    StartEmulator,
    pipeline_command,
    read_output,
    run_cli,
    write_job,
)

DATA = pl.DataFrame(
    {"id": [f"r{i:03d}" for i in range(50)], "text": [f"comment {i}" for i in range(50)]}
)


def test_second_run_on_the_same_folder_exits_75_naming_the_holder(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA)
    holder = OutputLock(tmp_path / "out")
    holder.acquire()
    try:
        result = run_cli("run", job, "--base-url", server.base_url)
    finally:
        holder.release()
    assert result.exit_code == 75
    assert "pid" in result.output
    assert server.recorded_requests() == []
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0


def test_wrong_key_stops_with_exit_3_and_resumes_later(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = emulator(api_key="sk-the-right-one")
    job = write_job(tmp_path, DATA)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 3, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["outcome"] == "stopped_fatal"
    assert summary["fatal_error"]["http_status"] == 401
    assert summary["rows"]["failed"] == 0, "a fatal answer fails no row"
    assert summary["requests"]["sent"] <= 8, "stopped instead of burning retries"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-right-one")
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert sorted(read_output(job, "results")["id"]) == DATA["id"].to_list()


def test_status_reports_the_folder(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA)
    run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "20")
    result = run_cli("status", tmp_path / "out")
    assert result.exit_code == 0
    assert "done 20, failed 0, pending 0" in result.output
    assert run_cli("status", tmp_path).exit_code == 2


def test_csv_output_neutralises_formulas_and_jsonl_round_trips(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = pl.DataFrame(
        {
            "id": ["=1+1", "@SUM(A1)", "plain"],
            "who": ["-2", "+cmd", "\tTAB"],
            "text": ["hello", "hi", "hey"],
        }
    )
    job = write_job(tmp_path, data, input={"keep": ["who"]}, output={"format": "csv"})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    text = (tmp_path / "out" / "results.csv").read_text()
    assert "'=1+1" in text and "'@SUM(A1)" in text and "'-2" in text and "'+cmd" in text
    rows = pl.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(rows["id"]) == ["'=1+1", "'@SUM(A1)", "plain"]
    assert sorted(rows["who"]) == ["'\tTAB", "'+cmd", "'-2"]
    job = write_job(tmp_path, data, output={"format": "jsonl", "dir": "out2"})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    lines = (tmp_path / "out2" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["=1+1", "@SUM(A1)", "plain"]


def test_the_key_never_reaches_outputs_logs_or_journal(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA)
    result = run_cli("run", job, "--base-url", server.base_url, "--log-format", "json")
    assert result.exit_code == 0
    assert FAKE_KEY not in result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line]
    assert lines[-1]["event"] == "run finished"
    assert lines[-1]["summary"]["rows"]["done"] == 50
    assert all({"ts", "level", "event", "job", "counts"} <= set(line) for line in lines)
    assert {line["job"] for line in lines} == {"job"}
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_quiet_hides_progress_but_not_the_log(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA)
    args = ("run", job, "--base-url", server.base_url, "--quiet")
    result = run_cli(*args, "--log-format", "json")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stderr.splitlines() if line]
    assert lines[-1]["event"] == "run finished", "the line the cron recipe monitors"
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert lines[-1]["summary"] == written
    assert written["rows"]["done"] == 50
    assert not [line for line in lines if line["logger"] == "pipeline.progress"]
    assert result.stdout == "", "no closing lines on stdout"


def test_an_unexpected_error_is_exit_70_in_one_line_and_a_rerun_resumes(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the traceback file goes

    def bug(*_: object) -> dict[str, object]:
        raise ZeroDivisionError(f"a bug, near {FAKE_KEY}")

    with monkeypatch.context() as patch:  # a bug after every row was sent and written
        patch.setattr(runner, "build_summary", bug)
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 70
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr
    assert line.startswith("error: internal error: ZeroDivisionError: a bug, near [redacted]. ")
    assert "rerun the same command to resume" in line
    [saved] = tmp_path.glob("pipeline-internal-error-*.txt")
    assert str(saved) in line
    traceback = saved.read_text()
    assert "Traceback (most recent call last)" in traceback and "in bug" in traceback
    assert FAKE_KEY not in traceback and FAKE_KEY not in result.output
    journal = Journal(tmp_path / "out", readonly=True)
    assert journal.counts()["done"] == 50, "every answer is in the journal"
    journal.close()

    rerun = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert rerun.exit_code == 0, rerun.output
    assert sorted(read_output(job, "results")["id"]) == DATA["id"].to_list()
    assert server.stats()["requests"] == 50, "the journal kept every answer: nothing sent twice"


def test_a_bug_while_sending_fails_only_its_rows_without_a_traceback(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA, api={"concurrency": 1})
    real_flow = moderation.Moderation.flow

    def flow(self: moderation.Moderation, items: Sequence[Row]) -> Flow:
        outcomes = yield from real_flow(self, items)  # a bug while shaping the answer
        if any(item.key == "r007" for item in items):
            raise KeyError("a bug")
        return outcomes

    monkeypatch.setattr(moderation.Moderation, "flow", flow)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1
    errors = read_output(job, "errors")
    assert errors.select("id", "error_type", "message").rows() == [
        ("r007", "internal_error", "KeyError: 'a bug'")
    ]
    assert len(read_output(job, "results")) == 49
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "internal error" in line]
    assert "first key 'r007': KeyError" in line


def test_a_kind_that_miscounts_its_outcomes_fails_only_those_rows(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One outcome per row is the flow's contract: a pack answered with one outcome too few
    must not shift answers onto the wrong keys, nor crash the run."""
    server = emulator()
    job = write_job(tmp_path, DATA, api={"concurrency": 1}, moderation={"rows_per_request": 5})
    real_flow = moderation.Moderation.flow

    def flow(self: moderation.Moderation, items: Sequence[Row]) -> Flow:
        outcomes = yield from real_flow(self, items)
        return outcomes[1:] if any(item.key == "r007" for item in items) else outcomes

    monkeypatch.setattr(moderation.Moderation, "flow", flow)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1
    errors = read_output(job, "errors")
    assert sorted(errors["id"]) == ["r005", "r006", "r007", "r008", "r009"]
    assert set(errors["message"]) == {"RuntimeError: the flow gave 4 outcomes for 5 rows"}
    assert len(read_output(job, "results")) == 45


def test_serve_on_a_port_in_use_is_exit_2_naming_the_option(emulator: StartEmulator) -> None:
    taken = emulator()
    result = run_cli("serve", "--port", str(taken.port))
    assert result.exit_code == 2, result.output
    assert "--port: cannot listen on 127.0.0.1:" in result.stderr
    assert "choose another --port" in result.stderr
    assert taken.stats()["requests"] == 0


@pytest.mark.parametrize("bad", ["\r", "\n", " ", "\u00a0", "\t"])
def test_a_key_with_a_line_end_or_space_is_exit_2_without_echoing_it(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """A key read from a Windows env file ends in \r: no header can carry it. The run stops
    before sending, and the message says where the bad character is, never the key."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, pl.DataFrame({"id": ["a"], "text": ["hello"]}))
    secret = "sk-test-SECRET-KEY-THAT-MUST-NOT-SHOW"
    monkeypatch.setenv("OPENAI_API_KEY", secret + bad)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.output and f"position {len(secret) + 1}" in result.output
    assert "SECRET" not in result.output
    assert server.stats()["requests"] == 0


def test_with_json_logs_an_error_that_stops_the_run_is_a_json_line_with_its_exit_code(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    """Cron reads the JSON log: the line saying why the run stopped must be JSON too."""
    server = emulator(engine="wordlist")
    job = write_job(tmp_path, pl.DataFrame({"id": ["a", "a"], "text": ["x", "y"]}))
    command = [*pipeline_command(job, server), "--log-format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    last = lines[-1]
    assert last["level"] == "error" and last["exit_code"] == 2
    assert "duplicate" in last["event"] or "more than one row" in last["event"]
