"""Shutdown awareness: validate and run warn for a model or API near or past its shutdown on
OpenAI (the packaged table), on a date the test sets (PIPELINE_TODAY), never for other URLs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import shutdowns
from tests.conftest import StartEmulator, read_output, run_cli, write_job

OPENAI = "https://api.openai.com/v1"
DATA = pl.DataFrame({"id": ["a", "b"], "text": ["One.", "Two."], "question": ["Hi?", "Yo?"]})


def speech_job(folder: Path, model: str = "tts-1", base_url: str = OPENAI, **more: Any) -> Path:
    request = {"model": model, "input": "{text}", "voice": "alloy", "response_format": "wav"}
    return write_job(
        folder, DATA, kind="speech", request=request, api={"base_url": base_url}, **more
    )


def run_job(folder: Path, protocol: str | None, base_url: str = OPENAI) -> Path:
    sections: dict[str, Any] = {"assistants": {"asst_a": {"model": "gpt-4.1-mini"}}}
    if protocol is not None:
        sections["run"] = {"protocol": protocol}
    return write_job(
        folder,
        DATA,
        kind="run",
        messages=[{"role": "user", "content": "{question}"}],
        request={"assistant_id": "asst_a"},
        api={"base_url": base_url},
        **sections,
    )


def warnings_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        ("2026-12-06", None),  # 31 days before: not yet
        ("2026-12-07", "shuts down on OpenAI on 2027-01-06 (in 30 days)"),
        ("2027-01-05", "shuts down on OpenAI on 2027-01-06 (in 1 day)"),
        ("2027-01-06", "shuts down on OpenAI today, 2027-01-06"),
        ("2027-03-01", "was shut down on OpenAI on 2027-01-06 (54 days ago;"),
    ],
)
@pytest.mark.parametrize("model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"])
def test_validate_warns_for_a_speech_model_within_30_days_of_its_shutdown_and_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, today: str, expected: str | None, model: str
) -> None:
    monkeypatch.setenv(shutdowns.TODAY_VARIABLE, today)
    result = run_cli("validate", speech_job(tmp_path, model))
    assert result.exit_code == 0, result.output  # past the date too: the server decides
    found = warnings_of(result.output)
    if expected is None:
        assert found == []
        return
    (line,) = found
    assert line.startswith(f"warning: the model {model} {expected}")
    assert "its replacement is gpt-realtime-2.1-mini, on the Realtime API" in line
    assert '[speech] protocol = "realtime" and [request] model = "gpt-realtime-2.1-mini"' in line


@pytest.mark.parametrize(
    "base_url", ["local", "http://127.0.0.1:8880/v1", "https://api.openai.com.example/v1"]
)
def test_no_warning_off_openai_nor_for_other_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str
) -> None:
    monkeypatch.setenv(shutdowns.TODAY_VARIABLE, "2027-02-01")
    result = run_cli("validate", speech_job(tmp_path, base_url=base_url))
    assert result.exit_code == 0, result.output
    assert warnings_of(result.output) == []
    for model in ("gpt-realtime-2.1-mini", "tts-2"):
        result = run_cli("validate", speech_job(tmp_path, model))
        assert result.exit_code == 0 and warnings_of(result.output) == [], result.output


def test_the_assistants_protocol_on_openai_is_warned_and_responses_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(shutdowns.TODAY_VARIABLE, "2026-12-06")
    result = run_cli("validate", run_job(tmp_path, "assistants"))
    assert result.exit_code == 0, result.output
    (line,) = warnings_of(result.output)
    assert line == (
        "warning: the Assistants API was shut down on OpenAI on 2026-08-26 (102 days ago; "
        "requests to it are expected to fail); its replacement is the Responses API: set "
        '[run] protocol = "responses" (the default for api.openai.com), or remove the line'
    )
    for protocol in (None, "responses"):
        result = run_cli("validate", run_job(tmp_path, protocol))
        assert result.exit_code == 0 and warnings_of(result.output) == [], result.output
    result = run_cli("validate", run_job(tmp_path, "assistants", "http://127.0.0.1:9/v1"))
    assert result.exit_code == 0 and warnings_of(result.output) == [], result.output


def test_run_logs_the_warning_before_it_starts(tmp_path: Path) -> None:
    job = speech_job(tmp_path, "gpt-4o-mini-tts")
    env = {**os.environ, shutdowns.TODAY_VARIABLE: "2027-01-02"}
    env.pop("OPENAI_API_KEY")  # so the run stops (exit 2) after the plan, before sending
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(job), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "gpt-4o-mini-tts" in line]
    assert "WARNING" in line.upper()
    assert "shuts down on OpenAI on 2027-01-06 (in 4 days)" in line
    assert "gpt-realtime-2.1-mini" in line
    assert "OPENAI_API_KEY is not set" in done.stderr


def test_a_run_on_the_emulator_carries_no_warning_and_finishes(
    tmp_path: Path, emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(shutdowns.TODAY_VARIABLE, "2027-02-01")
    server = emulator()
    job = speech_job(tmp_path, "tts-1", base_url=server.base_url, speech={"provider": "openai"})
    result = run_cli("run", job, "--quiet")
    assert result.exit_code == 0, result.output
    assert "shut down" not in result.output
    assert sorted(read_output(job, "results")["id"]) == ["a", "b"]


def test_a_date_that_is_not_a_date_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(shutdowns.TODAY_VARIABLE, "next tuesday")
    result = run_cli("validate", speech_job(tmp_path))
    assert result.exit_code == 2
    assert "PIPELINE_TODAY='next tuesday' is not a date: write it as YYYY-MM-DD" in result.output


def test_the_table_is_packaged_and_complete() -> None:
    names = {(entry.kind, entry.value): entry.date.isoformat() for entry in shutdowns.table()}
    assert names == {
        ("speech", "tts-1"): "2027-01-06",
        ("speech", "tts-1-hd"): "2027-01-06",
        ("speech", "gpt-4o-mini-tts"): "2027-01-06",
        ("run", "assistants"): "2026-08-26",
    }


def test_a_model_named_per_row_is_warned_when_a_row_names_a_shut_down_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model = "{model}" was compared as the text "{model}": rows of tts-1 got no warning."""
    monkeypatch.setenv(shutdowns.TODAY_VARIABLE, "2027-01-01")
    data = DATA.with_columns(model=pl.Series(["tts-1", "gpt-realtime-2.1-mini"]))
    request = {"model": "{model}", "input": "{text}", "voice": "alloy"}
    job = write_job(tmp_path, data, kind="speech", request=request, api={"base_url": OPENAI})
    result = run_cli("validate", job)
    assert result.exit_code == 0, result.output
    (line,) = warnings_of(result.output)
    assert line.startswith("warning: the model tts-1 shuts down on OpenAI on 2027-01-06")
    assert line.endswith("(in the rows whose model names it)")
    only_new = data.with_columns(model=pl.lit("gpt-realtime-2.1-mini"))
    job = write_job(tmp_path, only_new, kind="speech", request=request, api={"base_url": OPENAI})
    assert warnings_of(run_cli("validate", job).output) == []
