"""ray: the Ray executor (``--engine ray``) next to the single-process one, same run, same
machine, against one emulator process each case.

Ray: one local head started for the bench (``python -m bench.ray --head N``: ``ray.init`` with N
logical CPUs, kept until the bench closes its stdin); every ray run joins it with
``--ray-address`` and 4 actors, so its ~10 s start-up is paid once, outside the figures.

  throughput: 20,000 moderation rows (``bench.datagen --chars 100``), one row a request, the
     emulator answering after 20 ms; local at concurrency 64, ray at 4 actors x 16 (the job's
     concurrency is per actor): the same requests in flight. Results compared key for key and
     value for value (identical, or the case fails). Figures: steady requests/s (the emulator's
     admitted rate from 5 s after the first request to the last), client CPU per request (the
     driver's CPU from wait4, plus the actors' own, from summary.json ``ray_actors_cpu_s``; the
     Ray daemons' CPU is not counted), the limiter actor's calls per request.
  ratelimit: 900 rows, the emulator enforcing 1,200 requests/minute with one second's burst
     (``--burst-s 1``) and 50 ms latency; 4 actors x 16; the job sets the limits; with and
     without x-ratelimit-* headers. Targets: sustained >= 97 % of 1,200 rpm, 429s < 1 %.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    StatsPoller,
    Table,
    count_requests,
    log,
    run_pipeline,
    run_python,
    write_job,
)
from bench.ratelimit_figures import TARGET_SUSTAINED, admitted, shape

ACTORS = 4
HEAD_CPUS = 4  # logical: the actors take 0.25 each; the machine may have fewer cores
ROWS = 20_000
PER_ACTOR = 16
LATENCY_MS = 20
RL_ROWS = 900
RL_RPM = 1200
RL_LATENCY_MS = 50
RUN_TIMEOUT_S = 600.0
COMPARE = """
import sys, polars as pl
a, b = (pl.read_parquet(p + "/results.parquet").sort("id") for p in sys.argv[1:3])
if not a.equals(b):
    sys.exit(f"results differ: {a.height} vs {b.height} rows")
print(a.height)
"""


@contextmanager
def ray_head(cpus: int) -> Iterator[str]:
    """A local Ray for the bench, in a child this bench owns; yields its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.ray", "--head", str(cpus)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            raise BenchError("the Ray head did not start")
        yield address
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the head shuts Ray down and exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _head(cpus: int) -> None:
    import logging

    import ray

    context = ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    print(context.address_info["gcs_address"], flush=True)  # type: ignore[attr-defined]
    sys.stdin.read()
    ray.shutdown()


def _run(
    tmp: Path, name: str, data: Path, options: list[str], extra: list[str], **job: Any
) -> dict[str, Any]:
    path = write_job(tmp / f"job-{name}.toml", input_path=data.name, output_dir="unused", **job)
    with Emulator(options, log_dir=tmp) as emulator:
        log(f"ray: {name} ({' '.join(options)}) {' '.join(extra)}")
        with StatsPoller(emulator, 0.2, final=True) as poller:
            measured, summary = run_pipeline(
                path,
                emulator.base_url,
                timeout_s=RUN_TIMEOUT_S,
                log_dir=tmp,
                name=name,
                extra=extra,
            )
    figures = shape(poller.series(count_requests), poller.series(admitted))
    requests = max(1, summary["requests"]["sent"])
    cpu = measured.cpu_s + summary.get("ray_actors_cpu_s", 0.0)
    return {
        "name": name,
        "rows_done": summary["rows"]["done_this_run"],
        "requests": requests,
        "rate_limited": summary["requests"]["rate_limited"],
        "steady_rps": figures["steady_rpm"] / 60,
        "driver_cpu_s": measured.cpu_s,
        "cpu_ms_per_request": cpu / requests * 1000,
        "limiter_calls_per_request": summary.get("ray_limiter_calls", 0) / requests,
        "output": str(tmp / f"{name}.out"),
    }


