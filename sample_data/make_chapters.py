"""Write ``chapters.parquet`` next to this file: a public-domain book to narrate, row by paragraph.

The text is the opening chapters of Lewis Carroll's "Alice's Adventures in Wonderland" (1865),
kept in ``chapters.txt`` beside this script (its header says how it is laid out). It was typed
from memory, so the wording may differ from the original edition; the book is in the public
domain. Most rows are one paragraph; a few keep a stretch of paragraphs together, as a narrator
would read it in one go, which gives rows over the speech API's 4,096 characters.

Columns: ``paragraph_id`` ("ch01-p003"), ``chapter``, ``chapter_title``, ``paragraph`` (1-based
position in the chapter), ``text``, and ``voice``: "nova" for rows that open with speech, "fable"
for narration, so a job can say ``voice = "{voice}"``. Deterministic (no randomness, stdlib and
polars only): running it again gives the same rows.

Usage: python sample_data/make_chapters.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "chapters.txt"
TARGET = HERE / "chapters.parquet"
SPEECH_OPENERS = ("‘", "“")  # noqa: RUF001 - the text's opening quotation marks


@dataclass(frozen=True)
class Chapter:
    title: str
    rows: tuple[str, ...]


def parse(source: str) -> list[Chapter]:
    """Chapters from the layout ``chapters.txt`` describes in its header."""
    chapters: list[tuple[str, list[str]]] = []
    block: list[str] = []
    passage: list[str] | None = None

    def end_block() -> None:
        if block:
            text = "\n".join(block)
            if passage is not None:
                passage.append(text)
            else:
                chapters[-1][1].append(text)
            block.clear()

    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.rstrip()
        if stripped.startswith("## "):
            end_block()
            chapters.append((stripped[3:].strip(), []))
        elif stripped.startswith("#"):
            continue
        elif stripped == "[passage]":
            end_block()
            passage = []
        elif stripped == "[/passage]":
            end_block()
            if not passage:
                raise ValueError(f"line {number}: empty passage")
            chapters[-1][1].append("\n\n".join(passage))
            passage = None
        elif not stripped:
            end_block()
        elif not chapters:
            raise ValueError(f"line {number}: text before the first chapter heading")
        else:
            block.append(stripped)
    end_block()
    if passage is not None:
        raise ValueError("unterminated [passage]")
    return [Chapter(title, tuple(rows)) for title, rows in chapters]


def frame(chapters: list[Chapter]) -> pl.DataFrame:
    records = [
        {
            "paragraph_id": f"ch{number:02d}-p{position:03d}",
            "chapter": number,
            "chapter_title": chapter.title,
            "paragraph": position,
            "text": text,
            "voice": "nova" if text.startswith(SPEECH_OPENERS) else "fable",
        }
        for number, chapter in enumerate(chapters, start=1)
        for position, text in enumerate(chapter.rows, start=1)
    ]
    schema = {
        "paragraph_id": pl.String,
        "chapter": pl.Int64,
        "chapter_title": pl.String,
        "paragraph": pl.Int64,
        "text": pl.String,
        "voice": pl.String,
    }
    return pl.DataFrame(records, schema=schema)


def main() -> None:
    df = frame(parse(SOURCE.read_text(encoding="utf-8")))
    df.write_parquet(TARGET, statistics=False)
    lengths = df["text"].str.len_chars().to_list()
    summary = (
        f"{df.height} rows, {sum(lengths):,} characters, "
        f"{sum(n > 4096 for n in lengths)} over 4,096, longest {max(lengths):,}"
    )
    print(f"wrote {TARGET.name}: {summary}")  # noqa: T201


if __name__ == "__main__":
    main()
