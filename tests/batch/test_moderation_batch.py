"""A moderation job in batch mode against the emulator, over real HTTP."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.batch.conftest import FAST_PHASES, batch_job, comments
from tests.conftest import StartEmulator, read_output, run_cli


def test_a_small_job_goes_through_one_batch(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(batch_phase_s=FAST_PHASES, engine="wordlist")
    job = batch_job(tmp_path, comments(30))
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    results = read_output(job, "results")
    assert sorted(results["id"].to_list()) == list(range(30))
    stats = server.stats()
    print(stats["routes"], stats["batches"])
    assert "POST /v1/moderations" not in stats["routes"]
