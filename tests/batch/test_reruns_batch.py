"""Reruns in batch mode: --retry-failed, --redo-changed, a grown input, a cancelled batch."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl

from tests.batch.conftest import FAST_PHASES, batch_job, comments, conserved
from tests.conftest import FAKE_KEY, StartEmulator, read_output, run_cli


def test_incremental_reruns_retry_failed_and_redo_changed(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    bad = emulator(batch_phase_s=FAST_PHASES, reject_substring="comment 7")
    job = batch_job(tmp_path, comments(20))
    assert run_cli("run", job, "--base-url", bad.base_url, "--quiet").exit_code == 1
    assert read_output(job, "errors")["id"].to_list() == [7]
    server = emulator(batch_phase_s=FAST_PHASES)
    grown = comments(30)
    grown.write_parquet(tmp_path / "input.parquet")
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    assert server.stats()["batches"]["lines_answered"] == {"/v1/moderations": 10}  # only new
    retried = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--retry-failed")
    assert retried.exit_code == 0, retried.output
    done, failed = conserved(job, set(range(30)))
    assert len(done) == 30 and not failed
    changed = grown.with_columns(
        pl.when(pl.col("id") < 3).then(pl.lit("a changed comment")).otherwise(pl.col("text"))
        .alias("text")
    )  # fmt: skip
    changed.write_parquet(tmp_path / "input.parquet")
    redo = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--redo-changed")
    assert redo.exit_code == 0, redo.output
    conserved(job, set(range(30)))
    answered = server.stats()["batches"]["lines_answered"]["/v1/moderations"]
    assert answered == 10 + 1 + 3  # the new rows, the retried one, the changed ones
    assert server.stats()["batches"]["completed_twice"] == []


def test_a_cancelled_batch_keeps_its_answers_and_the_next_run_sends_the_rest(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s={**FAST_PHASES, "in_progress": 2.5}, engine="wordlist")
    job = batch_job(tmp_path, comments(100))
    run = ("run", job, "--base-url", server.base_url, "--quiet")
    assert run_cli(*run, "--max-runtime", "1s").exit_code == 4
    (batch_id,) = [b["id"] for b in _get(server.base_url, "/batches")["data"]]
    _post(server.base_url, f"/batches/{batch_id}/cancel")
    cancelled = run_cli(*run)
    assert cancelled.exit_code == 4, cancelled.output  # stopped: the rest waits
    kept = len(read_output(job, "results"))
    assert 0 < kept < 100  # lines answered before the cancel are kept
    assert run_cli(*run).exit_code == 0
    done, _ = conserved(job, set(range(100)))
    assert len(done) == 100
    assert server.stats()["batches"]["completed_twice"] == []


def _get(base_url: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(
        base_url + path, headers={"Authorization": f"Bearer {FAKE_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def _post(base_url: str, path: str) -> None:
    request = urllib.request.Request(
        base_url + path, data=b"{}", method="POST",
        headers={"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
