"""Body faults (drop_body, truncate, malformed) break the route's own answer, after it ran."""

from __future__ import annotations

import aiohttp
import pytest

from pipeline.emulator.faults import BODY_FAULTS, FAULT_NAMES
from tests.emulator.conftest import StartEmulator

BODY = {"input": "hello"}


def test_truncate_is_a_known_body_fault() -> None:
    assert "truncate" in FAULT_NAMES
    assert {"drop_body", "truncate", "malformed"} == BODY_FAULTS


async def test_truncate_announces_the_whole_moderation_and_sends_half(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", faults={"truncate": 1.0})

    async with http.post(emulator.base_url + "/moderations", json=BODY) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert int(response.headers["content-length"]) > 500  # a whole answer's length
        assert "x-request-id" in response.headers
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    stats = emulator.stats()
    assert stats["faults"] == {"truncate": 1}
    assert stats["inputs_scored"] == 1  # the route ran: the cut is of its real answer


async def test_drop_body_is_chunked_and_never_ends(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", faults={"drop_body": 1.0})

    async with http.post(emulator.base_url + "/moderations", json=BODY) as response:
        assert response.status == 200
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_malformed_is_the_first_half_of_the_real_answer(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", faults={"malformed": 1.0})

    async with http.post(emulator.base_url + "/moderations", json=BODY) as response:
        raw = await response.read()

    assert raw.startswith(b'{"id":"modr-')
    assert b'"model":"local/wordlist"' in raw  # the real answer's start: id, model, then results
    assert int(response.headers["content-length"]) == len(raw)


async def test_body_faults_cut_error_answers_too(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", faults={"truncate": 1.0}, requests_per_minute=1)

    async with http.post(emulator.base_url + "/moderations", json={"input": 5}) as response:
        assert response.status == 400
        assert response.headers["x-ratelimit-limit-requests"] == "1"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
