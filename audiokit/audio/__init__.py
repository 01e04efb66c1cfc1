"""Audio I/O: load/save/info for wav, flac, ogg, mp3 and NIST SPHERE, wav.scp entries,
soxr resampling and mu-law companding. Importing this package does not import torch."""

from audiokit.audio.io import AudioInfo, info, load, save
from audiokit.audio.mulaw import mulaw_decode, mulaw_encode
from audiokit.audio.resample import resample
from audiokit.audio.scp import load_scp_entry, scp_entry_info

__all__ = [
    "AudioInfo",
    "info",
    "load",
    "load_scp_entry",
    "mulaw_decode",
    "mulaw_encode",
    "resample",
    "save",
    "scp_entry_info",
]
