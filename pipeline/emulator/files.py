"""POST /v1/files, GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content, DELETE.

An upload (multipart: ``file`` and ``purpose``) is streamed to a temporary folder the emulator
makes when it starts and removes when it stops, never held in memory; content is streamed back
from disk. Batches write their output and error files into the same store (purpose
``batch_output``). Limits as the API states them: 512 MB a file, 200 MB for ``purpose=batch``.
The answer's body faults (``truncate``...) do not cut a file's content: it is streamed.
The folder is named for the emulator's pid: one killed with its files in place (``kill -9`` of a
process running an embedded emulator) leaves it behind, and the next emulator removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import BodyPartReader, web

from pipeline.emulator import checks
from pipeline.emulator.config import EmulatorConfig, batches_clock
from pipeline.emulator.limits import admit
from pipeline.emulator.replies import ApiReply, error_body, json_response

PATH: Final[str] = "/v1/files"
UPLOAD_PURPOSES: Final[tuple[str, ...]] = (
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
)
MAX_FILE_BYTES: Final[int] = 512 * 1024 * 1024
MAX_BATCH_FILE_BYTES: Final[int] = 200 * 1024 * 1024
_CHUNK: Final[int] = 1024 * 1024
_FOLDER_PREFIX: Final[str] = "pipeline-emulator-files-"
_NOTE: Final[str] = checks.NOTE


@dataclass(frozen=True)
class StoredFile:
    """One file on disk and what the API says about it."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    path: Path

    def object(self) -> dict[str, Any]:
        """The OpenAIFile object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


def file_id() -> str:
    return f"file-{os.urandom(12).hex()}"


class FileStore:
    """Files by id, their bytes in a temporary folder that exists while the app runs."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._root: Path | None = None
        self._files: dict[str, StoredFile] = {}

    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("the file store is used before the app started")
        return self._root

    async def folder(self, _: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: the folder is made at start-up and removed at shutdown;
        folders left by emulators that were killed (their pid is gone) are removed first."""
        _sweep_orphans()
        self._root = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-"))
        yield
        shutil.rmtree(self._root, ignore_errors=True)

    def new_path(self, fid: str) -> Path:
        """Where the bytes of file ``fid`` go (written by the caller, then ``add``-ed)."""
        return self.root / fid

    def add(self, fid: str, filename: str, purpose: str) -> StoredFile:
        """Record file ``fid`` whose bytes were written to ``new_path(fid)``."""
        path = self.new_path(fid)
        stored = StoredFile(fid, filename, purpose, path.stat().st_size, int(self.clock()), path)
        self._files[fid] = stored
        return stored

    def get(self, fid: str) -> StoredFile:
        """The file, or a 404 as the API gives."""
        found = self._files.get(fid)
        if found is None:
            message = f"No such File object: {fid} {_NOTE}"
            raise ApiReply(404, error_body(message, "invalid_request_error", param="id"))
        return found

    def find(self, fid: str) -> StoredFile | None:
        return self._files.get(fid)

    def newest_first(self, purpose: str | None) -> list[StoredFile]:
        found = reversed(self._files.values())
        return [f for f in found if purpose is None or f.purpose == purpose]

    def delete(self, fid: str) -> None:
        stored = self.get(fid)
        del self._files[fid]
        with contextlib.suppress(FileNotFoundError):
            stored.path.unlink()


FILES = web.AppKey("files", FileStore)


def _sweep_orphans() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(_FOLDER_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


async def _upload(request: web.Request, store: FileStore) -> StoredFile:
    """Stream a multipart upload to disk; 400 for a missing part, a bad purpose, a file too big."""
    if not request.content_type.startswith("multipart/"):
        raise checks.fail(None, "Uploads must be sent as multipart/form-data.")
    fid = file_id()
    target = store.new_path(fid)
    purpose: str | None = None
    filename: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart: not a field of this API
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file":
                filename = part.filename or "file"
                await _save(part, target)
            else:
                await part.release()  # expires_after[...] and the like: accepted, not kept
        _check_upload(purpose, filename, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise
    assert purpose is not None and filename is not None  # _check_upload says so
    return store.add(fid, filename, purpose)


async def _save(part: BodyPartReader, target: Path) -> None:
    written = 0
    with target.open("wb") as out:
        while chunk := await part.read_chunk(_CHUNK):
            written += len(chunk)
            if written > MAX_FILE_BYTES:
                raise checks.fail(
                    "file", f"File is too large: the limit is {MAX_FILE_BYTES} bytes."
                )
            out.write(chunk)


def _check_upload(purpose: str | None, filename: str | None, target: Path) -> None:
    if filename is None:
        raise checks.fail("file", "Missing required parameter: 'file'.")
    if purpose is None:
        raise checks.fail("purpose", "Missing required parameter: 'purpose'.")
    if purpose not in UPLOAD_PURPOSES:
        listed = ", ".join(f"'{p}'" for p in UPLOAD_PURPOSES)
        raise checks.fail(
            "purpose",
            f"Invalid value: '{purpose}'. Supported values are: {listed}.",
            "invalid_value",
        )
    size = target.stat().st_size
    if purpose == "batch" and size > MAX_BATCH_FILE_BYTES:
        raise checks.fail(
            "file",
            f"A batch input file can be at most {MAX_BATCH_FILE_BYTES} bytes; this one is {size}.",
        )


def _page(request: web.Request, store: FileStore) -> dict[str, Any]:
    """GET /v1/files: newest first, ``purpose`` filters, ``limit`` (1-10,000) and ``after``."""
    raw = request.query.get("limit", "10000")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise checks.fail("limit", f"Invalid 'limit': expected 1 to 10000, not {raw!r}.")
    found = store.newest_first(request.query.get("purpose"))
    after = request.query.get("after")
    if after is not None:
        ids = [f.id for f in found]
        if after not in ids:
            raise checks.fail("after", f"No such File object: {after}.")
        found = found[ids.index(after) + 1 :]
    data = [f.object() for f in found[: int(raw)]]
    page: dict[str, Any] = {"object": "list", "data": data, "has_more": len(found) > int(raw)}
    if data:
        page |= {"first_id": data[0]["id"], "last_id": data[-1]["id"]}
    return page


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add the /v1/files routes and the store batches write their files to."""
    store = FileStore(batches_clock(config))
    app[FILES] = store

    async def create(request: web.Request) -> web.StreamResponse:
        admit(request, 0)
        return json_response((await _upload(request, store)).object())

    async def get(request: web.Request) -> web.StreamResponse:
        admit(request, 0)
        return json_response(store.get(request.match_info["file_id"]).object())

    async def listing(request: web.Request) -> web.StreamResponse:
        admit(request, 0)
        return json_response(_page(request, store))

    async def content(request: web.Request) -> web.StreamResponse:
        admit(request, 0)
        stored = store.get(request.match_info["file_id"])
        return web.FileResponse(stored.path, headers={"Content-Type": "application/octet-stream"})

    async def delete(request: web.Request) -> web.StreamResponse:
        admit(request, 0)
        fid = request.match_info["file_id"]
        store.delete(fid)
        return json_response({"id": fid, "object": "file", "deleted": True})

    app.cleanup_ctx.append(store.folder)
    app.router.add_post(PATH, create)
    app.router.add_get(PATH, listing)
    app.router.add_get(PATH + "/{file_id}", get)
    app.router.add_get(PATH + "/{file_id}/content", content)
    app.router.add_delete(PATH + "/{file_id}", delete)
