"""`pipeline run --engine ray` against the emulator: the same results as the local executor,
speech files written by the driver, an actor killed and the driver killed mid-job."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import polars as pl
import ray

from pipeline import audio
from pipeline.ray.cluster import NAMESPACE
from tests.conftest import StartEmulator, read_output, run_cli, write_job

CONCURRENCY = 8
ACTORS = 2
IN_FLIGHT = 2 * ACTORS * CONCURRENCY  # lanes per actor x packs a block (one row a pack)


def comments(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"k{i:05d}" for i in range(n)],
            "text": [f"comment {i}" + (" I will kill you" if i % 7 == 0 else "") for i in range(n)],
        }
    )


def summary_of(job: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((job.parent / "out" / "summary.json").read_text())
    return loaded


def test_moderation_on_ray_gives_what_the_local_executor_gives(
    tmp_path: Path, emulator: StartEmulator, ray_address: str
) -> None:
    server = emulator(engine="wordlist")
    data = comments(3000)
    results = {}
    for engine in ("local", "ray"):
        folder = tmp_path / engine
        folder.mkdir()
        job = write_job(folder, data, api={"concurrency": CONCURRENCY})
        extra = ["--ray-actors", str(ACTORS)] if engine == "ray" else []
        run = run_cli(
            "run", job, "--base-url", server.base_url, "--quiet", "--engine", engine, *extra
        )
        assert run.exit_code == 0, run.output
        assert len(read_output(job, "errors")) == 0
        results[engine] = read_output(job, "results").sort("id")
    assert results["ray"]["id"].to_list() == data["id"].to_list()
    assert results["ray"].equals(results["local"]), "same keys, same values"
    assert results["ray"]["flagged"].sum() > 0, "the emulator flagged some: values were compared"
