"""The CLI's contract: exit codes, the lock, status, fatal answers, output formats."""

from __future__ import annotations

import json

import polars as pl

from pipeline.journal import OutputLock
from tests.conftest import FAKE_KEY, read_output, run_cli, write_job

DATA = pl.DataFrame(
    {"id": [f"r{i:03d}" for i in range(50)], "text": [f"comment {i}" for i in range(50)]}
)


def test_second_run_on_the_same_folder_exits_75_naming_the_holder(tmp_path, emulator):
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


def test_wrong_key_stops_with_exit_3_and_resumes_later(tmp_path, emulator, monkeypatch):
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


def test_status_reports_the_folder(tmp_path, emulator):
    server = emulator()
    job = write_job(tmp_path, DATA)
    run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "20")
    result = run_cli("status", tmp_path / "out")
    assert result.exit_code == 0
    assert "done 20, failed 0, pending 0" in result.output
    assert run_cli("status", tmp_path).exit_code == 2


def test_csv_output_neutralises_formulas_and_jsonl_round_trips(tmp_path, emulator):
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


def test_the_key_never_reaches_outputs_logs_or_journal(tmp_path, emulator):
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
