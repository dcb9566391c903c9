"""Audio in the six formats of OpenAI's speech endpoint: encode, decode, measure and join (PyAV).

The speech client's: it checks and joins what the API sent (the emulator encodes with its own
``pipeline/emulator/encoder.py``, so the check is not of its own output). The API answers
24 kHz mono audio as ``mp3``, ``opus`` (Ogg Opus), ``aac`` (ADTS),
``flac``, ``wav`` or ``pcm`` (raw signed 16-bit little-endian, no header). Inside, audio is always
that ``pcm``: ``decode`` returns it, ``encode`` takes it.

``decode`` refuses audio that is not complete. What a cut-off file still gives away, by format:

- ``wav``: always detectable: the data chunk is shorter than its header says (unless the header
  holds the 0 / 0xFFFFFFFF "unknown size" of a streamed WAV).
- ``flac``: always detectable when STREAMINFO counts the samples (FFmpeg and libFLAC write the
  count when they can seek back): fewer samples decode than it declares, or the last frame fails
  to decode. A streamed FLAC that declares 0 samples, cut at a frame boundary, is not detectable.
- ``opus``: always detectable: every Ogg page must be whole and the last one must end the stream.
- ``mp3``: with a Xing/Info header (FFmpeg and LAME write one) a file shorter than its declared
  byte count is refused; without one, only a cut inside a frame is: a cut at a frame boundary
  leaves valid, shorter audio.
- ``aac``: a cut inside an ADTS frame is refused; a cut at a frame boundary is valid shorter audio
  (ADTS declares no length).
- ``pcm``: only an odd byte count (half a sample) is detectable.

Encoder delay: decoded ``mp3`` (LAME tag), ``opus`` (pre-skip and end granule), ``flac``, ``wav``
and ``pcm`` have exactly the samples encoded. ADTS cannot say how much priming its AAC carries, so
decoded ``aac`` is 1024 samples of encoder priming plus padding to a 1024-sample frame longer:
43 to 85 ms at 24 kHz. An ``mp3`` without a LAME tag (or read by a decoder that ignores it)
is up to ~70 ms longer: 529 samples of encoder delay plus the padding of the last frame.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Final

import av
import av.error
from av.codec.context import Flags

FORMATS: Final[tuple[str, ...]] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SAMPLE_RATE: Final[int] = 24_000

# format -> (FFmpeg muxer/demuxer, encoder, bit rate or 0 for lossless)
_ENCODERS: Final[dict[str, tuple[str, str, int]]] = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "opus": ("ogg", "libopus", 32_000),
    "aac": ("adts", "aac", 64_000),
    "flac": ("flac", "flac", 0),
    "wav": ("wav", "pcm_s16le", 0),
}
# speed over the last bit of quality (speech): 2x (mp3), 4x (opus), 5x (aac) faster
_ENCODER_OPTIONS: Final[dict[str, dict[str, str]]] = {
    "mp3": {"compression_level": "7"},
    "opus": {"compression_level": "5"},
    "aac": {"aac_coder": "fast"},
}
_DEMUXERS: Final[dict[str, str]] = {
    "mp3": "mp3",
    "opus": "ogg",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
}
# bitexact: no version strings, fixed Ogg serial numbers: the same audio gives the same bytes
_MUXER_OPTIONS: Final[dict[str, dict[str, str]]] = {
    "mp3": {"fflags": "+bitexact", "id3v2_version": "0"},
}
_DEFAULT_MUXER_OPTIONS: Final[dict[str, str]] = {"fflags": "+bitexact"}


class AudioError(Exception):
    """Bytes that are not complete, decodable audio of the format they claim to be."""

    def __init__(self, message: str, *, fmt: str) -> None:
        self.fmt = fmt
        self.message = message
        super().__init__(f"{fmt}: {message}")


def encode(pcm: bytes, fmt: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    """``pcm`` (s16le mono at ``sample_rate`` Hz) as a complete ``fmt`` file at 24 kHz.

    Deterministic: the same samples give the same bytes. Raises ValueError for an unknown
    format, an odd number of bytes, or no samples for a format other than ``pcm`` (ADTS, for
    one, cannot hold an empty stream).
    """
    _check_format(fmt)
    if len(pcm) % 2:
        raise ValueError(f"s16le PCM has an even number of bytes, not {len(pcm)}")
    if not pcm and fmt != "pcm":
        raise ValueError(f"no samples to encode as {fmt}")
    if sample_rate != SAMPLE_RATE:
        pcm = _resample(pcm, sample_rate)
    if fmt == "pcm":
        return bytes(pcm)
    container_format, codec, bit_rate = _ENCODERS[fmt]
    out = io.BytesIO()
    options = _MUXER_OPTIONS.get(fmt, _DEFAULT_MUXER_OPTIONS)
    with av.open(out, "w", format=container_format, container_options=options) as container:
        stream = container.add_stream(
            codec, rate=SAMPLE_RATE, layout="mono", options=_ENCODER_OPTIONS.get(fmt)
        )
        assert isinstance(stream, av.AudioStream)
        context = stream.codec_context
        context.flags |= Flags.bitexact
        if bit_rate:
            context.bit_rate = bit_rate
        sample_format = (context.codec.audio_formats or [context.format])[0].name  # it takes
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=SAMPLE_RATE)
        frames = resampler.resample(_frame(pcm, SAMPLE_RATE))
        for frame in [*frames, *resampler.resample(None)]:
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def decode(data: bytes, fmt: str) -> bytes:
    """The audio in ``data`` as s16le mono PCM at 24 kHz (resampled and downmixed if need be).

    Raises AudioError when ``data`` is not complete, decodable ``fmt`` audio (see the module
    docstring for which truncations each format reveals); ValueError for an unknown format.
    """
    _check_format(fmt)
    if fmt == "pcm":
        if len(data) % 2:
            raise AudioError(f"{len(data)} bytes is not a whole number of samples", fmt=fmt)
        return bytes(data)
    if not data:
        raise AudioError("no data", fmt=fmt)
    _STRUCTURE_CHECKS[fmt](data)
    pcm, native_samples = _decode(data, fmt)
    if fmt == "flac":
        declared = _flac_total_samples(data)
        if declared and native_samples < declared:
            raise AudioError(
                f"truncated: STREAMINFO declares {declared} samples, {native_samples} decoded",
                fmt=fmt,
            )
    return pcm


def duration_s(data: bytes, fmt: str) -> float:
    """Seconds of audio in ``data``, counted from the decoded samples (not container metadata).

    Raises AudioError as ``decode`` does.
    """
    return len(decode(data, fmt)) / 2 / SAMPLE_RATE


def join(chunks: Sequence[bytes], fmt: str) -> bytes:
    """One ``fmt`` file whose audio is ``chunks`` (files of ``fmt``) one after another.

    A single chunk comes back unchanged; ``pcm`` chunks are concatenated; other formats are
    decoded, concatenated and encoded once (so AAC keeps each chunk's priming silence).
    Raises AudioError for a chunk that does not decode, ValueError for no chunks.
    """
    _check_format(fmt)
    if not chunks:
        raise ValueError("join needs at least one chunk")
    if len(chunks) == 1:
        return bytes(chunks[0])
    pcm = b"".join(decode(chunk, fmt) for chunk in chunks)
    return pcm if fmt == "pcm" else encode(pcm, fmt)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; known formats: {', '.join(FORMATS)}")


def _frame(pcm: bytes, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm)
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = 0
    return frame


def _samples(frames: list[av.AudioFrame]) -> bytes:
    """The s16 mono samples of ``frames`` (planes may be padded past the last sample)."""
    return b"".join(bytes(frame.planes[0])[: frame.samples * 2] for frame in frames)


def _resample(pcm: bytes, sample_rate: int) -> bytes:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, not {sample_rate}")
    if not pcm:
        return b""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frames = resampler.resample(_frame(pcm, sample_rate))
    return _samples([*frames, *resampler.resample(None)])


def _decode(data: bytes, fmt: str) -> tuple[bytes, int]:
    """(24 kHz s16 mono PCM, samples decoded at the stream's own rate); AudioError if it fails."""
    native = 0
    out: list[av.AudioFrame] = []
    try:
        with av.open(io.BytesIO(data), "r", format=_DEMUXERS[fmt]) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream", fmt=fmt)
            stream = container.streams.audio[0]
            if fmt == "opus" and stream.codec_context.name not in ("opus", "libopus"):
                raise AudioError(f"Ogg holds {stream.codec_context.name}, not Opus", fmt=fmt)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                native += frame.samples
                out += resampler.resample(frame)
            out += resampler.resample(None)
    except av.error.FFmpegError as exc:
        reason = exc.strerror or str(exc)
        raise AudioError(f"cannot decode (truncated or corrupt?): {reason}", fmt=fmt) from None
    return _samples(out), native


# ---- structure checks: what a decoder forgives, the container's own bookkeeping reveals ----


def _check_wav(data: bytes) -> None:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file", fmt="wav")
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        start = offset + 8
        if chunk_id == b"data":
            present = len(data) - start
            if size not in (0, 0xFFFFFFFF) and present < size:
                raise AudioError(
                    f"truncated: the data chunk declares {size} bytes, {present} are present",
                    fmt="wav",
                )
            return
        offset = start + size + (size & 1)  # chunks are padded to an even size
    raise AudioError("truncated: no complete data chunk", fmt="wav")


def _flac_total_samples(data: bytes) -> int:
    """Total samples from STREAMINFO (0 = not declared)."""
    if len(data) < 8 + 18 or data[:4] != b"fLaC":
        return 0
    info = data[8 : 8 + 18]  # after "fLaC" and the 4-byte metadata block header
    return int.from_bytes(info[10:18], "big") & ((1 << 36) - 1)


def _check_flac(data: bytes) -> None:
    if data[:4] != b"fLaC":
        raise AudioError("not a FLAC stream (no fLaC marker)", fmt="flac")


def _check_ogg(data: bytes) -> None:
    offset, last_flags = 0, 0
    while offset < len(data):
        if data[offset : offset + 4] != b"OggS" or len(data) < offset + 27:
            raise AudioError(f"truncated or corrupt: no Ogg page at byte {offset}", fmt="opus")
        segments = data[offset + 26]
        table = data[offset + 27 : offset + 27 + segments]
        end = offset + 27 + segments + sum(table)
        if len(table) < segments or end > len(data):
            raise AudioError(f"truncated: the Ogg page at byte {offset} is cut off", fmt="opus")
        last_flags, offset = data[offset + 5], end
    if not last_flags & 0x04:
        raise AudioError("truncated: the Ogg stream has no end-of-stream page", fmt="opus")


def _skip_id3v2(data: bytes) -> int:
    """Where the audio starts after an ID3v2 tag (0 when there is none)."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | data[9] & 0x7F
    return 10 + size + (10 if data[5] & 0x10 else 0)


_MP3_KBPS: Final[dict[bool, tuple[int, ...]]] = {  # Layer III, by "is MPEG-1"
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES: Final[dict[int, tuple[int, ...]]] = {  # by version bits: 3 MPEG-1, 2 MPEG-2, 0 2.5
    3: (44100, 48000, 32000),
    2: (22050, 24000, 16000),
    0: (11025, 12000, 8000),
}


def _mp3_frame(data: bytes, offset: int) -> tuple[int, int] | None:
    """(frame length, Xing tag offset) of the Layer III frame at ``offset``, or None."""
    if offset + 4 > len(data):
        return None
    header = int.from_bytes(data[offset : offset + 4], "big")
    version, layer = (header >> 19) & 3, (header >> 17) & 3
    bitrate_index, rate_index = (header >> 12) & 15, (header >> 10) & 3
    if header >> 21 != 0x7FF or version == 1 or layer != 1 or rate_index == 3:
        return None
    if bitrate_index in (0, 15):  # free format or invalid: no length to check
        return None
    mpeg1 = version == 3
    kbps = _MP3_KBPS[mpeg1][bitrate_index]
    length = (144 if mpeg1 else 72) * kbps * 1000 // _MP3_RATES[version][rate_index]
    length += (header >> 9) & 1
    mono = (header >> 6) & 3 == 3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return length, offset + 4 + side_info


def _check_mp3(data: bytes) -> None:
    start = _skip_id3v2(data)
    end = len(data) - (128 if data[-128:-125] == b"TAG" else 0)
    first = _mp3_frame(data, start)
    if first is None:
        return  # no frame where one should start: leave the verdict to the decoder
    tag = first[1]
    if data[tag : tag + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(data[tag + 4 : tag + 8], "big")
        field = tag + 8 + (4 if flags & 1 else 0)
        if flags & 2 and field + 4 <= len(data):
            declared = int.from_bytes(data[field : field + 4], "big")
            if end - start < declared:
                raise AudioError(
                    f"truncated: the Xing header declares {declared} bytes, "
                    f"{end - start} are present",
                    fmt="mp3",
                )
    _walk_frames(data, start, end, lambda offset: _mp3_frame(data, offset), 4, "mp3")


def _adts_frame(data: bytes, offset: int) -> tuple[int, int] | None:
    if offset + 7 > len(data) or data[offset] != 0xFF or data[offset + 1] & 0xF6 != 0xF0:
        return None
    length = (data[offset + 3] & 3) << 11 | data[offset + 4] << 3 | data[offset + 5] >> 5
    return (length, 0) if length >= 7 else None


def _check_aac(data: bytes) -> None:
    start = _skip_id3v2(data)
    if _adts_frame(data, start) is None:
        raise AudioError("not an ADTS stream (no frame header at the start)", fmt="aac")
    _walk_frames(data, start, len(data), lambda offset: _adts_frame(data, offset), 7, "aac")


def _walk_frames(
    data: bytes,
    offset: int,
    end: int,
    frame_at: Callable[[int], tuple[int, int] | None],
    header_size: int,
    fmt: str,
) -> None:
    """Follow frame lengths from ``offset``; raise if ``end`` falls inside a frame or header.

    A position that is not a frame header ends the walk without a verdict (trailing tags,
    junk the decoder will skip).
    """
    while offset < end:
        if end - offset < header_size and data[offset] == 0xFF:
            raise AudioError(f"truncated: a frame header at byte {offset} is cut off", fmt=fmt)
        frame = frame_at(offset)
        if frame is None:
            return
        if offset + frame[0] > end:
            raise AudioError(
                f"truncated: the frame at byte {offset} needs {frame[0]} bytes, "
                f"{end - offset} are present",
                fmt=fmt,
            )
        offset += frame[0]


_STRUCTURE_CHECKS: Final[dict[str, Callable[[bytes], None]]] = {
    "wav": _check_wav,
    "flac": _check_flac,
    "opus": _check_ogg,
    "mp3": _check_mp3,
    "aac": _check_aac,
}
