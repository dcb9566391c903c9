"""pipeline.audio: round trips in all six formats, durations, joins, and refusing cut-off files."""

from __future__ import annotations

import io
import math
import random
import struct
import wave

import av
import pytest

from pipeline import audio

RATE = audio.SAMPLE_RATE
ENCODED = [fmt for fmt in audio.FORMATS if fmt != "pcm"]
# which cuts a decoder can tell from valid shorter audio (see the module docstring)
ALWAYS_DETECTED = ["mp3", "opus", "flac", "wav"]  # mp3: by its Xing header, which encode writes


def tone(seconds: float, rate: int = RATE, seed: int = 0) -> bytes:
    """A gliding tone with a little noise: s16le mono PCM."""
    rng = random.Random(seed)
    samples = round(seconds * rate)
    return b"".join(
        struct.pack(
            "<h",
            int(6000 * math.sin(2 * math.pi * (220 + i / 50) * i / rate)) + rng.randint(-200, 200),
        )
        for i in range(samples)
    )


@pytest.fixture(scope="module")
def pcm() -> bytes:
    return tone(1.0003)  # not a whole number of codec frames


@pytest.fixture(scope="module")
def files(pcm: bytes) -> dict[str, bytes]:
    return {fmt: audio.encode(pcm, fmt) for fmt in audio.FORMATS}


@pytest.mark.parametrize("fmt", audio.FORMATS)
def test_round_trip_keeps_the_length(pcm: bytes, files: dict[str, bytes], fmt: str) -> None:
    decoded = audio.decode(files[fmt], fmt)
    extra = (len(decoded) - len(pcm)) // 2

    if fmt == "aac":  # ADTS cannot declare the encoder's priming: 1024 samples + frame padding
        assert 1024 <= extra < 2048
    else:  # the LAME tag (mp3) and Ogg's pre-skip and granule (opus) trim the encoder delay
        assert extra == 0
    assert audio.duration_s(files[fmt], fmt) == pytest.approx(len(decoded) / 2 / RATE)


def test_lossless_formats_keep_every_sample(pcm: bytes, files: dict[str, bytes]) -> None:
    for fmt in ("flac", "wav", "pcm"):
        assert audio.decode(files[fmt], fmt) == pcm


@pytest.mark.parametrize("fmt", ENCODED)
def test_files_are_what_their_format_says(files: dict[str, bytes], fmt: str) -> None:
    expected = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}[fmt]
    with av.open(io.BytesIO(files[fmt]), format=expected) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == (48_000 if fmt == "opus" else RATE)
        assert stream.codec_context.layout.nb_channels == 1


@pytest.mark.parametrize("fmt", audio.FORMATS)
def test_encoding_is_deterministic(pcm: bytes, files: dict[str, bytes], fmt: str) -> None:
    assert audio.encode(pcm, fmt) == files[fmt]


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3"])
def test_other_sample_rates_are_resampled_to_24k(fmt: str) -> None:
    native = tone(0.5, rate=22_050)

    encoded = audio.encode(native, fmt, sample_rate=22_050)

    assert audio.duration_s(encoded, fmt) == pytest.approx(0.5, abs=0.001)


