"""Input datasets -> batches of rows, streamed; owns every rule about reading input files.

The modules: ``files`` (which files, which format), ``parsing`` (one file's schema and frames),
``batches`` (the files as one table, streamed) and ``key_checks`` (``inspect``: the key column).

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

from pipeline.readers.batches import check_readable, iter_batches
from pipeline.readers.files import find_files
from pipeline.readers.key_checks import InputInfo, inspect, key_frames

__all__ = ["InputInfo", "check_readable", "find_files", "inspect", "iter_batches", "key_frames"]
