"""One HTTP client posting moderation bodies to a local server, for the client comparison.

    python bench/http_client.py CLIENT BASE_URL BODIES.jsonl CONCURRENCY [--limit N]

CLIENT is one of: httpx (0.28, its own connection pool), httpx-aiohttp (httpx's API over the
aiohttp transport of the ``httpx-aiohttp`` package), httpx2 (the client the official SDK uses
since 3.0), aiohttp (a bare ClientSession). Each runs CONCURRENCY worker tasks over one
iterator of bodies, serialises with orjson, reads every answer and parses the 200s, as
bench/bare_client.py does. Prints one JSON line: client, requests, statuses, elapsed_s.
``--limit 0`` measures the start-up cost alone (imports, loading the bodies).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

HEADERS = {
    "Authorization": "Bearer sk-bench-fake",
    "Content-Type": "application/json",
    "User-Agent": "bench-http-client",
}
Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]
CLIENTS = ("httpx", "httpx-aiohttp", "httpx2", "aiohttp")


async def _workers(post: Post, bodies: Iterator[bytes], concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()

    async def worker() -> None:
        for body in bodies:
            status, raw = await post(body)
            statuses[status] += 1
            if status == 200:
                orjson.loads(raw)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def _with_httpx_api(
    client_class: Any, url: str, bodies: Iterator[bytes], concurrency: int, **options: Any
) -> Counter[int]:
    async with client_class(headers=HEADERS, timeout=60.0, **options) as client:

        async def post(body: bytes) -> tuple[int, bytes]:
            response = await client.post(url, content=body)
            return response.status_code, response.content

        return await _workers(post, bodies, concurrency)


async def _with_aiohttp(url: str, bodies: Iterator[bytes], concurrency: int) -> Counter[int]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def post(body: bytes) -> tuple[int, bytes]:
            async with session.post(url, data=body) as response:
                return response.status, await response.read()

        return await _workers(post, bodies, concurrency)


async def post_all(client: str, url: str, bodies: list[bytes], concurrency: int) -> Counter[int]:
    work = iter(bodies)
    if client == "aiohttp":
        return await _with_aiohttp(url, work, concurrency)
    if client == "httpx2":
        import httpx2

        limits2 = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return await _with_httpx_api(httpx2.AsyncClient, url, work, concurrency, limits=limits2)
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if client == "httpx":
        return await _with_httpx_api(httpx.AsyncClient, url, work, concurrency, limits=limits)
    from httpx_aiohttp import HttpxAiohttpClient

    return await _with_httpx_api(HttpxAiohttpClient, url, work, concurrency, limits=limits)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("base_url")
    parser.add_argument("bodies")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    if not args.base_url.startswith("http://127.0.0.1:"):
        sys.exit("the client comparison only targets 127.0.0.1")
    with open(args.bodies, "rb") as source:
        bodies = [line.strip() for line in source if line.strip()]
    if args.limit is not None:
        bodies = bodies[: args.limit]
    url = args.base_url.rstrip("/") + "/moderations"
    start = time.perf_counter()
    statuses = asyncio.run(post_all(args.client, url, bodies, args.concurrency)) if bodies else {}
    elapsed = time.perf_counter() - start
    result = {
        "client": args.client,
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed_s": round(elapsed, 4),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
