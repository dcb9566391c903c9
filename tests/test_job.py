"""Bad job files and unusable inputs stop a run up front (exit 2) with a message naming the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.conftest import StartEmulator, run_cli, write_job

DATA = pl.DataFrame({"id": ["a", "b", "c"], "text": ["one", "two", "three"]})


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"api": {"concurency": 4}}, "api.concurency: unknown key; did you mean 'concurrency'?"),
        ({"api": {"concurrency": "16"}}, "api.concurrency: must be a whole number, got '16'"),
        ({"api": {"concurrency": 0}}, "api.concurrency: must be between 1 and 4096, got 0"),
        ({"kind": "moderate"}, "kind: must be one of"),
        ({"output": {"format": "xlsx"}}, "output.format: must be one of 'parquet', 'csv', 'jsonl'"),
        (
            {"request": {"input": "{txt}"}},
            "request: names column 'txt', which the input does not have; did you mean 'text'?",
        ),
        ({"input": {"keep": ["writer"]}}, "input.keep: names column 'writer'"),
        (
            {"request": {"input": "{text}", "temperature": 1}},
            "request.temperature: unknown field 'temperature'",
        ),
        ({"moderation": {"rows_per_request": 0}}, "moderation.rows_per_request: must be a whole"),
        ({"input": {"key": "ident"}}, "input.key"),
        ({"input": {"path": "missing/*.csv"}}, "input.path"),
        ({"request": {"input": "{text", "model": "m"}}, "request.input"),
    ],
)
def test_bad_job_files_exit_2_naming_file_and_field(
    tmp_path: Path, sections: dict[str, Any], expected: str
) -> None:
    job = write_job(tmp_path, DATA, **sections)
    result = run_cli("run", job, "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2, result.output
    assert str(job) in result.output
    assert expected in result.output
    assert not (tmp_path / "out" / ".pipeline").exists(), "nothing started"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [(["a", "b", "a"], "duplicate"), (["a", None, "c"], "empty")],
)
def test_key_column_with_duplicates_or_nulls_is_unusable(
    tmp_path: Path, keys: list[str | None], expected: str
) -> None:
    job = write_job(tmp_path, DATA.with_columns(pl.Series("id", keys)))
    result = run_cli("validate", job)
    assert result.exit_code == 2
    assert "input.key" in result.output
    assert expected in result.output.lower()


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = moderation\n")
    result = run_cli("validate", bad)
    assert result.exit_code == 2 and "not valid TOML" in result.output
    result = run_cli("validate", tmp_path / "nope.toml")
    assert result.exit_code == 2 and "no such job file" in result.output


def test_missing_key_for_a_real_url_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    job = write_job(tmp_path, DATA)
    result = run_cli("run", job, "--base-url", "https://api.example.invalid/v1")
    assert result.exit_code == 2
    assert "OPENAI_API_KEY is not set" in result.output


def test_validate_counts_rows_requests_and_error_rows(tmp_path: Path) -> None:
    data = pl.DataFrame(
        {"id": [f"r{i}" for i in range(10)], "text": ["hello"] * 7 + ["", None, "  "]}
    )
    job = write_job(tmp_path, data, moderation={"rows_per_request": 4})
    result = run_cli("validate", job)
    assert result.exit_code == 0, result.output
    assert "10 rows" in result.output
    assert "valid rows: 7; rows that would be error rows: 3" in result.output
    assert "requests: 2;" in result.output
    assert not (tmp_path / "out").exists(), "validate writes nothing"


@pytest.mark.parametrize(
    ("sections", "number", "field"),
    [
        ({"api": {"timeout_s": "NUMBER"}}, "inf", "api.timeout_s"),
        ({"api": {"timeout_s": "NUMBER"}}, "nan", "api.timeout_s"),
        ({"api": {"timeout_s": "NUMBER"}}, "-inf", "api.timeout_s"),
        ({"request": {"input": "{text}", "model": "m", "x": "NUMBER"}}, "inf", "request.x"),
        ({"moderation": {"rows_per_request": "NUMBER"}}, "+inf", "moderation.rows_per_request"),
        (
            {
                "kind": "run",
                "request": {"assistant_id": "asst_1"},
                "messages": [{"role": "user", "content": "{text}"}],
                "run": {"timeout_s": "NUMBER"},
            },
            "inf",
            "run.timeout_s",
        ),
        (
            {
                "kind": "run",
                "request": {"assistant_id": "asst_1", "temperature": "NUMBER"},
                "messages": [{"role": "user", "content": "{text}"}],
            },
            "nan",
            "request.temperature",
        ),
        (
            {
                "kind": "run",
                "request": {"assistant_id": "asst_1"},
                "messages": [{"role": "user", "content": "{text}", "metadata": {"w": "NUMBER"}}],
            },
            "nan",
            "messages[0].metadata.w",
        ),
    ],
)
def test_numbers_that_are_not_finite_are_exit_2_naming_the_field(
    tmp_path: Path, emulator: StartEmulator, sections: dict[str, Any], number: str, field: str
) -> None:
    server = emulator()
    job = write_job(tmp_path, DATA, **sections)
    job.write_text(job.read_text().replace('"NUMBER"', number))  # TOML's own inf and nan
    commands: list[list[str | Path]] = [
        ["validate", job],
        ["run", job, "--base-url", server.base_url],
    ]
    for command in commands:
        result = run_cli(*command)
        assert result.exit_code == 2, result.output
        assert f"{job}: {field}: must be a finite number, got {number.lstrip('+')}" in result.output
    assert server.recorded_requests() == []
    assert not (tmp_path / "out" / ".pipeline").exists(), "nothing started"


def test_an_integer_beyond_64_bits_is_exit_2_naming_the_field(tmp_path: Path) -> None:
    job = write_job(tmp_path, DATA, api={"max_attempts": "NUMBER"})
    job.write_text(job.read_text().replace('"NUMBER"', str(2**64)))
    result = run_cli("validate", job)
    assert result.exit_code == 2, result.output
    assert f"{job}: api.max_attempts: must fit in 64 bits (TOML integers do)" in result.output
