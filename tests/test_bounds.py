"""Bounded runs for cron windows: --max-requests, --max-runtime, --max-characters and --limit
stop cleanly, resumably, and say what they left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from tests.conftest import StartEmulator, read_output, run_cli, write_job


def summary(folder: Path) -> dict[str, Any]:
    read: dict[str, Any] = json.loads((folder / "out" / "summary.json").read_text())
    return read


def test_max_requests_stops_cleanly_and_the_next_run_finishes(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": list(range(200)), "text": [f"row {i}" for i in range(200)]})
    job = write_job(tmp_path, data, api={"concurrency": 8})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-requests", "30")
    assert result.exit_code == 4
    first = summary(tmp_path)
    assert first["outcome"] == "interrupted" and first["stopped_by"] == "max_requests"
    assert first["requests"]["sent"] == 30 == server.stats()["requests"]
    assert first["rows"]["done"] == 30
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert sorted(read_output(job, "results")["id"]) == list(range(200))
    assert server.stats()["requests"] == 200, "nothing sent twice"


def test_max_runtime_stops_cleanly(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(engine="wordlist", latency_ms=50)
    data = pl.DataFrame({"id": list(range(400)), "text": [f"row {i}" for i in range(400)]})
    job = write_job(tmp_path, data, api={"concurrency": 2})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-runtime", "0.5s")
    assert result.exit_code == 4
    first = summary(tmp_path)
    assert first["stopped_by"] == "max_runtime"
    # how much got done in 0.5 s depends on the machine; that every row is accounted for does not
    rows = first["rows"]
    assert rows["done"] < 400, "400 rows at 50 ms, two at a time, take 10 s"
    assert rows["done"] + rows["failed"] + rows["pending"] + rows["unread"] == 400
    assert len(read_output(job, "results")) == rows["done"]
    bad = run_cli("run", job, "--base-url", server.base_url, "--max-runtime", "soon")
    assert bad.exit_code == 2 and "90s, 50m or 1h30m" in bad.output


def test_max_characters_bounds_a_speech_job(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    texts = [f"Sentence number {i} is spoken here." for i in range(6)]
    data = pl.DataFrame({"id": [f"s{i}" for i in range(6)], "text": texts})
    job = write_job(
        tmp_path,
        data,
        kind="speech",
        api={"concurrency": 1},
        request={"model": "tts-1", "input": "{text}", "voice": "echo", "response_format": "wav"},
    )
    limit = len(texts[0]) * 2
    result = run_cli(
        "run", job, "--base-url", server.base_url, "--quiet", "--max-characters", str(limit)
    )
    assert result.exit_code == 4
    first = summary(tmp_path)
    assert first["stopped_by"] == "max_characters"
    assert first["characters_sent"] == limit
    assert type(first["characters_sent"]) is int, "a count is a whole number"
    assert type(first["audio_seconds"]) is float
    assert len(read_output(job, "results")) == 2
    assert len(list((tmp_path / "out" / "audio").iterdir())) == 2


def test_a_limit_that_leaves_rows_unread_is_interrupted_and_the_next_run_goes_on(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": list(range(50)), "text": [f"row {i}" for i in range(50)]})
    job = write_job(tmp_path, data)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "20")
    assert result.exit_code == 4, result.output
    first = summary(tmp_path)
    assert first["outcome"] == "interrupted" and first["stopped_by"] == "limit"
    assert (first["rows"]["done"], first["rows"]["pending"], first["rows"]["unread"]) == (20, 0, 30)
    assert sorted(read_output(job, "results")["id"]) == list(range(20))
    status = run_cli("status", tmp_path / "out")
    assert "30 input row(s) not read yet" in status.output

    # a limit that covers every row left is a normal run
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "30")
    assert result.exit_code == 0, result.output
    second = summary(tmp_path)
    assert second["outcome"] == "completed" and second["stopped_by"] is None
    assert (second["rows"]["done"], second["rows"]["unread"]) == (50, 0)
    assert sorted(read_output(job, "results")["id"]) == list(range(50))
    assert server.stats()["requests"] == 50, "nothing sent twice"


def test_a_run_that_read_everything_has_no_unread_rows(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": list(range(30)), "text": [f"row {i}" for i in range(30)]})
    job = write_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert summary(tmp_path)["rows"]["unread"] == 0
    grown = pl.concat([data, pl.DataFrame({"id": [30, 31], "text": ["new", "newer"]})])
    grown.write_parquet(tmp_path / "input.parquet")
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "1")
    assert result.exit_code == 4
    assert summary(tmp_path)["rows"]["unread"] == 1
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert summary(tmp_path)["rows"]["unread"] == 0
    assert sorted(read_output(job, "results")["id"]) == list(range(32))


def test_unread_rows_are_counted_when_the_journal_holds_keys_that_left_the_input(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    old = pl.DataFrame({"id": list(range(30)), "text": [f"row {i}" for i in range(30)]})
    job = write_job(tmp_path, old)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    ids = list(range(20, 40))  # 0..19 left the input; 30..39 are new
    pl.DataFrame({"id": ids, "text": [f"row {i}" for i in ids]}).write_parquet(
        tmp_path / "input.parquet"
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "4")
    assert result.exit_code == 4
    assert summary(tmp_path)["rows"]["unread"] == 6, "34 keys held, 20 input rows: counted"
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "6")
    assert result.exit_code == 0, "this limit covered every new row"
    assert summary(tmp_path)["rows"]["unread"] == 0
    assert sorted(read_output(job, "results")["id"]) == list(range(40))
