"""The realtime faults and limits, each observable on a real WebSocket: reworded audio, a socket
dropped mid-audio, error events, rate-limit events from a fault and from the limiter, cancel."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from pipeline.emulator import EmulatorConfig
from pipeline.emulator.faults import REALTIME_FAULT_NAMES, FaultInjector
from pipeline.emulator.realtime_audio import DELTA_BYTES
from pipeline.emulator.realtime_reword import reword
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock
from tests.emulator.realtime_client import connect, response_create, session_update, ws_url
from tests.emulator.test_realtime import OTHER, TEXT, speech_pcm

LONG = " ".join([TEXT, OTHER] * 30)  # ~3,300 characters: seconds of audio, tenths to speak


async def test_reword_changes_the_audio_and_its_transcript_alike(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(faults={"realtime_reword": 1.0}, seed=7)
    client = await connect(http, emulator)

    await client.send(response_create(TEXT))
    (spoken,) = (await client.responses(1)).values()

    assert spoken.transcript is not None
    assert spoken.transcript != TEXT
    said, meant = spoken.transcript.split(), TEXT.split()
    assert len(set(meant) - set(said)) >= 2  # a fifth of nine words, rounded up, at least
    assert spoken.pcm == await speech_pcm(http, emulator, spoken.transcript)
    assert spoken.done is not None
    assert spoken.done["response"]["output"][0]["content"][0]["transcript"] == spoken.transcript
    assert emulator.stats()["faults"] == {"realtime_reword": 1}
    # the same seed and text reword the same way, in any emulator
    again = start(faults={"realtime_reword": 1.0}, seed=7)
    other = await connect(http, again)
    await other.send(response_create(TEXT))
    (twice,) = (await other.responses(1)).values()
    assert twice.transcript == spoken.transcript == reword(TEXT, 7)
    assert reword(TEXT, 8) != reword(TEXT, 7)


@pytest.mark.parametrize("text", ["Hello.", "two words", TEXT, LONG])
def test_reword_never_reads_the_text_verbatim(text: str) -> None:
    for seed in range(20):
        changed = reword(text, seed)
        assert changed != text
        assert changed.split()


async def test_drop_closes_the_socket_mid_audio(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(faults={"realtime_drop": 1.0})
    client = await connect(http, emulator)

    await client.send(response_create(LONG))
    spoken = await client.responses(1)

    (response,) = spoken.values()
    full = await speech_pcm(http, emulator, LONG)
    total = -(-len(full) // DELTA_BYTES)
    assert len(response.deltas) == total // 2
    assert full.startswith(response.pcm)  # the audio up to the drop is the true audio
    assert response.done is None and not response.audio_done and response.transcript is None
    assert client.ws.closed
    stats = emulator.stats()
    assert stats["faults"] == {"realtime_drop": 1}
    assert stats["realtime_responses"] == 1
    assert stats.get("realtime_responses_done", 0) == 0


@pytest.mark.parametrize(
    ("fault", "error_type", "code", "says"),
    [
        ("realtime_error", "server_error", None, "had an error"),
        ("realtime_rate_limit", "rate_limit_exceeded", "rate_limit_exceeded", "try again in 1s"),
    ],
)
async def test_an_error_fault_is_an_error_event_instead_of_the_response(
    start: StartEmulator,
    http: aiohttp.ClientSession,
    fault: str,
    error_type: str,
    code: str | None,
    says: str,
) -> None:
    emulator = start(faults={fault: 1.0})
    client = await connect(http, emulator)

    await client.send(response_create(TEXT, event_id="evt_row_1"))
    error = await client.next_of("error")
    await client.send(session_update("verse"))  # the socket is still open and answering
    updated = await client.next_of("session.updated")

    assert error["error"]["type"] == error_type
    assert error["error"]["code"] == code
    assert says in error["error"]["message"]
    assert error["error"]["event_id"] == "evt_row_1"
    assert updated["session"]["audio"]["output"]["voice"] == "verse"
    stats = emulator.stats()
    assert stats["faults"] == {fault: 1}
    assert stats.get("realtime_responses", 0) == 0


async def test_the_rate_limiter_counts_each_response_create(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    emulator = start(requests_per_minute=2, limits_clock=clock)
    client = await connect(http, emulator)

    await client.send(response_create(TEXT))
    await client.send(response_create(OTHER))
    first = await client.responses(2)
    await client.send(response_create(TEXT, event_id="evt_over"))
    refused = await client.next_of("error")
    clock.advance(30.0)  # one request's worth of the bucket refills
    await client.send(response_create(TEXT))
    (later,) = (await client.responses(1)).values()

    assert len(first) == 2
    assert refused["error"]["type"] == refused["error"]["code"] == "rate_limit_exceeded"
    assert "Please try again in 30s" in refused["error"]["message"]
    assert refused["error"]["event_id"] == "evt_over"
    assert later.transcript == TEXT
    limits = [e["rate_limits"] for e in client.seen if e["type"] == "rate_limits.updated"]
    assert [[(x["name"], x["limit"], x["remaining"]) for x in row] for row in limits] == [
        [("requests", 2, 0)],
        [("requests", 2, 0)],
        [("requests", 2, 0)],
    ]
    stats = emulator.stats()
    assert stats["realtime_responses_done"] == 3
    assert stats["rate_limited"] == {"requests": 1}


async def test_cancel_ends_a_response_cancelled(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start()
    client = await connect(http, emulator)

    await client.send(response_create(LONG))
    created = await client.next_of("response.created")
    response_id = created["response"]["id"]
    await client.ws.send_json({"type": "response.cancel", "response_id": response_id})
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] != "rate_limits.updated":
        event = await client.receive()
        assert event is not None
        events.append(event)
    await client.ws.send_json({"type": "response.cancel", "response_id": response_id})
    late = await client.next_of("error")

    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["id"] == response_id
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    deltas = sum(e["type"] == "response.output_audio.delta" for e in events)
    assert deltas < len(await speech_pcm(http, emulator, LONG)) // DELTA_BYTES
    assert late["error"]["code"] == "response_cancel_not_active"
    assert emulator.stats().get("realtime_responses_done", 0) == 0


def test_realtime_faults_are_checked_on_their_own() -> None:
    EmulatorConfig(faults={"500": 1.0, "realtime_drop": 1.0})  # separate draws: both may be 1
    with pytest.raises(ValueError, match="realtime fault probabilities add up"):
        EmulatorConfig(faults={"realtime_drop": 0.6, "realtime_error": 0.6})
    with pytest.raises(ValueError, match="realtime_drop"):
        EmulatorConfig(faults={"realtime_dorp": 0.1})


async def test_the_realtime_draws_are_seeded_per_response_create(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    faults = {"realtime_error": 0.4, "realtime_reword": 0.3}
    emulator = start(faults=faults, seed=11)
    client = await connect(http, emulator)

    outcomes: list[str | None] = []
    for index in range(8):  # one at a time: the draws happen in this order
        await client.send(response_create(f"Sentence number {index} is read here."))
        event = await client.receive()
        assert event is not None
        if event["type"] == "error":
            outcomes.append("realtime_error")
            continue
        (spoken,) = (await client.responses(1, (event,))).values()
        said = spoken.transcript != f"Sentence number {index} is read here."
        outcomes.append("realtime_reword" if said else None)

    expected = FaultInjector(faults, 11, REALTIME_FAULT_NAMES)
    assert outcomes == [expected.draw() for _ in range(8)]
    assert len(set(outcomes)) == 3  # this seed shows all three outcomes


async def test_an_http_fault_can_hit_the_upgrade(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(faults={"503": 1.0})

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(ws_url(emulator))

    assert refused.value.status == 503
    assert emulator.stats().get("realtime_sessions", 0) == 0
