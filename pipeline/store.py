"""The results output, grown by what is new: ``results.parquet/`` is a folder of parts
(``part-00001.parquet``, ...; every flush adds one with only its new rows), ``results.csv`` and
``results.jsonl`` are one file each that a flush appends to. ``errors.<fmt>`` is rewritten whole
from the journal (errors stay there, and are few).

A key is in at most one place at any instant, and in exactly one after the next start-up:
- a part is written under ``.pipeline/tmp`` and renamed into the folder, then ONE journal
  transaction records it and takes its rows' values out of the journal; a part file the
  journal does not record is what a crash between the two left: deleted at start-up (its rows
  are still in the journal and are flushed again);
- an append is recorded as the file's committed length; start-up truncates the file back to it;
- a key sent again (``--redo-changed``, ``--retry-failed``) whose old result is in a part is taken
  out of that part (rewritten, renamed over it) before its new outcome is written anywhere;
- stored results written under another column set or types are rewritten by column name;
  a format change converts the old store; more than MAX_PARTS parts are merged into one by
  swapping the folder (absent for an instant, never doubled).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline import keys as key_contract
from pipeline.job import OUTPUT_FORMATS, OutputFormat
from pipeline.journal import RESULT_COLUMNS, STATE_DIR, Journal
from pipeline.outcomes import ERROR_SCHEMA
from pipeline.writers import (
    error_frames,
    fill,
    read_results,
    result_frame,
    storage_error,
    storing,
    table_schema,
    write_text,
)

log = logging.getLogger(__name__)
PART_ROWS = 250_000  # rows in one part at most: a flush's memory and time stay bounded
MAX_PARTS = 64  # more part files than this are merged into one
COMPACTING = "compacting"  # in .pipeline: the folder swap of a merge (not emptied at start-up)
COMPACT_PLAN = "compact_plan"  # meta: {into, from} while a merge is under way


def part_name(file: int) -> str:
    return f"part-{file:05d}.parquet"


def part_number(path: Path) -> int | None:
    """The number of a part file this module named, None for any other file."""
    digits = path.name.removeprefix("part-").removesuffix(".parquet")
    named = path.name == f"part-{digits}.parquet" and digits.isdigit() and digits.isascii()
    return int(digits) if named else None


def schema_text(schema: pl.Schema) -> str:
    """A schema as the journal records it (Arrow IPC, hex): compared exactly, read back."""
    return str(pl.DataFrame(schema=schema).to_arrow().schema.serialize().to_pybytes().hex())


def schema_from(text: str) -> pl.Schema:
    table = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(text))).empty_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


class ResultsStore:
    """The results and errors outputs of one run; ``front()`` gives the key and keep columns'
    types when a flush writes (the key's may widen as keys arrive)."""

    def __init__(
        self,
        journal: Journal,
        output_dir: Path,
        fmt: OutputFormat,
        columns: tuple[str, tuple[str, ...], pa.Schema],
        front: Callable[[], Mapping[str, pl.DataType]],
    ) -> None:
        self.journal, self.dir, self.fmt = journal, output_dir, fmt
        self.key, self.keep, self.result_schema = columns
        self._front = front
        self.results = output_dir / f"results.{fmt}"
        self.errors = output_dir / f"errors.{fmt}"
        self._errors_at = -1  # journal.errors_changed when errors were last written

    # -- start-up ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Make the results output what the journal records (see the module docstring)."""
        self._finish_compaction()
        store = self.journal.store()
        if store is None:  # nothing written by this version: the journal holds every result
            for name in OUTPUT_FORMATS:  # (a version 2 folder, an adopted one, a new one)
                _remove(self.dir / f"results.{name}", "written before results left the journal")
            return
        if store["format"] != self.fmt:
            self._convert_format(store)
        elif self.fmt == "parquet":
            recorded = self.journal.part_files()
            found = {part_number(path): path for path in self._part_paths()}
            for number, path in found.items():
                if number not in recorded:
                    _remove(path, "a part the journal never recorded (a crash left it)")
            if missing := sorted(recorded - found.keys()):
                log.warning(
                    "%s: %d part(s) the journal recorded are missing (%s...): the rows written "
                    "there are not in the journal any more; restore them from a backup",
                    self.results.name,
                    len(missing),
                    part_name(missing[0]),
                )
            self._name_foreign_files()
        elif self.results.is_file():
            self._cut_to_recorded(store["bytes"])
        for name in OUTPUT_FORMATS:
            if name != self.fmt:  # errors are written whole from the journal by the flush
                for output in ("results", "errors"):
                    _remove(self.dir / f"{output}.{name}", f"the output format is now {self.fmt}")

    def _part_paths(self) -> list[Path]:
        """The part files in the results folder (named as this module names them)."""
        if not self.results.is_dir():
            return []
        return sorted(p for p in self.results.glob("part-*.parquet") if part_number(p) is not None)

    def _name_foreign_files(self) -> None:
        """A file in the folder that is not a part: the user's, left alone, but named, since a
        reader of the folder may take it for results."""
        for path in sorted(self.results.iterdir()) if self.results.is_dir() else []:
            if part_number(path) is None:
                log.warning(
                    "%s: not a part this pipeline wrote; left alone, but readers of %s may read "
                    "it as results: move it elsewhere",
                    path.name,
                    self.results.name,
                )

    def _cut_to_recorded(self, recorded: int) -> None:
        """An append the journal never recorded is cut off; a file shorter than recorded was
        cut by hand: its missing rows cannot come back from the journal, so say so."""
        size = self.results.stat().st_size
        if size > recorded:
            log.warning("%s: cutting an append the journal never recorded", self.results.name)
            with self.results.open("r+b") as handle:
                handle.truncate(recorded)
        elif size < recorded:
            log.warning(
                "%s is %d bytes shorter than the journal recorded: rows written earlier are "
                "missing from it and are not in the journal any more; restore the file from a "
                "backup (new rows are appended after what is there)",
                self.results.name,
                recorded - size,
            )

    # -- flushing ----------------------------------------------------------------------------

    def flush(self, *, final: bool = False) -> dict[str, Path]:
        """Write what is new: moved results out first, the errors, then held results as new
        parts (one part per PART_ROWS; a mid-run flush writes one part). Raises StorageError."""
        front = self._front()
        schema = table_schema(front, self.result_schema)
        self._conform(schema)
        self._take_out_moved(schema)
        if self._errors_at != self.journal.errors_changed:
            self._errors_at = self.journal.errors_changed
            errors_schema = table_schema(front, ERROR_SCHEMA)
            frames = error_frames(self.journal, self.key, self.keep, errors_schema)
            with storing(self.errors, self.dir) as tmp:
                fill(frames, tmp, self.fmt, errors_schema)
        while self._write_part(schema) and final:
            pass
        if self.fmt == "parquet" and len(self.journal.part_files()) > MAX_PARTS:
            self._compact(schema)
        self.journal.held = self.journal.held_count()
        if final:
            self.journal.reclaim()
        return {"results": self.results, "errors": self.errors}

    def _write_part(self, schema: pl.Schema) -> bool:
        """One part of held results (or the empty first one); whether rows were written."""
        through = [0]  # the input position of the last row written
        stored = self.journal.meta(RESULT_COLUMNS) or self.result_schema.names

        def frames() -> Iterator[pl.DataFrame]:
            for through[0], chunk in self.journal.held_results(PART_ROWS):
                yield result_frame(chunk, self.key, self.keep, schema, stored)

        store = {"format": self.fmt, "schema": schema_text(schema), "bytes": 0}
        if self.fmt == "parquet":
            file = max(self.journal.part_files() | {0}) + 1
            if file > 1 and self.journal.held_count() == 0:
                return False
            self.results.mkdir(exist_ok=True)
            with storing(self.results / part_name(file), self.dir) as tmp:
                fill(frames(), tmp, "parquet", schema)
            self.journal.commit_part(file, through[0], store)
            return through[0] > 0
        size = self.results.stat().st_size if self.results.is_file() else 0
        try:
            with self.results.open("ab") as out:
                for number, frame in enumerate(frames()):
                    write_text(frame, out, self.fmt, header=size == 0 and number == 0)
                if size == 0 and not through[0] and self.fmt == "csv":
                    write_text(pl.DataFrame(schema=schema), out, "csv", header=True)
                out.flush()
                os.fsync(out.fileno())
                store["bytes"] = out.tell()
        except OSError as exc:
            with suppress(OSError):  # what the journal does not record goes
                if size == 0:
                    self.results.unlink()
                else:
                    os.truncate(self.results, size)
            raise storage_error(self.results, exc) from exc
        if through[0] or self.journal.store() is None or store["bytes"] != size:
            self.journal.commit_part(0, through[0], store)
        return through[0] > 0

    # -- rewriting what is stored -------------------------------------------------------------

    def _take_out_moved(self, schema: pl.Schema) -> None:
        """Results of keys requeued and settled again leave their parts, before anything new."""
        moved = self.journal.moved_out()
        if not moved:
            return
        gone = {key for keys in moved.values() for key in keys}
        self._rewrite(
            sorted(moved),
            lambda frame: frame.filter(~key_contract.canonical(frame[self.key]).is_in(gone)),
            schema,
        )
        self.journal.forget_moved(gone)

    def _conform(self, schema: pl.Schema) -> None:
        """Stored results written under another column set (or key type) are rewritten to
        this schema by column name: a new column is null there, a dropped one goes."""
        store = self.journal.store()
        if store is None or store["schema"] == schema_text(schema) or store["format"] != self.fmt:
            return
        log.info("the result columns or types changed: rewriting the stored results by name")
        self._rewrite(sorted(self.journal.part_files()), lambda frame: frame, schema)
        self.journal.set_store({**store, "schema": schema_text(schema), **self._size()})

    def _rewrite(
        self, files: list[int], change: Callable[[pl.DataFrame], pl.DataFrame], schema: pl.Schema
    ) -> None:
        """Each stored file read, changed, conformed to ``schema``, renamed over itself."""
        store = self.journal.store()
        assert store is not None
        old = schema_from(store["schema"])
        paths = [self.results / part_name(f) for f in files] if self.fmt == "parquet" else []
        for path in paths or [self.results]:
            if not path.is_file():
                continue
            frame = change(conformed(read_results(path, self.fmt, old), schema))
            with storing(path, self.dir) as tmp:
                fill(iter([frame]), tmp, self.fmt, schema)
        if self.fmt != "parquet":
            self.journal.set_store({**store, **self._size()})

    def _size(self) -> dict[str, int]:
        if self.fmt == "parquet" or not self.results.is_file():
            return {}
        return {"bytes": self.results.stat().st_size}

    def _convert_format(self, store: dict[str, Any]) -> None:
        """The job's output format changed: the stored results are written in the new one."""
        old_fmt: OutputFormat = store["format"]
        old_path = self.dir / f"results.{old_fmt}"
        old_schema = schema_from(store["schema"])
        files = sorted(self.journal.part_files())
        log.warning("output format is now %s: converting %s", self.fmt, old_path.name)
        if old_fmt == "parquet":
            sources = [old_path / part_name(file) for file in files]
        else:
            sources = [old_path]
        frames = (
            conformed(read_results(path, old_fmt, old_schema), old_schema)
            for path in sources
            if path.is_file()
        )
        into = 1 if self.fmt == "parquet" else 0
        target = self.results / part_name(into) if self.fmt == "parquet" else self.results
        if self.fmt == "parquet":
            shutil.rmtree(self.results, ignore_errors=True)
            self.results.mkdir()
        with storing(target, self.dir) as tmp:
            fill(frames, tmp, self.fmt, old_schema)
        new = {"format": self.fmt, "schema": store["schema"], "bytes": 0, **self._size()}
        self.journal.set_store(new, merged=files, into=into)

    def _compact(self, schema: pl.Schema) -> None:
        """Merge every part into one by swapping the folder: renamed away, the merged one in."""
        files = sorted(self.journal.part_files())
        into = files[-1] + 1
        work = self.dir / STATE_DIR / COMPACTING
        shutil.rmtree(work, ignore_errors=True)
        merged = work / self.results.name
        merged.mkdir(parents=True)
        parts = (pl.read_parquet(self.results / part_name(file)) for file in files)
        fill(parts, merged / part_name(into), "parquet", schema)  # one part in memory at a time
        self.journal.set_meta(COMPACT_PLAN, {"into": into, "from": files})
        os.rename(self.results, work / "old")
        os.rename(merged, self.results)
        self._finish_compaction()

    def _finish_compaction(self) -> None:
        """Roll a merge forward once the merged folder is in place, else back."""
        plan = self.journal.meta(COMPACT_PLAN)
        work = self.dir / STATE_DIR / COMPACTING
        if plan is not None:
            store = self.journal.store()
            assert store is not None
            if (self.results / part_name(plan["into"])).is_file():
                self.journal.set_store(store, merged=plan["from"], into=plan["into"])
            elif not self.results.exists() and (work / "old").is_dir():
                os.rename(work / "old", self.results)
            self.journal.set_meta(COMPACT_PLAN, None)
        shutil.rmtree(work, ignore_errors=True)


def conformed(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """The frame with exactly ``schema``'s columns, matched by name and cast."""
    return frame.select(
        frame[name].cast(dtype, strict=False)
        if name in frame.columns
        else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def _remove(path: Path, why: str) -> None:
    if not path.exists():
        return
    log.warning("removing %s: %s", path.name, why)
    try:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    except OSError as exc:
        raise storage_error(path, exc) from exc
