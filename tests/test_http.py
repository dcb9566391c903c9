"""The HTTP boundary end to end: the API key never survives a server's echo, and an answer body
is read under a cap (an oversize answer is an error row, and memory stays bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.journal import Journal
from tests.conftest import FAKE_KEY, StartEmulator, read_output, write_job

HUGE = 2**31  # what the huge faults send: 2 GiB


def comments(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(n)), "text": [f"comment {i}" for i in range(n)]})


def run_child(job: Path, base_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``pipeline run`` in a child process, not quiet: every line it prints is captured."""
    command = [sys.executable, "-m", "pipeline", "run", str(job), "--base-url", base_url, *extra]
    return subprocess.run(
        command, env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )


def bytes_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(("fault", "exit_code"), [("echo_key", 1), ("echo_key_401", 3)])
def test_a_key_echoed_by_the_server_is_in_no_output_log_or_journal_byte(
    tmp_path: Path, emulator: StartEmulator, fault: str, exit_code: int, log_format: str
) -> None:
    server = emulator(engine="wordlist", faults={fault: 1.0})
    job = write_job(tmp_path, comments(6), api={"concurrency": 2, "max_attempts": 2})
    result = run_child(job, server.base_url, "--log-format", log_format)
    assert result.returncode == exit_code, result.stderr
    out = tmp_path / "out"
    files = bytes_under(out)
    assert any(".pipeline" in path.parts for path in files), "the journal was searched too"
    leaks = [path for path, data in files.items() if FAKE_KEY.encode() in data]
    assert leaks == []
    assert FAKE_KEY not in result.stdout and FAKE_KEY not in result.stderr
    if fault == "echo_key":  # the rows failed with the server's message, redacted
        errors = read_output(job, "errors")
        assert sorted(errors["id"]) == list(range(6))
        assert errors["message"].str.contains("Bearer [redacted]", literal=True).all()
    else:  # stopped, resumable: nothing settled, the journal holds no trace of the key
        journal = Journal(out, readonly=True)
        assert journal.counts()["done"] == 0
        journal.close()
        summary = json.loads((out / "summary.json").read_text())
        assert "Bearer [redacted]" in summary["fatal_error"]["message"], "the echo was seen"


def peak_rss_of(command: list[str]) -> tuple[int, int]:
    """(exit code, peak resident bytes) of ``command``, run as the only child of a fresh parent
    so no other process's peak is counted."""
    probe = (
        "import json, resource, subprocess, sys\n"
        "code = subprocess.run(json.loads(sys.argv[1])).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(command)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    code, kib = done.stdout.split()
    return int(code), int(kib) * 1024  # Linux reports ru_maxrss in KiB


@pytest.mark.parametrize("fault", ["huge_body", "huge_chunked"])
def test_a_huge_answer_is_an_error_row_and_memory_stays_bounded(
    tmp_path: Path, emulator: StartEmulator, fault: str
) -> None:
    server = emulator(engine="wordlist", faults={fault: 1.0}, huge_body_bytes=HUGE)
    job = write_job(tmp_path, comments(4), api={"concurrency": 2})
    command = [sys.executable, "-m", "pipeline", "run", str(job), "--base-url", server.base_url]
    code, peak = peak_rss_of([*command, "--quiet"])
    assert code == 1
    assert peak < HUGE // 4, f"peak memory {peak:,} bytes for a {HUGE:,}-byte answer"
    errors = read_output(job, "errors")
    assert sorted(errors["id"]) == [0, 1, 2, 3]
    assert set(errors["error_type"]) == {"answer_too_large"}
    assert set(errors["attempts"]) == {1}, "an oversize answer is not retried"
    assert errors["message"].str.contains("cap of 131,072 bytes", literal=True).all()
    if fault == "huge_body":  # the declared length is refused before a byte is read
        assert errors["message"].str.contains(f"{HUGE:,} bytes", literal=True).all()


def test_a_huge_speech_answer_is_an_error_row(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(faults={"huge_chunked": 1.0}, huge_body_bytes=HUGE)
    data = pl.DataFrame({"id": ["a", "b"], "text": ["Hello there.", "A second line."]})
    job = write_job(
        tmp_path,
        data,
        kind="speech",
        request={"model": "gpt-4o-mini-tts", "input": "{text}", "voice": "alloy"},
    )
    result = run_child(job, server.base_url, "--quiet")
    assert result.returncode == 1, result.stderr
    errors = read_output(job, "errors")
    assert sorted(errors["id"]) == ["a", "b"]
    assert set(errors["error_type"]) == {"answer_too_large"}
    assert not list((tmp_path / "out").glob("audio/*")), "no partial audio file"
