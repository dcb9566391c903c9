"""Shared fixtures: the emulator on a loopback port, job files in tmp folders, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.emulator import EmulatorConfig, RunningEmulator, start_emulator

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "tests" / "schemas"  # vendored: see tests/schemas/README.md
FAKE_KEY = "sk-test-PIPELINE-FAKE-KEY-0123456789abcdef"

StartEmulator = Callable[..., RunningEmulator]  # the `emulator` fixture: start(**config)
PolarsType = pl.DataType | type[pl.DataType]  # a dtype as parametrized: pl.Int64 or pl.List(...)


@cache
def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    """The official contract as a Draft 2020-12 validator (the oracle for payloads)."""
    schema = json.loads((SPEC / f"{name}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def emulator() -> Iterator[StartEmulator]:
    """Start emulators with a config; each is closed after the test."""
    started: list[RunningEmulator] = []

    def start(**config: Any) -> RunningEmulator:
        config.setdefault("record_requests", True)
        running = start_emulator(EmulatorConfig(**config))
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return FAKE_KEY


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_job(
    folder: Path,
    data: pl.DataFrame | None = None,
    *,
    input_name: str = "input.parquet",
    **sections: dict[str, Any] | list[dict[str, Any]] | str,
) -> Path:
    """A job file in ``folder`` over ``data`` (written as ``input_name``); sections override."""
    if data is not None:
        path = folder / input_name
        if input_name.endswith(".parquet"):
            data.write_parquet(path)
        elif input_name.endswith(".csv"):
            data.write_csv(path)
        else:
            data.write_ndjson(path)
    doc: dict[str, Any] = {
        "kind": "moderation",
        "input": {"path": input_name, "key": "id"},
        "request": {"model": "omni-moderation-latest", "input": "{text}"}
        if sections.get("kind", "moderation") == "moderation"
        else {},
        "output": {"dir": "out", "format": "parquet"},
        "api": {"concurrency": 8, "max_attempts": 6, "timeout_s": 10},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(name), dict):
            doc[name] = {**doc[name], **value}
        else:
            doc[name] = value
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not _is_table(v)]
    for name, value in doc.items():
        if isinstance(value, list) and _is_table(value):  # an array of tables
            for table in value:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for sub, table in value.items():  # tables of tables: [assistants.x]
                lines.append(f"[{name}.{sub}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        elif isinstance(value, dict):
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    job = folder / "job.toml"
    job.write_text("\n".join(lines) + "\n")
    return job


def _is_table(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, dict) for v in value)
    return isinstance(value, dict)


def run_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_output(job: Path, name: str) -> pl.DataFrame:
    """results or errors of a parquet job, whatever their layout (results: a folder of parts)."""
    return pl.read_parquet(job.parent / "out" / f"{name}.parquet")


def pipeline_command(job: Path, server: RunningEmulator, *extra: str) -> list[str]:
    """``python -m pipeline run JOB`` against this emulator, quiet."""
    return [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        str(job),
        "--base-url",
        server.base_url,
        "--quiet",
        *extra,
    ]


def signal_mid_run(
    job: Path,
    server: RunningEmulator,
    after_requests: int,
    sig: signal.Signals = signal.SIGKILL,
    *extra: str,
) -> tuple[list[str], int]:
    """Start ``pipeline run`` as a child process, send it ``sig`` once the emulator has had
    ``after_requests`` requests, and wait for it; returns the command (to rerun the job, against
    this server) and the child's exit code."""
    command = pipeline_command(job, server, *extra)
    child = subprocess.Popen(command, env=os.environ.copy())
    try:
        assert server.wait_for_requests(after_requests, timeout=60), "the run got going"
        child.send_signal(sig)
        code = child.wait(timeout=60)
    finally:
        child.kill()
        child.wait(timeout=30)
    return command, code


def kill_mid_run(job: Path, server: RunningEmulator, after_requests: int) -> list[str]:
    """``kill -9`` a run of ``job`` once the emulator has had ``after_requests`` requests."""
    command, code = signal_mid_run(job, server, after_requests)
    assert code == -signal.SIGKILL
    return command
