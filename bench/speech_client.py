"""A bare aiohttp client for the emulator's POST /v1/audio/speech: how fast the emulator speaks.

    python -m bench.speech_client BASE_URL BODIES.jsonl FORMAT CONCURRENCY REQUESTS

One ClientSession, a connector limited to CONCURRENCY connections, CONCURRENCY worker tasks
sharing one iterator that cycles over the bodies (each sent with ``response_format`` FORMAT)
until REQUESTS have been sent. Each answer is read whole and nothing is decoded while the clock
runs. Prints one JSON line: requests, statuses, elapsed_s (first request to last answer),
answer bytes, mean latency, and audio_s. The client keeps the first answer to each body (the
emulator is deterministic: the same body gives the same bytes, which is checked by length) and,
after the clock stops, measures those with ``pipeline.audio.duration_s``; audio_s is the sum over
all requests. The bench takes the emulator's own ``audio_ms_spoken`` as the figure; this is the
cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections import Counter

import aiohttp
import orjson


async def post_all(
    base_url: str, bodies: list[dict[str, object]], fmt: str, concurrency: int, requests: int
) -> tuple[dict[str, object], dict[int, bytes], Counter[int]]:
    headers = {
        "Authorization": "Bearer sk-bench-fake",
        "Content-Type": "application/json",
        "User-Agent": "bench-speech-client",
    }
    url = base_url.rstrip("/") + "/audio/speech"
    payloads = [orjson.dumps({**body, "response_format": fmt}) for body in bodies]
    work = itertools.islice(itertools.cycle(enumerate(payloads)), requests)
    statuses: Counter[int] = Counter()
    per_body: Counter[int] = Counter()
    first: dict[int, bytes] = {}
    sizes: dict[int, set[int]] = {}
    latency = 0.0
    answer_bytes = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal latency, answer_bytes
        for index, payload in work:
            sent = time.perf_counter()
            async with session.post(url, data=payload) as response:
                raw = await response.read()
            latency += time.perf_counter() - sent
            statuses[response.status] += 1
            if response.status == 200:
                per_body[index] += 1
                answer_bytes += len(raw)
                first.setdefault(index, raw)
                sizes.setdefault(index, set()).add(len(raw))

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    done = sum(statuses.values())
    result: dict[str, object] = {
        "requests": done,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed_s": round(elapsed, 4),
        "answer_bytes": answer_bytes,
        "mean_latency_ms": round(1000 * latency / max(done, 1), 2),
        "same_size_per_body": all(len(s) == 1 for s in sizes.values()),
    }
    return result, first, per_body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("bodies")
    parser.add_argument("format")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("requests", type=int)
    args = parser.parse_args()
    if not args.base_url.startswith("http://127.0.0.1:"):
        sys.exit("the speech client only targets 127.0.0.1")
    with open(args.bodies, "rb") as source:
        bodies = [orjson.loads(line) for line in source if line.strip()]
    result, first, per_body = asyncio.run(
        post_all(args.base_url, bodies, args.format, args.concurrency, args.requests)
    )
    # after the clock: measure each distinct answer once
    from pipeline import audio

    lengths = {index: audio.duration_s(data, args.format) for index, data in first.items()}
    result["audio_s"] = round(sum(lengths[i] * n for i, n in per_body.items()), 3)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
