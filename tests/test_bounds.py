"""Bounded runs for cron windows: --max-requests, --max-runtime, --max-characters stop cleanly."""

from __future__ import annotations

import json

import polars as pl

from tests.conftest import read_output, run_cli, write_job


def summary(folder) -> dict:
    return json.loads((folder / "out" / "summary.json").read_text())


def test_max_requests_stops_cleanly_and_the_next_run_finishes(tmp_path, emulator):
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


def test_max_runtime_stops_cleanly(tmp_path, emulator):
    server = emulator(engine="wordlist", latency_ms=50)
    data = pl.DataFrame({"id": list(range(400)), "text": [f"row {i}" for i in range(400)]})
    job = write_job(tmp_path, data, api={"concurrency": 2})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-runtime", "0.5s")
    assert result.exit_code == 4
    first = summary(tmp_path)
    assert first["stopped_by"] == "max_runtime"
    assert 0 < first["rows"]["done"] < 400
    assert first["rows"]["done"] + first["rows"]["pending"] <= 400
    bad = run_cli("run", job, "--base-url", server.base_url, "--max-runtime", "soon")
    assert bad.exit_code == 2 and "90s, 50m or 1h30m" in bad.output


def test_max_characters_bounds_a_speech_job(tmp_path, emulator):
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
    assert len(read_output(job, "results")) == 2
    assert len(list((tmp_path / "out" / "audio").iterdir())) == 2
