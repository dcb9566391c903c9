"""Speech inputs from sample_data/chapters.parquet, written by a subprocess (polars stays out).

    python -m bench.speech_data CHAPTERS.parquet ROWS.parquet ROWS BODIES.jsonl BODIES

The paragraphs, in order (chapter, paragraph), become one stream of sentences, each carrying its
paragraph's voice. Sentences are packed greedily into texts of at most MAX characters, cut at
sentence ends: a text is emitted once the next sentence would not fit and it has at least MIN
characters. When a text is still shorter than MIN and the next sentence does not fit (a very long
sentence), that sentence is cut at its last clause break (``, ; :``) or space before the limit
and the rest starts the next text. The stream is read again from the start when it runs out
(cycling), so later texts repeat earlier ones: 200 rows of 300-600 characters hold ~100 distinct
texts. Neither the pipeline nor the emulator caches anything, so a repeat costs what a new text
does.

- ROWS.parquet: ``id`` (s0000...), ``text`` (300-600 characters), ``voice`` (the paragraph's)
  for the pipeline's speech job.
- BODIES.jsonl: BODIES CreateSpeechRequest bodies without ``response_format`` (the bare client
  adds it), ``input`` of 450-550 characters (~500), for the emulator's own speed.

Deterministic: the same file gives the same texts.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

MODEL = "gpt-4o-mini-tts"
# a sentence ends at . ! ? (then any closing quotes or brackets) followed by whitespace
_SENTENCE_END = re.compile(r"(?<=[.!?])['\")\]\u2019\u201d]*\s+")  # \u2019 \u201d: closing quotes
_CLAUSE_BREAK = re.compile(r"[,;:]\s")


def sentences(chapters: Path) -> list[tuple[str, str]]:
    """(sentence, voice) for every sentence of every paragraph, in reading order."""
    import polars as pl

    frame = pl.read_parquet(chapters).sort("chapter", "paragraph")
    out: list[tuple[str, str]] = []
    for text, voice in frame.select("text", "voice").iter_rows():
        for match in _split(" ".join(str(text).split())):
            out.append((match, str(voice)))
    return out


def _split(paragraph: str) -> list[str]:
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        parts.append(paragraph[start : match.end()].strip())
        start = match.end()
    parts.append(paragraph[start:].strip())
    return [part for part in parts if part]


def _cut(sentence: str, room: int) -> tuple[str, str]:
    """``sentence`` cut before ``room`` characters: at a clause break, else a space."""
    head = sentence[:room]
    breaks = [m.end() for m in _CLAUSE_BREAK.finditer(head)]
    at = breaks[-1] if breaks and breaks[-1] > room // 2 else head.rfind(" ") + 1
    if at <= 0:
        at = room
    return sentence[:at].strip(), sentence[at:].strip()


def pack(stream: list[tuple[str, str]], low: int, high: int) -> Iterator[tuple[str, str]]:
    """(text, voice) of low..high characters, forever (the stream cycles)."""
    text, voice = "", ""
    pending: list[tuple[str, str]] = []
    source = itertools.cycle(stream)
    while True:
        sentence, its_voice = pending.pop() if pending else next(source)
        if not text:
            voice = its_voice
        joined = f"{text} {sentence}" if text else sentence
        if len(joined) <= high:
            text = joined
            continue
        if len(text) >= low:
            yield text, voice
            text, voice = "", ""
            pending.append((sentence, its_voice))
            continue
        room = high - len(text) - (1 if text else 0)
        head, rest = _cut(sentence, room)
        yield (f"{text} {head}" if text else head), voice
        text, voice = "", ""
        if rest:
            pending.append((rest, its_voice))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("chapters", type=Path)
    parser.add_argument("rows_parquet", type=Path)
    parser.add_argument("rows", type=int)
    parser.add_argument("bodies_jsonl", type=Path)
    parser.add_argument("bodies", type=int)
    args = parser.parse_args()

    import orjson
    import polars as pl

    stream = sentences(args.chapters)
    rows = list(itertools.islice(pack(stream, 300, 600), args.rows))
    pl.DataFrame(
        {
            "id": [f"s{i:04d}" for i in range(len(rows))],
            "text": [text for text, _ in rows],
            "voice": [voice for _, voice in rows],
        }
    ).write_parquet(args.rows_parquet)
    with open(args.bodies_jsonl, "wb") as out:
        for text, voice in itertools.islice(pack(stream, 450, 550), args.bodies):
            out.write(orjson.dumps({"model": MODEL, "input": text, "voice": voice}) + b"\n")


if __name__ == "__main__":
    main()
