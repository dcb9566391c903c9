"""speech: how fast the emulator narrates, and the pipeline's speech job against it.

One emulator (``pipeline serve``, no latency, no limits) serves both parts. Inputs come from
sample_data/chapters.parquet (``bench/speech_data.py``: paragraphs as a stream of sentences,
packed at sentence ends).

1. The emulator alone. The bare client (``bench/speech_client.py``: aiohttp, decodes nothing while
   its clock runs) posts /v1/audio/speech with 8 distinct ~500-character inputs, cycled, as mp3
   and as wav, one request at a time (c=1) and 8 at once (c=8). Audio seconds are the emulator's
   own ``audio_ms_spoken`` (GET /_emulator/stats before and after); the client's
   ``pipeline.audio.duration_s`` of the answers, measured after its clock stops, is the
   cross-check. audio s per wall s = audio seconds / the client's elapsed time (first request to
   last answer). Emulator CPU is /proc/PID/stat utime+stime before and after; CPU s per audio s
   is that over the audio seconds. Each case runs ALONE_REPEATS times, interleaved; its figures
   are from the fastest repeat (the machine is shared: a busy moment only slows a run down), and
   the range over the repeats is printed.
2. The pipeline. A 200-row speech job (``id``, ``text`` of 300-600 characters, the paragraph's
   ``voice``; mp3; the instructions of jobs/narrate_corpus.toml) runs at concurrency 4 and 8,
   each into a fresh output folder. rows/s, requests/s and audio s per wall s use summary.json's
   ``duration_s`` (the run's own clock); audio seconds written are summary.json's
   ``audio_seconds`` (the pipeline measures each file it writes). Pipeline CPU and peak RSS come
   from os.wait4; a ``--limit 0`` run of the same job gives the start-up cost (nothing sent).

Every child has a hard timeout, and all of them together fit in BUDGET_S (a child gets at most
what is left of it).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchError,
    Emulator,
    Measured,
    Table,
    child_env,
    log,
    run_measured,
    run_pipeline,
    run_python,
)
from bench.speech_figures import (
    ALONE_REPEATS,
    ROWS,
    EmulatorCase,
    PipelineCase,
    report,
    spoken_s,
)

BODIES = 8
CONCURRENCIES = (4, 8)
# (format, concurrency, requests): ~2-4 s each on 2 cores
EMULATOR_CASES = (("mp3", 1, 24), ("mp3", 8, 48), ("wav", 1, 64), ("wav", 8, 96))
BUDGET_S = 170.0  # every child together; the scenario normally takes ~75 s
CLIENT_TIMEOUT_S = 45.0
RUN_TIMEOUT_S = 75.0
INSTRUCTIONS = "Read like an audiobook narrator: calm, warm, unhurried."


class Budget:
    """What is left of BUDGET_S: each child's hard timeout is min(its own, what is left)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def timeout(self, own: float) -> float:
        left = self.deadline - time.monotonic()
        if left < 1:
            raise BenchError(f"speech: out of its {self.seconds:.0f} s budget")
        return min(own, left)


def write_speech_job(path: Path, *, input_path: str, concurrency: int) -> Path:
    """A speech job like jobs/narrate_corpus.toml over ``input_path`` (id, text, voice)."""
    path.write_text(
        "\n".join(
            [
                'kind = "speech"',
                f"name = {json.dumps(path.stem)}",
                "[input]",
                f"path = {json.dumps(input_path)}",
                'key = "id"',
                "[request]",
                'model = "gpt-4o-mini-tts"',
                'input = "{text}"',
                'voice = "{voice}"',
                f"instructions = {json.dumps(INSTRUCTIONS)}",
                'response_format = "mp3"',
                "speed = 1.0",
                "[speech]",
                "split_long_input = true",
                'file_name = "{key}"',
                "[output]",
                'dir = "unused"',
                'format = "parquet"',
                "[api]",
                f"concurrency = {concurrency}",
                "timeout_s = 60",
                "max_attempts = 3",
            ]
        )
        + "\n"
    )
    return path


def _emulator_case(
    emulator: Emulator,
    bodies: Path,
    fmt: str,
    concurrency: int,
    requests: int,
    *,
    tmp: Path,
    name: str,
    budget: Budget,
) -> EmulatorCase:
    stats, cpu = emulator.stats(), emulator.cpu_s()
    measured = run_measured(
        [
            sys.executable,
            "-m",
            "bench.speech_client",
            emulator.base_url,
            str(bodies),
            fmt,
            str(concurrency),
            str(requests),
        ],
        timeout_s=budget.timeout(CLIENT_TIMEOUT_S),
        cwd=REPO,
        env=child_env(),
        log_dir=tmp,
        name=name,
    )
    cpu = emulator.cpu_s() - cpu
    audio_s = spoken_s(emulator.stats()) - spoken_s(stats)
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    if result["statuses"] != {"200": requests}:
        raise BenchError(f"{name}: statuses {result['statuses']}, wanted {requests} x 200")
    return EmulatorCase(fmt, concurrency, measured, result, audio_s, cpu)


