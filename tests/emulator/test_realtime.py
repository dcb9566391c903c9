"""GET /v1/realtime over a real WebSocket: the GA event sequence, audio that is the speech
route's own, several responses per socket and several sockets, the key, refused events."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from pipeline.emulator import RunningEmulator
from pipeline.emulator.realtime_audio import DELTA_BYTES
from tests.emulator.conftest import StartEmulator
from tests.emulator.realtime_client import (
    Realtime,
    connect,
    response_create,
    session_update,
    ws_url,
)

TEXT = "The quick brown fox jumps over the lazy dog."
OTHER = "Pack my box with five dozen liquor jugs, then read it all again."
KEY = "sk-test-realtime"


async def speech_pcm(
    http: aiohttp.ClientSession, emulator: RunningEmulator, text: str, voice: str = "coral"
) -> bytes:
    """What POST /v1/audio/speech answers for ``text`` as raw 24 kHz PCM: the reference audio."""
    body: dict[str, Any] = {
        "model": "gpt-4o-mini-tts",
        "input": text,
        "voice": voice,
        "response_format": "pcm",
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http.post(emulator.base_url + "/audio/speech", json=body, headers=headers) as r:
        assert r.status == 200
        return await r.read()


@pytest.fixture
def emulator(start: StartEmulator) -> RunningEmulator:
    return start(api_key=KEY)


async def test_a_response_reads_the_text_in_pcm_deltas(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client = await connect(http, emulator, KEY, voice="ash")

    await client.send(response_create(TEXT, metadata={"row": "k1"}))
    spoken = await client.responses(1)

    (response,) = spoken.values()
    expected = await speech_pcm(http, emulator, TEXT, voice="ash")
    assert response.pcm == expected  # eSpeak at 24 kHz, the same samples as the HTTP route
    assert len(response.deltas) == -(-len(expected) // DELTA_BYTES) > 3
    assert all(len(delta) % 2 == 0 for delta in response.deltas)
    assert response.audio_done
    assert response.transcript == TEXT
    assert response.done is not None
    done = response.done["response"]
    assert done["status"] == "completed"
    assert done["metadata"] == {"row": "k1"}
    assert done["audio"]["output"]["voice"] == "ash"
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": TEXT}]
    seconds = len(expected) / 2 / 24000
    assert done["usage"]["output_token_details"]["audio_tokens"] == -(-round(seconds * 1000) // 50)
    assert "conversation_id" not in done  # out of band
    kinds = [event["type"] for event in client.seen[2:]]
    assert kinds[0] == "response.created"
    assert kinds[-4:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.done",
        "rate_limits.updated",
    ]
    stats = emulator.stats()
    assert stats["realtime_sessions"] == 1
    assert stats["realtime_responses"] == stats["realtime_responses_done"] == 1
    assert stats["realtime_audio_ms"] == round(seconds * 1000)


async def test_two_responses_in_flight_on_one_socket(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client = await connect(http, emulator, KEY)

    await client.send(response_create(TEXT, metadata={"row": "a"}))
    await client.send(response_create(OTHER, metadata={"row": "b"}))
    spoken = await client.responses(2)

    by_row = {s.created["response"]["metadata"]["row"]: s for s in spoken.values()}
    assert by_row["a"].transcript == TEXT
    assert by_row["b"].transcript == OTHER
    assert by_row["a"].pcm == await speech_pcm(http, emulator, TEXT)
    assert by_row["b"].pcm == await speech_pcm(http, emulator, OTHER)
    assert emulator.stats()["realtime_responses_done"] == 2


async def test_sessions_run_concurrently(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    voices = ["alloy", "echo", "nova", "sage", "fable", "onyx", "cedar", "marin"]
    clients = await asyncio.gather(*(connect(http, emulator, KEY, voice=v) for v in voices))
    assert emulator.stats()["realtime_sessions_open"] == len(voices)

    async def two(client: Realtime, voice: str) -> list[tuple[str | None, bytes]]:
        await client.send(response_create(f"{voice} reads this sentence."))
        await client.send(response_create(f"{voice} reads another one."))
        spoken = await client.responses(2)
        await client.ws.close()
        return sorted((s.transcript, s.pcm) for s in spoken.values())

    results = await asyncio.gather(*(two(c, v) for c, v in zip(clients, voices, strict=True)))

    for voice, said in zip(voices, results, strict=True):
        assert [text for text, _ in said] == [
            f"{voice} reads another one.",
            f"{voice} reads this sentence.",
        ]
    for voice in voices[:2]:  # the audio is each session's own voice
        expected = await speech_pcm(http, emulator, f"{voice} reads this sentence.", voice)
        assert results[voices.index(voice)][1][1] == expected
    stats = emulator.stats()
    assert stats["realtime_sessions"] == len(voices)
    assert stats["realtime_responses_done"] == 2 * len(voices)


@pytest.mark.parametrize("key", [None, "sk-wrong"])
async def test_a_bad_key_is_refused_before_the_upgrade(
    emulator: RunningEmulator, http: aiohttp.ClientSession, key: str | None
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(ws_url(emulator), headers=headers)

    assert refused.value.status == 401
    stats = emulator.stats()
    assert stats["status"] == {"401": 1}
    assert stats.get("realtime_sessions", 0) == 0


async def test_a_plain_get_is_told_to_upgrade(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http.get(ws_url(emulator), headers=headers) as answer:
        body = await answer.json()

    assert answer.status == 400
    assert "Upgrade: websocket" in body["error"]["message"]


@pytest.mark.parametrize("model", ["gpt-4o-mini-tts", None])
async def test_a_model_that_is_not_realtime_is_an_error_event(
    emulator: RunningEmulator, http: aiohttp.ClientSession, model: str | None
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    ws = await http.ws_connect(ws_url(emulator, model), headers=headers)
    client = Realtime(ws)

    error = await client.next_of("error")

    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == "model"
    assert await client.receive() is None
    assert ws.close_code == 1008


@pytest.mark.parametrize(
    ("event", "param", "code"),
    [
        (session_update("nobody"), "session.audio.output.voice", "invalid_value"),
        (session_update(speed=3.0), "session.audio.output.speed", "invalid_value"),
        (
            response_create(TEXT, output_modalities=["text"]),
            "response.output_modalities",
            "unsupported_value",
        ),
        (
            response_create(TEXT, audio={"output": {"format": {"type": "audio/pcmu"}}}),
            "response.audio.output.format",
            "unsupported_value",
        ),
        (response_create(" "), "response.input", "missing_required_parameter"),
    ],
)
async def test_a_refused_event_is_an_error_event_and_the_socket_goes_on(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    event: dict[str, Any],
    param: str,
    code: str,
) -> None:
    client = await connect(http, emulator, KEY)

    # sent as is: a speed of 3 breaks the schema too, which is the point of refusing it
    await client.ws.send_json({**event, "event_id": "evt_client_1"})
    error = await client.next_of("error")
    await client.send(response_create(TEXT))
    (spoken,) = (await client.responses(1)).values()

    assert error["error"]["type"] == "invalid_request_error"
    assert (error["error"]["param"], error["error"]["code"]) == (param, code)
    assert error["error"]["event_id"] == "evt_client_1"
    assert spoken.transcript == TEXT
    assert emulator.stats()["realtime_responses"] == 1


async def test_an_unknown_event_type_and_bad_json_are_error_events(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client = await connect(http, emulator, KEY)

    await client.ws.send_json({"type": "conversation.item.create", "event_id": "e9"})
    unknown = await client.next_of("error")
    await client.ws.send_str("{not json")
    broken = await client.next_of("error")

    assert (unknown["error"]["param"], unknown["error"]["event_id"]) == ("type", "e9")
    assert broken["error"]["code"] == "invalid_json"
    assert client.ws.closed is False


async def test_an_unknown_field_of_an_event_is_refused(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client = await connect(http, emulator, KEY)

    await client.ws.send_json({**response_create(TEXT), "respones": {}})
    error = await client.next_of("error")

    assert (error["error"]["param"], error["error"]["code"]) == ("respones", "unknown_parameter")
    assert emulator.stats().get("realtime_responses", 0) == 0


async def test_one_response_at_a_time_in_the_conversation_any_number_out_of_band(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client = await connect(http, emulator, KEY)

    await client.send(response_create(TEXT, conversation="auto"))
    await client.send(response_create(OTHER, conversation="auto", metadata={"row": "2nd"}))
    await client.send(response_create(OTHER, metadata={"row": "oob"}))
    spoken = await client.responses(2)

    (busy,) = client.errors
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    done = {s.transcript: s.done["response"] for s in spoken.values() if s.done is not None}
    assert done[TEXT]["conversation_id"].startswith("conv_")
    assert done[OTHER]["metadata"] == {"row": "oob"}
    assert "conversation_id" not in done[OTHER]


async def test_a_session_expires_with_an_error_event_and_a_close(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(realtime_session_s=0.3)
    ws = await http.ws_connect(ws_url(emulator))
    client = Realtime(ws)

    created = await client.next_of("session.created")
    expired = await client.next_of("error")  # whenever it comes: the test waits on the event

    assert created["session"]["expires_at"] >= 0
    assert expired["error"]["code"] == "session_expired"
    assert expired["error"]["message"] == "Your session hit the maximum duration of 0.3 seconds."
    assert await client.receive() is None
    assert ws.close_code == 1001
