"""httpclients: which HTTP client the pipeline should stand on, measured on one local server.

Four clients (bench/http_client.py) post the same 5,000 moderation bodies to one emulator
process (wordlist engine, no latency, no limits) at 64 and 256 requests in flight: httpx 0.28
with its own pool, httpx over the aiohttp transport (``httpx-aiohttp``, the official SDK's
aiohttp option), httpx2 (the official SDK's client since 3.0) and a bare aiohttp session. Each
child is reaped with os.wait4, so its CPU (user+sys, all threads) is its own; the net CPU per
request subtracts the same client's start-up run (``--limit 0``: imports and loading the
bodies, best of two). Cases are interleaved over the repeats so background noise spreads.

Needs the ``bench`` extra (``pip install -e '.[bench]'``): httpx, httpx-aiohttp, httpx2.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Emulator,
    Measured,
    Table,
    log,
    render_grid,
    run_python,
    run_script,
)

CLIENTS = ("httpx", "httpx-aiohttp", "httpx2", "aiohttp")
CONCURRENCIES = (64, 256)
REQUESTS = 5_000
REPEATS = 2
RUN_TIMEOUT_S = 300.0


def _client(
    client: str, base_url: str, bodies: Path, concurrency: int, tmp: Path, name: str, *extra: str
) -> tuple[Measured, dict[str, Any]]:
    args = (client, base_url, str(bodies), str(concurrency), *extra)
    return run_script("http_client.py", *args, timeout_s=RUN_TIMEOUT_S, log_dir=tmp, name=name)


def run(tmp: Path, table: Table, requests: int = REQUESTS) -> dict[str, Any]:
    data, bodies = tmp / "input.parquet", tmp / "bodies.jsonl"
    datagen = ["-m", "bench.datagen", str(data), str(requests), "--chars", "short"]
    run_python(
        [*datagen, "--bodies", str(bodies)],
        timeout_s=120,
        log_dir=tmp,
        name="datagen",
    )
    cases: list[dict[str, Any]] = []
    with Emulator(log_dir=tmp) as emulator:
        base = emulator.base_url
        log(f"httpclients: emulator {base} (pid {emulator.pid})")
        _client("aiohttp", base, bodies, 64, tmp, "warmup")  # the emulator's lazy set-up
        startup = {}
        for client in CLIENTS:  # best of two: the first may pay for a cold page cache
            runs = [
                _client(client, base, bodies, 64, tmp, f"startup-{client}-{i}", "--limit", "0")
                for i in range(2)
            ]
            startup[client] = min(measured.cpu_s for measured, _ in runs)
        for rep in range(REPEATS):
            for concurrency in CONCURRENCIES:
                for client in CLIENTS:
                    log(f"httpclients: {client} at {concurrency} in flight, repeat {rep + 1}")
                    tag = f"{client}-c{concurrency}-r{rep + 1}"
                    measured, result = _client(client, base, bodies, concurrency, tmp, tag)
                    if result["statuses"].get("200") != requests:
                        raise BenchError(f"{tag}: statuses {result['statuses']}")
                    cases.append(
                        {
                            "client": client,
                            "concurrency": concurrency,
                            "requests_per_s": requests / result["elapsed_s"],
                            "cpu_ms_per_request": 1000
                            * (measured.cpu_s - startup[client])
                            / requests,
                        }
                    )
    return _report(table, cases, startup, requests)


def _report(
    table: Table, cases: list[dict[str, Any]], startup: dict[str, float], requests: int
) -> dict[str, Any]:
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for client in CLIENTS:
        for concurrency in CONCURRENCIES:
            reps = [c for c in cases if c["client"] == client and c["concurrency"] == concurrency]
            medians[client, concurrency] = {
                key: statistics.median(c[key] for c in reps)
                for key in ("requests_per_s", "cpu_ms_per_request")
            }
    header = ["client", *(f"req/s c={c}" for c in CONCURRENCIES)]
    header += [f"CPU ms/req c={c}" for c in CONCURRENCIES]
    grid = [
        [
            client,
            *(f"{medians[client, c]['requests_per_s']:,.0f}" for c in CONCURRENCIES),
            *(f"{medians[client, c]['cpu_ms_per_request']:.3f}" for c in CONCURRENCIES),
        ]
        for client in CLIENTS
    ]
    print(
        f"\nhttpclients: {requests:,} moderation POSTs per case to one emulator, medians of "
        f"{REPEATS}; CPU net of each client's start-up "
        f"({', '.join(f'{k} {v:.2f} s' for k, v in startup.items())})"
    )
    print(render_grid(header, grid))
    for client in CLIENTS:
        for concurrency in CONCURRENCIES:
            m = medians[client, concurrency]
            table.add(
                "httpclients",
                f"{client}, {concurrency} in flight: requests/s, client CPU ms/request",
                f"{m['requests_per_s']:,.0f}, {m['cpu_ms_per_request']:.3f}",
            )
    return {
        "requests": requests,
        "startup_cpu_s": startup,
        "runs": cases,
        "medians": {f"{k[0]} c={k[1]}": v for k, v in medians.items()},
    }
