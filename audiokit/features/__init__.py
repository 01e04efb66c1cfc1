"""Speech features: Kaldi-compatible fbank/MFCC/spectrogram, librosa-style mel spectrograms,
CMVN, LFR stacking, SpecAugment, speed perturbation and data-dir extraction to ark/scp.

Names are imported lazily (on first attribute access), so ``import audiokit.features`` and the
CLI stay light until a feature is actually used.
"""

from audiokit.utils.lazy import lazy_exports

_EXPORTS = {
    "audiokit.features.kaldi": ["fbank", "mfcc", "spectrogram", "num_frames"],
    "audiokit.features.kaldi_options": [
        "FrameOptions", "MelOptions", "FbankOptions", "MfccOptions", "SpectrogramOptions",
    ],
    "audiokit.features.htk_io": ["HtkFeatures", "read_htk"],
    "audiokit.features.mel": ["MelSpectrogram", "mel_filterbank", "hz_to_mel", "mel_to_hz"],
    "audiokit.features.cmvn": [
        "CmvnStats", "GlobalCMVN", "apply_utterance_cmvn", "load_cmvn", "read_am_mvn",
        "read_kaldi_cmvn", "save_cmvn_npz", "compute_cmvn",
    ],
    "audiokit.features.lfr": ["apply_lfr", "lfr_lengths"],
    "audiokit.features.specaugment": ["SpecAugment", "time_warp", "mask_freq", "mask_time"],
    "audiokit.features.speed_perturb": ["perturb_speed", "speed_perturb_data_dir", "SpeedPerturbResult"],
    "audiokit.features.extract": [
        "extract_features", "ExtractResult", "read_feats", "build_options",
        "read_kaldi_conf",
    ],
}  # fmt: skip
__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