def test_decode_downmixes_and_resamples_other_wavs() -> None:
    mono = tone(0.25, rate=48_000)
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))
    file = io.BytesIO()
    with wave.open(file, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(stereo)

    assert audio.duration_s(file.getvalue(), "wav") == pytest.approx(0.25, abs=0.001)


@pytest.mark.parametrize("fmt", audio.FORMATS)
def test_join_of_three_chunks_lasts_as_long_as_the_three(fmt: str) -> None:
    chunks = [audio.encode(tone(seconds, seed=i), fmt) for i, seconds in enumerate((0.3, 0.5, 0.2))]

    joined = audio.join(chunks, fmt)

    total = sum(audio.duration_s(chunk, fmt) for chunk in chunks)
    # aac: each decoded chunk keeps its priming; encoding the whole adds one more, plus padding
    slack = 2048 / RATE if fmt == "aac" else 0.0
    assert total <= audio.duration_s(joined, fmt) <= total + slack + 1e-9


def test_join_of_pcm_is_concatenation_and_one_chunk_comes_back_unchanged(
    files: dict[str, bytes],
) -> None:
    assert audio.join([b"\x01\x00", b"\x02\x00\x03\x00"], "pcm") == b"\x01\x00\x02\x00\x03\x00"
    for fmt in audio.FORMATS:
        assert audio.join([files[fmt]], fmt) == files[fmt]


def test_aac_cut_inside_a_frame_is_refused_but_at_a_frame_boundary_is_not(
    files: dict[str, bytes],
) -> None:
    data = files["aac"]
    boundaries, offset = [], 0
    while offset < len(data):  # ADTS frame lengths: 13 bits from byte 3
        offset += (data[offset + 3] & 3) << 11 | data[offset + 4] << 3 | data[offset + 5] >> 5
        boundaries.append(offset)
    middle = boundaries[len(boundaries) // 2]

    for cut in (middle - 1, middle + 1, middle + 6, len(data) - 1, len(data) // 2 + 3):
        if cut not in boundaries:
            with pytest.raises(audio.AudioError, match="truncated"):
                audio.decode(data[:cut], "aac")
    assert audio.duration_s(data[:middle], "aac") < audio.duration_s(data, "aac")


def test_mp3_without_a_xing_header_is_only_checked_frame_by_frame(pcm: bytes) -> None:
    out = io.BytesIO()
    options = {"write_xing": "0", "id3v2_version": "0"}
    with av.open(out, "w", format="mp3", container_options=options) as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        assert isinstance(stream, av.AudioStream)
        stream.codec_context.bit_rate = 64_000
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = out.getvalue()
    frame_bytes = 72 * 64_000 // RATE  # MPEG-2 Layer III at 64 kbit/s: 192 bytes, no padding
    boundary = frame_bytes * (len(data) // frame_bytes // 2)

    # without the LAME tag nothing trims the encoder delay: up to ~70 ms more
    assert 0 < audio.duration_s(data, "mp3") - len(pcm) / 2 / RATE < 0.075
    assert audio.duration_s(data[:boundary], "mp3") < audio.duration_s(data, "mp3")
    for cut in (boundary + 1, boundary + 50, len(data) - 1):
        with pytest.raises(audio.AudioError, match="truncated"):
            audio.decode(data[:cut], "mp3")


def test_odd_pcm_and_garbage_are_refused(files: dict[str, bytes]) -> None:
    with pytest.raises(audio.AudioError, match="whole number of samples"):
        audio.decode(b"\x00\x01\x02", "pcm")
    for fmt in ENCODED:
        with pytest.raises(audio.AudioError):
            audio.decode(b"", fmt)
        with pytest.raises(audio.AudioError):
            audio.decode(b"\x00" * 1000, fmt)
    with pytest.raises(audio.AudioError):
        audio.decode(files["wav"], "mp3")
    with pytest.raises(audio.AudioError):
        audio.decode(files["mp3"], "opus")


def test_audio_error_says_the_format() -> None:
    with pytest.raises(audio.AudioError) as refused:
        audio.decode(b"RIFF", "wav")

    assert refused.value.fmt == "wav"
    assert str(refused.value).startswith("wav: ")


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="known formats"):
        audio.encode(b"", "ogg")
    with pytest.raises(ValueError, match="known formats"):
        audio.decode(b"", "m4a")
    with pytest.raises(ValueError, match="no samples"):
        audio.encode(b"", "mp3")
    with pytest.raises(ValueError, match="even number"):
        audio.encode(b"\x00", "wav")
    with pytest.raises(ValueError, match="at least one"):
        audio.join([], "wav")
    assert audio.encode(b"", "pcm") == b""


@pytest.mark.parametrize("fmt", ALWAYS_DETECTED)
def test_no_cut_of_a_short_clip_passes_for_complete(fmt: str) -> None:
    data = audio.encode(tone(0.45, seed=3), fmt)  # flac: three frames

    passed = []
    for cut in range(len(data)):
        try:
            audio.decode(data[:cut], fmt)
        except audio.AudioError:
            continue
        passed.append(cut)

    assert passed == []
