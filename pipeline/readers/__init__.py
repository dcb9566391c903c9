"""Input datasets -> batches of rows, streamed; owns every rule about reading input files.

Formats, by extension (case-insensitive): ``.csv`` (comma), ``.tsv`` (tab), ``.parquet``,
``.jsonl`` / ``.ndjson`` (one JSON object per line). Rules a job author can rely on:

- A path is a file, a glob (``**`` recurses) or a folder. A folder means its data files, not
  recursive: hidden files (``.x``, ``_SUCCESS``) and other extensions are skipped, and a
  pipeline output folder placed inside it is never read back. A glob means exactly the files it
  matches, so one with another extension is an error. Files are read in sorted path order.
- One input may mix formats; all its files must have the same column names (any order) with
  the same types. CSV/TSV columns are always strings (``"00123"`` stays ``"00123"``), so a CSV
  only mixes with Parquet/JSONL files whose columns are strings too.
- CSV/TSV: header row required; UTF-8 with or without BOM; invalid UTF-8 bytes are replaced by
  U+FFFD (lossy) rather than failing the job; an empty field is null; a row whose every field
  is empty (a blank line) is skipped.
- JSONL: blank lines are skipped; column types are inferred from the first 10,000 lines;
  invalid UTF-8 bytes are replaced by U+FFFD as in CSV.
- The key column follows the key contract of ``pipeline.keys`` (its types, its values); keys are
  compared (duplicates) in their canonical text form, so the int 7 and the text "7" are one key.
- An unreadable file is a ``JobError`` naming the file and the problem; a 0-byte file too.
  A header-only CSV, or a Parquet file with no rows, is a valid empty input.

Memory does not grow with the input: CSV goes through polars' streaming engine, Parquet
through pyarrow row-group batches, JSONL through fixed-size blocks. ``inspect`` keeps a 64-bit
hash of each key (8 bytes a row, 16 while sorting) to find duplicates; nothing else is held. A
run with ``--limit`` checks only the rows it may read, so its memory follows the limit.
"""

from __future__ import annotations

import difflib
import glob
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import keys as key_contract
from pipeline.errors import JobError

__all__ = ["InputInfo", "check_readable", "find_files", "inspect", "iter_batches", "key_frames"]

Format = Literal["csv", "tsv", "parquet", "jsonl"]
_FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SUPPORTED = ", ".join(_FORMATS)
_JSONL_BLOCK_BYTES = 8 << 20
_JSONL_INFER_LINES = 10_000
_KEY_PASS_ROWS = 100_000
_READ_ERRORS = (pl.exceptions.PolarsError, pa.ArrowException, OSError)

# polars reads CSV in 32 MiB chunks and prefetches several (~450 MB peak); 1 MiB chunks read
# as fast at ~100 MB. Read by polars at each scan; a value the user set wins.
os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(1 << 20))


@dataclass(frozen=True)
class InputInfo:
    """What ``inspect`` learnt about an input: its files, columns and row count."""

    files: tuple[Path, ...]
    schema: dict[str, pl.DataType]
    rows: int
    key_family: key_contract.Family = "text"


def find_files(path: str, base_dir: Path) -> tuple[Path, ...]:
    """Resolve ``input.path`` (a file, a glob or a folder) to data files, sorted by path.

    A relative path is relative to ``base_dir`` (the job file's folder). Raises ``JobError``
    (field ``input.path``) when nothing exists or matches, or a file has an unsupported extension.
    """
    target = Path(path).expanduser()
    if not target.is_absolute():
        target = base_dir / target
    if any(char in path for char in "*?["):
        absolute = Path(path).expanduser().is_absolute()
        pattern = str(target) if absolute else os.path.join(glob.escape(str(base_dir)), path)
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        files = tuple(p for p in found if p.is_file())
        if not files:
            raise JobError(
                f"the glob {path!r} matches no file (searched {target}); check the pattern, "
                "and remember relative paths start at the job file's folder",
                field="input.path",
            )
        for file in files:
            _format(file)
        return files
    if target.is_dir():
        files = tuple(
            sorted(
                p
                for p in target.iterdir()
                if p.is_file() and p.suffix.lower() in _FORMATS and p.name[0] not in "._"
            )
        )
        if not files:
            raise JobError(
                f"the folder {target} holds no data file ({_SUPPORTED}); subfolders are not "
                f"read: use a glob such as '{path.rstrip('/')}/**/*.parquet' for them",
                field="input.path",
            )
        return files
    if not target.exists():
        raise JobError(
            f"{path!r} does not exist (looked for {target}); relative paths start at the job "
            "file's folder",
            field="input.path",
        )
    _format(target)
    return (target,)


