"""espeak-ng text-to-speech through ctypes, using the library and data bundled by the PyPI
package `espeakng-loader` (no system install needed); the `espeak-ng` program is a fallback.

espeak-ng keeps global state (one voice, one callback), so calls in a process are serialised
with a lock; parallel synthesis uses processes.
"""

from __future__ import annotations

import ctypes
import io
import shutil
import subprocess
import threading
from dataclasses import dataclass

import numpy as np

from audiokit.errors import ConfigError

SAMPLE_RATE = 22050  # espeak-ng's native output rate

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0

# (short* wav, int numsamples, espeak_EVENT* events) -> 0 to continue
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice with prosody: `name` like "en-us+m3" (language + variant),
    `rate` in words per minute (80-450), `pitch` and `pitch_range` in 0-100 (50 = normal)."""

    name: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


def _unload(handle: int) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
    if close is not None:
        close(handle)


def _synth_fresh(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Load libespeak-ng, speak `text`, unload it.

    espeak-ng carries state from one utterance to the next (voicing flutter, noise), which
    Terminate does not reset, so the same text would come out differently depending on what
    was said before. A fresh load per utterance (about 5 ms) makes output depend only on the
    arguments: corpora are reproducible whatever the order or number of worker processes.
    """
    import espeakng_loader

    lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
    try:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = str(espeakng_loader.get_data_path()).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise ConfigError(
                f"espeak-ng failed to initialise with data {data.decode()}; reinstall "
                "espeakng-loader (`pip install --force-reinstall espeakng-loader`)"
            )
        # espeak-ng seeds its random generator from time(NULL) at initialisation (the Mandarin
        # voice uses it): reseed so that the audio depends on the arguments only
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(0)
        chunks: list[np.ndarray] = []

        def collect(wav, n: int, _events) -> int:
            if n > 0 and wav:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        callback = _CALLBACK(collect)  # referenced until Terminate: C holds the pointer
        lib.espeak_SetSynthCallback(callback)
        try:
            if lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                raise ConfigError(
                    f"espeak-ng voice '{voice.name}' not found; use LANG+VARIANT such as "
                    "'en-us+m3' (languages: en-us, en, en-gb-scotland, en-029, ...)"
                )
            for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch),
                                 (_RANGE, voice.pitch_range), (_VOLUME, 100)):  # fmt: skip
                lib.espeak_SetParameter(param, int(value), 0)
            raw = text.encode("utf-8")
            err = lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != _EE_OK:
                raise ConfigError(f"espeak-ng could not synthesise {text[:40]!r} (error {err})")
        finally:
            lib.espeak_Terminate()
        out = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return out, rate
    finally:
        handle = lib._handle
        del lib
        _unload(handle)


_LOCK = threading.Lock()  # espeak-ng is one global synthesiser per process


def _synth_cli(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Synthesise with the `espeak-ng` program (no pitch-range option there)."""
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ConfigError(
            "espeak-ng is not available: `pip install espeakng-loader` (bundles it) or install "
            "the espeak-ng program"
        )
    cmd = [exe, "--stdout", "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch), text]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0:
        raise ConfigError(
            f"espeak-ng failed for voice '{voice.name}': {res.stderr.decode(errors='replace')}"
        )
    x, sr = sf.read(io.BytesIO(res.stdout), dtype="int16")
    return x, sr


def synthesize(text: str, voice: Voice | str) -> tuple[np.ndarray, int]:
    """Speak `text`: returns (int16 samples (T,), sample rate: 22050 for espeak-ng).

    The same arguments always give the same samples (see :func:`_synth_fresh`).
    """
    if isinstance(voice, str):
        voice = Voice(voice)
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return _synth_cli(text, voice)
    with _LOCK:
        return _synth_fresh(text, voice)
