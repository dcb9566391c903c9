"""kill -9 of a batch-mode run at moments across upload, create, poll and download, then a
rerun: every key ends in exactly one of results/errors, and no request was completed by two
batches (the emulator counts every completion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.batch.conftest import FAST_PHASES, batch_job, comments, conserved
from tests.conftest import StartEmulator, kill_mid_run, run_cli

# requests the emulator has had when the kill comes: 1 the upload, 2 the create, 4 a poll,
# 8 about the first download or the upload of the expired lines' batch
KILL_AFTER = (1, 2, 4, 8)


@pytest.mark.parametrize("after_requests", KILL_AFTER)
def test_a_run_killed_anywhere_resumes_without_sending_a_request_twice(
    tmp_path: Path, emulator: StartEmulator, after_requests: int
) -> None:
    server = emulator(
        batch_phase_s=FAST_PHASES,
        batch_faults={"line_expired": 0.2},
        engine="wordlist",
        seed=after_requests,
    )
    job = batch_job(tmp_path, comments(300))
    kill_mid_run(job, server, after_requests)
    resumed = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    done, failed = conserved(job, set(range(300)))
    assert len(done) == 300 and not failed
    batches = server.stats()["batches"]
    assert batches["completed_twice"] == []
    assert not any("/moderations" in route for route in server.stats()["routes"])
    again = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert again.exit_code == 0  # nothing left: a third run sends nothing
    assert server.stats()["batches"]["created"] == batches["created"]
