"""Batch mode against a hostile user and a lying server, over real HTTP against the emulator:
bounds, answer files that repeat or drop lines, counts that lie, odd keys."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.batch.conftest import FAST_PHASES, batch_job, batch_list, comments, conserved
from tests.conftest import FAKE_KEY, StartEmulator, read_output, run_cli


def test_max_requests_bounds_the_lines_a_batch_run_sends(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES)
    job = batch_job(tmp_path, comments(50))
    run = ("run", job, "--base-url", server.base_url, "--quiet")
    bounded = run_cli(*run, "--max-requests", "10")
    assert bounded.exit_code == 4, bounded.output
    assert server.stats()["batches"]["lines_answered"] == {"/v1/moderations": 10}
    assert len(read_output(job, "results")) == 10  # what it sent is collected
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stopped_by"] == "max_requests"
    assert run_cli(*run).exit_code == 0
    done, _ = conserved(job, set(range(50)))
    assert len(done) == 50
    assert server.stats()["batches"]["lines_answered"] == {"/v1/moderations": 50}


def test_answer_files_that_repeat_invent_and_garble_lines_settle_each_row_once(
    tmp_path: Path, emulator: StartEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES, batch_faults={"batch_lies": 1.0})
    job = batch_job(tmp_path, comments(30))
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    assert "Logging error" not in capsys.readouterr().err  # request_counts that are not counts
    done, failed = conserved(job, set(range(30)))
    assert len(done) == 30 and not failed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"]["done"] == 30 and summary["rows"]["failed"] == 0
    assert summary["requests"]["sent"] == 30  # the first answer counted, the repeats ignored
    assert server.stats()["batches"]["created"] == 1
    status = run_cli("status", tmp_path / "out")
    assert status.exit_code == 0, status.output
    assert "completed (collected): 0/30 done" in status.output  # lying counts not shown


def test_lines_a_server_never_answers_fail_after_max_attempts_batches(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES, batch_faults={"line_dropped": 1.0})
    job = batch_job(tmp_path, comments(12), api={"max_attempts": 3})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output  # it ended: the lines were not sent for ever
    _, failed = conserved(job, set(range(12)))
    assert len(failed) == 12
    errors = read_output(job, "errors")
    assert set(errors["error_type"].to_list()) == {"batch_unanswered"}
    assert set(errors["attempts"].to_list()) == {3}
    assert server.stats()["batches"]["created"] == 3


def test_sync_mode_on_a_folder_with_batches_in_flight_is_refused_until_they_are_collected(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s={**FAST_PHASES, "in_progress": 1.5})
    job = batch_job(tmp_path, comments(50))
    run = ("run", job, "--base-url", server.base_url, "--quiet")
    assert run_cli(*run, "--max-runtime", "1s").exit_code == 4
    batch_job(tmp_path, None, api={"mode": "sync"})  # the same job, switched to sync
    refused = run_cli(*run)
    assert refused.exit_code == 2, refused.output
    assert "1 batch(es) in flight" in refused.output and 'mode = "batch"' in refused.output
    assert not any("/moderations" in route for route in server.stats()["routes"])
    batch_job(tmp_path, None)  # back to batch: the batch is collected
    assert run_cli(*run).exit_code == 0
    batch_job(tmp_path, None, api={"mode": "sync"})
    grown = comments(60)
    grown.write_parquet(tmp_path / "input.parquet")
    assert run_cli(*run).exit_code == 0  # nothing in flight: sync sends only the new rows
    done, _ = conserved(job, set(range(60)))
    assert len(done) == 60
    assert server.stats()["routes"]["POST /v1/moderations"] == 10
    assert server.stats()["batches"]["lines_answered"] == {"/v1/moderations": 50}


def test_a_batch_file_that_cannot_be_written_stops_the_run_with_one_line_and_a_rerun_ends_it(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES)
    job = batch_job(tmp_path, comments(20))
    run = ("run", job, "--base-url", server.base_url, "--quiet")
    assert run_cli(*run, "--limit", "0").exit_code == 4  # the folder and its journal made
    in_the_way = tmp_path / "out" / ".pipeline" / "batch"  # as a full disk, the write fails
    in_the_way.write_text("not a folder")
    failed = run_cli(*run)
    assert failed.exit_code == 74, failed.output  # as a full disk in sync mode
    assert "input-1.jsonl: cannot write: " in failed.output
    assert "internal error" not in failed.output and "Traceback" not in failed.output
    assert server.stats()["batches"]["created"] == 0
    in_the_way.unlink()
    assert run_cli(*run).exit_code == 0
    done, _ = conserved(job, set(range(20)))
    assert len(done) == 20
    assert server.stats()["batches"]["lines_answered"] == {"/v1/moderations": 20}


def test_an_output_file_deleted_before_it_is_collected_has_its_rows_sent_again(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s={**FAST_PHASES, "in_progress": 1.5})
    job = batch_job(tmp_path, comments(30))
    run = ("run", job, "--base-url", server.base_url, "--quiet")
    assert run_cli(*run, "--max-runtime", "1s").exit_code == 4
    (batch_id,) = [b["id"] for b in batch_list(server.base_url)]
    batch = _api(server.base_url, "GET", f"/batches/{batch_id}")
    for _ in range(200):  # until the emulator's clock ends it (bounded)
        if batch["status"] == "completed":
            break
        time.sleep(0.05)
        batch = _api(server.base_url, "GET", f"/batches/{batch_id}")
    assert batch["status"] == "completed"
    _api(server.base_url, "DELETE", f"/files/{batch['output_file_id']}")  # in the dashboard
    resumed = run_cli(*run, "--max-runtime", "8s")
    assert resumed.exit_code == 0, resumed.output  # not polled for ever: sent again
    done, _ = conserved(job, set(range(30)))
    assert len(done) == 30
    assert server.stats()["batches"]["created"] == 2


def _api(base_url: str, method: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(
        base_url + path, method=method, headers={"Authorization": f"Bearer {FAKE_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def test_a_failed_batch_whose_errors_are_not_a_list_fails_its_rows_with_a_message(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(  # the token limit fails it; the lie garbles its errors
        batch_phase_s=FAST_PHASES, batch_faults={"batch_lies": 1.0}, batch_queue_tokens=1
    )
    job = batch_job(tmp_path, comments(5))
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    errors = read_output(job, "errors")
    assert sorted(errors["id"].to_list()) == list(range(5))
    assert set(errors["error_type"].to_list()) == {"batch_failed"}
    assert set(errors["message"].to_list()) == {
        f"batch {batch_list(server.base_url)[0]['id']} failed validation: no reason given"
    }
