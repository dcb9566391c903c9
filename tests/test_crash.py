"""kill -9 in the middle of a job, then a rerun: every key once; duplicates bounded and counted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline.journal import Journal
from tests.conftest import (
    StartEmulator,
    kill_mid_run,
    pipeline_command,
    read_output,
    run_cli,
    signal_mid_run,
    write_job,
)

CONCURRENCY = 16


@pytest.mark.slow
def test_sigkill_mid_job_then_rerun(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(engine="wordlist", latency_ms=20)
    n = 3000
    data = pl.DataFrame(
        {"id": [f"k{i:05d}" for i in range(n)], "text": [f"comment {i}" for i in range(n)]}
    )
    job = write_job(tmp_path, data, api={"concurrency": CONCURRENCY})
    command = kill_mid_run(job, server, after_requests=800)

    journal = Journal(tmp_path / "out", readonly=True)
    in_flight = journal.counts()["sent"]
    journal.close()
    assert 0 < in_flight <= CONCURRENCY

    rerun = subprocess.run(command, env=os.environ.copy(), timeout=120)
    assert rerun.returncode == 0
    results = read_output(job, "results")
    assert sorted(results["id"]) == data["id"].to_list(), "every key exactly once"
    assert len(read_output(job, "errors")) == 0

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    again = summary["sent_again_after_crash"]["this_run"]
    print(f"sent again after kill -9: {again['requests']} request(s), {again['rows']} row(s)")
    assert again["rows"] == in_flight
    assert again["requests"] <= CONCURRENCY
    seen = Counter(body["input"] for _, body in server.recorded_requests())
    twice = {text for text, count in seen.items() if count > 1}
    assert len(twice) <= again["rows"], "the server saw no duplicate the journal did not count"
    assert all(count <= 2 for count in seen.values())


def test_sigterm_drains_in_flight_requests_and_exits_4_resumable(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", latency_ms=20)
    n = 2000
    data = pl.DataFrame({"id": list(range(n)), "text": [f"comment {i}" for i in range(n)]})
    job = write_job(tmp_path, data, api={"concurrency": CONCURRENCY})
    command, code = signal_mid_run(job, server, 300, signal.SIGTERM)
    assert code == 4
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["outcome"] == "interrupted"
    assert summary["rows"]["done"] + summary["rows"]["pending"] == n
    journal = Journal(tmp_path / "out", readonly=True)
    assert journal.counts()["sent"] == 0, "nothing left in flight after a clean drain"
    journal.close()
    assert subprocess.run(command, env=os.environ.copy(), timeout=120).returncode == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sent_again_after_crash"]["this_run"] == {"requests": 0, "rows": 0}
    assert sorted(read_output(job, "results")["id"]) == list(range(n))


def test_sighup_is_treated_as_sigterm_outputs_and_summary_written(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", latency_ms=20)
    n = 500
    data = pl.DataFrame({"id": list(range(n)), "text": [f"comment {i}" for i in range(n)]})
    job = write_job(tmp_path, data, api={"concurrency": CONCURRENCY})
    command, code = signal_mid_run(job, server, 50, signal.SIGHUP)
    assert code == 4, "a closed terminal drains and stops like SIGTERM"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["outcome"] == "interrupted"
    done = summary["rows"]["done"]
    assert done > 0 and done + summary["rows"]["pending"] == n
    assert len(read_output(job, "results")) == done, "the outputs were written"
    assert subprocess.run(command, env=os.environ.copy(), timeout=120).returncode == 0
    assert sorted(read_output(job, "results")["id"]) == list(range(n))


def test_a_second_signal_exits_at_once_and_the_journal_stays_consistent(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", latency_ms=3000)
    data = pl.DataFrame({"id": list(range(100)), "text": [f"comment {i}" for i in range(100)]})
    job = write_job(tmp_path, data, api={"concurrency": 8})
    command = pipeline_command(job, server)
    child = subprocess.Popen(command, env=os.environ.copy(), stderr=subprocess.PIPE, text=True)
    try:
        assert server.wait_for_requests(8, timeout=60), "requests in flight (each takes 3 s)"
        child.send_signal(signal.SIGTERM)
        assert child.stderr is not None
        for line in child.stderr:  # the first one is being handled: the drain has begun
            if "SIGTERM received" in line:
                break
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 128 + signal.SIGTERM, "did not wait for the drain"
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stderr is not None:
            child.stderr.close()
    journal = Journal(tmp_path / "out", readonly=True)
    assert sum(journal.counts().values()) == 100
    journal.close()
    fast = emulator(engine="wordlist")  # the rerun need not wait 3 s per request
    rerun = pipeline_command(job, fast)
    assert subprocess.run(rerun, env=os.environ.copy(), timeout=120).returncode == 0
    assert sorted(read_output(job, "results")["id"]) == list(range(100))


@pytest.mark.slow
def test_kill_9_at_random_moments_then_finish_gives_the_uninterrupted_output(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", latency_ms=5, record_requests=False)
    n, concurrency = 1500, 8
    data = pl.DataFrame(
        {
            "id": [f"k{i:05d}" for i in range(n)],
            "text": [f"comment {i}: you idiot" if i % 7 == 0 else f"comment {i}" for i in range(n)],
        }
    )
    reference = tmp_path / "reference"
    reference.mkdir()
    ref_job = write_job(reference, data, api={"concurrency": concurrency})
    assert run_cli("run", ref_job, "--base-url", server.base_url, "--quiet").exit_code == 0
    job = write_job(tmp_path, data, api={"concurrency": concurrency})
    rng = random.Random(2026)
    most_resent = 0
    for _ in range(10):  # each round: let it run a random while, then kill -9
        already = server.stats()["requests"]
        command = kill_mid_run(job, server, after_requests=already + rng.randint(20, 120))
        journal = Journal(tmp_path / "out", readonly=True)
        in_flight = journal.counts()["sent"]
        journal.close()
        most_resent = max(most_resent, in_flight)
        assert in_flight <= concurrency
    assert subprocess.run(command, env=os.environ.copy(), timeout=120).returncode == 0
    print(f"largest number of rows sent again after a kill -9: {most_resent}")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sent_again_after_crash"]["all_runs"]["requests"] <= 10 * concurrency
    expected = read_output(ref_job, "results").sort("id")
    got = read_output(job, "results").sort("id")
    assert got.equals(expected), "same keys, same values as a run that was never interrupted"
    assert len(read_output(job, "errors")) == 0


def test_the_drain_after_sigterm_is_bounded_by_the_grace_period(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", faults={"slow": 1.0}, slow_s=60.0)
    data = pl.DataFrame({"id": list(range(20)), "text": [f"comment {i}" for i in range(20)]})
    job = write_job(tmp_path, data, api={"concurrency": 4, "timeout_s": 120})
    # the first request hangs for 60 s
    _, code = signal_mid_run(job, server, 1, signal.SIGTERM, "--stop-grace", "1s")
    assert code == 4, "stopped after the grace, not after 60 s"
    journal = Journal(tmp_path / "out", readonly=True)
    counts = journal.counts()
    journal.close()
    # the first request of a run goes alone (its answer may set the limits): one is in flight
    assert counts["sent"] == 1, "an abandoned request stays 'sent': the next run counts it"
    assert counts["pending"] == 19
    fast = emulator(engine="wordlist")
    rerun = pipeline_command(job, fast)
    assert subprocess.run(rerun, env=os.environ.copy(), timeout=120).returncode == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sent_again_after_crash"]["this_run"] == {"requests": 1, "rows": 1}
    assert sorted(read_output(job, "results")["id"]) == list(range(20))
