"""Run jobs (messages + run) on both protocols against the emulator: threads, runs, responses."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.journal import Journal
from tests.conftest import (
    StartEmulator,
    kill_mid_run,
    read_output,
    run_cli,
    schema_validator,
    write_job,
)

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


def questions(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"q{i:03d}" for i in range(n)],
            "question": [f"What is the answer to question {i}?" for i in range(n)],
            "topic": ["billing" if i % 2 else "shipping" for i in range(n)],
        }
    )


def make(
    folder: Path, data: pl.DataFrame, *messages: str, protocol: str = "assistants", **sections: Any
) -> Path:
    """A run job over ``data``: the messages (default "{question}"), the run, the assistant."""
    return write_job(
        folder,
        data,
        kind="run",
        messages=[{"role": "user", "content": m} for m in (messages or ("{question}",))],
        request={
            "assistant_id": "asst_support",
            "additional_instructions": "Be brief.",
            **sections.pop("request", {}),
        },
        run={
            "protocol": protocol,
            "timeout_s": 30,
            "poll_interval_s": 0.05,
            "poll_max_interval_s": 0.2,
            **sections.pop("run", {}),
        },
        assistants={"asst_support": {"model": "gpt-4.1-mini", "instructions": "Helpful."}},
        **sections,
    )


def test_assistants_payloads_validate_and_answers_come_back(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(run_duration_s=0.05)
    data = questions(6)
    job = make(
        tmp_path,
        data,
        "{question}",
        "Topic: {topic}",
        request={"metadata": {"topic": "{topic}"}, "temperature": 0.5},
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 0, result.output
    results = read_output(job, "results")
    assert sorted(results["id"]) == data["id"].to_list()
    assert set(results["status"]) == {"completed"}
    assert results["thread_id"].str.starts_with("thread_").all()
    assert results["run_id"].str.starts_with("run_").all()
    assert (results["output_text"].str.len_chars() > 0).all()
    assert (
        results["total_tokens"] == results["prompt_tokens"] + results["completion_tokens"]
    ).all()
    sent = server.recorded_requests()
    threads = [body for path, body in sent if path.endswith("/threads")]
    runs = [body for path, body in sent if path.endswith("/runs")]
    assert len(threads) == 6 and len(runs) == 6
    for body in threads:
        schema_validator("CreateThreadRequest").validate(body)
        for message in body["messages"]:
            schema_validator("CreateMessageRequest").validate(message)
        assert body["messages"][1]["content"].startswith("Topic: ")
    for body in runs:
        schema_validator("CreateRunRequest").validate(body)
        assert body["additional_instructions"] == "Be brief." and body["temperature"] == 0.5


def test_every_ending_lands_in_results_or_errors_and_no_run_is_left_running(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(
        run_duration_s=0.05,
        seed=5,
        run_outcomes={
            "failed": 0.15,
            "incomplete": 0.15,
            "expired": 0.15,
            "requires_action": 0.15,
            "stuck": 0.15,
        },
    )
    data = questions(40)
    job = make(tmp_path, data, run={"timeout_s": 1.0})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert sorted(results["id"].to_list() + errors["id"].to_list()) == data["id"].to_list()
    kinds = Counter(errors["error_type"])
    assert set(kinds) == {"failed", "incomplete", "expired", "requires_action", "timeout"}, kinds
    assert set(results["status"]) == {"completed"}
    assert all(
        "cancelled" in m
        for m in errors.filter(pl.col("error_type").is_in(["timeout", "requires_action"]))[
            "message"
        ]
    )
    by_status = server.stats()["runs_by_status"]
    assert set(by_status) <= TERMINAL, by_status
    assert sum(by_status.values()) == 40


@pytest.mark.parametrize("skew_s", [-3600.0, 3600.0])
def test_a_skewed_server_clock_neither_times_runs_out_nor_lets_them_run_forever(
    tmp_path: Path, emulator: StartEmulator, skew_s: float
) -> None:
    # the server's created_at is an hour off the client's clock, either way
    server = emulator(run_duration_s=0.05, clock_skew_s=skew_s, seed=3, run_outcomes={"stuck": 0.5})
    thread = _post_json(server.base_url + "/threads", {"messages": []})
    assert abs(thread["created_at"] - time.time() - skew_s) < 600, "the emulator reports skew"
    data = questions(12)
    job = make(tmp_path, data, run={"timeout_s": 1.0})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert sorted(results["id"].to_list() + errors["id"].to_list()) == data["id"].to_list()
    assert len(results) > 0 and set(results["status"]) == {"completed"}, "not timed out at once"
    assert len(errors) > 0 and set(errors["error_type"]) == {"timeout"}, "stuck runs still end"


def _post_json(url: str, body: object) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "OpenAI-Beta": "assistants=v2"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        read: dict[str, Any] = json.loads(answer.read())
        return read


def test_bad_rows_are_error_rows_and_unknown_fields_stop_the_job(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(run_duration_s=0.01)
    data = questions(4).with_columns(
        pl.Series("temp", ["0.5", "3", "1", "1"]), pl.Series("tag", ["a", "b", "c" * 600, "d"])
    )
    job = make(tmp_path, data, request={"temperature": "{temp}", "metadata": {"tag": "{tag}"}})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    errors = {r["id"]: r["message"] for r in read_output(job, "errors").iter_rows(named=True)}
    assert set(errors) == {"q001", "q002"}
    assert "request.temperature" in errors["q001"] and "3" in errors["q001"]
    assert "request.metadata.tag: value has 600 characters; at most 512" in errors["q002"]
    (tmp_path / "bad").mkdir()
    bad = make(tmp_path / "bad", data, request={"temperatur": 1})
    result = run_cli("validate", bad)
    assert result.exit_code == 2
    assert "request.temperatur: unknown field" in result.output


@pytest.mark.parametrize(
    ("section", "fields", "named"),
    [
        ("request", {"temperature": 3}, "request.temperature"),
        ("request", {"metadata": {f"k{i}": "v" for i in range(17)}}, "request.metadata"),
        ("messages", [{"role": "robot", "content": "{question}"}], "messages[0].role"),
    ],
)
def test_a_bad_constant_stops_the_job_before_any_row(
    tmp_path: Path,
    emulator: StartEmulator,
    section: str,
    fields: dict[str, Any] | list[dict[str, Any]],
    named: str,
) -> None:
    server = emulator(run_duration_s=0.01)
    if section == "messages":
        job = write_job(
            tmp_path,
            questions(3),
            kind="run",
            messages=fields,
            request={"assistant_id": "asst_support"},
            run={"protocol": "assistants"},
        )
    else:
        job = make(tmp_path, questions(3), request=fields)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert server.recorded_requests() == []
    assert not (tmp_path / "out" / "errors.parquet").exists(), "no error row per row"


@pytest.mark.parametrize(
    ("name", "value"),
    [("poll_interval_s", 0.001), ("poll_max_interval_s", 0), ("timeout_s", -1)],
)
def test_run_options_a_server_would_suffer_from_are_exit_2(
    tmp_path: Path, name: str, value: float
) -> None:
    """A poll every millisecond per row only loads the server: refused when the job loads."""
    job = make(tmp_path, questions(2), run={name: value})
    result = run_cli("validate", job)
    assert result.exit_code == 2
    assert f"run.{name}" in result.output and "seconds above" in result.output


def test_validate_describes_the_responses_protocol_as_one_request_per_row(tmp_path: Path) -> None:
    job = make(tmp_path, questions(2), protocol="responses")
    result = run_cli("validate", job)
    assert result.exit_code == 0, result.output
    assert "one POST /v1/responses per row" in result.output
    assert "thread" not in result.output.split("\n")[0]
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("first row's")]
    shown = json.loads(line.split(": ", 1)[1])
    assert shown["messages"][0]["content"] == "What is the answer to question 0?"


def test_metadata_over_its_limits_is_an_error_row(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(run_duration_s=0.01)
    many = {f"k{i}": "{topic}" for i in range(17)}  # from a column: checked per row
    job = make(tmp_path, questions(1), request={"metadata": many})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    assert "17 pairs; at most 16" in read_output(job, "errors")["message"][0]
    job = make(
        tmp_path, questions(1), request={"metadata": {"k" * 65: "{topic}"}}, output={"dir": "out2"}
    )
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    assert (
        "65 characters; at most 64"
        in pl.read_parquet(tmp_path / "out2" / "errors.parquet")["message"][0]
    )


def test_both_protocols_give_the_same_columns(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(run_duration_s=0.01)
    data = questions(3)
    columns = {}
    for protocol in ("assistants", "responses"):
        folder = tmp_path / protocol
        folder.mkdir()
        job = make(
            folder,
            data,
            protocol=protocol,
            request={"max_completion_tokens": 300, "reasoning_effort": "low"},
        )
        assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
        results = read_output(job, "results")
        columns[protocol] = results.columns
        shortest = results["output_text"].str.len_chars().min()
        assert isinstance(shortest, int) and shortest > 0
    assert columns["assistants"] == columns["responses"]
    sent = [body for path, body in server.recorded_requests() if path.endswith("/responses")]
    assert len(sent) == 3
    assert all(body["max_output_tokens"] == 300 for body in sent)
    assert all(body["reasoning"] == {"effort": "low"} for body in sent)
    assert all(body["model"] == "gpt-4.1-mini" for body in sent)


@pytest.mark.slow
def test_sigkill_then_rerun_never_starts_a_second_run_for_a_recorded_row(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(run_duration_s=1.0)
    data = questions(24)
    job = make(tmp_path, data, api={"concurrency": 8})
    command = kill_mid_run(job, server, after_requests=40)
    journal = Journal(tmp_path / "out", readonly=True)
    recorded = {
        key: (thread, run)
        for key, thread, run in journal._db.execute(
            "SELECT key, json_extract(progress, '$.thread_id'), json_extract(progress, '$.run_id') "
            "FROM rows WHERE json_extract(progress, '$.run_id') IS NOT NULL"
        )
    }
    journal.close()
    assert recorded, "some runs were recorded before the kill"
    assert subprocess.run(command, env=os.environ.copy(), timeout=120).returncode == 0
    results = read_output(job, "results")
    assert sorted(results["id"]) == data["id"].to_list()
    by_key = dict(zip(results["id"], results["run_id"], strict=True))
    assert all(by_key[key] == run for key, (_, run) in recorded.items()), "recorded runs reused"
    runs_per_thread = Counter(
        path.split("/")[-2] for path, _ in server.recorded_requests() if path.endswith("/runs")
    )
    assert all(runs_per_thread[thread] == 1 for thread, _ in recorded.values())
    assert max(runs_per_thread.values()) == 1, "no thread got a second run"
    print(
        f"rows with a recorded run at the kill: {len(recorded)}; "
        f"threads with two runs: {sum(1 for c in runs_per_thread.values() if c > 1)}"
    )


def test_the_default_protocol_follows_the_base_url_the_run_uses(tmp_path: Path) -> None:
    """The --base-url flag is resolved before the kind is built: a job written for the local
    emulator, pointed at api.openai.com, gets the responses protocol (Assistants is gone
    there), and the other way round. Nothing is sent: the plan alone decides."""
    from pipeline.kinds.run import Run
    from pipeline.plan import make_plan

    def protocol(plan_kind: object) -> str:
        assert isinstance(plan_kind, Run)
        return plan_kind.settings.protocol

    job = write_job(
        tmp_path,
        questions(2),
        kind="run",
        messages=[{"role": "user", "content": "{question}"}],
        request={"assistant_id": "asst_support"},
        assistants={"asst_support": {"model": "gpt-4.1-mini"}},
        api={"base_url": "local"},
    )
    assert protocol(make_plan(str(job)).kind) == "assistants"
    openai = make_plan(str(job), base_url="https://api.openai.com/v1")
    assert protocol(openai.kind) == "responses"
    assert openai.base_url == "https://api.openai.com/v1"
