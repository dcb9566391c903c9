"""Helpers for the batch tests: input lines, uploads, batches read back (each object checked
against the spec's schemas), files' contents, all over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from pipeline.emulator import RunningEmulator
from tests.emulator.helpers import load_validator

BATCH = load_validator("Batch")
CREATE = load_validator("CreateBatchRequest")
FILE = load_validator("OpenAIFile")
LIST = load_validator("ListBatchesResponse")
ERROR = load_validator("ErrorResponse")
START = 1_800_000_000.0  # the fake clocks' epoch
MODEL = "omni-moderation-latest"


def moderation_lines(count: int, *, prefix: str = "row") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/moderations",
            "body": {"model": MODEL, "input": f"comment number {i}: you are an idiot" * (i % 3)},
        }
        for i in range(count)
    ]


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


class Batches:
    """Calls to one emulator's /v1/files and /v1/batches; every answer is schema-checked."""

    def __init__(self, http: aiohttp.ClientSession, emulator: RunningEmulator | str) -> None:
        self.http = http
        self.url = emulator if isinstance(emulator, str) else emulator.base_url

    async def upload_raw(
        self, data: bytes, purpose: str | None = "batch", filename: str = "in.jsonl"
    ) -> tuple[int, Any]:
        form = aiohttp.FormData()
        if purpose is not None:
            form.add_field("purpose", purpose)
        form.add_field("file", data, filename=filename, content_type="application/jsonl")
        async with self.http.post(f"{self.url}/files", data=form) as response:
            body = await response.json()
            (FILE if response.status == 200 else ERROR).validate(body)
            return response.status, body

    async def upload(self, lines: list[Any]) -> str:
        status, body = await self.upload_raw(jsonl(lines))
        assert status == 200, body
        file_id: str = body["id"]
        return file_id

    async def call(
        self, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"json": body} if body is not None else {}
        async with self.http.request(method, self.url + path, params=params, **kwargs) as response:
            payload = await response.json()
        if response.status != 200:
            ERROR.validate(payload)
        return response.status, payload

    async def create(self, file_id: str, endpoint: str = "/v1/moderations", **extra: Any) -> Any:
        body = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"}
        CREATE.validate(body | extra)  # what the tests send is what the API takes
        status, batch = await self.call("POST", "/batches", body | extra)
        assert status == 200, batch
        BATCH.validate(batch)
        return batch

    async def submit(self, lines: list[Any], endpoint: str = "/v1/moderations") -> Any:
        return await self.create(await self.upload(lines), endpoint)

    async def get(self, batch_id: str) -> Any:
        status, batch = await self.call("GET", f"/batches/{batch_id}")
        assert status == 200, batch
        BATCH.validate(batch)
        return batch

    async def cancel(self, batch_id: str) -> tuple[int, Any]:
        status, batch = await self.call("POST", f"/batches/{batch_id}/cancel")
        if status == 200:
            BATCH.validate(batch)
        return status, batch

    async def content(self, file_id: str | None) -> list[dict[str, Any]]:
        """The file's JSONL lines, parsed ([] for no file)."""
        if file_id is None:
            return []
        async with self.http.get(f"{self.url}/files/{file_id}/content") as response:
            assert response.status == 200
            raw = await response.read()
        return [orjson.loads(line) for line in raw.splitlines()]

    async def outputs(self, batch: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The lines of its output file and of its error file."""
        return (
            await self.content(batch.get("output_file_id")),
            await self.content(batch.get("error_file_id")),
        )
