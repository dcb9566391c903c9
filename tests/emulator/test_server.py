"""Running the emulator: start/close, serve as a process, API key, recording, stats, the extra."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

import pipeline.emulator
from pipeline.cli import main
from pipeline.emulator import EmulatorConfig, RunningEmulator, serve, start_emulator
from pipeline.emulator.errors import EmulatorError
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock, post


def test_public_api_is_exactly_these_names() -> None:
    expected = ["EmulatorConfig", "RunningEmulator", "create_app", "serve", "start_emulator"]
    assert pipeline.emulator.__all__ == expected


async def test_api_key_is_required_when_configured(
    start: StartEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    emulator = start(api_key="sk-right")

    missing = await post(http, emulator, {"input": "x"})
    wrong = await post(http, emulator, {"input": "x"}, headers={"Authorization": "Bearer sk-bad"})
    right = await post(http, emulator, {"input": "x"}, headers={"Authorization": "Bearer sk-right"})

    for refused in (missing, wrong):
        assert refused.status == 401
        error_schema.validate(refused.body)
        assert refused.body["error"]["code"] == "invalid_api_key"
    assert "sk-bad" not in wrong.body["error"]["message"]  # keys are never echoed
    assert right.status == 200


async def test_recorded_requests_keep_every_body_received(
    start: StartEmulator, http: aiohttp.ClientSession, request_schema: Draft202012Validator
) -> None:
    emulator = start(record_requests=True, faults={"500": 1.0})
    bodies: list[dict[str, Any]] = [
        {"input": "one", "model": "omni-moderation-latest"},
        {"input": ["two", "three"]},
    ]

    for body in bodies:
        await post(http, emulator, body)
    await post(http, emulator, data=b"not json")

    recorded = emulator.recorded_requests()
    assert recorded == [("/v1/moderations", body) for body in bodies]
    for _, body in recorded:
        request_schema.validate(body)


async def test_nothing_is_recorded_unless_asked(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await post(http, emulator, {"input": "x"})
    assert emulator.recorded_requests() == []


async def test_stats_route_matches_stats(start: StartEmulator, http: aiohttp.ClientSession) -> None:
    emulator = start(requests_per_minute=1, limits_clock=FakeClock())
    await post(http, emulator, {"input": ["a", "b"]})
    await post(http, emulator, {"input": "c"})

    async with http.get(emulator.base_url + "/_emulator/stats") as response:
        over_http = await response.json()

    assert over_http == emulator.stats()
    assert over_http["requests"] == 2
    assert over_http["status"] == {"200": 1, "429": 1}
    assert over_http["inputs_scored"] == 2


async def test_wait_for_requests_returns_once_enough_arrived(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    assert not emulator.wait_for_requests(1, timeout=0)
    for _ in range(3):
        await post(http, emulator, {"input": "x"})

    assert emulator.wait_for_requests(3, timeout=0)
    assert await asyncio.to_thread(emulator.wait_for_requests, 3)


async def test_close_stops_serving_and_is_idempotent(http: aiohttp.ClientSession) -> None:
    with start_emulator(EmulatorConfig(engine="wordlist")) as emulator:
        assert (await post(http, emulator, {"input": "x"})).status == 200
    emulator.close()

    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, emulator, {"input": "x"})


def test_a_busy_port_raises_in_the_caller(start: StartEmulator) -> None:
    first = start(engine="wordlist")
    with pytest.raises(OSError):
        start_emulator(EmulatorConfig(engine="wordlist"), port=first.port)


def test_missing_local_extra_is_reported_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "profanity_check", None)  # makes the import fail

    missing = r"needs the `local` extra: pip install 'pipeline\[local\]'"
    with pytest.raises(EmulatorError, match=missing):
        start_emulator(EmulatorConfig(engine="profanity"))
    with start_emulator(EmulatorConfig(engine="wordlist")) as emulator:  # needs no extra
        assert emulator.base_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_remote_hosts_are_refused_unless_allowed(host: str) -> None:
    config = EmulatorConfig(engine="wordlist")
    with pytest.raises(EmulatorError, match=r"loopback.*--allow-remote"):  # names the way out
        serve(config, host=host, port=0)
    with pytest.raises(EmulatorError, match="loopback"):
        start_emulator(config, host=host)


def test_serve_on_a_remote_host_names_the_allow_remote_flag() -> None:
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output


@pytest.mark.parametrize(
    "fields",
    [
        {"engine": "gpt"},
        {"requests_per_minute": 0},
        {"tokens_per_minute": -5},
        {"latency_ms": -1.0},
        {"slow_s": float("nan")},
        {"clock_skew_s": float("inf")},
        {"huge_body_bytes": 0},
        {"reject_substring": ""},
        {"speech_voices": "all"},
    ],
)
def test_bad_config_values_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**fields)


SERVE = (
    "from pipeline.emulator import EmulatorConfig, serve; "
    "serve(EmulatorConfig(engine='wordlist'), port=0)"
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_prints_its_url_and_exits_cleanly_on_a_signal(
    http: aiohttp.ClientSession, moderation_schema: Draft202012Validator, signum: int
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        prefix = "pipeline emulator listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.endswith("/v1\n")
        base_url = line.split(" on ", 1)[1].strip()
        async with http.post(base_url + "/moderations", json={"input": "hi"}) as response:
            moderation_schema.validate(await response.json())
        process.send_signal(signum)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr
