"""Options for Kaldi-compatible features, with Kaldi's names and defaults.

Each field mirrors a `compute-{fbank,mfcc,spectrogram}-feats` option (``--frame-shift`` is
``frame_shift_ms`` and so on). ``validate()`` raises :class:`ConfigError` for values Kaldi would
reject. Frame sizes are derived exactly as Kaldi does (single-precision options, truncation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiokit.errors import ConfigError

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")


def _f32(x: float) -> float:
    """Round to single precision: Kaldi stores these options as C++ float."""
    return float(np.float32(x))


@dataclass
class FrameOptions:
    """Framing and per-frame signal processing (Kaldi's FrameExtractionOptions)."""

    sample_frequency: float = 16000.0
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    dither: float = 1.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"  # hamming|hanning|povey|rectangular|sine|blackman
    blackman_coeff: float = 0.42
    round_to_power_of_two: bool = True
    snip_edges: bool = True
    # Float input in [-1, 1] is multiplied by this; Kaldi reads 16-bit PCM as integer values.
    waveform_scale: float = 32768.0

    @property
    def window_shift(self) -> int:
        """Frame shift in samples (Kaldi's WindowShift)."""
        return int(_f32(self.sample_frequency) * 0.001 * _f32(self.frame_shift_ms))

    @property
    def window_size(self) -> int:
        """Frame length in samples (Kaldi's WindowSize)."""
        return int(_f32(self.sample_frequency) * 0.001 * _f32(self.frame_length_ms))

    @property
    def padded_window_size(self) -> int:
        """FFT size: the frame length, rounded up to a power of two when asked."""
        n = self.window_size
        if not self.round_to_power_of_two:
            return n
        return 1 << max(0, math.ceil(math.log2(n)))

    def validate(self) -> None:
        if self.sample_frequency <= 0:
            raise ConfigError(
                f"sample_frequency={self.sample_frequency} must be positive; set it to the audio's rate"
            )
        if self.window_shift < 1 or self.window_size < 2:
            raise ConfigError(
                f"frame_shift_ms={self.frame_shift_ms}/frame_length_ms={self.frame_length_ms} give "
                f"{self.window_shift}/{self.window_size} samples at {self.sample_frequency} Hz; "
                "use a shift of >= 1 sample and a length of >= 2 samples"
            )
        if self.window_type not in WINDOW_TYPES:
            raise ConfigError(
                f"window_type={self.window_type!r} is unknown; use one of {', '.join(WINDOW_TYPES)}"
            )
        if not 0.0 <= self.preemphasis_coefficient <= 1.0:
            raise ConfigError(
                f"preemphasis_coefficient={self.preemphasis_coefficient} is outside [0, 1]; "
                "use e.g. 0.97, or 0 to disable it"
            )
        if self.dither < 0:
            raise ConfigError(f"dither={self.dither} is negative; use 0 (off) or a positive value")
        if self.waveform_scale <= 0:
            raise ConfigError(
                f"waveform_scale={self.waveform_scale} must be positive; use 32768 for [-1, 1] audio"
            )
        if self.padded_window_size % 2:
            raise ConfigError(
                f"FFT size {self.padded_window_size} is odd; set round_to_power_of_two=True "
                "or choose frame_length_ms giving an even number of samples"
            )


@dataclass
class MelOptions:
    """Triangular mel filterbank (Kaldi's MelBanksOptions; fbank/mfcc default to 23 bins)."""

    num_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means an offset from the Nyquist frequency
    vtln_low: float = 100.0  # lower inflection point of the VTLN warp (used if vtln_warp != 1)
    vtln_high: float = -500.0  # upper inflection point; < 0 means an offset from Nyquist
    # Kaldi's hidden test option: floor mel energies at 1.0 and replicate an HTK bug in bin 0.
    htk_mode: bool = False

    def edges(self, sample_frequency: float) -> tuple[float, float]:
        """(low_freq, high_freq) in Hz after resolving a non-positive high_freq."""
        nyquist = 0.5 * _f32(sample_frequency)
        high = self.high_freq if self.high_freq > 0.0 else nyquist + self.high_freq
        return _f32(self.low_freq), _f32(high)

    def validate(self, frame: FrameOptions, vtln_warp: float = 1.0) -> None:
        if self.num_bins < 3:
            raise ConfigError(f"num_bins={self.num_bins} is too small; use at least 3 mel bins")
        nyquist = 0.5 * frame.sample_frequency
        low, high = self.edges(frame.sample_frequency)
        if low < 0.0 or low >= nyquist or high <= 0.0 or high > nyquist or high <= low:
            raise ConfigError(
                f"low_freq={self.low_freq}/high_freq={self.high_freq} give [{low}, {high}] Hz, "
                f"not inside (0, {nyquist}] Hz (Nyquist); choose 0 <= low_freq < high_freq <= Nyquist"
            )
        if vtln_warp != 1.0:
            vlow = self.vtln_low
            vhigh = self.vtln_high + nyquist if self.vtln_high < 0 else self.vtln_high
            if not (low < vlow < high and 0 < vhigh < high and vhigh > vlow):
                raise ConfigError(
                    f"vtln_low={self.vtln_low}/vtln_high={self.vtln_high} must satisfy "
                    f"low_freq < vtln_low < vtln_high < high_freq ({low}..{high} Hz); adjust them"
                )


@dataclass
class FbankOptions:
    """Log mel filterbank energies (Kaldi's FbankOptions)."""

    frame: FrameOptions = field(default_factory=FrameOptions)
    mel: MelOptions = field(default_factory=MelOptions)
    use_energy: bool = False  # add a log-energy dimension (first; last with htk_compat)
    energy_floor: float = 0.0
    raw_energy: bool = True  # energy before preemphasis and windowing
    htk_compat: bool = False
    use_log_fbank: bool = True
    use_power: bool = True  # power spectrum; False uses magnitude

    def validate(self, vtln_warp: float = 1.0) -> None:
        self.frame.validate()
        self.mel.validate(self.frame, vtln_warp)
        if self.energy_floor < 0:
            raise ConfigError(f"energy_floor={self.energy_floor} is negative; use 0 or more")


@dataclass
class MfccOptions:
    """Mel-frequency cepstra (Kaldi's MfccOptions)."""

    frame: FrameOptions = field(default_factory=FrameOptions)
    mel: MelOptions = field(default_factory=MelOptions)
    num_ceps: int = 13
    use_energy: bool = True  # replace C0 with log energy
    energy_floor: float = 0.0
    raw_energy: bool = True
    cepstral_lifter: float = 22.0  # 0 disables liftering
    htk_compat: bool = False  # C0/energy last; C0 scaled by sqrt(2) like HTK

    def validate(self, vtln_warp: float = 1.0) -> None:
        self.frame.validate()
        self.mel.validate(self.frame, vtln_warp)
        if not 1 <= self.num_ceps <= self.mel.num_bins:
            raise ConfigError(
                f"num_ceps={self.num_ceps} must be between 1 and num_bins={self.mel.num_bins}; "
                "lower num_ceps or raise mel.num_bins"
            )
        if self.energy_floor < 0:
            raise ConfigError(f"energy_floor={self.energy_floor} is negative; use 0 or more")


@dataclass
class SpectrogramOptions:
    """Log power spectrum; bin 0 holds the log energy (Kaldi's SpectrogramOptions)."""

    frame: FrameOptions = field(default_factory=FrameOptions)
    energy_floor: float = 0.0
    raw_energy: bool = True

    def validate(self, vtln_warp: float = 1.0) -> None:
        self.frame.validate()
        if self.energy_floor < 0:
            raise ConfigError(f"energy_floor={self.energy_floor} is negative; use 0 or more")


_CACHE: dict[tuple, Any] = {}


def cached(key: tuple, build: Callable[[], Any]) -> Any:
    """Memoise derived tensors (windows, mel/DCT matrices) per options, device and dtype."""
    value = _CACHE.get(key)
    if value is None:
        if len(_CACHE) >= 128:  # a few option sets in practice; bound it anyway
            _CACHE.clear()
        value = _CACHE[key] = build()
    return value


def options_key(opts: object) -> tuple:
    """A hashable snapshot of (nested) option dataclasses, for caching derived matrices."""
    return dataclasses.astuple(opts)  # type: ignore[arg-type]
