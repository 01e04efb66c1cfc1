"""Kaldi data directories: load, validate, fix, subset, combine and summarise.

Importing this package is light (no numpy/torch); audio is read lazily via audiokit.audio.
"""

from audiokit.data.data_dir import DataDir, Segment, Utterance
from audiokit.data.operations import OpResult, combine_data_dirs, fix_data_dir, subset_data_dir
from audiokit.data.summary import Summary, summarize
from audiokit.data.validate import Problem, validate_data_dir

__all__ = [
    "DataDir",
    "OpResult",
    "Problem",
    "Segment",
    "Summary",
    "Utterance",
    "combine_data_dirs",
    "fix_data_dir",
    "subset_data_dir",
    "summarize",
    "validate_data_dir",
]
