"""The emulator's audio encoder: s16le mono PCM as a complete file in the API's six speech
formats, at the API's 24 kHz, byte for byte the same for the same samples (PyAV).

What the API sends, and so what this writes: ``mp3`` (MPEG-2 Layer III with a Xing/LAME tag,
no ID3 tag), ``opus`` (Opus in Ogg), ``aac`` (AAC-LC in ADTS frames), ``flac``, ``wav``
(16-bit PCM in RIFF) and ``pcm`` (raw s16le, no header). Deterministic because every muxer and
encoder runs bitexact (no version strings, fixed Ogg serial numbers). Written for the emulator
alone: the client's decoder checks these files, so the two must not share code.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Final

import av
from av.codec.context import Flags

from pipeline.emulator.facts import SPEECH_FORMATS, SPEECH_SAMPLE_RATE


@dataclass(frozen=True)
class _Container:
    """How one format is written: FFmpeg muxer, encoder, bit rate (0: lossless), options."""

    muxer: str
    encoder: str
    bit_rate: int = 0
    encoder_options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    muxer_options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


_CONTAINERS: Final[Mapping[str, _Container]] = MappingProxyType(
    {
        # write_xing: the Xing/LAME tag says the byte count and the encoder delay to trim
        "mp3": _Container(
            "mp3",
            "libmp3lame",
            64_000,
            {"compression_level": "7"},  # speech: twice as fast, no audible loss
            {"id3v2_version": "0", "write_xing": "1"},
        ),
        "opus": _Container("ogg", "libopus", 32_000, {"compression_level": "5"}),
        "aac": _Container("adts", "aac", 64_000, {"aac_coder": "fast"}),
        "flac": _Container("flac", "flac"),
        "wav": _Container("wav", "pcm_s16le"),
    }
)


def encode(pcm: bytes, fmt: str, sample_rate: int = SPEECH_SAMPLE_RATE) -> bytes:
    """``pcm`` (s16le mono at ``sample_rate`` Hz) as a complete ``fmt`` file at 24 kHz.

    Raises ValueError for a format the API does not answer, half a sample, a rate that is not
    positive, or no samples for a format that cannot hold none (all but ``pcm``).
    """
    if fmt not in SPEECH_FORMATS:
        raise ValueError(f"the speech API answers {', '.join(SPEECH_FORMATS)}, not {fmt!r}")
    if len(pcm) % 2:
        raise ValueError(f"s16le mono PCM is a whole number of 2-byte samples, not {len(pcm)}")
    if sample_rate <= 0:
        raise ValueError(f"the sample rate must be positive, not {sample_rate}")
    if fmt == "pcm":
        return _to_24khz(pcm, sample_rate)
    if not pcm:
        raise ValueError(f"{fmt} cannot hold no samples")
    return _write(_CONTAINERS[fmt], _frame(pcm, sample_rate))


def _frame(pcm: bytes, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm)
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = 0
    return frame


def _to_24khz(pcm: bytes, sample_rate: int) -> bytes:
    if sample_rate == SPEECH_SAMPLE_RATE or not pcm:
        return bytes(pcm)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SPEECH_SAMPLE_RATE)
    frames = [*resampler.resample(_frame(pcm, sample_rate)), *resampler.resample(None)]
    # a plane can be padded past its last sample: keep two bytes a sample
    return b"".join(bytes(frame.planes[0])[: 2 * frame.samples] for frame in frames)


def _write(spec: _Container, source: av.AudioFrame) -> bytes:
    """``source`` resampled once, straight to what the encoder takes at 24 kHz, and muxed."""
    out = io.BytesIO()
    options = {"fflags": "+bitexact", **spec.muxer_options}
    with av.open(out, "w", format=spec.muxer, container_options=options) as container:
        stream = container.add_stream(
            spec.encoder,
            rate=SPEECH_SAMPLE_RATE,
            layout="mono",
            options=dict(spec.encoder_options),
        )
        assert isinstance(stream, av.AudioStream)
        codec = stream.codec_context
        codec.flags |= Flags.bitexact
        if spec.bit_rate:
            codec.bit_rate = spec.bit_rate
        takes = codec.codec.audio_formats or [codec.format]
        resampler = av.AudioResampler(format=takes[0].name, layout="mono", rate=SPEECH_SAMPLE_RATE)
        for frame in [*resampler.resample(source), *resampler.resample(None)]:
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    return out.getvalue()
