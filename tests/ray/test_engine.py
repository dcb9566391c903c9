"""`pipeline run --engine ray` against the emulator: the same results as the local executor,
speech files written by the driver, an actor killed and the driver killed mid-job."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from pathlib import Path

import polars as pl
import ray

from pipeline import audio
from pipeline.journal import Journal
from pipeline.ray.cluster import NAMESPACE
from tests.conftest import StartEmulator, read_output, run_cli, signal_mid_run, write_job

CONCURRENCY = 8
ACTORS = 2
IN_FLIGHT = 2 * ACTORS * CONCURRENCY  # lanes per actor x packs a block (one row a pack)
ON_RAY = ("--engine", "ray", "--ray-actors", str(ACTORS))


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
    data = comments(2000)
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


def test_a_speech_job_on_ray_writes_each_rows_audio_once_through_the_driver(
    tmp_path: Path, emulator: StartEmulator, ray_address: str
) -> None:
    server = emulator()
    sentence = "The quick brown fox jumps over the lazy dog, and then it rests a while. "
    data = pl.DataFrame(
        {"id": [f"s{i}" for i in range(6)], "text": [f"Row {i}. {sentence}" for i in range(6)]}
    )
    request = {
        "model": "gpt-4o-mini-tts",
        "input": "{text}",
        "voice": "alloy",
        "response_format": "wav",
    }
    job = write_job(tmp_path, data, kind="speech", request=request, speech={"provider": "openai"})
    run = run_cli(
        "run", job, "--base-url", server.base_url, "--quiet", "--engine", "ray", "--ray-actors", "2"
    )
    assert run.exit_code == 0, run.output
    manifest = read_output(job, "results").sort("id")
    assert manifest["id"].to_list() == data["id"].to_list()
    assert sorted(manifest["audio_path"]) == [f"audio/s{i}.wav" for i in range(6)]
    for row in manifest.iter_rows(named=True):
        path = tmp_path / "out" / row["audio_path"]
        assert path.stat().st_size == row["bytes"]
        assert abs(audio.duration_s(path.read_bytes(), "wav") - row["duration_s"]) < 0.01
    assert sorted(p.name for p in (tmp_path / "out" / "audio").iterdir()) == [
        f"s{i}.wav" for i in range(6)
    ]


def test_an_actor_killed_mid_job_costs_only_its_blocks(
    tmp_path: Path, emulator: StartEmulator, ray_address: str
) -> None:
    server = emulator(engine="wordlist", latency_ms=20)
    data = comments(2000)
    job = write_job(tmp_path, data, api={"concurrency": CONCURRENCY})
    killed: list[str] = []

    def kill_one_actor() -> None:
        assert server.wait_for_requests(600, timeout=120)
        names = [
            actor["name"]
            for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["namespace"] == NAMESPACE and actor["name"].endswith("-row-0")
        ]
        assert len(names) == 1
        ray.kill(ray.get_actor(names[0], namespace=NAMESPACE), no_restart=False)
        killed.append(names[0])

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    run = run_cli("run", job, "--base-url", server.base_url, "--quiet", *ON_RAY)
    killer.join(timeout=120)
    assert killed, "an actor was killed"
    assert run.exit_code == 0, run.output
    assert sorted(read_output(job, "results")["id"]) == data["id"].to_list(), "every key once"
    assert len(read_output(job, "errors")) == 0
    summary = summary_of(job)
    assert summary["ray_blocks_redispatched"] in (1, 2), "the killed actor's blocks went again"
    seen = Counter(body["input"] for _, body in server.recorded_requests())
    twice = [text for text, count in seen.items() if count > 1]
    assert len(twice) <= IN_FLIGHT // 2, "sent twice: at most the killed actor's two blocks"
    assert max(seen.values()) <= 2


def test_the_driver_killed_mid_job_then_rerun_sends_again_at_most_what_was_in_flight(
    tmp_path: Path, emulator: StartEmulator, ray_address: str
) -> None:
    server = emulator(engine="wordlist", latency_ms=20)
    data = comments(2000)
    job = write_job(tmp_path, data, api={"concurrency": CONCURRENCY})
    extra = ("--engine", "ray", "--ray-address", ray_address, "--ray-actors", str(ACTORS))
    _, code = signal_mid_run(job, server, 500, signal.SIGKILL, *extra)
    assert code == -signal.SIGKILL

    journal = Journal(tmp_path / "out", readonly=True)
    in_flight = journal.counts()["sent"]
    journal.close()
    assert 0 < in_flight <= IN_FLIGHT

    run = run_cli("run", job, "--base-url", server.base_url, "--quiet", *ON_RAY)
    assert run.exit_code == 0, run.output
    assert sorted(read_output(job, "results")["id"]) == data["id"].to_list(), "every key once"
    assert len(read_output(job, "errors")) == 0
    again = summary_of(job)["sent_again_after_crash"]
    assert isinstance(again, dict) and again["this_run"]["rows"] == in_flight
    seen = Counter(body["input"] for _, body in server.recorded_requests())
    twice = [text for text, count in seen.items() if count > 1]
    assert len(twice) <= in_flight, "the server saw no duplicate the journal did not count"
    assert max(seen.values()) <= 2


def test_four_actors_keep_to_one_1200_rpm_limit_enforced_per_second(
    tmp_path: Path, emulator: StartEmulator, ray_address: str
) -> None:
    server = emulator(
        engine="wordlist",
        requests_per_minute=1200,
        burst_s=1.0,
        latency_ms=50,
        ratelimit_headers=False,
    )
    data = comments(240)
    job = write_job(tmp_path, data, api={"concurrency": 16, "requests_per_minute": 1200})
    run = run_cli(
        "run", job, "--base-url", server.base_url, "--quiet", "--engine", "ray", "--ray-actors", "4"
    )
    assert run.exit_code == 0, run.output
    assert sorted(read_output(job, "results")["id"]) == data["id"].to_list()
    summary = summary_of(job)
    requests = summary["requests"]
    assert isinstance(requests, dict)
    # 4 actors with a limiter each would send 4 x 20 a second into a bucket of 20: 429s galore
    assert requests["rate_limited"] <= 2, "under 1 % of 240 requests refused"
    calls = summary["ray_limiter_calls"]
    assert isinstance(calls, int) and 0 < calls <= requests["sent"] + 8, "a lease covers >= 1"


def test_sigterm_on_ray_drains_the_actors_and_the_rerun_sends_nothing_twice(
    tmp_path: Path, emulator: StartEmulator, ray_address: str
) -> None:
    server = emulator(engine="wordlist", latency_ms=20)
    data = comments(1500)
    job = write_job(tmp_path, data, api={"concurrency": CONCURRENCY})
    extra = ("--engine", "ray", "--ray-address", ray_address, "--ray-actors", str(ACTORS))
    _, code = signal_mid_run(job, server, 300, signal.SIGTERM, *extra)
    assert code == 4, "interrupted, resumable"
    journal = Journal(tmp_path / "out", readonly=True)
    counts = journal.counts()
    journal.close()
    assert counts["sent"] == 0 and counts["done"] > 0, "the blocks in flight came back"

    run = run_cli(
        "run", job, "--base-url", server.base_url, "--quiet", "--engine", "ray", "--ray-actors", "2"
    )
    assert run.exit_code == 0, run.output
    assert sorted(read_output(job, "results")["id"]) == data["id"].to_list()
    seen = Counter(body["input"] for _, body in server.recorded_requests())
    assert max(seen.values()) == 1, "nothing sent twice"
