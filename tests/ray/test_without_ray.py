"""`--engine ray` without the `ray` extra: exit 2 naming the install command, nothing sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.conftest import StartEmulator, write_job

WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from pipeline.cli import main; main()"


def test_engine_ray_without_the_extra_is_exit_2_naming_the_install(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    job = write_job(tmp_path, pl.DataFrame({"id": ["a", "b"], "text": ["one", "two"]}))
    command = [sys.executable, "-c", WITHOUT_RAY, "run", str(job), "--engine", "ray"]
    run = subprocess.run(
        [*command, "--base-url", server.base_url],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "pip install 'pipeline[ray]'" in run.stderr
    assert "Traceback" not in run.stderr
    assert server.stats()["requests"] == 0
    assert not (tmp_path / "out").exists(), "nothing was started"