def inspect(files: tuple[Path, ...], key: str, *, check_rows: int | None = None) -> InputInfo:
    """Read the schemas, count the rows and check that ``key`` names every row exactly once.

    Streams the key column only. Raises ``JobError``: an unreadable or empty file, files whose
    columns disagree (``input.path``), a missing key column, a key type or key value the key
    contract (``pipeline.keys``) refuses, null keys or duplicate keys (``input.key``). Keys are
    compared in their canonical text form. With ``check_rows`` only the keys of the first
    ``check_rows`` rows are checked (a run that reads no further need not read every key of a
    huge input), and Parquet rows are counted from the files' metadata.
    """
    schema = _common_schema(files)
    if key not in schema:
        raise JobError(_missing_column_message(key, schema), field="input.key")
    dtype = schema[key]
    family = _key_family(files, key, dtype)
    hashes: list[pl.Series] = []
    rows = nulls = 0
    first_null: tuple[Path, int] | None = None
    malformed: dict[str, tuple[int, Path, int, str]] = {}  # what -> (rows, file, row, example)
    for file, start, keys in key_frames(files, key, dtype, check_rows):
        rows += len(keys)
        for problem in key_contract.problems(keys):
            row = start + problem.first_index + 1
            count, at, line, example = malformed.get(problem.what, (0, file, row, problem.example))
            malformed[problem.what] = (count + problem.rows, at, line, example)
        if keys.null_count():
            nulls += keys.null_count()
            if first_null is None:
                first_null = (file, start + int(keys.is_null().arg_true()[0]) + 1)
            keys = keys.drop_nulls()
        hashes.append(keys.hash(seed=0))
    if first_null is not None:
        file, row = first_null
        raise JobError(
            f"the key column {key!r} is empty in {nulls} row(s), the first in data row {row} "
            f"of {file}; every row needs a key",
            field="input.key",
        )
    _check_malformed(key, malformed)
    if hashes:
        ordered = pl.concat(hashes)
        hashes.clear()
        # Sorting finds repeats in place; is_duplicated's hash table costs ~70 bytes a row.
        ordered.sort(in_place=True)
        repeated = ordered.filter((ordered == ordered.shift(1)).fill_null(False)).unique()
        if len(repeated):
            _check_duplicates(files, key, dtype, repeated, check_rows)
    if check_rows is not None:
        rows = sum(_count_rows(file, key, dtype) for file in files)
    return InputInfo(files=files, schema=schema, rows=rows, key_family=family)


def _key_family(files: tuple[Path, ...], key: str, dtype: pl.DataType) -> key_contract.Family:
    """The key's family; a refused type is shown with its first value as an example."""
    try:
        return key_contract.family(key, dtype)
    except JobError:
        example = None
        for frame in _read_file(files[0], {key: dtype}, 100):
            values = frame.get_column(key).drop_nulls()
            example = values.to_list()[0] if len(values) else None
            break
        raise key_contract.family_error(key, dtype, example) from None


def _check_malformed(key: str, malformed: dict[str, tuple[int, Path, int, str]]) -> None:
    if not malformed:
        return
    what, (count, file, row, example) = next(iter(malformed.items()))
    others = "; other malformed keys too" if len(malformed) > 1 else ""
    raise JobError(
        f"the key column {key!r} has {count} malformed key(s) ({what}), the first "
        f"{example[:80]!r} in data row {row} of {file}{others}; a key must be a plain value: "
        "fix or strip the keys "
        "(a CSV saved with Windows line ends and a key as its last column leaves '\\r' on it)",
        field="input.key",
    )


def key_frames(
    files: tuple[Path, ...], key: str, dtype: pl.DataType, max_rows: int | None = None
) -> Iterator[tuple[Path, int, pl.Series]]:
    """(file, rows of that file before, canonical keys) over the first ``max_rows`` rows (all:
    None), streamed: the key column alone."""
    left = max_rows
    for file in files:
        start = 0
        for frame in _read_file(file, {key: dtype}, _KEY_PASS_ROWS):
            if left is not None:
                if left <= 0:
                    return
                frame = frame.head(left)
                left -= frame.height
            yield file, start, key_contract.canonical(frame.get_column(key))
            start += frame.height


def _count_rows(file: Path, key: str, dtype: pl.DataType) -> int:
    if _format(file) == "parquet":
        try:
            return int(pq.ParquetFile(file).metadata.num_rows)
        except _READ_ERRORS as exc:
            raise _unreadable(file, "parquet", exc) from exc
    return sum(frame.height for frame in _read_file(file, {key: dtype}, _KEY_PASS_ROWS))


def check_readable(files: tuple[Path, ...], columns: list[str]) -> None:
    """Read every value of ``columns`` once and drop it, so a file corrupt in the middle (a bad
    page, a broken line) is found before any request is paid for; ``JobError`` names the file.

    ``inspect`` reads only the key column; this reads the others the run will need.
    """
    schema = _common_schema(files)
    wanted = {column: schema[column] for column in columns if column in schema}
    if wanted:
        for file in files:
            for _ in _read_file(file, wanted, _KEY_PASS_ROWS):
                pass