def _dir_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def run(tmp: Path, table: Table) -> dict[str, Any]:
    budget = Budget(BUDGET_S)
    rows_file, bodies = tmp / "rows.parquet", tmp / "bodies.jsonl"
    log(f"speech: {ROWS} rows and {BODIES} ~500-character bodies from sample_data/chapters.parquet")
    run_python(
        [
            "-m",
            "bench.speech_data",
            str(REPO / "sample_data" / "chapters.parquet"),
            str(rows_file),
            str(ROWS),
            str(bodies),
            str(BODIES),
        ],
        timeout_s=budget.timeout(60),
        log_dir=tmp,
        name="speech-data",
    )
    body_chars = [len(json.loads(line)["input"]) for line in bodies.read_text().splitlines()]
    with Emulator(log_dir=tmp) as emulator:
        log(f"speech: emulator {emulator.base_url} (pid {emulator.pid})")
        alone = _emulator_alone(emulator, bodies, tmp, budget)
        startup, runs = _pipeline_runs(emulator, rows_file, tmp, budget)
        stats = emulator.stats()
    usage = emulator.usage
    assert usage is not None
    emulator_life = {"cpu_s": usage.cpu_s, "maxrss_mb": usage.maxrss_mb, "stats": stats}
    return report(table, body_chars, alone, startup, runs, emulator_life)


def _emulator_alone(
    emulator: Emulator, bodies: Path, tmp: Path, budget: Budget
) -> list[EmulatorCase]:
    """Part 1: every case ALONE_REPEATS times, after a warm-up of each format."""
    for fmt in ("mp3", "wav"):  # first requests load eSpeak and the codecs
        _emulator_case(emulator, bodies, fmt, 2, 4, tmp=tmp, name=f"warmup-{fmt}", budget=budget)
    alone: list[EmulatorCase] = []
    for rep in range(ALONE_REPEATS):  # interleaved, so a busy moment does not hit one case
        for fmt, concurrency, requests in EMULATOR_CASES:
            log(
                f"speech: emulator alone, {fmt}, concurrency {concurrency}, "
                f"{requests} requests, repeat {rep + 1}/{ALONE_REPEATS}"
            )
            alone.append(
                _emulator_case(
                    emulator,
                    bodies,
                    fmt,
                    concurrency,
                    requests,
                    tmp=tmp,
                    name=f"alone-{fmt}-c{concurrency}-r{rep + 1}",
                    budget=budget,
                )
            )
    return alone


def _pipeline_runs(
    emulator: Emulator, rows_file: Path, tmp: Path, budget: Budget
) -> tuple[Measured, list[PipelineCase]]:
    """Part 2: the start-up run (--limit 0), then the job at each concurrency."""
    log("speech: pipeline start-up run (--limit 0)")
    startup_job = write_speech_job(tmp / "startup.toml", input_path=rows_file.name, concurrency=4)
    startup, _ = run_pipeline(
        startup_job,
        emulator.base_url,
        timeout_s=budget.timeout(RUN_TIMEOUT_S),
        log_dir=tmp,
        name="startup",
        extra=("--limit", "0"),
    )
    runs: list[PipelineCase] = []
    for concurrency in CONCURRENCIES:
        log(f"speech: pipeline, {ROWS} rows, mp3, concurrency {concurrency}")
        job = write_speech_job(
            tmp / f"speech-c{concurrency}.toml",
            input_path=rows_file.name,
            concurrency=concurrency,
        )
        stats, cpu = emulator.stats(), emulator.cpu_s()
        measured, summary = run_pipeline(
            job,
            emulator.base_url,
            timeout_s=budget.timeout(RUN_TIMEOUT_S),
            log_dir=tmp,
            name=f"pipeline-c{concurrency}",
        )
        cpu = emulator.cpu_s() - cpu
        spoken = spoken_s(emulator.stats()) - spoken_s(stats)
        audio_dir = tmp / f"pipeline-c{concurrency}.out" / "audio"
        runs.append(PipelineCase(concurrency, measured, summary, cpu, spoken, _dir_mb(audio_dir)))
    return startup, runs
