"""One book file from many rows' audio (PyAV): decoded to 24 kHz mono PCM row by row, encoded
once, with chapter marks and tags.

``m4b``: AAC in MP4 (FFmpeg's ``ipod`` muxer), chapters as a QuickTime chapter track and Nero
``chpl`` (both written by FFmpeg from ``set_chapters``), iTunes tags. ``mp3``: ID3v2.3 tags and
ID3 ``CHAP`` frames (FFmpeg's mp3 muxer writes one per chapter; players that read CHAP show
them). Chapter times are in milliseconds in both containers. Memory holds one row's PCM at a
time, not the book's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Final

import av
from av.codec.context import Flags

from pipeline import audio
from pipeline.audiobook_options import BookFormat

if TYPE_CHECKING:
    from av.container.core import Chapter as Mark

BOOK_SUFFIX: Final[dict[BookFormat, str]] = {"m4b": ".m4b", "mp3": ".mp3"}
# format -> (FFmpeg muxer, encoder, bit rate): 64 kbit/s mono is the usual audiobook rate
_ENCODERS: Final[dict[BookFormat, tuple[str, str, int]]] = {
    "m4b": ("ipod", "aac", 64_000),
    "mp3": ("mp3", "libmp3lame", 64_000),
}
# bitexact: no encoder version or random ids, so the same rows give the same bytes
_MUXER_OPTIONS: Final[dict[BookFormat, dict[str, str]]] = {
    "m4b": {"fflags": "+bitexact"},
    "mp3": {"fflags": "+bitexact", "id3v2_version": "3"},
}
# speed over the last bit of quality, as pipeline/audio.py encodes rows: several times faster
_ENCODER_OPTIONS: Final[dict[BookFormat, dict[str, str]]] = {
    "m4b": {"aac_coder": "fast"},
    "mp3": {"compression_level": "7"},
}
_TIME_BASE: Final = Fraction(1, audio.SAMPLE_RATE)


@dataclass(frozen=True)
class Source:
    """One row's audio file: where it is and its format (``audio.FORMATS``)."""

    path: Path
    format: str


@dataclass(frozen=True)
class Chapter:
    """A chapter: its title and the index of its first row in the book's rows."""

    title: str
    first_row: int


def row_samples(sources: Sequence[Source], loaded: Callable[[Source], bytes]) -> list[int]:
    """The number of samples (24 kHz) each source decodes to; AudioError, OSError."""
    return [len(loaded(source)) // 2 for source in sources]


def write_book(
    path: Path,
    fmt: BookFormat,
    sources: Sequence[Source],
    chapters: Sequence[Chapter],
    tags: Mapping[str, str],
) -> list[int]:
    """Write the book to ``path``: the sources' audio one after another, encoded once, with
    ``chapters`` and ``tags``; returns each source's samples (24 kHz). Raises AudioError (a
    source that does not decode), OSError (a source that cannot be read, or ``path``)."""
    muxer, codec, bit_rate = _ENCODERS[fmt]
    # ID3 is written before the first frame, so mp3 chapters must be known up front: a first
    # pass decodes and counts; MP4 writes its index last, so m4b counts while it encodes
    counts = row_samples(sources, _decode) if fmt == "mp3" else None
    with av.open(str(path), "w", format=muxer, container_options=_MUXER_OPTIONS[fmt]) as book:
        book.metadata.update(tags)
        stream = book.add_stream(
            codec, rate=audio.SAMPLE_RATE, layout="mono", options=_ENCODER_OPTIONS.get(fmt)
        )
        assert isinstance(stream, av.AudioStream)
        stream.codec_context.flags |= Flags.bitexact
        stream.codec_context.bit_rate = bit_rate
        if counts is not None:
            book.set_chapters(_marks(chapters, counts))
        sample_format = (stream.codec_context.codec.audio_formats or [stream.format])[0].name
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=audio.SAMPLE_RATE)
        samples: list[int] = []
        offset = 0
        for source in sources:
            pcm = _decode(source)
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
            frame.planes[0].update(pcm)
            frame.sample_rate = audio.SAMPLE_RATE
            frame.time_base = _TIME_BASE
            frame.pts = offset
            samples.append(len(pcm) // 2)
            offset += samples[-1]
            for converted in resampler.resample(frame):
                book.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            book.mux(stream.encode(converted))
        book.mux(stream.encode(None))
        if counts is None:
            book.set_chapters(_marks(chapters, samples))
    return samples


def _decode(source: Source) -> bytes:
    """A row's PCM; a file that is gone or unreadable is that row's fault, not the disk's."""
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise audio.AudioError(
            f"cannot read {source.path.name}: {exc.strerror}", fmt=source.format
        ) from None
    try:
        return audio.decode(data, source.format)
    except audio.AudioError as error:
        raise audio.AudioError(f"{source.path.name}: {error.message}", fmt=source.format) from None


def _marks(chapters: Sequence[Chapter], samples: Sequence[int]) -> list[Mark]:
    """The chapters as PyAV takes them: ids from 1, start and end in samples."""
    starts = [sum(samples[: chapter.first_row]) for chapter in chapters]
    ends = [*starts[1:], sum(samples)]
    return [
        {
            "id": number,
            "start": start,
            "end": end,
            "time_base": _TIME_BASE,
            "metadata": {"title": chapter.title},
        }
        for number, (chapter, start, end) in enumerate(zip(chapters, starts, ends, strict=True), 1)
    ]
