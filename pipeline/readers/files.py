"""Which files an ``input.path`` names, and each file's format by its extension."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Literal

from pipeline.errors import JobError

Format = Literal["csv", "tsv", "parquet", "jsonl"]
FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SUPPORTED = ", ".join(FORMATS)


def find_files(path: str, base_dir: Path) -> tuple[Path, ...]:
    """Resolve ``input.path`` (a file, a glob or a folder) to data files, sorted by path.

    A relative path is relative to ``base_dir`` (the job file's folder). Raises ``JobError``
    (field ``input.path``) when nothing exists or matches, or a file has an unsupported extension.
    """
    target = Path(path).expanduser()
    if not target.is_absolute():
        target = base_dir / target
    if any(char in path for char in "*?["):
        return _glob_files(path, base_dir, target)
    if target.is_dir():
        return _folder_files(path, target)
    if not target.exists():
        raise JobError(
            f"{path!r} does not exist (looked for {target}); relative paths start at the job "
            "file's folder",
            field="input.path",
        )
    file_format(target)
    return (target,)


def _glob_files(pattern: str, base_dir: Path, target: Path) -> tuple[Path, ...]:
    """Exactly the files the glob matches: one with another extension is an error."""
    absolute = Path(pattern).expanduser().is_absolute()
    full = str(target) if absolute else os.path.join(glob.escape(str(base_dir)), pattern)
    found = sorted(Path(p) for p in glob.glob(full, recursive=True))
    files = tuple(p for p in found if p.is_file())
    if not files:
        raise JobError(
            f"the glob {pattern!r} matches no file (searched {target}); check the pattern, "
            "and remember relative paths start at the job file's folder",
            field="input.path",
        )
    for file in files:
        file_format(file)
    return files


def _folder_files(path: str, folder: Path) -> tuple[Path, ...]:
    """The folder's data files, not recursive; hidden files and other extensions skipped."""
    files = tuple(
        sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in FORMATS and p.name[0] not in "._"
        )
    )
    if not files:
        raise JobError(
            f"the folder {folder} holds no data file ({_SUPPORTED}); subfolders are not "
            f"read: use a glob such as '{path.rstrip('/')}/**/*.parquet' for them",
            field="input.path",
        )
    return files


def file_format(file: Path) -> Format:
    """The format ``file``'s extension names; ``JobError`` for one not supported."""
    try:
        return FORMATS[file.suffix.lower()]
    except KeyError:
        raise JobError(
            f"{file} has an unsupported extension {file.suffix or '(none)'!r}; supported: "
            f"{_SUPPORTED} (decompress or convert it, or narrow the glob)",
            field="input.path",
        ) from None