def iter_batches(
    files: tuple[Path, ...], columns: list[str], batch_size: int = 10_000
) -> Iterator[pl.DataFrame]:
    """Stream ``columns`` of all files, in file order, as frames of ``batch_size`` rows.

    Every batch but the last has exactly ``batch_size`` rows (batches span file boundaries);
    empty input yields nothing. Columns come in the order given. Raises ``JobError`` for a
    missing column, disagreeing files or a file that cannot be parsed.
    """
    if batch_size < 1 or not columns:
        raise ValueError(f"need a batch_size >= 1 and some columns: {batch_size}, {columns}")
    schema = _common_schema(files)
    for column in columns:
        if column not in schema:
            raise JobError(_missing_column_message(column, schema))
    wanted = {column: schema[column] for column in columns}  # a column named twice comes once
    frames = (frame for file in files for frame in _read_file(file, wanted, batch_size))
    yield from _rebatch(frames, batch_size)


def _format(file: Path) -> Format:
    try:
        return _FORMATS[file.suffix.lower()]
    except KeyError:
        raise JobError(
            f"{file} has an unsupported extension {file.suffix or '(none)'!r}; supported: "
            f"{_SUPPORTED} (decompress or convert it, or narrow the glob)",
            field="input.path",
        ) from None


def _common_schema(files: tuple[Path, ...]) -> dict[str, pl.DataType]:
    """The schema of the first file, after checking every other file has the same one."""
    if not files:
        raise JobError("the input has no file", field="input.path")
    first = files[0]
    schema = _file_schema(first)
    for file in files[1:]:
        other = _file_schema(file)
        if set(other) != set(schema):
            missing = ", ".join(c for c in schema if c not in other) or "none"
            extra = ", ".join(c for c in other if c not in schema) or "none"
            raise JobError(
                f"{file} does not have the columns of {first} (missing: {missing}; extra: "
                f"{extra}); all files of one input need the same columns",
                field="input.path",
            )
        for column, dtype in schema.items():
            if other[column] != dtype:
                raise JobError(
                    f"column {column!r} is {dtype} in {first} but {other[column]} in {file}; "
                    "all files of one input need the same column types",
                    field="input.path",
                )
    return schema


def _file_schema(file: Path) -> dict[str, pl.DataType]:
    fmt = _format(file)
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
    except _READ_ERRORS as exc:
        raise _unreadable(file, fmt, exc) from exc


def _read_file(
    file: Path, columns: dict[str, pl.DataType], batch_size: int
) -> Iterator[pl.DataFrame]:
    """One file's ``columns`` as frames of roughly ``batch_size`` rows; errors as JobError."""
    fmt = _format(file)
    frames = _parse_file(file, fmt, columns, batch_size)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except _READ_ERRORS as exc:
            raise _unreadable(file, fmt, exc) from exc
        yield frame


def _parse_file(
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
        f"cannot read {file}: lines {first_line}-{last_line}: {_reason(exc)} (column types are "
        f"inferred from the first {_JSONL_INFER_LINES:,} lines; make the values agree)",
        field="input.path",
    )


def _unreadable(file: Path, fmt: Format, exc: Exception) -> JobError:
    return JobError(f"cannot read {file} as {fmt.upper()}: {_reason(exc)}", field="input.path")


def _reason(exc: Exception) -> str:
    """The useful part of a library's error text, on one line."""
    text = str(exc)
    # polars appends generic tuning hints after the real cause; keep the cause.
    if "Original error:" in text:
        text = text.split("Original error:", 1)[1]
    else:
        text = text.split("\n\n", 1)[0]
    text = " ".join(text.replace("`", "").split())
    return text[:300] or type(exc).__name__


def _missing_column_message(column: str, schema: dict[str, pl.DataType]) -> str:
    available = ", ".join(schema) or "(none)"
    close = difflib.get_close_matches(column, list(schema), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"the input has no column {column!r}; its columns are: {available}{hint}"


def _check_duplicates(
    files: tuple[Path, ...],
    key: str,
    dtype: pl.DataType,
    repeated: pl.Series,
    max_rows: int | None,
) -> None:
    """Second pass over the key column, only for the keys whose hashes collided."""
    suspects: list[pl.Series] = []
    for _, _, keys in key_frames(files, key, dtype, max_rows):
        keys = keys.drop_nulls()
        suspects.append(keys.filter(keys.hash(seed=0).is_in(repeated.implode())))
    values = pl.concat(suspects)
    duplicated = values.filter(values.is_duplicated())
    if not len(duplicated):
        return  # distinct keys that merely share a hash
    distinct = duplicated.unique(maintain_order=True)
    quoted = key_contract.family(key, dtype) == "text"  # integers and dates show unquoted
    shown = ", ".join(repr(v) if quoted else v for v in distinct.head(3).to_list())
    raise JobError(
        f"the key column {key!r} has {len(distinct)} value(s) used by more than one row "
        f"({len(duplicated)} rows in all), e.g. {shown}; keys must be unique because results "
        "join back on them",
        field="input.key",
    )


def _rebatch(frames: Iterable[pl.DataFrame], size: int) -> Iterator[pl.DataFrame]:
    pending: list[pl.DataFrame] = []
    held = 0
    for frame in frames:
        while frame.height:
            take = min(size - held, frame.height)
            pending.append(frame.slice(0, take))
            held += take
            frame = frame.slice(take)
            if held == size:
                yield pl.concat(pending, rechunk=True)
                pending, held = [], 0
    if held:
        yield pl.concat(pending, rechunk=True)
