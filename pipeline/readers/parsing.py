"""One input file, parsed: its schema and its frames, per format, with errors that name it.

CSV goes through polars' streaming engine, Parquet through pyarrow row-group batches, JSONL
through fixed-size blocks of whole lines, so memory does not grow with the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import JobError
from pipeline.readers.files import Format, file_format

_JSONL_INFER_LINES = 10_000
_JSONL_BLOCK_BYTES = 8 << 20
READ_ERRORS = (pl.exceptions.PolarsError, pa.ArrowException, OSError)

# polars reads CSV in 32 MiB chunks and prefetches several (~450 MB peak); 1 MiB chunks read
# as fast at ~100 MB. Read by polars at each scan; a value the user set wins.
os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(1 << 20))


def file_schema(file: Path) -> dict[str, pl.DataType]:
    """``file``'s columns and types; ``JobError`` for an empty, UTF-16 or unreadable file."""
    fmt = file_format(file)
    try:
        with file.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise JobError(f"cannot open {file}: {exc.strerror or exc}", field="input.path") from exc
    if not head:
        raise JobError(f"{file} is empty (0 bytes); remove it or fill it", field="input.path")
    if fmt != "parquet" and head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise JobError(f"{file} is UTF-16; save it as UTF-8", field="input.path")
    try:
        if fmt == "parquet":
            arrow_schema = pq.ParquetFile(file).schema_arrow
            return dict(_from_arrow(arrow_schema.empty_table()).schema)
        if fmt == "jsonl":
            return _jsonl_schema(file)
        return dict(_scan_csv(file, fmt).collect_schema())
    except READ_ERRORS as exc:
        raise unreadable_error(file, fmt, exc) from exc


def read_file(
    file: Path, columns: dict[str, pl.DataType], batch_size: int
) -> Iterator[pl.DataFrame]:
    """One file's ``columns`` as frames of roughly ``batch_size`` rows; errors as JobError."""
    fmt = file_format(file)
    frames = _parse_frames(file, fmt, columns, batch_size)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except READ_ERRORS as exc:
            raise unreadable_error(file, fmt, exc) from exc
        yield frame


def _parse_frames(
    file: Path, fmt: Format, columns: dict[str, pl.DataType], batch_size: int
) -> Iterator[pl.DataFrame]:
    if fmt == "jsonl":
        yield from _read_jsonl(file, columns)
    elif fmt == "parquet":
        # pre_buffer (pyarrow's default) reads the whole file ahead: memory would grow with it.
        parquet = pq.ParquetFile(file, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=batch_size, columns=list(columns)):
            yield _from_arrow(batch)
    else:
        lazy = _scan_csv(file, fmt)
        # A blank line parses as a row of nulls; it carries no data, so it is not a row.
        lazy = lazy.filter(pl.any_horizontal(pl.all().is_not_null())).select(list(columns))
        yield from lazy.collect_batches(chunk_size=batch_size, engine="streaming")


def _scan_csv(file: Path, fmt: Format) -> pl.LazyFrame:
    return pl.scan_csv(
        file,
        separator="\t" if fmt == "tsv" else ",",
        infer_schema=False,
        encoding="utf8-lossy",
        glob=False,
    )


def _from_arrow(data: pa.Table | pa.RecordBatch) -> pl.DataFrame:
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)  # a table or batch always converts to a frame
    return frame


def _jsonl_schema(file: Path) -> dict[str, pl.DataType]:
    lines: list[bytes] = []
    size = 0
    with file.open("rb") as handle:
        objects = 0  # blank lines stay in the sample so error line numbers match the file
        for line in handle:
            lines.append(line if line.endswith(b"\n") else line + b"\n")
            objects += bool(line.strip())
            size += len(line)
            if objects >= _JSONL_INFER_LINES or size >= _JSONL_BLOCK_BYTES:
                break
    if not objects:
        raise JobError(f"{file} holds no JSON object; remove it or fill it", field="input.path")
    sample = _lossy_utf8(b"".join(lines).removeprefix(b"\xef\xbb\xbf"))
    try:
        return dict(pl.read_ndjson(io.BytesIO(sample), infer_schema_length=None).schema)
    except pl.exceptions.PolarsError as exc:
        raise _jsonl_error(file, sample, 1, exc) from exc


def _read_jsonl(file: Path, columns: dict[str, pl.DataType]) -> Iterator[pl.DataFrame]:
    """Parse the file in blocks of whole lines, so memory stays at one block."""
    line_number = 1
    pending = bytearray()
    with file.open("rb") as handle:
        if handle.read(3) != b"\xef\xbb\xbf":
            handle.seek(0)
        while True:
            chunk = handle.read(_JSONL_BLOCK_BYTES)
            if not chunk and not pending:
                return
            pending += chunk
            cut = len(pending) if not chunk else pending.rfind(b"\n") + 1
            if cut == 0:
                continue
            block = _lossy_utf8(bytes(pending[:cut]))
            del pending[:cut]
            if block.strip():
                try:
                    yield pl.read_ndjson(io.BytesIO(block), schema=columns)
                except pl.exceptions.PolarsError as exc:
                    raise _jsonl_error(file, block, line_number, exc) from exc
            line_number += block.count(b"\n")
            if not chunk:
                return


def _lossy_utf8(data: bytes) -> bytes:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")
    return data


def _jsonl_error(file: Path, block: bytes, first_line: int, exc: Exception) -> JobError:
    """Point at the first bad line of ``block`` if one is not a JSON object; else the block."""
    for offset, line in enumerate(block.split(b"\n")):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as decode_error:
            reason = f"invalid JSON at column {decode_error.colno}: {decode_error.msg}"
        else:
            if isinstance(value, dict):
                continue
            reason = f"expected a JSON object, found {type(value).__name__}"
        return JobError(
            f"cannot read {file}: line {first_line + offset}: {reason}", field="input.path"
        )
    last_line = first_line + max(block.count(b"\n") - 1, 0)
    return JobError(
        f"cannot read {file}: lines {first_line}-{last_line}: {_library_reason(exc)} (column "
        f"types are inferred from the first {_JSONL_INFER_LINES:,} lines; make the values agree)",
        field="input.path",
    )


def unreadable_error(file: Path, fmt: Format, exc: Exception) -> JobError:
    """The ``JobError`` for a file the library could not parse, with the library's reason."""
    return JobError(
        f"cannot read {file} as {fmt.upper()}: {_library_reason(exc)}", field="input.path"
    )


def _library_reason(exc: Exception) -> str:
    """The useful part of a library's error text, on one line."""
    text = str(exc)
    # polars appends generic tuning hints after the real cause; keep the cause.
    if "Original error:" in text:
        text = text.split("Original error:", 1)[1]
    else:
        text = text.split("\n\n", 1)[0]
    text = " ".join(text.replace("`", "").split())
    return text[:300] or type(exc).__name__
