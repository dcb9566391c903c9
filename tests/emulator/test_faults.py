"""Fault injection: each fault does what it says; draws are seeded; bad names fail early."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator

from pipeline.emulator import EmulatorConfig
from pipeline.emulator.faults import FAULT_NAMES, FaultInjector
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import post

BODY = {"input": "hello"}


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "code"),
    [
        ("429", 429, "requests", "rate_limit_exceeded"),
        ("quota", 429, "insufficient_quota", "insufficient_quota"),
        ("401", 401, "invalid_request_error", "invalid_api_key"),
        ("500", 500, "server_error", None),
        ("502", 502, "server_error", None),
        ("503", 503, "server_error", None),
    ],
)
async def test_error_faults_answer_with_openai_error_bodies(
    start: StartEmulator,
    http: aiohttp.ClientSession,
    error_schema: Draft202012Validator,
    fault: str,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    emulator = start(faults={fault: 1.0})

    answer = await post(http, emulator, BODY)

    assert answer.status == status
    error_schema.validate(answer.body)
    assert answer.body["error"]["type"] == error_type
    assert answer.body["error"]["code"] == code
    assert "x-request-id" in answer.headers
    stats = emulator.stats()
    assert stats["faults"] == {fault: 1}
    assert stats["status"] == {str(status): 1}
    assert stats["inputs_scored"] == 0


async def test_429_fault_says_when_to_retry(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, start(faults={"429": 1.0}), BODY)

    assert answer.headers["retry-after"] == "1"
    assert answer.headers["retry-after-ms"] == "1000"


async def test_429_fault_wait_is_configurable(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    answer = await post(http, start(faults={"429": 1.0}, fault_retry_after_ms=20), BODY)

    assert answer.headers["retry-after-ms"] == "20"
    assert answer.headers["retry-after"] == "1"  # whole seconds, rounded up


async def test_drop_closes_the_connection_without_an_answer(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(faults={"drop": 1.0})

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, emulator, BODY)
    assert emulator.stats()["faults"] == {"drop": 1}


async def test_drop_body_sends_headers_then_breaks_off_the_body(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(faults={"drop_body": 1.0})

    async with http.post(emulator.base_url + "/moderations", json=BODY) as response:
        assert response.status == 200
        assert "x-request-id" in response.headers
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize(("fault", "status"), [("echo_key", 400), ("echo_key_401", 401)])
async def test_echo_key_faults_quote_the_authorization_value(
    start: StartEmulator,
    http: aiohttp.ClientSession,
    error_schema: Draft202012Validator,
    fault: str,
    status: int,
) -> None:
    emulator = start(faults={fault: 1.0})

    answer = await post(http, emulator, BODY, headers={"Authorization": "Bearer sk-echo-me"})

    assert answer.status == status
    error_schema.validate(answer.body)
    assert "Bearer sk-echo-me" in answer.body["error"]["message"]


@pytest.mark.parametrize("fault", ["huge_body", "huge_chunked"])
async def test_huge_faults_stream_the_configured_size(
    start: StartEmulator, http: aiohttp.ClientSession, fault: str
) -> None:
    size = 3 * 2**20 + 5  # three whole blocks and a piece
    emulator = start(faults={fault: 1.0}, huge_body_bytes=size)

    async with http.post(emulator.base_url + "/moderations", json=BODY) as response:
        assert response.status == 200
        declared = response.content_length
        assert declared == (size if fault == "huge_body" else None)
        received = 0
        async for chunk in response.content.iter_chunked(2**16):
            received += len(chunk)
    assert received == size


async def test_malformed_answers_200_with_a_body_that_is_not_json(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(faults={"malformed": 1.0})

    async with http.post(emulator.base_url + "/moderations", json=BODY) as response:
        raw = await response.read()

    assert response.status == 200
    assert response.content_type == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_slow_waits_then_answers_normally(
    start: StartEmulator, http: aiohttp.ClientSession, moderation_schema: Draft202012Validator
) -> None:
    emulator = start(faults={"slow": 1.0}, slow_s=0.01, latency_ms=1.0)

    answer = await post(http, emulator, BODY)

    assert answer.status == 200
    moderation_schema.validate(answer.body)
    assert emulator.stats()["faults"] == {"slow": 1}


async def test_fault_draws_are_reproducible_with_a_seed(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    statuses = []
    for _ in range(2):
        emulator = start(faults={"500": 0.3, "503": 0.3}, seed=7)
        statuses.append([(await post(http, emulator, BODY)).status for _ in range(20)])

    assert statuses[0] == statuses[1]
    assert {200, 500, 503} <= set(statuses[0])


def test_injector_mixes_faults_in_proportion() -> None:
    injector = FaultInjector({"500": 0.25, "drop": 0.25}, seed=1)
    draws = [injector.draw() for _ in range(4000)]

    assert 800 < draws.count("500") < 1200
    assert 800 < draws.count("drop") < 1200
    assert 1800 < draws.count(None) < 2200


def test_unknown_fault_names_are_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known faults") as refused:
        EmulatorConfig(faults={"404": 0.5})
    assert all(name in str(refused.value) for name in FAULT_NAMES)


@pytest.mark.parametrize("faults", [{"500": 1.5}, {"500": -0.1}, {"500": 0.6, "503": 0.6}])
def test_impossible_probabilities_are_refused(faults: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(faults=faults)


def test_config_keeps_a_read_only_copy_of_the_faults() -> None:
    faults = {"500": 0.5}
    config = EmulatorConfig(faults=faults)
    faults["503"] = 0.5

    assert dict(config.faults) == {"500": 0.5}
    with pytest.raises(TypeError):
        config.faults["502"] = 0.1  # type: ignore[index]