def _data(tmp: Path, rows: int) -> Path:
    data = tmp / f"input-{rows}.parquet"
    args = ["-m", "bench.datagen", str(data), str(rows), "--chars", "100"]
    run_python(args, timeout_s=120, log_dir=tmp, name=f"datagen-{rows}")
    return data


def run(tmp: Path, table: Table) -> dict[str, Any]:
    if importlib.util.find_spec("ray") is None:  # `bench all` without the extra: said, not failed
        table.add("ray", "skipped", "the ray extra is not installed: pip install -e '.[ray]'")
        return {"skipped": "ray not installed"}
    data, small = _data(tmp, ROWS), _data(tmp, RL_ROWS)
    ray_args = ["--engine", "ray", "--ray-actors", str(ACTORS)]
    latency = ["--latency-ms", str(LATENCY_MS)]
    # the head's Ray uses token authentication (its default): the runs join it with the token
    os.environ["RAY_AUTH_MODE"] = "token"
    with ray_head(HEAD_CPUS) as address:
        ray_args += ["--ray-address", address]
        local = _run(tmp, "local", data, latency, [], concurrency=PER_ACTOR * ACTORS)
        on_ray = _run(tmp, "ray", data, latency, ray_args, concurrency=PER_ACTOR)
        same = run_python(
            ["-c", COMPARE, local["output"], on_ray["output"]],
            timeout_s=120,
            log_dir=tmp,
            name="compare",
        )
        limited = []
        for headers in (True, False):
            options = ["--rpm", str(RL_RPM), "--tpm", "10000000", "--burst-s", "1"]
            options += ["--latency-ms", str(RL_LATENCY_MS)]
            if not headers:
                options.append("--no-ratelimit-headers")
            name = f"ray-1200rpm-{'headers' if headers else 'no-headers'}"
            limits = {"requests_per_minute": RL_RPM, "tokens_per_minute": 10_000_000}
            limited.append(
                _run(tmp, name, small, options, ray_args, concurrency=PER_ACTOR, **limits)
            )
    _report(table, local, on_ray, same.exit_code == 0, limited)
    return {"local": local, "ray": on_ray, "identical": same.exit_code == 0, "ratelimit": limited}


def _report(
    table: Table,
    local: dict[str, Any],
    on_ray: dict[str, Any],
    identical: bool,
    limited: list[dict[str, Any]],
) -> None:
    print(f"ray: {ROWS:,} rows, local c={PER_ACTOR * ACTORS} vs ray {ACTORS} actors x {PER_ACTOR}")
    for case in (local, on_ray, *limited):
        print(
            f"  {case['name']:<24} {case['steady_rps']:8.1f} req/s steady  "
            f"{case['cpu_ms_per_request']:.3f} ms CPU/request (driver {case['driver_cpu_s']:.1f} s)"
            f"  limiter calls/request {case['limiter_calls_per_request']:.3f}  "
            f"429s {case['rate_limited']}/{case['requests']}"
        )
    table.add(
        "ray", "20k rows ray == local", "identical" if identical else "DIFFERENT", "", identical
    )
    table.add(
        "ray",
        "steady req/s (ray / local)",
        f"{on_ray['steady_rps']:.0f} / {local['steady_rps']:.0f}",
    )
    table.add(
        "ray",
        "client CPU ms/request (ray / local)",
        f"{on_ray['cpu_ms_per_request']:.3f} / {local['cpu_ms_per_request']:.3f}",
    )
    table.add("ray", "limiter calls/request", f"{on_ray['limiter_calls_per_request']:.3f}")
    for case in limited:
        used = case["steady_rps"] * 60 / RL_RPM
        share = case["rate_limited"] / case["requests"]
        ok = used >= TARGET_SUSTAINED and share < 0.01
        table.add(
            "ray",
            f"{case['name']}: sustained, 429s",
            f"{used:.1%}, {share:.2%}",
            ">= 97 %, < 1 %",
            ok,
        )


if __name__ == "__main__" and sys.argv[1:2] == ["--head"]:
    _head(int(sys.argv[2]))
