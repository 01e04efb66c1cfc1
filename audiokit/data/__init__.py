"""Kaldi data directories (load, validate, fix, subset, combine, summarise) and training data
(dataset, duration-bucketed sampler, collate).

Importing this package is light (no numpy/torch): names load on first use.
"""

from audiokit.utils.lazy import lazy_exports

_EXPORTS = {
    "audiokit.data.data_dir": ["DataDir", "Segment", "Utterance"],
    "audiokit.data.operations": [
        "OpResult",
        "combine_data_dirs",
        "fix_data_dir",
        "subset_data_dir",
    ],
    "audiokit.data.summary": ["Summary", "summarize"],
    "audiokit.data.validate": ["Problem", "validate_data_dir"],
    "audiokit.data.dataset": ["AsrDataset", "default_frontend"],
    "audiokit.data.sampler": ["DynamicBucketSampler"],
    "audiokit.data.collate": ["collate_asr", "make_dataloader", "ResumableDataLoader"],
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
