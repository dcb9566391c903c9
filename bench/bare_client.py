"""The reference: a bare aiohttp loop posting the same bodies the pipeline sends.

    python bench/bare_client.py BASE_URL BODIES.jsonl CONCURRENCY [--limit N]

One ClientSession, a connector limited to CONCURRENCY connections, CONCURRENCY worker tasks
sharing one iterator over the bodies; each request is serialised with orjson, the answer read
and (on 200) parsed with orjson, as any real client must. No retries, no rate limits, no
journal, no output files. Prints one JSON line: requests, statuses, elapsed_s (first request
to last answer). ``--limit 0`` measures the start-up cost alone (imports, loading the bodies).
``--until-429`` cycles over the bodies until the server answers 429 (drains its bucket).
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
    base_url: str, bodies: list[object], concurrency: int, until_429: bool = False
) -> dict[str, object]:
    headers = {
        "Authorization": "Bearer sk-bench-fake",
        "Content-Type": "application/json",
        "User-Agent": "bench-bare-aiohttp",
    }
    url = base_url.rstrip("/") + "/moderations"
    statuses: Counter[int] = Counter()
    work = itertools.cycle(bodies) if until_429 else iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in work:
            if until_429 and statuses[429]:
                return
            async with session.post(url, data=orjson.dumps(body)) as response:
                raw = await response.read()
                statuses[response.status] += 1
                if response.status == 200:
                    orjson.loads(raw)

    start = time.perf_counter()
    if bodies:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed_s": round(elapsed, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("bodies")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--until-429", action="store_true")
    args = parser.parse_args()
    if not args.base_url.startswith("http://127.0.0.1:"):
        sys.exit("the bare client only targets 127.0.0.1")
    with open(args.bodies, "rb") as source:
        bodies = [orjson.loads(line) for line in source if line.strip()]
    if args.limit is not None:
        bodies = bodies[: args.limit]
    result = asyncio.run(post_all(args.base_url, bodies, args.concurrency, args.until_429))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
