"""One response per socket (what the pipeline does) against several multiplexed on one socket.

    python -m bench.realtime_sockets

One emulator (``pipeline serve``); RESPONSES out-of-band ``response.create`` of one ~300-character
text, K in flight at a time, for K in (4, 8): (a) K sockets, each carrying one response at a time
(the pipeline's ``RealtimeSessions`` over its ``Http``); (b) one socket carrying K responses at
once, their events told apart by ``response_id`` (a bare aiohttp loop written here). Prints audio
s per wall s and this process's CPU s per audio s (``time.process_time``) for each, best of
REPEATS; nothing is decoded or encoded.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import Emulator
from pipeline.http import Http
from pipeline.realtime import RealtimeSessions
from pipeline.realtime_events import PCM_BYTES_PER_S, response_create, session_update
from pipeline.steps import Speak

MODEL = "gpt-realtime-2.1-mini"
TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it "
    "had no pictures or conversations in it, and what is the use of a book, thought Alice, "
    "without pictures or conversations?"
)
RESPONSES = 32
REPEATS = 2
KEY = "sk-bench-fake"


def step() -> Speak:
    return Speak(MODEL, "alloy", TEXT, max_bytes=2**26)


async def per_socket(base_url: str, k: int) -> int:
    """K workers, each over its own pooled socket; returns the PCM bytes received."""
    todo = iter(range(RESPONSES))
    received = 0
    async with Http(base_url, KEY, 120, k) as http:
        sessions = RealtimeSessions(http, k)

        async def worker() -> None:
            nonlocal received
            for _ in todo:
                spoken = await sessions.speak(step())  # awaited first: += would read a stale total
                received += len(spoken.pcm)

        await asyncio.gather(*(worker() for _ in range(k)))
    return received


async def multiplexed(base_url: str, k: int) -> int:
    """One socket, K responses in flight, demultiplexed by response_id."""
    url = base_url.replace("http", "ws", 1) + "/realtime"
    headers = {"Authorization": f"Bearer {KEY}"}
    received, sent, done = 0, 0, 0
    async with (
        aiohttp.ClientSession(headers=headers) as client,
        client.ws_connect(url, params={"model": MODEL}, max_msg_size=0) as socket,
    ):
        await _until(socket, "session.created")
        await socket.send_str(orjson.dumps(session_update(step())).decode())
        await _until(socket, "session.updated")
        for _ in range(k):
            sent += 1
            await socket.send_str(orjson.dumps(response_create(step(), f"e{sent}")).decode())
        pcm: dict[str, int] = {}
        while done < RESPONSES:
            event: dict[str, Any] = orjson.loads((await socket.receive()).data)
            kind = event["type"]
            if kind == "response.output_audio.delta":
                rid = event["response_id"]
                pcm[rid] = pcm.get(rid, 0) + len(base64.b64decode(event["delta"]))
            elif kind == "response.done":
                done += 1
                received += pcm.pop(event["response"]["id"], 0)
                if sent < RESPONSES:
                    sent += 1
                    create = response_create(step(), f"e{sent}")
                    await socket.send_str(orjson.dumps(create).decode())
            elif kind == "error":
                raise RuntimeError(event["error"]["message"])
    return received


async def _until(socket: aiohttp.ClientWebSocketResponse, wanted: str) -> None:
    while orjson.loads((await socket.receive()).data)["type"] != wanted:
        pass


def measure(base_url: str, mode: str, k: int) -> tuple[float, float]:
    """(audio s per wall s, CPU s per audio s) of one case."""
    run = per_socket if mode == "per socket" else multiplexed
    wall, cpu = time.perf_counter(), time.process_time()
    pcm = asyncio.run(run(base_url, k))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    audio_s = pcm / PCM_BYTES_PER_S
    return audio_s / wall, cpu / audio_s


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Emulator(log_dir=Path(tmp)) as emulator:
        measure(emulator.base_url, "per socket", 2)  # warm-up: eSpeak loaded
        best: dict[tuple[str, int], tuple[float, float]] = {}
        for _ in range(REPEATS):
            for k in (4, 8):
                for mode in ("per socket", "multiplexed"):
                    figures = measure(emulator.base_url, mode, k)
                    if (mode, k) not in best or figures[0] > best[(mode, k)][0]:
                        best[(mode, k)] = figures
    print(f"{RESPONSES} responses of {len(TEXT)} characters, best of {REPEATS}")
    print("case                   audio s/wall s  client CPU s per audio s")
    for (mode, k), (speed, cpu) in sorted(best.items(), key=lambda item: item[0][1]):
        print(f"{mode + f', k={k}':<22} {speed:>14.1f}  {cpu:>24.5f}")


if __name__ == "__main__":
    main()
