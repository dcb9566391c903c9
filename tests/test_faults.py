"""Emulator faults: retries, Retry-After, dropped connections; nothing lost, nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.journal import Journal
from tests.conftest import StartEmulator, read_output, run_cli, write_job


@pytest.mark.slow
def test_5000_rows_through_500s_429s_and_dropped_connections(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(
        engine="wordlist",
        faults={"500": 0.10, "429": 0.05, "drop": 0.02, "drop_body": 0.01, "503": 0.01},
        fault_retry_after_ms=20,
        seed=7,
        record_requests=False,
    )
    n = 5000
    data = pl.DataFrame({"id": list(range(n)), "text": [f"comment {i} is fine" for i in range(n)]})
    job = write_job(tmp_path, data, api={"concurrency": 32, "max_attempts": 8})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    results, errors = read_output(job, "results"), read_output(job, "errors")
    keys = results["id"].to_list() + errors["id"].to_list()
    assert len(keys) == n and set(keys) == set(range(n)), "each key exactly once"
    assert result.exit_code == (1 if len(errors) else 0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    statuses = summary["requests"]["by_status"]
    assert statuses["500"] > 300 and statuses["429"] > 150, statuses
    assert statuses.get("connection", 0) > 50, statuses
    assert summary["requests"]["retries"] >= statuses["500"] + statuses["429"]
    assert summary["rows"]["pending"] == 0
    journal = Journal(tmp_path / "out", readonly=True)
    assert journal.counts() == {
        "pending": 0,
        "sent": 0,
        "done": len(results),
        "failed": len(errors),
    }
    journal.close()


def test_rows_whose_retries_run_out_become_error_rows(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(faults={"503": 1.0}, record_requests=False)
    data = pl.DataFrame({"id": ["a", "b"], "text": ["one", "two"]})
    job = write_job(tmp_path, data, api={"max_attempts": 2})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1
    errors = read_output(job, "errors")
    assert sorted(errors["id"]) == ["a", "b"]
    assert errors["http_status"].to_list() == [503, 503]
    assert errors["attempts"].to_list() == [2, 2]
    assert server.stats()["requests"] == 4


def test_insufficient_quota_stops_the_job(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(faults={"quota": 1.0})
    data = pl.DataFrame({"id": list(range(100)), "text": ["hi"] * 100})
    job = write_job(tmp_path, data, api={"concurrency": 4})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 3
    assert len(read_output(job, "errors")) == 0
    assert server.stats()["requests"] <= 4 + 4, "stopped at once, no retries burnt"


def test_timeouts_are_retried(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(faults={"slow": 0.3}, slow_s=5.0, seed=3)
    data = pl.DataFrame({"id": list(range(20)), "text": [f"t{i}" for i in range(20)]})
    job = write_job(tmp_path, data, api={"timeout_s": 0.5, "max_attempts": 10})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0
    assert sorted(read_output(job, "results")["id"]) == list(range(20))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["requests"]["by_status"].get("timeout", 0) >= 1


MATRIX = {
    "429": {"429": 0.3},
    "500": {"500": 0.3},
    "502": {"502": 0.3},
    "503": {"503": 0.3},
    "drop before the answer": {"drop": 0.3},
    "drop during the body": {"drop_body": 0.3},
    "malformed JSON": {"malformed": 0.3},
    "slower than the timeout": {"slow": 0.3},
    "all mixed": {
        "429": 0.05,
        "500": 0.05,
        "502": 0.05,
        "503": 0.05,
        "drop": 0.05,
        "drop_body": 0.05,
        "malformed": 0.05,
        "slow": 0.05,
    },
}


@pytest.mark.parametrize("faults", MATRIX.values(), ids=MATRIX.keys())
def test_each_fault_alone_and_mixed_ends_with_every_key_once(
    tmp_path: Path, emulator: StartEmulator, faults: dict[str, float]
) -> None:
    server = emulator(
        engine="wordlist",
        faults=faults,
        seed=3,
        slow_s=2.0,
        fault_retry_after_ms=50,
        record_requests=False,
    )
    data = pl.DataFrame({"id": list(range(60)), "text": [f"text {i}" for i in range(60)]})
    job = write_job(
        tmp_path,
        data,
        api={"concurrency": 8, "max_attempts": 8, "timeout_s": 0.5},
        moderation={"rows_per_request": 2},
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert sorted(results["id"].to_list() + errors["id"].to_list()) == list(range(60))
    assert result.exit_code == (1 if len(errors) else 0)
    assert server.stats()["faults"], "the faults were injected"


@pytest.mark.parametrize("fault", ["quota", "401"])
def test_fatal_answers_stop_with_exit_3_and_lose_nothing(
    tmp_path: Path, emulator: StartEmulator, fault: str, api_key: str
) -> None:
    server = emulator(engine="wordlist", faults={fault: 0.2}, seed=4)
    data = pl.DataFrame({"id": list(range(60)), "text": [f"text {i}" for i in range(60)]})
    job = write_job(tmp_path, data, api={"concurrency": 4})
    result = run_cli("run", job, "--base-url", server.base_url, "--log-format", "json")
    assert result.exit_code == 3
    journal = Journal(tmp_path / "out", readonly=True)
    counts = journal.counts()
    journal.close()
    assert counts["failed"] == 0 and counts["sent"] == 0
    assert counts["done"] + counts["pending"] == 60, "the rest is pending, for the next run"
    assert api_key not in result.output
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert api_key.encode() not in path.read_bytes(), path


def test_a_100000_character_text_is_moderated_whole(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    long_text = ("All quiet on the comment front. " * 3200)[:100_000]
    data = pl.DataFrame({"id": [1, 2], "text": [long_text, "short"]})
    job = write_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert sorted(read_output(job, "results")["id"]) == [1, 2]
    assert [
        len(body["input"]) for _, body in server.recorded_requests() if len(body["input"]) > 10
    ].count(100_000) == 1
