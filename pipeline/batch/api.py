"""The Batch API calls: upload an input file, create, retrieve, find and cancel a batch, download
an output file; each retried under the run's retry policy (``limits.py``) over ``http.py``.

Creating a batch is the one call that is not safe to repeat blindly: an attempt that timed out
may have created it. So every attempt after the first, and a run recovering a create left
without an answer by a crash, first looks for a batch of that input file (listing batches),
and adopts it rather than create a second one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.http import Http
from pipeline.limits import RetryPolicy
from pipeline.writers import storage_error

COMPLETION_WINDOW = "24h"
LIST_PAGE = 100
METADATA_VALUE_CHARS = 512  # the API's limit on a metadata value


class BatchApi:
    """The files and batches endpoints, for one run."""

    def __init__(self, http: Http, policy: RetryPolicy, metadata: dict[str, str]) -> None:
        self._http = http
        self._policy = policy
        self._metadata = {k: v[-METADATA_VALUE_CHARS:] for k, v in metadata.items()}

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async def send() -> Any:
            return (await self._http.request(method, path, body)).data

        return await self._policy.call(send, 1, [0])

    async def upload(self, path: Path, filename: str) -> str:
        """Upload an input file (purpose batch) under ``filename``; its file id."""

        async def send() -> Any:
            return (await self._http.upload("/files", {"purpose": "batch"}, path, filename)).data

        answer = await self._policy.call(send, 1, [0])
        return str(answer["id"])

    async def find_file(self, filename: str) -> str | None:
        """The id of an uploaded batch input file of this name (an upload a crash left without
        its answer), listing the files newest first; None when there is none."""

        async def send() -> str | None:
            after: str | None = None
            while True:
                query = f"/files?purpose=batch&limit={LIST_PAGE}" + (
                    f"&after={after}" if after else ""
                )
                page = (await self._http.request("GET", query)).data
                files = page.get("data") or []
                for file in files:
                    if file.get("filename") == filename:
                        return str(file["id"])
                if not page.get("has_more") or not files:
                    return None
                after = str(files[-1]["id"])

        found: str | None = await self._policy.call(send, 1, [0])
        return found

    async def create(self, file_id: str, endpoint: str, number: int) -> dict[str, Any]:
        """A batch of this input file: created, or found when an earlier attempt made it."""
        body = {
            "input_file_id": file_id,
            "endpoint": endpoint,
            "completion_window": COMPLETION_WINDOW,
            "metadata": {**self._metadata, "pipeline_file": str(number)},
        }
        tried = [False]

        async def send() -> Any:
            if tried[0]:
                found = await self._find(file_id)
                if found is not None:
                    return found
            tried[0] = True
            return (await self._http.request("POST", "/batches", body)).data

        answer: dict[str, Any] = await self._policy.call(send, 1, [0])
        return answer

    async def find(self, file_id: str) -> dict[str, Any] | None:
        """The batch made of this input file, if any (listing every batch, newest first)."""

        async def send() -> Any:
            return await self._find(file_id)

        found: dict[str, Any] | None = await self._policy.call(send, 1, [0])
        return found

    async def _find(self, file_id: str) -> dict[str, Any] | None:
        after: str | None = None
        while True:
            query = f"/batches?limit={LIST_PAGE}" + (f"&after={after}" if after else "")
            page = (await self._http.request("GET", query)).data
            batches = page.get("data") or []
            for batch in batches:
                if batch.get("input_file_id") == file_id:
                    return dict(batch)
            if not page.get("has_more") or not batches:
                return None
            after = str(batches[-1]["id"])

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", f"/batches/{batch_id}")
        return answer

    async def download(self, file_id: str, into: Path) -> int:
        """A file's content streamed to ``into`` (written under a temporary name, then moved)."""
        partial = into.with_suffix(".part")

        async def send() -> int:
            return await self._http.download(f"/files/{file_id}/content", partial)

        try:
            size: int = await self._policy.call(send, 1, [0])
            partial.replace(into)
        except OSError as exc:  # a full disk: the run stops, said so; collected by a rerun
            raise storage_error(into, exc) from None
        return size

    def redact(self, raw: bytes) -> bytes:
        return self._http.redact_bytes(raw)
