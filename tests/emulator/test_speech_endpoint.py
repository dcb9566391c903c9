"""POST /v1/audio/speech over real HTTP: real audio in six formats, validation, limits, faults."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from pipeline import audio
from pipeline.emulator import EmulatorConfig, RunningEmulator, start_emulator
from pipeline.emulator.errors import EmulatorError
from pipeline.emulator.tts import VOICES
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock, load_validator

TEXT = "The quick brown fox jumps over the lazy dog."
BODY: dict[str, Any] = {"model": "gpt-4o-mini-tts", "input": TEXT, "voice": "coral"}
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


class Speech:
    """What a speech request got back: status, headers (lower-case) and the raw body."""

    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


async def speak(http: aiohttp.ClientSession, emulator: RunningEmulator, **fields: Any) -> Speech:
    body = {**BODY, **fields}
    async with http.post(emulator.base_url + "/audio/speech", json=body) as response:
        data = await response.read()
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Speech(response.status, headers, data)


@pytest.fixture(scope="module")
def speech_request_schema() -> Draft202012Validator:
    return load_validator("CreateSpeechRequest")


@pytest.fixture
def emulator(start: StartEmulator) -> RunningEmulator:
    return start(engine="wordlist", record_requests=True)


@pytest.mark.parametrize("fmt", audio.FORMATS)
async def test_every_format_is_real_audio(
    emulator: RunningEmulator, http: aiohttp.ClientSession, fmt: str
) -> None:
    answer = await speak(http, emulator, response_format=fmt)

    assert answer.status == 200
    assert answer.headers["content-type"] == CONTENT_TYPES[fmt]
    assert int(answer.headers["content-length"]) == len(answer.data)
    assert 1.0 < audio.duration_s(answer.data, fmt) < 10.0
    assert answer.headers["x-emulator-model"] == "local/espeak-ng"
    assert "x-request-id" in answer.headers


async def test_mp3_is_the_default_format(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    answer = await speak(http, emulator)

    assert answer.headers["content-type"] == "audio/mpeg"
    assert audio.duration_s(answer.data, "mp3") > 1.0


async def test_speed_stretches_and_squeezes_the_audio(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    seconds = {}
    for speed in (0.25, 1, 4.0):
        answer = await speak(http, emulator, speed=speed, response_format="pcm")
        seconds[speed] = audio.duration_s(answer.data, "pcm")

    assert seconds[0.25] > 2.5 * seconds[1] > 2.5 * 2.5 * seconds[4.0]
    assert seconds[0.25] / seconds[4.0] > 8  # 16 ideally; measured ~15


async def test_each_voice_sounds_different(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    answers = {
        voice: await speak(http, emulator, voice=voice, input="Hello.", response_format="pcm")
        for voice in VOICES
    }

    assert len({answer.data for answer in answers.values()}) == len(VOICES)
    assert {answers[v].headers["x-emulator-voice"] for v in VOICES} == set(VOICES.values())


async def test_a_custom_voice_id_always_gets_the_same_built_in_voice(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    first = await speak(http, emulator, voice={"id": "voice_1234"}, response_format="wav")
    again = await speak(http, emulator, voice={"id": "voice_1234"}, response_format="wav")

    assert first.status == 200
    assert first.headers["x-emulator-voice"] in VOICES.values()
    assert first.data == again.data


async def test_the_same_request_gives_the_same_bytes(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    first = await speak(http, emulator, voice="alloy")
    await speak(http, emulator, voice="onyx", input="Something else entirely, and longer.")
    again = await speak(http, emulator, voice="alloy")
    concurrent = await asyncio.gather(*(speak(http, emulator, voice="alloy") for _ in range(4)))

    assert first.data == again.data
    assert all(answer.data == first.data for answer in concurrent)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"language": "en"}, "language"),
        ({"input": "x" * 4097}, "input"),
        ({"input": ""}, "input"),
        ({"input": 42}, "input"),
        ({"instructions": "y" * 4097}, "instructions"),
        ({"speed": 9}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"speed": True}, "speed"),
        ({"speed": "fast"}, "speed"),
        ({"voice": "bob"}, "voice"),
        ({"voice": {"id": "v", "name": "n"}}, "voice"),
        ({"voice": {}}, "voice"),
        ({"voice": ["alloy"]}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"stream_format": "sse"}, "stream_format"),
        ({"stream_format": "chunks"}, "stream_format"),
        ({"model": None}, "model"),
    ],
)
async def test_invalid_requests_get_400_naming_the_field(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    error_schema: Draft202012Validator,
    fields: dict[str, Any],
    param: str,
) -> None:
    answer = await speak(http, emulator, **fields)

    assert answer.status == 400
    body = json.loads(answer.data)
    error_schema.validate(body)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert "(local emulator)" in body["error"]["message"]


@pytest.mark.parametrize("missing", ["model", "input", "voice"])
async def test_missing_required_fields_get_400(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    error_schema: Draft202012Validator,
    missing: str,
) -> None:
    body = {k: v for k, v in BODY.items() if k != missing}
    async with http.post(emulator.base_url + "/audio/speech", json=body) as response:
        error = await response.json()

    assert response.status == 400
    error_schema.validate(error)
    assert error["error"]["param"] == missing
    assert f"'{missing}'" in error["error"]["message"]


async def test_error_messages_say_what_is_allowed(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    voice = json.loads((await speak(http, emulator, voice="bob")).data)
    sse = json.loads((await speak(http, emulator, stream_format="sse")).data)
    long = json.loads((await speak(http, emulator, input="x" * 4097)).data)

    assert all(f"'{name}'" in voice["error"]["message"] for name in VOICES)
    assert "only" in sse["error"]["message"] and "'audio'" in sse["error"]["message"]
    assert "4096" in long["error"]["message"] and "4097" in long["error"]["message"]


async def test_valid_bodies_match_the_schema_and_are_recorded(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    speech_request_schema: Draft202012Validator,
) -> None:
    body = {
        **BODY,
        "input": "x" * 4096,
        "instructions": "Speak calmly.",
        "voice": {"id": "voice_1234"},
        "response_format": "flac",
        "speed": 4,
        "stream_format": "audio",
    }
    speech_request_schema.validate(body)

    answer = await speak(http, emulator, **body)

    assert answer.status == 200
    assert answer.headers["x-emulator-note"].startswith("instructions are not followed")
    assert emulator.recorded_requests() == [("/v1/audio/speech", body)]


def test_the_schema_agrees_with_the_emulator_on_bad_bodies(
    speech_request_schema: Draft202012Validator,
) -> None:
    bad: list[dict[str, object]] = [
        {"language": "en"},
        {"input": "x" * 4097},
        {"speed": 9},
        {"voice": {}},
    ]
    for fields in bad:
        assert not speech_request_schema.is_valid({**BODY, **fields})
    # the schema's anyOf lets any voice string through; the API and the emulator do not
    assert speech_request_schema.is_valid({**BODY, "voice": "bob"})


async def test_tokens_are_charged_against_the_limit(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", tokens_per_minute=20, limits_clock=FakeClock())

    first = await speak(http, emulator, input="x" * 60, response_format="pcm")  # 15 tokens
    second = await speak(http, emulator, input="x" * 60, response_format="pcm")
    too_large = await speak(http, emulator, input="x" * 100, response_format="pcm")

    assert first.status == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "5"
    assert second.status == 429
    assert "retry-after-ms" in second.headers
    assert too_large.status == 429
    assert "retry-after" not in too_large.headers  # 25 tokens can never fit in 20
    stats = emulator.stats()
    assert stats["characters_spoken"] == 60
    assert stats["audio_ms_spoken"] > 0


async def test_reject_substring_refuses_the_input(
    start: StartEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    emulator = start(engine="wordlist", reject_substring="POISON")

    refused = await speak(http, emulator, input="Read this POISON aloud.")
    spoken = await speak(http, emulator, input="Read this aloud.")

    assert refused.status == 400
    error = json.loads(refused.data)
    error_schema.validate(error)
    assert error["error"]["param"] == "input"
    assert spoken.status == 200


async def test_truncate_fault_cuts_the_audio_under_its_full_length(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", faults={"truncate": 1.0})

    async with http.post(emulator.base_url + "/audio/speech", json=BODY) as response:
        assert response.status == 200
        assert response.headers["content-type"] == "audio/mpeg"
        assert int(response.headers["content-length"]) > 1000
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert emulator.stats()["faults"] == {"truncate": 1}


async def test_drop_body_breaks_off_a_chunked_speech_answer(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(engine="wordlist", faults={"drop_body": 1.0})

    async with http.post(emulator.base_url + "/audio/speech", json=BODY) as response:
        assert response.status == 200
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["transfer-encoding"] == "chunked"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize("fmt", ["wav", "opus", "flac", "mp3"])
async def test_malformed_fault_sends_half_a_file_that_does_not_decode(
    start: StartEmulator, http: aiohttp.ClientSession, fmt: str
) -> None:
    emulator = start(engine="wordlist", faults={"malformed": 1.0})

    answer = await speak(http, emulator, response_format=fmt)

    assert answer.status == 200
    assert answer.headers["content-type"] == CONTENT_TYPES[fmt]
    with pytest.raises(audio.AudioError, match=r"truncated|cannot decode"):
        audio.decode(answer.data, fmt)


def test_missing_local_extra_is_reported_when_the_app_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail

    missing = r"needs the `local` extra: pip install 'pipeline\[local\]'"
    with pytest.raises(EmulatorError, match=missing):
        start_emulator(EmulatorConfig(engine="wordlist"))
