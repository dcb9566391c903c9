"""The emulator's offline speech engine: eSpeak NG (``espeakng-loader``, the ``local`` extra).

Owns the ctypes binding to libespeak-ng, the OpenAI voice -> eSpeak voice table and how
``speed`` becomes audio. eSpeak keeps process-wide state and is not thread-safe, so every call
into it holds one module lock (all emulators in a process share the library); callers run
``synthesize`` in a worker thread, never on the event loop. Each synthesis loads the library
afresh, so the same request gives the same samples (see ``_speak``).

Speed: the API's 0.25-4.0 is eSpeak's rate ``175 * speed`` words a minute. eSpeak speaks down to
80 wpm (0.457x) and, through its built-in sonic speed-up, well past 700 wpm (4x); below 80 wpm it
speaks at 80 and FFmpeg's ``atempo`` filter stretches the audio by the rest (``speed * 175 / 80``,
0.547 at speed 0.25), which keeps the pitch. Measured on a 500-character text, durations follow
``1 / speed`` within 5 %: 0.25 gives ~15x the audio of 4.0.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import sys
import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Final

import av
import av.error
import av.filter

from pipeline.emulator.errors import EmulatorError
from pipeline.emulator.scoring import MISSING_EXTRA

MODEL: Final[str] = "local/espeak-ng"
# OpenAI voice -> eSpeak voice ("language+variant"): distinct variants, genders as OpenAI's
VOICES: Final[Mapping[str, str]] = {
    "alloy": "en-us+f2",
    "ash": "en-us+m3",
    "ballad": "en-us+m7",
    "coral": "en-us+f3",
    "echo": "en-us+m1",
    "fable": "en+m5",  # British, like OpenAI's fable
    "onyx": "en-us+m2",
    "nova": "en-us+f4",
    "sage": "en-us+f1",
    "shimmer": "en-us+f5",
    "verse": "en-us+m4",
    "marin": "en-us+belinda",
    "cedar": "en-us+m6",
}
NORMAL_WPM: Final[int] = 175  # eSpeak's default rate: speed 1.0
SLOWEST_WPM: Final[int] = 80  # eSpeak clamps slower rates to this
_SILENCE_S: Final[float] = 0.05  # what an input eSpeak says nothing for becomes

# speak_lib.h and espeak_ng.h
_AUDIO_OUTPUT_SYNCHRONOUS: Final[int] = 2
_INITIALIZE_DONT_EXIT: Final[int] = 0x8000
_RATE: Final[int] = 1
_POS_CHARACTER: Final[int] = 1
_CHARS_UTF8: Final[int] = 1
_ENDPAUSE: Final[int] = 0x1000
_BUFFER_MS: Final[int] = 1000  # audio per callback: fewer trips into Python
_SEED: Final[int] = 1  # for the breath noise, which eSpeak otherwise seeds from the clock

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_SIGNATURES: Final[dict[str, tuple[list[Any], Any]]] = {
    "espeak_Initialize": (
        [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int],
        ctypes.c_int,
    ),
    "espeak_SetSynthCallback": ([_SynthCallback], None),
    "espeak_ng_SetRandSeed": ([ctypes.c_long], ctypes.c_int),
    "espeak_SetVoiceByName": ([ctypes.c_char_p], ctypes.c_int),
    "espeak_SetParameter": ([ctypes.c_int, ctypes.c_int, ctypes.c_int], ctypes.c_int),
    "espeak_Synth": (
        [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ],
        ctypes.c_int,
    ),
    "espeak_Terminate": ([], ctypes.c_int),
}
if sys.platform == "win32":
    _unload = _ctypes.FreeLibrary
else:
    _unload = _ctypes.dlclose
_lock = threading.Lock()  # one eSpeak at a time in this process
_chunks: list[bytes] = []  # what the callback collects (under _lock)


def _collect(wav: Any, samples: int, _events: Any) -> int:
    if samples > 0 and wav:
        _chunks.append(ctypes.string_at(wav, samples * 2))
    return 0  # 0: go on


_CALLBACK = _SynthCallback(_collect)  # alive as long as the module: eSpeak keeps the pointer


def espeak_voice(voice: str | Mapping[str, Any]) -> str:
    """The eSpeak voice for a validated ``voice``: a name from VOICES, another name (a
    provider's, in provider mode) or ``{"id": ...}``.

    Any other name or custom voice id maps to one of the VOICES' eSpeak voices by a hash of
    it, so the same name always sounds the same (in every process).
    """
    if isinstance(voice, str) and voice in VOICES:
        return VOICES[voice]
    name = voice if isinstance(voice, str) else str(voice["id"])
    digest = hashlib.sha256(name.encode()).digest()
    choices = list(VOICES.values())
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


def check_installed() -> None:
    """EmulatorError (the ``local`` extra is missing) unless espeakng-loader can be imported."""
    _loader()


def _loader() -> Any:
    try:
        import espeakng_loader  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmulatorError(MISSING_EXTRA) from exc
    return espeakng_loader


def _speak(text: str, voice: str, wpm: int) -> tuple[bytes, int]:
    """(s16le mono PCM, sample rate) from a freshly loaded libespeak-ng (hold ``_lock``).

    eSpeak carries state from one utterance to the next (its pitch flutter and voice
    modulation counters) that no call resets, so the same text would not give the same
    samples twice. Loading the library afresh each time (~0.3 ms) and seeding its noise makes
    it deterministic, at the price of ~2 KB that eSpeak does not free per load (2 MB per
    thousand requests).
    """
    loader = _loader()
    lib = ctypes.CDLL(loader.get_library_path())
    for name, (argtypes, restype) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    try:
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            _BUFFER_MS,
            loader.get_data_path().encode(),
            _INITIALIZE_DONT_EXIT,
        )
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        lib.espeak_SetSynthCallback(_CALLBACK)
        lib.espeak_ng_SetRandSeed(_SEED)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(_RATE, wpm, 0)
        data = text.replace("\x00", " ").encode()  # a NUL would end eSpeak's C string
        _chunks.clear()
        status = lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        if status != 0:
            raise RuntimeError(f"eSpeak NG failed to synthesise (error {status})")
        return b"".join(_chunks), rate
    finally:
        _chunks.clear()
        lib.espeak_Terminate()
        _unload(lib._handle)


def synthesize(text: str, voice: str, speed: float) -> tuple[bytes, int]:
    """(s16le mono PCM, its sample rate) for ``text`` in eSpeak ``voice`` at ``speed`` (0.25-4).

    Blocking (tens of ms a minute of audio): call from a worker thread. Deterministic: the
    same arguments give the same samples.
    """
    wpm = round(NORMAL_WPM * speed)
    with _lock:
        pcm, rate = _speak(text, voice, max(wpm, SLOWEST_WPM))
    if wpm < SLOWEST_WPM:
        pcm = stretch(pcm, rate, wpm / SLOWEST_WPM)
    if not pcm:
        pcm = bytes(2 * round(rate * _SILENCE_S))
    return pcm, rate


def stretch(pcm: bytes, sample_rate: int, tempo: float) -> bytes:
    """``pcm`` played ``tempo`` times as fast (pitch kept), by FFmpeg's atempo (0.5-100)."""
    if not pcm:
        return pcm
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        format="s16", sample_rate=sample_rate, layout="mono", time_base=Fraction(1, sample_rate)
    )
    atempo = graph.add("atempo", f"{tempo:.6f}")
    sink = graph.add("abuffersink")
    source.link_to(atempo)
    atempo.link_to(sink)
    graph.configure()
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm)
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = 0
    graph.push(frame)
    graph.push(None)
    out: list[bytes] = []
    while True:
        try:
            stretched = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        assert isinstance(stretched, av.AudioFrame)
        out.append(bytes(stretched.planes[0])[: stretched.samples * 2])
    return b"".join(out)
